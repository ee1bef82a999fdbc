"""Figures of ``benchmarks/results/serving.json`` and ``distribute.json``: the serving and distributed-training pages.

``python benchmarks/serving.py --calls 200 --output benchmarks/results/serving.json`` and
``python benchmarks/distribute.py --json`` write them; both stamp the start
and the end of the run with the UTC time, the load average and the float32
2048³ ``tf.matmul`` rate.
"""

from __future__ import annotations


def _machine(report: dict, cores: int) -> dict:
    """The machine during a run, from its start and end stamps: loads, matmul rates, and whether it was overloaded."""
    start, end = report["start"], report["end"]
    loads = [float(stamp["loadavg"].split()[0]) for stamp in (start, end)]
    return {"cores": cores, "day": start["time"][:10], "loads": loads, "overloaded": max(loads) > cores,
            "rates": [start["matmul_gflops"], end["matmul_gflops"]]}


def serving(report: dict) -> dict:
    """docs/topics/serving.md: the latency table of the exported signature against Keras, and which to serve."""
    settings = report["settings"]
    rows = {(r["model"], r["batch"], r["method"]): r for r in report["rows"]}
    cases = [(m, b) for m in settings["models"] for b in settings["batch_sizes"]]
    against_predict = [rows[m, b, "saved_model"]["p50_ms"] / rows[m, b, "predict_on_batch"]["p50_ms"] for m, b in cases]
    latency = {}  # {model: {batch: {method: row}}}
    for (model, batch, method), row in rows.items():
        latency.setdefault(model, {}).setdefault(batch, {})[method] = row
    smallest = min(settings["batch_sizes"])
    eager = [rows[m, smallest, "keras_call"]["p50_ms"] / rows[m, smallest, "saved_model"]["p50_ms"]
             for m in settings["models"]]
    return {"settings": settings, "machine": _machine(report, report["environment"]["cpus"]),
            "latency": latency,
            "against_predict": against_predict, "as_fast_as_predict": max(against_predict) <= 1.1,
            "slower_than_predict": min(against_predict) >= 1.1, "smallest": smallest, "eager": eager,
            "faster_than_eager": min(eager) > 1,
            "faster_everywhere": all(rows[m, b, "saved_model"]["p50_ms"] < rows[m, b, "keras_call"]["p50_ms"]
                                     for m, b in cases)}


def distribute(report: dict) -> dict:
    """docs/topics/distributed.md: throughput of one process, one worker and two workers, and the reading."""
    two = next(r for r in report["rows"] if r["processes"] == 2)
    losses = [v for row in report["rows"] for v in row["final_loss"]]
    return {"config": report["config"], "rows": report["rows"],
            "machine": _machine(report, report["machine"]["cpus"]),
            "loss_gap": max(losses) - min(losses), "same_loss": max(losses) - min(losses) < 1e-3,
            "two": two, "two_faster": two["ratio_vs_single"] >= 1}
