"""The street-scenes demo: one CNN, four object tasks, half the labels missing.

``keras-mtl demo`` runs :func:`run_demo`: it draws the street-scenes data,
trains a small CNN trunk with four binary heads under the masked loss, reports
per-task test AUC and accuracy, and writes metrics, history, plots and a
SavedModel to the output directory.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

from keras_mtl import data, plotting
from keras_mtl.datasets.street_scenes import OBJECT_TASKS, generate_street_scenes
from keras_mtl.export import export_saved_model
from keras_mtl.model import MultiTaskModel
from keras_mtl.tasks import Task

__all__ = ["MEASURED_SECONDS", "SIZES", "build_street_model", "expected_duration", "run_demo"]

# Examples per split, default epochs, trunk channels and per-task loss weights.
# Drawing scenes costs far less than training on them, so the full run sees
# many scenes a few times each: with the same compute, 24,000 scenes × 4
# epochs beat 8,000 × 10 by 0.03–0.05 test AUC on pedestrians (the hardest
# object). The full run pools before normalising (1.7x less training CPU,
# test AUCs within 0.004 of the classic block); the small one keeps the
# classic block, on which its few scenes teach the pedestrian more (test AUC
# 0.58 against 0.54 with seed 0). The full run has 16/48/48 channels (a step
# about 0.8x the time of 24/48/48) and weights the pedestrian's loss 2x: with
# equal weights it lagged on some seeds, and with the weight every object kept
# test AUC >= 0.95 on seeds 0-2 (README, "The demo", lists the variants measured).
SIZES = {
    "small": {"train": 3000, "validation": 300, "test": 500, "epochs": 3, "width": 16, "pool_first": False,
              "multipliers": (1, 2, 4), "loss_weights": {}},
    "full": {"train": 24000, "validation": 1000, "test": 2000, "epochs": 4, "width": 16, "pool_first": True,
             "multipliers": (1, 3, 3), "loss_weights": {"pedestrian": 2.0}},
}


# Wall seconds of one whole run (default settings) on a 2-core machine, and that machine's TensorFlow
# 2048³ float32 matmul rate in GFLOP/s at the time (benchmarks/demo.py measures both; the small run
# on 2026-12-06 shared the machine with other jobs, load average 11). Time scales roughly as 1 / rate.
MEASURED_SECONDS = {"full": (355.0, 81.0), "small": (248.0, 16.0)}


def expected_duration(size: str = "full") -> str:
    """What the demo prints before it starts: how long a run takes on a 2-core machine.

    Both sizes are stated at the full run's matmul rate (the small run's
    measurement scaled by the rates, beside the measurement itself).

    Args:
        size: ``"full"`` or ``"small"``.

    Returns:
        One or two sentences; for ``"full"`` they suggest ``--size small``.

    Example:
        >>> print(expected_duration("small"))  # doctest: +ELLIPSIS
        A small run takes about ... s on a 2-core machine whose TensorFlow matmul runs at ... GFLOP/s (measured: ...).
    """
    if size not in MEASURED_SECONDS:
        raise ValueError(f"size={size!r}: choose 'small' or 'full'.")
    full_seconds, rate = MEASURED_SECONDS["full"]
    machine = f"on a 2-core machine whose TensorFlow matmul runs at {rate:.0f} GFLOP/s"
    seconds, measured_rate = MEASURED_SECONDS["small"]
    small = round(seconds * measured_rate / rate, -1)
    if size == "small":
        return (f"A small run takes about {small:.0f} s {machine} "
                f"(measured: {seconds:.0f} s at {measured_rate:.0f} GFLOP/s).")
    return (f"A full run took {full_seconds:.0f} s {machine}; faster machines take less.\n"
            f"For a first look, --size small (run_demo(size='small')) takes about {small:.0f} s there.")


def build_street_model(image_size: int = 64, tasks=None, width: int = 16,
                       pool_first: bool = False, multipliers: tuple = (1, 2, 4)) -> MultiTaskModel:
    """A small CNN trunk with one binary head per street object.

    Three convolution blocks (``width·m`` channels for each ``m`` of
    ``multipliers``, by default ``width``, ``2·width``, ``4·width``; batch
    normalisation, ReLU, max pooling), global max pooling and a shared
    ``Dense(64)``; then one head per task.

    Args:
        image_size: image height and width.
        tasks: the tasks (default: one binary task per object).
        width: channels of the first convolution.
        pool_first: pool each block right after its convolution (convolution,
            max pooling, batch normalisation, ReLU). Max pooling commutes with
            ReLU and with any increasing affine map, so the block computes
            nearly the same function, but normalises a map a quarter the
            size; on a CPU, where Keras's batch normalisation is a chain of
            memory-bound element-wise passes, that trains 1.6× faster.
        multipliers: the three blocks' channels as multiples of ``width``.

    Returns:
        An uncompiled :class:`keras_mtl.MultiTaskModel` taking uint8-range
        float images of shape ``(image_size, image_size, 3)``.

    Example:
        >>> model = build_street_model(image_size=32, width=4)
        >>> model.task_names, model.input_shape
        (['pedestrian', 'car', 'stop_sign', 'traffic_light'], (None, 32, 32, 3))
    """
    tasks = tasks or [Task(name) for name in OBJECT_TASKS]
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    if len(multipliers) != 3 or any(int(m) != m or m < 1 for m in multipliers):
        raise ValueError(f"multipliers={multipliers!r}: give three positive ints, one per convolution block.")
    for i, channels in enumerate(width * int(m) for m in multipliers):
        x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
        pool = keras.layers.MaxPooling2D(name=f"pool{i + 1}")
        x = pool(x) if pool_first else x
        # momentum 0.9: moving statistics that settle within a short (small) run.
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"norm{i + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
        x = x if pool_first else pool(x)
    x = keras.layers.GlobalMaxPooling2D(name="global_pool")(x)
    features = keras.layers.Dense(64, activation="relu", name="shared")(x)
    return MultiTaskModel(inputs, features, tasks, name="street_scenes_cnn")


def _fit_verbosity(verbose, stream=None):
    """Keras's ``verbose`` for ``fit``: ``"auto"`` is 1 (progress bars) on a terminal, else 2 (a line an epoch)."""
    if verbose != "auto":
        return verbose
    stream = sys.stdout if stream is None else stream
    return 1 if getattr(stream, "isatty", lambda: False)() else 2


