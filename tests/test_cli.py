"""The ``keras-mtl export`` and ``keras-mtl inspect`` commands; the suite runs the installed package."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import CHECKOUT, checkout_import_problem, editable_from_checkout, package_dir, require

import keras_mtl as kmtl
from keras_mtl import cli

# Python >= 3.11: `python -m`/`-c` started in the checkout does not put it first on sys.path.
CHILD_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONSAFEPATH": "1"}
# What the `keras-mtl` console script runs (setup.cfg: keras_mtl.cli:main), with the program name it
# has there; afterwards, the heavy frameworks the process had imported.
COMMAND = """
import json, sys
sys.argv = ["/usr/local/bin/keras-mtl", *sys.argv[1:]]
from keras_mtl.cli import main
try:
    code = main()
except SystemExit as done:
    code = done.code
heavy = sorted(m for m in ("tensorflow", "keras", "jax", "torch", "matplotlib") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


def run_command(*argv, env=None):
    """Runs ``keras-mtl *argv`` in a fresh process; returns it and its closing report."""
    proc = subprocess.run([sys.executable, "-c", COMMAND, *map(str, argv)], capture_output=True, text=True,
                          env=env or CHILD_ENV, timeout=600)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return proc, report


TASKS = [
    kmtl.Task("car"),
    kmtl.Task("objects", kind="multilabel", labels=["sign", "light"]),
    kmtl.Task("weather", kind="categorical", class_names=["sun", "rain", "fog"]),
    kmtl.Task("distance", kind="regression"),
]


def build(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((5,), name="sensors")
    features = keras.layers.Dense(8, activation="relu", name="trunk")(inputs)
    return kmtl.MultiTaskModel(inputs, features, TASKS)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained model saved as .keras, and its predictions."""
    root = tmp_path_factory.mktemp("cli")
    model = build()
    model.compile(optimizer="adam")
    rng = np.random.default_rng(1)
    labels = {"car": rng.integers(0, 2, 8), "objects": rng.integers(0, 2, (8, 2)),
              "weather": rng.integers(0, 3, 8), "distance": rng.normal(size=8)}
    model.fit(rng.normal(size=(8, 5)).astype("float32"), labels, epochs=1, verbose=0)
    path = root / "street.keras"
    model.save(path)
    x = np.random.default_rng(0).normal(size=(9, 5)).astype("float32")
    return {"root": root, "model": model, "path": path, "x": x, "pred": model.predict(x, verbose=0)}


def serve(version_dir, x):
    fn = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return {k: v.numpy() for k, v in fn(sensors=tf.constant(x)).items()}


def test_export_in_fresh_process_then_next_version_and_inspect(saved, tmp_path, capsys):
    base = tmp_path / "serving" / "street"
    # As the command runs it: the package defers its core until the subcommand asks for it.
    proc, report = run_command("export", saved["path"], base)
    assert report["code"] == 0, proc.stderr[-3000:]
    assert f"to {base / '1'}" in proc.stdout
    # The fresh process loaded the .keras file: its export predicts what the model did.
    served = serve(base / "1", saved["x"])
    for name, value in saved["pred"].items():
        np.testing.assert_allclose(served[name], value, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(served["weather_class"], saved["pred"]["weather"].argmax(axis=1))
    names = np.array(["sun", "rain", "fog"])[saved["pred"]["weather"].argmax(axis=1)]
    assert served["weather_class_name"].astype(str).tolist() == names.tolist()

    # `inspect` as its own first subcommand: it imports keras_mtl.export, not a public name.
    proc, report = run_command("inspect", base)
    assert report["code"] == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"SavedModel {base / '1'}") and "  weather " in proc.stdout

    assert cli.main(["export", str(saved["path"]), str(base)]) == 0
    assert f"to {base / '2'}" in capsys.readouterr().out
    assert sorted(os.listdir(base)) == ["1", "2"]

    assert cli.main(["inspect", str(base), "--json"]) == 0  # the base directory: newest version
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(base / "2")
    assert [(t["name"], t["kind"]) for t in report["tasks"]] == [
        ("car", "binary"), ("objects", "multilabel"), ("weather", "categorical"),
        ("distance", "regression")]
    assert report["tasks"][2]["class_names"] == ["sun", "rain", "fog"]
    assert report["tasks"][2]["class_name_output"] == "weather_class_name"
    default = report["signatures"]["serving_default"]
    assert default["inputs"] == {"sensors": {"shape": [-1, 5], "dtype": "float32"}}
    assert default["outputs"] == {
        "car": {"shape": [-1, 1], "dtype": "float32"},
        "distance": {"shape": [-1, 1], "dtype": "float32"},
        "objects": {"shape": [-1, 2], "dtype": "float32"},
        "weather": {"shape": [-1, 3], "dtype": "float32"},
        "weather_class": {"shape": [-1], "dtype": "int64"},
        "weather_class_name": {"shape": [-1], "dtype": "string"},
    }
    example = report["signatures"]["serving_tf_example"]
    assert example["inputs"] == {"examples": {"shape": [-1], "dtype": "string"}}
    assert example["outputs"] == default["outputs"]


def test_help_and_argument_errors_answer_without_tensorflow():
    # No TF_CPP_MIN_LOG_LEVEL from outside: whatever TensorFlow would log at start-up would show.
    env = {k: v for k, v in CHILD_ENV.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc, report = run_command("--help", env=env)
    assert report == {"code": 0, "heavy": []}
    assert proc.stdout.startswith("usage: keras-mtl") and "{demo,export,inspect}" in proc.stdout
    assert proc.stderr == ""
    proc, report = run_command("demo", "--help", env=env)
    assert report == {"code": 0, "heavy": []}
    assert "--size {small,full}" in proc.stdout and "first look" in proc.stdout
    assert proc.stderr == ""
    proc, report = run_command("demo", "--size", "huge", env=env)
    assert report == {"code": 2, "heavy": []}
    # argparse's usage and error lines, and nothing else (no TensorFlow start-up log).
    assert proc.stderr.startswith("usage: keras-mtl demo [-h]")
    assert proc.stderr.splitlines()[-1].startswith("keras-mtl demo: error: argument --size: invalid choice: 'huge'")
    assert all(line.startswith(("usage:", " ", "keras-mtl demo: error:")) for line in proc.stderr.splitlines())


def test_every_option_has_help():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(commands.choices) == ["demo", "export", "inspect"]
    for name, command in commands.choices.items():
        options = [a for a in command._actions if not isinstance(a, argparse._HelpAction)]
        assert options, name
        for action in options:
            assert action.help, f"keras-mtl {name} {action.dest}: no help text"
    assert all(a.help for a in commands._choices_actions)   # each command's line in `keras-mtl --help`


def test_inspect_prints_tasks_and_signatures(saved, tmp_path, capsys):
    version = kmtl.export_saved_model(saved["model"], tmp_path / "m" / "3")
    assert cli.main(["inspect", str(version)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"SavedModel {version}"
    assert lines[1] == "Tasks:"
    assert lines[2].split() == ["car", "binary", "units=1", "car"]
    assert lines[3].split() == ["objects", "multilabel", "units=2", "sign,", "light"]
    assert lines[4].split() == ["weather", "categorical", "units=3", "sun,", "rain,", "fog"]
    assert lines[5].split() == ["distance", "regression", "units=1", "distance"]
    start, stop = lines.index("Signature serving_default:"), lines.index("Signature serving_tf_example:")
    default = lines[start + 1:stop]
    assert [line.split()[:3] for line in default] == [
        ["input", "sensors", "float32"], ["output", "car", "float32"], ["output", "distance", "float32"],
        ["output", "objects", "float32"], ["output", "weather", "float32"],
        ["output", "weather_class", "int64"], ["output", "weather_class_name", "string"]]
    assert default[0].endswith("(-1, 5)") and default[-1].endswith("(-1,)")


def test_inspect_shows_signatures_of_a_plain_saved_model(tmp_path, capsys):
    inputs = keras.Input((3,), name="features")
    plain = keras.Model(inputs, keras.layers.Dense(2, name="score")(inputs))
    plain.export(str(tmp_path / "1"), verbose=False)
    assert cli.main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Tasks: none recorded (not exported by keras_mtl)" in out
    assert "Signature serving_default:" in out


def test_export_version_and_overwrite_options(saved, tmp_path, capsys):
    base = tmp_path / "m"
    assert cli.main(["export", str(saved["path"]), str(base), "--version", "5"]) == 0
    assert cli.main(["export", str(saved["path"]), str(base)]) == 0
    assert sorted(os.listdir(base), key=int) == ["5", "6"]
    capsys.readouterr()
    assert cli.main(["export", str(saved["path"]), str(base), "--version", "5"]) == 2
    assert "already exists; pass overwrite=True" in capsys.readouterr().err
    other = build(seed=1)
    other.save(tmp_path / "other.keras")
    argv = ["export", str(tmp_path / "other.keras"), str(base), "--version", "5", "--overwrite"]
    assert cli.main(argv) == 0
    np.testing.assert_allclose(serve(base / "5", saved["x"])["car"],
                               other.predict(saved["x"], verbose=0)["car"], atol=1e-5)
    assert sorted(os.listdir(base), key=int) == ["5", "6"]


def test_export_errors(saved, tmp_path, capsys):
    def fails(*argv):
        assert cli.main(list(map(str, argv))) == 2
        return capsys.readouterr().err

    assert "is not a file" in fails("export", tmp_path / "missing.keras", tmp_path / "m")
    inputs = keras.Input((3,), name="x")
    plain = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    plain.save(tmp_path / "plain.keras")
    assert "holds a Functional, not a keras_mtl MultiTaskModel" in fails(
        "export", tmp_path / "plain.keras", tmp_path / "m")
    version = kmtl.export_saved_model(saved["model"], tmp_path / "m" / "1")
    assert "is itself a SavedModel version directory" in fails("export", saved["path"], version)
    assert "versions are integers >= 0" in fails("export", saved["path"], tmp_path / "m", "--version", "-1")
    assert sorted(os.listdir(tmp_path / "m")) == ["1"]


def test_inspect_errors(tmp_path, capsys):
    assert cli.main(["inspect", str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "m" / ".1.partial-0a1b2c3d").mkdir(parents=True)
    (tmp_path / "m" / "2").mkdir()  # an empty version directory holds no SavedModel
    assert cli.main(["inspect", str(tmp_path / "m")]) == 2
    assert "no SavedModel in" in capsys.readouterr().err


def test_the_suite_imports_the_installed_package():
    # Under CI=true (.ci/run installs with `pip install .`) keras_mtl must come from
    # site-packages; an editable install of this checkout counts as installed.
    problem = checkout_import_problem()
    require(problem is None, f"{problem}; allowed outside CI (e.g. PYTHONPATH=$PWD)")
    assert Path(kmtl.__file__).resolve().parent == package_dir()
    if not editable_from_checkout():
        assert Path(kmtl.__file__).resolve().parent != CHECKOUT / "keras_mtl"


def test_processes_started_in_the_checkout_import_the_same_package():
    # As tests/test_backends.py starts pytest under the other backends: cwd = the checkout.
    script = "import importlib.util; print(importlib.util.find_spec('keras_mtl').origin)"
    proc = subprocess.run([sys.executable, "-c", script], cwd=CHECKOUT, env=CHILD_ENV, capture_output=True,
                          text=True, timeout=60, check=True)
    assert Path(proc.stdout.strip()).resolve().parent == package_dir()
