"""Task: what one output head predicts, how it is scored and weighted.

What a task's labels and outputs mean is its kind's business
(:mod:`keras_mtl.kinds`); a task adds its name, its options, its weight, and
optionally its own loss and class weights.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_mtl import kinds as kinds_lib
from keras_mtl import metrics as metrics_lib
from keras_mtl.kinds import KINDS

__all__ = ["KINDS", "Task", "check_tasks", "label_groups", "label_width", "packed_key"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# A name the logs use for the total loss: a task of that name would log "loss" twice over.
_RESERVED = {"loss"}


def _suggest(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]+", "_", name.strip()).strip("_") or "task"
    return cleaned if cleaned[0].isalpha() else f"task_{cleaned}"


@keras.saving.register_keras_serializable(package="keras_mtl")
class Task:
    """One prediction task: a named output head of a multi-task model.

    Args:
        name: the task's name; names the output, the History entries
            (``<name>_loss``, ``<name>_auc``) and the serving output. Letters,
            digits and underscores, starting with a letter.
        kind: what the task predicts (:mod:`keras_mtl.kinds`):
            ``"binary"`` (default: one sigmoid unit), ``"multilabel"`` (one
            sigmoid unit per name in ``labels``), ``"categorical"`` (softmax
            over ``num_classes``), ``"regression"`` (one linear unit),
            ``"poisson"`` (a count), or a kind object, e.g. one of your own.
        loss_weight: the task's weight in the total loss (finite, ≥ 0).
        num_classes: number of classes of a categorical task.
        labels: label names of a multilabel task (one unit each).
        class_names: optional names of a categorical task's classes
            (``num_classes`` is then inferred).
        metrics: metric names or objects for this task (see
            :func:`keras_mtl.metrics.get`); ``None`` gives the kind's
            defaults (AUC and accuracy for binary/multilabel, accuracy for
            categorical, MAE for regression).
        loss: the task's own elementwise loss instead of the kind's: a
            ``keras.losses.Loss`` such as ``keras.losses.Huber()`` or
            ``keras.losses.BinaryFocalCrossentropy()``, or a function of
            ``(y_true, y_pred)`` reducing only the last axis. It receives the
            outputs in user units (the logits if it has
            ``from_logits=True``); missing labels add nothing to it or its
            gradient. Tasks with the same loss are computed together.
        class_weight: ``{class: weight}`` for a task whose labels are
            classes (binary, multilabel, categorical): each labelled entry's
            loss is multiplied by its class's weight (classes not named
            weigh 1). :func:`keras_mtl.data.balanced_class_weight` computes
            balanced weights from the labelled entries.
        standardize: whether a regression task learns its targets
            standardised, ``(y − mean) / std`` with the mean and standard
            deviation of the labelled training targets, which the model
            sets at the start of its first ``fit`` and keeps (saved with
            it). Its loss is then the squared error of standardised targets
            (a task loss of its own, e.g. ``Huber(delta=1)``, acts on
            standardised residuals), so its weight means the same in any
            units, while its outputs, metrics and served predictions are in
            the user's units. ``None``: ``True`` for regression tasks; other
            kinds have no such option.

    Example:
        >>> Task("weather", kind="categorical", num_classes=4).units
        4
        >>> Task("objects", kind="multilabel", labels=["car", "bike"]).units
        2
        >>> Task("price", kind="regression", loss=keras.losses.Huber())
        Task('price', kind='regression', loss=Huber)
    """

    def __init__(
        self,
        name: str,
        kind="binary",
        *,
        loss_weight: float = 1.0,
        num_classes: int | None = None,
        labels: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        metrics: Sequence | None = None,
        loss=None,
        class_weight: dict | None = None,
        standardize: bool | None = None,
    ):
        self.name = self._check_name(name)
        try:
            self.kind = kinds_lib.get(kind)
        except ValueError as error:
            raise ValueError(f"Task {self.name!r}: {error}") from None
        self.loss_weight = self._check_weight(loss_weight, self.name)
        options = self.kind.check_options(self.name, labels=labels, num_classes=num_classes,
                                          class_names=class_names)
        self.labels = options.get("labels")
        self.num_classes = options.get("num_classes")
        self.class_names = options.get("class_names")
        self.metrics = list(metrics) if metrics is not None else None
        if self.metrics is not None:
            self.build_metrics()  # fail now, not at compile time
        self.loss = self._check_loss(loss)
        self.class_weight = None
        self.class_weight_table = None
        if class_weight is not None:
            self.class_weight_table = self.kind.class_weight_table(self, class_weight)
            self.class_weight = {int(k): float(v) for k, v in class_weight.items()}
        if standardize and not self.kind.standardizes:
            raise ValueError(
                f"Task {self.name!r} ({self.kind}): standardize=True is for regression targets; "
                "the labels of this kind are used as they are."
            )
        self.standardize = self.kind.standardizes if standardize is None else bool(standardize)

    # -- validation ---------------------------------------------------------

    @staticmethod
    def _check_name(name) -> str:
        if not isinstance(name, str) or not _NAME.match(name):
            hint = f" e.g. {_suggest(name)!r}" if isinstance(name, str) else ""
            raise ValueError(
                f"Task name {name!r} is not valid: use letters, digits and "
                f"underscores, starting with a letter,{hint}."
            )
        if name in _RESERVED:
            raise ValueError(
                f"Task name {name!r} is reserved by keras_mtl; choose another, "
                f"e.g. {name + '_task'!r}."
            )
        return name

    @staticmethod
    def _check_weight(weight, name) -> float:
        try:
            value = float(weight)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"Task {name!r}: loss_weight={weight!r} must be a finite number ≥ 0 "
                "(0 switches the task's loss off; 1.0 is the default)."
            )
        return value

    def _check_loss(self, loss):
        if loss is None:
            return None
        if isinstance(loss, (str, dict)):
            try:
                loss = keras.losses.get(loss)
            except ValueError as error:
                raise ValueError(f"Task {self.name!r}: loss={loss!r}: {error}; pass a keras.losses.Loss "
                                 "such as keras.losses.Huber(), or a function of (y_true, y_pred).") from None
        if not callable(loss):
            raise ValueError(
                f"Task {self.name!r}: loss={loss!r} is not a loss; pass a keras.losses.Loss "
                "(e.g. keras.losses.Huber()) or a function of (y_true, y_pred)."
            )
        # Try it on two labelled examples: an unsuitable loss fails here, not in fit.
        y, logits = self._probe()
        try:
            values = ops.convert_to_numpy(self.kind.loss_entries(loss, y, logits)[0])
        except Exception as error:  # noqa: BLE001 - any failure means the loss does not fit
            raise ValueError(
                f"Task {self.name!r} ({self.kind}): loss={loss!r} cannot be used as a task loss: "
                f"{error}"
            ) from error
        self._check_loss_round_trip(loss, y, logits, values)
        return loss

    def _probe(self):
        """Two labelled examples at the ends of the label domain, and logits for them."""
        domain = self.kind.domain(self)
        low = domain.low if math.isfinite(domain.low) else -3.0
        high = domain.high if math.isfinite(domain.high) else low + 6.0
        width = self.units if self.kind.elementwise else 1
        y = np.repeat([[low], [high]], width, axis=1).astype(self.kind.label_dtype)
        y = y if self.kind.elementwise else y[:, 0]
        logits = np.linspace(-0.7, 0.4, 2 * self.units, dtype="float32").reshape(2, self.units)
        return ops.convert_to_tensor(y), ops.convert_to_tensor(logits)

    def _check_loss_round_trip(self, loss, y, logits, values):
        """Raises if the loss's config does not rebuild the same loss (a .keras file would change it)."""
        try:
            restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        except Exception:  # noqa: BLE001 - not serialisable: saving the model will say so
            return
        again = ops.convert_to_numpy(self.kind.loss_entries(restored, y, logits)[0])
        if not np.allclose(again, values, rtol=1e-5, atol=1e-7):
            raise ValueError(
                f"Task {self.name!r}: loss={loss!r} does not keep its settings in get_config(), so a "
                "saved model would reload a different loss (Keras 3.15's Huber drops delta=). Use a "
                "registered function instead, e.g. @keras.saving.register_keras_serializable() "
                "def huber2(y_true, y_pred): return keras.losses.huber(y_true, y_pred, delta=2.0)."
            )

    # -- what the model needs -----------------------------------------------

    @property
    def units(self) -> int:
        """Number of output units of the task's head."""
        return self.kind.units(self)

    @property
    def activation(self) -> str:
        """Activation that turns the head's logits into user units."""
        return self.kind.activation

    @property
    def output_names(self) -> list[str]:
        """Human-readable meaning of each output unit."""
        return self.kind.output_names(self)

    def entries(self, y_true, logits):
        """The task's masked per-entry loss from its logits (its own loss, or its kind's)."""
        if self.loss is None:
            return self.kind.entries(y_true, logits)
        return self.kind.loss_entries(self.loss, y_true, logits)

    def build_loss(self, normalize: str = "batch", from_logits: bool = True) -> keras.losses.Loss:
        """The kind's masked loss as a ``keras.losses.Loss`` (for use outside the model)."""
        return self.kind.masked_loss(normalize=normalize, from_logits=from_logits, name=f"{self.name}_loss")

    def build_metrics(self, metrics: Sequence | None = None) -> list[metrics_lib.MaskedMetric]:
        """Fresh masked metric objects named ``<task>_<metric>``."""
        chosen = metrics if metrics is not None else self.metrics
        if chosen is None:
            return metrics_lib.default_metrics(self.kind, self.name)
        if isinstance(chosen, (str, keras.metrics.Metric)):
            chosen = [chosen]
        return [metrics_lib.get(m, self.kind, self.name) for m in chosen]

    @property
    def loss_key(self) -> str:
        """Tasks with equal keys share one loss computation (kind family and loss)."""
        loss = ""
        if self.loss is not None:
            try:
                loss = json.dumps(keras.saving.serialize_keras_object(self.loss), sort_keys=True, default=str)
            except Exception:  # noqa: BLE001 - e.g. a lambda: only this very object shares its loss
                loss = f"object:{id(self.loss)}"
        return f"{self.kind.fuses_with or self.kind.name}|{self.activation}|{loss}"

    # -- serialisation ------------------------------------------------------

    def get_config(self) -> dict:
        metrics = None
        if self.metrics is not None:
            metrics = [m if isinstance(m, str) else keras.saving.serialize_keras_object(m)
                       for m in self.metrics]
        config = {
            "name": self.name,
            "kind": kinds_lib.serialize(self.kind),
            "loss_weight": self.loss_weight,
            "num_classes": self.num_classes,
            "labels": self.labels,
            "class_names": self.class_names,
            "metrics": metrics,
        }
        if self.kind.standardizes:
            config["standardize"] = self.standardize
        if self.loss is not None:
            config["loss"] = keras.saving.serialize_keras_object(self.loss)
        if self.class_weight is not None:
            # JSON keys are strings: the classes travel as a list of pairs.
            config["class_weight"] = [[k, v] for k, v in sorted(self.class_weight.items())]
        return config

    @classmethod
    def from_config(cls, config: dict) -> Task:
        config = dict(config)
        if config.get("metrics") is not None:
            config["metrics"] = [m if isinstance(m, str) else keras.saving.deserialize_keras_object(m)
                                 for m in config["metrics"]]
        if isinstance(config.get("kind"), dict):
            config["kind"] = keras.saving.deserialize_keras_object(config["kind"])
        if config.get("loss") is not None:
            config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        if config.get("class_weight") is not None:
            config["class_weight"] = {int(k): float(v) for k, v in config["class_weight"]}
        # Files written before standardisation existed hold heads trained on raw targets.
        config.setdefault("standardize", False)
        task = cls(**{k: v for k, v in config.items() if k != "standardize"})
        task.standardize = bool(config["standardize"]) and task.kind.standardizes
        return task

    def __eq__(self, other) -> bool:
        return isinstance(other, Task) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((self.name, self.kind.name))

    def __repr__(self) -> str:
        extras = ""
        if self.labels is not None:
            extras = f", labels={self.labels!r}"
        elif self.num_classes is not None:
            extras = f", num_classes={self.num_classes}"
        kind = repr(self.kind.name) if kinds_lib.serialize(self.kind) == self.kind.name else repr(self.kind)
        weight = f", loss_weight={self.loss_weight:g}" if self.loss_weight != 1.0 else ""
        loss = ""
        if self.loss is not None:
            shown = type(self.loss).__name__ if isinstance(self.loss, keras.losses.Loss) else self.loss
            loss = f", loss={getattr(shown, '__name__', shown)}"
        class_weight = f", class_weight={self.class_weight}" if self.class_weight is not None else ""
        raw = ", standardize=False" if self.kind.standardizes and not self.standardize else ""
        return f"Task({self.name!r}, kind={kind}{extras}{weight}{loss}{class_weight}{raw})"


