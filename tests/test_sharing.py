"""Sharing architectures: SoftSharing, CrossStitch, MMoE and PLE in a MultiTaskModel."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from gradients import jacobian

import keras_mtl as kmtl
from keras_mtl import plotting
from keras_mtl import sharing as sharing_lib

pytestmark = pytest.mark.portable

# User order differs from the fused-column order (sigmoid, regression,
# categorical), so a wrong column gather in the per-task heads shows.
TASKS = [
    kmtl.Task("weather", kind="categorical", num_classes=3, loss_weight=2.0),
    kmtl.Task("distance", kind="regression"),
    kmtl.Task("car"),
    kmtl.Task("objects", kind="multilabel", labels=["sign", "light"], loss_weight=0.5),
]
LAYERS = {
    "soft": lambda: sharing_lib.SoftSharing(units=(8, 5), strength=0.01),
    "cross_stitch": lambda: sharing_lib.CrossStitch(units=(8, 5), self_weight=0.7),
    "mmoe": lambda: sharing_lib.MMoE(num_experts=3, units=(8, 5)),
    "ple": lambda: sharing_lib.PLE(num_levels=2, num_shared_experts=2, num_task_experts=1, units=5),
}
ARCHITECTURES = list(LAYERS)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def build(sharing, tasks=TASKS, seed=0, hidden=12):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,), name="x")
    features = keras.layers.Dense(hidden, activation="relu", name="trunk")(inputs)
    return kmtl.MultiTaskModel(inputs, features, tasks, sharing=sharing)


def make_data(n, seed=0, missing=0.4):
    """Learnable labels of every kind from a linear map of x; a share hidden."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    z = x @ rng.normal(size=(6, 4))
    labels = {
        "weather": np.digitize(z[:, 3], [-0.5, 0.5]).astype("float32"),
        "distance": (z[:, 0] + 0.5 * z[:, 3]).astype("float32"),
        "car": (z[:, 0] > 0).astype("float32"),
        "objects": np.stack([z[:, 1] > 0, z[:, 2] > 0.3], axis=1).astype("float32"),
    }
    for y in labels.values():
        y[rng.random(y.shape) < missing] = np.nan
    return x, labels


def relu(a):
    return np.maximum(a, 0.0)


def softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def trunk_features(model, x):
    kernel, bias = model.get_layer("trunk").get_weights()
    return relu(x.astype("float64") @ kernel + bias)


def numpy_heads(model, per_task):
    """User-unit outputs from per-task features ``(n, T, d)``, task by task."""
    kernel, bias = model.task_heads.get_weights()
    outputs = {}
    for t, task in enumerate(model.tasks):
        logits = per_task[:, t] @ kernel[t][:, :task.units] + bias[t][:task.units]
        if isinstance(task.kind, kmtl.kinds.Categorical):
            outputs[task.name] = softmax(logits)
        elif isinstance(task.kind, kmtl.kinds.Regression):
            outputs[task.name] = logits
        else:
            outputs[task.name] = sigmoid(logits)
    return outputs


def numpy_task_losses(model, x, labels):
    """Each task's masked loss (section-2 formula, divided by the batch size)."""
    preds = model.predict(x, verbose=0)
    m = len(x)
    losses = {}
    for task in model.tasks:
        y, p = labels[task.name].astype("float64"), preds[task.name].astype("float64")
        if isinstance(task.kind, kmtl.kinds.Categorical):
            mask = ~np.isnan(y)
            entry = -np.log(p[np.arange(m), np.where(mask, y, 0).astype(int)])
        else:
            y = y.reshape(p.shape)
            mask = ~np.isnan(y)
            yc = np.where(mask, y, 0.0)
            if isinstance(task.kind, kmtl.kinds.Regression):
                entry = (p - yc) ** 2
            else:
                entry = -(yc * np.log(p) + (1 - yc) * np.log(1 - p))
        losses[task.name] = np.sum(np.where(mask, entry, 0.0)) / m
    return losses


# -- NumPy references of the architectures, written loop by loop ---------------

def numpy_soft_or_stitch(layer, features, stitched):
    kernels = [k.numpy() for k in layer.kernels]
    biases = [b.numpy() for b in layer.biases]
    towers = [features for _ in range(layer.num_tasks)]
    for i, (kernel, bias) in enumerate(zip(kernels, biases)):
        towers = [relu(h @ kernel[t] + bias[t]) for t, h in enumerate(towers)]
        if stitched:
            alpha = layer.stitches[i].numpy()
            towers = [sum(alpha[t, s] * towers[s] for s in range(len(towers))) for t in range(len(towers))]
    return np.stack(towers, axis=1)


