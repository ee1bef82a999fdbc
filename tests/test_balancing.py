"""Task balancing: each strategy's defining property, checked numerically.

References are computed independently: NumPy re-implementations of the
published formulas, and per-task gradients taken one task at a time on the
model's named outputs (``tests/gradients.py``, on any backend; not through
the model's fused loss or its batched Jacobian).
"""

import itertools
import re

import keras
import numpy as np
import pytest
from gradients import value_and_gradients
from keras import ops

import keras_mtl as kmtl
from keras_mtl import balancing as B
from keras_mtl import plotting

pytestmark = pytest.mark.portable

STRATEGIES = [B.FixedWeights, B.UncertaintyWeighting, B.DWA, B.GradNorm, B.PCGrad, B.RandomLossWeighting]
NOT_ADAPTIVE = (B.FixedWeights, B.PCGrad)  # keep the loss weights: no weight_<task> in History


def regression(*names):
    # Raw targets: the references below are the formulas on the targets as given
    # (standardisation has tests of its own, tests/test_targets.py).
    return [kmtl.Task(name, kind="regression", standardize=False) for name in names]


def build(tasks, hidden=8, activation="tanh", seed=0, regularizer=None):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,), name="x")
    features = keras.layers.Dense(hidden, activation=activation, name="trunk",
                                  kernel_regularizer=regularizer)(inputs)
    return kmtl.MultiTaskModel(inputs, features, tasks)


def flat(variables):
    return np.concatenate([np.ravel(v.numpy()) for v in variables]).astype(np.float64)


def trunk(model):
    return model.get_layer("trunk").trainable_variables


def task_gradients(task_losses, variables):
    """``task_losses()`` → list of scalars; each one's gradient (flattened) and value, one pass each."""
    grads, values = [], []
    for i in range(len(task_losses())):
        value, _, grad = value_and_gradients(lambda i=i: (task_losses()[i], None), variables)
        grads.append(np.concatenate([np.ravel(g) for g in grad]))
        values.append(float(value))
    return np.stack(grads).astype(np.float64), np.array(values)


def mse_gradients(model, x, y, names, variables):
    """Per-task gradients of the mean squared error, from the named outputs."""
    def losses():
        out = model(x, training=True)
        return [ops.mean(ops.square(ops.subtract(out[name][:, 0], y[name]))) for name in names]

    return task_gradients(losses, variables)


def repeat(x, y, times):
    """The same examples ``times`` over: many steps in one epoch (epochs cost more than steps)."""
    return np.tile(x, (times, 1)), {name: np.tile(v, times) for name, v in y.items()}


class BatchLogs(keras.callbacks.Callback):
    """Keeps every training step's logs."""

    def on_train_begin(self, logs=None):
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append({k: float(v) for k, v in logs.items()})


def numpy_pcgrad(grads, order):
    """PCGrad (Yu et al. 2020, Algorithm 1) in NumPy."""
    grads = np.asarray(grads, dtype=np.float64)
    projected = []
    for i in range(len(grads)):
        g = grads[i].copy()
        for j in order:
            if j != i and g @ grads[j] < 0:
                g = g - (g @ grads[j]) / (grads[j] @ grads[j]) * grads[j]
        projected.append(g)
    return np.array(projected)


# -- construction and configuration -------------------------------------------


@pytest.mark.parametrize("cls", STRATEGIES)
def test_config_round_trip_and_documentation(cls):
    strategy = cls()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(strategy))
    assert type(restored) is cls
    assert restored.get_config() == strategy.get_config()
    summary, _, references = cls.__doc__.partition("References:")
    assert re.search(r"\(\d{4}\)\.", references)  # author (year). title
    assert re.search(r"[=←]", summary)  # the formula is written out


def test_non_default_arguments_survive_the_config():
    for strategy in (B.UncertaintyWeighting(initial_log_variance=-1.0), B.DWA(temperature=0.5),
                     B.GradNorm(alpha=0.7, learning_rate=0.1), B.PCGrad(seed=4),
                     B.RandomLossWeighting(seed=9)):
        config = strategy.get_config()
        assert type(strategy).from_config(config).get_config() == config
    with pytest.raises(ValueError, match="temperature"):
        B.DWA(temperature=0.0)


