"""FAMO: fast adaptive multitask optimisation from the losses alone (Liu et al., 2023)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.base import Balancer, global_losses

__all__ = ["FAMO"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class FAMO(Balancer):
    """Fast Adaptive Multitask Optimization, FAMO (Liu et al., 2023).

    Losses only, ``O(1)`` per step (no per-task gradients). Task logits
    ``ξ`` give weights ``z = softmax(ξ)``, and the model trains on::

        Σ_i z_i log L_i / c,    c = Σ_i z_i / L_i    (c held constant)

    i.e. loss weights ``z_i / (c L_i)``; ``loss`` in the logs is
    ``Σ z_i / c``, the ``z``-weighted harmonic mean of the task losses. After
    each step the logits move towards the tasks whose log-loss fell least::

        δ = J_softmax(ξ)ᵀ (log L_t − log L_{t+1}),   ξ ← Adam(ξ; δ + γ ξ)

    (``δ_j = z_j (Δ_j − Σ_i z_i Δ_i)``, ``Δ`` the decrease of the log-losses;
    Adam with learning rate ``lr`` and the L2 weight decay ``γ``, as the
    authors' code). The paper measures ``L_{t+1}`` by a second forward pass
    on the same batch after the update; here, to keep one pass per step,
    ``L_{t+1}`` is the loss of the task's *next* step, on the next batch in
    which it is labelled. A task absent from a batch keeps its logit, its
    Adam state and its last loss. Loss weights ``w_i`` of the tasks multiply
    ``z_i``. Defaults ``lr = 0.025``, ``γ = 0.001`` are the paper's.

    Args:
        lr: learning rate of the logits.
        gamma: weight decay ``γ`` of the logits.
        epsilon: added to the losses inside the logarithms.

    References:
        Liu, B., Feng, Y., Stone, P., Liu, Q. (2023). FAMO: Fast Adaptive
        Multitask Optimization. NeurIPS.

    Example:
        >>> famo = FAMO()
        >>> famo.setup(["a", "b"], [1.0, 1.0])
        >>> weights, _ = famo.combine(ops.array([1.0, 3.0]), ops.ones(2, "bool"))
        >>> [round(float(w), 3) for w in weights]  # z = (½, ½), c = ½ + ⅙
        [0.75, 0.25]
    """

    _BETA_1, _BETA_2, _ADAM_EPSILON = 0.9, 0.999, 1e-8

    def __init__(self, lr: float = 0.025, gamma: float = 0.001, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.lr = float(lr)
        self.gamma = float(gamma)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        new = lambda name: self.add_weight(  # noqa: E731
            shape=(self.num_tasks,), name=name, trainable=False, initializer="zeros",
            aggregation="only_first_replica")
        self.logits = new("logits")
        self.previous_log_loss = new("previous_log_loss")
        self.seen = new("seen")  # 1 once the task has a previous loss
        self.adam_m, self.adam_v, self.adam_steps = new("adam_m"), new("adam_v"), new("adam_steps")

    def combine(self, task_losses, present, training=True):
        losses = global_losses(task_losses)
        prior = ops.softmax(self.logits.value) * self.base_weights
        inverse = ops.where(present, prior / ops.where(present, losses + self.epsilon, 1.0), 0.0)
        return ops.divide_no_nan(inverse, ops.sum(inverse)), 0.0

    def observe_losses(self, task_losses, present):
        mask = ops.cast(present, "float32")
        log_loss = ops.log(ops.stop_gradient(ops.convert_to_tensor(task_losses, "float32")) + self.epsilon)
        # Everything is read before the first assignment (PyTorch variables are live storage).
        logits, previous, seen = self.logits.value, self.previous_log_loss.value, self.seen.value
        m, v, steps = self.adam_m.value, self.adam_v.value, self.adam_steps.value
        valid = ops.logical_and(present, seen > 0)
        decrease = ops.where(valid, previous - log_loss, 0.0)
        z = ops.softmax(logits)
        gradient = z * (decrease - ops.sum(z * decrease)) + self.gamma * logits
        steps_next = ops.where(valid, steps + 1.0, steps)
        m_next = ops.where(valid, self._BETA_1 * m + (1 - self._BETA_1) * gradient, m)
        v_next = ops.where(valid, self._BETA_2 * v + (1 - self._BETA_2) * gradient * gradient, v)
        count = ops.maximum(steps_next, 1.0)
        m_hat = m_next / (1 - ops.power(self._BETA_1, count))
        v_hat = v_next / (1 - ops.power(self._BETA_2, count))
        step = self.lr * m_hat / (ops.sqrt(v_hat) + self._ADAM_EPSILON)
        self.logits.assign(ops.where(valid, logits - step, logits))
        self.adam_m.assign(m_next)
        self.adam_v.assign(v_next)
        self.adam_steps.assign(steps_next)
        self.previous_log_loss.assign(ops.where(present, log_loss, previous))
        self.seen.assign(ops.maximum(seen, mask))

    def get_config(self):
        return {**super().get_config(), "lr": self.lr, "gamma": self.gamma, "epsilon": self.epsilon}
