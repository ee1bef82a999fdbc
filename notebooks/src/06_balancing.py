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
# # Task balancing: when one task drowns out another
#
# Two tasks share a small trunk:
#
# * **`price`** — a regression target on a large scale (standard deviation ≈ 100),
#   whose squared error is in the thousands at the start of training;
# * **`defect`** — a binary task whose logistic loss is below 1.
#
# keras_mtl standardises regression targets by default (`kmtl.Task(...,
# standardize=True)`), which removes this imbalance; here `price` is learnt in its
# own units (`standardize=False`) to show what happens when a task's loss is on a
# much larger scale — as with a target you standardise differently, or a loss of
# another kind.
#
# With equal loss weights the shared gradient is almost entirely `price`'s:
# the easy-to-reduce, large-scale task dominates (*task imbalance*), and the
# small trunk is spent on it. This notebook trains the same network with each
# balancing strategy of `kmtl.balancing`, over several seeds, and reports each
# task's test metric and the weights the adaptive strategies chose over time.
#
# Set `KERAS_MTL_NOTEBOOK_SIZE=small` for a quick run; every result sentence is
# computed from the run's own numbers.
# `KERAS_MTL_NOTEBOOK_SEED=n` starts the training seeds at n instead of 0.

# %%
import json
import os
import time
from pathlib import Path

import keras
import keras_mtl as kmtl
import numpy as np
from keras_mtl import balancing, plotting

SIZE = os.environ.get("KERAS_MTL_NOTEBOOK_SIZE", "full")
N_TRAIN, EPOCHS, SEEDS = {"full": (6000, 15, (0, 1, 2)), "small": (3000, 10, (0,))}[SIZE]
RESULTS = Path(os.environ.get("KERAS_MTL_NOTEBOOK_RESULTS", "results"))   # where the headline JSON goes
SEED = int(os.environ.get("KERAS_MTL_NOTEBOOK_SEED", "0"))   # first seed; the data stay fixed
SEEDS = tuple(SEED + s for s in SEEDS)
N_TEST = 2000
rng = np.random.default_rng(42)
W = rng.normal(size=(16, 4))


def make(n, seed):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, 16)).astype("float32")
    h = x @ W
    price = (30 * h[:, 0] + 3 * r.normal(size=n)).astype("float32")
    # defect needs a non-linear combination the trunk must learn
    defect = ((h[:, 1] * h[:, 2] + np.sin(2 * h[:, 3])) > 0).astype("float32")
    defect[r.random(n) < 0.3] = np.nan        # 30 % of defect labels missing
    return x, {"price": price, "defect": defect}


x_train, y_train = make(N_TRAIN, 1)
x_test, y_test = make(N_TEST, 2)
# Raw targets on purpose: keras_mtl standardises regression targets by default, which would
# remove the imbalance this notebook studies.
tasks = [kmtl.Task("price", kind="regression", standardize=False), kmtl.Task("defect")]
print(f"price std {np.std(y_train['price']):.1f}; defect positives {np.nanmean(y_train['defect']):.0%}, "
      f"labelled {np.mean(~np.isnan(y_train['defect'])):.0%}")

# %%
STRATEGIES = {
    "FixedWeights": balancing.FixedWeights,
    "UncertaintyWeighting": balancing.UncertaintyWeighting,
    "DWA": balancing.DWA,
    "GradNorm": balancing.GradNorm,
    "PCGrad": balancing.PCGrad,
    "RandomLossWeighting": balancing.RandomLossWeighting,
}


def run(name, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16,), name="x")
    features = keras.layers.Dense(12, activation="relu")(inputs)
    model = kmtl.MultiTaskModel(inputs, features, tasks)
    model.compile(keras.optimizers.Adam(3e-3), balancing=STRATEGIES[name]())
    train = kmtl.data.from_arrays(x_train, y_train, tasks, 64, shuffle=True, seed=seed)
    started = time.perf_counter()
    history = model.fit(train, epochs=EPOCHS, verbose=0)
    seconds = (time.perf_counter() - started) / EPOCHS
    result = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    return history, result, seconds