def _tasks(size: str) -> list[Task]:
    """One binary task per object, with the loss weights of ``SIZES[size]``."""
    weights = SIZES[size]["loss_weights"]
    return [Task(name, loss_weight=weights.get(name, 1.0)) for name in OBJECT_TASKS]


def _test_table(result: dict, labelled: dict) -> str:
    lines = [f"{'task':<15}{'test AUC':>10}{'accuracy':>10}{'labelled':>10}"]
    for name in OBJECT_TASKS:
        lines.append(f"{name:<15}{result[f'{name}_auc']:>10.4f}"
                     f"{result[f'{name}_accuracy']:>10.4f}{labelled[name]:>10d}")
    return "\n".join(lines)


def run_demo(output="mtl_demo", epochs: int | None = None, size: str = "full",
             missing: float = 0.5, seed: int = 0, verbose: int | str = "auto") -> dict:
    """Trains and evaluates the street-scenes model; writes its artefacts.

    Args:
        output: directory for ``metrics.json``, ``history.json``, the PNG
            plots and ``saved_model/1``.
        epochs: training epochs (default: 4 for ``full``, 3 for ``small``).
        size: ``"full"`` (24,000 training images, 16/48/48 channels, the
            pedestrian's loss weighted 2×) or ``"small"`` (3,000, 16/32/64,
            equal weights).
        missing: share of training/validation labels hidden ("?"), uniformly
            at random; the test split is fully labelled.
        seed: seed for data and weights.
        verbose: Keras verbosity of training: 1 shows progress bars, 2 one
            line per epoch, 0 only the summary; ``"auto"`` is 1 when standard
            output is a terminal and 2 otherwise, so that a log file gets no
            progress-bar rewrites.

    Returns:
        The per-task test metrics (also written to ``metrics.json``).
    """
    if size not in SIZES:
        raise ValueError(f"size={size!r}: choose 'small' or 'full'.")
    if not 0.0 <= missing < 1.0:
        raise ValueError(f"missing={missing!r} must be in [0, 1): the share of labels hidden.")
    sizes = SIZES[size]
    epochs = sizes["epochs"] if epochs is None else epochs
    if epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be at least 1.")
    verbose = _fit_verbosity(verbose)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    phases = {}  # wall seconds per phase, written to metrics.json

    def lap(phase):
        phases[phase] = round(time.perf_counter() - started - sum(phases.values()), 2)

    print(expected_duration(size))
    print(f"Drawing street scenes ({size}: {sizes['train']} train, {sizes['validation']} "
        f"validation, {sizes['test']} test; {missing:.0%} of train/validation labels missing)…")
    splits = {}
    for offset, split in enumerate(("train", "validation", "test")):
        hidden = 0.0 if split == "test" else missing
        images, labels = generate_street_scenes(sizes[split], seed=seed * 3 + offset,
                                                missing="uniform", missing_fraction=hidden)
        splits[split] = (images, {name: labels[name] for name in OBJECT_TASKS})
    lap("draw")

    keras.utils.set_random_seed(seed)
    model = build_street_model(tasks=_tasks(size), width=sizes["width"], pool_first=sizes["pool_first"],
                               multipliers=sizes["multipliers"])
    batch_size = 64
    steps = -(-sizes["train"] // batch_size) * epochs
    # Cosine decay to 5 % of the initial rate: the last epochs refine rather than jump.
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule))
    train = data.from_arrays(*splits["train"], model, batch_size=batch_size, shuffle=True, seed=seed)
    val = data.from_arrays(*splits["validation"], model, batch_size=256)
    test = data.from_arrays(*splits["test"], model, batch_size=256)
    lap("build")
    epoch_ends = []  # wall clock at each epoch's end (training and validation)
    clock = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: epoch_ends.append(time.perf_counter()))
    fit_started = time.perf_counter()
    # The pipeline shuffles itself; shuffle=False keeps Keras from warning about it.
    history = model.fit(train, validation_data=val, epochs=epochs, verbose=verbose, shuffle=False,
                        callbacks=[clock])
    lap("train")
    epoch_seconds = [round(b - a, 2) for a, b in zip([fit_started, *epoch_ends], epoch_ends)]
    result = model.evaluate(test, return_dict=True, verbose=0)
    lap("evaluate")
    test_labels = splits["test"][1]
    labelled = {name: int(np.sum(~np.isnan(test_labels[name]))) for name in OBJECT_TASKS}
    metrics = {name: {"auc": float(result[f"{name}_auc"]),
                      "accuracy": float(result[f"{name}_accuracy"]),
                      "labelled": labelled[name]} for name in OBJECT_TASKS}
    print("\nTest split (every label known):\n" + _test_table(result, labelled))

    (out / "history.json").write_text(json.dumps(
        {k: [float(v) for v in vs] for k, vs in history.history.items()}, indent=2))
    plotting.plot_history(history, OBJECT_TASKS, "auc", path=out / "learning_curves.png")
    plotting.plot_label_matrix(splits["train"][1], OBJECT_TASKS, path=out / "label_matrix.png")
    test_images = splits["test"][0][:12]
    plotting.plot_predictions(test_images, {k: v[:12] for k, v in test_labels.items()},
                              model.predict(test_images, verbose=0), OBJECT_TASKS,
                              path=out / "predictions.png")
    lap("plots")
    saved = export_saved_model(model, out / "saved_model" / "1", overwrite=True)
    lap("export")
    seconds = time.perf_counter() - started
    (out / "metrics.json").write_text(json.dumps(
        {"tasks": metrics, "test_loss": float(result["loss"]), "epochs": epochs, "size": size,
         "missing_fraction": missing, "seed": seed, "seconds": round(seconds, 1),
         "phase_seconds": phases, "epoch_seconds": epoch_seconds}, indent=2))
    print(f"\nWrote {out}/metrics.json, history.json, learning_curves.png, label_matrix.png, "
        f"predictions.png and the SavedModel {saved} ({seconds:.0f} s).")
    return metrics
