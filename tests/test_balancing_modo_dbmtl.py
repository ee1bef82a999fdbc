"""MoDo and DB-MTL's two forms, each against an independent NumPy computation.

MoDo's step of the weights ``λ`` and its update are replayed over several
steps in NumPy on the raw gradient rows (the projection onto the simplex by
bisection, not by sorting), on the constructed gradient matrices of
``tests/test_aggregators.py`` (conflicting, aligned, nearly parallel, one
task absent) and on two- and ten-task matrices, with one task absent in one
step; repeated on one batch with ``ρ = 0`` its weights meet the min-norm
problem's optimality conditions. DB-MTL's two forms — the averaged gradient
norms (keras_mtl's default) and the averaged gradients (the authors' code)
— are replayed the same way. Then each trains inside ``fit`` with a task
unlabelled (the shared update checked against the formulas on the
gradients of the tasks present), and its state goes through a ``.keras``
file and the weights checkpoint ``BackupAndRestore`` writes.
"""

import doctest
import importlib

import keras
import numpy as np
import pytest
import test_aggregators as base
import test_representation
from keras import ops
from test_aggregators import CASES, compiled, grid_on, more_cases, numpy_projection, problem, set_up, task_losses
from test_balancing import build, flat, formula_gradients, regression, trunk

import keras_mtl as kmtl
from keras_mtl import balancing as B

pytestmark = pytest.mark.portable




ALL_CASES = {**CASES, **more_cases(21)}


_STEPS = {}  # one compiled step per strategy: traced once, not at every call


def aggregate(strategy, grads, present):
    """``strategy.aggregate`` on ``grads`` (T, P) split into two variables, (T, P − 2) and (T, 2); flat result.

    Run as a stateful training step runs it (``tf.function`` on TensorFlow, eagerly elsewhere).
    """
    grads = np.asarray(grads, "float32")
    parts = [ops.convert_to_tensor(grads[:, :-2]), ops.convert_to_tensor(grads[:, -2:])]
    if id(strategy) not in _STEPS:
        _STEPS[id(strategy)] = (strategy, compiled(strategy.aggregate, stateful=True))
    update = _STEPS[id(strategy)][1](parts, ops.ones(len(grads)), ops.convert_to_tensor(present))
    return np.concatenate([ops.convert_to_numpy(u).ravel() for u in update]).astype(np.float64)


def steps_of(grads, present, count=3, seed=0):
    """``count`` steps around ``grads``: fresh noise on the present rows, task 0 absent in the second step."""
    rng = np.random.default_rng(seed)
    for step in range(count):
        now = present.copy()
        if step == 1:
            now[0] = False
        moved = (grads + 0.3 * rng.normal(size=grads.shape)) * now[:, None]
        yield moved, now




def state(variable):
    return ops.convert_to_numpy(variable).astype(np.float64)


# -- configuration and documentation -------------------------------------------------------------


def test_config_round_trip_registry_and_documentation():
    base.test_config_round_trip_registry_and_documentation(B.MoDo)
    assert "MoDo" in B.__all__ and B._STRATEGIES["MoDo"] is B.MoDo and B.get(B.MoDo).gamma == 1e-3
    for cls in (B.MoDo, B.DBMTL):
        _, _, scale = cls.__doc__.partition("Scale:")
        paragraph = " ".join(scale.split("\n\n")[0].split())
        assert "LibMTL" in paragraph and "torchjd" in paragraph, cls.__name__
    # The docstrings name the defaults and the departures from the authors' code.
    assert "three consecutive mini-batches" in B.MoDo.__doc__ and "γ = 10⁻³" in B.MoDo.__doc__
    assert "form=\"norms\"`` (the default)" in B.DBMTL.__doc__ and "T × P" in B.DBMTL.__doc__


