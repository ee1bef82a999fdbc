"""GradDrop, GradVac, DualProj, ConFIG, FairGrad, IMTL and CAGrad's ``rescale``, checked against NumPy/SciPy.

Each method's defining equation is checked on the constructed gradient
matrices of ``tests/test_aggregators.py`` (conflicting, aligned, nearly
parallel, one task absent) and on two- and ten-task matrices, against an
independent computation written out here: the methods' sequential
algorithms on the raw gradient vectors, ``numpy.linalg.pinv``, SciPy's
``least_squares`` and ``minimize`` on the primal problems, an exact
active-set solution. Where a method solves an optimisation problem its
optimality conditions are checked too. The contract every aggregator shares
(zero update with no task present, an absent task left out, XLA, training
with a missing task, a ``.keras`` file) reuses the checks of
``tests/test_aggregators.py``.
"""

import doctest
import importlib
import itertools

import keras
import numpy as np
import pytest
import test_aggregators as base
import test_representation
from keras import ops
from scipy import optimize
from test_aggregators import CASES, coefficients, more_cases, set_up
from test_balancing import build, flat, formula_gradients, regression, trunk

import keras_mtl as kmtl
from keras_mtl import balancing as B

pytestmark = pytest.mark.portable

NEW = [B.GradDrop, B.GradVac, B.DualProj, B.ConFIG, B.FairGrad, B.IMTL]
RANDOM = (B.GradDrop,)  # draw random numbers: compared with a generator of the same seed
STATEFUL = (B.GradDrop, B.GradVac)  # assign variables inside the step




ALL_CASES = {**CASES, **more_cases(11)}


def made(cls, num_tasks=3, **kwargs):
    """``set_up`` with a fixed seed for the random strategies."""
    return set_up(cls, num_tasks, **({"seed": 0} if cls in RANDOM else {}), **kwargs)


def aggregate(strategy, grads, present):
    """``strategy.aggregate`` on ``grads`` (T, P) split into two variables, (T, P − 2) and (T, 2); flat result."""
    grads = np.asarray(grads, "float32")
    parts = [ops.convert_to_tensor(grads[:, :-2]), ops.convert_to_tensor(grads[:, -2:])]
    run = base.compiled(strategy.aggregate, stateful=isinstance(strategy, STATEFUL))
    update = run(parts, ops.ones(len(grads)), ops.convert_to_tensor(present))
    return np.concatenate([ops.convert_to_numpy(u).ravel() for u in update]).astype(np.float64)


def scale_of(grads, present):
    return np.linalg.norm(grads[present], axis=1).max()


# -- the shared contract ------------------------------------------------------------------------


@pytest.mark.parametrize("cls", NEW, ids=lambda c: c.__name__)
def test_config_round_trip_registry_and_documentation(cls):
    base.test_config_round_trip_registry_and_documentation(cls)


@pytest.mark.parametrize("cls", base.AGGREGATORS + NEW, ids=lambda c: c.__name__)
def test_every_aggregator_states_its_scale_against_libmtl_and_torchjd(cls):
    _, _, scale = cls.__doc__.partition("Scale:")
    paragraph = " ".join(scale.split("\n\n")[0].split())
    assert "LibMTL" in paragraph and "torchjd" in paragraph, cls.__name__
    assert any(word in paragraph for word in ("sum", "mean", "average", "normalised")), cls.__name__


def test_non_default_arguments_survive_the_config_and_bad_ones_are_refused():
    for strategy in (B.GradDrop(leak=0.25, seed=3), B.GradVac(beta=0.5), B.DualProj(iterations=7, reg=1e-3),
                     B.FairGrad(alpha=2.5, iterations=9), B.IMTL(initial_scale=0.5, wrt="representation"),
                     B.CAGrad(rescale=2)):
        config = strategy.get_config()
        assert type(strategy).from_config(config).get_config() == config
    for make, match in ((lambda: B.GradDrop(leak=1.5), "leak"), (lambda: B.GradVac(beta=-0.1), "beta"),
                        (lambda: B.FairGrad(alpha=0.0), "alpha"), (lambda: B.CAGrad(rescale=3), "rescale"),
                        (lambda: B.GradDrop(wrt="representation"), "wrt must be one of")):
        with pytest.raises(ValueError, match=match):
            make()
    # Configs saved before rescale took 0/1/2 held a bool.
    assert B.CAGrad(rescale=True).rescale == 1 and B.CAGrad(rescale=False).rescale == 0


