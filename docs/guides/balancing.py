"""
Title: Task weights and balancing strategies
Description: Why regression targets are standardised; fixed weights, adaptive strategies and a KerasTuner search.
"""

# ## Setup
#
# Two tasks share one trunk: `defect`, a yes/no task, and `price`, a
# regression target in dollars. Left in dollars, the two losses would differ
# by orders of magnitude, the commonest way one task drowns out another;
# keras_mtl prevents it by standardising regression targets. This guide runs
# as a script; the test suite runs it with `KERAS_MTL_GUIDE_SIZE=small`.

import os

import keras
import numpy as np

import keras_mtl as kmtl

SMALL = os.environ.get("KERAS_MTL_GUIDE_SIZE") == "small"
NUM_EXAMPLES, EPOCHS = (800, 2) if SMALL else (6000, 15)

rng = np.random.default_rng(0)
x = rng.normal(size=(NUM_EXAMPLES, 16)).astype("float32")
defect = (x[:, 0] - x[:, 1] > 0).astype(float)
price = 500 + 120 * x[:, 2] + 40 * x[:, 0] + 10 * rng.normal(size=NUM_EXAMPLES)
defect[rng.random(NUM_EXAMPLES) < 0.3] = np.nan          # NaN: not labelled
price[rng.random(NUM_EXAMPLES) < 0.3] = np.nan
split = int(0.8 * NUM_EXAMPLES)

# ## Regression targets are standardised for you
#
# The squared error of a price in dollars is in the tens of thousands, the
# logistic loss of `defect` below one. So a regression task learns its
# target standardised, `(price − mean) / std`, with the mean and standard
# deviation of the *labelled training* prices, which the model's first `fit`
# computes and keeps; predictions, metrics and saved models stay in dollars.

tasks = [kmtl.Task("defect"), kmtl.Task("price", kind="regression")]


def pipelines(labels):
    train = kmtl.data.from_arrays(x[:split], {k: v[:split] for k, v in labels.items()}, tasks,
                                  batch_size=64, shuffle=True, seed=0)
    val = kmtl.data.from_arrays(x[split:], {k: v[split:] for k, v in labels.items()}, tasks, batch_size=256)
    return train, val


def build(standardize_targets=True):
    inputs = keras.Input((16,), name="x")
    features = keras.layers.Dense(32, activation="relu")(inputs)
    return kmtl.MultiTaskModel(inputs, features, tasks, standardize_targets=standardize_targets)


train, val = pipelines({"defect": defect, "price": price})

# ## Fixed weights
#
# `FixedWeights`, the default, trains `Σ loss_weight × task loss`. Start with
# equal weights; raise the weight of the task that lags, judged on its own
# validation metric. `compile(loss_weights=...)` overrides the tasks'
# weights without rebuilding them.

model = build()
model.compile(optimizer=keras.optimizers.Adam(3e-3), loss_weights={"defect": 2.0})
model.fit(train, validation_data=val, epochs=EPOCHS, verbose=0)
fixed = model.evaluate(val, return_dict=True, verbose=0)
print(f"fixed weights: defect AUC {fixed['defect_auc']:.3f}, price MAE {fixed['price_mae']:.1f} dollars")

# The statistics the first `fit` set, and predictions in dollars:

mean, std = model.target_statistics()["price"]
print(f"price: mean {mean:.1f}, std {std:.1f} (labelled training prices: "
      f"{np.nanmean(price[:split]):.1f}, {np.nanstd(price[:split]):.1f})")
print("price in dollars:", np.round(model.predict(x[:3], verbose=0)["price"][:, 0], 1))

# ## An adaptive strategy
#
# Pass a strategy object to `compile`. `UncertaintyWeighting` learns one
# weight per task; `GradNorm`, `PCGrad`, `MGDA` and the other gradient
# methods look at every task's gradient (each step costs more: see
# [task balancing](../topics/balancing.md)).
#
# What to watch: with an adaptive strategy `loss` is a sum whose weights
# change every step (and `UncertaintyWeighting` adds a term of its own), so
# monitor `val_mean_task_loss` (the unweighted mean of the task losses) or
# each task's *validation metric* instead of `val_loss`, each task's
# unweighted `<task>_loss`, and the weights the strategy logs as
# `weight_<task>`.

