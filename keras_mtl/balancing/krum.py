"""Krum and Multi-Krum: the task gradients nearest to the others (Blanchard et al., 2017; as in torchjd)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.solvers import presence_mask, present_mean

__all__ = ["Krum"]

DISTANCES = ("squared", "euclidean")


@keras.saving.register_keras_serializable(package="keras_mtl")
class Krum(GradientAggregator):
    """Krum and Multi-Krum (Blanchard et al., 2017), from Byzantine-robust learning.

    Each task gradient ``g_i`` gets a score, the sum of its distances to its
    ``n − f − 2`` nearest other gradients (``n`` the tasks present, ``f``
    = ``n_byzantine`` the gradients that may be outliers); the update is the
    mean of the ``m`` = ``n_selected`` gradients of lowest score::

        s_i = Σ_{j ∈ N_i} d(g_i, g_j),      d = ‖g_i − g_j‖² (paper) or ‖g_i − g_j‖ (torchjd)
        d = (1/m) Σ_{i ∈ S} g_i,            S = the m lowest scores

    ``m = 1`` is Krum, ``m > 1`` Multi-Krum. The distances come from the Gram
    matrix (``‖g_i − g_j‖² = K_ii + K_jj − 2 K_ij``), so
    ``wrt="representation"`` works too. Ties in the scores go to the task
    listed first. Absent tasks are left out (``n`` counts the present ones);
    with fewer than ``f + 3`` tasks present Krum's neighbourhoods are
    empty, and the update is the mean of the present tasks' gradients.

    In multi-task learning it keeps the tasks whose gradients agree with
    the majority and drops the outliers entirely — a task whose gradient is
    unlike the others' gets no update of the shared parameters in that
    step. It is here because torchjd offers it; the balancing benchmark
    shows how it fares.

    Scale: a *mean* of the selected task gradients, as torchjd's ``Krum``
    (which scores with Euclidean distances: ``distances="euclidean"``);
    LibMTL has no Krum.

    Args:
        n_byzantine: ``f``, the number of task gradients that may be
            outliers; the model needs at least ``f + 3`` tasks.
        n_selected: ``m``, how many gradients are averaged (at most the
            number of tasks).
        distances: ``"squared"`` (the paper's score) or ``"euclidean"``
            (torchjd's).
        wrt: see :class:`~keras_mtl.balancing.GradientAggregator`.

    References:
        Blanchard, P., El Mhamdi, E. M., Guerraoui, R., Stainer, J. (2017).
        Machine Learning with Adversaries: Byzantine Tolerant Gradient
        Descent. NeurIPS.

    Example:
        >>> krum = Krum(n_selected=2)
        >>> krum.setup(["a", "b", "c", "d"], [1.0] * 4)
        >>> g = ops.array([[1.0, 0.0], [1.2, 0.1], [0.9, -0.1], [-5.0, 4.0]])
        >>> [round(float(v), 2) for v in krum.scores(g @ ops.transpose(g), ops.ones(4, "bool"))[:3]]
        [0.07, 0.18, 0.15]
        >>> [round(float(v), 2) for v in krum.aggregate_matrix(g, ops.ones(4), ops.ones(4, "bool"))]  # a and c
        [0.95, -0.05]
    """

    def __init__(self, n_byzantine: int = 0, n_selected: int = 1, distances: str = "squared", **kwargs):
        super().__init__(**kwargs)
        if int(n_byzantine) != n_byzantine or n_byzantine < 0:
            raise ValueError(f"Krum n_byzantine must be an integer ≥ 0; got {n_byzantine!r}.")
        if int(n_selected) != n_selected or n_selected < 1:
            raise ValueError(f"Krum n_selected must be an integer ≥ 1; got {n_selected!r}.")
        if distances not in DISTANCES:
            raise ValueError(f"Krum distances must be one of {DISTANCES}; got {distances!r}.")
        self.n_byzantine = int(n_byzantine)
        self.n_selected = int(n_selected)
        self.distances = distances

    def setup(self, task_names, base_weights):
        count = len(list(task_names))
        if count < self.n_byzantine + 3:
            raise ValueError(
                f"Krum(n_byzantine={self.n_byzantine}) needs at least {self.n_byzantine + 3} tasks "
                f"(n_byzantine + 3); this model has {count}. Lower n_byzantine or pick another strategy.")
        if count < self.n_selected:
            raise ValueError(f"Krum(n_selected={self.n_selected}) averages more gradients than this model's "
                             f"{count} tasks; pass n_selected ≤ {count}.")
        super().setup(task_names, base_weights)

    def scores(self, gram, present):
        """``s`` ``(T,)``: each present task's summed distance to its ``n − f − 2`` nearest others (∞ if absent)."""
        gram = ops.convert_to_tensor(gram, "float32")
        mask = presence_mask(present)
        count = gram.shape[0]
        norms = ops.diagonal(gram)
        squared = ops.maximum(norms[:, None] + norms[None, :] - 2.0 * gram, 0.0)
        distance = squared if self.distances == "squared" else ops.sqrt(squared)
        others = mask[:, None] * mask[None, :] * (1.0 - ops.eye(count))
        nearest = ops.sort(ops.where(others > 0, distance, float("inf")), axis=1)
        neighbours = ops.sum(mask) - self.n_byzantine - 2.0
        taken = ops.arange(count, dtype="float32")[None, :] < neighbours
        return ops.where(mask > 0, ops.sum(ops.where(taken, nearest, 0.0), axis=1), float("inf"))

    def task_coefficients(self, gram, present):
        mask = presence_mask(present)
        count = gram.shape[0]
        scores = self.scores(gram, present)
        # Rank by score, ties to the earlier task: the same choice on every backend.
        lower = ops.cast(scores[None, :] < scores[:, None], "float32")
        tied_before = ops.cast(scores[None, :] == scores[:, None], "float32") * ops.tril(ops.ones((count, count)), -1)
        rank = ops.sum(lower + tied_before, axis=1)
        present_count = ops.sum(mask)
        chosen = ops.minimum(float(self.n_selected), present_count)
        selected = ops.cast(rank < chosen, "float32") * mask / ops.maximum(chosen, 1.0)
        return ops.where(present_count >= self.n_byzantine + 3, selected, present_mean(mask))

    def get_config(self):
        return {**super().get_config(), "n_byzantine": self.n_byzantine, "n_selected": self.n_selected,
                "distances": self.distances}
