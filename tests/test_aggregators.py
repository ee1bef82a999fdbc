"""Gradient aggregators and the newer loss-based strategies, checked against NumPy.

Each method's defining equation is checked on constructed gradient matrices
(conflicting, aligned, nearly parallel, one task absent, all absent) against
an independent NumPy computation written out below: brute-force grids over
the simplex, the papers' closed forms, an exact active-set solution of
UPGrad's small quadratic programs. Then every strategy trains a tiny
``MultiTaskModel``, saves and reloads its state, and leaves an absent task's
state alone.
"""

import doctest
import importlib
import itertools
import re

import keras
import numpy as np
import pytest
from keras import ops
from test_balancing import build, flat, formula_gradients, regression, trunk

import keras_mtl as kmtl
from keras_mtl import balancing as B

pytestmark = pytest.mark.portable

NEW = [B.MGDA, B.CAGrad, B.IMTLG, B.AlignedMTL, B.NashMTL, B.UPGrad, B.DBMTL, B.FAMO, B.ScaleInvariant]
AGGREGATORS = [B.PCGrad, B.MGDA, B.CAGrad, B.IMTLG, B.AlignedMTL, B.NashMTL, B.UPGrad, B.DBMTL]


# -- constructed gradient matrices ----------------------------------------------------------

def _cases():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 6))
    conflicting = base.copy()
    conflicting[1] = -base[0] + 0.3 * base[1]
    conflicting[2] *= 3.0
    shared = rng.normal(size=6)
    aligned = shared + 0.2 * rng.normal(size=(3, 6))
    aligned *= np.array([[1.0], [4.0], [0.5]])
    parallel = base.copy()
    parallel[1] = 2.0 * base[0] + 0.01 * rng.normal(size=6)
    absent = rng.normal(size=(3, 6))
    absent[1] = 0.0
    all_true = np.ones(3, bool)
    return {"conflicting": (conflicting, all_true), "aligned": (aligned, all_true),
            "nearly_parallel": (parallel, all_true), "one_absent": (absent, np.array([True, False, True]))}


CASES = _cases()


def set_up(cls, num_tasks=3, **kwargs):
    strategy = cls(**kwargs)
    strategy.setup([f"t{i}" for i in range(num_tasks)], [1.0] * num_tasks)
    return strategy


