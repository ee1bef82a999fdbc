"""Dynamic Weight Average: weights from the rate at which each task's loss falls (Liu et al., 2019)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.base import Balancer

__all__ = ["DWA"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class DWA(Balancer):
    """Dynamic Weight Average (Liu, Johns & Davison, 2019).

    Weights follow the rate at which each task's epoch-average loss falls::

        r_i(t−1) = L_i(t−1) / L_i(t−2)
        w_i(t)   = K · exp(r_i(t−1) / T) / Σ_j exp(r_j(t−1) / T)

    with ``K`` the number of tasks; ``w_i = 1`` for the first two epochs.
    Epoch averages count only batches in which the task is labelled; a task
    never labelled in an epoch keeps its previous average, and a task with
    no average yet for ``t−2`` gets the neutral ratio ``r_i = 1``.

    Args:
        temperature: ``T``; larger values give more uniform weights.

    References:
        Liu, S., Johns, E., Davison, A. J. (2019). End-to-End Multi-Task
        Learning with Attention. CVPR.
    """

    def __init__(self, temperature: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"DWA temperature must be > 0; got {temperature}.")
        self.temperature = float(temperature)

    def build(self, input_shape):
        shape = (self.num_tasks,)
        new = lambda name, value: self.add_weight(  # noqa: E731
            shape=shape, name=name, trainable=False, initializer=keras.initializers.Constant(value),
            aggregation="only_first_replica")
        self.dynamic_weights = new("dynamic_weights", 1.0)
        self.loss_sum = new("loss_sum", 0.0)
        self.loss_count = new("loss_count", 0.0)
        self.previous = new("previous_epoch_loss", 0.0)      # L(t−1)
        self.before_previous = new("before_previous_epoch_loss", 0.0)  # L(t−2)
        self.epochs_seen = self.add_weight(shape=(), name="epochs_seen", trainable=False,
                                           initializer="zeros", aggregation="only_first_replica")

    def combine(self, task_losses, present, training=True):
        return self.dynamic_weights * self.base_weights, 0.0

    def observe_losses(self, task_losses, present):
        mask = ops.cast(present, "float32")
        # convert_to_tensor: PyTorch's stop_gradient takes tensors only, not arrays.
        self.loss_sum.assign_add(ops.stop_gradient(ops.convert_to_tensor(task_losses, "float32")) * mask)
        self.loss_count.assign_add(mask)

    @staticmethod
    def weights_from_history(previous, before_previous, temperature):
        """The DWA formula: ``K · softmax(L(t−1) / L(t−2) / T)``.

        Args:
            previous: epoch-average losses ``L(t−1)``, shape ``(K,)``.
            before_previous: epoch-average losses ``L(t−2)``, shape ``(K,)``;
                a zero entry (no average yet) gives that task the ratio 1.
            temperature: ``T``.

        Returns:
            The weights ``(K,)``; they sum to ``K``.

        Example:
            >>> w = DWA.weights_from_history(ops.array([1.0, 1.0]), ops.array([2.0, 1.0]), 2.0)
            >>> [round(float(v), 4) for v in w]
            [0.8756, 1.1244]
        """
        previous = ops.convert_to_tensor(previous, "float32")
        before_previous = ops.convert_to_tensor(before_previous, "float32")
        ratio = ops.where(before_previous > 0, ops.divide_no_nan(previous, before_previous), 1.0)
        return previous.shape[0] * ops.softmax(ratio / temperature)

    def end_epoch(self):
        # Everything is computed before the first assignment: on PyTorch a
        # variable's value is its live storage, which assign() overwrites.
        loss_sum, loss_count, previous = (v.value for v in (self.loss_sum, self.loss_count, self.previous))
        average = ops.divide_no_nan(loss_sum, loss_count)
        # A task never labelled this epoch keeps its last average.
        average = ops.where(loss_count > 0, average, previous)
        weights = self.weights_from_history(average, previous, self.temperature)
        self.before_previous.assign(previous)
        self.previous.assign(average)
        self.epochs_seen.assign_add(1.0)
        if float(ops.convert_to_numpy(self.epochs_seen)) >= 2:  # float() fails on a MirroredVariable
            self.dynamic_weights.assign(weights)
        for variable in (self.loss_sum, self.loss_count):
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
