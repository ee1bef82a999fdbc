"""IMTL: impartial loss scales (IMTL-L) and impartial gradients (IMTL-G) together (Liu et al., 2021)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.imtlg import IMTLG
from keras_mtl.balancing.solvers import presence_mask

__all__ = ["IMTL"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class IMTL(IMTLG):
    """Impartial Multi-Task Learning, IMTL = IMTL-L + IMTL-G (Liu et al., 2021).

    The loss half, IMTL-L, learns one scale ``s_i`` per task by gradient
    descent with the network::

        L = Σ_i  e^{s_i} w_i L_i − s_i

    whose minimum in ``s_i`` is at ``e^{s_i} w_i L_i = 1``: every scaled loss
    is driven to the same value. The gradient half, :class:`IMTLG`, then
    combines the gradients of the scaled losses ``e^{s_i} w_i L_i`` of the
    shared parameters into the update with equal projections on every
    task's unit gradient (``Σ_i α_i = 1``); the task heads get their scaled
    losses' gradients and ``s`` the gradient of ``L``, as in the paper's
    hybrid algorithm and LibMTL's ``IMTL``. A task absent from the batch has
    loss 0 and adds neither term, so its ``s_i`` gets no gradient.

    Scale: IMTL-G's weights sum to 1 (some may be negative), the size of an
    *average* scaled gradient, as in the paper, LibMTL's ``IMTL`` and
    torchjd's ``IMTLG``.

    Args:
        initial_scale: the starting ``s_i`` (0: the loss weights unchanged).
        wrt: see :class:`GradientAggregator`.

    References:
        Liu, L., Li, Y., Kuang, Z., Xue, J.-H., Chen, Y., Yang, W., Liao, Q.,
        Zhang, W. (2021). Towards Impartial Multi-task Learning. ICLR.

    Example:
        >>> imtl = IMTL(initial_scale=1.0)
        >>> imtl.setup(["a", "b"], [1.0, 2.0])
        >>> weights, extra = imtl.combine(ops.array([0.5, 2.0]), ops.array([True, False]))
        >>> [round(float(w), 3) for w in weights], float(extra)  # e^1 · w_i; only task a's −s
        ([2.718, 5.437], -1.0)
    """

    adaptive = True  # the loss weights e^{s_i} w_i are logged

    def __init__(self, initial_scale: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_scale = float(initial_scale)

    def build(self, input_shape):
        self.log_scale = self.add_weight(shape=(self.num_tasks,), name="log_scale", trainable=True,
                                         initializer=keras.initializers.Constant(self.initial_scale))

    def combine(self, task_losses, present, training=True):
        mask = presence_mask(present)
        return ops.exp(self.log_scale) * self.base_weights, -ops.sum(self.log_scale * mask)

    def get_config(self):
        return {**super().get_config(), "initial_scale": self.initial_scale}