def compiled(fn, stateful=False):
    """``fn`` compiled as a training step compiles it: ``tf.function`` on TensorFlow, ``jax.jit`` on JAX.

    The fixed-iteration solvers run as loops in the graph; eagerly, TensorFlow
    would dispatch every iteration's operations one by one. A strategy that
    assigns its variables runs eagerly on JAX (outside a stateless scope).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if backend == "jax" and not stateful:
        import jax

        return jax.jit(fn)
    return fn


def more_cases(seed):
    """Two conflicting tasks; ten tasks in 30 dimensions (two of them absent, one conflicting pair)."""
    rng = np.random.default_rng(seed)
    two = rng.normal(size=(2, 6))
    two[1] = -0.7 * two[0] + 0.5 * two[1]
    ten = rng.normal(size=(10, 30)) + 0.3 * rng.normal(size=30)
    ten[4] = -ten[3] + 0.4 * ten[4]
    ten[[2, 7]] = 0.0
    present = np.ones(10, bool)
    present[[2, 7]] = False
    return {"two": (two, np.ones(2, bool)), "ten": (ten, present)}


def numpy_projection(values):
    """Euclidean projection onto the simplex by bisection on the threshold τ (Σ max(v − τ, 0) = 1)."""
    low, high = values.min() - 1.0, values.max()
    for _ in range(200):
        tau = (low + high) / 2
        low, high = (tau, high) if np.maximum(values - tau, 0).sum() > 1 else (low, tau)
    return np.maximum(values - (low + high) / 2, 0)


def aggregate(strategy, grads, present):
    """``strategy.aggregate`` on ``grads`` (T, 6) split into two variables, (2, 2) and (2,); flat result."""
    grads = np.asarray(grads, "float32")
    parts = [ops.convert_to_tensor(grads[:, :4].reshape(-1, 2, 2)), ops.convert_to_tensor(grads[:, 4:])]
    run = compiled(strategy.aggregate, stateful=isinstance(strategy, (B.DBMTL, B.PCGrad)))
    update = run(parts, ops.ones(len(grads)), ops.convert_to_tensor(present))
    assert [tuple(u.shape) for u in update] == [(2, 2), (2,)]
    return np.concatenate([ops.convert_to_numpy(u).ravel() for u in update]).astype(np.float64)


def coefficients(strategy, grads, present):
    grads = np.asarray(grads, "float32")
    gram = ops.convert_to_tensor(grads @ grads.T)
    found = compiled(strategy.task_coefficients)(gram, ops.convert_to_tensor(present))
    return ops.convert_to_numpy(found).astype(np.float64)


def simplex_grid(num_tasks, present, resolution):
    """Every point of the simplex with coordinates in steps of 1/resolution, zero where absent."""
    points = np.array([p for p in itertools.product(range(resolution + 1), repeat=num_tasks - 1)
                       if sum(p) <= resolution])
    points = np.concatenate([points, resolution - points.sum(axis=1, keepdims=True)], axis=1) / resolution
    return points[np.all(points[:, ~present] == 0, axis=1)] if (~present).any() else points


def grid_on(present, resolution=300):
    """The simplex grid over the present tasks only (coordinates of absent tasks 0)."""
    active = np.flatnonzero(present)
    small = simplex_grid(len(active), np.ones(len(active), bool), resolution)
    points = np.zeros((len(small), len(present)))
    points[:, active] = small
    return points


# -- configuration and documentation ------------------------------------------------------------


@pytest.mark.parametrize("cls", NEW, ids=lambda c: c.__name__)
def test_config_round_trip_registry_and_documentation(cls):
    strategy = cls()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(strategy))
    assert type(restored) is cls and restored.get_config() == strategy.get_config()
    assert B._STRATEGIES[cls.__name__] is cls and cls.__name__ in B.__all__
    summary, _, references = cls.__doc__.partition("References:")
    assert re.search(r"\(\d{4}\)\.", references)  # author (year). title
    assert re.search(r"[=←]", summary) and "Example:" in cls.__doc__


def test_non_default_arguments_survive_the_config_and_bad_ones_are_refused():
    for strategy in (B.MGDA(normalize="loss+", iterations=7), B.CAGrad(c=0.2, rescale=False, iterations=9),
                     B.NashMTL(iterations=5), B.UPGrad(iterations=11, reg=1e-3),
                     B.DBMTL(beta=0.5, beta_sigma=0.5, epsilon=1e-6), B.FAMO(lr=0.1, gamma=0.0, epsilon=1e-6),
                     B.ScaleInvariant(epsilon=1e-3), B.PCGrad(seed=2)):
        config = strategy.get_config()
        assert type(strategy).from_config(config).get_config() == config
    with pytest.raises(ValueError, match="normalize"):
        B.MGDA(normalize="l1")
    with pytest.raises(ValueError, match="c must be"):
        B.CAGrad(c=-1.0)


# -- the base class -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", AGGREGATORS, ids=lambda c: c.__name__)
def test_no_task_present_gives_a_zero_update(cls):
    strategy = set_up(cls, **({"seed": 0} if cls is B.PCGrad else {}))
    grads = np.zeros((3, 6))
    np.testing.assert_array_equal(aggregate(strategy, grads, np.zeros(3, bool)), 0.0)
    # Even if the rows were not zero: absent tasks give nothing.
    grads = np.random.default_rng(1).normal(size=(3, 6))
    np.testing.assert_array_equal(aggregate(strategy, grads, np.zeros(3, bool)), 0.0)


@pytest.mark.parametrize("cls", AGGREGATORS, ids=lambda c: c.__name__)
def test_an_absent_task_is_left_out_of_the_problem(cls):
    """The update with task 1 absent is the method's update on tasks 0 and 2 alone."""
    grads, present = CASES["one_absent"]
    noisy = grads.copy()
    noisy[1] = 5.0  # whatever the absent row holds
    kwargs = {"seed": 0} if cls is B.PCGrad else {}
    full = aggregate(set_up(cls, **kwargs), noisy, present)
    alone = aggregate(set_up(cls, num_tasks=2, **kwargs), grads[[0, 2]], np.ones(2, bool))
    np.testing.assert_allclose(full, alone, rtol=2e-4, atol=1e-5)
    assert np.all(np.isfinite(full)) and np.abs(full).max() > 1e-3


def xla_aggregate(strategy, grads, present):
    """``strategy.aggregate`` compiled with XLA (TensorFlow), under ``jax.jit`` (JAX) or eager (PyTorch)."""
    args = ([ops.convert_to_tensor(grads.astype("float32"))], ops.ones(len(grads)), ops.convert_to_tensor(present))
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(strategy.aggregate, jit_compile=True)(*args)
    if backend == "jax":
        return jax_jitted_aggregate(strategy, *args)
    return strategy.aggregate(*args)


def jax_jitted_aggregate(strategy, *args):
    """``strategy.aggregate(*args)`` under ``jax.jit``, its state passed in and out (a stateful step)."""
    import jax

    def step(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(strategy.variables, values))) as scope:
            update = strategy.aggregate(*args)
        return update, [scope.get_current_value(v) for v in strategy.variables]

    return jax.jit(step)([v.value for v in strategy.variables], *args)[0]


