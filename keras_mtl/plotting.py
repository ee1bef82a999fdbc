"""Matplotlib figures for multi-task training (matplotlib imported lazily).

Every function returns a ``matplotlib.figure.Figure``; pass ``path`` to
also save it as PNG.
"""

from __future__ import annotations

import html
import math

import numpy as np

__all__ = [
    "plot_history",
    "plot_label_matrix",
    "plot_model",
    "plot_predictions",
    "plot_scenes",
    "plot_sharing",
    "plot_task_metrics",
    "plot_task_weights",
]


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        try:
            import IPython  # noqa: F401  # inside a notebook, keep its backend
        except ImportError:
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def plot_history(history, task_names, metric: str = "auc", path=None):
    """Per-task learning curves: loss and one metric, train and validation.

    Args:
        history: a ``keras.callbacks.History`` or its ``.history`` dict.
        task_names: tasks to plot.
        metric: metric suffix to plot beside the loss (``"auc"``,
            ``"accuracy"``, ``"mae"``); tasks without it show the loss only.
        path: optional PNG path.

    Returns:
        The figure: one column per task, loss on top, metric below.
    """
    plt = _pyplot()
    logs = getattr(history, "history", history)
    names = list(task_names)
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 5.5), squeeze=False)
    for col, name in enumerate(names):
        for row, key in enumerate((f"{name}_loss", f"{name}_{metric}")):
            ax = axes[row][col]
            for prefix, style in (("", "-"), ("val_", "--")):
                values = logs.get(prefix + key)
                if values:
                    epochs = np.arange(1, len(values) + 1)
                    ax.plot(epochs, values, style, marker="o", ms=3,
                            label="validation" if prefix else "train")
            ax.set_title(key, fontsize=10)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_label_matrix(labels: dict, task_names, num_examples: int = 24, path=None):
    """The label matrix: examples × tasks, missing entries shown as "?".

    Args:
        labels: ``{task: array}`` of binary labels with ``NaN`` or ``-1``
            for missing.
        task_names: tasks (rows of the matrix).
        num_examples: how many examples (columns) to show.
        path: optional PNG path.
    """
    plt = _pyplot()
    names = list(task_names)
    matrix = np.stack([np.asarray(labels[n], dtype=float)[:num_examples] for n in names])
    missing = np.isnan(matrix) | (matrix == -1)
    shown = np.where(missing, 0.5, matrix)
    fig, ax = plt.subplots(figsize=(0.38 * matrix.shape[1] + 2, 0.5 * len(names) + 1.2))
    ax.imshow(shown, cmap="Greys", vmin=-0.3, vmax=1.3, aspect="auto")
    for (row, col), value in np.ndenumerate(matrix):
        text = "?" if missing[row, col] else str(int(value))
        ax.text(col, row, text, ha="center", va="center", fontsize=9,
                color="tab:red" if missing[row, col] else ("white" if value > 0.5 else "black"))
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks(range(matrix.shape[1]), [str(i + 1) for i in range(matrix.shape[1])], fontsize=7)
    ax.set_xlabel("example i")
    share = missing.mean()
    ax.set_title(f"Label matrix Y (tasks × examples); '?' = missing ({share:.0%} of shown entries)")
    fig.tight_layout()
    return _save(fig, path)


def plot_predictions(images, labels: dict, predictions: dict, task_names, num_images: int = 12,
                     path=None):
    """A grid of images with predicted probability and true label per task.

    Args:
        images: ``(n, height, width, 3)`` uint8 or float images.
        labels: ``{task: array}`` of true binary labels (``NaN``/``-1`` for
            missing).
        predictions: ``{task: array}`` of probabilities (``(n,)`` or
            ``(n, 1)``).
        task_names: tasks to annotate.
        num_images: how many images to show.
        path: optional PNG path.

    Returns:
        The figure: up to four images a row, each under its caption (one
        line per task: probability, true label, ✓/✗), clear of the image
        above.
    """
    plt = _pyplot()
    count = min(num_images, len(images))
    cols = min(4, count)
    rows = math.ceil(count / cols)
    # Each panel: a 3-inch image under a caption of one 7-point line per task. The constrained
    # layout keeps every caption clear of the image above it (tight_layout let them overlap).
    caption = (len(task_names) * 7 * 1.3 + 10) / 72
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, (3.1 + caption) * rows), squeeze=False,
                             layout="constrained")
    for index, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if index >= count:
            continue
        ax.imshow(images[index])
        lines = []
        for name in task_names:
            prob = float(np.ravel(predictions[name][index])[0])
            truth = float(np.ravel(labels[name])[index]) if name in labels else math.nan
            shown = "?" if math.isnan(truth) or truth == -1 else str(int(truth))
            mark = "" if shown == "?" else (" ✓" if (prob > 0.5) == (truth == 1) else " ✗")
            lines.append(f"{name}: {prob:.2f} (true {shown}){mark}")
        ax.set_title("\n".join(lines), fontsize=7, loc="left")
    return _save(fig, path)


