"""SavedModel export: signatures, tf.Example serving, metadata, atomic writes."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import require

import keras_mtl as kmtl
from keras_mtl import export as export_lib

pytestmark = pytest.mark.portable_jax

TASKS = [
    kmtl.Task("car"),
    kmtl.Task("objects", kind="multilabel", labels=["sign", "light"]),
    kmtl.Task("weather", kind="categorical", class_names=["sun", "rain", "fog"]),
    kmtl.Task("distance", kind="regression"),
]
OUTPUTS = ["car", "objects", "weather", "weather_class", "weather_class_name", "distance"]
INDEX_OUTPUTS = ("weather_class", "weather_class_name")  # compared exactly
BATCH_SIZES = (1, 7, 64)
# PYTHONSAFEPATH: fresh processes import the keras_mtl this one does, not the cwd's.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONSAFEPATH": "1"}


def build(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,), name="x")
    features = keras.layers.Dense(16, activation="relu", name="trunk")(inputs)
    return kmtl.MultiTaskModel(inputs, features, TASKS, name="street")


def build_multi_input(seed=0):
    """An image-like float input and an integer id input, given as a dict."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((8, 8, 3), name="image")
    ids = keras.Input((2,), dtype="int32", name="ids")
    conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(image)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(conv)
    embedded = keras.layers.Flatten(name="flat_ids")(keras.layers.Embedding(10, 3, name="embed")(ids))
    features = keras.layers.Concatenate(name="concat")([pooled, embedded])
    return kmtl.MultiTaskModel({"image": image, "ids": ids}, features,
                               [kmtl.Task("car"), kmtl.Task("weather", kind="categorical", num_classes=3)])


def run_python(script, *args):
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# A TF Serving client's view: TensorFlow only (no keras, no keras_mtl), the
# metadata read with json, tf.train.Examples built from its input list.
SERVE_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    results = {}
    for tag, path, data_file in (("mtl", *sys.argv[1:3]), ("multi", *sys.argv[3:5])):
        with open(f"{path}/assets.extra/keras_mtl_tasks.json") as f:
            meta = json.load(f)
        results[f"{tag}/meta"] = np.array(json.dumps(meta))
        loaded = tf.saved_model.load(path)
        data = dict(np.load(data_file))
        for n in (1, 7, 64):
            feed = {i["name"]: tf.constant(data[i["name"]][:n]) for i in meta["inputs"]}
            for key, value in loaded.signatures["serving_default"](**feed).items():
                results[f"{tag}/default/{n}/{key}"] = value.numpy().astype(str) if value.dtype == tf.string \
                    else value.numpy()
            examples = []
            for row in range(n):
                features = {}
                for i in meta["inputs"]:
                    values = data[i["name"]][row].ravel().tolist()
                    if i["example_feature"] == "float_list":
                        features[i["name"]] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
                    else:
                        features[i["name"]] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
                example = tf.train.Example(features=tf.train.Features(feature=features))
                examples.append(example.SerializeToString())
            out = loaded.signatures["serving_tf_example"](examples=tf.constant(examples))
            for key, value in out.items():
                results[f"{tag}/example/{n}/{key}"] = value.numpy().astype(str) if value.dtype == tf.string \
                    else value.numpy()
    results["keras_mtl_imported"] = np.array("keras_mtl" in sys.modules)
    np.savez(sys.argv[5], **results)
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    model = build()
    model.adapt_targets({"distance": rng.normal(50.0, 10.0, size=200)})  # a standardised target
    x = {"x": rng.normal(size=(64, 6)).astype("float32") * 3}
    path = kmtl.export_saved_model(model, root / "street" / "1")
    np.savez(root / "street_x.npz", **x)
    multi = build_multi_input()
    multi_x = {"image": rng.uniform(0, 1, size=(64, 8, 8, 3)).astype("float32"),
               "ids": rng.integers(0, 10, size=(64, 2)).astype("int32")}
    multi_path = kmtl.export_saved_model(multi, root / "multi" / "1")
    np.savez(root / "multi_x.npz", **multi_x)
    return {"model": model, "x": x, "path": path, "multi": multi, "multi_x": multi_x,
            "multi_path": multi_path, "root": root}