@pytest.mark.parametrize("cls", AGGREGATORS, ids=lambda c: c.__name__)
def test_compiles_with_xla_and_gives_the_graph_result(cls):
    """Under XLA (TensorFlow) or jax.jit (JAX) the solvers give what the plain graph gives; PyTorch runs eagerly."""
    grads, present = CASES["conflicting"]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        def jitted(fn):
            return tf.function(fn, jit_compile=True)
    elif backend == "jax":
        import jax

        jitted = jax.jit
    else:
        def jitted(fn):
            return fn
    parts = [ops.convert_to_tensor(grads.astype("float32"))]
    args = (parts, ops.ones(3), ops.convert_to_tensor(present))
    if cls is B.PCGrad:  # random: check the projection with fixed orders instead
        orders = ops.convert_to_tensor(np.array([[2, 0, 1], [1, 2, 0], [0, 1, 2]], "int32"))
        got = ops.convert_to_numpy(jitted(B.PCGrad.project)(parts[0], orders))
        np.testing.assert_allclose(got, numpy_pcgrad_orders(grads, ops.convert_to_numpy(orders)), rtol=1e-4, atol=1e-5)
        return
    stateful = cls is B.DBMTL
    reference = aggregate(set_up(cls), grads, present)
    strategy = set_up(cls)
    if stateful and backend == "jax":
        update = jax_jitted_aggregate(strategy, *args)
    else:
        update = jitted(strategy.aggregate)(*args)
    np.testing.assert_allclose(ops.convert_to_numpy(update[0]).ravel(), reference, rtol=2e-4, atol=1e-5)


def test_doctest_examples_of_the_aggregators():
    """Every aggregator's module, their base and the solvers (on this backend; test_docstrings runs on TensorFlow)."""
    names = {cls.__module__ for cls in AGGREGATORS} | {"keras_mtl.balancing.aggregator", "keras_mtl.balancing.solvers"}
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for name in sorted(names):
        result = doctest.testmod(importlib.import_module(name), optionflags=flags)
        assert result.attempted > 0 and result.failed == 0, name


# -- PCGrad at many tasks --------------------------------------------------------------------


def numpy_pcgrad_orders(grads, orders):
    """PCGrad (Yu et al. 2020): task i visits the others in orders[i]."""
    projected = []
    for i, g in enumerate(np.asarray(grads, np.float64)):
        g = g.copy()
        for j in orders[i]:
            if j != i and g @ grads[j] < 0:
                g = g - (g @ grads[j]) / (grads[j] @ grads[j]) * grads[j]
        projected.append(g)
    return np.array(projected)


def test_pcgrad_each_task_visits_the_others_in_its_own_order():
    rng = np.random.default_rng(5)
    grads = rng.normal(size=(5, 8))
    grads[1] = -grads[0] + 0.2 * grads[1]
    grads[3] = -grads[2] - 0.5 * grads[4]
    orders = np.array([rng.permutation(5) for _ in range(5)])
    got = ops.convert_to_numpy(B.PCGrad.project(grads.astype("float32"), orders.astype("int32")))
    np.testing.assert_allclose(got, numpy_pcgrad_orders(grads, orders), rtol=1e-4, atol=1e-5)
    # The result depends on the orders: a shared order gives another answer here.
    shared = np.tile(np.arange(5), (5, 1))
    assert not np.allclose(numpy_pcgrad_orders(grads, shared), numpy_pcgrad_orders(grads, orders), atol=1e-3)


def test_pcgrad_random_orders_are_independent_permutations_per_task():
    strategy = set_up(B.PCGrad, num_tasks=6, seed=3)
    draws = [ops.convert_to_numpy(strategy.random_orders()) for _ in range(20)]
    for orders in draws:
        np.testing.assert_array_equal(np.sort(orders, axis=1), np.tile(np.arange(6), (6, 1)))
    distinct_rows = {tuple(row) for orders in draws for row in orders}
    assert len(distinct_rows) > 60  # not one shared order, not the same each step
    assert any(len({tuple(row) for row in orders}) == 6 for orders in draws)
    again = set_up(B.PCGrad, num_tasks=6, seed=3)
    np.testing.assert_array_equal(ops.convert_to_numpy(again.random_orders()), draws[0])


def test_pcgrad_at_forty_tasks_matches_numpy():
    rng = np.random.default_rng(6)
    grads = rng.normal(size=(40, 30))
    strategy = set_up(B.PCGrad, num_tasks=40, seed=1)
    orders = ops.convert_to_numpy(strategy.random_orders())
    got = ops.convert_to_numpy(B.PCGrad.project(grads.astype("float32"), orders))
    np.testing.assert_allclose(got, numpy_pcgrad_orders(grads, orders), rtol=1e-3, atol=1e-4)


