import json

import keras
import numpy as np
import pytest
from gradients import float64, value_and_gradient

from keras_mtl import Task, kinds
from keras_mtl.heads import FusedTaskLoss, HeadLayout
from keras_mtl.kinds import Categorical
from keras_mtl.losses import (
    MaskedBinaryCrossentropy,
    MaskedCategoricalCrossentropy,
    MaskedMeanSquaredError,
)

pytestmark = pytest.mark.portable


def _is(kind, cls) -> bool:
    """Whether the kind a test names (its shorthand) is a ``cls``, asked of the kind object."""
    return isinstance(kinds.get(kind), cls)


LOSS_CLASSES = [MaskedBinaryCrossentropy, MaskedCategoricalCrossentropy, MaskedMeanSquaredError]
NORMALIZATIONS = ["batch", "labeled"]
# (kind, units): units is the number of output columns (classes for categorical).
CASES = [("binary", 1), ("multilabel", 3), ("categorical", 4), ("regression", 1), ("regression", 2)]
CASE_IDS = [f"{kind}{units}" for kind, units in CASES]
# (kind, units, from_logits): regression predictions are values, never probabilities.
PRED_CASES = [(k, u, True) for k, u in CASES] + [(k, u, False) for k, u in CASES if not _is(k, kinds.Regression)]
PRED_IDS = [f"{k}{u}-{'logits' if f else 'probabilities'}" for k, u, f in PRED_CASES]
LOSS_OF_KIND = {
    "binary": MaskedBinaryCrossentropy,
    "multilabel": MaskedBinaryCrossentropy,
    "categorical": MaskedCategoricalCrossentropy,
    "regression": MaskedMeanSquaredError,
}


# -- NumPy reference ------------------------------------------------------------

def _log_softmax(z):
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def reference_loss(kind, y, pred, labelled, normalize, from_logits=True, weight=None):
    """The multi-task loss of one task, from scratch in float64.

    J = (1/m) Σ_i w_i Σ_{j labelled} L(ŷ_ij, y_ij) for normalize="batch";
    Σ_i w_i Σ_{j labelled} L / Σ_i w_i #labelled_i for normalize="labeled".
    ``y`` holds clean labels (any value where not ``labelled``).
    """
    pred = np.asarray(pred, np.float64)
    m = pred.shape[0]
    w = np.ones(m) if weight is None else np.asarray(weight, np.float64).reshape(m)
    if _is(kind, kinds.Categorical):
        log_p = _log_softmax(pred) if from_logits else np.log(pred)
        classes = np.where(labelled, y, 0).astype(int)
        entries = -log_p[np.arange(m), classes][:, None]
        labelled = np.asarray(labelled).reshape(m, 1)
    else:
        y = np.asarray(y, np.float64).reshape(pred.shape)
        labelled = np.asarray(labelled).reshape(pred.shape)
        y = np.where(labelled, y, 0.0)
        if _is(kind, kinds.Regression):
            entries = (pred - y) ** 2
        elif from_logits:  # −log σ(z) = log(1 + e^−z), −log(1 − σ(z)) = log(1 + e^z)
            entries = y * np.logaddexp(0.0, -pred) + (1 - y) * np.logaddexp(0.0, pred)
        else:
            entries = -(y * np.log(pred) + (1 - y) * np.log(1 - pred))
    total = np.sum(np.where(labelled, entries, 0.0) * w[:, None])
    denominator = m if normalize == "batch" else np.sum(labelled * w[:, None])
    return total / denominator if denominator else 0.0


