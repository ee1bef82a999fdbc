"""
Title: Export and serving
Description: One named output per task, equal to predict, from TF Serving, ONNX Runtime and LiteRT;
  and the pitfalls on the way.
"""

# ## Setup
#
# A trained multi-task model leaves Python in one of three forms:
#
# - a **SavedModel** for TF Serving, written by `kmtl.export_saved_model`,
#   with named inputs, one output per task and the task list beside it;
# - an **ONNX** file for ONNX Runtime, written by Keras's own
#   `model.export(path, format="onnx")`;
# - a **LiteRT** (`.tflite`) file for phones and small devices, written by
#   `model.export(path, format="litert")`.
#
# This guide writes all three from one model and checks that each gives, for
# every task, the same numbers as `model.predict`. The exports are
# written under the TensorFlow backend, so the guide sets it: a model trained
# under JAX or PyTorch is saved as a `.keras` file, which loads under
# TensorFlow as it is, and exported there (see "Other backends" below).
#
# Running ONNX and LiteRT files needs three packages beside keras_mtl, all in
# its `test` extra: `tf2onnx` (Keras converts a TensorFlow model to ONNX
# with it), `onnxruntime` and `ai-edge-litert` (the LiteRT interpreter).
# Install them with `pip install tf2onnx onnxruntime ai-edge-litert`.

import os

os.environ["KERAS_BACKEND"] = "tensorflow"  # the exports below are written under TensorFlow

import json
import shutil
import tempfile

import keras
import numpy as np
import onnxruntime
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import keras_mtl as kmtl

SMALL = os.environ.get("KERAS_MTL_GUIDE_SIZE") == "small"
NUM_EXAMPLES, EPOCHS = (600, 2) if SMALL else (4000, 10)
ATOL, RTOL = 1e-5, 1e-6
folder = tempfile.mkdtemp()

# ## The model
#
# Four tasks of four kinds: is there a car (yes/no), the weather (one of
# three classes, with names), the distance to the car ahead (a regression
# target in metres) and which lights are on (several yes/no labels on one
# head). The inputs are raw sensor readings, far from zero mean and unit
# variance, so the trunk starts by scaling them. How it scales them matters
# for ONNX, as a later section shows; a `Rescaling` layer with per-feature
# arrays is the form that exports everywhere.

rng = np.random.default_rng(0)
x = (100 + 20 * rng.normal(size=(NUM_EXAMPLES, 16))).astype("float32")
z = (x - 100) / 20
labels = {
    "car": (z[:, 0] + z[:, 1] > 0).astype(float),
    "weather": np.digitize(z[:, 2], [-0.5, 0.5]),
    "distance": 30 + 10 * z[:, 3] + rng.normal(size=NUM_EXAMPLES),
    "lights": (z[:, 4:6] > 0).astype(float),
}
labels["car"][rng.random(NUM_EXAMPLES) < 0.4] = np.nan   # not labelled
tasks = [
    kmtl.Task("car"),
    kmtl.Task("weather", kind="categorical", class_names=["sunny", "rain", "fog"]),
    kmtl.Task("distance", kind="regression"),
    kmtl.Task("lights", kind="multilabel", labels=["brake", "indicator"]),
]

mean, std = x.mean(axis=0), x.std(axis=0)
inputs = keras.Input((16,), name="image")
scale_inputs = keras.layers.Rescaling(scale=1 / std, offset=-mean / std, name="scale_inputs")
scaled = scale_inputs(inputs)
features = keras.layers.Dense(32, activation="relu")(scaled)
model = kmtl.MultiTaskModel(inputs, features, tasks)
model.compile(optimizer=keras.optimizers.Adam(3e-3))
model.fit(kmtl.data.from_arrays(x, labels, tasks, batch_size=64, shuffle=True, seed=0),
          epochs=EPOCHS, verbose=0)

# The reference every export is checked against: `predict` on a few
# examples, `{task name: array}` in the user's units. An export agrees with
# it when every output is within 1e-5 of it, plus one part in a million of
# the value: float32 keeps about seven significant digits, so a distance of
# 30 m is only known to a few millionths of a metre, whichever runtime
# computes it.

x_test = x[:8]
expected = model.predict(x_test, verbose=0)
print({name: value.shape for name, value in expected.items()})


