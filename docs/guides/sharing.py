"""
Title: Sharing architectures
Description: Hard sharing, soft sharing, cross-stitch units, MMoE and PLE on the same tasks:
  how to switch, what each one costs in parameters, and how to read what it learned.
"""

# ## Setup
#
# By default every task reads the same features: one trunk, one head per
# task (*hard parameter sharing*). When tasks are less related, it can help
# to give each task features of its own while still sharing some. The
# sharing layers of `kmtl.sharing` sit between the trunk and the heads and
# turn the trunk's features `(batch, d)` into per-task features
# `(batch, tasks, units)`:
#
# | `sharing=` | what each task gets | from |
# |---|---|---|
# | `None` (hard sharing) | the trunk's features | Caruana 1997 |
# | `SoftSharing` | a tower of its own; an L2 penalty pulls the towers' weights together | Duong et al. 2015 |
# | `CrossStitch` | a tower of its own; learned units mix the towers after each layer | Misra et al. 2016 |
# | `MMoE` | its own softmax gate over shared experts | Ma et al. 2018 |
# | `PLE` | experts of its own and shared ones, with gates, in levels | Tang et al. 2020 |
#
# The guide trains all five on the same data. It runs as a script; the test
# suite runs it with `KERAS_MTL_GUIDE_SIZE=small`, at which the differences
# between the architectures are mostly noise: read the full-size numbers.

import os
import tempfile

import keras
import numpy as np

import keras_mtl as kmtl

SMALL = os.environ.get("KERAS_MTL_GUIDE_SIZE") == "small"
NUM_EXAMPLES, EPOCHS = (1000, 2) if SMALL else (8000, 10)

# ## Tasks that are partly related
#
# Three yes/no tasks on 24 features: `car` and `truck` depend on the same
# direction of the inputs (plus a little of their own), `weather_rain` on
# another one, unrelated to the first. One shared set of features has to
# serve both groups; the sharing layers can separate them.

rng = np.random.default_rng(0)
x = rng.normal(size=(NUM_EXAMPLES, 24)).astype("float32")
vehicle, rain, own = rng.normal(size=(3, 24))


def yes_no(direction, noise=0.5):
    score = np.tanh(x @ direction / 3) + noise * rng.normal(size=NUM_EXAMPLES)
    labels = (score > 0).astype(float)
    labels[rng.random(NUM_EXAMPLES) < 0.3] = np.nan      # not labelled
    return labels


labels = {"car": yes_no(vehicle), "truck": yes_no(vehicle + 0.5 * own), "weather_rain": yes_no(rain)}
tasks = [kmtl.Task(name) for name in labels]
split = int(0.8 * NUM_EXAMPLES)
train = kmtl.data.from_arrays(x[:split], {k: v[:split] for k, v in labels.items()}, tasks,
                              batch_size=64, shuffle=True, seed=0)
val = kmtl.data.from_arrays(x[split:], {k: v[split:] for k, v in labels.items()}, tasks, batch_size=512)

# ## Switching architecture is one argument
#
# The trunk and the tasks stay the same; `sharing=` picks the architecture.
# A sharing layer is used by one model only: create a new one per model.
# Towers and experts add parameters after the trunk; to compare at a similar
# budget, the hard-sharing model gets one more shared layer instead.


