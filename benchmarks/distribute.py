"""Throughput of keras_mtl training with 1 and 2 worker processes on this machine.

``python benchmarks/distribute.py [--steps 20] [--epochs 3] [--output bench_results]``

Rows (same model, data and global batch in every row):

* ``single``: one process, no strategy (plain ``model.fit``);
* ``1 worker``: one process under ``MultiWorkerMirroredStrategy`` (``TF_CONFIG``
  with one worker);
* ``2 workers``: two processes on localhost under
  ``MultiWorkerMirroredStrategy``, each training on half of every global
  batch (``AutoShardPolicy.DATA``) and all-reducing gradients over gRPC.

Network as in ``benchmarks/README.md``: 784 → Dense(512) → Dense(256) → 4
binary heads, 30 % missing labels, global batch 256, Adam. Each row trains
one untimed epoch (tracing), then ``--epochs`` timed epochs of ``--steps``
steps; examples/s is the median epoch's rate, from the chief's callback.
On a 2-core machine two workers share the cores each would use alone, so
no speed-up is expected; the benchmark measures what the distribution costs.
Prints a table and writes ``distribute.json`` (with the time, load average and
``tf.matmul`` rate at the start and end); ``--json`` writes
``benchmarks/results/distribute.json`` instead, the file the README's figures
come from (``python benchmarks/prose.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import version

BATCH = 256
FEATURES = 784
TASKS = ["pedestrian", "car", "stop_sign", "traffic_light"]


def _worker(args):
    """Runs in a subprocess: trains and writes its epoch times as JSON."""
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_mtl as kmtl

    strategy = tf.distribute.MultiWorkerMirroredStrategy() if args.strategy else None
    rng = np.random.default_rng(0)
    n = BATCH * args.steps
    x = rng.normal(size=(n, FEATURES)).astype("float32")
    projection = rng.normal(size=(FEATURES, len(TASKS))).astype("float32")
    labels = {}
    for j, name in enumerate(TASKS):
        y = (x @ projection[:, j] > 0).astype("float32")
        y[rng.random(n) < 0.3] = np.nan
        labels[name] = y
    tasks = [kmtl.Task(name) for name in TASKS]
    data = kmtl.data.from_arrays(x, labels, tasks, batch_size=BATCH, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = data.with_options(options)

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)
            losses.append(float(logs["loss"]))

    times, losses = [], []
    keras.utils.set_random_seed(0)
    with strategy.scope() if strategy else contextlib.nullcontext():
        inputs = keras.Input((FEATURES,), name="x")
        hidden = keras.layers.Dense(512, activation="relu")(inputs)
        features = keras.layers.Dense(256, activation="relu")(hidden)
        model = kmtl.MultiTaskModel(inputs, features, tasks)
        model.compile(optimizer="adam")
    model.fit(data, epochs=1 + args.epochs, callbacks=[Timer()], verbose=0)
    result = {"epoch_seconds": times, "losses": losses,
              "replicas": strategy.num_replicas_in_sync if strategy else 1}
    with open(args.result, "w") as f:
        json.dump(result, f)
    sys.stdout.flush()
    os._exit(0)  # skip collective-executor teardown, which can block at exit


def _run_row(workers, strategy, args, out_dir, name):
    """Launches ``workers`` processes; returns the chief's result and wall time."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    from keras_mtl.distribute import local_tf_configs

    configs = local_tf_configs(workers)
    processes, results = [], []
    start = time.perf_counter()
    for index in range(workers):
        result = os.path.join(out_dir, f"distribute_{name}_{index}.json")
        results.append(result)
        worker_env = dict(env)
        if strategy:
            worker_env["TF_CONFIG"] = configs[index]
        command = [sys.executable, __file__, "--worker", "--result", result, "--steps", str(args.steps),
                   "--epochs", str(args.epochs)] + (["--strategy"] if strategy else [])
        processes.append(subprocess.Popen(command, env=worker_env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    for process in processes:
        try:
            out, _ = process.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise SystemExit(f"row {name!r}: a worker did not finish within {args.timeout} s") from None
        if process.returncode != 0:
            raise SystemExit(f"row {name!r} failed:\n{out[-3000:]}")
    wall = time.perf_counter() - start
    found = []
    for result in results:
        with open(result) as f:
            found.append(json.load(f))
        os.remove(result)
    return found, wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="global batches per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after one untimed)")
    parser.add_argument("--output", default="bench_results")
    parser.add_argument("--json", action="store_true",
                        help="write benchmarks/results/distribute.json (the README's figures) instead")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)

    from harness import matmul_gflops
    from load import now

    if args.json:
        args.output = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(args.output, exist_ok=True)
    start = {**now(), "matmul_gflops": round(matmul_gflops(2048, 3)[0], 1)}
    rows = []
    for name, workers, strategy in (("single", 1, False), ("1 worker", 1, True), ("2 workers", 2, True)):
        found, wall = _run_row(workers, strategy, args, args.output, name.replace(" ", "_"))
        chief = found[0]
        timed = chief["epoch_seconds"][1:]
        epoch = statistics.median(timed)
        rows.append({
            "row": name, "processes": workers, "replicas": chief["replicas"],
            "examples_per_s": BATCH * args.steps / epoch,
            "first_epoch_s": chief["epoch_seconds"][0],
            "epoch_seconds": chief["epoch_seconds"], "wall_s": wall,
            "final_loss": [w["losses"][-1] for w in found],
        })
    end = {**now(), "matmul_gflops": round(matmul_gflops(2048, 3)[0], 1)}
    base = rows[0]["examples_per_s"]
    one_worker = rows[1]["examples_per_s"]
    for row in rows:
        row["ratio_vs_single"] = row["examples_per_s"] / base
        row["ratio_vs_1_worker"] = row["examples_per_s"] / one_worker

    header = ("| row | processes | replicas | examples/s | vs single | vs 1 worker | first epoch (s) "
              "| final loss per worker |")
    print(header)
    print("|" + "---|" * 8)
    for row in rows:
        losses = ", ".join(f"{v:.4f}" for v in row["final_loss"])
        print(f"| {row['row']} | {row['processes']} | {row['replicas']} | {row['examples_per_s']:,.0f} "
              f"| {row['ratio_vs_single']:.2f} | {row['ratio_vs_1_worker']:.2f} | {row['first_epoch_s']:.1f} "
              f"| {losses} |")
    report = {
        "rows": rows,
        "start": start, "end": end,  # UTC time, load average and float32 2048³ matmul GFLOP/s
        "config": {"global_batch": BATCH, "steps_per_epoch": args.steps, "timed_epochs": args.epochs,
                   "network": "784-512-256, 4 binary heads, 30% missing", "optimizer": "adam",
                   "auto_shard_policy": "DATA"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average": os.getloadavg(),
                    "versions": {pkg: version(pkg) for pkg in ("tensorflow", "keras", "keras-mtl")}},
    }
    path = os.path.join(args.output, "distribute.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
