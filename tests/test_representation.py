"""Gradient aggregators with wrt="representation": the per-task gradients of the trunk's output.

The reference is a hand-derived NumPy step of a linear trunk with linear
regression heads, where every gradient has a closed form.
"""

import keras
import numpy as np
import pytest

import keras_mtl as kmtl
from keras_mtl import balancing as B

pytestmark = pytest.mark.portable

BATCH, INPUTS, WIDTH, LR = 16, 3, 4, 0.1
NAMES = ["up", "down"]


def _linear_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((INPUTS,), name="x")
    features = keras.layers.Dense(WIDTH, name="trunk")(inputs)
    # Raw targets: the hand-computed step is on the targets as given.
    model = kmtl.MultiTaskModel(inputs, features, [kmtl.Task(n, kind="regression") for n in NAMES],
                                standardize_targets=False)
    rng = np.random.default_rng(seed)
    model.get_layer("trunk").set_weights([rng.normal(size=(INPUTS, WIDTH)), rng.normal(size=WIDTH) * 0.1])
    # Heads whose columns point the same way, so that opposite targets conflict.
    head = np.abs(rng.normal(size=(WIDTH, 2))) + 0.1
    model.task_heads.set_weights([head, np.zeros(2)])
    return model


def _data(absent=None):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(BATCH, INPUTS)).astype("float32")
    up = x @ np.array([1.0, -2.0, 0.5]) + 1.0
    labels = {"up": up, "down": -up}
    if absent:
        labels[absent] = np.full(BATCH, np.nan)
    return x, labels


def _reference_step(model, x, labels, rule):
    """One SGD step, by hand: MSE heads (normalised by the batch), trunk gets ∇ Σ α_i L_i."""
    w1, b1 = model.get_layer("trunk").get_weights()
    head, bias = model.task_heads.get_weights()
    z = x @ w1 + b1
    pred = z @ head + bias
    y = np.stack([labels[n] for n in NAMES], axis=1)
    mask = ~np.isnan(y)
    error = np.where(mask, pred - np.nan_to_num(y), 0.0)
    d_pred = 2.0 * error / BATCH                                 # ∂L_i/∂pred_bi
    d_z = [np.outer(d_pred[:, i], head[:, i]) for i in range(2)]  # ∂L_i/∂Z (B, d)
    gram = np.array([[np.sum(a * b) for b in d_z] for a in d_z])
    present = mask.any(axis=0)
    alpha = rule(gram, present)
    d_trunk = alpha[0] * d_z[0] + alpha[1] * d_z[1]
    return {
        "trunk": [w1 - LR * x.T @ d_trunk, b1 - LR * d_trunk.sum(axis=0)],
        "kmtl_heads": [head - LR * z.T @ d_pred, bias - LR * d_pred.sum(axis=0)],
    }, gram, alpha


def mgda_two_tasks(gram, present):
    """Sener & Koltun (2018), Algorithm 1 for two tasks: the closed-form min-norm point."""
    if not present.all():
        return present / present.sum()
    a = (gram[1, 1] - gram[0, 1]) / (gram[0, 0] + gram[1, 1] - 2 * gram[0, 1])
    a = min(max(a, 0.0), 1.0)
    return np.array([a, 1.0 - a])


def pcgrad_two_tasks(gram, present):
    """Yu et al. (2020) for two tasks: g1 − (g1·g2/‖g2‖²) g2 + g2 − (g1·g2/‖g1‖²) g1 when they conflict."""
    if not present.all() or gram[0, 1] >= 0:
        return present.astype(float)
    return np.array([1.0 - gram[0, 1] / gram[0, 0], 1.0 - gram[0, 1] / gram[1, 1]])


@pytest.mark.parametrize("strategy, rule", [(B.MGDA, mgda_two_tasks), (B.PCGrad, pcgrad_two_tasks)],
                         ids=["MGDA-UB", "PCGrad"])
