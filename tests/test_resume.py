"""Resumable training: BackupAndRestore with a MultiTaskModel survives SIGKILL, for every strategy.

``keras.callbacks.BackupAndRestore(save_freq="epoch")`` saves, in its
``on_epoch_end``, the model's weights (optimizer and balancing-strategy
variables, and a random strategy's generator state, included) and then
``{"epoch": e + 1}``; a restarted ``fit`` restores both in
``on_train_begin`` and begins at epoch ``e + 1``. Work done in an epoch that
had not ended is lost and redone.

One process (``python tests/test_resume.py WORK``) trains one model per
strategy of ``keras_mtl.balancing._STRATEGIES`` — a strategy added to the
registry is covered without editing this file — each ``fit`` in its own
thread, so one interpreter start-up serves them all. The threads end every
epoch together (a barrier), after BackupAndRestore and after logging the
epoch, so when the log shows epoch ``KILL_AFTER`` for every strategy, each
has its backup on disk and is inside the next epoch: the test SIGKILLs the
process there, starts the same command again, and compares what every
strategy ends with to an uninterrupted run in this process.
"""

import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_mtl as kmtl

EPOCHS = 6
STEPS = 4  # 64 examples, batch 16
KILL_AFTER = 2  # kill once every strategy has logged this epoch
BATCH_SECONDS = 0.05  # a slow epoch that leaves the CPU free, so the kill lands inside it
TIMEOUT = 600  # per start; generous for two test workers on 2 cores, and a hang still fails


def strategies():
    """Every registered strategy, seeded where it draws random numbers."""
    made = {}
    for name, cls in kmtl.balancing._STRATEGIES.items():
        seeded = "seed" in inspect.signature(cls).parameters
        made[name] = cls(seed=0) if seeded else cls()
    return made


def build_and_data(balancing):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    labels = {"car": (x[:, 0] > 0).astype("float32"),
              "weather": np.digitize(x[:, 1], [-0.5, 0.5]).astype("float32"),
              "distance": (x[:, 2] - x[:, 3]).astype("float32")}
    for y in labels.values():
        y[rng.random(64) < 0.3] = np.nan
    tasks = [kmtl.Task("car"), kmtl.Task("weather", kind="categorical", num_classes=3),
             kmtl.Task("distance", kind="regression")]
    inputs = keras.Input((6,), name="x")
    features = keras.layers.Dense(16, activation="relu", name="trunk")(inputs)
    model = kmtl.MultiTaskModel(inputs, features, tasks)
    model.compile(optimizer=keras.optimizers.Adam(0.01), balancing=balancing)
    return model, kmtl.data.from_arrays(x, labels, model, batch_size=16, shuffle=False)


def final_state(model):
    """Everything a resumed run must have restored: model, strategy (seed state too), optimizer."""
    return {"model": [keras.ops.convert_to_numpy(v) for v in model.variables],
            "optimizer": [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]}


# -- the training process --------------------------------------------------------