def numpy_mmoe(layer, features):
    kernels = [k.numpy() for k in layer.kernels]
    biases = [b.numpy() for b in layer.biases]
    experts = []
    for e in range(layer.num_experts):
        h = features
        for kernel, bias in zip(kernels, biases):
            h = relu(h @ kernel[e] + bias[e])
        experts.append(h)
    gate_kernel, gate_bias = layer.gate_kernel.numpy(), layer.gate_bias.numpy()
    outputs, gates = [], []
    for t in range(layer.num_tasks):
        g = softmax(features @ gate_kernel[:, t, :] + gate_bias[t])
        gates.append(g)
        outputs.append(sum(g[:, e:e + 1] * experts[e] for e in range(layer.num_experts)))
    return np.stack(outputs, axis=1), np.stack(gates, axis=1)


def numpy_ple(layer, features):
    """PLE as in Tang et al. (2020): per level, task t's gate mixes its own
    experts and the shared ones; the shared gate mixes all experts."""
    num_tasks, s, p = layer.num_tasks, layer.num_shared_experts, layer.num_task_experts
    task_inputs, shared_input = [features] * num_tasks, features
    for w in layer.levels:
        w = {k: (None if v is None else v.numpy()) for k, v in w.items()}
        own = [[relu(task_inputs[t] @ w["task_kernel"][t * p + j] + w["task_bias"][t * p + j])
                for j in range(p)] for t in range(num_tasks)]
        shared = [relu(shared_input @ w["shared_kernel"][j] + w["shared_bias"][j]) for j in range(s)]
        gates, outputs = [], []
        for t in range(num_tasks):
            g = softmax(task_inputs[t] @ w["gate_kernel"][t] + w["gate_bias"][t])
            pool = own[t] + shared
            outputs.append(sum(g[:, e:e + 1] * pool[e] for e in range(p + s)))
            gates.append(g)
        if w["shared_gate_kernel"] is not None:
            g = softmax(shared_input @ w["shared_gate_kernel"] + w["shared_gate_bias"])
            pool = [h for t in range(num_tasks) for h in own[t]] + shared
            shared_input = sum(g[:, e:e + 1] * pool[e] for e in range(len(pool)))
        task_inputs = outputs
    return np.stack(task_inputs, axis=1), np.stack(gates, axis=1)


def numpy_sharing(layer, features):
    if isinstance(layer, sharing_lib.MMoE):
        return numpy_mmoe(layer, features)[0]
    if isinstance(layer, sharing_lib.PLE):
        return numpy_ple(layer, features)[0]
    return numpy_soft_or_stitch(layer, features, isinstance(layer, sharing_lib.CrossStitch))


def randomise(layer, seed):
    """Non-trivial weights everywhere (biases included), so every path counts."""
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        v.assign(rng.normal(scale=0.5, size=v.shape).astype("float32"))


# -- outputs, config (the layers' own contract: tests/test_layers.py) --------------

