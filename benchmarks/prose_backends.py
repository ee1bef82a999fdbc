"""Figures of ``benchmarks/run.py``'s reports: every backend side by side and the TensorFlow-only run.

``benchmarks/results/backends.json`` (``python benchmarks/run.py --backends
tensorflow,jax,torch --json``) holds each backend's rows, every round of
each, the targets and the machine; ``benchmarks/results/tensorflow.json``
(``python benchmarks/run.py --backend tensorflow --only a,e,g --rows
a,a-spe8 --json``) the ``steps_per_execution`` and XLA rows.
"""

from __future__ import annotations

from backends import MAX_WAIT, ROWS, TORCH_ROW, side_by_side


def _value(report, backend, row_id) -> float:
    return report["rows"][backend][row_id]["value"]


def _ratio(report, backend, row_id, baseline) -> float:
    return _value(report, backend, row_id) / _value(report, backend, baseline)


def _keras_backends(report) -> list[str]:
    return [b for b in report["backends"] if "a" in report["rows"].get(b, {})]


def _fastest(report) -> str:
    return max(_keras_backends(report), key=lambda b: _value(report, b, "a"))


def _torch_at(report) -> str | None:
    """The backend whose subprocess ran the plain PyTorch loop."""
    return next((b for b in report["backends"] if TORCH_ROW in report["rows"].get(b, {})), None)


def _masking_target(report) -> float:
    """The minimum of the a / b targets (the same on every backend)."""
    return next(t["minimum"] for t in report["targets"]
                if t["what"].endswith("keras_mtl 4 tasks / plain Keras 4 heads"))


def _loop(report) -> dict | None:
    """The fastest backend's row a against the plain PyTorch loop: both rates, their ratio and its target."""
    target = next((t for t in report["targets"] if "plain PyTorch loop" in t["what"]), None)
    if target is None:
        return None
    keras, loop = _value(report, _fastest(report), "a"), _value(report, _torch_at(report), TORCH_ROW)
    metrics = report["rows"][_torch_at(report)][TORCH_ROW].get("metrics", "none")
    return {"keras_rate": keras, "loop_rate": loop, "ratio": keras / loop, "minimum": target["minimum"],
            "met": keras / loop >= target["minimum"], "metrics": metrics != "none"}


def _spread_of(row) -> float:
    """A row's slowest-to-fastest round factor."""
    return max(r["value"] for r in row["rounds"]) / min(r["value"] for r in row["rounds"])


def _spread(report, backend, rows) -> float:
    """The largest round factor of a backend's ``rows``."""
    return max(_spread_of(row) for row_id, row in report["rows"][backend].items() if row_id in rows)


def _rounds(report):
    return [r for b in report["rows"] for row in report["rows"][b].values() for r in row["rounds"]]


def _best(report):
    return [row for b in report["rows"] for row in report["rows"][b].values()]


def _day_and_clock(stamp: str) -> tuple[str, str]:
    day, clock, *_ = stamp.split()
    return day, clock[:5]


def _against_fastest(report, row_id) -> dict[str, float]:
    """How many times faster than each other backend the fastest one ran ``row_id``."""
    fastest = _fastest(report)
    return {b: _value(report, fastest, row_id) / _value(report, b, row_id)
            for b in _keras_backends(report) if b != fastest}


def _figures(report) -> dict:
    """What the summary and the reading share: the ratios, the fastest and the weakest backends, the loop."""
    backends = _keras_backends(report)
    minimum = _masking_target(report)
    masking = {b: _ratio(report, b, "a", "b") for b in backends}
    many = {b: _ratio(report, b, "d", "d-dense") for b in backends}
    spread = {b: _spread(report, b, set(ROWS)) for b in backends}
    torch_at = _torch_at(report)
    return {"keras_backends": backends, "fastest": _fastest(report), "torch_at": torch_at,
            "loop_rate": _value(report, torch_at, TORCH_ROW) if torch_at else None,
            "minimum": minimum, "masking": masking, "many": many,
            "failing": [b for b in backends if masking[b] < minimum],
            "worst": min(backends, key=many.get), "busiest": max(backends, key=spread.get), "spread": spread,
            "against": _against_fastest(report, "a"), "torch_loop": _loop(report),
            "best_rates": [row["matmul_gflops"] for row in _best(report)],
            "day": _day_and_clock(report["start"]["time"])[0]}


