"""
Title: Task kinds, losses and class weights
Description: Yes/no, several labels, classes, values and counts in one model; class names as labels,
  a loss of your own per task, class weights for a rare class, and a kind of your own.
"""

# ## Setup
#
# Every task has a *kind*: what its labels and outputs mean. The kind sets
# the head's units and activation, the masked loss, the default metrics, the
# labels the pipelines accept and what a SavedModel serves. This guide puts
# the five built-in kinds into one model, changes a task's loss and weights,
# and writes a sixth kind. It runs as a script; the test suite runs it with
# `KERAS_MTL_GUIDE_SIZE=small`.

import os
import tempfile

import keras
import numpy as np

import keras_mtl as kmtl

SMALL = os.environ.get("KERAS_MTL_GUIDE_SIZE") == "small"
NUM_EXAMPLES, EPOCHS = (1500, 3) if SMALL else (8000, 12)

# ## The built-in kinds
#
# | kind | head | labels | loss | metrics |
# |---|---|---|---|---|
# | `"binary"` (the default) | 1 sigmoid unit | 0 or 1 | logistic | AUC, accuracy |
# | `"multilabel"` | 1 sigmoid unit per name in `labels=` | a 0/1 row | logistic, summed | AUC, accuracy |
# | `"categorical"` | softmax over `num_classes` | a class index or a class name | cross-entropy | accuracy |
# | `"regression"` | 1 linear unit | any real number | squared error of the standardised target | MAE |
# | `"poisson"` | 1 unit, `exp` of the logit | a count 0, 1, 2, … | Poisson | MAE, deviance |
#
# A street scene again: is there a car, which of two lights are on, the
# weather, the distance to the car ahead in metres, and how many pedestrians
# there are.

tasks = [
    kmtl.Task("car"),
    kmtl.Task("lights", kind="multilabel", labels=["brake", "indicator"]),
    kmtl.Task("weather", kind="categorical", class_names=["sunny", "rain", "fog"]),
    kmtl.Task("distance", kind="regression"),
    kmtl.Task("pedestrians", kind="poisson"),
]
for task in tasks:
    print(f"{task.name:>12}: {str(task.kind):<11} {task.units} unit(s), {task.activation:<11} "
          f"outputs {task.output_names}, metrics {list(task.kind.default_metrics)}")

# ## Labels, kind by kind
#
# Every kind takes `"?"`, `None` and `NaN` for "not labelled". A categorical
# task with `class_names` takes the names themselves as labels (indices
# work too); a multilabel task takes one row per example, where each entry
# may be missing on its own; a count is a whole number ≥ 0.
#
# The data has two problems the later sections deal with: a sensor glitch
# adds 200 m to about one distance label in ten, and the last task,
# `ambulance`, is rare.

rng = np.random.default_rng(0)
x = rng.normal(size=(NUM_EXAMPLES, 12)).astype("float32")
split = int(0.8 * NUM_EXAMPLES)
weather_names = np.array(["sunny", "rain", "fog"], dtype=object)[np.digitize(x[:, 2], [-0.4, 0.6])]
distance = 30 + 10 * x[:, 5] + rng.normal(size=NUM_EXAMPLES)
labels = {
    "car": (x[:, 0] + x[:, 1] > 0).astype(int).astype(object),
    "lights": (x[:, 3:5] > 0).astype(int).astype(object),
    "weather": weather_names,
    "distance": distance.copy(),
    "pedestrians": rng.poisson(np.exp(0.5 + 0.6 * x[:, 6])).astype(object),
    "ambulance": (x[:, 7] + 0.3 * rng.normal(size=NUM_EXAMPLES) > 1.7).astype(int).astype(object),
}
for name in ("car", "weather", "pedestrians", "ambulance"):
    labels[name][rng.random(NUM_EXAMPLES) < 0.3] = "?"
labels["lights"][rng.random((NUM_EXAMPLES, 2)) < 0.3] = "?"   # each light on its own
labels["distance"][rng.random(NUM_EXAMPLES) < 0.3] = np.nan
glitch = (rng.random(NUM_EXAMPLES) < 0.1) & ~np.isnan(labels["distance"])
glitch[split:] = False                                          # the validation targets stay clean
labels["distance"][glitch] += 200
for name, values in labels.items():
    shown = [v.tolist() if isinstance(v, np.ndarray) else (round(float(v), 1) if isinstance(v, float) else v)
             for v in values[3:6]]
    print(f"{name:>12}: {shown}")

tasks.append(kmtl.Task("ambulance"))

# The pipelines check every label against its task before training starts.
# A class name the task does not know is an error (it would otherwise become
# a silent missing label), and so is a fractional count:

for name, wrong in (("weather", ["rain", "hail"]), ("pedestrians", [2, 1.5])):
    try:
        kmtl.data.validate_labels({name: wrong}, [t for t in tasks if t.name == name])
    except ValueError as error:
        print(error)

# ## Training and predicting


