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
# # One network for four tasks, or four networks? A grid over the claim's conditions
#
# The claim: one network for k tasks beats k separate networks **when the tasks
# share low-level features, each task has limited data, and the network is big
# enough** for all of them (Caruana: multi-task learning hurts only when the
# shared network is too small). Each of the three conditions is a knob here:
#
# - **labelled examples per task** — scarce to plentiful. Each task is labelled
#   on its own images (the other three labels are "?"), as when four teams
#   label for four objects: a separate network sees only its task's images, the
#   multi-task network sees all of them, every label masked where missing.
# - **trunk width** — the channels of the first convolution; the separate
#   networks are compared with one multi-task network of the *same
#   architecture* (a quarter of their parameters in all) and with one of the
#   *same total parameter count* (a wider trunk).
# - **what the objects share** — the street-scenes generator's `relatedness`
#   setting: at 0 the four objects share only what the drawing gives them
#   (poles for signs and lights, some red); at 1 each also carries a shared
#   hi-vis border, a low-level feature common to all four tasks that marks
#   where an object is but not which. The scenes are otherwise the same pixel
#   for pixel, so the two settings differ by that border alone.
#
# **The budget.** Each separate network trains for the same number of gradient
# steps (batch 64); the multi-task network for four times as many, which is
# the same total compute as the four separate networks together and the same
# number of labelled examples seen per task (a batch of the multi-task network
# holds about a quarter of each task's labels). A network with fewer images
# sees each one more often. The network with the separate networks' parameter
# count is the multi-task network at about twice the width, so it is trained
# where that width lies in the grid: the widest column has no equal-parameter
# comparison, since that network alone would cost more than the rest of the
# grid (its multiply-adds are printed below). Every cell of the grid
# is repeated over several seeds (initial weights and shuffling), and every
# sentence in the readings below is computed from this run's numbers.
#
# Set `KERAS_MTL_NOTEBOOK_SIZE=small` for a quick run (fewer cells, one seed, no
# equal-parameter networks and no balancing experiment);
# `KERAS_MTL_NOTEBOOK_SEED=n` starts the seeds at n instead of 0.

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
from keras_mtl.datasets import OBJECT_TASKS, generate_street_scenes

SIZE = os.environ.get("KERAS_MTL_NOTEBOOK_SIZE", "full")
LABELLED, WIDTHS, SEEDS, STEPS, N_TEST, FULL = {
    "full": ((100, 400, 1600), (4, 8, 16, 32), (0, 1, 2), 300, 1000, True),
    "small": ((100, 800), (8,), (0,), 100, 500, False),
}[SIZE]
# The small size leaves out the equal-parameter networks and the balancing experiment.
VARIANTS = ("multi", "multi_equal_params") if FULL else ("multi",)
RELATEDNESS = (0.0, 1.0)
SEED = int(os.environ.get("KERAS_MTL_NOTEBOOK_SEED", "0"))   # first seed; the data stay fixed
SEEDS = tuple(SEED + s for s in SEEDS)
IMAGE, BATCH = 48, 64
RESULTS = Path(os.environ.get("KERAS_MTL_NOTEBOOK_RESULTS", "results"))   # where the headline JSON goes
tf.get_logger().setLevel("ERROR")   # dozens of models in one process: retracing warnings are expected
started = time.perf_counter()
print(f"size={SIZE}: labelled per task {LABELLED}, widths {WIDTHS}, seeds {SEEDS}, {STEPS} steps per separate "
      f"network, {len(OBJECT_TASKS) * STEPS} per multi-task network")

# %% [markdown]
# ## The data
#
# One pool of scenes per relatedness setting, drawn from the same seed (so the
# same pictures, with or without the border). Task $t$ is labelled on its own
# block of the pool: with $n$ labels per task, the multi-task network trains on
# $4n$ images, each labelled for one task. The test images are fully
# labelled.

# %%
pool_size = len(OBJECT_TASKS) * max(LABELLED)
pools, tests = {}, {}
for r in RELATEDNESS:
    x, y = generate_street_scenes(pool_size, image_size=IMAGE, seed=20, missing="none", relatedness=r)
    pools[r] = (x, {k: y[k] for k in OBJECT_TASKS})
    xt, yt = generate_street_scenes(N_TEST, image_size=IMAGE, seed=21, missing="none", relatedness=r)
    tests[r] = (xt, {k: yt[k] for k in OBJECT_TASKS})


