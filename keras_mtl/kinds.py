"""Task kinds: what a task's labels and outputs mean, one class per kind.

A kind owns everything that differs between, say, a yes/no task and a
regression target: the number of output units and their activation, the
sentinel of a missing label, the masked per-entry loss on the logits, the
default metrics and which way each of them is better, the domain labels
must lie in, and what a SavedModel serves. The model, the pipelines, the
export and :func:`keras_mtl.compare` ask the task's kind; nothing else
branches on a kind's name.

``kmtl.Task("car", kind="binary")`` is shorthand for
``kind=kmtl.kinds.Binary()``; a kind object compares equal to its name, so
``task.kind == "binary"`` keeps working.

A new kind is a subclass that sets a ``name`` and overrides what differs
(see :class:`Poisson`, written that way)::

    @keras.saving.register_keras_serializable(package="my_package")
    class Poisson(kmtl.kinds.Kind):
        name = "poisson"
        activation = "exponential"              # the log link
        label_domain = LabelDomain(low=0, integer=True)

        def entries(self, y_true, logits):       # masked per-entry loss
            ...
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_mtl import losses as losses_lib
from keras_mtl import metrics as metrics_lib
from keras_mtl.missing import MISSING, labelled, register_kind, resolve_kind, serialize_kind, unknown_kind

__all__ = [
    "KINDS",
    "Binary",
    "Categorical",
    "Kind",
    "LabelDomain",
    "Multilabel",
    "Poisson",
    "Regression",
    "get",
]


@dataclass(frozen=True)
class LabelDomain:
    """The values a labelled entry may take: finite, in ``[low, high]``, integers if ``integer``.

    Example:
        >>> LabelDomain(low=0, high=1, integer=True).contains(np.array([0.0, 1.0, 2.0, 0.5])).tolist()
        [True, True, False, False]
    """

    low: float = -math.inf
    high: float = math.inf
    integer: bool = False

    def contains(self, values: np.ndarray) -> np.ndarray:
        """Boolean array: which of ``values`` (floats) lie in the domain."""
        values = np.asarray(values, dtype=np.float64)
        inside = np.isfinite(values) & (values >= self.low) & (values <= self.high)
        if self.integer:
            inside &= np.mod(np.where(inside, values, 0.0), 1.0) == 0
        return inside


class Kind:
    """Base class of task kinds.

    Class attributes a subclass sets:
        name: the shorthand (``Task(kind=name)``) and the kind's name in
            messages and metadata.
        activation: turns the head's logits into user units (a
            ``keras.activations`` name).
        class_labels: labels are classes, missing written as
            :data:`keras_mtl.MISSING` (−1); otherwise missing is ``NaN``
            and −1 may be data.
        label_dtype: dtype of encoded labels (``"float32"`` or ``"int32"``).
        elementwise: one loss term per output unit, so tasks of the kind
            fuse column-wise into one loss computation; ``False`` for a loss
            over a task's whole block of units (softmax).
        metric_classes: ``{short name: Keras metric class}`` the kind
            accepts by name (``metrics=["auc"]``).
        default_metrics: the short names a task gets by default; the first
            is its headline metric (:func:`keras_mtl.compare`).
        label_domain: the values a labelled entry may take.
        class_output: a SavedModel also serves ``<task>_class``, the
            arg-max.
        fuses_with: kinds with the same value share one label matrix and
            one loss computation (binary and multilabel both do).
        standardizes: the kind's targets are real numbers in the user's
            units, which tasks learn standardised by default
            (``Task(standardize=...)``).
    """

    name = ""
    activation = "linear"
    class_labels = False
    label_dtype = "float32"
    elementwise = True
    metric_classes: dict = {}
    default_metrics: tuple = ()
    label_domain = LabelDomain()
    class_output = False
    fuses_with = None
    standardizes = False
    # Column order of the fused logits: groups of lower rank come first.
    layout_rank = 2

    # -- per task -------------------------------------------------------------

    def check_options(self, task_name: str, labels=None, num_classes=None, class_names=None) -> dict:
        """Validates a task's kind-specific options; returns them cleaned.

        The base kind takes none: ``labels`` belong to multilabel tasks,
        ``num_classes``/``class_names`` to categorical ones.
        """
        _reject_labels(task_name, labels)
        _reject_classes(task_name, num_classes, class_names)
        return {}

    def units(self, task) -> int:
        """Output units of ``task``'s head."""
        return 1

    def output_names(self, task) -> list[str]:
        """What each output unit means."""
        return [task.name]

    def label_shape(self, task, n: int) -> tuple:
        """Shape of ``n`` labels of ``task`` as users give them."""
        return (n,)

    def label_columns(self, task) -> list[str]:
        """The table columns holding ``task``'s labels (:func:`keras_mtl.data.from_dataframe`)."""
        return [task.name]

    def domain(self, task) -> LabelDomain:
        """The label domain of ``task`` (may depend on its options)."""
        return self.label_domain

    def domain_hint(self, task, values: np.ndarray) -> str:
        """What to do about labels outside the domain, for the error message."""
        return f"{self.name.capitalize()} labels must be finite numbers"

    @property
    def sentinel(self) -> float:
        """The value an encoded missing label holds."""
        return float(MISSING) if self.class_labels else math.nan

    # -- loss -----------------------------------------------------------------

    def entries(self, y_true, logits):
        """The masked loss of every entry, from the logits.

        Args:
            y_true: encoded labels, ``(batch, units)`` for an elementwise
                kind (several tasks side by side), ``(batch,)`` otherwise.
            logits: the logits of those units, ``(batch, units)``.

        Returns:
            ``(losses, mask)``, float: ``(batch, units)`` for an elementwise
            kind, ``(batch, 1)`` otherwise; losses are 0 at missing entries
            and ``mask`` is 1.0 at labelled ones.
        """
        raise NotImplementedError(f"{type(self).__name__} must define entries(y_true, logits).")

    def loss_entries(self, loss, y_true, logits):
        """Like :meth:`entries`, with a user's elementwise loss on the outputs.

        ``loss`` is a ``keras.losses.Loss`` or a function of ``(y_true,
        y_pred)``; a loss with ``from_logits=True`` receives the logits,
        anything else the outputs in user units. Missing labels are replaced
        by a safe value first and masked out after, so they add nothing to
        the loss or the gradient.
        """
        mask = labelled(y_true, self.class_labels)
        y = ops.where(mask, y_true, ops.zeros_like(y_true))
        y_pred = logits if getattr(loss, "from_logits", False) else self.activate(logits)
        # One entry per unit: a trailing axis of 1 for the loss to reduce.
        values = _call_loss(loss, ops.expand_dims(y, -1), ops.expand_dims(y_pred, -1))
        mask = ops.cast(mask, logits.dtype)
        return ops.cast(values, logits.dtype) * mask, mask

    def activate(self, logits):
        """The outputs in user units."""
        return keras.activations.get(self.activation)(logits)

    def masked_loss(self, normalize: str = "batch", from_logits: bool = True, name=None):
        """The task's loss as a ``keras.losses.Loss`` (for use outside the model)."""
        raise NotImplementedError(f"{type(self).__name__} has no stand-alone Keras loss.")

    # -- class weights ----------------------------------------------------------

    def class_weight_table(self, task, class_weight: dict | None) -> np.ndarray:
        """The class weights of ``task`` as a table the loss looks up (``None``: all 1)."""
        raise ValueError(
            f"Task {task.name!r}: class_weight is for tasks whose labels are classes "
            f"(binary, multilabel, categorical), not {self.name!r}; weight examples with "
            "sample_weight instead."
        )

    def class_weights(self, y_true, table):
        """Per-entry weights from encoded labels and the table (1 at missing entries)."""
        raise NotImplementedError

    # -- metrics ----------------------------------------------------------------

    def higher_is_better(self, metric: str) -> bool:
        """Whether a larger value of ``metric`` (a short name, or ``"loss"``) is better."""
        return metrics_lib.higher_is_better(metric)

    @property
    def headline_metric(self) -> str:
        return self.default_metrics[0]

    def fused_metrics(self, task_names, units):
        """One metric object for many tasks on their default metrics, or ``None``."""
        return None

    # -- identity and serialisation ----------------------------------------------

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> Kind:
        return cls(**config)

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            return other == self.name
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __hash__(self) -> int:
        return hash(self.name)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _call_loss(loss, y_true, y_pred):
    """Per-entry values of an elementwise loss on ``(batch, units, 1)`` inputs: ``(batch, units)``."""
    values = loss.call(y_true, y_pred) if isinstance(loss, keras.losses.Loss) else loss(y_true, y_pred)
    values = ops.convert_to_tensor(values)
    if len(values.shape) == 3:
        values = ops.squeeze(values, -1)
    if len(values.shape) != 2:
        raise ValueError(
            f"The loss {loss!r} returned shape {tuple(values.shape)} for labels of shape "
            f"{tuple(y_true.shape)}: a task loss must be elementwise (one value per example "
            "and unit, reducing only the last axis), like keras.losses.Huber()."
        )
    return values