@pytest.mark.parametrize("cls", NEW, ids=lambda c: c.__name__)
def test_no_task_present_gives_a_zero_update(cls):
    strategy = made(cls)
    for grads in (np.zeros((3, 6)), np.random.default_rng(1).normal(size=(3, 6))):
        np.testing.assert_array_equal(aggregate(strategy, grads, np.zeros(3, bool)), 0.0)


@pytest.mark.parametrize("cls", NEW, ids=lambda c: c.__name__)
def test_an_absent_task_is_left_out_of_the_problem(cls):
    """The update with task 1 absent (whatever its row holds) is the update of tasks 0 and 2 alone."""
    grads, present = CASES["one_absent"]
    noisy = grads.copy()
    noisy[1] = 5.0
    full = aggregate(made(cls), noisy, present)
    alone = aggregate(made(cls, num_tasks=2), grads[[0, 2]], np.ones(2, bool))
    np.testing.assert_allclose(full, alone, rtol=2e-4, atol=1e-5)
    assert np.all(np.isfinite(full)) and np.abs(full).max() > 1e-3


@pytest.mark.parametrize("cls", NEW, ids=lambda c: c.__name__)
def test_compiles_with_xla_and_gives_the_graph_result(cls):
    """XLA (TensorFlow) or jax.jit (JAX, state threaded through a stateless scope) gives the graph's result."""
    grads, present = CASES["conflicting"]
    reference = aggregate(made(cls), grads, present)
    strategy = made(cls)
    update = base.xla_aggregate(strategy, grads, present)
    update = ops.convert_to_numpy(update[0]).ravel()
    if cls in RANDOM:  # XLA's random numbers differ from the graph's: each coordinate keeps one sign's part
        one_sign = [np.where(grads * sign > 0, grads, 0).sum(axis=0) for sign in (1, -1)]
        assert np.all(np.isclose(update, one_sign[0], rtol=1e-5) | np.isclose(update, one_sign[1], rtol=1e-5))
    else:
        np.testing.assert_allclose(update, reference, rtol=2e-4, atol=1e-5)


def test_doctest_examples_of_the_new_aggregators():
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for cls in NEW:
        result = doctest.testmod(importlib.import_module(cls.__module__), optionflags=flags)
        assert result.attempted > 0 and result.failed == 0, cls.__module__


@pytest.mark.parametrize("cls", [c for c in NEW if c not in RANDOM], ids=lambda c: c.__name__)
def test_absent_task_then_training_then_a_keras_file(cls, tmp_path):
    base.test_absent_task_then_training_then_a_keras_file(cls, tmp_path)


@pytest.mark.parametrize("cls", [c for c in NEW if "representation" in c.WRT], ids=lambda c: c.__name__)
def test_trains_on_the_representation(cls, tmp_path):
    test_representation.test_every_aggregator_trains_on_the_representation(cls, tmp_path)


# -- GradDrop ---------------------------------------------------------------------------------------


def numpy_graddrop(grads, uniform, leak=0.0):
    """GradDrop (Chen et al. 2020, Algorithm 1, lines 10-15) with the draws ``uniform``."""
    purity = 0.5 * (1 + grads.sum(axis=0) / np.where(np.abs(grads).sum(axis=0) > 0, np.abs(grads).sum(axis=0), 1))
    keep = ((purity > uniform) & (grads > 0)) | ((purity < uniform) & (grads < 0))
    return ((leak + (1 - leak) * keep) * grads).sum(axis=0)