@pytest.fixture(scope="module")
def served(exported):
    """Outputs of both signatures, computed in a fresh TensorFlow-only process."""
    out = exported["root"] / "served.npz"
    root = exported["root"]
    run_python(SERVE_SCRIPT, exported["path"], root / "street_x.npz", exported["multi_path"],
               root / "multi_x.npz", out)
    return dict(np.load(out))


def expected_outputs(model, x):
    preds = model.predict(x, verbose=0)
    for task in model.tasks:
        if task.kind.class_output:
            preds[f"{task.name}_class"] = np.argmax(preds[task.name], axis=-1)
            if task.class_names is not None:
                preds[f"{task.name}_class_name"] = np.array(task.class_names)[preds[f"{task.name}_class"]]
    return preds


def test_signatures_name_inputs_and_outputs(exported):
    loaded = tf.saved_model.load(str(exported["path"]))
    assert set(loaded.signatures) == {"serving_default", "serving_tf_example"}
    default = loaded.signatures["serving_default"]
    _, inputs = default.structured_input_signature
    assert list(inputs) == ["x"]
    assert inputs["x"].shape.as_list() == [None, 6] and inputs["x"].dtype == tf.float32
    outputs = default.structured_outputs
    assert sorted(outputs) == sorted(OUTPUTS)
    assert {k: v.shape.as_list() for k, v in outputs.items()} == {
        "car": [None, 1], "objects": [None, 2], "weather": [None, 3], "weather_class": [None],
        "weather_class_name": [None], "distance": [None, 1]}
    assert outputs["weather_class"].dtype == tf.int64 and outputs["weather_class_name"].dtype == tf.string
    _, example_inputs = loaded.signatures["serving_tf_example"].structured_input_signature
    assert list(example_inputs) == ["examples"] and example_inputs["examples"].dtype == tf.string
    assert export_lib.serving_signature(exported["model"])["outputs"]["objects"] == {
        "shape": [-1, 2], "dtype": "float32"}


@pytest.mark.parametrize("n", BATCH_SIZES)
def test_serving_default_matches_predict(served, exported, n):
    expected = expected_outputs(exported["model"], exported["x"]["x"][:n])
    for name in OUTPUTS:
        got = served[f"mtl/default/{n}/{name}"]
        assert got.shape == expected[name].shape, name
        if name in INDEX_OUTPUTS:
            np.testing.assert_array_equal(got, expected[name])
        else:
            np.testing.assert_allclose(got, expected[name], atol=1e-5, err_msg=name)