def labelled_split(r, n):
    """Images and labels of the multi-task network, and each task's own rows, with n labels per task."""
    x, y = pools[r]
    rows = {t: np.arange(i * max(LABELLED), i * max(LABELLED) + n) for i, t in enumerate(OBJECT_TASKS)}
    index = np.concatenate(list(rows.values()))
    labels = {t: np.full(len(index), np.nan, dtype="float32") for t in OBJECT_TASKS}
    for i, t in enumerate(OBJECT_TASKS):
        labels[t][i * n:(i + 1) * n] = y[t][rows[t]]
    return x[index], labels, {t: (x[rows[t]], {t: y[t][rows[t]]}) for t in OBJECT_TASKS}


print(f"pool: {pool_size} images per setting; test: {N_TEST} images")
for t in OBJECT_TASKS:
    print(f"{t:<14} positive in the pool: {pools[0.0][1][t].mean():.0%}")
x_show, y_show, _ = labelled_split(1.0, 2)
plotting.plot_scenes(x_show, y_show, OBJECT_TASKS, num_images=8);

# %% [markdown]
# ## The networks
#
# The trunk: three 3×3 convolutions (`w`, `2w`, `2w` channels, ReLU, max
# pooling), global max pooling and `Dense(4w)`; one logistic head per task.
# Adam at 3·10⁻³, batch 64; `STEPS` steps per separate network, `4 × STEPS` per
# multi-task network.

