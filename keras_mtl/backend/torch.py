"""PyTorch: per-task gradients from one batched ``torch.autograd.grad`` (vmap)."""

from __future__ import annotations

import keras
import torch


# Two backward passes over one graph (the total, then the batched rows) are
# what torch.compile's compiled backward refuses (donated buffers): with
# jit_compile=True this step runs eagerly, the model's forward pass included.
@torch.compiler.disable
def train_step(model, data):
    """Keras's PyTorch training step, with the per-task gradients of the shared parameters.

    Args:
        model: a compiled :class:`keras_mtl.MultiTaskModel`.
        data: one batch ``(x, y[, sample_weight])``.

    Returns:
        The logs of ``model.compute_metrics``.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    variables = model.trainable_variables
    selected = model.per_task_variables()
    y_pred = model(x, training=True)
    model.zero_grad()
    terms = model.loss_terms(y, y_pred, sample_weight, training=True)
    gradients = torch.autograd.grad(terms.total, [v.value for v in variables], retain_graph=True,
                                    allow_unused=True)
    rows = terms.rows.shape[0]
    # is_grads_batched: one vmapped backward pass, one cotangent per row.
    jacobians = torch.autograd.grad(terms.rows, [v.value for v in selected],
                                    grad_outputs=torch.eye(rows, device=terms.rows.device),
                                    is_grads_batched=True, allow_unused=True)
    jacobians = [torch.zeros((rows, *v.shape)) if j is None else j for j, v in zip(jacobians, selected)]
    gradients = [None if g is None else g.detach() for g in gradients]
    updates = model.combine_gradients(gradients, [j.detach() for j in jacobians], terms)
    with torch.no_grad():
        model.optimizer.apply(updates, variables)
    return _logs(model, x, y, y_pred, sample_weight, terms)


@torch.compiler.disable
def representation_train_step(model, data):
    """The training step with per-task gradients of the shared representation.

    The forward pass runs in two parts, the trunk up to the shared
    representation and the rest (``model.split_at_representation()``); then
    three ``autograd.grad`` calls over one graph: the total loss for everything
    after the representation, the batched rows with respect to the
    representation (through the heads only), and the rows weighted by
    ``(α, 1)`` into the trunk.

    Args:
        model: a compiled :class:`keras_mtl.MultiTaskModel`.
        data: one batch ``(x, y[, sample_weight])``.

    Returns:
        The logs of ``model.compute_metrics``.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    trunk, other = model.representation_split()
    trunk_model, head_model = model.split_at_representation()
    representation = trunk_model(x, training=True)
    y_pred = head_model(representation, training=True)
    model.zero_grad()
    terms = model.loss_terms(y, y_pred, sample_weight, training=True)
    other_gradients = torch.autograd.grad(terms.total, [v.value for v in other], retain_graph=True,
                                          allow_unused=True)
    rows = terms.rows.shape[0]
    jacobian, = torch.autograd.grad(terms.rows, representation,
                                    grad_outputs=torch.eye(rows, device=terms.rows.device),
                                    is_grads_batched=True, retain_graph=True)
    cotangent = model.representation_cotangent(jacobian.detach(), terms)
    trunk_gradients = torch.autograd.grad(terms.rows, [v.value for v in trunk],
                                          grad_outputs=cotangent.detach(), allow_unused=True)
    updates = model.representation_update([None if g is None else g.detach() for g in trunk_gradients],
                                          [None if g is None else g.detach() for g in other_gradients])
    with torch.no_grad():
        model.optimizer.apply(updates, model.trainable_variables)
    return _logs(model, x, y, y_pred, sample_weight, terms)


def loss_train_step(model, keras_step, data):
    """Keras's PyTorch training step, with a forward pass that stops at the fused logits.

    The same operations as Keras's own ``train_step`` (3.15), except that
    the forward pass is :meth:`MultiTaskModel.fused_forward`: eager PyTorch
    would otherwise build every task's output — at 1,000 tasks a split into
    1,000 tensors, about 0.85 ms of a 12 ms step — which neither the loss
    nor the metrics read. When they do (a task's own metrics, standardised
    targets, a subclass's hooks), Keras's own step runs
    (:meth:`MultiTaskModel.step_reads_logits_only`).

    Args:
        model: a compiled :class:`keras_mtl.MultiTaskModel`.
        keras_step: Keras's own ``train_step`` of ``model``.
        data: one batch ``(x, y[, sample_weight])``.

    Returns:
        The logs of ``model.compute_metrics``.
    """
    if not model.step_reads_logits_only():
        return keras_step(data)
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    y_pred = model.fused_forward(x, training=True)
    model.zero_grad()
    loss = model.compute_loss(x, y, y_pred, sample_weight, training=True)
    batch_size = keras.tree.flatten(x)[0].shape[0]
    model.loss_metric.update_state(loss, sample_weight=batch_size)
    loss = model.optimizer.scale_loss(loss)
    variables = model.trainable_variables
    loss.backward()
    with torch.no_grad():
        model.optimizer.apply([v.value.grad for v in variables], variables)
    return model.compute_metrics(x, y, y_pred, sample_weight)


def _logs(model, x, y, y_pred, sample_weight, terms):
    """The end of both steps: the loss metric and the task metrics."""
    batch_size = keras.tree.flatten(x)[0].shape[0]
    model.loss_metric.update_state(terms.total.detach(), sample_weight=batch_size)
    return model.compute_metrics(x, y, y_pred, sample_weight)


def is_concrete(value) -> bool:
    """Whether ``value`` holds numbers (see :func:`keras_mtl.backend.is_concrete`)."""
    del value  # eager tensors hold numbers, except while torch.compile traces them
    return not torch.compiler.is_compiling()
