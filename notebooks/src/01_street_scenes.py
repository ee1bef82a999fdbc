# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Street scenes: one network, four tasks, missing labels
#
# A self-driving car looks at an image $x^{(i)}$ and must say, for each of several
# objects — **pedestrian, car, stop sign, traffic light** — whether it is in the
# image. One image can hold several of them, so this is not a softmax over four
# classes: it is four independent logistic outputs, and the label of example $i$
# is a 4-vector $y^{(i)}$. Labelers often marked only some objects per image; the
# rest are "?".
#
# This notebook trains one network with a shared trunk and four heads on such
# data with `keras_mtl`, shows the label matrix with its "?" cells, checks the
# multi-task loss against a hand computation on a real batch, and exports the
# model for TF Serving.
#
# Set `KERAS_MTL_NOTEBOOK_SIZE=small` for a quick run (the test suite does);
# every result sentence is computed from the run's own numbers.
# `KERAS_MTL_NOTEBOOK_SEED=n` sets the training seed (default 0).

# %%
import json
import os
from pathlib import Path

import keras
import keras_mtl as kmtl
import numpy as np
from keras_mtl import plotting
from keras_mtl.datasets import OBJECT_TASKS, generate_street_scenes
from keras_mtl.demo import build_street_model

SIZE = os.environ.get("KERAS_MTL_NOTEBOOK_SIZE", "full")
N_TRAIN, N_VAL, N_TEST, EPOCHS = {"full": (8000, 1000, 2000, 10), "small": (3000, 300, 500, 5)}[SIZE]
SEED = int(os.environ.get("KERAS_MTL_NOTEBOOK_SEED", "0"))   # weights and shuffling; the data stay fixed
MISSING = 0.5
RESULTS = Path(os.environ.get("KERAS_MTL_NOTEBOOK_RESULTS", "results"))   # where the headline JSON goes
keras.utils.set_random_seed(SEED)
print(f"size={SIZE}: {N_TRAIN} train / {N_VAL} validation / {N_TEST} test images, {EPOCHS} epochs, seed {SEED}")

# %% [markdown]
# ## The data
#
# `generate_street_scenes` draws road scenes procedurally (day, dusk or night;
# objects at random positions, scales and depths, partly hiding each other; plus
# look-alike distractors). The training and validation labels have 50 % of their
# entries hidden uniformly at random; the test split is fully labelled so that
# every test image counts.

# %%
x_train, y_train = generate_street_scenes(N_TRAIN, seed=0, missing="uniform", missing_fraction=MISSING)
x_val, y_val = generate_street_scenes(N_VAL, seed=1, missing="uniform", missing_fraction=MISSING)
x_test, y_test = generate_street_scenes(N_TEST, seed=2)
y_train, y_val, y_test = ({k: y[k] for k in OBJECT_TASKS} for y in (y_train, y_val, y_test))
print("images:", x_train.shape, x_train.dtype)
for name in OBJECT_TASKS:
    y = y_train[name]
    print(f"{name:<14} labelled {np.mean(~np.isnan(y)):.0%}   positive among labelled {np.nanmean(y):.0%}")

# %%
plotting.plot_scenes(x_train, y_train, OBJECT_TASKS, num_images=8);

# %% [markdown]
# ## The label matrix, with its "?" cells
#
# Stacking the label vectors of $m$ examples gives the label matrix $Y$ (tasks ×
# examples). Red "?" marks an entry nobody labelled.

# %%
plotting.plot_label_matrix(y_train, OBJECT_TASKS, num_examples=24);

# %% [markdown]
# ## The loss, by hand and by `keras_mtl`
#
# $$J = \frac{1}{m}\sum_{i=1}^{m}\ \sum_{j=1,\ y^{(i)}_j \neq ?}^{k} L\big(\hat y^{(i)}_j, y^{(i)}_j\big),
# \qquad L(\hat y, y) = -y\log\hat y-(1-y)\log(1-\hat y)$$
#
# Terms whose label is "?" are left out of the sum: they add nothing to the loss
# and nothing to the gradient. Below, one real batch of 64 training images goes
# through an untrained model; we compute $J$ with NumPy from the predicted
# probabilities and compare it with the loss `keras_mtl` reports for the same
# batch.

# %%
tasks = [kmtl.Task(name) for name in OBJECT_TASKS]
model = build_street_model(tasks=tasks)
model.compile(optimizer=keras.optimizers.Adam(2e-3))

batch_x, batch_y = x_train[:64], {k: v[:64] for k, v in y_train.items()}
probs = model.predict(batch_x, verbose=0)

m = len(batch_x)
J = 0.0
for name in OBJECT_TASKS:
    y, p = batch_y[name], probs[name][:, 0].astype("float64")
    labelled = ~np.isnan(y)                                   # leave out the "?" terms
    L = -(y[labelled] * np.log(p[labelled]) + (1 - y[labelled]) * np.log(1 - p[labelled]))
    J += L.sum() / m
reported = model.evaluate(batch_x, batch_y, batch_size=64, verbose=0, return_dict=True)["loss"]
print(f"J by hand (NumPy): {J:.6f}")
print(f"J from keras_mtl : {reported:.6f}")
print(f"labelled entries in the batch: {sum(int(np.sum(~np.isnan(v))) for v in batch_y.values())} of {4 * m}")

