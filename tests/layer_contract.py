"""The contract every keras_mtl layer keeps, checked by one function.

:func:`run_layer_test` builds a layer from its class and constructor
arguments and checks, on whatever Keras backend runs the tests:

1. ``get_config`` → ``from_config`` (and through JSON and Keras's
   serialisation) gives back the same config and the same class;
2. ``build`` creates the expected numbers of trainable and non-trainable
   weights;
3. the symbolic call, ``compute_output_shape`` (where the class defines
   it) and the eager call agree on the output shape;
4. a clone from the config, given the same weights, computes the same
   outputs;
5. under the ``mixed_bfloat16`` policy — set globally, and passed to the
   constructor as ``dtype=`` — the variables stay float32 and the outputs
   are bfloat16 (or the dtype the layer promises);
6. a model holding the layer saves to a ``.keras`` file and reloads (no
   ``custom_objects``, ``safe_mode`` on) with the same predictions;
7. one ``fit`` step moves every trainable weight.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import keras
import numpy as np

BATCH = 3


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _random_input(input_shape, seed):
    return np.random.default_rng(seed).normal(size=(BATCH, *input_shape)).astype("float32")


def _check_serialisation(cls, init_kwargs):
    layer = cls(**init_kwargs)
    config = layer.get_config()
    via_json = json.loads(json.dumps(config))  # the config a .keras file holds
    assert cls.from_config(via_json).get_config() == config, f"{cls.__name__}: config round trip"
    revived = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(layer))))
    assert type(revived) is cls, f"{cls.__name__}: deserialised as {type(revived).__name__}"
    assert revived.get_config() == config, f"{cls.__name__}: serialise → deserialise config"
    return config


def _check_weight_counts(layer, trainable, non_trainable):
    assert layer.built
    assert len(layer.trainable_weights) == trainable, (
        f"{layer.name}: {len(layer.trainable_weights)} trainable weights, expected {trainable}: "
        f"{[w.path for w in layer.trainable_weights]}")
    assert len(layer.non_trainable_weights) == non_trainable, (
        f"{layer.name}: {len(layer.non_trainable_weights)} non-trainable weights, expected "
        f"{non_trainable}: {[w.path for w in layer.non_trainable_weights]}")


def _defines_output_shape(cls) -> bool:
    return cls.compute_output_shape is not keras.layers.Layer.compute_output_shape


def _check_mixed_precision(cls, init_kwargs, x, output_dtype):
    # Once as the global policy, once passed to the constructor: a layer that builds sub-layers
    # must hand its own policy on (a global policy alone would hide a forgotten dtype=).
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        _check_mixed_layer(cls(**init_kwargs), cls, x, output_dtype)
    finally:
        keras.config.set_dtype_policy(previous)
    _check_mixed_layer(cls(**init_kwargs, dtype="mixed_bfloat16"), cls, x, output_dtype)


def _check_mixed_layer(layer, cls, x, output_dtype):
    symbolic = layer(keras.KerasTensor((None, *x.shape[1:])))
    output = layer(x)
    expected = output_dtype or "bfloat16"
    for weight in layer.weights:
        assert keras.backend.standardize_dtype(weight.dtype) == "float32", (
            f"{weight.path} is {weight.dtype} under mixed_bfloat16")
    assert keras.backend.standardize_dtype(output.dtype) == expected, (
        f"{cls.__name__}: output {output.dtype} under mixed_bfloat16, expected {expected}")
    assert keras.backend.standardize_dtype(symbolic.dtype) == expected, (
        f"{cls.__name__}: symbolic output {symbolic.dtype} under mixed_bfloat16, expected {expected}")
    assert np.all(np.isfinite(_numpy(keras.ops.cast(output, "float32"))))


def _check_keras_file(layer, x, directory: Path):
    inputs = keras.Input(x.shape[1:], name="x")
    model = keras.Model(inputs, layer(inputs))
    path = directory / "layer.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # safe_mode: the classes are registered
    assert type(reloaded.layers[-1]) is type(layer)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0),
                                  err_msg=f"{type(layer).__name__}: reloaded predictions")
    return model


def _check_fit_step(model, x, trainable):
    target = np.random.default_rng(1).normal(size=model.outputs[0].shape[1:]).astype("float32")
    targets = np.broadcast_to(target, (len(x), *target.shape)).copy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [_numpy(w).copy() for w in model.trainable_weights]
    history = model.fit(x, targets, batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert len(before) == trainable
    for weight, old in zip(model.trainable_weights, before):
        assert not np.array_equal(_numpy(weight), old), f"{weight.path} did not change in one fit step"


def run_layer_test(cls, init_kwargs, input_shape, *, expected_output_shape, expected_trainable,
                   expected_non_trainable=0, output_dtype=None, seed=0):
    """Checks the layer contract of ``cls(**init_kwargs)``; fails with the broken clause.

    Args:
        cls: the layer class.
        init_kwargs: constructor arguments.
        input_shape: the input's shape without the batch axis.
        expected_output_shape: the output's shape without the batch axis.
        expected_trainable: number of trainable weights once built.
        expected_non_trainable: number of non-trainable weights once built.
        output_dtype: the output dtype under ``mixed_bfloat16`` if the layer
            promises one other than the compute dtype (e.g. float32 outputs).
        seed: seed of the random input.
    """
    config = _check_serialisation(cls, init_kwargs)
    x = _random_input(input_shape, seed)
    batched = (None, *expected_output_shape)

    built = cls(**init_kwargs)
    built.build((None, *input_shape))
    _check_weight_counts(built, expected_trainable, expected_non_trainable)

    symbolic_layer = cls(**init_kwargs)
    symbolic = symbolic_layer(keras.KerasTensor((None, *input_shape)))
    assert tuple(symbolic.shape) == batched, f"{cls.__name__}: symbolic shape {symbolic.shape}"
    _check_weight_counts(symbolic_layer, expected_trainable, expected_non_trainable)
    if _defines_output_shape(cls):
        assert tuple(symbolic_layer.compute_output_shape((None, *input_shape))) == batched

    layer = cls(**init_kwargs)
    output = _numpy(layer(x))
    assert output.shape == (BATCH, *expected_output_shape), f"{cls.__name__}: eager shape {output.shape}"
    assert keras.backend.standardize_dtype(output.dtype) == "float32"
    assert np.all(np.isfinite(output))

    clone = cls.from_config(config)
    clone.build((None, *input_shape))
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(_numpy(clone(x)), output, err_msg=f"{cls.__name__}: from_config clone")

    _check_mixed_precision(cls, init_kwargs, x, output_dtype)

    with tempfile.TemporaryDirectory() as directory:
        model = _check_keras_file(cls(**init_kwargs), x, Path(directory))
    _check_fit_step(model, x, expected_trainable)
