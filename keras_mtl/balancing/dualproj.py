"""DualProj: the mean gradient projected onto the dual cone of the task gradients (as in torchjd)."""

from __future__ import annotations

import keras
from keras import ops  # noqa: F401  (the example below uses it)

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.solvers import dual_cone_weights, presence_mask, present_mean

__all__ = ["DualProj"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class DualProj(GradientAggregator):
    """DualProj: the mean gradient, projected onto the dual cone of the task gradients.

    The update is the point nearest the mean gradient ``ḡ = (1/T) Σ_i g_i``
    that no task opposes::

        d = argmin_v ‖v − ḡ‖²   s.t.  g_i · v ≥ 0 for every task i

    — the projection of Lopez-Paz & Ranzato's GEM (their equation 11) with
    the mean gradient as the proposal, as torchjd's ``DualProj`` defines it.
    Through the dual problem the answer is ``d = Gᵀ w`` with::

        w = argmin_{w ≥ 1/T} wᵀ K w,      K = G Gᵀ

    (the multipliers of the active constraints are ``w − 1/T``), a small
    quadratic program over the ``T × T`` Gram matrix only. It is solved as
    :class:`UPGrad`'s programs are, by accelerated projected gradient
    (:func:`~keras_mtl.balancing.solvers.dual_cone_weights`) on the
    normalised Gram matrix plus ``reg · I`` (torchjd's default
    ``reg = 1e-4``). When the mean already agrees with every task
    (``G ḡ ≥ 0``) it passes unchanged. Absent tasks are left out: ``T``
    counts the present tasks.

    Scale: a *mean* of the task gradients (the weights are at least
    ``1/T``), as torchjd's ``DualProj`` (its default preference vector is
    the mean); LibMTL has no DualProj.

    Args:
        iterations: accelerated projected-gradient steps.
        reg: ridge on the normalised Gram matrix.

    References:
        Lopez-Paz, D., Ranzato, M. (2017). Gradient Episodic Memory for
        Continual Learning. NeurIPS.
        Quinton, P., Rey, V. (2024). Jacobian Descent for Multi-Objective
        Optimization. arXiv:2406.16232.

    Example:
        >>> dualproj = DualProj()
        >>> dualproj.setup(["a", "b"], [1.0, 1.0])
        >>> g = ops.array([[1.0, 0.2], [-3.0, 1.0]])
        >>> update = dualproj.aggregate_matrix(g, ops.ones(2), ops.ones(2, "bool"))
        >>> [round(float(v), 2) for v in update]  # the mean (-1, 0.6) opposed g_1: now orthogonal to it
        [-0.15, 0.77]
    """

    def __init__(self, iterations: int = 200, reg: float = 1e-4, **kwargs):
        super().__init__(**kwargs)
        self.iterations = int(iterations)
        self.reg = float(reg)

    def task_coefficients(self, gram, present):
        mask = presence_mask(present)
        mean = present_mean(mask)
        return dual_cone_weights(gram, mean, present, self.reg, self.iterations)

    def get_config(self):
        return {**super().get_config(), "iterations": self.iterations, "reg": self.reg}