# -- MGDA ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("normalize", ["none", "l2"])
def test_mgda_is_the_min_norm_point_of_the_hull(case, normalize):
    grads, present = CASES[case]
    strategy = set_up(B.MGDA, normalize=normalize)
    alpha = coefficients(strategy, grads, present)
    scaled = grads / np.where(np.linalg.norm(grads, axis=1, keepdims=True) > 0,
                              np.linalg.norm(grads, axis=1, keepdims=True), 1) if normalize == "l2" else grads
    beta = alpha * (np.linalg.norm(grads, axis=1) if normalize == "l2" else 1.0)  # coefficients of g̃
    assert np.all(beta >= -1e-7) and beta.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.all(beta[~present] == 0)
    points = grid_on(present)
    grid_norm = np.min(np.sum((points @ scaled) ** 2, axis=1))
    found = np.sum((beta @ scaled) ** 2)
    assert found <= grid_norm * (1 + 1e-4) + 1e-7
    # Optimality (KKT): no vertex of the hull lowers the norm, (K̃β)_i ≥ βᵀK̃β.
    gram = scaled @ scaled.T
    assert np.all((gram @ beta)[present] >= found - 1e-4 * max(found, 1e-3))
    np.testing.assert_allclose(aggregate(strategy, grads, present), alpha @ grads, rtol=1e-4, atol=1e-5)


def test_mgda_update_does_not_oppose_any_task_and_uses_the_loss_normalisation():
    grads, present = CASES["conflicting"]
    update = aggregate(set_up(B.MGDA), grads, present)
    assert np.all(grads @ update >= np.sum(update ** 2) * (1 - 1e-3))  # g_i · d ≥ ‖d‖² at the optimum
    strategy = set_up(B.MGDA, normalize="loss")
    losses = np.array([2.0, 0.5, 4.0], "float32")
    strategy.observe_gradients([], ops.convert_to_tensor(losses), ops.ones(3), ops.ones(3, "bool"))
    alpha = coefficients(strategy, grads, present)
    beta = alpha * losses
    points = grid_on(present)
    scaled = grads / losses[:, None]
    assert np.sum((beta @ scaled) ** 2) <= np.min(np.sum((points @ scaled) ** 2, axis=1)) * (1 + 1e-4)


def numpy_cagrad(grads, present, c, w):
    """d = g0 + c‖g0‖/‖g_w‖ g_w (Liu et al. 2021, eq. 3 and Algorithm 1)."""
    g0 = grads[present].mean(axis=0)
    gw = w @ grads
    return g0 + c * np.linalg.norm(g0) / np.linalg.norm(gw) * gw


@pytest.mark.parametrize(("case", "c"), [(case, 0.5) for case in CASES] + [("conflicting", 2.0)])
def test_cagrad_minimises_its_dual_objective_and_forms_the_update_by_the_formula(case, c):
    grads, present = CASES[case]
    strategy = set_up(B.CAGrad, c=c, rescale=False)
    gram = (grads @ grads.T).astype("float32")
    w = ops.convert_to_numpy(compiled(strategy.conflict_averse_weights)(gram, present)).astype(np.float64)
    assert np.all(w >= -1e-7) and w.sum() == pytest.approx(1.0, abs=1e-5) and np.all(w[~present] == 0)
    g0 = grads[present].mean(axis=0)

    def objective(points):  # F(w) = g_wᵀ g0 + c ‖g0‖ ‖g_w‖
        gw = points @ grads
        return gw @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(gw, axis=-1)

    scale = np.linalg.norm(g0) ** 2 + 1e-12
    assert objective(w[None])[0] <= objective(grid_on(present)).min() + 1e-4 * scale
    update = aggregate(strategy, grads, present)
    np.testing.assert_allclose(update, numpy_cagrad(grads, present, c, w), rtol=1e-4, atol=1e-5)
    # The constraint of the primal problem holds with equality: ‖d − g0‖ = c ‖g0‖.
    assert np.linalg.norm(update - g0) == pytest.approx(c * np.linalg.norm(g0), rel=1e-4)
    rescaled = aggregate(set_up(B.CAGrad, c=c), grads, present)
    np.testing.assert_allclose(rescaled, update / (1 + c ** 2), rtol=1e-5, atol=1e-6)


def test_cagrad_with_c_zero_is_the_average_gradient():
    grads, present = CASES["conflicting"]
    np.testing.assert_allclose(aggregate(set_up(B.CAGrad, c=0.0), grads, present), grads.mean(axis=0),
                               rtol=1e-5, atol=1e-6)


# -- IMTL-G --------------------------------------------------------------------------------------


def numpy_imtl(grads):
    """IMTL-G's closed form (Liu et al. 2021, eq. 11), on the present tasks' gradients."""
    units = grads / np.linalg.norm(grads, axis=1, keepdims=True)
    d, u = grads[0] - grads[1:], units[0] - units[1:]
    rest = grads[0] @ u.T @ np.linalg.inv(d @ u.T)
    return np.concatenate([[1 - rest.sum()], rest])


