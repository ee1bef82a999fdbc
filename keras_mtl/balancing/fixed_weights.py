"""Fixed loss weights: the plain multi-task sum ``Σ_i w_i L_i``."""

from __future__ import annotations

import keras

from keras_mtl.balancing.base import Balancer

__all__ = ["FixedWeights"]


@keras.saving.register_keras_serializable(package="keras_mtl")
class FixedWeights(Balancer):
    """Static weights: ``L = Σ_i w_i L_i`` with each task's ``loss_weight``.

    The default, and the formula of plain multi-task learning.

    References:
        Caruana, R. (1997). Multitask Learning. Machine Learning, 28(1),
        41–75.

    Example:
        >>> from keras import ops
        >>> b = FixedWeights()
        >>> b.setup(["a", "b"], [1.0, 2.0])
        >>> [float(w) for w in b.combine(ops.ones(2), ops.ones(2, "bool"))[0]]
        [1.0, 2.0]
    """

    adaptive = False
