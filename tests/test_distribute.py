"""Training under tf.distribute: MirroredStrategy on 2 logical CPUs, 2-worker MultiWorkerMirroredStrategy.

Logical devices must be configured before TensorFlow initialises its
context, and workers need their own ``TF_CONFIG``: each scenario runs in a
fresh subprocess (``python tests/test_distribute.py mirrored|worker ...``)
that writes its results as JSON; the tests read them. Every subprocess has a
timeout, so a hung collective fails the test instead of the run.

The multi-worker job is killed for real: worker 1 gets SIGKILL in the middle
of the second epoch; the chief, blocked in a collective with a dead peer, is
killed too (as a cluster manager restarts a failed job), and the relaunched
job resumes from BackupAndRestore's last completed epoch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl as kmtl
from keras_mtl import distribute
from keras_mtl.heads import FusedTaskLoss, HeadLayout

TIMEOUT = 600  # per job; generous for a loaded 2-core machine, and a hung collective still fails
N, BATCH, EPOCHS = 24, 8, 3  # DWA's weights move after epoch 2: three epochs train with them
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
    return history.history, variables_of(model), model


def state_key(model, variable):
    """A variable's path; ``balancing/<name>`` for the strategy's (its layer name is numbered per process)."""
    own = {id(v) for v in model.balancing.variables}
    return f"balancing/{variable.name}" if id(variable) in own else variable.path


def variables_of(model):
    """Every model variable (weights, the balancing strategy's state) by ``state_key``."""
    return {state_key(model, v): keras.ops.convert_to_numpy(v).tolist() for v in model.variables}


# Settings of registered strategies with their own distributed code path.
VARIANTS = {"MGDA(wrt=representation)": lambda: kmtl.balancing.MGDA(wrt="representation"),
            # its (T, P) state: P = the trunk's 6 × 8 kernel and 8 biases
            "DBMTL(form=authors)": lambda: kmtl.balancing.DBMTL(form="authors", num_parameters=6 * 8 + 8)}


def make_balancing(name):
    return VARIANTS[name]() if name in VARIANTS else kmtl.balancing._STRATEGIES[name]()


def replica_strategies():
    """The registered strategies that train under a strategy with several replicas, and VARIANTS."""
    names = [name for name, cls in kmtl.balancing._STRATEGIES.items() if cls.distributed_error is None]
    return names + list(VARIANTS)


def mirrored_cases():
    """``{strategy: normalize}``: each replica strategy, the two normalisations in turn."""
    return {name: ("batch", "labeled")[i % 2] for i, name in enumerate(replica_strategies())}


def refusing_strategies():
    return [name for name, cls in kmtl.balancing._STRATEGIES.items() if cls.distributed_error is not None]


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

    # fit on two replicas, for every strategy that can (the test process trains on one device).
    init = initial_weights()
    for name, normalize in mirrored_cases().items():
        two_history, two_variables, model = train(init, normalize, make_balancing(name), strategy)
        # Each replica's copy of the strategy's state: one value, the same on both.
        copies = {state_key(model, v): [np.asarray(c).tolist() for c in strategy.experimental_local_results(v.value)]
                  for v in model.balancing.variables}
        results[name] = {"copies": copies, "two": {"history": two_history, "variables": two_variables}}
        if name == "UncertaintyWeighting":
            x, _ = make_data()
            model.save(os.path.join(out_dir, "mirrored.keras"))
            np.save(os.path.join(out_dir, "mirrored_predictions.npy"),
                    model.predict(x, verbose=0)["c"])

    results["refused"] = {}
    for name in refusing_strategies():
        with strategy.scope():
            model = build_model()
            try:
                model.compile(optimizer="sgd", balancing=make_balancing(name))
                results["refused"][name] = None
            except ValueError as error:
                results["refused"][name] = str(error)
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


KILL_IN_EPOCH = 1  # worker 1 dies in the second epoch, after the first one's backup
BATCH_SECONDS = 0.3  # a slow epoch in the first launch, so the kill lands inside it


class _EpochMarker(keras.callbacks.Callback):
    """Writes ``started<worker>_<epoch>`` when an epoch begins; sleeps after every batch."""

    def __init__(self, out_dir, index, batch_seconds):
        super().__init__()
        self.out_dir, self.index, self.batch_seconds = out_dir, index, batch_seconds

    def on_epoch_begin(self, epoch, logs=None):
        with open(os.path.join(self.out_dir, f"started{self.index}_{epoch}"), "w") as f:
            f.write(str(time.time()))

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(self.batch_seconds)


def worker_main(out_dir, phase):
    """One worker of a 2-worker job; ``phase`` is ``killed`` (the test kills it) or ``resumed``."""
    config = json.loads(os.environ["TF_CONFIG"])
    index = config["task"]["index"]
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    results = {"replicas": strategy.num_replicas_in_sync}
    if phase == "resumed":
        results["bugs"] = _plain_keras_bugs(strategy)
    init = [np.asarray(w) for w in np.load(os.path.join(out_dir, "init.npz")).values()]
    chief = index == 0
    checkpoint = (os.path.join(out_dir, "chief.keras") if chief
                  else os.path.join(out_dir, f"worker{index}", "ignored.keras"))
    os.makedirs(os.path.dirname(checkpoint), exist_ok=True)
    callbacks = [keras.callbacks.BackupAndRestore(os.path.join(out_dir, f"backup{index}")),
                 keras.callbacks.ModelCheckpoint(checkpoint),
                 _EpochMarker(out_dir, f"{phase}{index}", BATCH_SECONDS if phase == "killed" else 0.0)]
    history, variables, model = train(init, "labeled", kmtl.balancing.UncertaintyWeighting(), strategy,
                                      shard=True, callbacks=callbacks)
    results.update(history=history, variables=variables,
                   balancing={state_key(model, v): keras.ops.convert_to_numpy(v).tolist()
                              for v in model.balancing.variables})
    with open(os.path.join(out_dir, f"{phase}{index}.json"), "w") as f:
        json.dump(results, f)
    sys.stdout.flush()
    os._exit(0)  # skip collective-executor teardown, which can block at exit


# -- the tests -------------------------------------------------------------------

def _run(args, env, cwd, log):
    with open(log, "w") as out:  # a file, not a pipe: nobody reads while the job runs
        return subprocess.Popen([sys.executable, __file__, *args], env=env, cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT, text=True)


def _kill(processes):
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)