def check(outputs, where):
    """Asserts one output per task, each equal to predict; returns the largest difference."""
    assert set(outputs) >= set(model.task_names), f"{where}: outputs {sorted(outputs)}"
    for name in model.task_names:
        np.testing.assert_allclose(outputs[name], expected[name], rtol=RTOL, atol=ATOL,
                                   err_msg=f"{where}: {name}")
    differences = {name: float(np.max(np.abs(np.asarray(outputs[name]) - expected[name])))
                   for name in model.task_names}
    worst = max(differences, key=differences.get)
    largest = f"{differences[worst]:.1e} ({worst})" if differences[worst] else "0 (identical)"
    print(f"{where}: {len(differences)} task outputs, largest difference from predict {largest}")
    return differences[worst]


worst = {}

# ## TF Serving: `kmtl.export_saved_model`
#
# TF Serving loads `<model base path>/<integer version>` directories.
# `kmtl.export.next_version_dir` picks the next free version number, and
# `export_saved_model` writes the directory whole or not at all (an existing
# version is refused unless `overwrite=True`).

base = os.path.join(folder, "serving", "street")
version = kmtl.export_saved_model(model, kmtl.export.next_version_dir(base))
print(version.relative_to(folder), sorted(p.name for p in version.iterdir()))

# The version directory holds two signatures: `serving_default`, with inputs
# named after the model's `keras.Input` layers, and `serving_tf_example`,
# which reads serialized `tf.train.Example` protos. Both return one output
# per task named after it, in the user's units (the distance in metres,
# not standardised), plus `<task>_class`, the arg-max, for each categorical
# task. `assets.extra/keras_mtl_tasks.json` describes the tasks in plain
# JSON for clients that do not use keras_mtl.

metadata = kmtl.export.read_tasks(version)
for task in metadata["tasks"]:
    print(f'{task["name"]:>9}: {task["kind"]:<11} outputs {task["unit_names"]}')
print(metadata["signatures"]["serving_default"])

# Load it the way TF Serving does, without keras_mtl or the model's code, and
# compare with `predict`:

loaded = tf.saved_model.load(str(version))
serve = loaded.signatures["serving_default"]
served = {name: value.numpy() for name, value in serve(image=tf.constant(x_test)).items()}
worst["SavedModel serving_default"] = check(served, "SavedModel serving_default")
assert (served["weather_class"] == expected["weather"].argmax(axis=-1)).all()



