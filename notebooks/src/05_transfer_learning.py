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
# # Transfer learning: lots of data for A, little for B — and when it helps
#
# Transfer learning is the serial cousin of multi-task learning: learn task A
# from lots of data, then reuse what the network learned for task B, which has
# little data but the same kind of input and **useful low-level features**.
# The last condition is the one that decides, so this notebook measures it
# before any transfer, with a **linear probe**: a logistic regression from the
# pretrained network's features to B's label, fitted on many labelled images.
# If even that probe cannot separate B, the features carry no information
# about B and no transfer method can help; if it can, transfer has something to
# work with.
#
# * **B:** traffic-light presence, with only 60 labelled images.
# * **A, objects with a shared border:** pedestrian, car and stop sign, on
#   street scenes drawn with `relatedness=1`: every object, the traffic light
#   included, carries the same hi-vis border, so a network that learns to find
#   A's objects learns a feature that also marks B's.
# * **A, objects without it:** the same three tasks on scenes with
#   `relatedness=0`, where the objects share only poles and some red.
# * **A, unrelated:** is the left half of the image brighter than the right?
#   (on the bordered scenes) — nothing about objects.
# * **A, traffic lights drawn without the border:** B's own object, labelled
#   on scenes drawn at `relatedness=0`, for B on the bordered scenes: the
#   source whose features B needs most, as when a network pretrained on a
#   large photo collection is reused on a smaller one drawn from elsewhere.
#
# The two sources of pedestrians, cars and stop signs differ from the
# traffic-light source in one way that matters: for their tasks a traffic
# light is a negative example, so their trunks may learn to ignore it.
#
# B is trained from scratch, and on each pretrained trunk frozen (only the new
# head trains, at learning rate 10⁻²) and then fine-tuned end to end at
# 2·10⁻⁴. The new head sits either on the whole pretrained trunk (`shared`) or
# lower, on the convolutional features (`global_pool`). B, its test images and
# the probe's images are drawn at the relatedness of the source they are
# compared with (the bordered scenes for the traffic-light source), and B
# from scratch is trained at both.
#
# Set `KERAS_MTL_NOTEBOOK_SIZE=small` for a quick run; every result sentence is
# computed from the run's own numbers. `KERAS_MTL_NOTEBOOK_SEED=n` starts the
# training seeds at n instead of 0.

# %%
import json
import os
import time
from pathlib import Path

import keras
import keras_mtl as kmtl
import numpy as np
import tensorflow as tf
from keras_mtl.datasets import generate_street_scenes
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

SIZE = os.environ.get("KERAS_MTL_NOTEBOOK_SIZE", "full")
N_A, N_B, N_PROBE, N_TEST, EPOCHS_A, EPOCHS_B, SEEDS, CUTS = {
    "full": (6000, 60, 2000, 2000, 8, 30, (0, 1, 2), ("shared", "global_pool")),
    "small": (1500, 60, 800, 800, 3, 20, (0,), ("global_pool",)),
}[SIZE]
SEED = int(os.environ.get("KERAS_MTL_NOTEBOOK_SEED", "0"))   # first seed; the data stay fixed
SEEDS = tuple(SEED + s for s in SEEDS)
IMAGE = 48
RESULTS = Path(os.environ.get("KERAS_MTL_NOTEBOOK_RESULTS", "results"))   # where the headline JSON goes
tf.get_logger().setLevel("ERROR")
started = time.perf_counter()
print(f"size={SIZE}: A {N_A} images, B {N_B}, probe {N_PROBE}, test {N_TEST}; seeds {SEEDS}; cuts {CUTS}")


# %%
def brighter_left(images):
    half = images.shape[2] // 2
    return (images[:, :, :half].mean(axis=(1, 2, 3)) > images[:, :, half:].mean(axis=(1, 2, 3))).astype("float32")