def pipelines(tasks, labels):
    train = kmtl.data.from_arrays(x[:split], {k: v[:split] for k, v in labels.items()}, tasks,
                                  batch_size=64, shuffle=True, seed=0)
    val = kmtl.data.from_arrays(x[split:], {k: v[split:] for k, v in labels.items()}, tasks, batch_size=512)
    return train, val


def build(tasks, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12,), name="scene")
    features = keras.layers.Dense(48, activation="relu")(inputs)
    model = kmtl.MultiTaskModel(inputs, features, tasks)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model


train, val = pipelines(tasks, labels)
model = build(tasks)
model.fit(train, epochs=EPOCHS, verbose=0)
results = model.evaluate(val, return_dict=True, verbose=0)
print({name: round(value, 3) for name, value in results.items() if not name.endswith("_loss")})

# `predict` gives every task's output in its own units: probabilities for
# the sigmoid and softmax heads, metres for the distance, the expected
# number of pedestrians for the count. `predict_labels` turns them into
# labels written the way you wrote them: 0/1 for yes/no units (at a
# threshold of 0.5), the class *name* of a categorical task with
# `class_names`, values for the others.

outputs = model.predict(x[:3], verbose=0)
print({name: [round(float(v), 2) for v in value[0]] for name, value in outputs.items()})
predicted = model.predict_labels(x[:3], verbose=0)
print({name: value.astype(float).round(1).tolist() if value.dtype.kind == "f" else value.tolist()
       for name, value in predicted.items()})
assert set(predicted["weather"]) <= {"sunny", "rain", "fog"}
assert set(np.unique(predicted["lights"])) <= {0, 1}

# A regression target is learned standardised: the model keeps the mean
# and standard deviation of the labelled training targets and speaks metres
# at `predict`, in its metrics and in serving. The glitches pulled both
# statistics up:

mean_m, std_m = model.target_statistics()["distance"]
clean = distance[:split][~np.isnan(labels["distance"][:split].astype(float))]
print(f"distance: mean {mean_m:.1f} m, std {std_m:.1f} m (without the glitches: {clean.mean():.1f} m, "
      f"{clean.std():.1f} m)")

# ## A kind of your own
#
# A kind is a subclass of `kmtl.kinds.Kind` that sets a `name` and overrides
# what differs. Here: a *fraction* in [0, 1], such as the share of the sky
# covered by cloud, with a sigmoid output and the squared error on it.
# `entries(y_true, logits)` returns the masked loss of every entry and the
# mask; `kmtl.missing.labelled` tells which entries are labelled. The
# `label_domain` makes the pipelines refuse a share of 1.5 (`domain_hint`
# says what is expected), and registering the class with Keras lets a
# `.keras` file reload it.


@keras.saving.register_keras_serializable(package="street")
class Fraction(kmtl.kinds.Kind):
    """A share in [0, 1]: a sigmoid unit, the squared error, missing as NaN."""

    name = "fraction"
    activation = "sigmoid"
    label_domain = kmtl.kinds.LabelDomain(low=0.0, high=1.0)
    metric_classes = {"mae": keras.metrics.MeanAbsoluteError}
    default_metrics = ("mae",)

    def domain_hint(self, task, values):
        return "Fraction labels are shares between 0 and 1"

    def entries(self, y_true, logits):
        y_true = keras.ops.reshape(keras.ops.cast(y_true, logits.dtype), keras.ops.shape(logits))
        mask = kmtl.missing.labelled(y_true, class_labels=False)
        y = keras.ops.where(mask, y_true, 0.0)        # a safe value where the label is missing
        mask = keras.ops.cast(mask, logits.dtype)
        return keras.ops.square(keras.ops.sigmoid(logits) - y) * mask, mask


cloud = 1 / (1 + np.exp(-2 * x[:, 8]))
cloud[rng.random(NUM_EXAMPLES) < 0.3] = np.nan
try:
    kmtl.data.validate_labels({"cloud": [0.2, 1.5]}, [kmtl.Task("cloud", kind=Fraction())])
except ValueError as error:
    print(error)

# The `cloud` task joins the second model below.
#
# ## A loss of your own for one task
#
# `Task(loss=...)` replaces the kind's loss with any *elementwise* Keras loss
# (one value per example and unit) or a function of `(y_true, y_pred)`. It
# is masked like the default: a missing label adds nothing to it or its
# gradient. It receives the outputs in user units, or the logits if it has
# `from_logits=True`. A regression task's own loss acts on the standardised
# target, so `Huber(delta=1.0)` switches from squared to absolute error at
# one standard deviation. Two common choices:
#
# - `keras.losses.Huber()` for a regression target with outliers, such as
#   the glitched distances;
# - `keras.losses.BinaryFocalCrossentropy(gamma=2.0, from_logits=True)` for a
#   yes/no task where most examples are easy.
#
# ## Class weights for a rare class
#
# Keras's `fit(class_weight=...)` is refused for models with several
# outputs; in keras_mtl class weights are a task option, for tasks whose
# labels are classes. Each labelled entry's loss is multiplied by its
# class's weight. `kmtl.data.balanced_class_weight` computes
# `n / (K · n_c)` over the labelled entries, so that each class weighs the
# same in the loss.

