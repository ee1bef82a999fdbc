"""Masked losses: missing labels add nothing to the loss or the gradient.

The loss of one task over a batch of ``m`` examples is the formula::

    J = (1/m) · Σ_{i=1..m} Σ_{j labelled} L(ŷ_j⁽ⁱ⁾, y_j⁽ⁱ⁾)
    L(ŷ, y) = −y·log ŷ − (1−y)·log(1−ŷ)

where the inner sum runs over the labelled entries only (``j`` ranges over
the labels of a multilabel head; a binary head has one). With
``normalize="labeled"`` the sum is divided by the number of labelled entries
instead of ``m``. A batch with no labelled entry has loss 0 and zero
gradients.

Within a :class:`keras_mtl.MultiTaskModel`, a regression task's squared
error is that of standardised targets, ``((y − mean)/std − z)²`` with ``z``
its logit (``kmtl.Task(standardize=...)``); the classes below compute the
formula on the values they are given.

The building blocks are small pure functions (``*_entries``) returning the
per-entry losses, already zero at missing entries, and the mask; the
``keras.losses.Loss`` classes compose them with a normalisation.
Missing inputs are replaced by safe values *before* any ``log``/``exp`` so no
``NaN`` can flow back through a masked entry.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.distribute import cross_replica_sum, num_replicas
from keras_mtl.missing import labelled as labelled_entries

__all__ = [
    "NORMALIZATIONS",
    "MaskedBinaryCrossentropy",
    "MaskedCategoricalCrossentropy",
    "MaskedMeanSquaredError",
    "binary_crossentropy_entries",
    "categorical_crossentropy_entries",
    "squared_error_entries",
    "global_counts",
    "global_denominator",
]

NORMALIZATIONS = ("batch", "labeled")
_EPSILON = 1e-7


def check_normalize(normalize: str) -> str:
    """Returns ``normalize`` if valid, else raises a ``ValueError``."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(
            f"normalize={normalize!r} is not supported: use normalize='batch' "
            "(divide by the batch size m, the default) or normalize='labeled' "
            "(mean over labelled entries)."
        )
    return normalize


def _match_rank(y_true, y_pred):
    """Gives ``y_true`` the rank of ``y_pred`` (adds or drops a last axis of 1)."""
    true_rank, pred_rank = len(y_true.shape), len(y_pred.shape)
    if true_rank == pred_rank - 1 and y_pred.shape[-1] == 1:
        y_true = ops.expand_dims(y_true, -1)
    elif true_rank == pred_rank + 1 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    _check_shapes(y_true.shape, y_pred.shape)
    return y_true


def _check_shapes(true_shape, pred_shape):
    if len(true_shape) != len(pred_shape) or any(
        a is not None and b is not None and a != b
        for a, b in zip(true_shape, pred_shape, strict=True)
    ):
        raise ValueError(
            f"Label shape {tuple(true_shape)} does not match prediction shape "
            f"{tuple(pred_shape)}. Give one label per output unit (a binary "
            "or regression task takes shape (batch,) or (batch, 1); a "
            "multilabel task (batch, number of labels))."
        )


def binary_crossentropy_entries(y_true, y_pred, *, from_logits: bool = False):
    """Per-entry logistic loss with missing entries set to exactly 0.

    Args:
        y_true: labels in {0, 1}, ``-1``/``NaN`` where missing; shape
            ``(batch,)`` or the shape of ``y_pred``.
        y_pred: probabilities, or logits if ``from_logits``; shape
            ``(batch, units)``.
        from_logits: whether ``y_pred`` holds logits (numerically stable
            for any logit, ±100 included).

    Returns:
        ``(losses, mask)``: float tensors of the shape of ``y_pred``;
        ``losses`` is ``L(ŷ, y)`` at labelled entries and 0 elsewhere,
        ``mask`` is 1.0 at labelled entries.

    Example:
        >>> losses, mask = binary_crossentropy_entries(
        ...     [[1.0], [-1.0]], [[0.0], [0.0]], from_logits=True)
        >>> [round(float(v), 4) for v in ops.ravel(losses)]
        [0.6931, 0.0]
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = _match_rank(ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype), y_pred)
    labelled = labelled_entries(y_true, class_labels=True)
    y = ops.where(labelled, y_true, ops.zeros_like(y_true))
    if from_logits:
        # softplus(z) − z·y = max(z, 0) − z·y + log(1 + e^−|z|): each backend's softplus is
        # the stable form, so loss and gradient are finite for any z, in two operations.
        losses = ops.softplus(y_pred) - y_pred * y
    else:
        p = ops.clip(y_pred, _EPSILON, 1.0 - _EPSILON)
        losses = -(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p))
    mask = ops.cast(labelled, y_pred.dtype)
    return losses * mask, mask


def categorical_crossentropy_entries(y_true, y_pred, *, from_logits: bool = False):
    """Per-example cross-entropy of integer class labels, 0 where missing.

    Args:
        y_true: class indices in ``[0, num_classes)``, ``-1``/``NaN`` where
            missing; shape ``(batch,)`` or ``(batch, 1)``.
        y_pred: class probabilities, or logits if ``from_logits``; shape
            ``(batch, num_classes)``.
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        ``(losses, mask)``: float tensors of shape ``(batch,)``.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == len(y_pred.shape):
        if y_true.shape[-1] not in (1, None):
            raise ValueError(
                f"Categorical labels must be class indices of shape (batch,); "
                f"got shape {tuple(y_true.shape)}. Convert one-hot labels with "
                "np.argmax(labels, axis=-1)."
            )
        y_true = ops.squeeze(y_true, -1)
    _check_shapes(tuple(y_true.shape) + (y_pred.shape[-1],), y_pred.shape)
    labelled = labelled_entries(y_true, class_labels=True)
    classes = ops.cast(ops.where(labelled, y_true, ops.zeros_like(y_true)), "int32")
    one_hot = ops.one_hot(classes, y_pred.shape[-1], dtype=y_pred.dtype)
    if from_logits:
        log_probs = ops.log_softmax(y_pred, axis=-1)
    else:
        log_probs = ops.log(ops.clip(y_pred, _EPSILON, 1.0))
    losses = -ops.sum(one_hot * log_probs, axis=-1)
    mask = ops.cast(labelled, y_pred.dtype)
    return losses * mask, mask


