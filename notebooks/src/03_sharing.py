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
# # Sharing architectures: hard, soft, cross-stitch, MMoE, PLE
#
# A multi-task network must decide **what the tasks share**. This notebook
# trains the five architectures `keras_mtl` offers on the same small CNN trunk
# and compares them on two problems:
#
# 1. **Street scenes** — four related object tasks (pedestrian, car, stop sign,
#    traffic light) that share low-level features.
# 2. **A deliberately unrelated pair** — stop sign *vs.* the parity of a hidden
#    number drawn into the image corner, a task that carries no information
#    about the scene. Here sharing can only cost, and we measure whether it does
#    (**negative transfer**) by comparing with single-task networks.
#
# For every architecture we report the parameter count and each task's test AUC
# over 3 seeds (mean ± standard deviation), and we look inside the trained
# models: which experts each task's gate uses (MMoE, PLE) and how much the
# cross-stitch units mix the towers.
#
# Set `KERAS_MTL_NOTEBOOK_SIZE=small` for a quick run (the test suite does: 1
# seed, 1,000 training images, 3 epochs — enough to check that the tasks are
# learnable, too little to compare architectures); every result sentence is
# computed from the run's own numbers. `KERAS_MTL_NOTEBOOK_SEED=n` starts the training seeds
# at n instead of 0.

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
N_TRAIN, N_TEST, EPOCHS, SEEDS = {"full": (3000, 1500, 8, (0, 1, 2)),
                                  "small": (1000, 500, 3, (0,))}[SIZE]
SEED = int(os.environ.get("KERAS_MTL_NOTEBOOK_SEED", "0"))   # first seed; the data stay fixed
SEEDS = tuple(SEED + s for s in SEEDS)
IMAGE_SIZE = 48
RESULTS = Path(os.environ.get("KERAS_MTL_NOTEBOOK_RESULTS", "results"))   # where the headline JSON goes
# Building dozens of models in one process makes TensorFlow warn that it
# retraces functions; each new model needs its own trace, so that is expected.
tf.get_logger().setLevel("ERROR")
started = time.perf_counter()
print(f"size={SIZE}: {N_TRAIN} training / {N_TEST} test images of {IMAGE_SIZE}×{IMAGE_SIZE}, "
      f"{EPOCHS} epochs, seeds {SEEDS}")

# %% [markdown]
# ## The five architectures
#
# All five start from the same trunk (three 3×3 convolutions with max-pooling,
# global max-pooling, `Dense(64)`) and end in one logistic head per task. They
# differ in what sits between the trunk's features $h(x)$ and the heads:
#
# - **hard sharing** (`sharing=None`): one shared `Dense(64)` layer for all
#   tasks, then the heads.
# - **soft sharing** (`kmtl.sharing.SoftSharing()`): a `Dense(64)` tower per
#   task; the penalty $\Omega=\lambda\sum_t\lVert W_t-\bar W\rVert^2$
#   ($\lambda=10^{-3}$, added to the loss) pulls the towers' kernels together.
# - **cross-stitch** (`kmtl.sharing.CrossStitch()`): two-layer towers per task;
#   after each layer a learned $T\times T$ matrix $\alpha$ mixes them,
#   $\tilde x_t=\sum_s\alpha_{ts}x_s$ ($\alpha$ starts at 0.9 on the diagonal).
# - **MMoE** (`kmtl.sharing.MMoE()`): 4 shared experts; task $t$ mixes them with
#   its own softmax gate, $f_t(x)=\sum_e g_t(x)_e\,\mathrm{expert}_e(x)$.
# - **PLE** (`kmtl.sharing.PLE()`): 2 levels, each with 2 shared experts and 1
#   expert per task; each task's gate mixes its own and the shared experts, a
#   shared gate feeds the next level's shared experts.
#
# Every sharing layer is used with its defaults (no tuning for this notebook).
# Hard sharing gets one extra shared `Dense(64)` so that every architecture has
# at least one hidden layer between trunk and heads; the single-task baselines
# are the hard-sharing network trained on one task.

