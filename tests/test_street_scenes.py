"""Tests of the generated street-scenes dataset and its TFDS builder."""

import shutil
import tempfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_mtl.datasets import street_scenes as ss
from keras_mtl.datasets import street_scenes_tfds as builder

TASKS = ss.OBJECT_TASKS + ss.EXTRA_TASKS


def _strongly_red(images: np.ndarray) -> np.ndarray:
    """Number of saturated red pixels per image."""
    rgb = images.astype(np.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.count_nonzero((r > 110) & (r > 2.5 * g) & (r > 2.5 * b), axis=(1, 2))


def test_shapes_dtypes_and_ranges():
    images, labels = ss.generate_street_scenes(50, image_size=48, seed=3)
    assert images.shape == (50, 48, 48, 3)
    assert images.dtype == np.uint8
    assert images.std() > 10  # not a blank canvas
    assert sorted(labels) == sorted(TASKS)
    for task in ss.OBJECT_TASKS:
        assert labels[task].shape == (50,)
        assert labels[task].dtype == np.float32
        assert set(np.unique(labels[task])) <= {0.0, 1.0}
    assert labels["num_cars"].dtype == np.int64
    assert set(np.unique(labels["num_cars"])) <= {0, 1, 2, 3}
    assert labels["time_of_day"].dtype == np.int64
    assert set(np.unique(labels["time_of_day"])) <= {0, 1, 2}
    assert len(ss.TIME_OF_DAY_NAMES) == 3


def test_presence_rates_near_one_half():
    _, labels = ss.generate_street_scenes(2000, image_size=32, seed=4)
    for task in ss.OBJECT_TASKS:
        assert 0.4 < labels[task].mean() < 0.6, task


def test_same_seed_same_arrays_different_seed_different():
    kwargs = {"image_size": 32, "missing_fraction": 0.3}
    a_images, a_labels = ss.generate_street_scenes(300, seed=7, **kwargs)
    b_images, b_labels = ss.generate_street_scenes(300, seed=7, **kwargs)
    c_images, c_labels = ss.generate_street_scenes(300, seed=8, **kwargs)
    np.testing.assert_array_equal(a_images, b_images)
    for task in TASKS:
        np.testing.assert_array_equal(a_labels[task], b_labels[task])
    assert not np.array_equal(a_images, c_images)
    assert not np.array_equal(a_labels["time_of_day"], c_labels["time_of_day"])


def test_images_do_not_depend_on_missing_pattern():
    full_images, full = ss.generate_street_scenes(40, seed=2, missing="none")
    images, labels = ss.generate_street_scenes(40, seed=2, missing="annotator", missing_fraction=0.5)
    np.testing.assert_array_equal(full_images, images)
    for task in ss.OBJECT_TASKS:
        given = ~np.isnan(labels[task])
        np.testing.assert_array_equal(labels[task][given], full[task][given])


def test_stop_sign_label_matches_red_pixels():
    images, labels = ss.generate_street_scenes(1500, seed=5)
    others = [labels[t] == 0 for t in ("pedestrian", "car", "traffic_light")]
    no_other_object = np.logical_and.reduce(others)
    red = _strongly_red(images)
    with_sign = red[no_other_object & (labels["stop_sign"] == 1)]
    without = red[no_other_object & (labels["stop_sign"] == 0)]
    assert len(with_sign) > 20 and len(without) > 20
    assert with_sign.mean() > without.mean() + 8


def test_traffic_light_label_matches_dark_housing():
    images, labels = ss.generate_street_scenes(1500, seed=6)
    day = labels["time_of_day"] == 0
    # A lit lamp is bright and saturated whatever the lighting.
    rgb = images.astype(np.int32)
    lamp = (rgb.max(axis=-1) > 200) & (rgb.min(axis=-1) < 90)
    lamp_pixels = np.count_nonzero(lamp, axis=(1, 2))
    with_light = lamp_pixels[~day & (labels["traffic_light"] == 1)]
    without = lamp_pixels[~day & (labels["traffic_light"] == 0)]
    assert with_light.mean() > without.mean() + 3


def test_car_flag_equals_num_cars_positive_where_both_labelled():
    _, labels = ss.generate_street_scenes(1000, image_size=32, seed=9, missing_fraction=0.3)
    both = ~np.isnan(labels["car"]) & (labels["num_cars"] >= 0)
    assert both.sum() > 300
    np.testing.assert_array_equal(labels["car"][both] == 1, labels["num_cars"][both] > 0)


def test_uniform_missing_fraction():
    _, labels = ss.generate_street_scenes(4000, image_size=32, seed=10, missing="uniform", missing_fraction=0.5)
    for task in ss.OBJECT_TASKS:
        assert abs(np.isnan(labels[task]).mean() - 0.5) < 0.03, task
    for task in ss.EXTRA_TASKS:
        assert abs((labels[task] == -1).mean() - 0.5) < 0.03, task
    hidden = np.stack([np.isnan(labels[t]) for t in ss.OBJECT_TASKS], axis=1)
    # Independent per object: some images keep all four labels, some none.
    assert (hidden.sum(axis=1) == 0).any() and (hidden.sum(axis=1) == 4).any()


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.8])
def test_annotator_missing_hides_whole_subsets(fraction):
    _, labels = ss.generate_street_scenes(2000, image_size=32, seed=11, missing="annotator", missing_fraction=fraction)
    hidden = np.stack([np.isnan(labels[t]) for t in ss.OBJECT_TASKS], axis=1)
    per_image = hidden.sum(axis=1)
    expected = 4 * fraction
    # Each annotator skips floor(4f) or floor(4f) + 1 objects.
    assert set(np.unique(per_image)) <= {np.floor(expected), np.floor(expected) + 1}
    assert abs(hidden.mean() - fraction) < 0.05
    # Which objects are skipped varies from image to image.
    patterns = {tuple(row) for row in hidden}
    assert len(patterns) > 3


