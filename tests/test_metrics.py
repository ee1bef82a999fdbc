import json

import keras
import numpy as np
import pytest

from keras_mtl import backend as backend_lib
from keras_mtl import kinds
from keras_mtl import metrics as metrics_lib
from keras_mtl.metrics import MaskedMetric, TaskLossMeans, TaskWeights, default_metrics, get

pytestmark = pytest.mark.portable

# (identifier, kind, units, the Keras class it must behave like)
METRIC_CASES = [
    ("auc", "binary", 1, keras.metrics.AUC),
    ("auc", "multilabel", 3, keras.metrics.AUC),
    ("accuracy", "binary", 1, keras.metrics.BinaryAccuracy),
    ("accuracy", "multilabel", 3, keras.metrics.BinaryAccuracy),
    ("accuracy", "categorical", 4, keras.metrics.SparseCategoricalAccuracy),
    ("mae", "regression", 1, keras.metrics.MeanAbsoluteError),
    ("mse", "regression", 1, keras.metrics.MeanSquaredError),
    ("rmse", "regression", 1, keras.metrics.RootMeanSquaredError),
]
METRIC_IDS = [f"{kind}-{name}" for name, kind, _, _ in METRIC_CASES]


def make_batch(kind, units, m=20, seed=0, marker=None):
    """Encoded labels (missing as the sentinel or ``marker``), labelled mask, predictions."""
    rng = np.random.default_rng(seed)
    kind = kinds.get(kind)
    shape = (m, units) if isinstance(kind, kinds.Multilabel) else (m,)
    labelled = rng.random(shape) >= 0.4
    labelled.flat[0], labelled.flat[-1] = True, False
    if isinstance(kind, kinds.Categorical):
        y = rng.integers(0, units, size=m)
        pred = rng.dirichlet(np.ones(units), size=m)
        # Make sure predictions that would be scored right at missing entries exist.
        pred[~labelled, 0] = 5.0
        encoded = np.where(labelled, y, -1).astype(np.int32)
    elif isinstance(kind, kinds.Regression):
        y = rng.normal(size=shape)
        pred = rng.normal(size=(m, 1))
        encoded = np.where(labelled, y, np.nan if marker is None else marker)
    else:
        y = rng.integers(0, 2, size=shape).astype(np.float64)
        pred = rng.random((m, units))
        encoded = np.where(labelled, y, -1.0 if marker is None else marker)
    return encoded.astype(np.int32 if isinstance(kind, kinds.Categorical) else np.float32), y, labelled, pred.astype(
        np.float32)


def labelled_only(kind, y, labelled, pred, weight=None):
    """What a plain Keras metric must see: the labelled entries, filtered in NumPy."""
    kind = kinds.get(kind)
    if isinstance(kind, kinds.Categorical):
        return y[labelled], pred[labelled], None if weight is None else weight[labelled]
    y = y.reshape(len(pred), -1)
    labelled = labelled.reshape(y.shape)
    if isinstance(kind, kinds.Regression):
        rows = labelled.ravel()
        return y[labelled][:, None], pred[rows], None if weight is None else weight[rows]
    entry_weight = None if weight is None else np.broadcast_to(weight[:, None], y.shape)[labelled]
    return y[labelled][:, None], pred[labelled][:, None], entry_weight


def result(metric):
    return float(keras.ops.convert_to_numpy(metric.result()))


# -- configuration ------------------------------------------------------------------

def test_masked_metric_config_round_trip():
    metric = MaskedMetric(keras.metrics.AUC(num_thresholds=50, name="auc"), kind="multilabel",
                          name="objects_auc")
    config = metric.get_config()
    assert config["kind"] == "multilabel"
    assert config["name"] == "objects_auc"
    restored = MaskedMetric.from_config(config)
    assert isinstance(restored.metric, keras.metrics.AUC)
    assert restored.metric.num_thresholds == 50
    assert restored.get_config() == config


