"""GradNorm: weights that equalise the tasks' weighted gradient norms (Chen et al., 2018)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.base import Balancer

__all__ = ["GradNorm"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class GradNorm(Balancer):
    """GradNorm (Chen et al., 2018): equalise weighted gradient norms.

    With ``G_i = ‖∇_W w_i L_i‖`` on the last shared kernel ``W``, the mean
    ``Ḡ``, and the relative inverse training rate
    ``r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))``, the weights descend
    ``L_grad = Σ_i |G_i − Ḡ · r_i^α|`` (targets held constant)::

        ∂L_grad/∂w_i = sign(G_i − Ḡ r_i^α) · ‖∇_W L_i‖
        w_i ← w_i − η · sign(∂L_grad/∂w_i)

    and are then renormalised so that they sum to the number of tasks. The
    step is normalised (a fixed size ``η`` in the gradient's direction, the
    step Adam takes on a steady gradient) so that it does not depend on the
    scale of the network's gradients: a raw gradient step of
    ``η · ‖∇_W L_i‖`` overshoots and oscillates once the norms exceed
    ``1/η``. Tasks absent from the batch keep their weight for that step
    exactly (the present tasks are renormalised among themselves);
    ``L_i(0)`` is the task's loss the first time it is labelled.

    Args:
        alpha: asymmetry ``α``; higher pulls harder towards slow tasks.
        learning_rate: ``η``, the change of a weight per step.

    References:
        Chen, Z., Badrinarayanan, V., Lee, C.-Y., Rabinovich, A. (2018).
        GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep
        Multitask Networks. ICML.

    Example:
        >>> gradnorm = GradNorm()
        >>> gradnorm.setup(["a", "b"], [1.0, 1.0])
        >>> last_kernel = [ops.array([[3.0], [1.0]])]  # G = (3, 1), Ḡ = 2, equal loss ratios
        >>> gradnorm.observe_gradients(last_kernel, ops.ones(2), ops.ones(2), ops.ones(2, "bool"))
        >>> [round(float(w), 3) for w in ops.convert_to_numpy(gradnorm.task_weights)]
        [0.975, 1.025]
    """

    gradient_scope = "last_shared"

    def __init__(self, alpha: float = 1.5, learning_rate: float = 0.025, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.learning_rate = float(learning_rate)

    def build(self, input_shape):
        shape = (self.num_tasks,)
        self.task_weights = self.add_weight(shape=shape, name="task_weights", trainable=False,
                                            initializer="ones", aggregation="only_first_replica")
        self.initial_losses = self.add_weight(shape=shape, name="initial_losses", trainable=False,
                                              initializer="zeros", aggregation="only_first_replica")

    def combine(self, task_losses, present, training=True):
        return self.task_weights * self.base_weights, 0.0

    def observe_gradients(self, task_gradients, task_losses, weights, present):
        mask = ops.cast(present, "float32")
        losses = ops.stop_gradient(task_losses)
        task_weights, initial_losses = self.task_weights.value, self.initial_losses.value
        first = ops.logical_and(present, initial_losses <= 0)
        initial_losses = ops.where(first, losses, initial_losses)
        self.initial_losses.assign(initial_losses)
        # ‖∇_W w_i L_i‖ from the gradients of the weighted losses.
        norms = ops.sqrt(sum(ops.sum(ops.reshape(g, (self.num_tasks, -1)) ** 2, axis=1)
                             for g in task_gradients))
        count = ops.maximum(ops.sum(mask), 1.0)
        mean_norm = ops.sum(norms * mask) / count
        ratio = ops.divide_no_nan(losses, initial_losses)
        mean_ratio = ops.sum(ratio * mask) / count
        target = mean_norm * ops.power(ops.divide_no_nan(ratio, mean_ratio), self.alpha)
        # d|G_i − target_i| / dw_i = sign(G_i − target_i) · ‖∇_W L_i‖, with G_i = w_i ‖∇_W L_i‖;
        # the step takes its sign (zero for a task whose gradient is zero).
        unweighted_norm = ops.divide_no_nan(norms, task_weights)
        step = ops.sign(ops.sign(norms - target) * unweighted_norm) * mask
        updated = ops.maximum(task_weights - self.learning_rate * step, 1e-3)
        # Renormalise among the present tasks, which keep their total: the
        # weights keep summing to the number of tasks, and an absent task's
        # weight is left exactly as it was.
        present_total = ops.sum(task_weights * mask)
        updated = ops.where(present, updated * present_total / ops.sum(updated * mask), task_weights)
        # Only proceed when at least two tasks are present: one task has nothing to balance.
        self.task_weights.assign(ops.where(ops.sum(mask) >= 2, updated, task_weights))

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "learning_rate": self.learning_rate}
