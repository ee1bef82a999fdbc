import math
import types

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import keras_mtl as kmtl
from keras_mtl import data
from keras_mtl.tasks import Task

M = kmtl.MISSING
CAR = Task("car")
OBJECTS = Task("objects", kind="multilabel", labels=["pedestrian", "bike"])
WEATHER = Task("weather", kind="categorical", num_classes=4)
DISTANCE = Task("distance", kind="regression")
TASKS = [CAR, OBJECTS, WEATHER, DISTANCE]
BY_KIND = {t.kind: t for t in TASKS}

# Labels per kind with None where a label is missing, and what the pipeline must yield.
RAW = {
    "binary": [1, None, 0, None, 1],
    "multilabel": [[1, None], [None, 0], [0, 1], [None, None], [1, 1]],
    "categorical": [2, None, 0, 3, None],
    "regression": [-1.0, None, 1 / 3, 0.1, None, 123456.789, -1e-8],
}
EXPECTED = {
    "binary": np.array([1, -1, 0, -1, 1], np.float32),
    "multilabel": np.array([[1, -1], [-1, 0], [0, 1], [-1, -1], [1, 1]], np.float32),
    "categorical": np.array([2, -1, 0, 3, -1], np.int32),
    "regression": np.array([-1.0, np.nan, 1 / 3, 0.1, np.nan, 123456.789, -1e-8], np.float32),
}
MARKERS = {"nan": math.nan, "none": None, "question_mark": "?", "MISSING": M}


def with_marker(values, marker):
    if isinstance(values, list):
        return [with_marker(v, marker) for v in values]
    return marker if values is None else values


def collect(dataset):
    """All batches concatenated: (x, {task: labels}), plus the batch sizes."""
    xs, labels, sizes = [], {}, []
    for x, y in dataset:
        xs.append(x)
        sizes.append(int(tf.nest.flatten(x)[0].shape[0]))
        for name, value in y.items():
            labels.setdefault(name, []).append(value.numpy())
    x = tf.nest.map_structure(lambda *parts: np.concatenate([p.numpy() for p in parts]), *xs)
    return x, {k: np.concatenate(v) for k, v in labels.items()}, sizes


def features(n):
    return np.arange(2 * n, dtype=np.float32).reshape(n, 2)


def chain_of_ops(dataset):
    """Dataset op names from the final one back to the source (first inputs)."""
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(dataset._as_serialized_graph().numpy())
    nodes = {node.name: node for node in graph.node}

    def first_input(node):
        inputs = [i for i in node.input if not i.startswith("^")]
        return nodes.get(inputs[0].split(":")[0]) if inputs else None

    node = first_input(next(n for n in graph.node if n.op == "_Retval"))
    ops = []
    while node is not None and "Dataset" in node.op:
        ops.append(node.op)
        node = first_input(node)
    return ops


# -- markers and encoding -----------------------------------------------------------

