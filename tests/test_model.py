"""MultiTaskModel: graph, compile, training, metrics, callbacks, saving."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import require
from gradients import value_and_gradients

import keras_mtl as kmtl

pytestmark = pytest.mark.portable

TASKS = [
    kmtl.Task("car"),
    kmtl.Task("objects", kind="multilabel", labels=["sign", "light"], loss_weight=0.5),
    kmtl.Task("weather", kind="categorical", num_classes=3, loss_weight=2.0),
    kmtl.Task("distance", kind="regression"),
]


def build(tasks=TASKS, seed=0, hidden=16):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,), name="x")
    features = keras.layers.Dense(hidden, activation="relu", name="trunk")(inputs)
    return kmtl.MultiTaskModel(inputs, features, tasks)


def loss_and_gradients(model, x, y):
    """The task losses of a training forward pass and the gradients of their sum."""
    def fn():
        task_losses = model.loss_terms(y, model(x, training=True)).task_losses
        return keras.ops.sum(task_losses), task_losses

    _, task_losses, grads = value_and_gradients(fn, model.trainable_variables)
    return task_losses, grads


def random_labels(n, rng, missing=0.4):
    labels = {
        "car": rng.integers(0, 2, n).astype("float32"),
        "objects": rng.integers(0, 2, (n, 2)).astype("float32"),
        "weather": rng.integers(0, 3, n).astype("float32"),
        "distance": rng.normal(size=n).astype("float32"),
    }
    for y in labels.values():
        y[rng.random(y.shape) < missing] = np.nan
    return labels


def numpy_total_loss(model, x, labels, weights, normalize="batch"):
    """Σ_t w_t · J_t with J_t the masked loss formula, from predictions."""
    preds = model.predict(x, verbose=0)
    total = 0.0
    m = len(x)
    for task in model.tasks:
        y, p = labels[task.name].astype("float64"), preds[task.name].astype("float64")
        if isinstance(task.kind, kmtl.kinds.Categorical):
            mask = ~np.isnan(y)
            idx = np.where(mask, y, 0).astype(int)
            entry = -np.log(p[np.arange(m), idx])
        else:
            y = y.reshape(p.shape)
            mask = ~np.isnan(y)
            yc = np.where(mask, y, 0)
            if isinstance(task.kind, kmtl.kinds.Regression):
                entry = (p - yc) ** 2
            else:
                entry = -(yc * np.log(p) + (1 - yc) * np.log(1 - p))
        summed = np.sum(np.where(mask, entry, 0.0))
        total += weights[task.name] * summed / (m if normalize == "batch" else mask.sum())
    return total


def test_outputs_are_named_probabilities_and_values():
    model = build()
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    out = model.predict(x, verbose=0)
    assert list(out) == ["car", "objects", "weather", "distance"]
    assert out["car"].shape == (5, 1) and out["objects"].shape == (5, 2)
    assert out["weather"].shape == (5, 3) and out["distance"].shape == (5, 1)
    assert np.all((out["car"] > 0) & (out["car"] < 1))
    np.testing.assert_allclose(out["weather"].sum(axis=1), 1.0, rtol=1e-5)
    # Regression output is the raw logit: equals the fused kernel's column.
    logits = keras.ops.convert_to_numpy(keras.Model(model.input, model.task_heads.output)(x))
    np.testing.assert_allclose(out["distance"][:, 0], logits[:, 3], rtol=1e-6)
    np.testing.assert_allclose(out["car"][:, 0], 1 / (1 + np.exp(-logits[:, 0])), rtol=1e-5)


@pytest.mark.parametrize("normalize", ["batch", "labeled"])
def test_evaluate_loss_is_weighted_sum_of_formula(normalize):
    rng = np.random.default_rng(1)
    model = build()
    model.compile(optimizer="sgd", normalize=normalize, loss_weights={"car": 3.0})
    x = rng.normal(size=(40, 6)).astype("float32")
    labels = random_labels(40, rng)
    result = model.evaluate(kmtl.data.from_arrays(x, labels, model, batch_size=40),
                            return_dict=True, verbose=0)
    weights = {"car": 3.0, "objects": 0.5, "weather": 2.0, "distance": 1.0}
    assert model.loss_weights == weights
    expected = numpy_total_loss(model, x, labels, weights, normalize)
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)
    single = numpy_total_loss(model, x, labels, {**dict.fromkeys(weights, 0.0), "weather": 1.0}, normalize)
    np.testing.assert_allclose(result["weather_loss"], single, rtol=1e-5)


def test_metrics_count_labelled_entries_only():
    rng = np.random.default_rng(2)
    model = build()
    model.compile()
    x = rng.normal(size=(64, 6)).astype("float32")
    labels = random_labels(64, rng, missing=0.5)
    result = model.evaluate(x, labels, batch_size=64, return_dict=True, verbose=0)
    preds = model.predict(x, verbose=0)
    keep = ~np.isnan(labels["car"])
    expected_acc = np.mean((preds["car"][keep, 0] > 0.5) == labels["car"][keep])
    np.testing.assert_allclose(result["car_accuracy"], expected_acc, rtol=1e-6)
    auc = keras.metrics.AUC()
    auc.update_state(labels["car"][keep], preds["car"][keep, 0])
    np.testing.assert_allclose(result["car_auc"], float(auc.result()), rtol=1e-6)
    keep = ~np.isnan(labels["distance"])
    expected_mae = np.mean(np.abs(preds["distance"][keep, 0] - labels["distance"][keep]))
    np.testing.assert_allclose(result["distance_mae"], expected_mae, rtol=1e-5)


def test_metrics_of_a_task_s_own_read_its_output_of_the_forward_pass():
    # A task with metrics of its own (categorical accuracy, a custom MSE) reads its output from
    # the forward pass's return value, beside the fused logits the loss reads.
    rng = np.random.default_rng(4)
    model = build()
    model.compile(metrics={"weather": ["accuracy"], "distance": [keras.metrics.MeanSquaredError(name="mse")]})
    x = rng.normal(size=(48, 6)).astype("float32")
    labels = random_labels(48, rng, missing=0.3)
    model.fit(x, labels, batch_size=16, epochs=1, verbose=0)
    result = model.evaluate(x, labels, batch_size=48, return_dict=True, verbose=0)
    outputs = model(x, training=True)  # the same forward pass in a step and outside one
    assert sorted(outputs) == sorted([*model.task_names, kmtl.heads.FUSED_LOGITS])
    preds = model.predict(x, verbose=0)
    keep = ~np.isnan(labels["weather"])
    expected = np.mean(np.argmax(preds["weather"][keep], axis=1) == labels["weather"][keep])
    np.testing.assert_allclose(result["weather_accuracy"], expected, rtol=1e-6)
    keep = ~np.isnan(labels["distance"])
    expected = np.mean((preds["distance"][keep, 0] - labels["distance"][keep]) ** 2)
    np.testing.assert_allclose(result["distance_mse"], expected, rtol=1e-5)


def test_stable_at_extreme_logits():
    model = build(tasks=[kmtl.Task("car"), kmtl.Task("weather", kind="categorical", num_classes=3)])
    heads = model.task_heads
    kernel, bias = heads.get_weights()
    heads.set_weights([np.zeros_like(kernel), np.array([100.0, -100.0, 100.0, 0.0])])
    model.compile(optimizer="sgd")
    x = np.ones((4, 6), "float32")
    labels = {"car": np.array([0.0, 1.0, np.nan, 0.0]), "weather": np.array([1, 2, 0, np.nan])}
    y = kmtl.data.encode_labels(kmtl.data.validate_labels(labels, model), model)
    task_losses, grads = loss_and_gradients(model, x, y)
    assert np.all(np.isfinite(task_losses))
    assert all(np.all(np.isfinite(g)) for g in grads)
    # car: logit 100 with label 0 on 2 of 4 examples → (100 + 100) / 4.
    np.testing.assert_allclose(task_losses[0], 50.0, rtol=1e-4)
    # weather: 200 for label 1 (−100 vs 100), 100 for label 2, 0 for label 0 → 300 / 4.
    np.testing.assert_allclose(task_losses[1], 75.0, rtol=1e-4)
    history = model.fit(x, labels, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_learns_four_tasks_with_half_the_labels_missing():
    rng = np.random.default_rng(3)
    n = 3000
    x = rng.normal(size=(n, 6)).astype("float32")
    z = x @ rng.normal(size=(6, 4))
    labels = {
        "car": (z[:, 0] > 0).astype("float32"),
        "objects": np.stack([z[:, 1] > 0, z[:, 2] > 0.3], axis=1).astype("float32"),
        "weather": np.digitize(z[:, 3], [-0.5, 0.5]).astype("float32"),
        "distance": (z[:, 0] + 0.5 * z[:, 3]).astype("float32"),
    }
    train_labels = {k: v[:2000].copy() for k, v in labels.items()}
    for y in train_labels.values():
        y[rng.random(y.shape) < 0.5] = np.nan
    model = build(hidden=32)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(kmtl.data.from_arrays(x[:2000], train_labels, model, 64, shuffle=True, seed=0),
              epochs=8, verbose=0)
    result = model.evaluate(x[2000:], {k: v[2000:] for k, v in labels.items()},
                            return_dict=True, verbose=0)
    assert result["car_auc"] > 0.95
    assert result["objects_auc"] > 0.9
    assert result["weather_accuracy"] > 0.8
    assert result["distance_mae"] < 0.5 * np.mean(np.abs(labels["distance"]))


def test_compile_errors_name_the_fix():
    model = build()
    with pytest.raises(ValueError, match="unknown task 'bus'"):
        model.compile(loss_weights={"bus": 1.0})
    with pytest.raises(ValueError, match="loss_weight"):
        model.compile(loss_weights={"car": -1.0})
    with pytest.raises(ValueError, match="do not pass loss="):
        model.compile(loss="mse")
    with pytest.raises(ValueError, match="normalize"):
        model.compile(normalize="mean")
    with pytest.raises(ValueError, match="Unknown task 'bus'"):
        model.compile(metrics={"bus": ["auc"]})


def test_labels_must_match_tasks():
    model = build()
    model.compile()
    x = np.zeros((4, 6), "float32")
    labels = random_labels(4, np.random.default_rng(0))
    del labels["car"]
    with pytest.raises(ValueError, match=r"labels has no entry for task 'car'"):
        model.fit(x, labels, verbose=0)
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['bus'\]"):
        model.evaluate(x, {**labels, "car": np.zeros(4), "bus": np.zeros(4)}, verbose=0)


@pytest.mark.parametrize("name", ["features", "heads", "sharing", "outputs", "logits", "task_outputs", "car"])
def test_any_trunk_layer_or_input_name_works(name):
    # A task's name included: no layer is named after a task.
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    for input_name, layer_name in ((name, "trunk"), ("x", name)):
        inputs = keras.Input((3,), name=input_name)
        features = keras.layers.Dense(4, name=layer_name)(inputs)
        model = kmtl.MultiTaskModel(inputs, features, [kmtl.Task("car"), kmtl.Task("bike")])
        model.compile()
        model.fit(x, {"car": np.ones(8), "bike": np.zeros(8)}, verbose=0)
        assert sorted(model.predict(x, verbose=0)) == ["bike", "car"]


def test_a_trunk_layer_named_like_keras_mtl_s_own_is_refused():
    inputs = keras.Input((3,), name="x")
    features = keras.layers.Dense(4, name="kmtl_heads")(inputs)
    with pytest.raises(ValueError, match=r"\['kmtl_heads'\] of the trunk are keras_mtl's own"):
        kmtl.MultiTaskModel(inputs, features, [kmtl.Task("car")])


@pytest.mark.parametrize("many", [False, True])
def test_one_output_layer_serves_every_task(many):
    inputs = keras.Input((3,), name="x")
    features = keras.layers.Dense(4, name="t0")(inputs)
    tasks = [kmtl.Task(f"t{i}") for i in range(17 if many else 2)] + [
        kmtl.Task("w", kind="categorical", num_classes=3)]
    model = kmtl.MultiTaskModel(inputs, features, tasks)
    assert [layer.name for layer in model.layers] == ["x", "t0", "kmtl_heads", "kmtl_outputs"]
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    predicted = model.predict(x, verbose=0)
    assert list(predicted) == [t.name for t in tasks]
    forward = model(x)
    assert list(forward) == [*model.task_names, kmtl.heads.FUSED_LOGITS]
    logits = keras.ops.convert_to_numpy(forward[kmtl.heads.FUSED_LOGITS])
    for task in tasks:  # each output is its columns of the fused logits, activated
        block = logits[:, model._layout.block(task.name).start:model._layout.block(task.name).stop]
        expected = (np.exp(block) / np.exp(block).sum(axis=1, keepdims=True) if task.name == "w"
                    else 1 / (1 + np.exp(-block)))
        np.testing.assert_allclose(predicted[task.name], expected, rtol=1e-5, err_msg=task.name)


@pytest.mark.parametrize("training", [False, True])
def test_the_forward_pass_returns_what_its_functional_graph_returns(training):
    # MultiTaskModel.call runs the graph to the fused logits, then the output layer itself.
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    features = keras.layers.BatchNormalization()(keras.layers.Dense(5)(keras.layers.Concatenate()([a, b])))
    keras.utils.set_random_seed(1)
    model = kmtl.MultiTaskModel({"a": a, "b": b}, features, TASKS)
    model.task_outputs.target_mean.assign(np.full(model.task_outputs.units, 3.0, "float32"))
    model.task_outputs.target_scale.assign(np.full(model.task_outputs.units, 2.0, "float32"))
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(6, 3)).astype("float32"), "b": 5 + rng.normal(size=(6, 2)).astype("float32")}
    graph = keras.Model(model.input, model.output)
    expected = {k: keras.ops.convert_to_numpy(v) for k, v in graph(x, training=training).items()}
    found = {k: keras.ops.convert_to_numpy(v) for k, v in model(x, training=training).items()}
    assert list(found) == [*model.task_names, kmtl.heads.FUSED_LOGITS]  # the graph's own are sorted on PyTorch
    assert sorted(expected) == sorted(found)
    for name, value in expected.items():
        np.testing.assert_allclose(found[name], value, rtol=1e-6, err_msg=name)
    # Batch statistics (inputs b centred at 5) differ from the initial moving ones: training reaches the trunk.
    other = keras.ops.convert_to_numpy(model(x, training=not training)[kmtl.heads.FUSED_LOGITS])
    assert np.abs(other - found[kmtl.heads.FUSED_LOGITS]).max() > 1e-3


class HookOverridden(kmtl.MultiTaskModel):
    """Overrides a step hook (unchanged): the model must then run Keras's own training step."""

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred, sample_weight)


