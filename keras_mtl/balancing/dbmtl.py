"""DB-MTL: dual balancing of loss scales and gradient magnitudes (Lin et al., 2023)."""

from __future__ import annotations

import math

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
    * gradient magnitude: an exponential moving average per task with
      ``β_t = β / t^{β_σ}`` (``t`` the task's step count), and every task's
      contribution rescaled to the largest averaged norm. ``form`` says what
      is averaged.

    ``form="norms"`` (the default) averages the gradient *norms*,
    ``n_i ← β_t n_i + (1 − β_t) ‖g_i‖``, and rescales this step's
    gradients::

        update = Σ_i (max_j n_j / n_i) g_i

    ``form="authors"`` is the authors' code (LibMTL's ``DB_MTL``): it
    averages the gradients themselves, ``m_i ← β_t m_i + (1 − β_t) g_i``
    (a ``T × P`` state, ``P`` the shared parameters, starting at zero), and
    combines the averages::

        update = Σ_i (max_j ‖m_j‖ / ‖m_i‖) m_i

    The two agree when ``β = 0``. The norms' form keeps ``T`` numbers
    whatever the model's size and its direction is this batch's; the
    authors' form keeps ``T`` copies of the shared gradient (memory
    ``T × P`` floats) and its direction is a momentum of the past gradients,
    which the optimizer's own momentum then averages again. Because
    keras_mtl strategies create their state when the model is compiled,
    before they see the shared parameters, the authors' form is told ``P``:
    ``num_parameters=DBMTL.shared_parameters(model)``; it needs the
    parameters' gradients (``wrt="parameters"``).

    In both forms an absent task's average and step count do not move, and
    it takes no part in the update or in the maximum. Defaults ``β = 0.9``,
    ``β_σ = 0`` are those of the authors' code; LibMTL counts the steps
    globally and adds ``10⁻⁸`` to ``‖m_i‖`` where this divides safely (a
    zero norm gives a zero coefficient).

    Scale: a *sum* of ``T`` gradients (or averages) of the largest averaged
    norm, as LibMTL's ``DB_MTL``; torchjd has no DB-MTL.

    Args:
        beta: ``β``.
        beta_sigma: ``β_σ``, the decay of ``β_t`` with the step count.
        epsilon: ``ε`` in ``log(L + ε)``.
        form: ``"norms"`` or ``"authors"``: what the moving average keeps.
        num_parameters: ``P``, the number of shared parameters, for
            ``form="authors"`` only (see :meth:`shared_parameters`).
        **kwargs: passed to :class:`~keras_mtl.balancing.GradientAggregator`
            (``wrt``).

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
        >>> authors = DBMTL(beta=0.5, form="authors", num_parameters=2)
        >>> authors.setup(["a", "b"], [1.0, 1.0])
        >>> update = authors.aggregate_matrix(ops.array([[4.0, 0.0], [0.0, 1.0]]), ops.ones(2), ops.ones(2, "bool"))
        >>> [float(v) for v in update]  # m = (½ g_1, ½ g_2) = ((2, 0), (0, ½)): both scaled to norm 2
        [2.0, 2.0]
    """

    FORMS = ("norms", "authors")

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.0, epsilon: float = 1e-8, form: str = "norms",
                 num_parameters: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if form not in self.FORMS:
            raise ValueError(f"DBMTL(form={form!r}): form must be one of {self.FORMS}.")
        if form == "authors":
            if self.wrt != "parameters":
                raise ValueError("DBMTL(form='authors') averages the parameters' gradients; use wrt='parameters'.")
            if num_parameters is None or int(num_parameters) < 1:
                raise ValueError(
                    "DBMTL(form='authors') keeps a moving average of the shared gradients and needs their "
                    "size: pass num_parameters=DBMTL.shared_parameters(model).")
        elif num_parameters is not None:
            raise ValueError("DBMTL(num_parameters=...) is for form='authors' only.")
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        self.epsilon = float(epsilon)
        self.form = form
        self.num_parameters = None if num_parameters is None else int(num_parameters)

    @staticmethod
    def shared_parameters(model) -> int:
        """``P``: the number of shared parameters whose per-task gradients ``model``'s strategy sees.

        Every trainable variable of the model but the heads' and its current
        strategy's own; what ``form="authors"`` takes as ``num_parameters``.

        Args:
            model: a :class:`keras_mtl.MultiTaskModel`.

        Returns:
            The total number of entries of those variables.
        """
        balancing = model.balancing
        own = [] if balancing is None else balancing.trainable_variables
        excluded = {id(v) for v in [*model.task_heads.trainable_variables, *own]}
        return sum(math.prod(v.shape) for v in model.trainable_variables if id(v) not in excluded)

    def build(self, input_shape):
        count = self.num_tasks
        if self.form == "authors":
            self.gradient_average = self.add_state("gradient_average", (count, self.num_parameters), 0.0)
        else:
            self.norm_average = self.add_state("norm_average", (count,), 0.0)
        self.steps = self.add_state("steps", (count,), 0.0)

    def combine(self, task_losses, present, training=True):
        return log_loss_weights(task_losses, present, self.base_weights, self.epsilon)

    def _decay(self, mask):
        """``β_t`` per task, after counting this step for the present tasks."""
        steps = self.steps.value + mask
        self.steps.assign(steps)
        return self.beta / ops.power(ops.maximum(steps, 1.0), self.beta_sigma)

    @staticmethod
    def _to_largest(norms, mask):
        """The coefficients ``max_j n_j / n_i`` over the present tasks (0 for an absent task or a zero norm)."""
        return ops.divide_no_nan(ops.max(norms * mask), norms) * mask

    def task_coefficients(self, gram, present):
        mask = presence_mask(present)
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        beta = self._decay(mask)
        average = ops.where(mask > 0, beta * self.norm_average.value + (1.0 - beta) * norms,
                            self.norm_average.value)
        self.norm_average.assign(average)
        return self._to_largest(average, mask)

    def aggregate_matrix(self, matrix, weights, present):
        if self.form == "norms":
            return super().aggregate_matrix(matrix, weights, present)
        size = matrix.shape[1]
        if size is not None and size != self.num_parameters:
            raise ValueError(
                f"DBMTL(form='authors') was made for num_parameters={self.num_parameters} shared parameters; "
                f"this model's strategy sees {size}: pass num_parameters=DBMTL.shared_parameters(model).")
        mask = presence_mask(present)
        beta = self._decay(mask)[:, None]
        previous = self.gradient_average.value
        average = ops.where(mask[:, None] > 0, beta * previous + (1.0 - beta) * matrix, previous)
        self.gradient_average.assign(average)
        coefficients = self._to_largest(ops.sqrt(ops.sum(ops.square(average), axis=1)), mask)
        return ops.matmul(ops.reshape(coefficients, (1, -1)), average)[0]

    def get_config(self):
        config = {**super().get_config(), "beta": self.beta, "beta_sigma": self.beta_sigma, "epsilon": self.epsilon,
                  "form": self.form}
        if self.form == "authors":
            config["num_parameters"] = self.num_parameters
        return config
