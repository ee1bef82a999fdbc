"""What users wait for: whole ``fit`` calls of T named tasks against one plain Keras head.

``python benchmarks/fit_time.py [--backends tensorflow,jax,torch] [--tasks 4,100,1000]
[--trunks small,deep] [--quick] [--json PATH]``

A user who swaps one plain ``Dense(T)`` head for T named keras_mtl tasks
waits for whole ``fit`` calls, first epoch and epoch boundaries included.
This benchmark times exactly that, on each backend (one subprocess per
backend, ``KERAS_BACKEND`` set), for each number of tasks T, each trunk and
with metrics on and off:

* ``keras_mtl``: ``kmtl.MultiTaskModel`` with T binary tasks
  ``kmtl.Task(f"t{i}")``, ``compile(optimizer="adam")`` with its default
  metrics (per-task masked AUC and accuracy) or ``metrics=[]``, fed by
  ``kmtl.data.from_arrays(..., shuffle=True, seed=0)`` with NaN for missing
  labels and ``pack_labels=True`` from 100 tasks on, as the many-tasks page
  advises;
* ``plain``: the same trunk, one ``Dense(T)`` logits head and the stable
  masked logistic loss on the sentinel −1 written in ``keras.ops`` (Σ over
  labelled entries / batch size, keras_mtl's ``normalize="batch"``); with
  metrics, Keras's own ``AUC(multi_label=True, num_labels=T,
  from_logits=True)`` and ``BinaryAccuracy(threshold=0)`` — the same work,
  though they count the sentinel as a label, having no mask; fed by
  ``tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n, seed=0)
  .batch(256).prefetch(AUTOTUNE)`` with tf.data's autotuning off, as
  ``from_arrays`` has it (with it on, PyTorch's and JAX's epochs can end
  hundreds of milliseconds late: ``benchmarks/tfdata_tail.py``).

Trunks: ``small`` is 256 inputs → ``Dense(256, relu)`` (per-step overhead
shows), ``deep`` is 784 → ``Dense(512, relu)`` → ``Dense(256, relu)``. Data:
synthetic examples (a random linear teacher), 30 % of labels missing,
batch 256, Adam, 3 epochs per ``fit``. The number of examples follows the
machine, so that a ``fit`` lasts about as long everywhere and training, not
tracing, fills it: 8,192 per 110 GFLOP/s of a 2048³ matmul measured at the
start (``examples_for``: 8,192 on the slow machines of 67–156 GFLOP/s,
32,768 from 385 GFLOP/s); ``--examples`` fixes it. Each pair runs ``--rounds`` times,
alternating which model goes first; each keeps its shortest ``fit``. Every
row prints the GFLOP/s of a 2048³ ``tf.matmul`` timed just before it, since
machines of this kind differ up to 4× in speed: judge the ratios.

Targets (printed, never asserted): keras_mtl's ``fit`` takes at most
1 / 0.9 of plain Keras's at 100 and 1,000 tasks, at most plain's at 4 tasks,
and its first epoch at most 1.5× plain's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

__all__ = ["FULL", "QUICK", "Settings", "main", "ratios", "table"]

BACKENDS = ("tensorflow", "jax", "torch")
TRUNKS = {"small": (256, (256,)), "deep": (784, (512, 256))}  # inputs, hidden units
SPEED_TARGET = {4: 1.0}  # plain fit time / keras_mtl fit time at least this; 0.9 for other T
FIRST_EPOCH_TARGET = 1.5  # keras_mtl first epoch / plain first epoch at most this


@dataclass(frozen=True)
class Settings:
    """Sizes of a run (see the module docstring)."""

    tasks: tuple[int, ...] = (4, 100, 1000)
    trunks: tuple[str, ...] = ("small", "deep")
    examples: int = 8192
    batch_size: int = 256
    epochs: int = 3
    missing: float = 0.3
    rounds: int = 2
    matmul_size: int = 2048
    seed: int = 0


FULL = Settings()
QUICK = Settings(tasks=(4, 20), trunks=("small",), examples=512, epochs=2, rounds=1, matmul_size=256)
"""Tiny settings that run every row in seconds (the times mean nothing)."""


BASE_EXAMPLES, GFLOPS_PER_BASE, MAX_SCALE = 8192, 110.0, 4


def examples_for(gflops: float) -> int:
    """The examples of a run on a machine whose 2048³ matmul reaches ``gflops``.

    Example:
        >>> [examples_for(g) for g in (67, 156, 300, 525)]
        [8192, 8192, 24576, 32768]
    """
    return BASE_EXAMPLES * max(1, min(MAX_SCALE, round(gflops / GFLOPS_PER_BASE)))


def speed_target(tasks: int) -> float:
    return SPEED_TARGET.get(tasks, 0.9)


# -- one backend (the subprocess) ----------------------------------------------------

def _worker(settings: Settings, output: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf
    from harness import machine_info, matmul_gflops
    from keras import ops

    import keras_mtl as kmtl

    def masked_logistic(y_true, logits):
        # Stable log(1 + e^-|z|) form; entries labelled -1 are missing.
        labelled = ops.greater_equal(y_true, 0.0)
        y = ops.where(labelled, y_true, 0.0)
        entries = ops.relu(logits) - logits * y + ops.log1p(ops.exp(-ops.abs(logits)))
        return ops.sum(ops.where(labelled, entries, 0.0), axis=-1)  # Keras then means over the batch

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends = []

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter())

    def trunk(name):
        inputs_dim, hidden = TRUNKS[name]
        inputs = keras.Input((inputs_dim,), name="x")
        features = inputs
        for i, units in enumerate(hidden):
            features = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(features)
        return inputs, features

    def build(name, trunk_name, count, metrics, x, labels):
        inputs, features = trunk(trunk_name)
        if name == "keras_mtl":
            tasks = [kmtl.Task(f"t{i}") for i in range(count)]
            model = kmtl.MultiTaskModel(inputs, features, tasks)
            model.compile(optimizer="adam", metrics=None if metrics else [])
            columns = {f"t{i}": labels[:, i] for i in range(count)}
            data = kmtl.data.from_arrays(x, columns, tasks, batch_size=settings.batch_size, shuffle=True,
                                         seed=settings.seed, pack_labels=count >= 100)
            return model, data
        model = keras.Model(inputs, keras.layers.Dense(count, name="logits")(features))
        model.compile(optimizer="adam", loss=masked_logistic, metrics=[
            keras.metrics.AUC(multi_label=True, num_labels=count, from_logits=True, name="auc"),
            keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")] if metrics else [])
        sentinel = np.where(np.isnan(labels), np.float32(-1.0), labels)
        data = (tf.data.Dataset.from_tensor_slices((x, sentinel)).shuffle(len(x), seed=settings.seed)
                .batch(settings.batch_size).prefetch(tf.data.AUTOTUNE))
        options = tf.data.Options()
        options.autotune.enabled = False  # as kmtl.data.from_arrays: no wait at the end of epochs
        return model, data.with_options(options)

    def timed_fit(name, trunk_name, count, metrics, x, labels):
        keras.backend.clear_session()
        keras.utils.set_random_seed(settings.seed)
        model, data = build(name, trunk_name, count, metrics, x, labels)
        gflops = matmul_gflops(settings.matmul_size, 1)[0]
        clock = EpochClock()
        start = time.perf_counter()
        history = model.fit(data, epochs=settings.epochs, verbose=0, callbacks=[clock])
        ends = [start, *clock.ends]
        return {"fit_s": ends[-1] - start, "epoch_s": [b - a for a, b in zip(ends[:-1], ends[1:])],
                "gflops": gflops, "loss": [float(v) for v in history.history["loss"]]}

    backend = keras.backend.backend()
    rows = []
    for trunk_name in settings.trunks:
        inputs_dim, _ = TRUNKS[trunk_name]
        rng = np.random.default_rng(settings.seed)
        x = rng.standard_normal((settings.examples, inputs_dim), dtype=np.float32)
        teacher = rng.standard_normal((inputs_dim, max(settings.tasks)), dtype=np.float32)
        complete = (x @ teacher > 0).astype(np.float32)
        all_labels = np.where(rng.random(complete.shape) < settings.missing, np.float32(np.nan), complete)
        # The process's first fit pays for thread pools and kernels: one untimed pair first.
        for name in ("keras_mtl", "plain"):
            timed_fit(name, trunk_name, min(settings.tasks), False, x[:512], all_labels[:512, :min(settings.tasks)])
        for count in settings.tasks:
            labels = all_labels[:, :count]
            for metrics in (True, False):
                best = {}
                for round_ in range(settings.rounds):
                    for name in (("keras_mtl", "plain") if round_ % 2 == 0 else ("plain", "keras_mtl")):
                        run = timed_fit(name, trunk_name, count, metrics, x, labels)
                        if name not in best or run["fit_s"] < best[name]["fit_s"]:
                            best[name] = run
                row = {"backend": backend, "trunk": trunk_name, "tasks": count, "metrics": metrics, **best}
                rows.append(row)
                print("  " + _line(row), flush=True)
    with open(output, "w") as f:
        json.dump({"backend": backend, "machine": machine_info(), "rows": rows}, f, indent=2)


# -- ratios and the table ----------------------------------------------------------------

def ratios(row: dict) -> dict:
    """``speed`` = plain fit / keras_mtl fit (above 1: keras_mtl faster); ``first_epoch`` = keras_mtl /
    plain first epoch; ``met``: both targets reached."""
    speed = row["plain"]["fit_s"] / row["keras_mtl"]["fit_s"]
    first = row["keras_mtl"]["epoch_s"][0] / row["plain"]["epoch_s"][0]
    return {"speed": speed, "first_epoch": first,
            "met": speed >= speed_target(row["tasks"]) and first <= FIRST_EPOCH_TARGET}


def _line(row: dict) -> str:
    r = ratios(row)
    return (f"{row['backend']:<10} {row['trunk']:<5} T={row['tasks']:<5} metrics {'on ' if row['metrics'] else 'off'}"
            f"  fit keras_mtl {row['keras_mtl']['fit_s']:6.2f} s, plain {row['plain']['fit_s']:6.2f} s:"
            f" {r['speed']:.3f}× (target ≥ {speed_target(row['tasks']):.1f}); first epoch {r['first_epoch']:.3f}×"
            f" (≤ {FIRST_EPOCH_TARGET}); matmul {row['keras_mtl']['gflops']:.0f}/{row['plain']['gflops']:.0f}"
            f" GFLOP/s; {'met' if r['met'] else 'MISSED'}")


def table(rows: Sequence[dict]) -> str:
    """A Markdown table of every row: times, ratios, targets and the matmul rates."""
    lines = ["| backend | trunk | tasks | metrics | keras_mtl fit (s) | plain fit (s) | speed | first epoch "
             "| matmul GFLOP/s | targets |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        r = ratios(row)
        lines.append(
            f"| {row['backend']} | {row['trunk']} | {row['tasks']:,} | {'on' if row['metrics'] else 'off'} "
            f"| {row['keras_mtl']['fit_s']:.2f} | {row['plain']['fit_s']:.2f} | {r['speed']:.3f}× "
            f"| {r['first_epoch']:.3f}× | {row['keras_mtl']['gflops']:.0f} / {row['plain']['gflops']:.0f} "
            f"| {'met' if r['met'] else 'missed'} |")
    return "\n".join(lines)


# -- the command ---------------------------------------------------------------------------

def _parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated Keras backends")
    parser.add_argument("--tasks", help="comma-separated task counts (default 4,100,1000)")
    parser.add_argument("--trunks", help="comma-separated trunks: small, deep (default both)")
    parser.add_argument("--rounds", type=int, help="runs of each pair, alternating order (default 2)")
    parser.add_argument("--examples", type=int,
                        help="training examples (default: 8,192 per 110 GFLOP/s of this machine's matmul, ≤ 32,768)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, times mean nothing")
    parser.add_argument("--json", help="write the rows and the machine here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one backend, rows to this file
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.backends.split(",")) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
    if args.trunks and set(args.trunks.split(",")) - set(TRUNKS):
        parser.error(f"unknown trunk(s) in {args.trunks!r}; choose from {sorted(TRUNKS)}")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.examples is not None and args.examples < 1:
        parser.error("--examples must be at least 1")
    return args


def main(argv=None) -> int:
    args = _parse(argv)
    if args.worker:
        _worker(Settings(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in json.loads(args.settings).items()}), args.worker)
        return 0
    settings = QUICK if args.quick else FULL
    if args.tasks:
        settings = replace(settings, tasks=tuple(int(t) for t in args.tasks.split(",")))
    if args.trunks:
        settings = replace(settings, trunks=tuple(args.trunks.split(",")))
    if args.rounds:
        settings = replace(settings, rounds=args.rounds)
    if args.examples:
        settings = replace(settings, examples=args.examples)
    elif not args.quick:
        from harness import matmul_gflops

        gflops = matmul_gflops(FULL.matmul_size, 3)[0]
        settings = replace(settings, examples=examples_for(gflops))
        print(f"matmul {gflops:.0f} GFLOP/s: {settings.examples:,} examples", flush=True)
    rows, machines = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            out = os.path.join(folder, f"{backend}.json")
            env = {**os.environ, "KERAS_BACKEND": backend}
            print(f"{backend}:", flush=True)
            done = subprocess.run([sys.executable, __file__, "--worker", out, "--settings",
                                   json.dumps(asdict(settings))], env=env, cwd=os.path.dirname(__file__))
            if done.returncode != 0:
                print(f"{backend}: the worker failed (exit {done.returncode})", file=sys.stderr)
                return done.returncode
            with open(out) as f:
                report = json.load(f)
            rows += report["rows"]
            machines[backend] = report["machine"]
    print()
    print(table(rows))
    missed = [r for r in rows if not ratios(r)["met"]]
    print(f"\n{len(rows) - len(missed)} of {len(rows)} rows meet the targets.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": asdict(settings), "rows": rows, "machines": machines,
                       "table_markdown": table(rows)}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
