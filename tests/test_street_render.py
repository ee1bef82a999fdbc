"""The street-scene renderer's relatedness setting: a shared marking on the task objects only."""

import numpy as np
import pytest

from keras_mtl.datasets import street_render, street_scenes_tfds
from keras_mtl.datasets.street_scenes import OBJECT_TASKS, generate_street_scenes


@pytest.fixture(scope="module")
def pair():
    """The same 1,500 scenes drawn without and with the shared marking."""
    plain = generate_street_scenes(1500, seed=4, relatedness=0.0)
    marked = generate_street_scenes(1500, seed=4, relatedness=1.0)
    return plain, marked


def changed_pixels(a, b):
    return np.count_nonzero(np.any(a != b, axis=-1), axis=(1, 2))


def test_relatedness_zero_is_the_default_drawing():
    a, la = generate_street_scenes(64, seed=1)
    b, lb = generate_street_scenes(64, seed=1, relatedness=0.0)
    np.testing.assert_array_equal(a, b)
    for task in la:
        np.testing.assert_array_equal(la[task], lb[task])


def test_marking_only_where_a_task_object_is(pair):
    (plain, labels), (marked, marked_labels) = pair
    changed = changed_pixels(plain, marked)
    no_object = np.all([labels[t] == 0 for t in OBJECT_TASKS], axis=0)
    any_object = ~no_object
    # Scenes whose four labels are all 0 may still hold an object hidden behind others; those are
    # the only ones that can change. Almost all stay identical pixel for pixel.
    assert np.mean(changed[no_object] == 0) >= 0.95
    # Every scene with a visible object shows the marking.
    assert np.all(changed[any_object] > 0)
    # The border is thin: a few pixels per object, never a large part of the picture.
    assert np.median(changed[any_object]) < 0.08 * 64 * 64
    # The marking is drawn in the hi-vis colour (before lighting and noise): green high, blue low.
    diff = np.any(plain != marked, axis=-1)
    colours = marked[diff].astype(float)
    assert np.median(colours[:, 1]) > 170 and np.median(colours[:, 2]) < 110
    # Labels describe what is visible; a border may hide a little of a farther object, no more.
    for task in OBJECT_TASKS:
        assert np.mean(labels[task] == marked_labels[task]) >= 0.99, task


def test_marking_probability_is_the_relatedness():
    plain, labels = generate_street_scenes(3000, image_size=32, seed=5, relatedness=0.0)
    half, _ = generate_street_scenes(3000, image_size=32, seed=5, relatedness=0.5)
    # Scenes whose only visible object is one pedestrian (no other task object drawn at all is not
    # known from the labels, so allow for hidden ones): about half of them carry the marking.
    only_pedestrian = (labels["pedestrian"] == 1) & (labels["num_cars"] == 0) & (labels["stop_sign"] == 0) & (
        labels["traffic_light"] == 0)
    share = np.mean(changed_pixels(plain, half)[only_pedestrian] > 0)
    assert 0.4 <= share <= 0.65, share


@pytest.mark.parametrize("value", [-0.1, 1.5, "high"])
def test_bad_relatedness_names_the_setting(value):
    with pytest.raises(ValueError, match="relatedness must be in"):
        generate_street_scenes(4, relatedness=value)


def test_render_scenes_needs_the_marking_stream():
    with pytest.raises(ValueError, match="mark_rng"):
        street_render.render_scenes(np.random.default_rng(0), 4, 32, relatedness=0.5)


def test_builder_version_and_related_configs():
    builder = street_scenes_tfds.StreetScenes
    assert str(builder.VERSION) == "1.1.0" and "relatedness" in builder.RELEASE_NOTES["1.1.0"]
    configs = {c.name: c for c in builder.BUILDER_CONFIGS}
    assert configs["related"].relatedness == 1.0 and configs["related_small"].relatedness == 1.0
    assert all(configs[name].relatedness == 0.0 for name in ("small", "default", "annotator", "full_labels", "tiny"))
    with pytest.raises(ValueError, match="relatedness"):
        street_scenes_tfds.StreetScenesConfig(name="bad", relatedness=2.0)
