"""Training steps, one module per Keras backend.

Keras runs its own training step for every strategy that only weights the
task losses (``MultiTaskModel.compute_loss``), except on PyTorch when the
loss and metrics read the fused logits only: there :func:`loss_train_step`
runs Keras's operations with a forward pass that stops at the fused logits,
since eager PyTorch would build every task's output for nothing. A strategy that looks at the
per-task gradients of the shared parameters (GradNorm, PCGrad) needs them
inside the step; each module here computes them the way its framework does
best, in one batched backward pass (a TensorFlow ``jacobian``, ``jax.vmap``
of a VJP, PyTorch's batched ``autograd.grad``), and leaves every decision to
the backend-independent ``MultiTaskModel.combine_gradients`` (or, for the
gradients with respect to the shared representation,
``MultiTaskModel.representation_cotangent``).

Each module also says whether a value holds numbers or stands for them in
a graph being traced (:func:`is_concrete`). This is the only place that
looks at ``keras.backend.backend()``.
"""

from __future__ import annotations

import importlib

import keras

__all__ = ["is_concrete", "loss_train_step", "module", "representation_train_step", "train_step"]

_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
# Keras's backend is fixed when Keras is imported. Importing its module here, once,
# leaves calls traced by torch.compile a plain look-up (it cannot trace an import).
_CURRENT = (importlib.import_module(f"{__name__}.{_MODULES[keras.backend.backend()]}")
            if keras.backend.backend() in _MODULES else None)


def module():
    """The module of this package for the running Keras backend.

    Raises:
        NotImplementedError: on a backend without one.

    Example:
        >>> module().__name__ == f"keras_mtl.backend.{keras.backend.backend()}"
        True
    """
    if _CURRENT is None:
        raise NotImplementedError(
            f"Gradient-based balancing has no training step for the {keras.backend.backend()!r} backend; "
            f"use one of {sorted(_MODULES)} or a loss-weighting strategy.")
    return _CURRENT


def train_step(model, *args):
    """The Keras training step of ``model`` with per-task gradients, on this backend.

    Args:
        model: a compiled :class:`keras_mtl.MultiTaskModel` whose strategy
            has a ``gradient_scope``.
        *args: what Keras passes to ``train_step`` on this backend
            (``data``; on JAX ``state, data``).

    Returns:
        What Keras expects back from ``train_step`` on this backend.
    """
    return module().train_step(model, *args)


def loss_train_step(model, keras_step, *args):
    """The training step of a strategy that only weights the task losses, on this backend.

    Keras's own step (``keras_step``), except on PyTorch when the step's
    loss and metrics read the fused logits only
    (:meth:`MultiTaskModel.step_reads_logits_only`): PyTorch runs every step
    eagerly and would build every task's output (at 1,000 tasks, 1,000
    tensors) that nothing reads; TensorFlow and JAX trace the step, and
    their compilers drop what nothing reads. Arguments after
    ``keras_step`` and the return value as for :func:`train_step`.
    """
    return module().loss_train_step(model, keras_step, *args)


def representation_train_step(model, *args):
    """The training step of an aggregator with ``wrt="representation"``, on this backend.

    The per-task gradients with respect to the shared representation (one
    batched backward pass through the heads), the strategy's coefficients
    ``α`` from their Gram matrix (:meth:`MultiTaskModel.representation_cotangent`),
    then one backward pass of ``Σ α_i L_i`` into the trunk. Arguments and
    return value as for :func:`train_step`.
    """
    return module().representation_train_step(model, *args)


def is_concrete(value) -> bool:
    """Whether ``value`` holds numbers, rather than standing for them in a graph being traced.

    Metrics read their vectors to the host in one transfer when this is true
    (at an epoch's end, after ``evaluate``); inside a traced step they slice
    the symbolic vector instead.

    Example:
        >>> is_concrete(keras.ops.ones(3))
        True
    """
    return module().is_concrete(value)
