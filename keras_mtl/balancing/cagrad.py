"""CAGrad: conflict-averse gradient descent (Liu et al., 2021)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.solvers import (
    TINY,
    largest_eigenvalue,
    normalised_gram,
    presence_mask,
    present_mean,
    project_to_simplex,
)

__all__ = ["CAGrad"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class CAGrad(GradientAggregator):
    """Conflict-Averse Gradient descent (Liu et al., 2021).

    Looks for the update ``d`` that maximises the worst task's improvement
    within a ball around the average gradient ``g_0``::

        max_d min_i g_i · d   s.t.  ‖d − g_0‖ ≤ c ‖g_0‖

    whose solution is ``d = g_0 + (c ‖g_0‖ / ‖g_w‖) g_w`` with
    ``g_w = Σ_i w_i g_i`` and ``w`` the minimiser over the simplex of
    ``F(w) = g_wᵀ g_0 + c ‖g_0‖ ‖g_w‖``. ``c = 0`` is plain averaging;
    larger ``c`` moves towards MGDA. ``rescale`` divides the update as the
    authors' code does: ``0`` not at all, ``1`` (its default and ours) by
    ``1 + c²``, ``2`` by ``1 + c``.

    ``F`` is minimised over the simplex of the present tasks by projected
    gradient descent (exact sort-based projection; the step
    ``‖g_w‖ / (c ‖g_0‖ λ_max(K))`` follows the local curvature of ``F``) for
    a fixed number of ``iterations``.

    Scale: a *mean* of the task gradients (``g_0`` is their average), then
    rescaled; LibMTL's ``CAGrad`` is the same (``rescale=1`` by default),
    torchjd's ``CAGrad`` is the unrescaled mean-scale update (``rescale=0``).

    Args:
        c: the radius ``c`` of the ball, relative to ``‖g_0‖``.
        rescale: ``0``, ``1`` or ``2``: divide the update by ``1``,
            ``1 + c²`` or ``1 + c``. ``True`` and ``False`` (accepted from
            older configs) mean ``1`` and ``0``.
        iterations: projected-gradient steps.

    References:
        Liu, B., Liu, X., Jin, X., Stone, P., Liu, Q. (2021).
        Conflict-Averse Gradient Descent for Multi-task Learning. NeurIPS.

    Example:
        >>> cagrad = CAGrad(c=0.0, rescale=0)
        >>> cagrad.setup(["a", "b"], [1.0, 1.0])
        >>> update = cagrad.aggregate_matrix(ops.array([[2.0, 0.0], [0.0, 4.0]]), ops.ones(2), ops.ones(2, "bool"))
        >>> [float(v) for v in update]  # c = 0: the average gradient
        [1.0, 2.0]
    """

    RESCALE = (0, 1, 2)

    def __init__(self, c: float = 0.5, rescale: int = 1, iterations: int = 200, **kwargs):
        super().__init__(**kwargs)
        if c < 0:
            raise ValueError(f"CAGrad c must be >= 0; got {c}.")
        if rescale not in self.RESCALE:
            raise ValueError(f"CAGrad rescale must be one of {self.RESCALE} (none, 1 + c², 1 + c); got {rescale!r}.")
        self.c = float(c)
        self.rescale = int(rescale)
        self.iterations = int(iterations)

    def conflict_averse_weights(self, gram, present):
        """``w`` ``(T,)``: the minimiser of ``F`` over the simplex of the present tasks."""
        mask = presence_mask(present)
        gram, _ = normalised_gram(ops.convert_to_tensor(gram, "float32") * mask[:, None] * mask[None, :], mask)
        mean = present_mean(mask)
        linear = ops.matmul(gram, mean)  # ∂(g_wᵀ g_0)/∂w
        radius = self.c * ops.sqrt(ops.maximum(ops.sum(mean * linear), 0.0))
        largest = largest_eigenvalue(gram)

        def descend(_, w):
            kw = ops.matmul(gram, w)
            norm = ops.sqrt(ops.maximum(ops.sum(w * kw), 0.0) + TINY)
            gradient = linear + radius * kw / norm
            step = norm / (radius * largest + TINY)
            return project_to_simplex(w - step * gradient, mask)

        return ops.fori_loop(0, self.iterations, descend, mean)

    def task_coefficients(self, gram, present):
        mask = presence_mask(present)
        mean = present_mean(mask)
        if self.c == 0:
            return mean  # the average gradient: no inner problem
        w = self.conflict_averse_weights(gram, present)
        gram = ops.convert_to_tensor(gram, "float32")
        g0_norm = ops.sqrt(ops.maximum(ops.sum(mean * ops.matmul(gram, mean)), 0.0))
        gw_norm = ops.sqrt(ops.maximum(ops.sum(w * ops.matmul(gram, w)), 0.0))
        coefficients = mean + ops.divide_no_nan(self.c * g0_norm, gw_norm) * w
        return coefficients / (1.0, 1.0 + self.c ** 2, 1.0 + self.c)[self.rescale]

    def get_config(self):
        return {**super().get_config(), "c": self.c, "rescale": self.rescale, "iterations": self.iterations}
