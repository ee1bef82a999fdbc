"""Krum and TrimmedMean (torchjd's robust aggregators), checked against NumPy and SciPy.

Krum's scores and selection are written out here from Blanchard et al.'s
definition on the raw gradient vectors (distances by ``numpy.linalg.norm``,
not from the Gram matrix the strategy uses); TrimmedMean against
``scipy.stats.trim_mean`` over the present tasks. The contract every
aggregator shares (no task present, an absent task, XLA, training with a
missing task, a ``.keras`` file) is checked as for the others.
"""

import keras
import numpy as np
import pytest
import test_aggregators as base
import test_aggregators_new as new
from keras import ops
from scipy import stats
from test_aggregators import CASES, aggregate, more_cases, set_up
from test_balancing import build, flat, formula_gradients, regression, trunk

import keras_mtl as kmtl
from keras_mtl import balancing as B

pytestmark = pytest.mark.portable

ROBUST = [B.Krum, B.TrimmedMean]


def _cases():
    """CASES and the ten-task matrix, plus five tasks with one outlier and a tie in the scores."""
    found = {**CASES, "ten": more_cases(11)["ten"]}
    rng = np.random.default_rng(5)
    five = rng.normal(size=6) + 0.2 * rng.normal(size=(5, 6))
    five[3] = -20.0 * five[3]
    found["outlier"] = (five, np.ones(5, bool))
    tie = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # every score equal
    found["tie"] = (tie, np.ones(4, bool))
    return found


ALL_CASES = _cases()


def numpy_krum(grads, present, n_byzantine, n_selected, squared=True):
    rows = np.flatnonzero(present)
    n = len(rows)
    if n < n_byzantine + 3:
        return grads[rows].mean(axis=0)
    scores = []
    for i in rows:
        d = sorted(np.linalg.norm(grads[i] - grads[j]) ** (2 if squared else 1) for j in rows if j != i)
        scores.append(sum(d[:n - n_byzantine - 2]))
    chosen = rows[np.argsort(scores, kind="stable")[:min(n_selected, n)]]
    return grads[chosen].mean(axis=0)


@pytest.mark.parametrize("cls", ROBUST, ids=lambda c: c.__name__)
def test_config_registry_documentation_and_scale(cls):
    base.test_config_round_trip_registry_and_documentation(cls)
    new.test_every_aggregator_states_its_scale_against_libmtl_and_torchjd(cls)
    strategy = cls(**({"n_byzantine": 1, "n_selected": 2, "distances": "euclidean"} if cls is B.Krum
                      else {"trim_number": 2}))
    assert cls.from_config(strategy.get_config()).get_config() == strategy.get_config()


@pytest.mark.parametrize(("strategy", "tasks", "match"), [
    (B.Krum(n_byzantine=1), 3, "at least 4 tasks"), (B.Krum(n_selected=4), 3, "n_selected ≤ 3"),
    (B.TrimmedMean(trim_number=2), 4, "at least 5 tasks")])
def test_too_few_tasks_are_refused_with_the_fix(strategy, tasks, match):
    with pytest.raises(ValueError, match=match):
        strategy.setup([f"t{i}" for i in range(tasks)], [1.0] * tasks)


def test_bad_arguments_are_refused():
    for make, match in ((lambda: B.Krum(n_byzantine=-1), "n_byzantine"), (lambda: B.Krum(n_selected=0), "n_selected"),
                        (lambda: B.Krum(distances="l1"), "distances"), (lambda: B.TrimmedMean(-1), "trim_number"),
                        (lambda: B.TrimmedMean(wrt="representation"), "wrt")):
        with pytest.raises(ValueError, match=match):
            make()


KRUM_SETTINGS = [(0, 1, "squared"), (1, 2, "squared"), (0, 2, "euclidean"), (2, 1, "euclidean")]


@pytest.mark.parametrize(("case", "n_byzantine", "n_selected", "distances"), [
    (case, *setting) for case, (grads, _) in ALL_CASES.items() for setting in KRUM_SETTINGS
    if len(grads) >= max(setting[0] + 3, setting[1])])  # the model refuses the others (tested above)
