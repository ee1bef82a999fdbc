"""IMTL-G: the update with equal projections on every task's gradient (Liu et al., 2021)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.solvers import normalised_gram, presence_mask

__all__ = ["IMTLG"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class IMTLG(GradientAggregator):
    """IMTL-G, the gradient half of Impartial Multi-Task Learning (Liu et al., 2021).

    The update ``d = Σ_i α_i g_i`` with ``Σ_i α_i = 1`` has the same
    projection on every task's unit gradient ``u_i = g_i / ‖g_i‖``::

        u_i · d = u_j · d  for all tasks i, j

    In the paper's closed form, with ``D`` the rows ``g_1 − g_i`` and ``U``
    the rows ``u_1 − u_i`` (``i = 2..T``),
    ``α_{2..T} = g_1 Uᵀ (D Uᵀ)⁻¹`` and ``α_1 = 1 − Σ α_{2..T}``. Here the
    same conditions are one ``(T + 1) × (T + 1)`` linear system in ``α`` and
    the common projection ``s`` — ``u_i · Gᵀα − s = 0`` for each task with
    a non-zero gradient, ``α_i = 0`` for the others, ``Σ α_i = 1`` — so
    absent tasks need no change of shape. A ridge of ``1e-6`` (relative to
    the mean squared gradient norm) on the ``α`` block keeps the system
    solvable for parallel gradients, where ``α`` is not unique.

    Scale: ``Σ_i α_i = 1``, the size of an *average* task gradient, as in
    the paper, LibMTL's ``IMTL`` and torchjd's ``IMTLG`` (whose weights also
    sum to 1).

    References:
        Liu, L., Li, Y., Kuang, Z., Xue, J.-H., Chen, Y., Yang, W., Liao, Q.,
        Zhang, W. (2021). Towards Impartial Multi-task Learning. ICLR.

    Example:
        >>> imtl = IMTLG()
        >>> imtl.setup(["a", "b"], [1.0, 1.0])
        >>> alpha = imtl.task_coefficients(ops.array([[1.0, 0.0], [0.0, 4.0]]), ops.ones(2, "bool"))
        >>> [round(float(a), 3) for a in alpha]  # d = (2/3, 2/3): equal projections on both axes
        [0.667, 0.333]
    """

    ridge = 1e-6

    def task_coefficients(self, gram, present):
        num_tasks = self.num_tasks
        gram = ops.convert_to_tensor(gram, "float32")
        mask = presence_mask(present)
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        active = mask * ops.cast(norms > 0, "float32")
        gram, scale = normalised_gram(gram * active[:, None] * active[None, :], active)
        norms = norms / ops.sqrt(scale)
        eye = ops.eye(num_tasks)
        projections = ops.divide_no_nan(gram, norms[:, None]) + self.ridge * eye  # u_i · g_j
        block = ops.where(active[:, None] > 0, projections, eye)
        anything = ops.max(active)
        top = ops.concatenate([block, -active[:, None]], axis=1)
        bottom = ops.concatenate([active, ops.reshape(1.0 - anything, (1,))])[None, :]
        system = ops.concatenate([top, bottom], axis=0)
        target = ops.concatenate([ops.zeros((num_tasks,)), ops.reshape(anything, (1,))])[:, None]
        alpha = ops.solve(system, target)[:num_tasks, 0]
        uniform = active / ops.maximum(ops.sum(active), 1.0)
        return ops.where(ops.all(ops.isfinite(alpha)), alpha * active, uniform)