def test_get_accepts_objects_classes_and_none_but_not_names():
    assert type(B.get(None)) is B.FixedWeights
    assert type(B.get(B.DWA)) is B.DWA
    strategy = B.GradNorm()
    assert B.get(strategy) is strategy
    with pytest.raises(ValueError, match="UncertaintyWeighting"):
        B.get("uncertainty")


@pytest.mark.parametrize("name", list(B._STRATEGIES))
def test_registered_names_outlive_the_module_that_defined_the_class(name):
    """A .keras file names the strategy ``keras_mtl>Class``; files written when the strategies lived
    in keras_mtl/balancing.py and keras_mtl/aggregators.py load into the classes of today's modules."""
    cls = B._STRATEGIES[name]
    assert keras.saving.get_registered_name(cls) == f"keras_mtl>{name}"
    assert getattr(B, name) is cls and cls.__module__.startswith("keras_mtl.balancing.")
    old_module = "keras_mtl.aggregators" if issubclass(cls, B.GradientAggregator) else "keras_mtl.balancing"
    saved = {**keras.saving.serialize_keras_object(cls()), "module": old_module}
    assert type(keras.saving.deserialize_keras_object(saved)) is cls


# -- PCGrad ------------------------------------------------------------------------


def test_pcgrad_project_on_hand_made_vectors():
    # g1·g2 = −1 < 0: g1 − (−1/2) g2 = [0.5, 0.5]; g2 − (−1/1) g1 = [0, 1].
    grads = np.array([[1.0, 0.0], [-1.0, 1.0]], dtype="float32")
    for order in ([0, 1], [1, 0]):
        projected = B.PCGrad.project(ops.convert_to_tensor(grads), ops.convert_to_tensor(order))
        np.testing.assert_allclose(ops.convert_to_numpy(projected), [[0.5, 0.5], [0.0, 1.0]], atol=1e-7)
    # Gradients that do not conflict pass unchanged.
    agree = np.array([[1.0, 2.0], [0.5, -0.1]], dtype="float32")
    np.testing.assert_allclose(ops.convert_to_numpy(B.PCGrad.project(agree, [1, 0])), agree)


def test_pcgrad_project_matches_numpy_for_every_task_order():
    rng = np.random.default_rng(3)
    grads = rng.normal(size=(3, 7)).astype("float32")
    grads[1] = -grads[0] + 0.3 * grads[1]  # make sure some pairs conflict
    for order in itertools.permutations(range(3)):
        got = ops.convert_to_numpy(B.PCGrad.project(ops.convert_to_tensor(grads), list(order)))
        np.testing.assert_allclose(got, numpy_pcgrad(grads, order), rtol=1e-5, atol=1e-6)


def test_pcgrad_two_task_update_never_opposes_a_task():
    rng = np.random.default_rng(0)
    conflicting = 0
    for _ in range(200):
        grads = rng.normal(size=(2, 10)) * rng.uniform(0.1, 10, size=(2, 1))
        update = ops.convert_to_numpy(ops.sum(B.PCGrad.project(grads.astype("float32"), [0, 1]), axis=0))
        conflicting += grads[0] @ grads[1] < 0
        assert update @ grads[0] >= -1e-5 * np.linalg.norm(grads[0]) ** 2
        assert update @ grads[1] >= -1e-5 * np.linalg.norm(grads[1]) ** 2
    assert conflicting > 50


