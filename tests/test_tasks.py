import json
import math

import keras
import numpy as np
import pytest

import keras_mtl as kmtl
from keras_mtl import losses
from keras_mtl.metrics import MaskedMetric
from keras_mtl.tasks import KINDS, Task, check_tasks

pytestmark = pytest.mark.portable

EXAMPLES = {
    "binary": dict(),
    "multilabel": dict(labels=["pedestrian", "car", "stop_sign"]),
    "categorical": dict(num_classes=4),
    "regression": dict(),
}


def make(kind, name="t", **kwargs):
    return Task(name, kind=kind, **{**EXAMPLES[kind], **kwargs})


def test_defaults():
    task = Task("car")
    assert kmtl.Task is Task
    assert task.name == "car"
    assert isinstance(task.kind, kmtl.kinds.Binary)
    assert task.loss_weight == 1.0 and isinstance(task.loss_weight, float)
    assert task.labels is None and task.num_classes is None and task.class_names is None
    assert task.metrics is None
    assert task.units == 1
    assert task.activation == "sigmoid"
    assert task.output_names == ["car"]
    assert [m.name for m in task.build_metrics()] == ["car_auc", "car_accuracy"]
    assert repr(task) == "Task('car', kind='binary')"


@pytest.mark.parametrize(
    ("kind", "units", "activation", "output_names"),
    [
        ("binary", 1, "sigmoid", ["t"]),
        ("multilabel", 3, "sigmoid", ["pedestrian", "car", "stop_sign"]),
        ("categorical", 4, "softmax", ["0", "1", "2", "3"]),
        ("regression", 1, "linear", ["t"]),
    ],
)
def test_units_and_activation_per_kind(kind, units, activation, output_names):
    task = make(kind)
    assert task.units == units
    assert task.activation == activation
    assert task.output_names == output_names


def test_class_names_give_num_classes_and_output_names():
    task = Task("weather", kind="categorical", class_names=["sun", "rain", "fog"])
    assert task.num_classes == 3 and task.units == 3
    assert task.output_names == ["sun", "rain", "fog"]
    same = Task("weather", kind="categorical", num_classes=3, class_names=("sun", "rain", "fog"))
    assert same == task


def test_num_classes_accepts_numpy_integer():
    """num_classes = y.max() + 1 is a NumPy integer; it must work and serialise as JSON."""
    task = Task("weather", kind="categorical", num_classes=np.int64(4))
    assert task.num_classes == 4 and type(task.num_classes) is int
    json.dumps(task.get_config())


@pytest.mark.parametrize(
    ("kind", "loss_class"),
    [
        ("binary", losses.MaskedBinaryCrossentropy),
        ("multilabel", losses.MaskedBinaryCrossentropy),
        ("categorical", losses.MaskedCategoricalCrossentropy),
        ("regression", losses.MaskedMeanSquaredError),
    ],
)
@pytest.mark.parametrize("normalize", ["batch", "labeled"])
def test_build_loss(kind, loss_class, normalize):
    task = make(kind, name="car")
    loss = task.build_loss(normalize)
    assert type(loss) is loss_class
    assert loss.normalize == normalize
    assert loss.name == "car_loss"
    regression = isinstance(task.kind, kmtl.kinds.Regression)
    assert loss.from_logits is not regression
    if not regression:
        assert make(kind).build_loss(normalize, from_logits=False).from_logits is False


@pytest.mark.parametrize(
    ("kind", "names"),
    [
        ("binary", ["car_auc", "car_accuracy"]),
        ("multilabel", ["car_auc", "car_accuracy"]),
        ("categorical", ["car_accuracy"]),
        ("regression", ["car_mae"]),
    ],
)
def test_default_metrics_per_kind(kind, names):
    built = make(kind, name="car").build_metrics()
    assert [m.name for m in built] == names
    assert all(isinstance(m, MaskedMetric) and type(m.kind) is type(kmtl.kinds.get(kind)) for m in built)


def test_custom_metrics():
    task = Task("distance", kind="regression", metrics=["rmse", keras.metrics.MeanSquaredError(name="mse")])
    assert [m.name for m in task.build_metrics()] == ["distance_rmse", "distance_mse"]
    assert [m.name for m in task.build_metrics("mae")] == ["distance_mae"]