def _trained(cls, epochs=2):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(8, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01))(inputs)
    tasks = [kmtl.Task(f"t{i}") for i in range(3)] + [kmtl.Task("d", kind="regression", standardize=False)]
    model = cls(inputs, hidden, tasks)
    model.compile(optimizer=keras.optimizers.SGD(0.1))  # SGD: a gradient of another size moves the weights
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 6)).astype("float32")
    labels = {f"t{i}": np.where(rng.random(64) < 0.3, np.nan, (x[:, i] > 0).astype("float32")) for i in range(3)}
    labels["d"] = x[:, 4] + 0.1 * rng.normal(size=64)
    history = model.fit(kmtl.data.from_arrays(x, labels, tasks, batch_size=16), epochs=epochs, verbose=0).history
    return model, history


def test_the_loss_weighting_step_gives_keras_s_own_step_s_numbers():
    """On PyTorch the step stops the forward pass at the fused logits; the numbers are Keras's step's."""
    own, own_history = _trained(kmtl.MultiTaskModel)
    keras_step, keras_history = _trained(HookOverridden)
    assert own.step_reads_logits_only() and not keras_step.step_reads_logits_only()
    assert sorted(own_history) == sorted(keras_history)
    for key, values in keras_history.items():
        np.testing.assert_allclose(own_history[key], values, rtol=1e-5, atol=1e-6, err_msg=key)
    for mine, theirs in zip(own.get_weights(), keras_step.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    assert own_history["loss"][-1] < own_history["loss"][0]


def test_the_step_reads_the_outputs_where_a_metric_or_a_standardised_target_needs_them():
    model = build()
    model.compile(optimizer="adam", metrics={"car": [keras.metrics.BinaryAccuracy(name="acc")]})
    assert not model.step_reads_logits_only()  # a task's own metric reads its output
    model.compile(optimizer="adam", metrics=[])
    assert model.step_reads_logits_only()
    inputs = keras.Input((3,))
    standardised = kmtl.MultiTaskModel(inputs, keras.layers.Dense(4)(inputs),
                                       [kmtl.Task("a"), kmtl.Task("price", kind="regression")])
    standardised.compile(optimizer="adam")  # its metrics read prices in user units
    assert not standardised.step_reads_logits_only()
    standardised.compile(optimizer="adam", metrics=[])
    assert standardised.step_reads_logits_only()


def test_image_features_are_flattened_and_multi_input_works():
    image = keras.Input((4, 4, 2), name="image")
    meta = keras.Input((3,), name="meta")
    conv = keras.layers.Conv2D(2, 3, name="conv")(image)
    features = keras.layers.Concatenate()([keras.layers.Flatten()(conv), meta])
    model = kmtl.MultiTaskModel({"image": image, "meta": meta},
                                keras.layers.Reshape((11, 1))(features), [kmtl.Task("car")])
    model.compile()
    x = {"image": np.ones((8, 4, 4, 2), "float32"), "meta": np.ones((8, 3), "float32")}
    model.fit(kmtl.data.from_arrays(x, {"car": [1, 0] * 4}, model, 4), verbose=0)
    assert model.predict(x, verbose=0)["car"].shape == (8, 1)


def test_config_round_trip_keeps_graph_and_tasks():
    model = build()
    clone = kmtl.MultiTaskModel.from_config(model.get_config())
    assert clone.tasks == model.tasks
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(4).normal(size=(3, 6)).astype("float32")
    a, b = model.predict(x, verbose=0), clone.predict(x, verbose=0)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_keras_file_reloads_in_fresh_process(tmp_path):
    rng = np.random.default_rng(5)
    model = build()
    model.compile(optimizer="adam", loss_weights={"car": 2.0}, normalize="labeled",
                  metrics={"car": ["auc"]})
    x = rng.normal(size=(32, 6)).astype("float32")
    labels = random_labels(32, rng)
    model.fit(x, labels, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    np.savez(tmp_path / "data.npz", x=x, **labels)
    expected = {k: v.tolist() for k, v in model.predict(x, verbose=0).items()}
    expected["__eval__"] = model.evaluate(x, labels, return_dict=True, verbose=0)
    script = textwrap.dedent(f"""
        import json, numpy as np, keras
        import keras_mtl  # registers the classes: no custom_objects needed
        model = keras.saving.load_model({str(path)!r}, safe_mode=True)
        data = dict(np.load({str(tmp_path / 'data.npz')!r}))
        x = data.pop("x")
        out = {{k: v.tolist() for k, v in model.predict(x, verbose=0).items()}}
        out["__eval__"] = model.evaluate(x, data, return_dict=True, verbose=0)
        out["__class__"] = type(model).__name__
        out["__weights__"] = model.loss_weights
        print(json.dumps(out))
    """)
    # PYTHONSAFEPATH: the fresh process imports the keras_mtl this one does, not the cwd's.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONSAFEPATH": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          check=True)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got.pop("__class__") == "MultiTaskModel"
    assert got.pop("__weights__")["car"] == 2.0
    for name in ("car", "objects", "weather", "distance"):
        np.testing.assert_array_equal(np.array(got[name]), np.array(expected[name]))
    assert set(got["__eval__"]) == set(expected["__eval__"])
    for key, value in expected["__eval__"].items():
        np.testing.assert_allclose(got["__eval__"][key], value, rtol=1e-6)


def test_callbacks_early_stopping_and_tensorboard(tmp_path):
    rng = np.random.default_rng(6)
    model = build()
    model.compile()
    x = rng.normal(size=(64, 6)).astype("float32")
    labels = random_labels(64, rng)
    train = kmtl.data.from_arrays(x, labels, model, 16)
    # Validation labels are the training labels flipped: as the model learns
    # car, val_car_auc falls, so EarlyStopping on it must end training early.
    flipped = {**labels, "car": 1.0 - labels["car"]}
    val = kmtl.data.from_arrays(x, flipped, model, 16)
    stop = keras.callbacks.EarlyStopping(monitor="val_car_auc", mode="max", patience=1)
    history = model.fit(train, validation_data=val, epochs=20, verbose=0,
                        callbacks=[stop, keras.callbacks.TensorBoard(str(tmp_path / "logs"))])
    assert "val_car_auc" in history.history and "weather_loss" in history.history
    assert len(history.history["loss"]) < 20  # stopped early on the task metric
    assert any((tmp_path / "logs").rglob("events.out.tfevents.*"))


def test_summary_and_plot_model(tmp_path):
    model = build()
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    for name in ("trunk", "kmtl_heads", "kmtl_outputs"):
        assert name in text
    dot = keras.utils.model_to_dot(model)
    assert {n.get_name().strip('"') for n in dot.get_nodes()} >= {str(id(model.get_layer("kmtl_outputs")))}
    require(shutil.which("dot") is not None,
            "Graphviz's `dot` is not on PATH: plot_model cannot draw (.ci/run installs it: apt-get install graphviz)")
    keras.utils.plot_model(model, to_file=str(tmp_path / "model.png"))
    assert (tmp_path / "model.png").stat().st_size > 1000


# -- many tasks: what training logs ---------------------------------------------

def many_task_model(balancing=None):
    tasks = ([kmtl.Task(f"t{i:02d}") for i in range(17)]
             + [kmtl.Task("size", kind="regression"), kmtl.Task("kind", kind="categorical", num_classes=3)])
    model = build(tasks)
    model.compile(optimizer=keras.optimizers.Adam(0.01), balancing=balancing)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 6)).astype("float32")
    labels = {f"t{i:02d}": np.where(rng.random(64) < 0.3, np.nan, (x[:, i % 6] > 0)).astype("float32")
              for i in range(17)}
    labels["size"] = x[:, 0] * 2.0
    labels["kind"] = rng.integers(0, 3, 64)
    return model, kmtl.data.from_arrays(x, labels, model, batch_size=16)


