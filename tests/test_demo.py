"""keras-mtl demo: its artefacts, and test figures that match an independent computation."""

import contextlib
import io
import json

import numpy as np
import pytest
import tensorflow as tf

from keras_mtl import cli, demo
from keras_mtl.datasets.street_scenes import OBJECT_TASKS, generate_street_scenes
from keras_mtl.demo import MEASURED_SECONDS, SIZES


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
    # Standard output is not a terminal here, as when it goes to a log file: the demo's own default.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["demo", "--size", "small", "--output", str(out), "--seed", "0"]) == 0
    (out / "stdout.txt").write_text(printed.getvalue())
    return out


def test_demo_output_to_a_file_has_one_line_per_epoch_and_no_progress_bar(demo_dir):
    printed = (demo_dir / "stdout.txt").read_text()
    for code in ("\r", "\x1b", "\b"):
        assert code not in printed, f"{code!r} in the demo's output"
    steps = -(-SIZES["small"]["train"] // 64)
    epoch_lines = [line for line in printed.splitlines() if line.startswith(f"{steps}/{steps} - ")]
    assert len(epoch_lines) == SIZES["small"]["epochs"]
    assert all("val_car_auc" in line for line in epoch_lines)
    # Before any work, how long a run takes, with the machine's matmul rate beside it.
    assert printed.splitlines()[0] == demo.expected_duration("small")
    assert len(printed) < 20_000


def test_progress_bars_only_on_a_terminal():
    class Stream(io.StringIO):
        def __init__(self, terminal):
            super().__init__()
            self.terminal = terminal

        def isatty(self):
            return self.terminal

    assert demo._fit_verbosity("auto", Stream(True)) == 1
    assert demo._fit_verbosity("auto", Stream(False)) == 2
    assert demo._fit_verbosity(0, Stream(True)) == 0 and demo._fit_verbosity(1, Stream(False)) == 1


def test_the_full_demo_says_how_long_it_takes_and_suggests_the_small_one():
    (full, rate), (small, small_rate) = MEASURED_SECONDS["full"], MEASURED_SECONDS["small"]
    small_there = small * small_rate / rate     # the small run at the full run's matmul rate
    assert small_there < full / 4
    text = demo.expected_duration("full").splitlines()
    assert text[0].startswith(f"A full run took {full:.0f} s on a 2-core machine whose TensorFlow "
                              f"matmul runs at {rate:.0f} GFLOP/s")
    assert "--size small" in text[1] and f"takes about {round(small_there, -1):.0f} s there" in text[1]
    small_text = demo.expected_duration("small")
    assert small_text.startswith(f"A small run takes about {round(small_there, -1):.0f} s")
    assert f"(measured: {small:.0f} s at {small_rate:.0f} GFLOP/s)" in small_text
    assert "--size small" not in small_text
    with pytest.raises(ValueError, match="small"):
        demo.expected_duration("tiny")


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


def _benchmark_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "demo.py"
    spec = importlib.util.spec_from_file_location("demo_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_matmul_rate_is_flops_over_time(monkeypatch):
    bench = _benchmark_module()
    # 2·n³ operations per matmul, ten per timing; a fixed clock of 0.5 s per timing gives an exact rate.
    ticks = iter([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks))
    assert bench.matmul_gflops(n=64, repeats=10, rounds=3) == pytest.approx(2 * 64**3 * 10 / 0.5 / 1e9)


def test_demo_benchmark_scales_the_time_to_the_reference_machine(monkeypatch, tmp_path):
    bench = _benchmark_module()
    import keras_mtl.demo

    rates = iter([300.0, 312.0])   # before and after the demo; the faster counts
    monkeypatch.setattr(bench, "matmul_gflops", lambda: next(rates))
    clock = iter([10.0, 130.0, 200.0, 300.0])    # two demo runs, 120 s and 100 s; the faster counts
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    seen = []
    monkeypatch.setattr(bench, "train_step_ratio", lambda old, new: seen.append((old, new)) or 2.5)

    def demo(output, size, verbose):
        (tmp_path / "metrics.json").write_text(json.dumps({"phase_seconds": {"draw": 10.0, "train": 80.0}}))
        return {n: {"auc": 0.96} for n in OBJECT_TASKS}

    monkeypatch.setattr(keras_mtl.demo, "run_demo", demo)
    result = bench.main(["--size", "full", "--output", str(tmp_path), "--results", str(tmp_path / "demo.json")])
    assert result["demo_seconds"] == 100.0 and result["demo_seconds_runs"] == [120.0, 100.0]
    assert result["demo_seconds_at_reference"] == pytest.approx(100.0 * 312.0 / 156.0, abs=0.05)
    assert result["within_budget"] is False   # 200 s at the reference, over its 180 s
    # The old demo here: 100 s with its 80 s of training 2.5x longer, 220 s; it took 357 s there.
    assert seen == [(bench.OLD_MODEL, {"width": 16, "pool_first": True, "multipliers": (1, 3, 3)})]
    assert result["demo_seconds_at_reference_by_old_demo"] == pytest.approx(357.0 * 100.0 / 220.0, abs=0.05)
    assert result["within_budget_by_old_demo"] is True
    assert json.loads((tmp_path / "demo_benchmark.json").read_text()) == result
    assert json.loads((tmp_path / "demo.json").read_text()) == result


def test_demo_benchmark_refuses_runs_that_differ(monkeypatch, tmp_path):
    bench = _benchmark_module()
    import keras_mtl.demo

    monkeypatch.setattr(bench, "matmul_gflops", lambda: 300.0)
    aucs = iter([0.96, 0.95])
    monkeypatch.setattr(keras_mtl.demo, "run_demo",
                        lambda output, size, verbose: {"car": {"auc": next(aucs)}})
    with pytest.raises(RuntimeError, match="not reproducible"):
        bench.main(["--size", "small", "--repeats", "2", "--output", str(tmp_path)])


def test_step_ratio_compares_each_models_fastest_round():
    """Real models train in turn; a scripted clock gives the old one 3 s then 2 s, the new one 1 s then 1.5 s."""
    bench = _benchmark_module()
    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0, 30.0, 31.5])
    small = {"image_size": 32, "width": 2}
    ratio = bench.train_step_ratio(small, {**small, "pool_first": True}, steps=1, rounds=2,
                                   clock=lambda: next(ticks))
    assert ratio == pytest.approx(2.0 / 1.0)


