"""
Title: Transfer learning
Description: Learn tasks with many labels, then reuse the trunk for a new task with few:
  new heads on a frozen trunk, then fine-tuning, against training from scratch.
"""

# ## Setup
#
# Transfer learning is the serial cousin of multi-task learning: learn task
# A, where labels are plentiful, then reuse what the network learned for
# task B, where they are scarce. It helps when both have the same kind of
# input and B can use A's low-level features. `kmtl.transfer` does the two
# usual steps:
#
# 1. `new_heads(source, tasks)`: a new `MultiTaskModel` with heads for the
#    new tasks on the source's trunk, the trunk frozen;
# 2. `unfreeze(model, learning_rate=...)`: every trunk layer trainable again,
#    recompiled with a small learning rate for fine-tuning.
#
# This guide runs as a script; the test suite runs it with
# `KERAS_MTL_GUIDE_SIZE=small`.

import os
import shutil
import tempfile

import keras
import numpy as np

import keras_mtl as kmtl

SMALL = os.environ.get("KERAS_MTL_GUIDE_SIZE") == "small"
NUM_SOURCE, NUM_TARGET, EPOCHS = (3000, 120, 3) if SMALL else (20000, 200, 15)

# ## Data: many labels for the source tasks, few for the target
#
# Every task here depends on the same twelve hidden features of the 32
# inputs (think of edges and colours shared by all road-scene objects). The
# source tasks, four kinds of vehicle, have many labelled examples; the
# target task, `bicycle`, has only a few, and resembles the motorbike more
# than the others (with a part of its own).

rng = np.random.default_rng(0)
mixing = rng.normal(size=(32, 12))


def scenes(n):
    x = rng.normal(size=(n, 32)).astype("float32")
    return x, np.maximum(x @ mixing, 0) / 4       # the hidden features


def yes_no(hidden, direction, missing=0.0):
    score = hidden @ direction
    labels = (score > np.median(score) + 0.3 * rng.normal(size=len(score))).astype(float)
    labels[rng.random(len(labels)) < missing] = np.nan
    return labels


source_tasks = [kmtl.Task(name) for name in ("car", "truck", "bus", "motorbike")]
directions = {name: rng.normal(size=12) for name in ["car", "truck", "bus", "motorbike"]}
directions["bicycle"] = directions["motorbike"] + 0.5 * directions["car"] + 0.5 * rng.normal(size=12)
x_source, hidden_source = scenes(NUM_SOURCE)
source_labels = {t.name: yes_no(hidden_source, directions[t.name], missing=0.3) for t in source_tasks}
x_target, hidden_target = scenes(NUM_TARGET)
x_test, hidden_test = scenes(2000)
bicycle = yes_no(hidden_target, directions["bicycle"])
bicycle_test = yes_no(hidden_test, directions["bicycle"])
print(f"source: {NUM_SOURCE} scenes, 4 tasks; target: {NUM_TARGET} labelled scenes of bicycles")

# ## The source model


def trunk(inputs):
    h = keras.layers.Dense(64, activation="relu", name="low_level")(inputs)
    return keras.layers.Dense(32, activation="relu", name="high_level")(h)


keras.utils.set_random_seed(0)
inputs = keras.Input((32,), name="scene")
source = kmtl.MultiTaskModel(inputs, trunk(inputs), source_tasks, name="vehicles")
source.compile(optimizer=keras.optimizers.Adam(3e-3))
source.fit(kmtl.data.from_arrays(x_source, source_labels, source_tasks, batch_size=64, shuffle=True, seed=0),
           epochs=2 * EPOCHS, verbose=0)

# `new_heads` shares the trunk's layers, and so its weights, with the source
# model: fine-tuning the new model changes the source model too. Save the
# source first if you still need it as it is.

folder = tempfile.mkdtemp()
source.save(os.path.join(folder, "vehicles.keras"))
source_before = source.predict(x_test[:256], verbose=0)

# ## The baseline: the target task from scratch
#
# The same architecture, trained on the few bicycle labels only. Every model
# below is scored by its AUC on 2,000 test scenes.

target_tasks = [kmtl.Task("bicycle")]
target_train = kmtl.data.from_arrays(x_target, {"bicycle": bicycle}, target_tasks, batch_size=16,
                                     shuffle=True, seed=0)
