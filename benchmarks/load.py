"""What other processes do to a benchmark: their CPU use and the load average."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

__all__ = ["CpuMeter", "loadavg", "now", "wait_until_quiet"]


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine, from ``/proc/stat``."""
    try:
        with open("/proc/stat") as stat:
            fields = [float(v) for v in stat.readline().split()[1:9]]
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
    return busy / hz, sum(fields) / hz


def _own_cpu() -> float:
    # This process and the children it waited for (the plain PyTorch loop runs as one).
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class CpuMeter:
    """CPU cores used by *other* processes from construction to ``stop``.

    The process's own children that it waited for count as its own.
    """

    def __init__(self):
        self._machine = _cpu_seconds()
        self._own = _own_cpu()
        self._wall = time.perf_counter()

    def stop(self) -> float | None:
        """Average cores busy outside this process since construction."""
        machine = _cpu_seconds()
        if machine is None or self._machine is None:
            return None
        wall = time.perf_counter() - self._wall
        others = (machine[0] - self._machine[0]) - (_own_cpu() - self._own)
        return max(others, 0.0) / max(wall, 1e-9)


def loadavg() -> str:
    """The first three fields of ``/proc/loadavg`` (empty if unavailable)."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return ""


def wait_until_quiet(max_wait: float, quiet_cores: float, log: Callable[[str], None]) -> float | None:
    """Waits (up to ``max_wait`` s) until other processes use at most ``quiet_cores``.

    Returns:
        The last measured CPU use of other processes, in cores (``None``
        when ``max_wait`` is 0 or ``/proc/stat`` is unreadable).
    """
    if max_wait <= 0:
        return None
    deadline = time.perf_counter() + max_wait
    announced = False
    while True:
        meter = CpuMeter()
        time.sleep(0.5)
        busy = meter.stop()
        if busy is None or busy <= quiet_cores or time.perf_counter() >= deadline:
            if announced or (busy is not None and busy > quiet_cores):
                log(f"    (other processes use {busy:.1f} cores; loadavg {loadavg()})")
            return busy
        if not announced:
            log(f"    waiting: other processes use {busy:.1f} cores (loadavg {loadavg()})")
            announced = True
        time.sleep(5.0)


def now() -> dict:
    """The UTC time and the load average, to stamp the start and end of a run."""
    return {"time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "loadavg": loadavg()}
