"""One network for k tasks vs k separate networks, measured.

:func:`compare` trains, for every seed, one single-task network per task and
one multi-task network on the same data with the same trunk architecture,
epochs and batch size, evaluates all of them on the same test data, and
returns a tidy table with the relative change per task.

One sign convention throughout: **a positive change means the multi-task
network is better**, for every metric (a higher AUC, a lower MAE) and for the
mean over the tasks. The multi-task literature reports Δm with the opposite
sign (negative is better); :func:`delta_m` computes that figure for papers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from keras_mtl import data as data_lib
from keras_mtl.model import MultiTaskModel
from keras_mtl.tasks import Task, check_tasks

__all__ = ["CompareResult", "compare", "default_metric", "delta_m", "mean_change"]


def default_metric(task: Task) -> str:
    """The headline metric of a task, its kind's first default: AUC, accuracy, MAE, …

    Example:
        >>> default_metric(Task("car")), default_metric(Task("price", kind="regression"))
        ('auc', 'mae')
    """
    return task.kind.headline_metric


def mean_change(rows) -> float:
    """The mean relative change of the multi-task network against single-task, in %; + is better.

    ``100 · mean(relative_change)`` over the rows, whose ``relative_change``
    is already signed so that positive means "the multi-task network is
    better" (a higher AUC or accuracy, a lower MAE). It is :func:`delta_m`
    with the sign flipped, so that :class:`CompareResult` speaks one
    convention everywhere.

    Args:
        rows: :attr:`CompareResult.rows` (dicts with ``relative_change``).

    Returns:
        The mean change in %, or NaN for no rows.

    Example:
        >>> rows = [{"relative_change": 0.10}, {"relative_change": -0.04}]   # +10 %, −4 %
        >>> round(mean_change(rows), 6)      # multi-task better on average
        3.0
    """
    changes = [r["relative_change"] for r in rows]
    return 100.0 * float(np.mean(changes)) if changes else math.nan


def delta_m(rows) -> float:
    """Δm as the multi-task literature reports it, in %: **negative** means the multi-task network is better.

    ::

        Δm = (100 / T) · Σ_i (−1)^{l_i} · (M_multi,i − M_single,i) / M_single,i

    with ``l_i = 1`` when a larger value of task ``i``'s metric is better
    (AUC, accuracy) and 0 when smaller is (MAE): **negative Δm means the
    multi-task network is better on average**, the convention of the
    multi-task literature, opposite to the rest of this module (use it to
    compare with published numbers; :func:`mean_change` is the same figure
    with + for better). ``rows`` are :attr:`CompareResult.rows`, whose
    ``relative_change`` already carries the direction (positive = better),
    so ``Δm = −100 · mean(relative_change) = −mean_change(rows)``.

    Args:
        rows: :attr:`CompareResult.rows` (dicts with ``relative_change``).

    Returns:
        Δm in %, or NaN for no rows.

    Example:
        >>> rows = [{"relative_change": 0.10}, {"relative_change": -0.04}]   # +10 %, −4 %
        >>> round(delta_m(rows), 6)
        -3.0

    References:
        Maninis, K.-K., Radosavovic, I., Kokkinos, I. (2019). Attentive
        Single-Tasking of Multiple Tasks. CVPR.
    """
    return -mean_change(rows)


@dataclass
class CompareResult:
    """The outcome of :func:`compare`; every change in it is positive when the multi-task network is better.

    Example:
        >>> result = CompareResult([
        ...     {"task": "car", "metric": "auc", "single": 0.80, "multi": 0.84, "single_std": 0.01,
        ...      "multi_std": 0.02, "relative_change": 0.05, "seeds": 3},
        ...     {"task": "price", "metric": "mae", "single": 2.0, "multi": 2.2, "single_std": 0.1,
        ...      "multi_std": 0.1, "relative_change": -0.10, "seeds": 3}])
        >>> round(result.mean_change, 6)     # (5 % − 10 %) / 2: single-task better on average
        -2.5

    Attributes:
        rows: one dict per task with ``task``, ``metric``, ``single``,
            ``multi`` (means over seeds), ``single_std``, ``multi_std``,
            ``relative_change`` (``(multi − single) / |single|``, sign flipped
            for error metrics so that positive always means "multi-task is
            better") and ``seeds``.
        mean_change: the mean of the rows' ``relative_change`` in %
            (:func:`mean_change`; positive: the multi-task network is better
            on average).
        delta_m: deprecated, the literature's Δm, ``−mean_change``
            (:func:`delta_m`); it warns.
        per_seed: the raw values, ``{(task, "single"|"multi"): [one per seed]}``.
        params: trainable parameter counts ``{"single": total over the k
            networks, "multi": …}`` (statistics such as a regression
            target's mean and std are not counted).
    """

    rows: list[dict]
    per_seed: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    def to_frame(self):
        """The rows as a ``pandas.DataFrame`` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    @property
    def mean_change(self) -> float:
        return mean_change(self.rows)

    @property
    def delta_m(self) -> float:
        warnings.warn("CompareResult.delta_m is deprecated: it is negative when the multi-task network "
                      "is better, the opposite of every other figure of compare. Use "
                      "CompareResult.mean_change (= -delta_m), or keras_mtl.comparison.delta_m(rows) "
                      "for the literature's Δm.", DeprecationWarning, stacklevel=2)
        return delta_m(self.rows)

    def __str__(self) -> str:
        lines = [f"{'task':<16}{'metric':<10}{'single':>16}{'multi':>16}{'change':>9}",
                 "(change: relative to the single-task network; + means the multi-task network is better)"]
        for r in self.rows:
            lines.append(
                f"{r['task']:<16}{r['metric']:<10}"
                f"{r['single']:>9.4f} ± {r['single_std']:<5.3f}{r['multi']:>9.4f} ± {r['multi_std']:<5.3f}"
                f"{r['relative_change']:>+8.1%}")
        lines.append(f"mean change = {self.mean_change:+.2f} % (+: the multi-task network is better)")
        lines.append(f"parameters: {self.params.get('single', 0):,} in {len(self.rows)} single-task "
                     f"networks vs {self.params.get('multi', 0):,} in one multi-task network")
        return "\n".join(lines)

    def plot(self, path=None):
        """Bar chart of single vs multi per task, with seed spread."""
        from keras_mtl.plotting import _pyplot, _save

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(1.6 * len(self.rows) + 2, 3.6))
        positions = np.arange(len(self.rows))
        for offset, setup, colour in ((-0.2, "single", "tab:gray"), (0.2, "multi", "tab:blue")):
            ax.bar(positions + offset, [r[setup] for r in self.rows], 0.38,
                   yerr=[r[f"{setup}_std"] for r in self.rows], capsize=3, color=colour,
                   label="separate networks" if setup == "single" else "one multi-task network")
        ax.set_xticks(positions, [f"{r['task']}\n({r['metric']})" for r in self.rows])
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"Test metric, mean ± std over {self.rows[0]['seeds']} seed(s)")
        fig.tight_layout()
        return _save(fig, path)