@pytest.mark.parametrize(("identifier", "kind", "units", "reference"), METRIC_CASES, ids=METRIC_IDS)
def test_keras_serialize_round_trip(identifier, kind, units, reference):
    metric = get(identifier, kind, "task")
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(metric)))
    assert serialized["registered_name"] == "keras_mtl>MaskedMetric"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is MaskedMetric
    assert type(restored.metric) is reference
    assert restored.name == "task_" + identifier
    assert type(restored.kind) is type(kinds.get(kind))
    encoded, _, _, pred = make_batch(kind, units)
    metric.update_state(encoded, pred)
    restored.update_state(encoded, pred)
    assert result(restored) == pytest.approx(result(metric))


def test_masked_metric_rejects_non_metric():
    with pytest.raises(TypeError, match=r"keras_mtl\.metrics\.get"):
        MaskedMetric("auc", kind="binary")


# -- values: the same as the Keras metric on labelled entries -----------------------

@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(("identifier", "kind", "units", "reference"), METRIC_CASES, ids=METRIC_IDS)
def test_equals_keras_metric_on_labelled_entries(identifier, kind, units, reference, weighted):
    masked = get(identifier, kind)
    expected, unmasked = reference(), reference()
    for seed in (0, 1):  # two batches: state accumulates
        encoded, y, labelled, pred = make_batch(kind, units, seed=seed)
        weight = np.random.default_rng(seed + 7).uniform(0.1, 2.0, len(pred)).astype(
            np.float32) if weighted else None
        masked.update_state(encoded, pred, sample_weight=weight)
        y_l, pred_l, weight_l = labelled_only(kind, y, labelled, pred, weight)
        expected.update_state(y_l, pred_l, sample_weight=weight_l)
        # What a metric that ignored the mask would see (missing read as 0).
        kind_object = kinds.get(kind)
        as_zero = np.nan_to_num(encoded) if isinstance(kind_object, kinds.Regression) else (
            np.nan_to_num(np.where(encoded == -1, 0, encoded)))
        as_zero = as_zero if isinstance(kind_object, kinds.Categorical) else as_zero.reshape(len(pred), -1)
        unmasked.update_state(as_zero, pred, sample_weight=weight)
    assert result(masked) == pytest.approx(result(expected), rel=1e-5, abs=1e-7)
    assert result(unmasked) != pytest.approx(result(expected), rel=1e-3)


@pytest.mark.parametrize("marker", [np.nan, -1.0], ids=["nan", "minus_one"])
@pytest.mark.parametrize("kind", ["binary", "multilabel"])
def test_binary_markers_are_not_counted(kind, marker):
    units = 3 if isinstance(kinds.get(kind), kinds.Multilabel) else 1
    encoded, y, labelled, pred = make_batch(kind, units, marker=marker)
    masked = get("accuracy", kind)
    masked.update_state(encoded, pred)
    y_l, pred_l, _ = labelled_only(kind, y, labelled, pred)
    expected = np.mean((pred_l > 0.5) == (y_l == 1))
    assert result(masked) == pytest.approx(expected, rel=1e-6)


def test_categorical_labels_of_shape_batch_1():
    encoded, y, labelled, pred = make_batch("categorical", 4)
    masked = get("accuracy", "categorical")
    masked.update_state(encoded[:, None], pred)
    expected = np.mean(np.argmax(pred[labelled], axis=-1) == y[labelled])
    assert result(masked) == pytest.approx(expected, rel=1e-6)


def test_regression_minus_one_is_a_target():
    masked = get("mae", "regression")
    masked.update_state(np.array([-1.0, np.nan, 2.0], np.float32), np.array([[0.0], [9.0], [1.0]]))
    assert result(masked) == pytest.approx((1.0 + 1.0) / 2)


def test_reset_state():
    masked = get("accuracy", "binary")
    masked.update_state(np.array([1.0, 0.0]), np.array([[0.9], [0.9]]))
    assert result(masked) == pytest.approx(0.5)
    masked.reset_state()
    masked.update_state(np.array([1.0, -1.0]), np.array([[0.9], [0.1]]))
    assert result(masked) == pytest.approx(1.0)


def test_all_missing_batch_leaves_metric_unchanged():
    masked = get("accuracy", "binary")
    masked.update_state(np.array([1.0, 0.0]), np.array([[0.9], [0.9]]))
    masked.update_state(np.array([-1.0, -1.0, np.nan]), np.array([[0.1], [0.9], [0.9]]))
    assert result(masked) == pytest.approx(0.5)


