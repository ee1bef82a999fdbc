"""The benchmark figures quoted in the READMEs are the committed result files' (benchmarks/prose.py)."""

import copy
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import prose  # noqa: E402

BLOCKS = {"README.md": ["demo", "many-tasks-summary", "backends-summary"], "benchmarks/README.md": ["backends"]}


@pytest.fixture(scope="module")
def report():
    return prose.load("backends")


@pytest.mark.parametrize("name", list(BLOCKS))
def test_every_figures_block_is_rendered_from_the_results(name, report):
    text = (ROOT / name).read_text()
    assert prose.blocks(text) == BLOCKS[name]
    assert prose.render(text, report) == text, f"{name} is stale: run python benchmarks/prose.py"


def _cells(text, label):
    """The cells after ``label`` in the Markdown table row that starts with it."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")[1:]]


def test_the_quoted_ratios_are_the_ones_the_benchmark_computed(report):
    """The ratios the benchmark stored when it ran, not a recomputation, against both READMEs."""
    stored = {t["what"]: t["ratio"] for t in report["targets"]}
    readme = (ROOT / "README.md").read_text()
    masking = [f"{stored[f'{b}: keras_mtl 4 tasks / plain Keras 4 heads']:.2f}" for b in report["backends"]]
    many = [f"{stored[f'{b}: keras_mtl 100 tasks / plain Keras Dense(100)']:.2f}" for b in report["backends"]]
    assert _cells(readme, "ratio (target ≥ 0.95)") == masking == ["1.07", "1.10", "1.23"]
    assert _cells(readme, "ratio") == many
    # One source for the PyTorch backend's 100-task figure: 0.32 (row d against d-dense); the 0.23 of
    # the TensorFlow-only table is another comparison (100 plain Keras heads against one head).
    assert f"({many[2]}× of one `Dense(100)` head there)" in readme.replace("\n", " ")
    section = (ROOT / "benchmarks/README.md").read_text()
    for what, ratio in stored.items():
        assert _cells(section, what)[0] == f"{ratio:.2f}", what


def test_the_table_values_are_the_rows_best_rounds(report):
    readme = (ROOT / "README.md").read_text()
    best = [f"{report['rows'][b]['a']['value']:,.0f}" for b in report["backends"]]
    assert _cells(readme, "keras_mtl, 4 tasks, 30 % missing") == best
    for b in report["backends"]:  # the best round is the fastest of the rounds
        row = report["rows"][b]["a"]
        assert row["value"] == max(r["value"] for r in row["rounds"])


def _changed(report, **values):
    """A copy of ``report`` with some rows' best values replaced: ``{"jax_a": 1.0}``."""
    changed = copy.deepcopy(report)
    for key, value in values.items():
        backend, row_id = key.split("_", 1)
        row = changed["rows"][backend][row_id.replace("_", "-")]
        row["value"] = value
        row["rounds"][0]["value"] = value
    return changed


def test_the_conclusions_follow_the_numbers(report):
    summary = prose.backends_summary(report).replace("\n", " ")
    assert "**For speed, pick JAX**" in summary and "(target 1.2: not met)" in summary
    assert "On every backend masking the missing labels costs nothing" in summary

    # TensorFlow fastest, the PyTorch loop beaten, masking too slow on JAX
    faster = _changed(report, tensorflow_a=60_000.0, jax_a=30_000.0)
    summary = prose.backends_summary(faster).replace("\n", " ")
    assert "**For speed, pick TensorFlow**: keras_mtl trains 2.00× faster there than on JAX" in summary
    assert "(target 1.2: met)" in summary
    assert "costs more than the target allows on JAX" in summary
    reading = prose.backends_section(faster).replace("\n  ", " ")
    assert "**TensorFlow is the fastest backend**" in reading and "target is missed on JAX" in reading
    assert "the 1.2 target is met" in reading

    # 100 tasks as fast as one head everywhere: no backend to avoid for many tasks
    even = _changed(report, torch_d=15_859.0)
    summary = prose.backends_summary(even).replace("\n", " ")
    assert "Avoid" not in summary and "| ratio | 0.91 | 0.88 | 1.00 |" in summary
    assert "On a busy machine the PyTorch backend slows down most." in summary


def test_a_changed_figure_is_put_back(report):
    text = (ROOT / "README.md").read_text()
    stale = re.sub(r"\| ratio \| 0\.91 \|", "| ratio | 0.97 |", text, count=1)
    assert stale != text
    assert prose.render(stale, report) == text
    with pytest.raises(KeyError, match="unknown figures block"):
        prose.render("<!-- figures:nothing -->\nx\n<!-- /figures -->", report)


def test_the_demo_paragraph_quotes_the_demo_run():
    report = prose.load("demo")
    text = prose.demo_summary(report).replace("\n", " ")
    auc = " / ".join(f"{v:.3f}" for v in report["test_auc"].values())
    assert f"{report['demo_seconds']:.0f} s wall clock" in text and auc in text
    scaled = report["demo_seconds_at_reference"]   # time × the faster matmul rate / 156
    rate = max(report["matmul_gflops_before"], report["matmul_gflops_after"])
    assert scaled == pytest.approx(report["demo_seconds"] * rate / 156, abs=0.1)
    verdict = "within" if scaled <= 180 else "over"
    assert f"that is {scaled:.0f} s: {verdict} the 180 s budget" in text
    slow = {**report, "demo_seconds_at_reference": 181.0, "test_auc": {**report["test_auc"], "pedestrian": 0.94}}
    text = prose.demo_summary(slow).replace("\n", " ")
    assert "over the 180 s budget" in text and "pedestrian below AUC 0.95" in text