def test_more_than_16_tasks_log_task_means_in_training():
    model, data = many_task_model()
    history = model.fit(data, epochs=2, verbose=0, validation_data=data).history
    trained = [k for k in history if not k.startswith("val_")]
    assert sorted(trained) == ["loss", "mean_accuracy", "mean_auc", "mean_mae", "mean_task_loss"]
    # The logged means are the means over tasks of the per-task figures.
    per_task = {k: float(v) for k, v in model.get_metrics_result().items()}
    binary = [f"t{i:02d}" for i in range(17)]
    np.testing.assert_allclose(history["mean_auc"][-1], np.mean([per_task[f"{n}_auc"] for n in binary]),
                               rtol=1e-5)
    accuracies = [per_task[f"{n}_accuracy"] for n in binary] + [per_task["kind_accuracy"]]
    np.testing.assert_allclose(history["mean_accuracy"][-1], np.mean(accuracies), rtol=1e-5)
    np.testing.assert_allclose(history["mean_mae"][-1], per_task["size_mae"], rtol=1e-5)
    losses = [per_task[f"{t.name}_loss"] for t in model.tasks]
    np.testing.assert_allclose(history["mean_task_loss"][-1], np.mean(losses), rtol=1e-5)
    # evaluate and validation still report every task, with the same figures.
    results = model.evaluate(data, verbose=0, return_dict=True)
    assert {f"{t.name}_loss" for t in model.tasks} <= set(results)
    assert {f"{n}_auc" for n in binary} | {"kind_accuracy", "size_mae"} <= set(results)
    assert {f"val_{k}" for k in results} == set(history) - set(trained)
    for key, value in results.items():
        np.testing.assert_allclose(history[f"val_{key}"][-1], value, rtol=1e-5, err_msg=key)
    listed = model.evaluate(data, verbose=0)
    assert listed == [results["loss"], *(results[k] for k in sorted(results) if k != "loss")]