def test_wrapped_metric_variables_are_tracked():
    masked = get("auc", "binary", "car")
    assert {id(v) for v in masked.metric.variables} <= {id(v) for v in masked.variables}
    assert len(masked.variables) > 0


# -- get -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("identifier", "kind", "task", "name", "cls"),
    [
        ("auc", "binary", "car", "car_auc", keras.metrics.AUC),
        ("AUC", "multilabel", "objects", "objects_auc", keras.metrics.AUC),
        ("accuracy", "binary", "car", "car_accuracy", keras.metrics.BinaryAccuracy),
        ("accuracy", "categorical", "weather", "weather_accuracy", keras.metrics.SparseCategoricalAccuracy),
        ("mae", "regression", "distance", "distance_mae", keras.metrics.MeanAbsoluteError),
        ("rmse", "regression", "distance", "distance_rmse", keras.metrics.RootMeanSquaredError),
        ("precision", "binary", "car", "car_precision", keras.metrics.Precision),
        (keras.metrics.Recall, "binary", "car", "car_recall", keras.metrics.Recall),
        (keras.metrics.AUC(curve="PR", name="pr_auc"), "binary", "car", "car_pr_auc", keras.metrics.AUC),
    ],
)
def test_get_names_and_classes(identifier, kind, task, name, cls):
    metric = get(identifier, kind, task)
    assert isinstance(metric, MaskedMetric)
    assert metric.name == name
    assert type(metric.kind) is type(kinds.get(kind))
    assert type(metric.metric) is cls


def test_get_without_task_name_keeps_metric_name():
    assert get("auc", "binary").name == "auc"


def test_get_does_not_prefix_twice():
    metric = get("auc", "binary", "car")
    again = get(metric, "binary", "car")
    assert again is metric
    assert again.name == "car_auc"


def test_get_returns_fresh_objects_for_names():
    first, second = get("accuracy", "binary", "car"), get("accuracy", "binary", "car")
    first.update_state(np.array([1.0]), np.array([[0.9]]))
    assert result(first) == 1.0
    assert result(second) == 0.0


@pytest.mark.parametrize(
    ("identifier", "kind"),
    [("auc", "regression"), ("auc", "categorical"), ("mae", "binary"), ("rmse", "multilabel"),
     ("accuracy", "regression"), ("mse", "categorical")],
)
def test_get_rejects_metric_that_does_not_fit_the_kind(identifier, kind):
    with pytest.raises(ValueError) as info:
        get(identifier, kind, "my_task")
    message = str(info.value)
    assert repr(identifier) in message
    assert "'my_task'" in message
    assert kind in message
    # and it lists what fits
    fits = {"binary": ["auc", "accuracy"], "multilabel": ["auc", "accuracy"],
            "categorical": ["accuracy"], "regression": ["mae", "mse", "rmse"]}[kind]
    listed = message.split("include", 1)[1]
    assert [n for n in ("auc", "accuracy", "mae", "mse", "rmse") if f"'{n}'" in listed] == fits


def test_get_rejects_plain_function():
    with pytest.raises(ValueError, match=r"'car'.*MeanMetricWrapper"):
        get(lambda y, p: y, "binary", "car")


def test_get_unknown_name_raises():
    with pytest.raises(ValueError):
        get("no_such_metric", "binary", "car")


@pytest.mark.parametrize(
    ("kind", "names"),
    [
        ("binary", ["car_auc", "car_accuracy"]),
        ("multilabel", ["car_auc", "car_accuracy"]),
        ("categorical", ["car_accuracy"]),
        ("regression", ["car_mae"]),
    ],
)
def test_default_metrics(kind, names):
    found = default_metrics(kind, "car")
    assert [m.name for m in found] == names
    assert all(isinstance(m, MaskedMetric) and type(m.kind) is type(kinds.get(kind)) for m in found)


# -- TaskLossMeans ---------------------------------------------------------------------