def build(sharing=None, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((24,), name="scene")
    features = keras.layers.Dense(32, activation="relu", name="trunk")(inputs)
    if sharing is None:
        features = keras.layers.Dense(48, activation="relu", name="trunk_2")(features)
    model = kmtl.MultiTaskModel(inputs, features, tasks, sharing=sharing)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model


architectures = {
    "hard sharing": lambda: None,
    "SoftSharing": lambda: kmtl.sharing.SoftSharing(units=(16,), strength=1e-3),
    "CrossStitch": lambda: kmtl.sharing.CrossStitch(units=(16,), self_weight=0.9),
    "MMoE": lambda: kmtl.sharing.MMoE(num_experts=4, units=(16,)),
    "PLE": lambda: kmtl.sharing.PLE(num_levels=1, num_shared_experts=2, num_task_experts=1, units=16),
}
models, scores = {}, {}
for name, make in architectures.items():
    model = build(make())
    model.fit(train, epochs=EPOCHS, verbose=0)
    results = model.evaluate(val, return_dict=True, verbose=0)
    models[name] = model
    scores[name] = {task.name: results[f"{task.name}_auc"] for task in tasks}
    print(f"{name:>12}: {model.count_params():>5} parameters; validation AUC "
          + ", ".join(f"{task} {auc:.3f}" for task, auc in scores[name].items()))

# ## Comparing them
#
# One run on one seed says little: compare architectures at a similar
# parameter budget and over several seeds before you conclude anything
# (`kmtl.compare` repeats its single-task against multi-task comparison over
# seeds in the same way).

mean_auc = {name: float(np.mean(list(s.values()))) for name, s in scores.items()}
best = max(mean_auc, key=mean_auc.get)
spread = max(mean_auc.values()) - min(mean_auc.values())
print(f"Best mean validation AUC: {best} ({mean_auc[best]:.3f}); the five lie within {spread:.3f} "
      f"of each other, from {min(models[n].count_params() for n in models)} to "
      f"{max(models[n].count_params() for n in models)} parameters.")

# ## What the architecture learned
#
# `model.sharing_weights(x)` returns what the layer learned as NumPy arrays:
# the mean gate weight of each task on each expert for MMoE and PLE, the
# mixing matrices `α` for CrossStitch, the current penalty for SoftSharing.

gates = models["MMoE"].sharing_weights(x[split:])["gates"]
print("MMoE gates, tasks × experts:")
for task, row in zip(models["MMoE"].task_names, gates):
    print(f"{task:>13}: {[round(float(v), 2) for v in row]}")

# Gates of related tasks should come to look alike, and differ from the
# unrelated task's. Measure it as the distance between gate rows:


def gate_distance(a, b):
    names = models["MMoE"].task_names
    return float(np.abs(gates[names.index(a)] - gates[names.index(b)]).sum())


related, unrelated = gate_distance("car", "truck"), gate_distance("car", "weather_rain")
print(f"gate distance car–truck {related:.3f}, car–weather_rain {unrelated:.3f}: "
      + ("the related tasks use the experts more alike." if related < unrelated
         else "not separated at this training budget."))

alpha = models["CrossStitch"].sharing_weights()["cross_stitch"][0]
print("CrossStitch α (rows: the task that reads; columns: the tower it reads from):")
print(np.round(alpha, 3))
print("SoftSharing penalty:", round(models["SoftSharing"].sharing_weights()["penalty"], 5))

# `kmtl.plotting.plot_sharing(model.sharing_weights(x), model.task_names,
# path="gates.png")` draws the same matrices as heat maps.
#
# ## Everything else works as with hard sharing
#
# A model with a sharing layer is still a `kmtl.MultiTaskModel`: balancing
# strategies, callbacks, `.keras` files and `kmtl.export_saved_model` work
# the same. Strategies that need gradients with respect to shared weights
# (GradNorm, for example) use the sharing layer's shared kernels. Saved and
# reloaded, the MMoE model predicts the same:

with tempfile.TemporaryDirectory() as folder:
    models["MMoE"].save(os.path.join(folder, "mmoe.keras"))
    reloaded = keras.saving.load_model(os.path.join(folder, "mmoe.keras"))
for name, value in reloaded.predict(x[:8], verbose=0).items():
    np.testing.assert_allclose(value, models["MMoE"].predict(x[:8], verbose=0)[name], rtol=1e-6, atol=1e-6)
print(type(reloaded.sharing).__name__, reloaded.sharing.num_experts, "experts, reloaded")

# ## Which one to try
#
# Start with hard sharing: it has the fewest parameters and is the
# baseline every other result must beat. Try MMoE when some tasks seem to
# hurt others (one task improves when trained alone); PLE adds experts that
# belong to one task; cross-stitch units and soft sharing suit few tasks
# (their towers grow with the number of tasks). And before blaming the
# architecture, check the loss scales and weights
# ([task weights and balancing](balancing.py)).
#
# ## Next steps
#
# - [Sharing architectures reference](../topics/sharing.md)
# - [The sharing API](../api/sharing.md): every layer's arguments.
