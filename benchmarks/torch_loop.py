"""A plain PyTorch training loop for the benchmark MLP (no Keras).

The same network as the Keras rows — 784 → Dense(512, relu) →
Dense(256, relu) → one ``Linear(256, 1)`` head per task — trained with
``torch.optim.Adam`` (Keras's defaults: learning rate 0.001, epsilon 1e-7)
on the same data and batch size, in eager mode. The loss is the masked
logistic loss written out by hand, as a PyTorch user would: missing labels
get weight 0 and the sum is divided by the batch size. No metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = ["TorchRun", "train"]


@dataclass
class TorchRun:
    """What :func:`train` measured.

    Attributes:
        epoch_ends: ``time.perf_counter()`` at the start, then after each epoch.
        steps: per epoch, ``time.perf_counter()`` after every step.
        loss: mean training loss of each epoch.
        threads: ``torch.get_num_threads()``.
    """

    epoch_ends: list[float] = field(default_factory=list)
    steps: list[list[float]] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    threads: int = 0


def _network(input_dim: int, hidden: tuple[int, ...], tasks: int) -> tuple[nn.Module, nn.ModuleList]:
    layers, width = [], input_dim
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    return nn.Sequential(*layers), nn.ModuleList(nn.Linear(width, 1) for _ in range(tasks))


def train(x: np.ndarray, y: np.ndarray, missing: np.ndarray, hidden: tuple[int, ...], batch_size: int,
          epochs: int, seed: int = 0) -> TorchRun:
    """Trains the MLP with one head per column of ``y``.

    Args:
        x: inputs, ``(n, input_dim)`` float32.
        y: labels in {0, 1}, ``(n, tasks)``.
        missing: ``True`` where a label is missing, ``(n, tasks)``.
        hidden: units of the trunk's relu layers.
        batch_size: examples per step.
        epochs: passes over the data, each in a new random order.
        seed: seed of the weights and of the order.

    Returns:
        The :class:`TorchRun` of step and epoch times.
    """
    torch.manual_seed(seed)
    trunk, heads = _network(x.shape[1], hidden, y.shape[1])
    optimizer = torch.optim.Adam([*trunk.parameters(), *heads.parameters()], lr=1e-3, eps=1e-7)
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    labels = torch.from_numpy(np.where(missing, 0.0, y).astype(np.float32))
    weights = torch.from_numpy((~missing).astype(np.float32))
    n = len(inputs)
    run = TorchRun(epoch_ends=[time.perf_counter()], threads=torch.get_num_threads())
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
            total += loss.item()
            stamps.append(time.perf_counter())
        run.steps.append(stamps)
        run.loss.append(total / len(stamps))
        run.epoch_ends.append(time.perf_counter())
    return run
