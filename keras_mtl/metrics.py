"""Masked metrics: any Keras metric, counting labelled entries only.

:class:`MaskedMetric` wraps a Keras metric. Before each update it replaces
missing labels by a harmless value and gives them a sample weight of 0, so
the wrapped metric sees labelled entries only — AUC, accuracy, MAE and any
metric that honours ``sample_weight`` work unchanged.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.missing import label_mask

__all__ = ["MaskedMetric", "TaskLossMeans", "default_metrics", "get"]

# Short names that mean a different Keras class per kind of task.
_BY_KIND = {
    "auc": {k: keras.metrics.AUC for k in ("binary", "multilabel")},
    "accuracy": {
        "binary": keras.metrics.BinaryAccuracy,
        "multilabel": keras.metrics.BinaryAccuracy,
        "categorical": keras.metrics.SparseCategoricalAccuracy,
    },
    "mae": {"regression": keras.metrics.MeanAbsoluteError},
    "mse": {"regression": keras.metrics.MeanSquaredError},
    "rmse": {"regression": keras.metrics.RootMeanSquaredError},
}
_DEFAULTS = {
    "binary": ("auc", "accuracy"),
    "multilabel": ("auc", "accuracy"),
    "categorical": ("accuracy",),
    "regression": ("mae",),
}


@keras.saving.register_keras_serializable(package="keras_mtl")
class MaskedMetric(keras.metrics.Metric):
    """Updates a Keras metric on the labelled entries of a batch only.

    Args:
        metric: a ``keras.metrics.Metric`` instance (or its serialised
            config) that accepts ``sample_weight``.
        kind: task kind, which decides what a missing label looks like
            (``-1``/``NaN`` for class kinds, ``NaN`` for regression).
        name: metric name, e.g. ``"car_auc"``; defaults to the wrapped
            metric's name.
        dtype: metric dtype.

    Example:
        >>> m = MaskedMetric(keras.metrics.BinaryAccuracy(), kind="binary")
        >>> m.update_state([1.0, -1.0, 0.0], [[0.9], [0.9], [0.8]])
        >>> float(m.result())          # the "?" entry is not counted
        0.5
    """

    def __init__(self, metric, kind="binary", name=None, dtype=None):
        if isinstance(metric, dict):
            metric = keras.saving.deserialize_keras_object(metric)
        if not isinstance(metric, keras.metrics.Metric):
            raise TypeError(
                f"MaskedMetric wraps a keras.metrics.Metric instance; got {metric!r}. "
                "Use keras_mtl.metrics.get('auc', kind) for a metric by name."
            )
        super().__init__(name=name or metric.name, dtype=dtype)
        self.metric = metric
        self.kind = kind

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape) - 1 and self.kind != "categorical":
            y_true = ops.expand_dims(y_true, -1)
        elif len(y_true.shape) == len(y_pred.shape) and self.kind == "categorical":
            y_true = ops.squeeze(y_true, -1)
        labelled = label_mask(y_true, self.kind)
        y_true = ops.where(labelled, y_true, ops.zeros_like(y_true))
        weight = ops.cast(labelled, self.dtype)
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, self.dtype)
            while len(sample_weight.shape) < len(weight.shape):
                sample_weight = ops.expand_dims(sample_weight, -1)
            weight = weight * sample_weight
        self.metric.update_state(y_true, y_pred, sample_weight=weight)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()

    def get_config(self):
        return {
            "metric": keras.saving.serialize_keras_object(self.metric),
            "kind": self.kind,
            "name": self.name,
            "dtype": self.dtype,
        }


def get(identifier, kind: str, task_name: str | None = None) -> MaskedMetric:
    """Returns a masked metric for a task from a name, class or instance.

    Args:
        identifier: ``"auc"``, ``"accuracy"``, ``"mae"``, ``"mse"``,
            ``"rmse"``, any name ``keras.metrics.get`` knows, a metric class,
            or a metric instance (wrapped unless already masked).
        kind: the task's kind; ``"accuracy"`` means binary accuracy for
            binary/multilabel tasks and sparse categorical accuracy for
            categorical ones.
        task_name: if given, the metric is named ``"<task>_<metric>"`` so
            History and callbacks can address it (``val_car_auc``).

    Returns:
        A :class:`MaskedMetric`.

    Example:
        >>> get("auc", "binary", "car").name
        'car_auc'
    """
    if isinstance(identifier, MaskedMetric):
        metric = identifier
    else:
        if isinstance(identifier, str):
            short = identifier.lower()
            if short in _BY_KIND:
                if kind not in _BY_KIND[short]:
                    raise ValueError(
                        f"Metric {identifier!r} does not apply to {kind} task "
                        f"{task_name!r}; metrics for {kind} tasks include "
                        f"{[n for n, by in _BY_KIND.items() if kind in by]}."
                    )
                inner = _BY_KIND[short][kind](name=short)
            else:
                inner = keras.metrics.get(identifier)
        elif isinstance(identifier, type):
            inner = identifier()
        else:
            inner = identifier
        if not isinstance(inner, keras.metrics.Metric):
            raise ValueError(
                f"Task {task_name!r}: {identifier!r} is a function, not a Keras "
                "metric object; pass a keras.metrics.Metric instance (e.g. "
                "keras.metrics.MeanMetricWrapper(fn, name='my_metric'))."
            )
        metric = MaskedMetric(inner, kind=kind)
    if task_name and not metric.name.startswith(f"{task_name}_"):
        metric.name = f"{task_name}_{metric.name}"
    return metric


def default_metrics(kind: str, task_name: str | None = None) -> list[MaskedMetric]:
    """The metrics a task gets unless told otherwise.

    binary and multilabel: AUC and accuracy; categorical: accuracy;
    regression: mean absolute error.
    """
    return [get(name, kind, task_name) for name in _DEFAULTS[kind]]


@keras.saving.register_keras_serializable(package="keras_mtl")
class TaskLossMeans(keras.metrics.Metric):
    """Running mean of every task's loss, kept as one vector.

    One variable update per step whatever the number of tasks; ``result()``
    returns ``{"<task>_loss": value}`` for each task.

    Args:
        task_names: the tasks, in the order of the loss vector.
        name: metric name.
    """

    def __init__(self, task_names, name="task_losses", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.task_names = list(task_names)
        self.total = self.add_variable(shape=(len(self.task_names),), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, task_losses, sample_weight=None):
        weight = ops.cast(1.0 if sample_weight is None else sample_weight, self.dtype)
        self.total.assign_add(ops.cast(task_losses, self.dtype) * weight)
        self.count.assign_add(weight)

    def result(self):
        means = ops.divide_no_nan(self.total, self.count)
        return {f"{name}_loss": means[i] for i, name in enumerate(self.task_names)}

    def get_config(self):
        return {"task_names": self.task_names, "name": self.name, "dtype": self.dtype}