def test_krum_averages_the_gradients_of_lowest_score(case, n_byzantine, n_selected, distances):
    grads, present = ALL_CASES[case]
    strategy = set_up(B.Krum, len(grads), n_byzantine=n_byzantine, n_selected=n_selected, distances=distances)
    expected = numpy_krum(grads, present, n_byzantine, n_selected, squared=distances == "squared")
    found = new.aggregate(strategy, grads, present)
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-5)


def test_krum_leaves_the_outlier_out_and_breaks_ties_by_task_order():
    grads, present = ALL_CASES["outlier"]
    strategy = set_up(B.Krum, 5, n_byzantine=1, n_selected=4)
    np.testing.assert_allclose(new.aggregate(strategy, grads, present), np.delete(grads, 3, axis=0).mean(axis=0),
                               rtol=1e-4, atol=1e-5)
    grads, present = ALL_CASES["tie"]
    np.testing.assert_allclose(new.aggregate(set_up(B.Krum, 4, n_selected=2), grads, present), grads[:2].mean(axis=0),
                               atol=1e-6)


@pytest.mark.parametrize(("case", "trim_number"), [
    (case, trim) for case, (grads, _) in ALL_CASES.items() for trim in (0, 1, 2) if len(grads) >= 2 * trim + 1])
def test_trimmed_mean_is_scipy_s_trimmed_mean_of_the_present_tasks(case, trim_number):
    grads, present = ALL_CASES[case]
    rows = grads[present]
    trim = min(trim_number, (len(rows) - 1) // 2)  # the median when too few tasks are present
    expected = stats.trim_mean(rows, (trim + 0.5) / len(rows), axis=0)  # cuts int(proportion · n) = trim
    strategy = set_up(B.TrimmedMean, len(grads), trim_number=trim_number)
    np.testing.assert_allclose(new.aggregate(strategy, grads, present), expected, rtol=1e-5, atol=1e-6)
    if trim == 0:
        np.testing.assert_allclose(expected, rows.mean(axis=0))


@pytest.mark.parametrize("cls", ROBUST, ids=lambda c: c.__name__)
def test_no_task_present_and_an_absent_task(cls):
    strategy = set_up(cls, 4)
    grads = np.random.default_rng(1).normal(size=(4, 6))
    np.testing.assert_array_equal(aggregate(strategy, grads, np.zeros(4, bool)), 0.0)
    present = np.array([True, True, False, True])
    noisy = grads.copy()
    noisy[2] = 50.0  # whatever the absent row holds
    alone = aggregate(set_up(cls, 3), grads[present], np.ones(3, bool))
    np.testing.assert_allclose(aggregate(strategy, noisy, present), alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", ROBUST, ids=lambda c: c.__name__)
def test_compiles_with_xla_and_gives_the_graph_result(cls):
    grads, present = ALL_CASES["outlier"]
    update = base.xla_aggregate(set_up(cls, 5), grads, present)
    np.testing.assert_allclose(ops.convert_to_numpy(update[0]).ravel(), aggregate(set_up(cls, 5), grads, present),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", ROBUST, ids=lambda c: c.__name__)
def test_absent_task_then_training_then_a_keras_file(cls, tmp_path):
    """One step with task ``gone`` unlabelled: two tasks present, too few to trim or score, so their mean."""
    x, labels = base.problem()
    model = build([kmtl.Task("c")] + regression("gone", "b"))
    model.compile(optimizer=keras.optimizers.SGD(0.1), balancing=cls())
    first = {name: y[:32] for name, y in labels.items()}
    shared = trunk(model)
    grads = formula_gradients(model, x[:32], first, shared)  # tasks c and b
    before = flat(shared)
    model.fit(x[:32], first, batch_size=32, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose((before - flat(shared)) / 0.1, grads.mean(axis=0), rtol=2e-3, atol=1e-5)

    start = base.task_losses(model, x, labels).sum()
    model.fit(x, labels, batch_size=32, epochs=4, shuffle=False, verbose=0)
    assert base.task_losses(model, x, labels).sum() < 0.9 * start
    base.reloaded_the_same(model, cls, x, tmp_path)


def test_krum_trains_on_the_representation(tmp_path):
    new.test_trains_on_the_representation(B.Krum, tmp_path)