def section(report: dict) -> dict:
    """benchmarks/README.md: the run, its tables, the ranges and the reading."""
    figures = _figures(report)
    machine = report["machine"][report["backends"][0]]
    max_wait = report.get("settings", {}).get(report["backends"][0], {}).get("max_wait")
    best_others = max(row["other_cores"] for row in _best(report))
    busiest, worst, many = figures["busiest"], figures["worst"], figures["many"]
    row = max((r for i, r in report["rows"][busiest].items() if i in ROWS), key=_spread_of)
    ranges = []
    for row_id in [*ROWS, TORCH_ROW]:
        found = [report["rows"].get(b, {}).get(row_id) for b in report["backends"]]
        cells = [[r["value"] for r in found_row["rounds"]] if found_row else [] for found_row in found]
        if any(cells):
            ranges.append({"row": row_id, "cells": cells})
    return {**figures, "report": report, "machine": machine, "kernel": machine["platform"].split("-")[1],
            "start": _day_and_clock(report["start"]["time"])[1], "end": _day_and_clock(report["end"]["time"])[1],
            "max_wait": max_wait if max_wait is not None and max_wait != MAX_WAIT else None,
            "others": max(r["other_cores"] for r in _rounds(report)), "best_others": best_others,
            "quiet_best_rounds": best_others < 0.05, "all_rates": [r["matmul_gflops"] for r in _rounds(report)],
            "tables": side_by_side(report["rows"], report["backends"], list(report.get("errors", {})), markdown=True),
            "rounds": report["rounds"], "ranges": ranges,
            "many_faster": _against_fastest(report, "d").get("tensorflow"),
            "jit": report["rows"][figures["fastest"]]["a"]["jit_compile"],
            # 100 tasks cost much more on one backend than on every other
            "worst_far_behind": many[worst] < 0.8 * min(v for b, v in many.items() if b != worst),
            "worst_faster_at_4_tasks": figures["masking"][worst] > 1,
            "slow_round": min(row["rounds"], key=lambda r: r["value"]),
            "fast_round": max(row["rounds"], key=lambda r: r["value"]),
            "loop_spread": _spread(report, busiest, {TORCH_ROW}) if busiest == figures["torch_at"] else None}


def summary(report: dict) -> dict:
    """docs/topics/backends.md: the headline table and which backend to pick."""
    figures = _figures(report)
    backends = figures["keras_backends"]
    many, worst = figures["many"], figures["worst"]
    return {**figures, "report": report,
            "rate": {row_id: {b: _value(report, b, row_id) for b in backends} for row_id in ("a", "b", "d", "d-dense")},
            "xla": [b for b in backends if report["rows"][b]["a"]["jit_compile"]],
            "no_xla": [b for b in backends if not report["rows"][b]["a"]["jit_compile"]],
            "avoid_worst": many[worst] < 0.8}


def steps_per_execution(report: dict) -> dict:
    """docs/topics/backends.md: what ``steps_per_execution=8`` and XLA buy on TensorFlow (rows a-spe8/xla, a)."""
    rows = {row["id"]: row for row in report["rows"]}
    base, both = rows["a"], rows["a-spe8/xla"]
    used = [base, both, rows["a-spe8"], rows["a/xla"]]
    factor = both["value"] / base["value"]
    machine = report["machine"]
    return {"report": report, "base": base["value"], "both": both["value"], "factor": factor,
            "faster": factor >= 1.05, "slower": factor <= 0.95,
            "spe_alone": rows["a-spe8"]["value"] / base["value"], "xla_alone": rows["a/xla"]["value"] / base["value"],
            "day": machine["time_start"][:10], "load_start": machine["loadavg_start"].split()[0],
            "load_end": machine["loadavg_end"].split()[0], "rates": [row["matmul_gflops"] for row in used],
            "others": max(row["other_cores"] or 0.0 for row in used)}
