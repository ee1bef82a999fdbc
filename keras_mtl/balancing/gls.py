"""GLS: the geometric mean of the task losses (Chennupati et al., 2019)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.base import Balancer, global_losses

__all__ = ["GLS"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class GLS(Balancer):
    """Geometric Loss Strategy, GLS (Chennupati et al., 2019).

    The model trains on the geometric mean of the present tasks' losses::

        L = (Π_i L_i)^{1/T},      ∂L/∂L_i = L / (T L_i)

    i.e. the loss weights ``L / (T L_i)``, held constant (``stop_gradient``),
    give exactly the gradient of the product; the extra term (also constant)
    makes ``loss`` in the logs equal the geometric mean itself. A task that
    is absent from the batch is left out of the product (``T`` counts the
    present tasks only) and gets weight 0. With loss weights ``w_i`` the mean
    is the weighted one, ``exp(Σ_i w_i log L_i / Σ_i w_i)`` (weights
    ``w_i L / (Σ_j w_j · L_i)``); equal ``w_i`` give the paper's formula.
    Like :class:`~keras_mtl.balancing.ScaleInvariant` it is invariant to the
    scale of any one loss (up to the common factor ``L``); no state, no
    hyper-parameter besides ``ε``.

    Args:
        epsilon: ``ε``, added to every loss inside the logarithm so a zero
            loss stays finite.

    References:
        Chennupati, S., Sistu, G., Yogamani, S., Rawashdeh, S. A. (2019).
        MultiNet++: Multi-Stream Feature Aggregation and Geometric Loss
        Strategy for Multi-Task Learning. CVPR Workshops.

    Example:
        >>> from keras import ops
        >>> gls = GLS(epsilon=0.0)
        >>> gls.setup(["a", "b"], [1.0, 1.0])
        >>> weights, extra = gls.combine(ops.array([1.0, 4.0]), ops.ones(2, "bool"))
        >>> [float(w) for w in weights]  # L = √(1 · 4) = 2: weights 2 / (2 · L_i)
        [1.0, 0.25]
        >>> float(extra + ops.sum(weights * ops.array([1.0, 4.0])))  # the loss: the geometric mean
        2.0
    """

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def combine(self, task_losses, present, training=True):
        losses = global_losses(task_losses)
        present = ops.convert_to_tensor(present)
        shares = ops.where(present, self.base_weights, 0.0)
        shares = ops.divide_no_nan(shares, ops.sum(shares))
        safe = ops.where(present, losses + self.epsilon, 1.0)
        mean = ops.exp(ops.sum(shares * ops.log(safe)))  # 1 when no task is present
        weights = ops.where(present, shares * mean / safe, 0.0)
        return weights, ops.where(ops.any(present), mean, 0.0) - ops.sum(weights * losses)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