@pytest.mark.parametrize("case", list(ALL_CASES))
def test_graddrop_matches_numpy_with_the_draws_of_its_seed(case):
    grads, present = ALL_CASES[case]
    num_tasks = len(grads)
    for leak in (0.0, 0.3):
        strategy = set_up(B.GradDrop, num_tasks, leak=leak, seed=7)
        generator = keras.random.SeedGenerator(7)
        for _ in range(2):  # the second step draws afresh
            uniform = ops.convert_to_numpy(keras.random.uniform((grads.shape[1],), seed=generator)).astype(np.float64)
            expected = numpy_graddrop(grads * present[:, None], uniform, leak)
            np.testing.assert_allclose(aggregate(strategy, grads, present), expected, rtol=1e-5, atol=1e-6)


def test_graddrop_keeps_the_positive_sign_with_probability_the_purity():
    """Column k of (0.3, -0.7) has purity 0.3: over 4000 draws the positive part is kept 30 % of the time."""
    grads = np.tile([[0.3], [-0.7]], (1, 4000))
    update = aggregate(set_up(B.GradDrop, 2, seed=1), grads, np.ones(2, bool))
    assert set(np.round(update, 5)) == {0.3, -0.7}
    fraction = np.mean(np.isclose(update, 0.3))
    assert abs(fraction - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 4000)
    agreeing = np.array([[1.0, -2.0, 0.0], [3.0, -1.0, 0.0]])  # purity 1, 0 and 0.5 over zeros
    np.testing.assert_allclose(aggregate(set_up(B.GradDrop, 2), np.pad(agreeing, ((0, 0), (0, 3))),
                                         np.ones(2, bool))[:3], [4.0, -3.0, 0.0])
    np.testing.assert_allclose(aggregate(set_up(B.GradDrop, 2, leak=1.0), grads[:, :5], np.ones(2, bool)),
                               grads[:, :5].sum(axis=0), rtol=1e-6)


def test_graddrop_inside_fit_keeps_one_sign_per_coordinate_and_reloads_its_draws(tmp_path):
    """One step with task ``gone`` absent: each shared coordinate moves by the positive or the negative part."""
    x, labels = base.problem()
    model = build([kmtl.Task("c")] + regression("gone", "b"))
    lr = 0.1
    model.compile(optimizer=keras.optimizers.SGD(lr), balancing=B.GradDrop(seed=5))
    first = {name: y[:32] for name, y in labels.items()}
    shared = trunk(model)
    grads = formula_gradients(model, x[:32], first, shared)
    before = flat(shared)
    model.fit(x[:32], first, batch_size=32, epochs=1, shuffle=False, verbose=0)
    applied = (before - flat(shared)) / lr
    positive, negative = np.where(grads > 0, grads, 0).sum(axis=0), np.where(grads < 0, grads, 0).sum(axis=0)
    chose = np.isclose(applied, positive, rtol=2e-3, atol=1e-6) | np.isclose(applied, negative, rtol=2e-3, atol=1e-6)
    assert chose.all()
    conflict = (grads > 0).any(axis=0) & (grads < 0).any(axis=0)
    assert conflict.sum() > 3 and not np.allclose(applied[conflict], grads.sum(axis=0)[conflict], atol=1e-4)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.balancing) is B.GradDrop and loaded.balancing.get_config() == model.balancing.get_config()
    draws = [ops.convert_to_numpy(keras.random.uniform((5,), seed=m.balancing._generator)) for m in (model, loaded)]
    np.testing.assert_array_equal(draws[0], draws[1])


# -- GradVac ----------------------------------------------------------------------------------------