class _Logistic(Kind):
    """Shared by binary and multilabel: sigmoid units with the logistic loss."""

    activation = "sigmoid"
    class_labels = True
    metric_classes = {"auc": keras.metrics.AUC, "accuracy": keras.metrics.BinaryAccuracy}
    default_metrics = ("auc", "accuracy")
    label_domain = LabelDomain(low=0, high=1, integer=True)
    fuses_with = "logistic"
    layout_rank = 0

    def entries(self, y_true, logits):
        return losses_lib.binary_crossentropy_entries(y_true, logits, from_logits=True)

    def masked_loss(self, normalize="batch", from_logits=True, name=None):
        return losses_lib.MaskedBinaryCrossentropy(normalize=normalize, from_logits=from_logits, name=name)

    def class_weight_table(self, task, class_weight):
        table = _weight_table(task, class_weight, 2)
        return np.tile(table, (self.units(task), 1))  # (units, 2): one row per unit

    def class_weights(self, y_true, table):
        return ops.where(y_true > 0.5, table[:, 1], ops.where(y_true > -0.5, table[:, 0], 1.0))

    def fused_metrics(self, task_names, units):
        return metrics_lib.SigmoidTaskMetrics(task_names, units)


@register_kind
@keras.saving.register_keras_serializable(package="keras_mtl")
class Binary(_Logistic):
    """A yes/no task: one sigmoid unit, labels 0 or 1, the logistic loss of §2."""

    name = "binary"

    def domain_hint(self, task, values):
        hint = "Binary labels are 0 or 1"
        whole = values[np.isfinite(values)]
        if np.any(whole > 1) and np.all(np.mod(whole, 1) == 0):
            hint += (f"; if {task.name!r} has more classes use kmtl.Task({task.name!r}, "
                     f"kind='categorical', num_classes={int(whole.max()) + 1})")
        return hint