def _fit_and_score(model, tasks, x, labels, test_x, test_labels, epochs, batch_size, optimizer, seed):
    model.compile(optimizer=optimizer())
    train = data_lib.from_arrays(x, labels, tasks, batch_size, shuffle=True, seed=seed)
    model.fit(train, epochs=epochs, verbose=0)
    test = data_lib.from_arrays(test_x, test_labels, tasks, 512)
    return model.evaluate(test, return_dict=True, verbose=0)


def compare(build_trunk: Callable[[], tuple], tasks: Sequence[Task], x, labels: dict, test_x,
            test_labels: dict, *, epochs: int = 5, batch_size: int = 64,
            seeds: Sequence[int] = (0, 1, 2), optimizer: Callable | None = None,
            verbose: bool = True) -> CompareResult:
    """Trains k single-task networks and one multi-task network; compares them.

    Args:
        build_trunk: a function returning a fresh ``(inputs, features)`` pair
            (called once per network, after the seed is set).
        tasks: the tasks.
        x, labels: training inputs and ``{task: labels}`` (missing markers
            allowed).
        test_x, test_labels: test inputs and labels.
        epochs, batch_size: the training budget, the same for every network.
        seeds: seeds to repeat over.
        optimizer: a function returning a fresh optimizer (default Adam 1e-3).
        verbose: print one line per trained network.

    Returns:
        A :class:`CompareResult`.
    """
    tasks = check_tasks(tasks)
    optimizer = optimizer or (lambda: keras.optimizers.Adam(1e-3))
    per_seed: dict = {}
    params = {"single": 0, "multi": 0}
    for seed in seeds:
        for task in tasks:
            keras.utils.set_random_seed(seed)
            inputs, features = build_trunk()
            model = MultiTaskModel(inputs, features, [task])
            result = _fit_and_score(model, [task], x, {task.name: labels[task.name]}, test_x,
                                    {task.name: test_labels[task.name]}, epochs, batch_size,
                                    optimizer, seed)
            value = float(result[f"{task.name}_{default_metric(task)}"])
            per_seed.setdefault((task.name, "single"), []).append(value)
            if seed == seeds[0]:
                params["single"] += _trainable_count(model)
            if verbose:
                print(f"seed {seed}: single-task {task.name}: {default_metric(task)} {value:.4f}")
        keras.utils.set_random_seed(seed)
        inputs, features = build_trunk()
        model = MultiTaskModel(inputs, features, tasks)
        result = _fit_and_score(model, tasks, x, labels, test_x, test_labels, epochs, batch_size,
                                optimizer, seed)
        if seed == seeds[0]:
            params["multi"] = _trainable_count(model)
        for task in tasks:
            per_seed.setdefault((task.name, "multi"), []).append(
                float(result[f"{task.name}_{default_metric(task)}"]))
        if verbose:
            print(f"seed {seed}: multi-task: " + ", ".join(
                f"{t.name} {per_seed[(t.name, 'multi')][-1]:.4f}" for t in tasks))
    rows = []
    for task in tasks:
        metric = default_metric(task)
        single, multi = np.array(per_seed[(task.name, "single")]), np.array(per_seed[(task.name, "multi")])
        sign = 1.0 if task.kind.higher_is_better(metric) else -1.0
        base = abs(single.mean())
        change = sign * (multi.mean() - single.mean()) / base if base > 0 else math.nan
        rows.append({"task": task.name, "metric": metric, "single": float(single.mean()),
                     "multi": float(multi.mean()), "single_std": float(single.std()),
                     "multi_std": float(multi.std()), "relative_change": float(change),
                     "seeds": len(seeds)})
    return CompareResult(rows, per_seed, params)


def _trainable_count(model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))