@pytest.mark.parametrize("missing, fraction", [("uniform", 0.0), ("annotator", 0.0), ("none", 0.0), ("none", 0.6)])
def test_nothing_missing(missing, fraction):
    _, labels = ss.generate_street_scenes(200, image_size=32, missing=missing, missing_fraction=fraction)
    for task in ss.OBJECT_TASKS:
        assert not np.isnan(labels[task]).any()
    for task in ss.EXTRA_TASKS:
        assert (labels[task] >= 0).all()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_examples": 0}, "num_examples"),
        ({"num_examples": 2.5}, "num_examples"),
        ({"image_size": 31}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"missing": "random"}, "missing"),
        ({"missing_fraction": 1.0}, "missing_fraction"),
        ({"missing_fraction": -0.1}, "missing_fraction"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    args = {"num_examples": 4, **kwargs}
    with pytest.raises(ValueError, match=name):
        ss.generate_street_scenes(args.pop("num_examples"), **args)


def test_unknown_pattern_lists_valid_ones():
    with pytest.raises(ValueError, match="'none', 'uniform', 'annotator'"):
        ss.generate_street_scenes(4, missing="sometimes")


class StreetScenesBuilderTest(tfds.testing.DatasetBuilderTestCase):
    """TFDS's own checks of the builder, on the `tiny` config."""

    DATASET_CLASS = builder.StreetScenes
    BUILDER_CONFIG_NAMES_TO_TEST = ["tiny"]
    SPLITS = {"train": 8, "validation": 4, "test": 4}
    SKIP_CHECKSUMS = True  # nothing is downloaded

    @classmethod
    def setUpClass(cls):
        # The builder downloads nothing, but the test case insists on a dummy
        # data directory: give it an empty one.
        cls.EXAMPLE_DIR = tempfile.mkdtemp()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.EXAMPLE_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def test_tfds_load_tiny(tiny_dir):
    splits = tfds.load("street_scenes/tiny", data_dir=tiny_dir)
    for name, size in (("train", 8), ("validation", 4), ("test", 4)):
        examples = list(tfds.as_numpy(splits[name]))
        assert len(examples) == size
        for ex in examples:
            assert ex["image"].shape == (64, 64, 3)
            assert ex["image"].dtype == np.uint8
            for task in ss.OBJECT_TASKS:
                assert ex[task] in (-1, 0, 1)
            assert -1 <= ex["num_cars"] <= 3
            assert -1 <= ex["time_of_day"] <= 2
            if name == "test":
                assert all(ex[task] != -1 for task in TASKS)


def test_load_street_scenes_arrays(tiny_dir):
    images, labels = builder.load_street_scenes("train", config="tiny", data_dir=tiny_dir)
    assert images.shape == (8, 64, 64, 3) and images.dtype == np.uint8
    assert sorted(labels) == sorted(TASKS)
    for task in TASKS:
        assert labels[task].shape == (8,) and labels[task].dtype == np.int64
    for task in ss.OBJECT_TASKS:
        assert set(np.unique(labels[task])) <= {-1, 0, 1}
    # Same pictures as the generator makes for the train split, in TFDS order.
    generated, _ = ss.generate_street_scenes(8, seed=builder._SPLIT_SEEDS["train"])
    assert {im.tobytes() for im in images} == {im.tobytes() for im in generated}


def test_builder_configs():
    configs = {c.name: c for c in builder.StreetScenes.BUILDER_CONFIGS}
    assert {"small", "default", "annotator", "full_labels", "tiny"} <= set(configs)
    assert (configs["small"].num_train, configs["small"].num_test) == (2000, 1000)
    assert configs["annotator"].missing == "annotator"
    assert configs["full_labels"].missing == "none"
    with pytest.raises(ValueError, match="missing_fraction"):
        builder.StreetScenesConfig(name="bad", missing_fraction=1.5)