@register_kind
@keras.saving.register_keras_serializable(package="keras_mtl")
class Multilabel(_Logistic):
    """Several yes/no labels in one head: one sigmoid unit per name in ``labels``.

    The loss is the logistic loss summed over the head's labelled units.
    """

    name = "multilabel"

    def check_options(self, task_name, labels=None, num_classes=None, class_names=None):
        _reject_classes(task_name, num_classes, class_names)
        if labels is None or isinstance(labels, str) or len(labels) == 0:
            raise ValueError(
                f"Task {task_name!r}: a multilabel task needs the names of its labels, "
                f"e.g. kmtl.Task({task_name!r}, kind='multilabel', labels=['car', 'bike'])."
            )
        labels = [str(label) for label in labels]
        if len(set(labels)) != len(labels):
            duplicates = sorted({x for x in labels if labels.count(x) > 1})
            raise ValueError(
                f"Task {task_name!r}: duplicate label names {duplicates}; give each label "
                "a unique name (one output unit each)."
            )
        return {"labels": labels}

    def units(self, task):
        return len(task.labels)

    def output_names(self, task):
        return list(task.labels)

    def label_shape(self, task, n):
        return (n, self.units(task))

    def label_columns(self, task):
        return list(task.labels)

    def domain_hint(self, task, values):
        return "Multilabel labels are 0 or 1 for each label"


