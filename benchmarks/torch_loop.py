"""A plain PyTorch training loop for the benchmark MLP (no Keras).

The same network as the Keras rows — 784 → Dense(512, relu) →
Dense(256, relu) → one ``Linear(256, 1)`` head per task — trained with
``torch.optim.Adam`` (Keras's defaults: learning rate 0.001, epsilon 1e-7)
on the same data and batch size, in eager mode. The loss is the masked
logistic loss written out by hand, as a PyTorch user would: missing labels
get weight 0 and the sum is divided by the batch size. With ``metrics``
(the default), every task's ROC AUC and accuracy are computed the way a
PyTorch user computes them, with ``torchmetrics``: ``MultilabelAUROC`` with
200 thresholds (the binned AUC of ``keras.metrics.AUC``) and
``MultilabelAccuracy``, both skipping missing labels through
``ignore_index=-1`` and built with ``validate_args=False`` (their fast
path); updated at every step, read at every epoch's end, as Keras reads
its metrics.

:func:`train_in_own_process` runs the loop in a fresh Python process that
imports NumPy and PyTorch only: with TensorFlow 2.21 loaded in the same
process, ``torch.optim``'s first step ends in a segmentation fault under
PyTorch 2.14.1 (plain ``SGD`` as well as ``Adam``), and the benchmark
process has TensorFlow loaded. ``python torch_loop.py DATA.npz OUT.json``
is that process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TorchRun", "main", "train", "train_in_own_process"]


@dataclass
class TorchRun:
    """What :func:`train` measured.

    Attributes:
        epoch_ends: ``time.perf_counter()`` at the start, then after each epoch.
        steps: per epoch, ``time.perf_counter()`` after every step.
        loss: mean training loss of each epoch.
        auc: mean over tasks of the ROC AUC of each epoch (empty without metrics).
        accuracy: mean over tasks of the accuracy of each epoch (empty without metrics).
        threads: ``torch.get_num_threads()``.
        version: ``torch.__version__``.
    """

    epoch_ends: list[float] = field(default_factory=list)
    steps: list[list[float]] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    auc: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    threads: int = 0
    version: str = ""


def _network(input_dim: int, hidden: tuple[int, ...], tasks: int):
    from torch import nn

    layers, width = [], input_dim
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    return nn.Sequential(*layers), nn.ModuleList(nn.Linear(width, 1) for _ in range(tasks))


def train(x: np.ndarray, y: np.ndarray, missing: np.ndarray, hidden: tuple[int, ...], batch_size: int,
          epochs: int, seed: int = 0, metrics: bool = True) -> TorchRun:
    """Trains the MLP with one head per column of ``y``.

    Args:
        x: inputs, ``(n, input_dim)`` float32.
        y: labels in {0, 1}, ``(n, tasks)``.
        missing: ``True`` where a label is missing, ``(n, tasks)``.
        hidden: units of the trunk's relu layers.
        batch_size: examples per step.
        epochs: passes over the data, each in a new random order.
        seed: seed of the weights and of the order.
        metrics: whether to compute every task's AUC and accuracy.

    Returns:
        The :class:`TorchRun` of step and epoch times.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    trunk, heads = _network(x.shape[1], hidden, y.shape[1])
    optimizer = torch.optim.Adam([*trunk.parameters(), *heads.parameters()], lr=1e-3, eps=1e-7)
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    labels = torch.from_numpy(np.where(missing, 0.0, y).astype(np.float32))
    weights = torch.from_numpy((~missing).astype(np.float32))
    targets = torch.from_numpy(np.where(missing, -1, y).astype(np.int64))  # torchmetrics skips −1
    scores = None
    if metrics:
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MultilabelAccuracy, MultilabelAUROC

        tasks = y.shape[1]
        scores = MetricCollection({
            "auc": MultilabelAUROC(tasks, thresholds=200, average=None, ignore_index=-1, validate_args=False),
            "accuracy": MultilabelAccuracy(tasks, average=None, ignore_index=-1, validate_args=False)})
    n = len(inputs)
    run = TorchRun(epoch_ends=[time.perf_counter()], threads=torch.get_num_threads(),
                   version=torch.__version__)
    for _ in range(epochs):
        order = torch.randperm(n)
        stamps, total = [], 0.0
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size]
            features = trunk(inputs[index])
            logits = torch.cat([head(features) for head in heads], dim=1)
            terms = nn.functional.binary_cross_entropy_with_logits(logits, labels[index], reduction="none")
            loss = (terms * weights[index]).sum() / len(index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scores is not None:
                scores.update(torch.sigmoid(logits.detach()), targets[index])
            total += loss.item()
            stamps.append(time.perf_counter())
        if scores is not None:
            read = scores.compute()
            run.auc.append(float(read["auc"].mean()))
            run.accuracy.append(float(read["accuracy"].mean()))
            scores.reset()
        run.steps.append(stamps)
        run.loss.append(total / len(stamps))
        run.epoch_ends.append(time.perf_counter())
    return run


def train_in_own_process(x: np.ndarray, y: np.ndarray, missing: np.ndarray, hidden: tuple[int, ...],
                         batch_size: int, epochs: int, seed: int = 0, metrics: bool = True,
                         timeout: float = 3600) -> TorchRun:
    """:func:`train` in a fresh process that loads no other framework; same arguments.

    Raises:
        RuntimeError: if that process fails, with the end of what it printed.
    """
    with tempfile.TemporaryDirectory() as folder:
        data, out = os.path.join(folder, "data.npz"), os.path.join(folder, "run.json")
        np.savez(data, x=x, y=y, missing=missing)
        command = [sys.executable, os.path.abspath(__file__), data, out, "--hidden", *map(str, hidden),
                   "--batch-size", str(batch_size), "--epochs", str(epochs), "--seed", str(seed),
                   *([] if metrics else ["--no-metrics"])]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"The plain PyTorch loop failed (exit status {done.returncode}):\n"
                               f"{done.stderr[-3000:]}")
        with open(out) as f:
            return TorchRun(**json.load(f))


def main(argv: list[str] | None = None) -> int:
    """``python torch_loop.py DATA.npz OUT.json [--hidden ...]``: trains, writes the :class:`TorchRun`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help=".npz with arrays x, y and missing")
    parser.add_argument("output", help="where the TorchRun goes, as JSON")
    parser.add_argument("--hidden", type=int, nargs="+", required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-metrics", action="store_true", help="skip the AUC and accuracy")
    args = parser.parse_args(argv)
    arrays = np.load(args.data)
    run = train(arrays["x"], arrays["y"], arrays["missing"], tuple(args.hidden), args.batch_size, args.epochs,
                args.seed, metrics=not args.no_metrics)
    with open(args.output, "w") as f:
        json.dump(dataclasses.asdict(run), f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