def test_task_loss_means_result_dict():
    means = TaskLossMeans(["car", "weather", "distance"])
    means.update_state(np.array([1.0, 2.0, 3.0]))
    means.update_state(np.array([3.0, 4.0, 7.0]))
    found = {k: float(v) for k, v in means.result().items()}
    assert list(found) == ["car_loss", "weather_loss", "distance_loss", "mean_task_loss"]
    assert found == pytest.approx({"car_loss": 2.0, "weather_loss": 3.0, "distance_loss": 5.0,
                                   "mean_task_loss": (2.0 + 3.0 + 5.0) / 3})


def test_task_loss_means_weighted_by_batch_size():
    means = TaskLossMeans(["a", "b"])
    means.update_state(np.array([1.0, 10.0]), sample_weight=2)
    means.update_state(np.array([4.0, 20.0]), sample_weight=6)
    found = {k: float(v) for k, v in means.result().items()}
    a, b = (1 * 2 + 4 * 6) / 8, (10 * 2 + 20 * 6) / 8
    assert found == pytest.approx({"a_loss": a, "b_loss": b, "mean_task_loss": (a + b) / 2})


def test_task_loss_means_reset_and_empty():
    means = TaskLossMeans(["a"])
    assert float(means.result()["a_loss"]) == 0.0  # no update yet: no NaN
    means.update_state(np.array([5.0]), sample_weight=3)
    means.reset_state()
    means.update_state(np.array([1.0]), sample_weight=1)
    assert float(means.result()["a_loss"]) == pytest.approx(1.0)


def test_task_loss_means_config_round_trip():
    means = TaskLossMeans(["a", "b"], name="per_task")
    config = means.get_config()
    restored = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(means))))
    assert isinstance(restored, TaskLossMeans)
    assert restored.task_names == ["a", "b"]
    assert restored.name == "per_task"
    assert TaskLossMeans.from_config(config).get_config() == config


def test_a_thousand_task_losses_are_read_as_python_floats_in_one_transfer():
    # Keras reads result() at every epoch's end: concrete vectors become floats, not 1,000 device slices.
    losses = np.random.default_rng(0).random(1000).astype(np.float32)
    means = TaskLossMeans([f"t{i}" for i in range(1000)])
    means.update_state(losses)
    found = means.result()
    assert all(type(found[f"t{i}_loss"]) is float for i in range(1000))
    np.testing.assert_allclose([found[f"t{i}_loss"] for i in range(1000)], losses, rtol=1e-6)
    assert float(found["mean_task_loss"]) == pytest.approx(losses.mean(), rel=1e-5)


def test_is_concrete_tells_a_traced_value_from_numbers():
    seen = []

    def double(value):
        seen.append(backend_lib.is_concrete(value))
        return value * 2

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        traced = tf.function(double)
    elif backend == "jax":
        import jax
        traced = jax.jit(double)
    else:
        import torch
        traced = torch.compile(double, backend="eager", fullgraph=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(traced(keras.ops.ones(3))), [2.0, 2.0, 2.0])
    assert seen == [False]
    assert backend_lib.is_concrete(keras.ops.ones(3))


# -- TaskWeights -------------------------------------------------------------------------

def test_task_weights_keep_the_last_step_through_reset():
    weights = TaskWeights(["car", "weather"])
    assert {k: float(v) for k, v in weights.result().items()} == {"weight_car": 1.0, "weight_weather": 1.0}
    weights.update_state(np.array([0.5, 1.5], np.float32))
    weights.update_state(np.array([0.25, 2.0], np.float32))
    weights.reset_state()  # an epoch's end or an evaluation: the last weights stay readable
    found = {k: float(v) for k, v in weights.result().items()}
    assert list(found) == ["weight_car", "weight_weather"]
    assert found == {"weight_car": 0.25, "weight_weather": 2.0}


def test_task_weights_config_round_trip():
    weights = TaskWeights(["a", "b"], name="weights")
    restored = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(weights))))
    assert isinstance(restored, TaskWeights)
    assert (restored.task_names, restored.name) == (["a", "b"], "weights")
    assert TaskWeights.from_config(weights.get_config()).get_config() == weights.get_config()