def test_non_default_arguments_survive_the_config_and_bad_ones_are_refused():
    for strategy in (B.MoDo(gamma=0.2, rho=0.0, wrt="representation"),
                     B.DBMTL(beta=0.5, beta_sigma=0.5, form="authors", num_parameters=7), B.DBMTL(form="norms")):
        config = strategy.get_config()
        assert type(strategy).from_config(config).get_config() == config
    for make, match in ((lambda: B.MoDo(gamma=0.0), "gamma > 0"), (lambda: B.MoDo(rho=-0.1), "rho >= 0"),
                        (lambda: B.DBMTL(form="gradients"), "form must be one of"),
                        (lambda: B.DBMTL(form="authors"), "num_parameters=DBMTL.shared_parameters"),
                        (lambda: B.DBMTL(form="authors", num_parameters=4, wrt="representation"), "wrt='parameters'"),
                        (lambda: B.DBMTL(num_parameters=4), "form='authors' only")):
        with pytest.raises(ValueError, match=match):
            make()
    # A DBMTL config written before the forms existed loads as the norms' form.
    old = {k: v for k, v in B.DBMTL().get_config().items() if k != "form"}
    assert B.DBMTL.from_config(old).form == "norms"


def test_doctest_examples():
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for cls in (B.MoDo, B.DBMTL):
        result = doctest.testmod(importlib.import_module(cls.__module__), optionflags=flags)
        assert result.attempted > 0 and result.failed == 0, cls.__module__


# -- MoDo -------------------------------------------------------------------------------------------


def numpy_modo(grads, present, lam, gamma, rho, second=None):
    """One MoDo step (Chen et al. 2023, Algorithm 1) on the present tasks' shares of λ.

    ``second`` is the independent sample ``G₂`` (default: the same batch, as keras_mtl takes it).
    Returns the update ``G₃ᵀ λ`` (``G₃ = grads``) and the new λ (absent tasks' weights kept).
    """
    second = grads if second is None else second
    idx = np.flatnonzero(present)
    total = lam[idx].sum()
    shares = lam[idx] / total
    g1, g2 = grads[idx], second[idx]
    shares = numpy_projection(shares - gamma * (g1 @ (g2.T @ shares) + rho * shares))
    new = lam.copy()
    new[idx] = total * shares
    return shares @ grads[idx], new


@pytest.mark.parametrize("case", list(ALL_CASES))
def test_modo_steps_lambda_on_the_simplex_and_updates_with_the_new_lambda(case):
    grads, present = ALL_CASES[case]
    num_tasks = len(grads)
    gamma = 0.5 / np.linalg.eigvalsh(grads @ grads.T).max()  # large enough for the projection to bite
    for rho in (0.1, 2.0):
        strategy = set_up(B.MoDo, num_tasks, gamma=gamma, rho=rho)
        lam = np.full(num_tasks, 1 / num_tasks)
        for moved, now in steps_of(grads, present):
            expected, lam = numpy_modo(moved, now, lam, gamma, rho)
            before = state(strategy.task_weights)
            found = aggregate(strategy, moved, now)
            scale = np.linalg.norm(moved[now], axis=1).max()
            np.testing.assert_allclose(found, expected, rtol=2e-4, atol=2e-5 * scale)
            np.testing.assert_allclose(state(strategy.task_weights), lam, rtol=1e-4, atol=1e-6)
            np.testing.assert_array_equal(state(strategy.task_weights)[~now], before[~now])  # absent: kept
        assert state(strategy.task_weights).sum() == pytest.approx(1.0, abs=1e-5)
        assert np.abs(lam - 1 / num_tasks)[present].max() > 1e-3  # λ moved: the comparison could fail


def test_modo_at_the_default_step_barely_moves_lambda():
    """γ = 10⁻³: λ stays inside the simplex, so the projection only recentres: Δλ = −γ (v − mean v), v = Kλ + ρλ."""
    grads, present = CASES["conflicting"]
    strategy = set_up(B.MoDo)
    found = aggregate(strategy, grads, present)
    expected, lam = numpy_modo(grads, present, np.full(3, 1 / 3), 1e-3, 0.1)
    np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state(strategy.task_weights), lam, rtol=1e-5)
    v = grads @ grads.T @ np.full(3, 1 / 3) + 0.1 / 3
    np.testing.assert_allclose(lam - 1 / 3, -1e-3 * (v - v.mean()), rtol=1e-3, atol=1e-8)
    assert 1e-3 < np.abs(lam - 1 / 3).max() < 0.05