@register_kind
@keras.saving.register_keras_serializable(package="keras_mtl")
class Categorical(Kind):
    """One of ``num_classes`` classes: a softmax block, integer class labels, cross-entropy."""

    name = "categorical"
    activation = "softmax"
    class_labels = True
    label_dtype = "int32"
    elementwise = False
    metric_classes = {"accuracy": keras.metrics.SparseCategoricalAccuracy}
    default_metrics = ("accuracy",)
    class_output = True
    layout_rank = 3

    def check_options(self, task_name, labels=None, num_classes=None, class_names=None):
        _reject_labels(task_name, labels)
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if num_classes is None:
                num_classes = len(class_names)
            if len(class_names) != num_classes:
                raise ValueError(
                    f"Task {task_name!r}: {len(class_names)} class_names given for "
                    f"num_classes={num_classes}; give one name per class."
                )
        if isinstance(num_classes, numbers.Integral) and not isinstance(num_classes, bool):
            num_classes = int(num_classes)  # e.g. np.int64 from y.max() + 1
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"Task {task_name!r}: a categorical task needs num_classes, an integer "
                f"≥ 2 (got {num_classes!r}); e.g. kmtl.Task({task_name!r}, "
                "kind='categorical', num_classes=4). For a yes/no task use kind='binary'."
            )
        return {"num_classes": num_classes, "class_names": class_names}

    def units(self, task):
        return task.num_classes

    def output_names(self, task):
        return task.class_names or [str(i) for i in range(task.num_classes)]

    def domain(self, task):
        return LabelDomain(low=0, high=task.num_classes - 1, integer=True)

    def domain_hint(self, task, values):
        return f"Categorical labels are class indices 0..{task.num_classes - 1}"

    def entries(self, y_true, logits):
        losses, mask = losses_lib.categorical_crossentropy_entries(y_true, logits, from_logits=True)
        return ops.expand_dims(losses, -1), ops.expand_dims(mask, -1)

    def loss_entries(self, loss, y_true, logits):
        # A whole-block loss (e.g. CategoricalFocalCrossentropy) on one-hot labels.
        mask = labelled(y_true, True)
        classes = ops.cast(ops.where(mask, y_true, ops.zeros_like(y_true)), "int32")
        one_hot = ops.one_hot(classes, logits.shape[-1], dtype=logits.dtype)
        y_pred = logits if getattr(loss, "from_logits", False) else self.activate(logits)
        values = loss.call(one_hot, y_pred) if isinstance(loss, keras.losses.Loss) else loss(one_hot, y_pred)
        mask = ops.cast(mask, logits.dtype)
        return ops.expand_dims(ops.cast(values, logits.dtype) * mask, -1), ops.expand_dims(mask, -1)

    def masked_loss(self, normalize="batch", from_logits=True, name=None):
        return losses_lib.MaskedCategoricalCrossentropy(normalize=normalize, from_logits=from_logits,
                                                        name=name)

    def class_weight_table(self, task, class_weight):
        return _weight_table(task, class_weight, task.num_classes)

    def class_weights(self, y_true, table):
        mask = labelled(y_true, True)
        classes = ops.cast(ops.where(mask, y_true, ops.zeros_like(y_true)), "int32")
        return ops.where(mask, ops.take(table, classes), 1.0)


@register_kind
@keras.saving.register_keras_serializable(package="keras_mtl")
class Regression(Kind):
    """A real-valued target: one linear unit, the squared error, missing as ``NaN``."""

    name = "regression"
    metric_classes = {"mae": keras.metrics.MeanAbsoluteError, "mse": keras.metrics.MeanSquaredError,
                      "rmse": keras.metrics.RootMeanSquaredError}
    default_metrics = ("mae",)
    fuses_with = "squared_error"
    standardizes = True
    layout_rank = 1

    def domain_hint(self, task, values):
        return "Regression targets must be finite numbers"

    def entries(self, y_true, logits):
        return losses_lib.squared_error_entries(y_true, logits)

    def masked_loss(self, normalize="batch", from_logits=True, name=None):
        return losses_lib.MaskedMeanSquaredError(normalize=normalize, name=name)

    def fused_metrics(self, task_names, units):
        return metrics_lib.RegressionTaskMetrics(task_names)