def test_loss_weight_zero_is_allowed():
    assert Task("car", loss_weight=0).loss_weight == 0.0
    assert Task("car", loss_weight=np.float32(2.5)).loss_weight == 2.5


# -- validation: every error names the task and says what to write -------------------

@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("my car", "'my_car'"), ("stop-sign", "'stop_sign'"), ("1st", "'task_1st'"), ("car!", "'car'"),
     ("", "'task'"), ("_car", "'car'")],
)
def test_bad_name_suggests_a_valid_one(name, suggestion):
    with pytest.raises(ValueError) as info:
        Task(name)
    message = str(info.value)
    assert repr(name) in message
    assert f"e.g. {suggestion}" in message
    assert "letters, digits and underscores" in message
    Task(suggestion.strip("'"))  # the suggestion itself is valid


@pytest.mark.parametrize("name", [None, 3, ["car"]])
def test_non_string_name(name):
    with pytest.raises(ValueError, match="letters, digits and underscores"):
        Task(name)


def test_reserved_name():
    with pytest.raises(ValueError, match=r"'loss' is reserved.*'loss_task'"):
        Task("loss")


@pytest.mark.parametrize("name", ["heads", "features", "outputs", "logits"])
def test_names_of_keras_mtl_s_former_layers_are_free(name):
    assert Task(name).name == name


@pytest.mark.parametrize(
    ("kind", "suggestion"),
    [("binay", "binary"), ("multi_label", "multilabel"), ("categorial", "categorical"),
     ("regresion", "regression")],
)
def test_unknown_kind_did_you_mean(kind, suggestion):
    with pytest.raises(ValueError) as info:
        Task("car", kind=kind)
    message = str(info.value)
    assert "'car'" in message
    assert f"kind={kind!r}" in message
    assert f"Did you mean kind={suggestion!r}?" in message


def test_unknown_kind_lists_kinds():
    with pytest.raises(ValueError) as info:
        Task("car", kind="ranking")
    assert all(kind in str(info.value) for kind in KINDS)


@pytest.mark.parametrize("weight", [-1, -0.5, math.nan, math.inf, "heavy", None])
def test_bad_loss_weight(weight):
    with pytest.raises(ValueError) as info:
        Task("car", loss_weight=weight)
    message = str(info.value)
    assert "'car'" in message
    assert f"loss_weight={weight!r}" in message
    assert "finite number ≥ 0" in message


@pytest.mark.parametrize("labels", [None, [], "car"])
def test_multilabel_without_labels(labels):
    with pytest.raises(ValueError) as info:
        Task("objects", kind="multilabel", labels=labels)
    message = str(info.value)
    assert "'objects'" in message
    assert "kmtl.Task('objects', kind='multilabel', labels=[" in message


def test_duplicate_labels():
    with pytest.raises(ValueError) as info:
        Task("objects", kind="multilabel", labels=["car", "bike", "car"])
    message = str(info.value)
    assert "'objects'" in message
    assert "['car']" in message
    assert "unique" in message  # says what to do


def test_labels_on_non_multilabel_task():
    with pytest.raises(ValueError, match=r"'car'.*kind='multilabel', labels=\['a', 'b'\]"):
        Task("car", labels=["a", "b"])


@pytest.mark.parametrize("num_classes", [None, 1, 0, -3, 2.5, "4", True])
def test_categorical_needs_num_classes(num_classes):
    with pytest.raises(ValueError) as info:
        Task("weather", kind="categorical", num_classes=num_classes)
    message = str(info.value)
    assert "'weather'" in message
    assert "kmtl.Task('weather', kind='categorical', num_classes=4)" in message


@pytest.mark.parametrize("kind", ["binary", "multilabel", "regression"])
@pytest.mark.parametrize(
    ("extra", "shown"),
    [(dict(num_classes=3), "num_classes=3"), (dict(class_names=["a", "b"]), "num_classes=2"),
     (dict(num_classes=0), "kind='categorical'")],
)
def test_num_classes_on_non_categorical_task(kind, extra, shown):
    with pytest.raises(ValueError) as info:
        make(kind, name="car", **extra)
    message = str(info.value)
    assert "'car'" in message
    assert "kind='categorical'" in message and shown in message