@pytest.mark.parametrize("container", ["list", "tuple", "object_array", "series"])
@pytest.mark.parametrize("kind", list(RAW))
def test_four_markers_give_identical_batches(kind, container):
    task = BY_KIND[kind]
    n = len(RAW[kind])
    encoded = {}
    for marker_name, marker in MARKERS.items():
        labels = with_marker(RAW[kind], marker)
        if container == "tuple":
            labels = tuple(labels)
        elif container == "object_array":
            labels = np.array(labels, dtype=object)
        elif container == "series":
            if isinstance(kmtl.kinds.get(kind), kmtl.kinds.Multilabel):
                labels = pd.DataFrame(labels)
            else:
                labels = pd.Series(labels, dtype=object)
        _, y, sizes = collect(data.from_arrays(features(n), {task.name: labels}, [task], batch_size=2))
        assert sizes == [2] * (n // 2) + [1] * (n % 2)
        encoded[marker_name] = y[task.name]
    for marker_name, value in encoded.items():
        assert value.dtype == EXPECTED[kind].dtype, marker_name
        np.testing.assert_array_equal(value, EXPECTED[kind], err_msg=marker_name)


@pytest.mark.parametrize("kind", ["binary", "multilabel", "categorical"])
def test_numeric_arrays_with_sentinel_or_nan(kind):
    task = BY_KIND[kind]
    expected = EXPECTED[kind]
    as_minus_one = np.where(expected == -1, -1, expected).astype(np.int64)
    as_nan = np.where(expected == -1, np.nan, expected).astype(np.float64)
    for labels in (as_minus_one, as_nan, as_nan.astype(np.float32)):
        _, y, _ = collect(data.from_arrays(features(len(labels)), {task.name: labels}, [task], 8))
        np.testing.assert_array_equal(y[task.name], expected)


def test_regression_minus_one_stays_minus_one():
    _, y, _ = collect(data.from_arrays(
        features(4), {"distance": np.array([-1.0, np.nan, -1, 2.0])}, [DISTANCE], 4))
    np.testing.assert_array_equal(y["distance"], [-1.0, np.nan, -1.0, 2.0])
    _, y, _ = collect(data.from_arrays(features(3), {"distance": [-1, M, "-1"]}, [DISTANCE], 4))
    np.testing.assert_array_equal(y["distance"], [-1.0, np.nan, -1.0])


def test_other_missing_strings():
    _, y, _ = collect(data.from_arrays(
        features(6), {"car": ["1", "", " ? ", "nan", "None", "0"]}, [CAR], 8))
    np.testing.assert_array_equal(y["car"], [1, -1, -1, -1, -1, 0])


def test_minus_one_as_text():
    """Up-front validation and the graph agree: "-1" is missing for classes, a target for regression."""
    _, y, _ = collect(data.from_arrays(features(3), {"car": ["1", "-1", "?"]}, [CAR], 8))
    np.testing.assert_array_equal(y["car"], [1, -1, -1])
    _, y, _ = collect(data.from_arrays(features(3), {"weather": np.array(["2", "-1", "0"])}, [WEATHER], 8))
    np.testing.assert_array_equal(y["weather"], [2, -1, 0])
    _, y, _ = collect(data.from_arrays(features(2), {"distance": ["-1", "?"]}, [DISTANCE], 8))
    np.testing.assert_array_equal(y["distance"], [-1.0, np.nan])
    source = tf.data.Dataset.from_tensor_slices((features(4), {"car": ["-1", "0", "-1", "1"]}))
    _, y, _ = collect(data.from_dataset(source, [CAR], batch_size=2))
    np.testing.assert_array_equal(y["car"], [-1, 0, -1, 1])


def test_bool_labels_for_a_binary_task():
    for labels in ([True, False, None], np.array([True, False, False])):
        _, y, _ = collect(data.from_arrays(features(3), {"car": labels}, [CAR], 8))
        np.testing.assert_array_equal(y["car"], [1, 0, -1 if labels[2] is None else 0])


def test_string_numbers_and_bytes():
    _, y, _ = collect(data.from_arrays(
        features(4), {"weather": np.array([b"3", b"?", b"0", b"1"])}, [WEATHER], 8))
    np.testing.assert_array_equal(y["weather"], [3, -1, 0, 1])
    _, y, _ = collect(data.from_arrays(features(3), {"weather": ["2", None, 1.0]}, [WEATHER], 8))
    np.testing.assert_array_equal(y["weather"], [2, -1, 1])


def test_binary_labels_of_shape_n_1():
    _, y, _ = collect(data.from_arrays(features(3), {"car": [[1], [None], [0]]}, [CAR], 8))
    np.testing.assert_array_equal(y["car"], [1, -1, 0])


def test_encoded_dtypes_and_shapes():
    n = 5
    labels = {t.name: RAW[t.kind][:n] for t in TASKS}
    dataset = data.from_arrays(features(n), labels, TASKS, batch_size=2)
    x_spec, y_spec = dataset.element_spec
    assert x_spec.dtype == tf.float32 and x_spec.shape.as_list() == [None, 2]
    assert {k: (v.dtype, v.shape.as_list()) for k, v in y_spec.items()} == {
        "car": (tf.float32, [None]),
        "objects": (tf.float32, [None, 2]),
        "weather": (tf.int32, [None]),
        "distance": (tf.float32, [None]),
    }
    x, y, _ = collect(dataset)
    np.testing.assert_array_equal(x, features(n))
    for task in TASKS:
        np.testing.assert_array_equal(y[task.name], EXPECTED[task.kind][:n], err_msg=task.name)


def test_accepts_a_model_with_tasks():
    model = types.SimpleNamespace(tasks=[CAR])
    _, y, _ = collect(data.from_arrays(features(2), {"car": [1, "?"]}, model, 8))
    np.testing.assert_array_equal(y["car"], [1, -1])


# -- bad input: ValueError naming the task, the value and the fix --------------------

@pytest.mark.parametrize(
    ("task", "labels", "patterns"),
    [
        (CAR, [1, 2, 0], ["'car'", "label 2 at index 1", "kind='categorical', num_classes=3", "NaN, None"]),
        (CAR, [0.5, 1, 0], ["'car'", "label 0.5 at index 0", "0 or 1"]),
        (CAR, [1, 2, 3, 0], ["'car'", "2 invalid labels"]),
        (CAR, [1, "yes", 0], ["'car'", "'yes'", "index 1", "not a number", "'?'"]),
        (OBJECTS, [[1, 0], [3, None]], ["'objects'", "label 3 at index (1, 0)"]),
        (WEATHER, [0, 7, 1], ["'weather'", "label 7 at index 1", "0..3"]),
        (WEATHER, [0, 1.5, 1], ["'weather'", "label 1.5", "0..3"]),
        (WEATHER, [0, -2, 1], ["'weather'", "label -2"]),
        (WEATHER, ["sunny", 1, 0], ["'weather'", "'sunny'"]),
        (DISTANCE, [1.0, math.inf, 2.0], ["'distance'", "label inf at index 1", "finite"]),
        (DISTANCE, [1.0, 2.0, -math.inf], ["'distance'", "label -inf at index 2"]),
        (DISTANCE, ["1.5", "far", None], ["'distance'", "'far'"]),
    ],
    ids=["binary_2", "binary_half", "binary_count", "binary_string", "multilabel_3", "class_7_of_4",
         "class_fraction", "class_negative", "class_string", "regression_inf", "regression_minus_inf",
         "regression_string"],
)
def test_bad_label_values(task, labels, patterns):
    with pytest.raises(ValueError) as info:
        data.from_arrays(features(len(labels)), {task.name: labels}, [task])
    message = str(info.value)
    for pattern in patterns:
        assert pattern in message, (pattern, message)


def test_unknown_task_name():
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['bus'\].*\['car'\]"):
        data.from_arrays(features(2), {"car": [1, 0], "bus": [0, 1]}, [CAR])


def test_absent_task():
    with pytest.raises(ValueError, match=r"no entry for task 'weather'.*\[None\] \* n"):
        data.from_arrays(features(2), {"car": [1, 0]}, [CAR, WEATHER])


def test_label_length_differs_from_x():
    with pytest.raises(ValueError) as info:
        data.from_arrays(features(4), {"car": [1, 0, 1]}, [CAR])
    assert all(p in str(info.value) for p in ["'car'", "(3,)", "(4,)", "one label per example"])


def test_labels_of_two_tasks_differ_in_length():
    with pytest.raises(ValueError, match=r"'weather'.*\(2,\).*\(3,\)"):
        data.from_arrays(features(3), {"car": [1, 0, 1], "weather": [1, 2]}, [CAR, WEATHER])


def test_inputs_of_different_lengths():
    x = {"image": np.zeros((3, 2)), "meta": np.zeros(2)}
    with pytest.raises(ValueError, match=r"'meta' has 2 examples.*3"):
        data.from_arrays(x, {"car": [1, 0, 1]}, [CAR])


@pytest.mark.parametrize("labels", [[[1, 0, 1], [0, 1, 0]], [1, 0], [[1], [0]]])
def test_wrong_multilabel_width(labels):
    with pytest.raises(ValueError) as info:
        data.from_arrays(features(2), {"objects": labels}, [OBJECTS])
    message = str(info.value)
    assert "'objects'" in message and "(2, 2)" in message and "['pedestrian', 'bike']" in message


def test_empty_input():
    with pytest.raises(ValueError, match="empty"):
        data.from_arrays(np.zeros((0, 2), np.float32), {"car": []}, [CAR])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_in_x(bad):
    x = features(4)
    x[2, 1] = bad
    with pytest.raises(ValueError, match=r"Input 'x' holds NaN.*example 2.*labels only"):
        data.from_arrays(x, {"car": [1, 0, 1, 0]}, [CAR])


def test_nan_in_one_input_of_a_dict():
    x = {"image": np.zeros((2, 3)), "meta": np.array([1.0, np.nan])}
    with pytest.raises(ValueError, match=r"Input 'meta'.*example 1"):
        data.from_arrays(x, {"car": [1, 0]}, [CAR])


def test_non_numeric_x():
    with pytest.raises(ValueError, match="numeric"):
        data.from_arrays(np.array([["a"], ["b"]]), {"car": [1, 0]}, [CAR])


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "8", None])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match=rf"batch_size.*{batch_size!r}"):
        data.from_arrays(features(2), {"car": [1, 0]}, [CAR], batch_size=batch_size)


