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

from keras_mtl.distribute import cross_replica_sum
from keras_mtl.losses import (
    binary_crossentropy_entries,
    categorical_crossentropy_entries,
    check_normalize,
    squared_error_entries,
)
from keras_mtl.tasks import Task

__all__ = [
    "FusedTaskLoss",
    "HeadLayout",
    "TaskHeads",
    "TaskOutput",
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

    def call(self, logits):
        # float32 outputs even under a mixed-precision policy.
        return ops.cast(self._activation_fn(logits[:, self.start:self.stop]), "float32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.stop - self.start)

    def compute_output_spec(self, logits):
        return keras.KerasTensor((logits.shape[0], self.stop - self.start), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(start=self.start, stop=self.stop, activation=self.activation)
        return config


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
            totals.append(ops.sum(losses, keepdims=True))
            counts.append(ops.sum(mask, keepdims=True))
        total = ops.take(ops.concatenate(totals, axis=0), layout.to_user_order, axis=0)
        local_count = ops.take(ops.concatenate(counts, axis=0), layout.to_user_order, axis=0)
        # The global denominators, in one cross-replica sum (a no-op on one device):
        # each replica's share is its own sum over them (see keras_mtl.distribute).
        count, batch = cross_replica_sum([local_count, ops.cast(batch_size, "float32")])
        per_task = total / batch if self.normalize == "batch" else ops.divide_no_nan(total, count)
        return (per_task, count) if return_counts else per_task

    def predictions(self, logits):
        """User-unit predictions ``{task: tensor}`` from the fused logits."""
        layout = self.layout
        logits = ops.cast(logits, "float32")
        probs = ops.sigmoid(logits[:, :layout.num_sigmoid]) if layout.sigmoid else None
        outputs = {}
        for task in layout.tasks:
            block = layout.block(task.name)
            if task.kind in ("binary", "multilabel"):
                outputs[task.name] = probs[:, block.start:block.stop]
            elif task.kind == "categorical":
                outputs[task.name] = ops.softmax(logits[:, block.start:block.stop], axis=-1)
            else:
                outputs[task.name] = logits[:, block.start:block.stop]
        return outputs
