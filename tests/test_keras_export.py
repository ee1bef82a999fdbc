"""``model.export``: Keras's formats hold one output per task, named after it, equal to ``predict``.

TensorFlow only: under JAX Keras's ONNX export needs jax2onnx and LiteRT export refuses the backend
(the export guide says so); the SavedModel path of every backend is tests/test_export.py's.
"""

import keras
import numpy as np
import pytest
from conftest import require

import keras_mtl as kmtl

TASKS = [kmtl.Task("car"), kmtl.Task("weather", kind="categorical", class_names=["sun", "rain", "fog"]),
         kmtl.Task("distance", kind="regression")]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A trained model saved and loaded back: never called since, the case Keras's ONNX export refused."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,), name="image")
    model = kmtl.MultiTaskModel(inputs, keras.layers.Dense(8, activation="relu")(inputs), TASKS)
    model.compile(optimizer="adam")
    rng = np.random.default_rng(0)
    labels = {"car": rng.integers(0, 2, 64), "weather": rng.choice(["sun", "rain", "fog", "?"], 64),
              "distance": rng.normal(40.0, 10.0, 64)}
    model.fit(rng.normal(size=(64, 6)).astype("float32"), labels, epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("keras_export") / "street.keras"
    model.save(path)
    return keras.saving.load_model(path), rng.normal(size=(9, 6)).astype("float32")


def assert_matches_predict(got: dict, model, x):
    expected = model.predict(x, verbose=0)
    assert sorted(got) == sorted(model.task_names)
    for name, value in expected.items():
        np.testing.assert_allclose(np.asarray(got[name]), value, atol=1e-5, rtol=1e-6, err_msg=name)


def test_onnx_file_has_one_named_output_per_task(loaded, tmp_path):
    require(keras.backend.backend() == "tensorflow", "Keras converts to ONNX here through TensorFlow")
    import onnxruntime

    model, x = loaded
    model.export(str(tmp_path / "street.onnx"), format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(str(tmp_path / "street.onnx"))
    assert [i.name for i in session.get_inputs()] == ["image"]
    names = [o.name for o in session.get_outputs()]
    assert_matches_predict(dict(zip(names, session.run(None, {"image": x}))), model, x)


def test_litert_file_has_one_named_output_per_task(loaded, tmp_path):
    require(keras.backend.backend() == "tensorflow", "Keras writes LiteRT files here through TensorFlow")
    from ai_edge_litert.interpreter import Interpreter

    model, x = loaded
    model.export(str(tmp_path / "street.tflite"), format="litert", verbose=False)
    runner = Interpreter(model_path=str(tmp_path / "street.tflite")).get_signature_runner("serving_default")
    assert_matches_predict(runner(image=x), model, x)


def test_keras_saved_model_serves_the_tasks_only(loaded, tmp_path):
    import tensorflow as tf

    model, x = loaded
    model.export(str(tmp_path / "saved"), verbose=False)
    archive = tf.saved_model.load(str(tmp_path / "saved"))  # kept: its variables live as long as it does
    served = archive.serve(tf.constant(x))
    assert_matches_predict({k: v.numpy() for k, v in served.items()}, model, x)
    assert kmtl.heads.FUSED_LOGITS in model(x[:1])  # the forward pass itself still returns the logits