def plot_scenes(images, labels: dict, task_names=None, num_images: int = 8, columns: int = 4, path=None):
    """A grid of images, each titled with its labels: what the network is asked.

    Use it to show data before training; :func:`plot_predictions` shows a
    trained model's outputs beside the labels.

    Args:
        images: ``(n, height, width, channels)`` images, uint8 in 0–255 or
            floats in [0, 1]; one channel is drawn in grey.
        labels: ``{task: array}`` of labels, ``(n,)`` each; a missing label
            (``NaN``, ``None``, ``"?"`` or ``-1``, keras_mtl's ``MISSING``
            sentinel) is shown as "?" — so write missing regression targets
            as ``NaN`` and a true target of exactly −1 is not mistaken.
        task_names: the tasks to show, in order (default: every key of
            ``labels``).
        num_images: how many images to show (the first ones).
        columns: images per row.
        path: optional PNG path.

    Returns:
        The figure, one panel per image; its title lists ``task: label``.

    Raises:
        ValueError: if a task is not in ``labels`` or a label array is shorter
            than the images shown.

    Example:
        >>> from keras_mtl.datasets import OBJECT_TASKS, generate_street_scenes
        >>> images, labels = generate_street_scenes(4, missing_fraction=0.5)
        >>> fig = plot_scenes(images, labels, OBJECT_TASKS, num_images=4)
        >>> len(fig.axes)
        4
    """
    plt = _pyplot()
    names = list(labels if task_names is None else task_names)
    count = min(int(num_images), len(images))
    if count < 1:
        raise ValueError("plot_scenes needs at least one image: pass images and num_images >= 1.")
    for name in names:
        if name not in labels:
            raise ValueError(f"task {name!r} has no labels; labels has {sorted(labels)}.")
        if len(labels[name]) < count:
            raise ValueError(f"labels[{name!r}] has {len(labels[name])} entries for {count} images shown.")
    cols = max(1, min(int(columns), count))
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, (2.6 + 0.17 * len(names)) * rows), squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        if index >= count:
            fig.delaxes(ax)
            continue
        ax.axis("off")
        image = np.asarray(images[index])
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.set_title("\n".join(f"{name}: {_label_text(labels[name][index])}" for name in names),
                     fontsize=7, loc="left")
    fig.tight_layout()
    return _save(fig, path)


def _label_text(value) -> str:
    """A label as shown in a figure: "?" if missing, an integer if whole, else 3 digits."""
    if value is None or (isinstance(value, str) and value == "?"):
        return "?"
    value = float(value)
    if math.isnan(value) or value == -1:
        return "?"
    return str(int(value)) if value.is_integer() else f"{value:.3g}"


