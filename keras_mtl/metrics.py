"""Masked metrics: any Keras metric, counting labelled entries only.

:class:`MaskedMetric` wraps a Keras metric. Before each update it replaces
missing labels by a harmless value and gives them a sample weight of 0, so
the wrapped metric sees labelled entries only — AUC, accuracy, MAE and any
metric that honours ``sample_weight`` work unchanged.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_mtl import backend as backend_lib
from keras_mtl.missing import label_mask, resolve_kind, serialize_kind
from keras_mtl.missing import labelled as labelled_entries

__all__ = [
    "HIGHER_IS_BETTER",
    "MaskedMetric",
    "PoissonDeviance",
    "RegressionTaskMetrics",
    "SigmoidTaskMetrics",
    "TaskLossMeans",
    "TaskWeights",
    "default_metrics",
    "get",
    "higher_is_better",
    "poisson_deviance",
]

HIGHER_IS_BETTER = {"auc": True, "accuracy": True, "mae": False, "mse": False, "rmse": False,
                    "deviance": False, "loss": False}
"""Which way the short-named metrics are better; the names a task's kind resolves to a Keras class."""


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (``"auc"`` yes, ``"mae"`` no).

    Names outside :data:`HIGHER_IS_BETTER` count as better when larger
    unless they name an error or a loss.

    Example:
        >>> higher_is_better("auc"), higher_is_better("mae"), higher_is_better("my_error")
        (True, False, False)
    """
    short = metric.lower()
    if short in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[short]
    return not any(word in short for word in ("error", "loss", "deviance", "mae", "mse"))


def poisson_deviance(y_true, y_pred, epsilon: float = 1e-7):
    """Mean Poisson deviance ``2 · (y log(y/μ) − (y − μ))`` over the last axis.

    Example:
        >>> round(float(poisson_deviance([[2.0]], [[1.0]])[0]), 4)   # 2·(2 log 2 − 1)
        0.7726
    """
    y = ops.cast(ops.convert_to_tensor(y_true), "float32")
    mu = ops.maximum(ops.cast(ops.convert_to_tensor(y_pred), "float32"), epsilon)
    positive = y > 0
    log_ratio = ops.log(ops.where(positive, y, 1.0) / mu)
    term = ops.where(positive, y * log_ratio, 0.0) - (y - mu)
    return 2.0 * ops.mean(term, axis=-1)


@keras.saving.register_keras_serializable(package="keras_mtl")
class PoissonDeviance(keras.metrics.MeanMetricWrapper):
    """Running mean of :func:`poisson_deviance` (the default metric of count tasks)."""

    def __init__(self, name="deviance", dtype=None):
        super().__init__(poisson_deviance, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_mtl")
class MaskedMetric(keras.metrics.Metric):
    """Updates a Keras metric on the labelled entries of a batch only.

    Args:
        metric: a ``keras.metrics.Metric`` instance (or its serialised
            config) that accepts ``sample_weight``.
        kind: the task's kind (object or name), which decides what a
            missing label looks like (``-1``/``NaN`` for class kinds,
            ``NaN`` for regression).
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
        self.kind = resolve_kind(kind)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        # One label per unit (elementwise kinds) or one class index per example.
        if len(y_true.shape) == len(y_pred.shape) - 1 and self.kind.elementwise:
            y_true = ops.expand_dims(y_true, -1)
        elif len(y_true.shape) == len(y_pred.shape) and not self.kind.elementwise:
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
            "kind": serialize_kind(self.kind),
            "name": self.name,
            "dtype": self.dtype,
        }