def test_outputs_are_in_user_units(served, exported):
    """Hand-computed from the weights: sigmoid, softmax and arg-max, the standardised target back in its units."""
    model = exported["model"]
    kernel, bias = model.get_layer("trunk").get_weights()
    head_kernel, head_bias = model.task_heads.get_weights()
    x = exported["x"]["x"]
    logits = np.maximum(x @ kernel + bias, 0) @ head_kernel + head_bias

    def columns(name):
        block = model._layout.block(name)
        return logits[:, block.start:block.stop]

    sigmoid = lambda z: 1 / (1 + np.exp(-z))
    weather = np.exp(columns("weather")) / np.exp(columns("weather")).sum(axis=1, keepdims=True)
    mean, std = model.target_statistics()["distance"]
    assert 45 < mean < 55 and 8 < std < 12
    expected = {"car": sigmoid(columns("car")), "objects": sigmoid(columns("objects")),
                "weather": weather, "distance": columns("distance") * std + mean}
    for name, value in expected.items():
        np.testing.assert_allclose(served[f"mtl/default/64/{name}"], value, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(served["mtl/default/64/weather_class"], np.argmax(weather, axis=1))
    np.testing.assert_array_equal(served["mtl/default/64/weather_class_name"],
                                  np.array(["sun", "rain", "fog"])[np.argmax(weather, axis=1)])
    distance = served["mtl/default/64/distance"]
    assert distance.min() < 0 or distance.max() > 1  # regression is not squashed into (0, 1)


@pytest.mark.parametrize("n", BATCH_SIZES)
def test_tf_example_signature_gives_the_same_numbers(served, n):
    for name in OUTPUTS:
        if name in INDEX_OUTPUTS:
            np.testing.assert_array_equal(served[f"mtl/example/{n}/{name}"], served[f"mtl/default/{n}/{name}"])
        else:
            np.testing.assert_allclose(served[f"mtl/example/{n}/{name}"], served[f"mtl/default/{n}/{name}"],
                                       atol=1e-6, err_msg=name)


def test_multi_input_model_serves(served, exported):
    model = exported["multi"]
    for n in BATCH_SIZES:
        x = {k: v[:n] for k, v in exported["multi_x"].items()}
        expected = expected_outputs(model, x)
        for signature in ("default", "example"):
            for name in ("car", "weather", "weather_class"):
                np.testing.assert_allclose(served[f"multi/{signature}/{n}/{name}"], expected[name],
                                           atol=1e-5, err_msg=f"{signature} {n} {name}")
    meta = json.loads(str(served["multi/meta"]))
    assert {i["name"]: (i["dtype"], i["shape"], i["example_feature"]) for i in meta["inputs"]} == {
        "image": ("float32", [-1, 8, 8, 3], "float_list"), "ids": ("int32", [-1, 2], "int64_list")}


def test_metadata_is_plain_json_listing_tasks(served):
    assert not served["keras_mtl_imported"]  # the client process never imported keras_mtl
    meta = json.loads(str(served["mtl/meta"]))
    assert meta["format"] == "keras_mtl.tasks/1"
    tasks = {t["name"]: t for t in meta["tasks"]}
    assert [t["name"] for t in meta["tasks"]] == ["car", "objects", "weather", "distance"]
    assert {name: t["kind"] for name, t in tasks.items()} == {
        "car": "binary", "objects": "multilabel", "weather": "categorical", "distance": "regression"}
    assert tasks["objects"]["labels"] == ["sign", "light"] == tasks["objects"]["unit_names"]
    assert tasks["weather"]["class_names"] == ["sun", "rain", "fog"]
    assert tasks["weather"]["class_output"] == "weather_class"
    assert tasks["weather"]["class_name_output"] == "weather_class_name"
    assert [t["units"] for t in meta["tasks"]] == [1, 2, 3, 1]
    assert meta["signatures"]["serving_default"] == {"inputs": ["x"], "outputs": OUTPUTS}
    assert meta["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 6],
                               "example_feature": "float_list"}]


def saved_model_cli(*args):
    # The tensorflow wheel installs the script next to the interpreter (a venv's bin/),
    # or wherever pip puts scripts (e.g. ~/.local/bin for --user): look in both.
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    cli = cli if os.path.exists(cli) else shutil.which("saved_model_cli")
    require(cli is not None, "saved_model_cli is neither next to this Python nor on PATH (the tensorflow "
                             "package installs it; .ci/run installs tensorflow with the README's pip install)")
    proc = subprocess.run([cli, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_saved_model_cli_show_lists_named_inputs_and_outputs(exported):
    text = saved_model_cli("show", "--all", "--dir", exported["path"])
    default = text.split("signature_def['serving_default']:")[1].split("signature_def[")[0]
    assert "inputs['x'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 6)" in default
    for name, dtype, shape in (("car", "DT_FLOAT", "(-1, 1)"), ("objects", "DT_FLOAT", "(-1, 2)"),
                               ("weather", "DT_FLOAT", "(-1, 3)"), ("weather_class", "DT_INT64", "(-1)"),
                               ("weather_class_name", "DT_STRING", "(-1)"), ("distance", "DT_FLOAT", "(-1, 1)")):
        assert f"outputs['{name}'] tensor_info:\n        dtype: {dtype}\n        shape: {shape}\n" in default
    assert "keras_tensor" not in text
    example = text.split("signature_def['serving_tf_example']:")[1]
    assert "inputs['examples'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in example
    assert "outputs['weather_class']" in example


def test_saved_model_cli_run_answers(exported, tmp_path):
    x = exported["x"]["x"][:2].astype("float64").round(3)
    saved_model_cli("run", "--dir", exported["path"], "--tag_set", "serve", "--signature_def",
                    "serving_default", "--input_exprs", f"x={x.tolist()}", "--outdir", tmp_path)
    expected = expected_outputs(exported["model"], x.astype("float32"))
    for name in OUTPUTS:
        if name == "weather_class_name":  # saved_model_cli writes strings as an object array of bytes
            got = np.load(tmp_path / f"{name}.npy", allow_pickle=True).astype(str)
            np.testing.assert_array_equal(got, expected[name])
        else:
            np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), expected[name], atol=1e-5,
                                       err_msg=name)