def test_labels_must_be_a_dict():
    with pytest.raises(ValueError, match=r"dict.*\['car'\].*list"):
        data.from_arrays(features(2), [1, 0], [CAR])


def test_tasks_must_be_tasks():
    with pytest.raises(TypeError, match=r"kmtl\.Task\('car'\)"):
        data.from_arrays(features(2), {"car": [1, 0]}, ["car"])


# -- validate_labels ---------------------------------------------------------------------

def test_validate_labels_message():
    with pytest.raises(ValueError) as info:
        data.validate_labels({"car": [1, 0, 2, "?", 2]}, [CAR])
    assert str(info.value) == (
        "Task 'car' (binary): label 2 at index 2 is not valid (2 invalid labels). Binary labels are "
        "0 or 1; if 'car' has more classes use kmtl.Task('car', kind='categorical', num_classes=3); "
        "write missing labels as NaN, None, '?' or kmtl.MISSING.")


def test_validate_labels_returns_raw_arrays():
    raw = data.validate_labels(
        {"car": [1, None, 0], "weather": np.array([1, -1, 3]), "distance": [0.5, "?", -1.0],
         "objects": np.array([[1.0, np.nan], [0, 1], [1, 1]])}, TASKS)
    assert raw["weather"].dtype == np.float32 and raw["objects"].dtype == np.float32
    assert raw["car"].dtype.kind == "S" and raw["distance"].dtype.kind == "S"
    assert raw["car"].tolist() == [b"1", b"?", b"0"]
    encoded = {k: v.numpy() for k, v in data.encode_labels(raw, TASKS).items()}
    np.testing.assert_array_equal(encoded["car"], [1, -1, 0])
    np.testing.assert_array_equal(encoded["weather"], [1, -1, 3])
    np.testing.assert_array_equal(encoded["distance"], [0.5, np.nan, -1.0])
    np.testing.assert_array_equal(encoded["objects"], [[1, -1], [0, 1], [1, 1]])