def check_tasks(tasks) -> list[Task]:
    """Validates a task list: non-empty, Task objects, unique names."""
    if isinstance(tasks, Task):
        tasks = [tasks]
    tasks = list(tasks or [])
    if not tasks:
        raise ValueError("No tasks given: pass a list such as [kmtl.Task('car'), kmtl.Task('pedestrian')].")
    for task in tasks:
        if not isinstance(task, Task):
            raise TypeError(
                f"Expected kmtl.Task objects, got {task!r}; write kmtl.Task({str(task)!r})."
            )
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"Task names must be unique; {duplicates} appear more than once. "
            "Rename one, e.g. 'car_front' and 'car_rear'."
        )
    return tasks


def label_groups(tasks) -> list[list[Task]]:
    """The tasks whose labels travel as one matrix and share one loss computation.

    Elementwise tasks group by :attr:`Task.loss_key` (binary and multilabel
    tasks on the default loss form one group, regression tasks another, each
    distinct custom loss its own); tasks of non-elementwise kinds
    (categorical) group by label encoding and keep one loss each. Groups
    come in the column order of the fused logits: the logistic group, the
    squared-error group, other elementwise groups, then the blocks.

    Example:
        >>> groups = label_groups([Task("w", kind="categorical", num_classes=3), Task("car"),
        ...                        Task("d", kind="regression"), Task("bike")])
        >>> [[t.name for t in group] for group in groups]
        [['car', 'bike'], ['d'], ['w']]
    """
    groups: dict[str, list[Task]] = {}
    rank: dict[str, int] = {}
    for task in tasks:
        kind = task.kind
        if kind.elementwise:
            key = f"entries|{task.loss_key}"
            rank.setdefault(key, kind.layout_rank if task.loss is None else 2)
        else:
            key = f"blocks|{kind.label_dtype}|{kind.class_labels}"
            rank.setdefault(key, 3)
        groups.setdefault(key, []).append(task)
    order = sorted(groups, key=lambda k: (rank[k], list(groups).index(k)))
    return [groups[k] for k in order]


def label_width(task: Task) -> int:
    """Columns ``task`` takes in its group's label matrix: its units, or 1 for a class index."""
    return task.units if task.kind.elementwise else 1


def packed_key(group) -> str:
    """The key of a label group in a packed batch: ``labels:<first task>:<count>``.

    Task names cannot hold ``:``, so the key never collides with a task name.
    """
    return f"labels:{group[0].name}:{len(group)}"
