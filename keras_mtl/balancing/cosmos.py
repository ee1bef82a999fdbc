"""COSMOS: a linear scalarisation with a cosine-similarity reward (Ruchte & Grabocka, 2021)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.base import Balancer, global_losses

__all__ = ["COSMOS"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class COSMOS(Balancer):
    """COSMOS: the weighted sum of the losses minus a reward for pointing along the preference.

    With preference ``r`` (the tasks' loss weights) and the vector of task
    losses ``L``, the model trains on::

        J = Σ_i r_i L_i − λ cos(r, L),      cos(r, L) = rᵀL / (‖r‖ ‖L‖)

    whose derivatives are held as loss weights (``stop_gradient``)::

        ∂J/∂L_i = r_i − λ (r_i / (‖r‖ ‖L‖) − cos(r, L) L_i / ‖L‖²)

    and the extra term (constant) makes ``loss`` in the logs equal ``J``.
    The reward pulls the losses towards the ray of ``r``: a task whose loss
    is large for its preference gets more weight, one already below it less
    (the weight can turn negative when ``λ`` is large against ``‖L‖``). A
    task absent from the batch is left out of ``r`` and ``L`` and gets
    weight 0. No state.

    The paper approximates a whole Pareto front by also feeding ``r`` to the
    network and drawing it from a Dirichlet distribution at every step; that
    is a change of the model, not of the loss. Here ``r`` is fixed (the loss
    weights, equal by default): one point of the front, as torchjd's
    ``COSMOS`` scalariser computes it for a given preference.

    Args:
        lambda_: ``λ``, the weight of the cosine reward (0: the weighted sum).
            The paper uses 0.01 to 8 depending on the data set.
        epsilon: keeps ``‖L‖`` away from 0.

    References:
        Ruchte, M., Grabocka, J. (2021). Scalable Pareto Front Approximation
        for Deep Multi-Objective Learning. ICDM.

    Example:
        >>> from keras import ops
        >>> cosmos = COSMOS(lambda_=1.0, epsilon=0.0)
        >>> cosmos.setup(["a", "b"], [1.0, 1.0])
        >>> weights, extra = cosmos.combine(ops.array([3.0, 4.0]), ops.ones(2, "bool"))
        >>> [round(float(w), 4) for w in weights]  # 1 − λ (1/(√2·5) − cos · L_i / 25), cos = 7/(5√2)
        [0.9774, 1.017]
        >>> round(float(extra + ops.sum(weights * ops.array([3.0, 4.0]))), 4)  # 7 − cos
        6.0101
    """

    def __init__(self, lambda_: float = 1.0, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        if lambda_ < 0:
            raise ValueError(f"COSMOS lambda_ must be >= 0 (0 gives the weighted sum); got {lambda_}.")
        self.lambda_ = float(lambda_)
        self.epsilon = float(epsilon)

    def combine(self, task_losses, present, training=True):
        losses = global_losses(task_losses)
        present = ops.convert_to_tensor(present)
        preference = ops.where(present, self.base_weights, 0.0)
        values = ops.where(present, losses, 0.0)
        preference_norm = ops.sqrt(ops.sum(preference * preference))
        loss_norm = ops.sqrt(ops.sum(values * values)) + self.epsilon
        cosine = ops.divide_no_nan(ops.sum(preference * values), preference_norm * loss_norm)
        reward = ops.divide_no_nan(preference, preference_norm * loss_norm) - cosine * values / loss_norm ** 2
        weights = ops.where(present, preference - self.lambda_ * reward, 0.0)
        total = ops.sum(preference * values) - self.lambda_ * cosine
        return weights, ops.where(ops.any(present), total, 0.0) - ops.sum(weights * losses)

    def get_config(self):
        return {**super().get_config(), "lambda_": self.lambda_, "epsilon": self.epsilon}