weights = kmtl.data.balanced_class_weight(labels["ambulance"][:split], kmtl.Task("ambulance"))
share = np.mean(labels["ambulance"][:split][labels["ambulance"][:split] != "?"].astype(int))
print(f"ambulance: {share:.1%} of the labelled training scenes; "
      f"balanced weights {{0: {weights[0]:.2f}, 1: {weights[1]:.2f}}}")

# ## The second model
#
# The second model gets the Huber loss for the distance, the balanced class
# weights for the ambulance and the `cloud` task, and trains on the same
# data:

tuned_tasks = [
    *tasks[:3],
    kmtl.Task("distance", kind="regression", loss=keras.losses.Huber()),
    tasks[4],
    kmtl.Task("ambulance", class_weight={c: round(w, 3) for c, w in weights.items()}),
    kmtl.Task("cloud", kind=Fraction()),
]
for task in tuned_tasks[3:]:
    print(task)
tuned_train, tuned_val = pipelines(tuned_tasks, {**labels, "cloud": cloud})
tuned = build(tuned_tasks)
tuned.fit(tuned_train, epochs=EPOCHS, verbose=0)
tuned_results = tuned.evaluate(tuned_val, return_dict=True, verbose=0)

# The squared error grows with the square of a glitch, the Huber loss only
# linearly beyond `delta`. On the clean validation targets:

mae = {"squared error": results["distance_mae"], "Huber": tuned_results["distance_mae"]}
better = min(mae, key=mae.get)
print(f"distance, {glitch.sum()} glitched training targets: validation MAE "
      f"{mae['squared error']:.2f} m with the squared error, {mae['Huber']:.2f} m with the Huber loss "
      f"(the {better} loss is better here)")

# How many of the validation ambulances each model finds (probability
# ≥ 0.5), and at what cost:

truth = labels["ambulance"][split:]
found = {}
for name, candidate in (("no class weights", model), ("balanced class weights", tuned)):
    p = candidate.predict(x[split:], verbose=0)["ambulance"][:, 0]
    found[name] = (int(np.sum(p[truth == 1] >= 0.5)), int(np.sum(p[truth == 0] >= 0.5)))
    print(f"{name:>22}: finds {found[name][0]} of {int(np.sum(truth == 1))} labelled ambulances, "
          f"{found[name][1]} false alarms")
more = found["balanced class weights"][0] - found["no class weights"][0]
alarms = found["balanced class weights"][1] - found["no class weights"][1]
print(f"The class weights find {abs(more)} {'more' if more >= 0 else 'fewer'} ambulances, "
      f"with {abs(alarms)} {'more' if alarms >= 0 else 'fewer'} false alarms.")

# Class weights change the probabilities the model predicts: trained with
# balanced weights, it over-states the rare class. When calibrated
# probabilities matter, keep the weights at 1 and lower the decision
# threshold instead (`predict_labels(x, threshold=...)`).
#
# And the kind of our own learned its task:

baseline = np.nanmean(np.abs(cloud[split:] - np.nanmean(cloud[:split])))
print(f"cloud: validation MAE {tuned_results['cloud_mae']:.3f}; predicting the mean share "
      f"would give {baseline:.3f}")

# ## Saved with the model
#
# The kinds, the task losses and the class weights are part of the model: a
# `.keras` file brings them back, and the reloaded model predicts the same.

with tempfile.TemporaryDirectory() as folder:
    tuned.save(os.path.join(folder, "street.keras"))
    reloaded = keras.saving.load_model(os.path.join(folder, "street.keras"))
assert type(reloaded.get_task("cloud").kind) is Fraction
assert reloaded.get_task("ambulance").class_weight == tuned.get_task("ambulance").class_weight
for name, value in reloaded.predict(x[:8], verbose=0).items():
    np.testing.assert_allclose(value, tuned.predict(x[:8], verbose=0)[name], rtol=1e-6, atol=1e-6)
print("reloaded:", *reloaded.tasks[3:], sep="\n  ")

# A task loss that would not come back the same from its config is refused
# when the task is created: in Keras 3.15, `Huber(delta=2.0).get_config()`
# drops `delta`, so a reloaded model would train another loss. The message
# says what to write instead:

try:
    kmtl.Task("distance", kind="regression", loss=keras.losses.Huber(delta=2.0))
except ValueError as error:
    print(error)

# `Poisson` in `keras_mtl/kinds.py` is written like `Fraction`; read it for a
# kind with a log link and a metric of its own.
#
# ## Next steps
#
# - [Task kinds reference](../topics/kinds.md): what each kind owns, and the
#   tests behind each statement.
# - [Task weights and balancing](balancing.py): how much each task counts.
# - [Export and serving](export_and_serving.py): the kinds' outputs in a
#   SavedModel, ONNX and LiteRT.
