"""GO4Align: task weights shared within groups of tasks whose risks move alike (Shen et al., 2024)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.base import Balancer, global_losses

__all__ = ["GO4Align"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class GO4Align(Balancer):
    """Group optimisation for multi-task alignment, GO4Align (Shen et al., 2024).

    Adaptive group risk minimisation from the losses alone (``O(T)`` per
    step). Each step, a risk-guided indicator per task::

        p ← p ⊙ exp(−η L) / Σ_j p_j exp(−η L_j)       (p starts uniform)
        γ_i = p_i · Σ_j L_j / L_i

    (``Σ_j L_j / L_i`` lifts the tasks whose loss is small relative to the
    others, ``p`` remembers which tasks have had low risk), then dynamic
    group assignment: the indicators ``γ`` are clustered into
    ``num_groups`` groups by k-means (in one dimension), and every task in a
    group gets the group's centre as its loss weight::

        L = Σ_k Σ_{i ∈ G_k} c_k L_i,     c_k = mean_{i ∈ G_k} γ_i

    The weights are constants (``stop_gradient``). The loss weights ``w_i``
    of the tasks multiply ``c``.

    What differs from the authors' code: they cluster with
    ``kmeans_pytorch`` (random initial centres, run until a tolerance); here
    k-means starts from evenly spaced order statistics of ``γ`` (the
    smallest, …, the largest) and runs ``iterations`` Lloyd steps in the
    graph (on a line these converge in a few steps), so the grouping is
    deterministic. An absent task is left out of the clustering (weight 0)
    and keeps its ``p_i``; the present tasks' ``p`` is renormalised among
    themselves, keeping their total. Defaults ``η = 1e-4`` (their code's
    ``robust_step_size``) and ``num_groups = 2``; with ``num_groups ≥ T``
    every task is a group of its own and the weights are ``γ`` itself.
    The step of ``p`` is taken when the training step's losses are
    observed; the weights of the step already use it, as in their code.

    Args:
        num_groups: the number of groups ``K``.
        step_size: ``η``.
        iterations: Lloyd steps of the clustering.
        epsilon: keeps ``Σ_j L_j / L_i`` finite for a zero loss.

    References:
        Shen, J., Wang, C., Xiao, Z., Van Noord, N., Worring, M. (2024).
        GO4Align: Group Optimization for Multi-Task Alignment. NeurIPS.

    Example:
        >>> from keras import ops
        >>> go = GO4Align(num_groups=2, step_size=0.0)
        >>> go.setup(["a", "b", "c"], [1.0, 1.0, 1.0])
        >>> weights, _ = go.combine(ops.array([1.0, 1.0, 2.0]), ops.ones(3, "bool"))
        >>> [round(float(w), 3) for w in weights]  # γ = ⅓ (4, 4, 2): groups {a, b} and {c}
        [1.333, 1.333, 0.667]
    """

    def __init__(self, num_groups: int = 2, step_size: float = 1e-4, iterations: int = 10,
                 epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        if num_groups < 1:
            raise ValueError(f"GO4Align num_groups must be >= 1; got {num_groups}.")
        self.num_groups = int(num_groups)
        self.step_size = float(step_size)
        self.iterations = int(iterations)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        self.indicator = self.add_state("indicator", (self.num_tasks,), 1.0 / self.num_tasks)

    def next_indicator(self, losses, present):
        """``p`` after this step's multiplicative update (the present tasks keep their total)."""
        p = self.indicator.value
        mask = ops.cast(present, "float32")
        moved = p * ops.exp(-self.step_size * ops.where(present, losses, 0.0))
        return ops.where(present, moved * ops.divide_no_nan(ops.sum(p * mask), ops.sum(moved * mask)), p)

    def combine(self, task_losses, present, training=True):
        losses = global_losses(task_losses)
        present = ops.convert_to_tensor(present)
        safe = ops.where(present, losses + self.epsilon, 1.0)
        total = ops.sum(ops.where(present, losses, 0.0)) + self.epsilon
        indicators = ops.where(present, self.next_indicator(losses, present) * total / safe, 0.0)
        centres, groups = self.cluster(indicators, present, self.num_groups, self.iterations)
        weights = ops.take(centres, groups)
        return ops.where(present, weights, 0.0) * self.base_weights, 0.0

    @staticmethod
    def cluster(values, present, num_groups, iterations):
        """One-dimensional k-means of ``values`` over the present entries.

        Args:
            values: ``(T,)``.
            present: ``(T,)`` bool; the other entries are ignored.
            num_groups: ``K``.
            iterations: Lloyd steps.

        Returns:
            ``(centres (K,), groups (T,) int)``: each present entry is in the
            group of its nearest centre, each centre the mean of its group (a
            centre whose group is empty keeps its place).
        """
        values = ops.convert_to_tensor(values, "float32")
        mask = ops.cast(present, "float32")
        count = ops.sum(mask)
        # Present values in ascending order first; initial centres at evenly spaced ranks.
        ordered = ops.sort(ops.where(present, values, ops.max(values) + 1.0))
        ranks = ops.arange(num_groups, dtype="float32") * ops.maximum(count - 1.0, 0.0) / max(num_groups - 1, 1)
        centres = ops.take(ordered, ops.cast(ops.round(ranks), "int32"))

        def assign(centres):
            return ops.argmin(ops.abs(values[:, None] - centres[None, :]), axis=1)

        def lloyd(_, centres):
            members = ops.one_hot(assign(centres), num_groups) * mask[:, None]
            sizes = ops.sum(members, axis=0)
            means = ops.divide_no_nan(ops.sum(members * values[:, None], axis=0), sizes)
            return ops.where(sizes > 0, means, centres)

        centres = ops.fori_loop(0, iterations, lloyd, centres)
        return centres, assign(centres)

    def observe_losses(self, task_losses, present):
        losses = ops.stop_gradient(ops.convert_to_tensor(task_losses, "float32"))
        self.indicator.assign(self.next_indicator(losses, ops.convert_to_tensor(present)))

    def get_config(self):
        return {**super().get_config(), "num_groups": self.num_groups, "step_size": self.step_size,
                "iterations": self.iterations, "epsilon": self.epsilon}
