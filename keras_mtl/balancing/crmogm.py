"""CR-MOGM: another aggregator's task weights, smoothed over steps (Zhou et al., 2022)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.solvers import presence_mask
from keras_mtl.balancing.upgrad import UPGrad

__all__ = ["CRMOGM"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class CRMOGM(GradientAggregator):
    """CR-MOGM: an exponential moving average of a gradient aggregator's task weights (Zhou et al., 2022).

    Stochastic gradient-manipulation methods (MGDA, PCGrad, CAGrad, ...)
    pick their weights ``λ̂_k`` from one noisy batch, which biases them and
    can keep them from converging; CR-MOGM (correlation-reduced MOGM)
    smooths the weights of the ``aggregator`` it wraps::

        λ_k = α λ_{k−1} + (1 − α) λ̂_k,       update = Σ_i λ_{k,i} g_i

    with ``λ_0 = λ̂_1`` (the first step uses the wrapped weights as they are)
    and ``α`` the weight of the past, torchjd's convention (the paper's
    schedule ``α_k`` on the *new* weights is ``1 − α`` here). With missing
    labels, a task absent from the batch gets coefficient 0 and keeps its
    average for the next step it is present; a task's average starts at its
    first present step. ``α = 0`` is the wrapped aggregator, ``α = 1``
    freezes the first weights. The paper lets ``α`` approach 1 as the
    learning rate decays; here it is fixed.

    The wrapped aggregator must form its update as ``Σ_i λ̂_i g_i`` from the
    Gram matrix (every aggregator here but :class:`GradDrop`,
    :class:`TrimmedMean` and :class:`DBMTL`, which change the gradients
    themselves); its ``wrt``, loss weights, state and hooks are its own
    (``CRMOGM(MGDA(wrt="representation"))`` smooths MGDA-UB).

    Scale: the wrapped aggregator's — an average of its weights, so a sum or
    a mean of task gradients as it returns them, as torchjd's
    ``CRMOGMWeighting`` around the same weighting; LibMTL has no CR-MOGM.

    Args:
        aggregator: the :class:`GradientAggregator` whose weights are
            smoothed (default :class:`UPGrad`, as torchjd's example).
        wrt: ``None`` (the wrapped aggregator's), or the ``wrt`` of the
            default ``UPGrad``; see :class:`GradientAggregator`.
        alpha: ``α`` in ``[0, 1]``, the weight of the previous average
            (torchjd's default 0.9).

    References:
        Zhou, S., Zhang, W., Jiang, J., Zhong, W., Gu, J., Zhu, W. (2022).
        On the Convergence of Stochastic Multi-Objective Gradient
        Manipulation and Beyond. NeurIPS.

    Example:
        >>> from keras_mtl.balancing import MGDA
        >>> smooth = CRMOGM(MGDA(), alpha=0.5)
        >>> smooth.setup(["a", "b"], [1.0, 1.0])
        >>> both = ops.ones(2, "bool")
        >>> first = smooth.aggregate_matrix(ops.array([[1.0, 0.0], [0.0, 2.0]]), ops.ones(2), both)
        >>> [round(float(v), 2) for v in first]  # MGDA's min-norm point: λ̂ = (0.8, 0.2)
        [0.8, 0.4]
        >>> second = smooth.aggregate_matrix(ops.array([[2.0, 0.0], [0.0, 1.0]]), ops.ones(2), both)
        >>> [round(float(v), 2) for v in second]  # λ̂ = (0.2, 0.8); λ = ½ (0.8, 0.2) + ½ (0.2, 0.8)
        [1.0, 0.5]
    """

    def __init__(self, aggregator: GradientAggregator | None = None, alpha: float = 0.9, wrt: str | None = None,
                 **kwargs):
        if isinstance(aggregator, dict):
            aggregator = keras.saving.deserialize_keras_object(aggregator)
        if aggregator is None:
            aggregator = UPGrad(wrt=wrt or "parameters")
        if not isinstance(aggregator, GradientAggregator) or _changes_gradients(aggregator):
            raise ValueError(
                f"CRMOGM smooths the task weights of a gradient aggregator that forms Σ λ_i g_i; "
                f"{type(aggregator).__name__} does not. Wrap e.g. kmtl.balancing.UPGrad(), MGDA(), "
                "CAGrad() or NashMTL().")
        if wrt is not None and wrt != aggregator.wrt:
            raise ValueError(
                f"CRMOGM(wrt={wrt!r}) around {type(aggregator).__name__}(wrt={aggregator.wrt!r}): the "
                f"wrapped aggregator decides; pass {type(aggregator).__name__}(wrt={wrt!r}).")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"CRMOGM alpha must be in [0, 1] (the weight of the past average); got {alpha}.")
        super().__init__(wrt=aggregator.wrt, **kwargs)
        self.aggregator = aggregator
        self.alpha = float(alpha)
        self.distributed_error = aggregator.distributed_error
        self.adaptive = aggregator.adaptive

    def setup(self, task_names, base_weights):
        self.aggregator.setup(task_names, base_weights)
        super().setup(task_names, base_weights)

    def build(self, input_shape):
        self.average = self.add_state("average", (self.num_tasks,), 0.0)
        self.started = self.add_state("started", (self.num_tasks,), 0.0)

    def task_coefficients(self, gram, present):
        mask = presence_mask(present)
        fresh = self.aggregator.task_coefficients(gram, present) * mask
        # Read the state before assigning it (PyTorch variables are live storage).
        average, started = self.average.value, self.started.value
        smoothed = self.alpha * average + (1.0 - self.alpha) * fresh
        average = ops.where(mask > 0, ops.where(started > 0, smoothed, fresh), average)
        self.average.assign(average)
        self.started.assign(ops.maximum(started, mask))
        return average * mask

    # The wrapped aggregator's loss weights and hooks.
    def combine(self, task_losses, present, training=True):
        return self.aggregator.combine(task_losses, present, training)

    def observe_losses(self, task_losses, present):
        self.aggregator.observe_losses(task_losses, present)

    def observe_gradients(self, task_gradients, task_losses, weights, present):
        self.aggregator.observe_gradients(task_gradients, task_losses, weights, present)

    def end_epoch(self):
        self.aggregator.end_epoch()

    def get_config(self):
        config = {**super().get_config(), "alpha": self.alpha,
                  "aggregator": keras.saving.serialize_keras_object(self.aggregator)}
        config.pop("wrt")
        return config


def _changes_gradients(aggregator) -> bool:
    """Whether ``aggregator`` replaces ``Σ λ_i g_i`` by its own use of the gradients."""
    own = type(aggregator)
    return (own.aggregate is not GradientAggregator.aggregate
            or own.aggregate_matrix is not GradientAggregator.aggregate_matrix)