test = kmtl.data.from_arrays(x_test, {"bicycle": bicycle_test}, target_tasks, batch_size=1000)
target_epochs = 4 * EPOCHS

keras.utils.set_random_seed(0)
scratch_inputs = keras.Input((32,), name="scene")
scratch = kmtl.MultiTaskModel(scratch_inputs, trunk(scratch_inputs), target_tasks)
scratch.compile(optimizer=keras.optimizers.Adam(1e-2))
scratch.fit(target_train, epochs=target_epochs, verbose=0)
auc = {"from scratch": scratch.evaluate(test, return_dict=True, verbose=0)["bicycle_auc"]}

# ## Step 1: new heads on the frozen trunk
#
# Only the new head trains. With a frozen trunk and one linear head per
# task, this is also a *linear probe*: it measures how much the source's
# features already say about the new task. A low score here means the
# features lack the information, and fine-tuning has little to start from.

keras.utils.set_random_seed(0)
target = kmtl.transfer.new_heads(source, target_tasks, name="bicycles")
print([(layer.name, layer.trainable) for layer in kmtl.transfer.trunk_layers(target)])
target.compile(optimizer=keras.optimizers.Adam(1e-2))
print("trainable weights:", [w.path for w in target.trainable_weights])
target.fit(target_train, epochs=target_epochs, verbose=0)
auc["new head, frozen trunk"] = target.evaluate(test, return_dict=True, verbose=0)["bicycle_auc"]
assert np.allclose(source.predict(x_test[:256], verbose=0)["car"], source_before["car"])

# ## Step 2: fine-tuning
#
# `unfreeze` makes the trunk trainable and recompiles with the previous
# compile settings and a smaller learning rate (Adam, 1e-4 by default), so
# that a few epochs adapt the features without wiping them out.

kmtl.transfer.unfreeze(target, learning_rate=3e-4)
print("trainable weights after unfreeze:", len(target.trainable_weights))
target.fit(target_train, epochs=EPOCHS, verbose=0)
auc["fine-tuned"] = target.evaluate(test, return_dict=True, verbose=0)["bicycle_auc"]

# ## What transfer bought

for name, value in auc.items():
    print(f"{name:>22}: test AUC {value:.3f}")
best = max(auc, key=auc.get)
gain = max(auc["new head, frozen trunk"], auc["fine-tuned"]) - auc["from scratch"]
print(f"With {NUM_TARGET} bicycle labels, the best model is '{best}'; transfer "
      + (f"gains {gain:.3f} AUC over training from scratch." if gain > 0
         else f"does not beat training from scratch here ({gain:+.3f} AUC)."))

# Fine-tuning moved the shared trunk, so the source model's own predictions
# moved with it; the copy saved before is unchanged:

moved = float(np.max(np.abs(source.predict(x_test[:256], verbose=0)["car"] - source_before["car"])))
saved = keras.saving.load_model(os.path.join(folder, "vehicles.keras"))
kept = float(np.max(np.abs(saved.predict(x_test[:256], verbose=0)["car"] - source_before["car"])))
print(f"source model's car predictions moved by up to {moved:.3f}; the saved copy's by {kept:.1e}")
assert kept < 1e-5
shutil.rmtree(folder)   # the files this guide wrote

# ## Variations
#
# - **Cut lower**: `new_heads(source, tasks, features="low_level")` puts the
#   new heads on the output of the layer named `low_level`: more general
#   features, for a target task further from the source tasks.
# - **Keep learning the source tasks**: when you still have the source data,
#   training source and target tasks together in one `MultiTaskModel` is
#   often better than serial transfer, and missing labels make it easy: the
#   bicycle scenes have no vehicle labels and the vehicle scenes no bicycle
#   label (`kmtl.data.mix` builds such batches; see
#   [missing labels and data pipelines](missing_labels.py)).
# - **A plain Keras model as the source**: `new_heads` also takes any
#   functional `keras.Model`, e.g. a pretrained image network; its output,
#   or the layer named by `features=`, becomes the trunk.
#
# ## Next steps
#
# - [The transfer API](../api/transfer.md)
# - [Sharing architectures](sharing.py): how much the tasks of one model
#   share.
