"""The benchmark rows of one Keras backend: keras_mtl against plain Keras.

``python benchmarks/run.py`` runs this module under the backend of the
process (``KERAS_BACKEND``; ``--backend`` sets it) and trains, on one
synthetic data set, an MLP trunk (784→512→256, relu, batch 256) with

* (a) keras_mtl, 4 binary tasks with 30 % of the labels missing;
* (b) plain Keras, 4 named ``Dense(1, sigmoid)`` outputs and unmasked
  ``BinaryCrossentropy`` on fully labelled data, with the same metrics
  (AUC and binary accuracy per output); (b') without metrics;
* (c) plain Keras with per-output ``sample_weight`` masks (0 where a label
  is missing) and the same metrics as weighted metrics;
* (d) keras_mtl with 100 named tasks; plain Keras with 100 named
  ``Dense(1)`` heads and 100 losses; plain Keras with one ``Dense(100)``
  head and one loss;
* (e) every training row above also with ``jit_compile=True`` (the others
  keep Keras's default, ``"auto"``);
* (f) the input pipeline alone (``kmtl.data.from_arrays``);
* (g) the achieved training GFLOP/s of (a) against a large ``tf.matmul``,
  plus (a) with ``steps_per_execution=8`` (every other row keeps Keras's
  default of 1);
* (h) (a) under the ``mixed_bfloat16`` policy;
* (p) a plain PyTorch training loop of the same network with the same
  metrics, computed by ``torchmetrics`` (``torch_loop.py``).

Each training row reports the steady-state throughput (examples/second
from the end of an epoch's first step to the end of its last, median over
the epochs after the first), the throughput over whole epochs (iterator
creation and the pauses between epochs included), the wall time of the
first epoch (tracing and compilation included) and the machine's 2048³
``tf.matmul`` rate measured just before the row. Results go to
``bench.json`` and ``bench.png`` in the output directory.

Example:
    ``python benchmarks/run.py --only a,b,c --output bench_results``
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import inspect
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from load import CpuMeter, loadavg, wait_until_quiet  # noqa: E402
from options import GROUPS, parse  # noqa: E402

import keras_mtl as kmtl  # noqa: E402
from keras_mtl import data as data_lib  # noqa: E402
from keras_mtl import metrics as metrics_lib  # noqa: E402
from keras_mtl import model as model_lib  # noqa: E402

__all__ = ["QUICK", "Row", "Settings", "Target", "main", "run"]

TORCH_ROW = "torch"  # id of the plain PyTorch loop, group p
XLA = "/xla"  # suffix of the jit_compile=True variant of a row id
SPE_ROW = 8  # steps_per_execution of the extra row of (g); every other row uses Keras's default


# -- settings and synthetic data ----------------------------------------------

@dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run.

    Attributes:
        batch_size: examples per training step.
        steps: steps per epoch (the data set holds ``steps * batch_size``
            examples).
        timed_epochs: epochs timed after the first, for the steady state.
        input_dim: input features per example.
        hidden: units of the trunk's relu layers.
        few_tasks: number of tasks of rows (a)–(c).
        many_tasks: number of tasks of rows (d).
        missing: share of labels missing.
        matmul_size: side of the square ``tf.matmul`` of row (g).
        matmul_repeats: timed repetitions of that matmul (the best counts).
        row_matmul_repeats: repetitions of the same matmul timed just
            before every row, printed beside its times (0: none).
        pipeline_epochs: timed passes over the data in rows (f).
        max_wait: seconds to wait, before each measurement, for other
            processes to leave the CPU.
        quiet_cores: other processes' CPU use (in cores) counted as quiet.
        retries: extra attempts at a row while other processes used more
            than ``quiet_cores`` during it.
        rounds: passes over all rows, one row after the other; each row
            keeps its fastest measurement (and shortest first epoch), which
            evens out the slowdowns a small shared machine shows now and then.
        warm_up_epochs: epochs of an untimed model trained first, so the
            first row does not pay for the process's first training.
        seed: seed of the data and of every model.
    """

    batch_size: int = 256
    steps: int = 40
    timed_epochs: int = 3
    input_dim: int = 784
    hidden: tuple[int, ...] = (512, 256)
    few_tasks: int = 4
    many_tasks: int = 100
    missing: float = 0.3
    matmul_size: int = 2048
    matmul_repeats: int = 10
    row_matmul_repeats: int = 3
    pipeline_epochs: int = 10
    max_wait: float = 180.0
    quiet_cores: float = 0.5
    retries: int = 2
    rounds: int = 3
    warm_up_epochs: int = 2
    seed: int = 0

    @property
    def examples(self) -> int:
        """Examples per epoch."""
        return self.steps * self.batch_size


QUICK = Settings(batch_size=32, steps=2, timed_epochs=1, input_dim=16, hidden=(16, 8), many_tasks=6,
                 matmul_size=128, matmul_repeats=2, row_matmul_repeats=1, pipeline_epochs=1, max_wait=0.0, retries=0,
                 rounds=1, warm_up_epochs=0)
"""Tiny settings that exercise every row in seconds (numbers meaningless)."""


@dataclass(frozen=True)
class SyntheticData:
    """Inputs and labels shared by every row.

    Attributes:
        x: inputs, ``(n, input_dim)`` float32.
        y: complete labels in {0, 1}, ``(n, many_tasks)`` float32.
        missing: ``True`` where a label counts as missing, ``(n, many_tasks)``.
    """

    x: np.ndarray
    y: np.ndarray
    missing: np.ndarray

    def labels(self, tasks: int) -> np.ndarray:
        """The first ``tasks`` columns of ``y``, ``NaN`` where missing."""
        return np.where(self.missing[:, :tasks], np.float32(np.nan), self.y[:, :tasks])


