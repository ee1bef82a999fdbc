"""TrimmedMean: per coordinate, the mean of the task gradients without the extremes (Yin et al., 2018)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.solvers import presence_mask

__all__ = ["TrimmedMean"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class TrimmedMean(GradientAggregator):
    """Coordinate-wise trimmed mean (Yin et al., 2018), from Byzantine-robust learning.

    At every coordinate ``k`` of the shared parameters the ``n`` present
    task gradients are sorted; the ``b`` = ``trim_number`` largest and the
    ``b`` smallest values are dropped and the rest averaged::

        d_k = 1/(n − 2b) Σ_{r = b}^{n − b − 1} g_(r)k,      g_(0)k ≤ … ≤ g_(n−1)k

    ``b = 0`` is the mean gradient. A task whose gradient is extreme at a
    coordinate has no say there, so one task with a much larger loss scale
    cannot drag the update. Absent tasks are left out; when fewer than
    ``2b + 1`` tasks are present it trims ``⌊(n − 1)/2⌋`` from each side,
    which is the median.

    It works coordinate by coordinate, not on the Gram matrix, so only
    ``wrt="parameters"`` is supported.

    Scale: a *mean* of the task gradients, as torchjd's ``TrimmedMean``;
    LibMTL has no TrimmedMean.

    Args:
        trim_number: ``b``, the values dropped at each end of every
            coordinate; the model needs at least ``2b + 1`` tasks.

    References:
        Yin, D., Chen, Y., Kannan, R., Bartlett, P. (2018). Byzantine-Robust
        Distributed Learning: Towards Optimal Statistical Rates. ICML.

    Example:
        >>> trimmed = TrimmedMean(trim_number=1)
        >>> trimmed.setup(["a", "b", "c", "d"], [1.0] * 4)
        >>> g = ops.array([[1.0, 0.0], [2.0, 1.0], [3.0, -1.0], [100.0, 0.5]])
        >>> [float(v) for v in trimmed.aggregate_matrix(g, ops.ones(4), ops.ones(4, "bool"))]
        [2.5, 0.25]
    """

    WRT = ("parameters",)

    def __init__(self, trim_number: int = 1, **kwargs):
        super().__init__(**kwargs)
        if int(trim_number) != trim_number or trim_number < 0:
            raise ValueError(f"TrimmedMean trim_number must be an integer ≥ 0; got {trim_number!r}.")
        self.trim_number = int(trim_number)

    def setup(self, task_names, base_weights):
        count = len(list(task_names))
        if count < 2 * self.trim_number + 1:
            raise ValueError(
                f"TrimmedMean(trim_number={self.trim_number}) needs at least {2 * self.trim_number + 1} tasks "
                f"(2 · trim_number + 1); this model has {count}. Lower trim_number or pick another strategy.")
        super().setup(task_names, base_weights)

    def aggregate_matrix(self, matrix, weights, present):
        matrix = ops.convert_to_tensor(matrix, "float32")
        mask = presence_mask(present)
        count = ops.sum(mask)
        # Absent rows sort last; the present ones fill ranks 0 … n − 1 of every column.
        ordered = ops.sort(ops.where(mask[:, None] > 0, matrix, float("inf")), axis=0)
        trim = ops.maximum(ops.minimum(float(self.trim_number), ops.floor((count - 1.0) / 2.0)), 0.0)
        rank = ops.arange(matrix.shape[0], dtype="float32")[:, None]
        kept = ops.logical_and(rank >= trim, rank < count - trim)
        return ops.sum(ops.where(kept, ordered, 0.0), axis=0) / ops.maximum(count - 2.0 * trim, 1.0)

    def get_config(self):
        return {**super().get_config(), "trim_number": self.trim_number}
