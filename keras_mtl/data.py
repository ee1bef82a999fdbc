"""tf.data pipelines yielding ``(x, {task: labels})`` with missing labels.

Users write a missing label as ``NaN``, ``None``, ``"?"`` or
``kmtl.MISSING``. The pipelines

1. validate the labels once, with NumPy, and raise a ``ValueError`` naming
   the task, the bad value and the fix (for wrapped datasets: on the first
   batch, plus in-graph checks on every later batch);
2. batch first, then map every marker to the sentinel inside the TF graph on
   whole batches (``-1`` for class labels, ``NaN`` for regression targets),
   so the mapping runs wherever the pipeline runs;
3. prefetch.

Labels given as strings or Python objects travel through the graph as
strings and are parsed there, batch by batch. In :func:`from_arrays` the
numeric labels of every label group (tasks of one kind and loss) form one
matrix whose markers TensorFlow maps to sentinels once, when the pipeline is
built: each batch is then one gather for 100 tasks as for one. With
``pack_labels=True`` the batches carry that matrix as it is, which the model
reads as it is: the layout for many tasks, where a tensor per task costs
time in every step (at 1,000 tasks, 1.6–2.0× the epoch time of packed
labels on TensorFlow).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from keras_mtl.missing import MISSING, MISSING_STRINGS, is_missing
from keras_mtl.tasks import Task, check_tasks, label_groups, label_width, packed_key

__all__ = [
    "balanced_class_weight",
    "encode_arrays",
    "encode_labels",
    "from_arrays",
    "from_dataframe",
    "from_dataset",
    "mix",
    "mixing_weights",
    "unpack_labels",
    "validate_labels",
]

_AUTOTUNE = tf.data.AUTOTUNE
_HOW_TO_MARK = "write missing labels as NaN, None, '?' or kmtl.MISSING"


def _tasks_of(tasks) -> list[Task]:
    """Accepts a list of tasks or anything with a ``.tasks`` (a model)."""
    return check_tasks(getattr(tasks, "tasks", tasks))


# -- NumPy side: turning user arrays into checked raw arrays -----------------

def _as_array(values) -> np.ndarray:
    """A user label container as an array, keeping markers recognisable."""
    if hasattr(values, "to_numpy"):  # pandas Series / DataFrame
        values = values.to_numpy()
    if isinstance(values, (list, tuple)):
        values = np.array(values, dtype=object)
    array = np.asarray(values)
    if array.dtype == object:
        flat = array.ravel()
        plain = all(
            isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and v is not MISSING
            for v in flat
        )
        if plain:
            return array.astype(np.float64)
    return array


def _fail(task: Task, message: str):
    raise ValueError(f"Task {task.name!r} ({task.kind}): {message}")


def _numeric_values(task: Task, array: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Float view of the labelled entries; raises on non-numbers."""
    if array.dtype.kind in "biuf":
        return array.astype(np.float64)
    if array.dtype.kind == "S":
        array = array.astype(str)
    values = np.zeros(array.shape, dtype=np.float64)
    for index in zip(*np.nonzero(~missing), strict=True):
        value = array[index]
        if isinstance(value, bytes):
            value = value.decode()
        try:
            values[index] = float(value)
        except (TypeError, ValueError):
            where = index[0] if len(index) == 1 else index
            _fail(task, f"label {value!r} at index {where} is not a number. "
                        f"Labels are numbers; {_HOW_TO_MARK}.")
    return values


def _expected_shape(task: Task, n: int) -> tuple:
    return task.kind.label_shape(task, n)


def _check_one(task: Task, values, n: int | None) -> np.ndarray:
    """Validates one task's labels; returns the raw array for the graph."""
    array = _as_array(values)
    one_per_example = len(_expected_shape(task, 1)) == 1
    if array.ndim == 2 and array.shape[1] == 1 and one_per_example:
        array = array[:, 0]
    n = len(array) if n is None else n
    if array.shape != _expected_shape(task, n):
        hint = ("one label per example" if one_per_example else
                f"one row of {task.units} labels {task.kind.label_columns(task)} per example")
        _fail(task, f"labels have shape {array.shape}, expected {_expected_shape(task, n)} "
                    f"({hint}).")
    missing = is_missing(array, task.kind)
    if getattr(task, "class_names", None) and array.dtype.kind in "OSU":
        array = _class_indices(task, array, missing)
    values = _numeric_values(task, array, missing)
    _check_domain(task, values, missing)
    return _raw(array, missing)


