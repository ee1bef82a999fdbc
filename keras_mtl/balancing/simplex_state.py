"""Task weights kept on the simplex across steps in which some tasks are absent.

The stochastic multi-objective methods (:class:`~keras_mtl.balancing.MoCo`,
:class:`~keras_mtl.balancing.SDMGrad`, :class:`~keras_mtl.balancing.MoDo`)
keep weights on the simplex from step to step. When a task is absent its weight must not move, and the step must
be the method's step on the present tasks alone: it works on the present
tasks' *shares* (their weights divided by their total, a point of their own
simplex), and the result is scaled back to that total, so the weights keep
summing to 1.
"""

from __future__ import annotations

from keras import ops

from keras_mtl.balancing.solvers import TINY, presence_mask, present_mean

__all__ = ["present_shares", "with_absent_kept"]


def _present_total(weights, mask):
    total = ops.sum(weights * mask)
    return total, total > TINY


def present_shares(weights, present):
    """The present tasks' weights divided by their total (uniform over them if it is 0); 0 where absent.

    Example:
        >>> [round(float(v), 4) for v in present_shares(ops.array([0.3, 0.4, 0.1]), ops.array([True, False, True]))]
        [0.75, 0.0, 0.25]
    """
    weights = ops.convert_to_tensor(weights, "float32")
    mask = presence_mask(present)
    total, positive = _present_total(weights, mask)
    uniform = present_mean(mask)
    return ops.where(positive, weights * mask / ops.where(positive, total, 1.0), uniform)


def with_absent_kept(shares, previous, present):
    """The new weights: the present tasks' ``shares`` times their previous total, the absent ones' as before.

    If the present tasks' previous total was 0 it is taken as 1.

    Example:
        >>> present = ops.array([True, False, True])
        >>> new = with_absent_kept(ops.array([0.5, 0.0, 0.5]), ops.array([0.3, 0.4, 0.3]), present)
        >>> [round(float(v), 4) for v in new]
        [0.3, 0.4, 0.3]
    """
    previous = ops.convert_to_tensor(previous, "float32")
    mask = presence_mask(present)
    total, positive = _present_total(previous, mask)
    return ops.where(mask > 0, ops.where(positive, total, 1.0) * ops.convert_to_tensor(shares, "float32"), previous)
