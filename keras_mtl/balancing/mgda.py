"""MGDA: the min-norm point of the convex hull of the task gradients (Sener & Koltun, 2018)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.solvers import (
    minimise_quadratic,
    normalised_gram,
    presence_mask,
    present_mean,
    project_to_simplex,
)

__all__ = ["MGDA"]


_MGDA_NORMALIZE = ("none", "l2", "loss", "loss+")


@keras.saving.register_keras_serializable(package="keras_mtl")
class MGDA(GradientAggregator):
    """Multiple-gradient descent: the min-norm point of the task gradients' hull (Sener & Koltun, 2018).

    The update is the element of minimum norm in the convex hull of the task
    gradients::

        α* = argmin_{α ∈ Δ}  ‖Σ_i α_i g̃_i‖²,      update = Σ_i α*_i g_i

    where ``Δ`` is the simplex over the present tasks and ``g̃_i`` the
    gradients normalised as ``normalize`` says (``g̃ = g`` by default). If
    the update is zero the point is Pareto-stationary; otherwise it
    decreases every task's loss to first order.

    The quadratic problem over the ``T × T`` Gram matrix is solved by
    accelerated projected gradient descent on the simplex (FISTA, step
    ``1/λ_max(K)``, exact sort-based projection) for a fixed number of
    ``iterations``. The paper's Frank-Wolfe solver converges too slowly when
    the min-norm point lies inside the hull (after 250 steps its squared
    norm can still be more than twice the optimum); 100 accelerated steps
    (with restarts) meet the optimality conditions ``(Kα)_i ≥ αᵀKα`` to
    float32 precision (``≈ 1e-5`` relative) on the problems of
    ``tests/test_aggregators.py``, whose Gram matrices have condition numbers
    up to ``≈ 10⁵``.

    Scale: a convex combination (``Σ α_i = 1`` over the normalised
    gradients): the size of an *average* task gradient with
    ``normalize="none"``, as in the paper, LibMTL's ``MGDA`` and torchjd's
    ``MGDA``.

    Args:
        normalize: the variants of the paper: ``"none"`` (``g̃ = g``),
            ``"l2"`` (``g / ‖g‖``), ``"loss"`` (``g / L``) or ``"loss+"``
            (``g / (L ‖g‖)``). The coefficients are then applied to the raw
            gradients, as the paper applies them to the losses.
        iterations: projected-gradient steps.

    References:
        Sener, O., Koltun, V. (2018). Multi-Task Learning as Multi-Objective
        Optimization. NeurIPS.

    Example:
        >>> mgda = MGDA()
        >>> mgda.setup(["a", "b"], [1.0, 1.0])
        >>> alpha = mgda.task_coefficients(ops.array([[1.0, -0.5], [-0.5, 4.0]]), ops.ones(2, "bool"))
        >>> [round(float(a), 3) for a in alpha]  # (4 + 0.5) / (1 + 4 + 1), (1 + 0.5) / 6
        [0.75, 0.25]
    """

    def __init__(self, normalize: str = "none", iterations: int = 100, **kwargs):
        super().__init__(**kwargs)
        if normalize not in _MGDA_NORMALIZE:
            raise ValueError(f"MGDA normalize must be one of {_MGDA_NORMALIZE}; got {normalize!r}.")
        self.normalize = normalize
        self.iterations = int(iterations)

    def build(self, input_shape):
        # This step's losses, for the "loss" normalisations only (set by observe_gradients).
        self.step_losses = None
        if self.normalize in ("loss", "loss+"):
            self.step_losses = self.add_weight(shape=(self.num_tasks,), name="step_losses", trainable=False,
                                               initializer="ones", aggregation="only_first_replica")

    def observe_gradients(self, task_gradients, task_losses, weights, present):
        if self.step_losses is not None:
            losses = ops.stop_gradient(ops.convert_to_tensor(task_losses, "float32"))
            self.step_losses.assign(ops.where(present, losses, self.step_losses.value))

    def task_coefficients(self, gram, present):
        losses = ops.ones((self.num_tasks,)) if self.step_losses is None else self.step_losses.value
        return self._normalised_min_norm(gram, present, losses)

    def _normalised_min_norm(self, gram, present, losses):
        """The min-norm coefficients of ``g̃_i = g_i / s_i``, as coefficients of the raw ``g_i``."""
        gram = ops.convert_to_tensor(gram, "float32")
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        scale = {"none": ops.ones_like(norms), "l2": norms, "loss": losses, "loss+": losses * norms}
        inverse = ops.divide_no_nan(ops.ones_like(norms), scale[self.normalize])
        beta = self.min_norm_coefficients(gram * inverse[:, None] * inverse[None, :], present, self.iterations)
        # Σ β_i g̃_i = Σ (β_i / s_i) g_i: the same update, written on the raw gradients.
        return beta * inverse

    @staticmethod
    def min_norm_coefficients(gram, present, iterations=100):
        """``argmin_{α ∈ Δ} αᵀ K α`` over the simplex of the present tasks.

        Args:
            gram: ``K = G Gᵀ`` ``(T, T)``.
            present: ``(T,)`` bool; absent tasks get 0.
            iterations: projected-gradient steps.

        Returns:
            ``α`` ``(T,)``, summing to 1 over the present tasks (all zero if none is).
        """
        mask = presence_mask(present)
        gram = ops.convert_to_tensor(gram, "float32") * mask[:, None] * mask[None, :]
        gram, _ = normalised_gram(gram, mask)
        start = present_mean(mask)
        return minimise_quadratic(gram, lambda alpha: project_to_simplex(alpha, mask), start, iterations)

    def get_config(self):
        return {**super().get_config(), "normalize": self.normalize, "iterations": self.iterations}