model = build()
model.compile(optimizer=keras.optimizers.Adam(3e-3), balancing=kmtl.balancing.UncertaintyWeighting())
history = model.fit(train, validation_data=val, epochs=EPOCHS, verbose=0, callbacks=[
    keras.callbacks.EarlyStopping("val_defect_auc", mode="max", patience=3, restore_best_weights=True),
])
for name in ("weight_defect", "weight_price", "defect_loss", "price_loss", "val_defect_auc"):
    print(f"{name:>15}:", np.round(history.history[name], 3).tolist())
adaptive = model.evaluate(val, return_dict=True, verbose=0)
print(f"uncertainty weighting: defect AUC {adaptive['defect_auc']:.3f}, "
      f"price MAE {adaptive['price_mae']:.1f} dollars")

# `keras_mtl.plotting.plot_task_weights(history)` draws the weights per epoch. A
# weight that collapses towards zero means the strategy has given up on that
# task.

import keras_mtl.plotting  # noqa: E402  (imported on demand: it loads matplotlib)

figure = keras_mtl.plotting.plot_task_weights(history)

# ## Searching the weights and the strategy with KerasTuner
#
# To choose the weights rather than guess them, let
# [KerasTuner](https://keras.io/keras_tuner/) build a model per trial with a
# learning rate, a weight for `defect` and a strategy drawn from the search
# space. The objective must not be `val_loss`: its weights are what is being
# searched, so it would favour whatever makes the weighted sum small.
# `val_mean_task_loss`, the unweighted mean of the task losses (each on its
# own scale), means the same in every trial; a task's validation metric
# (`keras_tuner.Objective("val_defect_auc", "max")`) is the other choice,
# when one task matters most.

import keras_tuner  # noqa: E402

STRATEGIES = {"fixed": kmtl.balancing.FixedWeights, "uncertainty": kmtl.balancing.UncertaintyWeighting,
              "dwa": kmtl.balancing.DWA}


def build_trial(hp):
    model = build()
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Float("learning_rate", 1e-3, 1e-2, sampling="log")),
        loss_weights={"defect": hp.Float("weight_defect", 0.25, 4.0, sampling="log")},
        balancing=STRATEGIES[hp.Choice("strategy", list(STRATEGIES))](),
    )
    return model


tuner = keras_tuner.RandomSearch(build_trial, objective=keras_tuner.Objective("val_mean_task_loss", "min"),
                                 max_trials=2 if SMALL else 12, seed=0, directory="tuning",
                                 project_name="task_weights", overwrite=True)
tuner.search(train, validation_data=val, epochs=EPOCHS, verbose=0)
best_hp = tuner.get_best_hyperparameters()[0]
best_score = tuner.oracle.get_best_trials(1)[0].score
print(f"best of {len(tuner.oracle.trials)} trials: {best_hp.values}, val_mean_task_loss {best_score:.4f}")

# KerasTuner keeps each trial's best epoch; the model it rebuilds from those
# weights, target statistics included, scores what the search recorded. (Keras
# warns that it skips the saved optimizer's variables: the rebuilt model has
# not trained yet, and only its weights are needed here.) To train on, build
# `build_trial(best_hp)` and `fit` it on all the training data.

tuned = tuner.get_best_models(1)[0].evaluate(val, return_dict=True, verbose=0)
assert abs(tuned["mean_task_loss"] - best_score) < 1e-4, (tuned["mean_task_loss"], best_score)
print(f"tuned model: defect AUC {tuned['defect_auc']:.3f}, price MAE {tuned['price_mae']:.1f} dollars")

# ## Without the standardisation
#
# The same model and weights learning the price in dollars
# (`standardize_targets=False`, as keras_mtl 0.1.0 did): the price's loss is
# thousands of times the defect's, so the shared gradient is almost all the
# price's, and `fit` warns after its first step. What that costs the defect
# task depends on the data and the length of training: compare its AUC with
# the standardised run's.

model = build(standardize_targets=False)
model.compile(optimizer=keras.optimizers.Adam(3e-3), loss_weights={"defect": 2.0})
model.fit(train, epochs=EPOCHS, verbose=0)
raw = model.evaluate(val, return_dict=True, verbose=0)
change = "lower" if raw["defect_auc"] < fixed["defect_auc"] else "not lower"
print(f"raw dollars: price loss {raw['price_loss']:.1f} against defect loss {raw['defect_loss']:.3f}; "
      f"defect AUC {raw['defect_auc']:.3f}, {change} than with standardised targets ({fixed['defect_auc']:.3f})")
