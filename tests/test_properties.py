"""Properties of the label pipeline over arbitrary label arrays (hypothesis).

Any mix of labels, missing markers (``NaN``, ``None``, ``"?"``,
``kmtl.MISSING``, ``-1`` for class kinds, ``"nan"``, ``""``) and invalid
values through :func:`keras_mtl.data.from_arrays` either raises a
``ValueError`` that names the task, or yields batches whose encoded labels
and masked loss equal a NumPy reference of the formula of section 2:
``J = (1/m) Σ_i Σ_{j labelled} L(ŷ_j⁽ⁱ⁾, y_j⁽ⁱ⁾)`` (or the mean over labelled
entries). Never a ``NaN`` loss, never an error from inside TensorFlow.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_mtl as kmtl

# Small and reproducible: the same examples on every run, nothing written into the repo.
SETTINGS = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

NUM_CLASSES = 3
MISSING, VALUE, INVALID = "missing", "value", "invalid"
_ANY_KIND_MISSING = [math.nan, np.nan, None, "?", "nan", "", " ? ", kmtl.MISSING]
# (label as a user writes it, what it is, its number)
POOLS = {
    "binary": (
        [(m, MISSING, None) for m in _ANY_KIND_MISSING + [-1, -1.0, "-1"]]
        + [(0, VALUE, 0.0), (1, VALUE, 1.0), (1.0, VALUE, 1.0), (np.int64(0), VALUE, 0.0),
           (True, VALUE, 1.0), (False, VALUE, 0.0), ("1", VALUE, 1.0), (" 0", VALUE, 0.0)]
        + [(2, INVALID, None), (-3, INVALID, None), (0.5, INVALID, None), ("yes", INVALID, None),
           (math.inf, INVALID, None), ("1e999", INVALID, None)]),
    "categorical": (
        [(m, MISSING, None) for m in _ANY_KIND_MISSING + [-1, -1.0, "-1"]]
        + [(0, VALUE, 0.0), (2, VALUE, 2.0), (1.0, VALUE, 1.0), (np.int32(2), VALUE, 2.0), ("1", VALUE, 1.0)]
        + [(3, INVALID, None), (-3, INVALID, None), (0.5, INVALID, None), ("yes", INVALID, None),
           (math.inf, INVALID, None), (-math.inf, INVALID, None)]),
    "regression": (
        [(m, MISSING, None) for m in _ANY_KIND_MISSING]
        # -1 is a real target here, as number or text
        + [(-1, VALUE, -1.0), (-1.0, VALUE, -1.0), ("-1", VALUE, -1.0), (2, VALUE, 2.0), (-3, VALUE, -3.0),
           (0.25, VALUE, 0.25), ("2.5", VALUE, 2.5), (np.float32(-0.5), VALUE, -0.5)]
        + [(math.inf, INVALID, None), (-math.inf, INVALID, None), ("yes", INVALID, None),
           ("1e999", INVALID, None)]),
}
POOLS["multilabel"] = POOLS["binary"]
TASKS = {
    "binary": kmtl.Task("car"),
    "categorical": kmtl.Task("weather", kind="categorical", num_classes=NUM_CLASSES),
    "multilabel": kmtl.Task("objects", kind="multilabel", labels=["sign", "light"]),
    "regression": kmtl.Task("distance", kind="regression"),
}
LOSSES = {"binary": kmtl.losses.MaskedBinaryCrossentropy, "multilabel": kmtl.losses.MaskedBinaryCrossentropy,
          "categorical": kmtl.losses.MaskedCategoricalCrossentropy,
          "regression": kmtl.losses.MaskedMeanSquaredError}


@st.composite
def label_arrays(draw, kind, n=None, allow_invalid=None):
    """``(labels as the user passes them, tags (n, units), numbers (n, units))``."""
    if allow_invalid is None:  # half the arrays hold only labels and markers, to reach the loss
        allow_invalid = draw(st.booleans())
    pool = [entry for entry in POOLS[kind] if allow_invalid or entry[1] != INVALID]
    n = n or draw(st.integers(1, 6))
    multilabel = isinstance(TASKS[kind].kind, kmtl.kinds.Multilabel)
    units = TASKS[kind].units if multilabel else 1
    entries = [[draw(st.sampled_from(pool)) for _ in range(units)] for _ in range(n)]
    tags = np.array([[e[1] for e in row] for row in entries])
    values = np.array([[np.nan if e[2] is None else e[2] for e in row] for row in entries])
    rows = [[e[0] for e in row] if multilabel else row[0][0] for row in entries]
    container = draw(st.sampled_from(["list", "object_array", "numeric_array"]))
    plain = all(type(e[0]) in (int, float) for row in entries for e in row)  # MISSING's type is not int
    if container == "object_array" or (container == "numeric_array" and not plain):
        rows = np.array(rows, dtype=object)
    elif container == "numeric_array":
        rows = np.array(rows, dtype=np.float64)
    return rows, tags, values


def predictions(kind, m, seed=0):
    """Fixed predictions in user units: probabilities, class probabilities, values."""
    rng = np.random.default_rng(seed)
    if isinstance(TASKS[kind].kind, kmtl.kinds.Categorical):
        p = rng.uniform(0.1, 1.0, size=(m, NUM_CLASSES))
        return (p / p.sum(axis=1, keepdims=True)).astype("float32")
    if isinstance(TASKS[kind].kind, kmtl.kinds.Regression):
        return rng.normal(size=(m, 1)).astype("float32")
    return rng.uniform(0.05, 0.95, size=(m, TASKS[kind].units)).astype("float32")


def reference_loss(kind, values, labelled, p, normalize):
    """Section 2 in NumPy: the sum over labelled entries, over m (or over their count)."""
    p = p.astype("float64")
    y = np.where(labelled, values, 0.0)
    if isinstance(TASKS[kind].kind, kmtl.kinds.Categorical):
        entries = -np.log(p[np.arange(len(p)), y[:, 0].astype(int)])[:, None]
    elif isinstance(TASKS[kind].kind, kmtl.kinds.Regression):
        entries = (p - y) ** 2
    else:
        entries = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    total = np.sum(np.where(labelled, entries, 0.0))
    count = labelled.sum()
    if normalize == "batch":
        return total / len(p)
    return total / count if count else 0.0


def encoded_reference(kind, values, labelled):
    sentinel = np.nan if isinstance(TASKS[kind].kind, kmtl.kinds.Regression) else -1.0
    encoded = np.where(labelled, values, sentinel)
    return encoded if isinstance(TASKS[kind].kind, kmtl.kinds.Multilabel) else encoded[:, 0]


def build_pipeline(x, labels, tasks, batch_size):
    """``from_arrays`` batches, or the ValueError; an error from inside TensorFlow fails."""
    try:
        return list(kmtl.data.from_arrays(x, labels, tasks, batch_size=batch_size)), None
    except ValueError as error:
        return None, error
    except tf.errors.OpError as error:  # pragma: no cover - the property under test
        pytest.fail(f"an error from inside TensorFlow instead of a ValueError: {error!r}")


@pytest.mark.parametrize("kind", list(TASKS))
@pytest.mark.parametrize("normalize", ["batch", "labeled"])
def test_labels_are_rejected_naming_the_task_or_give_the_reference_loss(kind, normalize):
    task = TASKS[kind]

    @SETTINGS
    @given(data=label_arrays(kind), batch_size=st.integers(1, 4))
    def check(data, batch_size):
        labels, tags, values = data
        x = np.arange(len(tags), dtype="float32")[:, None]
        batches, error = build_pipeline(x, {task.name: labels}, [task], batch_size)
        invalid = bool((tags == INVALID).any())
        if error is not None:
            assert invalid, f"valid labels {labels!r} rejected: {error}"
            assert f"'{task.name}'" in str(error), f"the error does not name the task: {error}"
            return
        assert not invalid, f"invalid labels {labels!r} accepted"
        labelled = tags == VALUE
        seen = 0
        for x_batch, y in batches:
            rows = slice(seen, seen + len(x_batch))
            seen += len(x_batch)
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(y[task.name]).astype("float64"),
                encoded_reference(kind, values[rows], labelled[rows]))
            p = predictions(kind, len(x_batch), seed=seen)
            loss = float(keras.ops.convert_to_numpy(LOSSES[kind](normalize=normalize)(y[task.name], p)))
            assert math.isfinite(loss)
            np.testing.assert_allclose(loss, reference_loss(kind, values[rows], labelled[rows], p, normalize),
                                       rtol=1e-5, atol=1e-7)
        assert seen == len(tags)

    check()


_MODEL = {}


def model():
    """One small four-task model for every example (built once: examples must stay fast)."""
    if not _MODEL:
        keras.utils.set_random_seed(3)
        tasks = [kmtl.Task("car", loss_weight=1.5), kmtl.Task("weather", kind="categorical",
                                                                num_classes=NUM_CLASSES, loss_weight=2.0),
                 kmtl.Task("objects", kind="multilabel", labels=["sign", "light"], loss_weight=0.5),
                 kmtl.Task("distance", kind="regression")]
        inputs = keras.Input((2,), name="x")
        built = kmtl.MultiTaskModel(inputs, keras.layers.Dense(4, activation="tanh")(inputs), tasks)
        built.compile(optimizer="sgd")
        _MODEL["model"] = built
    return _MODEL["model"]


@st.composite
def every_task(draw):
    n = draw(st.integers(1, 6))
    broken = draw(st.sampled_from([None, None, *TASKS]))  # at most one task may hold invalid labels
    return {kind: draw(label_arrays(kind, n=n, allow_invalid=kind == broken)) for kind in TASKS}


@SETTINGS
@given(data=every_task(), batch_size=st.integers(1, 4))
def test_model_loss_of_every_batch_is_the_weighted_reference(data, batch_size):
    """Through ``model.compute_loss``: Σ_tasks weight × each task's section-2 loss."""
    mtl = model()
    kinds = {task.name: kind for kind, task in TASKS.items()}
    labels = {name: data[kind][0] for name, kind in kinds.items()}
    n = len(data["binary"][1])
    x = np.linspace(-1, 1, 2 * n, dtype="float32").reshape(n, 2)
    batches, error = build_pipeline(x, labels, mtl, batch_size)
    invalid = {name for name, kind in kinds.items() if (data[kind][1] == INVALID).any()}
    if error is not None:
        named = {name for name in kinds if f"'{name}'" in str(error)}
        assert named and named <= invalid, f"{error} (tasks with invalid labels: {sorted(invalid)})"
        return
    assert not invalid
    seen = 0
    for x_batch, y in batches:
        rows = slice(seen, seen + len(x_batch))
        seen += len(x_batch)
        y_pred = mtl(x_batch)
        total = float(keras.ops.convert_to_numpy(mtl.compute_loss(x_batch, y, y_pred, training=False)))
        expected = 0.0
        for task in mtl.tasks:
            _, tags, values = data[kinds[task.name]]
            p = keras.ops.convert_to_numpy(y_pred[task.name])
            expected += task.loss_weight * reference_loss(task.kind, values[rows], tags[rows] == VALUE, p,
                                                          "batch")
        assert math.isfinite(total)
        np.testing.assert_allclose(total, expected, rtol=1e-5, atol=1e-6)
    assert seen == n
