"""Small text helpers shared by the renderers of ``benchmarks/prose.py``."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# How every page names the Keras backends (the keys are KERAS_BACKEND's values).
BACKEND_NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


def strategy_cost(name: str) -> str | None:
    """What a balancing strategy costs per step, from its class (``None`` for a name that is no strategy).

    ``"losses"`` for a loss weighting (Keras's own training step), ``"per-task
    gradients"`` for a strategy that differentiates every task's loss with
    respect to every shared parameter, and ``"per-task gradients, last shared
    kernel only"`` for one that needs them for the last shared kernel only
    (``Balancer.gradient_scope`` is ``None``, ``"shared"`` or ``"last_shared"``).
    """
    from keras_mtl import balancing

    strategy = getattr(balancing, name, None)
    if not (isinstance(strategy, type) and issubclass(strategy, balancing.Balancer)):
        return None
    scope = strategy.gradient_scope
    if scope is None:
        return "losses"
    return "per-task gradients" if scope == "shared" else "per-task gradients, last shared kernel only"


def load(name: str = "backends") -> dict:
    """A result file of ``benchmarks/results``."""
    with open(RESULTS / f"{name}.json") as f:
        return json.load(f)


def times(values: list[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def wrap(text: str, width: int = 78, indent: str = "") -> str:
    """Breaks a paragraph at spaces (never inside a backtick span) into lines of about ``width``."""
    lines, line, ticks = [], "", 0
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width and ticks % 2 == 0:
            lines.append(line)
            line = indent + word
        else:
            line = f"{line} {word}" if line else word
        ticks += word.count("`")
    return "\n".join([*lines, line])


def span(values, fmt: str = "{:.2f}", unit: str = "") -> str:
    """``"1.1–6.6×"`` from the smallest and largest of ``values`` (one figure when they agree)."""
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return f"{low}{unit}" if low == high else f"{low}–{high}{unit}"


def bullets(items: list[str]) -> str:
    """A Markdown list, each item wrapped with a hanging indent."""
    return "\n".join(wrap(f"- {item}", indent="  ") for item in items)
