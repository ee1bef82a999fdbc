"""Every Keras backend: the backend-independent tests, cross-backend files, JAX data parallelism.

The suite runs on the backend of the process (TensorFlow by default). The
tests here start fresh processes for the other backends, since Keras fixes
its backend at import time:

* the backend-independent test files (marked ``pytestmark = pytest.mark.portable``)
  run again under JAX and PyTorch, and the SavedModel export tests
  (``portable_jax``) under JAX;
* a ``.keras`` file trained and saved under each backend loads under every
  other with the same predictions and the same balancing state, and under
  TensorFlow exports a SavedModel that serves the same numbers (the way to
  serve a model trained on PyTorch);
* ``keras.distribution.DataParallel`` over two JAX CPU devices trains to the
  single-device loss and weights.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

HERE = Path(__file__).parent
BACKENDS = ("tensorflow", "jax", "torch")
# Which test files rerun under each other backend, by marker (pyproject.toml registers them): a file
# that does not depend on the backend says so with `pytestmark = pytest.mark.portable`; the rest
# (data pipelines, tf.distribute, notebooks, the CLI) are TensorFlow's. SavedModel export runs from
# TensorFlow and JAX but not PyTorch (a PyTorch model is served from its .keras file loaded under
# TensorFlow, test_keras_files_load_under_every_backend... below): test_export.py is `portable_jax`.
RERUN = {"jax": "portable or portable_jax", "torch": "portable"}
ON_TENSORFLOW = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="starts the other backends from the default (TensorFlow) run")


# The portable reruns take most of a slow machine's CI run (a stuck child still ends within CI's 90 minutes).
def run(backend, *args, env=None, timeout=3000):
    """Runs ``python *args`` with ``KERAS_BACKEND=backend``; fails the test with its output."""
    # PYTHONSAFEPATH: the child, started in the checkout, imports the installed keras_mtl as this process does.
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONSAFEPATH": "1",
                   **(env or {})}
    done = subprocess.run([sys.executable, *args], env=environment, cwd=HERE.parent, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"KERAS_BACKEND={backend} python {' '.join(map(str, args))} failed:\n"
                    f"{done.stdout[-6000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def selection(marker):
    """pytest's arguments for the tests that ``marker`` selects, out of the whole tests directory."""
    return ["-m", marker, str(HERE)]


def portable_tests_pass_on(backend):
    out = run(backend, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection(RERUN[backend]))
    assert " passed" in out and " failed" not in out


def marked_files(marker):
    """The test files whose module-level ``pytestmark`` holds ``pytest.mark.<marker>``, read from the source."""
    found = set()
    for path in HERE.glob("test_*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
                marks = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) else [node.value]
                if any(ast.unparse(m) == f"pytest.mark.{marker}" for m in marks):
                    found.add(path.name)
    return found


def collected(*args):
    """The test ids that ``pytest --collect-only`` finds (under TensorFlow) with ``args``."""
    out = run("tensorflow", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:warnings", "--collect-only",
              *args)
    return sorted(line for line in out.splitlines() if "::" in line)


def file_of(test_id):
    return test_id.split("::")[0].rpartition("/")[2]


@ON_TENSORFLOW
def test_the_reruns_select_exactly_the_marked_files():
    """What each rerun's `-m` selects is what the files declare: every test of each marked file, nothing else."""
    everything = collected(str(HERE))
    for backend, expression in RERUN.items():
        marked = set().union(*(marked_files(marker) for marker in expression.split(" or ")))
        assert marked and "test_backends.py" not in marked  # this file would start itself again
        selected = collected(*selection(expression))
        assert {file_of(test) for test in selected} == marked, backend
        assert selected == [test for test in everything if file_of(test) in marked], backend


# One class per backend: the parallel run (`pytest -n auto`, with pyproject's --dist loadscope)
# hands each class to a worker of its own, so the two longest tests run side by side.
@ON_TENSORFLOW
class TestPortableOnJax:
    def test_portable_tests_pass(self):
        portable_tests_pass_on("jax")


@ON_TENSORFLOW
class TestPortableOnTorch:
    def test_portable_tests_pass(self):
        portable_tests_pass_on("torch")


# -- .keras files across backends -------------------------------------------

def _model():
    import keras_mtl as kmtl

    keras.utils.set_random_seed(7)
    tasks = [kmtl.Task("car"), kmtl.Task("weather", kind="categorical", num_classes=3),
             kmtl.Task("distance", kind="regression")]
    inputs = keras.Input((5,), name="x")
    features = keras.layers.Dense(8, activation="relu", name="trunk")(inputs)
    model = kmtl.MultiTaskModel(inputs, features, tasks)
    model.compile(optimizer="adam", balancing=kmtl.balancing.UncertaintyWeighting())
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    labels = {"car": (x[:, 0] > 0).astype("float32"), "weather": rng.integers(0, 3, 64).astype("float32"),
              "distance": x[:, 1].astype("float32")}
    for y in labels.values():
        y[rng.random(64) < 0.3] = np.nan
    return x, labels