def test_pcgrad_end_to_end_shared_update_respects_both_conflicting_tasks():
    """Two regression tasks pulling the shared trunk in opposite directions."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 6)).astype("float32")
    u = rng.normal(size=6).astype("float32")
    y = {"a": x @ u, "b": -5.0 * (x @ u)}
    model = build(regression("a", "b"), hidden=4, activation=None)
    heads = model.task_heads.dense
    # Head directions 60° apart: the task gradients on the trunk conflict.
    heads.kernel.assign(np.array([[1, 0.5], [0, np.sqrt(3) / 2], [0, 0], [0, 0]], dtype="float32"))
    shared = trunk(model)
    grads, _ = mse_gradients(model, x, y, ["a", "b"], shared)
    assert grads[0] @ grads[1] < 0
    assert grads.sum(axis=0) @ grads[0] < 0  # the plain sum would increase task a's loss

    lr = 0.01
    before = flat(shared)
    model.compile(optimizer=keras.optimizers.SGD(lr), balancing=B.PCGrad(seed=0))
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    direction = (before - flat(shared)) / lr  # the shared parameters' gradient that was applied
    np.testing.assert_allclose(direction, numpy_pcgrad(grads, [0, 1]).sum(axis=0), rtol=2e-4, atol=1e-5)
    assert direction @ grads[0] >= 0
    assert direction @ grads[1] >= 0


# -- Uncertainty weighting --------------------------------------------------------------


def test_uncertainty_combine_and_its_gradient_follow_the_formula():
    strategy = B.UncertaintyWeighting()
    strategy.setup(["a", "b", "c"], [1.0, 2.0, 1.0])
    s = np.array([0.0, 1.0, -0.5], dtype="float32")
    strategy.log_variance.assign(s)
    losses = np.array([0.3, 0.7, 0.0], dtype="float32")  # c absent: its loss is 0
    present = np.array([True, True, False])

    def total():
        weights, extra = strategy.combine(ops.convert_to_tensor(losses), ops.convert_to_tensor(present))
        return ops.sum(ops.multiply(weights, losses)) + extra, (weights, extra)

    _, (weights, extra), (gradient,) = value_and_gradients(total, [strategy.log_variance])
    base = np.array([1.0, 2.0, 1.0])
    np.testing.assert_allclose(weights, 0.5 * np.exp(-s) * base, rtol=1e-6)
    np.testing.assert_allclose(float(extra), 0.5 * (s * present).sum(), rtol=1e-6)
    # ∂/∂s_i [½ e^{−s_i} w_i L_i + ½ s_i] = −½ e^{−s_i} w_i L_i + ½, and 0 for an absent task.
    expected = np.where(present, -0.5 * np.exp(-s) * base * losses + 0.5, 0.0)
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-7)


def test_uncertainty_gives_the_noisier_task_the_smaller_weight():
    rng = np.random.default_rng(0)
    n = 256
    x = rng.normal(size=(n, 6)).astype("float32")
    y = {"clean": (np.tanh(x[:, 0]) + 0.1 * rng.normal(size=n)).astype("float32"),
         "noisy": (np.tanh(x[:, 1]) + 3.0 * rng.normal(size=n)).astype("float32")}
    model = build(regression("clean", "noisy"), hidden=16)
    model.compile(optimizer=keras.optimizers.Adam(0.05), balancing=B.UncertaintyWeighting())
    history = model.fit(*repeat(x, y, 4), batch_size=64, epochs=10, shuffle=False, verbose=0).history
    clean, noisy = history["weight_clean"][-1], history["weight_noisy"][-1]
    assert noisy < 0.1 < 0.5 < clean
    # At the optimum of ½ e^{−s} L + ½ s, e^{−s} = 1/L: the weight is 1/(2L).
    assert noisy == pytest.approx(0.5 / history["noisy_loss"][-1], rel=0.25)


# -- GradNorm ------------------------------------------------------------------------


def numpy_gradnorm_step(weights, task_grads, losses, initial, present, alpha, lr):
    """One GradNorm update (Chen et al. 2018) with a normalised step, in NumPy."""
    norms = np.array([np.linalg.norm(g) for g in task_grads])  # gradients of w_i L_i
    ratio = losses / initial
    mean_norm, mean_ratio = norms[present].mean(), ratio[present].mean()
    target = mean_norm * (ratio / mean_ratio) ** alpha
    step = np.sign(norms - target) * present
    new = np.maximum(weights - lr * step, 1e-3)
    new[present] *= weights[present].sum() / new[present].sum()
    new[~present] = weights[~present]
    return new


def test_gradnorm_update_matches_numpy_and_leaves_absent_tasks_alone():
    rng = np.random.default_rng(5)
    strategy = B.GradNorm(alpha=1.5, learning_rate=0.1)
    strategy.setup(["a", "b", "c", "d"], [1.0] * 4)
    weights = np.array([1.3, 0.6, 0.9, 1.2], dtype="float32")  # sums to 4
    initial = np.array([2.0, 1.0, 4.0, 1.5], dtype="float32")
    strategy.task_weights.assign(weights)
    strategy.initial_losses.assign(initial)
    kernel = (rng.normal(size=(4, 5, 3)) * np.array([1, 3, 0.5, 2])[:, None, None]).astype("float32")
    bias = rng.normal(size=(4, 3)).astype("float32")
    losses = np.array([1.0, 0.9, 1.0, 0.0], dtype="float32")
    present = np.array([True, True, True, False])
    kernel[3], bias[3] = 0, 0  # an absent task has no gradient
    strategy.observe_gradients([ops.convert_to_tensor(kernel), ops.convert_to_tensor(bias)],
                               ops.convert_to_tensor(losses), ops.convert_to_tensor(weights),
                               ops.convert_to_tensor(present))
    task_grads = [np.concatenate([kernel[i].ravel(), bias[i].ravel()]) for i in range(4)]
    expected = numpy_gradnorm_step(weights.astype(float), task_grads, losses, initial, present, 1.5, 0.1)
    got = strategy.task_weights.numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert got[3] == weights[3]  # the absent task keeps its weight exactly
    assert got.sum() == pytest.approx(4.0, rel=1e-5)
    assert not np.allclose(got[:3], weights[:3])
    np.testing.assert_array_equal(strategy.initial_losses.numpy(), initial)


def gradient_norm_spread(model, x, y, names, weights):
    """max / min of ‖∇_W w_i L_i‖ over tasks, W the trunk kernel."""
    norms = []
    for i, name in enumerate(names):
        grads, _ = mse_gradients(model, x, y, [name], [model.get_layer("trunk").kernel])
        norms.append(weights[i] * np.linalg.norm(grads[0]))
    return max(norms) / min(norms)


@pytest.fixture(scope="module")
def unbalanced_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    u = rng.normal(size=6).astype("float32")
    return x, {"a": x @ u, "b": 10 * (x @ u) + 3 * x[:, 0]}


def test_gradnorm_equalises_weighted_gradient_norms(unbalanced_problem):
    """With α = 0 the target is the mean norm: w_i ‖∇L_i‖ must become equal."""
    x, y = unbalanced_problem
    model = build(regression("a", "b"))
    strategy = B.GradNorm(alpha=0.0)
    # A zero learning rate freezes the network: only the task weights move.
    model.compile(optimizer=keras.optimizers.SGD(0.0), balancing=strategy)
    before = gradient_norm_spread(model, x, y, ["a", "b"], [1.0, 1.0])
    steps = BatchLogs()
    model.fit(*repeat(x, y, 60), batch_size=64, epochs=1, shuffle=False, verbose=0, callbacks=[steps])
    weights = strategy.task_weights.numpy()
    after = gradient_norm_spread(model, x, y, ["a", "b"], weights)
    assert before > 5
    assert after < 1.15
    sums = [step["weight_a"] + step["weight_b"] for step in steps.steps]
    assert len(sums) == 60
    np.testing.assert_allclose(sums, 2.0, rtol=1e-5)
    # Equal weighted norms: w_i ∝ 1/‖∇L_i‖, normalised to sum to 2.
    kernel = [model.get_layer("trunk").kernel]
    norms = np.array([np.linalg.norm(mse_gradients(model, x, y, [n], kernel)[0]) for n in ("a", "b")])
    # The sign step (η = 0.025) ends oscillating between two weights either side of the target;
    # their midpoint estimates it (the last weight alone can be η, 15 % of w_b, away).
    last = np.array([steps.steps[-1]["weight_a"], steps.steps[-1]["weight_b"]])
    assert np.all(np.abs(weights - last) <= 0.025 + 1e-6)
    np.testing.assert_allclose((weights + last) / 2, 2 * (1 / norms) / (1 / norms).sum(), rtol=0.1)


def test_gradnorm_while_training_narrows_the_norm_spread_more_than_fixed_weights(unbalanced_problem):
    x, y = unbalanced_problem
    spreads = {}
    for strategy in (B.FixedWeights(), B.GradNorm()):
        model = build(regression("a", "b"))
        model.compile(optimizer=keras.optimizers.SGD(0.01), balancing=strategy)
        history = model.fit(*repeat(x, y, 5), batch_size=16, epochs=3, shuffle=False, verbose=0).history
        weights = strategy.task_weights.numpy() if isinstance(strategy, B.GradNorm) else [1.0, 1.0]
        spreads[type(strategy).__name__] = gradient_norm_spread(model, x, y, ["a", "b"], weights)
    np.testing.assert_allclose(np.array(history["weight_a"]) + history["weight_b"], 2.0, rtol=1e-5)
    assert spreads["GradNorm"] < 0.5 * spreads["FixedWeights"]


# -- DWA --------------------------------------------------------------------------


def numpy_dwa(previous, before_previous, temperature):
    ratio = np.where(before_previous > 0, previous / np.where(before_previous > 0, before_previous, 1), 1.0)
    e = np.exp(ratio / temperature)
    return len(previous) * e / e.sum()


def test_dwa_weights_from_history_follow_the_formula():
    rng = np.random.default_rng(0)
    for temperature in (0.5, 2.0, 10.0):
        previous, before = rng.uniform(0.1, 3, 4), rng.uniform(0.1, 3, 4)
        got = B.DWA.weights_from_history(previous.astype("float32"), before.astype("float32"), temperature)
        np.testing.assert_allclose(got, numpy_dwa(previous, before, temperature), rtol=1e-5)
        assert float(ops.sum(got)) == pytest.approx(4.0, rel=1e-6)
    # A task falling faster (smaller ratio) gets the smaller weight.
    w = ops.convert_to_numpy(B.DWA.weights_from_history(np.float32([0.5, 1.0]), np.float32([1.0, 1.0]), 2.0))
    assert w[0] < 1 < w[1]


def test_dwa_epoch_bookkeeping_against_numpy():
    """Known per-batch losses, some tasks missing from batches or whole epochs."""
    rng = np.random.default_rng(1)
    strategy = B.DWA(temperature=2.0)
    strategy.setup(["a", "b", "c"], [1.0, 1.0, 1.0])
    previous = before = np.zeros(3)
    for epoch in range(5):
        losses = rng.uniform(0.2, 2.0, size=(4, 3))
        present = rng.random((4, 3)) > 0.3
        present[:, 2] = epoch != 2  # task c is not labelled at all in epoch 2
        expected_weights = np.ones(3) if epoch < 2 else numpy_dwa(previous, before, 2.0)
        np.testing.assert_allclose(strategy.combine(np.zeros(3), np.ones(3, bool))[0],
                                   expected_weights, rtol=1e-5)
        for batch in range(4):
            strategy.observe_losses(losses[batch].astype("float32"), present[batch])
        counts = present.sum(axis=0)
        average = np.where(counts > 0, (losses * present).sum(axis=0) / np.maximum(counts, 1), previous)
        previous, before = average, previous
        strategy.end_epoch()
        np.testing.assert_allclose(strategy.previous.numpy(), previous, rtol=1e-5)
        np.testing.assert_allclose(strategy.before_previous.numpy(), before, rtol=1e-5)
        np.testing.assert_array_equal(strategy.loss_count.numpy(), 0)
    assert float(strategy.epochs_seen.numpy()) == 5


def test_dwa_in_fit_uses_the_epoch_losses_of_history():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = {"a": np.sin(x[:, 0]).astype("float32"), "b": (3 * x[:, 1] * x[:, 2]).astype("float32"),
         "c": (x[:, 3] > 0).astype("float32")}
    model = build(regression("a", "b") + [kmtl.Task("c")], hidden=16)
    model.compile(optimizer=keras.optimizers.Adam(0.02), balancing=B.DWA(temperature=2.0))
    history = model.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0).history
    losses = np.array([history[f"{n}_loss"] for n in "abc"]).T  # (epoch, task)
    weights = np.array([history[f"weight_{n}"] for n in "abc"]).T
    np.testing.assert_allclose(weights[:2], 1.0)
    for epoch in range(2, 5):
        np.testing.assert_allclose(weights[epoch], numpy_dwa(losses[epoch - 1], losses[epoch - 2], 2.0),
                                   rtol=1e-4)
    assert np.ptp(weights[4]) > 1e-3  # the weights did move


# -- Random loss weighting -----------------------------------------------------------------


def draw(strategy, count, base=(1.0, 1.0, 1.0)):
    losses, present = ops.ones(len(base)), ops.ones(len(base), "bool")
    return np.array([ops.convert_to_numpy(strategy.combine(losses, present)[0]) for _ in range(count)],
                    dtype=np.float64)


def test_rlw_weights_are_k_times_softmax_of_a_standard_normal():
    strategy = B.RandomLossWeighting(seed=3)
    strategy.setup(["a", "b", "c"], [1.0, 1.0, 1.0])
    weights = draw(strategy, 3000)
    assert np.all(weights > 0)
    np.testing.assert_allclose(weights.sum(axis=1), 3.0, rtol=1e-5)
    # E[K softmax(z)_i] = 1 by symmetry.
    np.testing.assert_allclose(weights.mean(axis=0), 1.0, atol=0.05)
    # log w − mean(log w) = z − z̄: variance (K−1)/K, covariance −1/K.
    centred = np.log(weights) - np.log(weights).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(np.cov(centred.T), np.eye(3) - 1 / 3, atol=0.06)
    # The marginal matches a NumPy simulation of K · softmax(N(0, I)).
    z = np.random.default_rng(0).normal(size=(200_000, 3))
    reference = 3 * np.exp(z[:, 0]) / np.exp(z).sum(axis=1)
    grid = np.linspace(0.05, 2.5, 50)
    ecdf = (weights[:, 0][:, None] <= grid).mean(axis=0)
    rcdf = (reference[:, None] <= grid).mean(axis=0)
    assert np.abs(ecdf - rcdf).max() < 0.04
    np.testing.assert_allclose(strategy.last_weights.numpy(), weights[-1], rtol=1e-6)


def test_rlw_same_seed_same_draws_and_base_weights_scale_them():
    def strategy(seed, base=(1.0, 1.0, 1.0)):
        s = B.RandomLossWeighting(seed=seed)
        s.setup(["a", "b", "c"], list(base))
        return s

    first, again, other = draw(strategy(7), 20), draw(strategy(7), 20), draw(strategy(8), 20)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert len({tuple(row) for row in first}) == 20  # a fresh draw every step
    scaled = draw(strategy(7, base=(1.0, 2.0, 0.5)), 20)
    np.testing.assert_allclose(scaled, first * [1.0, 2.0, 0.5], rtol=1e-6)


def test_rlw_evaluation_weights_are_the_expectation():
    strategy = B.RandomLossWeighting(seed=0)
    strategy.setup(["a", "b"], [1.0, 3.0])
    weights, extra = strategy.combine(ops.ones(2), ops.ones(2, "bool"), training=False)
    np.testing.assert_allclose(weights, [1.0, 3.0])


# -- every strategy inside fit -----------------------------------------------------------


def mixed_problem(n=96, seed=0, missing=0.3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    labels = {"car": (x[:, 0] > 0).astype("float32"),
              "weather": np.digitize(x[:, 1], [-0.5, 0.5]).astype("float32"),
              "distance": (x[:, 2] - x[:, 3]).astype("float32")}
    for y in labels.values():
        y[rng.random(n) < missing] = np.nan
    tasks = [kmtl.Task("car"), kmtl.Task("weather", kind="categorical", num_classes=3),
             kmtl.Task("distance", kind="regression")]
    return x, labels, tasks


def train_mixed(cls, jit_compile, epochs=3):
    x, labels, tasks = mixed_problem()
    model = build(tasks, hidden=16)
    model.compile(optimizer=keras.optimizers.Adam(0.01), balancing=cls(), jit_compile=jit_compile)
    data = kmtl.data.from_arrays(x, labels, model, batch_size=32, shuffle=False)
    return model, data, model.fit(data, epochs=epochs, verbose=0).history


@pytest.fixture(scope="module", params=STRATEGIES, ids=lambda cls: cls.__name__)
def trained(request, tmp_path_factory):
    """A model trained 3 epochs with 30% missing labels, then saved."""
    cls = request.param
    model, data, history = train_mixed(cls, jit_compile=False)
    path = tmp_path_factory.mktemp(cls.__name__) / "model.keras"
    model.save(path)
    return cls, model, data, history, path


def test_trains_with_missing_labels_and_logs_weights(trained):
    cls, model, _, history, _ = trained
    assert type(model.balancing) is cls
    assert all(np.all(np.isfinite(v)) for v in history.values())
    assert history["loss"][-1] < history["loss"][0] or cls is B.RandomLossWeighting
    assert 0 <= history["car_auc"][-1] <= 1 and 0 <= history["weather_accuracy"][-1] <= 1
    weight_keys = sorted(k for k in history if k.startswith("weight_"))
    if cls in NOT_ADAPTIVE:
        assert weight_keys == []
        with pytest.raises(ValueError, match="adaptive"):
            plotting.plot_task_weights(history)
        return
    assert weight_keys == ["weight_car", "weight_distance", "weight_weather"]
    assert all(len(history[k]) == 3 for k in weight_keys)
    weights = np.array([history[k] for k in weight_keys])
    assert np.all(weights > 0)
    if cls in (B.GradNorm, B.RandomLossWeighting, B.DWA):
        np.testing.assert_allclose(weights.sum(axis=0), 3.0, rtol=1e-5)
    if cls is not B.DWA:  # DWA keeps w = 1 for the first two epochs
        assert np.ptp(weights) > 1e-4
    figure = plotting.plot_task_weights(history)
    assert len(figure.axes[0].lines) == 3
    np.testing.assert_allclose(figure.axes[0].lines[0].get_ydata(), history["weight_car"])


def test_xla_training_gives_the_same_numbers(trained):
    cls, _, _, eager_history, _ = trained
    model, _, history = train_mixed(cls, jit_compile=True)
    assert model.jit_compile is True
    assert sorted(history) == sorted(eager_history)
    assert all(np.all(np.isfinite(v)) for v in history.values())
    if cls is B.RandomLossWeighting:
        # XLA draws its own random numbers; the weights are still K · softmax(z).
        weights = np.array([history[f"weight_{n}"] for n in ("car", "weather", "distance")])
        np.testing.assert_allclose(weights.sum(axis=0), 3.0, rtol=1e-5)
        return
    for key, value in eager_history.items():
        np.testing.assert_allclose(history[key], value, rtol=2e-3, atol=1e-5, err_msg=key)


def test_keras_file_restores_the_strategy_and_training_continues_identically(trained):
    cls, model, data, _, path = trained
    loaded = keras.saving.load_model(path)
    assert type(loaded.balancing) is cls
    assert loaded.balancing.get_config() == model.balancing.get_config()
    assert len(loaded.balancing.variables) == len(model.balancing.variables)
    for restored, original in zip(loaded.balancing.variables, model.balancing.variables, strict=True):
        np.testing.assert_array_equal(restored.numpy(), original.numpy())
    # One more epoch on both: same data, same state, so the same result.
    continued = model.fit(data, epochs=1, verbose=0).history
    resumed = loaded.fit(data, epochs=1, verbose=0).history
    for key, value in continued.items():
        np.testing.assert_allclose(resumed[key], value, rtol=1e-4, err_msg=key)
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for restored, original in zip(loaded.balancing.variables, model.balancing.variables, strict=True):
        np.testing.assert_allclose(restored.numpy(), original.numpy(), rtol=1e-4)


# -- a task with no labelled entry in a batch ---------------------------------------------


def formula_gradients(model, x, y, variables):
    """Gradients of task c's logistic loss and task b's squared error, from the named outputs."""
    c, b = (ops.convert_to_tensor(y[name]) for name in ("c", "b"))

    def losses():
        out = model(x, training=True)
        p = ops.clip(out["c"][:, 0], 1e-7, 1 - 1e-7)
        return [-ops.mean(c * ops.log(p) + (1 - c) * ops.log(1 - p)), ops.mean(ops.square(out["b"][:, 0] - b))]

    return task_gradients(losses, variables)[0]


@pytest.mark.parametrize("cls", STRATEGIES, ids=lambda cls: cls.__name__)
def test_task_without_labels_in_the_batch_contributes_nothing(cls):
    """Task ``gone`` is all-missing in the batch: no gradient, no state change, no shared update."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = {"b": (x[:, 0] + x[:, 1]).astype("float32"), "c": (x[:, 2] > 0).astype("float32")}
    model = build([kmtl.Task("c")] + regression("gone", "b"))  # fused columns: c, gone, b
    strategy = cls(seed=1) if cls in (B.PCGrad, B.RandomLossWeighting) else cls()
    lr = 0.1
    model.compile(optimizer=keras.optimizers.SGD(lr), balancing=strategy)
    shared = trunk(model)
    grads = formula_gradients(model, x, y, shared)  # tasks c and b only
    before = flat(shared)
    gone_head = model.task_heads.dense.kernel.numpy()[:, 1].copy()
    state = [v.numpy().copy() for v in strategy.variables]
    model.fit(x, {**y, "gone": np.full(32, np.nan, "float32")}, batch_size=32, epochs=1,
              shuffle=False, verbose=0)

    # The missing task's own parameters and state do not move.
    np.testing.assert_array_equal(model.task_heads.dense.kernel.numpy()[:, 1], gone_head)
    if cls is B.UncertaintyWeighting:
        assert strategy.log_variance.numpy()[1] == state[0][1]
        assert np.all(strategy.log_variance.numpy()[[0, 2]] != state[0][[0, 2]])
    if cls is B.GradNorm:
        assert strategy.task_weights.numpy()[1] == 1.0
        assert strategy.initial_losses.numpy()[1] == 0.0
        assert np.all(strategy.task_weights.numpy()[[0, 2]] != 1.0)
        assert strategy.task_weights.numpy().sum() == pytest.approx(3.0, rel=1e-6)
    if cls is B.DWA:  # fit ended the epoch: only the labelled tasks have an average
        averages = strategy.previous.numpy()
        assert averages[1] == 0.0 and np.all(averages[[0, 2]] > 0)

    # The shared update is that of tasks c and b alone.
    if cls is B.PCGrad:
        expected = numpy_pcgrad(grads, [0, 1]).sum(axis=0)
    else:
        if cls is B.UncertaintyWeighting:
            weights = 0.5 * np.exp(-state[0])  # the log-variances before the step
        elif cls is B.RandomLossWeighting:
            weights = strategy.last_weights.numpy()  # this step's draw
        else:
            weights = np.ones(3)  # fixed; DWA's first epoch; GradNorm's weights before its update
        expected = weights[0] * grads[0] + weights[2] * grads[1]
    applied = (before - flat(shared)) / lr
    np.testing.assert_allclose(applied, expected, rtol=1e-4, atol=1e-6)