def get(identifier, kind: str, task_name: str | None = None) -> MaskedMetric:
    """Returns a masked metric for a task from a name, class or instance.

    Args:
        identifier: ``"auc"``, ``"accuracy"``, ``"mae"``, ``"mse"``,
            ``"rmse"``, any name ``keras.metrics.get`` knows, a metric class,
            or a metric instance (wrapped unless already masked).
        kind: the task's kind (object or name); ``"accuracy"`` means binary accuracy for
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
    kind = resolve_kind(kind)
    if isinstance(identifier, MaskedMetric):
        metric = identifier
    else:
        if isinstance(identifier, str):
            short = identifier.lower()
            if short in kind.metric_classes:
                inner = kind.metric_classes[short](name=short)
            elif short in HIGHER_IS_BETTER:
                raise ValueError(
                    f"Metric {identifier!r} does not apply to {kind} task "
                    f"{task_name!r}; metrics for {kind} tasks include "
                    f"{sorted(kind.metric_classes)}."
                )
            else:
                inner = keras.metrics.get(identifier)
        elif isinstance(identifier, type):
            inner = identifier()
        else:
            inner = identifier
            if isinstance(inner, keras.metrics.Metric):
                # A copy: the same Task (and its metric) may serve several models.
                inner = inner.__class__.from_config(inner.get_config())
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


def default_metrics(kind, task_name: str | None = None) -> list[MaskedMetric]:
    """The metrics a task gets unless told otherwise: its kind's ``default_metrics``.

    binary and multilabel: AUC and accuracy; categorical: accuracy;
    regression: mean absolute error; poisson: MAE and deviance.
    """
    return [get(name, kind, task_name) for name in resolve_kind(kind).default_metrics]


@keras.saving.register_keras_serializable(package="keras_mtl")
class TaskLossMeans(keras.metrics.Metric):
    """Running mean of every task's loss, kept as one vector.

    One variable update per step whatever the number of tasks; ``result()``
    returns ``{"<task>_loss": value}`` for each task and
    ``"mean_task_loss"``, their unweighted mean: the figure to monitor
    (``EarlyStopping("val_mean_task_loss", mode="min")``), since it means the same
    whatever the loss weights or the balancing strategy, where ``loss`` is
    the weighted total that an adaptive strategy itself moves.

    Example:
        >>> m = TaskLossMeans(["car", "bike"])
        >>> m.update_state(ops.convert_to_tensor([0.5, 1.5]))
        >>> {k: float(v) for k, v in m.result().items()}
        {'car_loss': 0.5, 'bike_loss': 1.5, 'mean_task_loss': 1.0}

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

    def vectors(self, leave_out=frozenset()) -> dict:
        """``{"loss": mean loss of every task}`` as one vector (none if ``"loss"`` is in ``leave_out``)."""
        return {} if "loss" in leave_out else {"loss": ops.divide_no_nan(self.total, self.count)}

    def result(self):
        losses = self.vectors()["loss"]
        return {**_per_task(self.task_names, {"loss": losses}), "mean_task_loss": ops.mean(losses)}

    def get_config(self):
        return {"task_names": self.task_names, "name": self.name, "dtype": self.dtype}


# Figures that a training step logging task means leaves out (``vectors(leave_out=...)``), read at the
# epoch's end instead: an AUC sums over every threshold (200 per unit by default), a large part of a
# step with many tasks.
EPOCH_END_FIGURES = frozenset({"auc"})


def _scalars(vector) -> list:
    """The entries of a vector over tasks: Python floats read in one transfer where it holds numbers.

    Keras reads every metric's ``result()`` at each epoch's end; slicing a
    vector of 1,000 tasks there would cost 1,000 operations on the device.
    Inside a traced step the vector is symbolic and is sliced.
    """
    if backend_lib.is_concrete(vector):
        return ops.convert_to_numpy(vector).tolist()
    return [vector[i] for i in range(vector.shape[0])]


def _per_task(task_names, vectors: dict) -> dict:
    """``{"<task>_<suffix>": scalar}`` from ``{suffix: vector over tasks}``."""
    scalars = {suffix: _scalars(vector) for suffix, vector in vectors.items()}
    return {f"{name}_{suffix}": values[i] for i, name in enumerate(task_names)
            for suffix, values in scalars.items()}


def _column_segments(units_per_task):
    return np.repeat(np.arange(len(units_per_task)), units_per_task).astype("int32")


