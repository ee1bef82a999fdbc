"""The prose of ``benchmarks/results/fit_time.json`` (``python benchmarks/fit_time.py --json ...``)."""

from __future__ import annotations

from fit_time import FIRST_EPOCH_TARGET, ratios, speed_target, table
from prose_text import BACKEND_NAMES, span, wrap


def _backend_sentence(backend: str, rows: list[dict]) -> str:
    speeds = [ratios(r)["speed"] for r in rows]
    firsts = [ratios(r)["first_epoch"] for r in rows]
    missed = [r for r in rows if not ratios(r)["met"]]
    worst = min(rows, key=lambda r: ratios(r)["speed"])
    verdict = ("every row meets the targets" if not missed else
               f"{len(missed)} of {len(rows)} rows miss them; the slowest is the {worst['trunk']} trunk at "
               f"{worst['tasks']:,} tasks with metrics {'on' if worst['metrics'] else 'off'}, "
               f"{worst['keras_mtl']['fit_s']:.2f} s against {worst['plain']['fit_s']:.2f} s")
    return (f"On {BACKEND_NAMES[backend]} keras_mtl's `fit` ran at {span(speeds, unit='×')} plain Keras's speed "
            f"and its first epoch took {span(firsts, unit='×')} plain's; {verdict}.")


def fit_time_section(report: dict) -> str:
    """When and how the run was made, one sentence per backend, and the table."""
    settings, rows, machines = report["settings"], report["rows"], report["machines"]
    started = min(m["time_start"] for m in machines.values())
    gflops = [r[name]["gflops"] for r in rows for name in ("keras_mtl", "plain")]
    loads = ", ".join(f"{BACKEND_NAMES[b]} {m['loadavg_start']}" for b, m in machines.items())
    met = sum(ratios(r)["met"] for r in rows)
    head = (f"Measured by `python benchmarks/fit_time.py` ({started[:10]}; {settings['examples']:,} examples, "
            f"batch {settings['batch_size']}, {settings['epochs']} epochs per `fit`, "
            f"{settings['missing']:.0%} of labels missing, the shorter of {settings['rounds']} `fit` calls; "
            f"matmul {min(gflops):.0f}–{max(gflops):.0f} GFLOP/s before the rows; load average at the start: "
            f"{loads}). Speed is plain Keras's `fit` time over keras_mtl's (above 1: keras_mtl faster); the "
            f"targets: at least {speed_target(4):.1f}× at 4 tasks, {speed_target(100):.1f}× at more, and a "
            f"first epoch at most {FIRST_EPOCH_TARGET}× plain's. {met} of {len(rows)} rows meet them.")
    sentences = [_backend_sentence(b, [r for r in rows if r["backend"] == b]) for b in machines]
    return "\n\n".join([wrap(head), *(wrap(s) for s in sentences), table(rows)]) + "\n"
