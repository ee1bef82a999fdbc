"""Figures of ``benchmarks/results/fit_time.json`` (``python benchmarks/fit_time.py --json ...``): benchmarks/README,
the many-tasks page."""

from __future__ import annotations

from fit_time import FIRST_EPOCH_TARGET, ratios, speed_target, table


def _started(report: dict) -> str:
    """The day the first backend's run started."""
    return min(m["time_start"] for m in report["machines"].values())[:10]


def _backend(rows: list[dict]) -> dict:
    """One backend's rows: the span of their ratios, how many miss the targets, and the slowest."""
    found = [ratios(r) for r in rows]
    return {"rows": rows, "speeds": [r["speed"] for r in found], "first_epochs": [r["first_epoch"] for r in found],
            "missed": sum(not r["met"] for r in found), "slowest": min(rows, key=lambda r: ratios(r)["speed"]),
            # keras_mtl's fit time over plain's, the longest of the rows with the default metrics
            "longest_with_metrics": max((r["keras_mtl"]["fit_s"] / r["plain"]["fit_s"] for r in rows if r["metrics"]),
                                        default=None)}


def fit_time(report: dict) -> dict:
    """When and how the run was made, one sentence per backend, and the table."""
    rows, machines = report["rows"], report["machines"]
    return {"settings": report["settings"], "machines": machines, "rows": rows, "table": table(rows),
            "started": _started(report),
            "gflops": [r[side]["gflops"] for r in rows for side in ("keras_mtl", "plain")],
            "met": sum(ratios(r)["met"] for r in rows), "speed_target": {t: speed_target(t) for t in (4, 100)},
            "first_epoch_target": FIRST_EPOCH_TARGET,
            "backends": {b: _backend([r for r in rows if r["backend"] == b]) for b in machines}}


def summary(report: dict) -> dict:
    """The many-tasks page: each backend's speed span at 100 and at 1,000 tasks (both trunks, metrics on and off)."""
    rows = [r for r in report["rows"] if r["tasks"] >= 100]
    counts = sorted({r["tasks"] for r in rows})
    return {"started": _started(report),
            "backends": {b: {t: [ratios(r)["speed"] for r in rows if r["backend"] == b and r["tasks"] == t]
                             for t in counts} for b in report["machines"]},
            "met": sum(ratios(r)["met"] for r in rows), "rows": len(rows), "target": speed_target(counts[0])}
