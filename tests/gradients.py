"""Gradients in tests, on whichever Keras backend runs them.

The package keeps framework code in ``keras_mtl/backend``; tests that check a
gradient (zero at missing labels, finite at extreme logits) use these
helpers instead of ``tf.GradientTape``.
"""

import contextlib

import keras
import numpy as np

to_numpy = keras.ops.convert_to_numpy


def value_and_gradients(fn, variables):
    """``fn()`` → ``(scalar, aux)``; returns ``(scalar, aux, gradients)`` as NumPy.

    Gradients are taken with respect to ``variables`` (Keras variables);
    a variable that ``fn`` does not use gets a zero gradient.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def stateless(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn()

        (value, aux), grads = jax.value_and_grad(stateless, has_aux=True)([v.value for v in variables])
    elif backend == "torch":
        import torch

        value, aux = fn()
        if value.requires_grad:
            grads = torch.autograd.grad(value, [v.value for v in variables], allow_unused=True)
        else:  # nothing in fn depends on the variables
            grads = [None] * len(variables)
    else:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value, aux = fn()
        grads = tape.gradient(value, variables)
    grads = [np.zeros(v.shape) if g is None else to_numpy(g) for g, v in zip(grads, variables)]
    return to_numpy(value), keras.tree.map_structure(to_numpy, aux), grads


def value_and_gradient(fn, x, dtype="float32"):
    """``fn(tensor)`` → scalar, for a plain array ``x``; returns ``(value, d value / dx)`` as NumPy.

    ``x`` is held in a ``keras.Variable`` of ``dtype`` so that
    :func:`value_and_gradients` can differentiate with respect to it.
    """
    variable = keras.Variable(np.asarray(x), dtype=dtype)
    value, _, (gradient,) = value_and_gradients(lambda: (fn(variable.value), None), [variable])
    return value, gradient


def jacobian(fn, variables):
    """``fn()`` → vector ``(n,)``; for each variable its Jacobian ``(n, *shape)`` as NumPy.

    One backward pass per entry, each through a fresh call of ``fn``: an
    independent reference for batched (vectorised) Jacobians.
    """
    size = to_numpy(fn()).shape[0]
    rows = [value_and_gradients(lambda i=i: (fn()[i], None), variables)[2] for i in range(size)]
    return [np.stack([row[k] for row in rows]) for k in range(len(variables))]


def float64():
    """A context in which float64 tensors are float64 (JAX truncates them to float32 by default)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()