def make_case(kind, units, m=16, from_logits=True, seed=0, missing_rate=0.4):
    """Random labels with ~40 % missing and predictions for one task.

    Returns (encoded labels for the loss, clean labels, labelled mask, predictions).
    """
    rng = np.random.default_rng(seed)
    shape = (m,) if _is(kind, kinds.Categorical) else (m, units)
    labelled = rng.random(shape) >= missing_rate
    labelled.flat[0], labelled.flat[-1] = True, False  # at least one of each
    logits = rng.normal(scale=2.0, size=(m, units))
    if _is(kind, kinds.Categorical):
        clean = rng.integers(0, units, size=m)
        encoded = np.where(labelled, clean, -1).astype(np.int32)
        pred = logits if from_logits else np.exp(_log_softmax(logits))
    elif _is(kind, kinds.Regression):
        clean = rng.normal(size=shape)
        encoded = np.where(labelled, clean, np.nan).astype(np.float32)
        pred = logits
    else:
        clean = rng.integers(0, 2, size=shape).astype(np.float64)
        encoded = np.where(labelled, clean, -1.0).astype(np.float32)
        pred = logits if from_logits else 1.0 / (1.0 + np.exp(-logits))
    return encoded, clean, labelled, pred.astype(np.float32)


def build(kind, normalize, from_logits, **kwargs):
    cls = LOSS_OF_KIND[kind]
    if cls is MaskedMeanSquaredError:
        return cls(normalize=normalize, **kwargs)
    return cls(normalize=normalize, from_logits=from_logits, **kwargs)


def value(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor), dtype=np.float64)


# -- configuration ------------------------------------------------------------------

@pytest.mark.parametrize("cls", LOSS_CLASSES)
def test_config_round_trip(cls):
    kwargs = dict(normalize="labeled", name="my_loss", reduction="sum")
    if cls is not MaskedMeanSquaredError:
        kwargs["from_logits"] = True
    loss = cls(**kwargs)
    config = loss.get_config()
    assert config["normalize"] == "labeled"
    assert config["name"] == "my_loss"
    assert config["reduction"] == "sum"
    assert config["from_logits"] is (cls is not MaskedMeanSquaredError)
    restored = cls.from_config(config)
    assert type(restored) is cls
    assert restored.get_config() == config
    assert (restored.normalize, restored.from_logits) == (loss.normalize, loss.from_logits)


@pytest.mark.parametrize("cls", LOSS_CLASSES)
def test_keras_serialize_round_trip(cls):
    loss = cls(normalize="labeled")
    serialized = keras.saving.serialize_keras_object(loss)
    assert serialized["registered_name"] == f"keras_mtl>{cls.__name__}"
    serialized = json.loads(json.dumps(serialized))  # what a .keras file holds
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is cls
    assert restored.get_config() == loss.get_config()
    kind = {MaskedBinaryCrossentropy: "multilabel", MaskedCategoricalCrossentropy: "categorical",
            MaskedMeanSquaredError: "regression"}[cls]
    encoded, _, _, pred = make_case(kind, 3, from_logits=False)
    np.testing.assert_allclose(value(restored(encoded, pred)), value(loss(encoded, pred)), rtol=1e-6)


@pytest.mark.parametrize("cls", LOSS_CLASSES)
def test_default_config(cls):
    config = cls().get_config()
    assert config["normalize"] == "batch"
    assert config["from_logits"] is False
    assert config["reduction"] == "sum_over_batch_size"


@pytest.mark.parametrize("cls", LOSS_CLASSES)
@pytest.mark.parametrize("normalize", ["mean", "sum", None, "Batch"])
def test_bad_normalize_raises(cls, normalize):
    with pytest.raises(ValueError, match=r"normalize=.*'batch'.*'labeled'"):
        cls(normalize=normalize)


def test_mse_rejects_from_logits():
    with pytest.raises(ValueError, match="from_logits"):
        MaskedMeanSquaredError(from_logits=True)


# -- values against the NumPy reference -------------------------------------------

