"""Writes tests/data/v0_1_*.keras with keras_mtl 0.1.0 and the predictions they must keep."""
import os
import sys

import keras
import numpy as np

import keras_mtl as kmtl

out = sys.argv[1]
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)

# Hard sharing, image trunk (flattened by keras_mtl), three kinds, a balancing strategy with state.
tasks = [kmtl.Task("car"), kmtl.Task("weather", kind="categorical", num_classes=3),
         kmtl.Task("distance", kind="regression")]
inputs = keras.Input((6, 6, 1), name="image")
x = keras.layers.Conv2D(2, 3, activation="relu", name="conv")(inputs)
model = kmtl.MultiTaskModel(inputs, x, tasks)
model.compile(optimizer="adam", balancing=kmtl.balancing.UncertaintyWeighting())
xs = rng.normal(size=(32, 6, 6, 1)).astype("float32")
labels = {"car": rng.integers(0, 2, 32).astype("float32"), "weather": rng.integers(0, 3, 32).astype("float32"),
          "distance": rng.normal(size=32).astype("float32")}
labels["car"][:5] = np.nan
model.fit(xs, labels, epochs=1, batch_size=16, verbose=0)
model.save(os.path.join(out, "v0_1_hard.keras"))
probe = xs[:4]
hard = {k: np.asarray(v) for k, v in model.predict(probe, verbose=0).items()}

# 20 tasks (one output layer for all), MMoE sharing, a gradient aggregator.
tasks = [kmtl.Task(f"t{i}") for i in range(20)]
inputs = keras.Input((5,), name="x")
h = keras.layers.Dense(8, activation="relu", name="dense")(inputs)
model = kmtl.MultiTaskModel(inputs, h, tasks, sharing=kmtl.sharing.MMoE(num_experts=2, units=(4,)))
model.compile(optimizer="adam", balancing=kmtl.balancing.PCGrad())
x2 = rng.normal(size=(32, 5)).astype("float32")
y2 = {t.name: rng.integers(0, 2, 32).astype("float32") for t in tasks}
model.fit(x2, y2, epochs=1, batch_size=16, verbose=0)
model.save(os.path.join(out, "v0_1_many.keras"))
many = {k: np.asarray(v) for k, v in model.predict(x2[:4], verbose=0).items()}

np.savez(os.path.join(out, "v0_1_expected.npz"), hard_x=probe, many_x=x2[:4],
         **{f"hard/{k}": v for k, v in hard.items()}, **{f"many/{k}": v for k, v in many.items()})
print(kmtl.__version__, sorted(hard), len(many))
