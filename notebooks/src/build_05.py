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
""")

code(r"""
import os

import keras
import numpy as np

import keras_mtl as kmtl
from keras_mtl.datasets import generate_street_scenes

SIZE = os.environ.get("KERAS_MTL_NOTEBOOK_SIZE", "full")
N_A, N_B, EPOCHS_A, EPOCHS_B, SEEDS = {
    "full": (6000, 60, 8, 30, (0, 1, 2)),
    "small": (600, 60, 1, 2, (0,)),
}[SIZE]
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
for seed in SEEDS:
    keras.utils.set_random_seed(seed)
    scratch = kmtl.MultiTaskModel(*trunk(), [kmtl.Task("traffic_light")])
    fit(scratch, x_b, b_train, EPOCHS_B, 2e-3, seed)
    results["scratch"].append(b_auc(scratch))
    for name, labels in (("related", related), ("unrelated", unrelated)):
        keras.utils.set_random_seed(seed)
        source = kmtl.MultiTaskModel(*trunk(), [kmtl.Task(k) for k in labels])
        fit(source, x_a, labels, EPOCHS_A, 2e-3, seed)
        pretrained = source.get_weights()
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
    print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in results.items()))
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
## What we measured
""")

code(r"""
scratch = np.mean(results["scratch"])
best = {name: max((np.mean(v), k) for k, v in results.items() if k.startswith(name)) for name in ("related", "unrelated")}
print(f"From scratch on {N_B} images, B reached AUC {scratch:.3f}.")
for name, (value, key) in best.items():
    print(f"Best with {name} A ({N_A} images): {value:.3f} ({value - scratch:+.3f}), by '{key}'.")
""")

nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"}})
out = Path(__file__).resolve().parents[1] / "05_transfer_learning.ipynb"
nbf.write(nb, out)
print("wrote", out)
