"""ConFIG: the conflict-free update of equal cosines with every task gradient (Liu et al., 2025)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.solvers import presence_mask

__all__ = ["ConFIG"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class ConFIG(GradientAggregator):
    """ConFIG, Conflict-Free Inverse Gradients (Liu et al., 2025).

    With ``U`` the matrix of unit task gradients ``u_i = g_i / ‖g_i‖``
    (rows), the direction is the pseudo-inverse of ``U`` applied to ones,
    normalised, and its length the sum of the task gradients' projections
    on it::

        e = U⁺ 1 / ‖U⁺ 1‖,      d = (Σ_i g_i · e) e

    When the gradients are linearly independent, ``U e ∝ 1``: the update
    makes the same angle with every task gradient, an acute one, so no task
    is opposed. Only the Gram matrix is needed:
    ``U⁺ 1 = Uᵀ C⁺ 1`` with ``C = U Uᵀ = N⁻¹ K N⁻¹`` (``N = diag ‖g_i‖``),
    so ``d = Σ_i α_i g_i`` with ``α ∝ N⁻¹ C⁺ 1`` scaled by
    ``(1ᵀ K α) / (αᵀ K α)``. ``C⁺`` comes from the eigen-decomposition of
    ``C``; eigenvalues at most ``λ_max · T · ε_float32`` count as zero (the
    rank tolerance of :class:`AlignedMTL`). Absent tasks and zero gradients
    are left out.

    Scale: the length is a *sum* of projections (``T`` aligned gradients
    of norm ``n`` give ``T n``), as in the paper and torchjd's ``ConFIG``
    (its default preference vector is ones); LibMTL has no ConFIG. The
    paper's momentum variant (M-ConFIG) is not implemented.

    References:
        Liu, Q., Chu, M., Thuerey, N. (2025). ConFIG: Towards Conflict-free
        Training of Physics Informed Neural Networks. ICLR.

    Example:
        >>> config = ConFIG()
        >>> config.setup(["a", "b"], [1.0, 1.0])
        >>> update = config.aggregate_matrix(ops.array([[1.0, 0.0], [0.0, 3.0]]), ops.ones(2), ops.ones(2, "bool"))
        >>> [round(float(v), 3) for v in update]  # the diagonal, of length (1 + 3) / √2
        [2.0, 2.0]
    """

    def task_coefficients(self, gram, present):
        gram = ops.convert_to_tensor(gram, "float32")
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        active = presence_mask(present) * ops.cast(norms > 0, "float32")
        inverse = ops.divide_no_nan(active, norms)
        cosines = gram * inverse[:, None] * inverse[None, :]
        eigenvalues, vectors = ops.eigh(cosines)
        kept = eigenvalues > ops.maximum(ops.max(eigenvalues) * self.num_tasks * 1.1920929e-07, 0.0)
        pseudo_inverse = ops.where(kept, 1.0 / ops.where(kept, eigenvalues, 1.0), 0.0)
        best = ops.matmul(vectors, pseudo_inverse * ops.matmul(ops.transpose(vectors), active))
        alpha = best * inverse  # Σ_i best_i u_i = Σ_i alpha_i g_i
        k_alpha = ops.matmul(gram, alpha)
        return alpha * ops.divide_no_nan(ops.sum(active * k_alpha), ops.sum(alpha * k_alpha))
