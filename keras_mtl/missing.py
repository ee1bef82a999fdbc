"""Missing labels: the sentinel, the accepted markers, and label masks.

A label that nobody annotated is written by users as ``NaN``, ``None``,
``"?"`` or :data:`MISSING`. Inside the model and the losses a missing entry
is represented by one sentinel per kind of task:

* tasks whose labels are classes (``binary``, ``multilabel``,
  ``categorical``): ``-1`` (:data:`MISSING`), which is never a valid class;
* real-valued tasks (``regression``, ``poisson``): ``NaN``
  (:data:`MISSING_REGRESSION`), because every real number, ``-1`` included,
  may be a target.

Which of the two a task uses is its kind's ``class_labels``
(:mod:`keras_mtl.kinds`); the functions here take the kind, or its name.
Names are resolved here, by :func:`resolve_kind`, from a table that
:mod:`keras_mtl.kinds` fills as it defines its kinds (:func:`register_kind`):
the kinds are built on this module, the losses and the metrics, so none of
these imports them.

This module holds the NumPy side (recognising markers in user arrays) and the
backend-agnostic masks the losses and metrics use (``keras.ops``). The
TensorFlow graph that maps markers to sentinels lives in :mod:`keras_mtl.data`.
"""

from __future__ import annotations

import difflib
import math

import keras
import numpy as np
from keras import ops

__all__ = [
    "MISSING",
    "MISSING_REGRESSION",
    "MISSING_STRINGS",
    "is_missing",
    "label_mask",
    "labelled",
]


class _MissingLabel(int):
    """The integer ``-1`` with a readable name.

    ``MISSING`` behaves as ``-1`` everywhere (``MISSING == -1``, tensors,
    arithmetic) so that encoded label arrays are plain integers. Being a
    distinct object also lets :func:`is_missing` recognise it by identity in
    a Python list of regression targets, where a numeric ``-1.0`` is data.
    """

    def __new__(cls):
        return super().__new__(cls, -1)

    def __repr__(self) -> str:
        return "kmtl.MISSING"

    __str__ = __repr__

    def __reduce__(self):
        return (_missing_singleton, ())


MISSING = _MissingLabel()
"""Sentinel for a missing class or binary label (equal to ``-1``)."""

MISSING_REGRESSION = math.nan
"""Sentinel for a missing regression target (``NaN``)."""

MISSING_STRINGS = ("?", "", "nan", "none", "na", "n/a", "null")
"""Strings that mark a missing label, besides a non-string ``NaN`` or ``None``.

Compared after stripping spaces and ignoring case (``"NaN"``, ``"N/A"``,
``"NULL"`` and ``" ? "`` are missing too), by every entry point: the NumPy
checks, the in-graph encoding of :mod:`keras_mtl.data` and ``model.fit``.
"""


# The ``kind=`` shorthand: kind name → kind class, filled by keras_mtl.kinds.
_KINDS: dict[str, type] = {}


def register_kind(cls: type) -> type:
    """Class decorator: makes ``kind=cls.name`` shorthand for ``kind=cls()``.

    :mod:`keras_mtl.kinds` registers its built-in kinds with it, in the order
    of :data:`keras_mtl.kinds.KINDS`.

    Args:
        cls: a kind class with a ``name``.

    Returns:
        ``cls`` itself.
    """
    _KINDS[cls.name] = cls
    return cls


def unknown_kind(kind) -> ValueError:
    """The error for a ``kind=`` that names no kind, with the closest name as a hint."""
    close = difflib.get_close_matches(str(kind), tuple(_KINDS), n=1)
    hint = f" Did you mean kind={close[0]!r}?" if close else ""
    return ValueError(
        f"kind={kind!r} is not one of {tuple(_KINDS)}.{hint} A kind of your own is a "
        "subclass of kmtl.kinds.Kind, passed as kind=MyKind()."
    )


def resolve_kind(kind):
    """The kind object for a kind, a registered kind's name, a kind class or a serialised kind.

    The one place where a kind's name becomes a kind: :func:`keras_mtl.kinds.get`,
    the functions here and the metrics all go through it.

    Args:
        kind: a kind object (returned as it is), a name such as
            ``"binary"``, a kind class, or a Keras config of a kind.

    Returns:
        The kind object.

    Raises:
        ValueError: for a name that is not a registered kind, or an object
            that is not a kind.

    Example:
        >>> resolve_kind("regression").class_labels, resolve_kind("binary").class_labels
        (False, True)
    """
    resolved = kind
    if isinstance(resolved, dict):
        resolved = keras.saving.deserialize_keras_object(resolved)
    if isinstance(resolved, type) and hasattr(resolved, "class_labels"):
        resolved = resolved()
    if isinstance(resolved, str) and resolved in _KINDS:
        resolved = _KINDS[resolved]()
    if isinstance(resolved, str) or not hasattr(resolved, "class_labels"):
        raise unknown_kind(kind)
    return resolved


