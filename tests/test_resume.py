"""Resumable training: BackupAndRestore with a MultiTaskModel survives SIGKILL.

``keras.callbacks.BackupAndRestore(save_freq="epoch")`` saves, in its
``on_epoch_end``, the model's weights (optimizer and balancing-strategy
variables included) and then ``{"epoch": e + 1}``; a restarted ``fit``
restores both in ``on_train_begin`` and begins at epoch ``e + 1``. Work done
in an epoch that had not ended is lost and redone. The epoch log here is a
callback placed *after* BackupAndRestore, so an epoch in the log has its
backup on disk; the kill lands while a later epoch trains, so the restarted
run begins exactly at the epoch after the last one logged.
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


    BALANCING = {"fixed": lambda: None, "uncertainty": kmtl.balancing.UncertaintyWeighting,
                 "dwa": kmtl.balancing.DWA}


    def build_and_data(balancing="fixed"):
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
        model.compile(optimizer=keras.optimizers.Adam(0.01), balancing=BALANCING[balancing]())
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
        work, balancing = sys.argv[1:3]
        model, train = build_and_data(balancing)
        callbacks = [keras.callbacks.BackupAndRestore(os.path.join(work, "backup"), save_freq="epoch"),
                     EpochLog(os.path.join(work, "epochs.log"), batch_seconds=0.08)]
        model.fit(train, epochs=EPOCHS, callbacks=callbacks, verbose=0, shuffle=False)
        state = model.get_weights() + [v.numpy() for v in model.balancing.variables]
        np.savez(os.path.join(work, "final.npz"), *state)
''')


def read_log(path):
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines()]


def logged_epochs(lines):
    return [int(line[1]) for line in lines if line[0] == "epoch"]


class Run:
    """One training job: its directory, command and epoch log."""

    def __init__(self, root, script, balancing):
        self.balancing = balancing
        self.work = root / balancing
        self.work.mkdir()
        self.command = [sys.executable, str(script), str(self.work), balancing]
        self.log = self.work / "epochs.log"

    def start(self):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        return subprocess.Popen(self.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_after_epoch(runs, epoch, timeout=90):
    """Starts every run; SIGKILLs each one as soon as its log shows ``epoch``."""
    procs = {run.balancing: run.start() for run in runs}
    deadline = time.monotonic() + timeout
    try:
        while any(p.returncode is None for p in procs.values()):
            for run in runs:
                proc = procs[run.balancing]
                if proc.returncode is not None:
                    continue
                if epoch in logged_epochs(read_log(run.log)):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                elif proc.poll() is not None:
                    pytest.fail(f"{run.balancing}: training exited before it was killed: "
                                f"{proc.stderr.read().decode()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"training did not reach epoch {epoch} within {timeout} s")
            time.sleep(0.01)
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
    return {name: proc.returncode for name, proc in procs.items()}


def test_training_killed_mid_run_resumes_where_it_stopped(tmp_path):
    """Fixed weights, a strategy with trainable state, one with epoch state."""
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    runs = [Run(tmp_path, script, name) for name in ("fixed", "uncertainty", "dwa")]
    # The three jobs run side by side: their epochs mostly sleep.
    returncodes = kill_after_epoch(runs, KILL_AFTER)
    killed_logs = {}
    for run in runs:
        assert returncodes[run.balancing] == -signal.SIGKILL, run.balancing
        before = read_log(run.log)
        killed = logged_epochs(before)
        last = killed[-1]
        # killed mid-run, after every epoch up to `last` was logged once
        assert killed == list(range(last + 1)) and KILL_AFTER <= last < EPOCHS - 1, run.balancing
        assert not (run.work / "final.npz").exists()
        metadata = json.loads((run.work / "backup" / "training_metadata.json").read_text())
        assert metadata["epoch"] == last + 1, run.balancing  # the backup holds every logged epoch
        killed_logs[run.balancing] = before

    restarted = {run.balancing: run.start() for run in runs}  # the same commands again
    for run in runs:
        proc = restarted[run.balancing]
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{run.balancing}: {stderr.decode()[-3000:]}"

    spec = importlib.util.spec_from_file_location("resume_train", script)
    train_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_module)
    for run in runs:
        before = killed_logs[run.balancing]
        last = logged_epochs(before)[-1]
        resumed = read_log(run.log)[len(before):]
        # The restarted run begins with the optimizer state of the last backup:
        # its iteration count continues (not reset to 0, not the killed run's
        # mid-epoch count) and the first epoch it trains is the one after `last`.
        assert resumed[0] == ["start", str((last + 1) * STEPS)], run.balancing
        assert logged_epochs(resumed) == list(range(last + 1, EPOCHS)), run.balancing
        assert logged_epochs(before + resumed) == list(range(EPOCHS))  # every epoch exactly once
        for line in before + resumed:
            if line[0] == "epoch":
                assert int(line[2]) == (int(line[1]) + 1) * STEPS, (run.balancing, line)
        assert not (run.work / "backup").exists()  # removed once training completed

        final = np.load(run.work / "final.npz")
        state = [final[f"arr_{i}"] for i in range(len(final.files))]
        assert all(np.all(np.isfinite(w)) for w in state), run.balancing

        # Same data order, no dropout: the interrupted run ends where an
        # uninterrupted one does (weights, Adam moments and the strategy's
        # variables were all restored).
        model, train = train_module.build_and_data(run.balancing)
        model.fit(train, epochs=EPOCHS, verbose=0, shuffle=False)
        assert int(model.optimizer.iterations.numpy()) == EPOCHS * STEPS
        reference = model.get_weights() + [v.numpy() for v in model.balancing.variables]
        assert len(state) == len(reference), run.balancing
        for got, want in zip(state, reference, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=run.balancing)