# %% [markdown]
# ## Training with `model.fit`
#
# `kmtl.data.from_arrays` turns the NaN markers into the sentinel inside the
# `tf.data` graph; training is plain `model.fit`. History holds each task's loss
# and its AUC and accuracy, computed on labelled entries only.

# %%
model.summary()
train = kmtl.data.from_arrays(x_train, y_train, tasks, batch_size=64, shuffle=True, seed=SEED)
val = kmtl.data.from_arrays(x_val, y_val, tasks, batch_size=256)
history = model.fit(train, validation_data=val, epochs=EPOCHS, shuffle=False, verbose=2)

# %%
plotting.plot_history(history, OBJECT_TASKS, "auc");

# %% [markdown]
# ## Test results
#
# Every test label is known, so each AUC below is over all test images.

# %%
result = model.evaluate(kmtl.data.from_arrays(x_test, y_test, tasks, batch_size=256),
                        return_dict=True, verbose=0)
print(f"{'task':<15}{'test AUC':>9}{'accuracy':>10}")
for name in OBJECT_TASKS:
    print(f"{name:<15}{result[name + '_auc']:>9.3f}{result[name + '_accuracy']:>10.3f}")
predictions = model.predict(x_test[:12], verbose=0)
plotting.plot_predictions(x_test[:12], {k: v[:12] for k, v in y_test.items()}, predictions, OBJECT_TASKS);

# %% [markdown]
# ## Export for TF Serving
#
# The SavedModel takes an input named `image` and returns one output per task,
# named after it; the task list travels with it as plain JSON.

# %%
import tempfile

import tensorflow as tf

export_dir = Path(tempfile.mkdtemp()) / "street_scenes" / "1"   # outside the source tree
path = kmtl.export_saved_model(model, export_dir)
served = tf.saved_model.load(str(path)).signatures["serving_default"]
outputs = served(image=tf.constant(x_test[:5], tf.float32))
for name in OBJECT_TASKS:
    assert np.allclose(outputs[name].numpy(), model.predict(x_test[:5], verbose=0)[name], atol=1e-5)
print(sorted(outputs))
print(json.dumps(kmtl.export.read_tasks(path)["tasks"][0], indent=1))

# %% [markdown]
# ## What we measured
#
# The cell below states the result of this run in words.

# %%
aucs = {name: result[name + "_auc"] for name in OBJECT_TASKS}
best, worst = max(aucs, key=aucs.get), min(aucs, key=aucs.get)
print(f"With {MISSING:.0%} of the training labels missing, one network with four heads reached test AUC "
      f"{min(aucs.values()):.3f}–{max(aucs.values()):.3f} after {EPOCHS} epochs on {N_TRAIN} images "
      f"(best: {best} {aucs[best]:.3f}; hardest: {worst} {aucs[worst]:.3f}).")

# The headline numbers of this run, machine-readable (tests/test_notebooks.py checks them).
headline = {"size": SIZE, "seed": SEED, "test_auc": {k: float(v) for k, v in aucs.items()},
            "loss_by_hand": float(J), "loss_reported": float(reported)}
RESULTS.mkdir(parents=True, exist_ok=True)
(RESULTS / "01_street_scenes.json").write_text(json.dumps(headline, indent=1))

# %% [markdown]
# ## Reading of the measured numbers
#
# Built from this run's history: which object was still improving in the last
# epochs, and how far its training AUC is above its validation AUC (the part of
# further epochs on the same images that would be memorisation).

# %%
val_auc = {name: np.array(history.history[f"val_{name}_auc"]) for name in OBJECT_TASKS}
train_auc = {name: np.array(history.history[f"{name}_auc"]) for name in OBJECT_TASKS}
half = max(1, EPOCHS // 2)
late_gain = {name: float(v[-1] - v[half - 1]) for name, v in val_auc.items()}
still_improving = [name for name, g in late_gain.items() if g > 0.01]
levelled = [name for name in OBJECT_TASKS if name not in still_improving]
print("Test AUC, highest to lowest: " + ", ".join(
    f"{name} {aucs[name]:.3f}" for name in sorted(aucs, key=aucs.get, reverse=True)) + ".")
print(f"Validation AUC gain from epoch {half} to epoch {EPOCHS}: " + ", ".join(
    f"{name} {late_gain[name]:+.3f}" for name in OBJECT_TASKS) + ".")
if still_improving and levelled:
    print(f"Still improving at the end (gain > 0.01): {', '.join(still_improving)}; levelled off: "
          f"{', '.join(levelled)} — more epochs would mostly help the former.")
elif still_improving:
    print("Every object was still improving at the end (gain > 0.01): more epochs would help all four.")
else:
    print("Every object had levelled off (validation gain ≤ 0.01 over the second half of training).")
gap = {name: float(train_auc[name][-1] - val_auc[name][-1]) for name in OBJECT_TASKS}
widest = max(gap, key=gap.get)
print("Training minus validation AUC after the last epoch: " + ", ".join(
    f"{name} {gap[name]:+.3f}" for name in OBJECT_TASKS) + f"; widest for {widest}.")
diff = abs(J - reported)
print(f"On the real batch above, the loss computed by hand and the loss keras_mtl reports differ by {diff:.1e} "
      f"({'agree' if diff <= 1e-5 * max(1.0, abs(J)) else 'DISAGREE'} to float32 precision).")
