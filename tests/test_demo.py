"""keras-mtl demo: its artefacts, and test figures that match an independent computation."""

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_mtl import cli
from keras_mtl.datasets.street_scenes import OBJECT_TASKS, generate_street_scenes
from keras_mtl.demo import SIZES


def rank_auc(labels, scores):
    """ROC AUC as the Mann–Whitney statistic (ties count one half)."""
    labels = np.asarray(labels, bool)
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return (greater + 0.5 * ties) / (len(pos) * len(neg))


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert cli.main(["demo", "--size", "small", "--output", str(out), "--quiet", "--seed", "0"]) == 0
    return out


def test_demo_writes_every_artefact(demo_dir):
    for name in ("metrics.json", "history.json", "learning_curves.png", "label_matrix.png", "predictions.png"):
        assert (demo_dir / name).stat().st_size > 0, name
    assert (demo_dir / "saved_model" / "1" / "saved_model.pb").exists()
    history = json.loads((demo_dir / "history.json").read_text())
    epochs = SIZES["small"]["epochs"]
    for name in OBJECT_TASKS:
        assert len(history[f"{name}_auc"]) == epochs and len(history[f"val_{name}_auc"]) == epochs


def test_demo_metrics_match_the_exported_model_on_the_test_split(demo_dir):
    metrics = json.loads((demo_dir / "metrics.json").read_text())
    # The demo's test split: seed·3 + 2, every label known.
    images, labels = generate_street_scenes(SIZES["small"]["test"], seed=2, missing="uniform",
                                            missing_fraction=0.0)
    serve = tf.saved_model.load(str(demo_dir / "saved_model" / "1")).signatures["serving_default"]
    outputs = serve(image=tf.constant(images, tf.float32))
    for name in OBJECT_TASKS:
        scores = outputs[name].numpy()[:, 0]
        figures = metrics["tasks"][name]
        assert figures["labelled"] == len(images)
        # Keras's AUC uses 200 thresholds; the exact statistic differs by little.
        assert figures["auc"] == pytest.approx(rank_auc(labels[name], scores), abs=0.01)
        accuracy = np.mean((scores > 0.5) == (labels[name] == 1))
        assert figures["accuracy"] == pytest.approx(accuracy, abs=1e-6)
        # Seed 0 gave 0.58 (pedestrian) to 0.90 (car): every task well above chance.
        assert figures["auc"] > 0.55, f"{name}: the small demo learned nothing"
    assert np.mean([metrics["tasks"][n]["auc"] for n in OBJECT_TASKS]) > 0.7


@pytest.mark.parametrize("args, message", [
    (["--missing", "1.0"], "missing"),
    (["--epochs", "0"], "epochs"),
])
def test_demo_rejects_bad_options(tmp_path, args, message):
    with pytest.raises(ValueError, match=message):
        cli.main(["demo", "--size", "small", "--output", str(tmp_path), "--quiet", *args])
