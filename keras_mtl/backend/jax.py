"""JAX: per-task gradients from one VJP, vectorised over the task rows with ``jax.vmap``.

The stateless step of Keras's JAX trainer, in the same ``(logs, state)`` form.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras


def _current(scope, variables, values):
    """The values of ``variables`` after a stateless scope (unchanged ones as given)."""
    found = []
    for variable, value in zip(variables, values):
        new = scope.get_current_value(variable)
        found.append(value if new is None else new)
    return found


def _rows(model, values, non_trainable, metrics_values, x, y, sample_weight):
    """The forward pass and the loss rows of both steps, as a function of the trainable values.

    Returns ``(rows, aux)``: the rows to differentiate, and the predictions,
    the task losses, ``present``, the weights, and the non-trainable and
    metric values the step left.
    """
    y_pred, new_non_trainable, losses = model.stateless_call(
        values, non_trainable, x, return_losses=True, training=True)
    mapping = [*zip(model.trainable_variables, values), *zip(model.non_trainable_variables, new_non_trainable),
               *zip(model.metrics_variables, metrics_values)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        terms = model.loss_terms(y, y_pred, sample_weight, training=True, extra_losses=losses)
    new_non_trainable = _current(scope, model.non_trainable_variables, new_non_trainable)
    new_metrics = _current(scope, model.metrics_variables, metrics_values)
    return terms.rows, (y_pred, terms.task_losses, terms.present, terms.weights, new_non_trainable, new_metrics)


def _logs(model, metrics_values, rows, x, y, y_pred, sample_weight):
    """The end of both steps: the loss metric and the task metrics, statelessly."""
    batch_size = keras.tree.flatten(x)[0].shape[0]
    with keras.StatelessScope(state_mapping=list(zip(model.metrics_variables, metrics_values))) as scope:
        model.loss_metric.update_state(jnp.sum(rows), sample_weight=batch_size)
        logs = model.compute_metrics(x, y, y_pred, sample_weight)
    return logs, _current(scope, model.metrics_variables, metrics_values)


def train_step(model, state, data):
    """Keras's stateless JAX training step, with the per-task gradients of the shared parameters.

    Args:
        model: a compiled :class:`keras_mtl.MultiTaskModel`.
        state: ``(trainable, non_trainable, optimizer, metrics)`` variable values.
        data: one batch ``(x, y[, sample_weight])``.

    Returns:
        ``(logs, state)`` as Keras's JAX trainer expects.
    """
    trainable, non_trainable, optimizer_values, metrics_values = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    variables = model.trainable_variables
    position = {id(v): i for i, v in enumerate(variables)}
    chosen = [position[id(v)] for v in model.per_task_variables()]

    def rows_of(selected_values, other_values):
        values = list(other_values)
        for i, value in zip(chosen, selected_values):
            values[i] = value
        return _rows(model, values, non_trainable, metrics_values, x, y, sample_weight)

    selected_values = [trainable[i] for i in chosen]
    rows, backward, aux = jax.vjp(rows_of, selected_values, list(trainable), has_aux=True)
    y_pred, task_losses, present, weights, non_trainable, metrics_values = aux
    selected_gradients, gradients = backward(jnp.ones_like(rows))
    gradients = list(gradients)
    for i, g in zip(chosen, selected_gradients):
        gradients[i] = g  # the selected variables enter through the first argument only
    # One vmapped backward pass: the gradient of every row (task) at once.
    jacobians = jax.vmap(lambda cotangent: backward(cotangent)[0])(jnp.eye(rows.shape[0]))
    terms = _Terms(task_losses, present, weights, rows)
    mapping = [*zip(variables, trainable), *zip(model.non_trainable_variables, non_trainable),
               *zip(model.optimizer.variables, optimizer_values)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        updates = model.combine_gradients(gradients, list(jacobians), terms)
    non_trainable = _current(scope, model.non_trainable_variables, non_trainable)
    trainable, optimizer_values = model.optimizer.stateless_apply(optimizer_values, updates, trainable)

    logs, metrics_values = _logs(model, metrics_values, rows, x, y, y_pred, sample_weight)
    return logs, (trainable, non_trainable, optimizer_values, metrics_values)


class _Terms:
    """The parts of ``LossTerms`` that ``combine_gradients`` reads, from traced values."""

    def __init__(self, task_losses, present, weights, rows):
        self.task_losses, self.present, self.weights, self.rows = task_losses, present, weights, rows
        self.total = jnp.sum(rows)


def _stateless(model, function, values, non_trainable, inputs):
    """``function(inputs)`` (a part of ``model``) with the given variable values, statelessly.

    Returns ``(outputs, non-trainable values after the call, the part's own losses)``.
    """
    mapping = [*zip(model.trainable_variables, values), *zip(model.non_trainable_variables, non_trainable)]
    with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
        outputs = function(inputs, training=True)
        losses = function.losses
    return outputs, _current(scope, model.non_trainable_variables, non_trainable), losses


def representation_train_step(model, state, data):
    """The stateless step with per-task gradients of the shared representation.

    JAX differentiates functions of inputs, so the forward pass runs in two
    parts (``model.split_at_representation()``): the trunk, a function of
    the parameters giving the representation (and the trunk's own losses,
    regularisers), and the rest, a function of the parameters and the
    representation giving the loss rows. The rest's VJP is pulled back three
    times — ones for the total loss's gradients, the task rows (vmapped) for
    the representation, ``(α, 1)`` for the trunk — and the trunk's VJP
    twice, with the first and the last of these.

    Args:
        model: a compiled :class:`keras_mtl.MultiTaskModel`.
        state: ``(trainable, non_trainable, optimizer, metrics)`` variable values.
        data: one batch ``(x, y[, sample_weight])``.

    Returns:
        ``(logs, state)`` as Keras's JAX trainer expects.
    """
    trainable, non_trainable, optimizer_values, metrics_values = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    variables = model.trainable_variables
    trunk_model, head_model = model.split_at_representation()

    def trunk_of(values):
        representation, after_trunk, losses = _stateless(model, trunk_model, values, non_trainable, x)
        own = sum((jnp.sum(loss).astype("float32") for loss in losses), jnp.zeros((), "float32"))
        return (representation, own), after_trunk

    (representation, trunk_losses), trunk_backward, after_trunk = jax.vjp(trunk_of, list(trainable), has_aux=True)

    def rows_of(values, trunk_part):
        representation, trunk_losses = trunk_part
        y_pred, after_head, losses = _stateless(model, head_model, values, after_trunk, representation)
        mapping = [*zip(variables, values), *zip(model.non_trainable_variables, after_head),
                   *zip(model.metrics_variables, metrics_values)]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            terms = model.loss_terms(y, y_pred, sample_weight, training=True, extra_losses=[trunk_losses, *losses])
        after_head = _current(scope, model.non_trainable_variables, after_head)
        new_metrics = _current(scope, model.metrics_variables, metrics_values)
        return terms.rows, (y_pred, terms.task_losses, terms.present, terms.weights, after_head, new_metrics)

    rows, backward, aux = jax.vjp(rows_of, list(trainable), (representation, trunk_losses), has_aux=True)
    y_pred, task_losses, present, weights, non_trainable, metrics_values = aux
    # The total loss's gradient of every variable: the rest's own, plus the trunk's through the representation.
    gradients, into_trunk = backward(jnp.ones_like(rows))
    gradients = [g + t for g, t in zip(gradients, trunk_backward(into_trunk)[0])]
    jacobian = jax.vmap(lambda cotangent: backward(cotangent)[1][0])(jnp.eye(rows.shape[0]))
    terms = _Terms(task_losses, present, weights, rows)
    mapping = [*zip(variables, trainable), *zip(model.non_trainable_variables, non_trainable)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        cotangent = model.representation_cotangent(jacobian, terms)
    non_trainable = _current(scope, model.non_trainable_variables, non_trainable)
    _, into_trunk = backward(cotangent)
    (trunk_gradients,) = trunk_backward(into_trunk)
    trunk, other = model.representation_split()
    position = {id(v): i for i, v in enumerate(variables)}
    mapping = [*zip(variables, trainable), *zip(model.optimizer.variables, optimizer_values)]
    with keras.StatelessScope(state_mapping=mapping):
        updates = model.representation_update([trunk_gradients[position[id(v)]] for v in trunk],
                                              [gradients[position[id(v)]] for v in other])
    trainable, optimizer_values = model.optimizer.stateless_apply(optimizer_values, updates, trainable)

    logs, metrics_values = _logs(model, metrics_values, rows, x, y, y_pred, sample_weight)
    return logs, (trainable, non_trainable, optimizer_values, metrics_values)


def loss_train_step(model, keras_step, *args):
    """Keras's own step: traced, so the per-task outputs that nothing reads cost nothing."""
    del model
    return keras_step(*args)


def is_concrete(value) -> bool:
    """Whether ``value`` holds numbers (see :func:`keras_mtl.backend.is_concrete`)."""
    return not isinstance(value, jax.core.Tracer)
