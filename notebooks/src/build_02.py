"""Writes notebooks/02_mtl_vs_separate.ipynb from the cells below."""

from pathlib import Path

import nbformat as nbf

cells = []
md = lambda s: cells.append(nbf.v4.new_markdown_cell(s.strip()))  # noqa: E731
code = lambda s: cells.append(nbf.v4.new_code_cell(s.strip()))  # noqa: E731

md(r"""
# One network for four tasks, or four networks?

Two claims, measured on street scenes:

1. One network for k tasks beats k separate networks when the tasks share
   low-level features (all road-scene objects share edges, colours, shapes).
2. Multi-task learning only hurts when the network is **too small** for all
   the tasks (Caruana's finding) — so a sweep over the trunk's width should
   show a crossover.

For each trunk width, `kmtl.compare` trains four single-task networks and one
four-task network with the same architecture, data, epochs and batch size,
over several seeds, and reports the test AUC of each task.

Set `KERAS_MTL_NOTEBOOK_SIZE=small` for a quick run; the text refers to `full`.
`KERAS_MTL_NOTEBOOK_SEED=n` starts the training seeds at n instead of 0.
""")

code(r"""
import json
import os

import keras
import numpy as np

import keras_mtl as kmtl
from keras_mtl.datasets import OBJECT_TASKS, generate_street_scenes

SIZE = os.environ.get("KERAS_MTL_NOTEBOOK_SIZE", "full")
N_TRAIN, EPOCHS, WIDTHS, SEEDS = {
    "full": (3000, 6, (1, 2, 4, 8, 16), (0, 1, 2)),
    "small": (1500, 3, (2, 16), (0,)),
}[SIZE]
SEED = int(os.environ.get("KERAS_MTL_NOTEBOOK_SEED", "0"))   # first seed; the data stay fixed
SEEDS = tuple(SEED + s for s in SEEDS)
IMAGE = 48
x_train, y_train = generate_street_scenes(N_TRAIN, image_size=IMAGE, seed=20)
x_test, y_test = generate_street_scenes(1500, image_size=IMAGE, seed=21)
y_train = {k: y_train[k] for k in OBJECT_TASKS}
y_test = {k: y_test[k] for k in OBJECT_TASKS}
tasks = [kmtl.Task(k) for k in OBJECT_TASKS]


def trunk_of_width(width):
    def build():
        inputs = keras.Input((IMAGE, IMAGE, 3), name="image")
        x = keras.layers.Rescaling(1 / 255.0)(inputs)
        for channels in (width, 2 * width, 2 * width):
            x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu")(x)
            x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.GlobalMaxPooling2D()(x)
        return inputs, keras.layers.Dense(4 * width, activation="relu")(x)
    return build
""")

code(r"""
sweep = {}
for width in WIDTHS:
    sweep[width] = kmtl.compare(trunk_of_width(width), tasks, x_train, y_train, x_test, y_test,
                                epochs=EPOCHS, batch_size=64, seeds=SEEDS,
                                optimizer=lambda: keras.optimizers.Adam(3e-3), verbose=False)
    print(f"width {width}:\n{sweep[width]}\n")
""")

code(r"""
import matplotlib.pyplot as plt


def mean_over_tasks(result, kind):
    per_seed = np.array([result.per_seed[(t.name, kind)] for t in tasks])   # tasks × seeds
    return per_seed.mean(axis=0)                                             # one value per seed

single = {w: mean_over_tasks(r, "single") for w, r in sweep.items()}
multi = {w: mean_over_tasks(r, "multi") for w, r in sweep.items()}
fig, ax = plt.subplots(figsize=(6, 3.6))
for values, label in ((single, "4 separate networks"), (multi, "1 multi-task network")):
    ax.errorbar(WIDTHS, [values[w].mean() for w in WIDTHS], yerr=[values[w].std() for w in WIDTHS],
                marker="o", capsize=3, label=label)
ax.set_xscale("log", base=2)
ax.set_xlabel("trunk width (channels of the first convolution)")
ax.set_ylabel("mean test AUC over the 4 tasks")
ax.legend(fontsize=8)
ax.grid(alpha=0.3);
""")

md(r"""
## What we measured
""")

code(r"""
for w in WIDTHS:
    diff = multi[w].mean() - single[w].mean()
    params = sweep[w].params
    print(f"width {w:>2}: multi − separate = {diff:+.3f} mean AUC "
          f"({params['multi']:,} vs {params['single']:,} parameters)")
wins = [w for w in WIDTHS if multi[w].mean() > single[w].mean()]
losses = [w for w in WIDTHS if multi[w].mean() < single[w].mean()]
print(f"The multi-task network was better at widths {wins or 'none'} and worse at widths {losses or 'none'}.")

# The headline numbers of this run, machine-readable (tests/test_notebooks.py checks them).
headline = {"size": SIZE, "seeds": list(SEEDS), "widths": list(WIDTHS),
            "single": {str(w): float(single[w].mean()) for w in WIDTHS},
            "multi": {str(w): float(multi[w].mean()) for w in WIDTHS},
            "multi_minus_single": {str(w): float(multi[w].mean() - single[w].mean()) for w in WIDTHS}}
with open("headline.json", "w") as f:
    json.dump(headline, f, indent=1)
""")

md(r"""
**Reading of the measured numbers (full size).** In this run the four-task
network was worse than four separate networks at every width tried (1–16),
and the gap shrank steadily as the trunk grew: −0.164, −0.141, −0.128, −0.090
and −0.064 mean AUC at widths 1, 2, 4, 8 and 16. That agrees with the first
half of Caruana's finding — multi-task learning hurts when the shared network
is too small for all tasks — but the crossover to a multi-task gain did not
appear within the widths and the 6-epoch budget measured here, so the first
claim above (one network beats k separate ones) is not supported by this run.
Two things favour the separate networks in this comparison: together they
have four times the parameters (66,052 against 16,708 at width 16), and each
trunk serves a single task. The multi-task network was also less steady:
its traffic-light AUC varied by ± 0.15 between seeds at widths 2–8, the
separate networks' by ± 0.03 or less. A wider sweep (and longer training) is
needed to locate the crossover, if there is one on this data.
""")

nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"}})
out = Path(__file__).resolve().parents[1] / "02_mtl_vs_separate.ipynb"
nbf.write(nb, out)
print("wrote", out)
