"""Writes notebooks/03_sharing.ipynb from the cells below."""

from pathlib import Path

import nbformat as nbf

cells = []
md = lambda s: cells.append(nbf.v4.new_markdown_cell(s.strip()))  # noqa: E731
code = lambda s: cells.append(nbf.v4.new_code_cell(s.strip()))  # noqa: E731

md(r"""
# Sharing architectures: hard, soft, cross-stitch, MMoE, PLE

A multi-task network must decide **what the tasks share**. This notebook
trains the five architectures `keras_mtl` offers on the same small CNN trunk
and compares them on two problems:

1. **Street scenes** — four related object tasks (pedestrian, car, stop sign,
   traffic light) that share low-level features.
2. **A deliberately unrelated pair** — stop sign *vs.* the parity of a hidden
   number drawn into the image corner, a task that carries no information
   about the scene. Here sharing can only cost, and we measure whether it does
   (**negative transfer**) by comparing with single-task networks.

For every architecture we report the parameter count and each task's test AUC
over 3 seeds (mean ± standard deviation), and we look inside the trained
models: which experts each task's gate uses (MMoE, PLE) and how much the
cross-stitch units mix the towers.

Set `KERAS_MTL_NOTEBOOK_SIZE=small` for a quick run (the test suite does: 1
seed, 1,000 training images, 3 epochs — enough to check that the tasks are
learnable, too little to compare architectures); the default `full` size is
what the text refers to. `KERAS_MTL_NOTEBOOK_SEED=n` starts the training seeds
at n instead of 0.
""")

code(r"""
import json
import os
import time

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import keras_mtl as kmtl
from keras_mtl import plotting
from keras_mtl.datasets import OBJECT_TASKS, generate_street_scenes

SIZE = os.environ.get("KERAS_MTL_NOTEBOOK_SIZE", "full")
N_TRAIN, N_TEST, EPOCHS, SEEDS = {"full": (3000, 1500, 8, (0, 1, 2)),
                                  "small": (1000, 500, 3, (0,))}[SIZE]
SEED = int(os.environ.get("KERAS_MTL_NOTEBOOK_SEED", "0"))   # first seed; the data stay fixed
SEEDS = tuple(SEED + s for s in SEEDS)
IMAGE_SIZE = 48
# Building dozens of models in one process makes TensorFlow warn that it
# retraces functions; each new model needs its own trace, so that is expected.
tf.get_logger().setLevel("ERROR")
started = time.perf_counter()
print(f"size={SIZE}: {N_TRAIN} training / {N_TEST} test images of {IMAGE_SIZE}×{IMAGE_SIZE}, "
      f"{EPOCHS} epochs, seeds {SEEDS}")
""")

md(r"""
## The five architectures

All five start from the same trunk (three 3×3 convolutions with max-pooling,
global max-pooling, `Dense(64)`) and end in one logistic head per task. They
differ in what sits between the trunk's features $h(x)$ and the heads:

- **hard sharing** (`sharing=None`): one shared `Dense(64)` layer for all
  tasks, then the heads.
- **soft sharing** (`kmtl.sharing.SoftSharing()`): a `Dense(64)` tower per
  task; the penalty $\Omega=\lambda\sum_t\lVert W_t-\bar W\rVert^2$
  ($\lambda=10^{-3}$, added to the loss) pulls the towers' kernels together.
- **cross-stitch** (`kmtl.sharing.CrossStitch()`): two-layer towers per task;
  after each layer a learned $T\times T$ matrix $\alpha$ mixes them,
  $\tilde x_t=\sum_s\alpha_{ts}x_s$ ($\alpha$ starts at 0.9 on the diagonal).
- **MMoE** (`kmtl.sharing.MMoE()`): 4 shared experts; task $t$ mixes them with
  its own softmax gate, $f_t(x)=\sum_e g_t(x)_e\,\mathrm{expert}_e(x)$.
- **PLE** (`kmtl.sharing.PLE()`): 2 levels, each with 2 shared experts and 1
  expert per task; each task's gate mixes its own and the shared experts, a
  shared gate feeds the next level's shared experts.

Every sharing layer is used with its defaults (no tuning for this notebook).
Hard sharing gets one extra shared `Dense(64)` so that every architecture has
at least one hidden layer between trunk and heads; the single-task baselines
are the hard-sharing network trained on one task.
""")