@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_model_outputs_match_numpy_reference(arch):
    """Shapes, and every output recomputed from the weights loop by loop."""
    model = build(LAYERS[arch]())
    layer = model.sharing
    randomise(layer, 1)
    randomise(model.task_heads, 2)
    x = np.random.default_rng(3).normal(size=(7, 6)).astype("float32")
    per_task = keras.Model(model.inputs, layer.output).predict(x, verbose=0)
    assert per_task.shape == (7, 4, 5)
    features = trunk_features(model, x)
    np.testing.assert_allclose(per_task, numpy_sharing(layer, features), rtol=1e-4, atol=1e-5)
    out = model.predict(x, verbose=0)
    assert {k: v.shape for k, v in out.items()} == {
        "weather": (7, 3), "distance": (7, 1), "car": (7, 1), "objects": (7, 2)}
    expected = numpy_heads(model, per_task.astype("float64"))
    for name in out:
        np.testing.assert_allclose(out[name], expected[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_config_round_trip_of_the_model(arch):
    model = build(LAYERS[arch]())
    clone = kmtl.MultiTaskModel.from_config(model.get_config())
    assert type(clone.sharing) is type(model.sharing)
    assert clone.sharing.get_config() == model.sharing.get_config()
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(4).normal(size=(5, 6)).astype("float32")
    a, b = model.predict(x, verbose=0), clone.predict(x, verbose=0)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_keras_files_reload_in_fresh_process(tmp_path):
    x, labels = make_data(64, seed=5)
    expected = {}
    for arch in ARCHITECTURES:
        model = build(LAYERS[arch]())
        model.compile(optimizer="adam", balancing=kmtl.balancing.UncertaintyWeighting())
        model.fit(x, labels, batch_size=32, epochs=1, verbose=0)
        model.save(tmp_path / f"{arch}.keras")
        expected[arch] = {k: v.tolist() for k, v in model.predict(x, verbose=0).items()}
        expected[arch]["__loss__"] = model.evaluate(x, labels, return_dict=True, verbose=0)["loss"]
        expected[arch]["__layer__"] = type(model.sharing).__name__
    np.savez(tmp_path / "data.npz", x=x, **labels)
    script = textwrap.dedent(f"""
        import json, numpy as np, keras
        import keras_mtl  # registers the classes: no custom_objects needed
        data = dict(np.load({str(tmp_path / 'data.npz')!r}))
        x = data.pop("x")
        got = {{}}
        for arch in {ARCHITECTURES!r}:
            model = keras.saving.load_model({str(tmp_path)!r} + f"/{{arch}}.keras", safe_mode=True)
            got[arch] = {{k: v.tolist() for k, v in model.predict(x, verbose=0).items()}}
            got[arch]["__loss__"] = model.evaluate(x, data, return_dict=True, verbose=0)["loss"]
            got[arch]["__layer__"] = type(model.sharing).__name__
        print(json.dumps(got))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for arch in ARCHITECTURES:
        assert got[arch].pop("__layer__") == expected[arch].pop("__layer__")
        np.testing.assert_allclose(got[arch].pop("__loss__"), expected[arch].pop("__loss__"), rtol=1e-6)
        for name, values in expected[arch].items():
            np.testing.assert_array_equal(np.array(got[arch][name]), np.array(values), err_msg=arch)


# -- soft sharing ---------------------------------------------------------------

def test_soft_sharing_penalty_equals_formula_and_enters_the_loss():
    strength = 0.03
    model = build(sharing_lib.SoftSharing(units=(4, 3), strength=strength))
    layer = model.sharing
    rng = np.random.default_rng(6)
    known = [np.arange(4 * 12 * 4).reshape(4, 12, 4) / 100.0 - 0.9,
             rng.normal(size=(4, 4, 3))]
    for variable, value in zip(layer.kernels, known):
        variable.assign(value.astype("float32"))
    expected = strength * sum(((w - w.mean(axis=0)) ** 2).sum() for w in known)
    np.testing.assert_allclose(float(layer.penalty()), expected, rtol=1e-5)
    np.testing.assert_allclose(model.sharing_weights()["penalty"], expected, rtol=1e-5)

    model.compile(optimizer="sgd")
    x, labels = make_data(48, seed=7)
    result = model.evaluate(kmtl.data.from_arrays(x, labels, model, batch_size=48),
                            return_dict=True, verbose=0)
    task_losses = numpy_task_losses(model, x, labels)
    for name, value in task_losses.items():
        np.testing.assert_allclose(result[f"{name}_loss"], value, rtol=1e-5, err_msg=name)
    weighted = sum(t.loss_weight * task_losses[t.name] for t in model.tasks)
    assert expected > 0.1 * weighted  # the penalty is a visible part of the total
    np.testing.assert_allclose(result["loss"], weighted + expected, rtol=1e-5)


def test_soft_sharing_gradient_pulls_towers_to_their_mean():
    """With every label missing the only gradient is the penalty's:
    ∂Ω/∂W_t = 2λ(W_t − W̄), so one SGD step gives W_t − 2ηλ(W_t − W̄)."""
    strength, lr = 0.5, 0.1
    model = build(sharing_lib.SoftSharing(units=(4,), strength=strength))
    layer = model.sharing
    before = layer.kernels[0].numpy().astype("float64")
    heads_before = model.task_heads.get_weights()
    model.compile(optimizer=keras.optimizers.SGD(lr))
    x = np.random.default_rng(8).normal(size=(16, 6)).astype("float32")
    unlabelled = {t.name: np.full(t.kind.label_shape(t, 16), np.nan)
                  for t in model.tasks}
    model.fit(x, unlabelled, batch_size=16, epochs=1, verbose=0)
    expected = before - 2 * lr * strength * (before - before.mean(axis=0))
    np.testing.assert_allclose(layer.kernels[0].numpy(), expected, rtol=1e-5, atol=1e-7)
    for a, b in zip(heads_before, model.task_heads.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- cross-stitch ---------------------------------------------------------------

def test_cross_stitch_at_identity_is_separate_networks():
    """α = I: each task's output equals a single-task model made of its own
    tower (weights copied) on the same trunk."""
    model = build(sharing_lib.CrossStitch(units=(8, 5)))
    layer = model.sharing
    randomise(layer, 9)
    randomise(model.task_heads, 10)
    for alpha in layer.stitches:
        alpha.assign(np.eye(4, dtype="float32"))
    trunk = model.get_layer("trunk").get_weights()
    head_kernel, head_bias = model.task_heads.get_weights()
    x = np.random.default_rng(11).normal(size=(9, 6)).astype("float32")
    out = model.predict(x, verbose=0)
    for t, task in enumerate(model.tasks):
        inputs = keras.Input((6,), name="x")
        h = keras.layers.Dense(12, activation="relu", name="trunk")(inputs)
        h = keras.layers.Dense(8, activation="relu", name="tower_0")(h)
        h = keras.layers.Dense(5, activation="relu", name="tower_1")(h)
        single = kmtl.MultiTaskModel(inputs, h, [task])
        single.get_layer("trunk").set_weights(trunk)
        for i in range(2):
            single.get_layer(f"tower_{i}").set_weights([layer.kernels[i].numpy()[t], layer.biases[i].numpy()[t]])
        single.task_heads.set_weights([head_kernel[t][:, :task.units], head_bias[t][:task.units]])
        np.testing.assert_allclose(single.predict(x, verbose=0)[task.name], out[task.name], atol=1e-6,
                                   err_msg=task.name)


def test_cross_stitch_initial_alpha_and_learning():
    model = build(sharing_lib.CrossStitch(units=(6,), self_weight=0.7))
    (alpha,) = model.sharing_weights()["cross_stitch"]
    np.testing.assert_allclose(alpha, [[0.7 if i == j else 0.1 for j in range(4)] for i in range(4)],
                               rtol=1e-6)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    x, labels = make_data(256, seed=12)
    model.fit(x, labels, batch_size=64, epochs=2, verbose=0)
    (learned,) = model.sharing_weights()["cross_stitch"]
    np.testing.assert_array_equal(learned, model.sharing.stitches[0].numpy())
    assert np.abs(learned - alpha).max() > 1e-3  # α is trained
    fig = plotting.plot_sharing(model.sharing_weights(), model.task_names)
    assert len([ax for ax in fig.axes if ax.get_title().startswith("Cross-stitch")]) == 1


def test_cross_stitch_with_one_task_starts_at_identity():
    layer = sharing_lib.CrossStitch(units=(3,), self_weight=0.9, num_tasks=1)
    layer.build((None, 4))
    np.testing.assert_allclose(layer.stitches[0].numpy(), [[1.0]])


# -- experts --------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["mmoe", "ple"])
def test_gates_sum_to_one_and_match_reference(arch):
    model = build(LAYERS[arch]())
    layer = model.sharing
    randomise(layer, 13)
    x = np.random.default_rng(14).normal(size=(10, 6)).astype("float32")
    features = trunk_features(model, x)
    gates = keras.ops.convert_to_numpy(layer.gates(keras.ops.convert_to_tensor(features.astype("float32"))))
    experts = layer.num_experts if arch == "mmoe" else layer.num_task_experts + layer.num_shared_experts
    assert gates.shape == (10, 4, experts)
    np.testing.assert_allclose(gates.sum(axis=-1), 1.0, rtol=1e-6)
    assert gates.min() > 0 and gates.max() < 1
    reference = numpy_mmoe(layer, features)[1] if arch == "mmoe" else numpy_ple(layer, features)[1]
    np.testing.assert_allclose(gates, reference, rtol=1e-4, atol=1e-6)
    usage = model.sharing_weights(x)["gates"]
    np.testing.assert_allclose(usage, reference.mean(axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(usage.sum(axis=1), 1.0, rtol=1e-6)
    fig = plotting.plot_sharing(model.sharing_weights(x), model.task_names)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["Expert usage (mean gate weight)"]


def test_ple_variants_without_shared_or_task_experts():
    x = np.random.default_rng(15).normal(size=(6, 6)).astype("float32")
    for shared, own in ((0, 2), (3, 0)):
        model = build(sharing_lib.PLE(num_levels=2, num_shared_experts=shared, num_task_experts=own, units=4))
        randomise(model.sharing, 16)
        per_task = keras.Model(model.inputs, model.sharing.output).predict(x, verbose=0)
        np.testing.assert_allclose(per_task, numpy_ple(model.sharing, trunk_features(model, x))[0],
                                   rtol=1e-4, atol=1e-5)
        assert model.sharing_weights(x)["gates"].shape == (4, shared + own)


# -- export, training, balancing --------------------------------------------------

def test_every_architecture_exports_serving_default_equal_to_predict(tmp_path):
    import tensorflow as tf  # what a serving client loads the SavedModel with, on any backend

    x = np.random.default_rng(17).normal(size=(11, 6)).astype("float32")
    for arch in ARCHITECTURES:
        model = build(LAYERS[arch]())
        randomise(model.sharing, 18)
        if keras.backend.backend() == "torch":  # Keras exports SavedModels from TensorFlow and JAX only
            with pytest.raises(NotImplementedError, match="SavedModel"):
                kmtl.export_saved_model(model, tmp_path / arch / "1")
            continue
        path = kmtl.export_saved_model(model, tmp_path / arch / "1")
        served = tf.saved_model.load(str(path)).signatures["serving_default"](x=tf.constant(x))
        expected = model.predict(x, verbose=0)
        for name, value in expected.items():
            np.testing.assert_allclose(served[name].numpy(), value, atol=1e-5, err_msg=f"{arch} {name}")
        np.testing.assert_array_equal(served["weather_class"].numpy(), expected["weather"].argmax(axis=1))


@pytest.mark.parametrize("arch, balancing", [
    ("soft", kmtl.balancing.PCGrad),
    ("cross_stitch", kmtl.balancing.UncertaintyWeighting),
    ("mmoe", kmtl.balancing.PCGrad),
    ("ple", kmtl.balancing.UncertaintyWeighting),
])
def test_trains_with_missing_labels_and_balancing(arch, balancing):
    x, labels = make_data(768, seed=19, missing=0.5)
    model = build(LAYERS[arch](), hidden=16)
    model.compile(optimizer=keras.optimizers.Adam(0.01), balancing=balancing(seed=0)
                  if balancing is kmtl.balancing.PCGrad else balancing())
    data = kmtl.data.from_arrays(x, labels, model, batch_size=64)
    before = model.evaluate(data, return_dict=True, verbose=0)
    history = model.fit(kmtl.data.from_arrays(x, labels, model, 64, shuffle=True, seed=0), epochs=6,
                        verbose=0)
    after = model.evaluate(data, return_dict=True, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    for task in model.task_names:
        assert after[f"{task}_loss"] < 0.9 * before[f"{task}_loss"], task
    total = sum(after[f"{task}_loss"] for task in model.task_names)
    assert total < 0.5 * sum(before[f"{task}_loss"] for task in model.task_names)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_gradnorm_measures_a_parameter_every_task_reaches(arch):
    """GradNorm compares ‖∇_W L_i‖ across tasks on one shared W: the entries
    of W must be reached by every task's loss, not each task its own slice."""
    model = build(LAYERS[arch]())
    model.compile(balancing=kmtl.balancing.GradNorm())
    x, labels = make_data(32, seed=20, missing=0.0)
    y = kmtl.data.encode_labels(kmtl.data.validate_labels(labels, model), model)
    (variable,) = model.per_task_variables()
    (gradients,) = jacobian(lambda: model.loss_terms(y, model(x, training=True), training=False).task_losses,
                            [variable])
    gradients = gradients.reshape(len(TASKS), -1)
    reached_by_all = np.all(gradients != 0, axis=0)
    assert reached_by_all.any(), f"{variable.path}: no entry gets a gradient from every task"


# -- errors -----------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: sharing_lib.SoftSharing(strength=-0.1),
    lambda: sharing_lib.SoftSharing(units=()),
    lambda: sharing_lib.SoftSharing(units=(8, 0)),
    lambda: sharing_lib.CrossStitch(self_weight=1.5),
    lambda: sharing_lib.CrossStitch(units=-4),
    lambda: sharing_lib.MMoE(num_experts=0),
    lambda: sharing_lib.MMoE(units=()),
    lambda: sharing_lib.MMoE(units=(16, -1)),
    lambda: sharing_lib.PLE(num_levels=0),
    lambda: sharing_lib.PLE(num_shared_experts=0, num_task_experts=0),
    lambda: sharing_lib.PLE(num_task_experts=-1),
    lambda: sharing_lib.PLE(units=0),
    lambda: sharing_lib.MMoE(activation="no_such_activation"),
], ids=["strength", "no_layers", "zero_width", "self_weight", "negative_width", "no_experts",
        "mmoe_no_layers", "mmoe_negative_width", "ple_levels", "ple_no_experts", "ple_negative",
        "ple_width", "activation"])
def test_bad_arguments_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


def test_sharing_layer_is_tied_to_its_task_count():
    layer = sharing_lib.MMoE()
    build(layer)
    with pytest.raises(ValueError, match="built for 4 tasks"):
        build(layer, tasks=TASKS[:2])
    with pytest.raises(TypeError, match="not a sharing layer"):
        build(keras.layers.Dense(4))