def _wait(processes, logs):
    deadline = time.monotonic() + TIMEOUT
    try:
        for process, log in zip(processes, logs):
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                pytest.fail(f"a subprocess did not finish within {TIMEOUT} s (hung collective?): "
                            f"{log.read_text()[-3000:]}")
            assert process.returncode == 0, log.read_text()[-4000:]
    finally:
        _kill(processes)


def _env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    out = tmp_path_factory.mktemp("mirrored")
    job = _run(["mirrored", str(out)], _env(), out, out / "mirrored.log")
    try:  # the one-device runs, here while the job runs
        init = initial_weights()
        one = {}
        for name, normalize in mirrored_cases().items():
            history, variables, _ = train(init, normalize, make_balancing(name))
            one[name] = {"history": history, "variables": variables}
    finally:
        _wait([job], [out / "mirrored.log"])
    with open(out / "mirrored.json") as f:
        results = json.load(f)
    for name, runs in one.items():
        results[name]["one"] = runs
    return results, out


def _start_workers(out, phase):
    logs = [out / f"{phase}{i}.log" for i in range(2)]
    processes = [_run(["worker", str(out), phase], _env(TF_CONFIG=config), out, log)
                 for config, log in zip(distribute.local_tf_configs(2), logs)]
    return processes, logs


def _kill_worker_mid_epoch(out):
    """Starts the job; SIGKILLs worker 1 once it has begun epoch KILL_IN_EPOCH, then the chief."""
    processes, logs = _start_workers(out, "killed")
    marker = out / f"startedkilled1_{KILL_IN_EPOCH}"
    deadline = time.monotonic() + TIMEOUT
    found = {}
    try:
        while not marker.exists():
            if any(p.poll() is not None for p in processes):
                pytest.fail("a worker exited before it was killed: "
                            + " | ".join(log.read_text()[-2000:] for log in logs))
            if time.monotonic() > deadline:
                pytest.fail(f"worker 1 did not begin epoch {KILL_IN_EPOCH} within {TIMEOUT} s")
            time.sleep(0.01)
        processes[1].send_signal(signal.SIGKILL)
        found["worker1"] = processes[1].wait(timeout=30)
        # The chief goes on until a collective waits for the peer that is gone
        # (it may still be ending the first epoch): once it has begun the
        # second, end the whole job, as a cluster manager would.
        chief_marker = out / f"startedkilled0_{KILL_IN_EPOCH}"
        while not chief_marker.exists() and processes[0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)
        found["chief_exited_alone"] = processes[0].poll() is not None
    finally:
        _kill(processes)
    found["backups"] = [json.loads((out / f"backup{i}" / "training_metadata.json").read_text())
                        for i in range(2)]
    found["markers"] = sorted(p.name for p in out.glob("startedkilled*"))
    return found


