"""Figures of ``benchmarks/results/many_tasks.json`` (``benchmarks/many_tasks.py``): docs and benchmarks README."""

from __future__ import annotations

from many_tasks import side_by_side


def _measurements(report: dict) -> list[dict]:
    """Every timed measurement of every round (keras_mtl, plain, pipelines, ...)."""
    return [m for rounds in report["raw"].values() for r in rounds for row in r.get("rows", {}).values()
            for m in row.values() if isinstance(m, dict) and "matmul_gflops" in m]


def _busy(report: dict) -> int:
    """How many measurements ran while other processes used more than the quiet share of the cores."""
    return sum(m["other_cores"] is not None and m["other_cores"] > report["settings"]["quiet_cores"]
               for m in _measurements(report))


def _first_load(stamp: dict) -> str:
    """The 1-minute load average of a start or end stamp."""
    return stamp["loadavg"].split()[0]


def summary(report: dict) -> dict:
    """docs/topics/many_tasks.md: many named tasks against one fused head, per backend."""
    targets = {(t["backend"], t["tasks"], t["ratio"]): t["value"] for t in report["targets"]}
    return {"report": report, "day": report["start"]["time"][:10], "settings": report["settings"],
            "load_start": _first_load(report["start"]), "load_end": _first_load(report["end"]),
            "ratio": {b: {t: {kind: targets[(b, t, kind)] for kind in ("steady", "first_epoch")}
                          for t in report["tasks"]} for b in report["backends"]},
            "missed": [t for t in report["targets"] if not t["met"]], "quiet": _busy(report) == 0}


def section(report: dict) -> dict:
    """benchmarks/README.md: when and how the run was made, how busy the machine was, and the table."""
    machine = report["machine"][report["backends"][0]]
    measured = _measurements(report)
    busy = _busy(report)
    failed = [b for b in report["backends"] if b not in report["results"]]
    return {"report": report, "machine": machine, "start": report["start"]["time"], "end": report["end"]["time"],
            "cpu": " ".join(machine["cpu"].replace("(R)", "").split()[:2]),
            "load_start": _first_load(report["start"]), "load_end": _first_load(report["end"]),
            "peak": max(float(m["loadavg"].split()[0]) for m in measured), "measured": len(measured),
            "busy": busy, "quiet": busy == 0, "rates": [m["matmul_gflops"] for m in measured if m["matmul_gflops"]],
            "table": side_by_side(report["results"], failed, markdown=True)}


def _round_ratios(report: dict, backend: str, tasks: str) -> list[float]:
    return [r["rows"][tasks]["keras_mtl"]["value"] / r["rows"][tasks]["plain"]["value"]
            for r in report["raw"][backend]]


def _busy_against_quiet(results: dict, tasks: str) -> dict | None:
    """A best round measured busy against one measured quiet, at ``tasks`` tasks (else ``None``)."""
    mine, plain = results[tasks]["keras_mtl"], results[tasks]["plain"]
    busy, quiet = sorted((mine, plain), key=lambda r: r["other_cores"], reverse=True)
    if busy["other_cores"] > 0.5 and quiet["other_cores"] < 0.1:
        return {"tasks": int(tasks), "busy_is_keras_mtl": busy is mine, "busy": busy, "quiet": quiet}
    return None


def _backend(report: dict, backend: str) -> dict:
    """One backend's figures: ratios at the fewest and the most tasks, targets missed, and the noise."""
    results = report["results"][backend]
    few, many = sorted(results, key=int)[0], sorted(results, key=int)[-1]
    mode = results[many]["ratios"]["pipeline_mode"]
    other = "graph" if mode == "numpy" else "numpy"
    plain_epochs = [v for r in report["raw"][backend] for v in r["rows"][many]["plain"]["steady"]]
    return {"few": int(few), "many": int(many), "ratio": {int(t): results[t]["ratios"] for t in (few, many)},
            "rounds": [_round_ratios(report, backend, t) for t in (few, many)],
            "first_epoch_s": {side: results[many][side]["first_epoch_s"] for side in ("keras_mtl", "plain")},
            "missed": [t for t in report["targets"] if t["backend"] == backend and t["met"] is False],
            "mode": mode, "other": other,
            "other_pipeline": (results[many]["pipeline"][other]["value"] / results[many]["keras_mtl"]["value"]
                               if other in results[many]["pipeline"] else None),
            "busy_rounds": [c for c in (_busy_against_quiet(results, t) for t in (few, many)) if c],
            "plain_epochs": plain_epochs if max(plain_epochs) > 5 * min(plain_epochs) else None,
            "beaten": sum(r["rows"][t]["keras_mtl_metrics"]["value"] > r["rows"][t]["keras_mtl"]["value"]
                          for r in report["raw"][backend] for t in (few, many)),
            "measurements": 2 * len(report["raw"][backend])}


def reading(report: dict) -> dict:
    """benchmarks/README.md: per backend, the targets met or missed and what the rounds show."""
    results = report["results"]
    most = str(max(int(t) for t in report["tasks"]))
    return {"tasks": report["tasks"], "most": int(most),
            "backends": {b: _backend(report, b) for b in report["backends"] if b in results},
            "pipelines": [m["value"] / 1e6 for b in results.values() for t in b.values()
                          for m in t["pipeline"].values()],
            "above_plain": all(max(m["value"] for m in b[most]["pipeline"].values())
                               > b[most]["plain_pipeline"]["graph"]["value"] for b in results.values())}