# %%
def trunk(width):
    inputs = keras.Input((IMAGE, IMAGE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for channels in (width, 2 * width, 2 * width):
        x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    return inputs, keras.layers.Dense(4 * width, activation="relu")(x)


def train_and_test(width, task_names, x, labels, r, seed, balancing=None):
    """Trains one network on (x, labels); returns its test AUC per task and its size.

    STEPS steps per task: a four-task network trains four times as long as a one-task network.
    """
    keras.utils.set_random_seed(seed)
    tasks = [kmtl.Task(t) for t in task_names]
    model = kmtl.MultiTaskModel(*trunk(width), tasks)
    model.compile(keras.optimizers.Adam(3e-3), balancing=balancing)
    train = kmtl.data.from_arrays(x, labels, tasks, BATCH, shuffle=True, seed=seed).repeat()
    model.fit(train, epochs=1, steps_per_epoch=STEPS * len(task_names), verbose=0, shuffle=False)
    xt, yt = tests[r]
    result = model.evaluate(xt, {t: yt[t] for t in task_names}, batch_size=500, verbose=0, return_dict=True)
    return {t: float(result[f"{t}_auc"]) for t in task_names}, model.count_params()


def params_of(width, num_tasks):
    return kmtl.MultiTaskModel(*trunk(width), [kmtl.Task(f"t{i}") for i in range(num_tasks)]).count_params()


def multiply_adds(width):
    """Multiply-adds per image in the trunk's convolutions, which dominate its cost."""
    sizes = (IMAGE, IMAGE // 2, IMAGE // 4)
    channels = (3, width, 2 * width, 2 * width)
    return sum(s * s * 9 * c_in * c_out for s, c_in, c_out in zip(sizes, channels, channels[1:]))


# The multi-task width with the parameter count of the four separate networks together; trained only
# where that width is in the grid (a wider one would cost more than the grid itself).
EQUAL_PARAMS = {}
for w in WIDTHS:
    target = len(OBJECT_TASKS) * params_of(w, 1)
    v = min(range(w, 4 * w + 1), key=lambda v: abs(params_of(v, len(OBJECT_TASKS)) - target))
    print(f"width {w}: 4 separate networks {target:,} parameters; multi-task at width {w} "
          f"{params_of(w, 4):,}, at width {v} {params_of(v, 4):,} ({multiply_adds(v) / 1e6:.1f} M multiply-adds "
          f"an image against {multiply_adds(w) / 1e6:.1f} M)" + ("" if v <= max(WIDTHS) else ": not trained"))
    if v <= max(WIDTHS):
        EQUAL_PARAMS[w] = v

# %% [markdown]
# ## The grid

# %%
trained = {}   # (width, relatedness, n, seed) -> the multi-task network's test AUCs


def multi_task(w, r, n, seed):
    """Trains each multi-task network once: the equal-parameter network at one width is the
    same-architecture network at another, and the same seed gives the same network."""
    if (w, r, n, seed) not in trained:
        x_multi, y_multi, _ = labelled_split(r, n)
        trained[(w, r, n, seed)] = train_and_test(w, OBJECT_TASKS, x_multi, y_multi, r, seed)[0]
    return trained[(w, r, n, seed)]


runs = []   # one record per (relatedness, labels per task, width, seed)
for r in RELATEDNESS:
    for n in LABELLED:
        own = labelled_split(r, n)[2]
        for w in WIDTHS:
            for seed in SEEDS:
                record = {"relatedness": r, "n": n, "width": w, "seed": seed, "separate": {}}
                for t in OBJECT_TASKS:
                    record["separate"].update(train_and_test(w, [t], *own[t], r, seed)[0])
                record["multi"] = multi_task(w, r, n, seed)
                if FULL and w in EQUAL_PARAMS:
                    record["multi_equal_params"] = multi_task(EQUAL_PARAMS[w], r, n, seed)
                runs.append(record)
                mean = {k: np.mean(list(record[k].values())) for k in ("separate", *VARIANTS) if k in record}
                print(f"relatedness {r:.0f}  n {n:>5}  width {w:>2}  seed {seed}: mean AUC separate "
                      f"{mean['separate']:.3f}, multi {mean['multi']:.3f}"
                      + (f", multi (equal params) {mean['multi_equal_params']:.3f}" if "multi_equal_params" in mean
                         else ""))
print(f"{time.perf_counter() - started:.0f} s so far")


def compared(variant):
    """The widths at which networks of this variant were trained (the equal-parameter one only where its width
    is in the grid)."""
    return [w for w in WIDTHS if variant != "multi_equal_params" or w in EQUAL_PARAMS]


# %%
def cell(r, n, w, variant, task=None):
    """Per-seed values of one grid cell: the mean AUC over the tasks, or one task's AUC."""
    chosen = [x for x in runs if x["relatedness"] == r and x["n"] == n and x["width"] == w]
    if task is None:
        return np.array([np.mean(list(x[variant].values())) for x in chosen])
    return np.array([x[variant][task] for x in chosen])


def spread_verdict(per_seed):
    """'beyond' when every seed lies on the same side and the mean exceeds two standard errors."""
    per_seed = np.asarray(per_seed, dtype=float)
    if len(per_seed) < 2:
        return "one seed, spread not measured"
    stderr = per_seed.std(ddof=1) / np.sqrt(len(per_seed))
    same_side = np.all(per_seed > 0) or np.all(per_seed < 0)
    return "beyond the seed spread" if same_side and abs(per_seed.mean()) > 2 * stderr else "within the seed spread"


def std_text(values):
    return f"{np.std(values, ddof=1):.3f}" if len(values) > 1 else "–"


fig, axes = plt.subplots(len(VARIANTS), len(RELATEDNESS), figsize=(5.2 * len(RELATEDNESS), 3.7 * len(VARIANTS)),
                         squeeze=False, layout="constrained")
limit = 0.2
for row, variant in enumerate(VARIANTS):
    for col, r in enumerate(RELATEDNESS):
        ax = axes[row][col]
        diff = np.array([[(cell(r, n, w, variant) - cell(r, n, w, "separate")).mean() if w in compared(variant)
                          else np.nan for w in WIDTHS] for n in LABELLED])
        image = ax.imshow(diff, cmap="RdBu", vmin=-limit, vmax=limit, origin="lower", aspect="auto")
        for i, n in enumerate(LABELLED):
            for j, w in enumerate(WIDTHS):
                if w not in compared(variant):
                    ax.text(j, i, "not\ntrained", ha="center", va="center", fontsize=8, color="grey")
                    continue
                d = cell(r, n, w, variant) - cell(r, n, w, "separate")
                ax.text(j, i, f"{d.mean():+.3f}\n± {std_text(d)}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(WIDTHS)), [str(w) for w in WIDTHS])
        ax.set_yticks(range(len(LABELLED)), [str(n) for n in LABELLED])
        if row == len(VARIANTS) - 1:
            ax.set_xlabel("trunk width of the separate networks")
        if col == 0:
            ax.set_ylabel("labelled examples per task")
        same = "same architecture" if variant == "multi" else "same total parameters"
        ax.set_title(f"multi − separate, mean AUC ({same})\nrelatedness {r:.0f}", fontsize=9)
fig.colorbar(image, ax=axes, shrink=0.6, label="multi − separate (blue: one network better)")
plt.show()

# %% [markdown]
# ## Reading of the grid
#
# For each cell: the multi-task network's mean test AUC over the four tasks
# minus that of the four separate networks, per seed; a difference is
# *beyond the seed spread* when every seed lies on the same side and the mean
# exceeds two standard errors.

# %%
verdicts = {}
for variant, label in (("multi", "same architecture"), ("multi_equal_params", "same total parameters"))[:len(VARIANTS)]:
    for r in RELATEDNESS:
        wins, losses, ties = [], [], []
        for n in LABELLED:
            for w in compared(variant):
                d = cell(r, n, w, variant) - cell(r, n, w, "separate")
                verdict = spread_verdict(d)
                verdicts[(variant, r, n, w)] = (float(d.mean()), verdict)
                bucket = ties if verdict == "within the seed spread" else (wins if d.mean() > 0 else losses)
                bucket.append(f"n={n}, w={w} ({d.mean():+.3f})")
        print(f"Relatedness {r:.0f}, {label}: one network better in {len(wins)} cell(s)"
              + (f" [{'; '.join(wins)}]" if wins else "")
              + f", worse in {len(losses)}" + (f" [{'; '.join(losses)}]" if losses else "")
              + (f", no difference beyond the seed spread in {len(ties)}" if ties else "")
              + (" (one seed: the spread is not measured)." if len(SEEDS) < 2 else "."))

for r in RELATEDNESS:
    scarce, plentiful = LABELLED[0], LABELLED[-1]
    w = WIDTHS[-1]
    d_scarce = (cell(r, scarce, w, "multi") - cell(r, scarce, w, "separate")).mean()
    d_plenty = (cell(r, plentiful, w, "multi") - cell(r, plentiful, w, "separate")).mean()
    toward = "the multi-task network" if d_plenty > d_scarce else "the separate networks"
    print(f"Relatedness {r:.0f}, width {w}: multi − separate is {d_scarce:+.3f} with {scarce} labels per task and "
          f"{d_plenty:+.3f} with {plentiful}: more labels per task moved the difference by "
          f"{abs(d_plenty - d_scarce):.3f} toward {toward}.")
if len(RELATEDNESS) == 2:
    gain = {(n, w): ((cell(1.0, n, w, "multi") - cell(1.0, n, w, "separate"))
                     - (cell(0.0, n, w, "multi") - cell(0.0, n, w, "separate"))).mean()
            for n in LABELLED for w in WIDTHS}
    print("Effect of the shared border on multi − separate (relatedness 1 minus 0), per cell: "
          + ", ".join(f"n={n}, w={w}: {v:+.3f}" for (n, w), v in gain.items()) + ".")
if len(WIDTHS) > 1:
    for r in RELATEDNESS:
        last = {n: (cell(r, n, WIDTHS[-1], "separate") - cell(r, n, WIDTHS[-2], "separate")).mean()
                for n in LABELLED}
        stopped = [str(n) for n, v in last.items() if v < 0.01]
        growing = [str(n) for n, v in last.items() if v >= 0.01]
        print(f"Relatedness {r:.0f}: the separate networks' gain from width {WIDTHS[-2]} to {WIDTHS[-1]}: "
              + ", ".join(f"{v:+.3f} (n={n})" for n, v in last.items()) + " — "
              + "; ".join(([f"stopped improving (gain < 0.01) with {', '.join(stopped)} labels"] if stopped else [])
                          + ([f"still improving with {', '.join(growing)} labels: a wider grid would be needed "
                              "to see where they stop there"] if growing else []))
              + ".")

# %% [markdown]
# ## The starved task
#
# The mean over tasks can hide one task that a shared trunk leaves behind. Per
# task: test AUC of the multi-task network (same architecture) and of its
# separate network, against the labels per task, at the widest trunk.

# %%
w = WIDTHS[-1]
fig, axes = plt.subplots(1, len(RELATEDNESS), figsize=(5.4 * len(RELATEDNESS), 3.6), squeeze=False)
for ax, r in zip(axes[0], RELATEDNESS):
    for i, t in enumerate(OBJECT_TASKS):
        colour = f"C{i}"
        for variant, style in (("separate", "--"), ("multi", "-")):
            values = [cell(r, n, w, variant, t) for n in LABELLED]
            label = f"{t} ({'one network' if variant == 'multi' else 'alone'})"
            ax.errorbar(LABELLED, [v.mean() for v in values], yerr=[v.std() for v in values], fmt=style,
                        marker="o", color=colour, capsize=2, label=label)
    ax.set_xscale("log")
    ax.set_xticks(LABELLED, [str(n) for n in LABELLED])
    ax.minorticks_off()
    ax.set_xlabel("labelled examples per task")
    ax.set_ylabel("test AUC")
    ax.set_title(f"width {w}, relatedness {r:.0f}", fontsize=9)
    ax.grid(alpha=0.3)
axes[0][-1].legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
plt.show()

task_gap = {(r, n, t): float((cell(r, n, w, "multi", t) - cell(r, n, w, "separate", t)).mean())
            for r in RELATEDNESS for n in LABELLED for t in OBJECT_TASKS}
worst = {}
for r in RELATEDNESS:
    n = LABELLED[-1]
    gaps = {t: task_gap[(r, n, t)] for t in OBJECT_TASKS}
    worst[r] = min(gaps, key=gaps.get)
    print(f"Relatedness {r:.0f}, {n} labels per task, width {w}: multi − alone per task "
          + ", ".join(f"{t} {g:+.3f}" for t, g in gaps.items())
          + f"; the task the shared network serves worst is {worst[r]} "
          f"(AUC {cell(r, n, w, 'multi', worst[r]).mean():.3f} in one network, "
          f"{cell(r, n, w, 'separate', worst[r]).mean():.3f} alone).")

# %% [markdown]
# ### Does task balancing rescue it?
#
# `kmtl.balancing.GradNorm` (Chen et al., 2018) adapts the task weights so that
# every task trains at a similar rate, which is what a starved task lacks. It
# is tried, with its defaults, on the cell with the most labels and the widest
# trunk, for both relatedness settings (at the full size only).

# %%
balanced = {}
n = LABELLED[-1]
for r in RELATEDNESS if FULL else ():
    x_multi, y_multi, _ = labelled_split(r, n)
    balanced[r] = [train_and_test(w, OBJECT_TASKS, x_multi, y_multi, r, seed, balancing=kmtl.balancing.GradNorm())[0]
                   for seed in SEEDS]
    t = worst[r]
    with_gradnorm = np.array([b[t] for b in balanced[r]])
    plain = cell(r, n, w, "multi", t)
    alone = cell(r, n, w, "separate", t)
    d = with_gradnorm - plain
    mean_change = np.mean([np.mean(list(b.values())) for b in balanced[r]]) - cell(r, n, w, "multi").mean()
    print(f"Relatedness {r:.0f}: {t} with GradNorm {with_gradnorm.mean():.3f} against {plain.mean():.3f} with equal "
          f"weights ({d.mean():+.3f}, {spread_verdict(d)}) and {alone.mean():.3f} alone; the four tasks' mean AUC "
          f"changed by {mean_change:+.3f}. "
          + ("GradNorm closed the gap to the task's separate network." if with_gradnorm.mean() >= alone.mean()
             else "The gap to the task's separate network remains."))
if not FULL:
    print("GradNorm is tried at the full size only.")
print(f"Whole notebook: {time.perf_counter() - started:.0f} s at size={SIZE}.")

# %%
headline = {
    "size": SIZE, "seeds": list(SEEDS), "labelled": list(LABELLED), "widths": list(WIDTHS),
    "relatedness": list(RELATEDNESS), "steps": STEPS,
    "equal_params_width": {str(k): v for k, v in EQUAL_PARAMS.items()},
    "mean_auc": {f"r{r:.0f}/n{n}/w{w}": {variant: float(cell(r, n, w, variant).mean())
                                         for variant in ("separate", *VARIANTS) if w in compared(variant)}
                 for r in RELATEDNESS for n in LABELLED for w in WIDTHS},
    "multi_minus_separate": {f"{variant}/r{r:.0f}/n{n}/w{w}": v[0] for (variant, r, n, w), v in verdicts.items()},
    "task_gap_widest": {f"r{r:.0f}/n{n}/{t}": v for (r, n, t), v in task_gap.items()},
    "worst_task": {f"r{r:.0f}": t for r, t in worst.items()},
    "gradnorm_worst_task_auc": {f"r{r:.0f}": float(np.mean([b[worst[r]] for b in balanced[r]])) for r in balanced},
}
RESULTS.mkdir(parents=True, exist_ok=True)
(RESULTS / "02_mtl_vs_separate.json").write_text(json.dumps(headline, indent=1))
