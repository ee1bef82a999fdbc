"""Training under tf.distribute: MirroredStrategy on 2 logical CPUs, 2-worker MultiWorkerMirroredStrategy.

Logical devices must be configured before TensorFlow initialises its
context, and workers need their own ``TF_CONFIG``: each scenario runs in a
fresh subprocess (``python tests/test_distribute.py mirrored|worker ...``)
that writes its results as JSON; the tests read them. Every subprocess has a
timeout, so a hung collective fails the test instead of the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl as kmtl
from keras_mtl import distribute
from keras_mtl.heads import FusedTaskLoss, HeadLayout

TIMEOUT = 150
N, BATCH, EPOCHS = 24, 8, 2
TASKS = [kmtl.Task("a"), kmtl.Task("b"), kmtl.Task("c", kind="categorical", num_classes=3),
         kmtl.Task("r", kind="regression")]
REMOVE = "remove the workaround in keras_mtl/distribute.py ({}) and this check"


# -- shared by the test process and the subprocesses ----------------------------

def make_data(n=N, seed=0):
    """Inputs and labels with missing entries spread unevenly over the batch."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    a = (x[:, 0] > 0).astype("float32")
    b = (x[:, 1] + x[:, 2] > 0).astype("float32")
    c = np.digitize(x[:, 3], [-0.5, 0.5]).astype("float32")
    r = (x[:, 4] - x[:, 5]).astype("float32")
    # First half of each batch mostly labelled, second half mostly not.
    position = np.arange(n) % BATCH
    a[(position >= BATCH // 2) & (rng.random(n) < 0.8)] = np.nan
    b[(position < BATCH // 2) & (rng.random(n) < 0.6)] = np.nan
    c[rng.random(n) < 0.4] = np.nan
    r[(position >= BATCH // 2) & (rng.random(n) < 0.7)] = np.nan
    return x, {"a": a, "b": b, "c": c, "r": r}


def build_model():
    inputs = keras.Input((6,), name="x")
    features = keras.layers.Dense(8, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-3),
                                  name="trunk")(inputs)
    return kmtl.MultiTaskModel(inputs, features, TASKS)


def dataset(x, labels, shard=False):
    data = kmtl.data.from_arrays(x, labels, TASKS, batch_size=BATCH)
    if shard:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        data = data.with_options(options)
    return data


def train(init, normalize, balancing, strategy=None, shard=False, epochs=EPOCHS, callbacks=None):
    """Trains from the weights ``init``; returns (history, final weights, model)."""
    x, labels = make_data()
    scope = strategy.scope() if strategy is not None else _null()
    with scope:
        model = build_model()
        model.set_weights(init)
        model.compile(optimizer=keras.optimizers.SGD(0.1), normalize=normalize, balancing=balancing)
    history = model.fit(dataset(x, labels, shard), validation_data=dataset(x, labels, shard), epochs=epochs,
                        callbacks=callbacks, verbose=0)
    return history.history, [w.tolist() for w in model.get_weights()], model


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def initial_weights():
    keras.utils.set_random_seed(0)
    return build_model().get_weights()


def numpy_task_losses(logits, y, normalize):
    """The formula of DESIGN §2 in NumPy, per task, on the global batch."""
    m = len(logits)
    losses = []
    for j, name in enumerate(["a", "b"]):
        z, t = logits[:, j].astype("float64"), y[name]
        labelled = ~np.isnan(t) & (t != -1)
        terms = np.maximum(z, 0) - z * np.nan_to_num(t) + np.log1p(np.exp(-np.abs(z)))
        losses.append((terms[labelled].sum(), labelled.sum()))
    r, pred = y["r"], logits[:, 2].astype("float64")
    labelled = ~np.isnan(r)
    losses.append((((pred - np.nan_to_num(r)) ** 2)[labelled].sum(), labelled.sum()))
    c, z = y["c"], logits[:, 3:6].astype("float64")
    labelled = c >= 0
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    picked = log_probs[np.arange(m), np.where(labelled, c, 0).astype(int)]
    losses.append((-picked[labelled].sum(), labelled.sum()))
    a, b, reg, cat = [total / (m if normalize == "batch" else count) for total, count in losses]
    return np.array([a, b, cat, reg])  # task order a, b, c, r


# -- subprocess: MirroredStrategy on 2 logical CPU devices -----------------------

def mirrored_main(out_dir):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {"replicas": strategy.num_replicas_in_sync}

    # Per-replica loss shares on a global batch of 6 split 4 + 2, labels uneven.
    rng = np.random.default_rng(1)
    layout = HeadLayout(TASKS)
    logits = rng.normal(size=(6, layout.units)).astype("float32")
    y = {"a": np.array([1, 0, 1, 1, -1, -1], "float32"), "b": np.array([-1, -1, -1, 0, 1, -1], "float32"),
         "c": np.array([2, -1, 0, 1, -1, 1], "int32"), "r": np.array([0.5, np.nan, 1, 2, np.nan, -1], "float32")}
    slices = [slice(0, 4), slice(4, 6)]
    local_logits = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(logits[slices[ctx.replica_id_in_sync_group]]))
    local_y = strategy.experimental_distribute_values_from_function(
        lambda ctx: {k: tf.constant(v[slices[ctx.replica_id_in_sync_group]]) for k, v in y.items()})
    for normalize in ("batch", "labeled"):
        fused = FusedTaskLoss(layout, normalize)
        single = kmtl.losses.MaskedBinaryCrossentropy(normalize=normalize, from_logits=True)
        shares = strategy.run(lambda yy, z, f=fused: f(yy, z), args=(local_y, local_logits))
        keras_shares = strategy.run(lambda yy, z, s=single: s(yy["a"], z[:, :1]), args=(local_y, local_logits))
        results[f"division_{normalize}"] = {
            "replicas": strategy.reduce("SUM", shares, axis=None).numpy().tolist(),
            "keras_loss_a": float(strategy.reduce("SUM", keras_shares, axis=None)),
            "numpy": numpy_task_losses(logits, {k: v.astype("float64") for k, v in y.items()},
                                       normalize).tolist(),
        }

    # fit on one device and on two replicas from the same weights.
    init = initial_weights()
    cases = {"fixed_batch": ("batch", None), "uncertainty_labeled": ("labeled", "uncertainty"),
             "gradnorm_labeled": ("labeled", "gradnorm")}
    strategies = {"uncertainty": kmtl.balancing.UncertaintyWeighting, "gradnorm": kmtl.balancing.GradNorm}
    for case, (normalize, balancing) in cases.items():
        make = strategies.get(balancing, lambda: None)
        one_history, one_weights, _ = train(init, normalize, make())
        two_history, two_weights, model = train(init, normalize, make(), strategy)
        results[case] = {"one": {"history": one_history, "weights": one_weights},
                         "two": {"history": two_history, "weights": two_weights}}
        if case == "uncertainty_labeled":
            x, _ = make_data()
            model.save(os.path.join(out_dir, "mirrored.keras"))
            np.save(os.path.join(out_dir, "mirrored_predictions.npy"),
                    model.predict(x, verbose=0)["c"])

    for balancing in (kmtl.balancing.PCGrad(seed=0), kmtl.balancing.RandomLossWeighting(seed=0)):
        with strategy.scope():
            model = build_model()
            try:
                model.compile(optimizer="sgd", balancing=balancing)
                results[type(balancing).__name__] = None
            except ValueError as error:
                results[type(balancing).__name__] = str(error)
    with open(os.path.join(out_dir, "mirrored.json"), "w") as f:
        json.dump(results, f)


# -- subprocess: one worker of a 2-worker MultiWorkerMirroredStrategy -----------

def _plain_keras_bugs(strategy):
    """Runs plain Keras fit to see whether the two upstream bugs are still there."""
    found = {}
    keras.config.disable_traceback_filtering()  # keep Keras's frames in the report
    x, labels = make_data()
    data = tf.data.Dataset.from_tensor_slices((x, np.nan_to_num(labels["a"]))).batch(BATCH)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = data.with_options(options)

    class Patched(keras.Model):
        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            if iterator is not None:
                iterator, data_batch = None, distribute.local_build_batch(self.distribute_strategy, iterator)
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    for name, cls in (("symbolic_build", keras.Model), ("log_reduction", Patched)):
        with strategy.scope():
            inputs = keras.Input((6,))
            model = cls(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
            model.compile(optimizer="sgd", loss="binary_crossentropy")
        try:
            model.fit(data, epochs=1, verbose=0)
            found[name] = None
        except Exception as error:  # noqa: BLE001 - reported to the test
            found[name] = f"{type(error).__name__}: {str(error).splitlines()[0]}"[:300] + " @ " + " ".join(
                frame.name for frame in traceback.extract_tb(error.__traceback__))
    return found


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated worker failure")


def worker_main(out_dir, phase):
    config = json.loads(os.environ["TF_CONFIG"])
    index = config["task"]["index"]
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    results = {"replicas": strategy.num_replicas_in_sync}
    if phase == "interrupted":
        results["bugs"] = _plain_keras_bugs(strategy)
    init = [np.asarray(w) for w in np.load(os.path.join(out_dir, "init.npz")).values()]
    chief = index == 0
    checkpoint = (os.path.join(out_dir, "chief.keras") if chief
                  else os.path.join(out_dir, f"worker{index}", "ignored.keras"))
    os.makedirs(os.path.dirname(checkpoint), exist_ok=True)
    callbacks = [keras.callbacks.BackupAndRestore(os.path.join(out_dir, f"backup{index}")),
                 keras.callbacks.ModelCheckpoint(checkpoint)]
    if phase == "interrupted":
        callbacks.append(_Interrupt(epoch=0))
    try:
        history, weights, _ = train(init, "labeled", kmtl.balancing.UncertaintyWeighting(), strategy, shard=True,
                                    callbacks=callbacks)
        results.update(history=history, weights=weights)
    except RuntimeError as error:
        results["interrupted"] = str(error)
    with open(os.path.join(out_dir, f"{phase}{index}.json"), "w") as f:
        json.dump(results, f)
    sys.stdout.flush()
    os._exit(0)  # skip collective-executor teardown, which can block at exit


# -- the tests -------------------------------------------------------------------

def _run(args, env, cwd):
    return subprocess.Popen([sys.executable, __file__, *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(processes):
    outputs = []
    for process in processes:
        try:
            out, _ = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            pytest.fail(f"a subprocess did not finish within {TIMEOUT} s (hung collective?)")
        outputs.append(out)
        assert process.returncode == 0, out[-4000:]
    return outputs


def _env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    out = tmp_path_factory.mktemp("mirrored")
    _wait([_run(["mirrored", str(out)], _env(), out)])
    with open(out / "mirrored.json") as f:
        return json.load(f), out


def _launch_workers(out, phase):
    processes = [_run(["worker", str(out), phase], _env(TF_CONFIG=config), out)
                 for config in distribute.local_tf_configs(2)]
    _wait(processes)
    found = []
    for i in range(2):
        with open(out / f"{phase}{i}.json") as f:
            found.append(json.load(f))
    return found


@pytest.fixture(scope="module")
def multi_worker(tmp_path_factory):
    out = tmp_path_factory.mktemp("workers")
    init = initial_weights()
    np.savez(out / "init.npz", *init)
    interrupted = _launch_workers(out, "interrupted")
    resumed = _launch_workers(out, "resumed")
    reference, reference_weights, _ = train(init, "labeled", kmtl.balancing.UncertaintyWeighting())
    return interrupted, resumed, reference, reference_weights, out


def test_helpers_are_identities_without_a_strategy():
    value = tf.constant([1.0, 2.0])
    assert distribute.num_replicas() == 1
    assert distribute.cross_replica_sum(value) is value
    assert distribute.replica_share(value) is value
    assert distribute.replica_estimate(value, 4) is value
    logs = {"loss": tf.constant(1.0)}
    assert distribute.logs_for_reduction(logs) is logs
    assert not distribute.in_multi_worker_mode()


@pytest.mark.parametrize("normalize", ["batch", "labeled"])
def test_replica_shares_add_up_to_the_formula(mirrored, normalize):
    results, _ = mirrored
    assert results["replicas"] == 2
    division = results[f"division_{normalize}"]
    # Global batch of 6 split 4 + 2, labelled entries unevenly spread.
    np.testing.assert_allclose(division["replicas"], division["numpy"], rtol=1e-5)
    np.testing.assert_allclose(division["keras_loss_a"], division["numpy"][0], rtol=1e-5)


@pytest.mark.parametrize("case", ["fixed_batch", "uncertainty_labeled", "gradnorm_labeled"])
def test_mirrored_fit_matches_one_device(mirrored, case):
    results, _ = mirrored
    one, two = results[case]["one"], results[case]["two"]
    for key in ("loss", "val_loss", "a_loss", "val_c_loss"):
        np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=1e-4, err_msg=key)
    for w_two, w_one in zip(two["weights"], one["weights"]):
        np.testing.assert_allclose(w_two, w_one, rtol=1e-4, atol=1e-6)
    # Training moved the weights at all (so equality means something).
    assert one["history"]["loss"][-1] < one["history"]["loss"][0]


@pytest.mark.parametrize("name", ["PCGrad", "RandomLossWeighting"])
def test_random_strategies_refuse_several_replicas(mirrored, name):
    results, _ = mirrored
    message = results[name]
    assert message is not None, f"{name} compiled under MirroredStrategy"
    assert f"{name} cannot train under a tf.distribute strategy" in message
    assert "UncertaintyWeighting()" in message


def test_model_trained_under_mirrored_strategy_reloads(mirrored):
    _, out = mirrored
    model = keras.saving.load_model(out / "mirrored.keras")
    x, _ = make_data()
    expected = np.load(out / "mirrored_predictions.npy")
    np.testing.assert_allclose(model.predict(x, verbose=0)["c"], expected, rtol=1e-5, atol=1e-6)
    assert isinstance(model.balancing, kmtl.balancing.UncertaintyWeighting)


def test_keras_multi_worker_bugs_still_need_the_workarounds(multi_worker):
    interrupted = multi_worker[0]
    for worker in interrupted:
        bugs = worker["bugs"]
        build = bugs["symbolic_build"]
        assert build is not None and "PerReplica" in build and "_maybe_symbolic_build" in build, (
            "Keras now builds models under a multi-worker MultiWorkerMirroredStrategy: "
            + REMOVE.format("local_build_batch, MultiTaskModel._maybe_symbolic_build") + f". Got: {build}")
        logs = bugs["log_reduction"]
        assert logs is not None and "Invalid reduction dimension 0" in logs, (
            "Keras now reduces scalar logs across workers: "
            + REMOVE.format("logs_for_reduction, used in MultiTaskModel.train_step/test_step") + f". Got: {logs}")


def test_two_workers_resume_and_match_one_device(multi_worker):
    interrupted, resumed, reference, reference_weights, out = multi_worker
    assert [w["replicas"] for w in resumed] == [2, 2]
    assert all("simulated worker failure" in w["interrupted"] for w in interrupted)
    # BackupAndRestore: the relaunch trains epoch 2 only.
    for worker in resumed:
        assert len(worker["history"]["loss"]) == EPOCHS - 1
    first, second = resumed
    np.testing.assert_allclose(first["history"]["loss"], second["history"]["loss"], rtol=1e-6)
    np.testing.assert_allclose(first["history"]["loss"][-1], reference["loss"][-1], rtol=1e-4)
    np.testing.assert_allclose(first["history"]["val_loss"][-1], reference["val_loss"][-1], rtol=1e-4)
    for w_two, w_one in zip(first["weights"], reference_weights):
        np.testing.assert_allclose(w_two, w_one, rtol=1e-4, atol=1e-6)
    # The chief's checkpoint is a complete model.
    model = keras.saving.load_model(out / "chief.keras")
    np.testing.assert_allclose(model.get_weights()[0], first["weights"][0], rtol=1e-6)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if sys.argv[1] == "mirrored":
        mirrored_main(sys.argv[2])
    else:
        worker_main(sys.argv[2], sys.argv[3])
