"""Whether tf.data's autotuning still delays the end of Keras epochs, on each backend.

``python benchmarks/tfdata_tail.py [--backends tensorflow,jax,torch] [--quick]``

``kmtl.data.from_arrays`` turns tf.data's autotuning off because, under the
PyTorch and JAX backends, an epoch's last step could wait for tf.data's
tuning thread (``keras_mtl/data.py``, ``_without_autotune``). This script
tells whether a TensorFlow release still does: a plain Keras model (256
inputs → ``Dense(256, relu)`` → ``Dense(1000)`` logits) trains on a
``from_tensor_slices(...).shuffle(...).batch(256).prefetch(AUTOTUNE)``
pipeline of 32,768 examples, alternately with autotuning on and off, and
each epoch's *tail* — from the end of its last step to the end of the
epoch — is timed. Tails of a few milliseconds both ways mean the workaround
can go. Nothing is asserted; the matmul rate is printed for scale.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")


def _worker(examples: int, rounds: int, epochs: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf
    from harness import matmul_gflops

    class Tails(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.tails, self.epochs = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.tails.append(now - self.last)
            self.epochs.append(now - self.start)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((examples, 256), dtype=np.float32)
    y = (rng.random((examples, 1000)) > 0.5).astype(np.float32)
    inputs = keras.Input((256,))
    hidden = keras.layers.Dense(256, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1000)(hidden))
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=True))
    found = {True: Tails(), False: Tails()}
    for _ in range(rounds):
        for autotune in (True, False):
            data = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(examples, seed=0).batch(256)
                    .prefetch(tf.data.AUTOTUNE))
            if not autotune:
                options = tf.data.Options()
                options.autotune.enabled = False
                data = data.with_options(options)
            model.fit(data, epochs=epochs, verbose=0, callbacks=[found[autotune]])
    gflops = matmul_gflops(2048, 1)[0]
    for autotune, tails in found.items():
        ms = [1000 * t for t in tails.tails]
        print(f"  {keras.backend.backend():<10} autotune {'on ' if autotune else 'off'}: epoch tails median "
              f"{statistics.median(ms):7.1f} ms, max {max(ms):7.1f} ms; epochs {min(tails.epochs):.2f}–"
              f"{max(tails.epochs):.2f} s; matmul {gflops:.0f} GFLOP/s", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated Keras backends")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, times mean nothing")
    parser.add_argument("--worker", nargs=3, type=int, help=argparse.SUPPRESS)  # examples, rounds, epochs
    args = parser.parse_args(argv)
    if args.worker:
        _worker(*args.worker)
        return 0
    unknown = sorted(set(args.backends.split(",")) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
    sizes = ["512", "1", "2"] if args.quick else ["32768", "2", "3"]
    for backend in args.backends.split(","):
        done = subprocess.run([sys.executable, __file__, "--worker", *sizes],
                              env={**os.environ, "KERAS_BACKEND": backend}, cwd=os.path.dirname(__file__))
        if done.returncode != 0:
            print(f"{backend}: the worker failed (exit {done.returncode})", file=sys.stderr)
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