@pytest.mark.parametrize("normalize", NORMALIZATIONS)
@pytest.mark.parametrize(("kind", "units", "from_logits"), PRED_CASES, ids=PRED_IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_value_matches_reference(kind, units, from_logits, normalize, seed):
    encoded, clean, labelled, pred = make_case(kind, units, from_logits=from_logits, seed=seed)
    loss = build(kind, normalize, from_logits)
    expected = reference_loss(kind, clean, pred, labelled, normalize, from_logits)
    np.testing.assert_allclose(value(loss(encoded, pred)), expected, rtol=1e-5)


def test_batch_and_labeled_differ_by_labelled_fraction():
    """batch = labeled × (labelled entries / m): the two normalisations are not the same."""
    encoded, _, labelled, pred = make_case("multilabel", 3)
    batch = value(MaskedBinaryCrossentropy(from_logits=True)(encoded, pred))
    labeled = value(MaskedBinaryCrossentropy("labeled", from_logits=True)(encoded, pred))
    np.testing.assert_allclose(batch, labeled * labelled.sum() / len(pred), rtol=1e-5)
    assert not np.isclose(batch, labeled)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
@pytest.mark.parametrize(("kind", "units"), CASES, ids=CASE_IDS)
def test_value_matches_reference_with_sample_weight(kind, units, normalize):
    encoded, clean, labelled, pred = make_case(kind, units)
    weight = np.random.default_rng(5).uniform(0.0, 3.0, size=len(pred)).astype(np.float32)
    loss = build(kind, normalize, True)
    expected = reference_loss(kind, clean, pred, labelled, normalize, True, weight)
    np.testing.assert_allclose(value(loss(encoded, pred, sample_weight=weight)), expected, rtol=1e-5)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
@pytest.mark.parametrize(("kind", "units"), CASES, ids=CASE_IDS)
def test_zero_sample_weight_gives_zero(kind, units, normalize):
    encoded, _, _, pred = make_case(kind, units)
    loss = build(kind, normalize, True)
    result = value(loss(encoded, pred, sample_weight=np.zeros(len(pred), np.float32)))
    assert result == 0.0


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
@pytest.mark.parametrize(("kind", "units"), CASES, ids=CASE_IDS)
def test_no_missing_labels_matches_plain_keras_loss(kind, units, normalize):
    """Without missing labels the masked loss is the usual Keras loss (× units for sums)."""
    _, clean, _, pred = make_case(kind, units, missing_rate=0.0)
    encoded = clean.astype(np.int32 if _is(kind, kinds.Categorical) else np.float32)
    if _is(kind, kinds.Categorical):
        plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(clean, pred)
        scale = 1.0
    elif _is(kind, kinds.Regression):
        plain = keras.losses.MeanSquaredError()(clean, pred)
        scale = units if normalize == "batch" else 1.0
    else:
        plain = keras.losses.BinaryCrossentropy(from_logits=True)(clean, pred)
        scale = units if normalize == "batch" else 1.0
    loss = build(kind, normalize, True)
    np.testing.assert_allclose(value(loss(encoded, pred)), value(plain) * scale, rtol=1e-5)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_binary_label_rank_one_and_two_agree(normalize):
    encoded, clean, labelled, pred = make_case("binary", 1)
    loss = MaskedBinaryCrossentropy(normalize, from_logits=True)
    expected = reference_loss("binary", clean, pred, labelled, normalize)
    np.testing.assert_allclose(value(loss(encoded[:, 0], pred)), expected, rtol=1e-5)
    np.testing.assert_allclose(value(loss(encoded, pred)), expected, rtol=1e-5)
    np.testing.assert_allclose(value(loss(encoded, pred[:, 0])), expected, rtol=1e-5)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_categorical_labels_of_shape_batch_1(normalize):
    encoded, clean, labelled, pred = make_case("categorical", 4)
    loss = MaskedCategoricalCrossentropy(normalize, from_logits=True)
    expected = reference_loss("categorical", clean, pred, labelled, normalize)
    np.testing.assert_allclose(value(loss(encoded[:, None], pred)), expected, rtol=1e-5)
    np.testing.assert_allclose(value(loss(encoded.astype(np.float32), pred)), expected, rtol=1e-5)


def test_reduction_none_gives_per_example_sums():
    encoded, clean, labelled, pred = make_case("multilabel", 3)
    per_example = value(MaskedBinaryCrossentropy(from_logits=True, reduction="none")(encoded, pred))
    assert per_example.shape == (len(pred),)
    for i in range(len(pred)):
        expected = reference_loss("multilabel", clean[i:i + 1], pred[i:i + 1], labelled[i:i + 1], "batch")
        np.testing.assert_allclose(per_example[i], expected, rtol=1e-5, atol=1e-7)


def test_docstring_values():
    """The docstrings' worked examples, recomputed by hand."""
    assert np.isclose(value(MaskedBinaryCrossentropy()([[1.0, -1.0]], [[0.9, 0.3]])), -np.log(0.9))
    expected = -np.log(0.5) / 2  # one labelled example, m = 2
    got = MaskedCategoricalCrossentropy()([2, -1], [[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    assert np.isclose(value(got), expected, rtol=1e-6)


# -- missing labels: nothing in the loss, nothing in the gradient -----------------

@pytest.mark.parametrize("marker", [-1.0, np.nan], ids=["minus_one", "nan"])
@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_binary_missing_marker_is_ignored(marker, normalize):
    loss = MaskedBinaryCrossentropy(normalize)
    result = value(loss(np.array([marker, 1.0], np.float32), np.array([[0.3], [0.9]], np.float32)))
    assert np.isfinite(result)
    expected = -np.log(0.9) / (2 if normalize == "batch" else 1)
    np.testing.assert_allclose(result, expected, rtol=1e-6)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_nan_label_in_categorical_is_missing(normalize):
    y = np.array([np.nan, 2.0, -1.0], np.float32)
    z = np.array([[9.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 9.0]], np.float32)
    result = value(MaskedCategoricalCrossentropy(normalize, from_logits=True)(y, z))
    labelled = np.array([False, True, False])
    expected = reference_loss("categorical", np.array([0, 2, 0]), z, labelled, normalize)
    np.testing.assert_allclose(result, expected, rtol=1e-6)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_nan_label_in_multilabel_is_missing(normalize):
    y = np.array([[np.nan, 1.0], [0.0, np.nan]], np.float32)
    z = np.array([[5.0, -1.0], [2.0, 3.0]], np.float32)
    result = value(MaskedBinaryCrossentropy(normalize, from_logits=True)(y, z))
    expected = reference_loss("multilabel", np.nan_to_num(y), z, ~np.isnan(y), normalize)
    assert np.isfinite(result)
    np.testing.assert_allclose(result, expected, rtol=1e-6)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
@pytest.mark.parametrize(("kind", "units", "from_logits"), PRED_CASES, ids=PRED_IDS)
def test_gradient_is_zero_at_missing_entries(kind, units, from_logits, normalize):
    encoded, _, labelled, pred = make_case(kind, units, from_logits=from_logits)
    loss = build(kind, normalize, from_logits)
    _, gradient = value_and_gradient(lambda p: loss(encoded, p), pred)
    assert np.all(np.isfinite(gradient))
    if _is(kind, kinds.Categorical):
        assert np.all(gradient[~labelled] == 0.0)
        # With probabilities only the true class's column has a gradient.
        assert np.all(np.any(gradient[labelled] != 0.0, axis=-1))
        if from_logits:
            assert np.all(gradient[labelled] != 0.0)
    else:
        assert np.all(gradient[~labelled] == 0.0)
        assert np.all(gradient[labelled] != 0.0)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
@pytest.mark.parametrize(("kind", "units"), CASES, ids=CASE_IDS)
def test_gradient_matches_reference(kind, units, normalize):
    """d loss / d logit against central differences of the NumPy reference."""
    encoded, clean, labelled, pred = make_case(kind, units, m=6)
    with float64():
        loss = build(kind, normalize, True, dtype="float64")
        _, gradient = value_and_gradient(lambda p: loss(encoded, p), pred, dtype="float64")
    assert gradient.dtype == np.float64
    numeric = np.zeros_like(gradient)
    step = 1e-6
    for index in np.ndindex(*pred.shape):
        up, down = pred.astype(np.float64), pred.astype(np.float64)
        up[index] += step
        down[index] -= step
        numeric[index] = (reference_loss(kind, clean, up, labelled, normalize)
                          - reference_loss(kind, clean, down, labelled, normalize)) / (2 * step)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
@pytest.mark.parametrize(("kind", "units", "from_logits"), PRED_CASES, ids=PRED_IDS)
def test_all_missing_batch_gives_zero_loss_and_zero_gradient(kind, units, from_logits, normalize):
    encoded, _, _, pred = make_case(kind, units, from_logits=from_logits, missing_rate=1.0)
    if _is(kind, kinds.Categorical):
        encoded = np.full_like(encoded, -1)
    elif _is(kind, kinds.Regression):
        encoded = np.full_like(encoded, np.nan)
    else:
        encoded = np.full_like(encoded, -1.0)
    loss = build(kind, normalize, from_logits)
    result, gradient = value_and_gradient(lambda p: loss(encoded, p), pred)
    assert value(result) == 0.0
    assert np.all(gradient == 0.0)


# -- numerical stability -----------------------------------------------------------

def test_extreme_logits_binary():
    z = np.array([[100.0], [-100.0], [100.0], [-100.0]], np.float32)
    y = np.array([0.0, 1.0, 1.0, 0.0], np.float32)
    per_example = MaskedBinaryCrossentropy(from_logits=True, reduction="none")
    _, gradient = value_and_gradient(lambda logits: keras.ops.sum(per_example(y, logits)), z)
    gradient = gradient[:, 0]
    per_example = per_example(y, z)
    np.testing.assert_allclose(value(per_example), [100.0, 100.0, 0.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(gradient, [1.0, -1.0, 0.0, 0.0], atol=1e-6)  # σ(z) − y
    mean = MaskedBinaryCrossentropy(from_logits=True)(y, z)
    np.testing.assert_allclose(value(mean), 50.0, rtol=1e-6)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_extreme_logits_categorical(normalize):
    z = np.array([[100.0, -100.0, 0.0], [100.0, -100.0, 0.0], [-100.0, 100.0, 0.0]], np.float32)
    y = np.array([1, 0, -1], np.int32)
    loss = MaskedCategoricalCrossentropy(normalize, from_logits=True)
    result, gradient = value_and_gradient(lambda logits: loss(y, logits), z)
    expected = 200.0 / (3 if normalize == "batch" else 2)
    np.testing.assert_allclose(value(result), expected, rtol=1e-6)
    assert np.all(np.isfinite(gradient))
    assert np.all(gradient[2] == 0.0)
    # softmax − one-hot, divided by the normaliser
    np.testing.assert_allclose(gradient[0] * (3 if normalize == "batch" else 2), [1, -1, 0], atol=1e-6)


@pytest.mark.parametrize(("kind", "units"), [("binary", 1), ("categorical", 3)])
def test_saturated_probabilities_are_finite(kind, units):
    if _is(kind, kinds.Binary):
        y, p = np.array([1.0, 0.0], np.float32), np.array([[0.0], [1.0]], np.float32)
    else:
        y, p = np.array([1, 2], np.int32), np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    loss = build(kind, "batch", False)
    result, gradient = value_and_gradient(lambda probabilities: loss(y, probabilities), p)
    assert np.isfinite(value(result))
    assert value(result) > 10.0  # −log(clip(0)) is large, not zero
    assert np.all(np.isfinite(gradient))


def test_regression_minus_one_target_is_data():
    result = MaskedMeanSquaredError()(np.array([-1.0, np.nan], np.float32), np.array([[1.0], [7.0]]))
    np.testing.assert_allclose(value(result), (1.0 - -1.0) ** 2 / 2, rtol=1e-6)


# -- shapes ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("cls", "y_shape", "pred_shape"),
    [
        (MaskedBinaryCrossentropy, (4, 2), (4, 3)),
        (MaskedBinaryCrossentropy, (3,), (4, 1)),
        (MaskedBinaryCrossentropy, (4, 3), (4, 1)),
        (MaskedCategoricalCrossentropy, (4, 3), (4, 3)),  # one-hot labels
        (MaskedCategoricalCrossentropy, (5,), (4, 3)),
        (MaskedMeanSquaredError, (4, 2), (4, 1)),
        (MaskedMeanSquaredError, (3, 1), (4, 1)),
    ],
)
def test_shape_mismatch_raises(cls, y_shape, pred_shape):
    with pytest.raises(ValueError, match="shape"):
        cls()(np.zeros(y_shape, np.float32), np.full(pred_shape, 0.5, np.float32))


def test_one_hot_categorical_error_says_how_to_fix():
    with pytest.raises(ValueError, match="argmax"):
        MaskedCategoricalCrossentropy()(np.eye(3, dtype=np.float32), np.full((3, 3), 1 / 3, np.float32))


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_sample_weight_of_one_call_does_not_leak_into_the_next(normalize):
    encoded, clean, labelled, pred = make_case("multilabel", 3)
    weight = np.linspace(0.5, 2.0, len(pred)).astype(np.float32)
    loss = MaskedBinaryCrossentropy(normalize, from_logits=True)
    expected = reference_loss("multilabel", clean, pred, labelled, normalize, True, weight)
    np.testing.assert_allclose(value(loss(encoded, pred, sample_weight=weight)), expected, rtol=1e-5)
    unweighted = reference_loss("multilabel", clean, pred, labelled, normalize)
    np.testing.assert_allclose(value(loss(encoded, pred)), unweighted, rtol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TensorFlow only: tf.function traces with an unknown (None) batch dimension, "
                           "which JAX and PyTorch tensors do not have")
@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_works_inside_tf_function_with_unknown_batch(normalize):
    import tensorflow as tf

    encoded, clean, labelled, pred = make_case("multilabel", 3)
    weight = np.linspace(0.5, 2.0, len(pred)).astype(np.float32)
    loss = MaskedBinaryCrossentropy(normalize, from_logits=True)
    spec = [tf.TensorSpec((None, 3), tf.float32)] * 2 + [tf.TensorSpec((None,), tf.float32)]
    compute = tf.function(lambda y, p, w: loss(y, p, sample_weight=w), input_signature=spec)
    expected = reference_loss("multilabel", clean, pred, labelled, normalize, True, weight)
    np.testing.assert_allclose(value(compute(encoded, pred, weight)), expected, rtol=1e-5)
    # The weights of one call do not leak into the next.
    unweighted = reference_loss("multilabel", clean, pred, labelled, normalize)
    np.testing.assert_allclose(value(loss(encoded, pred)), unweighted, rtol=1e-5)


# -- the fused loss of all heads ---------------------------------------------------------

MIXED_TASKS = [
    Task("a"),
    Task("b", kind="multilabel", labels=["x", "y", "z"]),
    Task("c", kind="categorical", num_classes=4),
    Task("d", kind="regression"),
    Task("e"),
    Task("f", kind="categorical", num_classes=3),
    Task("g", kind="regression"),
    Task("h", kind="multilabel", labels=["p", "q"]),
]


def mixed_batch(m=12, seed=3):
    """Encoded labels per task (task 'e' entirely missing), clean labels, masks, logits."""
    layout = HeadLayout(MIXED_TASKS)
    logits = np.random.default_rng(seed).normal(scale=2.0, size=(m, layout.units)).astype(np.float32)
    y, clean, labelled = {}, {}, {}
    for i, task in enumerate(MIXED_TASKS):
        rate = 1.0 if task.name == "e" else 0.4
        encoded, clean[task.name], labelled[task.name], _ = make_case(
            task.kind, task.units, m=m, seed=seed + i, missing_rate=rate)
        if task.name == "e":
            labelled["e"][:] = False
            encoded[:] = -1.0
        if encoded.ndim == 2 and len(task.kind.label_shape(task, m)) == 1:
            encoded = encoded[:, 0]  # what the pipeline yields: shape (batch,)
        y[task.name] = encoded
    return layout, y, clean, labelled, logits


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
@pytest.mark.parametrize("weighting", ["none", "per_example", "per_task"])
def test_fused_loss_matches_task_losses_and_reference(normalize, weighting):
    m = 12
    layout, y, clean, labelled, logits = mixed_batch(m)
    rng = np.random.default_rng(9)
    if weighting == "none":
        sample_weight, weights = None, {t.name: None for t in MIXED_TASKS}
    elif weighting == "per_example":
        sample_weight = rng.uniform(0.0, 2.0, m).astype(np.float32)
        weights = {t.name: sample_weight for t in MIXED_TASKS}
    else:
        weights = {t.name: rng.uniform(0.0, 2.0, m).astype(np.float32) for t in MIXED_TASKS}
        sample_weight = weights
    fused = value(FusedTaskLoss(layout, normalize)(y, logits, sample_weight))
    assert fused.shape == (len(MIXED_TASKS),)
    for i, task in enumerate(MIXED_TASKS):
        block = layout.block(task.name)
        columns = logits[:, block.start:block.stop]
        own = value(task.build_loss(normalize, from_logits=True)(
            y[task.name], columns, sample_weight=weights[task.name]))
        expected = reference_loss(task.kind, clean[task.name], columns, labelled[task.name],
                                  normalize, True, weights[task.name])
        np.testing.assert_allclose(fused[i], own, rtol=1e-5, atol=1e-7, err_msg=task.name)
        np.testing.assert_allclose(fused[i], expected, rtol=1e-5, atol=1e-7, err_msg=task.name)
    assert fused[[t.name for t in MIXED_TASKS].index("e")] == 0.0


def test_fused_loss_layout_is_grouped_but_output_in_user_order():
    layout = HeadLayout(MIXED_TASKS)
    assert layout.units == sum(t.units for t in MIXED_TASKS)
    spans = sorted((b.start, b.stop) for b in layout.blocks.values())
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans[:-1], spans[1:], strict=True))
    # Changing only task 'g' (regression, 7th) changes only entry 6.
    _, y, _, _, logits = mixed_batch()
    loss = FusedTaskLoss(layout)
    before = value(loss(y, logits))
    y_changed = dict(y, g=np.where(np.isnan(y["g"]), np.nan, y["g"] + 10.0).astype(np.float32))
    after = value(loss(y_changed, logits))
    changed = np.flatnonzero(~np.isclose(before, after))
    assert changed.tolist() == [6]


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_fused_loss_gradient_zero_at_missing(normalize):
    layout, y, _, labelled, logits = mixed_batch()
    loss = FusedTaskLoss(layout, normalize)
    _, gradient = value_and_gradient(lambda z: keras.ops.sum(loss(y, z)), logits)
    assert np.all(np.isfinite(gradient))
    for task in MIXED_TASKS:
        block = layout.block(task.name)
        g = gradient[:, block.start:block.stop]
        mask = labelled[task.name]
        if isinstance(task.kind, Categorical):
            assert np.all(g[~mask] == 0.0) and np.all(g[mask] != 0.0), task.name
        else:
            mask = mask.reshape(g.shape)
            assert np.all(g[~mask] == 0.0) and np.all(g[mask] != 0.0), task.name


def test_fused_loss_rejects_bad_normalize():
    with pytest.raises(ValueError, match="normalize"):
        FusedTaskLoss(HeadLayout(MIXED_TASKS), normalize="mean")