OBJECTS_A = ("pedestrian", "car", "stop_sign")
data = {}   # relatedness → the A, B, probe and test images and labels (same seeds: same scenes)
for r in (0.0, 1.0):
    split = {}
    for name, count, seed in (("a", N_A, 10), ("b", N_B, 11), ("probe", N_PROBE, 13), ("test", N_TEST, 12)):
        split[name] = generate_street_scenes(count, image_size=IMAGE, seed=seed, missing="none", relatedness=r)
    data[r] = split

SOURCES = {   # source → the relatedness of its images, and of B's when compared with it
    "objects, shared border": (1.0, 1.0),
    "objects, no border": (0.0, 0.0),
    "unrelated (brightness)": (1.0, 1.0),
    "traffic lights, no border": (0.0, 1.0),
}


def a_labels(name, split):
    images, labels = data[SOURCES[name][0]][split]
    if name.startswith("unrelated"):
        return {"brighter_left": brighter_left(images)}
    if name.startswith("traffic lights"):
        return {"traffic_light": labels["traffic_light"]}
    return {k: labels[k] for k in OBJECTS_A}


b_train = {r: {"traffic_light": data[r]["b"][1]["traffic_light"]} for r in data}
b_test = {r: {"traffic_light": data[r]["test"][1]["traffic_light"]} for r in data}
print(f"B: {N_B} images, {int(b_train[1.0]['traffic_light'].sum())} with a traffic light")