@pytest.mark.parametrize("case", list(CASES))
def test_imtl_g_gives_equal_projections_on_every_unit_gradient(case):
    grads, present = CASES[case]
    alpha = coefficients(set_up(B.IMTLG), grads, present)
    update = alpha @ grads
    units = grads[present] / np.linalg.norm(grads[present], axis=1, keepdims=True)
    projections = units @ update
    np.testing.assert_allclose(projections, projections[0], rtol=2e-3 if case == "nearly_parallel" else 1e-4)
    assert alpha.sum() == pytest.approx(1.0, abs=1e-4) and np.all(alpha[~present] == 0)
    if case != "nearly_parallel":  # there D Uᵀ is near-singular and α is not well determined
        np.testing.assert_allclose(alpha[present], numpy_imtl(grads[present]), rtol=1e-3, atol=1e-4)


# -- Aligned-MTL -----------------------------------------------------------------------------


def numpy_aligned(grads):
    """Aligned-MTL (Senushkin et al. 2023, Algorithm 1) on the present gradients: B G."""
    eigenvalues, vectors = np.linalg.eigh(grads @ grads.T)
    kept = eigenvalues > eigenvalues.max() * len(grads) * np.finfo(np.float32).eps
    values, vectors = eigenvalues[kept], vectors[:, kept]
    b = np.sqrt(values.min()) * vectors @ np.diag(values ** -0.5) @ vectors.T
    return b @ grads


@pytest.mark.parametrize("case", list(CASES))
def test_aligned_mtl_gram_of_the_aligned_gradients_is_a_multiple_of_identity(case):
    grads, present = CASES[case]
    strategy = set_up(B.AlignedMTL)
    b = ops.convert_to_numpy(compiled(strategy.alignment)((grads @ grads.T).astype("float32"), present))
    b = b.astype(np.float64)
    aligned = b @ grads
    gram = aligned[present] @ aligned[present].T
    sigma = np.linalg.svd(grads[present], compute_uv=False).min()
    tolerance = 5e-3 if case == "nearly_parallel" else 1e-4
    np.testing.assert_allclose(gram, sigma ** 2 * np.eye(present.sum()), atol=tolerance * sigma ** 2 + 1e-6,
                               rtol=tolerance)
    assert np.all(aligned[~present] == 0)
    np.testing.assert_allclose(aligned[present], numpy_aligned(grads[present]), rtol=tolerance,
                               atol=tolerance * sigma)
    np.testing.assert_allclose(aggregate(strategy, grads, present), aligned.sum(axis=0), rtol=tolerance,
                               atol=tolerance * sigma)


def test_aligned_mtl_drops_linearly_dependent_gradients():
    grads = CASES["conflicting"][0].copy()
    grads[2] = grads[0] + grads[1]  # rank 2
    b = ops.convert_to_numpy(set_up(B.AlignedMTL).alignment((grads @ grads.T).astype("float32"), np.ones(3, bool)))
    assert np.all(np.isfinite(b))
    np.testing.assert_allclose(b @ grads, numpy_aligned(grads), rtol=1e-3, atol=1e-3)


# -- Nash-MTL ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_nash_mtl_solves_the_bargaining_equation(case):
    grads, present = CASES[case]
    alpha = coefficients(set_up(B.NashMTL), grads, present)
    assert np.all(alpha[present] > 0) and np.all(alpha[~present] == 0)
    gram = grads @ grads.T
    # G Gᵀ α = 1/α for the present tasks: (Kα)_i α_i = 1.
    residual = (gram @ alpha)[present] * alpha[present] - 1.0
    assert np.abs(residual).max() < (2e-3 if case == "nearly_parallel" else 1e-4)


def test_nash_mtl_is_invariant_to_the_scale_of_a_task():
    grads, present = CASES["conflicting"]
    scaled = grads * np.array([[10.0], [1.0], [0.1]])
    update = aggregate(set_up(B.NashMTL), grads, present)
    np.testing.assert_allclose(aggregate(set_up(B.NashMTL), scaled, present), update, rtol=1e-3, atol=1e-5)
    # Orthogonal gradients: α_i = 1/‖g_i‖, every task gets a unit projection.
    orthogonal = np.diag([1.0, 3.0, 0.2])
    np.testing.assert_allclose(coefficients(set_up(B.NashMTL), orthogonal, np.ones(3, bool)),
                               [1.0, 1 / 3, 5.0], rtol=1e-5)


# -- UPGrad --------------------------------------------------------------------------------------


def numpy_upgrad(grads, present, reg=1e-4):
    """UPGrad (Quinton & Rey 2024): mean of Gᵀv_i, v_i = argmin_{v ≥ e_i} vᵀKv, by exact active sets."""
    rows = grads[present]
    count = len(rows)
    gram = rows @ rows.T
    gram = gram / (np.trace(gram) / count) + reg * np.eye(count)
    weights = []
    for i in range(count):
        lower = np.eye(count)[i]
        for free in itertools.product([False, True], repeat=count):
            free = np.array(free)
            v = lower.copy()
            if free.any():
                v[free] = np.linalg.solve(gram[np.ix_(free, free)], -gram[np.ix_(free, ~free)] @ lower[~free])
            gradient = gram @ v
            if np.all(v[free] >= lower[free] - 1e-12) and np.all(gradient[~free] >= -1e-12):
                weights.append(v)
                break
        else:
            raise AssertionError("no KKT point")
    return np.mean(weights, axis=0) @ rows