@pytest.mark.parametrize("absent", [None, "down"])
def test_one_step_equals_the_hand_computed_step(strategy, rule, absent):
    model = _linear_model()
    x, labels = _data(absent)
    expected, gram, alpha = _reference_step(model, x, labels, rule)
    if absent is None:
        assert gram[0, 1] < 0 and np.all(alpha != np.round(alpha)), "the data must make the two tasks conflict"
    else:
        np.testing.assert_allclose(alpha, [1.0, 0.0])
    model.compile(keras.optimizers.SGD(LR), balancing=strategy(wrt="representation"))
    model.fit(kmtl.data.from_arrays(x, labels, model.tasks, batch_size=BATCH), epochs=1, verbose=0)
    for layer, weights in expected.items():
        for got, want in zip(model.get_layer(layer).get_weights(), weights):
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_the_representation_step_differs_from_the_parameter_step():
    """Both settings are honoured: the two Gram matrices give different updates here."""
    x, labels = _data()
    trunks = []
    for wrt in ("parameters", "representation"):
        model = _linear_model()
        model.compile(keras.optimizers.SGD(LR), balancing=B.MGDA(wrt=wrt))
        model.fit(kmtl.data.from_arrays(x, labels, model.tasks, batch_size=BATCH), epochs=1, verbose=0)
        trunks.append(model.get_layer("trunk").get_weights()[0])
    assert np.abs(trunks[0] - trunks[1]).max() > 1e-4


def _street_like(sharing=None, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8,), name="x")
    features = keras.layers.Dense(16, activation="relu", name="trunk")(inputs)
    tasks = [kmtl.Task("a"), kmtl.Task("b"), kmtl.Task("c", kind="regression")]
    return kmtl.MultiTaskModel(inputs, features, tasks, sharing=sharing)


def _street_data(n=128):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 8)).astype("float32")
    a = (x[:, 0] > 0).astype(float)
    b = (x[:, 1] + x[:, 0] > 0).astype(float)
    b[rng.random(n) < 0.5] = np.nan
    return x, {"a": a, "b": b, "c": x[:, 2] - x[:, 3]}


AGGREGATORS = [B.PCGrad, B.MGDA, B.CAGrad, B.IMTLG, B.AlignedMTL, B.NashMTL, B.UPGrad, B.DBMTL]


@pytest.mark.parametrize("cls", AGGREGATORS, ids=lambda c: c.__name__)
def test_every_aggregator_trains_on_the_representation(cls, tmp_path):
    model = _street_like(sharing=kmtl.sharing.MMoE(num_experts=2, units=(8,)) if cls is B.UPGrad else None)
    model.compile(keras.optimizers.Adam(0.02), balancing=cls(wrt="representation"))
    x, labels = _street_data()
    data = kmtl.data.from_arrays(x, labels, model.tasks, batch_size=32)
    losses = model.fit(data, epochs=6, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0], losses
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.balancing.wrt == "representation"
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["c"], model.predict(x, verbose=0)["c"], rtol=1e-6)


def test_sharing_layer_variables_keep_the_total_loss_gradient():
    """With a sharing layer the representation is the trunk's output: the experts are after it."""
    model = _street_like(sharing=kmtl.sharing.MMoE(num_experts=2, units=(8,)))
    model.compile("sgd", balancing=B.MGDA(wrt="representation"))
    trunk, other = model.representation_split()
    assert {v.path for v in trunk} == {v.path for v in model.get_layer("trunk").trainable_variables}
    sharing = {v.path for v in model.sharing.trainable_variables}
    assert sharing and sharing <= {v.path for v in other}


def test_a_trunk_without_variables_is_refused_with_the_fix():
    """Only the sharing layer has shared variables: there is nothing before the representation."""
    inputs = keras.Input((4,), name="x")
    model = kmtl.MultiTaskModel(inputs, inputs, [kmtl.Task("a"), kmtl.Task("b")],
                                sharing=kmtl.sharing.MMoE(num_experts=2, units=(4,)))
    model.compile("sgd", balancing=B.MGDA())  # the experts' gradients are there
    with pytest.raises(ValueError, match="wrt='parameters'"):
        model.compile("sgd", balancing=B.MGDA(wrt="representation"))


def test_an_unknown_wrt_is_refused():
    with pytest.raises(ValueError, match="wrt must be one of"):
        B.CAGrad(wrt="features")
