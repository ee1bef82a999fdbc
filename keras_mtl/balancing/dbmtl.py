"""DB-MTL: dual balancing of loss scales and gradient magnitudes (Lin et al., 2023)."""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl.balancing.aggregator import GradientAggregator
from keras_mtl.balancing.base import log_loss_weights
from keras_mtl.balancing.solvers import presence_mask

__all__ = ["DBMTL"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class DBMTL(GradientAggregator):
    """Dual-Balancing Multi-Task Learning, DB-MTL (Lin et al., 2023).

    Balances the loss scales and the gradient magnitudes:

    * loss scale: each task trains on ``log(L_i + ε)``, i.e. the loss
      weights are ``w_i / (L_i + ε)`` held constant (the gradient is
      ``∇ log L_i``; ``loss`` in the logs is ``Σ_i w_i log(L_i + ε)``);
    * gradient magnitude: with ``n_i`` an exponential moving average of
      ``‖g_i‖`` (``n_i ← β_t n_i + (1 − β_t) ‖g_i‖``,
      ``β_t = β / t^{β_σ}``, ``t`` the task's step count), the shared
      parameters get::

          update = max_j n_j · Σ_i g_i / n_i

      every task's gradient rescaled to the largest (averaged) norm.

    The paper averages the gradients themselves (a ``T × P`` state) and
    normalises the average; this keeps the ``T`` averaged norms instead and
    normalises the current gradients, so the state does not depend on the
    number of shared parameters. An absent task's average and step count do
    not move. Defaults ``β = 0.9``, ``β_σ = 0`` are those of the authors'
    code (LibMTL).

    Scale: a *sum* of ``T`` gradients of the largest averaged norm, as
    LibMTL's ``DB_MTL``; torchjd has no DB-MTL.

    Args:
        beta: ``β``.
        beta_sigma: ``β_σ``, the decay of ``β_t`` with the step count.
        epsilon: ``ε`` in ``log(L + ε)``.

    References:
        Lin, B., Jiang, W., Ye, F., Zhang, Y., Chen, P., Chen, Y.-C., Liu, S.,
        Kwok, J. T. (2023). Dual-Balancing for Multi-Task Learning.
        arXiv:2308.12029.

    Example:
        >>> db = DBMTL(beta=0.0)  # no averaging: the current norms
        >>> db.setup(["a", "b"], [1.0, 1.0])
        >>> update = db.aggregate_matrix(ops.array([[3.0, 0.0], [0.0, 1.0]]), ops.ones(2), ops.ones(2, "bool"))
        >>> [float(v) for v in update]
        [3.0, 3.0]
    """

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.0, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        new = lambda name: self.add_weight(  # noqa: E731
            shape=(self.num_tasks,), name=name, trainable=False, initializer="zeros",
            aggregation="only_first_replica")
        self.norm_average = new("norm_average")
        self.steps = new("steps")

    def combine(self, task_losses, present, training=True):
        return log_loss_weights(task_losses, present, self.base_weights, self.epsilon)

    def task_coefficients(self, gram, present):
        mask = presence_mask(present)
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        steps = self.steps.value + mask
        beta = self.beta / ops.power(ops.maximum(steps, 1.0), self.beta_sigma)
        average = ops.where(present, beta * self.norm_average.value + (1.0 - beta) * norms,
                            self.norm_average.value)
        self.norm_average.assign(average)
        self.steps.assign(steps)
        return ops.divide_no_nan(ops.max(average * mask), average) * mask

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "beta_sigma": self.beta_sigma,
                "epsilon": self.epsilon}
