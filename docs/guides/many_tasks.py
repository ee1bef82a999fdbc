"""
Title: Many tasks
Description: A hundred named tasks with most labels missing: one fused head, what fit logs,
  a per-task table, and what a rare task gains from the others.
"""

# ## Setup
#
# With many tasks, say one per product, disease or object class, three
# things change: most labels are missing (nobody labels every task of every
# example), the logs would list hundreds of entries, and a model with one
# `Dense(1)` head and one loss per task would spend most of its time on
# bookkeeping. keras_mtl keeps the tasks named but fuses their heads into
# one kernel and their losses into one masked loss per kind, so a hundred
# named tasks cost one matrix product and one loss, not a hundred (the
# [many tasks page](../topics/many_tasks.md) has their `fit` time against
# one plain `Dense(100)` head on every backend).
# This guide runs as a script; the test suite runs it with
# `KERAS_MTL_GUIDE_SIZE=small`.

import os
import tempfile
import time

import keras
import numpy as np

import keras_mtl as kmtl

SMALL = os.environ.get("KERAS_MTL_GUIDE_SIZE") == "small"
NUM_TASKS, NUM_EXAMPLES, EPOCHS = (100, 3000, 4) if SMALL else (300, 20000, 10)
MISSING = 0.8   # the share of labels nobody gave

# ## The data
#
# Every task is a yes/no question on 48 features. The tasks are related:
# each depends on a mix of the same eight hidden directions, as objects of
# one scene share edges and colours. 80 % of the labels are missing, and the
# first task, `task_000`, is rare: only 5 % of the examples label it.

rng = np.random.default_rng(0)
names = [f"task_{i:03d}" for i in range(NUM_TASKS)]
x = rng.normal(size=(NUM_EXAMPLES, 48)).astype("float32")
hidden = np.tanh(x @ rng.normal(size=(48, 8)) / 4)
scores = hidden @ rng.normal(size=(8, NUM_TASKS)) + 0.3 * rng.normal(size=(NUM_EXAMPLES, NUM_TASKS))
y = (scores > 0).astype(float)
y[rng.random(y.shape) < MISSING] = np.nan
y[:, 0] = np.where(rng.random(NUM_EXAMPLES) < 0.05, scores[:, 0] > 0, np.nan)   # task_000: 5 % labelled
labels = {name: y[:, j] for j, name in enumerate(names)}
split = int(0.8 * NUM_EXAMPLES)
print(f"{NUM_TASKS} tasks, {NUM_EXAMPLES} examples; labelled: {np.mean(~np.isnan(y)):.0%} of all entries, "
      f"{int(np.sum(~np.isnan(y[:split, 0])))} training examples of task_000")

# ## One model, a hundred named tasks
#
# A list of tasks is all it takes. The model has one head layer, whatever
# the number of tasks: a fused kernel of one column per task.

tasks = [kmtl.Task(name) for name in names]
keras.utils.set_random_seed(0)
inputs = keras.Input((48,), name="features")
features = keras.layers.Dense(64, activation="relu")(inputs)
model = kmtl.MultiTaskModel(inputs, features, tasks)
model.compile(optimizer=keras.optimizers.Adam(3e-3))
print(model.task_heads.name, [tuple(w.shape) for w in model.task_heads.weights])

# ## Labels travel packed
#
# With `pack_labels=True`, `kmtl.data.from_arrays` yields the labels of a
# label group (the tasks of one kind and one loss) as one matrix instead of
# a tensor per task, which the model takes as it is: with a hundred tasks or
# more, a tensor per task costs time in every step. `unpack_labels` gives
# the per-task view back when you want to look at a batch.

train = kmtl.data.from_arrays(x[:split], {k: v[:split] for k, v in labels.items()}, tasks,
                              batch_size=128, shuffle=True, seed=0, pack_labels=True)
val = kmtl.data.from_arrays(x[split:], {k: v[split:] for k, v in labels.items()}, tasks, batch_size=1024,
                            pack_labels=True)
_, batch = next(iter(train))
print({key: tuple(value.shape) for key, value in batch.items()})
print("task_001 in the first batch:", kmtl.data.unpack_labels(batch, tasks)["task_001"].numpy()[:8].tolist())