def test_validate_labels_all_missing_is_fine():
    raw = data.validate_labels({"car": [None] * 3, "distance": [math.nan] * 3}, [CAR, DISTANCE])
    encoded = data.encode_labels(raw, [CAR, DISTANCE])
    np.testing.assert_array_equal(encoded["car"].numpy(), [-1, -1, -1])
    assert np.all(np.isnan(encoded["distance"].numpy()))


# -- batching, shuffling ------------------------------------------------------------------

def shuffled(seed, n=23, batch_size=5):
    x = np.arange(n, dtype=np.float32)[:, None]
    labels = {"distance": np.arange(n, dtype=np.float64), "car": np.arange(n) % 2}
    return data.from_arrays(x, labels, [DISTANCE, CAR], batch_size=batch_size, shuffle=True, seed=seed)


def epoch_order(dataset):
    x, y, _ = collect(dataset)
    np.testing.assert_array_equal(y["distance"], x[:, 0])  # labels stay with their example
    np.testing.assert_array_equal(y["car"], x[:, 0] % 2)
    return x[:, 0].astype(int).tolist()


def test_shuffle_with_seed_is_reproducible_and_complete():
    first, second = shuffled(seed=7), shuffled(seed=7)
    epochs = [epoch_order(first) for _ in range(3)]
    assert [epoch_order(second) for _ in range(3)] == epochs
    for order in epochs:
        assert sorted(order) == list(range(23))  # every example exactly once
    assert epochs[0] != list(range(23))
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    assert epoch_order(shuffled(seed=8)) != epochs[0]


@pytest.mark.parametrize(("drop", "batches"), [(True, 4), (False, 5)])
def test_shuffled_pipeline_knows_its_number_of_batches(drop, batches):
    # Keras sizes the progress bar and the epochs from the cardinality.
    dataset = data.from_arrays(features(23), {"car": np.arange(23) % 2}, [CAR], batch_size=5, shuffle=True,
                               seed=3, drop_remainder=drop)
    assert int(dataset.cardinality()) == batches
    assert collect(dataset)[2] == [5] * 4 + ([] if drop else [3])


def test_no_shuffle_keeps_order():
    dataset = data.from_arrays(np.arange(7, dtype=np.float32)[:, None], {"car": np.arange(7) % 2}, [CAR], 3)
    x, y, sizes = collect(dataset)
    assert x[:, 0].tolist() == list(range(7)) and sizes == [3, 3, 1]


@pytest.mark.parametrize(("drop", "sizes", "batch_dim"), [(True, [4, 4], 4), (False, [4, 4, 2], None)])
def test_drop_remainder(drop, sizes, batch_dim):
    dataset = data.from_arrays(features(10), {"car": np.arange(10) % 2}, [CAR], batch_size=4,
                               drop_remainder=drop)
    assert collect(dataset)[2] == sizes
    assert dataset.element_spec[0].shape[0] == batch_dim
    assert dataset.element_spec[1]["car"].shape[0] == batch_dim


def test_dict_x_multi_input():
    n = 7
    x = {"image": np.arange(n * 4, dtype=np.float32).reshape(n, 2, 2), "meta": np.arange(n)}
    dataset = data.from_arrays(x, {"distance": np.arange(n, dtype=float)}, [DISTANCE], 3, shuffle=True,
                               seed=1)
    assert set(dataset.element_spec[0]) == {"image", "meta"}
    assert dataset.element_spec[0]["image"].shape.as_list() == [None, 2, 2]
    got, y, _ = collect(dataset)
    order = got["meta"].tolist()
    assert sorted(order) == list(range(n))
    np.testing.assert_array_equal(got["image"], x["image"][order])
    np.testing.assert_array_equal(y["distance"], order)


# -- from_dataframe -------------------------------------------------------------------------

def street_frame():
    return pd.DataFrame({
        "f1": [0.0, 1.0, 2.0, 3.0, 4.0],
        "car": [1, None, pd.NA, "?", 0],
        "pedestrian": [1.0, np.nan, 0.0, 1.0, np.nan],
        "weather": pd.array([2, pd.NA, 0, 3, 1], dtype="Int64"),
        "f2": [10.0, 11.0, 12.0, 13.0, 14.0],
        "bike": ["?", 0, 1, None, pd.NA],
        "distance": [-1.0, np.nan, 2.5, None, 0.0],
    })