def make_data(settings: Settings) -> SyntheticData:
    """Gaussian inputs; every task is a noisy threshold of shared features.

    All tasks depend on the same 16 nonlinear projections of the input, so
    the shared trunk has something to learn for every task.
    """
    rng = np.random.default_rng(settings.seed)
    n, d, k = settings.examples, settings.input_dim, settings.many_tasks
    x = rng.standard_normal((n, d), dtype=np.float32)
    shared = np.tanh(x @ (rng.standard_normal((d, 16), dtype=np.float32) / math.sqrt(d)) * 2.0)
    scores = shared @ rng.standard_normal((16, k), dtype=np.float32)
    scores += 0.5 * rng.standard_normal((n, k), dtype=np.float32)
    y = (scores > 0).astype(np.float32)
    missing = rng.random((n, k)) < settings.missing
    return SyntheticData(x=x, y=y, missing=missing)


def task_names(count: int) -> list[str]:
    """``task_000``, ``task_001``, …"""
    return [f"task_{j:03d}" for j in range(count)]


# -- pipelines -----------------------------------------------------------------

def kmtl_pipeline(settings: Settings, data: SyntheticData, tasks: int) -> tf.data.Dataset:
    """The keras_mtl pipeline: ``from_arrays`` with NaN for missing labels."""
    names = task_names(tasks)
    labels = data.labels(tasks)
    return kmtl.data.from_arrays(
        data.x, {name: labels[:, j] for j, name in enumerate(names)},
        [kmtl.Task(name) for name in names], batch_size=settings.batch_size,
        shuffle=True, seed=settings.seed,
        pack_labels=tasks > 16)  # as docs/topics/many_tasks.md advises for dozens of tasks


def keras_pipeline(settings: Settings, x: np.ndarray, y, sample_weight=None) -> tf.data.Dataset:
    """A plain pipeline built like ``from_arrays`` minus the label mapping.

    Shuffled indices, batched, gathered from in-memory tensors, prefetched.
    """
    tensors = tuple(t for t in (x, y, sample_weight) if t is not None)
    tensors = tf.nest.map_structure(tf.convert_to_tensor, tensors)
    indices = tf.data.Dataset.range(len(x)).shuffle(len(x), seed=settings.seed,
                                                     reshuffle_each_iteration=True)
    indices = indices.batch(settings.batch_size)
    gather = lambda i: tf.nest.map_structure(lambda t: tf.gather(t, i), tensors)  # noqa: E731
    return indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _columns(matrix: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: matrix[:, j:j + 1] for j, name in enumerate(names)}


# -- models ----------------------------------------------------------------------

