"""Uncertainty weighting: one learned log-variance per task (Kendall et al., 2018)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.base import Balancer

__all__ = ["UncertaintyWeighting"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class UncertaintyWeighting(Balancer):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, 2018).

    Learns one log-variance ``s_i = log σ_i²`` per task::

        L = Σ_i  exp(−s_i) · w_i L_i / 2  +  s_i / 2

    so the effective weight is ``exp(−s_i) / 2``: a task whose loss stays
    high (a noisier task) gets a larger ``σ_i`` and a smaller weight. A task
    absent from the batch adds neither term, so its ``s_i`` is not updated.

    Args:
        initial_log_variance: starting ``s_i`` (0 gives weight 0.5).

    References:
        Kendall, A., Gal, Y., Cipolla, R. (2018). Multi-Task Learning Using
        Uncertainty to Weigh Losses for Scene Geometry and Semantics. CVPR.

    Example:
        >>> b = UncertaintyWeighting()
        >>> b.setup(["a", "b"], [1.0, 2.0])
        >>> weights, extra = b.combine(ops.array([0.5, 2.0]), ops.ones(2, "bool"))
        >>> [float(w) for w in weights], float(extra)  # s_i = 0: exp(0) / 2 times w_i
        ([0.5, 1.0], 0.0)
    """

    def __init__(self, initial_log_variance: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_log_variance = float(initial_log_variance)

    def build(self, input_shape):
        self.log_variance = self.add_weight(
            shape=(self.num_tasks,), name="log_variance", trainable=True,
            initializer=keras.initializers.Constant(self.initial_log_variance))

    def combine(self, task_losses, present, training=True):
        mask = ops.cast(present, "float32")
        weights = 0.5 * ops.exp(-self.log_variance) * self.base_weights
        return weights, ops.sum(0.5 * self.log_variance * mask)

    def get_config(self):
        return {**super().get_config(), "initial_log_variance": self.initial_log_variance}