code(r"""
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
""")

md(r"""
## The data

Street scenes come from `generate_street_scenes` (48×48 pixels here, to keep
the full run within about a quarter of an hour on two CPU cores). Every label
is known in this notebook, so the comparison is about the architectures
alone.

**The unrelated task.** Into a copy of every image we draw a hidden number
$n\in\{0,\dots,7\}$, chosen uniformly and independently of the scene, as
three squares in the top-left corner (white = bit set, black = bit clear, on a
grey strip); the label is the parity of $n$ (odd = 1). This is honest in two
ways: the task is learnable from the pixels (the single-task baseline below
shows how well), and it is unrelated to the street by construction — $n$ comes
from its own random generator, so it carries no information about the stop
sign and the stop sign none about it. Whatever the pair's stop-sign AUC loses
or gains against the single-task network is therefore caused by sharing
weights, not by shared information. The strip covers 5×13 of the 48×48
pixels (sky, almost always); the stop-sign baselines are trained on the same
marked images.
""")

code(r"""
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
""")

md(r"""
## Training and evaluation

Each run trains for the same number of epochs with Adam (learning rate
2·10⁻³, batch 64) and reports test AUC per task. Seeds change the weight
initialisation and the shuffling order; the data are the same for every
seed.
""")

code(r"""
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
""")

md(r"""
## 1. Street scenes: four related tasks
""")

code(r"""
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
""")

md(r"""
### What the sharing layers learned (street scenes, first seed)

`model.sharing_weights(x)` returns the mean gate weight of every task on every
expert (MMoE, PLE — PLE's last level, the task's own expert first, then the
shared ones) and the cross-stitch matrices $\alpha$; `plotting.plot_sharing`
draws them. A row of the expert-usage map is one task's average mixture; rows
that look alike mean the tasks read the same experts.
""")

code(r"""
for arch in ("MMoE", "PLE", "cross-stitch"):
    fig = plotting.plot_sharing(street_models[arch].sharing_weights(x_test), OBJECT_TASKS)
    fig.suptitle(f"{arch}, street scenes", y=1.02)
    plt.show()
penalty = street_models["soft"].sharing_weights()["penalty"]
print(f"soft sharing: penalty Ω = λ Σ‖W_t − W̄‖² after training = {penalty:.4f}")
""")

md(r"""
## 2. An unrelated pair: stop sign vs. hidden-number parity

First the single-task networks (the same trunk plus hidden layer, one task
each), then all five architectures on the pair. The *transfer* of a task is
its AUC in the pair minus its single-task AUC, per seed: negative numbers are
negative transfer.
""")

code(r"""
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
""")

code(r"""
for arch in ("MMoE", "PLE", "cross-stitch"):
    fig = plotting.plot_sharing(pair_models[arch].sharing_weights(x_test_pair), PAIR)
    fig.suptitle(f"{arch}, stop sign vs. parity", y=1.02)
    plt.show()
""")

md(r"""
## What we measured

The cell below states this run's numbers in words; the conclusions after it
refer to the full-size run saved with this notebook.
""")

code(r"""
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
with open("headline.json", "w") as f:
    json.dump(headline, f, indent=1)
""")

