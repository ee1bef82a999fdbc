"""
Title: Backends and several devices
Description: One model file for TensorFlow, JAX and PyTorch; training on several devices with
  tf.distribute and keras.distribution, checked against one device.
"""

# ## Setup
#
# keras_mtl runs on every Keras backend. Pick one as for any Keras program,
# before Keras is imported: `KERAS_BACKEND=tensorflow|jax|torch`
# (TensorFlow is the default). The same code, the same `kmtl.data`
# pipelines and the same `.keras` files work on each. This guide shows
#
# - several devices under TensorFlow (`tf.distribute.MirroredStrategy`),
#   checked against training on one device;
# - a `.keras` file written here and loaded under JAX (and PyTorch at the
#   full size), with the same predictions;
# - several devices under JAX (`keras.distribution.DataParallel`), checked
#   against the same training on one device.
#
# The machine the docs are built on has no GPU, so the devices here are
# *logical* CPU devices: TensorFlow splits the CPU in two, and JAX
# is told to present two host devices. That is how Keras tests distribution
# on one machine; on a machine with several GPUs the code is the same, with
# the real devices. This guide runs as a script; the test suite runs it with
# `KERAS_MTL_GUIDE_SIZE=small`.

import os

os.environ["KERAS_BACKEND"] = "tensorflow"   # this process; the other backends run in their own

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap

import keras
import numpy as np
import tensorflow as tf

import keras_mtl as kmtl

# Two logical CPU devices. This has to happen before TensorFlow starts its
# runtime: before anything builds a tensor.
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

SMALL = os.environ.get("KERAS_MTL_GUIDE_SIZE") == "small"
NUM_EXAMPLES, EPOCHS = (512, 2) if SMALL else (8192, 5)
print("backend:", keras.backend.backend(), "| devices:", [d.name for d in tf.config.list_logical_devices()])

# ## The data: labels missing unevenly
#
# Two tasks, and their missing labels fall unevenly: in the first half of
# every batch most `car` labels are missing, in the second half most
# `distance` labels. Split across two devices, each replica then sees a
# very different number of labelled entries, which is where a naive
# per-device mean would go wrong.

rng = np.random.default_rng(0)
x = rng.normal(size=(NUM_EXAMPLES, 16)).astype("float32")
labels = {"car": (x[:, 0] + x[:, 1] > 0).astype("float32"),
          "distance": (30 + 10 * x[:, 2] + rng.normal(size=NUM_EXAMPLES)).astype("float32")}
position = np.arange(NUM_EXAMPLES) % 64
labels["car"][(position < 32) & (rng.random(NUM_EXAMPLES) < 0.8)] = np.nan
labels["distance"][(position >= 32) & (rng.random(NUM_EXAMPLES) < 0.6)] = np.nan
tasks = [kmtl.Task("car"), kmtl.Task("distance", kind="regression")]
data = kmtl.data.from_arrays(x, labels, tasks, batch_size=64)   # 64: the global batch


def build():
    inputs = keras.Input((16,), name="scene")
    features = keras.layers.Dense(32, activation="relu")(inputs)
    model = kmtl.MultiTaskModel(inputs, features, tasks)
    model.compile(optimizer=keras.optimizers.SGD(0.05), normalize="labeled")
    return model


# ## TensorFlow: `tf.distribute.MirroredStrategy`
#
# Build and compile the model inside `strategy.scope()`; `fit` then splits
# every global batch across the replicas. Each replica's loss is its share
# of the global loss (its sum divided by the *global* batch size, or with
# `normalize="labeled"` by the global number of labelled entries), so the
# replicas together compute exactly the single-device loss, however the
# missing labels fall.
#
# Train once on one device and once on two, from the same initial weights
# and on the same batches:

keras.utils.set_random_seed(0)
one = build()
initial = one.get_weights()
one_history = one.fit(data, epochs=EPOCHS, verbose=0).history

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    two = build()
two.set_weights(initial)
two_history = two.fit(data, epochs=EPOCHS, verbose=0).history
print(f"replicas: {strategy.num_replicas_in_sync}")
for key in ("loss", "car_auc", "distance_mae"):
    print(f"{key:>13}: one device {np.round(one_history[key], 5).tolist()}, "
          f"two {np.round(two_history[key], 5).tolist()}")
weight_difference = max(float(np.max(np.abs(a - b))) for a, b in zip(one.get_weights(), two.get_weights()))
print(f"largest difference between the trained weights: {weight_difference:.1e}")
np.testing.assert_allclose(two_history["loss"], one_history["loss"], rtol=1e-4)
assert weight_difference < 1e-4

# Balancing strategies train under a strategy too, except the three that
# draw random numbers (`PCGrad`, `GradDrop`, `RandomLossWeighting`: each
# replica would draw differently); `compile` refuses those with more than
# one replica. For several machines, `MultiWorkerMirroredStrategy` works the
# same way, with one process per machine
# ([distributed training](../topics/distributed.md) has the launch recipe).
#
# ## One `.keras` file, every backend
#
# A `.keras` file written under one backend loads under the others. Save
# the model trained on one device, then load it in a fresh process under
# JAX and predict:

