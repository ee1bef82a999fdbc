"""In-graph solvers of the gradient aggregators: fixed-size computations in ``keras.ops``.

No solver library: every function here is a static-shape computation (a
sort, an eigen-decomposition, a fixed number of loop steps), so it runs
inside ``tf.function``/XLA, ``jax.jit`` and PyTorch alike.
"""

from __future__ import annotations

from keras import ops

__all__ = ["TINY", "dual_cone_weights", "largest_eigenvalue", "minimise_quadratic", "normalised_gram", "presence_mask",
           "project_to_simplex"]


TINY = 1e-12  # keeps divisions and step sizes finite


def presence_mask(present):
    """``present`` (bool or 0/1, ``(T,)``) as a float32 0/1 mask."""
    return ops.cast(ops.convert_to_tensor(present), "float32")


def present_mean(mask):
    """The uniform weights ``1/n`` over the ``n`` present tasks of ``mask``, 0 elsewhere (all 0 if none)."""
    return mask / ops.maximum(ops.sum(mask), 1.0)


def normalised_gram(gram, mask):
    """``K / s`` with ``s`` the mean squared norm of the present rows (1 if there is none).

    The coefficients of every method here are invariant to this scale (or
    scale back simply); dividing keeps the iterations' numbers near 1.
    """
    count = ops.maximum(ops.sum(mask), 1.0)
    scale = ops.sum(ops.diagonal(gram) * mask) / count
    scale = ops.where(scale > 0, scale, 1.0)
    return gram / scale, scale


def project_to_simplex(values, mask):
    """Euclidean projection of ``values`` onto ``{x ≥ 0, Σ x = 1, x_i = 0 where not mask}``.

    The sort-based algorithm (Held et al. 1974; Duchi et al. 2008): sort the
    allowed entries, find the threshold ``τ``, return ``max(values − τ, 0)``.
    Static shapes throughout, so it runs under XLA; with no allowed entry it
    returns zeros.

    Args:
        values: ``(T,)``.
        mask: ``(T,)`` bool or 0/1, the entries allowed to be non-zero.

    Returns:
        ``(T,)``.

    Example:
        >>> x = project_to_simplex(ops.array([0.5, 1.0, 3.0]), ops.array([True, True, False]))
        >>> [round(float(v), 4) for v in x]
        [0.25, 0.75, 0.0]
    """
    values = ops.convert_to_tensor(values, "float32")
    mask = presence_mask(mask) > 0
    # Entries not allowed sort after every allowed one.
    fill = ops.min(values) - 1.0
    ordered = ops.flip(ops.sort(ops.where(mask, values, fill)), axis=0)
    count = ops.sum(ops.cast(mask, "float32"))
    k = ops.arange(1, values.shape[0] + 1, dtype="float32")
    thresholds = (ops.cumsum(ordered) - 1.0) / k
    valid = ops.logical_and(ordered - thresholds > 0, k <= count)
    # The condition holds for k = 1..ρ: τ is the threshold at k = ρ.
    rho = ops.sum(ops.cast(valid, "float32"))
    tau = ops.sum(ops.where(ops.equal(k, rho), thresholds, 0.0))
    return ops.where(mask, ops.maximum(values - tau, 0.0), 0.0)


def largest_eigenvalue(gram):
    """``λ_max`` of the symmetric matrix ``gram``, at least :data:`TINY`."""
    return ops.maximum(ops.eigh(gram)[0][-1], TINY)


def minimise_quadratic(gram, project, start, iterations):
    """``argmin ½ xᵀ K x`` over a convex set, by accelerated projected gradient (FISTA).

    Step ``1/λ_max(K)``; ``project`` is the Euclidean projection onto the
    set; ``x`` may be a vector ``(T,)`` or a matrix of ``T``-vectors
    (columns) solved together. The error in the objective falls as
    ``O(1/k²)`` in the number of steps ``k`` (Beck & Teboulle, 2009), with
    restarts linearly on strongly convex problems.

    Args:
        gram: ``K`` ``(T, T)``, symmetric positive semi-definite.
        project: the Euclidean projection onto the set.
        start: a feasible starting point.
        iterations: the number of steps.

    Returns:
        The minimiser found, shaped like ``start``.

    Example:
        >>> simplex = lambda x: project_to_simplex(x, ops.array([True, True]))
        >>> x = minimise_quadratic(ops.array([[1.0, 0.0], [0.0, 4.0]]), simplex, ops.array([0.5, 0.5]), 100)
        >>> [round(float(v), 3) for v in x]  # α_i ∝ 1 / K_ii on the simplex
        [0.8, 0.2]
    """
    step = 1.0 / largest_eigenvalue(gram)

    def descend(_, state):
        x, previous, t = state
        t_next = (1.0 + ops.sqrt(1.0 + 4.0 * t * t)) / 2.0
        y = x + ((t - 1.0) / t_next) * (x - previous)
        x_next = project(y - step * ops.matmul(gram, y))
        # Adaptive restart (O'Donoghue & Candès, 2015): drop the momentum
        # when it points uphill; this keeps the convergence linear on
        # well-posed problems.
        restart = ops.sum((y - x_next) * (x_next - x)) > 0
        return x_next, ops.where(restart, x_next, x), ops.where(restart, 1.0, t_next)

    x, _, _ = ops.fori_loop(0, iterations, descend, (start, start, ops.convert_to_tensor(1.0)))
    return x


def dual_cone_weights(gram, lower, present, reg, iterations):
    """The weights of projections onto the dual cone ``{x : G x ≥ 0}`` of the present tasks' gradients.

    The projection of ``Gᵀ u`` onto the dual cone is ``Gᵀ v`` with
    ``v = argmin_{v ≥ u} vᵀ K v`` (Quinton & Rey, 2024, Proposition 1):
    solved by :func:`minimise_quadratic` on the normalised Gram matrix plus
    ``reg · I``, from the feasible start ``v = u``. Absent tasks are held at
    0 (their rows and columns of ``K`` are ignored).

    Args:
        gram: ``K = G Gᵀ`` ``(T, T)``.
        lower: ``u``: ``(T,)`` for one projection, or ``(T, T)`` for one per column.
        present: ``(T,)`` bool.
        reg: the ridge on the normalised Gram matrix.
        iterations: accelerated projected-gradient steps.

    Returns:
        ``v``, shaped like ``lower``.

    Example:
        >>> k = ops.array([[1.0, -0.5], [-0.5, 1.0]])  # two gradients at 120°
        >>> v = dual_cone_weights(k, ops.array([1.0, 0.0]), ops.array([True, True]), 0.0, 100)
        >>> [round(float(x), 3) for x in v]  # g_1 + ½ g_2 is orthogonal to g_2
        [1.0, 0.5]
    """
    mask = presence_mask(present)
    both = mask[:, None] * mask[None, :]
    gram, _ = normalised_gram(ops.convert_to_tensor(gram, "float32") * both, mask)
    gram = gram + reg * ops.eye(gram.shape[0])
    lower = ops.convert_to_tensor(lower, "float32")
    keep = mask if len(lower.shape) == 1 else both
    lower = lower * keep
    return minimise_quadratic(gram, lambda v: ops.maximum(v, lower) * keep, lower, iterations)
