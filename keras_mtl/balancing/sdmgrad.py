"""SDMGrad: stochastic direction-oriented multi-objective gradient descent (Xiao et al., 2023)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.simplex_state import present_shares, with_absent_kept
from keras_mtl.balancing.solvers import (
    largest_eigenvalue,
    normalised_gram,
    presence_mask,
    present_mean,
    project_to_simplex,
)

__all__ = ["SDMGrad"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class SDMGrad(GradientAggregator):
    """Stochastic direction-oriented multi-objective gradient descent, SDMGrad (Xiao et al., 2023).

    MGDA regularised towards the average gradient ``g_0``: the weights
    ``w`` minimise, over the simplex,::

        F(w) = ½ ‖G w + λ g_0‖²,     ∇F(w) = K w + λ K ḡ        (K = G Gᵀ, ḡ = 1/T)

    and the update is ``d = (G w + λ g_0) / (1 + λ)`` — MGDA's min-norm
    point when ``λ = 0``, the average gradient as ``λ → ∞``. ``w`` is kept
    from step to step (state) and improved by ``iterations`` projected
    gradient steps per training step, each of size ``1 / λ_max(K̂)`` on the
    Gram matrix ``K̂`` normalised to unit mean squared norm (LibMTL divides by
    the mean norm squared; the minimiser is the same). ``λ = 0.3`` and 20
    steps are LibMTL's defaults.

    What differs from the paper: it estimates ``K`` from two independent
    mini-batches (``G_1 G_2ᵀ``, unbiased) and the direction from a third;
    ``model.fit`` hands the training step one batch, so all three come from
    it here (``K = G Gᵀ`` then also holds the gradients' noise covariance,
    the bias the double sampling removes). LibMTL's inner solver is SGD with
    momentum 0.5 and learning rate 5; this takes projected gradient steps of
    size ``1/λ_max``, which decrease ``F`` monotonically. A task absent from
    the batch keeps its ``w_i``; the present tasks take their steps on their
    shares of ``w`` (renormalised to sum 1), scaled back afterwards to the
    total they held.

    Args:
        lam: ``λ``, the pull towards the average gradient.
        iterations: projected-gradient steps on ``w`` per training step.
        **kwargs: passed to :class:`~keras_mtl.balancing.GradientAggregator`
            (``wrt``).

    References:
        Xiao, P., Ban, H., Ji, K. (2023). Direction-oriented Multi-objective
        Learning: Simple and Provable Stochastic Algorithms. NeurIPS.

    Example:
        >>> from keras import ops
        >>> sdm = SDMGrad(lam=0.0, iterations=200)
        >>> sdm.setup(["a", "b"], [1.0, 1.0])
        >>> alpha = sdm.task_coefficients(ops.array([[1.0, 0.0], [0.0, 4.0]]), ops.ones(2, "bool"))
        >>> [round(float(a), 3) for a in alpha]  # λ = 0: MGDA's min-norm point, w_i ∝ 1 / K_ii
        [0.8, 0.2]
    """

    def __init__(self, lam: float = 0.3, iterations: int = 20, **kwargs):
        super().__init__(**kwargs)
        if lam < 0:
            raise ValueError(f"SDMGrad lam must be >= 0; got {lam}.")
        self.lam = float(lam)
        self.iterations = int(iterations)

    def build(self, input_shape):
        self.task_weights = self.add_state("task_weights", (self.num_tasks,), 1.0 / self.num_tasks)

    def direction_weights(self, gram, present, start):
        """``w`` on the present tasks' simplex: ``iterations`` projected-gradient steps on ``F`` from ``start``."""
        mask = presence_mask(present)
        gram, _ = normalised_gram(ops.convert_to_tensor(gram, "float32") * mask[:, None] * mask[None, :], mask)
        mean = present_mean(mask)
        linear = self.lam * ops.matmul(gram, mean)
        step = 1.0 / largest_eigenvalue(gram)

        def descend(_, w):
            return project_to_simplex(w - step * (ops.matmul(gram, w) + linear), mask)

        return ops.fori_loop(0, self.iterations, descend, present_shares(start, present))

    def task_coefficients(self, gram, present):
        mask = presence_mask(present)
        previous = self.task_weights.value
        w = self.direction_weights(gram, present, previous)
        self.task_weights.assign(with_absent_kept(w, previous, present))
        mean = present_mean(mask)
        return (w + self.lam * mean) / (1.0 + self.lam)

    def get_config(self):
        return {**super().get_config(), "lam": self.lam, "iterations": self.iterations}