def test_class_names_length_mismatch():
    with pytest.raises(ValueError) as info:
        Task("weather", kind="categorical", num_classes=4, class_names=["sun", "rain"])
    message = str(info.value)
    assert "'weather'" in message
    assert "2 class_names" in message and "num_classes=4" in message
    assert "one name per class" in message


def test_metric_that_does_not_fit_fails_at_construction():
    with pytest.raises(ValueError, match=r"'mae'.*'car'"):
        Task("car", metrics=["mae"])


def test_check_tasks_duplicate_names():
    with pytest.raises(ValueError) as info:
        check_tasks([Task("car"), Task("bike"), Task("car", kind="regression")])
    message = str(info.value)
    assert "['car']" in message
    assert "Rename" in message


@pytest.mark.parametrize("item", ["car", 3, None, {"name": "car"}])
def test_check_tasks_non_task(item):
    with pytest.raises(TypeError) as info:
        check_tasks([Task("bike"), item])
    message = str(info.value)
    assert repr(item) in message
    assert "kmtl.Task(" in message


def test_check_tasks_writes_the_fix_for_a_string():
    with pytest.raises(TypeError, match=r"kmtl\.Task\('car'\)"):
        check_tasks(["car"])


@pytest.mark.parametrize("tasks", [[], None, ()])
def test_check_tasks_empty(tasks):
    with pytest.raises(ValueError, match=r"No tasks.*kmtl\.Task\('car'\)"):
        check_tasks(tasks)


def test_check_tasks_accepts_single_task_and_keeps_order():
    car = Task("car")
    assert check_tasks(car) == [car]
    tasks = [Task("b"), Task("a"), Task("c", kind="regression")]
    assert check_tasks(tuple(tasks)) == tasks


# -- serialisation and equality ------------------------------------------------------

ROUND_TRIP = [
    Task("car"),
    Task("stop_sign", loss_weight=2.0),
    Task("objects", kind="multilabel", labels=["pedestrian", "car"]),
    Task("weather", kind="categorical", num_classes=4),
    Task("weather", kind="categorical", class_names=["sun", "rain", "fog"], loss_weight=0.5),
    Task("distance", kind="regression", metrics=["rmse", "mae"]),
    Task("car", metrics=["auc", keras.metrics.Precision(thresholds=0.3, name="precision")]),
]


@pytest.mark.parametrize("task", ROUND_TRIP, ids=repr)
def test_config_round_trip(task):
    config = task.get_config()
    json.dumps(config)
    keys = {"name", "kind", "loss_weight", "num_classes", "labels", "class_names", "metrics"}
    assert set(config) == keys | ({"standardize"} if task.kind.standardizes else set())
    restored = Task.from_config(config)
    assert restored == task
    assert restored.get_config() == config
    assert [m.name for m in restored.build_metrics()] == [m.name for m in task.build_metrics()]


@pytest.mark.parametrize("task", ROUND_TRIP, ids=repr)
def test_keras_serialize_round_trip(task):
    serialized = keras.saving.serialize_keras_object(task)
    assert serialized["registered_name"] == "keras_mtl>Task"
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(restored) is Task
    assert restored == task


def test_round_trip_keeps_metric_settings():
    task = ROUND_TRIP[-1]
    restored = Task.from_config(task.get_config())
    precision = restored.metrics[1]
    assert isinstance(precision, keras.metrics.Precision)
    assert precision.thresholds == pytest.approx([0.3])


def test_equality_and_hash():
    assert Task("car") == Task("car")
    assert hash(Task("car")) == hash(Task("car"))
    assert Task("car") != Task("bike")
    assert Task("car") != Task("car", loss_weight=2.0)
    assert Task("car") != Task("car", kind="regression")
    assert Task("car") != Task("car", metrics=["auc"])
    assert Task("car") != "car"
    assert make("multilabel") != Task("t", kind="multilabel", labels=["pedestrian", "car"])
    assert len({Task("car"), Task("car"), Task("bike")}) == 2


def test_repr():
    assert repr(make("multilabel", name="o")) == (
        "Task('o', kind='multilabel', labels=['pedestrian', 'car', 'stop_sign'])")
    assert repr(Task("w", kind="categorical", num_classes=4, loss_weight=2)) == (
        "Task('w', kind='categorical', num_classes=4, loss_weight=2)")
