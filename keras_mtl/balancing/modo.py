"""MoDo: multi-objective gradient descent with double sampling (Chen et al., 2023)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.simplex_state import present_shares, with_absent_kept
from keras_mtl.balancing.solvers import presence_mask, project_to_simplex

__all__ = ["MoDo"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class MoDo(GradientAggregator):
    """Multi-objective gradient descent with double sampling, MoDo (Chen et al., 2023).

    MGDA's min-norm weights, ``min_{λ ∈ Δ} ½ ‖Gᵀ λ‖²``, followed by one
    projected stochastic gradient step per training step instead of being
    solved; the weights ``λ`` are state, kept on the simplex ``Δ``::

        λ ← Π_Δ(λ − γ (G₁ G₂ᵀ λ + ρ λ)),     update = G₃ᵀ λ = Σ_i λ_i g_i

    with ``G₁``, ``G₂``, ``G₃`` (``T × P``) the task gradients of
    independent mini-batches in the paper: ``G₁ G₂ᵀ λ`` is then an unbiased
    estimate of the gradient of ``½ ‖Gᵀ λ‖²``, and ``ρ λ`` regularises it.
    The update uses the new ``λ``. ``Π_Δ`` is the exact Euclidean projection
    onto the simplex. Defaults are those of the authors' code in LibMTL
    (``γ = 10⁻³``, ``ρ = 0.1``); the weights start uniform.

    One batch per step: LibMTL's trainer draws three consecutive mini-batches
    from the loader for every MoDo step (three forward and backward passes;
    the heads get the mean of the three batches' gradients), so a LibMTL
    epoch of ``n`` steps reads ``3n`` batches. ``model.fit`` hands the
    training step one batch, and keras_mtl uses its task gradients ``G`` for
    all three: the step of ``λ`` takes ``K = G Gᵀ``, which also holds the
    gradients' noise covariance (the bias the double sampling removes), and
    the update is ``Gᵀ λ``. Feeding ``fit`` batches three times larger
    spends the same examples per step as LibMTL and shrinks that bias.
    Because only ``K`` is needed, ``wrt="representation"`` is available
    (LibMTL refuses representation gradients for MoDo).

    A task absent from the batch keeps its ``λ_i``; the present tasks take
    the step on their shares of ``λ`` (renormalised to sum 1, and their
    update uses these shares), which are then scaled back to the total they
    held.

    Scale: a convex combination of the task gradients (``λ`` sums to 1 over
    the present tasks) — a *mean*-sized update, ``T`` times smaller than the
    sum of ``FixedWeights``; LibMTL's ``MoDo`` is the same (``λ`` on the
    simplex, of the unweighted losses' gradients where keras_mtl takes the
    weighted ones); torchjd has no MoDo.

    Args:
        gamma: ``γ``, the step of ``λ``.
        rho: ``ρ``, the ℓ₂ regulariser of the ``λ`` step.
        **kwargs: passed to :class:`~keras_mtl.balancing.GradientAggregator`
            (``wrt``).

    References:
        Chen, L., Fernando, H., Ying, Y., Chen, T. (2023). Three-Way
        Trade-Off in Multi-Objective Learning: Optimization, Generalization
        and Conflict-Avoidance. NeurIPS.

    Example:
        >>> from keras import ops
        >>> modo = MoDo(gamma=0.25, rho=0.0)
        >>> modo.setup(["a", "b"], [1.0, 1.0])
        >>> alpha = modo.task_coefficients(ops.array([[1.0, 0.0], [0.0, 3.0]]), ops.ones(2, "bool"))
        >>> [round(float(a), 3) for a in alpha]  # Π(½ − ¼ (½, 3/2)) = Π(0.375, 0.125): the smaller gradient gains
        [0.625, 0.375]
    """

    def __init__(self, gamma: float = 1e-3, rho: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if gamma <= 0 or rho < 0:
            raise ValueError(f"MoDo needs gamma > 0 and rho >= 0; got gamma={gamma}, rho={rho}.")
        self.gamma = float(gamma)
        self.rho = float(rho)

    def build(self, input_shape):
        self.task_weights = self.add_state("task_weights", (self.num_tasks,), 1.0 / self.num_tasks)

    def task_coefficients(self, gram, present):
        gram = ops.convert_to_tensor(gram, "float32")
        mask = presence_mask(present)
        previous = self.task_weights.value
        shares = present_shares(previous, present)
        shares = project_to_simplex(shares - self.gamma * (ops.matmul(gram, shares) + self.rho * shares), mask)
        self.task_weights.assign(with_absent_kept(shares, previous, present))
        return shares

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "rho": self.rho}
