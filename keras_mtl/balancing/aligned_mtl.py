"""Aligned-MTL: align the principal components of the task gradients (Senushkin et al., 2023)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.solvers import normalised_gram, presence_mask

__all__ = ["AlignedMTL"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class AlignedMTL(GradientAggregator):
    """Aligned-MTL: align the principal components of the task gradients (Senushkin et al., 2023).

    With the eigen-decomposition of the Gram matrix ``G Gᵀ = V Λ Vᵀ`` (its
    non-zero eigenvalues ``λ_1 ≥ … ≥ λ_r``), the aligned gradients are::

        Ĝ = B G,      B = σ_r V Λ^{-1/2} Vᵀ,    σ_r = √λ_r

    so that ``Ĝ Ĝᵀ = σ_r² I`` on the span of the gradients: the aligned
    gradients are orthogonal and of equal norm (condition number 1), scaled
    by the smallest singular value of ``G`` as the paper does by default. The
    update is their sum, ``Σ_i ĝ_i = (B 1)ᵀ G``. Eigenvalues at most
    ``λ_1 · T · ε_float32`` count as zero (the paper's rank tolerance), so
    absent tasks (zero rows) and linearly dependent gradients drop out.

    Scale: a *sum* of the ``T`` aligned gradients, as in the paper's code and
    LibMTL's ``Aligned_MTL`` (``α = B 1``); torchjd's ``AlignedMTL`` averages
    them (``α = B 1 / T``, its default preference vector), ``T`` times smaller.

    References:
        Senushkin, D., Patakin, N., Kuznetsov, A., Konushin, A. (2023).
        Independent Component Alignment for Multi-Task Learning. CVPR.

    Example:
        >>> aligned = AlignedMTL()
        >>> aligned.setup(["a", "b"], [1.0, 1.0])
        >>> alpha = aligned.task_coefficients(ops.array([[1.0, 0.0], [0.0, 4.0]]), ops.ones(2, "bool"))
        >>> [round(float(a), 3) for a in alpha]  # both aligned gradients get norm σ_r = 1
        [1.0, 0.5]
    """

    def alignment(self, gram, present):
        """``B`` ``(T, T)``: the aligned gradients are ``B G``."""
        mask = presence_mask(present)
        gram, scale = normalised_gram(ops.convert_to_tensor(gram, "float32") * mask[:, None] * mask[None, :], mask)
        eigenvalues, vectors = ops.eigh(gram)
        tolerance = ops.max(eigenvalues) * self.num_tasks * 1.1920929e-07
        kept = eigenvalues > ops.maximum(tolerance, 0.0)
        smallest = ops.min(ops.where(kept, eigenvalues, ops.max(eigenvalues)))
        inverse_root = ops.where(kept, ops.rsqrt(ops.where(kept, eigenvalues, 1.0)), 0.0)
        return ops.sqrt(ops.maximum(smallest, 0.0)) * ops.matmul(vectors * inverse_root[None, :],
                                                                   ops.transpose(vectors))

    def task_coefficients(self, gram, present):
        return ops.sum(self.alignment(gram, present), axis=0)