def test_modo_uses_one_batch_for_both_samples_and_the_update():
    """keras_mtl's step is the paper's with G₁ = G₂ = G₃ = this batch; independent G₂ would differ."""
    grads, present = ALL_CASES["two"]
    other = grads + np.random.default_rng(5).normal(size=grads.shape)
    gamma = 0.5 / np.linalg.eigvalsh(grads @ grads.T).max()
    same, _ = numpy_modo(grads, present, np.full(2, 0.5), gamma, 0.1)
    double, _ = numpy_modo(grads, present, np.full(2, 0.5), gamma, 0.1, second=other)
    found = aggregate(set_up(B.MoDo, 2, gamma=gamma, rho=0.1), grads, present)
    np.testing.assert_allclose(found, same, rtol=1e-4, atol=1e-6)
    assert np.abs(same - double).max() > 1e-2


def test_modo_repeated_on_one_batch_reaches_the_min_norm_point():
    """ρ = 0, steps 1/λ_max: projected gradient descent on ½‖Gᵀλ‖², so λ ends at MGDA's weights (KKT)."""
    rng = np.random.default_rng(2)
    grads = rng.normal(size=(3, 6))
    grads[1] = -0.8 * grads[0] + 0.6 * grads[1]  # a conflicting pair, well conditioned
    present = np.ones(3, bool)
    gram = grads @ grads.T
    strategy = set_up(B.MoDo, gamma=1.0 / np.linalg.eigvalsh(gram).max(), rho=0.0)
    step = compiled(strategy.task_coefficients, stateful=True)
    flags = ops.convert_to_tensor(present)
    for _ in range(200):
        step(ops.convert_to_tensor(gram.astype("float32")), flags)
    lam = state(strategy.task_weights)
    norm = np.sum((lam @ grads) ** 2)
    assert norm <= np.min(np.sum((grid_on(present) @ grads) ** 2, axis=1)) * (1 + 1e-3)
    assert np.all(grads @ (lam @ grads) >= norm * (1 - 1e-3))  # (Kλ)_i ≥ λᵀKλ


def test_modo_xla_gives_the_graph_result():
    grads, present = CASES["one_absent"]
    gamma = 0.5 / np.linalg.eigvalsh(grads @ grads.T).max()
    reference = aggregate(set_up(B.MoDo, gamma=gamma), grads, present)
    strategy = set_up(B.MoDo, gamma=gamma)
    update = base.xla_aggregate(strategy, grads, present)
    np.testing.assert_allclose(ops.convert_to_numpy(update[0]).ravel(), reference, rtol=1e-5, atol=1e-6)


def test_modo_absent_task_then_training_then_a_keras_file(tmp_path):
    base.test_absent_task_then_training_then_a_keras_file(B.MoDo, tmp_path)


def test_modo_inside_fit_takes_one_step_of_lambda_and_keeps_the_absent_weight():
    """One SGD step with task ``gone`` unlabelled: update = Σ λ_i g_i with λ one NumPy step from uniform."""
    x, labels = problem()
    first = {name: y[:32] for name, y in labels.items()}
    model = build([kmtl.Task("c")] + regression("gone", "b"))  # fused columns: c, gone, b
    gamma, rho, lr = 4.0, 0.1, 0.1
    model.compile(optimizer=keras.optimizers.SGD(lr), balancing=B.MoDo(gamma=gamma, rho=rho))
    shared = trunk(model)
    grads = formula_gradients(model, x[:32], first, shared)  # tasks c and b, unweighted
    before = flat(shared)
    model.fit(x[:32], first, batch_size=32, epochs=1, shuffle=False, verbose=0)
    applied = (before - flat(shared)) / lr
    expected, lam = numpy_modo(np.stack([grads[0], np.zeros_like(grads[0]), grads[1]]),
                               np.array([True, False, True]), np.full(3, 1 / 3), gamma, rho)
    np.testing.assert_allclose(applied, expected, rtol=2e-3, atol=1e-5)
    found = state(model.balancing.task_weights)
    np.testing.assert_allclose(found, lam, rtol=1e-3, atol=1e-6)
    assert found[1] == pytest.approx(1 / 3, abs=1e-7) and abs(found[0] - 1 / 3) > 1e-3


@pytest.mark.parametrize("cls", [B.MoDo], ids=lambda c: c.__name__)
def test_modo_trains_on_the_representation(cls, tmp_path):
    test_representation.test_every_aggregator_trains_on_the_representation(cls, tmp_path)


# -- DB-MTL: the two forms -------------------------------------------------------------------------