# %%
def trunk():
    inputs = keras.Input((IMAGE, IMAGE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for i, channels in enumerate((16, 32, 32)):
        x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalMaxPooling2D(name="global_pool")(x)
    return inputs, keras.layers.Dense(64, activation="relu", name="shared")(x)


def fit(model, x, labels, epochs, lr, seed):
    model.compile(keras.optimizers.Adam(lr))
    model.fit(kmtl.data.from_arrays(x, labels, model, 32, shuffle=True, seed=seed), epochs=epochs, verbose=0,
              shuffle=False)


def b_auc(model, r):
    return model.evaluate(data[r]["test"][0], b_test[r], verbose=0, return_dict=True)["traffic_light_auc"]


def probe_auc(model, cut, r, split="probe"):
    """Test AUC of a logistic regression from the features at `cut` to B.

    Fitted on the N_PROBE labelled probe images (``split="probe"``: how much of B the features hold) or on
    B's own 60 training images (``split="b"``: how much of it 60 labels can reach with a linear head).
    """
    features = keras.Model(model.inputs, model.get_layer(cut).output)
    f_fit = features.predict(data[r][split][0], batch_size=500, verbose=0)
    f_test = features.predict(data[r]["test"][0], batch_size=500, verbose=0)
    scaler = StandardScaler().fit(f_fit)
    probe = LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(f_fit), data[r][split][1]["traffic_light"])
    return float(roc_auc_score(data[r]["test"][1]["traffic_light"], probe.decision_function(scaler.transform(f_test))))


# %% [markdown]
# ## Pretraining, the probe, and transfer

# %%
results = {}   # variant → one B test AUC per seed
probes = {}    # trunk → one probe AUC per seed (the best of the cuts)
probes_60 = {}  # source → the same probe fitted on B's 60 training images only
source_auc = {name: [] for name in SOURCES}
for seed in SEEDS:
    for r in data:
        keras.utils.set_random_seed(seed)
        scratch = kmtl.MultiTaskModel(*trunk(), [kmtl.Task("traffic_light")])
        fit(scratch, data[r]["b"][0], b_train[r], EPOCHS_B, 2e-3, seed)
        results.setdefault(f"scratch, relatedness {r:.0f}", []).append(b_auc(scratch, r))
        keras.utils.set_random_seed(seed)
        untrained = kmtl.MultiTaskModel(*trunk(), [kmtl.Task("traffic_light")])
        probes.setdefault(f"untrained trunk, relatedness {r:.0f}", []).append(
            max(probe_auc(untrained, cut, r) for cut in CUTS))
    for name, (r_a, r) in SOURCES.items():
        labels = a_labels(name, "a")
        keras.utils.set_random_seed(seed)
        source = kmtl.MultiTaskModel(*trunk(), [kmtl.Task(k) for k in labels])
        fit(source, data[r_a]["a"][0], labels, EPOCHS_A, 2e-3, seed)
        scores = source.evaluate(data[r_a]["test"][0], a_labels(name, "test"), verbose=0, return_dict=True)
        source_auc[name].append(float(np.mean([scores[f"{k}_auc"] for k in labels])))
        probes.setdefault(name, []).append(max(probe_auc(source, cut, r) for cut in CUTS))
        probes_60.setdefault(name, []).append(max(probe_auc(source, cut, r, split="b") for cut in CUTS))
        pretrained = source.get_weights()
        for cut in CUTS:
            source.set_weights(pretrained)   # fine-tuning changed the shared trunk: start again
            target = kmtl.transfer.new_heads(source, [kmtl.Task("traffic_light")], features=cut)
            fit(target, data[r]["b"][0], b_train[r], EPOCHS_B, 1e-2, seed)   # a fresh linear head: higher rate
            results.setdefault(f"{name}, {cut}, frozen", []).append(b_auc(target, r))
            kmtl.transfer.unfreeze(target, learning_rate=2e-4)
            target.fit(kmtl.data.from_arrays(data[r]["b"][0], b_train[r], target, 32, shuffle=True, seed=seed),
                       epochs=max(1, EPOCHS_B // 2), verbose=0, shuffle=False)
            results.setdefault(f"{name}, {cut}, fine-tuned", []).append(b_auc(target, r))
            for layer in kmtl.transfer.trunk_layers(target):   # the next cut starts frozen again
                layer.trainable = True
    print(f"seed {seed}: " + "; ".join(f"{k} {v[-1]:.3f}" for k, v in probes.items()))
print(f"{time.perf_counter() - started:.0f} s so far")

# %% [markdown]
# ## The probe: do A's features carry B's information?
#
# Test AUC of the linear probe (the better of the cuts) on each trunk's
# features, against the same probe on an untrained trunk of the same shape
# (random features) at the same relatedness.

# %%
print(f"{'trunk':<34}{'task A test AUC':>17}{'probe AUC for B':>18}{'probe on 60 images':>20}")
for name, values in probes.items():
    a = f"{np.mean(source_auc[name]):.3f}" if name in source_auc else "–"
    few = f"{np.mean(probes_60[name]):.3f}" if name in probes_60 else "–"
    print(f"{name:<34}{a:>17}{np.mean(values):>12.3f} ± {np.std(values):.3f}{few:>20}")

# %%
import matplotlib.pyplot as plt

names = list(results)
means = [np.mean(results[n]) for n in names]
stds = [np.std(results[n]) for n in names]
print(f"{'B = traffic light, ' + str(N_B) + ' labels':<52}{'test AUC':>14}")
for n, m, s in zip(names, means, stds):
    print(f"{n:<52}{m:>7.3f} ± {s:.3f}")
colours = ["gray" if n.startswith("scratch") else "tab:blue" if "shared border" in n
           else "tab:red" if n.startswith("traffic lights") else "tab:green" if "no border" in n else "tab:orange"
           for n in names]
fig, ax = plt.subplots(figsize=(10, 3.8))
ax.bar(range(len(names)), means, yerr=stds, capsize=3, color=colours)
ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
ax.set_ylabel("test AUC of task B")
ax.set_ylim(0.4, 1.0)
ax.grid(axis="y", alpha=0.3);


# %% [markdown]
# ## Reading of the measured numbers
#
# Computed from this run. A transferred variant *helps* when it beats B from
# scratch (at the same relatedness) in every seed and by more than two
# standard errors of the per-seed difference; with one seed the spread is not
# measured. The probe *carries B's information* when its AUC exceeds the
# untrained trunk's by more than 0.05.

# %%
def spread_verdict(per_seed):
    per_seed = np.asarray(per_seed, dtype=float)
    if len(per_seed) < 2:
        return "one seed, spread not measured"
    stderr = per_seed.std(ddof=1) / np.sqrt(len(per_seed))
    same_side = np.all(per_seed > 0) or np.all(per_seed < 0)
    return "beyond the seed spread" if same_side and abs(per_seed.mean()) > 2 * stderr else "within the seed spread"


summary = {}
for name, (_, r) in SOURCES.items():
    scratch_runs = np.array(results[f"scratch, relatedness {r:.0f}"])
    variants = {k: np.array(v) for k, v in results.items() if k.startswith(name + ",")}
    best = max(variants, key=lambda k: variants[k].mean())
    d = variants[best] - scratch_runs
    probe_gain = np.mean(probes[name]) - np.mean(probes[f"untrained trunk, relatedness {r:.0f}"])
    carries = probe_gain > 0.05
    print(f"{name}: task A learned to AUC {np.mean(source_auc[name]):.3f}; the probe reaches "
          f"{np.mean(probes[name]):.3f} against {np.mean(probes[f'untrained trunk, relatedness {r:.0f}']):.3f} on "
          f"random features ({probe_gain:+.3f}: the features {'carry' if carries else 'do not carry'} B's "
          f"information). Best transfer '{best[len(name) + 2:]}' "
          f"{variants[best].mean():.3f} against {scratch_runs.mean():.3f} from scratch: "
          f"{'better' if d.mean() > 0 else 'worse'} by {abs(d.mean()):.3f} ({spread_verdict(d)}).")
    frozen = max(np.mean(v) for k, v in variants.items() if k.endswith("frozen"))
    few = np.mean(probes_60[name])
    print(f"  The same probe fitted on B's {N_B} images only reaches {few:.3f} ("
          + ("little" if few < np.mean(probes[name]) - 0.05 else "most") + " of what the features hold); the frozen "
          f"trunk with a new head trained by Keras {frozen:.3f}"
          + (f" — {few - frozen:.3f} short of the same linear model fitted by logistic regression on the same "
             f"images: the new head's training ({EPOCHS_B} epochs at 10⁻², unscaled features), not the features, "
             "limits the frozen transfer." if few - frozen > 0.05 else "."))
    summary[name] = {"probe_auc": float(np.mean(probes[name])), "probe_gain_over_random": float(probe_gain),
                     "probe_60_auc": float(np.mean(probes_60[name])),
                     "source_auc": float(np.mean(source_auc[name])), "best_variant": best,
                     "best_auc": float(variants[best].mean()), "scratch_auc": float(scratch_runs.mean()),
                     "best_minus_scratch": float(d.mean()), "verdict": spread_verdict(d)}
agree = [n for n, s in summary.items() if (s["probe_gain_over_random"] > 0.05) == (s["best_minus_scratch"] > 0)]
print(f"The probe's verdict (information or none) matched whether transfer beat scratch for {len(agree)} of "
      f"{len(summary)} sources" + (f": {', '.join(agree)}." if agree else "."))
print(f"Whole notebook: {time.perf_counter() - started:.0f} s at size={SIZE}.")

# The headline numbers of this run, machine-readable (tests/test_notebooks.py checks them).
headline = {"size": SIZE, "seeds": list(SEEDS), "cuts": list(CUTS),
            "auc": {k: float(np.mean(v)) for k, v in results.items()},
            "probe_auc": {k: float(np.mean(v)) for k, v in probes.items()},
            "source_auc": {k: float(np.mean(v)) for k, v in source_auc.items()},
            "by_source": summary}
RESULTS.mkdir(parents=True, exist_ok=True)
(RESULTS / "05_transfer_learning.json").write_text(json.dumps(headline, indent=1))