def squared_error_entries(y_true, y_pred):
    """Per-entry squared error, 0 where the target is ``NaN`` (missing).

    Args:
        y_true: real targets, ``NaN`` where missing; shape ``(batch,)`` or the
            shape of ``y_pred``.
        y_pred: predictions, shape ``(batch, units)``.

    Returns:
        ``(losses, mask)``: float tensors of the shape of ``y_pred``.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = _match_rank(ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype), y_pred)
    labelled = labelled_entries(y_true, class_labels=False)
    y = ops.where(labelled, y_true, y_pred)
    mask = ops.cast(labelled, y_pred.dtype)
    return ops.square(y_pred - y) * mask, mask


def global_denominator(labelled_count, batch_size, normalize: str):
    """The denominator of a masked mean, summed over replicas: ``m`` or the labelled count.

    The one normaliser of keras_mtl: the ``kmtl.losses`` classes and the
    fused training loss both divide by it. Under a ``tf.distribute``
    strategy each replica passes its own counts and receives the global
    ones (one cross-replica sum), so each replica's sum over its examples,
    divided by this, is its share of the single-device loss. Without a
    strategy (and on JAX and PyTorch) it is the local value.

    Args:
        labelled_count: (weighted) number of labelled entries, a scalar or
            a vector (one per task).
        batch_size: ``m``, the number of examples in the (local) batch.
        normalize: ``"batch"`` or ``"labeled"``.

    Returns:
        A float tensor: the global batch size (a scalar) for ``"batch"``,
        the global labelled counts (shape of ``labelled_count``) for
        ``"labeled"``.

    Example:
        >>> float(global_denominator(ops.convert_to_tensor(3.0), 8, "batch"))
        8.0
    """
    check_normalize(normalize)
    count, batch = global_counts(labelled_count, batch_size)
    return batch if normalize == "batch" else count


def global_counts(labelled_count, batch_size):
    """``(labelled count, batch size)`` summed over replicas, in one cross-replica sum.

    Example:
        >>> count, m = global_counts(ops.convert_to_tensor([2.0, 0.0]), 4)
        >>> ops.convert_to_numpy(count).tolist(), float(m)
        ([2.0, 0.0], 4.0)
    """
    count = ops.cast(labelled_count, "float32")
    return tuple(cross_replica_sum([count, ops.cast(batch_size, "float32")]))


class _MaskedLoss(keras.losses.Loss):
    """Base class: per-example sums of masked entries, then normalisation.

    ``call`` returns one value per example; Keras's default
    ``"sum_over_batch_size"`` reduction then divides by ``m``, which is the
    formula for ``normalize="batch"``. For ``normalize="labeled"`` each value
    is scaled by ``m / (labelled entries in the batch)`` so that the same
    reduction yields the mean over labelled entries; with per-example
    ``sample_weight`` the labelled entries are counted with their weights
    (``Σ w·L / Σ w·[labelled]``).

    Under a ``tf.distribute`` strategy with ``R`` replicas Keras divides each
    replica's value by its local ``m_r`` and by ``R`` and sums the replicas'
    gradients. The values are then scaled by ``R · m_r / D`` with ``D`` the
    global denominator (batch size or labelled count, summed over replicas),
    so that the replicas' shares add up to the single-device loss even when
    the labelled entries are unevenly spread.
    """

    def __init__(self, normalize="batch", from_logits=False, name=None,
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.normalize = check_normalize(normalize)
        self.from_logits = from_logits
        self._count_weight = None

    def __call__(self, y_true, y_pred, sample_weight=None):
        # call() sees no sample_weight, but "labeled" counts weighted entries.
        self._count_weight = sample_weight if self.normalize == "labeled" else None
        try:
            return super().__call__(y_true, y_pred, sample_weight=sample_weight)
        finally:
            self._count_weight = None

    def _entries(self, y_true, y_pred):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        losses, mask = self._entries(y_true, y_pred)
        if len(losses.shape) > 1:
            losses = ops.sum(ops.reshape(losses, (ops.shape(losses)[0], -1)), axis=-1)
            mask = ops.sum(ops.reshape(mask, (ops.shape(mask)[0], -1)), axis=-1)
        # Keras divides the per-example values by the local m_r (and, under
        # tf.distribute, by the R replicas): scaled by R·m_r / D they add up
        # to Σ L / D with D the global denominator, the fused loss's formula.
        replicas = num_replicas() if self.reduction == "sum_over_batch_size" else 1
        if self.normalize == "labeled" or replicas > 1:
            if self._count_weight is not None:
                weight = ops.cast(ops.convert_to_tensor(self._count_weight), mask.dtype)
                mask = mask * ops.reshape(weight, (-1,))
            batch_size = ops.shape(losses)[0]
            denominator = global_denominator(ops.sum(mask), batch_size, self.normalize)
            scale = ops.cast(batch_size, "float32") * replicas
            losses = losses * ops.cast(ops.divide_no_nan(scale, denominator), losses.dtype)
        return losses

    def get_config(self):
        config = super().get_config()
        config.update(normalize=self.normalize, from_logits=self.from_logits)
        return config


@keras.saving.register_keras_serializable(package="keras_mtl")
class MaskedBinaryCrossentropy(_MaskedLoss):
    """Logistic loss of binary and multilabel tasks, ignoring missing labels.

    For a multilabel head the per-example value is the sum over its labels,
    as in the multi-task formula.

    Args:
        normalize: ``"batch"`` (divide by the batch size, default) or
            ``"labeled"`` (mean over labelled entries).
        from_logits: whether predictions are logits (recommended for
            numerical stability) or probabilities.
        name: loss name.
        reduction: Keras reduction of the per-example values.
        dtype: computation dtype.

    Example:
        >>> loss = MaskedBinaryCrossentropy()
        >>> round(float(loss([[1.0, -1.0]], [[0.9, 0.3]])), 4)   # −log 0.9
        0.1054

    References:
        Caruana, R. (1997). Multitask Learning. Machine Learning 28, 41–75.
    """

    def __init__(self, normalize="batch", from_logits=False,
                 name="masked_binary_crossentropy", reduction="sum_over_batch_size", dtype=None):
        super().__init__(normalize, from_logits, name, reduction, dtype)

    def _entries(self, y_true, y_pred):
        return binary_crossentropy_entries(y_true, y_pred, from_logits=self.from_logits)


@keras.saving.register_keras_serializable(package="keras_mtl")
class MaskedCategoricalCrossentropy(_MaskedLoss):
    """Cross-entropy of integer class labels, ignoring missing labels.

    Args:
        normalize: ``"batch"`` or ``"labeled"``.
        from_logits: whether predictions are logits or probabilities.
        name: loss name.
        reduction: Keras reduction of the per-example values.
        dtype: computation dtype.

    Example:
        >>> loss = MaskedCategoricalCrossentropy()
        >>> round(float(loss([2, -1], [[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])), 4)
        0.3466
    """

    def __init__(self, normalize="batch", from_logits=False,
                 name="masked_categorical_crossentropy", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(normalize, from_logits, name, reduction, dtype)

    def _entries(self, y_true, y_pred):
        return categorical_crossentropy_entries(y_true, y_pred, from_logits=self.from_logits)


@keras.saving.register_keras_serializable(package="keras_mtl")
class MaskedMeanSquaredError(_MaskedLoss):
    """Squared error of regression targets, ignoring ``NaN`` (missing) targets.

    Args:
        normalize: ``"batch"`` or ``"labeled"``.
        name: loss name.
        reduction: Keras reduction of the per-example values.
        dtype: computation dtype.

    Example:
        >>> loss = MaskedMeanSquaredError(normalize="labeled")
        >>> float(loss([[3.0], [float("nan")]], [[1.0], [5.0]]))
        4.0
    """

    def __init__(self, normalize="batch", name="masked_mean_squared_error",
                 reduction="sum_over_batch_size", dtype=None, from_logits=False):
        if from_logits:
            raise ValueError("MaskedMeanSquaredError has no logits: leave from_logits=False.")
        super().__init__(normalize, False, name, reduction, dtype)

    def _entries(self, y_true, y_pred):
        return squared_error_entries(y_true, y_pred)
