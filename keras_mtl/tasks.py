"""Task: what one output head predicts, how it is scored and weighted."""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Sequence

import keras

from keras_mtl import losses as losses_lib
from keras_mtl import metrics as metrics_lib

__all__ = ["KINDS", "Task", "check_tasks"]

KINDS = ("binary", "multilabel", "categorical", "regression")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Names the model uses for its own layers or History entries.
_RESERVED = {"loss", "heads", "features"}


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
        kind: ``"binary"`` (default: one sigmoid unit), ``"multilabel"`` (one
            sigmoid unit per name in ``labels``), ``"categorical"`` (softmax
            over ``num_classes``) or ``"regression"`` (one linear unit).
        loss_weight: the task's weight in the total loss (finite, ≥ 0).
        num_classes: number of classes of a categorical task.
        labels: label names of a multilabel task (one unit each).
        class_names: optional names of a categorical task's classes
            (``num_classes`` is then inferred).
        metrics: metric names or objects for this task (see
            :func:`keras_mtl.metrics.get`); ``None`` gives AUC and accuracy
            for binary/multilabel, accuracy for categorical, MAE for
            regression.

    Example:
        >>> Task("weather", kind="categorical", num_classes=4).units
        4
        >>> Task("objects", kind="multilabel", labels=["car", "bike"]).units
        2
    """

    def __init__(
        self,
        name: str,
        kind: str = "binary",
        *,
        loss_weight: float = 1.0,
        num_classes: int | None = None,
        labels: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        metrics: Sequence | None = None,
    ):
        self.name = self._check_name(name)
        self.kind = self._check_kind(kind)
        self.loss_weight = self._check_weight(loss_weight, self.name)
        self.labels = self._check_labels(labels)
        self.class_names, self.num_classes = self._check_classes(num_classes, class_names)
        self.metrics = list(metrics) if metrics is not None else None
        if self.metrics is not None:
            self.build_metrics()  # fail now, not at compile time

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

    def _check_kind(self, kind) -> str:
        if kind not in KINDS:
            close = difflib.get_close_matches(str(kind), KINDS, n=1)
            hint = f" Did you mean kind={close[0]!r}?" if close else ""
            raise ValueError(
                f"Task {self.name!r}: kind={kind!r} is not one of {KINDS}.{hint}"
            )
        return kind

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

    def _check_labels(self, labels):
        if self.kind != "multilabel":
            if labels is not None:
                raise ValueError(
                    f"Task {self.name!r}: labels=... is for multilabel tasks; write "
                    f"kmtl.Task({self.name!r}, kind='multilabel', labels={list(labels)!r})."
                )
            return None
        if labels is None or isinstance(labels, str) or len(labels) == 0:
            raise ValueError(
                f"Task {self.name!r}: a multilabel task needs the names of its labels, "
                f"e.g. kmtl.Task({self.name!r}, kind='multilabel', labels=['car', 'bike'])."
            )
        labels = [str(label) for label in labels]
        if len(set(labels)) != len(labels):
            duplicates = sorted({x for x in labels if labels.count(x) > 1})
            raise ValueError(
                f"Task {self.name!r}: duplicate label names {duplicates}; give each label "
                "a unique name (one output unit each)."
            )
        return labels

    def _check_classes(self, num_classes, class_names):
        if self.kind != "categorical":
            if num_classes is not None or class_names is not None:
                raise ValueError(
                    f"Task {self.name!r}: num_classes/class_names are for categorical "
                    f"tasks; write kmtl.Task({self.name!r}, kind='categorical', "
                    f"num_classes={num_classes if num_classes is not None else len(class_names)})."
                )
            return None, None
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if num_classes is None:
                num_classes = len(class_names)
            if len(class_names) != num_classes:
                raise ValueError(
                    f"Task {self.name!r}: {len(class_names)} class_names given for "
                    f"num_classes={num_classes}; give one name per class."
                )
        if isinstance(num_classes, numbers.Integral) and not isinstance(num_classes, bool):
            num_classes = int(num_classes)  # e.g. np.int64 from y.max() + 1
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"Task {self.name!r}: a categorical task needs num_classes, an integer "
                f"≥ 2 (got {num_classes!r}); e.g. kmtl.Task({self.name!r}, "
                "kind='categorical', num_classes=4). For a yes/no task use kind='binary'."
            )
        return class_names, num_classes

    # -- what the model needs -----------------------------------------------

    @property
    def units(self) -> int:
        """Number of output units of the task's head."""
        if self.kind == "multilabel":
            return len(self.labels)
        if self.kind == "categorical":
            return self.num_classes
        return 1

    @property
    def activation(self) -> str:
        """Activation that turns the head's logits into user units."""
        return {"binary": "sigmoid", "multilabel": "sigmoid",
                "categorical": "softmax", "regression": "linear"}[self.kind]

    @property
    def output_names(self) -> list[str]:
        """Human-readable meaning of each output unit."""
        if self.kind == "multilabel":
            return list(self.labels)
        if self.kind == "categorical":
            return self.class_names or [str(i) for i in range(self.num_classes)]
        return [self.name]

    def build_loss(self, normalize: str = "batch", from_logits: bool = True) -> keras.losses.Loss:
        """The task's masked loss (a ``keras.losses.Loss``)."""
        if self.kind == "regression":
            return losses_lib.MaskedMeanSquaredError(normalize=normalize, name=f"{self.name}_loss")
        if self.kind == "categorical":
            return losses_lib.MaskedCategoricalCrossentropy(
                normalize=normalize, from_logits=from_logits, name=f"{self.name}_loss")
        return losses_lib.MaskedBinaryCrossentropy(
            normalize=normalize, from_logits=from_logits, name=f"{self.name}_loss")

    def build_metrics(self, metrics: Sequence | None = None) -> list[metrics_lib.MaskedMetric]:
        """Fresh masked metric objects named ``<task>_<metric>``."""
        chosen = metrics if metrics is not None else self.metrics
        if chosen is None:
            return metrics_lib.default_metrics(self.kind, self.name)
        if isinstance(chosen, (str, keras.metrics.Metric)):
            chosen = [chosen]
        return [metrics_lib.get(m, self.kind, self.name) for m in chosen]

    # -- serialisation ------------------------------------------------------

    def get_config(self) -> dict:
        metrics = None
        if self.metrics is not None:
            metrics = [m if isinstance(m, str) else keras.saving.serialize_keras_object(m)
                       for m in self.metrics]
        return {
            "name": self.name,
            "kind": self.kind,
            "loss_weight": self.loss_weight,
            "num_classes": self.num_classes,
            "labels": self.labels,
            "class_names": self.class_names,
            "metrics": metrics,
        }

    @classmethod
    def from_config(cls, config: dict) -> Task:
        config = dict(config)
        if config.get("metrics") is not None:
            config["metrics"] = [m if isinstance(m, str) else keras.saving.deserialize_keras_object(m)
                                 for m in config["metrics"]]
        return cls(**config)

    def __eq__(self, other) -> bool:
        return isinstance(other, Task) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((self.name, self.kind))

    def __repr__(self) -> str:
        extras = ""
        if self.kind == "multilabel":
            extras = f", labels={self.labels!r}"
        elif self.kind == "categorical":
            extras = f", num_classes={self.num_classes}"
        weight = f", loss_weight={self.loss_weight:g}" if self.loss_weight != 1.0 else ""
        return f"Task({self.name!r}, kind={self.kind!r}{extras}{weight})"


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