@pytest.fixture(scope="module")
def multi_worker(tmp_path_factory):
    out = tmp_path_factory.mktemp("workers")
    init = initial_weights()
    np.savez(out / "init.npz", *init)
    killed = _kill_worker_mid_epoch(out)
    processes, logs = _start_workers(out, "resumed")  # the same job, relaunched
    try:  # the uninterrupted one-device run, here while the job runs
        reference, reference_variables, _ = train(init, "labeled", kmtl.balancing.UncertaintyWeighting())
    finally:
        _wait(processes, logs)
    resumed = [json.loads((out / f"resumed{i}.json").read_text()) for i in range(2)]
    return {"killed": killed, "resumed": resumed, "reference": reference,
            "reference_variables": reference_variables, "out": out}


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


def test_the_strategies_that_train_on_replicas():
    # Registry-driven below; this says which ones that is today.
    assert set(replica_strategies()) >= {"FixedWeights", "UncertaintyWeighting", "GradNorm", "DWA"}


@pytest.mark.parametrize("name", replica_strategies())
def test_mirrored_fit_matches_one_device(mirrored, name):
    """Loss, every metric (AUC, accuracy, MAE) and every variable, the strategy's included."""
    results, _ = mirrored
    one, two = results[name]["one"], results[name]["two"]
    assert sorted(two["history"]) == sorted(one["history"])
    for key in ("loss", "a_auc", "a_accuracy", "c_accuracy", "r_mae", "val_b_auc", "val_r_mae", "val_loss"):
        assert key in one["history"], (key, sorted(one["history"]))
    for key, values in one["history"].items():
        if not _evaluation_metric(key) and not key.startswith("weight_"):
            np.testing.assert_allclose(two["history"][key], values, rtol=1e-4, atol=1e-6, err_msg=key)
    assert sorted(two["variables"]) == sorted(one["variables"])
    balancing = [path for path in one["variables"] if path.startswith("balancing/")]
    assert len(balancing) == len(results[name]["copies"])
    for path, value in one["variables"].items():
        np.testing.assert_allclose(two["variables"][path], value, rtol=1e-4, atol=1e-6, err_msg=path)
    # Both replicas hold the same strategy state.
    for path, (first, second) in results[name]["copies"].items():
        np.testing.assert_array_equal(first, second, err_msg=path)
        np.testing.assert_allclose(first, two["variables"][path], rtol=1e-6, err_msg=path)
    # Training moved the weights and the strategy's state (so equality means something).
    assert one["history"]["loss"][-1] < one["history"]["loss"][0]
    init = dict(zip((p for p in one["variables"] if p.startswith("trunk")), initial_weights()[:2]))
    for path, start in init.items():
        assert not np.allclose(one["variables"][path], start), path
    if name in ("UncertaintyWeighting", "GradNorm", "DWA"):
        state = {"UncertaintyWeighting": "log_variance", "GradNorm": "task_weights", "DWA": "dynamic_weights"}[name]
        path = next(p for p in one["variables"] if p.endswith(state))
        assert not np.allclose(one["variables"][path], 0.0 if name == "UncertaintyWeighting" else 1.0), path


def _evaluation_metric(key):
    return key.startswith("val_") and not key.endswith("loss")


@pytest.mark.parametrize("name", replica_strategies())
def test_mirrored_evaluation_metrics_match_one_device(mirrored, name):
    results, _ = mirrored
    one, two = results[name]["one"], results[name]["two"]
    keys = [key for key in one["history"] if _evaluation_metric(key)]
    assert {"val_a_auc", "val_a_accuracy", "val_c_accuracy", "val_r_mae"} <= set(keys)
    for key in keys:
        np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=1e-4, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("name", [name for name in replica_strategies()
                                  if make_balancing(name).adaptive])