def test_from_dataframe():
    x, y, sizes = collect(data.from_dataframe(street_frame(), TASKS, batch_size=2))
    assert sizes == [2, 2, 1]
    np.testing.assert_array_equal(x, [[0, 10], [1, 11], [2, 12], [3, 13], [4, 14]])
    assert x.dtype == np.float32
    np.testing.assert_array_equal(y["car"], [1, -1, -1, -1, 0])
    np.testing.assert_array_equal(y["objects"], [[1, -1], [-1, 0], [0, 1], [1, -1], [-1, -1]])
    np.testing.assert_array_equal(y["weather"], [2, -1, 0, 3, 1])
    np.testing.assert_array_equal(y["distance"], [-1.0, np.nan, 2.5, np.nan, 0.0])


def test_from_dataframe_feature_selection():
    x, _, _ = collect(data.from_dataframe(street_frame(), [CAR], features="f2", batch_size=8))
    np.testing.assert_array_equal(x, [[10], [11], [12], [13], [14]])
    with pytest.raises(ValueError, match="features="):
        data.from_dataframe(street_frame()[["car"]], [CAR])


@pytest.mark.parametrize(
    ("task", "absent"),
    [(Task("bus"), "['bus']"), (Task("o", kind="multilabel", labels=["car", "tram"]), "['tram']")],
)
def test_from_dataframe_missing_column(task, absent):
    with pytest.raises(ValueError) as info:
        data.from_dataframe(street_frame(), [task])
    message = str(info.value)
    assert repr(task.name) in message and absent in message and "'f1'" in message


def test_from_dataframe_bad_cell_names_task():
    frame = street_frame()
    frame.loc[2, "weather"] = 9
    with pytest.raises(ValueError, match=r"'weather'.*label 9 at index 2"):
        data.from_dataframe(frame, [WEATHER], features=["f1", "f2"])


def test_from_dataframe_non_numeric_feature_column():
    """Label columns of tasks not listed are features by default: say which column is wrong."""
    with pytest.raises(ValueError, match=r"\['car', 'bike'\] are not numeric.*features=\["):
        data.from_dataframe(street_frame(), [WEATHER])


# -- from_dataset ----------------------------------------------------------------------------

def example_dataset():
    x = features(5)
    labels = {
        "car": np.array([1, -1, 0, np.nan, 1], np.float32),
        "weather": np.array([2, -1, 0, 3, 1], np.int64),
        "distance": np.array([-1.0, np.nan, 2.5, 0.0, 1.0], np.float32),
        "objects": np.array([[1, -1], [np.nan, 0], [0, 1], [1, 1], [0, 0]], np.float32),
    }
    expected = {
        "car": [1, -1, 0, -1, 1], "weather": [2, -1, 0, 3, 1], "distance": [-1.0, np.nan, 2.5, 0.0, 1.0],
        "objects": [[1, -1], [-1, 0], [0, 1], [1, 1], [0, 0]],
    }
    return x, labels, expected


def check_encoded(y, expected):
    for name, values in expected.items():
        np.testing.assert_array_equal(y[name], values, err_msg=name)
    assert y["weather"].dtype == np.int32 and y["car"].dtype == np.float32


def test_from_dataset_unbatched_with_batch_size():
    x, labels, expected = example_dataset()
    source = tf.data.Dataset.from_tensor_slices((x, labels))
    dataset = data.from_dataset(source, TASKS, batch_size=2)
    got, y, sizes = collect(dataset)
    assert sizes == [2, 2, 1]
    np.testing.assert_array_equal(got, x)
    check_encoded(y, expected)


def test_from_dataset_already_batched():
    x, labels, expected = example_dataset()
    source = tf.data.Dataset.from_tensor_slices((x, labels)).batch(3)
    got, y, sizes = collect(data.from_dataset(source, TASKS))
    assert sizes == [3, 2]
    check_encoded(y, expected)


def test_from_dataset_unbatched_without_batch_size():
    x, labels, _ = example_dataset()
    source = tf.data.Dataset.from_tensor_slices((x, labels))
    with pytest.raises(ValueError, match="batch_size="):
        data.from_dataset(source, TASKS)


def test_from_dataset_dict_elements_with_x_key():
    x, labels, expected = example_dataset()
    source = tf.data.Dataset.from_tensor_slices({"image": x, "id": np.arange(5), **labels})
    got, y, _ = collect(data.from_dataset(source, TASKS, batch_size=4, x_key="image"))
    np.testing.assert_array_equal(got, x)
    check_encoded(y, expected)
    got, _, _ = collect(data.from_dataset(source, TASKS, batch_size=4, x_key=["image", "id"]))
    assert set(got) == {"image", "id"}
    np.testing.assert_array_equal(got["id"], np.arange(5))


def test_from_dataset_dict_elements_need_x_key_and_every_task():
    x, labels, _ = example_dataset()
    source = tf.data.Dataset.from_tensor_slices({"image": x, **labels})
    with pytest.raises(ValueError, match="x_key="):
        data.from_dataset(source, TASKS, batch_size=2)
    without_car = tf.data.Dataset.from_tensor_slices({"image": x, "weather": labels["weather"]})
    with pytest.raises(ValueError, match=r"no entry for task\(s\) \['car'\]"):
        data.from_dataset(without_car, [CAR, WEATHER], batch_size=2, x_key="image")