@pytest.mark.parametrize("case", list(CASES))
def test_upgrad_matches_the_exact_projections_and_opposes_no_task(case):
    grads, present = CASES[case]
    update = aggregate(set_up(B.UPGrad), grads, present)
    expected = numpy_upgrad(grads, present)
    scale = np.linalg.norm(grads[present], axis=1).max()
    np.testing.assert_allclose(update, expected, atol=1e-4 * scale)
    # Every present task's loss decreases to first order.
    assert np.all(grads[present] @ update >= -1e-4 * scale ** 2)


def test_upgrad_leaves_gradients_that_agree_unchanged():
    grads = np.array([[1.0, 0.2, 0.0], [0.3, 1.0, 0.1], [0.2, 0.1, 1.0]])  # all pairwise dots > 0
    update = aggregate(set_up(B.UPGrad), np.pad(grads, ((0, 0), (0, 3))), np.ones(3, bool))
    np.testing.assert_allclose(update[:3], grads.mean(axis=0), rtol=1e-3, atol=1e-4)


# -- DB-MTL ---------------------------------------------------------------------------------------


def test_dbmtl_normalises_to_the_largest_averaged_norm():
    """Three steps, task 2 absent in the second: EMA of the norms per task, against NumPy."""
    rng = np.random.default_rng(8)
    strategy = set_up(B.DBMTL, beta=0.9, beta_sigma=0.5)
    average, steps = np.zeros(3), np.zeros(3)
    for present in ([True, True, True], [True, True, False], [True, True, True]):
        present = np.array(present)
        grads = rng.normal(size=(3, 6)) * np.array([[1.0], [10.0], [0.1]]) * present[:, None]
        steps = steps + present
        beta = 0.9 / np.maximum(steps, 1) ** 0.5
        norms = np.linalg.norm(grads, axis=1)
        average = np.where(present, beta * average + (1 - beta) * norms, average)
        expected = (average[present].max() * grads[present] / average[present, None]).sum(axis=0)
        np.testing.assert_allclose(aggregate(strategy, grads, present), expected, rtol=1e-5)
        np.testing.assert_allclose(strategy.norm_average.numpy(), average, rtol=1e-6)
        np.testing.assert_array_equal(strategy.steps.numpy(), steps)


def test_dbmtl_and_scale_invariant_weights_train_on_log_losses():
    losses = np.array([0.5, 3.0, 0.0], "float32")
    present = np.array([True, True, False])
    for cls in (B.DBMTL, B.ScaleInvariant):
        strategy = cls()
        strategy.setup(["a", "b", "c"], [1.0, 2.0, 1.0])
        weights, extra = strategy.combine(ops.convert_to_tensor(losses), ops.convert_to_tensor(present))
        weights = ops.convert_to_numpy(weights)
        np.testing.assert_allclose(weights, [1 / 0.5, 2 / 3.0, 0.0], rtol=1e-5)
        total = float(ops.convert_to_numpy(extra)) + weights @ losses
        assert total == pytest.approx(np.log(0.5) + 2 * np.log(3.0), rel=1e-5)


# -- FAMO -------------------------------------------------------------------------------------------


def numpy_famo(loss_steps, present_steps, lr=0.025, gamma=0.001):
    """FAMO's logit updates (Liu et al. 2023, Algorithm 1, Adam as the authors' code) in NumPy.

    Returns the weights of every step and the final logits.
    """
    num_tasks = loss_steps.shape[1]
    xi, m, v, count = np.zeros(num_tasks), np.zeros(num_tasks), np.zeros(num_tasks), np.zeros(num_tasks)
    previous, seen, weights = np.zeros(num_tasks), np.zeros(num_tasks, bool), []
    for losses, present in zip(loss_steps, present_steps):
        z = np.exp(xi) / np.exp(xi).sum()
        inverse = np.where(present, z / np.where(present, losses, 1), 0)
        weights.append(inverse / inverse.sum())
        log_loss = np.log(losses + 1e-8)
        valid = present & seen
        delta = np.where(valid, previous - log_loss, 0)
        grad = z * (delta - z @ delta) + gamma * xi
        count = count + valid
        m = np.where(valid, 0.9 * m + 0.1 * grad, m)
        v = np.where(valid, 0.999 * v + 0.001 * grad ** 2, v)
        m_hat, v_hat = m / (1 - 0.9 ** np.maximum(count, 1)), v / (1 - 0.999 ** np.maximum(count, 1))
        xi = np.where(valid, xi - lr * m_hat / (np.sqrt(v_hat) + 1e-8), xi)
        previous = np.where(present, log_loss, previous)
        seen |= present
    return np.array(weights), xi