def _class_indices(task: Task, array: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Class names replaced by their indices; any other labelled value must be an index."""
    index = {name: float(i) for i, name in enumerate(task.class_names)}
    found = np.empty(array.shape, dtype=object)
    for position, value in np.ndenumerate(array):
        text = value.decode() if isinstance(value, bytes) else value
        if missing[position]:
            found[position] = value
        elif isinstance(text, str) and text.strip() in index:
            found[position] = index[text.strip()]
        else:
            try:
                found[position] = float(text)
            except (TypeError, ValueError):
                _fail(task, f"label {text!r} at index {position[0]} is not one of its class_names "
                            f"{task.class_names} (nor a class index); {_HOW_TO_MARK}.")
    return found.astype(np.float64) if not missing.any() else found


def _check_domain(task: Task, values: np.ndarray, missing: np.ndarray):
    bad = ~missing & ~task.kind.domain(task).contains(values)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        where = index[0] if len(index) == 1 else index
        count = int(bad.sum())
        value = values[index]
        shown = int(value) if np.isfinite(value) and value == int(value) else float(value)
        fix = task.kind.domain_hint(task, values[~missing])
        _fail(task, f"label {shown!r} at index {where} is not valid "
                    f"({count} invalid label{'s' if count > 1 else ''}). {fix}; {_HOW_TO_MARK}.")


def _raw(array: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """What enters the graph: numbers as float32, anything else as strings."""
    if array.dtype.kind in "biuf":
        return array.astype(np.float32)
    if array.dtype == object:
        # A bool is the number 0/1 (validated as such); str(True) would not parse in the graph.
        array = np.array([int(v) if isinstance(v, (bool, np.bool_)) else v for v in array.ravel()],
                         dtype=object).reshape(array.shape)
    strings = np.where(missing, "?", array.astype(str))
    return strings.astype(object).astype(bytes)


def is_dataset(value) -> bool:
    """Whether ``value`` is a ``tf.data.Dataset`` (which shuffles itself, if at all)."""
    return isinstance(value, tf.data.Dataset)


def validate_labels(labels: Mapping, tasks, n: int | None = None) -> dict[str, np.ndarray]:
    """Checks a dict of label arrays against the tasks.

    Args:
        labels: ``{task name: array-like}``; missing entries as ``NaN``,
            ``None``, ``"?"`` or ``kmtl.MISSING``.
        tasks: list of :class:`keras_mtl.Task` (or a model with ``.tasks``).
        n: expected number of examples (defaults to the first task's length).

    Returns:
        ``{task name: raw array}`` ready for :func:`encode_labels` (float32
        numbers, or byte strings when the labels held strings or objects).

    Raises:
        ValueError: unknown or absent task, wrong length or shape, or a label
            outside its task's domain — naming the task, value and fix.

    Example:
        >>> import keras_mtl as kmtl
        >>> validate_labels({"car": [1, 2]}, [kmtl.Task("car")])
        Traceback (most recent call last):
        ...
        ValueError: Task 'car' (binary): label 2 at index 1 is not valid (1 invalid label). ...
    """
    tasks = _tasks_of(tasks)
    if not isinstance(labels, Mapping):
        raise ValueError(
            f"labels must be a dict {{task name: array}} for tasks {[t.name for t in tasks]}; "
            f"got {type(labels).__name__}."
        )
    names = [t.name for t in tasks]
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise ValueError(
            f"labels has entries for unknown task(s) {unknown}; the tasks are {names}. "
            "Remove them or add a kmtl.Task for each."
        )
    raw = {}
    for task in tasks:
        if task.name not in labels:
            raise ValueError(
                f"labels has no entry for task {task.name!r}. Give an array for every task; "
                f"if none of its labels are known, pass [None] * n ({_HOW_TO_MARK})."
            )
        raw[task.name] = _check_one(task, labels[task.name], n)
        if n is None:
            n = len(raw[task.name])
        if len(raw[task.name]) == 0:
            raise ValueError(f"Task {task.name!r}: no examples (empty label array).")
    return raw


def balanced_class_weight(labels, task: Task) -> dict[int, float]:
    """Class weights that make every class weigh the same in ``task``'s loss.

    Counted over the labelled entries only (missing labels are neither
    counted nor weighted)::

        w_c = n / (K · n_c)

    with ``n`` labelled entries, ``n_c`` of them of class ``c``, and ``K``
    classes (2 for binary and multilabel tasks, whose labels count over all
    units together). Every class then contributes ``n / K`` weighted
    entries; the same formula as scikit-learn's ``class_weight="balanced"``.

    Args:
        labels: the task's labels as for :func:`from_arrays` (missing as
            ``NaN``, ``None``, ``"?"`` or ``kmtl.MISSING``).
        task: a :class:`keras_mtl.Task` whose labels are classes.

    Returns:
        ``{class: weight}``, for ``kmtl.Task(..., class_weight=...)``.

    Raises:
        ValueError: invalid labels, a task without classes, or a class with
            no labelled example.

    Example:
        >>> import keras_mtl as kmtl
        >>> balanced_class_weight([0, 0, 0, 1, "?", None], kmtl.Task("defect"))
        {0: 0.6666666666666666, 1: 2.0}
    """
    raw = validate_labels({task.name: labels}, [task])[task.name]
    table = task.kind.class_weight_table(task, None)  # raises for kinds without classes
    classes = table.shape[-1]
    missing = is_missing(raw, task.kind)
    values = _numeric_values(task, raw, missing)[~missing].astype(np.int64)
    counts = np.bincount(values.ravel(), minlength=classes)
    empty = [c for c in range(classes) if counts[c] == 0]
    if empty:
        raise ValueError(
            f"Task {task.name!r}: no labelled example of class(es) {empty}, so no balanced weight "
            "exists; give those weights by hand, e.g. class_weight={0: 1.0, 1: 20.0}."
        )
    total = counts.sum()
    return {c: float(total / (classes * counts[c])) for c in range(classes)}


# -- Graph side: markers → sentinels on whole batches ------------------------

def _encode_one(raw: tf.Tensor, task: Task, check: bool) -> tf.Tensor:
    if raw.dtype == tf.string:
        text = tf.strings.strip(raw)
        lower = tf.strings.lower(text)
        missing = tf.reduce_any(
            tf.stack([tf.equal(lower, marker) for marker in MISSING_STRINGS], axis=0), axis=0)
        names = getattr(task, "class_names", None)
        if names:
            # A class name becomes its index; anything else must be a number.
            named = tf.equal(text[..., None], tf.constant(names))
            is_name = tf.reduce_any(named, axis=-1)
            text = tf.where(is_name, tf.strings.as_string(tf.argmax(tf.cast(named, tf.int32), axis=-1)), text)
        values = tf.strings.to_number(tf.where(missing, "0", text), tf.float32)
    else:
        values = tf.cast(raw, tf.float32)
        missing = tf.math.is_nan(values)
    sentinel = task.kind.sentinel
    if task.kind.class_labels:
        missing = missing | tf.equal(values, sentinel)
    # Clean first, so checks and casts never see a marker.
    values = tf.where(missing, tf.zeros_like(values), values)
    checks = []
    if check:
        checks.append(tf.debugging.Assert(
            tf.reduce_all(_in_domain(values, task)),
            [f"Task {task.name!r} ({task.kind}): a batch holds a label outside the task's "
             f"domain; {_HOW_TO_MARK}. Offending labels:",
             tf.boolean_mask(values, ~_in_domain(values, task))],
            summarize=8))
    with tf.control_dependencies(checks):
        encoded = tf.where(missing, tf.fill(tf.shape(values), sentinel), values)
    return tf.cast(encoded, task.kind.label_dtype)


def _in_domain(values: tf.Tensor, task: Task) -> tf.Tensor:
    """The graph's copy of the task's :class:`keras_mtl.kinds.LabelDomain` check."""
    domain = task.kind.domain(task)
    inside = tf.math.is_finite(values) & (values >= domain.low) & (values <= domain.high)
    if domain.integer:
        inside &= tf.equal(values, tf.round(values))
    return inside


def encode_labels(raw: Mapping, tasks, *, check: bool = False) -> dict[str, tf.Tensor]:
    """Maps missing markers to sentinels on a batch, inside the TF graph.

    Args:
        raw: ``{task name: tensor}`` — numbers (``NaN`` or ``-1`` for class
            kinds mark missing) or strings (``"?"``, ``""``, ``"nan"``,
            ``"None"`` mark missing).
        tasks: list of :class:`keras_mtl.Task`.
        check: add in-graph assertions that every labelled value is in its
            task's domain (used for datasets not validated up front).

    Returns:
        ``{task name: tensor}`` in the dtype of each task's kind, with its
        sentinel for missing labels: float32 with ``-1`` for
        binary/multilabel labels, int32 with ``-1`` for categorical, float32
        with ``NaN`` for regression and counts.
    """
    return {task.name: _encode_one(tf.convert_to_tensor(raw[task.name]), task, check)
            for task in _tasks_of(tasks)}


# -- Inputs --------------------------------------------------------------------

def _check_inputs(x, n: int | None) -> tuple[object, int]:
    """Validates features: same length everywhere, not empty, no NaN."""
    arrays = x if isinstance(x, Mapping) else {"x": x}
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    lengths = {k: len(v) for k, v in arrays.items()}
    n = n if n is not None else next(iter(lengths.values()))
    for key, array in arrays.items():
        if len(array) == 0:
            raise ValueError(f"Input {key!r} is empty: there are no examples to train on.")
        if len(array) != n:
            raise ValueError(
                f"Input {key!r} has {len(array)} examples but the labels have {n}; "
                "give one label per example for every task."
            )
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            bad = int(np.argwhere(~np.isfinite(array.reshape(len(array), -1)))[0][0])
            raise ValueError(
                f"Input {key!r} holds NaN or infinity (first at example {bad}); "
                "impute or drop those examples — missing values are allowed in labels only."
            )
        if array.dtype.kind not in "biuf":
            raise ValueError(f"Input {key!r} has dtype {array.dtype}; inputs must be numeric.")
    checked = arrays if isinstance(x, Mapping) else arrays["x"]
    return checked, n


def _finish(dataset: tf.data.Dataset, tasks: list[Task], check: bool) -> tf.data.Dataset:
    def encode(*element):
        x, raw = element[0], element[1]
        rest = element[2:]
        return (x, encode_labels(raw, tasks, check=check), *rest)

    return dataset.map(encode, num_parallel_calls=_AUTOTUNE).prefetch(_AUTOTUNE)


def from_arrays(x, labels: Mapping, tasks, batch_size: int = 32, shuffle: bool = False,
                seed: int | None = None, *, drop_remainder: bool = False,
                pack_labels: bool = False) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of ``(x, {task: labels})`` from arrays.

    Args:
        x: features, an array of shape ``(n, ...)`` or a dict of them keyed
            by input name (multi-input models).
        labels: ``{task name: array}`` with ``n`` entries each (multilabel:
            shape ``(n, number of labels)``); missing labels as ``NaN``,
            ``None``, ``"?"`` or ``kmtl.MISSING``.
        tasks: list of :class:`keras_mtl.Task` (or a model with ``.tasks``).
        batch_size: examples per batch.
        shuffle: reshuffle the examples every epoch.
        seed: shuffle seed, for reproducible order.
        drop_remainder: drop the last, smaller batch.
        pack_labels: yield the labels of every label group (tasks of one
            kind and loss) as one matrix under the key
            ``"labels:<first task>:<count>"`` instead of one tensor per task.
            The model takes them as they are; pass ``True`` with many tasks
            (dozens or more), where one tensor per task costs time in every
            step. :func:`unpack_labels` gives the per-task view back.

    Returns:
        ``tf.data.Dataset`` yielding ``(x, {task: y})`` batches with the
        sentinel in place of every missing label (packed: ``(x, {group
        key: matrix})``), with tf.data's autotuning off (it delays the ends
        of epochs on PyTorch and JAX; see ``_without_autotune``).

    Raises:
        ValueError: bad labels (see :func:`validate_labels`), mismatched
            lengths, empty input, ``NaN`` in ``x``, bad ``batch_size``.

    Example:
        >>> import numpy as np, keras_mtl as kmtl
        >>> ds = from_arrays(np.zeros((3, 2)), {"car": [1, "?", 0]}, [kmtl.Task("car")], 8)
        >>> next(iter(ds))[1]["car"].numpy().tolist()
        [1.0, -1.0, 0.0]
    """
    tasks = _tasks_of(tasks)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    pack = bool(pack_labels)
    x, n = _check_inputs(x, None)
    raw = validate_labels(labels, tasks, n)
    x_tensor = tf.nest.map_structure(tf.convert_to_tensor, x)
    groups = label_groups(tasks)
    # A group whose labels are all numbers travels as one matrix, its markers mapped
    # to sentinels by TensorFlow once, here: each batch is then one gather however
    # many tasks it holds. String labels are parsed in the graph, batch by batch.
    sources = []
    for group in groups:
        if all(raw[t.name].dtype == np.float32 for t in group):
            matrix = np.concatenate([raw[t.name].reshape(n, -1) for t in group], axis=1)
            sources.append(_encode_one(tf.convert_to_tensor(matrix), group[0], check=False))
        else:
            sources.append([tf.convert_to_tensor(raw[t.name]) for t in group])
    indices = tf.data.Dataset.range(n)
    if shuffle:
        indices = indices.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    indices = indices.batch(batch_size, drop_remainder=drop_remainder)

    def gather_and_encode(batch_indices):
        take = lambda t: tf.gather(t, batch_indices)  # noqa: E731
        y = {}
        for group, source in zip(groups, sources):
            if isinstance(source, list):
                columns = [_encode_one(take(raw_labels), t, check=False) for t, raw_labels in zip(group, source)]
                matrix = tf.concat([tf.reshape(c, (-1, label_width(t))) for c, t in zip(columns, group)], axis=1)
            else:
                matrix = take(source)
            y.update({packed_key(group): matrix} if pack else _split_columns(matrix, group))
        return tf.nest.map_structure(take, x_tensor), y if pack else {t.name: y[t.name] for t in tasks}

    return _without_autotune(indices.map(gather_and_encode, num_parallel_calls=_AUTOTUNE).prefetch(_AUTOTUNE))


def _without_autotune(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` with tf.data's autotuning off, for pipelines of arrays in memory.

    Under the PyTorch and JAX backends Keras reads a ``tf.data`` pipeline
    from Python, and with autotuning on the last step of an epoch can wait
    for tf.data's tuning thread: measured with TensorFlow 2.21 and Keras
    3.15.1 on PyTorch, epochs of 0.87–1.0 s ended at 1.26 s in 3 of 6 (the
    last step's return took 336–387 ms), at most 1.4 ms with autotuning off;
    the wait grows with the epoch (10·(2^k − 1) ms after the iterator
    started: 0.63, 1.27, 2.55, 5.1 s ...). A gather from arrays in memory
    gains nothing from the tuning; ``AUTOTUNE`` sizes take TensorFlow's
    defaults. ``python benchmarks/tfdata_tail.py`` shows whether a
    TensorFlow release still waits.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def _split_columns(matrix: tf.Tensor, group: list[Task]) -> dict[str, tf.Tensor]:
    """``{task: labels}`` from a group's encoded label matrix."""
    widths = [label_width(t) for t in group]
    one_per_example = [len(t.kind.label_shape(t, 1)) == 1 for t in group]
    if all(w == 1 for w in widths) and all(one_per_example):
        return {t.name: column for t, column in zip(group, tf.unstack(matrix, axis=1))}
    parts = tf.split(matrix, widths, axis=1)
    return {t.name: part[:, 0] if single else part for t, part, single in zip(group, parts, one_per_example)}


def unpack_labels(y: Mapping, tasks) -> dict:
    """``{task: labels}`` from a batch's labels, packed or not.

    With ``pack_labels=True`` :func:`from_arrays` packs each label group
    into one matrix (keys ``"labels:<first task>:<count>"``); this gives the
    per-task view back, e.g. to inspect a batch.

    Example:
        >>> import numpy as np, keras_mtl as kmtl
        >>> tasks = [kmtl.Task("car"), kmtl.Task("bike")]
        >>> ds = from_arrays(np.zeros((2, 1)), {"car": [1, 0], "bike": ["?", 1]}, tasks, pack_labels=True)
        >>> _, y = next(iter(ds))
        >>> sorted(y), unpack_labels(y, tasks)["bike"].numpy().tolist()
        (['labels:car:2'], [-1.0, 1.0])
    """
    tasks = _tasks_of(tasks)
    found = {t.name: y[t.name] for t in tasks if t.name in y}
    for group in label_groups(tasks):
        key = packed_key(group)
        if key in y:
            found.update(_split_columns(tf.convert_to_tensor(y[key]), group))
    absent = [t.name for t in tasks if t.name not in found]
    if absent:
        raise ValueError(f"The labels hold no entry for task(s) {absent}; their keys are {sorted(y)}.")
    return found


SAMPLINGS = ("size", "equal", "temperature")


def mixing_weights(sizes: Sequence[int], sampling: str = "size", temperature: float = 2.0) -> np.ndarray:
    """The probability of drawing the next example from each source.

    ``"size"``: ``p_i ∝ n_i`` (every example equally likely, as if the
    sources were concatenated); ``"equal"``: ``p_i = 1/S``; ``"temperature"``:
    ``p_i ∝ n_i^(1/T)``, between the two (T = 1 is by size, T → ∞ equal), as
    multi-task language models mix their datasets.

    Example:
        >>> mixing_weights([900, 100], "temperature", temperature=2.0).round(3).tolist()
        [0.75, 0.25]

    References:
        Arivazhagan, N. et al. (2019). Massively Multilingual Neural Machine
        Translation in the Wild. arXiv:1907.05019 (temperature sampling).
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling={sampling!r} is not one of {SAMPLINGS}.")
    sizes = np.asarray(sizes, dtype=np.float64)
    if sampling == "equal":
        weights = np.ones_like(sizes)
    elif sampling == "size":
        weights = sizes
    else:
        if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature={temperature!r} must be a finite number > 0 (1: by size).")
        weights = sizes ** (1.0 / temperature)
    return weights / weights.sum()


def mix(sources: Mapping, tasks, batch_size: int = 32, sampling: str = "size", *,
        temperature: float = 2.0, examples_per_epoch: int | None = None, seed: int | None = None,
        pack_labels: bool = False) -> tf.data.Dataset:
    """One pipeline from several sources that each label some of the tasks.

    Each source is ``(x, {task: labels})`` for the tasks it labels; its
    other tasks are missing, so the masked loss learns each task from the
    sources that label it. Every example of a batch is drawn from a source
    picked at random by :func:`mixing_weights`.

    Args:
        sources: ``{source name: (x, labels)}``; ``labels`` names a subset
            of the tasks (missing markers allowed as in :func:`from_arrays`).
        tasks: every task (or a model with ``.tasks``).
        batch_size: examples per batch.
        sampling: ``"size"``, ``"equal"`` or ``"temperature"``.
        temperature: ``T`` of ``"temperature"`` sampling.
        examples_per_epoch: examples drawn per pass (default: all sources'
            examples together); sources are repeated as needed.
        seed: seed of the draws and of each source's shuffle.
        pack_labels: as for :func:`from_arrays`.

    Returns:
        ``tf.data.Dataset`` of ``(x, {task: y})`` batches (packed with
        ``pack_labels=True``), with the sentinel for every label a source
        does not give.

    Raises:
        ValueError: no source, a source naming an unknown task or no task,
            an empty source, sources whose inputs differ in shape or dtype.

    Example:
        >>> import numpy as np, keras_mtl as kmtl
        >>> tasks = [kmtl.Task("car"), kmtl.Task("sign")]
        >>> ds = mix({"cars": (np.zeros((6, 2)), {"car": [1, 0, 1, 0, 1, 1]}),
        ...           "signs": (np.ones((2, 2)), {"sign": [1, 0]})}, tasks, batch_size=8, seed=0)
        >>> x, y = next(iter(ds))
        >>> x.shape[0], sorted(y), bool(np.all((x[:, 0].numpy() == 1) == (y["car"].numpy() == -1)))
        (8, ['car', 'sign'], True)
    """
    tasks = _tasks_of(tasks)
    if not isinstance(sources, Mapping) or not sources:
        raise ValueError("mix needs a dict {source name: (x, {task: labels})} with at least one source.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    pack = bool(pack_labels)
    names = [t.name for t in tasks]
    streams, sizes, spec = [], [], None
    for index, (source, value) in enumerate(sources.items()):
        if not isinstance(value, tuple) or len(value) != 2 or not isinstance(value[1], Mapping):
            raise ValueError(f"Source {source!r}: give (x, {{task: labels}}), e.g. (x, {{{names[0]!r}: y}}).")
        x, labels = value
        unknown = sorted(set(labels) - set(names))
        if unknown or not labels:
            raise ValueError(
                f"Source {source!r} labels {sorted(labels) if labels else 'no task'}"
                + (f"; unknown task(s) {unknown}" if unknown else "")
                + f". The tasks are {names}; each source labels one or more of them."
            )
        x, n = _check_inputs(x, None)
        full = {t.name: labels[t.name] if t.name in labels else _all_missing(t, n) for t in tasks}
        try:
            dataset = from_arrays(x, full, tasks, batch_size, shuffle=True,
                                  seed=None if seed is None else seed + index, pack_labels=pack)
        except ValueError as error:
            raise ValueError(f"Source {source!r}: {error}") from None
        element = dataset.element_spec[0]
        if spec is not None and not _same_inputs(spec, element):
            raise ValueError(
                f"Source {source!r} has inputs {element}, the first source {spec}: every source "
                "needs inputs of the same shape and dtype."
            )
        spec = element
        streams.append(dataset.unbatch().repeat())
        sizes.append(n)
    weights = mixing_weights(sizes, sampling, temperature)
    total = int(sum(sizes)) if examples_per_epoch is None else int(examples_per_epoch)
    mixed = tf.data.Dataset.sample_from_datasets(streams, weights=weights.tolist(), seed=seed)
    return mixed.take(total).batch(batch_size).prefetch(_AUTOTUNE)


def _all_missing(task: Task, n: int) -> np.ndarray:
    return np.full(task.kind.label_shape(task, n), np.nan, dtype=np.float32)


def _same_inputs(a, b) -> bool:
    flat_a, flat_b = tf.nest.flatten(a), tf.nest.flatten(b)
    return len(flat_a) == len(flat_b) and all(
        x.dtype == y.dtype and x.shape[1:] == y.shape[1:] for x, y in zip(flat_a, flat_b))


def from_dataframe(frame, tasks, features: str | Sequence[str] | None = None,
                   batch_size: int = 32, shuffle: bool = False,
                   seed: int | None = None, **kwargs) -> tf.data.Dataset:
    """A dataset from a pandas ``DataFrame``: feature columns and label columns.

    Each binary, categorical or regression task reads the column named after
    it; a multilabel task reads one column per label name. Cells may hold
    ``NaN``, ``None``, ``pd.NA`` or ``"?"`` for missing labels.

    Args:
        frame: a ``pandas.DataFrame``.
        tasks: list of :class:`keras_mtl.Task` (or a model with ``.tasks``).
        features: feature column name(s); default: every column that is not
            a label column.
        batch_size, shuffle, seed, **kwargs: as for :func:`from_arrays`.

    Returns:
        ``tf.data.Dataset`` of ``(x, {task: y})`` with ``x`` of shape
        ``(batch, number of features)``, float32.
    """
    tasks = _tasks_of(tasks)
    labels, used = _labels_from_frame(frame, tasks)
    if features is None:
        features = [c for c in frame.columns if c not in used]
    features = [features] if isinstance(features, str) else list(features)
    if not features:
        raise ValueError("No feature columns: pass features=[...] naming the input columns.")
    return from_arrays(_features_from_frame(frame[features]), labels, tasks, batch_size, shuffle, seed, **kwargs)


def _labels_from_frame(frame, tasks: list[Task]) -> tuple[dict, set]:
    """``({task: labels as objects}, the label columns used)`` from a DataFrame."""
    label_columns = {}
    for task in tasks:
        columns = task.kind.label_columns(task)
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise ValueError(
                f"Task {task.name!r}: the DataFrame has no column(s) {absent}; "
                f"its columns are {list(frame.columns)}."
            )
        label_columns[task.name] = columns
    labels = {}
    for task in tasks:
        columns = label_columns[task.name]
        one_per_example = len(task.kind.label_shape(task, 1)) == 1
        labels[task.name] = (frame[columns[0]] if one_per_example else frame[columns]).to_numpy(dtype=object)
    return labels, {c for columns in label_columns.values() for c in columns}


def _features_from_frame(frame) -> np.ndarray:
    """A DataFrame of numeric feature columns as a float32 matrix, or an error naming the others."""
    try:
        return frame.to_numpy(dtype=np.float32)
    except (TypeError, ValueError) as error:
        bad = [c for c in frame.columns if not _numeric_column(frame[c])]
        raise ValueError(
            f"Feature column(s) {bad or list(frame.columns)} are not numeric ({error}); encode "
            "them first (e.g. pd.get_dummies(frame, columns=[...])), or pass the numeric "
            "columns only — kmtl.data.from_dataframe(frame, tasks, features=[...]) picks them."
        ) from error


def encode_arrays(x, labels, tasks) -> tuple[object, dict[str, np.ndarray]]:
    """Features and labels as ``model.fit`` takes them from NumPy or pandas, checked and encoded.

    What :class:`keras_mtl.MultiTaskModel` does with the ``x`` and ``y`` a
    Keras user passes to ``fit`` and ``evaluate``: the same validation as
    :func:`from_arrays` (a clear error naming the task and the fix), and
    the same mapping of every missing marker to the task's sentinel.

    Args:
        x: features: an array, a dict or a list of arrays (multi-input
            models) or a pandas ``DataFrame`` of numeric columns.
        labels: ``{task: array}``, a ``DataFrame`` with a column per task
            (multilabel: a column per label name), an array (one task) or a
            list with one array per task; missing labels as ``NaN``,
            ``None``, ``"?"`` or ``kmtl.MISSING``. ``None``: features only
            (``predict``).
        tasks: list of :class:`keras_mtl.Task` (or a model with ``.tasks``).

    Returns:
        ``(x, {task: labels})``: ``x`` as NumPy (a ``DataFrame`` as float32),
        the labels in each kind's dtype with its sentinel where missing
        (``None`` without labels).

    Example:
        >>> import numpy as np, keras_mtl as kmtl
        >>> x, y = encode_arrays(np.zeros((3, 2)), {"car": [1, "?", 0]}, [kmtl.Task("car")])
        >>> y["car"].tolist()
        [1.0, -1.0, 0.0]
    """
    if hasattr(x, "columns") and hasattr(x, "to_numpy"):  # a pandas DataFrame
        x = _features_from_frame(x)
    if labels is None:
        return x, None
    tasks = _tasks_of(tasks)
    names = [t.name for t in tasks]
    if hasattr(labels, "columns") and hasattr(labels, "to_numpy"):
        labels = _labels_from_frame(labels, tasks)[0]
    elif not isinstance(labels, Mapping):
        if len(tasks) == 1 and not isinstance(labels, (list, tuple)):
            labels = {names[0]: labels}
        elif isinstance(labels, (list, tuple)) and len(labels) == len(tasks):
            labels = dict(zip(names, labels))
        else:
            raise ValueError(
                f"Labels must be a dict keyed by task name {names} (or a DataFrame with a column "
                f"per task); got {type(labels).__name__}."
            )
    if isinstance(x, (list, tuple)):  # a multi-input model's inputs, in order
        checked, n = _check_inputs({f"input {i}": value for i, value in enumerate(x)}, None)
        x = [checked[f"input {i}"] for i in range(len(x))]
    else:
        x, n = _check_inputs(x, None)
    raw = validate_labels(labels, tasks, n)
    encoded = encode_labels(raw, tasks)
    return x, {name: encoded[name].numpy() for name in names}


def _numeric_column(column) -> bool:
    try:
        column.to_numpy(dtype=np.float32)
    except (TypeError, ValueError):
        return False
    return True


def _split_element(element, x_key, tasks):
    """(x, labels[, sample_weight]) from a tuple or a feature dict."""
    if isinstance(element, Mapping):
        if x_key is None:
            raise ValueError(
                "The dataset yields dicts; say which entries are the inputs with "
                "x_key='image' (or a list of keys)."
            )
        keys = [x_key] if isinstance(x_key, str) else list(x_key)
        x = element[keys[0]] if isinstance(x_key, str) else {k: element[k] for k in keys}
        labels = {t.name: element[t.name] for t in tasks if t.name in element}
        absent = [t.name for t in tasks if t.name not in element]
        if absent:
            raise ValueError(
                f"The dataset's elements have no entry for task(s) {absent}; "
                f"their keys are {sorted(element)}."
            )
        return (x, labels)
    if not isinstance(element, tuple) or len(element) not in (2, 3):
        raise ValueError("The dataset must yield (x, {task: labels}) or (x, labels, sample_weight).")
    return element


def from_dataset(dataset: tf.data.Dataset, tasks, *, batch_size: int | None = None,
                 x_key: str | Sequence[str] | None = None) -> tf.data.Dataset:
    """Wraps a ``tf.data.Dataset`` of ``(x, labels)`` into a multi-task pipeline.

    The first batch is checked eagerly (a ``ValueError`` naming the task, the
    value and the fix); every later batch is checked inside the graph
    (``tf.errors.InvalidArgumentError`` with the same message).

    Args:
        dataset: yields ``(x, {task: y})`` (optionally with a sample weight),
            or dicts of features with the inputs under ``x_key`` and one
            entry per task name (as TFDS datasets do).
        tasks: list of :class:`keras_mtl.Task` (or a model with ``.tasks``).
        batch_size: if given, the dataset is unbatched and gets batched here;
            if ``None`` it must already be batched.
        x_key: for dict elements, the key (or keys) holding the inputs.

    Returns:
        ``tf.data.Dataset`` of ``(x, {task: y})`` with sentinels.
    """
    tasks = _tasks_of(tasks)
    dataset = dataset.map(lambda *e: _split_element(e[0] if len(e) == 1 else e, x_key, tasks))
    if batch_size is not None:
        dataset = dataset.batch(batch_size)
    first = next(iter(dataset.take(1)), None)
    if first is None:
        raise ValueError("The dataset is empty: there are no examples to train on.")
    if not isinstance(first[1], Mapping):
        raise ValueError(
            f"The dataset's labels must be a dict {{task name: labels}} for tasks "
            f"{[t.name for t in tasks]}; got {type(first[1]).__name__}."
        )
    first_x = tf.nest.flatten(first[0])[0]
    unbatched = [t.name for t in tasks if t.name in first[1]
                 and len(first[1][t.name].shape) < len(t.kind.label_shape(t, 1))]
    if len(first_x.shape) == 0 or unbatched:
        raise ValueError("The dataset yields single examples: pass batch_size=... to batch them.")
    batch_labels = {k: _decoded(v.numpy()) for k, v in first[1].items()}
    validate_labels(batch_labels, tasks)
    return _finish(dataset, tasks, check=True)


def _decoded(array: np.ndarray) -> np.ndarray:
    if array.dtype == object:
        return np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object])(array)
    return array