def test_from_dataset_string_labels():
    source = tf.data.Dataset.from_tensor_slices(
        (features(5), {"car": ["1", "?", "0", "", "None"], "distance": ["-1", "nan", "2.5", "?", "3"]}))
    _, y, _ = collect(data.from_dataset(source, [CAR, DISTANCE], batch_size=2))
    np.testing.assert_array_equal(y["car"], [1, -1, 0, -1, -1])
    np.testing.assert_array_equal(y["distance"], [-1.0, np.nan, 2.5, np.nan, 3.0])


def test_from_dataset_keeps_sample_weights():
    weights = np.array([0.5, 1.0, 2.0], np.float32)
    source = tf.data.Dataset.from_tensor_slices((features(3), {"car": [1.0, -1.0, 0.0]}, weights))
    batches = list(data.from_dataset(source, [CAR], batch_size=3))
    assert len(batches) == 1 and len(batches[0]) == 3
    np.testing.assert_array_equal(batches[0][1]["car"].numpy(), [1, -1, 0])
    np.testing.assert_array_equal(batches[0][2].numpy(), weights)


def test_from_dataset_empty():
    source = tf.data.Dataset.from_tensor_slices((features(2), {"car": [1.0, 0.0]})).take(0)
    with pytest.raises(ValueError, match="empty"):
        data.from_dataset(source, [CAR], batch_size=2)


def test_from_dataset_labels_not_a_dict():
    source = tf.data.Dataset.from_tensor_slices((features(2), np.array([1.0, 0.0])))
    with pytest.raises(ValueError, match=r"dict.*\['car'\]"):
        data.from_dataset(source, [CAR], batch_size=2)


def test_from_dataset_bad_first_batch():
    source = tf.data.Dataset.from_tensor_slices((features(4), {"weather": np.array([0, 5, 1, 2])}))
    with pytest.raises(ValueError, match=r"'weather'.*label 5 at index 1.*0\.\.3"):
        data.from_dataset(source, [WEATHER], batch_size=2)


@pytest.mark.parametrize(
    ("task", "labels", "shown"),
    [(CAR, [1.0, 0.0, 1.0, 0.0, 2.0, 1.0], "[2]"), (WEATHER, [0, 1, 2, 3, 4, 1], "[4]"),
     (DISTANCE, [0.0, 1.0, 2.0, 3.0, np.inf, 1.0], "[inf]"), (CAR, ["1", "0", "?", "0", "5", "1"], "[5]")],
    ids=["binary", "categorical", "regression", "binary_strings"],
)
def test_from_dataset_bad_later_batch(task, labels, shown):
    source = tf.data.Dataset.from_tensor_slices((features(6), {task.name: labels}))
    dataset = data.from_dataset(source, [task], batch_size=2)  # first batch is fine
    iterator = iter(dataset)
    next(iterator), next(iterator)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        next(iterator)
    message = str(info.value).replace("\\'", "'")  # TF escapes quotes in assertion data
    assert f"Task '{task.name}' ({task.kind})" in message
    assert f"Offending labels:] {shown}" in message


# -- pipeline structure and in-graph encoding ---------------------------------------------

def test_pipeline_ends_with_prefetch_and_encodes_after_batching():
    dataset = data.from_arrays(features(5), {"car": [1, None, 0, 1, 0]}, [CAR], batch_size=2, shuffle=True)
    # Options first: no autotuning thread (data._without_autotune), then the pipeline itself.
    assert dataset.options().autotune.enabled is False
    ops = [op for op in chain_of_ops(dataset) if not op.startswith("OptionsDataset")]
    assert ops[0] == "PrefetchDataset"
    assert ops[1].startswith(("ParallelMapDataset", "MapDataset"))  # the encoding
    assert any(op.startswith("BatchDataset") for op in ops[2:])
    assert dataset.element_spec[1]["car"].shape.as_list() == [None]


def test_from_dataset_pipeline_encodes_after_batching():
    x, labels, _ = example_dataset()
    dataset = data.from_dataset(tf.data.Dataset.from_tensor_slices((x, labels)), TASKS, batch_size=2)
    ops = chain_of_ops(dataset)
    assert ops[0] == "PrefetchDataset"
    assert ops[1].startswith(("ParallelMapDataset", "MapDataset"))
    assert ops[2].startswith("BatchDataset")