# -- resuming under BackupAndRestore --------------------------------------------------------


class InterruptAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("Interrupting!")


def test_backup_and_restore_resumes_dwa_state(tmp_path):
    x, labels, tasks = mixed_problem(n=64, seed=3)

    def run(callbacks, epochs=5):
        model = build(tasks, hidden=16)
        model.compile(optimizer=keras.optimizers.Adam(0.02), balancing=B.DWA())
        data = kmtl.data.from_arrays(x, labels, model, batch_size=16, shuffle=False)
        return model, model.fit(data, epochs=epochs, verbose=0, callbacks=callbacks).history

    reference, full = run([])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="Interrupting"):
        run([backup, InterruptAtEpoch(3)])
    resumed, tail = run([backup])  # a fresh process would do the same: new model, same backup
    assert float(resumed.balancing.epochs_seen.numpy()) == 5  # 3 before, 2 after: no reset
    assert len(tail["loss"]) == 2  # epochs 3 and 4 only
    for name in ("car", "weather", "distance"):
        np.testing.assert_allclose(tail[f"weight_{name}"], full[f"weight_{name}"][3:], rtol=1e-4)
    for restored, original in zip(resumed.balancing.variables, reference.balancing.variables, strict=True):
        np.testing.assert_allclose(restored.numpy(), original.numpy(), rtol=1e-4)
    assert np.ptp([full[f"weight_{n}"][3] for n in ("car", "weather", "distance")]) > 1e-4


# -- known problems in the training step (keras_mtl/model.py) ---------------------------------


def test_pcgrad_keeps_regulariser_gradients_of_shared_parameters():
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    missing = np.full(16, np.nan, "float32")  # no labels: only the L2 penalty acts
    model = build(regression("a", "b"), regularizer=keras.regularizers.L2(0.5))
    kernel = model.get_layer("trunk").kernel
    before = kernel.numpy().copy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), balancing=B.PCGrad())
    model.fit(x, {"a": missing, "b": missing}, batch_size=16, epochs=1, verbose=0)
    np.testing.assert_allclose(kernel.numpy(), before - 0.1 * 2 * 0.5 * before, rtol=1e-5)


def test_rlw_evaluation_loss_is_deterministic():
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    y = {"a": x[:, 0].copy(), "b": x[:, 1].copy()}
    model = build(regression("a", "b"))
    model.compile(optimizer="sgd", balancing=B.RandomLossWeighting(seed=1))
    results = [model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True) for _ in range(2)]
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-6)
    assert results[0]["loss"] == pytest.approx(results[0]["a_loss"] + results[0]["b_loss"], rel=1e-5)