def test_the_full_demo_weights_the_pedestrian_twice_and_the_small_one_not():
    from keras_mtl import demo

    full, small = demo._tasks("full"), demo._tasks("small")
    assert [t.name for t in full] == [t.name for t in small] == list(OBJECT_TASKS)
    assert {t.name: t.loss_weight for t in full} == {"pedestrian": 2.0, "car": 1.0, "stop_sign": 1.0,
                                                     "traffic_light": 1.0}
    assert {t.loss_weight for t in small} == {1.0}
    # The weight reaches the training loss: total = 2·L_pedestrian + the other three.
    model = demo.build_street_model(image_size=32, width=2, tasks=full)
    model.compile(optimizer="adam")
    images, labels = generate_street_scenes(8, image_size=32, seed=0)
    y = {n: labels[n] for n in OBJECT_TASKS}
    terms = model.loss_terms(y, model(images))
    losses = np.asarray(terms.task_losses)
    assert np.asarray(terms.weights).tolist() == [2.0, 1.0, 1.0, 1.0]
    assert float(terms.total) == pytest.approx(2 * losses[0] + losses[1:].sum(), rel=1e-6)


def test_pooling_first_computes_the_same_function_at_inference():
    """Max pooling commutes with ReLU and with an increasing affine map (BN at inference, gamma > 0)."""
    from keras_mtl.demo import build_street_model

    classic = build_street_model(image_size=32, width=4)
    pooled = build_street_model(image_size=32, width=4, pool_first=True)
    rng = np.random.default_rng(0)
    for layer in classic.layers:
        if layer.name.startswith("norm"):   # positive scales, any shifts and moving statistics
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2, gamma.shape), rng.normal(size=beta.shape),
                               rng.normal(size=mean.shape), rng.uniform(0.5, 2, variance.shape)])
    pooled.set_weights(classic.get_weights())
    images = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    expected, got = classic.predict(images, verbose=0), pooled.predict(images, verbose=0)
    for name in OBJECT_TASKS:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)
    # A negative scale breaks the commutation: the two orders then differ.
    norm = classic.get_layer("norm1")
    gamma, *rest = norm.get_weights()
    norm.set_weights([-gamma, *rest])
    pooled.set_weights(classic.get_weights())
    differ = [np.abs(pooled.predict(images, verbose=0)[n] - classic.predict(images, verbose=0)[n]).max()
              for n in OBJECT_TASKS]
    assert max(differ) > 1e-3


def test_multipliers_set_each_blocks_channels_and_bad_ones_are_refused():
    from keras_mtl.demo import build_street_model

    model = build_street_model(image_size=32, width=4, multipliers=(1, 2, 2))
    assert [model.get_layer(f"conv{i}").filters for i in (1, 2, 3)] == [4, 8, 8]
    assert [build_street_model(image_size=32, width=3).get_layer(f"conv{i}").filters for i in (1, 2, 3)] == [3, 6, 12]
    for bad in [(1, 2), (1, 0, 2), (1, 1.5, 2)]:
        with pytest.raises(ValueError, match="multipliers"):
            build_street_model(image_size=32, width=4, multipliers=bad)
