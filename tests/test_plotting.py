"""kmtl.plotting: the figures show what they are given."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_mtl import plotting  # noqa: E402


@pytest.fixture
def scenes():
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    labels = {"car": np.array([1.0, 0.0, np.nan, 1.0, 0.0]),
              "count": np.array([2, -1, 0, 3, 1]),
              "weather": ["?", 1, None, 0, 2]}
    return images, labels


def test_plot_scenes_titles_list_every_label_and_missing_as_question_mark(scenes):
    images, labels = scenes
    fig = plotting.plot_scenes(images, labels, ["car", "count", "weather"], num_images=4, columns=2)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles == [
        "car: 1\ncount: 2\nweather: ?",
        "car: 0\ncount: ?\nweather: 1",
        "car: ?\ncount: 0\nweather: ?",
        "car: 1\ncount: 3\nweather: 0",
    ]
    # The pixels drawn are the images given.
    np.testing.assert_array_equal(fig.axes[2].get_images()[0].get_array(), images[2])


def test_plot_scenes_defaults_to_every_task_and_drops_empty_panels(scenes, tmp_path):
    images, labels = scenes
    fig = plotting.plot_scenes(images, labels, num_images=5, columns=4, path=tmp_path / "scenes.png")
    assert len(fig.axes) == 5            # a 2 × 4 grid with the three unused panels removed
    assert fig.axes[4].get_title(loc="left") == "car: 0\ncount: 1\nweather: 2"
    assert (tmp_path / "scenes.png").stat().st_size > 0


def test_plot_scenes_draws_one_channel_in_grey():
    images = np.zeros((2, 8, 8, 1), dtype=np.float32)
    fig = plotting.plot_scenes(images, {"digit": np.array([3, 7])}, num_images=2)
    assert fig.axes[1].get_images()[0].get_array().shape == (8, 8)
    assert fig.axes[1].get_title(loc="left") == "digit: 7"


@pytest.mark.parametrize("task_names, message", [(["bus"], "task 'bus' has no labels"),
                                                  (["short"], "has 2 entries for 5 images")])
def test_plot_scenes_errors_name_the_problem(scenes, task_names, message):
    images, labels = scenes
    labels = {**labels, "short": np.array([0, 1])}
    with pytest.raises(ValueError, match=message):
        plotting.plot_scenes(images, labels, task_names, num_images=5)
