"""STCH: smooth Tchebycheff scalarisation of the task losses (Lin et al., 2024)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.base import Balancer, global_losses, log_loss_weights

__all__ = ["STCH"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class STCH(Balancer):
    """Smooth Tchebycheff scalarisation, STCH (Lin et al., 2024).

    The Tchebycheff scalarisation ``max_i λ_i (f_i − z_i)`` trains on the
    worst task only; its smooth version is::

        L = T μ log Σ_i exp(λ_i (f_i − z_i) / μ),     f_i = log(L_i / n_i),  z_i = 0

    with ``λ_i`` the tasks' loss weights, ``μ`` the smoothing (``μ → 0``
    gives the max) and, as LibMTL and the authors' multi-task code do, the
    objectives the log losses normalised by a nadir point ``n_i``, with ideal
    point ``z = 0``. Its gradient is a softmax-weighted sum of the tasks'
    ``∇ log L_i``::

        ∂L/∂L_i = T λ_i s_i / L_i,     s = softmax(λ ⊙ f / μ)

    so the loss weights ``T λ_i s_i / L_i`` (held constant) give the exact
    gradient, and the extra term (constant) makes ``loss`` in the logs equal
    ``L``. The cost is ``O(T)`` per step, from the losses only.

    Warm-up (what LibMTL does, adopted here): for the first
    ``warmup_epochs`` epochs the model trains on ``Σ_i λ_i log L_i`` (as
    :class:`~keras_mtl.balancing.ScaleInvariant`) while the losses of the
    last warm-up epoch are averaged; that average is the nadir point ``n``,
    fixed from then on. LibMTL's ``STCH_warmup_epoch = 4`` trains 5 epochs
    on log losses and averages the fifth: ``warmup_epochs=5`` here. With
    ``warmup_epochs=0`` there is no warm-up and ``n = 1``. A task absent
    from a batch is left out of the softmax (weight 0) and out of the
    average; a task never labelled in the last warm-up epoch gets ``n_i = 1``.

    Args:
        mu: the smoothing ``μ`` (LibMTL's default 1).
        warmup_epochs: epochs on ``Σ log L_i`` before the nadir point is fixed.
        epsilon: added to the losses inside the logarithms.

    References:
        Lin, X., Zhang, X., Yang, Z., Liu, F., Wang, Z., Zhang, Q. (2024).
        Smooth Tchebycheff Scalarization for Multi-Objective Optimization.
        ICML.

    Example:
        >>> from keras import ops
        >>> stch = STCH(mu=1.0, warmup_epochs=0, epsilon=0.0)
        >>> stch.setup(["a", "b"], [1.0, 1.0])
        >>> weights, extra = stch.combine(ops.array([1.0, 3.0]), ops.ones(2, "bool"))
        >>> [round(float(w), 3) for w in weights]  # s = softmax(log 1, log 3) = (¼, ¾); 2 s_i / L_i
        [0.5, 0.5]
    """

    def __init__(self, mu: float = 1.0, warmup_epochs: int = 5, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        if mu <= 0:
            raise ValueError(f"STCH mu must be > 0; got {mu}.")
        if warmup_epochs < 0:
            raise ValueError(f"STCH warmup_epochs must be >= 0; got {warmup_epochs}.")
        self.mu = float(mu)
        self.warmup_epochs = int(warmup_epochs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        self.nadir = self.add_state("nadir", (self.num_tasks,), 1.0)
        self.loss_sum = self.add_state("loss_sum", (self.num_tasks,), 0.0)
        self.loss_count = self.add_state("loss_count", (self.num_tasks,), 0.0)
        self.epochs_seen = self.add_state("epochs_seen", (), 0.0)

    def combine(self, task_losses, present, training=True):
        losses = global_losses(task_losses)
        present = ops.convert_to_tensor(present)
        log_weights, log_extra = log_loss_weights(task_losses, present, self.base_weights, self.epsilon)
        weights, extra = self.smooth_tchebycheff(losses, present, self.nadir.value)
        warm = self.epochs_seen.value < self.warmup_epochs
        return ops.where(warm, log_weights, weights), ops.where(warm, log_extra, extra)

    def smooth_tchebycheff(self, losses, present, nadir):
        """``(weights, extra)`` of ``T μ logsumexp(λ ⊙ log(L / n) / μ)`` over the present tasks."""
        mask = ops.cast(present, "float32")
        count = ops.sum(mask)
        safe = ops.where(present, losses + self.epsilon, 1.0)
        scaled = ops.where(present, self.base_weights * ops.log(safe / nadir) / self.mu, -1e30)
        top = ops.max(scaled)
        exps = ops.exp(scaled - top) * mask
        total = ops.sum(exps)
        softmax = ops.divide_no_nan(exps, total)
        value = count * self.mu * (top + ops.log(ops.where(total > 0, total, 1.0)))
        weights = count * self.base_weights * softmax / safe
        return weights, ops.where(count > 0, value, 0.0) - ops.sum(weights * losses)

    def observe_losses(self, task_losses, present):
        mask = ops.cast(present, "float32")
        losses = ops.stop_gradient(ops.convert_to_tensor(task_losses, "float32"))
        self.loss_sum.assign_add(losses * mask)
        self.loss_count.assign_add(mask)

    def end_epoch(self):
        # Read everything before the first assignment (PyTorch variables are live storage).
        loss_sum, loss_count = self.loss_sum.value, self.loss_count.value
        epochs, nadir = self.epochs_seen.value + 1.0, self.nadir.value
        average = ops.where(loss_count > 0, ops.divide_no_nan(loss_sum, loss_count) + self.epsilon, 1.0)
        self.nadir.assign(ops.where(ops.equal(epochs, float(self.warmup_epochs)), average, nadir))
        self.epochs_seen.assign(epochs)
        for variable in (self.loss_sum, self.loss_count):
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "mu": self.mu, "warmup_epochs": self.warmup_epochs,
                "epsilon": self.epsilon}
