"""GradDrop: keep, per coordinate, the gradients of one randomly chosen sign (Chen et al., 2020)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.solvers import presence_mask

__all__ = ["GradDrop"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class GradDrop(GradientAggregator):
    """Gradient Sign Dropout, GradDrop (Chen et al., 2020).

    At every coordinate ``k`` of the shared parameters the task gradients
    may disagree in sign. GradDrop measures the *positive sign purity*
    ``P_k`` and keeps only the gradients of one sign, drawn at random with
    probability ``P_k`` for the positive one::

        P_k = ½ (1 + Σ_i g_ik / Σ_i |g_ik|),      U_k ~ Uniform(0, 1)
        M_ik = [P_k > U_k and g_ik > 0] + [P_k < U_k and g_ik < 0]
        d_k = Σ_i (ℓ + (1 − ℓ) M_ik) g_ik

    with ``ℓ`` the ``leak`` (0 keeps only the chosen sign; 1 is the plain
    sum). Where every task agrees, ``P_k`` is 0 or 1 and all of them pass.
    This is the gradient combination of the paper's Algorithm 1 (lines
    10–15) applied to the shared parameters' gradients, as torchjd's
    ``GradDrop`` does; the paper (and LibMTL) apply it to the gradients of
    the shared representation, multiplied by the signs of its inputs.

    It works coordinate by coordinate, not on the Gram matrix, so only
    ``wrt="parameters"`` is supported. The draws ``U`` come from a seeded
    ``keras.random.SeedGenerator`` whose state is saved with the model: the
    same seed gives the same updates, also after a reload or a resumed
    ``fit``. Absent tasks have zero gradients and no say in ``P``.

    Scale: a *sum* of the (masked) task gradients, as in the paper, LibMTL
    and torchjd.

    Args:
        leak: ``ℓ`` in ``[0, 1]`` (LibMTL's and torchjd's default 0).
        seed: seed of the draws ``U``.

    References:
        Chen, Z., Ngiam, J., Huang, Y., Luong, T., Kretzschmar, H., Chai, Y.,
        Anguelov, D. (2020). Just Pick a Sign: Optimizing Deep Multitask
        Models with Gradient Sign Dropout. NeurIPS.

    Example:
        >>> g = ops.array([[1.0, 2.0, -1.0], [3.0, -2.0, -1.0]])
        >>> keep = GradDrop.sign_masks(g, ops.array([0.5, 0.2, 0.5]))  # U per coordinate
        >>> [[float(v) for v in row] for row in keep]  # P = (1, 0.5, 0); at k = 1, P > U keeps the +
        [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
    """

    WRT = ("parameters",)
    distributed_error = (
        "GradDrop cannot train under a tf.distribute strategy with several replicas: its random "
        "signs come from a keras.random.SeedGenerator, whose state each replica would advance on its "
        "own, giving the replicas different updates. Train GradDrop on one device, or use "
        "kmtl.balancing.UPGrad(), MGDA(), CAGrad(), GradNorm(), UncertaintyWeighting(), DWA() or "
        "FixedWeights() under the strategy."
    )

    def __init__(self, leak: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= leak <= 1.0:
            raise ValueError(f"GradDrop leak must be in [0, 1]; got {leak}.")
        self.leak = float(leak)
        self.seed = seed
        self._generator = keras.random.SeedGenerator(seed)

    @staticmethod
    def sign_masks(matrix, uniform):
        """``M`` ``(T, P)``: 1 where task ``i``'s gradient has the sign kept at coordinate ``k``.

        Args:
            matrix: the task gradients ``G`` ``(T, P)``.
            uniform: ``U`` ``(P,)``, draws in ``[0, 1)``.
        """
        matrix = ops.convert_to_tensor(matrix, "float32")
        purity = 0.5 * (1.0 + ops.divide_no_nan(ops.sum(matrix, axis=0), ops.sum(ops.abs(matrix), axis=0)))
        positive = ops.logical_and((purity > uniform)[None, :], matrix > 0)
        negative = ops.logical_and((purity < uniform)[None, :], matrix < 0)
        return ops.cast(ops.logical_or(positive, negative), "float32")

    def aggregate_matrix(self, matrix, weights, present):
        matrix = ops.convert_to_tensor(matrix, "float32") * presence_mask(present)[:, None]
        uniform = keras.random.uniform((matrix.shape[1],), seed=self._generator)
        keep = self.leak + (1.0 - self.leak) * self.sign_masks(matrix, uniform)
        return ops.sum(keep * matrix, axis=0)

    def get_config(self):
        return {**super().get_config(), "leak": self.leak, "seed": self.seed}
