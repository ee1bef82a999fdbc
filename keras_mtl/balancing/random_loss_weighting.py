"""Random Loss Weighting: weights drawn afresh at every step (Lin et al., 2022)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.base import Balancer

__all__ = ["RandomLossWeighting"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class RandomLossWeighting(Balancer):
    """Random Loss Weighting, RLW (Lin et al., 2022).

    At every step the weights are drawn afresh::

        λ = softmax(z),  z ~ N(0, I_K),   L = Σ_i K λ_i w_i L_i

    (scaled by ``K`` so that the weights average 1 like fixed weights; when
    evaluating, ``combine(..., training=False)`` returns that expectation,
    the fixed weights, so validation losses are not random). The
    paper shows this simple baseline matches many elaborate strategies; a
    strategy that does not beat it is not balancing anything.

    The same paper's random *gradient* weighting (LibMTL's ``RGW``) applies
    the draw to the task gradients instead; ``Σ_i λ_i ∇L_i = ∇ Σ_i λ_i L_i``,
    so it takes this update (LibMTL's ``RLW`` and ``RGW`` leave out the
    factor ``K``) at the cost of a backward pass per task.

    Args:
        seed: seed of the weight draws.

    References:
        Lin, B., Ye, F., Zhang, Y., Tsang, I. W. (2022). Reasonable
        Effectiveness of Random Weighting: A Litmus Test for Multi-Task
        Learning. Transactions on Machine Learning Research.

    Example:
        >>> rlw = RandomLossWeighting(seed=0)
        >>> rlw.setup(["a", "b", "c"], [1.0, 1.0, 1.0])
        >>> weights, _ = rlw.combine(ops.ones(3), ops.ones(3, "bool"))
        >>> round(float(ops.sum(weights)), 4)  # K · softmax(z): a fresh draw that sums to K
        3.0
        >>> [float(w) for w in rlw.combine(ops.ones(3), ops.ones(3, "bool"), training=False)[0]]
        [1.0, 1.0, 1.0]
    """

    distributed_error = (
        "RandomLossWeighting cannot train under a tf.distribute strategy with several replicas: its "
        "weights come from a keras.random.SeedGenerator, whose state each replica would advance on "
        "its own, giving the replicas different weights. Train it on one device, or use "
        "kmtl.balancing.UncertaintyWeighting(), GradNorm(), DWA() or FixedWeights() under the strategy."
    )

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self._generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.last_weights = self.add_weight(shape=(self.num_tasks,), name="last_weights",
                                            trainable=False, initializer="ones")

    def combine(self, task_losses, present, training=True):
        if not training:
            # Evaluation reports the expected loss: E[K · softmax(z)_i] = 1.
            return self.base_weights, 0.0
        z = keras.random.normal((self.num_tasks,), seed=self._generator)
        weights = self.num_tasks * ops.softmax(z)
        self.last_weights.assign(weights)
        return weights * self.base_weights, 0.0

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
