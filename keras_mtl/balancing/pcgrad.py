"""PCGrad: project away the conflicting components of the task gradients (Yu et al., 2020)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator

__all__ = ["PCGrad"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class PCGrad(GradientAggregator):
    """Projecting Conflicting Gradients (Yu et al., 2020).

    For each task gradient ``g_i``, visiting the other tasks ``j`` in its own
    random order, remove the conflicting component whenever
    ``g_i · g_j < 0``: ``g_i ← g_i − (g_i · g_j / ‖g_j‖²) g_j``. The shared
    parameters receive ``Σ_i g_i``; task-specific parameters their usual
    gradients. Absent tasks have zero gradients and never conflict.

    The projections need only dot products, so they run on the Gram matrix
    ``K``: each projected gradient is kept as its coefficients over the
    original ones (``g'_i = Σ_m B_im g_m``, ``g'_i · g_j = (B K)_ij``). All
    tasks project at once, one other task per step of a loop over ``T``
    steps: the graph does not grow with the number of tasks (``T`` steps of
    ``O(T²)`` work each), and it works with ``wrt="representation"``.

    Scale: a *sum* of the (projected) task gradients, as in the paper,
    LibMTL's ``PCGrad`` and torchjd's ``PCGrad``.

    Args:
        seed: seed of the random task orders.
        wrt: see :class:`GradientAggregator`.

    References:
        Yu, T., Kumar, S., Gupta, A., Levine, S., Hausman, K., Finn, C.
        (2020). Gradient Surgery for Multi-Task Learning. NeurIPS.

    Example:
        >>> projected = PCGrad.project(ops.array([[1.0, 0.0], [-1.0, 1.0]]), [0, 1])
        >>> [[round(float(v), 2) for v in row] for row in projected]
        [[0.5, 0.5], [0.0, 1.0]]
    """

    distributed_error = (
        "PCGrad cannot train under a tf.distribute strategy with several replicas: its random "
        "task order comes from a keras.random.SeedGenerator, whose state each replica would advance "
        "on its own, giving the replicas different projections. Train PCGrad on one device, or use "
        "kmtl.balancing.UPGrad(), MGDA(), CAGrad(), GradNorm(), UncertaintyWeighting(), DWA() or "
        "FixedWeights() under the strategy."
    )

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self._generator = keras.random.SeedGenerator(seed)

    @staticmethod
    def projection_matrix(gram, order):
        """PCGrad's projected gradients as coefficients of the original ones.

        Args:
            gram: ``K = G Gᵀ`` ``(T, T)``.
            order: the order in which the tasks visit the others: ``(T,)``,
                one order for every task, or ``(T, T)``, row ``i`` the order
                of task ``i`` (a task skips itself).

        Returns:
            ``B`` ``(T, T)``: the projected gradients are ``B G``.
        """
        gram = ops.convert_to_tensor(gram, "float32")
        num_tasks = gram.shape[0]
        order = ops.cast(ops.convert_to_tensor(order), "int32")
        if len(order.shape) == 1:
            order = ops.broadcast_to(order[None, :], (num_tasks, num_tasks))
        squared_norms = ops.diagonal(gram)
        own = ops.arange(num_tasks, dtype="int32")

        def step(k, coefficients):
            other = ops.take(order, k, axis=1)  # (T,): the task each row visits now
            # (B K)_{i, other_i}: the projected g_i against g_other_i (K is symmetric).
            dot = ops.sum(coefficients * ops.take(gram, other, axis=0), axis=1)
            conflict = ops.logical_and(dot < 0, ops.not_equal(other, own))
            scale = ops.where(conflict, ops.divide_no_nan(dot, ops.take(squared_norms, other)), 0.0)
            return coefficients - scale[:, None] * ops.one_hot(other, num_tasks)

        return ops.fori_loop(0, num_tasks, step, ops.eye(num_tasks))

    @classmethod
    def project(cls, flat, order):
        """PCGrad on a ``(T, P)`` matrix of flattened gradients.

        Args:
            flat: the task gradients ``(T, P)``.
            order: as for :meth:`projection_matrix`.

        Returns:
            The projected gradients ``(T, P)``.
        """
        flat = ops.convert_to_tensor(flat, "float32")  # an array times a PyTorch tensor fails
        return ops.matmul(cls.projection_matrix(ops.matmul(flat, ops.transpose(flat)), order), flat)

    def random_orders(self):
        """``(T, T)``: row ``i`` a random permutation of the tasks, independent per row."""
        keys = keras.random.uniform((self.num_tasks, self.num_tasks), seed=self._generator)
        return ops.argsort(keys, axis=-1)

    def task_coefficients(self, gram, present):
        # The update Σ_i g'_i = (1ᵀ B) G.
        return ops.sum(self.projection_matrix(gram, self.random_orders()), axis=0)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