def plot_task_weights(history, task_names=None, path=None):
    """Each task's loss weight per epoch (``weight_<task>`` in History).

    Args:
        history: a ``keras.callbacks.History`` or its ``.history`` dict, from
            a model compiled with an adaptive balancing strategy.
        task_names: tasks to plot (default: every ``weight_<task>`` entry).
        path: optional PNG path.
    """
    plt = _pyplot()
    logs = getattr(history, "history", history)
    names = list(task_names) if task_names is not None else [
        k[len("weight_"):] for k in logs if k.startswith("weight_")]
    if not names or not all(f"weight_{n}" in logs for n in names):
        raise ValueError(
            "History has no weight_<task> entries: compile with an adaptive strategy, e.g. "
            "model.compile(balancing=kmtl.balancing.UncertaintyWeighting())."
        )
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name in names:
        values = logs[f"weight_{name}"]
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss weight")
    ax.set_title("Task weights during training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_task_metrics(results: dict, task_names, metric: str = "auc", labelled: int = 40, path=None):
    """One metric of every task, sorted best first: which tasks learned, which did not.

    Readable at 1,000 tasks: with up to ``labelled`` tasks each gets a named
    bar; with more, the sorted values are drawn as one curve over the task
    rank, with the best and worst tasks named.

    Args:
        results: ``{"<task>_<metric>": value}``, e.g.
            ``model.evaluate(data, return_dict=True)``.
        task_names: the tasks (e.g. ``model.task_names``); tasks without
            ``<task>_<metric>`` in ``results`` are left out.
        metric: the metric suffix, e.g. ``"auc"``, ``"accuracy"``, ``"mae"``;
            whether larger is better follows
            :func:`keras_mtl.metrics.higher_is_better`.
        labelled: up to this many tasks, one named bar each.
        path: optional PNG path.

    Raises:
        ValueError: no task has the metric in ``results``.
    """
    from keras_mtl.metrics import higher_is_better

    plt = _pyplot()
    found = {n: float(results[f"{n}_{metric}"]) for n in task_names if f"{n}_{metric}" in results}
    if not found:
        raise ValueError(
            f"results has no '<task>_{metric}' entry for tasks {list(task_names)[:5]}…; pass "
            "model.evaluate(data, return_dict=True) and a metric the tasks have (e.g. 'auc', 'mae')."
        )
    better_high = higher_is_better(metric)
    ordered = sorted(found.items(), key=lambda item: -item[1] if better_high else item[1])
    names, values = [n for n, _ in ordered], np.array([v for _, v in ordered])
    if len(names) <= labelled:
        fig, ax = plt.subplots(figsize=(6, 0.8 + 0.22 * len(names)))
        ax.barh(np.arange(len(names)), values, color="tab:blue")
        ax.set_yticks(np.arange(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(metric)
    else:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        ax.plot(np.arange(1, len(names) + 1), values, color="tab:blue")
        for rank in (0, 1, 2, len(names) - 3, len(names) - 2, len(names) - 1):
            ax.annotate(names[rank], (rank + 1, values[rank]), fontsize=7,
                        xytext=(4, 0), textcoords="offset points")
        ax.set_xlabel("task rank (best first)")
        ax.set_ylabel(metric)
    ax.set_title(f"{metric} of {len(names)} tasks: median {np.median(values):.3f}, "
                 f"range {values.min():.3f}–{values.max():.3f}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_sharing(weights: dict, task_names, path=None):
    """Heat maps of what a sharing architecture learned.

    Args:
        weights: the dict from :meth:`keras_mtl.MultiTaskModel.sharing_weights`:
            ``"gates"`` (tasks × experts, MMoE/PLE) and/or ``"cross_stitch"``
            (one tasks × tasks matrix per layer).
        task_names: row labels.
        path: optional PNG path.
    """
    plt = _pyplot()
    panels = []
    if "gates" in weights:
        panels.append(("Expert usage (mean gate weight)", np.asarray(weights["gates"]), "expert"))
    for i, alpha in enumerate(weights.get("cross_stitch", [])):
        panels.append((f"Cross-stitch α, layer {i + 1}", np.asarray(alpha), "from task"))
    if not panels:
        raise ValueError("Nothing to plot: pass sharing_weights(x) of an MMoE, PLE or CrossStitch model.")
    names = list(task_names)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.55 * len(names) + 2),
                             squeeze=False)
    for ax, (title, matrix, xlabel) in zip(axes[0], panels):
        image = ax.imshow(matrix, cmap="viridis", aspect="auto")
        for (row, col), value in np.ndenumerate(matrix):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if value < matrix.max() * 0.6 else "black")
        ax.set_yticks(range(len(names)), names)
        cols = matrix.shape[1]
        ax.set_xticks(range(cols), names if xlabel == "from task" else [str(c + 1) for c in range(cols)],
                      rotation=45 if xlabel == "from task" else 0)
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save(fig, path)


def plot_model(model, path="model.png", max_tasks: int = 24, show_shapes: bool = True, **keras_options):
    """Draws a multi-task model as ``keras.utils.plot_model`` does, with a box per task.

    ``keras.utils.plot_model`` draws keras_mtl's output layer as one box
    (``kmtl_outputs``): every task comes out of it. This draws the same graph
    (Keras's own ``keras.utils.model_to_dot``) and adds, below that box, one
    box per task with its name, kind and output shape, so a reader sees the
    heads by name. It needs ``pydot`` and Graphviz, as Keras's does.

    Args:
        model: a :class:`keras_mtl.MultiTaskModel`.
        path: the image to write; its extension picks the format (``.png``,
            ``.svg``, ``.pdf``).
        max_tasks: at most this many task boxes; the rest are summed up in one
            box ("… and 980 more tasks").
        show_shapes: draw each layer's input and output shapes (Keras's option,
            on by default here because the task boxes show theirs).
        **keras_options: passed to ``keras.utils.model_to_dot``
            (``show_layer_names``, ``rankdir``, ``dpi``, ``expand_nested``, …).

    Returns:
        The ``pydot.Dot`` graph that was written.

    Example:
        >>> kmtl.plotting.plot_model(model, "model.png")  # doctest: +SKIP
    """
    import keras
    import pydot

    tasks = getattr(model, "tasks", None)
    if tasks is None:
        raise TypeError(f"plot_model draws a keras_mtl MultiTaskModel, got a {type(model).__name__}; "
                        "use keras.utils.plot_model for other models.")
    dot = keras.utils.model_to_dot(model, show_shapes=show_shapes, **keras_options)
    # model_to_dot names each layer's node after the layer's id (keras/src/utils/model_visualization.py);
    # tests/test_plotting.py fails if that changes.
    outputs_node = str(id(model.task_outputs))
    if not dot.get_node(outputs_node):
        raise RuntimeError("keras.utils.model_to_dot no longer names nodes as keras_mtl expects; "
                           "use keras.utils.plot_model meanwhile.")
    shown = tasks[:max_tasks]
    boxes = [(f"kmtl_task_{i}", f"<b>{html.escape(t.name)}</b> ({html.escape(t.kind.name)})"
              + (f"<br/>output shape: (None, {t.units})" if show_shapes else ""))
             for i, t in enumerate(shown)]
    if len(tasks) > len(shown):
        boxes.append(("kmtl_task_more", f"… and {len(tasks) - len(shown)} more tasks"))
    for name, label in boxes:
        node = pydot.Node(name, label=f"<{label}>", shape="box", style="rounded", fontname="Helvetica")
        dot.add_node(node)
        dot.add_edge(pydot.Edge(outputs_node, name))
    path = str(path)
    dot.write(path, format=path.rsplit(".", 1)[-1] if "." in path else "png")
    return dot