results, histories = {}, {}
for name in STRATEGIES:
    for seed in SEEDS:
        history, result, seconds = run(name, seed)
        results.setdefault(name, []).append((result["defect_auc"], result["price_mae"], seconds))
        histories.setdefault(name, history)
    print(f"{name:<22} done")

# %% [markdown]
# ## Results
#
# Test AUC of `defect` (higher is better) and test MAE of `price` (lower is
# better), mean ± standard deviation over seeds, and seconds per epoch.

# %%
print(f"{'strategy':<22}{'defect AUC':>16}{'price MAE':>16}{'s/epoch':>9}")
summary = {}
for name, runs in results.items():
    auc, mae, sec = (np.array(v) for v in zip(*runs))
    summary[name] = (auc.mean(), auc.std(), mae.mean(), mae.std(), sec.mean())
    print(f"{name:<22}{auc.mean():>9.3f} ± {auc.std():.3f}{mae.mean():>9.2f} ± {mae.std():.2f}{sec.mean():>9.2f}")

# %%
for name in ("UncertaintyWeighting", "DWA", "GradNorm"):
    fig = plotting.plot_task_weights(histories[name])
    fig.axes[0].set_title(f"{name}: task weights during training")

# %% [markdown]
# ## What we measured
#
# The cell below compares every strategy with fixed, equal weights on this
# run's numbers and states the outcome in words.

# %%
base_auc, _, base_mae, _, _ = summary["FixedWeights"]
better = [n for n, s in summary.items() if n != "FixedWeights" and s[0] > base_auc + s[1] + summary["FixedWeights"][1]]
print(f"Equal weights: defect AUC {base_auc:.3f}, price MAE {base_mae:.2f}.")
for name, (auc, _, mae, _, _) in summary.items():
    if name == "FixedWeights":
        continue
    print(f"{name}: defect AUC {auc - base_auc:+.3f}, price MAE {mae - base_mae:+.2f} vs equal weights.")
if better:
    print("Beyond the seed spread, these strategies improved the drowned-out task: " + ", ".join(better) + ".")
else:
    print("No strategy improved the drowned-out task beyond the seed spread in this run.")

# The headline numbers of this run, machine-readable (tests/test_notebooks.py checks them).
headline = {"size": SIZE, "seeds": list(SEEDS),
            "defect_auc": {n: float(s[0]) for n, s in summary.items()},
            "price_mae": {n: float(s[2]) for n, s in summary.items()},
            "seconds_per_epoch": {n: float(s[4]) for n, s in summary.items()}}
RESULTS.mkdir(parents=True, exist_ok=True)
(RESULTS / "06_balancing.json").write_text(json.dumps(headline, indent=1))

# %% [markdown]
# ## Reading of the measured numbers
#
# Computed from this run: for each strategy, its change in defect AUC and price
# MAE against equal weights, per seed, and whether the change is beyond the
# seed spread (every seed on the same side, mean beyond two standard errors).

# %%
def spread_verdict(per_seed):
    per_seed = np.asarray(per_seed, dtype=float)
    if len(per_seed) < 2:
        return "one seed, spread not measured"
    stderr = per_seed.std(ddof=1) / np.sqrt(len(per_seed))
    same_side = np.all(per_seed > 0) or np.all(per_seed < 0)
    return "beyond the seed spread" if same_side and abs(per_seed.mean()) > 2 * stderr else "within the seed spread"


base = np.array(results["FixedWeights"])
print(f"Equal weights: defect AUC {base[:, 0].mean():.3f}"
      + (" — the trunk barely learns the defect task under equal weights." if base[:, 0].mean() < 0.6 else ".")
      + f" Price MAE {base[:, 1].mean():.2f}.")
for name in STRATEGIES:
    if name == "FixedWeights":
        continue
    runs = np.array(results[name])
    d_auc, ratio = runs[:, 0] - base[:, 0], runs[:, 1] / base[:, 1]
    print(f"{name}: defect AUC {d_auc.mean():+.3f} ({spread_verdict(d_auc)}); price MAE ×{ratio.mean():.2f} "
          f"({spread_verdict(ratio - 1)}); {runs[:, 2].mean() / base[:, 2].mean():.1f}× the time per epoch.")
