"""MoCo: multi-objective gradient correction with tracked gradients (Fernando et al., 2023)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.simplex_state import present_shares, with_absent_kept
from keras_mtl.balancing.solvers import presence_mask, project_to_simplex

__all__ = ["MoCo"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class MoCo(GradientAggregator):
    """Multi-objective gradient correction, MoCo (Fernando et al., 2023).

    MGDA's weights computed from one mini-batch are biased; MoCo tracks the
    task gradients across steps and takes a single regularised
    projected-gradient step of the weights ``λ`` per training step::

        Y ← Y − β_t (Y − G̃)                         (tracking)
        λ ← Π_Δ(λ − γ_t (Y Yᵀ + ρ I) λ),   update = Σ_i λ_i g̃_i

    with ``β_t = β / t^{β_σ}``, ``γ_t = γ / t^{γ_σ}`` (``t`` the step) and,
    as the authors' code in LibMTL, each gradient rescaled to the norm of
    its loss, ``g̃_i = L_i g_i / ‖g_i‖`` (``L_i`` the weighted loss).
    ``Π_Δ`` is the exact Euclidean projection onto the simplex (the paper's
    choice; LibMTL applies a softmax instead). Defaults are LibMTL's:
    ``β = 0.5``, ``β_σ = 0.5``, ``γ = 0.1``, ``γ_σ = 0.5``, ``ρ = 0``.

    Approximation: the paper tracks the gradients themselves, ``Y``
    (``T × P``, ``P`` the shared parameters). keras_mtl strategies create
    their state when the model is compiled, before they know the shared
    parameters' shapes, and cannot add variables inside a compiled training
    step on every backend, so this keeps the tracked Gram matrix instead,
    ``M ← M − β_t (M − G̃ G̃ᵀ)`` (``T × T``), uses it for ``Y Yᵀ`` in the
    step of ``λ``, and applies ``λ`` to this step's ``g̃``. ``λ`` therefore
    follows the paper's recursion on averaged Gram matrices; the update's
    direction is not averaged. A task absent from the batch keeps its row
    and column of ``M`` and its ``λ_i``; the present tasks take the step on
    their shares of ``λ`` (renormalised to sum 1), which are then scaled
    back to the total they held.

    Args:
        beta: ``β``, the tracking rate.
        beta_sigma: ``β_σ``.
        gamma: ``γ``, the step of ``λ``.
        gamma_sigma: ``γ_σ``.
        rho: ``ρ``, the regulariser of the ``λ`` problem.
        **kwargs: passed to :class:`~keras_mtl.balancing.GradientAggregator`
            (``wrt``).

    References:
        Fernando, H. D., Shen, H., Liu, M., Chaudhury, S., Murugesan, K.,
        Chen, T. (2023). Mitigating Gradient Bias in Multi-objective
        Learning: A Provably Convergent Approach. ICLR.

    Example:
        >>> from keras import ops
        >>> moco = MoCo(beta=1.0, gamma=0.5)
        >>> moco.setup(["a", "b"], [1.0, 1.0])
        >>> moco.observe_gradients([], ops.ones(2), ops.ones(2), ops.ones(2, "bool"))
        >>> alpha = moco.task_coefficients(ops.array([[1.0, 0.0], [0.0, 4.0]]), ops.ones(2, "bool"))
        >>> [round(float(a), 3) for a in alpha]  # M = diag(1, 1): λ stays (½, ½); α_i = λ_i L_i / ‖g_i‖
        [0.5, 0.25]
    """

    def __init__(self, beta: float = 0.5, beta_sigma: float = 0.5, gamma: float = 0.1,
                 gamma_sigma: float = 0.5, rho: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        self.gamma = float(gamma)
        self.gamma_sigma = float(gamma_sigma)
        self.rho = float(rho)

    def build(self, input_shape):
        count = self.num_tasks
        self.tracked_gram = self.add_state("tracked_gram", (count, count), 0.0)
        self.task_weights = self.add_state("task_weights", (count,), 1.0 / count)
        self.step_losses = self.add_state("step_losses", (count,), 1.0)
        self.steps = self.add_state("steps", (), 0.0)

    def observe_gradients(self, task_gradients, task_losses, weights, present):
        losses = ops.stop_gradient(ops.convert_to_tensor(task_losses, "float32"))
        weighted = losses * ops.convert_to_tensor(weights, "float32")
        self.step_losses.assign(ops.where(present, weighted, self.step_losses.value))

    def task_coefficients(self, gram, present):
        gram = ops.convert_to_tensor(gram, "float32")
        mask = presence_mask(present)
        tracked, lam, steps = self.tracked_gram.value, self.task_weights.value, self.steps.value + 1.0
        # g̃_i = L_i g_i / ‖g_i‖: the Gram matrix of the rescaled gradients.
        scale = ops.divide_no_nan(self.step_losses.value, ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))) * mask
        rescaled = gram * scale[:, None] * scale[None, :]
        pairs = mask[:, None] * mask[None, :]
        beta = self.beta / ops.power(steps, self.beta_sigma)
        gamma = self.gamma / ops.power(steps, self.gamma_sigma)
        tracked = ops.where(pairs > 0, tracked - beta * (tracked - rescaled), tracked)
        regularised = tracked + self.rho * ops.eye(self.num_tasks)
        # The step on the present tasks' own simplex (their shares of λ).
        shares = present_shares(lam, present)
        shares = project_to_simplex(shares - gamma * ops.matmul(regularised, shares), mask)
        self.tracked_gram.assign(tracked)
        self.task_weights.assign(with_absent_kept(shares, lam, present))
        self.steps.assign(ops.where(ops.any(present), steps, self.steps.value))
        return shares * scale

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "beta_sigma": self.beta_sigma, "gamma": self.gamma,
                "gamma_sigma": self.gamma_sigma, "rho": self.rho}