def serialize_kind(kind):
    """A registered kind's name, or another kind's Keras config (for ``get_config``).

    Example:
        >>> serialize_kind(resolve_kind("binary"))
        'binary'
    """
    if type(kind) is _KINDS.get(kind.name):
        return kind.name
    return keras.saving.serialize_keras_object(kind)


def _class_labels(kind) -> bool:
    """Whether ``kind`` (a kind object or its name) has class labels, sentinel ``MISSING``."""
    return bool(resolve_kind(kind).class_labels)


def _missing_singleton() -> _MissingLabel:
    return MISSING


def _is_minus_one_text(text: str) -> bool:
    """Whether a label string is the number -1 (the class sentinel, as read by the graph)."""
    try:
        return float(text) == -1.0
    except ValueError:
        return False


def _is_missing_scalar(value: object, class_labels: bool) -> bool:
    # pandas.NA and NaT are recognised by type name: no pandas import needed.
    if value is None or value is MISSING or type(value).__name__ in ("NAType", "NaTType"):
        return True
    if isinstance(value, (str, bytes)):
        text = (value.decode() if isinstance(value, bytes) else value).strip()
        return text.lower() in MISSING_STRINGS or (class_labels and _is_minus_one_text(text))
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.number)):
        if math.isnan(float(value)):
            return True
        return class_labels and float(value) == -1.0
    return False


def is_missing(labels: object, kind="binary") -> np.ndarray:
    """Returns a boolean array: where ``labels`` holds a missing marker.

    Args:
        labels: array-like of labels as a user writes them (numbers, strings,
            ``None``, ``NaN``, :data:`MISSING`).
        kind: task kind (object or name). For class kinds ``-1`` is
            missing; for ``"regression"`` a numeric ``-1`` is a real target and only
            ``NaN``, ``None``, ``"?"`` or the :data:`MISSING` object itself
            (in a list or object array) mean missing.

    Returns:
        ``np.ndarray`` of ``bool`` with the shape of ``np.asarray(labels)``.

    Example:
        >>> is_missing([1, 0, "?", None, float("nan"), MISSING]).tolist()
        [False, False, True, True, True, True]
        >>> is_missing([-1.0, MISSING], kind="regression").tolist()
        [False, True]
    """
    class_labels = _class_labels(kind)
    # Lists and tuples keep their objects, so MISSING stays distinct from -1.0.
    array = np.asarray(labels, dtype=object) if isinstance(labels, (list, tuple)) else np.asarray(labels)
    if array.dtype == object:
        flat = [_is_missing_scalar(v, class_labels) for v in array.ravel()]
        return np.asarray(flat, dtype=bool).reshape(array.shape)
    if array.dtype.kind in "US":
        text = np.char.strip(array.astype(str))
        missing = np.isin(np.char.lower(text), MISSING_STRINGS)
        if class_labels:
            missing |= np.vectorize(_is_minus_one_text, otypes=[bool])(text)
        return missing
    if array.dtype.kind == "f":
        missing = np.isnan(array)
        if class_labels:
            missing |= array == -1.0
        return missing
    if array.dtype.kind in "iu" and class_labels:
        return array == -1
    return np.zeros(array.shape, dtype=bool)


def label_mask(y_true, kind):
    """Boolean tensor: ``True`` where ``y_true`` holds a real label.

    ``y_true`` is already encoded (sentinel ``-1`` for class kinds, ``NaN``
    for real-valued ones). ``NaN`` is treated as missing for every kind, so a
    ``NaN`` that reached a class label (e.g. from a user's own pipeline)
    never turns into a ``NaN`` loss.

    Args:
        y_true: tensor of encoded labels, any shape.
        kind: the task's kind (object or name, e.g. ``"binary"``).

    Returns:
        Boolean tensor with the shape of ``y_true``.
    """
    return labelled(y_true, _class_labels(kind))


def labelled(y_true, class_labels: bool):
    """:func:`label_mask` for labels that are classes (``class_labels``) or real values.

    Example:
        >>> ops.convert_to_numpy(labelled([1.0, -1.0, float("nan")], class_labels=True)).tolist()
        [True, False, False]
        >>> ops.convert_to_numpy(labelled([1.0, -1.0, float("nan")], class_labels=False)).tolist()
        [True, True, False]
    """
    y_true = ops.convert_to_tensor(y_true)
    if "int" in str(y_true.dtype):
        return ops.not_equal(y_true, MISSING) if class_labels else ops.ones_like(y_true, "bool")
    if class_labels:  # classes are 0, 1, …: one comparison leaves out both −1 and NaN
        return ops.greater_equal(y_true, 0.0)
    return ops.logical_not(ops.isnan(y_true))
