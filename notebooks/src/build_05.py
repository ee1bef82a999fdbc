"""Writes notebooks/05_transfer_learning.ipynb from the cells below."""

from pathlib import Path

import nbformat as nbf

cells = []
md = lambda s: cells.append(nbf.v4.new_markdown_cell(s.strip()))  # noqa: E731
code = lambda s: cells.append(nbf.v4.new_code_cell(s.strip()))  # noqa: E731

md(r"""
# Transfer learning: lots of data for A, little for B

Transfer learning is the serial cousin of multi-task learning: learn task A
from lots of data, then reuse what the network learned for task B, which has
little data but the same kind of input and useful low-level features. The
classic ratio is 1,000,000 examples for A and 1,000 for B; here it is scaled
down to 6,000 and 60 (100 : 1).

* **A (related):** pedestrian, car and stop sign presence in street scenes.
* **B:** traffic-light presence, with only 60 labelled images.
* **A (unrelated):** a task on the same images that says nothing about
  objects — is the left half of the image brighter than the right half?

We compare B trained from scratch with B on a trunk pretrained on A, frozen
(only the new head trains, at learning rate 1e-2) and then fine-tuned end to
end at 2e-4. The new head can sit on the
whole pretrained trunk (its last, most task-specific features: `shared`) or
lower, on the convolutional features (`global_pool`); we try both.

Set `KERAS_MTL_NOTEBOOK_SIZE=small` for a quick run; the text refers to `full`.
`KERAS_MTL_NOTEBOOK_SEED=n` starts the training seeds at n instead of 0.
""")

code(r"""
import json
import os

import keras
import numpy as np

import keras_mtl as kmtl
from keras_mtl.datasets import generate_street_scenes

SIZE = os.environ.get("KERAS_MTL_NOTEBOOK_SIZE", "full")
N_A, N_B, EPOCHS_A, EPOCHS_B, SEEDS = {
    "full": (6000, 60, 8, 30, (0, 1, 2)),
    "small": (2000, 60, 3, 30, (0,)),
}[SIZE]
SEED = int(os.environ.get("KERAS_MTL_NOTEBOOK_SEED", "0"))   # first seed; the data stay fixed
SEEDS = tuple(SEED + s for s in SEEDS)
IMAGE = 48
x_a, y_a = generate_street_scenes(N_A, image_size=IMAGE, seed=10)
x_b, y_b = generate_street_scenes(N_B, image_size=IMAGE, seed=11)
x_test, y_test = generate_street_scenes(2000, image_size=IMAGE, seed=12)


def brighter_left(images):
    half = images.shape[2] // 2
    return (images[:, :, :half].mean(axis=(1, 2, 3)) > images[:, :, half:].mean(axis=(1, 2, 3))).astype("float32")


related = {k: y_a[k] for k in ("pedestrian", "car", "stop_sign")}
unrelated = {"brighter_left": brighter_left(x_a)}
b_train, b_test = {"traffic_light": y_b["traffic_light"]}, {"traffic_light": y_test["traffic_light"]}
a_test = {"related": {k: y_test[k] for k in related}, "unrelated": {"brighter_left": brighter_left(x_test)}}
print(f"A: {N_A} images; B: {N_B} images ({int(np.sum(y_b['traffic_light']))} with a traffic light)")
""")

code(r"""
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
    model.fit(kmtl.data.from_arrays(x, labels, model, 32, shuffle=True, seed=seed), epochs=epochs, verbose=0)


def b_auc(model):
    return model.evaluate(x_test, b_test, verbose=0, return_dict=True)["traffic_light_auc"]


results = {"scratch": []}
source_auc = {"related": [], "unrelated": []}   # how well each source network learned its own task A
sources = {}                                     # the last seed's source networks and pretrained weights
for seed in SEEDS:
    keras.utils.set_random_seed(seed)
    scratch = kmtl.MultiTaskModel(*trunk(), [kmtl.Task("traffic_light")])
    fit(scratch, x_b, b_train, EPOCHS_B, 2e-3, seed)
    results["scratch"].append(b_auc(scratch))
    for name, labels in (("related", related), ("unrelated", unrelated)):
        keras.utils.set_random_seed(seed)
        source = kmtl.MultiTaskModel(*trunk(), [kmtl.Task(k) for k in labels])
        fit(source, x_a, labels, EPOCHS_A, 2e-3, seed)
        scores = source.evaluate(x_test, a_test[name], verbose=0, return_dict=True)
        source_auc[name].append(np.mean([scores[f"{k}_auc"] for k in labels]))
        pretrained = source.get_weights()
        sources[name] = (source, pretrained)
        for cut in ("shared", "global_pool"):
            source.set_weights(pretrained)   # fine-tuning changed the shared trunk: start again
            target = kmtl.transfer.new_heads(source, [kmtl.Task("traffic_light")], features=cut)
            # A fresh linear head on fixed features: a higher learning rate than end-to-end.
            fit(target, x_b, b_train, EPOCHS_B, 1e-2, seed)
            results.setdefault(f"{name} A, {cut}, frozen", []).append(b_auc(target))
            kmtl.transfer.unfreeze(target, learning_rate=2e-4)
            target.fit(kmtl.data.from_arrays(x_b, b_train, target, 32, shuffle=True, seed=seed),
                       epochs=EPOCHS_B // 2 or 1, verbose=0)
            results.setdefault(f"{name} A, {cut}, fine-tuned", []).append(b_auc(target))
            for layer in kmtl.transfer.trunk_layers(target):   # the next cut starts frozen again
                layer.trainable = True
    print(f"seed {seed}: A learned to test AUC {source_auc['related'][-1]:.3f} (related), "
          f"{source_auc['unrelated'][-1]:.3f} (unrelated); B: "
          + ", ".join(f"{k} {v[-1]:.3f}" for k, v in results.items()))
""")