def trunk(settings: Settings) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The shared MLP trunk: input → relu Dense layers."""
    inputs = keras.Input((settings.input_dim,), name="x")
    features = inputs
    for i, units in enumerate(settings.hidden):
        features = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(features)
    return inputs, features


def _binary_metrics(names: Sequence[str]) -> dict[str, list]:
    return {n: [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")]
            for n in names}


def build_kmtl(settings: Settings, tasks: int, options: dict, metrics: list | None = None) -> keras.Model:
    """keras_mtl: ``MultiTaskModel`` with binary tasks, ``compile("adam")``.

    Args:
        settings: sizes.
        tasks: number of binary tasks.
        options: further ``compile`` arguments (``jit_compile``, …).
        metrics: ``None`` keeps the default masked AUC and accuracy per task.
    """
    inputs, features = trunk(settings)
    model = kmtl.MultiTaskModel(inputs, features, [kmtl.Task(n) for n in task_names(tasks)])
    model.compile(optimizer="adam", metrics=metrics, **options)
    return model


def build_keras_heads(settings: Settings, tasks: int, options: dict, metrics: bool,
                      weighted: bool = False) -> keras.Model:
    """Plain Keras: one named ``Dense(1, sigmoid)`` output and loss per task.

    With ``weighted`` the metrics are ``weighted_metrics`` (they honour the
    sample-weight masks).
    """
    inputs, features = trunk(settings)
    names = task_names(tasks)
    outputs = {n: keras.layers.Dense(1, activation="sigmoid", name=n)(features) for n in names}
    model = keras.Model(inputs, outputs)
    chosen = _binary_metrics(names) if metrics else None
    model.compile(optimizer="adam", loss={n: keras.losses.BinaryCrossentropy() for n in names},
                  metrics=None if weighted else chosen, weighted_metrics=chosen if weighted else None,
                  **options)
    return model


def build_keras_dense(settings: Settings, tasks: int, options: dict, metrics: bool) -> keras.Model:
    """Plain Keras: one ``Dense(tasks, sigmoid)`` head and one loss."""
    inputs, features = trunk(settings)
    outputs = keras.layers.Dense(tasks, activation="sigmoid", name="tasks")(features)
    model = keras.Model(inputs, outputs)
    chosen = None
    if metrics:
        chosen = [keras.metrics.AUC(name="auc", multi_label=True, num_labels=tasks),
                  keras.metrics.BinaryAccuracy(name="accuracy")]
    model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(), metrics=chosen, **options)
    return model


# -- row specifications --------------------------------------------------------------

Builder = Callable[[Settings, SyntheticData, dict], tuple[keras.Model, tf.data.Dataset]]


@dataclass(frozen=True)
class TrainSpec:
    """A training row: how to build its model and data.

    Attributes:
        id: row id (``"a"``, ``"b'"``, …; ``XLA`` is appended for jit).
        group: the ``--only`` letter selecting the row.
        label: what the row trains.
        metrics: which metrics the row computes.
        build: ``(settings, data, compile options) → (compiled model,
            dataset)``.
        flops_tasks: output units, for the FLOP count of the row.
        steps_per_execution: passed to ``compile`` (Keras's default is 1).
        both_jit: whether group ``e`` also runs the row with ``jit_compile=True``.
    """

    id: str
    group: str
    label: str
    metrics: str
    build: Builder
    flops_tasks: int
    steps_per_execution: int = 1
    both_jit: bool = True


def train_specs(settings: Settings) -> list[TrainSpec]:
    """The training rows (a)–(d), then the extra rows of (g), in running order."""
    few, many = settings.few_tasks, settings.many_tasks
    few_names, many_names = task_names(few), task_names(many)

    def kmtl_row(tasks, metrics=None):
        return lambda s, d, o: (build_kmtl(s, tasks, o, metrics), kmtl_pipeline(s, d, tasks))

    def heads_row(tasks, names, metrics, masked=False):
        def build(s, d, o):
            model = build_keras_heads(s, tasks, o, metrics, weighted=masked)
            if not masked:
                return model, keras_pipeline(s, d.x, _columns(d.y, names))
            clean = np.where(d.missing[:, :tasks], 0.0, d.y[:, :tasks]).astype(np.float32)
            weight = (~d.missing[:, :tasks]).astype(np.float32)
            return model, keras_pipeline(s, d.x, _columns(clean, names), _columns(weight, names))
        return build

    def dense_row(tasks, metrics):
        return lambda s, d, o: (build_keras_dense(s, tasks, o, metrics),
                                keras_pipeline(s, d.x, d.y[:, :tasks]))

    auc_acc = "AUC + binary accuracy per output"
    kmtl_default = "default: masked AUC + accuracy per task (fused)"
    missing = f"{settings.missing:.0%} missing"
    spe = SPE_ROW
    return [
        TrainSpec("a", "a", f"keras_mtl, {few} tasks, {missing}", kmtl_default, kmtl_row(few), few),
        TrainSpec("a0", "a", f"keras_mtl, {few} tasks, {missing}, metrics=[]",
                  "none (task losses only)", kmtl_row(few, []), few),
        TrainSpec("b", "b", f"Keras, {few} Dense(1) outputs, no missing", auc_acc,
                  heads_row(few, few_names, True), few),
        TrainSpec("b'", "b", f"Keras, {few} Dense(1) outputs, no missing, no metrics", "none",
                  heads_row(few, few_names, False), few),
        TrainSpec("c", "c", f"Keras, {few} Dense(1) outputs, sample_weight masks",
                  f"weighted {auc_acc}", heads_row(few, few_names, True, masked=True), few),
        TrainSpec("d", "d", f"keras_mtl, {many} tasks, {missing}", kmtl_default, kmtl_row(many), many),
        TrainSpec("d0", "d", f"keras_mtl, {many} tasks, {missing}, metrics=[]", "none (task losses only)",
                  kmtl_row(many, []), many),
        TrainSpec("d-heads", "d", f"Keras, {many} Dense(1) outputs + {many} losses",
                  "none (with metrics, tracing grows further)", heads_row(many, many_names, False), many),
        TrainSpec("d-dense", "d", f"Keras, one Dense({many}) head, one loss",
                  f"AUC(multi_label, {many} labels) + binary accuracy", dense_row(many, True), many),
        TrainSpec("d-dense'", "d", f"Keras, one Dense({many}) head, one loss, no metrics", "none",
                  dense_row(many, False), many),
        TrainSpec(f"a-spe{spe}", "g", f"keras_mtl, {few} tasks, {missing}, steps_per_execution={spe}",
                  kmtl_default, kmtl_row(few), few, steps_per_execution=spe),
    ]


# -- results -------------------------------------------------------------------------

@dataclass
class Row:
    """One measured row.

    Attributes:
        id: row id.
        label: what was measured.
        value: throughput (``unit``); for training rows the steady-state
            rate within epochs (see :func:`fit_row`).
        unit: ``"examples/s"`` or ``"GFLOP/s"``.
        epoch_value: training rows: examples/s over the median whole epoch.
        first_epoch_s: wall time of the first epoch, tracing included.
        epoch_s: wall time of every timed epoch after the first.
        jit_compile: ``model.jit_compile`` as resolved by Keras.
        backend: the Keras backend the row trained on (``"torch"`` for
            the plain PyTorch loop).
        matmul_gflops: the ``tf.matmul`` rate (see ``Settings.matmul_size``)
            measured just before the row, in GFLOP/s: how fast the machine
            was at the time.
        compute_dtype: training rows: the compute dtype of the trunk.
        metrics: the metrics the row computed.
        loss: the training loss after each epoch.
        other_cores: CPU (in cores) used by other processes meanwhile.
        loadavg: ``/proc/loadavg`` before the measurement.
        attempts: throughput, first epoch and other processes' load of
            every attempt (see :func:`best_of`).
        notes: anything else worth knowing.
    """

    id: str
    label: str
    value: float
    unit: str = "examples/s"
    epoch_value: float | None = None
    first_epoch_s: float | None = None
    epoch_s: list[float] = field(default_factory=list)
    jit_compile: bool | None = None
    backend: str = ""
    matmul_gflops: float | None = None
    compute_dtype: str | None = None
    metrics: str = ""
    loss: list[float] = field(default_factory=list)
    other_cores: float | None = None
    loadavg: str = ""
    attempts: list[dict] = field(default_factory=list)
    notes: str = ""


@dataclass(frozen=True)
class Target:
    """A ratio of a row to its baseline, with an optional bound.

    Attributes:
        row: id of the measured row.
        baseline: id of the row it is compared with.
        quantity: ``"value"`` (steady throughput), ``"epoch_value"``
            (throughput over whole epochs) or ``"first_epoch_s"``.
        minimum: the ratio must be at least this (``None``: no lower bound).
        maximum: the ratio must be at most this (``None``: no upper bound).
    """

    row: str
    baseline: str
    quantity: str = "value"
    minimum: float | None = None
    maximum: float | None = None

    def ratio(self, rows: dict[str, Row]) -> float:
        """``row / baseline`` of the quantity."""
        return getattr(rows[self.row], self.quantity) / getattr(rows[self.baseline], self.quantity)

    def bound(self) -> str:
        """The target as text, e.g. ``">= 0.95"``; empty without one."""
        if self.minimum is not None:
            return f">= {self.minimum:g}"
        return f"<= {self.maximum:g}" if self.maximum is not None else ""

    def met(self, rows: dict[str, Row]) -> bool | None:
        """Whether the bound holds; ``None`` without a bound."""
        ratio = self.ratio(rows)
        if self.minimum is not None:
            return ratio >= self.minimum
        return ratio <= self.maximum if self.maximum is not None else None


def targets() -> list[Target]:
    """Every comparison, with the targets of the benchmark."""
    found = []
    for jit in ("", XLA):
        found += [
            Target(f"a{jit}", f"b{jit}", minimum=0.95),
            Target(f"a{jit}", f"c{jit}", minimum=1.0),
            Target(f"a0{jit}", f"b'{jit}"),
            Target(f"b'{jit}", f"b{jit}"),
            Target(f"c{jit}", f"b{jit}"),
            Target(f"d{jit}", f"d-dense{jit}", minimum=0.8),
            Target(f"d{jit}", f"d-dense{jit}", "first_epoch_s", maximum=3.0),
            Target(f"d0{jit}", f"d-dense'{jit}"),
            Target(f"d-heads{jit}", f"d-dense'{jit}"),
            Target(f"d-heads{jit}", f"d-dense'{jit}", "first_epoch_s"),
            Target(f"g/a{jit}", "g/matmul", minimum=0.6),
            Target(f"a-spe{SPE_ROW}{jit}", f"a{jit}"),
            Target(f"g/a-spe{SPE_ROW}{jit}", "g/matmul"),
        ]
    found += [Target(f"a{XLA}", "a"), Target(f"d{XLA}", "d"),
              Target("f/few", "a", minimum=10.0), Target("f/few", "a", "epoch_value"),
              Target("f/many", "d", minimum=10.0), Target("f/many", "d", "epoch_value"),
              Target("h", "a"), Target("a", TORCH_ROW)]
    return found


# -- repeated measurements ---------------------------------------------------------

def _wait(settings: Settings, log: Callable[[str], None]) -> float | None:
    return wait_until_quiet(settings.max_wait, settings.quiet_cores, log)


def attempts(settings: Settings, measure: Callable[[], Row], log: Callable[[str], None]) -> list[Row]:
    """Measures a row, again while other processes disturbed the measurement.

    Up to ``settings.retries`` extra attempts are made while other processes
    used more than ``settings.quiet_cores`` during an attempt.

    Returns:
        Every attempt.
    """
    found = []
    while True:
        row = measure()
        found.append(row)
        disturbed = row.other_cores is not None and row.other_cores > settings.quiet_cores
        if not disturbed or len(found) > settings.retries:
            return found
        log(f"    {row.id}: {row.value:,.0f} {row.unit} while other processes used "
            f"{row.other_cores:.1f} cores; measuring again")


def best_of(found: Sequence[Row]) -> Row:
    """The best of several measurements of one row.

    Returns:
        The measurement with the highest throughput, with ``first_epoch_s``
        the shortest first epoch of all and every measurement listed in
        ``attempts``.
    """
    best = max(found, key=lambda r: r.value)
    firsts = [r.first_epoch_s for r in found if r.first_epoch_s is not None]
    best.first_epoch_s = min(firsts) if firsts else None
    best.attempts = [{"value": r.value, "epoch_value": r.epoch_value, "first_epoch_s": r.first_epoch_s,
                      "matmul_gflops": r.matmul_gflops, "other_cores": r.other_cores, "loadavg": r.loadavg}
                     for r in found]
    return best


# -- measurements ------------------------------------------------------------------------

class StepClock(keras.callbacks.Callback):
    """Records when every training step and every epoch ends.

    Marked ``async_safe`` so that Keras keeps dispatching batch callbacks
    asynchronously, as in a run without this callback: the time of a step
    is taken when Keras has fetched that step's logs.
    """

    async_safe = True

    def __init__(self):
        super().__init__()
        self.epoch_ends: list[float] = []
        self.steps: list[dict[int, float]] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.steps.append({})

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1][batch] = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(time.perf_counter())

    def steady_rate(self, epoch: int, batch_size: int) -> float | None:
        """Examples/s from the end of an epoch's first execution to its last.

        Keras reports the index of the last step of each execution (several
        steps with ``steps_per_execution``), so the examples counted are the
        steps between the first and the last report.
        """
        stamps = sorted(self.steps[epoch].items())
        if len(stamps) < 2 or stamps[-1][1] <= stamps[0][1]:
            return None
        (first_step, first_time), (last_step, last_time) = stamps[0], stamps[-1]
        return (last_step - first_step) * batch_size / (last_time - first_time)


def _fresh(settings: Settings):
    keras.backend.clear_session()
    keras.utils.set_random_seed(settings.seed)


def _machine_rate(settings: Settings) -> float | None:
    """The matmul rate just before a row (``None`` when not measured)."""
    if settings.row_matmul_repeats <= 0:
        return None
    return matmul_gflops(settings.matmul_size, settings.row_matmul_repeats)[0]


def fit_row(settings: Settings, data: SyntheticData, spec: TrainSpec, jit: bool | None,
            log: Callable[[str], None], row_id: str | None = None, label: str | None = None,
            policy: str | None = None) -> Row:
    """Trains one row: the first epoch, then ``timed_epochs`` more.

    Args:
        settings: sizes.
        data: the shared data.
        spec: the row.
        jit: ``jit_compile`` for ``compile``; ``None`` keeps Keras's
            default ``"auto"`` (off on TensorFlow and PyTorch on a CPU, XLA
            on JAX).
        log: where progress lines go.
        row_id: id of the row (default: the spec's, plus ``XLA`` with
            ``jit=True``).
        label: description (default: the spec's).
        policy: a ``keras.mixed_precision`` policy to build the row under
            (set after ``clear_session``, which resets it; the caller
            restores the previous one).

    Returns:
        The :class:`Row`. ``value`` is the steady-state rate: the median over
        the timed epochs of examples/s between the end of an epoch's first
        step and the end of its last, which leaves out what happens between
        epochs (a new iterator, and a pause of ~0.3 s Keras and ``tf.data``
        take before some epochs on small machines); ``epoch_value`` is
        examples/s over the median whole epoch.
    """
    _fresh(settings)
    _wait(settings, log)
    load = loadavg()
    rate = _machine_rate(settings)
    if policy is not None:
        keras.mixed_precision.set_global_policy(policy)
    options = {} if jit is None else {"jit_compile": jit}
    if spec.steps_per_execution != 1:
        options["steps_per_execution"] = spec.steps_per_execution
    model, dataset = spec.build(settings, data, options)
    compute_dtype = model.get_layer("hidden_0").dtype_policy.compute_dtype
    clock = StepClock()
    meter = CpuMeter()
    start = time.perf_counter()
    history = model.fit(dataset, epochs=1 + settings.timed_epochs, verbose=0, callbacks=[clock],
                        shuffle=False)
    other = meter.stop()
    ends = [start] + clock.epoch_ends
    epochs = [b - a for a, b in zip(ends[1:-1], ends[2:], strict=True)]
    epoch_value = settings.examples / statistics.median(epochs)
    steady = [clock.steady_rate(e, settings.batch_size) for e in range(1, len(ends) - 1)]
    steady = [r for r in steady if r is not None]
    loss = [float(v) for v in history.history["loss"]]
    notes = "" if all(math.isfinite(v) for v in loss) else "NON-FINITE LOSS"
    return Row(id=row_id or spec.id + (XLA if jit else ""), label=label or spec.label,
               value=statistics.median(steady) if steady else epoch_value, epoch_value=epoch_value,
               first_epoch_s=ends[1] - ends[0], epoch_s=epochs, jit_compile=bool(model.jit_compile),
               backend=keras.backend.backend(), matmul_gflops=rate, metrics=spec.metrics, loss=loss,
               other_cores=other, loadavg=load, notes=notes,
               compute_dtype=compute_dtype)


def drain_rate(dataset: tf.data.Dataset, passes: int) -> tuple[float, float, list[float]]:
    """Examples per second a dataset delivers, consumed inside a graph.

    Each pass runs in a ``tf.function``, as ``fit`` consumes its iterator,
    so no per-batch Python work is counted. The first pass (tracing) is not
    timed.

    Returns:
        ``(steady, per_pass, pass times)``: the median over passes of
        examples/s after the first batch (timed inside the graph), the same
        over whole passes (iterator creation included), and the wall time of
        every pass.
    """
    @tf.function
    def drain():
        iterator = iter(dataset)
        first = next(iterator)
        with tf.control_dependencies(tf.nest.flatten(first)):
            start = tf.timestamp()
        count = tf.constant(0, tf.int64)
        for element in iterator:
            count += tf.shape(element[0], out_type=tf.int64)[0]
        with tf.control_dependencies([count]):
            elapsed = tf.timestamp() - start
        return tf.shape(first[0], out_type=tf.int64)[0] + count, count, elapsed

    drain()
    steady, whole, times = [], [], []
    for _ in range(max(passes, 1)):
        begin = time.perf_counter()
        total, after_first, elapsed = (v.numpy() for v in drain())
        times.append(time.perf_counter() - begin)
        whole.append(total / times[-1])
        if after_first > 0 and elapsed > 0:
            steady.append(after_first / elapsed)
    per_pass = statistics.median(whole)
    return (statistics.median(steady) if steady else per_pass), per_pass, times


def pipeline_row(settings: Settings, data: SyntheticData, tasks: int, row_id: str,
                 log: Callable[[str], None]) -> Row:
    """Rows (f): ``from_arrays`` alone, sentinel mapping included."""
    _fresh(settings)
    other_before = _wait(settings, log)
    load = loadavg()
    rate = _machine_rate(settings)
    meter = CpuMeter()
    rate, per_pass, times = drain_rate(kmtl_pipeline(settings, data, tasks), settings.pipeline_epochs)
    other = meter.stop()
    return Row(id=row_id, label=f"kmtl.data.from_arrays, {tasks} tasks (pipeline alone)", value=rate,
               epoch_value=per_pass, epoch_s=times, matmul_gflops=rate,
               other_cores=other if other is not None else other_before, loadavg=load)


def matmul_gflops(size: int, repeats: int) -> tuple[float, list[float]]:
    """GFLOP/s of a float32 ``size``³ ``tf.matmul`` (best of ``repeats``)."""
    a = tf.random.normal((size, size), seed=1)
    b = tf.random.normal((size, size), seed=2)

    @tf.function
    def product():
        return tf.reduce_sum(tf.matmul(a, b))

    product().numpy()
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        product().numpy()
        times.append(time.perf_counter() - start)
    return 2.0 * size ** 3 / min(times) / 1e9, times


def training_flops_per_example(settings: Settings, tasks: int) -> float:
    """FLOPs of one training example: 2·in·out per Dense, ×3 (fwd + bwd)."""
    sizes = [settings.input_dim, *settings.hidden, tasks]
    return 3.0 * sum(2.0 * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def matmul_row(settings: Settings, log: Callable[[str], None]) -> Row:
    """Row (g): the matmul ceiling of this machine."""
    _fresh(settings)
    _wait(settings, log)
    load = loadavg()
    meter = CpuMeter()
    gflops, times = matmul_gflops(settings.matmul_size, settings.matmul_repeats)
    s = settings.matmul_size
    return Row(id="g/matmul", label=f"tf.matmul {s}x{s}x{s} float32 (ceiling)", value=gflops,
               unit="GFLOP/s", epoch_s=times, matmul_gflops=gflops, other_cores=meter.stop(), loadavg=load)


def achieved_row(settings: Settings, source: Row, tasks: int) -> Row:
    """Row (g): the training GFLOP/s of a measured row."""
    flops = training_flops_per_example(settings, tasks)
    return Row(id=f"g/{source.id}", label=f"row {source.id} training ({flops / 1e6:.3g} MFLOP/example)",
               value=source.value * flops / 1e9, unit="GFLOP/s", jit_compile=source.jit_compile,
               backend=source.backend, matmul_gflops=source.matmul_gflops, other_cores=source.other_cores,
               loadavg=source.loadavg)


def bfloat16_row(settings: Settings, data: SyntheticData, spec: TrainSpec,
                 log: Callable[[str], None]) -> Row:
    """Row (h): row (a) under ``mixed_bfloat16``; checks that it trains."""
    try:
        row = fit_row(settings, data, spec, None, log, row_id="h",
                      label=f"{spec.label}, mixed_bfloat16", policy="mixed_bfloat16")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    finite = all(math.isfinite(v) for v in row.loss)
    falling = finite and row.loss[-1] < row.loss[0]
    row.notes = (f"trunk computes in {row.compute_dtype}; loss {row.loss[0]:.4f} -> {row.loss[-1]:.4f}: "
                 + ("finite and falling" if falling else "finite, not falling" if finite else "NON-FINITE"))
    return row


def _steady(stamps: Sequence[float], batch_size: int) -> float | None:
    """Examples/s between the first and the last of a list of step ends."""
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return None
    return (len(stamps) - 1) * batch_size / (stamps[-1] - stamps[0])


def torch_row(settings: Settings, data: SyntheticData, log: Callable[[str], None]) -> Row:
    """Row (p): the plain PyTorch loop of ``torch_loop.py``, 4 tasks, same labels, AUC and accuracy.

    Timed as :func:`fit_row` times a Keras row: steady rate within the
    epochs after the first, whole epochs, first epoch. The loop runs in a
    process of its own, which loads PyTorch and no other framework
    (:func:`torch_loop.train_in_own_process`).
    """
    import torch_loop

    _wait(settings, log)
    load = loadavg()
    rate = _machine_rate(settings)
    tasks = settings.few_tasks
    meter = CpuMeter()
    run = torch_loop.train_in_own_process(data.x, data.y[:, :tasks], data.missing[:, :tasks], settings.hidden,
                                          settings.batch_size, 1 + settings.timed_epochs, settings.seed)
    other = meter.stop()
    ends = run.epoch_ends
    epochs = [b - a for a, b in zip(ends[1:-1], ends[2:], strict=True)]
    epoch_value = settings.examples / statistics.median(epochs)
    steady = [r for r in (_steady(s, settings.batch_size) for s in run.steps[1:]) if r is not None]
    return Row(id=TORCH_ROW, label=f"plain PyTorch loop, {tasks} Linear heads, masked loss, torchmetrics",
               value=statistics.median(steady) if steady else epoch_value, epoch_value=epoch_value,
               first_epoch_s=ends[1] - ends[0], epoch_s=epochs, jit_compile=False, backend="torch",
               matmul_gflops=rate, metrics="masked AUC + accuracy per task (torchmetrics)", loss=run.loss,
               other_cores=other, loadavg=load,
               notes=f"torch {run.version}, eager, {run.threads} threads, own process")


def warm_up(settings: Settings, data: SyntheticData) -> None:
    """Trains a throwaway plain-Keras model, so the first row is not slowed
    by the process's first use of its thread pools and kernels."""
    _fresh(settings)
    spec = next(s for s in train_specs(settings) if s.id == "b'")
    model, dataset = spec.build(settings, data, {})
    model.fit(dataset, epochs=settings.warm_up_epochs, verbose=0, shuffle=False)


# -- the run -----------------------------------------------------------------------------

def defaults() -> dict:
    """The defaults keras_mtl and Keras use, read from the code."""
    from_arrays = inspect.signature(data_lib.from_arrays).parameters
    compile_ = inspect.signature(kmtl.MultiTaskModel.compile).parameters
    keras_compile = inspect.signature(keras.Model.compile).parameters
    sigmoid = inspect.signature(metrics_lib.SigmoidTaskMetrics).parameters
    probe = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    probe.compile(optimizer="sgd", loss="mse")
    return {
        "from_arrays.batch_size": from_arrays["batch_size"].default,
        "from_arrays.shuffle": from_arrays["shuffle"].default,
        "compile.optimizer": compile_["optimizer"].default,
        "compile.normalize": compile_["normalize"].default,
        "compile.log_every_task (tasks up to)": model_lib.LOG_EVERY_TASK_UP_TO,
        "default metrics (binary)": "masked AUC + accuracy, fused (SigmoidTaskMetrics)",
        "AUC num_thresholds": sigmoid["num_thresholds"].default,
        "keras jit_compile": keras_compile["jit_compile"].default,
        "keras jit_compile 'auto' resolves to (this machine)": bool(probe.jit_compile),
        "keras steps_per_execution": keras_compile["steps_per_execution"].default,
    }


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def machine_info() -> dict:
    """Versions, CPU and load of this machine."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "backend": keras.backend.backend(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "jax": _version("jax"),
        "torch": _version("torch"),
        "keras_mtl": kmtl.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "loadavg_start": loadavg(),
        "time_start": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def _selected_specs(settings: Settings, groups: str,
                    ids: Sequence[str] | None) -> list[tuple[TrainSpec, bool | None]]:
    chosen = [s for s in train_specs(settings) if s.group in groups and (ids is None or s.id in ids)]
    return [(spec, jit) for spec in chosen
            for jit in ((None, True) if "e" in groups and spec.both_jit else (None,))]


def run(settings: Settings, groups: str = GROUPS, log: Callable[[str], None] = print,
        ids: Sequence[str] | None = None) -> tuple[list[Row], list[Target]]:
    """Runs the selected rows and returns them with the comparisons that apply.

    Args:
        settings: sizes of the run.
        groups: letters of the rows to run (``"abcdefghp"`` for all; ``e``
            adds the ``jit_compile=True`` variant of every training row, ``g``
            the ``steps_per_execution`` row and the GFLOP/s rows, ``p`` the
            plain PyTorch loop).
        log: where progress lines go.
        ids: if given, only the training rows with these ids run (within
            ``groups``).

    Returns:
        ``(rows, targets)``: every measured row, and the comparisons whose
        two rows were both measured.
    """
    data = make_data(settings)
    measurements: list[tuple[str, Callable[[], Row]]] = []
    specs = _selected_specs(settings, groups, ids)
    for spec, jit in specs:
        measurements.append((spec.id + (XLA if jit else ""),
                             lambda s=spec, j=jit: fit_row(settings, data, s, j, log)))
    if "f" in groups:
        for tasks, row_id in ((settings.few_tasks, "f/few"), (settings.many_tasks, "f/many")):
            measurements.append((row_id, lambda t=tasks, i=row_id: pipeline_row(settings, data, t, i, log)))
    if "g" in groups:
        measurements.append(("g/matmul", lambda: matmul_row(settings, log)))
    if "h" in groups:
        spec = next(s for s in train_specs(settings) if s.id == "a")
        measurements.append(("h", lambda: bfloat16_row(settings, data, spec, log)))
    if "p" in groups:
        measurements.append((TORCH_ROW, lambda: torch_row(settings, data, log)))

    if (specs or "p" in groups) and settings.warm_up_epochs > 0:
        warm_up(settings, data)
    found: dict[str, list[Row]] = {key: [] for key, _ in measurements}
    rounds = max(settings.rounds, 1)
    for round_ in range(rounds):
        if rounds > 1:
            log(f"round {round_ + 1} of {rounds}")
        for key, measure in measurements:
            found[key] += attempts(settings, measure, log)
            log(_progress_line(found[key][-1]))
    best = {key: best_of(measured) for key, measured in found.items()}
    rows: dict[str, Row] = {}
    for key, row in best.items():
        rows[key] = row
        if key == "g/matmul":
            for source in ("a", f"a{XLA}", f"a-spe{SPE_ROW}", f"a-spe{SPE_ROW}{XLA}"):
                if source in best:
                    achieved = achieved_row(settings, best[source], settings.few_tasks)
                    rows[achieved.id] = achieved
                    log(_progress_line(achieved))
    applicable = [t for t in targets() if t.row in rows and t.baseline in rows]
    return list(rows.values()), applicable


# -- reporting ---------------------------------------------------------------------------

def _value_text(row: Row) -> str:
    if row.unit == "GFLOP/s":
        return f"{row.value:,.1f} GFLOP/s"
    return f"{row.value:,.0f}"


def _range_text(row: Row) -> str:
    """Lowest–highest throughput over all measurements of a row."""
    values = [a["value"] for a in row.attempts]
    if len(values) < 2:
        return ""
    digits = 1 if row.unit == "GFLOP/s" else 0
    return f"{min(values):,.{digits}f}-{max(values):,.{digits}f}"


def _progress_line(row: Row) -> str:
    first = f", first epoch {row.first_epoch_s:.1f} s" if row.first_epoch_s is not None else ""
    other = f", other procs {row.other_cores:.1f} cores" if row.other_cores is not None else ""
    unit = "" if row.unit == "GFLOP/s" else " examples/s"
    per_epoch = f" ({row.epoch_value:,.0f} per epoch)" if row.epoch_value is not None else ""
    notes = f"  [{row.notes}]" if row.notes else ""
    machine = f", matmul {row.matmul_gflops:,.0f} GFLOP/s" if row.matmul_gflops and row.unit != "GFLOP/s" else ""
    return f"  {row.id:<12} {_value_text(row)}{unit}{per_epoch}{first}{machine}{other}  {row.label}{notes}"


def format_table(rows: Sequence[Row], comparisons: Sequence[Target], markdown: bool = False) -> str:
    """The results table: one line per row plus one per extra comparison.

    Args:
        rows: measured rows.
        comparisons: the targets that apply.
        markdown: a Markdown table instead of aligned text.

    Returns:
        The table as text.
    """
    by_id = {r.id: r for r in rows}
    header = ["row", "what", "examples/s", "range", "per epoch", "first epoch (s)", "matmul GFLOP/s",
              "other load", "baseline", "ratio", "target", "met"]
    lines = []
    for row in rows:
        base = [row.id, row.label, _value_text(row), _range_text(row),
                "" if row.epoch_value is None else f"{row.epoch_value:,.0f}",
                "" if row.first_epoch_s is None else f"{row.first_epoch_s:.1f}",
                "" if row.matmul_gflops is None else f"{row.matmul_gflops:,.0f}",
                "" if row.other_cores is None else f"{row.other_cores:.1f}"]
        mine = [t for t in comparisons if t.row == row.id] or [None]
        for i, target in enumerate(mine):
            cells = base if i == 0 else [""] * len(base)
            lines.append(cells + _comparison_cells(target, by_id))
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
            for cells in [header] + lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def _comparison_cells(target: Target | None, rows: dict[str, Row]) -> list[str]:
    if target is None:
        return ["", "", "", ""]
    suffix = {"first_epoch_s": " (first epoch)", "epoch_value": " (per epoch)"}.get(target.quantity, "")
    what = target.baseline + suffix
    met = target.met(rows)
    return [what, f"{target.ratio(rows):.2f}", target.bound(),
            "" if met is None else ("yes" if met else "NO")]


CHARTS = (
    ("4 tasks, Keras default jit_compile", ("a", "a0", "b", "b'", "c")),
    ("4 tasks, XLA", tuple(i + XLA for i in ("a", "a0", "b", "b'", "c"))),
    ("many tasks, Keras default jit_compile", ("d", "d0", "d-heads", "d-dense", "d-dense'")),
    ("many tasks, XLA", tuple(i + XLA for i in ("d", "d0", "d-heads", "d-dense", "d-dense'"))),
    ("pipeline alone vs model", ("f/few", "a", "f/many", "d")),
    ("mixed_bfloat16 vs float32", ("h", "a")),
    ("plain PyTorch loop", ("a", "b", TORCH_ROW)),
    ("steps_per_execution", ("a", f"a-spe{SPE_ROW}", f"a{XLA}", f"a-spe{SPE_ROW}{XLA}")),
    ("GFLOP/s", ("g/matmul", "g/a", f"g/a{XLA}", f"g/a-spe{SPE_ROW}", f"g/a-spe{SPE_ROW}{XLA}")),
)


def plot(rows: Sequence[Row], path: str) -> None:
    """Writes a bar chart of every row's throughput, one panel per comparison.

    keras_mtl rows are orange, plain Keras and reference rows blue.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    by_id = {r.id: r for r in rows}
    panels = [(title, [by_id[i] for i in ids if i in by_id]) for title, ids in CHARTS]
    panels = [(title, found) for title, found in panels if found]
    height = 1.2 + 0.6 * len(panels) + 0.45 * sum(len(f) for _, f in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, height),
                             squeeze=False, gridspec_kw={"height_ratios": [len(f) for _, f in panels]})
    for ax, (title, found) in zip(axes[:, 0], panels, strict=True):
        labels = [f"{r.id}: {r.label}" for r in found]
        colours = ["tab:orange" if r.label.startswith(("keras_mtl", "kmtl")) else "tab:blue" for r in found]
        bars = ax.barh(labels[::-1], [r.value for r in found][::-1], color=colours[::-1])
        ax.bar_label(bars, labels=[_value_text(r) for r in found][::-1], padding=3, fontsize=7)
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlabel(found[0].unit, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlim(0, max(r.value for r in found) * 1.25)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(rows: Sequence[Row], comparisons: Sequence[Target], settings: Settings,
                  machine: dict, directory: str) -> tuple[str, str]:
    """Writes ``bench.json`` and ``bench.png`` into ``directory``.

    Returns:
        The two paths.
    """
    os.makedirs(directory, exist_ok=True)
    by_id = {r.id: r for r in rows}
    machine = dict(machine, loadavg_end=loadavg(), time_end=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    report = {
        "machine": machine,
        "settings": dataclasses.asdict(settings),
        "defaults": defaults(),
        "rows": [dataclasses.asdict(r) for r in rows],
        # float() and bool(): NumPy scalars would be written as the strings "True" / "False"
        "targets": [dict(dataclasses.asdict(t), ratio=float(t.ratio(by_id)),
                         met=None if t.met(by_id) is None else bool(t.met(by_id))) for t in comparisons],
    }
    json_path = os.path.join(directory, "bench.json")
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2, default=str)
    png_path = os.path.join(directory, "bench.png")
    plot(rows, png_path)
    return json_path, png_path


# -- command line ------------------------------------------------------------------------

def main(argv: list[str] | argparse.Namespace | None = None) -> int:
    """Runs the benchmark on this process's backend, prints the table, writes the results.

    Args:
        argv: command-line options (see ``python benchmarks/run.py --help``),
            or options already parsed by ``options.parse``.

    Returns:
        The exit status, 0.
    """
    args = argv if isinstance(argv, argparse.Namespace) else parse(argv)
    if args.backends:
        raise SystemExit("--backends starts one process per backend: run python benchmarks/run.py.")
    if args.backend and args.backend != keras.backend.backend():
        raise SystemExit(f"--backend {args.backend}: Keras was imported with the "
                         f"{keras.backend.backend()} backend; set KERAS_BACKEND before importing.")
    settings = QUICK if args.quick else Settings()
    overrides = {"steps": args.steps, "timed_epochs": args.epochs, "max_wait": args.max_wait,
                 "rounds": args.rounds, "retries": args.retries}
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    groups = args.only or GROUPS
    machine = machine_info()
    print(f"keras_mtl benchmark on {machine['backend']}: TF {machine['tensorflow']}, Keras {machine['keras']}, "
          f"{machine['cpu_count']} CPUs ({machine['cpu']}), loadavg {machine['loadavg_start']}")
    print(f"  batch {settings.batch_size}, {settings.steps} steps/epoch, first epoch + "
          f"{settings.timed_epochs} timed epochs, best of {settings.rounds} round(s); "
          f"rows {','.join(groups)}" + (f" ({','.join(args.rows)})" if args.rows else ""))
    print("  defaults: " + "; ".join(f"{k} = {v}" for k, v in defaults().items()))
    rows, comparisons = run(settings, groups, ids=args.rows)
    print()
    print(format_table(rows, comparisons))
    json_path, png_path = write_results(rows, comparisons, settings, machine, args.output)
    print(f"\nWrote {json_path} and {png_path}")
    if args.json:  # the committed copy the READMEs' figures come from
        committed = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"{machine['backend']}.json")
        with open(json_path) as source, open(committed, "w") as target:
            target.write(source.read())
        print(f"Wrote {committed}")
    return 0
