"""Transfer learning: new heads on a pretrained trunk, freeze, unfreeze."""

import keras
import numpy as np
import pytest

import keras_mtl as kmtl

pytestmark = pytest.mark.portable


def pretrained(rng):
    x = rng.normal(size=(600, 8)).astype("float32")
    z = x @ rng.normal(size=(8, 2))
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), name="x")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    source = kmtl.MultiTaskModel(inputs, hidden, [kmtl.Task("a")])
    source.compile(keras.optimizers.Adam(0.01))
    source.fit(x, {"a": (z[:, 0] > 0).astype("float32")}, epochs=2, verbose=0)
    return source, x, z


def test_new_heads_share_the_trunk_and_freeze_it():
    rng = np.random.default_rng(0)
    source, x, z = pretrained(rng)
    before = source.get_layer("hidden").get_weights()[0].copy()
    target = kmtl.transfer.new_heads(source, [kmtl.Task("b"), kmtl.Task("c", kind="regression")])
    assert target.task_names == ["b", "c"]
    assert target.get_layer("hidden") is source.get_layer("hidden")
    # Only the new heads train: kernel and bias of the fused heads.
    assert {v.path for v in target.trainable_variables} == {
        v.path for v in target.task_heads.trainable_variables}
    target.compile(keras.optimizers.Adam(0.05))
    labels = {"b": (z[:, 1] > 0).astype("float32"), "c": z[:, 1].astype("float32")}
    target.fit(x, labels, epochs=2, verbose=0)
    np.testing.assert_array_equal(target.get_layer("hidden").get_weights()[0], before)
    # The frozen trunk still computes the pretrained features.
    np.testing.assert_allclose(
        keras.Model(target.inputs, target.get_layer("hidden").output).predict(x[:4], verbose=0),
        np.maximum(x[:4] @ before + source.get_layer("hidden").get_weights()[1], 0), rtol=1e-5, atol=1e-6)


def test_unfreeze_trains_the_trunk_and_keeps_compile_settings():
    rng = np.random.default_rng(1)
    source, x, z = pretrained(rng)
    target = kmtl.transfer.new_heads(source, [kmtl.Task("b", loss_weight=3.0)])
    target.compile(keras.optimizers.Adam(0.01), normalize="labeled")
    labels = {"b": (z[:, 1] > 0).astype("float32")}
    target.fit(x, labels, epochs=1, verbose=0)
    before = target.get_layer("hidden").get_weights()[0].copy()
    kmtl.transfer.unfreeze(target, learning_rate=1e-3)
    assert len(target.trainable_variables) == 4
    assert target.loss_weights == {"b": 3.0}
    assert target.get_compile_config()["normalize"] == "labeled"
    assert float(target.optimizer.learning_rate) == pytest.approx(1e-3)
    target.fit(x, labels, epochs=1, verbose=0)
    assert not np.allclose(target.get_layer("hidden").get_weights()[0], before)


def test_unfreeze_keeps_the_strategys_learned_state():
    rng = np.random.default_rng(4)
    source, x, z = pretrained(rng)
    target = kmtl.transfer.new_heads(source, [kmtl.Task("b"), kmtl.Task("c", kind="regression")])
    target.compile(keras.optimizers.Adam(0.05), balancing=kmtl.balancing.UncertaintyWeighting())
    labels = {"b": (z[:, 1] > 0).astype("float32"), "c": 3.0 * z[:, 0].astype("float32")}
    target.fit(x, labels, epochs=2, verbose=0)
    learned = keras.ops.convert_to_numpy(target.balancing.log_variance).copy()
    assert np.abs(learned).max() > 1e-3  # it did learn something
    kmtl.transfer.unfreeze(target, learning_rate=1e-3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(target.balancing.log_variance), learned)
    # ... and keeps training it, with the trunk, under the new optimizer.
    assert any(v is target.balancing.log_variance for v in target.trainable_variables)
    target.fit(x, labels, epochs=1, verbose=0)
    assert not np.allclose(keras.ops.convert_to_numpy(target.balancing.log_variance), learned)


def plain_keras_transfer():
    inputs = keras.Input((5,), name="x")
    hidden = keras.layers.Dense(6, activation="relu", name="hidden")(inputs)
    base = keras.Model(inputs, keras.layers.Dense(3, name="old_head")(hidden))
    return base, kmtl.transfer.new_heads(base, [kmtl.Task("b")], features="hidden")


def test_transfer_from_a_plain_keras_model_saves_and_reloads(tmp_path):
    base, target = plain_keras_transfer()
    assert "old_head" not in [layer.name for layer in target.layers]
    x = np.random.default_rng(2).normal(size=(4, 5)).astype("float32")
    expected = target.predict(x, verbose=0)["b"]
    kernel, bias = base.get_layer("hidden").get_weights()
    head_kernel, head_bias = target.task_heads.get_weights()
    np.testing.assert_allclose(expected, 1 / (1 + np.exp(-(np.maximum(x @ kernel + bias, 0) @ head_kernel
                                                           + head_bias))), rtol=1e-5, atol=1e-6)
    target.save(tmp_path / "t.keras")
    reloaded = keras.saving.load_model(tmp_path / "t.keras")
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0)["b"], expected)


def test_transfer_from_a_plain_keras_model_exports(tmp_path):
    _, target = plain_keras_transfer()
    if keras.backend.backend() == "torch":  # Keras exports SavedModels from TensorFlow and JAX only
        with pytest.raises(NotImplementedError, match="SavedModel"):
            kmtl.export_saved_model(target, tmp_path / "serving" / "1")
        return
    kmtl.export_saved_model(target, tmp_path / "serving" / "1")
    assert kmtl.export.read_tasks(tmp_path / "serving" / "1")["tasks"][0]["name"] == "b"


def test_bad_arguments():
    inputs = keras.Input((5,), name="x")
    two = keras.Model(inputs, [keras.layers.Dense(1)(inputs), keras.layers.Dense(1)(inputs)])
    with pytest.raises(ValueError, match="features='layer_name'"):
        kmtl.transfer.new_heads(two, [kmtl.Task("b")])
    with pytest.raises(TypeError):
        kmtl.transfer.new_heads("not a model", [kmtl.Task("b")])


def test_new_heads_on_an_image_trunk_reuse_its_flattened_representation():
    # The source flattens its image features in a layer of keras_mtl's (kmtl_flatten), which the
    # reused trunk then holds: the new model adds no second one and takes the name as the trunk's.
    inputs = keras.Input((5, 5, 1), name="image")
    conv = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    source = kmtl.MultiTaskModel(inputs, conv, [kmtl.Task("a")])
    target = kmtl.transfer.new_heads(source, [kmtl.Task("b")])
    assert [layer.name for layer in kmtl.transfer.trunk_layers(target)] == ["conv", "kmtl_flatten"]
    x = np.random.default_rng(0).normal(size=(4, 5, 5, 1)).astype("float32")
    target.compile()
    target.fit(x, {"b": np.array([0, 1, 0, 1], "float32")}, verbose=0)
    assert target.predict(x, verbose=0)["b"].shape == (4, 1)
