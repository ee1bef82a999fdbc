"""Standardised regression targets: learnt in standard units, reported in the user's.

Checked against NumPy: the statistics of the labelled training targets, the
squared error (and a Huber loss) of standardised targets from the fused
logits, predictions mapped back with ``z · std + mean``; a target in grams
and the same in kilograms train the same network; with standardisation off
every loss is the plain masked squared error of today.
"""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_mtl as kmtl

pytestmark = pytest.mark.portable


def penguins(n=192, seed=0):
    """A binary task and a body mass in grams (20 % missing)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    sex = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")
    mass = 4000.0 + 800.0 * (x[:, 1] - 0.5 * x[:, 2]) + 50.0 * rng.normal(size=n)
    mass[rng.random(n) < 0.2] = np.nan
    return x, {"sex": sex, "mass": mass}


def build(standardize_targets=True, mass=None, seed=1):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((5,), name="features")
    features = keras.layers.Dense(12, activation="tanh", name="trunk")(inputs)
    tasks = [kmtl.Task("sex"), mass or kmtl.Task("mass", kind="regression")]
    model = kmtl.MultiTaskModel(inputs, features, tasks, standardize_targets=standardize_targets)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    return model


def fit_quietly(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # raw grams warn that one task dominates
        return model.fit(*args, verbose=0, **kwargs)


def mass_logits(model, x):
    block = model._layout.block("mass")
    return ops.convert_to_numpy(model(x)[kmtl.heads.FUSED_LOGITS])[:, block.start]


def test_statistics_are_those_of_the_labelled_training_targets():
    x, labels = penguins()
    model = build()
    assert model.target_statistics() == {"mass": (0.0, 1.0)}
    fit_quietly(model, x, labels, batch_size=64, epochs=1)
    mean, std = model.target_statistics()["mass"]
    np.testing.assert_allclose([mean, std], [np.nanmean(labels["mass"]), np.nanstd(labels["mass"])], rtol=1e-5)
    # A later fit keeps them: the heads learnt in these units.
    fit_quietly(model, x, {**labels, "mass": labels["mass"] * 2}, batch_size=64, epochs=1)
    np.testing.assert_allclose(model.target_statistics()["mass"], [mean, std], rtol=1e-6)
    # A pipeline's first fit sets the same ones.
    piped = build()
    fit_quietly(piped, kmtl.data.from_arrays(x, labels, piped, batch_size=64), epochs=1)
    np.testing.assert_allclose(piped.target_statistics()["mass"], [mean, std], rtol=1e-5)


def test_grams_and_kilograms_train_the_same_network():
    """The units of one target no longer change what the other tasks learn."""
    x, labels = penguins()
    grams, kilograms = build(), build()
    fit_quietly(grams, x, labels, batch_size=32, epochs=3, shuffle=False)
    fit_quietly(kilograms, x, {**labels, "mass": labels["mass"] / 1000.0}, batch_size=32, epochs=3, shuffle=False)
    np.testing.assert_allclose(grams.get_layer("trunk").get_weights()[0],
                               kilograms.get_layer("trunk").get_weights()[0], rtol=1e-4, atol=1e-5)
    in_grams, in_kilograms = grams.predict(x, verbose=0), kilograms.predict(x, verbose=0)
    np.testing.assert_allclose(in_grams["sex"], in_kilograms["sex"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(in_grams["mass"], 1000.0 * in_kilograms["mass"], rtol=1e-4)
    scores = grams.evaluate(x, labels, verbose=0, return_dict=True)
    labelled = np.isfinite(labels["mass"])
    np.testing.assert_allclose(scores["mass_mae"],
                               np.abs(in_grams["mass"][labelled, 0] - labels["mass"][labelled]).mean(), rtol=1e-4)
    assert scores["mass_mae"] < 0.5 * np.nanstd(labels["mass"])  # it learnt, in grams


def test_the_loss_is_the_squared_error_of_standardised_targets():
    x, labels = penguins(n=64)
    model = build()
    mean, std = model.adapt_targets({"mass": labels["mass"]})["mass"]
    encoded = kmtl.data.encode_arrays(x, labels, model)[1]
    outputs = model(x)
    z = mass_logits(model, x)
    terms = model.loss_terms(encoded, outputs, training=False)
    y = (labels["mass"] - mean) / std
    labelled = np.isfinite(y)
    expected = ((z[labelled] - y[labelled]) ** 2).sum() / len(y)  # normalize="batch"
    np.testing.assert_allclose(ops.convert_to_numpy(terms.task_losses)[1], expected, rtol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(outputs["mass"])[:, 0], z * std + mean, rtol=1e-6)


def test_a_task_loss_of_its_own_acts_on_standardised_residuals():
    x, labels = penguins(n=64)
    model = build(mass=kmtl.Task("mass", kind="regression", loss=keras.losses.Huber()))
    mean, std = model.adapt_targets(labels)["mass"]
    z = mass_logits(model, x)
    terms = model.loss_terms(kmtl.data.encode_arrays(x, labels, model)[1], model(x), training=False)
    residual = np.abs((labels["mass"] - mean) / std - z)
    residual = residual[np.isfinite(residual)]
    huber = np.where(residual <= 1.0, 0.5 * residual ** 2, residual - 0.5)  # delta = 1
    np.testing.assert_allclose(ops.convert_to_numpy(terms.task_losses)[1], huber.sum() / 64, rtol=1e-5)


@pytest.mark.parametrize("off", ["model", "task"])
def test_with_standardisation_off_every_loss_is_the_plain_masked_squared_error(off):
    x, labels = penguins(n=64)
    model = (build(standardize_targets=False) if off == "model"
             else build(mass=kmtl.Task("mass", kind="regression", standardize=False)))
    fit_quietly(model, x, labels, batch_size=64, epochs=1)
    assert model.target_statistics() == {} and model.task_outputs.standardized == []
    outputs = model(x)
    terms = model.loss_terms(kmtl.data.encode_arrays(x, labels, model)[1], outputs, training=False)
    reference = kmtl.losses.MaskedMeanSquaredError()(labels["mass"], outputs["mass"])
    np.testing.assert_allclose(ops.convert_to_numpy(terms.task_losses)[1], float(reference), rtol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(outputs["mass"])[:, 0], mass_logits(model, x), rtol=1e-6)


def test_a_keras_file_keeps_the_statistics_and_predicts_in_user_units(tmp_path):
    x, labels = penguins()
    model = build()
    fit_quietly(model, x, labels, batch_size=64, epochs=2)
    model.save(tmp_path / "penguins.keras")
    loaded = keras.saving.load_model(tmp_path / "penguins.keras")
    assert loaded.target_statistics() == model.target_statistics()
    assert loaded.tasks == model.tasks
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["mass"], model.predict(x, verbose=0)["mass"], rtol=1e-6)


def test_standardize_is_refused_for_kinds_that_are_not_regression():
    with pytest.raises(ValueError, match=r"Task 'car' \(binary\): standardize=True is for regression"):
        kmtl.Task("car", standardize=True)
    assert kmtl.Task("size", kind="regression").standardize
    assert "standardize=False" in repr(kmtl.Task("size", kind="regression", standardize=False))
