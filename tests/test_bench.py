"""The benchmark runs end to end in its tiny --quick mode (behaviour only)."""

import json
import math
import os

import keras
import pytest

from keras_mtl import bench, cli

TRAINING_ROWS = ["a", "a0", "b", "b'", "c", "d", "d0", "d-heads", "d-dense", "d-dense'", "a-spe8"]


def _report(directory):
    with open(os.path.join(directory, "bench.json")) as f:
        return json.load(f)


def test_quick_run_writes_every_row(tmp_path, capsys):
    status = bench.main(["--quick", "--only", "a,b,c,d,f,g,h", "--output", str(tmp_path)])

    assert status == 0
    report = _report(tmp_path)
    rows = {row["id"]: row for row in report["rows"]}
    assert sorted(rows) == sorted(TRAINING_ROWS + ["f/few", "f/many", "g/matmul", "g/a", "g/a-spe8", "h"])
    assert list(rows).index("g/a") == list(rows).index("g/matmul") + 1
    for row in rows.values():
        assert row["value"] > 0 and math.isfinite(row["value"]), row["id"]
        if row["unit"] == "examples/s":
            assert row["epoch_value"] > 0, row["id"]
    for row_id in TRAINING_ROWS + ["h"]:
        row = rows[row_id]
        assert row["first_epoch_s"] > 0, row_id
        assert row["epoch_s"] and all(t > 0 for t in row["epoch_s"]), row_id
        assert row["jit_compile"] is False, row_id
        assert all(math.isfinite(v) for v in row["loss"]), row_id
    assert rows["g/a"]["unit"] == "GFLOP/s"
    assert "finite" in rows["h"]["notes"]
    assert keras.mixed_precision.global_policy().name == "float32"
    targets = {(t["row"], t["baseline"], t["quantity"]): t for t in report["targets"]}
    assert targets[("a", "b", "value")]["minimum"] == 0.95
    assert targets[("a", "c", "value")]["minimum"] == 1.0
    assert targets[("d", "d-dense", "first_epoch_s")]["maximum"] == 3.0
    assert all(t["ratio"] > 0 for t in report["targets"])
    assert report["machine"]["cpu_count"] >= 1
    assert report["machine"]["tensorflow"] and report["machine"]["keras"]
    assert report["defaults"]["keras jit_compile"] == "auto"
    assert "keras jit_compile 'auto' resolves to (this machine)" in report["defaults"]
    assert os.path.getsize(tmp_path / "bench.png") > 0
    printed = capsys.readouterr().out
    assert "examples/s" in printed and "first epoch (s)" in printed


def test_cli_passes_options_through_to_the_benchmark(tmp_path):
    # keras-mtl bench --quick ... : options after "bench" reach the benchmark's parser
    assert cli.main(["bench", "--quick", "--only", "a,e", "--output", str(tmp_path)]) == 0

    rows = {row["id"]: row for row in _report(tmp_path)["rows"]}
    assert sorted(rows) == ["a", "a/xla", "a0", "a0/xla"]
    assert rows["a/xla"]["jit_compile"] is True
    assert rows["a/xla"]["value"] > 0 and rows["a/xla"]["first_epoch_s"] > 0


def test_only_rejects_unknown_groups():
    with pytest.raises(SystemExit):
        bench.main(["--only", "z"])
