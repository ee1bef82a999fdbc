import copy
import math
import pickle

import numpy as np
import pandas as pd
import pytest
from keras import ops

import keras_mtl as kmtl
from keras_mtl.missing import MISSING, is_missing, label_mask

pytestmark = pytest.mark.portable

KINDS = ["binary", "multilabel", "categorical", "regression"]
MARKERS = {
    "nan": math.nan,
    "numpy_nan": np.nan,
    "none": None,
    "question_mark": "?",
    "empty_string": "",
    "padded_question_mark": " ? ",
    "MISSING": MISSING,
    "pandas_NA": pd.NA,
}


def test_missing_is_minus_one_and_public():
    assert kmtl.MISSING is MISSING
    assert MISSING == -1
    assert int(MISSING) == -1
    assert MISSING + 1 == 0
    assert float(MISSING) == -1.0
    assert math.isnan(kmtl.MISSING_REGRESSION)


def test_missing_repr():
    assert repr(MISSING) == "kmtl.MISSING"
    assert str(MISSING) == "kmtl.MISSING"
    assert repr([1, MISSING]) == "[1, kmtl.MISSING]"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_missing_pickle_round_trip_keeps_identity(protocol):
    assert pickle.loads(pickle.dumps(MISSING, protocol=protocol)) is MISSING
    labels = pickle.loads(pickle.dumps([1.0, MISSING], protocol=protocol))
    assert labels[1] is MISSING
    assert is_missing(labels, kind="regression").tolist() == [False, True]


def test_missing_copy_keeps_identity():
    assert copy.copy(MISSING) is MISSING
    assert copy.deepcopy([MISSING])[0] is MISSING


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("marker", list(MARKERS.values()), ids=list(MARKERS))
def test_is_missing_every_marker(kind, marker):
    labels = [1, marker, 0, marker]
    assert is_missing(labels, kind=kind).tolist() == [False, True, False, True]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("marker", ["nan", "NaN", "None", b"?", b""])
def test_is_missing_text_markers(kind, marker):
    assert is_missing(["1", marker], kind=kind).tolist() == [False, True]


@pytest.mark.parametrize("kind", KINDS)
def test_is_missing_numpy_arrays(kind):
    floats = np.array([0.0, np.nan, 1.0])
    assert is_missing(floats, kind).tolist() == [False, True, False]
    strings = np.array(["1", "?", "", "0"])
    assert is_missing(strings, kind).tolist() == [False, True, True, False]
    assert is_missing(np.array([True, False]), kind).tolist() == [False, False]


@pytest.mark.parametrize("kind", KINDS)
def test_is_missing_keeps_shape(kind):
    labels = np.array([[1.0, np.nan], [np.nan, 0.0], [0.0, 1.0]])
    expected = np.array([[False, True], [True, False], [False, False]])
    np.testing.assert_array_equal(is_missing(labels, kind), expected)
    nested = [[1, None], ["?", 0], [0, MISSING]]
    np.testing.assert_array_equal(
        is_missing(nested, kind), [[False, True], [True, False], [False, True]])


@pytest.mark.parametrize("kind", ["binary", "multilabel", "categorical"])
def test_minus_one_is_missing_for_class_kinds(kind):
    assert is_missing([-1, 0, 1], kind).tolist() == [True, False, False]
    assert is_missing([-1.0, 2.0], kind).tolist() == [True, False]
    assert is_missing(np.array([-1, 3]), kind).tolist() == [True, False]
    assert is_missing(np.array([-1.0, 3.0], dtype=np.float32), kind).tolist() == [True, False]


@pytest.mark.parametrize("kind", ["binary", "multilabel", "categorical"])
def test_minus_one_as_text_is_missing_for_class_kinds(kind):
    """"-1" read from a text file means what -1 means (the graph parses it so too)."""
    assert is_missing(["-1", " -1.0 ", b"-1", "1", "x"], kind).tolist() == [True, True, True, False, False]
    assert is_missing(np.array(["-1", "0", "-10"]), kind).tolist() == [True, False, False]
    assert is_missing(np.array([], dtype=str), kind).tolist() == []