def test_module_public_names():
    assert set(metrics_lib.__all__) == {
        "HIGHER_IS_BETTER", "MaskedMetric", "PoissonDeviance", "RegressionTaskMetrics", "SigmoidTaskMetrics",
        "TaskLossMeans", "TaskWeights", "default_metrics", "get", "higher_is_better", "poisson_deviance",
    }


# -- the fused metrics and the per-task ones give the same numbers ----------------------------

@pytest.mark.parametrize("num_thresholds", [200, 7])
def test_fused_auc_counts_as_keras_auc_at_the_thresholds_edges(num_thresholds):
    """The histogram's AUC against keras.metrics.AUC (multi-label, the masked entries weighted 0),
    with predictions exactly on thresholds, at 0 and 1 and just beside them, over three batches."""
    rng = np.random.default_rng(11)
    edges = np.arange(num_thresholds) / (num_thresholds - 1)
    fused = metrics_lib.SigmoidTaskMetrics(["a", "b"], [1, 1], num_thresholds=num_thresholds)
    reference = keras.metrics.AUC(num_thresholds=num_thresholds, multi_label=True, num_labels=2)
    for _ in range(3):
        p = rng.choice(np.concatenate([edges, np.nextafter(edges, 2.0), np.nextafter(edges, -1.0).clip(0, 1)]),
                       size=(64, 2)).astype("float32")
        y = rng.integers(0, 2, size=(64, 2)).astype("float32")
        y[rng.random(y.shape) < 0.25] = -1.0
        fused.update_state(y, p)
        reference.update_state(np.maximum(y, 0.0), p, sample_weight=(y >= 0).astype("float32"))
    found = fused.vectors()["auc"]
    # Keras's AUC of each label alone: its multi-label result is their mean.
    expected = []
    for j in range(2):
        single = keras.metrics.AUC(num_thresholds=num_thresholds)
        for v in ("true_positives", "false_positives", "true_negatives", "false_negatives"):
            getattr(single, v).assign(keras.ops.convert_to_numpy(getattr(reference, v).value)[:, j])
        expected.append(result(single))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(found), expected, rtol=1e-6)
    assert float(np.mean(expected)) == pytest.approx(result(reference), rel=1e-6)


def test_fused_metrics_equal_each_tasks_masked_metrics():
    """SigmoidTaskMetrics / RegressionTaskMetrics (what a model uses) against MaskedMetric per task,
    with missing labels and per-example weights, over two batches."""
    rng = np.random.default_rng(4)
    units = [1, 3, 1]  # binary, multilabel, binary
    fused = metrics_lib.SigmoidTaskMetrics(["a", "b", "c"], units)
    regression = metrics_lib.RegressionTaskMetrics(["r", "s"])
    single = {name: (get("auc", "binary" if u == 1 else "multilabel", name),
                     get("accuracy", "binary" if u == 1 else "multilabel", name)) for name, u in zip("abc", units)}
    maes = {name: get("mae", "regression", name) for name in "rs"}
    for _ in range(2):
        y = rng.integers(0, 2, size=(40, 5)).astype("float32")
        y[rng.random(y.shape) < 0.3] = -1.0
        p = rng.random((40, 5)).astype("float32")
        w = rng.random(40).astype("float32")
        fused.update_state(y, p, np.repeat(w[:, None], 5, axis=1))
        for name, lo, hi in (("a", 0, 1), ("b", 1, 4), ("c", 4, 5)):
            for metric in single[name]:
                metric.update_state(y[:, lo:hi], p[:, lo:hi], sample_weight=w)
        t = rng.normal(size=(40, 2)).astype("float32")
        t[rng.random(t.shape) < 0.3] = np.nan
        q = rng.normal(size=(40, 2)).astype("float32")
        regression.update_state(t, q, np.repeat(w[:, None], 2, axis=1))
        for j, name in enumerate("rs"):
            maes[name].update_state(t[:, j:j + 1], q[:, j:j + 1], sample_weight=w)
    found = {k: float(v) for k, v in {**fused.result(), **regression.result()}.items()}
    expected = {m.name: result(m) for pair in single.values() for m in pair}
    expected.update({m.name: result(m) for m in maes.values()})
    assert set(found) == set(expected)
    assert found == pytest.approx(expected, rel=1e-5, abs=1e-6)