def numpy_dbmtl(step_grads, step_present, beta, beta_sigma, form):
    """DB-MTL's update of every step in NumPy: the norms' form or the authors' (LibMTL's DB_MTL).

    Per-task step counts; an absent task's average and count stay, and it is left out of the update.
    """
    num_tasks, size = step_grads[0].shape
    norms, means, steps, updates = np.zeros(num_tasks), np.zeros((num_tasks, size)), np.zeros(num_tasks), []
    for grads, present in zip(step_grads, step_present):
        steps = steps + present
        b = beta / np.maximum(steps, 1) ** beta_sigma
        idx = np.flatnonzero(present)
        if form == "norms":
            norms[idx] = b[idx] * norms[idx] + (1 - b[idx]) * np.linalg.norm(grads[idx], axis=1)
            updates.append(sum(norms[idx].max() / norms[i] * grads[i] for i in idx))
        else:
            means[idx] = b[idx, None] * means[idx] + (1 - b[idx, None]) * grads[idx]
            lengths = np.linalg.norm(means, axis=1)
            updates.append(sum(lengths[idx].max() / lengths[i] * means[i] for i in idx))
    return np.array(updates), (norms if form == "norms" else means), steps


def made_dbmtl(form, num_tasks, size, **kwargs):
    extra = {"num_parameters": size} if form == "authors" else {}
    return set_up(B.DBMTL, num_tasks, form=form, **extra, **kwargs)


