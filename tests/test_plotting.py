"""kmtl.plotting: the figures show what they are given."""

import json
import os
import subprocess
import sys
import textwrap

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


def test_plot_predictions_captions_never_cover_another_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    names = ["pedestrian", "car", "stop_sign", "traffic_light"]
    labels = {n: rng.integers(0, 2, 12).astype(float) for n in names}
    predictions = {n: rng.uniform(size=(12, 1)) for n in names}
    fig = plotting.plot_predictions(images, labels, predictions, names)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert len(fig.axes) == 12
    for i, panel in enumerate(fig.axes):
        # A panel's tight box holds its image and its caption (four lines, one per task).
        assert panel.get_title(loc="left").count("\n") == 3
        box = panel.get_tightbbox(renderer)
        for j, other in enumerate(fig.axes):
            if i != j:
                image = other.get_images()[0].get_window_extent(renderer)
                assert not box.overlaps(image), f"panel {i}'s caption or image covers image {j}"
        # Each image sits below its own caption: the caption's box is taller than the image alone.
        assert box.height > panel.get_images()[0].get_window_extent(renderer).height * 1.1


def test_the_package_reaches_its_on_demand_modules_as_attributes():
    """In a fresh process: ``import keras_mtl`` leaves plotting, datasets and demo unloaded;
    ``kmtl.plotting`` and the others load on first use, without an import of their own."""
    script = textwrap.dedent("""
        import sys
        import keras_mtl as kmtl
        before = sorted(m for m in ("keras_mtl.plotting", "keras_mtl.datasets", "keras_mtl.demo",
                                    "keras_mtl.cli") if m in sys.modules)
        found = {"plot_task_weights": kmtl.plotting.plot_task_weights.__module__,
                 "generate_street_scenes": kmtl.datasets.generate_street_scenes.__module__,
                 "run_demo": kmtl.demo.run_demo.__module__, "main": kmtl.cli.main.__module__,
                 "compare": kmtl.comparison.compare.__module__,
                 "export_saved_model": kmtl.export.export_saved_model.__module__}
        try:
            kmtl.plotter
        except AttributeError as error:
            found["error"] = str(error)
        print(json.dumps({"before": before, "found": found, "dir": "plotting" in dir(kmtl)}))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONSAFEPATH": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", "import json\n" + script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["before"] == []
    assert report["found"] == {
        "plot_task_weights": "keras_mtl.plotting", "generate_street_scenes": "keras_mtl.datasets.street_scenes",
        "run_demo": "keras_mtl.demo", "main": "keras_mtl.cli", "compare": "keras_mtl.comparison",
        "export_saved_model": "keras_mtl.export",
        "error": "module 'keras_mtl' has no attribute 'plotter'"}
    assert report["dir"]


def test_plot_model_draws_a_box_per_task_below_the_output_layer(tmp_path):
    import shutil

    import keras
    from conftest import require

    import keras_mtl as kmtl

    inputs = keras.Input((5,), name="sensors")
    features = keras.layers.Dense(8, name="trunk")(inputs)
    tasks = [kmtl.Task("car"), kmtl.Task("weather", kind="categorical", class_names=["sun", "rain", "fog"])]
    tasks += [kmtl.Task(f"t{i}") for i in range(4)]
    model = kmtl.MultiTaskModel(inputs, features, tasks)
    require(shutil.which("dot") is not None,
            "Graphviz's `dot` is not on PATH (.ci/run installs it: apt-get install graphviz)")
    dot = plotting.plot_model(model, tmp_path / "model.svg", max_tasks=3)
    svg = (tmp_path / "model.svg").read_text()
    # Each shown task's name, kind and shape; the rest summed up; Keras's own boxes still there.
    for text in ("car", "(binary)", "weather", "(categorical)", "(None, 3)", "t0", "and 3 more tasks",
                 "kmtl_outputs", "trunk"):
        assert text in svg, text
    assert "t1" not in svg
    # Every task box hangs off the output layer's node (a changed Keras node naming fails here).
    outputs_node = str(id(model.task_outputs))
    edges = {(e.get_source().strip('"'), e.get_destination().strip('"')) for e in dot.get_edges()}
    assert {(outputs_node, f"kmtl_task_{i}") for i in range(3)} | {(outputs_node, "kmtl_task_more")} <= edges
    with pytest.raises(TypeError, match="keras.utils.plot_model"):
        plotting.plot_model(keras.Model(inputs, features), tmp_path / "plain.png")
