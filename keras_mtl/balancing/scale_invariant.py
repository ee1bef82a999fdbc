"""Scale-invariant loss weighting: train on ``Σ_i w_i log L_i``."""

from __future__ import annotations

import keras

from keras_mtl.balancing.base import Balancer, log_loss_weights

__all__ = ["ScaleInvariant"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class ScaleInvariant(Balancer):
    """Scale-invariant log loss: minimise ``Σ_i w_i log L_i``.

    ::

        L = Σ_i w_i log(L_i + ε),      ∇L = Σ_i w_i ∇L_i / (L_i + ε)

    Each task's loss is measured relative to its current value, so
    multiplying one task's loss by a constant changes nothing. Equivalently
    the loss weights are ``w_i / (L_i + ε)``, held constant; ``loss`` in the
    logs is
    ``Σ_i w_i log(L_i + ε)`` (negative once losses fall below 1) and
    ``weight_<task>`` is ``w_i / (L_i + ε)``. The cheapest scale-invariant
    baseline (losses only), the loss half of DB-MTL and the
    "scale-invariant" baseline of Navon et al. (2022) and Liu et al. (2023).

    Args:
        epsilon: ``ε``, keeps a zero loss finite.

    References:
        Navon, A., Shamsian, A., Achituve, I., Maron, H., Kawaguchi, K.,
        Chechik, G., Fetaya, E. (2022). Multi-Task Learning as a Bargaining
        Game. ICML.

    Example:
        >>> from keras import ops
        >>> b = ScaleInvariant(epsilon=0.0)
        >>> b.setup(["a", "b"], [1.0, 1.0])
        >>> weights, extra = b.combine(ops.array([0.5, 4.0]), ops.ones(2, "bool"))
        >>> [float(w) for w in weights]
        [2.0, 0.25]
    """

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def combine(self, task_losses, present, training=True):
        return log_loss_weights(task_losses, present, self.base_weights, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