def test_famo_logit_updates_match_numpy_and_skip_absent_tasks():
    rng = np.random.default_rng(9)
    steps = 8
    loss_steps = np.exp(-np.outer(np.arange(steps), [0.3, 0.05, 0.15]) + 0.1 * rng.normal(size=(steps, 3)))
    present_steps = rng.random((steps, 3)) > 0.25
    present_steps[3:6, 2] = False  # task 2 absent for three steps
    strategy = B.FAMO()
    strategy.setup(["a", "b", "c"], [1.0] * 3)
    expected_weights, expected_logits = numpy_famo(loss_steps, present_steps)
    for step in range(steps):
        losses = ops.convert_to_tensor(loss_steps[step].astype("float32"))
        present = ops.convert_to_tensor(present_steps[step])
        before = strategy.logits.numpy()[2]
        weights, extra = strategy.combine(losses, present)
        np.testing.assert_allclose(ops.convert_to_numpy(weights), expected_weights[step], rtol=1e-5, atol=1e-8)
        strategy.observe_losses(losses, present)
        if not present_steps[step, 2]:
            assert strategy.logits.numpy()[2] == before
    np.testing.assert_allclose(strategy.logits.numpy(), expected_logits, rtol=1e-4, atol=1e-7)
    # The fast task (a) lost weight to the slow one (b).
    assert expected_logits[0] < 0 < expected_logits[1]


# -- every new strategy inside fit ------------------------------------------------------------


def problem(n=96, seed=4):
    """Tasks c (binary), gone and b (regression); ``gone`` has no label in the first 32 examples."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    labels = {"c": (x[:, 2] > 0).astype("float32"), "gone": (x[:, 3] - x[:, 4]).astype("float32"),
              "b": (x[:, 0] + x[:, 1]).astype("float32")}
    labels["gone"][:32] = np.nan
    for name in ("c", "b"):
        labels[name][32:][rng.random(n - 32) < 0.3] = np.nan
    return x, labels


def task_losses(model, x, labels):
    encoded = {k: ops.convert_to_numpy(v) for k, v in
               kmtl.data.encode_labels(kmtl.data.validate_labels(labels, model), model).items()}
    return ops.convert_to_numpy(model.loss_terms(encoded, model(x), training=False).task_losses).astype(np.float64)


@pytest.mark.parametrize("cls", NEW, ids=lambda c: c.__name__)
def test_absent_task_then_training_then_a_keras_file(cls, tmp_path):
    """One step with task ``gone`` unlabelled: its head and state stay, the shared update is the others'.

    Then training on every task lowers the losses, and a ``.keras`` file restores the state.
    """
    x, labels = problem()
    model = build([kmtl.Task("c")] + regression("gone", "b"))  # fused columns: c, gone, b
    strategy = cls()
    lr = 0.1
    model.compile(optimizer=keras.optimizers.SGD(lr), balancing=strategy)
    first = {name: y[:32] for name, y in labels.items()}
    shared = trunk(model)
    grads = formula_gradients(model, x[:32], first, shared)  # tasks c and b, unweighted
    losses = task_losses(model, x[:32], first)[[0, 2]]
    before = flat(shared)
    gone_head = model.task_heads.dense.kernel.numpy()[:, 1].copy()
    state = [v.numpy().copy() for v in strategy.variables]
    model.fit(x[:32], first, batch_size=32, epochs=1, shuffle=False, verbose=0)

    np.testing.assert_array_equal(model.task_heads.dense.kernel.numpy()[:, 1], gone_head)
    for saved, variable in zip(state, strategy.variables, strict=True):
        np.testing.assert_array_equal(variable.numpy()[1], saved[1], err_msg=variable.name)  # the absent task's
    applied = (before - flat(shared)) / lr
    if cls in (B.ScaleInvariant, B.DBMTL):
        grads = grads / losses[:, None]  # gradients of log L_i
    if cls is B.ScaleInvariant:
        expected = grads.sum(axis=0)
    elif cls is B.FAMO:  # first step: z uniform, weights (1/L_i) / Σ_j 1/L_j
        expected = ((1 / losses) / (1 / losses).sum()) @ grads
    else:
        reference = set_up(cls, num_tasks=2)
        expected = ops.convert_to_numpy(reference.aggregate_matrix(
            ops.convert_to_tensor(grads.astype("float32")), ops.ones(2), ops.ones(2, "bool")))
    np.testing.assert_allclose(applied, expected, rtol=2e-3, atol=1e-5)

    start = task_losses(model, x, labels).sum()
    history = model.fit(x, labels, batch_size=32, epochs=4, shuffle=False, verbose=0).history
    assert all(np.all(np.isfinite(v)) for v in history.values())
    assert task_losses(model, x, labels).sum() < 0.9 * start
    if cls in (B.DBMTL, B.ScaleInvariant):  # the loss of the logs is Σ log L_i
        assert history["loss"][-1] < history["loss"][0]
    trained = [v.numpy() for v in strategy.variables]
    if cls in (B.FAMO, B.DBMTL):
        assert all(not np.allclose(t, s) for t, s in zip(trained, state))  # the state moved

    reloaded_the_same(model, cls, x, tmp_path)


def reloaded_the_same(model, cls, x, tmp_path):
    """``model`` saved to a ``.keras`` file and loaded: the same strategy, state and outputs."""
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.balancing) is cls
    assert loaded.balancing.get_config() == model.balancing.get_config()
    for saved, restored in zip(model.balancing.variables, loaded.balancing.variables, strict=True):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)["b"]), ops.convert_to_numpy(model(x)["b"]), atol=1e-6)


def _nested_trunk_model(nested):
    """Two trunk blocks of the same shape: nested functional models whose layers share a name, or flat."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5,), name="x")
    features = inputs
    for block in ("a", "b"):
        if nested:
            inner = keras.Input((5,))
            sub = keras.Model(inner, keras.layers.Dense(5, activation="tanh", name="d")(inner), name=block)
            features = sub(features)
        else:
            features = keras.layers.Dense(5, activation="tanh", name=f"d_{block}")(features)
    return kmtl.MultiTaskModel(inputs, features, [kmtl.Task("c"), kmtl.Task("e")])