@pytest.mark.parametrize("case", list(ALL_CASES))
@pytest.mark.parametrize("form", ["norms", "authors"])
def test_dbmtl_forms_follow_their_averages_over_several_steps(case, form):
    """Four steps, task 0 absent in the second; β_σ = 0.5 makes each task's count matter."""
    grads, present = ALL_CASES[case]
    steps = list(steps_of(grads, present, count=4, seed=3))
    expected, average, counts = numpy_dbmtl([g for g, _ in steps], [p for _, p in steps], 0.9, 0.5, form)
    strategy = made_dbmtl(form, *grads.shape, beta=0.9, beta_sigma=0.5)
    for (moved, now), wanted in zip(steps, expected):
        scale = np.linalg.norm(moved[now], axis=1).max()
        np.testing.assert_allclose(aggregate(strategy, moved, now), wanted, rtol=2e-4, atol=2e-5 * scale)
    kept = strategy.gradient_average if form == "authors" else strategy.norm_average
    np.testing.assert_allclose(state(kept), average, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(state(strategy.steps), counts)
    assert counts[0] == 3 and (counts[present] == 3).sum() == 1  # task 0 missed one step


@pytest.mark.parametrize("num_tasks", [2, 3, 10])
def test_dbmtl_forms_agree_without_averaging_and_differ_with_it(num_tasks):
    rng = np.random.default_rng(num_tasks)
    size = 9
    step_grads = [rng.normal(size=(num_tasks, size)) * np.exp(rng.uniform(-2, 2, size=(num_tasks, 1)))
                  for _ in range(3)]
    present = np.ones(num_tasks, bool)
    found = {}
    for beta in (0.0, 0.9):
        for form in ("norms", "authors"):
            strategy = made_dbmtl(form, num_tasks, size, beta=beta)
            found[beta, form] = np.array([aggregate(strategy, g, present) for g in step_grads])
            reference, _, _ = numpy_dbmtl(step_grads, [present] * 3, beta, 0.0, form)
            np.testing.assert_allclose(found[beta, form], reference, rtol=2e-4,
                                       atol=2e-5 * np.abs(reference).max())
    np.testing.assert_allclose(found[0.0, "norms"], found[0.0, "authors"], rtol=1e-4, atol=1e-5)
    # β = 0.9 from a zero start: the authors' first update is 0.1 times the norms' (m = 0.1 g).
    np.testing.assert_allclose(found[0.9, "authors"][0], 0.1 * found[0.9, "norms"][0], rtol=1e-4, atol=1e-6)
    assert np.abs(found[0.9, "authors"][2] - found[0.9, "norms"][2]).max() > 0.05 * np.abs(found[0.9, "norms"][2]).max()


def test_dbmtl_authors_form_xla_gives_the_graph_result():
    grads, present = CASES["one_absent"]
    reference = aggregate(made_dbmtl("authors", 3, 6), grads, present)
    strategy = made_dbmtl("authors", 3, 6)
    update = base.xla_aggregate(strategy, grads, present)
    np.testing.assert_allclose(ops.convert_to_numpy(update[0]).ravel(), reference, rtol=1e-5, atol=1e-6)


def test_dbmtl_authors_form_inside_fit_then_a_keras_file_and_a_checkpoint(tmp_path):
    """One step with task ``gone`` unlabelled, against NumPy on ∇ log L_i; then training, save, reload."""
    x, labels = problem()
    first = {name: y[:32] for name, y in labels.items()}
    model = build([kmtl.Task("c")] + regression("gone", "b"))
    size = B.DBMTL.shared_parameters(model)
    model.compile(optimizer=keras.optimizers.SGD(0.1), balancing=B.DBMTL(form="authors", num_parameters=size))
    assert size == sum(int(np.prod(v.shape)) for v in model.per_task_variables()) == 6 * 8 + 8
    shared = trunk(model)
    grads = formula_gradients(model, x[:32], first, shared) / task_losses(model, x[:32], first)[[0, 2], None]
    before = flat(shared)
    model.fit(x[:32], first, batch_size=32, epochs=1, shuffle=False, verbose=0)
    applied = (before - flat(shared)) / 0.1
    rows = np.stack([grads[0], np.zeros_like(grads[0]), grads[1]])
    expected, average, counts = numpy_dbmtl([rows], [np.array([True, False, True])], 0.9, 0.0, "authors")
    np.testing.assert_allclose(applied, expected[0], rtol=2e-3, atol=1e-6)
    strategy = model.balancing
    np.testing.assert_allclose(state(strategy.gradient_average), average, rtol=2e-3, atol=1e-7)
    np.testing.assert_array_equal(state(strategy.steps), counts)

    history = model.fit(x, labels, batch_size=32, epochs=2, shuffle=False, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    trained = [state(v) for v in strategy.variables]
    assert trained[1][1] > 0 and np.abs(trained[0][1]).max() > 0  # task gone has been seen since
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.balancing.get_config() == strategy.get_config()
    for saved, restored in zip(trained, loaded.balancing.variables, strict=True):
        np.testing.assert_array_equal(state(restored), saved)
    # BackupAndRestore's checkpoint is the weights file: a fresh model of the same form takes the state.
    model.save_weights(tmp_path / "backup.weights.h5")
    fresh = build([kmtl.Task("c")] + regression("gone", "b"), seed=1)
    fresh.compile(optimizer=keras.optimizers.SGD(0.1), balancing=B.DBMTL(form="authors", num_parameters=size))
    fresh.load_weights(tmp_path / "backup.weights.h5")
    for saved, restored in zip(trained, fresh.balancing.variables, strict=True):
        np.testing.assert_array_equal(state(restored), saved)


def test_dbmtl_authors_form_of_the_wrong_size_says_how_to_size_it():
    x, labels = problem(n=32)
    model = build([kmtl.Task("c")] + regression("gone", "b"))
    model.compile(optimizer="sgd", balancing=B.DBMTL(form="authors", num_parameters=5))
    with pytest.raises(ValueError, match=r"num_parameters=5 .* sees 56: pass num_parameters=DBMTL.shared_parameters"):
        model.fit(x, labels, batch_size=32, epochs=1, verbose=0)


def test_modo_state_survives_the_checkpoint_backup_and_restore_writes(tmp_path):
    """MoDo's λ through the weights file that BackupAndRestore writes."""
    x, labels = problem(n=64)
    model = build([kmtl.Task("c")] + regression("gone", "b"))
    model.compile(optimizer=keras.optimizers.SGD(0.1), balancing=B.MoDo(gamma=2.0))
    model.fit(x, labels, batch_size=32, epochs=1, shuffle=False, verbose=0)
    lam = state(model.balancing.task_weights)
    assert np.abs(lam - 1 / 3).max() > 1e-4
    model.save_weights(tmp_path / "backup.weights.h5")
    fresh = build([kmtl.Task("c")] + regression("gone", "b"))
    fresh.compile(optimizer=keras.optimizers.SGD(0.1), balancing=B.MoDo(gamma=2.0))
    fresh.load_weights(tmp_path / "backup.weights.h5")
    np.testing.assert_array_equal(state(fresh.balancing.task_weights), lam)
