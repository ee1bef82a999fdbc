"""Nash-MTL: the Nash bargaining solution among the tasks (Navon et al., 2022)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.solvers import presence_mask

__all__ = ["NashMTL"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class NashMTL(GradientAggregator):
    """Nash-MTL: the Nash bargaining solution among the tasks (Navon et al., 2022).

    The update ``d = Σ_i α_i g_i`` with ``α > 0`` solving::

        G Gᵀ α = 1 / α      (elementwise: g_i · d = 1 / α_i)

    so each task's share of the improvement is inversely proportional to its
    weight; the update is invariant to the scale of any one task's loss.

    Instead of the paper's sequence of convex programs (cvxpy), the equation
    is solved as the minimum of the strictly convex, self-concordant
    function ``f(β) = ½ βᵀ C β − Σ_i log β_i`` on the Gram matrix with unit
    diagonal ``C = N⁻¹ K N⁻¹`` (``N = diag ‖g_i‖``, ``α = N⁻¹ β``; this makes
    the problem scale-free per task), by damped Newton steps
    ``β ← β + Δ / (1 + λ)`` (``Δ = −H⁻¹∇f``, Newton decrement
    ``λ = √(Δᵀ H Δ)``), which stay positive and converge from any start.
    Starting from ``β = 1`` (the solution for orthogonal gradients), 20
    steps reach ``max_i |(Kα)_i α_i − 1| < 1e-12`` in float64 on every
    problem of ``tests/test_aggregators.py`` (float32 here: ``≈ 1e-5``).
    A ridge of ``1e-6`` on ``C`` keeps ``α`` finite when two gradients are
    exactly opposed, where the equation has no solution. The authors' code
    also clips the update's norm (``max_norm=1``) and may skip steps; neither
    is done here.

    Scale: the weights are not normalised: ``g_i · d = 1 / α_i``, so the
    update is neither a sum nor a mean; LibMTL's ``Nash_MTL`` and torchjd's
    ``NashMTL`` solve the same equation and then clip ``‖d‖`` to
    ``max_norm = 1``.

    Args:
        iterations: damped Newton steps.

    References:
        Navon, A., Shamsian, A., Achituve, I., Maron, H., Kawaguchi, K.,
        Chechik, G., Fetaya, E. (2022). Multi-Task Learning as a Bargaining
        Game. ICML.

    Example:
        >>> nash = NashMTL()
        >>> nash.setup(["a", "b"], [1.0, 1.0])
        >>> alpha = nash.task_coefficients(ops.array([[1.0, 0.0], [0.0, 4.0]]), ops.ones(2, "bool"))
        >>> [round(float(a), 3) for a in alpha]  # orthogonal: α_i = 1 / ‖g_i‖
        [1.0, 0.5]
    """

    ridge = 1e-6

    def __init__(self, iterations: int = 25, **kwargs):
        super().__init__(**kwargs)
        self.iterations = int(iterations)

    def task_coefficients(self, gram, present):
        gram = ops.convert_to_tensor(gram, "float32")
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        active = presence_mask(present) * ops.cast(norms > 0, "float32")
        inverse = ops.divide_no_nan(active, norms)
        eye = ops.eye(self.num_tasks)
        # Inactive tasks get an identity block: decoupled, then dropped.
        unit = gram * inverse[:, None] * inverse[None, :] + ops.diag(1.0 - active) + self.ridge * eye

        def newton(_, beta):
            gradient = ops.matmul(unit, beta) - 1.0 / beta
            hessian = unit + ops.diag(1.0 / (beta * beta))
            delta = -ops.solve(hessian, gradient[:, None])[:, 0]
            decrement = ops.sqrt(ops.maximum(-ops.sum(gradient * delta), 0.0))
            return beta + delta / (1.0 + decrement)

        beta = ops.fori_loop(0, self.iterations, newton, ops.ones((self.num_tasks,)))
        return beta * inverse

    def get_config(self):
        return {**super().get_config(), "iterations": self.iterations}