def save_main(folder):
    """Trains for 2 epochs on this backend; writes the .keras file, predictions and state."""
    model = _model()
    x, labels = _data()
    model.fit(x, labels, epochs=2, batch_size=16, verbose=0)
    backend = keras.backend.backend()
    model.save(Path(folder) / f"{backend}.keras")
    predictions = model.predict(x, verbose=0)
    state = keras.ops.convert_to_numpy(model.balancing.log_variance)
    np.savez(Path(folder) / f"{backend}.npz", state=state, **predictions)


def load_main(folder):
    """Loads every backend's file here; compares predictions and state; serves under TensorFlow."""
    import keras_mtl as kmtl

    x, _ = _data()
    checked = {}
    for path in sorted(Path(folder).glob("*.keras")):
        saved = np.load(path.with_suffix(".npz"))
        model = keras.saving.load_model(path)
        predictions = model.predict(x, verbose=0)
        gap = max(float(np.max(np.abs(predictions[t] - saved[t]))) for t in model.task_names)
        state_gap = float(np.max(np.abs(keras.ops.convert_to_numpy(model.balancing.log_variance) - saved["state"])))
        served_gap = None
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            export = kmtl.export_saved_model(model, Path(folder) / f"serving_{path.stem}" / "1")
            served = tf.saved_model.load(str(export)).signatures["serving_default"](x=tf.constant(x))
            served_gap = max(float(np.max(np.abs(served[t].numpy() - saved[t]))) for t in model.task_names)
        checked[path.stem] = {"predictions": gap, "state": state_gap, "served": served_gap}
    print(json.dumps(checked))


@ON_TENSORFLOW
def test_keras_files_load_under_every_backend_with_the_same_predictions(tmp_path):
    for backend in BACKENDS:
        run(backend, __file__, "save", str(tmp_path))
    for backend in BACKENDS:
        checked = json.loads(run(backend, __file__, "load", str(tmp_path)).strip().splitlines()[-1])
        assert sorted(checked) == sorted(BACKENDS), backend
        for saved_under, gaps in checked.items():
            assert gaps["predictions"] <= 1e-5, (saved_under, backend, gaps)
            assert gaps["state"] == 0.0, (saved_under, backend, gaps)
            if backend == "tensorflow":  # a model trained on any backend serves from TensorFlow
                assert gaps["served"] <= 1e-5, (saved_under, gaps)


def export_main(folder):
    """Tries to export from this backend; prints the error, if any."""
    import keras_mtl as kmtl

    try:
        kmtl.export_saved_model(_model(), Path(folder) / "model" / "1")
        print(json.dumps({"error": None}))
    except NotImplementedError as error:
        print(json.dumps({"error": str(error), "written": sorted(p.name for p in Path(folder).iterdir())}))


@ON_TENSORFLOW
def test_export_from_pytorch_says_how_to_export_under_tensorflow(tmp_path):
    result = json.loads(run("torch", __file__, "export", str(tmp_path)).strip().splitlines()[-1])
    assert result["error"] is not None and "KERAS_BACKEND=tensorflow" in result["error"]
    assert "load_model('model.keras')" in result["error"]
    assert result["written"] == []  # nothing half-written


# -- JAX data parallelism -----------------------------------------------------

def parallel_main():
    """Two epochs on one JAX device, then on two with DataParallel; prints both runs."""
    import jax

    import keras_mtl as kmtl

    rng = np.random.default_rng(3)
    x = rng.normal(size=(96, 5)).astype("float32")
    labels = {"car": (x[:, 0] > 0).astype("float32"), "distance": x[:, 1].astype("float32")}
    # Missing labels spread unevenly: the first half of every batch of 32 holds most of them.
    position = np.arange(96) % 32
    labels["car"][(position < 16) & (rng.random(96) < 0.8)] = np.nan
    labels["distance"][(position >= 16) & (rng.random(96) < 0.6)] = np.nan

    def train(distribution):
        keras.distribution.set_distribution(distribution)
        keras.utils.set_random_seed(11)
        inputs = keras.Input((5,), name="x")
        features = keras.layers.Dense(8, activation="relu")(inputs)
        model = kmtl.MultiTaskModel(inputs, features, [kmtl.Task("car"), kmtl.Task("distance", kind="regression")])
        model.compile(optimizer="sgd", normalize="labeled", balancing=kmtl.balancing.UncertaintyWeighting())
        data = kmtl.data.from_arrays(x, labels, model.tasks, batch_size=32)
        history = model.fit(data, epochs=2, verbose=0).history
        weights = [keras.ops.convert_to_numpy(w).tolist() for w in model.weights]
        return {"loss": history["loss"], "weights": weights}

    devices = jax.devices("cpu")
    print(json.dumps({"devices": len(devices), "single": train(None),
                      "parallel": train(keras.distribution.DataParallel(devices=devices))}))


@ON_TENSORFLOW
def test_jax_data_parallel_matches_one_device():
    out = run("jax", __file__, "parallel", env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    result = json.loads(out.strip().splitlines()[-1])
    assert result["devices"] == 2
    np.testing.assert_allclose(result["parallel"]["loss"], result["single"]["loss"], rtol=1e-5)
    for parallel, single in zip(result["parallel"]["weights"], result["single"]["weights"]):
        np.testing.assert_allclose(parallel, single, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "save":
        save_main(sys.argv[2])
    elif command == "load":
        load_main(sys.argv[2])
    elif command == "export":
        export_main(sys.argv[2])
    elif command == "parallel":
        parallel_main()