folder = tempfile.mkdtemp()
model_path = os.path.join(folder, "street.keras")
one.save(model_path)
np.save(os.path.join(folder, "x.npy"), x[:16])
expected = one.predict(x[:16], verbose=0)

other_backend = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    import keras_mtl as kmtl

    folder = sys.argv[1]
    x = np.load(f"{folder}/x.npy")
    result = {"backend": keras.backend.backend()}
    loaded = keras.saving.load_model(f"{folder}/street.keras")
    result["predictions"] = {k: v.tolist() for k, v in loaded.predict(x, verbose=0).items()}

    if keras.backend.backend() == "jax":
        # keras.distribution: data parallelism over every JAX device.
        import jax
        data = np.load(f"{folder}/data.npz")
        tasks = loaded.tasks

        def train(distribution):
            keras.distribution.set_distribution(distribution)
            inputs = keras.Input((16,), name="scene")
            model = kmtl.MultiTaskModel(inputs, keras.layers.Dense(32, activation="relu")(inputs), tasks)
            model.compile(optimizer=keras.optimizers.SGD(0.05), normalize="labeled")
            model.set_weights([data[f"w{i}"] for i in range(len(model.weights))])
            labels = {t.name: data[t.name] for t in tasks}
            pipeline = kmtl.data.from_arrays(data["x"], labels, tasks, batch_size=64)
            return model.fit(pipeline, epochs=int(data["epochs"]), verbose=0).history["loss"]

        devices = jax.devices("cpu")
        result["devices"] = len(devices)
        result["parallel"] = train(keras.distribution.DataParallel(devices=devices))
    print(json.dumps(result))
""")
script = os.path.join(folder, "other_backend.py")
with open(script, "w") as handle:
    handle.write(other_backend)
np.savez(os.path.join(folder, "data.npz"), x=x, epochs=EPOCHS, **labels,
         **{f"w{i}": w for i, w in enumerate(initial)})


def run_under(backend):
    """Runs the script above under `backend` in a fresh process; returns what it printed."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, script, folder], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{backend} failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# JAX always; PyTorch too at the full size (a PyTorch process takes a while
# to start, so the test suite's small run leaves it out, and says so).

backends = ["jax"] + ([] if SMALL else ["torch"])
results = {}
for backend in ("jax", "torch"):
    if backend not in backends:
        print(f"{backend}: not run at the small size (run the guide without KERAS_MTL_GUIDE_SIZE=small)")
    elif importlib.util.find_spec(backend) is None:
        print(f"{backend}: not installed (pip install '.[{backend}]'), not run")
    else:
        results[backend] = run_under(backend)
        predictions = {name: np.asarray(value) for name, value in results[backend]["predictions"].items()}
        difference = max(float(np.max(np.abs(predictions[name] - value))) for name, value in expected.items())
        print(f"{backend}: loaded the TensorFlow-trained file; largest difference from TensorFlow's "
              f"predictions {difference:.1e}")
        for name, value in expected.items():   # float32: 1e-5, plus a millionth of a distance in metres
            np.testing.assert_allclose(predictions[name], value, rtol=1e-6, atol=1e-5, err_msg=name)

# Export follows the same road: `kmtl.export_saved_model` runs under
# TensorFlow and JAX; a model trained under PyTorch is saved as `.keras` and
# exported from a TensorFlow process ([export and serving](export_and_serving.py)).
#
# ## JAX: `keras.distribution.DataParallel`
#
# Under JAX, `keras.distribution.set_distribution(
# keras.distribution.DataParallel())` before building the model replicates
# the weights on every device and splits every batch across them. The
# script above trained the same model, from the same initial weights and on
# the same batches as the TensorFlow runs, with `DataParallel` over two JAX
# devices:

if "jax" in results:
    jax_run = results["jax"]
    print(f"JAX devices: {jax_run['devices']}")
    print(f"loss per epoch, JAX DataParallel: {np.round(jax_run['parallel'], 5).tolist()}; "
          f"TensorFlow, one device: {np.round(one_history['loss'], 5).tolist()}")
    np.testing.assert_allclose(jax_run["parallel"], one_history["loss"], rtol=1e-4)
shutil.rmtree(folder)   # the files this guide wrote

# The same loss on two devices as on one, under JAX as under TensorFlow:
# the missing labels may fall anywhere.
#
# ## Which backend
#
# The same code runs on all three; the difference is speed. The
# [backends page](../topics/backends.md) has the measured throughput of each
# on the development machine, and what each backend supports (several
# devices: `tf.distribute` on TensorFlow, `keras.distribution` on JAX; none
# yet on PyTorch).
#
# ## Next steps
#
# - [Backends](../topics/backends.md): the support table and the speed of
#   each backend.
# - [Distributed training](../topics/distributed.md): several processes and
#   machines with `MultiWorkerMirroredStrategy`.