@pytest.mark.parametrize("strategy", [lambda: B.UPGrad(), lambda: B.MGDA(wrt="representation")],
                         ids=["parameters", "representation"])
def test_trunks_with_repeated_variable_paths_get_their_own_updates(strategy):
    """Nested functional models repeat variable paths (``d/kernel`` twice): each variable keeps its own update."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5)).astype("float32")
    labels = {"c": (x[:, 0] > 0).astype("float32"), "e": (x[:, 1] + x[:, 2] > 0).astype("float32")}
    nested, flat_model = _nested_trunk_model(True), _nested_trunk_model(False)
    paths = [v.path for v in nested.trainable_variables]
    assert len(set(paths)) < len(paths)  # the condition under test: paths repeat
    flat_model.set_weights(nested.get_weights())
    for model in (nested, flat_model):
        model.compile(optimizer=keras.optimizers.SGD(0.5), balancing=strategy())
        model.fit(x, labels, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for got, expected in zip(nested.get_weights(), flat_model.get_weights(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# -- several replicas ----------------------------------------------------------------------------

DISTRIBUTED = ["DBMTL", "FAMO"]  # a gradient aggregator with state, a loss-based one


def mirrored_main(out_dir):
    """Subprocess: each strategy on one device and on a MirroredStrategy over 2 logical CPUs."""
    import contextlib
    import json
    import os

    import tensorflow as tf
    from test_distribute import build_model, dataset, initial_weights, make_data

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    init = initial_weights()
    x, labels = make_data()  # missing labels spread unevenly over each batch's halves
    results = {}
    for name in DISTRIBUTED:
        found = {}
        for key, scope in (("one", contextlib.nullcontext()), ("two", strategy.scope())):
            with scope:
                model = build_model()
                model.set_weights(init)
                model.compile(optimizer=keras.optimizers.SGD(0.1), normalize="labeled", balancing=getattr(B, name)())
            history = model.fit(dataset(x, labels), epochs=2, verbose=0).history
            found[key] = {"history": history, "weights": [w.tolist() for w in model.get_weights()],
                          "state": [v.numpy().tolist() for v in model.balancing.variables]}
        results[name] = found
    with open(os.path.join(out_dir, "aggregators.json"), "w") as f:
        json.dump(results, f)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute is TensorFlow's")
def test_two_replicas_train_as_one_device(tmp_path):
    """Global losses and gradients reach the strategies: two replicas give one device's numbers."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, __file__, "mirrored", str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(tmp_path / "aggregators.json") as f:
        results = json.load(f)
    for name in DISTRIBUTED:
        one, two = results[name]["one"], results[name]["two"]
        for key in ("loss", "a_loss", "c_loss"):
            np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=1e-4, err_msg=f"{name} {key}")
        for w_two, w_one in zip(two["weights"], one["weights"], strict=True):
            np.testing.assert_allclose(w_two, w_one, rtol=1e-4, atol=1e-6, err_msg=name)
        for s_two, s_one in zip(two["state"], one["state"], strict=True):
            np.testing.assert_allclose(s_two, s_one, rtol=1e-4, atol=1e-6, err_msg=name)
        assert one["history"]["a_loss"][-1] < one["history"]["a_loss"][0], name


if __name__ == "__main__":
    import sys

    mirrored_main(sys.argv[2])
