"""docs/topics/serving.md and distributed.md figures of ``benchmarks/results/serving.json`` and ``distribute.json``.

``python benchmarks/serving.py --calls 200 --output benchmarks/results/serving.json`` and
``python benchmarks/distribute.py --json`` write them; both stamp the start
and the end of the run with the UTC time, the load average and the float32
2048³ ``tf.matmul`` rate.
"""

from __future__ import annotations

from prose_text import span, wrap

MODELS = {"street_cnn": ("street-scenes CNN (`build_street_model()`)", "street-scenes CNN"),
          "mlp": ("MLP 784→512→256, 4 tasks", "MLP 784→512→256, 4 tasks")}
METHODS = (("saved_model", "`serving_default` (SavedModel)"), ("keras_call", "`model(x)` (eager Keras)"),
           ("predict_on_batch", "`model.predict_on_batch(x)`"))


def _load(stamp: dict) -> float:
    return float(stamp["loadavg"].split()[0])


def _busy(report: dict, cores: int) -> str:
    """The machine's state during a run, in words, from its start and end stamps."""
    start, end = report["start"], report["end"]
    loads = f"load average {_load(start):.1f} at the start and {_load(end):.1f} at the end"
    rates = f"matmul {start['matmul_gflops']:.0f} and {end['matmul_gflops']:.0f} GFLOP/s"
    if max(_load(start), _load(end)) > cores:
        return (f"other jobs running: {loads}, above its {cores} cores, {rates} — slow and rough in absolute "
                "terms, only the ratios carry over")
    return f"{loads}, {rates}"


def _p50(report, model, batch, method) -> float:
    return next(r["p50_ms"] for r in report["rows"]
                if r["model"] == model and r["batch"] == batch and r["method"] == method)


def serving_summary(report: dict) -> str:
    """docs/topics/serving.md: the latency table of the exported signature against Keras, and which to serve."""
    settings, environment = report["settings"], report["environment"]
    cores = environment["cpus"]
    lines = [wrap(f"Latency of one call, in milliseconds (`python benchmarks/serving.py`; {cores}-core development "
                  f"machine, {report['start']['time'][:10]}, {_busy(report, cores)}; p50 / p99 over "
                  f"{settings['calls']} calls after {settings['warmup']} warm-up calls):"), "",
             "| model, batch | " + " | ".join(label for _, label in METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for model in settings["models"]:
        for i, batch in enumerate(settings["batch_sizes"]):
            cells = []
            for method, _ in METHODS:
                row = next(r for r in report["rows"]
                           if r["model"] == model and r["batch"] == batch and r["method"] == method)
                cells.append(f"{row['p50_ms']:.2f} / {row['p99_ms']:.2f}")
            lines.append(f"| {MODELS[model][min(i, 1)]}, {batch} | " + " | ".join(cells) + " |")

    cases = [(m, b) for m in settings["models"] for b in settings["batch_sizes"]]
    against_predict = [_p50(report, m, b, "saved_model") / _p50(report, m, b, "predict_on_batch") for m, b in cases]
    smallest = min(settings["batch_sizes"])
    eager = [_p50(report, m, smallest, "keras_call") / _p50(report, m, smallest, "saved_model")
             for m in settings["models"]]
    everywhere = all(_p50(report, m, b, "saved_model") < _p50(report, m, b, "keras_call") for m, b in cases)
    if max(against_predict) <= 1.1:
        predict = "as fast as Keras's compiled predict step or faster"
    elif min(against_predict) >= 1.1:
        predict = "slower than Keras's compiled predict step"
    else:
        predict = "about as fast as Keras's compiled predict step"
    text = (f"The exported signature is {predict} (median {span(against_predict, unit='×')} its time) and "
            + (f"{span(eager, '{:.0f}', '×')} faster than an eager call at batch {smallest}" if min(eager) > 1 else
               f"not faster than an eager call at batch {smallest} ({span(eager, unit='×')})")
            + ("; serve the SavedModel, not `model(x)`." if everywhere else "."))
    return "\n".join(lines) + "\n\n" + wrap(text) + "\n"


ROWS = {"single": "one process, no strategy", "1 worker": "one worker (`MultiWorkerMirroredStrategy`)",
        "2 workers": "two workers"}


def distribute_summary(report: dict) -> str:
    """docs/topics/distributed.md: throughput of one process, one worker and two workers, and the reading."""
    config, cores = report["config"], report["machine"]["cpus"]
    lines = [wrap(f"Measured on the {cores}-core development machine ({report['start']['time'][:10]}, global batch "
                  f"{config['global_batch']}, {config['steps_per_epoch']} steps × {config['timed_epochs']} timed "
                  f"epochs, {_busy(report, cores)}):"), "",
             "| run | examples/s | vs one process | final loss |", "|---|---|---|---|"]
    for row in report["rows"]:
        losses = [f"{v:.4f}" for v in row["final_loss"]]
        loss = losses[0] + (" on both" if len(set(losses)) == 1 and len(losses) == 2 else "") \
            if len(set(losses)) == 1 else " / ".join(losses)
        lines.append(f"| {ROWS.get(row['row'], row['row'])} | {row['examples_per_s']:,.0f} | "
                     f"{row['ratio_vs_single']:.2f} | {loss} |")
    every = [v for row in report["rows"] for v in row["final_loss"]]
    two = next(r for r in report["rows"] if r["processes"] == 2)
    same = (f"Every run reaches the same loss (within {max(every) - min(every):.4f})"
            if max(every) - min(every) < 1e-3 else
            f"The final losses differ by up to {max(every) - min(every):.4f}")
    if two["ratio_vs_single"] < 1:
        text = (f"{same}; two workers ran at {two['ratio_vs_single']:.2f}× one process: on this machine the second "
                "worker only adds contention and a gRPC all-reduce per step, so use several workers to add "
                "machines, not on one machine.")
    else:
        text = f"{same}; two workers ran {two['ratio_vs_single']:.2f}× as fast as one process."
    return "\n".join(lines) + "\n\n" + wrap(text) + "\n"

