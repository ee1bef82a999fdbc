"""The benchmarks of ``benchmarks/`` run end to end in their tiny --quick mode (behaviour only)."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
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
    assert keras.mixed_precision.global_policy().name == "float32"
    targets = {(t["row"], t["baseline"], t["quantity"]): t for t in report["targets"]}
    assert targets[("a", "b", "value")]["minimum"] == 0.95
    assert targets[("a", "c", "value")]["minimum"] == 1.0
    assert targets[("d", "d-dense", "first_epoch_s")]["maximum"] == 3.0
    assert ("a", "torch", "value") in targets
    assert all(t["ratio"] > 0 for t in report["targets"])
    assert report["machine"]["cpu_count"] >= 1
    assert report["machine"]["backend"] == keras.backend.backend()
    assert report["machine"]["tensorflow"] and report["machine"]["keras"]
    assert report["defaults"]["keras jit_compile"] == "auto"
    assert "keras jit_compile 'auto' resolves to (this machine)" in report["defaults"]
    assert os.path.getsize(tmp_path / "bench.png") > 0
    printed = capsys.readouterr().out
    assert "examples/s" in printed and "first epoch (s)" in printed and "matmul GFLOP/s" in printed


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
    assert ratios["tensorflow: keras_mtl 4 tasks / plain Keras 4 heads"]["minimum"] == 0.95
    assert ratios["fastest backend (tensorflow): keras_mtl 4 tasks / plain PyTorch loop"]["minimum"] == 1.2
    assert "tensorflow ex/s" in result.stdout and "matmul GFLOP/s" in result.stdout
    assert (tmp_path / "backends.md").read_text().startswith("| row |")


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