def numpy_gradvac(grads, present, targets, beta):
    """GradVac (Wang et al. 2021, Algorithm 1) on the raw vectors; task i visits i+1, i+2, ... (mod T)."""
    num_tasks = len(grads)
    targets = targets.copy()
    corrected = []
    for i in range(num_tasks):
        g = grads[i].copy()
        for k in range(num_tasks - 1):
            j = (i + 1 + k) % num_tasks
            if not (present[i] and present[j]):
                continue
            cosine = g @ grads[j] / (np.linalg.norm(g) * np.linalg.norm(grads[j]))
            target = targets[i, j]
            if cosine < target:
                g = g + (np.linalg.norm(g) * (target * np.sqrt(1 - cosine ** 2) - cosine * np.sqrt(1 - target ** 2))
                         / (np.linalg.norm(grads[j]) * np.sqrt(1 - target ** 2))) * grads[j]
            targets[i, j] = (1 - beta) * target + beta * cosine
        corrected.append(g if present[i] else 0 * g)
    return np.array(corrected), targets


@pytest.mark.parametrize("case", list(ALL_CASES))
def test_gradvac_follows_the_sequential_algorithm_over_three_steps(case):
    """Three steps (the middle one without task 0): update and targets against NumPy; β = 0.5 moves them fast."""
    grads, present = ALL_CASES[case]
    rng = np.random.default_rng(12)
    strategy = set_up(B.GradVac, len(grads), beta=0.5)
    targets = np.zeros((len(grads),) * 2)
    for step in range(3):
        now = present.copy()
        if step == 1:
            now[0] = False
        moved = grads + 0.3 * rng.normal(size=grads.shape) * present[:, None]
        corrected, targets = numpy_gradvac(moved, now, targets, 0.5)
        np.testing.assert_allclose(aggregate(strategy, moved, now), corrected.sum(axis=0), rtol=2e-4,
                                   atol=2e-5 * scale_of(moved, now))
        np.testing.assert_allclose(ops.convert_to_numpy(strategy.targets), targets, atol=2e-5)
    assert np.abs(targets).max() > 0.05


def test_gradvac_raises_each_cosine_exactly_to_its_target():
    """Two tasks: a corrected gradient makes exactly the target cosine with the other task's gradient."""
    grads, present = ALL_CASES["two"]
    strategy = set_up(B.GradVac, 2)
    wanted = np.array([[0.0, 0.4], [-0.2, 0.0]])
    strategy.targets.assign(wanted)
    matrix, targets = strategy.vaccinate(ops.convert_to_tensor((grads @ grads.T).astype("float32")), present,
                                         strategy.targets.value)
    corrected = ops.convert_to_numpy(matrix).astype(np.float64) @ grads
    cosine = grads[0] @ grads[1] / np.prod(np.linalg.norm(grads, axis=1))
    assert cosine < -0.2  # both pairs get corrected
    for i, j in ((0, 1), (1, 0)):
        achieved = corrected[i] @ grads[j] / (np.linalg.norm(corrected[i]) * np.linalg.norm(grads[j]))
        assert achieved == pytest.approx(wanted[i, j], abs=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(targets), 0.99 * wanted + 0.01 * cosine * (1 - np.eye(2)),
                               atol=1e-6)


# -- DualProj ---------------------------------------------------------------------------------------


def numpy_dual_weights(gram, lower):
    """``argmin_{w ≥ lower} wᵀ K w`` by enumerating the active sets (exact for small T)."""
    count = len(gram)
    for free in itertools.product([False, True], repeat=count):
        free = np.array(free)
        w = lower.copy()
        if free.any():
            w[free] = np.linalg.solve(gram[np.ix_(free, free)], -gram[np.ix_(free, ~free)] @ lower[~free])
        if np.all(w[free] >= lower[free] - 1e-12) and np.all((gram @ w)[~free] >= -1e-12):
            return w
    raise AssertionError("no KKT point")