def test_minus_one_as_text_is_data_for_regression():
    assert is_missing(["-1", "?"], "regression").tolist() == [False, True]
    assert is_missing(np.array(["-1", "-1.0"]), "regression").tolist() == [False, False]


def test_minus_one_is_data_for_regression():
    assert is_missing([-1.0, MISSING], kind="regression").tolist() == [False, True]
    assert is_missing([-1, MISSING, None], kind="regression").tolist() == [False, True, True]
    assert is_missing(np.array([-1.0, np.nan]), "regression").tolist() == [False, True]
    assert is_missing(np.array([-1, 2]), "regression").tolist() == [False, False]
    assert is_missing(np.array([-1.0, 0.5], dtype=object), "regression").tolist() == [False, False]


def test_missing_in_a_tuple_of_regression_targets_is_missing():
    """A tuple is read like a list: MISSING stays recognisable next to -1.0."""
    assert is_missing((-1.0, MISSING), kind="regression").tolist() == [False, True]


def test_is_missing_real_labels_are_not_missing():
    labels = [0, 1, 2.5, "3", np.float32(1.0), np.int64(0), True, False]
    assert not is_missing(labels, "regression").any()


def test_is_missing_pandas_series():
    series = pd.Series([1.0, None, 0.0, np.nan])
    assert is_missing(series, "binary").tolist() == [False, True, False, True]
    nullable = pd.array([1, pd.NA, 0], dtype="Int64")
    assert is_missing(nullable, "categorical").tolist() == [False, True, False]


@pytest.mark.parametrize("kind", ["binary", "multilabel", "categorical"])
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_label_mask_int_class_kinds(kind, dtype):
    y = np.array([[1, -1], [0, 2]], dtype=dtype)
    mask = ops.convert_to_numpy(label_mask(y, kind))
    np.testing.assert_array_equal(mask, [[True, False], [True, True]])
    assert mask.dtype == bool


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_label_mask_int_regression_all_labelled(dtype):
    y = np.array([-1, 0, 5], dtype=dtype)
    np.testing.assert_array_equal(ops.convert_to_numpy(label_mask(y, "regression")), [True] * 3)


@pytest.mark.parametrize("kind", ["binary", "multilabel", "categorical"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_label_mask_float_class_kinds(kind, dtype):
    y = np.array([1.0, -1.0, np.nan, 0.0], dtype=dtype)
    mask = ops.convert_to_numpy(label_mask(y, kind))
    np.testing.assert_array_equal(mask, [True, False, False, True])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_label_mask_float_regression(dtype):
    y = np.array([-1.0, np.nan, 2.5, 0.0], dtype=dtype)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(label_mask(y, "regression")), [True, False, True, True])


SPELLINGS = ["?", "", " ", "nan", "NaN", "None", "none", "NA", "na", "N/A", "n/a", "null", "NULL", " ? "]


def test_every_entry_point_reads_the_same_missing_markers_in_any_case():
    """The documented markers (case and surrounding spaces ignored) are missing in NumPy, in the graph and in fit."""
    import tensorflow as tf  # the pipelines are tf.data on every backend

    labels = ["1", *SPELLINGS, "0"]
    expected = [1.0] + [-1.0] * len(SPELLINGS) + [0.0]
    tasks = [kmtl.Task("car")]
    x = np.zeros((len(labels), 1), "float32")
    assert is_missing(labels).tolist() == [e == -1.0 for e in expected]
    assert is_missing(np.array(labels)).tolist() == [e == -1.0 for e in expected]
    batch = next(iter(kmtl.data.from_arrays(x, {"car": labels}, tasks, batch_size=64, pack_labels=False)))
    assert batch[1]["car"].numpy().tolist() == expected
    wrapped = tf.data.Dataset.from_tensor_slices((x, {"car": labels}))
    assert next(iter(kmtl.data.from_dataset(wrapped, tasks, batch_size=64)))[1]["car"].numpy().tolist() == expected
    assert kmtl.data.encode_arrays(x, {"car": labels}, tasks)[1]["car"].tolist() == expected
    with pytest.raises(ValueError, match="label 'unknown' at index 0 is not a number"):
        kmtl.data.validate_labels({"car": ["unknown"]}, tasks)
