"""
Title: Missing labels and data pipelines
Description: How to write "not labelled", and the pipelines from arrays, pandas, tf.data,
  TFDS and several partly labelled sources.
"""

# ## Setup
#
# Every pipeline of `kmtl.data` yields `(x, {task name: labels})` batches as
# a `tf.data.Dataset`, with one sentinel in place of every missing label:
# `-1` (`kmtl.MISSING`) for binary, multilabel and categorical tasks and
# `NaN` for regression targets. The masked losses and metrics leave those
# entries out. The pipelines feed `model.fit` on every backend.

import os

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

import keras_mtl as kmtl

SMALL = os.environ.get("KERAS_MTL_GUIDE_SIZE") == "small"
EPOCHS = 1 if SMALL else 5

tasks = [
    kmtl.Task("car"),                                                    # binary
    kmtl.Task("weather", kind="categorical", class_names=["sunny", "rain", "fog"]),
    kmtl.Task("distance", kind="regression"),
]

# ## Writing "not labelled"
#
# `"?"`, `None`, `NaN`, `pd.NA` and `kmtl.MISSING` all mean "not labelled",
# in lists, NumPy arrays and pandas columns. For class labels `-1` means the
# same (it is `kmtl.MISSING`); for a regression target −1 is a value, and
# only `NaN`, `None` or `"?"` mark it missing.

x = np.arange(12, dtype="float32").reshape(6, 2)
labels = {
    "car": [1, 0, "?", None, kmtl.MISSING, 1],
    "weather": [0, 2, 1, float("nan"), "?", 1],
    "distance": [12.5, -1.0, None, 3.0, "?", 0.5],    # -1.0 is a distance here
}
batch_x, batch_y = next(iter(kmtl.data.from_arrays(x, labels, tasks, batch_size=6)))
for name, values in batch_y.items():
    print(f"{name:>9}: {values.numpy().tolist()}")

# ## Labels are checked before training
#
# A label outside the task's domain raises a `ValueError` that names the
# task, the value and the fix, before any training starts: a 2 on a yes/no
# task, class 7 of 3, a string other than "?", an infinite target, a task
# with no labels given.

try:
    kmtl.data.from_arrays(x, {**labels, "car": [1, 0, 2, 0, 1, 1]}, tasks)
except ValueError as error:
    print(error)

# A categorical task with `class_names` takes the class *names* as labels
# too, beside the indices; a name it does not know is an error, not a
# missing label (a misspelt class would otherwise vanish from the loss).

labels["weather"] = ["rain", "?", "sunny", "fog", None, "rain"]
_, batch_y = next(iter(kmtl.data.from_arrays(x, labels, tasks, batch_size=6)))
print(batch_y["weather"].numpy().tolist())

# ## From pandas
#
# `from_dataframe` reads the column named after each task (a multilabel task
# reads one column per label) and takes the other columns as features. Empty
# cells (`NaN`, `None`, `pd.NA`) and "?" are missing labels.

frame = pd.DataFrame({
    "speed": [30.0, 50.0, 20.0, 80.0],
    "brightness": [0.2, 0.9, 0.5, 0.1],
    "car": [1, pd.NA, 0, 1],
    "weather": [0, 1, None, 2],
    "distance": [5.0, np.nan, 2.5, 40.0],
})
from_pandas = kmtl.data.from_dataframe(frame, tasks, batch_size=4)
features, y = next(iter(from_pandas))
print(features.shape, y["car"].numpy().tolist())

# ## From a `tf.data.Dataset`, or TFDS
#
# `from_dataset` wraps a dataset you already have. It accepts `(x, {task:
# y})` elements, or dicts of features with the inputs under `x_key` and one
# entry per task, which is what `tfds.load(...)` yields. The first batch is
# checked eagerly, every later one inside the graph.

elements = {
    "image": np.random.default_rng(0).normal(size=(8, 2)).astype("float32"),
    "car": np.array([1, 0, -1, 1, 0, -1, 1, 0], "int64"),
    "weather": np.array([0, 1, 2, -1, 0, 1, 2, 0], "int64"),
    "distance": np.array([1.0, np.nan, 3.0, 4.0, 5.0, 6.0, np.nan, 8.0], "float32"),
}
wrapped = kmtl.data.from_dataset(tf.data.Dataset.from_tensor_slices(elements), tasks, batch_size=4, x_key="image")
print(next(iter(wrapped))[1]["weather"].numpy().tolist())

# keras_mtl ships a TFDS builder of its own, the street scenes of the demo:
# `import keras_mtl.datasets` registers it, and
# `kmtl.datasets.load_street_scenes(...)` builds and loads it (see the
# [datasets API](../api/datasets.md)). Its elements go through
# `from_dataset` the same way.
#
# ## Several sources, each labelling some tasks
#
# Often one dataset labels the cars and another the weather. `mix` draws
# every example of a batch from one of the sources, and every task a source
# does not label is missing for its examples, so the masked loss learns each
# task from the sources that label it. `sampling` picks the sources in
# proportion to their size (`"size"`), equally (`"equal"`) or in between
# (`"temperature"`).

rng = np.random.default_rng(1)
car_images = rng.normal(size=(300, 2)).astype("float32")
weather_images = rng.normal(size=(100, 2)).astype("float32")
mixed = kmtl.data.mix(
    {
        "dashcam": (car_images, {"car": (car_images[:, 0] > 0).astype(int)}),
        "weather_station": (weather_images, {"weather": np.digitize(weather_images[:, 1], [-0.5, 0.5])}),
    },
    tasks, batch_size=32, sampling="equal", seed=0)
_, y = next(iter(mixed))
print("labelled cars:", int(np.sum(y["car"].numpy() != kmtl.MISSING)),
      "labelled weather:", int(np.sum(y["weather"].numpy() != kmtl.MISSING)),
      "labelled distances:", int(np.sum(~np.isnan(y["distance"].numpy()))))

# ## Training on it
#
# Any of these pipelines goes to `fit` as it is. A task with no labelled
# entry in a batch adds zero loss and zero gradient for that batch.

inputs = keras.Input((2,), name="image")
features = keras.layers.Dense(16, activation="relu")(inputs)
model = kmtl.MultiTaskModel(inputs, features, tasks)
model.compile(optimizer="adam")
history = model.fit(mixed.take(8), epochs=EPOCHS, verbose=2)
print(sorted(k for k in history.history if k.endswith("_loss")))

# ## NumPy arrays straight to `fit`
#
# `model.fit` also takes NumPy arrays, with `NaN` for every missing label
# (no strings: those need the `kmtl.data` pipelines above).

car = np.where(car_images[:, 0] > 0, 1.0, 0.0)
car[::3] = np.nan
model.fit(car_images, {"car": car, "weather": np.full(300, np.nan), "distance": np.full(300, np.nan)},
          epochs=1, batch_size=64, verbose=0)
