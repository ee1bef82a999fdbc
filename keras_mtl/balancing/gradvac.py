"""GradVac: raise each pair's gradient similarity towards its running average (Wang et al., 2021)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.solvers import TINY, presence_mask

__all__ = ["GradVac"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class GradVac(GradientAggregator):
    """Gradient Vaccine, GradVac (Wang et al., 2021).

    Keeps a target cosine ``φ̂_ij`` for every ordered pair of tasks, an
    exponential moving average of their observed cosine similarity. For each
    task ``i``, visiting the other tasks ``j``, with ``φ_ij`` the cosine of
    the (already corrected) ``g_i`` and ``g_j``::

        if φ_ij < φ̂_ij:  g_i ← g_i + ‖g_i‖ (φ̂_ij √(1 − φ_ij²) − φ_ij √(1 − φ̂_ij²))
                                     / (‖g_j‖ √(1 − φ̂_ij²)) · g_j
        φ̂_ij ← (1 − β) φ̂_ij + β φ_ij

    which raises the cosine of ``g_i`` and ``g_j`` to exactly ``φ̂_ij``. The
    targets start at 0, so the first steps remove conflicts much as
    :class:`PCGrad` does; later a pair is held to its usual similarity. The
    shared parameters receive ``Σ_i g_i``.

    As for PCGrad the corrected gradients are kept as coefficients over the
    original ones, so only the Gram matrix is needed (and
    ``wrt="representation"`` works). Unlike the paper, which visits the
    other tasks in a random order, task ``i`` visits ``i + 1, i + 2, …``
    (modulo ``T``): the method is deterministic, and replicas agree. Every
    visited pair updates its target (LibMTL's code updates it only when it
    corrects the pair); pairs with an absent task are not visited and keep
    their targets. The state is the ``T × T`` matrix ``targets``, one
    average per whole model (the paper also keeps one per layer).

    Scale: a *sum* of the (corrected) task gradients, as in the paper and
    LibMTL's ``GradVac``; torchjd has no GradVac.

    Args:
        beta: ``β``, the weight of the newest cosine in the average (the
            paper's ``1e-2``; LibMTL's default is ``0.5``).

    References:
        Wang, Z., Tsvetkov, Y., Firat, O., Cao, Y. (2021). Gradient Vaccine:
        Investigating and Improving Multi-task Optimization in Massively
        Multilingual Models. ICLR.

    Example:
        >>> vaccine = GradVac()
        >>> vaccine.setup(["a", "b"], [1.0, 1.0])
        >>> g = ops.array([[1.0, 0.0], [-1.0, 1.0]])
        >>> update = vaccine.aggregate_matrix(g, ops.ones(2), ops.ones(2, "bool"))
        >>> [round(float(v), 2) for v in update]  # targets 0: PCGrad's [0.5, 0.5] + [0, 1]
        [0.5, 1.5]
    """

    def __init__(self, beta: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"GradVac beta must be in [0, 1]; got {beta}.")
        self.beta = float(beta)

    def build(self, input_shape):
        self.targets = self.add_weight(shape=(self.num_tasks, self.num_tasks), name="targets", trainable=False,
                                       initializer="zeros", aggregation="only_first_replica")

    def vaccinate(self, gram, present, targets):
        """The corrected gradients as coefficients of the original ones, and the new targets.

        Args:
            gram: ``K = G Gᵀ`` ``(T, T)``.
            present: ``(T,)`` bool.
            targets: ``φ̂`` ``(T, T)``.

        Returns:
            ``(B, φ̂′)``: the corrected gradients are ``B G``; ``φ̂′`` the updated targets.
        """
        gram = ops.convert_to_tensor(gram, "float32")
        num_tasks = self.num_tasks
        own = ops.arange(num_tasks, dtype="int32")
        mask = presence_mask(present)
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        active = mask * ops.cast(norms > 0, "float32")

        def step(k, state):
            coefficients, targets = state
            other = (own + 1 + k) % num_tasks  # the task each row visits now
            other_hot = ops.one_hot(other, num_tasks)
            # g'_i · g_j = (B K)_ij, ‖g'_i‖² = (B K Bᵀ)_ii.
            b_gram = ops.matmul(coefficients, gram)
            dot = ops.sum(b_gram * other_hot, axis=1)
            own_norm = ops.sqrt(ops.maximum(ops.sum(b_gram * coefficients, axis=1), 0.0))
            other_norm = ops.take(norms, other)
            cosine = dot / (own_norm * other_norm + TINY)
            target = ops.sum(targets * other_hot, axis=1)
            visit = active * ops.take(active, other) > 0
            root = ops.sqrt(ops.maximum(1.0 - target * target, 0.0))
            shift = own_norm * (target * ops.sqrt(ops.maximum(1.0 - cosine * cosine, 0.0)) - cosine * root)
            weight = ops.where(ops.logical_and(visit, cosine < target), shift / (other_norm * root + TINY), 0.0)
            average = (1.0 - self.beta) * target + self.beta * cosine
            targets = ops.where(ops.logical_and(visit[:, None], other_hot > 0), average[:, None], targets)
            return coefficients + weight[:, None] * other_hot, targets

        start = (ops.eye(num_tasks), ops.convert_to_tensor(targets, "float32"))
        return ops.fori_loop(0, num_tasks - 1, step, start)

    def task_coefficients(self, gram, present):
        coefficients, targets = self.vaccinate(gram, present, self.targets.value)
        self.targets.assign(targets)
        return ops.sum(coefficients, axis=0)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}