def test_more_than_16_tasks_leave_the_aucs_to_the_epoch_s_end():
    # t00 has its own AUC metric (not fused): its AUC must not stand for the mean AUC of the steps.
    tasks = ([kmtl.Task("t00", metrics=["auc", "accuracy"])] + [kmtl.Task(f"t{i:02d}") for i in range(1, 17)]
             + [kmtl.Task("size", kind="regression")])
    model = build(tasks)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 6)).astype("float32")
    labels = {f"t{i:02d}": np.where(rng.random(64) < 0.3, np.nan, (x[:, i % 6] > 0)).astype("float32")
              for i in range(17)}
    labels["size"] = x[:, 0] * 2.0
    steps = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: steps.append({k: float(v) for k, v in logs.items()}))
    history = model.fit(kmtl.data.from_arrays(x, labels, model, batch_size=16), epochs=1, verbose=0,
                        callbacks=[record]).history
    assert len(steps) == 4
    assert all(sorted(step) == ["loss", "mean_accuracy", "mean_mae", "mean_task_loss"] for step in steps)
    per_task = {k: float(v) for k, v in model.get_metrics_result().items()}
    aucs = [per_task[f"t{i:02d}_auc"] for i in range(17)]
    assert np.ptp(aucs) > 0.01  # a mean of one AUC would not pass below
    np.testing.assert_allclose(history["mean_auc"], [np.mean(aucs)], rtol=1e-5)
    # The last step saw the epoch's figures: its means are the epoch's.
    for key in ("mean_accuracy", "mean_mae", "mean_task_loss"):
        np.testing.assert_allclose(steps[-1][key], history[key][0], rtol=1e-5, err_msg=key)