@keras.saving.register_keras_serializable(package="keras_mtl")
class SigmoidTaskMetrics(keras.metrics.Metric):
    """AUC and accuracy of many binary/multilabel tasks in one metric.

    The default metrics of sigmoid tasks, fused, so the cost per step does
    not grow with a Python loop over tasks: every output unit's ROC AUC, as
    ``keras.metrics.AUC(num_thresholds, multi_label=True)`` computes it,
    plus vectors of correct and labelled counts. A multilabel task's AUC and
    accuracy pool all of its labels (the same values as a
    :class:`MaskedMetric` over its flattened output).

    Where Keras's AUC adds four cumulative confusion matrices
    ``(thresholds, units)`` at every step, this keeps one histogram: the
    (weighted) number of labelled positives and negatives of each unit whose
    prediction falls in each interval between two thresholds — one
    ``segment_sum`` per step. The confusion counts at every threshold are
    the histogram's sums from that threshold up, taken when the result is
    read; they are the counts Keras's AUC holds (same thresholds, same
    intervals).

    Args:
        task_names: the tasks, in column order.
        units_per_task: output units of each task (1 for binary).
        num_thresholds: thresholds of the AUC, as in ``keras.metrics.AUC``.
        name: metric name.

    ``result()`` returns ``{"<task>_auc": …, "<task>_accuracy": …}``.

    Example:
        >>> m = SigmoidTaskMetrics(["car"], [1])
        >>> m.update_state(np.array([[1.0], [0.0], [-1.0]]), np.array([[0.9], [0.2], [0.5]]))
        >>> {k: round(float(v), 4) for k, v in m.result().items()}
        {'car_auc': 1.0, 'car_accuracy': 1.0}
    """

    def __init__(self, task_names, units_per_task, num_thresholds=200, name="sigmoid_metrics",
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.task_names = list(task_names)
        self.units_per_task = [int(u) for u in units_per_task]
        if num_thresholds <= 1:
            raise ValueError(f"num_thresholds must be an integer > 1; got {num_thresholds}.")
        self.num_thresholds = int(num_thresholds)
        self._segments = _column_segments(self.units_per_task)
        units, count = sum(self.units_per_task), len(self.task_names)
        # Unit u's negatives at interval b: entry (u, 0, b); its positives: (u, 1, b).
        self.histogram = self.add_variable(shape=(units, 2, self.num_thresholds), initializer="zeros",
                                           name="histogram")
        self._unit_offsets = (np.arange(units) * 2 * self.num_thresholds).astype("int32")
        self.correct = self.add_variable(shape=(count,), initializer="zeros", name="correct")
        self.labelled = self.add_variable(shape=(count,), initializer="zeros", name="labelled")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """``y_true``, ``y_pred``: ``(batch, units)``; labels −1/NaN where missing."""
        y_pred = ops.cast(y_pred, self.dtype)
        y_true = ops.cast(y_true, self.dtype)
        weight = ops.cast(labelled_entries(y_true, class_labels=True), self.dtype)
        if sample_weight is not None:
            weight = weight * ops.cast(sample_weight, self.dtype)
        positive = y_true > 0  # a missing label is neither: its weight is 0
        # keras.metrics.AUC's intervals: threshold i is i/(n−1) (the first just below 0), and a
        # prediction p is above thresholds 0 … ceil(p·(n−1)) − 1.
        interval = ops.relu(ops.ceil(ops.clip(y_pred, 0.0, 1.0) * (self.num_thresholds - 1)) - 1.0)
        index = (ops.cast(interval, "int32") + ops.cast(positive, "int32") * self.num_thresholds
                 + self._unit_offsets)
        counts = ops.segment_sum(ops.reshape(weight, (-1,)), ops.reshape(index, (-1,)),
                                 num_segments=int(np.prod(self.histogram.shape)))
        self.histogram.assign_add(ops.reshape(counts, self.histogram.shape))
        hits = ops.cast(ops.equal(y_pred > 0.5, positive), self.dtype) * weight
        self.correct.assign_add(self._per_task(ops.sum(hits, axis=0)))
        self.labelled.assign_add(self._per_task(ops.sum(weight, axis=0)))

    def _per_task(self, per_unit):
        if len(self._segments) == len(self.task_names):
            return per_unit
        return ops.segment_sum(per_unit, self._segments, len(self.task_names))

    def vectors(self, leave_out=frozenset()) -> dict:
        """``{"auc": …, "accuracy": …}``, each a vector over the tasks.

        The figures named in ``leave_out`` are not computed (a training
        step leaves out :data:`EPOCH_END_FIGURES`).
        """
        found = {} if "accuracy" in leave_out else {"accuracy": ops.divide_no_nan(self.correct, self.labelled)}
        if "auc" in leave_out:
            return found
        histogram = self._per_task(self.histogram.value)  # (tasks, 2, thresholds): a task pools its units
        negatives, positives = histogram[:, 0], histogram[:, 1]
        total_positives = ops.sum(positives, axis=1)
        # Positives in the intervals above each interval.
        above = total_positives[:, None] - ops.cumsum(positives, axis=1)
        # keras.metrics.AUC's trapezoidal rule over these thresholds, summed interval by interval:
        # each negative counts the positives above it, and half of those in its own interval.
        pairs = ops.sum(negatives * (above + 0.5 * positives), axis=1)
        return {"auc": ops.divide_no_nan(pairs, ops.sum(negatives, axis=1) * total_positives), **found}

    def result(self):
        return _per_task(self.task_names, self.vectors())

    def reset_state(self):
        for variable in (self.histogram, self.correct, self.labelled):
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {"task_names": self.task_names, "units_per_task": self.units_per_task,
                "num_thresholds": self.num_thresholds, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_mtl")
class RegressionTaskMetrics(keras.metrics.Metric):
    """Mean absolute error of many regression tasks in one metric.

    ``result()`` returns ``{"<task>_mae": …}``; missing (``NaN``) targets are
    not counted.

    Args:
        task_names: the regression tasks, in column order.
        name: metric name.
    """

    def __init__(self, task_names, name="regression_metrics", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.task_names = list(task_names)
        count = len(self.task_names)
        self.total = self.add_variable(shape=(count,), initializer="zeros", name="total")
        self.labelled = self.add_variable(shape=(count,), initializer="zeros", name="labelled")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """``y_true``, ``y_pred``: ``(batch, tasks)``; ``NaN`` where missing."""
        y_pred = ops.cast(y_pred, self.dtype)
        y_true = ops.cast(y_true, self.dtype)
        labelled = labelled_entries(y_true, class_labels=False)
        weight = ops.cast(labelled, self.dtype)
        if sample_weight is not None:
            weight = weight * ops.cast(sample_weight, self.dtype)
        error = ops.abs(y_pred - ops.where(labelled, y_true, y_pred)) * weight
        self.total.assign_add(ops.sum(error, axis=0))
        self.labelled.assign_add(ops.sum(weight, axis=0))

    def vectors(self, leave_out=frozenset()) -> dict:
        """``{"mae": mean absolute error of every task}`` as one vector (none if ``"mae"`` is in ``leave_out``)."""
        return {} if "mae" in leave_out else {"mae": ops.divide_no_nan(self.total, self.labelled)}

    def result(self):
        return _per_task(self.task_names, self.vectors())

    def get_config(self):
        return {"task_names": self.task_names, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_mtl")
class TaskWeights(keras.metrics.Metric):
    """The loss weights of the latest training step, one per task.

    ``result()`` returns ``{"weight_<task>": value}``. The weights are not
    reset between epochs or by an evaluation: at the end of an epoch they
    are the last step's.

    Args:
        task_names: the tasks, in the order of the weight vector.
        name: metric name.

    Example:
        >>> m = TaskWeights(["car", "bike"])
        >>> m.update_state(ops.convert_to_tensor([0.5, 1.5]))
        >>> {k: float(v) for k, v in m.result().items()}
        {'weight_car': 0.5, 'weight_bike': 1.5}
    """

    def __init__(self, task_names, name="task_weights", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.task_names = list(task_names)
        self.keys = [f"weight_{name}" for name in self.task_names]
        # Every replica holds the same weights: read one, not the sum.
        self.last = self.add_variable(shape=(len(self.task_names),), initializer="ones", name="last",
                                      aggregation="only_first_replica")

    def update_state(self, weights, sample_weight=None):
        self.last.assign(ops.cast(weights, self.dtype))

    def result(self):
        return dict(zip(self.keys, _scalars(self.last.value)))

    def reset_state(self):
        pass  # the last step's weights stay readable after the epoch

    def get_config(self):
        return {"task_names": self.task_names, "name": self.name, "dtype": self.dtype}
