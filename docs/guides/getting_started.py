"""
Title: Getting started with keras_mtl
Description: One network, four tasks, half the labels missing: build, train, evaluate, save and export.
"""

# ## Setup
#
# keras_mtl runs on every Keras backend. Choose one the way Keras does, with
# `KERAS_BACKEND=tensorflow|jax|torch` set before Keras is imported;
# TensorFlow is the default. This guide runs as a script:
# `python docs/guides/getting_started.py` (the test suite runs it with
# `KERAS_MTL_GUIDE_SIZE=small`, fewer examples and epochs).

import os
import tempfile

import keras
import numpy as np

import keras_mtl as kmtl

SMALL = os.environ.get("KERAS_MTL_GUIDE_SIZE") == "small"
NUM_EXAMPLES, EPOCHS = (600, 2) if SMALL else (4000, 10)

# ## The data: a label matrix with "?"
#
# A self-driving car looks at an image and says, for each of four objects,
# whether it is in the image. One image can hold several objects, so this is
# not one softmax: it is four independent yes/no tasks, and the label of an
# image is a vector of four entries. The labelers marked only some objects
# per image; the rest are "?".
#
# To keep the guide fast, each "image" here is a vector of 32 features, and
# each object is present when a noisy linear function of them is positive.

rng = np.random.default_rng(0)
objects = ["pedestrian", "car", "stop_sign", "traffic_light"]
x = rng.normal(size=(NUM_EXAMPLES, 32)).astype("float32")
directions = rng.normal(size=(32, len(objects)))
noise = 0.5 * rng.normal(size=(NUM_EXAMPLES, len(objects)))
y = (x @ directions + noise > 0).astype(int).astype(object)   # 1: the object is there
y[rng.random(y.shape) < 0.5] = "?"
print(y[:4])

# Labels are a dict `{task name: array}`. A missing label can be written as
# `"?"`, `None`, `NaN` or `kmtl.MISSING`; they all mean the same thing.

labels = {name: y[:, j] for j, name in enumerate(objects)}
split = int(0.8 * NUM_EXAMPLES)
train_labels = {name: column[:split] for name, column in labels.items()}
val_labels = {name: column[split:] for name, column in labels.items()}

# ## Tasks and the model
#
# A `kmtl.Task` names one output head. Its kind (`"binary"` by default) sets
# the activation, the masked loss and the metrics; `loss_weight` is its
# weight in the total loss.

tasks = [
    kmtl.Task("pedestrian", loss_weight=2.0),
    kmtl.Task("car"),
    kmtl.Task("stop_sign"),
    kmtl.Task("traffic_light"),
]

# The shared trunk is any Keras graph from the inputs to a feature tensor.
# `MultiTaskModel` adds one named head per task on top of it, and is a
# `keras.Model`: `summary()`, callbacks and `.keras` files work as usual.

inputs = keras.Input((32,), name="image")
h = keras.layers.Dense(64, activation="relu")(inputs)
features = keras.layers.Dense(32, activation="relu")(h)
model = kmtl.MultiTaskModel(inputs, features, tasks)
model.summary()

# `compile` builds the masked loss of every task from the tasks: pass no
# `loss=`. The total loss is `Σ_tasks loss_weight × task loss`, and each
# task's loss leaves out its "?" entries.

model.compile(optimizer=keras.optimizers.Adam(3e-3))

# ## Training
#
# `kmtl.data.from_arrays` checks every label (a 2 on a yes/no task raises an
# error naming the task, the value and the fix), turns the markers into the
# sentinel, and batches the examples as a `tf.data` pipeline that works on
# every backend.

train = kmtl.data.from_arrays(x[:split], train_labels, tasks, batch_size=64, shuffle=True, seed=0)
val = kmtl.data.from_arrays(x[split:], val_labels, tasks, batch_size=256)
history = model.fit(train, validation_data=val, epochs=EPOCHS, verbose=2, callbacks=[
    keras.callbacks.EarlyStopping("val_car_auc", mode="max", patience=3, restore_best_weights=True),
])

# History holds `loss`, every task's loss and every task's metrics, each
# computed on labelled entries only: `car_loss`, `car_auc`, `car_accuracy`,
# and their `val_` twins.

print(sorted(history.history)[:6])

# ## Evaluating and predicting

results = model.evaluate(val, return_dict=True, verbose=0)
for name in objects:
    print(f"{name:>14}: validation AUC {results[f'{name}_auc']:.3f}")

# `predict` returns one array per task, keyed by task name.

predictions = model.predict(x[:3], verbose=0)
print({name: np.round(p[:, 0], 2).tolist() for name, p in predictions.items()})

# ## Saving and exporting
#
# A `.keras` file holds the whole model, its tasks included;
# `keras.saving.load_model` needs no `custom_objects` once keras_mtl is
# imported. `kmtl.export_saved_model` writes a SavedModel version directory
# that TF Serving loads as is, with one named output per task.

with tempfile.TemporaryDirectory() as folder:
    model.save(os.path.join(folder, "street.keras"))
    reloaded = keras.saving.load_model(os.path.join(folder, "street.keras"))
    same = reloaded.predict(x[:3], verbose=0)
    assert all(np.allclose(same[name], predictions[name], atol=1e-5) for name in objects)
    print(kmtl.export_saved_model(model, os.path.join(folder, "serving", "street", "1")))

# ## Next steps
#
# - [Missing labels and data pipelines](missing_labels.py): pandas,
#   `tf.data`, TFDS, and sources that each label some of the tasks.
# - [Task kinds, losses and class weights](kinds_and_losses.py): categorical,
#   regression, multilabel and count tasks, custom losses, class weights.
# - [Task weights and balancing strategies](balancing.py): scaling a
#   regression target, weighting tasks, adaptive strategies.