code(r"""
import matplotlib.pyplot as plt

names = list(results)
means = [np.mean(results[n]) for n in names]
stds = [np.std(results[n]) for n in names]
print(f"{'B = traffic light, 60 labels':<36}{'test AUC':>16}")
for n, m, s in zip(names, means, stds):
    print(f"{n:<36}{m:>9.3f} ± {s:.3f}")
fig, ax = plt.subplots(figsize=(9, 3.8))
ax.bar(range(len(names)), means, yerr=stds, capsize=3,
       color=["gray"] + ["tab:blue"] * 4 + ["tab:orange"] * 4)
ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
ax.set_ylabel("test AUC of task B")
ax.set_ylim(0.4, 1.0)
ax.grid(axis="y", alpha=0.3);
""")

md(r"""
## Do A's features say anything about B?

A new head on frozen features can only be as good as the features. For the
last seed we take each trunk's features on the test images at both cut points
and ask how well the single most informative feature separates images with
and without a traffic light (its AUC on its own, counted as $\max(\text{AUC},
1-\text{AUC})$; 0.5 means no information). Compared: the trunks pretrained on
related and unrelated A (before fine-tuning), an untrained trunk of the same
shape, and the network trained on B from scratch.
""")

code(r"""
def auc(y, score):
    # probability that a random positive scores above a random negative; ties count half
    negatives = np.sort(score[y == 0])
    positives = score[y == 1]
    below = np.searchsorted(negatives, positives, side="left") + np.searchsorted(negatives, positives, side="right")
    return below.sum() / (2 * len(positives) * len(negatives))


def best_single_feature(model, cut):
    features = keras.Model(model.inputs, model.get_layer(cut).output).predict(x_test, verbose=0)
    aucs = [auc(y_test["traffic_light"], f) for f in features.T if f.std() > 0]
    return max(max(a, 1 - a) for a in aucs), len(aucs), features.shape[1]


keras.utils.set_random_seed(SEEDS[-1])
untrained = kmtl.MultiTaskModel(*trunk(), [kmtl.Task("traffic_light")])
for model, weights in sources.values():
    model.set_weights(weights)   # undo the fine-tuning, which changed the shared trunk
trunks = {"pretrained on related A": sources["related"][0], "pretrained on unrelated A": sources["unrelated"][0],
          "untrained": untrained, "trained on B from scratch": scratch}
feature_auc = {}
print(f"{'trunk (seed ' + str(SEEDS[-1]) + ')':<30}" + "".join(f"{cut:>24}" for cut in ("shared", "global_pool")))
for label, model in trunks.items():
    cells = []
    for cut in ("shared", "global_pool"):
        best, active, total = best_single_feature(model, cut)
        feature_auc[f"{label}, {cut}"] = best
        cells.append(f"{best:.3f} ({active}/{total} active)")
    print(f"{label:<30}" + "".join(f"{c:>24}" for c in cells))
""")

md(r"""
## What we measured
""")

code(r"""
scratch = np.mean(results["scratch"])
best = {name: max((np.mean(v), k) for k, v in results.items() if k.startswith(name))
        for name in ("related", "unrelated")}
print(f"From scratch on {N_B} images, B reached AUC {scratch:.3f}.")
print(f"Task A itself reached mean test AUC {np.mean(source_auc['related']):.3f} (related A) and "
      f"{np.mean(source_auc['unrelated']):.3f} (unrelated A).")
for name, (value, key) in best.items():
    print(f"Best with {name} A ({N_A} images): {value:.3f} ({value - scratch:+.3f}), by '{key}'.")

# The headline numbers of this run, machine-readable (tests/test_notebooks.py checks them).
headline = {"size": SIZE, "seeds": list(SEEDS), "scratch_auc": float(scratch),
            "auc": {k: float(np.mean(v)) for k, v in results.items()},
            "best_related_auc": float(best["related"][0]), "best_related": best["related"][1],
            "best_unrelated_auc": float(best["unrelated"][0]), "best_unrelated": best["unrelated"][1],
            "source_auc": {k: float(np.mean(v)) for k, v in source_auc.items()},
            "best_single_feature_auc": {k: float(v) for k, v in feature_auc.items()}}
with open("headline.json", "w") as f:
    json.dump(headline, f, indent=1)
""")

md(r"""
**Reading of the measured numbers (full size).** The claim does not hold in
this setup. Task A was learned (mean test AUC 0.890 on the three related
tasks, 0.916 on the brightness task) and B from scratch on its 60 images
reached 0.665 ± 0.013, but every transferred variant stayed at chance:
0.506–0.509 on the trunk pretrained on related A, 0.482–0.490 on the one
pretrained on unrelated A, frozen or fine-tuned, cut at `shared` or at
`global_pool`. Related A beat unrelated A by only 0.02, both at chance.

The table of single features shows why. After pretraining, no feature of
the trunk separates images with and without a traffic light better than
0.544 at either cut — less than the best feature of an untrained trunk
(0.559) and far less than the features the network trained on B learned for
itself (0.667). Learning pedestrians, cars and stop signs made the trunk's
max-pooled features specific to those objects, and the traffic light is not
among them: "related" here means the same kind of image, not the useful
shared low-level features the claim needs. Fine-tuning could in principle
repair that, but at learning rate 2·10⁻⁴ for 15 epochs of two batches it
moved B's AUC by at most 0.005. Source tasks that need traffic-light-like
features, or a longer fine-tuning, might show the expected gain; we did not
try them, and report the negative result as measured.
""")

nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"}})
out = Path(__file__).resolve().parents[1] / "05_transfer_learning.ipynb"
nbf.write(nb, out)
print("wrote", out)