def test_mirrored_logged_task_weights_match_one_device(mirrored, name):
    results, _ = mirrored
    one, two = results[name]["one"], results[name]["two"]
    keys = [key for key in one["history"] if key.startswith("weight_")]
    assert keys == [f"weight_{task.name}" for task in TASKS]
    for key in keys:
        np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=1e-4, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("name", refusing_strategies())
def test_strategies_with_a_distributed_error_refuse_several_replicas(mirrored, name):
    results, _ = mirrored
    message = results["refused"][name]
    assert message is not None, f"{name} compiled under MirroredStrategy"
    assert message == kmtl.balancing._STRATEGIES[name].distributed_error
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
    for worker in multi_worker["resumed"]:
        bugs = worker["bugs"]
        build = bugs["symbolic_build"]
        assert build is not None and "PerReplica" in build and "_maybe_symbolic_build" in build, (
            "Keras now builds models under a multi-worker MultiWorkerMirroredStrategy: "
            + REMOVE.format("local_build_batch, MultiTaskModel._maybe_symbolic_build") + f". Got: {build}")
        logs = bugs["log_reduction"]
        assert logs is not None and "Invalid reduction dimension 0" in logs, (
            "Keras now reduces scalar logs across workers: "
            + REMOVE.format("logs_for_reduction, used in MultiTaskModel.train_step/test_step") + f". Got: {logs}")


def test_killed_worker_job_resumes_from_the_last_epoch_and_matches_one_device(multi_worker):
    killed, resumed, reference = multi_worker["killed"], multi_worker["resumed"], multi_worker["reference"]
    assert killed["worker1"] == -signal.SIGKILL
    # Killed inside the second epoch: both began it, neither reached the third,
    # and the backups hold the first epoch only.
    assert killed["markers"] == [f"startedkilled{i}_{e}" for i in range(2) for e in range(KILL_IN_EPOCH + 1)]
    assert [b["epoch"] for b in killed["backups"]] == [KILL_IN_EPOCH] * 2, killed["backups"]
    assert [w["replicas"] for w in resumed] == [2, 2]
    # BackupAndRestore: the relaunched job trains the epochs after the backup only.
    for worker in resumed:
        assert len(worker["history"]["loss"]) == EPOCHS - KILL_IN_EPOCH
    first, second = resumed
    np.testing.assert_allclose(first["history"]["loss"], second["history"]["loss"], rtol=1e-6)
    # Against an uninterrupted run on one device; rtol 1e-4: float32 sums in another order.
    for key in ("loss", "val_loss", "a_auc", "r_mae"):
        np.testing.assert_allclose(first["history"][key], reference[key][KILL_IN_EPOCH:], rtol=1e-4, err_msg=key)
    assert sorted(first["variables"]) == sorted(multi_worker["reference_variables"])
    for path, value in multi_worker["reference_variables"].items():
        np.testing.assert_allclose(first["variables"][path], value, rtol=1e-4, atol=1e-6, err_msg=path)
        np.testing.assert_allclose(second["variables"][path], first["variables"][path], rtol=1e-6, err_msg=path)


def test_chief_checkpoint_reloads_with_the_chiefs_state(multi_worker):
    chief = multi_worker["resumed"][0]
    model = keras.saving.load_model(multi_worker["out"] / "chief.keras")
    assert isinstance(model.balancing, kmtl.balancing.UncertaintyWeighting)
    loaded = {state_key(model, v): keras.ops.convert_to_numpy(v) for v in model.balancing.variables}
    assert sorted(loaded) == sorted(chief["balancing"]) and loaded
    for path, value in chief["balancing"].items():
        np.testing.assert_array_equal(loaded[path], np.asarray(value, "float32"), err_msg=path)
        assert not np.allclose(value, 0.0), path  # trained away from its start
    reloaded = variables_of(model)
    assert sorted(reloaded) == sorted(chief["variables"])
    for path, value in reloaded.items():
        np.testing.assert_array_equal(value, np.asarray(chief["variables"][path], "float32"), err_msg=path)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if sys.argv[1] == "mirrored":
        mirrored_main(sys.argv[2])
    else:
        worker_main(sys.argv[2], sys.argv[3])