def to_example(row):
    """One serialized tf.train.Example: a float_list feature per model input, named after it."""
    feature = {"image": tf.train.Feature(float_list=tf.train.FloatList(value=row))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


serve_examples = loaded.signatures["serving_tf_example"]
from_examples = serve_examples(examples=tf.constant([to_example(row) for row in x_test]))
from_examples = {name: value.numpy() for name, value in from_examples.items()}
worst["SavedModel serving_tf_example"] = check(from_examples, "SavedModel serving_tf_example")

# To serve it, point TF Serving at the base directory (it loads the highest
# version and picks up new ones as they appear), e.g. with its Docker image:
#
# ```bash
# docker run -p 8501:8501 -e MODEL_NAME=street \
#   --mount type=bind,source=$PWD/serving/street,target=/models/street tensorflow/serving
# ```
#
# A REST client then posts the inputs by name to
# `http://localhost:8501/v1/models/street:predict` and gets one entry per
# task back. The request body for the first example:

first = [round(float(v), 2) for v in x_test[0]]
request = {"signature_name": "serving_default", "instances": [{"image": first}]}
print(json.dumps(request)[:100], "...")

# From the command line, `keras-mtl export street.keras serving/street`
# writes the next version of a saved `.keras` file, and
# `keras-mtl inspect serving/street` prints the tasks and signatures of the
# newest one.
#
# ## `model.export`
#
# Keras's `model.export(path, format=...)` writes the tasks' outputs, named
# after the tasks, as `predict` returns them. The forward pass `model(x)`
# returns one entry more, the fused logits that the loss reads
# (`"kmtl:fused_logits"`), which the exported file leaves out:

print(sorted(model(x_test[:1])))

# The input signature comes from the model's `keras.Input` layers, so a model
# just loaded, or trained under JAX, exports as it is (Keras's own
# `Model.export` asks for a model that has been called once).
#
# ## ONNX Runtime

onnx_path = os.path.join(folder, "street.onnx")
model.export(onnx_path, format="onnx", verbose=False)
session = onnxruntime.InferenceSession(onnx_path)
print("inputs:", [(i.name, i.shape) for i in session.get_inputs()])
print("outputs:", [o.name for o in session.get_outputs()])

# The input keeps the name of the `keras.Input`, the outputs the names of the
# tasks, and the batch dimension is free. Run it on the test examples:

assert [i.name for i in session.get_inputs()] == ["image"]
names = [o.name for o in session.get_outputs()]
from_onnx = dict(zip(names, session.run(None, {"image": x_test})))
assert sorted(from_onnx) == sorted(model.task_names)
worst["ONNX Runtime"] = check(from_onnx, "ONNX Runtime")

# ONNX files have no `weather_class` output (that is part of the SavedModel's
# signatures): take the arg-max of `weather` in the client.
#
# ### Preprocessing layers
#
# A `keras.layers.Normalization` layer, adapted to the data with `adapt` (or
# given its `mean` and `variance`), keeps its statistics as tensors outside the traced
# function, and the TensorFlow-to-ONNX conversion turns them into *inputs*
# of the ONNX file, which a client would have to feed. Here is the same trunk
# with a `Normalization` layer:

normalize = keras.layers.Normalization(name="normalize_inputs")
normalize.adapt(x)
inputs_n = keras.Input((16,), name="image")
features_n = keras.layers.Dense(32, activation="relu")(normalize(inputs_n))
model_n = kmtl.MultiTaskModel(inputs_n, features_n, tasks)
normalized_path = os.path.join(folder, "normalized.onnx")
model_n.export(normalized_path, format="onnx", verbose=False)
normalized_inputs = [i.name for i in onnxruntime.InferenceSession(normalized_path).get_inputs()]
print(normalized_inputs)
if len(normalized_inputs) > 1:
    print(f"With Normalization the ONNX file asks for {len(normalized_inputs)} inputs, not one: "
          f"{len(normalized_inputs) - 1} of them are the layer's statistics.")
else:
    print("With Normalization the ONNX file asks for one input: the statistics were folded in.")

# The fix is the layer the model above uses: `Rescaling(scale=1 / std,
# offset=-mean / std)` with the statistics as NumPy arrays computes the same
# thing, and its arrays become constants of the graph: the ONNX file of the
# model above has the one input `image`. Preprocessing that cannot be written
# as arithmetic on tensors (string look-ups, tokenizers) belongs in the
# client, or in the SavedModel, which keeps TensorFlow's own ops.
#
# ## LiteRT
#
# `model.export(path, format="litert")` writes a `.tflite` file (the name
# must end in `.tflite`) with one signature, `serving_default`. The LiteRT
# interpreter of the `ai-edge-litert` package runs it; its signature runner
# takes the inputs by name and returns a dict keyed by task.
# (`tf.lite.Interpreter` still runs it too, but TensorFlow marks it
# deprecated in favour of this package.)

litert_path = os.path.join(folder, "street.tflite")
model.export(litert_path, format="litert", verbose=False)
interpreter = Interpreter(model_path=litert_path)
print(interpreter.get_signature_list())
runner = interpreter.get_signature_runner("serving_default")
from_litert = runner(image=x_test)
assert sorted(from_litert) == sorted(model.task_names)
worst["LiteRT"] = check(from_litert, "LiteRT")
sizes = {path: os.path.getsize(path) / 1024 for path in (litert_path, onnx_path)}
print(f"LiteRT file {sizes[litert_path]:.0f} KiB, ONNX file {sizes[onnx_path]:.0f} KiB")

# ## What the checks found

for where, difference in worst.items():
    print(f"{where:>30}: one output per task, largest difference from predict {difference:.1e}")
print(f"All {len(worst)} exports agree with predict: largest difference "
      f"{max(worst.values()):.1e} (allowed: {ATOL:g} + {RTOL:g} × |value|).")
shutil.rmtree(folder)   # the files this guide wrote

# ## Other backends
#
# What Keras 3.15 does when `model.export` runs under the other backends:
#
# - **JAX**: `kmtl.export_saved_model` works (Keras converts the forward
#   pass with `jax2tf`). ONNX export needs the `jax2onnx` package (a large
#   install: it brings Flax and Orbax along), and LiteRT export raises
#   `ValueError: LiteRT export requires TensorFlow or PyTorch backend.`
# - **PyTorch**: `kmtl.export_saved_model` raises a `NotImplementedError`
#   that says what to do instead. ONNX export goes through `torch.onnx`, and
#   its outputs come out with generic names (numbers), in the order of the
#   sorted task names; LiteRT export needs the `litert-torch` package.
#
# The path that works from every backend is the one this guide takes: save
# the trained model (`model.save("street.keras")`), load it under TensorFlow
# (`keras.saving.load_model`; keras_mtl needs to be imported) and export it
# there.
#
# ## Next steps
#
# - [Export and serving](../topics/serving.md): the serving signatures, the
#   CLI and the latency of each way to predict.
# - [Getting started](getting_started.py): the first model, saved and
#   exported.
