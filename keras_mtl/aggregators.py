"""Gradient aggregators: strategies that turn the per-task gradients into one update.

Each one sees the gradients of the shared parameters as a matrix ``G`` of
shape ``(T, P)`` (row ``i``: the gradient of task ``i``'s weighted loss,
flattened over every shared variable) and returns one update ``(P,)``;
task-specific parameters keep their usual gradients. Every one of them needs
only the Gram matrix ``K = G Gᵀ`` (``T × T``): it finds coefficients ``α``
from ``K`` by a small fixed-size computation in ``keras.ops`` (no solver
library, so it runs inside ``tf.function``/XLA, ``jax.jit`` and PyTorch
alike), and the update is ``αᵀ G``.

Because only ``K`` is needed, ``wrt="representation"`` can take it from the
per-task gradients with respect to the shared representation ``Z`` (the
trunk's output, ``(batch, d)``) instead of the shared parameters: one batched
backward pass through the heads only, then one ordinary backward pass of
``Σ α_i L_i`` through the trunk. Sener & Koltun (2018) show for MGDA that the
min-norm problem on ``∂L_i/∂Z`` bounds the one on the parameters' gradients
(their MGDA-UB); for the other methods it is the same cheaper surrogate.

Absent tasks (``present=False``) have zero rows; every aggregator leaves
them out of its problem (they get coefficient 0), and with no task present
the update is zero.

Methods that take convex combinations (MGDA, CAGrad, IMTL-G, UPGrad) update
at the size of an *average* task gradient, as in their papers; the plain sum
of ``FixedWeights`` is ``T`` times larger. Scale the learning rate when
comparing them.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_mtl import balancing as _balancing

__all__ = [
    "CAGrad",
    "DBMTL",
    "MGDA",
    "IMTLG",
    "AlignedMTL",
    "GradientAggregator",
    "NashMTL",
    "PCGrad",
    "UPGrad",
    "project_to_simplex",
]

_TINY = 1e-12


def _mask(present):
    return ops.cast(ops.convert_to_tensor(present), "float32")


def _normalised_gram(gram, mask):
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
    mask = _mask(mask) > 0
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


def _largest_eigenvalue(gram):
    return ops.maximum(ops.eigh(gram)[0][-1], _TINY)


def _minimise_quadratic(gram, project, start, iterations):
    """``argmin ½ xᵀ K x`` over a convex set, by accelerated projected gradient (FISTA).

    Step ``1/λ_max(K)``; ``project`` is the Euclidean projection onto the
    set; ``x`` may be a vector ``(T,)`` or a matrix of ``T``-vectors
    (columns) solved together. The error in the objective falls as
    ``O(1/k²)`` in the number of steps ``k`` (Beck & Teboulle, 2009), with
    restarts linearly on strongly convex problems.
    """
    step = 1.0 / _largest_eigenvalue(gram)

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


class GradientAggregator(_balancing.Balancer):
    """Base class of strategies that combine the per-task gradients into one update.

    A subclass defines :meth:`task_coefficients` ``(K, present) → α``, from
    the Gram matrix ``K = G Gᵀ`` of the task gradients; the update of the
    shared parameters is ``αᵀ G``. ``aggregate`` flattens the per-task
    gradients of every shared variable into ``G`` ``(T, P)`` (absent tasks'
    rows zeroed) and reshapes the update back per variable; with no task
    present the update is zero.

    Args:
        wrt: which per-task gradients form ``G``. ``"parameters"`` (the
            default): the gradients of every shared trainable variable.
            ``"representation"``: the gradients with respect to the shared
            representation — the trunk's output, the input of the heads (or
            of the sharing layer) — over the batch: one batched backward pass
            through the heads instead of through the whole network. The
            trunk's variables then get ``∇ Σ α_i L_i`` with ``α`` from that
            Gram matrix; the heads and the sharing layer keep their usual
            gradients. For MGDA this is MGDA-UB (Sener & Koltun, 2018).
        **kwargs: passed to ``keras.layers.Layer``.

    Example:
        >>> class Mean(GradientAggregator):
        ...     def task_coefficients(self, gram, present):
        ...         mask = ops.cast(present, "float32")
        ...         return mask / ops.maximum(ops.sum(mask), 1.0)
        >>> mean = Mean()
        >>> mean.setup(["a", "b"], [1.0, 1.0])
        >>> update = mean.aggregate([ops.array([[1.0, 2.0], [3.0, 0.0]])], ops.ones(2), ops.ones(2, "bool"))
        >>> [float(v) for v in update[0]]
        [2.0, 1.0]
    """

    gradient_scope = "shared"
    adaptive = False  # reshapes gradients, keeps the loss weights
    WRT = ("parameters", "representation")

    def __init__(self, wrt: str = "parameters", **kwargs):
        super().__init__(**kwargs)
        if wrt not in self.WRT:
            raise ValueError(f"{type(self).__name__}(wrt={wrt!r}): wrt must be one of {self.WRT}.")
        self.wrt = wrt

    def aggregate(self, task_gradients, weights, present):
        shapes = [tuple(g.shape[1:]) for g in task_gradients]
        rows = ops.concatenate(
            [ops.reshape(ops.cast(g, "float32"), (self.num_tasks, -1)) for g in task_gradients], axis=1)
        present = ops.convert_to_tensor(present)
        rows = rows * _mask(present)[:, None]
        update = self.aggregate_matrix(rows, ops.convert_to_tensor(weights, "float32"), present)
        update = ops.where(ops.any(present), update, 0.0)
        grads, start = [], 0
        for shape in shapes:
            size = 1
            for d in shape:
                size *= d
            grads.append(ops.reshape(update[start:start + size], shape))
            start += size
        return grads

    def aggregate_matrix(self, matrix, weights, present):
        """The update ``(P,)`` from the task gradients ``matrix`` ``(T, P)``.

        Args:
            matrix: one row per task, the gradient of its weighted loss
                (zero for absent tasks).
            weights: the loss weights of this step ``(T,)`` (already in the rows).
            present: ``(T,)`` bool.
        """
        coefficients = self.gram_coefficients(ops.matmul(matrix, ops.transpose(matrix)), present)
        return ops.matmul(ops.reshape(coefficients, (1, -1)), matrix)[0]

    def gram_coefficients(self, gram, present):
        """``α`` ``(T,)`` from the Gram matrix of this step's task gradients, zero where absent.

        What both ``wrt`` settings call once per training step (stateful
        methods update their state here); :meth:`task_coefficients` is the
        method's own rule.
        """
        present = ops.convert_to_tensor(present)
        mask = _mask(present)
        gram = ops.convert_to_tensor(gram, "float32") * mask[:, None] * mask[None, :]
        coefficients = self.task_coefficients(gram, present) * mask
        return ops.where(ops.any(present), coefficients, 0.0)

    def task_coefficients(self, gram, present):
        """The coefficients ``α`` ``(T,)`` of the update ``Σ α_i g_i``, from ``K = G Gᵀ``."""
        raise NotImplementedError(f"{type(self).__name__} must define task_coefficients.")

    def get_config(self):
        return {**super().get_config(), "wrt": self.wrt}


@keras.saving.register_keras_serializable(package="keras_mtl")
class PCGrad(GradientAggregator):
    """Projecting Conflicting Gradients (Yu et al., 2020).

    For each task gradient ``g_i``, visiting the other tasks ``j`` in its own
    random order, remove the conflicting component whenever
    ``g_i · g_j < 0``: ``g_i ← g_i − (g_i · g_j / ‖g_j‖²) g_j``. The shared
    parameters receive ``Σ_i g_i``; task-specific parameters their usual
    gradients. Absent tasks have zero gradients and never conflict.

    The projections need only dot products, so they run on the Gram matrix
    ``K``: each projected gradient is kept as its coefficients over the
    original ones (``g'_i = Σ_m B_im g_m``, ``g'_i · g_j = (B K)_ij``). All
    tasks project at once, one other task per step of a loop over ``T``
    steps: the graph does not grow with the number of tasks (``T`` steps of
    ``O(T²)`` work each), and it works with ``wrt="representation"``.

    Args:
        seed: seed of the random task orders.
        wrt: see :class:`GradientAggregator`.

    References:
        Yu, T., Kumar, S., Gupta, A., Levine, S., Hausman, K., Finn, C.
        (2020). Gradient Surgery for Multi-Task Learning. NeurIPS.

    Example:
        >>> projected = PCGrad.project(ops.array([[1.0, 0.0], [-1.0, 1.0]]), [0, 1])
        >>> [[round(float(v), 2) for v in row] for row in projected]
        [[0.5, 0.5], [0.0, 1.0]]
    """

    distributed_error = (
        "PCGrad cannot train under a tf.distribute strategy with several replicas: its random "
        "task order comes from a keras.random.SeedGenerator, whose state each replica would advance "
        "on its own, giving the replicas different projections. Train PCGrad on one device, or use "
        "kmtl.balancing.UPGrad(), MGDA(), CAGrad(), GradNorm(), UncertaintyWeighting(), DWA() or "
        "FixedWeights() under the strategy."
    )

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self._generator = keras.random.SeedGenerator(seed)

    @staticmethod
    def projection_matrix(gram, order):
        """PCGrad's projected gradients as coefficients of the original ones.

        Args:
            gram: ``K = G Gᵀ`` ``(T, T)``.
            order: the order in which the tasks visit the others: ``(T,)``,
                one order for every task, or ``(T, T)``, row ``i`` the order
                of task ``i`` (a task skips itself).

        Returns:
            ``B`` ``(T, T)``: the projected gradients are ``B G``.
        """
        gram = ops.convert_to_tensor(gram, "float32")
        num_tasks = gram.shape[0]
        order = ops.cast(ops.convert_to_tensor(order), "int32")
        if len(order.shape) == 1:
            order = ops.broadcast_to(order[None, :], (num_tasks, num_tasks))
        squared_norms = ops.diagonal(gram)
        own = ops.arange(num_tasks, dtype="int32")

        def step(k, coefficients):
            other = ops.take(order, k, axis=1)  # (T,): the task each row visits now
            # (B K)_{i, other_i}: the projected g_i against g_other_i (K is symmetric).
            dot = ops.sum(coefficients * ops.take(gram, other, axis=0), axis=1)
            conflict = ops.logical_and(dot < 0, ops.not_equal(other, own))
            scale = ops.where(conflict, ops.divide_no_nan(dot, ops.take(squared_norms, other)), 0.0)
            return coefficients - scale[:, None] * ops.one_hot(other, num_tasks)

        return ops.fori_loop(0, num_tasks, step, ops.eye(num_tasks))

    @classmethod
    def project(cls, flat, order):
        """PCGrad on a ``(T, P)`` matrix of flattened gradients.

        Args:
            flat: the task gradients ``(T, P)``.
            order: as for :meth:`projection_matrix`.

        Returns:
            The projected gradients ``(T, P)``.
        """
        flat = ops.convert_to_tensor(flat, "float32")  # an array times a PyTorch tensor fails
        return ops.matmul(cls.projection_matrix(ops.matmul(flat, ops.transpose(flat)), order), flat)

    def random_orders(self):
        """``(T, T)``: row ``i`` a random permutation of the tasks, independent per row."""
        keys = keras.random.uniform((self.num_tasks, self.num_tasks), seed=self._generator)
        return ops.argsort(keys, axis=-1)

    def task_coefficients(self, gram, present):
        # The update Σ_i g'_i = (1ᵀ B) G.
        return ops.sum(self.projection_matrix(gram, self.random_orders()), axis=0)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


_MGDA_NORMALIZE = ("none", "l2", "loss", "loss+")


@keras.saving.register_keras_serializable(package="keras_mtl")
class MGDA(GradientAggregator):
    """Multiple-gradient descent: the min-norm point of the task gradients' hull (Sener & Koltun, 2018).

    The update is the element of minimum norm in the convex hull of the task
    gradients::

        α* = argmin_{α ∈ Δ}  ‖Σ_i α_i g̃_i‖²,      update = Σ_i α*_i g_i

    where ``Δ`` is the simplex over the present tasks and ``g̃_i`` the
    gradients normalised as ``normalize`` says (``g̃ = g`` by default). If
    the update is zero the point is Pareto-stationary; otherwise it
    decreases every task's loss to first order.

    The quadratic problem over the ``T × T`` Gram matrix is solved by
    accelerated projected gradient descent on the simplex (FISTA, step
    ``1/λ_max(K)``, exact sort-based projection) for a fixed number of
    ``iterations``. The paper's Frank-Wolfe solver converges too slowly when
    the min-norm point lies inside the hull (after 250 steps its squared
    norm can still be more than twice the optimum); 100 accelerated steps
    (with restarts) meet the optimality conditions ``(Kα)_i ≥ αᵀKα`` to
    float32 precision (``≈ 1e-5`` relative) on the problems of
    ``tests/test_aggregators.py``, whose Gram matrices have condition numbers
    up to ``≈ 10⁵``.

    Args:
        normalize: the variants of the paper: ``"none"`` (``g̃ = g``),
            ``"l2"`` (``g / ‖g‖``), ``"loss"`` (``g / L``) or ``"loss+"``
            (``g / (L ‖g‖)``). The coefficients are then applied to the raw
            gradients, as the paper applies them to the losses.
        iterations: projected-gradient steps.

    References:
        Sener, O., Koltun, V. (2018). Multi-Task Learning as Multi-Objective
        Optimization. NeurIPS.

    Example:
        >>> mgda = MGDA()
        >>> mgda.setup(["a", "b"], [1.0, 1.0])
        >>> alpha = mgda.task_coefficients(ops.array([[1.0, -0.5], [-0.5, 4.0]]), ops.ones(2, "bool"))
        >>> [round(float(a), 3) for a in alpha]  # (4 + 0.5) / (1 + 4 + 1), (1 + 0.5) / 6
        [0.75, 0.25]
    """

    def __init__(self, normalize: str = "none", iterations: int = 100, **kwargs):
        super().__init__(**kwargs)
        if normalize not in _MGDA_NORMALIZE:
            raise ValueError(f"MGDA normalize must be one of {_MGDA_NORMALIZE}; got {normalize!r}.")
        self.normalize = normalize
        self.iterations = int(iterations)

    def build(self, input_shape):
        # This step's losses, for the "loss" normalisations only (set by observe_gradients).
        self.step_losses = None
        if self.normalize in ("loss", "loss+"):
            self.step_losses = self.add_weight(shape=(self.num_tasks,), name="step_losses", trainable=False,
                                               initializer="ones", aggregation="only_first_replica")

    def observe_gradients(self, task_gradients, task_losses, weights, present):
        if self.step_losses is not None:
            losses = ops.stop_gradient(ops.convert_to_tensor(task_losses, "float32"))
            self.step_losses.assign(ops.where(present, losses, self.step_losses.value))

    def task_coefficients(self, gram, present):
        losses = ops.ones((self.num_tasks,)) if self.step_losses is None else self.step_losses.value
        return self._normalised_min_norm(gram, present, losses)

    def _normalised_min_norm(self, gram, present, losses):
        """The min-norm coefficients of ``g̃_i = g_i / s_i``, as coefficients of the raw ``g_i``."""
        gram = ops.convert_to_tensor(gram, "float32")
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        scale = {"none": ops.ones_like(norms), "l2": norms, "loss": losses, "loss+": losses * norms}
        inverse = ops.divide_no_nan(ops.ones_like(norms), scale[self.normalize])
        beta = self.min_norm_coefficients(gram * inverse[:, None] * inverse[None, :], present, self.iterations)
        # Σ β_i g̃_i = Σ (β_i / s_i) g_i: the same update, written on the raw gradients.
        return beta * inverse

    @staticmethod
    def min_norm_coefficients(gram, present, iterations=100):
        """``argmin_{α ∈ Δ} αᵀ K α`` over the simplex of the present tasks.

        Args:
            gram: ``K = G Gᵀ`` ``(T, T)``.
            present: ``(T,)`` bool; absent tasks get 0.
            iterations: projected-gradient steps.

        Returns:
            ``α`` ``(T,)``, summing to 1 over the present tasks (all zero if none is).
        """
        mask = _mask(present)
        gram = ops.convert_to_tensor(gram, "float32") * mask[:, None] * mask[None, :]
        gram, _ = _normalised_gram(gram, mask)
        start = mask / ops.maximum(ops.sum(mask), 1.0)
        return _minimise_quadratic(gram, lambda alpha: project_to_simplex(alpha, mask), start, iterations)

    def get_config(self):
        return {**super().get_config(), "normalize": self.normalize, "iterations": self.iterations}


@keras.saving.register_keras_serializable(package="keras_mtl")
class CAGrad(GradientAggregator):
    """Conflict-Averse Gradient descent (Liu et al., 2021).

    Looks for the update ``d`` that maximises the worst task's improvement
    within a ball around the average gradient ``g_0``::

        max_d min_i g_i · d   s.t.  ‖d − g_0‖ ≤ c ‖g_0‖

    whose solution is ``d = g_0 + (c ‖g_0‖ / ‖g_w‖) g_w`` with
    ``g_w = Σ_i w_i g_i`` and ``w`` the minimiser over the simplex of
    ``F(w) = g_wᵀ g_0 + c ‖g_0‖ ‖g_w‖``. ``c = 0`` is plain averaging;
    larger ``c`` moves towards MGDA. With ``rescale`` (the authors' code's
    default) the update is divided by ``1 + c²``.

    ``F`` is minimised over the simplex of the present tasks by projected
    gradient descent (exact sort-based projection; the step
    ``‖g_w‖ / (c ‖g_0‖ λ_max(K))`` follows the local curvature of ``F``) for
    a fixed number of ``iterations``.

    Args:
        c: the radius ``c`` of the ball, relative to ``‖g_0‖``.
        rescale: divide the update by ``1 + c²``.
        iterations: projected-gradient steps.

    References:
        Liu, B., Liu, X., Jin, X., Stone, P., Liu, Q. (2021).
        Conflict-Averse Gradient Descent for Multi-task Learning. NeurIPS.

    Example:
        >>> cagrad = CAGrad(c=0.0, rescale=False)
        >>> cagrad.setup(["a", "b"], [1.0, 1.0])
        >>> update = cagrad.aggregate_matrix(ops.array([[2.0, 0.0], [0.0, 4.0]]), ops.ones(2), ops.ones(2, "bool"))
        >>> [float(v) for v in update]  # c = 0: the average gradient
        [1.0, 2.0]
    """

    def __init__(self, c: float = 0.5, rescale: bool = True, iterations: int = 200, **kwargs):
        super().__init__(**kwargs)
        if c < 0:
            raise ValueError(f"CAGrad c must be >= 0; got {c}.")
        self.c = float(c)
        self.rescale = bool(rescale)
        self.iterations = int(iterations)

    def conflict_averse_weights(self, gram, present):
        """``w`` ``(T,)``: the minimiser of ``F`` over the simplex of the present tasks."""
        mask = _mask(present)
        gram, _ = _normalised_gram(ops.convert_to_tensor(gram, "float32") * mask[:, None] * mask[None, :], mask)
        mean = mask / ops.maximum(ops.sum(mask), 1.0)
        linear = ops.matmul(gram, mean)  # ∂(g_wᵀ g_0)/∂w
        radius = self.c * ops.sqrt(ops.maximum(ops.sum(mean * linear), 0.0))
        largest = _largest_eigenvalue(gram)

        def descend(_, w):
            kw = ops.matmul(gram, w)
            norm = ops.sqrt(ops.maximum(ops.sum(w * kw), 0.0) + _TINY)
            gradient = linear + radius * kw / norm
            step = norm / (radius * largest + _TINY)
            return project_to_simplex(w - step * gradient, mask)

        return ops.fori_loop(0, self.iterations, descend, mean)

    def task_coefficients(self, gram, present):
        mask = _mask(present)
        mean = mask / ops.maximum(ops.sum(mask), 1.0)
        if self.c == 0:
            return mean  # the average gradient: no inner problem
        w = self.conflict_averse_weights(gram, present)
        gram = ops.convert_to_tensor(gram, "float32")
        g0_norm = ops.sqrt(ops.maximum(ops.sum(mean * ops.matmul(gram, mean)), 0.0))
        gw_norm = ops.sqrt(ops.maximum(ops.sum(w * ops.matmul(gram, w)), 0.0))
        coefficients = mean + ops.divide_no_nan(self.c * g0_norm, gw_norm) * w
        return coefficients / (1.0 + self.c ** 2) if self.rescale else coefficients

    def get_config(self):
        return {**super().get_config(), "c": self.c, "rescale": self.rescale, "iterations": self.iterations}


@keras.saving.register_keras_serializable(package="keras_mtl")
class IMTLG(GradientAggregator):
    """IMTL-G, the gradient half of Impartial Multi-Task Learning (Liu et al., 2021).

    The update ``d = Σ_i α_i g_i`` with ``Σ_i α_i = 1`` has the same
    projection on every task's unit gradient ``u_i = g_i / ‖g_i‖``::

        u_i · d = u_j · d  for all tasks i, j

    In the paper's closed form, with ``D`` the rows ``g_1 − g_i`` and ``U``
    the rows ``u_1 − u_i`` (``i = 2..T``),
    ``α_{2..T} = g_1 Uᵀ (D Uᵀ)⁻¹`` and ``α_1 = 1 − Σ α_{2..T}``. Here the
    same conditions are one ``(T + 1) × (T + 1)`` linear system in ``α`` and
    the common projection ``s`` — ``u_i · Gᵀα − s = 0`` for each task with
    a non-zero gradient, ``α_i = 0`` for the others, ``Σ α_i = 1`` — so
    absent tasks need no change of shape. A ridge of ``1e-6`` (relative to
    the mean squared gradient norm) on the ``α`` block keeps the system
    solvable for parallel gradients, where ``α`` is not unique.

    References:
        Liu, L., Li, Y., Kuang, Z., Xue, J.-H., Chen, Y., Yang, W., Liao, Q.,
        Zhang, W. (2021). Towards Impartial Multi-task Learning. ICLR.

    Example:
        >>> imtl = IMTLG()
        >>> imtl.setup(["a", "b"], [1.0, 1.0])
        >>> alpha = imtl.task_coefficients(ops.array([[1.0, 0.0], [0.0, 4.0]]), ops.ones(2, "bool"))
        >>> [round(float(a), 3) for a in alpha]  # d = (2/3, 2/3): equal projections on both axes
        [0.667, 0.333]
    """

    ridge = 1e-6

    def task_coefficients(self, gram, present):
        num_tasks = self.num_tasks
        gram = ops.convert_to_tensor(gram, "float32")
        mask = _mask(present)
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        active = mask * ops.cast(norms > 0, "float32")
        gram, scale = _normalised_gram(gram * active[:, None] * active[None, :], active)
        norms = norms / ops.sqrt(scale)
        eye = ops.eye(num_tasks)
        projections = ops.divide_no_nan(gram, norms[:, None]) + self.ridge * eye  # u_i · g_j
        block = ops.where(active[:, None] > 0, projections, eye)
        anything = ops.max(active)
        top = ops.concatenate([block, -active[:, None]], axis=1)
        bottom = ops.concatenate([active, ops.reshape(1.0 - anything, (1,))])[None, :]
        system = ops.concatenate([top, bottom], axis=0)
        target = ops.concatenate([ops.zeros((num_tasks,)), ops.reshape(anything, (1,))])[:, None]
        alpha = ops.solve(system, target)[:num_tasks, 0]
        uniform = active / ops.maximum(ops.sum(active), 1.0)
        return ops.where(ops.all(ops.isfinite(alpha)), alpha * active, uniform)


@keras.saving.register_keras_serializable(package="keras_mtl")
class AlignedMTL(GradientAggregator):
    """Aligned-MTL: align the principal components of the task gradients (Senushkin et al., 2023).

    With the eigen-decomposition of the Gram matrix ``G Gᵀ = V Λ Vᵀ`` (its
    non-zero eigenvalues ``λ_1 ≥ … ≥ λ_r``), the aligned gradients are::

        Ĝ = B G,      B = σ_r V Λ^{-1/2} Vᵀ,    σ_r = √λ_r

    so that ``Ĝ Ĝᵀ = σ_r² I`` on the span of the gradients: the aligned
    gradients are orthogonal and of equal norm (condition number 1), scaled
    by the smallest singular value of ``G`` as the paper does by default. The
    update is their sum, ``Σ_i ĝ_i = (B 1)ᵀ G``. Eigenvalues at most
    ``λ_1 · T · ε_float32`` count as zero (the paper's rank tolerance), so
    absent tasks (zero rows) and linearly dependent gradients drop out.

    References:
        Senushkin, D., Patakin, N., Kuznetsov, A., Konushin, A. (2023).
        Independent Component Alignment for Multi-Task Learning. CVPR.

    Example:
        >>> aligned = AlignedMTL()
        >>> aligned.setup(["a", "b"], [1.0, 1.0])
        >>> alpha = aligned.task_coefficients(ops.array([[1.0, 0.0], [0.0, 4.0]]), ops.ones(2, "bool"))
        >>> [round(float(a), 3) for a in alpha]  # both aligned gradients get norm σ_r = 1
        [1.0, 0.5]
    """

    def alignment(self, gram, present):
        """``B`` ``(T, T)``: the aligned gradients are ``B G``."""
        mask = _mask(present)
        gram, scale = _normalised_gram(ops.convert_to_tensor(gram, "float32") * mask[:, None] * mask[None, :], mask)
        eigenvalues, vectors = ops.eigh(gram)
        tolerance = ops.max(eigenvalues) * self.num_tasks * 1.1920929e-07
        kept = eigenvalues > ops.maximum(tolerance, 0.0)
        smallest = ops.min(ops.where(kept, eigenvalues, ops.max(eigenvalues)))
        inverse_root = ops.where(kept, ops.rsqrt(ops.where(kept, eigenvalues, 1.0)), 0.0)
        return ops.sqrt(ops.maximum(smallest, 0.0)) * ops.matmul(vectors * inverse_root[None, :],
                                                                   ops.transpose(vectors))

    def task_coefficients(self, gram, present):
        return ops.sum(self.alignment(gram, present), axis=0)


@keras.saving.register_keras_serializable(package="keras_mtl")
class NashMTL(GradientAggregator):
    """Nash-MTL: the Nash bargaining solution among the tasks (Navon et al., 2022).

    The update ``d = Σ_i α_i g_i`` with ``α > 0`` solving::

        G Gᵀ α = 1 / α      (elementwise: g_i · d = 1 / α_i)

    so each task's share of the improvement is inversely proportional to its
    weight; the update is invariant to the scale of any one task's loss.

    Instead of the paper's sequence of convex programs (cvxpy), the equation
    is solved as the minimum of the strictly convex, self-concordant
    function ``f(β) = ½ βᵀ C β − Σ_i log β_i`` on the Gram matrix with unit
    diagonal ``C = N⁻¹ K N⁻¹`` (``N = diag ‖g_i‖``, ``α = N⁻¹ β``; this makes
    the problem scale-free per task), by damped Newton steps
    ``β ← β + Δ / (1 + λ)`` (``Δ = −H⁻¹∇f``, Newton decrement
    ``λ = √(Δᵀ H Δ)``), which stay positive and converge from any start.
    Starting from ``β = 1`` (the solution for orthogonal gradients), 20
    steps reach ``max_i |(Kα)_i α_i − 1| < 1e-12`` in float64 on every
    problem of ``tests/test_aggregators.py`` (float32 here: ``≈ 1e-5``).
    A ridge of ``1e-6`` on ``C`` keeps ``α`` finite when two gradients are
    exactly opposed, where the equation has no solution. The authors' code
    also clips the update's norm (``max_norm=1``) and may skip steps; neither
    is done here.

    Args:
        iterations: damped Newton steps.

    References:
        Navon, A., Shamsian, A., Achituve, I., Maron, H., Kawaguchi, K.,
        Chechik, G., Fetaya, E. (2022). Multi-Task Learning as a Bargaining
        Game. ICML.

    Example:
        >>> nash = NashMTL()
        >>> nash.setup(["a", "b"], [1.0, 1.0])
        >>> alpha = nash.task_coefficients(ops.array([[1.0, 0.0], [0.0, 4.0]]), ops.ones(2, "bool"))
        >>> [round(float(a), 3) for a in alpha]  # orthogonal: α_i = 1 / ‖g_i‖
        [1.0, 0.5]
    """

    ridge = 1e-6

    def __init__(self, iterations: int = 25, **kwargs):
        super().__init__(**kwargs)
        self.iterations = int(iterations)

    def task_coefficients(self, gram, present):
        gram = ops.convert_to_tensor(gram, "float32")
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        active = _mask(present) * ops.cast(norms > 0, "float32")
        inverse = ops.divide_no_nan(active, norms)
        eye = ops.eye(self.num_tasks)
        # Inactive tasks get an identity block: decoupled, then dropped.
        unit = gram * inverse[:, None] * inverse[None, :] + ops.diag(1.0 - active) + self.ridge * eye

        def newton(_, beta):
            gradient = ops.matmul(unit, beta) - 1.0 / beta
            hessian = unit + ops.diag(1.0 / (beta * beta))
            delta = -ops.solve(hessian, gradient[:, None])[:, 0]
            decrement = ops.sqrt(ops.maximum(-ops.sum(gradient * delta), 0.0))
            return beta + delta / (1.0 + decrement)

        beta = ops.fori_loop(0, self.iterations, newton, ops.ones((self.num_tasks,)))
        return beta * inverse

    def get_config(self):
        return {**super().get_config(), "iterations": self.iterations}


@keras.saving.register_keras_serializable(package="keras_mtl")
class UPGrad(GradientAggregator):
    """UPGrad: project every task gradient onto the dual cone of all of them, then average (Quinton & Rey, 2024).

    The dual cone of the rows of ``G`` holds the updates that no task
    opposes, ``{x : G x ≥ 0}``. Each task gradient ``g_i`` is projected onto
    it; the projection is ``Gᵀ v_i`` with::

        v_i = argmin_{v ≥ e_i}  vᵀ K v,      K = G Gᵀ

    and the update is the mean of the projections,
    ``(1/T) Σ_i Gᵀ v_i``: every task's loss decreases to first order
    (``g_j · update ≥ 0`` for all ``j``), and a task whose gradient agrees
    with all others passes unchanged.

    The ``T`` small quadratic programs are solved together by accelerated
    projected gradient (FISTA, step ``1/λ_max``, projection ``max(v, e_i)``)
    for a fixed number of ``iterations`` on the normalised Gram matrix plus
    ``reg · I`` (as torchjd regularises it, ``reg = 1e-4``); absent tasks
    are held at 0 and get no projection of their own. On the problems of
    ``tests/test_aggregators.py`` 200 steps agree with an exact active-set
    solution to ``≈ 1e-5`` of the largest gradient norm (100 steps: ``≈ 4e-4``).

    Args:
        iterations: accelerated projected-gradient steps.
        reg: ridge on the normalised Gram matrix.

    References:
        Quinton, P., Rey, V. (2024). Jacobian Descent for Multi-Objective
        Optimization. arXiv:2406.16232.

    Example:
        >>> upgrad = UPGrad()
        >>> upgrad.setup(["a", "b"], [1.0, 1.0])
        >>> g = ops.array([[1.0, 0.0], [-1.0, 1.0]])
        >>> update = upgrad.aggregate_matrix(g, ops.ones(2), ops.ones(2, "bool"))
        >>> [round(float(v), 2) for v in update]  # mean of [0.5, 0.5] and [0, 1]
        [0.25, 0.75]
    """

    def __init__(self, iterations: int = 200, reg: float = 1e-4, **kwargs):
        super().__init__(**kwargs)
        self.iterations = int(iterations)
        self.reg = float(reg)

    def projection_weights(self, gram, present):
        """``V`` ``(T, T)``: column ``i`` is ``v_i`` (zero for an absent task)."""
        mask = _mask(present)
        both = mask[:, None] * mask[None, :]
        gram, _ = _normalised_gram(ops.convert_to_tensor(gram, "float32") * both, mask)
        gram = gram + self.reg * ops.eye(self.num_tasks)
        lower = ops.eye(self.num_tasks) * both
        return _minimise_quadratic(gram, lambda v: ops.maximum(v, lower) * both, lower, self.iterations)

    def task_coefficients(self, gram, present):
        mask = _mask(present)
        return ops.sum(self.projection_weights(gram, present), axis=1) / ops.maximum(ops.sum(mask), 1.0)

    def get_config(self):
        return {**super().get_config(), "iterations": self.iterations, "reg": self.reg}


@keras.saving.register_keras_serializable(package="keras_mtl")
class DBMTL(GradientAggregator):
    """Dual-Balancing Multi-Task Learning, DB-MTL (Lin et al., 2023).

    Balances the loss scales and the gradient magnitudes:

    * loss scale: each task trains on ``log(L_i + ε)``, i.e. the loss
      weights are ``w_i / (L_i + ε)`` held constant (the gradient is
      ``∇ log L_i``; ``loss`` in the logs is ``Σ_i w_i log(L_i + ε)``);
    * gradient magnitude: with ``n_i`` an exponential moving average of
      ``‖g_i‖`` (``n_i ← β_t n_i + (1 − β_t) ‖g_i‖``,
      ``β_t = β / t^{β_σ}``, ``t`` the task's step count), the shared
      parameters get::

          update = max_j n_j · Σ_i g_i / n_i

      every task's gradient rescaled to the largest (averaged) norm.

    The paper averages the gradients themselves (a ``T × P`` state) and
    normalises the average; this keeps the ``T`` averaged norms instead and
    normalises the current gradients, so the state does not depend on the
    number of shared parameters. An absent task's average and step count do
    not move. Defaults ``β = 0.9``, ``β_σ = 0`` are those of the authors'
    code (LibMTL).

    Args:
        beta: ``β``.
        beta_sigma: ``β_σ``, the decay of ``β_t`` with the step count.
        epsilon: ``ε`` in ``log(L + ε)``.

    References:
        Lin, B., Jiang, W., Ye, F., Zhang, Y., Chen, P., Chen, Y.-C., Liu, S.,
        Kwok, J. T. (2023). Dual-Balancing for Multi-Task Learning.
        arXiv:2308.12029.

    Example:
        >>> db = DBMTL(beta=0.0)  # no averaging: the current norms
        >>> db.setup(["a", "b"], [1.0, 1.0])
        >>> update = db.aggregate_matrix(ops.array([[3.0, 0.0], [0.0, 1.0]]), ops.ones(2), ops.ones(2, "bool"))
        >>> [float(v) for v in update]
        [3.0, 3.0]
    """

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.0, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        new = lambda name: self.add_weight(  # noqa: E731
            shape=(self.num_tasks,), name=name, trainable=False, initializer="zeros",
            aggregation="only_first_replica")
        self.norm_average = new("norm_average")
        self.steps = new("steps")

    def combine(self, task_losses, present, training=True):
        return _balancing.log_loss_weights(task_losses, present, self.base_weights, self.epsilon)

    def task_coefficients(self, gram, present):
        mask = _mask(present)
        norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
        steps = self.steps.value + mask
        beta = self.beta / ops.power(ops.maximum(steps, 1.0), self.beta_sigma)
        average = ops.where(present, beta * self.norm_average.value + (1.0 - beta) * norms,
                            self.norm_average.value)
        self.norm_average.assign(average)
        self.steps.assign(steps)
        return ops.divide_no_nan(ops.max(average * mask), average) * mask

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "beta_sigma": self.beta_sigma,
                "epsilon": self.epsilon}
