"""Fused task heads: one kernel for all tasks, one named output per task.

Naming 100 tasks must not cost 100 layers and 100 losses in the training
step. All heads share one ``Dense`` kernel whose output columns are laid out
by kind (every sigmoid unit first, then regression units, then one softmax
block per categorical task). Users see one named output per task
(:class:`TaskOutput`, a slice and an activation); training computes the loss
of every task from the fused logits in a handful of tensor operations
(:class:`FusedTaskLoss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_mtl import metrics as metrics_lib
from keras_mtl.losses import (
    binary_crossentropy_entries,
    categorical_crossentropy_entries,
    check_normalize,
    global_counts,
    squared_error_entries,
)
from keras_mtl.tasks import Task

__all__ = [
    "ForwardRecord",
    "FusedTaskLoss",
    "HeadLayout",
    "TaskHeads",
    "TaskMetrics",
    "TaskOutput",
    "logits_from_outputs",
    "stack_groups",
    "stack_labels",
    "stack_weights",
]


@dataclass(frozen=True)
class _Block:
    task: Task
    start: int
    stop: int


class HeadLayout:
    """Where each task's units sit in the fused logits.

    Columns ``[0, num_sigmoid)`` hold every binary and multilabel unit,
    the next ``num_regression`` columns the regression units, and each
    categorical task follows as its own block.

    Example:
        >>> layout = HeadLayout([Task("weather", kind="categorical", num_classes=3),
        ...                      Task("car"), Task("distance", kind="regression")])
        >>> [(name, b.start, b.stop) for name, b in layout.blocks.items()]
        [('car', 0, 1), ('distance', 1, 2), ('weather', 2, 5)]
    """

    def __init__(self, tasks: list[Task]):
        self.tasks = list(tasks)
        sigmoid = [t for t in tasks if t.kind in ("binary", "multilabel")]
        regression = [t for t in tasks if t.kind == "regression"]
        categorical = [t for t in tasks if t.kind == "categorical"]
        self.blocks: dict[str, _Block] = {}
        column = 0
        for task in sigmoid + regression + categorical:
            self.blocks[task.name] = _Block(task, column, column + task.units)
            column += task.units
        self.units = column
        # Task index (in the user's order) of every column.
        self.column_tasks = [tasks.index(task) for task in sigmoid + regression + categorical
                             for _ in range(task.units)]
        self.sigmoid = sigmoid
        self.regression = regression
        self.categorical = categorical
        self.num_sigmoid = sum(t.units for t in sigmoid)
        self.num_regression = len(regression)
        # Column → task index (in the sigmoid group) for per-task sums.
        self.sigmoid_segments = np.repeat(np.arange(len(sigmoid)), [t.units for t in sigmoid])
        # Position of every task's loss in the group order → user order.
        group_order = [t.name for t in sigmoid + regression + categorical]
        self.to_user_order = np.array([group_order.index(t.name) for t in tasks], dtype="int32")

    def block(self, name: str) -> _Block:
        return self.blocks[name]


@keras.saving.register_keras_serializable(package="keras_mtl")
class TaskHeads(keras.layers.Layer):
    """The fused kernel of all task heads: features → logits of every task.

    With shared features ``(batch, d)`` this is one ``Dense(units)``. With
    per-task features ``(batch, T, d)`` (soft sharing, experts) each task's
    head reads its own slice: one stacked kernel ``(T, d, max units)``, one
    ``einsum``, and a gather into the layout's column order.

    Args:
        units: total number of output units over all tasks.
        task_units: units of each task in task order (per-task mode only).
        column_tasks: task index of every output column, in column order
            (per-task mode only).
        kernel_initializer, bias_initializer, kernel_regularizer: as for
            ``keras.layers.Dense``.
    """

    def __init__(self, units, task_units=None, column_tasks=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.task_units = None if task_units is None else [int(u) for u in task_units]
        self.column_tasks = None if column_tasks is None else [int(t) for t in column_tasks]
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        if self.task_units is None:
            self.dense = keras.layers.Dense(
                self.units, kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                kernel_regularizer=kernel_regularizer, name="fused_kernel")

    def build(self, input_shape):
        if self.task_units is None:
            self.dense.build(input_shape)
            return
        num_tasks, width = len(self.task_units), max(self.task_units)
        self.kernel = self.add_weight(shape=(num_tasks, input_shape[-1], width), name="kernel",
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)
        self.bias = self.add_weight(shape=(num_tasks, width), name="bias",
                                    initializer=self.bias_initializer)
        # Column c of the output is unit j of task t: flat index t·width + j.
        seen = [0] * num_tasks
        index = []
        for t in self.column_tasks:
            index.append(t * width + seen[t])
            seen[t] += 1
        self._gather = np.array(index, dtype="int32")

    def call(self, features):
        if self.task_units is None:
            return self.dense(features)
        per_task = ops.einsum("btd,tdu->btu", features, self.kernel) + self.bias
        flat = ops.reshape(per_task, (ops.shape(per_task)[0], -1))
        return ops.take(flat, self._gather, axis=1)

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return (batch, self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            task_units=self.task_units,
            column_tasks=self.column_tasks,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
        )
        return config


class ForwardRecord:
    """The fused logits behind the outputs of a model's latest forward pass.

    Keras hands ``compute_loss`` the model's outputs in user units
    (probabilities); the loss is exact and stable only on the logits. Each
    :class:`TaskOutput` notes the logits it sliced and the tensor it
    returned; :meth:`logits_for` gives the logits back only if every output
    passed in is one of those tensors (identity, not equality), so a stale
    or foreign prediction is never paired with the wrong logits. It runs in
    the same trace as the forward pass on every backend, and holds plain
    Python references, out of Keras's tracking.
    """

    def __init__(self):
        self._entries = {}

    def note(self, name, logits, output):
        self._entries[name] = (logits, output)

    def logits_for(self, y_pred: dict):
        """The fused logits that produced ``y_pred``, or ``None``.

        Example:
            >>> record, logits = ForwardRecord(), ops.zeros((2, 1))
            >>> output = ops.sigmoid(logits)
            >>> record.note("car", logits, output)
            >>> record.logits_for({"car": output}) is logits, record.logits_for({"car": output + 0})
            (True, None)
        """
        found = None
        for name, value in y_pred.items():
            logits, output = self._entries.get(name, (None, None))
            if output is not value or (found is not None and logits is not found):
                return None
            found = logits
        return found


@keras.saving.register_keras_serializable(package="keras_mtl")
class TaskOutput(keras.layers.Layer):
    """One task's named output: its columns of the fused logits, activated.

    Args:
        start, stop: the task's columns in the fused logits.
        activation: ``"sigmoid"``, ``"softmax"`` or ``"linear"``.
    """

    def __init__(self, start, stop, activation, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)
        self.activation = activation
        self._activation_fn = keras.activations.get(activation)
        self.record = None  # a ForwardRecord, set by the model

    def call(self, logits):
        # float32 outputs even under a mixed-precision policy.
        output = ops.cast(self._activation_fn(logits[:, self.start:self.stop]), "float32")
        if self.record is not None:
            self.record.note(self.name, logits, output)
        return output

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.stop - self.start)

    def compute_output_spec(self, logits):
        return keras.KerasTensor((logits.shape[0], self.stop - self.start), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(start=self.start, stop=self.stop, activation=self.activation)
        return config


def logits_from_outputs(y_pred: dict, layout: HeadLayout, epsilon: float = 1e-7):
    """Fused logits recovered from outputs in user units (for foreign predictions).

    Probabilities are clipped to ``[ε, 1 − ε]`` first, as Keras does for
    losses on probabilities: exact up to that clipping.
    """
    columns = []
    for task in layout.tasks:  # columns are grouped by kind: put each block in place
        value = ops.cast(ops.convert_to_tensor(y_pred[task.name]), "float32")
        value = ops.reshape(value, (ops.shape(value)[0], task.units))
        if task.activation == "sigmoid":
            p = ops.clip(value, epsilon, 1.0 - epsilon)
            value = ops.log(p) - ops.log1p(-p)
        elif task.activation == "softmax":
            value = ops.log(ops.clip(value, epsilon, 1.0))
        columns.append((layout.block(task.name).start, value))
    columns.sort(key=lambda c: c[0])
    return ops.concatenate([c[1] for c in columns], axis=1)


def stack_labels(y, tasks, batch_size, dtype="float32"):
    """Stacks the labels of ``tasks`` into one (batch, units) matrix."""
    columns = [ops.cast(ops.convert_to_tensor(y[task.name]), dtype) for task in tasks]
    if all(len(column.shape) == 1 for column in columns):
        return ops.stack(columns, axis=1)  # one label per example and task: one op
    columns = [ops.reshape(column, (batch_size, task.units)) for column, task in zip(columns, tasks)]
    return columns[0] if len(columns) == 1 else ops.concatenate(columns, axis=1)


def stack_groups(y, layout: HeadLayout, batch_size) -> dict:
    """The labels of each fused group, ``{"sigmoid": …, "regression": …}``.

    Stacked once per step and shared by the loss and the metrics.
    """
    return {name: stack_labels(y, tasks, batch_size)
            for name, tasks in (("sigmoid", layout.sigmoid), ("regression", layout.regression)) if tasks}


def stack_weights(sample_weight, tasks, batch_size, dtype="float32"):
    """Per-entry weights (batch, units) from per-example weights."""
    columns = []
    for task in tasks:
        weight = sample_weight[task.name] if isinstance(sample_weight, dict) else sample_weight
        weight = ops.reshape(ops.cast(weight, dtype), (batch_size, 1))
        columns.append(ops.repeat(weight, task.units, axis=1) if task.units > 1 else weight)
    return columns[0] if len(columns) == 1 else ops.concatenate(columns, axis=1)


def _logistic_entries(y_true, logits):
    return binary_crossentropy_entries(y_true, logits, from_logits=True)


class FusedTaskLoss:
    """Computes every task's masked loss from the fused logits at once.

    Returns the vector of per-task losses in the user's task order; each
    entry is exactly what the task's own ``kmtl.losses`` class gives on that
    task's output (same formula, same normalisation). Under ``tf.distribute``
    each replica returns its share (its own sum over the global denominator);
    the shares add up to the single-device losses.

    Args:
        layout: the :class:`HeadLayout` of the model.
        normalize: ``"batch"`` or ``"labeled"``.
    """

    def __init__(self, layout: HeadLayout, normalize: str = "batch"):
        self.layout = layout
        self.normalize = check_normalize(normalize)

    def __call__(self, y, logits, sample_weight=None, return_counts=False, stacked=None):
        """Per-task losses, shape ``(num_tasks,)``, float32.

        Args:
            y: dict ``{task name: encoded labels}``.
            logits: fused logits ``(batch, layout.units)``.
            sample_weight: optional per-example weights ``(batch,)`` or a
                dict of them per task.
            return_counts: also return each task's (weighted) number of
                labelled entries in the batch, ``(num_tasks,)`` (in the global
                batch under ``tf.distribute``: summed over replicas).
            stacked: the groups' label matrices from :func:`stack_groups`,
                if already computed.
        """
        layout = self.layout
        logits = ops.cast(logits, "float32")
        batch_size = ops.shape(logits)[0]
        if stacked is None:
            stacked = stack_groups(y, layout, batch_size)
        totals, counts = [], []
        groups = (
            ("sigmoid", layout.sigmoid, 0, layout.num_sigmoid, _logistic_entries),
            ("regression", layout.regression, layout.num_sigmoid,
             layout.num_sigmoid + layout.num_regression, squared_error_entries),
        )
        for group, tasks, start, stop, entries in groups:
            if not tasks:
                continue
            y_group = stacked[group]
            losses, mask = entries(y_group, logits[:, start:stop])
            if sample_weight is not None:
                weights = stack_weights(sample_weight, tasks, batch_size, "float32")
                losses, mask = losses * weights, mask * weights
            total, count = ops.sum(losses, axis=0), ops.sum(mask, axis=0)
            if tasks is layout.sigmoid and layout.num_sigmoid > len(tasks):
                # Multilabel heads: sum their columns into one value per task.
                total = ops.segment_sum(total, layout.sigmoid_segments, len(tasks))
                count = ops.segment_sum(count, layout.sigmoid_segments, len(tasks))
            totals.append(total)
            counts.append(count)
        for task in layout.categorical:
            block = layout.block(task.name)
            losses, mask = categorical_crossentropy_entries(
                y[task.name], logits[:, block.start:block.stop], from_logits=True)
            if sample_weight is not None:
                weights = stack_weights(sample_weight, [task], batch_size, "float32")[:, 0]
                losses, mask = losses * weights, mask * weights
            totals.append(ops.reshape(ops.sum(losses), (1,)))
            counts.append(ops.reshape(ops.sum(mask), (1,)))
        total = ops.take(ops.concatenate(totals, axis=0), layout.to_user_order, axis=0)
        local_count = ops.take(ops.concatenate(counts, axis=0), layout.to_user_order, axis=0)
        # Each replica's share is its own sum over the global denominator
        # (keras_mtl.distribute); the same normaliser as the kmtl.losses classes.
        count, batch = global_counts(local_count, batch_size)
        per_task = ops.divide_no_nan(total, batch if self.normalize == "batch" else count)
        return (per_task, count) if return_counts else per_task


class TaskMetrics(keras.metrics.Metric):
    """The metrics of every task of a model, as one Keras metric.

    Tasks left on their default metrics share fused metric objects (one
    :class:`keras_mtl.metrics.SigmoidTaskMetrics` for all binary and
    multilabel tasks, one :class:`keras_mtl.metrics.RegressionTaskMetrics`
    for all regression tasks), so the cost per step does not grow with a
    Python loop over tasks; tasks given their own metrics, and categorical
    tasks, get one :class:`keras_mtl.metrics.MaskedMetric` each.

    ``update_state(y, y_pred, sample_weight)`` takes the labels and the
    model's outputs as dicts keyed by task; ``result()`` returns
    ``{"<task>_<metric>": value}`` for every task, and :meth:`task_means`
    the mean over tasks of each figure.

    Args:
        layout: the model's :class:`HeadLayout`.
        chosen: ``{task name: metrics or None}``; ``None`` means the task's
            defaults.
    """

    def __init__(self, layout: HeadLayout, chosen: dict, name="task_metrics"):
        super().__init__(name=name)
        self.layout = layout
        default = {t.name for t in layout.tasks if chosen[t.name] is None}
        self.sigmoid_tasks = [t for t in layout.sigmoid if t.name in default]
        self.regression_tasks = [t for t in layout.regression if t.name in default]
        self.fused = []
        if self.sigmoid_tasks:
            self.fused.append(metrics_lib.SigmoidTaskMetrics(
                [t.name for t in self.sigmoid_tasks], [t.units for t in self.sigmoid_tasks]))
        if self.regression_tasks:
            self.fused.append(metrics_lib.RegressionTaskMetrics([t.name for t in self.regression_tasks]))
        self.groups = [tasks for tasks in (self.sigmoid_tasks, self.regression_tasks) if tasks]
        self.per_task = {t.name: t.build_metrics(chosen[t.name]) for t in layout.tasks
                         if t.name not in default or t.kind == "categorical"}

    def update_state(self, y, y_pred, sample_weight=None):
        batch_size = ops.shape(y_pred[self.layout.tasks[0].name])[0]
        for metric, tasks in zip(self.fused, self.groups):
            labels = stack_labels(y, tasks, batch_size)
            values = [ops.reshape(y_pred[t.name], (batch_size, t.units)) for t in tasks]
            values = values[0] if len(values) == 1 else ops.concatenate(values, axis=1)
            weights = None if sample_weight is None else stack_weights(sample_weight, tasks, batch_size)
            metric.update_state(labels, values, weights)
        for name, task_metrics in self.per_task.items():
            weight = sample_weight.get(name) if isinstance(sample_weight, dict) else sample_weight
            for metric in task_metrics:
                metric.update_state(y[name], y_pred[name], sample_weight=weight)

    def result(self):
        found = {}
        for metric in self.fused:
            found.update(metric.result())
        for task_metrics in self.per_task.values():
            for metric in task_metrics:
                result = metric.result()
                found.update(result if isinstance(result, dict) else {metric.name: result})
        return found

    def task_means(self, task_losses=None) -> dict:
        """``{"mean_<metric>": …}``: each per-task figure averaged over the tasks.

        Computed from the fused metrics' vectors, without one scalar per
        task. With ``task_losses`` (a :class:`keras_mtl.metrics.TaskLossMeans`)
        also ``"mean_task_loss"``.
        """
        groups: dict[str, list] = {}
        for metric in self.fused + ([task_losses] if task_losses is not None else []):
            for suffix, vector in metric.vectors().items():
                groups.setdefault(suffix, []).append(vector)
        for name, task_metrics in self.per_task.items():
            for metric in task_metrics:
                result = metric.result()
                for key, value in (result if isinstance(result, dict) else {metric.name: result}).items():
                    groups.setdefault(key[len(name) + 1:], []).append(ops.reshape(value, (1,)))
        return {"mean_task_loss" if suffix == "loss" else f"mean_{suffix}": ops.mean(ops.concatenate(parts))
                for suffix, parts in groups.items()}

    def reset_state(self):
        for metric in self.fused:
            metric.reset_state()
        for task_metrics in self.per_task.values():
            for metric in task_metrics:
                metric.reset_state()
