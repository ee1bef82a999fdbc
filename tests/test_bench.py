"""The benchmarks of ``benchmarks/`` run end to end in their tiny --quick mode (behaviour only)."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import backends  # noqa: E402
import harness  # noqa: E402

from keras_mtl import cli  # noqa: E402

TRAINING_ROWS = ["a", "a0", "b", "b'", "c", "d", "d0", "d-heads", "d-dense", "d-dense'", "a-spe8"]


def _report(directory, name="bench.json"):
    with open(os.path.join(directory, name)) as f:
        return json.load(f)


def test_quick_run_writes_every_row(tmp_path, capsys):
    status = harness.main(["--quick", "--only", "a,b,c,d,f,g,h,p", "--output", str(tmp_path)])

    assert status == 0
    report = _report(tmp_path)
    rows = {row["id"]: row for row in report["rows"]}
    assert sorted(rows) == sorted(TRAINING_ROWS + ["f/few", "f/many", "g/matmul", "g/a", "g/a-spe8", "h", "torch"])
    assert list(rows).index("g/a") == list(rows).index("g/matmul") + 1
    for row in rows.values():
        assert row["value"] > 0 and math.isfinite(row["value"]), row["id"]
        assert row["matmul_gflops"] > 0, row["id"]
        if row["unit"] == "examples/s":
            assert row["epoch_value"] > 0, row["id"]
    for row_id in TRAINING_ROWS + ["h", "torch"]:
        row = rows[row_id]
        assert row["first_epoch_s"] > 0, row_id
        assert row["epoch_s"] and all(t > 0 for t in row["epoch_s"]), row_id
        assert row["jit_compile"] is False, row_id
        assert all(math.isfinite(v) for v in row["loss"]), row_id
        assert row["backend"] == ("torch" if row_id == "torch" else keras.backend.backend()), row_id
    assert rows["g/a"]["unit"] == "GFLOP/s"
    assert "finite" in rows["h"]["notes"]
    # The plain PyTorch loop ran in a process of its own: PyTorch 2.14.1's optimizer step
    # crashes in a process that has TensorFlow loaded (benchmarks/torch_loop.py).
    assert "own process" in rows["torch"]["notes"]
    if keras.backend.backend() != "torch":
        assert "torch" not in sys.modules
    assert keras.mixed_precision.global_policy().name == "float32"
    targets = {(t["row"], t["baseline"], t["quantity"]): t for t in report["targets"]}
    assert {("a", "b", "value"), ("a", "c", "value"), ("d", "d-dense", "first_epoch_s"),
            ("a", "torch", "value"), ("g/a", "g/matmul", "value")} <= set(targets)
    for (row, baseline, quantity), target in targets.items():  # each ratio and verdict by hand
        ratio = rows[row][quantity] / rows[baseline][quantity]
        assert target["ratio"] == pytest.approx(ratio, rel=1e-12), (row, baseline, quantity)
        if target["minimum"] is not None:
            assert target["met"] is (ratio >= target["minimum"])
        elif target["maximum"] is not None:
            assert target["met"] is (ratio <= target["maximum"])
        else:
            assert target["met"] is None
    # training GFLOP/s: examples/s × 3 × Σ 2·in·out over the Dense layers of the settings' network
    settings = report["settings"]
    sizes = [settings["input_dim"], *settings["hidden"], settings["few_tasks"]]
    flops = 3 * sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    assert rows["g/a"]["value"] == pytest.approx(rows["a"]["value"] * flops / 1e9, rel=1e-12)
    assert rows["g/matmul"]["matmul_gflops"] == rows["g/matmul"]["value"]
    assert report["machine"]["cpu_count"] >= 1
    assert report["machine"]["backend"] == keras.backend.backend()
    assert report["machine"]["tensorflow"] and report["machine"]["keras"]
    assert report["defaults"]["keras jit_compile"] == "auto"
    assert "keras jit_compile 'auto' resolves to (this machine)" in report["defaults"]
    assert os.path.getsize(tmp_path / "bench.png") > 0
    printed = capsys.readouterr().out
    assert "examples/s" in printed and "first epoch (s)" in printed and "matmul GFLOP/s" in printed
    table = {line.split()[0]: line for line in printed.split("\nrow ", 1)[1].splitlines()[2:]
             if line and not line[0].isspace()}  # a row's first line (further comparisons are indented)
    assert f"{rows['g/matmul']['value']:,.1f} GFLOP/s" in table["g/matmul"]  # the machine's rate, printed
    for row_id in TRAINING_ROWS:  # and beside every row, the rate measured just before it
        assert f"  {rows[row_id]['matmul_gflops']:,.0f}  " in table[row_id], row_id
        assert f"{rows[row_id]['value']:,.0f}" in table[row_id], row_id


def test_rows_and_jit_variants_are_selected(tmp_path):
    assert harness.main(["--quick", "--only", "a,e", "--rows", "a", "--output", str(tmp_path)]) == 0

    rows = {row["id"]: row for row in _report(tmp_path)["rows"]}
    assert sorted(rows) == ["a", "a/xla"]
    assert rows["a/xla"]["jit_compile"] is True
    assert rows["a/xla"]["value"] > 0 and rows["a/xla"]["first_epoch_s"] > 0


def test_backends_run_in_subprocesses_side_by_side(tmp_path):
    # one backend keeps the test short; each backend is the same subprocess command
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--backends", "tensorflow", "--quick", "--output",
         str(tmp_path)], capture_output=True, text=True, check=False, timeout=600)

    assert result.returncode == 0, result.stderr[-3000:]
    report = _report(tmp_path, "backends.json")
    rows = report["rows"]["tensorflow"]
    assert sorted(rows) == sorted([*backends.ROWS, "torch"])
    assert all(row["value"] > 0 and row["matmul_gflops"] > 0 for row in rows.values())
    assert report["machine"]["tensorflow"]["backend"] == "tensorflow"
    ratios = {t["what"]: t for t in report["targets"]}
    masking = ratios["tensorflow: keras_mtl 4 tasks / plain Keras 4 heads"]
    assert masking["ratio"] == pytest.approx(rows["a"]["value"] / rows["b"]["value"], rel=1e-12)
    loop = ratios["fastest backend (tensorflow): keras_mtl 4 tasks / plain PyTorch loop"]
    assert loop["ratio"] == pytest.approx(rows["a"]["value"] / rows["torch"]["value"], rel=1e-12)
    assert loop["met"] == ("yes" if loop["ratio"] >= loop["minimum"] else "NO")
    assert report["settings"]["tensorflow"]["steps"] == harness.QUICK.steps
    assert "tensorflow ex/s" in result.stdout and "matmul GFLOP/s" in result.stdout
    for row_id in ("a", "d"):  # each row's throughput and the matmul rate measured before it
        line = next(line for line in result.stdout.splitlines() if line.startswith(f"{row_id} "))
        assert f"{rows[row_id]['value']:,.0f}" in line and f"{rows[row_id]['matmul_gflops']:,.0f}" in line
    markdown = backends.side_by_side(report["rows"], ["tensorflow"], markdown=True) + "\n"
    assert (tmp_path / "backends.md").read_text() == markdown


def _row(row_id, value, label="a row"):
    return {"id": row_id, "label": label, "value": value, "first_epoch_s": 1.0, "matmul_gflops": 150.0,
            "other_cores": 0.0, "loadavg": "0.1 0.1 0.1"}


def test_side_by_side_picks_the_fastest_backend_and_checks_the_targets():
    rounds = {"tensorflow": [[_row("a", 100), _row("b", 110)], [_row("a", 120), _row("b", 100)]],
              "jax": [[_row("a", 200), _row("b", 190), _row("torch", 150)]]}
    rows = {b: backends.merge([{"rows": r} for r in found]) for b, found in rounds.items()}

    assert rows["tensorflow"]["a"]["value"] == 120 and len(rows["tensorflow"]["a"]["rounds"]) == 2
    found = {t.what: backends._ratio(t, rows) for t in backends.targets(rows, ["tensorflow", "jax", "torch"])}
    assert found == {"tensorflow: keras_mtl 4 tasks / plain Keras 4 heads": pytest.approx(120 / 110),
                     "jax: keras_mtl 4 tasks / plain Keras 4 heads": pytest.approx(200 / 190),
                     "fastest backend (jax): keras_mtl 4 tasks / plain PyTorch loop": pytest.approx(200 / 150)}
    table = backends.side_by_side(rows, ["tensorflow", "jax", "torch"], failed=["torch"])
    assert "failed" in table and "yes" in table and "NO" not in table


def test_options_are_checked():
    with pytest.raises(SystemExit):
        harness.main(["--only", "z"])
    with pytest.raises(SystemExit):
        harness.main(["--backends", "tensorflow,theano"])
    with pytest.raises(SystemExit):
        harness.main(["--backends", "tensorflow", "--only", "a"])


def test_the_installed_package_holds_no_benchmark():
    assert importlib.util.find_spec("keras_mtl.bench") is None
    with pytest.raises(SystemExit):
        cli.main(["bench", "--quick"])


def quick_tensorflow_run(script, tmp_path):
    """``benchmarks/<script>.py --quick --backends tensorflow --json``: the finished process and its report."""
    path = tmp_path / f"{script}.json"
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), "--quick", "--backends", "tensorflow", "--json",
         str(path)], capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, json.loads(path.read_text())


def test_fit_time_quick_run_times_every_pair_and_its_ratios(tmp_path):
    import fit_time

    result, report = quick_tensorflow_run("fit_time", tmp_path)
    quick = fit_time.QUICK
    assert [(r["trunk"], r["tasks"], r["metrics"]) for r in report["rows"]] == [
        (trunk, tasks, metrics) for trunk in quick.trunks for tasks in quick.tasks for metrics in (True, False)]
    for row in report["rows"]:
        for name in ("keras_mtl", "plain"):
            run = row[name]
            assert len(run["epoch_s"]) == quick.epochs and run["gflops"] > 0
            assert all(math.isfinite(v) for v in run["loss"])
        # One formula on both sides (Σ over labelled entries / batch): the first epochs' losses agree
        # up to the heads' initialisation.
        assert row["keras_mtl"]["loss"][0] == pytest.approx(row["plain"]["loss"][0], rel=0.1)
        ratios = fit_time.ratios(row)
        assert ratios["speed"] == pytest.approx(row["plain"]["fit_s"] / row["keras_mtl"]["fit_s"])
        assert ratios["met"] is (ratios["speed"] >= fit_time.speed_target(row["tasks"])
                                 and ratios["first_epoch"] <= fit_time.FIRST_EPOCH_TARGET)
    assert report["table_markdown"] == fit_time.table(report["rows"])
    assert result.stdout.count("GFLOP/s") >= len(report["rows"])  # every printed row shows the matmul rate
    assert f"of {len(report['rows'])} rows meet the targets" in result.stdout


def test_balancing_merges_runs_of_single_task_sets(tmp_path):
    import balancing

    def run(name, date, seconds, after):
        machine = {"cpus": 2, "matmul_gflops_2048_before": 80.0, "loadavg_before": [1.0, 1.0, 1.0],
                   "matmul_gflops_2048_after": after, "loadavg_after": [after / 100, 1.0, 1.0]}
        return {"date": date, "total_seconds": seconds, "machine": machine, "strategies": ["FixedWeights", "MGDA"],
                "learning_rate": 1e-3, "notes": [], "task_sets": {name: {"summary": {}, "runs": []}}}

    runs = [run("real_digits", "2026-12-07T04:27:51+00:00", 600.0, 70.0),
            run("multi_mnist", "2026-12-07T03:12:57+00:00", 3600.0, 60.0)]
    for folder, report in zip(("a", "b"), runs):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "balancing.json").write_text(json.dumps(report))
    assert balancing.main(["--merge", f"{tmp_path / 'a'},{tmp_path / 'b'}", "--output", str(tmp_path / "out")]) == 0
    merged = json.loads((tmp_path / "out" / "balancing.json").read_text())
    assert sorted(merged["task_sets"]) == ["multi_mnist", "real_digits"]
    assert (merged["date"], merged["total_seconds"], merged["processes"]) == ("2026-12-07T03:12:57+00:00", 4200.0, 2)
    # every run's machine with its task sets, earliest first
    assert [(m["task_sets"], m["matmul_gflops_2048_after"]) for m in merged["machines"]] == [
        (["multi_mnist"], 60.0), (["real_digits"], 70.0)]
    assert (tmp_path / "out" / "balancing.png").exists()
    # a merged file merges again: its processes count
    again = balancing.merge_reports([merged, run("many_tasks", "2026-12-07T06:31:41+00:00", 400.0, 50.0)])
    assert (again["total_seconds"], again["processes"], len(again["task_sets"])) == (4600.0, 3, 3)
    assert [m["task_sets"] for m in again["machines"]] == [["multi_mnist"], ["real_digits"], ["many_tasks"]]
    # runs of different strategies merge (each set keeps its own table); --sets picks the sets
    wider = {**run("scale_conflict", "2026-12-07T07:00:00+00:00", 100.0, 50.0), "strategies": ["FixedWeights", "Krum"]}
    picked = balancing.merge_reports([again, wider], sets=["multi_mnist", "scale_conflict"])
    assert sorted(picked["task_sets"]) == ["multi_mnist", "scale_conflict"]
    assert picked["strategies"] == ["FixedWeights", "MGDA", "Krum"]
    assert picked["task_sets"]["scale_conflict"] is wider["task_sets"]["scale_conflict"]
    # a set left out takes its share of the seconds (by training seconds) and its process with it
    for report, seconds in ((again, (100.0, 300.0, 100.0)),):
        for task_set, spent in zip(report["task_sets"].values(), seconds):
            task_set["runs"] = [{"train_seconds": spent}]
    two = balancing.merge_reports([again], sets=["multi_mnist", "real_digits"])
    assert (two["total_seconds"], two["processes"]) == (pytest.approx(4600.0 * 400 / 500), 2)
    assert [m["task_sets"] for m in two["machines"]] == [["multi_mnist"], ["real_digits"]]
    with pytest.raises(ValueError, match="learning rate"):
        balancing.merge_reports([runs[0], {**runs[1], "learning_rate": 3e-3}])
    with pytest.raises(ValueError, match="more than one run"):
        balancing.merge_reports([again, again])
    with pytest.raises(ValueError, match="no run holds"):
        balancing.merge_reports([runs[0]], sets=["scale_conflict"])


def test_the_plain_pytorch_loop_scores_labelled_entries_only():
    # torch_loop's torchmetrics AUC and accuracy skip missing labels: whatever sits under a
    # missing mark changes nothing, while the same values counted as labels change the scores.
    import torch_loop

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, :3] > 0).astype("float32")
    missing = rng.random(y.shape) < 0.4
    garbage = np.where(missing, 1.0 - y, y)

    def run(labels, marks):
        return torch_loop.train_in_own_process(x, labels, marks, (16,), 32, epochs=10, seed=0)

    clean, masked, counted = run(y, missing), run(garbage, missing), run(garbage, np.zeros_like(missing))
    assert len(clean.auc) == len(clean.accuracy) == 10
    assert (masked.auc, masked.accuracy, masked.loss) == (clean.auc, clean.accuracy, clean.loss)
    assert clean.auc[-1] > clean.auc[0] + 0.1 and clean.accuracy[-1] > clean.accuracy[0] + 0.1  # read each epoch
    assert counted.auc[-1] < clean.auc[-1] - 0.05
    assert counted.accuracy[-1] < clean.accuracy[-1] - 0.05


def test_tfdata_tail_quick_run_times_both_settings():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "tfdata_tail.py"), "--quick", "--backends", "tensorflow"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "epoch tails" in line]
    assert [line.split()[2].rstrip(":") for line in lines] == ["on", "off"]
    assert all("tensorflow" in line and "GFLOP/s" in line for line in lines)