@register_kind
@keras.saving.register_keras_serializable(package="keras_mtl")
class Poisson(Kind):
    """A count: the log of its rate as the logit, the Poisson loss, labels 0, 1, 2, …

    The head predicts ``z = log μ``; the output is the rate ``μ = exp(z)``
    and the loss per labelled entry is the negative log-likelihood without
    its constant ``log y!``::

        L(z, y) = exp(z) − y · z

    (``keras.losses.Poisson`` on ``μ``, minus a term that does not depend
    on the model). Metrics: mean absolute error of the rate and the mean
    Poisson deviance ``2 · (y log(y/μ) − (y − μ))``. Labels must be whole
    numbers ≥ 0; missing counts are ``NaN``, ``None`` or ``"?"`` (−1 is
    an invalid count, not a marker).

    Written as a user would write a kind of their own: a subclass that sets
    a name and overrides what differs from :class:`Kind`.

    Example:
        >>> import keras_mtl as kmtl
        >>> task = kmtl.Task("visits", kind=Poisson())
        >>> task.kind == "poisson", task.activation, task.build_metrics()[1].name
        (True, 'exponential', 'visits_deviance')
        >>> losses, mask = Poisson().entries(ops.convert_to_tensor([[2.0, float("nan")]]),
        ...                                  ops.convert_to_tensor([[0.0, 0.0]]))
        >>> ops.convert_to_numpy(losses).tolist()    # exp(0) − 2·0, and nothing for "?"
        [[1.0, 0.0]]

    References:
        McCullagh, P., Nelder, J. A. (1989). Generalized Linear Models, 2nd
        ed., chapter 6 (log-linear models for counts).
    """

    name = "poisson"
    activation = "exponential"
    metric_classes = {"mae": keras.metrics.MeanAbsoluteError, "deviance": metrics_lib.PoissonDeviance}
    default_metrics = ("mae", "deviance")
    label_domain = LabelDomain(low=0, integer=True)
    fuses_with = "poisson"

    def domain_hint(self, task, values):
        return "Poisson labels are counts: whole numbers 0, 1, 2, …"

    def entries(self, y_true, logits):
        y_true = ops.cast(ops.convert_to_tensor(y_true), logits.dtype)
        if len(y_true.shape) == len(logits.shape) - 1:
            y_true = ops.expand_dims(y_true, -1)
        mask = labelled(y_true, False)
        y = ops.where(mask, y_true, ops.zeros_like(y_true))
        # A masked entry's logit is replaced before exp: no overflow can flow back.
        z = ops.where(mask, logits, ops.zeros_like(logits))
        mask = ops.cast(mask, logits.dtype)
        return (ops.exp(z) - y * z) * mask, mask


KINDS = ("binary", "multilabel", "categorical", "regression", "poisson")
"""The built-in kinds' names (the ``kind=`` shorthand)."""


def get(kind) -> Kind:
    """The kind object for a name, an instance, a class or a serialised config.

    Names are those of the built-in kinds, registered by
    :func:`keras_mtl.missing.register_kind` as this module defines them.

    Example:
        >>> get("binary") == "binary", get(Poisson) == get("poisson"), get("regression").activation
        (True, True, 'linear')
        >>> get("binery")
        Traceback (most recent call last):
        ...
        ValueError: kind='binery' is not one of ('binary', ...). Did you mean kind='binary'?
    """
    resolved = resolve_kind(kind)
    if not isinstance(resolved, Kind):
        raise unknown_kind(kind)
    return resolved


def serialize(kind: Kind):
    """A built-in kind's name, or a custom kind's Keras config (for ``get_config``)."""
    return serialize_kind(kind)


def _reject_labels(task_name, labels):
    if labels is not None:
        raise ValueError(
            f"Task {task_name!r}: labels=... is for multilabel tasks; write "
            f"kmtl.Task({task_name!r}, kind='multilabel', labels={list(labels)!r})."
        )


def _reject_classes(task_name, num_classes, class_names):
    if num_classes is not None or class_names is not None:
        raise ValueError(
            f"Task {task_name!r}: num_classes/class_names are for categorical "
            f"tasks; write kmtl.Task({task_name!r}, kind='categorical', "
            f"num_classes={num_classes if num_classes is not None else len(class_names)})."
        )


def _weight_table(task, class_weight, num_classes: int) -> np.ndarray:
    """``{class: weight}`` as a float32 vector over the classes (1.0 where not given; all for ``None``)."""
    if class_weight is None:
        return np.ones(num_classes, dtype=np.float32)
    if not isinstance(class_weight, dict) or not class_weight:
        raise ValueError(
            f"Task {task.name!r}: class_weight must be a dict {{class: weight}}, e.g. "
            f"{{0: 1.0, 1: 20.0}}; got {class_weight!r}. "
            "kmtl.data.balanced_class_weight(labels, task) computes balanced weights."
        )
    table = np.ones(num_classes, dtype=np.float32)
    for key, weight in class_weight.items():
        index = int(key) if isinstance(key, (int, np.integer)) and not isinstance(key, bool) else None
        if index is None or not 0 <= index < num_classes:
            raise ValueError(
                f"Task {task.name!r}: class_weight key {key!r} is not a class of the task; "
                f"the classes are 0..{num_classes - 1}."
            )
        value = float(weight) if isinstance(weight, (int, float, np.number)) else math.nan
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"Task {task.name!r}: class_weight[{key!r}] = {weight!r} must be a finite number ≥ 0."
            )
        table[index] = value
    return table
