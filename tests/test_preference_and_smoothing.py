"""COSMOS and PBI (torchjd's preference scalarisations) and CRMOGM (its weight smoothing), against NumPy.

COSMOS's and PBI's loss weights are checked as derivatives: central finite
differences (float64 NumPy) of the objectives written out here from their
papers' formulas, at 2, 3 and 10 tasks with one task absent, with unequal
loss weights and a reference point. CRMOGM is replayed step by step against
a NumPy moving average: with two tasks around MGDA, whose weights have a
closed form, and around UPGrad with tasks dropping in and out. Then the
shared contract (no task present, an absent task, XLA, training with a
missing task, a ``.keras`` file, the representation); training, saving,
resuming and replicas of every registered strategy are covered by
test_balancing.py, test_resume.py, test_distribute.py and test_combinations.py.
"""

import doctest
import importlib

import keras
import numpy as np
import pytest
import test_aggregators as base
import test_aggregators_new as new
import test_representation
from keras import ops
from test_aggregators import CASES, compiled, more_cases, problem, set_up, task_losses
from test_balancing import build, flat, formula_gradients, regression, trunk
from test_weightings_new import SIZES, combine, finite_difference, losses_and_presence

import keras_mtl as kmtl
from keras_mtl import balancing as B

pytestmark = pytest.mark.portable

SCALARISATIONS = [B.COSMOS, B.PBI]


def numpy_cosmos(losses, present, preference, lam):
    r, values = preference[present], losses[present]
    return r @ values - lam * (r @ values) / (np.linalg.norm(r) * np.linalg.norm(values))


def numpy_pbi(losses, present, preference, theta, reference):
    shifted = (losses - reference)[present]
    direction = preference[present] / np.linalg.norm(preference[present])
    along = shifted @ direction
    return along + theta * np.linalg.norm(shifted - along * direction)


def made(cls, num_tasks, base_weights, **kwargs):
    strategy = cls(**kwargs)
    strategy.setup([f"t{i}" for i in range(num_tasks)], list(base_weights))
    return strategy


def smoothed_step(strategy, grads, present):
    """One ``aggregate`` of a stateful strategy (compiled as a training step compiles it), flat."""
    grads = np.asarray(grads, "float32")
    run = compiled(strategy.aggregate, stateful=True)
    update = run([ops.convert_to_tensor(grads)], ops.ones(len(grads)), ops.convert_to_tensor(present))
    return ops.convert_to_numpy(update[0]).astype(np.float64).ravel()


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [*SCALARISATIONS, B.CRMOGM], ids=lambda c: c.__name__)
def test_config_round_trip_registry_and_documentation(cls):
    base.test_config_round_trip_registry_and_documentation(cls)


def test_non_default_arguments_survive_the_config_and_bad_ones_are_refused():
    for strategy in (B.COSMOS(lambda_=0.3, epsilon=1e-6), B.PBI(theta=2.0, reference=[0.1, 0.0], epsilon=1e-9),
                     B.CRMOGM(B.MGDA(normalize="loss+", wrt="representation"), alpha=0.5),
                     B.CRMOGM(wrt="representation")):
        config = strategy.get_config()
        assert type(strategy).from_config(config).get_config() == config
    restored = B.CRMOGM.from_config(B.CRMOGM(B.CAGrad(c=0.2), alpha=0.7).get_config())
    assert type(restored.aggregator) is B.CAGrad and restored.aggregator.c == 0.2 and restored.alpha == 0.7
    assert B.CRMOGM(wrt="representation").aggregator.wrt == "representation"
    new.test_every_aggregator_states_its_scale_against_libmtl_and_torchjd(B.CRMOGM)
    for make, match in ((lambda: B.COSMOS(lambda_=-1.0), "lambda_ must be"), (lambda: B.PBI(theta=-1.0), "theta"),
                        (lambda: B.CRMOGM(alpha=1.5), r"alpha must be in \[0, 1\]"),
                        (lambda: B.CRMOGM(B.GradDrop()), "GradDrop does not"),
                        (lambda: B.CRMOGM(B.TrimmedMean()), "TrimmedMean does not"),
                        (lambda: B.CRMOGM(B.DBMTL()), "DBMTL does not"),
                        (lambda: B.CRMOGM(B.GLS()), "GLS does not"),
                        (lambda: B.CRMOGM(B.MGDA(), wrt="representation"), r"pass MGDA\(wrt='representation'\)"),
                        (lambda: made(B.PBI, 3, [1.0] * 3, reference=[0.0, 0.0]), "2 values for 3 tasks")):
        with pytest.raises(ValueError, match=match):
            make()