class EpochLog(keras.callbacks.Callback):
    """Logs "start <iterations>" and "epoch <n> <iterations>"; ends each epoch at a barrier."""

    def __init__(self, path, barrier):
        super().__init__()
        self.path, self.barrier = path, barrier

    def _write(self, line):
        with open(self.path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def on_train_begin(self, logs=None):
        self._write(f"start {int(self.model.optimizer.iterations.numpy())}")

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(BATCH_SECONDS)

    def on_epoch_end(self, epoch, logs=None):
        self._write(f"epoch {epoch} {int(self.model.optimizer.iterations.numpy())}")
        self.barrier.wait(timeout=TIMEOUT)


def train_main(work):
    work = Path(work)
    runs = {name: build_and_data(balancing) for name, balancing in strategies().items()}
    # A strategy whose job already finished (final.npz written) is not trained again.
    todo = {name: run for name, run in runs.items() if not (work / name / "final.npz").exists()}
    barrier = threading.Barrier(len(todo))
    errors = []

    def fit(name, model, data):
        folder = work / name
        folder.mkdir(exist_ok=True)
        callbacks = [keras.callbacks.BackupAndRestore(str(folder / "backup"), save_freq="epoch"),
                     EpochLog(folder / "epochs.log", barrier)]
        try:
            model.fit(data, epochs=EPOCHS, callbacks=callbacks, verbose=0, shuffle=False)
        except BaseException as error:  # noqa: BLE001 - reported below, with the others waiting freed
            barrier.abort()
            errors.append(f"{name}: {type(error).__name__}: {error}")
            return
        np.savez(folder / "final.npz", **{f"{part}_{i}": v for part, values in final_state(model).items()
                                          for i, v in enumerate(values)})

    threads = [threading.Thread(target=fit, args=(name, *run)) for name, run in todo.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        sys.exit("\n".join(errors))


# -- the test ----------------------------------------------------------------------

def read_log(path):
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def logged_epochs(lines):
    return [int(line[1]) for line in lines if line[0] == "epoch"]


def start(work):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, __file__, str(work)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def kill_after_epoch(work, names, epoch):
    """Starts training; SIGKILLs it as soon as every strategy's log shows ``epoch``."""
    proc = start(work)
    deadline = time.monotonic() + TIMEOUT
    try:
        while not all(epoch in logged_epochs(read_log(work / name / "epochs.log")) for name in names):
            if proc.poll() is not None:
                pytest.fail(f"training exited before it was killed: {proc.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"training did not reach epoch {epoch} within {TIMEOUT} s")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    return proc.returncode


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    work = tmp_path_factory.mktemp("resume")
    names = list(kmtl.balancing._STRATEGIES)
    returncode = kill_after_epoch(work, names, KILL_AFTER)
    killed = {name: read_log(work / name / "epochs.log") for name in names}
    metadata = {name: json.loads((work / name / "backup" / "training_metadata.json").read_text())
                for name in names}
    final_after_kill = {name: (work / name / "final.npz").exists() for name in names}

    proc = start(work)  # the same command again
    try:
        _, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the restarted training did not finish within {TIMEOUT} s")
    assert proc.returncode == 0, stderr[-3000:]
    return {"work": work, "returncode": returncode, "killed": killed, "metadata": metadata,
            "final_after_kill": final_after_kill}


def test_every_registered_strategy_is_covered(resumed):
    assert sorted(resumed["killed"]) == sorted(kmtl.balancing._STRATEGIES)
    assert len(resumed["killed"]) >= 6


@pytest.mark.parametrize("name", sorted(kmtl.balancing._STRATEGIES))
def test_killed_training_resumes_where_it_stopped_and_ends_as_uninterrupted(resumed, name):
    assert resumed["returncode"] == -signal.SIGKILL
    before = resumed["killed"][name]
    last = logged_epochs(before)[-1]
    # killed mid-run, after every epoch up to `last` was logged once
    assert logged_epochs(before) == list(range(last + 1)) and KILL_AFTER <= last < EPOCHS - 1
    assert not resumed["final_after_kill"][name]
    assert resumed["metadata"][name]["epoch"] == last + 1  # the backup holds every logged epoch

    work = resumed["work"] / name
    resumed_log = read_log(work / "epochs.log")[len(before):]
    # The restarted run begins with the optimizer state of the last backup: its
    # iteration count continues (not 0, not the killed run's mid-epoch count),
    # and the first epoch it trains is the one after `last`.
    assert resumed_log[0] == ["start", str((last + 1) * STEPS)]
    assert logged_epochs(resumed_log) == list(range(last + 1, EPOCHS))
    for line in before + resumed_log:
        if line[0] == "epoch":
            assert int(line[2]) == (int(line[1]) + 1) * STEPS, line
    assert not (work / "backup").exists()  # removed once training completed

    # Same data order, no dropout: the interrupted run ends where an uninterrupted
    # one does (weights, Adam moments, the strategy's variables and random state).
    saved = np.load(work / "final.npz")
    model, data = build_and_data(strategies()[name])
    model.fit(data, epochs=EPOCHS, verbose=0, shuffle=False)
    assert int(model.optimizer.iterations.numpy()) == EPOCHS * STEPS
    reference = final_state(model)
    for part, values in reference.items():
        got = [saved[f"{part}_{i}"] for i in range(len(values))]
        assert f"{part}_{len(values)}" not in saved.files
        for i, (g, want) in enumerate(zip(got, values, strict=True)):
            np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6, err_msg=f"{name} {part} {i}")
    # Training moved the strategy's own state where it has any (so equality means something).
    initial, _ = build_and_data(strategies()[name])
    pairs = zip(model.balancing.variables, initial.balancing.variables, strict=True)
    moved = [not np.allclose(keras.ops.convert_to_numpy(v), keras.ops.convert_to_numpy(v0)) for v, v0 in pairs]
    assert all(moved) if name == "UncertaintyWeighting" else (any(moved) or not moved), name


if __name__ == "__main__":
    train_main(sys.argv[1])
