"""Every layer keras_mtl defines keeps the layer contract (tests/layer_contract.py)."""

import inspect
import json

import keras
import numpy as np
import pytest
from layer_contract import run_layer_test

import keras_mtl as kmtl
from keras_mtl import heads, sharing

pytestmark = pytest.mark.portable

T = 3  # tasks
# class, constructor arguments, input shape, output shape (both without the batch axis), trainable weights
CASES = [
    pytest.param(sharing.SoftSharing, dict(units=(8, 5), strength=0.01, num_tasks=T), (6,), (T, 5), 4,
                 id="soft_sharing"),
    pytest.param(sharing.SoftSharing, dict(units=4, strength=0.0, num_tasks=T), (6,), (T, 4), 2,
                 id="soft_sharing_untied"),
    # kernels and biases of two layers, one α per layer
    pytest.param(sharing.CrossStitch, dict(units=(8, 5), self_weight=0.7, num_tasks=T), (6,), (T, 5), 6,
                 id="cross_stitch"),
    pytest.param(sharing.CrossStitch, dict(units=(4,), num_tasks=1), (6,), (1, 4), 3,
                 id="cross_stitch_one_task"),
    # expert kernels and biases of two layers, gate kernel and bias
    pytest.param(sharing.MMoE, dict(num_experts=3, units=(8, 5), num_tasks=T), (6,), (T, 5), 6, id="mmoe"),
    # level 1: task, shared, gate and shared-gate kernels and biases; the last level has no shared gate,
    # nor has any level without shared experts for it to feed
    pytest.param(sharing.PLE, dict(num_levels=2, num_shared_experts=2, num_task_experts=1, units=5,
                                   num_tasks=T), (6,), (T, 5), 8 + 6, id="ple"),
    pytest.param(sharing.PLE, dict(num_levels=2, num_shared_experts=0, num_task_experts=2, units=4,
                                   num_tasks=T), (6,), (T, 4), 4 + 4, id="ple_no_shared_experts"),
    pytest.param(sharing.PLE, dict(num_levels=1, num_shared_experts=3, num_task_experts=0, units=4,
                                   num_tasks=T), (6,), (T, 4), 4, id="ple_no_task_experts"),
    pytest.param(heads.TaskHeads, dict(units=7), (6,), (7,), 2, id="task_heads"),
    # per-task features (T, d) → the fused columns, in the layout's column order
    pytest.param(heads.TaskHeads, dict(units=5, task_units=[3, 1, 1], column_tasks=[1, 2, 0, 0, 0]),
                 (T, 6), (5,), 2, id="task_heads_per_task"),
]


@pytest.mark.parametrize("cls, kwargs, input_shape, output_shape, trainable", CASES)
def test_layer_contract(cls, kwargs, input_shape, output_shape, trainable):
    run_layer_test(cls, kwargs, input_shape, expected_output_shape=output_shape,
                   expected_trainable=trainable)


@pytest.mark.parametrize("activation, units", [("softmax", 3), ("sigmoid", 2), ("linear", 1)])
def test_task_output_contract(activation, units):
    # A slice and an activation: no weights of its own; float32 outputs under any policy.
    run_layer_test(heads.TaskOutput, dict(start=1, stop=1 + units, activation=activation), (7,),
                   expected_output_shape=(units,), expected_trainable=0, output_dtype="float32")


def test_task_outputs_equal_one_task_output_layer_per_task(tmp_path):
    """TaskOutputs (a dict of outputs, beyond the harness's one tensor) against TaskOutput per task."""
    entries = [["a", 0, 1, "sigmoid", True], ["b", 1, 3, "sigmoid", True], ["r", 3, 4, "linear", True],
               ["w", 4, 7, "softmax", False], ["v", 7, 9, "softmax", False], ["c", 9, 10, "sigmoid", True]]
    layer = heads.TaskOutputs(entries)
    clone = heads.TaskOutputs.from_config(json.loads(json.dumps(layer.get_config())))
    assert clone.get_config() == layer.get_config()
    x = np.random.default_rng(0).normal(size=(4, 10)).astype("float32")
    found, again = layer(x), clone(x)
    assert list(found) == [e[0] for e in entries]
    for name, start, stop, activation, _ in entries:
        expected = heads.TaskOutput(start, stop, activation)(x)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(found[name]), keras.ops.convert_to_numpy(expected),
                                   rtol=1e-6, err_msg=name)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(again[name]),
                                      keras.ops.convert_to_numpy(found[name]))
    symbolic = layer(keras.Input((10,)))
    assert {k: tuple(v.shape) for k, v in symbolic.items()} == {e[0]: (None, e[2] - e[1]) for e in entries}
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        outputs = heads.TaskOutputs(entries)(keras.ops.cast(x, "bfloat16"))
        assert {keras.backend.standardize_dtype(v.dtype) for v in outputs.values()} == {"float32"}
    finally:
        keras.config.set_dtype_policy("float32")


# Layers that are not tensor-to-tensor maps, with the file that tests them.
NOT_TENSOR_LAYERS = {
    kmtl.balancing.Balancer: "task-weighting state, set up by compile: tests/test_balancing.py",
}


@pytest.mark.parametrize("change", ["lora", "int8"])
def test_the_fused_heads_follow_their_dense_kernel_s_lora_and_quantisation(change):
    """TaskHeads computes its Dense's kernel without a second layer call: a LoRA kernel and an
    int8-quantised one (model.quantize) must still be what it applies."""
    inputs = keras.Input((6,), name="x")
    features = keras.layers.Dense(8, name="hidden")(inputs)
    model = kmtl.MultiTaskModel(inputs, features, [kmtl.Task("a"), kmtl.Task("b", kind="regression")])
    trunk, _ = model.split_at_representation()
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    before = keras.ops.convert_to_numpy(model(x)[heads.FUSED_LOGITS])
    dense = model.task_heads.dense
    if change == "lora":
        dense.enable_lora(2)
        dense.lora_kernel_b.assign(np.full(dense.lora_kernel_b.shape, 0.5, "float32"))
    else:
        model.quantize("int8")
        assert dense.quantization_mode == "int8"
    after = keras.ops.convert_to_numpy(model(x)[heads.FUSED_LOGITS])
    own = keras.ops.convert_to_numpy(dense(trunk(x)))  # the Dense's own Layer.__call__
    np.testing.assert_allclose(after, own, rtol=1e-6, atol=1e-6)
    assert np.max(np.abs(after - before)) > 1e-4  # the change reached the heads


def test_every_layer_of_the_package_is_covered():
    covered = {case.values[0] for case in CASES} | {heads.TaskOutput, heads.TaskOutputs}
    found = set()
    for module in (sharing, heads, kmtl.balancing, kmtl.model, kmtl.metrics):
        for _, value in inspect.getmembers(module, inspect.isclass):
            if (issubclass(value, keras.layers.Layer) and not issubclass(value, keras.Model)
                    and value.__module__.startswith("keras_mtl")):
                found.add(value)
    bases = {sharing.SharingLayer}  # abstract: the classes above derive from it
    uncovered = {cls for cls in found - covered - bases if not cls.__name__.startswith("_")
                 and not any(issubclass(cls, base) for base in NOT_TENSOR_LAYERS)}
    assert not uncovered, f"layers without a contract test: {sorted(c.__name__ for c in uncovered)}"
    assert covered <= found
