"""Gradient aggregators: strategies that turn the per-task gradients into one update.

Each one sees the gradients of the shared parameters as a matrix ``G`` of
shape ``(T, P)`` (row ``i``: the gradient of task ``i``'s weighted loss,
flattened over every shared variable) and returns one update ``(P,)``;
task-specific parameters keep their usual gradients. Every one of them needs
only the Gram matrix ``K = G Gᵀ`` (``T × T``): it finds coefficients ``α``
from ``K`` by a small fixed-size computation in ``keras.ops`` (no solver
library, so it runs inside ``tf.function``/XLA, ``jax.jit`` and PyTorch
alike), and the update is ``αᵀ G``.

Because only ``K`` is needed, ``wrt="representation"`` can take it from the
per-task gradients with respect to the shared representation ``Z`` (the
trunk's output, ``(batch, d)``) instead of the shared parameters: one batched
backward pass through the heads only, then one ordinary backward pass of
``Σ α_i L_i`` through the trunk. Sener & Koltun (2018) show for MGDA that the
min-norm problem on ``∂L_i/∂Z`` bounds the one on the parameters' gradients
(their MGDA-UB); for the other methods it is the same cheaper surrogate.

Absent tasks (``present=False``) have zero rows; every aggregator leaves
them out of its problem (they get coefficient 0), and with no task present
the update is zero.

Methods that take convex combinations (MGDA, CAGrad, IMTL-G, UPGrad) update
at the size of an *average* task gradient, as in their papers; the plain sum
of ``FixedWeights`` is ``T`` times larger. Scale the learning rate when
comparing them.
"""

from __future__ import annotations

from keras import ops

from keras_mtl import distribute as distribute_lib
from keras_mtl.balancing.base import Balancer
from keras_mtl.balancing.solvers import presence_mask

__all__ = ["GradientAggregator"]


class GradientAggregator(Balancer):
    """Base class of strategies that combine the per-task gradients into one update.

    A subclass defines :meth:`task_coefficients` ``(K, present) → α``, from
    the Gram matrix ``K = G Gᵀ`` of the task gradients; the update of the
    shared parameters is ``αᵀ G``. ``aggregate`` flattens the per-task
    gradients of every shared variable into ``G`` ``(T, P)`` (absent tasks'
    rows zeroed) and reshapes the update back per variable; with no task
    present the update is zero.

    Args:
        wrt: which per-task gradients form ``G``. ``"parameters"`` (the
            default): the gradients of every shared trainable variable.
            ``"representation"``: the gradients with respect to the shared
            representation — the trunk's output, the input of the heads (or
            of the sharing layer) — over the batch: one batched backward pass
            through the heads instead of through the whole network. The
            trunk's variables then get ``∇ Σ α_i L_i`` with ``α`` from that
            Gram matrix; the heads and the sharing layer keep their usual
            gradients. For MGDA this is MGDA-UB (Sener & Koltun, 2018).
        **kwargs: passed to ``keras.layers.Layer``.

    Example:
        >>> class Mean(GradientAggregator):
        ...     def task_coefficients(self, gram, present):
        ...         mask = ops.cast(present, "float32")
        ...         return mask / ops.maximum(ops.sum(mask), 1.0)
        >>> mean = Mean()
        >>> mean.setup(["a", "b"], [1.0, 1.0])
        >>> update = mean.aggregate([ops.array([[1.0, 2.0], [3.0, 0.0]])], ops.ones(2), ops.ones(2, "bool"))
        >>> [float(v) for v in update[0]]
        [2.0, 1.0]
    """

    gradient_scope = "shared"
    adaptive = False  # reshapes gradients, keeps the loss weights
    WRT = ("parameters", "representation")

    def __init__(self, wrt: str = "parameters", **kwargs):
        super().__init__(**kwargs)
        if wrt not in self.WRT:
            raise ValueError(f"{type(self).__name__}(wrt={wrt!r}): wrt must be one of {self.WRT}.")
        self.wrt = wrt

    def aggregate(self, task_gradients, weights, present):
        shapes = [tuple(g.shape[1:]) for g in task_gradients]
        rows = ops.concatenate(
            [ops.reshape(ops.cast(g, "float32"), (self.num_tasks, -1)) for g in task_gradients], axis=1)
        present = ops.convert_to_tensor(present)
        rows = rows * presence_mask(present)[:, None]
        update = self.aggregate_matrix(rows, ops.convert_to_tensor(weights, "float32"), present)
        update = ops.where(ops.any(present), update, 0.0)
        grads, start = [], 0
        for shape in shapes:
            size = 1
            for d in shape:
                size *= d
            grads.append(ops.reshape(update[start:start + size], shape))
            start += size
        return grads

    def aggregate_matrix(self, matrix, weights, present):
        """The update ``(P,)`` from the task gradients ``matrix`` ``(T, P)``.

        Args:
            matrix: one row per task, the gradient of its weighted loss
                (zero for absent tasks).
            weights: the loss weights of this step ``(T,)`` (already in the rows).
            present: ``(T,)`` bool.
        """
        coefficients = self.gram_coefficients(ops.matmul(matrix, ops.transpose(matrix)), present)
        return ops.matmul(ops.reshape(coefficients, (1, -1)), matrix)[0]

    def gram_coefficients(self, gram, present):
        """``α`` ``(T,)`` from the Gram matrix of this step's task gradients, zero where absent.

        What both ``wrt`` settings call once per training step (stateful
        methods update their state here); :meth:`task_coefficients` is the
        method's own rule.
        """
        present = ops.convert_to_tensor(present)
        mask = presence_mask(present)
        gram = ops.convert_to_tensor(gram, "float32") * mask[:, None] * mask[None, :]
        coefficients = self.task_coefficients(gram, present) * mask
        return ops.where(ops.any(present), coefficients, 0.0)

    def representation_cotangent(self, representation_rows, terms):
        """The weights ``(α, 1)`` of the loss rows whose gradient the trunk's variables get.

        For ``wrt="representation"``: ``α`` is :meth:`gram_coefficients` on
        the Gram matrix of the per-task gradients of the shared
        representation (a sum over replicas of each replica's examples); the
        last row (the strategy's own terms and the regularisers) keeps
        weight 1.

        Args:
            representation_rows: ``(T + 1, batch, ...)``, the gradient of
                every loss row with respect to the representation (this
                replica's examples).
            terms: the step's loss terms (``task_losses``, ``present``,
                ``weights`` ``(T,)``).

        Returns:
            ``(T + 1,)`` float32.
        """
        num_tasks = self.num_tasks
        mask = ops.cast(terms.present, "float32")
        rows = ops.reshape(ops.cast(representation_rows[:num_tasks], "float32"), (num_tasks, -1))
        rows = rows * mask[:, None]
        gram = distribute_lib.cross_replica_sum(ops.matmul(rows, ops.transpose(rows)))
        self.observe_gradients([rows], distribute_lib.cross_replica_sum(terms.task_losses),
                               terms.weights, terms.present)
        alpha = self.gram_coefficients(gram, terms.present)
        return ops.concatenate([alpha, ops.ones((1,), "float32")])

    def task_coefficients(self, gram, present):
        """The coefficients ``α`` ``(T,)`` of the update ``Σ α_i g_i``, from ``K = G Gᵀ``."""
        raise NotImplementedError(f"{type(self).__name__} must define task_coefficients.")

    def get_config(self):
        return {**super().get_config(), "wrt": self.wrt}
