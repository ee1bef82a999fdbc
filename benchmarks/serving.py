"""Serving latency: the exported ``serving_default`` against the Keras model.

For two models —

* ``street_cnn``: the street-scenes CNN of ``keras-mtl demo``
  (:func:`keras_mtl.demo.build_street_model`, input 64×64×3, 4 binary tasks);
* ``mlp``: an MLP trunk 784→512→256 (relu) with 4 binary task heads —

and batch sizes 1 and 256, this script times, in one process:

* ``saved_model``: the ``serving_default`` signature of the SavedModel
  written by :func:`keras_mtl.export_saved_model` and loaded back with
  ``tf.saved_model.load`` (what TF Serving runs, minus its RPC layer);
* ``keras_call``: ``model(x, training=False)``, an eager Keras call;
* ``predict_on_batch``: ``model.predict_on_batch(x)`` (a compiled
  ``tf.function`` predict step; returns NumPy arrays).

Each case is warmed up (tracing included there), then called ``--calls``
times; the table shows the median (p50) and 99th percentile (p99) latency
of one call in milliseconds and the throughput at the median. Inputs are
``tf.Tensor`` objects made beforehand, so host-to-tensor conversion is not
timed. Results are printed and written as JSON, with the time, load average and
``tf.matmul`` rate at the start and end; the README's serving figures come
from ``benchmarks/results/serving.json`` (``python benchmarks/prose.py``).

Example:
    ``python benchmarks/serving.py --calls 200 --output benchmarks/results/serving.json``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from harness import matmul_gflops  # noqa: E402
from load import now  # noqa: E402

import keras_mtl as kmtl  # noqa: E402
from keras_mtl.demo import build_street_model  # noqa: E402

BATCH_SIZES = (1, 256)
METHODS = ("saved_model", "keras_call", "predict_on_batch")


def build_mlp() -> kmtl.MultiTaskModel:
    """The MLP trunk 784→512→256 (relu) with four binary task heads."""
    inputs = keras.Input((784,), name="x")
    x = keras.layers.Dense(512, activation="relu", name="dense1")(inputs)
    features = keras.layers.Dense(256, activation="relu", name="dense2")(x)
    tasks = [kmtl.Task(f"task_{i}") for i in range(4)]
    return kmtl.MultiTaskModel(inputs, features, tasks, name="mlp")


MODELS = {
    "street_cnn": (lambda: build_street_model(image_size=64), (64, 64, 3), 255.0),
    "mlp": (build_mlp, (784,), 1.0),
}


def time_calls(fn, calls: int, warmup: int) -> np.ndarray:
    """Seconds taken by each of ``calls`` calls of ``fn``, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    seconds = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        fn()
        seconds[i] = time.perf_counter() - start
    return seconds


def _methods(model, serving, feed: dict) -> dict:
    """The three ways of running ``model`` on ``feed``, as argument-free calls."""
    (x,) = feed.values()
    return {
        "saved_model": lambda: serving(**feed),
        "keras_call": lambda: model(x, training=False),
        "predict_on_batch": lambda: model.predict_on_batch(x),
    }


def loadavg() -> list[float] | None:
    try:
        return [float(v) for v in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def wait_until_quiet(threshold: float, timeout: float = 1800.0):
    """Sleeps until the 1-minute load average is below ``threshold`` (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        load = loadavg()
        if load is None or load[0] < threshold:
            return
        time.sleep(10)
    print(f"warning: load average still {loadavg()} after {timeout:.0f} s; running anyway")


def run(models, batch_sizes, calls: int, warmup: int, log=print) -> list[dict]:
    """Times every method on every model and batch size; returns the rows."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            build, shape, scale = MODELS[name]
            keras.utils.set_random_seed(0)
            model = build()
            model.compile()  # predict_on_batch needs a compiled model
            path = kmtl.export_saved_model(model, os.path.join(tmp, name, "1"))
            serving = tf.saved_model.load(str(path)).signatures["serving_default"]
            input_name = model.inputs[0].name
            rng = np.random.default_rng(0)
            for batch in batch_sizes:
                x = tf.constant(rng.uniform(0, scale, size=(batch, *shape)).astype("float32"))
                # The three methods give the same numbers: check before timing.
                served = serving(**{input_name: x})
                called = model(x, training=False)
                predicted = model.predict_on_batch(x)
                for task in model.task_names:
                    np.testing.assert_allclose(served[task].numpy(), called[task].numpy(), atol=1e-5)
                    np.testing.assert_allclose(predicted[task], called[task].numpy(), atol=1e-5)
                for method, fn in _methods(model, serving, {input_name: x}).items():
                    seconds = time_calls(fn, calls, warmup)
                    p50, p99 = np.percentile(seconds, [50, 99]) * 1e3
                    row = {"model": name, "batch": batch, "method": method, "calls": calls,
                           "p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3),
                           "mean_ms": round(float(seconds.mean() * 1e3), 3),
                           "examples_per_s_at_p50": round(batch / (p50 / 1e3), 1),
                           "loadavg": loadavg()}
                    rows.append(row)
                    log(f"  {name:<11} batch {batch:>3}  {method:<17} p50 {p50:8.3f} ms  p99 {p99:8.3f} ms")
    return rows


def table(rows: list[dict]) -> str:
    """The rows as a fixed-width text table."""
    lines = [f"{'model':<11} {'batch':>5}  {'method':<17} {'p50 ms':>9} {'p99 ms':>9} {'examples/s':>11}"]
    for row in rows:
        lines.append(f"{row['model']:<11} {row['batch']:>5}  {row['method']:<17} {row['p50_ms']:>9.3f} "
                     f"{row['p99_ms']:>9.3f} {row['examples_per_s_at_p50']:>11.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per case (default: 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first (default: 20)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)),
                        help="comma-separated batch sizes (default: 1,256)")
    parser.add_argument("--output", default="serving.json", help="JSON results file")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="LOAD",
                        help="first wait (up to 30 min) until the 1-minute load average is below LOAD")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]

    if args.wait_quiet is not None:
        wait_until_quiet(args.wait_quiet)
    started = loadavg()
    start = {**now(), "matmul_gflops": round(matmul_gflops(2048, 3)[0], 1)}
    print(f"Serving latency, {args.calls} calls per case after {args.warmup} warm-up calls "
          f"(load average {started})")
    rows = run(models, batch_sizes, args.calls, args.warmup)
    end = {**now(), "matmul_gflops": round(matmul_gflops(2048, 3)[0], 1)}
    print()
    print(table(rows))
    result = {
        "rows": rows,
        "start": start, "end": end,  # UTC time, load average and float32 2048³ matmul GFLOP/s
        "settings": {"calls": args.calls, "warmup": args.warmup, "models": models,
                     "batch_sizes": batch_sizes},
        "environment": {"python": platform.python_version(), "tensorflow": tf.__version__,
                        "keras": keras.__version__, "keras_mtl": kmtl.__version__,
                        "cpus": os.cpu_count(), "loadavg_start": started, "loadavg_end": loadavg()},
    }
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nWrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
