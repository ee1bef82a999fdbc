"""Resumable training: BackupAndRestore with a MultiTaskModel survives SIGKILL.

``keras.callbacks.BackupAndRestore(save_freq="epoch")`` saves the weights
(optimizer state included) and then ``{"epoch": e + 1}`` in its
``on_epoch_end``; a restarted ``fit`` restores both in ``on_train_begin`` and
begins at epoch ``e + 1``. The epoch log below is a callback placed *after*
BackupAndRestore, so an epoch that appears in the log has its backup on
disk, and a process killed while training the next epoch resumes exactly
at the epoch after the last one logged: no epoch is lost or repeated.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

EPOCHS = 8
STEPS = 4  # 64 examples, batch 16
KILL_AFTER = 3  # kill once this epoch is logged

TRAIN_SCRIPT = textwrap.dedent('''
    """Trains a tiny MultiTaskModel with BackupAndRestore; logs every epoch."""
    import os
    import sys
    import time

    import keras
    import numpy as np

    import keras_mtl as kmtl

    EPOCHS = 8


    def build_and_data():
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
        model.compile(optimizer=keras.optimizers.Adam(0.01))
        return model, kmtl.data.from_arrays(x, labels, model, batch_size=16, shuffle=False)


    class EpochLog(keras.callbacks.Callback):
        """Appends "epoch <n> <optimizer iterations>" at each epoch end."""

        def __init__(self, path, batch_seconds):
            super().__init__()
            self.path, self.batch_seconds = path, batch_seconds

        def _write(self, line):
            with open(self.path, "a") as f:
                f.write(line + "\\n")
                f.flush()
                os.fsync(f.fileno())

        def on_train_begin(self, logs=None):
            self._write(f"start {int(self.model.optimizer.iterations.numpy())}")

        def on_train_batch_end(self, batch, logs=None):
            time.sleep(self.batch_seconds)  # a slow epoch that leaves the CPU free

        def on_epoch_end(self, epoch, logs=None):
            self._write(f"epoch {epoch} {int(self.model.optimizer.iterations.numpy())}")


    if __name__ == "__main__":
        work = sys.argv[1]
        model, train = build_and_data()
        callbacks = [keras.callbacks.BackupAndRestore(os.path.join(work, "backup"), save_freq="epoch"),
                     EpochLog(os.path.join(work, "epochs.log"), batch_seconds=0.1)]
        model.fit(train, epochs=EPOCHS, callbacks=callbacks, verbose=0, shuffle=False)
        np.savez(os.path.join(work, "final.npz"), *model.get_weights())
''')


def read_log(path):
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines()]


def logged_epochs(lines):
    return [int(line[1]) for line in lines if line[0] == "epoch"]


def test_training_killed_mid_run_resumes_where_it_stopped(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    command = [sys.executable, str(script), str(tmp_path)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = tmp_path / "epochs.log"

    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while KILL_AFTER not in logged_epochs(read_log(log)):
            if first.poll() is not None:
                pytest.fail(f"training exited early: {first.stderr.read().decode()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("training logged no epoch within 60 s")
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == -signal.SIGKILL

    before = read_log(log)
    killed = logged_epochs(before)
    last = killed[-1]
    assert killed == list(range(last + 1)) and KILL_AFTER <= last < EPOCHS - 1  # killed mid-run
    assert not (tmp_path / "final.npz").exists()
    metadata = json.loads((tmp_path / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == last + 1  # the backup holds every logged epoch

    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = read_log(log)[len(before):]
    # The restarted run begins with the optimizer state of the last backup:
    # its iteration count continues (not reset to 0, not the killed run's
    # mid-epoch count) and the first epoch it trains is the one after `last`.
    assert resumed[0] == ["start", str((last + 1) * STEPS)]
    assert logged_epochs(resumed) == list(range(last + 1, EPOCHS))
    assert logged_epochs(before + resumed) == list(range(EPOCHS))  # every epoch exactly once
    for line in before + resumed:
        if line[0] == "epoch":
            assert int(line[2]) == (int(line[1]) + 1) * STEPS, line
    assert not (tmp_path / "backup").exists()  # removed once training completed

    final = np.load(tmp_path / "final.npz")
    weights = [final[f"arr_{i}"] for i in range(len(final.files))]
    assert all(np.all(np.isfinite(w)) for w in weights)

    # Same data order, no dropout: the interrupted run ends where an
    # uninterrupted one does (weights and Adam moments were both restored).
    spec = importlib.util.spec_from_file_location("resume_train", script)
    train_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_module)
    model, train = train_module.build_and_data()
    model.fit(train, epochs=EPOCHS, verbose=0, shuffle=False)
    assert int(model.optimizer.iterations.numpy()) == EPOCHS * STEPS
    for got, want in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