def test_keras_file_reloads_with_compile_and_safe_mode(tmp_path):
    """Predictions, evaluate losses and optimizer state survive a .keras round trip."""
    rng = np.random.default_rng(1)
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss_weights={"weather": 3.0},
                  normalize="labeled")
    x = rng.normal(size=(48, 6)).astype("float32")
    labels = {"car": rng.integers(0, 2, 48).astype("float32"),
              "objects": rng.integers(0, 2, (48, 2)).astype("float32"),
              "weather": rng.integers(0, 3, 48).astype("float32"),
              "distance": rng.normal(size=48).astype("float32")}
    for y in labels.values():
        y[rng.random(y.shape) < 0.3] = np.nan
    model.fit(x, labels, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "data.npz", x=x, **labels)
    expected_eval = model.evaluate(x, labels, batch_size=48, return_dict=True, verbose=0)
    expected_pred = model.predict(x, verbose=0)
    # One more epoch in both processes: the same result needs the optimizer
    # state (Adam moments, iteration count) restored, not reset.
    model.fit(x, labels, batch_size=16, epochs=1, verbose=0, shuffle=False)
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        import keras_mtl  # registers the package's classes for load_model
        import keras
        model = keras.saving.load_model(sys.argv[1], compile=True, safe_mode=True)
        data = dict(np.load(sys.argv[2]))
        x = data.pop("x")
        out = {"class": type(model).__name__, "iterations": int(model.optimizer.iterations),
               "loss_weights": model.loss_weights,
               "pred": {k: v.tolist() for k, v in model.predict(x, verbose=0).items()},
               "eval": model.evaluate(x, data, batch_size=48, return_dict=True, verbose=0)}
        model.fit(x, data, batch_size=16, epochs=1, verbose=0, shuffle=False)
        out["weights_after_fit"] = [w.tolist() for w in model.get_weights()]
        print(json.dumps(out))
    """)
    proc = run_python(script, tmp_path / "model.keras", tmp_path / "data.npz")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["class"] == "MultiTaskModel"
    assert got["iterations"] == 3
    assert got["loss_weights"]["weather"] == 3.0
    for name, value in expected_pred.items():
        np.testing.assert_array_equal(np.array(got["pred"][name], "float32"), value)
    assert set(got["eval"]) == set(expected_eval) and "weather_loss" in got["eval"]
    for key, value in expected_eval.items():
        np.testing.assert_allclose(got["eval"][key], value, rtol=1e-6, err_msg=key)
    for after, mine in zip(got["weights_after_fit"], model.get_weights(), strict=True):
        np.testing.assert_allclose(np.array(after, "float32"), mine, rtol=1e-5, atol=1e-6)


# -- writing: overwrite, atomicity, errors -------------------------------------

def test_existing_version_is_refused_unless_overwrite(tmp_path):
    model = build(seed=0)
    path = kmtl.export_saved_model(model, tmp_path / "m" / "1")
    with pytest.raises(FileExistsError, match=r"overwrite=True.*m/2"):
        kmtl.export_saved_model(model, path)
    other = build(seed=1)
    x = np.ones((2, 6), "float32")
    assert not np.allclose(other.predict(x, verbose=0)["car"], model.predict(x, verbose=0)["car"])
    assert kmtl.export_saved_model(other, path, overwrite=True) == path
    served = tf.saved_model.load(str(path)).signatures["serving_default"](x=tf.constant(x))
    np.testing.assert_allclose(served["car"].numpy(), other.predict(x, verbose=0)["car"], atol=1e-6)
    assert sorted(os.listdir(tmp_path / "m")) == ["1"]  # no staging or retired directory left


def test_verbose_names_the_version_directory_once_it_is_in_place(tmp_path, capsys):
    model = build()
    path = kmtl.export_saved_model(model, tmp_path / "m" / "4", verbose=True)
    out = capsys.readouterr().out
    # One line, printed after the rename: the final directory, not the hidden staging name.
    assert out.splitlines() == [f"Exported {path}: signatures serving_default, serving_tf_example; "
                                f"{export_lib.TASKS_FILE}"]
    assert ".partial" not in out and (path / "saved_model.pb").is_file()


def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    model = build()
    target = tmp_path / "new" / "base" / "1"
    seen = {}

    def fail_midway(*args):
        # The SavedModel is written, the metadata not yet: the staging
        # directory sits beside the target, and the target does not exist.
        seen["siblings"] = sorted(os.listdir(target.parent))
        seen["target_exists"] = target.exists()
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_lib, "_tasks_metadata", fail_midway)
    with pytest.raises(RuntimeError, match="disk full"):
        kmtl.export_saved_model(model, target)
    assert len(seen["siblings"]) == 1 and seen["siblings"][0].startswith(".1.partial-")
    assert seen["target_exists"] is False
    assert os.listdir(tmp_path) == []  # the parents this call created are gone too


def test_failure_while_overwriting_keeps_the_old_version(tmp_path, monkeypatch):
    model = build()
    path = kmtl.export_saved_model(model, tmp_path / "1")
    before = (path / "saved_model.pb").read_bytes()
    real_rename = os.rename

    def rename(src, dst):
        if ".partial-" in str(src):
            raise OSError("rename failed")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        kmtl.export_saved_model(build(seed=3), path, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["1"]
    assert (path / "saved_model.pb").read_bytes() == before
    assert export_lib.read_tasks(path)["tasks"][0]["name"] == "car"


def test_clear_errors_and_nothing_written(tmp_path):
    inputs = keras.Input((4,), name="x")
    plain = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with pytest.raises(TypeError, match="expects a keras_mtl.MultiTaskModel; got Functional"):
        kmtl.export_saved_model(plain, tmp_path / "a" / "1")

    sequence = keras.Input((None, 3), name="tokens")
    pooled = keras.layers.GlobalAveragePooling1D()(sequence)
    ragged = kmtl.MultiTaskModel(sequence, keras.layers.Dense(4)(pooled), [kmtl.Task("car")])
    assert ragged.predict(np.ones((2, 5, 3), "float32"), verbose=0)["car"].shape == (2, 1)
    with pytest.raises(ValueError, match=r"Input 'tokens' has shape \(None, None, 3\)"):
        kmtl.export_saved_model(ragged, tmp_path / "b" / "1")

    clash = kmtl.MultiTaskModel(inputs, keras.layers.Dense(4)(inputs), [
        kmtl.Task("weather", kind="categorical", num_classes=3), kmtl.Task("weather_class")])
    with pytest.raises(ValueError, match=r"\['weather_class'\] are used twice"):
        kmtl.export_saved_model(clash, tmp_path / "c" / "1")

    for bad in (tmp_path / "..", "."):  # with overwrite=True these would replace a parent
        with pytest.raises(ValueError, match="must name the version directory"):
            kmtl.export_saved_model(build(), bad, overwrite=True)
    assert os.listdir(tmp_path) == []


def test_version_directories(tmp_path):
    base = tmp_path / "m"
    assert export_lib.next_version_dir(base) == base / "1"
    assert export_lib.latest_version_dir(base) is None
    for name in ("2", "10", "9", ".11.partial-0a1b2c3d", "latest", "007"):
        (base / name).mkdir(parents=True)
    (base / "12").write_text("a file, not a version")
    assert [p.name for p in export_lib.version_dirs(base)] == ["2", "007", "9", "10"]
    assert export_lib.next_version_dir(base) == base / "11"
    assert export_lib.latest_version_dir(base) is None  # no SavedModel in any of them
    kmtl.export_saved_model(build(), base / "9", overwrite=True)
    assert export_lib.latest_version_dir(base) == base / "9"
    with pytest.raises(FileNotFoundError, match="not exported by keras_mtl"):
        export_lib.read_tasks(base / "10")
