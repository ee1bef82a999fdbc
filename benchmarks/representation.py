"""The cost of per-task gradients: of the shared parameters, or of the shared representation.

Every gradient aggregator of ``kmtl.balancing`` with ``wrt="parameters"``
(the per-task gradients of every trunk variable: one batched backward pass
through the whole network) and with ``wrt="representation"`` (the per-task
gradients of the trunk's output: a batched pass through the heads, then one
ordinary backward pass into the trunk), timed against ``FixedWeights``
(Keras's own training step) on the same model, data and backend:

* ``multi_mnist`` — benchmarks/balancing.py's LeNet-style CNN, 2 tasks,
  batch 128 (2,048 images);
* ``mlp_10`` — the backends benchmark's MLP (784→512→256), 10 binary tasks
  with 30 % of the labels missing, batch 256 (8,192 examples).

Each configuration is trained for ``--epochs`` epochs; its time per step is
the median over the epochs after the first (tracing excluded), the best of
``--rounds`` interleaved rounds. The machine's 2048³ matmul rate is measured
before and after. Prints a table and writes ``<output>/representation.json``.

Example:
    ``python benchmarks/representation.py --output benchmarks/results``
    ``KERAS_BACKEND=jax python benchmarks/representation.py --quick``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from balancing import MultiMnist, StepTimer, matmul_gflops  # noqa: E402
from harness import Settings, make_data, task_names, trunk  # noqa: E402

import keras_mtl as kmtl  # noqa: E402
from keras_mtl.balancing import _STRATEGIES, GradientAggregator  # noqa: E402

AGGREGATORS = [name for name, cls in _STRATEGIES.items() if issubclass(cls, GradientAggregator)]


def multi_mnist(examples):
    task_set = MultiMnist()
    (x, y), _ = task_set.data(examples, 16)
    return task_set.trunk, task_set.tasks(), x, y, 128


def mlp_10(examples):
    settings = Settings(steps=max(examples // 256, 1), many_tasks=10)
    data = make_data(settings)
    names = task_names(10)
    labels = data.labels(10)
    return (lambda: trunk(settings)), [kmtl.Task(n) for n in names], data.x, dict(zip(names, labels.T)), 256


CONFIGS = {"multi_mnist": (multi_mnist, 2048), "mlp_10": (mlp_10, 8192)}


def step_seconds(config, strategy, wrt, epochs, scale):
    """Median seconds per training step of one configuration, epochs after the first."""
    build, tasks, x, y, batch = config
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = kmtl.MultiTaskModel(*build(), tasks)
    balancing = _STRATEGIES[strategy](**({} if wrt is None else {"wrt": wrt}))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), balancing=balancing, metrics=[])
    n = max(int(len(x) * scale) // batch, 2) * batch
    data = kmtl.data.from_arrays(x[:n], {k: v[:n] for k, v in y.items()}, model, batch_size=batch)
    timer = StepTimer()
    model.fit(data, epochs=epochs, verbose=0, callbacks=[timer])
    return timer.median_step()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="an eighth of the data, 2 epochs, 1 round")
    parser.add_argument("--output", default="bench_results")
    args = parser.parse_args(argv)
    epochs, rounds, scale = (2, 1, 0.125) if args.quick else (args.epochs, args.rounds, 1.0)
    rate_before = matmul_gflops()
    configs = {name: make(examples) for name, (make, examples) in CONFIGS.items()}
    runs = [("FixedWeights", None)] + [(s, w) for s in AGGREGATORS for w in ("parameters", "representation")]
    best = {}
    for round_ in range(rounds):
        for name, config in configs.items():
            for strategy, wrt in runs:
                seconds = step_seconds(config, strategy, wrt, epochs, scale)
                key = (name, strategy, wrt)
                best[key] = min(best.get(key, np.inf), seconds)
                print(f"round {round_ + 1} {name:12s} {strategy:14s} {wrt or '':15s} {1e3 * seconds:8.2f} ms",
                      flush=True)
    rate_after = matmul_gflops()
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "backend": keras.backend.backend(), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "loadavg_end": list(os.getloadavg()),
        "matmul_gflops": [rate_before, rate_after], "epochs": epochs, "rounds": rounds, "quick": args.quick,
        "step_ms": {name: {strategy if wrt is None else f"{strategy}:{wrt}": 1e3 * best[(name, strategy, wrt)]
                           for strategy, wrt in runs} for name in configs},
    }
    print(f"\n{keras.backend.backend()}: matmul {rate_before:.0f} / {rate_after:.0f} GFLOP/s (before / after), "
          f"load average at the end {os.getloadavg()[0]:.1f}; time per step ÷ FixedWeights")
    print(f"| strategy | {' | '.join(f'{n}: parameters | {n}: representation | {n}: ratio' for n in configs)} |")
    for strategy in AGGREGATORS:
        cells = []
        for name in configs:
            times = result["step_ms"][name]
            base = times["FixedWeights"]
            p, r = times[f"{strategy}:parameters"], times[f"{strategy}:representation"]
            cells += [f"{p / base:.2f}", f"{r / base:.2f}", f"{p / r:.2f}"]
        print(f"| {strategy} | {' | '.join(cells)} |")
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "representation.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