@pytest.mark.parametrize("case", list(ALL_CASES))
def test_dualproj_is_the_projection_of_the_mean_onto_the_dual_cone(case):
    grads, present = ALL_CASES[case]
    rows = grads[present]
    mean = rows.mean(axis=0)
    update = aggregate(made(B.DualProj, len(grads)), grads, present)
    scale = scale_of(grads, present)
    # Feasible: no present task opposes the update.
    assert np.all(rows @ update >= -1e-4 * scale ** 2)
    # The primal problem, min ‖v − mean‖² s.t. G v ≥ 0, by SciPy's SLSQP.
    primal = optimize.minimize(lambda v: np.sum((v - mean) ** 2), mean, jac=lambda v: 2 * (v - mean),
                               constraints=[{"type": "ineq", "fun": lambda v: rows @ v, "jac": lambda v: rows}],
                               method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    assert primal.success
    np.testing.assert_allclose(update, primal.x, atol=2e-3 * scale)
    # The dual with torchjd's ridge, solved exactly; KKT of ours: w ≥ 1/T, (w − 1/T)ᵢ (K̃ w)ᵢ = 0.
    gram = rows @ rows.T
    gram = gram / (np.trace(gram) / len(rows)) + 1e-4 * np.eye(len(rows))
    lower = np.full(len(rows), 1 / len(rows))
    np.testing.assert_allclose(update, numpy_dual_weights(gram, lower) @ rows, atol=1e-4 * scale)
    w = coefficients(made(B.DualProj, len(grads)), grads, present)[present]
    assert np.all(w >= lower - 1e-6)
    np.testing.assert_allclose((w - lower) * (gram @ w), 0.0, atol=1e-5)
    if case == "aligned":  # the mean agrees with every task: it passes unchanged
        np.testing.assert_allclose(update, mean, rtol=1e-4)


# -- ConFIG ------------------------------------------------------------------------------------------


def numpy_config(grads):
    """ConFIG (Liu et al. 2025, eq. 2): d = (Σ g_i · e) e, e ∝ pinv(U) 1, on the present gradients."""
    units = grads / np.linalg.norm(grads, axis=1, keepdims=True)
    best = np.linalg.pinv(units) @ np.ones(len(grads))
    direction = best / np.linalg.norm(best)
    return (grads @ direction).sum() * direction


@pytest.mark.parametrize("case", list(ALL_CASES))
def test_config_matches_the_pseudo_inverse_and_gives_equal_cosines(case):
    grads, present = ALL_CASES[case]
    update = aggregate(made(B.ConFIG, len(grads)), grads, present)
    rows = grads[present]
    tolerance = 3e-3 if case == "nearly_parallel" else 1e-4
    np.testing.assert_allclose(update, numpy_config(rows), rtol=tolerance, atol=tolerance * scale_of(grads, present))
    # Independent gradients: every unit gradient makes the same, positive, cosine with the update.
    cosines = rows @ update / (np.linalg.norm(rows, axis=1) * np.linalg.norm(update))
    np.testing.assert_allclose(cosines, cosines[0], atol=10 * tolerance)
    assert cosines[0] > 0
    # Its length is the sum of the gradients' projections on it.
    assert np.linalg.norm(update) == pytest.approx((rows @ update).sum() / np.linalg.norm(update), rel=tolerance)


# -- FairGrad ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(ALL_CASES))
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_fairgrad_solves_its_alpha_fair_equation(case, alpha):
    grads, present = ALL_CASES[case]
    w = coefficients(made(B.FairGrad, len(grads), alpha=alpha), grads, present)
    assert np.all(w[present] > 0) and np.all(w[~present] == 0)
    rows = grads[present].astype("float32")
    gram = (rows @ rows.T).astype(np.float64)  # the matrix the solver saw (float32), with its ridge
    gram += B.FairGrad.ridge * np.trace(gram) / len(gram) * np.eye(len(gram))
    # Optimality of the utility: g_i · d = w_i^{−1/α} for every present task.
    residual = (gram @ w[present]) * w[present] ** (1 / alpha) - 1.0
    assert np.abs(residual).max() < (1e-3 if case == "nearly_parallel" else 1e-4)
    # SciPy's bounded least squares on the same equation (as LibMTL solves it), from the uniform start.
    found = optimize.least_squares(lambda v: gram @ v - v ** (-1 / alpha), np.full(len(gram), 1 / len(gram)),
                                   bounds=(1e-12, np.inf), xtol=1e-15, ftol=1e-15, gtol=1e-15).x
    np.testing.assert_allclose(w[present], found, rtol=1e-2 if case == "nearly_parallel" else 1e-3)


def test_fairgrad_closed_forms():
    """Orthogonal gradients: w_i = K_ii^(−α/(1+α)); at α = 1 the equation is Nash-MTL's."""
    orthogonal = np.diag([1.0, 3.0, 0.2])
    for alpha in (0.5, 2.0):
        w = coefficients(set_up(B.FairGrad, alpha=alpha), orthogonal, np.ones(3, bool))
        np.testing.assert_allclose(w, np.diag(orthogonal) ** (-2 * alpha / (1 + alpha)), rtol=1e-4)  # ridge 1e-6
    grads, present = CASES["conflicting"]
    np.testing.assert_allclose(coefficients(set_up(B.FairGrad), grads, present),
                               coefficients(set_up(B.NashMTL), grads, present), rtol=1e-3)


# -- IMTL -------------------------------------------------------------------------------------------


def test_imtl_combines_the_scaled_losses_and_imtl_g():
    strategy = set_up(B.IMTL, initial_scale=0.0)
    strategy.log_scale.assign([0.5, -1.0, 2.0])
    strategy.base_weights = ops.convert_to_tensor([1.0, 2.0, 1.0])
    losses, present = np.array([0.5, 3.0, 1.0], "float32"), np.array([True, True, False])
    weights, extra = strategy.combine(ops.convert_to_tensor(losses), ops.convert_to_tensor(present))
    np.testing.assert_allclose(ops.convert_to_numpy(weights), np.exp([0.5, -1.0, 2.0]) * [1, 2, 1], rtol=1e-6)
    assert float(ops.convert_to_numpy(extra)) == pytest.approx(-(0.5 - 1.0))
    # The gradient half is IMTL-G's closed form on the (scaled) gradients.
    grads, present = CASES["conflicting"]
    np.testing.assert_allclose(coefficients(strategy, grads, present), base.numpy_imtl(grads), rtol=1e-3, atol=1e-4)


def test_imtl_learns_the_loss_scales_by_their_gradient_and_leaves_an_absent_task_alone():
    """One SGD step from s = 0: s_i ← −lr (L_i − 1) for the present tasks (∂/∂s of e^s L − s), 0 for the absent."""
    x, labels = base.problem()
    model = build([kmtl.Task("c")] + regression("gone", "b"))
    lr = 0.1
    model.compile(optimizer=keras.optimizers.SGD(lr), balancing=B.IMTL())
    first = {name: y[:32] for name, y in labels.items()}
    losses = base.task_losses(model, x[:32], first)
    model.fit(x[:32], first, batch_size=32, epochs=1, shuffle=False, verbose=0)
    expected = np.where([True, False, True], -lr * (losses - 1.0), 0.0)
    np.testing.assert_allclose(ops.convert_to_numpy(model.balancing.log_scale), expected, rtol=1e-4, atol=1e-7)


# -- CAGrad's rescale --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["conflicting", "two", "ten"])
def test_cagrad_rescale_divides_the_update_as_the_authors_code(case):
    grads, present = ALL_CASES[case]
    c = 0.5
    strategy = set_up(B.CAGrad, len(grads), c=c, rescale=0)
    w = ops.convert_to_numpy(base.compiled(strategy.conflict_averse_weights)(
        (grads @ grads.T).astype("float32"), present)).astype(np.float64)
    plain = base.numpy_cagrad(grads, present, c, w)
    for rescale, divisor in ((0, 1.0), (1, 1 + c ** 2), (2, 1 + c)):
        update = aggregate(set_up(B.CAGrad, len(grads), c=c, rescale=rescale), grads, present)
        np.testing.assert_allclose(update, plain / divisor, rtol=1e-4, atol=1e-5 * scale_of(grads, present))
    assert B.CAGrad().rescale == 1  # the default: today's 1 + c²