# ## What `fit` logs
#
# Up to 16 tasks, `fit` logs every task's loss and metrics. Beyond that the
# progress bar and the History hold the total `loss` and the means over the
# tasks (`mean_task_loss`, `mean_auc`, …; `mean_auc` from each epoch's
# end, as the steps leave the AUCs out); validation entries and
# `evaluate` still report every task. `compile(log_every_task=True)` logs
# every task anyway.

start = time.perf_counter()
history = model.fit(train, validation_data=val, epochs=EPOCHS, verbose=0)
seconds = time.perf_counter() - start
print("training entries:", sorted(k for k in history.history if not k.startswith("val_")))
print(f"validation entries: {sum(k.startswith('val_') for k in history.history)}, e.g. "
      f"{[k for k in history.history if k.startswith('val_task_001')]}")
print(f"{EPOCHS} epochs of {NUM_TASKS} tasks in {seconds:.1f} s (the first epoch includes tracing)")

# ## A per-task table
#
# `evaluate(..., return_dict=True)` returns every task's metrics. Sort them
# to see which tasks learned and which did not:

results = model.evaluate(val, return_dict=True, verbose=0)
auc = {name: results[f"{name}_auc"] for name in names}
ranked = sorted(auc, key=auc.get, reverse=True)
print("best: ", [(n, round(auc[n], 3)) for n in ranked[:3]])
print("worst:", [(n, round(auc[n], 3)) for n in ranked[-3:]])
print(f"median validation AUC over {NUM_TASKS} tasks: {np.median(list(auc.values())):.3f}")

# `kmtl.plotting.plot_task_metrics(results, model.task_names, "auc", path=...)`
# draws the same as a figure: a bar per task up to 40 tasks, a sorted curve
# beyond, with the best and worst tasks named. (`kmtl.plotting` imports
# matplotlib the first time it is used.)

with tempfile.TemporaryDirectory() as folder:
    kmtl.plotting.plot_task_metrics(results, model.task_names, "auc", path=os.path.join(folder, "auc.png"))
    print(f"figure: {os.path.getsize(os.path.join(folder, 'auc.png')) / 1024:.0f} KiB")

# ## What a rare task gains from the others
#
# `task_000` has few labels of its own, but the other tasks shape the
# shared features it reads. Train it alone, on its own labelled examples,
# with the same architecture and budget, and compare:

keras.utils.set_random_seed(0)
alone_inputs = keras.Input((48,), name="features")
alone = kmtl.MultiTaskModel(alone_inputs, keras.layers.Dense(64, activation="relu")(alone_inputs), tasks[:1])
alone.compile(optimizer=keras.optimizers.Adam(3e-3))
alone.fit(kmtl.data.from_arrays(x[:split], {"task_000": labels["task_000"][:split]}, tasks[:1],
                                batch_size=128, shuffle=True, seed=0), epochs=EPOCHS, verbose=0)
truth = (scores[split:, 0] > 0).astype("float32")   # task_000's answer on every validation example


def auc_000(candidate):
    return float(keras.metrics.AUC()(truth, candidate.predict(x[split:], verbose=0)["task_000"][:, 0]))


alone_auc, together_auc = auc_000(alone), auc_000(model)
print(f"task_000 on every validation example: AUC {alone_auc:.3f} trained alone, "
      f"{together_auc:.3f} trained with the other {NUM_TASKS - 1} tasks")
print("The other tasks " + ("help task_000." if together_auc > alone_auc else
                            "do not help task_000 at this size."))

# This is the case multi-task learning is made for: a task with little
# data of its own among related tasks with more. The shared features take
# longer to learn than one task's own, though: with a short training run,
# as at the small size, the task trained alone can still come out ahead;
# at the full size the guide trains longer on more data. When the tasks are not
# related, or the network is too small for all of them, sharing can hurt
# instead; [`kmtl.compare`](../api/keras_mtl.md) trains each task alone and
# all together on the same budget to tell.
#
# ## Next steps
#
# - [Many tasks](../topics/many_tasks.md): the speed of named tasks against
#   one plain `Dense(T)` head, measured on every backend.
# - [Task weights and balancing](balancing.py): adaptive strategies log a
#   weight per task (`weight_<task>`) once per epoch.