def test_encode_labels_on_batched_string_tensors():
    raw = {
        "car": ["1", "?", " 0 ", "", "nan", "None"],
        "weather": ["3", "?", "0", "", "1", "None"],
        "distance": ["-1", "?", "2.5", "", "nan", "1e-3"],
        "objects": [["1", "?"], ["", "0"], ["0", "1"], ["None", "nan"], ["1", "1"], ["0", "?"]],
    }
    source = tf.data.Dataset.from_tensor_slices(raw).batch(4)
    encoded = source.map(lambda batch: data.encode_labels(batch, TASKS))
    spec = encoded.element_spec
    assert spec["weather"].dtype == tf.int32 and spec["weather"].shape.as_list() == [None]
    assert spec["objects"].shape.as_list() == [None, 2]
    y = {k: np.concatenate([b[k].numpy() for b in encoded]) for k in raw}
    np.testing.assert_array_equal(y["car"], [1, -1, 0, -1, -1, -1])
    np.testing.assert_array_equal(y["weather"], [3, -1, 0, -1, 1, -1])
    np.testing.assert_array_equal(
        y["distance"], np.array([-1, np.nan, 2.5, np.nan, np.nan, 1e-3], np.float32))
    np.testing.assert_array_equal(y["objects"], [[1, -1], [-1, 0], [0, 1], [-1, -1], [1, 1], [0, -1]])


def test_encode_labels_numeric():
    raw = {"car": tf.constant([1.0, np.nan, -1.0, 0.0]), "weather": tf.constant([3, -1, 0, 2]),
           "distance": tf.constant([-1.0, np.nan, 0.0, 7.0], tf.float64)}
    y = data.encode_labels(raw, [CAR, WEATHER, DISTANCE])
    assert (y["car"].dtype, y["weather"].dtype, y["distance"].dtype) == (tf.float32, tf.int32, tf.float32)
    np.testing.assert_array_equal(y["car"].numpy(), [1, -1, -1, 0])
    np.testing.assert_array_equal(y["weather"].numpy(), [3, -1, 0, 2])
    np.testing.assert_array_equal(y["distance"].numpy(), [-1.0, np.nan, 0.0, 7.0])


@pytest.mark.parametrize(
    ("task", "values"),
    [(CAR, [1.0, 3.0]), (WEATHER, [0, 4]), (DISTANCE, [1.0, np.inf]), (OBJECTS, [[1.0, 0.5]])],
)
def test_encode_labels_check(task, values):
    raw = {task.name: tf.constant(values)}
    data.encode_labels(raw, [task])  # unchecked: no error
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"Task \\?'{task.name}\\?'"):
        data.encode_labels(raw, [task], check=True)


# -- mixing sources that each label some tasks ------------------------------------------

MIX_TASKS = [kmtl.Task("car"), kmtl.Task("sign"), kmtl.Task("w", kind="categorical", num_classes=3),
             kmtl.Task("d", kind="regression")]


def mix_sources(rng):
    """Three uneven sources; column 0 of x names the source, column 1 the row (to find its labels)."""
    sizes = {"big": 300, "small": 60, "tiny": 12}
    labelled = {"big": ["car", "d"], "small": ["sign", "w"], "tiny": ["car", "sign", "w", "d"]}
    sources = {}
    for i, (name, n) in enumerate(sizes.items()):
        x = np.stack([np.full(n, i), np.arange(n)], axis=1).astype("float32")
        values = {"car": rng.integers(0, 2, n).astype("float32"), "sign": rng.integers(0, 2, n).astype("float32"),
                  "w": rng.integers(0, 3, n).astype("float32"), "d": rng.normal(size=n).astype("float32")}
        sources[name] = (x, {t: values[t] for t in labelled[name]})
    return sources


@pytest.mark.parametrize(("sampling", "temperature"), [("size", 2.0), ("equal", 2.0), ("temperature", 3.0)])
def test_mix_draws_each_source_as_often_as_its_weight(sampling, temperature):
    sources = mix_sources(np.random.default_rng(0))
    sizes = [len(x) for x, _ in sources.values()]
    draws = 6000
    ds = kmtl.data.mix(sources, MIX_TASKS, 100, sampling, temperature=temperature, examples_per_epoch=draws, seed=1)
    origin = np.concatenate([x[:, 0].numpy() for x, _ in ds])
    assert len(origin) == draws
    expected = {"size": np.array(sizes) / sum(sizes), "equal": np.full(3, 1 / 3),
                "temperature": np.array(sizes) ** (1 / 3) / np.sum(np.array(sizes) ** (1 / 3))}[sampling]
    found = np.bincount(origin.astype(int), minlength=3) / draws
    spread = np.sqrt(expected * (1 - expected) / draws)  # binomial standard deviation
    assert np.all(np.abs(found - expected) < 4 * spread), (found, expected)


def test_mix_gives_each_example_its_sources_labels_and_missing_for_the_rest():
    sources = mix_sources(np.random.default_rng(2))
    names = list(sources)
    for x, y in kmtl.data.mix(sources, MIX_TASKS, 64, seed=3):
        for i in range(len(x)):
            source, row = names[int(x[i, 0])], int(x[i, 1])
            given = sources[source][1]
            for task in MIX_TASKS:
                value = y[task.name].numpy()[i]
                if task.name in given:
                    assert value == given[task.name][row], (source, task.name)
                elif task.name == "d":
                    assert np.isnan(value)
                else:
                    assert value == -1