md(r"""
## Conclusions (full run: 3,000 training images, 8 epochs, seeds 0–2)

**Street scenes.** Mean test AUC over the four tasks: hard 0.823 ± 0.026,
MMoE 0.796 ± 0.048, soft 0.782 ± 0.037, cross-stitch 0.741 ± 0.006, PLE
0.741 ± 0.020. No soft or expert architecture beat hard sharing on the mean,
and the extra parameters did not pay: PLE, with 3.3× the parameters of hard
sharing, tied for last place. No architecture learned *pedestrian* at this
budget (AUC 0.50–0.56 in every run); the car was learned by all (mean
0.947–0.966). The stop sign and the traffic light decided the ranking. Hard
sharing learned the stop sign in every seed (0.930–0.935) and the traffic
light in two (0.941, 0.897; 0.745 with seed 1). The four other architectures
learned the stop sign with seeds 0 and 2 (0.94) and lost it with seed 1
(0.50–0.55) — the seed whose traffic light they all learned (0.95); with
seeds 0 and 2, cross-stitch and PLE lost the traffic light instead
(0.51–0.61). In 8 of these 12 runs one of the two objects stayed at or near
chance (≤ 0.61), never both; in hard sharing's 3 runs, neither. A seed fixes
the trunk's initial weights, identical across architectures, and the
shuffling order. The maps (first seed) show MMoE sending all four tasks
mostly through one expert (expert 3, gate weight 0.72–0.91), so its gates did
not divide the experts among the tasks; PLE's tasks leaning on their own
expert (0.73–0.85); and the cross-stitch matrices staying close to the
identity (diagonal 0.79–1.10, off-diagonal ≤ 0.21): the towers stayed nearly
separate.

**Unrelated pair.** Alone, the stop-sign network reached 0.945 ± 0.002 and
the parity network 1.000 in every seed. Paired with parity, the stop sign
stayed at chance in 4 of 15 runs (hard: seed 0, AUC 0.49; soft,
cross-stitch, PLE: seed 1, 0.49–0.50) and was learned only partly in 2 more
(hard 0.78 and MMoE 0.73, both seed 1), against 0 failures in 3 single-task
runs. The mean stop-sign transfer is therefore negative for every
architecture: MMoE −0.082 ± 0.121, cross-stitch −0.153 ± 0.258, soft
−0.159 ± 0.259, PLE −0.166 ± 0.253, hard −0.212 ± 0.224. In the 9 runs
where the stop sign was learned (AUC ≥ 0.91), the cost was small: from
−0.034 (PLE, seed 2) to +0.001 (cross-stitch, seed 0). Parity was learned
perfectly in every run except cross-stitch with seed 0 (AUC 0.50), the only
failure of the easy task — so the pair's cross-stitch map above shows a
model whose parity head never learned. In the first seed MMoE's two gates
read the same two experts (stop sign 0.40 and 0.52 on experts 1 and 4,
parity 0.59 and 0.35), so the unrelated tasks were not routed apart; PLE's
two tasks each put 0.63–0.69 on their own expert and a third on the shared
one.

**Where this disagrees with the usual claims.** Soft sharing, cross-stitch
units and gated experts are proposed to protect tasks from unrelated
neighbours and to let related tasks share without interfering. Here none of
them protected the stop sign in every seed, and on the four related street
tasks they were *less* reliable than hard sharing, not more. MMoE had the
smallest mean loss on the pair and never fell to chance, but its transfer
(−0.082 ± 0.121) cannot be told apart from the others' (−0.15 to −0.21,
± 0.22–0.26) with three seeds, and we do not rank the architectures by it.
A likely reason, which this notebook does not test further, is the setup:
every architecture shares the whole convolutional trunk, and the sharing
layers only decide how its 64 features are divided among the tasks. If the
trunk does not develop a task's features early, no gate or tower on top can
repair that; the per-task towers and gates may even make it easier for one
task to take over the trunk (the stop-sign/traffic-light pattern above), but
we have not measured that. What the numbers do support: on this budget,
hard sharing was the best and steadiest choice for the related street
tasks, training an unrelated task alongside a hard one made the hard one
unreliable under every sharing scheme, and for the stop sign the single-task
network was the only dependable choice. Longer training might let the
failed runs recover; we did not test it.
""")

nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"}})
out = Path(__file__).resolve().parents[1] / "03_sharing.ipynb"
nbf.write(nb, out)
print("wrote", out)
