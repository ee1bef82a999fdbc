"""ExcessMTL: weights that grow with each task's estimated excess risk (He et al., 2024)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.base import Balancer

__all__ = ["ExcessMTL"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class ExcessMTL(Balancer):
    """Robust multi-task learning with excess risks, ExcessMTL (He et al., 2024).

    Each task's weight grows with an estimate of its *excess risk* — how far
    its loss is from the best it could reach — rather than with the loss
    itself, so a task with a high but irreducible loss (label noise) does not
    take over. With the second-order estimate ``r_i ≈ g_iᵀ H_i⁻¹ g_i`` of the
    excess risk, ``H_i`` the diagonal AdaGrad preconditioner of the task's
    gradients, the weights move multiplicatively (exponentiated gradient)::

        a_i ← a_i + ‖g_i‖²,              r_i = ‖g_i‖² / √(a_i + ε)
        λ_i ← λ_i · exp(η r_i / r_i(0)),  λ ← T λ / Σ_j λ_j

    with ``g_i`` the gradient of task ``i``'s (unweighted) loss on the last
    shared kernel (``gradient_scope="last_shared"``, as GradNorm) and
    ``r_i(0)`` its first estimate (the first step a task is labelled sets it
    and leaves the weights alone), as the authors' code (LibMTL) does.

    Approximation: the paper and LibMTL keep the full diagonal AdaGrad
    accumulator ``Σ_t g_t²`` (one number per shared parameter and task);
    here each task keeps the sum over coordinates ``a_i = Σ_t ‖g_{i,t}‖²``,
    i.e. the diagonal replaced by its mean (AdaGrad-norm), so the state is
    ``O(T)`` and does not depend on the model's shapes. The constant that
    this drops cancels in ``r_i / r_i(0)``. The loss weights are ``λ ⊙ w``
    (``w`` the tasks' ``loss_weight``). An absent task keeps ``a_i``,
    ``r_i(0)`` and ``λ_i`` exactly; the present tasks are renormalised among
    themselves, keeping their total.

    Args:
        step_size: ``η``, LibMTL's ``robust_step_size`` (default ``1e-2``).
        epsilon: ``ε`` in the preconditioner.

    References:
        He, Y., Zhou, S., Zhang, G., Yun, H., Xu, Y., Zeng, B., Chilimbi, T.,
        Zhao, H. (2024). Robust Multi-Task Learning with Excess Risks. ICML.

    Example:
        >>> from keras import ops
        >>> excess = ExcessMTL(step_size=0.5)
        >>> excess.setup(["a", "b"], [1.0, 1.0])
        >>> grads = [ops.array([[3.0, 0.0], [0.0, 1.0]])]
        >>> for _ in range(2):
        ...     excess.observe_gradients(grads, ops.ones(2), ops.ones(2), ops.ones(2, "bool"))
        >>> [round(float(w), 3) for w in ops.convert_to_numpy(excess.task_weights)]  # r / r(0) = 1/√2 each
        [1.0, 1.0]
    """

    gradient_scope = "last_shared"

    def __init__(self, step_size: float = 1e-2, epsilon: float = 1e-7, **kwargs):
        super().__init__(**kwargs)
        self.step_size = float(step_size)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        self.task_weights = self.add_state("task_weights", (self.num_tasks,), 1.0)
        self.squared_sum = self.add_state("squared_sum", (self.num_tasks,), 0.0)
        self.initial_risk = self.add_state("initial_risk", (self.num_tasks,), 0.0)

    def combine(self, task_losses, present, training=True):
        return self.task_weights * self.base_weights, 0.0

    def excess_risks(self, squared_norms, present):
        """``(r, a)``: this step's excess-risk estimates and the updated accumulators ``a``."""
        accumulated = self.squared_sum.value + ops.where(present, squared_norms, 0.0)
        return ops.where(present, squared_norms / ops.sqrt(accumulated + self.epsilon), 0.0), accumulated

    def observe_gradients(self, task_gradients, task_losses, weights, present):
        present = ops.convert_to_tensor(present)
        mask = ops.cast(present, "float32")
        # The gradients are those of the weighted losses w_i L_i: divide the weights out.
        weights = ops.convert_to_tensor(weights, "float32")
        squared = sum(ops.sum(ops.reshape(ops.cast(g, "float32"), (self.num_tasks, -1)) ** 2, axis=1)
                      for g in task_gradients)
        squared = ops.divide_no_nan(squared, weights * weights)
        lam, initial = self.task_weights.value, self.initial_risk.value
        risks, accumulated = self.excess_risks(squared, present)
        first = ops.logical_and(present, initial <= 0)
        ratio = ops.divide_no_nan(risks, initial)
        step = ops.where(ops.logical_and(present, ops.logical_not(first)), self.step_size * ratio, 0.0)
        grown = lam * ops.exp(step)
        total = ops.sum(lam * mask)
        updated = ops.where(present, grown * ops.divide_no_nan(total, ops.sum(grown * mask)), lam)
        self.task_weights.assign(updated)
        self.squared_sum.assign(accumulated)
        self.initial_risk.assign(ops.where(first, risks, initial))

    def get_config(self):
        return {**super().get_config(), "step_size": self.step_size, "epsilon": self.epsilon}