def test_mixed_batches_train_with_the_masked_loss():
    sources = mix_sources(np.random.default_rng(4))
    inputs = keras.Input((2,), name="x")
    model = kmtl.MultiTaskModel(inputs, keras.layers.Dense(4, activation="tanh")(inputs), MIX_TASKS)
    model.compile()
    x, y = next(iter(kmtl.data.mix(sources, MIX_TASKS, 50, "equal", seed=5)))
    p = {k: keras.ops.convert_to_numpy(v).astype("float64") for k, v in model(x).items()}
    car = y["car"].numpy()
    labelled = car >= 0
    expected = -np.sum(np.where(car[labelled] == 1, np.log(p["car"][labelled, 0]),
                                np.log(1 - p["car"][labelled, 0]))) / 50
    losses = keras.ops.convert_to_numpy(model.loss_terms(y, model(x)).task_losses)
    np.testing.assert_allclose(losses[0], expected, rtol=1e-5)


def test_mix_packs_labels_when_asked():
    tasks = [kmtl.Task(f"t{i}") for i in range(20)]
    rng = np.random.default_rng(6)
    sources = {"a": (rng.normal(size=(30, 2)), {f"t{i}": rng.integers(0, 2, 30) for i in range(10)}),
               "b": (rng.normal(size=(10, 2)), {f"t{i}": rng.integers(0, 2, 10) for i in range(10, 20)})}
    # The layout is the caller's choice at any number of tasks: per task by default.
    assert sorted(next(iter(kmtl.data.mix(sources, tasks, 40, seed=7)))[1]) == sorted(t.name for t in tasks)
    x, y = next(iter(kmtl.data.mix(sources, tasks, 40, seed=7, pack_labels=True)))
    assert sorted(y) == ["labels:t0:20"] and y["labels:t0:20"].shape == (40, 20)
    matrix = y["labels:t0:20"].numpy()
    # Each row labels the tasks of exactly one source: t0..t9 or t10..t19.
    assert np.all((matrix[:, :10] >= 0).all(axis=1) != (matrix[:, 10:] >= 0).all(axis=1))


@pytest.mark.parametrize(("sources", "kwargs", "match"), [
    ({}, {}, r"at least one source"),
    ({"a": (np.zeros((3, 2)), {"bus": [1, 0, 1]})}, {}, r"Source 'a'.*unknown task\(s\) \['bus'\]"),
    ({"a": (np.zeros((3, 2)), {})}, {}, r"Source 'a' labels no task"),
    ({"a": (np.zeros((0, 2)), {"car": []})}, {}, r"empty"),
    ({"a": (np.zeros((2, 2)), {"car": [1, 2]})}, {}, r"Source 'a'.*'car'.*label 2"),
    ({"a": (np.zeros((2, 2)), {"car": [1, 0]}), "b": (np.zeros((2, 3)), {"sign": [1, 0]})}, {},
     r"Source 'b' has inputs.*same shape"),
    ({"a": (np.zeros((2, 2)), {"car": [1, 0]})}, {"sampling": "proportional"}, r"sampling='proportional'"),
    ({"a": (np.zeros((2, 2)), {"car": [1, 0]})}, {"sampling": "temperature", "temperature": 0}, r"temperature=0"),
])
def test_mix_errors_name_the_source_and_the_fix(sources, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kmtl.data.mix(sources, MIX_TASKS, 4, **kwargs)


# -- class names as labels ------------------------------------------------------------------

SPECIES = kmtl.Task("species", kind="categorical", class_names=["Adelie", "Chinstrap", "Gentoo"])


def test_class_names_are_labels_in_every_entry_point():
    """Names map to their index in class_names; markers stay missing; indices still work."""
    names = ["Gentoo", "?", "Adelie", None, " Chinstrap", 1]
    expected = [2, -1, 0, -1, 1, 1]
    from_arrays = next(iter(kmtl.data.from_arrays(np.zeros((6, 2)), {"species": names}, [SPECIES], 8,
                                                  pack_labels=False)))[1]["species"]
    assert from_arrays.numpy().tolist() == expected
    assert kmtl.data.encode_arrays(np.zeros((6, 2)), {"species": names}, [SPECIES])[1]["species"].tolist() == expected
    frame = pd.DataFrame({"f": np.zeros(6), "species": names})
    from_frame = next(iter(kmtl.data.from_dataframe(frame, [SPECIES], pack_labels=False)))[1]["species"]
    assert from_frame.numpy().tolist() == expected
    raw = tf.data.Dataset.from_tensor_slices((np.zeros((5, 2), "float32"),
                                              {"species": ["Gentoo", "?", "Adelie", " Chinstrap", "1"]}))
    in_graph = next(iter(kmtl.data.from_dataset(raw, [SPECIES], batch_size=5)))[1]["species"]
    assert in_graph.numpy().tolist() == [2, -1, 0, 1, 1]


def test_an_unknown_class_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Task 'species' \(categorical\): label 'Emperor' at index 1 is not "
                                         r"one of its class_names \['Adelie', 'Chinstrap', 'Gentoo'\]"):
        kmtl.data.from_arrays(np.zeros((2, 2)), {"species": ["Gentoo", "Emperor"]}, [SPECIES])
