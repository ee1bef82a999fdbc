"""PBI: penalty-based boundary intersection of the task losses (Zhang & Li, 2007)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.base import Balancer, global_losses

__all__ = ["PBI"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class PBI(Balancer):
    """Penalty-based boundary intersection, PBI (Zhang & Li, 2007; MOEA/D's decomposition).

    The losses ``L`` less a reference point ``z`` are split along the unit
    preference direction ``ŵ = w / ‖w‖`` (``w``: the tasks' loss weights)
    and across it, and the distance from the direction is penalised::

        d₁ = (L − z)ᵀ ŵ,   p = (L − z) − d₁ ŵ,   d₂ = √(pᵀp + ε),   J = d₁ + θ d₂

    Its derivatives, held as loss weights (``stop_gradient``), are
    ``∂J/∂L_i = ŵ_i + θ p_i / d₂``; the extra term (constant) makes ``loss``
    in the logs equal ``J``. A task whose loss lies above the preference
    ray gets more weight than ``ŵ_i``, one below it less — negative when
    ``θ`` is large — which keeps the losses near the ray. ``ε`` (as
    torchjd's ``PBI``) keeps ``d₂``'s gradient finite on the ray. A task
    absent from the batch is left out (``ŵ`` and ``p`` over the present
    tasks) and gets weight 0. No state.

    Args:
        theta: ``θ``, the penalty on the distance from the preference ray
            (0: the projection ``d₁``, a weighted sum). MOEA/D uses 5.
        reference: ``z``, one value per task, a lower bound of the losses;
            ``None`` is the origin (losses are non-negative).
        epsilon: ``ε`` under the square root of ``d₂``.

    References:
        Zhang, Q., Li, H. (2007). MOEA/D: A Multiobjective Evolutionary
        Algorithm Based on Decomposition. IEEE Transactions on Evolutionary
        Computation 11(6).

    Example:
        >>> from keras import ops
        >>> pbi = PBI(theta=1.0, epsilon=0.0)
        >>> pbi.setup(["a", "b"], [1.0, 1.0])
        >>> weights, extra = pbi.combine(ops.array([1.0, 3.0]), ops.ones(2, "bool"))
        >>> [round(float(w), 4) for w in weights]  # ŵ = (1, 1)/√2, p = (−1, 1), d₂ = √2
        [0.0, 1.4142]
        >>> round(float(extra + ops.sum(weights * ops.array([1.0, 3.0]))), 4)  # d₁ + d₂ = 4/√2 + √2
        4.2426
    """

    def __init__(self, theta: float = 5.0, reference=None, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        if theta < 0:
            raise ValueError(f"PBI theta must be >= 0 (0 gives the projection on the preference); got {theta}.")
        self.theta = float(theta)
        self.reference = None if reference is None else [float(v) for v in reference]
        self.epsilon = float(epsilon)

    def setup(self, task_names, base_weights):
        if self.reference is not None and len(self.reference) != len(task_names):
            raise ValueError(
                f"PBI(reference=...) has {len(self.reference)} values for {len(task_names)} tasks "
                f"{list(task_names)}; give one lower bound of the loss per task, in task order.")
        super().setup(task_names, base_weights)

    def combine(self, task_losses, present, training=True):
        losses = global_losses(task_losses)
        present = ops.convert_to_tensor(present)
        reference = 0.0 if self.reference is None else ops.convert_to_tensor(self.reference, "float32")
        shifted = ops.where(present, losses - reference, 0.0)
        direction = ops.where(present, self.base_weights, 0.0)
        direction = ops.divide_no_nan(direction, ops.sqrt(ops.sum(direction * direction)))
        along = ops.sum(shifted * direction)
        across = shifted - along * direction
        distance = ops.sqrt(ops.sum(across * across) + self.epsilon)
        weights = ops.where(present, direction + self.theta * ops.divide_no_nan(across, distance), 0.0)
        total = along + self.theta * distance
        return weights, ops.where(ops.any(present), total, 0.0) - ops.sum(weights * losses)

    def get_config(self):
        return {**super().get_config(), "theta": self.theta, "reference": self.reference, "epsilon": self.epsilon}
