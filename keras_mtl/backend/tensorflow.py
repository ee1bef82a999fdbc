"""TensorFlow: per-task gradients from one persistent tape (a vectorised Jacobian)."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_mtl import distribute as distribute_lib


def train_step(model, data):
    """Keras's TensorFlow training step, with the Jacobian of the task losses.

    Args:
        model: a compiled :class:`keras_mtl.MultiTaskModel`.
        data: one batch ``(x, y[, sample_weight])``.

    Returns:
        The logs of ``model.compute_metrics``.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    variables = model.trainable_variables
    selected = model.per_task_variables()
    with tf.GradientTape(persistent=True) as tape:
        y_pred = model(x, training=True)
        terms = model.loss_terms(y, y_pred, sample_weight, training=True)
        rows = terms.rows  # built under the tape, which must see them
    gradients = tape.gradient(terms.total, variables)
    # One batched backward pass for every task (vectorised over the rows).
    jacobians = tape.jacobian(rows, selected)
    del tape
    jacobians = [tf.zeros((rows.shape[0], *v.shape)) if j is None else j
                 for j, v in zip(jacobians, selected)]
    model.optimizer.apply_gradients(zip(model.combine_gradients(gradients, jacobians, terms), variables))
    return _logs(model, x, y, y_pred, sample_weight, terms)


def representation_train_step(model, data):
    """The training step with per-task gradients of the shared representation.

    The forward pass runs in two parts, the trunk up to the shared
    representation and the rest (``model.split_at_representation()``), under
    one persistent tape: the gradients of the total loss for everything after
    the representation, the Jacobian of the task rows with respect to the
    representation (through the heads only), and one backward pass of the rows
    weighted by ``(α, 1)`` into the trunk.

    Args:
        model: a compiled :class:`keras_mtl.MultiTaskModel`.
        data: one batch ``(x, y[, sample_weight])``.

    Returns:
        The logs of ``model.compute_metrics``.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    trunk, other = model.representation_split()
    trunk_model, head_model = model.split_at_representation()
    with tf.GradientTape(persistent=True) as tape:
        representation = trunk_model(x, training=True)
        y_pred = head_model(representation, training=True)
        terms = model.loss_terms(y, y_pred, sample_weight, training=True)
        rows = terms.rows  # built under the tape, which must see them
    other_gradients = tape.gradient(terms.total, other)
    cotangent = model.representation_cotangent(tape.jacobian(rows, representation), terms)
    trunk_gradients = tape.gradient(rows, trunk, output_gradients=cotangent)
    del tape
    model.optimizer.apply_gradients(zip(model.representation_update(trunk_gradients, other_gradients),
                                        model.trainable_variables))
    return _logs(model, x, y, y_pred, sample_weight, terms)


def _logs(model, x, y, y_pred, sample_weight, terms):
    """The end of both steps: the loss metric (this replica's estimate) and the task metrics."""
    batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
    model.loss_metric.update_state(distribute_lib.replica_estimate(terms.total, batch_size),
                                   sample_weight=batch_size)
    return model.compute_metrics(x, y, y_pred, sample_weight)


def loss_train_step(model, keras_step, *args):
    """Keras's own step: traced, so the per-task outputs that nothing reads cost nothing."""
    del model
    return keras_step(*args)


def is_concrete(value) -> bool:
    """Whether ``value`` holds numbers (see :func:`keras_mtl.backend.is_concrete`)."""
    del value  # a tensor is symbolic exactly while a function is being traced
    return tf.executing_eagerly()