def test_more_than_16_tasks_log_every_weight_each_epoch():
    model, data = many_task_model(kmtl.balancing.DWA())
    history = model.fit(data, epochs=4, verbose=0).history
    names = [t.name for t in model.tasks]
    assert {f"weight_{n}" for n in names} <= set(history)
    weights = np.array([history[f"weight_{n}"] for n in names])  # (tasks, epochs)
    np.testing.assert_allclose(weights[:, :2], 1.0)  # DWA: w = 1 for the first two epochs
    np.testing.assert_allclose(weights.sum(axis=0), len(names), rtol=1e-5)  # Σ w = K
    assert np.ptp(weights[:, 2]) > 1e-4  # then they follow the losses


def _training_run(x, labels, data=None, epochs=2, **compile_kwargs):
    model = build(seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.01), **compile_kwargs)
    data = (x, labels) if data is None else (data(model),)
    fit_kwargs = {"batch_size": 32, "shuffle": False} if len(data) == 2 else {}
    return model.fit(*data, epochs=epochs, verbose=0, **fit_kwargs).history["loss"]


def test_numpy_arrays_pipelines_and_keras_step_options_train_alike():
    """NumPy arrays and kmtl.data pipelines feed the same steps; steps_per_execution and
    jit_compile change no number."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(128, 6)).astype("float32")
    labels = random_labels(128, rng)
    base = _training_run(x, labels)
    assert base[1] < base[0]
    pipeline = _training_run(x, labels, data=lambda model: kmtl.data.from_arrays(x, labels, model, 32))
    np.testing.assert_allclose(pipeline, base, rtol=1e-5)
    # Keras runs several steps per execution, compiled by XLA, on TensorFlow and JAX. PyTorch
    # takes 1 step per execution, and torch.compile of this step took 6 min on 2 CPU cores.
    on_torch = keras.backend.backend() == "torch"
    fused = _training_run(x, labels, steps_per_execution=1 if on_torch else 4, jit_compile=not on_torch)
    np.testing.assert_allclose(fused, base, rtol=1e-4)


def test_mixed_precision_trains_to_the_float32_loss():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(128, 6)).astype("float32")
    labels = random_labels(128, rng)
    reference = _training_run(x, labels)
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = _training_run(x, labels)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert np.all(np.isfinite(mixed)) and mixed[1] < mixed[0]
    np.testing.assert_allclose(mixed, reference, rtol=0.03)  # bfloat16 keeps ~3 significant digits


@pytest.mark.parametrize("name", ["hard", "many"])
def test_keras_files_of_version_0_1_still_load_and_train(name):
    # Written by keras_mtl 0.1.0 (tests/data/make_v0_1_files.py): per-task output layers (hard) and one
    # output layer for 20 tasks with MMoE (many), each compiled with a balancing strategy.
    data = Path(__file__).parent / "data"
    expected = np.load(data / "v0_1_expected.npz")
    model = keras.saving.load_model(data / f"v0_1_{name}.keras")
    x = expected[f"{name}_x"]
    predicted = model.predict(x, verbose=0)
    outputs = {key.split("/", 1)[1]: expected[key] for key in expected.files if key.startswith(f"{name}/")}
    assert list(predicted) == model.task_names and sorted(predicted) == sorted(outputs)
    for task, value in outputs.items():
        np.testing.assert_allclose(predicted[task], value, atol=1e-6, err_msg=task)
    labels = {t: np.ones(len(x), "float32") if model.get_task(t).kind.class_labels else np.zeros(len(x), "float32")
              for t in model.task_names}
    history = model.fit(x, labels, epochs=1, verbose=0)  # the compiled strategy came back with the file
    assert np.isfinite(history.history["loss"][0])


# -- what a Keras user passes to fit, evaluate and predict ----------------------------------

def _frames(n=48, seed=5):
    import pandas as pd

    rng = np.random.default_rng(seed)
    features = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)}).astype("float32")
    car = np.where(features.a > 0, 1, 0).astype(object)
    car[rng.random(n) < 0.3] = "?"
    size = np.where(rng.random(n) < 0.2, np.nan, 3.0 * features.b)
    return features, pd.DataFrame({"car": car, "size": size})


def _frame_model():
    inputs = keras.Input((2,), name="features")  # a name tabular users pick
    keras.utils.set_random_seed(1)
    features = keras.layers.Dense(8, activation="relu")(inputs)
    model = kmtl.MultiTaskModel(inputs, features, [kmtl.Task("car"), kmtl.Task("size", kind="regression")])
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    return model


def test_fit_evaluate_predict_take_dataframes_with_missing_labels_as_a_pipeline_does():
    """A DataFrame of features and one of labels ("?", NaN) train exactly as kmtl.data.from_arrays's pipeline."""
    x, labels = _frames()
    by_frame, by_pipeline = _frame_model(), _frame_model()
    by_frame.fit(x, labels, batch_size=16, epochs=2, shuffle=False, verbose=0)
    pipeline = kmtl.data.from_arrays(x.to_numpy(), {c: labels[c].to_numpy() for c in labels}, by_pipeline,
                                     batch_size=16)
    by_pipeline.fit(pipeline, epochs=2, verbose=0)
    for got, expected in zip(by_frame.get_weights(), by_pipeline.get_weights(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert by_frame.evaluate(x, labels, verbose=0, return_dict=True) == pytest.approx(
        by_pipeline.evaluate(pipeline, verbose=0, return_dict=True), rel=1e-5)
    predicted = by_frame.predict(x, verbose=0)
    np.testing.assert_allclose(predicted["size"], by_frame.predict(x.to_numpy(), verbose=0)["size"])
    # A label the task cannot take is refused before training, naming the task.
    with pytest.raises(ValueError, match="Task 'car' \\(binary\\): label 2"):
        by_frame.fit(x, labels.assign(car=2), verbose=0)


def test_a_dataframe_without_labels_or_with_text_features_says_what_to_do():
    x, labels = _frames()
    model = _frame_model()
    with pytest.raises(ValueError, match=r"without labels.*from_dataframe"):
        model.fit(x, verbose=0)
    with pytest.raises(ValueError, match=r"Feature column\(s\) \['colour'\] are not numeric.*get_dummies"):
        model.fit(x.assign(colour="red"), labels, verbose=0)
    with pytest.raises(ValueError, match=r"the DataFrame has no column\(s\) \['size'\]"):
        model.evaluate(x, labels[["car"]], verbose=0)


@pytest.mark.parametrize(("log_every_task", "when"), [(True, "first batch"), (False, "first epoch")])
def test_a_task_whose_loss_dwarfs_the_others_gets_a_warning_naming_it(log_every_task, when):
    """Body mass in grams beside a binary task: a warning at the start names the task and the fixes
    (after the first step, or the first epoch where the steps log task means only)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    labels = {"sex": (x[:, 0] > 0).astype("float32"), "mass": 4000.0 + 800.0 * x[:, 1]}
    tasks = [kmtl.Task("sex"), kmtl.Task("mass", kind="regression", standardize=False)]  # raw grams
    model = build(tasks)
    model.compile(optimizer="adam", log_every_task=log_every_task)
    with pytest.warns(UserWarning, match=rf"Task 'mass': its weighted loss on the {when} .* standardise it "
                                         r".*loss_weights"):
        model.fit(x, labels, batch_size=32, epochs=1, verbose=0)
    in_kilograms = build(tasks)
    in_kilograms.compile(optimizer="adam")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        in_kilograms.fit(x, {**labels, "mass": labels["mass"] / 1000.0}, batch_size=32, epochs=1, verbose=0)


def test_predict_labels_writes_predictions_as_labels_are_written():
    """Class names, 0/1 and values, from predict's probabilities by hand."""
    tasks = [kmtl.Task("car"), kmtl.Task("weather", kind="categorical", class_names=["sun", "rain", "fog"]),
             kmtl.Task("parts", kind="multilabel", labels=["wheel", "door"]),
             kmtl.Task("size", kind="regression"), kmtl.Task("lanes", kind="categorical", num_classes=2)]
    model = build(tasks)
    x = np.random.default_rng(0).normal(size=(9, 6)).astype("float32")
    probabilities = model.predict(x, verbose=0)
    labels = model.predict_labels(x, threshold=0.4, verbose=0)
    np.testing.assert_array_equal(labels["car"], (probabilities["car"][:, 0] >= 0.4).astype(int))
    np.testing.assert_array_equal(labels["weather"],
                                  np.array(["sun", "rain", "fog"])[np.argmax(probabilities["weather"], axis=1)])
    np.testing.assert_array_equal(labels["parts"], (probabilities["parts"] >= 0.4).astype(int))
    np.testing.assert_array_equal(labels["size"], probabilities["size"][:, 0])
    np.testing.assert_array_equal(labels["lanes"], np.argmax(probabilities["lanes"], axis=1))


def test_a_multi_input_model_fits_arrays_given_as_a_list_or_a_dict():
    """The inputs of a two-input model as a list or a dict of arrays reach Keras as given."""
    keras.utils.set_random_seed(0)
    image, meta = keras.Input((4,), name="image"), keras.Input((2,), name="meta")
    features = keras.layers.Dense(6, activation="relu")(keras.layers.Concatenate()([image, meta]))
    model = kmtl.MultiTaskModel([image, meta], features, [kmtl.Task("car")])
    model.compile(optimizer="adam")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")
    labels = {"car": np.where(a[:, 0] > 0, 1.0, 0.0)}
    as_list = model.evaluate([a, b], labels, verbose=0, return_dict=True)
    as_dict = model.evaluate({"image": a, "meta": b}, labels, verbose=0, return_dict=True)
    assert as_list == pytest.approx(as_dict)
    model.fit([a, b], labels, epochs=1, verbose=0)
    assert model.predict([a, b], verbose=0)["car"].shape == (16, 1)


def test_fit_leaves_keras_batch_end_hooks_off_the_training_thread():
    # Keras runs batch-end hooks on a worker thread where the backend allows it (JAX, PyTorch)
    # unless one callback with such a hook does not declare itself safe; keras_mtl's own
    # epoch-logs callback has one, so it declares itself (on TensorFlow all run inline).
    threads = []

    class Where(keras.callbacks.Callback):
        async_safe = True

        def on_train_batch_end(self, batch, logs=None):
            threads.append(threading.current_thread() is threading.main_thread())

    rng = np.random.default_rng(0)
    model = build()
    model.compile()
    model.fit(rng.normal(size=(64, 6)).astype("float32"), random_labels(64, rng), batch_size=16, epochs=1,
              verbose=0, callbacks=[Where()])
    assert threads == [keras.backend.backend() == "tensorflow"] * 4
