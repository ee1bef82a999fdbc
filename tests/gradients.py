"""Gradients in tests, on whichever Keras backend runs them.

The package keeps framework code in ``keras_mtl/backend``; tests that check a
gradient (zero at missing labels, finite at extreme logits) use this one
helper instead of ``tf.GradientTape``.
"""

import keras
import numpy as np


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
        grads = torch.autograd.grad(value, [v.value for v in variables], allow_unused=True)
    else:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value, aux = fn()
        grads = tape.gradient(value, variables)
    to_numpy = keras.ops.convert_to_numpy
    grads = [np.zeros(v.shape) if g is None else to_numpy(g) for g, v in zip(grads, variables)]
    return to_numpy(value), keras.tree.map_structure(to_numpy, aux), grads