# %%
ARCHITECTURES = {
    "hard": lambda: None,
    "soft": lambda: kmtl.sharing.SoftSharing(),
    "cross-stitch": lambda: kmtl.sharing.CrossStitch(),
    "MMoE": lambda: kmtl.sharing.MMoE(),
    "PLE": lambda: kmtl.sharing.PLE(),
}


def make_model(arch, task_names, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for i, channels in enumerate((16, 32, 32)):
        x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = keras.layers.GlobalMaxPooling2D(name="global_pool")(x)
    features = keras.layers.Dense(64, activation="relu", name="trunk_out")(x)
    sharing = ARCHITECTURES[arch]()
    if sharing is None:
        features = keras.layers.Dense(64, activation="relu", name="shared_hidden")(features)
    model = kmtl.MultiTaskModel(inputs, features, [kmtl.Task(n) for n in task_names], sharing=sharing)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    return model


print(f"{'architecture':<14}{'params, 4 street tasks':>24}{'params, 2 tasks':>17}")
for arch in ARCHITECTURES:
    four, two = (make_model(arch, names, 0).count_params()
                 for names in (OBJECT_TASKS, ["stop_sign", "parity"]))
    print(f"{arch:<14}{four:>24,}{two:>17,}")
print(f"{'single task':<14}{'':>24}{make_model('hard', ['stop_sign'], 0).count_params():>17,}  (each)")


# %% [markdown]
# ## The data
#
# Street scenes come from `generate_street_scenes` (48×48 pixels here, to keep
# the full run within about a quarter of an hour on two CPU cores). Every label
# is known in this notebook, so the comparison is about the architectures
# alone.
#
# **The unrelated task.** Into a copy of every image we draw a hidden number
# $n\in\{0,\dots,7\}$, chosen uniformly and independently of the scene, as
# three squares in the top-left corner (white = bit set, black = bit clear, on a
# grey strip); the label is the parity of $n$ (odd = 1). This is honest in two
# ways: the task is learnable from the pixels (the single-task baseline below
# shows how well), and it is unrelated to the street by construction — $n$ comes
# from its own random generator, so it carries no information about the stop
# sign and the stop sign none about it. Whatever the pair's stop-sign AUC loses
# or gains against the single-task network is therefore caused by sharing
# weights, not by shared information. The strip covers 5×13 of the 48×48
# pixels (sky, almost always); the stop-sign baselines are trained on the same
# marked images.

# %%
def draw_hidden_number(images, seed):
    rng = np.random.default_rng(seed)
    number = rng.integers(0, 8, len(images))
    marked = images.copy()
    marked[:, 0:5, 0:13] = 128
    for bit in range(3):
        on = (number >> bit) & 1 == 1
        marked[on, 1:4, 1 + 4 * bit:4 + 4 * bit] = 255
        marked[~on, 1:4, 1 + 4 * bit:4 + 4 * bit] = 0
    parity = np.array([bin(v).count("1") % 2 for v in number], dtype="float32")
    return marked, parity, number


x_train, y_train = generate_street_scenes(N_TRAIN, image_size=IMAGE_SIZE, seed=0, missing="none")
x_test, y_test = generate_street_scenes(N_TEST, image_size=IMAGE_SIZE, seed=1, missing="none")
x_train_pair, parity_train, _ = draw_hidden_number(x_train, seed=10)
x_test_pair, parity_test, number_test = draw_hidden_number(x_test, seed=11)
y_train["parity"], y_test["parity"] = parity_train, parity_test

for name in (*OBJECT_TASKS, "parity"):
    print(f"{name:<14} positive: train {y_train[name].mean():.0%}, test {y_test[name].mean():.0%}")
corr = np.corrcoef(y_train["stop_sign"], y_train["parity"])[0, 1]
print(f"correlation of stop_sign and parity labels (train): {corr:+.3f}")

fig, axes = plt.subplots(1, 6, figsize=(13, 2.6))
for ax, i in zip(axes, range(6)):
    ax.imshow(x_test_pair[i])
    ax.set_title(f"n={number_test[i]} parity={int(parity_test[i])}\nstop sign={int(y_test['stop_sign'][i])}",
                 fontsize=8)
    ax.axis("off")


# %% [markdown]
# ## Training and evaluation
#
# Each run trains for the same number of epochs with Adam (learning rate
# 2·10⁻³, batch 64) and reports test AUC per task. Seeds change the weight
# initialisation and the shuffling order; the data are the same for every
# seed.

# %%
def run(arch, task_names, x, y, xt, yt, seed):
    model = make_model(arch, task_names, seed)
    train = kmtl.data.from_arrays(x, {n: y[n] for n in task_names}, model, batch_size=64,
                                  shuffle=True, seed=seed)
    tick = time.perf_counter()
    model.fit(train, epochs=EPOCHS, verbose=0)
    seconds = time.perf_counter() - tick
    test = kmtl.data.from_arrays(xt, {n: yt[n] for n in task_names}, model, batch_size=256)
    result = model.evaluate(test, return_dict=True, verbose=0)
    aucs = {n: float(result[f"{n}_auc"]) for n in task_names}
    shown = "  ".join(f"{n} {a:.3f}" for n, a in aucs.items())
    print(f"{arch:<13} seed {seed}  {seconds:5.1f} s  AUC: {shown}")
    return aucs, model


def mean_std(values):
    values = np.asarray(values)
    spread = f"{values.std(ddof=1):.3f}" if len(values) > 1 else "–"
    return f"{values.mean():.3f} ± {spread}"


def table(results, task_names, params):
    header = f"{'architecture':<14}{'params':>9}" + "".join(f"{n:>17}" for n in task_names) + f"{'mean':>17}"
    lines = [header]
    for arch, runs in results.items():
        row = f"{arch:<14}{params[arch]:>9,}"
        row += "".join(f"{mean_std([r[n] for r in runs]):>17}" for n in task_names)
        row += f"{mean_std([np.mean([r[n] for n in task_names]) for r in runs]):>17}"
        lines.append(row)
    return "\n".join(lines)


# %% [markdown]
# ## 1. Street scenes: four related tasks

# %%
street, street_models, street_params = {}, {}, {}
for arch in ARCHITECTURES:
    street[arch] = []
    for seed in SEEDS:
        aucs, model = run(arch, OBJECT_TASKS, x_train, y_train, x_test, y_test, seed)
        street[arch].append(aucs)
        if seed == SEEDS[0]:
            street_models[arch], street_params[arch] = model, model.count_params()
print()
print(f"Test AUC, street scenes (mean ± std over {len(SEEDS)} seed(s)):")
print(table(street, OBJECT_TASKS, street_params))

# %% [markdown]
# ### What the sharing layers learned (street scenes, first seed)
#
# `model.sharing_weights(x)` returns the mean gate weight of every task on every
# expert (MMoE, PLE — PLE's last level, the task's own expert first, then the
# shared ones) and the cross-stitch matrices $\alpha$; `plotting.plot_sharing`
# draws them. A row of the expert-usage map is one task's average mixture; rows
# that look alike mean the tasks read the same experts.

# %%
for arch in ("MMoE", "PLE", "cross-stitch"):
    fig = plotting.plot_sharing(street_models[arch].sharing_weights(x_test), OBJECT_TASKS)
    fig.suptitle(f"{arch}, street scenes", y=1.02)
    plt.show()
penalty = street_models["soft"].sharing_weights()["penalty"]
print(f"soft sharing: penalty Ω = λ Σ‖W_t − W̄‖² after training = {penalty:.4f}")

# %% [markdown]
# ## 2. An unrelated pair: stop sign vs. hidden-number parity
#
# First the single-task networks (the same trunk plus hidden layer, one task
# each), then all five architectures on the pair. The *transfer* of a task is
# its AUC in the pair minus its single-task AUC, per seed: negative numbers are
# negative transfer.

# %%
PAIR = ["stop_sign", "parity"]
single = {name: [] for name in PAIR}
for name in PAIR:
    for seed in SEEDS:
        aucs, _ = run("hard", [name], x_train_pair, y_train, x_test_pair, y_test, seed)
        single[name].append(aucs[name])

pair, pair_models, pair_params = {}, {}, {}
for arch in ARCHITECTURES:
    pair[arch] = []
    for seed in SEEDS:
        aucs, model = run(arch, PAIR, x_train_pair, y_train, x_test_pair, y_test, seed)
        pair[arch].append(aucs)
        if seed == SEEDS[0]:
            pair_models[arch], pair_params[arch] = model, model.count_params()

print()
print(f"Test AUC, unrelated pair (mean ± std over {len(SEEDS)} seed(s)):")
print(table({"single task": [{n: single[n][i] for n in PAIR} for i in range(len(SEEDS))], **pair}, PAIR,
            {"single task": 2 * make_model("hard", ["stop_sign"], 0).count_params(), **pair_params}))
print()
print("Transfer = pair AUC − single-task AUC (same seed):")
print(f"{'architecture':<14}" + "".join(f"{n:>17}" for n in PAIR))
transfer = {}
for arch, runs in pair.items():
    transfer[arch] = {n: [r[n] - s for r, s in zip(runs, single[n])] for n in PAIR}
    print(f"{arch:<14}" + "".join(f"{mean_std(transfer[arch][n]):>17}" for n in PAIR))

# %%
for arch in ("MMoE", "PLE", "cross-stitch"):
    fig = plotting.plot_sharing(pair_models[arch].sharing_weights(x_test_pair), PAIR)
    fig.suptitle(f"{arch}, stop sign vs. parity", y=1.02)
    plt.show()


# %% [markdown]
# ## What we measured
#
# The cell below states this run's numbers in words.

# %%
def best_and_worst(results, names):
    means = {arch: np.mean([np.mean([r[n] for n in names]) for r in runs]) for arch, runs in results.items()}
    return max(means, key=means.get), min(means, key=means.get), means


best, worst, means = best_and_worst(street, OBJECT_TASKS)
print(f"Street scenes: mean test AUC over the four tasks ranges from {means[worst]:.3f} ({worst}) "
      f"to {means[best]:.3f} ({best}).")
for name in OBJECT_TASKS:
    per_arch = {arch: np.mean([r[name] for r in runs]) for arch, runs in street.items()}
    print(f"  {name:<14} " + ", ".join(f"{a} {v:.3f}" for a, v in per_arch.items()))
stop = {arch: np.mean(t["stop_sign"]) for arch, t in transfer.items()}
print(f"Unrelated pair: single-task stop-sign AUC {np.mean(single['stop_sign']):.3f}, parity "
      f"{np.mean(single['parity']):.3f}. Stop-sign transfer in the pair: "
      + ", ".join(f"{a} {v:+.3f}" for a, v in stop.items()) + ".")
print(f"Whole notebook: {time.perf_counter() - started:.0f} s at size={SIZE}.")

# The headline numbers of this run, machine-readable (tests/test_notebooks.py checks them).
headline = {"size": SIZE, "seeds": list(SEEDS),
            "params": {arch: int(n) for arch, n in street_params.items()},
            "street_auc": {arch: {n: float(np.mean([r[n] for r in runs])) for n in OBJECT_TASKS}
                           for arch, runs in street.items()},
            "street_mean_auc": {arch: float(v) for arch, v in means.items()},
            "single_auc": {n: float(np.mean(v)) for n, v in single.items()},
            "pair_auc": {arch: {n: float(np.mean([r[n] for r in runs])) for n in PAIR} for arch, runs in pair.items()},
            "stop_sign_transfer": {arch: float(v) for arch, v in stop.items()}}
RESULTS.mkdir(parents=True, exist_ok=True)
(RESULTS / "03_sharing.json").write_text(json.dumps(headline, indent=1))

# %% [markdown]
# ## Reading of the measured numbers
#
# Every sentence below is computed from this run. A difference is called
# *beyond the seed spread* when every seed lies on the same side and the mean
# exceeds two standard errors; with one seed the spread is not measured. A run
# counts as *failed* on a task when its test AUC stays below 0.65 (near chance)
# while the same task reaches at least 0.85 in another run of this notebook.

# %%
def spread_verdict(per_seed):
    per_seed = np.asarray(per_seed, dtype=float)
    if len(per_seed) < 2:
        return "one seed, spread not measured"
    stderr = per_seed.std(ddof=1) / np.sqrt(len(per_seed))
    same_side = np.all(per_seed > 0) or np.all(per_seed < 0)
    return "beyond the seed spread" if same_side and abs(per_seed.mean()) > 2 * stderr else "within the seed spread"


def seed_means(runs, names):
    return np.array([np.mean([r[n] for n in names]) for r in runs])


ranking = sorted(street, key=lambda a: -seed_means(street[a], OBJECT_TASKS).mean())
print("Street scenes, mean test AUC over the four tasks: " + ", ".join(
    f"{a} {mean_std(seed_means(street[a], OBJECT_TASKS))}" for a in ranking) + ".")
first, second = ranking[0], ranking[1]
d = seed_means(street[first], OBJECT_TASKS) - seed_means(street[second], OBJECT_TASKS)
print(f"{first} was ahead of {second} by {d.mean():.3f} ({spread_verdict(d)}).")
learnable = {n: max(r[n] for runs in street.values() for r in runs) >= 0.85 for n in OBJECT_TASKS}
for arch, runs in street.items():
    failed = [(n, s) for n in OBJECT_TASKS if learnable[n] for r, s in zip(runs, SEEDS) if r[n] < 0.65]
    if failed:
        print(f"  {arch}: near chance on " + ", ".join(f"{n} (seed {s})" for n, s in failed) + ".")
never = [n for n in OBJECT_TASKS if not learnable[n]]
if never:
    print(f"No run reached AUC 0.85 on {', '.join(never)} at this budget.")
gates = street_models["MMoE"].sharing_weights(x_test)["gates"]
top = gates.argmax(axis=1)
used = ", ".join(f"{n} → {e + 1}" for n, e in zip(OBJECT_TASKS, top))
print(f"MMoE (first seed): the tasks' most used experts are {used} "
      f"(gate weight {gates.max(axis=1).min():.2f}–{gates.max(axis=1).max():.2f}); "
      + ("all four read mostly the same expert." if len(set(top)) == 1 else f"{len(set(top))} different experts."))
alphas = street_models["cross-stitch"].sharing_weights()["cross_stitch"]
diag = np.concatenate([np.diag(a) for a in alphas])
off = np.concatenate([a[~np.eye(len(a), dtype=bool)] for a in alphas])
print(f"Cross-stitch (first seed): diagonal {diag.min():.2f}–{diag.max():.2f}, off-diagonal up to "
      f"{np.abs(off).max():.2f} — the towers {'stayed nearly separate' if np.abs(off).max() < 0.3 else 'mixed'}.")

print()
print(f"Unrelated pair: alone, stop sign {mean_std(single['stop_sign'])}, parity {mean_std(single['parity'])}.")
for arch in pair:
    t_stop = transfer[arch]["stop_sign"]
    n_failed = sum(r["stop_sign"] < 0.65 for r in pair[arch])
    print(f"  {arch:<13} stop-sign transfer {np.mean(t_stop):+.3f} ({spread_verdict(t_stop)}); "
          f"stop sign near chance in {n_failed} of {len(SEEDS)} run(s); parity AUC "
          f"{mean_std([r['parity'] for r in pair[arch]])}.")
single_failed = sum(v < 0.65 for v in single["stop_sign"])
negative = [a for a in pair if np.mean(transfer[a]["stop_sign"]) < 0]
print(f"The stop sign alone failed in {single_failed} of {len(SEEDS)} run(s). Mean stop-sign transfer was "
      f"negative for {len(negative)} of {len(pair)} architectures"
      + (f" ({', '.join(negative)})." if negative else "."))

# %% [markdown]
# **What the design of this comparison can and cannot show.** Every
# architecture here shares the whole convolutional trunk; the sharing layers
# only decide how its 64 features are divided among the tasks. If the trunk
# does not develop a task's features, no gate or tower on top can repair that,
# so this notebook compares what the sharing layers do on top of one shared
# trunk, not fully separate towers. Runs differ only in their seed (initial
# weights, identical across architectures, and shuffling order).