def test_doctest_examples():
    for cls in (*SCALARISATIONS, B.CRMOGM):
        result = doctest.testmod(importlib.import_module(cls.__module__), optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, cls.__module__


# -- COSMOS and PBI ------------------------------------------------------------------------------


@pytest.mark.parametrize("num_tasks", SIZES)
@pytest.mark.parametrize("lam", [0.5, 3.0])
def test_cosmos_weights_are_the_derivatives_of_its_objective(num_tasks, lam):
    losses, present = losses_and_presence(num_tasks)
    preference = np.linspace(0.5, 2.0, num_tasks)
    strategy = made(B.COSMOS, num_tasks, preference, lambda_=lam, epsilon=0.0)
    weights, extra = combine(strategy, losses, present)

    def objective(values):
        return numpy_cosmos(values, present, preference, lam)

    np.testing.assert_allclose(weights, finite_difference(objective, losses, present), rtol=1e-4, atol=1e-6)
    assert weights[1] == 0.0
    assert extra + weights @ losses == pytest.approx(objective(losses), rel=1e-5)
    # Losses along the preference ray: the reward is at its maximum, its gradient zero.
    on_ray = np.where(present, 0.7 * preference, 0.0)
    weights, _ = combine(strategy, on_ray, present)
    np.testing.assert_allclose(weights, np.where(present, preference, 0.0), rtol=1e-5, atol=1e-6)


def test_cosmos_without_the_reward_is_the_weighted_sum():
    losses, present = losses_and_presence(3)
    weights, extra = combine(made(B.COSMOS, 3, [1.0, 2.0, 3.0], lambda_=0.0), losses, present)
    np.testing.assert_allclose(weights, [1.0, 0.0, 3.0])
    assert extra == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("num_tasks", SIZES)
@pytest.mark.parametrize("theta", [0.0, 5.0])
def test_pbi_weights_are_the_derivatives_of_its_objective(num_tasks, theta):
    losses, present = losses_and_presence(num_tasks)
    preference = np.linspace(2.0, 0.5, num_tasks)
    reference = np.full(num_tasks, 0.05)
    strategy = made(B.PBI, num_tasks, preference, theta=theta, reference=list(reference), epsilon=0.0)
    weights, extra = combine(strategy, losses, present)

    def objective(values):
        return numpy_pbi(values, present, preference, theta, reference)

    np.testing.assert_allclose(weights, finite_difference(objective, losses, present), rtol=1e-4, atol=1e-6)
    assert weights[1] == 0.0
    assert extra + weights @ losses == pytest.approx(objective(losses), rel=1e-5)
    if theta == 0.0:  # the projection on the unit preference direction
        unit = np.where(present, preference, 0.0) / np.linalg.norm(preference[present])
        np.testing.assert_allclose(weights, unit, rtol=1e-5)


def test_no_task_present_gives_no_weight_and_no_loss():
    for cls in SCALARISATIONS:
        weights, extra = combine(made(cls, 3, [1.0] * 3), np.zeros(3), np.zeros(3, bool))
        np.testing.assert_array_equal(weights, 0.0)
        assert extra == 0.0


@pytest.mark.parametrize("cls", SCALARISATIONS, ids=lambda c: c.__name__)
def test_absent_task_in_fit_adds_nothing_and_training_lowers_the_losses(cls, tmp_path):
    """One step with task ``gone`` unlabelled: its head stays, the shared update is the other two tasks'."""
    x, labels = problem()
    first = {name: y[:32] for name, y in labels.items()}
    model = build([kmtl.Task("c")] + regression("gone", "b"))  # fused columns: c, gone, b
    model.compile(optimizer=keras.optimizers.SGD(0.1), balancing=cls())
    shared = trunk(model)
    grads = formula_gradients(model, x[:32], first, shared)  # tasks c and b, unweighted
    losses = task_losses(model, x[:32], first)[[0, 2]]
    before = flat(shared)
    gone_head = model.task_heads.dense.kernel.numpy()[:, 1].copy()
    model.fit(x[:32], first, batch_size=32, epochs=1, shuffle=False, verbose=0)

    np.testing.assert_array_equal(model.task_heads.dense.kernel.numpy()[:, 1], gone_head)
    both, ones = np.ones(2, bool), np.ones(2)
    if cls is B.COSMOS:
        def objective(values):
            return numpy_cosmos(values, both, ones, 1.0)
    else:
        def objective(values):
            return numpy_pbi(values, both, ones, 5.0, np.zeros(2))
    weights = finite_difference(objective, losses.astype(np.float64), both)
    np.testing.assert_allclose((before - flat(shared)) / 0.1, weights @ grads, rtol=2e-3, atol=1e-5)

    model.fit(x, labels, batch_size=32, epochs=4, shuffle=False, verbose=0)
    base.reloaded_the_same(model, cls, x, tmp_path)


# -- CRMOGM ----------------------------------------------------------------------------------------


def mgda_two_tasks(g):
    """The min-norm point of two gradients in closed form (Sener & Koltun, 2018, Algorithm 1)."""
    first, second = g
    gamma = np.clip((second - first) @ second / max((first - second) @ (first - second), 1e-12), 0.0, 1.0)
    return np.array([gamma, 1.0 - gamma])


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_crmogm_averages_mgda_s_closed_form_weights_over_steps(alpha):
    rng = np.random.default_rng(3)
    strategy = set_up(B.CRMOGM, 2, aggregator=B.MGDA(), alpha=alpha)
    presences = [np.array([True, True]), np.array([False, True]), np.array([True, True]), np.array([True, True])]
    average, started = np.zeros(2), np.zeros(2, bool)
    for step, present in enumerate(presences):
        grads = rng.normal(size=(2, 5))
        grads[1] = -0.5 * grads[0] + grads[1]  # in conflict
        fresh = mgda_two_tasks(grads) if present.all() else present.astype(float)  # one task: itself
        average = np.where(present, np.where(started, alpha * average + (1 - alpha) * fresh, fresh), average)
        started |= present
        expected = (average * present) @ (grads * present[:, None])
        np.testing.assert_allclose(smoothed_step(strategy, grads, present), expected, rtol=2e-4, atol=1e-5,
                                   err_msg=f"step {step}")
        np.testing.assert_allclose(ops.convert_to_numpy(strategy.average), average, rtol=2e-4, atol=1e-6)


def test_crmogm_around_upgrad_keeps_an_absent_task_s_average_for_its_return():
    """Ten tasks, some absent at each step; the wrapped weights come from a separate UPGrad on the same problem."""
    alpha = 0.8
    grads, _ = more_cases(11)["ten"]
    rng = np.random.default_rng(4)
    strategy = set_up(B.CRMOGM, 10, aggregator=B.UPGrad(), alpha=alpha)
    reference = set_up(B.UPGrad, 10)
    average, started = np.zeros(10), np.zeros(10, bool)
    for step in range(4):
        present = rng.random(10) > 0.3
        present[step] = step != 2  # task 2 absent at step 2, then back
        step_grads = grads + 0.1 * rng.normal(size=grads.shape)
        fresh = new.coefficients(reference, step_grads * present[:, None], present) * present
        average = np.where(present, np.where(started, alpha * average + (1 - alpha) * fresh, fresh), average)
        started |= present
        expected = (average * present) @ (step_grads * present[:, None])
        np.testing.assert_allclose(smoothed_step(strategy, step_grads, present), expected, rtol=1e-3, atol=1e-5,
                                   err_msg=f"step {step}")


def test_crmogm_contract_no_task_an_absent_task_and_xla():
    strategy = set_up(B.CRMOGM, 3)
    noise = np.random.default_rng(1).normal(size=(3, 6))
    np.testing.assert_array_equal(smoothed_step(strategy, noise, np.zeros(3, bool)), 0.0)
    np.testing.assert_array_equal(ops.convert_to_numpy(strategy.started), 0.0)  # nothing was seen
    grads, present = CASES["one_absent"]
    noisy = grads.copy()
    noisy[1] = 5.0
    alone = smoothed_step(set_up(B.CRMOGM, 2), grads[[0, 2]], np.ones(2, bool))
    np.testing.assert_allclose(smoothed_step(set_up(B.CRMOGM, 3), noisy, present), alone, rtol=2e-4, atol=1e-5)
    grads, present = CASES["conflicting"]
    reference = smoothed_step(set_up(B.CRMOGM, 3), grads, present)
    update = base.xla_aggregate(set_up(B.CRMOGM, 3), grads, present)
    np.testing.assert_allclose(ops.convert_to_numpy(update[0]).ravel(), reference, rtol=2e-4, atol=1e-5)


def test_crmogm_absent_task_then_training_then_a_keras_file(tmp_path):
    base.test_absent_task_then_training_then_a_keras_file(B.CRMOGM, tmp_path)


def test_crmogm_trains_on_the_representation(tmp_path):
    test_representation.test_every_aggregator_trains_on_the_representation(B.CRMOGM, tmp_path)
