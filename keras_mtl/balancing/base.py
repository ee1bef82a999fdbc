"""The base of every task-balancing strategy, and the log-loss weights two of them share.

A strategy is a :class:`Balancer` handed to ``model.compile(balancing=...)``;
the model asks it, at every training step, for the loss weights
(:meth:`Balancer.combine`), for strategies that look at per-task gradients
the update of the shared parameters (:meth:`Balancer.aggregate`), and calls
its hooks (:meth:`Balancer.observe_losses`, :meth:`Balancer.observe_gradients`,
:meth:`Balancer.end_epoch`). :func:`log_loss_weights` gives the weights that
train on ``Σ_i w_i log L_i`` (used by :class:`~keras_mtl.balancing.ScaleInvariant`
and :class:`~keras_mtl.balancing.DBMTL`).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl import distribute as distribute_lib

__all__ = ["Balancer", "global_losses", "log_loss_weights"]


class Balancer(keras.layers.Layer):
    """Base class of task-balancing strategies.

    Subclasses override :meth:`combine` (loss weighting) and/or
    :meth:`aggregate` (gradient manipulation, with ``gradient_scope`` set to
    ``"shared"`` for every shared parameter or ``"last_shared"`` for the last
    shared kernel only).
    """

    gradient_scope: str | None = None
    adaptive = True  # log weight_<task> in History
    # Why the strategy cannot train on several replicas, and what to use instead.
    distributed_error: str | None = None

    def add_state(self, name: str, shape, value: float):
        """A non-trainable state variable filled with ``value``, assignable from every replica.

        Saved with the model and restored by ``BackupAndRestore``, like the
        rest of the strategy's variables.
        """
        return self.add_weight(shape=shape, name=name, trainable=False,
                               initializer=keras.initializers.Constant(value),
                               aggregation="only_first_replica")

    def setup(self, task_names, base_weights):
        """Called by ``compile``: the tasks and their fixed loss weights."""
        self.task_names = list(task_names)
        self.num_tasks = len(self.task_names)
        self.base_weights = ops.convert_to_tensor(base_weights, "float32")
        if getattr(self, "_tasks_set_up", None) is None:
            self.build(None)
            self.built = True
            self._tasks_set_up = self.num_tasks
        elif self._tasks_set_up != self.num_tasks:
            raise ValueError(
                f"This {type(self).__name__} was set up for {self._tasks_set_up} tasks; "
                f"create a new one for a model with {self.num_tasks}."
            )

    def combine(self, task_losses, present, training=True):
        """Returns ``(weights, extra)``: the loss weights (T,) and a scalar added to the loss.

        Args:
            task_losses: per-task losses ``(T,)``.
            present: ``(T,)`` bool, whether the batch labels each task.
            training: ``False`` when evaluating; a strategy whose weights are
                random then returns their expectation.
        """
        return self.base_weights, 0.0

    def aggregate(self, task_gradients, weights, present):
        """Combines per-task gradients of the shared parameters.

        Args:
            task_gradients: list over shared variables of tensors ``(T, *var.shape)``,
                the gradient of each task's *weighted* loss.
            weights: the loss weights of this step, ``(T,)``.
            present: ``(T,)`` bool.

        Returns:
            List of gradients, one per shared variable.
        """
        return [ops.sum(g, axis=0) for g in task_gradients]

    def combine_gradients(self, gradients, task_jacobians, terms, variables, selected):
        """The update of every trainable variable, from a step's gradients and per-task Jacobians.

        Backend-independent: the per-backend training steps
        (``keras_mtl.backend``) compute the gradients, this decides what to
        apply. The strategy sees the per-task gradients
        (:meth:`observe_gradients`); with ``gradient_scope="shared"`` the
        selected variables get :meth:`aggregate`'s update, plus what the
        strategy does not see (its own terms and the regularisers); the other
        variables keep the gradient of the total loss.

        Args:
            gradients: gradients of ``terms.total`` for each of ``variables``
                (``None`` where unused).
            task_jacobians: for each of ``selected``, the gradient of every
                entry of ``terms.rows``: ``(T + 1, *shape)`` (``T`` task rows,
                then the rest).
            terms: the step's loss terms (``task_losses``, ``present``,
                ``weights`` ``(T,)``).
            variables: the model's trainable variables.
            selected: the variables whose per-task gradients were computed
                (among ``variables``).

        Returns:
            The gradients to apply, in the order of ``variables``.
        """
        num_tasks = self.num_tasks
        # Global per-task gradients and losses, identical on every replica.
        task_gradients = distribute_lib.cross_replica_sum([j[:num_tasks] for j in task_jacobians])
        self.observe_gradients(task_gradients, distribute_lib.cross_replica_sum(terms.task_losses),
                               terms.weights, terms.present)
        gradients = [ops.zeros(v.shape, "float32") if g is None else g for v, g in zip(variables, gradients)]
        if self.gradient_scope != "shared":
            return gradients
        combined = self.aggregate(task_gradients, terms.weights, terms.present)
        # Divided by the replicas (the optimizer sums every replica's copy), plus what the
        # strategy does not see: its own terms and the regularisers.
        # Keyed by identity, as Keras's optimizer keys variables: paths repeat when a
        # trunk nests two functional models with same-named layers.
        replaced = {id(v): distribute_lib.replica_share(c) + j[num_tasks]
                    for v, c, j in zip(selected, combined, task_jacobians)}
        return [replaced.get(id(v), g) for v, g in zip(variables, gradients)]

    def observe_gradients(self, task_gradients, task_losses, weights, present):
        """Hook after the per-task gradients are known (e.g. GradNorm's update)."""

    def end_epoch(self):
        """Hook at the end of every training epoch."""

    def observe_losses(self, task_losses, present):
        """Hook with every step's per-task losses (e.g. for epoch averages)."""

    def get_build_config(self):
        # Variables are created by setup() at compile time, once the tasks are known.
        return None

    # Keras saves a layer's own variables but not the state of its seed
    # generators; without it a reloaded or resumed random strategy would
    # restart (or, unseeded, reseed) its random stream.
    _SEED_KEY = "seed_generator_state_"

    def _own_generators(self) -> list:
        """The strategy's random generators (``_generator``, where it draws)."""
        return [self._generator] if hasattr(self, "_generator") else []

    def save_own_variables(self, store):
        super().save_own_variables(store)
        for i, generator in enumerate(self._own_generators()):
            store[f"{self._SEED_KEY}{i}"] = generator.state

    def load_own_variables(self, store):
        keys = list(store.keys())
        own = {k: store[k] for k in keys if not k.startswith(self._SEED_KEY)}
        super().load_own_variables(own)
        for i, generator in enumerate(self._own_generators()):
            key = f"{self._SEED_KEY}{i}"
            if key in keys:
                generator.state.assign(ops.cast(store[key], generator.state.dtype))

    def build_from_config(self, config):
        pass

    def call(self, inputs):  # pragma: no cover - not used as a layer in a graph
        return inputs


def global_losses(task_losses):
    """The per-task losses summed over replicas, float32, as constants (``stop_gradient``).

    What a loss weighting computes its weights from: every replica gets the
    same numbers, and the weights do not add a gradient of their own.
    """
    return ops.stop_gradient(ops.convert_to_tensor(distribute_lib.cross_replica_sum(task_losses), "float32"))


def log_loss_weights(task_losses, present, base_weights, epsilon=1e-8):
    """Loss weights that train on ``Σ_i w_i log(L_i + ε)``, and the term that makes the total read so.

    The weights ``w_i / (L_i + ε)`` are constants (``stop_gradient``), so
    ``Σ_i (w_i / (L_i + ε)) L_i`` has the gradient of ``Σ_i w_i log(L_i + ε)``;
    the returned extra term (also constant) makes the loss itself equal that
    sum. Losses are the global ones (summed over replicas), so every replica
    gets the same weights.

    Args:
        task_losses: per-task losses ``(T,)`` (this replica's shares).
        present: ``(T,)`` bool; absent tasks get weight 0.
        base_weights: the tasks' loss weights ``(T,)``.
        epsilon: ``ε``.

    Returns:
        ``(weights, extra)`` as :meth:`Balancer.combine` returns them.

    Example:
        >>> w, extra = log_loss_weights(ops.array([0.5, 2.0]), ops.array([True, True]), ops.ones(2), 0.0)
        >>> [float(v) for v in w], round(float(extra + ops.sum(w * ops.array([0.5, 2.0]))), 4)
        ([2.0, 0.5], 0.0)
    """
    losses = global_losses(task_losses)
    shifted = losses + epsilon
    safe = ops.where(present, shifted, 1.0)
    weights = ops.where(present, base_weights / safe, 0.0)
    log_total = ops.sum(ops.where(present, base_weights * ops.log(safe), 0.0))
    return weights, log_total - ops.sum(weights * losses)
