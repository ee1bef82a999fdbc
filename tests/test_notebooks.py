"""Every notebook runs top to bottom at the small size, and its headline numbers hold.

The notebooks are executed from their sources (``notebooks/src/NN_name.py``, jupytext
percent format), once per test session each (the module-scoped ``executed`` fixture), in a
temporary directory that is also their results directory (``KERAS_MTL_NOTEBOOK_RESULTS``):
each writes ``NN_name.json`` there and nothing else, and the headline tests read it.

The thresholds were chosen from three small-size runs per notebook
(``KERAS_MTL_NOTEBOOK_SEED`` = 0, 1, 2; the test itself runs the default
seed 0); the measured values are in the comment next to each threshold.
Where a notebook's claim does not hold at the small size for every seed,
the test checks what does hold and says so.
"""

import importlib.util
import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
_spec = importlib.util.spec_from_file_location("notebook_build", NOTEBOOK_DIR / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

SOURCES = build.sources()
ENVIRONMENT = {"KERAS_MTL_NOTEBOOK_SIZE": "small", "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}


class Run:
    """One small-size execution of a notebook: the executed cells, the headline, the error, the files."""

    def __init__(self, notebook, headline, error, files):
        self.notebook, self.headline, self.error, self.files = notebook, headline, error, files


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Returns ``run(prefix)``: the notebook's small-size execution, run at most once."""
    runs = {}

    def run(prefix):
        if prefix not in runs:
            source = next(p for p in SOURCES if p.name.startswith(prefix))
            workdir = tmp_path_factory.mktemp(source.stem)
            notebook = build.read_notebook(source)
            client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                                    resources={"metadata": {"path": str(workdir)}})
            error = None
            with pytest.MonkeyPatch.context() as env:
                # The kernel imports the keras_mtl this process does (tests/conftest.py).
                for key, value in {**ENVIRONMENT, "KERAS_MTL_NOTEBOOK_RESULTS": str(workdir)}.items():
                    env.setenv(key, value)
                env.delenv("KERAS_MTL_NOTEBOOK_SEED", raising=False)
                try:
                    client.execute()
                except Exception as exc:  # reported by every test that uses this run
                    error = exc
            results_file = workdir / f"{source.stem}.json"
            headline = json.loads(results_file.read_text()) if results_file.exists() else None
            files = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
            runs[prefix] = Run(notebook, headline, error, files)
        return runs[prefix]

    return run


def headline_of(executed, name):
    run = executed(name)
    if run.error is not None:
        pytest.fail(f"notebook {name} failed at the small size: {run.error}")
    assert run.headline is not None, f"notebook {name} wrote no results file"
    assert run.headline["size"] == "small"
    return run.headline


def printed(executed, name):
    """Everything the notebook printed, in order (its readings are built from its numbers)."""
    return "".join(out.get("text", "") for cell in executed(name).notebook.cells if cell.cell_type == "code"
                   for out in cell.get("outputs", []) if out.get("output_type") == "stream")


def test_there_are_notebooks():
    assert SOURCES, "notebooks/src holds no notebook source"


def test_build_embeds_figures_whatever_the_backend(tmp_path, monkeypatch):
    """`build.py --execute` saves each figure in the notebook, even where MPLBACKEND says Agg."""
    for key in ("MPLBACKEND", "KERAS_MTL_NOTEBOOK_SIZE", "PYTHONPATH"):  # restored after the test
        monkeypatch.setenv(key, "Agg" if key == "MPLBACKEND" else os.environ.get(key, ""))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.show()")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    build.execute(notebook, tmp_path, "small", timeout=120)
    outputs = notebook.cells[0].outputs
    assert [o.output_type for o in outputs] == ["display_data"], outputs
    assert outputs[0].data["image/png"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_committed_notebook_matches_its_source(source):
    """The .ipynb next to the sources was generated from the current source (python notebooks/build.py)."""
    committed = nbformat.read(NOTEBOOK_DIR / f"{source.stem}.ipynb", as_version=4)
    generated = build.read_notebook(source)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in generated.cells], (
        f"{source.stem}.ipynb is out of date: run `python notebooks/build.py {source.name[:2]}`")


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_notebook_runs_at_small_size(source, executed):
    run = executed(source.name[:2])
    assert run.error is None, str(run.error)
    errors = [out for cell in run.notebook.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    assert run.headline is not None, f"the notebook must write {source.stem}.json into its results directory"
    # The working directory is the results directory: the notebook wrote nothing else.
    assert run.files == [f"{source.stem}.json"]


def test_01_street_scenes_headline(executed):
    head = headline_of(executed, "01")
    # The loss computed by hand with NumPy equals the loss keras_mtl reports (|difference| measured
    # 2.2e-7, 1.9e-7, 6.0e-8 for seeds 0, 1, 2).
    assert abs(head["loss_by_hand"] - head["loss_reported"]) <= 1e-5 * max(1.0, abs(head["loss_by_hand"]))
    auc = head["test_auc"]
    # With half the labels missing the network still learns every object. Seeds 0/1/2 at the small
    # size: car 0.953/0.953/0.939, stop sign 0.917/0.899/0.893, traffic light 0.917/0.884/0.922,
    # pedestrian (the hardest object) 0.648/0.591/0.651; mean of the four 0.859/0.832/0.851.
    assert auc["car"] >= 0.88
    assert auc["stop_sign"] >= 0.82
    assert auc["traffic_light"] >= 0.82
    assert auc["pedestrian"] >= 0.55
    assert sum(auc.values()) / len(auc) >= 0.78


def test_02_mtl_vs_separate_headline(executed):
    head = headline_of(executed, "02")
    auc = head["mean_auc"]
    # The small grid: 100 and 800 labels per task, width 8, relatedness 0 and 1, 100 steps per separate
    # network (400 for the multi-task one). Seeds 0/1/2 (mean test AUC over the four tasks):
    #   separate, relatedness 1, 800 labels: 0.954/0.945/0.932 — the shared border makes every object
    #   easier to find, even alone (relatedness 0: 0.762/0.787/0.803);
    #   multi, relatedness 1, 800 labels: 0.928/0.935/0.897.
    assert auc["r1/n800/w8"]["separate"] >= 0.88
    assert auc["r1/n800/w8"]["separate"] >= auc["r0/n800/w8"]["separate"] + 0.08   # +0.192/+0.158/+0.129
    assert auc["r1/n800/w8"]["multi"] >= 0.85
    # With 100 labels per task the multi-task network lost to the separate networks in every seed at both
    # settings: multi − separate −0.046/−0.074/−0.063 (relatedness 0) and −0.064/−0.102/−0.042
    # (relatedness 1). The claim's favourable case (scarce labels, shared features) does not hold here.
    diff = head["multi_minus_separate"]
    assert diff["multi/r0/n100/w8"] < 0
    assert diff["multi/r1/n100/w8"] < 0
    # A starved task: at relatedness 0 with 800 labels, one task fell behind its separate network by
    # 0.222 (traffic light) / 0.103 (car) / 0.114 (pedestrian) in seeds 0/1/2 — which task varies by seed.
    gaps = [v for k, v in head["task_gap_widest"].items() if k.startswith("r0/n800/")]
    assert min(gaps) <= -0.06
    # The reading states these numbers, and its words follow their signs.
    text = printed(executed, "02")
    scarce, plentiful, width = head["labelled"][0], head["labelled"][-1], head["widths"][-1]
    for r in head["relatedness"]:
        d_scarce, d_plenty = diff[f"multi/r{r:.0f}/n{scarce}/w{width}"], diff[f"multi/r{r:.0f}/n{plentiful}/w{width}"]
        toward = "the multi-task network" if d_plenty > d_scarce else "the separate networks"
        assert (f"Relatedness {r:.0f}, width {width}: multi − separate is {d_scarce:+.3f} with {scarce} labels per "
                f"task and {d_plenty:+.3f} with {plentiful}: more labels per task moved the difference by "
                f"{abs(d_plenty - d_scarce):.3f} toward {toward}.") in text
        if len(head["seeds"]) == 1:  # no spread: every cell counts by its sign
            cells = [v for k, v in diff.items() if k.startswith(f"multi/r{r:.0f}/")]
            better, worse = sum(v > 0 for v in cells), sum(v < 0 for v in cells)
            line = next(line for line in text.splitlines()
                        if line.startswith(f"Relatedness {r:.0f}, same architecture: "))
            assert f"one network better in {better} cell(s)" in line and f", worse in {worse}" in line, line


def test_03_sharing_headline(executed):
    head = headline_of(executed, "03")
    # Too little training to rank the architectures (their street-scene means overlap across seeds),
    # so the ranking is not asserted, only that the reading states the run's own ranking;
    # what holds: the unrelated parity task is learnable alone (single-task AUC 1.000 for seeds
    # 0/1/2), hard sharing learns the street tasks above chance (mean AUC 0.663/0.628/0.676), and
    # pairing the stop sign with parity costs the stop sign (negative transfer): the stop-sign
    # transfer averaged over the five architectures was −0.158/−0.091/−0.251.
    assert head["single_auc"]["parity"] >= 0.95
    assert head["street_mean_auc"]["hard"] >= 0.58
    transfer = head["stop_sign_transfer"]
    assert sum(transfer.values()) / len(transfer) <= -0.04
    for arch, aucs in head["street_auc"].items():  # the mean is the mean of the four tasks
        assert head["street_mean_auc"][arch] == pytest.approx(sum(aucs.values()) / len(aucs), abs=1e-6)
    text = printed(executed, "03")
    means = head["street_mean_auc"]
    ranking = sorted(means, key=means.get, reverse=True)
    assert (f"mean test AUC over the four tasks ranges from {means[ranking[-1]]:.3f} ({ranking[-1]}) "
            f"to {means[ranking[0]]:.3f} ({ranking[0]}).") in text
    assert f"{ranking[0]} was ahead of {ranking[1]} by {means[ranking[0]] - means[ranking[1]]:.3f}" in text
    negative = [arch for arch, value in transfer.items() if value < 0]
    assert (f"Mean stop-sign transfer was negative for {len(negative)} of {len(transfer)} architectures"
            + (f" ({', '.join(negative)})." if negative else ".")) in text


def test_04_many_tasks_headline(executed):
    head = headline_of(executed, "04")
    together = head["together_auc"][str(head["most_others"])]
    # The 5 target tasks gain from 95 other related tasks in the same network. Seeds 0/1/2: alone
    # 0.902/0.901/0.900, with 95 others 0.925/0.927/0.925, gain +0.023/+0.026/+0.025.
    assert head["alone_auc"] >= 0.88
    assert together >= 0.91
    assert head["gain_with_most_others"] >= 0.01


def test_05_transfer_learning_headline(executed):
    head = headline_of(executed, "05")
    probe = head["probe_auc"]
    # The linear probe (fitted on 800 labelled images, the global_pool features) finds B's information in
    # the trunk pretrained on objects with the shared border: 0.837/0.742/0.730 for seeds 0/1/2,
    # against 0.723/0.629/0.672 for an untrained trunk on the same images.
    assert probe["objects, shared border"] >= probe["untrained trunk, relatedness 1"] + 0.03   # +0.114/+0.113/+0.058
    # Without the border the pretrained features hold no more than random ones: 0.583/0.548/0.533
    # against 0.625/0.584/0.638; the unrelated brightness source 0.570/0.601/0.599 against
    # 0.723/0.629/0.672.
    assert probe["objects, no border"] <= probe["untrained trunk, relatedness 0"] + 0.03
    assert probe["unrelated (brightness)"] <= probe["untrained trunk, relatedness 1"] + 0.03
    # Traffic lights drawn without the border carry B best: 0.899/0.906/0.926 against 0.723/0.629/0.672.
    assert probe["traffic lights, no border"] >= probe["untrained trunk, relatedness 1"] + 0.1
    # B is learnable from its 60 images (scratch at relatedness 1: 0.838/0.705/0.721). Transfer from that
    # source beat it (best minus scratch +0.023/+0.157/+0.192); from the bordered objects, whose trunks
    # learn a traffic light as a negative, it lost (−0.207/−0.122/−0.139; no border −0.167/−0.147/−0.137).
    assert head["auc"]["scratch, relatedness 1"] >= 0.62
    assert head["by_source"]["traffic lights, no border"]["best_minus_scratch"] > 0
    assert head["by_source"]["objects, shared border"]["best_minus_scratch"] < 0
    assert head["source_auc"]["objects, shared border"] >= 0.72   # 0.896/0.791/0.907
    # Each source's reading follows its own numbers: "carry" iff the probe gains more than 0.05 over
    # random features, "better" iff the best transfer beats scratch, by the difference of the two AUCs.
    text = printed(executed, "05")
    for source, found in head["by_source"].items():
        assert found["best_auc"] == pytest.approx(head["auc"][found["best_variant"]], abs=1e-9)
        assert found["best_minus_scratch"] == pytest.approx(found["best_auc"] - found["scratch_auc"], abs=1e-9)
        assert found["best_auc"] == max(v for k, v in head["auc"].items() if k.startswith(source + ","))
        carries = "carry" if found["probe_gain_over_random"] > 0.05 else "do not carry"
        better = "better" if found["best_minus_scratch"] > 0 else "worse"
        assert (f"({found['probe_gain_over_random']:+.3f}: the features {carries} B's information)") in text, source
        assert (f"{found['best_auc']:.3f} against {found['scratch_auc']:.3f} from scratch: {better} by "
                f"{abs(found['best_minus_scratch']):.3f} ({found['verdict']})") in text, source


def test_06_balancing_headline(executed):
    head = headline_of(executed, "06")
    mae, auc = head["price_mae"], head["defect_auc"]
    # Equal weights learn the large-scale price task (test MAE 31.2/31.0/30.2 for seeds 0/1/2; the
    # price's standard deviation is ≈ 98, so always predicting the mean would give MAE ≈ 78).
    assert mae["FixedWeights"] <= 40
    # GradNorm equalises gradient norms and so gives up price: MAE 75.5/75.9/75.7, 2.4–2.5× equal
    # weights (at full size 67.7 against 9.6).
    assert mae["GradNorm"] >= 2 * mae["FixedWeights"]
    # PCGrad only removes conflicting gradient components and leaves price as it was (31.246, 31.002,
    # 30.215 against 31.230, 31.006, 30.237 with equal weights: within 0.1 %).
    assert abs(mae["PCGrad"] - mae["FixedWeights"]) <= 0.05 * mae["FixedWeights"]
    # The defect gains measured at full size (GradNorm +0.06, PCGrad +0.02) do not hold across seeds
    # at the small size: defect AUC stays ≤ 0.56 under every strategy (equal weights 0.527/0.552/0.520,
    # GradNorm 0.546/0.548/0.551, PCGrad 0.548/0.556/0.528; lowest of all 0.516). What holds: some
    # strategy learns the defect above chance (best 0.548/0.556/0.551), and the reading states the
    # run's own differences, with "improved" for exactly the strategies whose AUC is higher.
    assert max(auc.values()) > 0.52
    text = printed(executed, "06")
    base_auc, base_mae = auc["FixedWeights"], mae["FixedWeights"]
    barely = " — the trunk barely learns the defect task under equal weights." if base_auc < 0.6 else "."
    assert f"Equal weights: defect AUC {base_auc:.3f}{barely} Price MAE {base_mae:.2f}." in text
    for name in auc:
        if name != "FixedWeights":
            assert (f"{name}: defect AUC {auc[name] - base_auc:+.3f}, price MAE {mae[name] - base_mae:+.2f} "
                    "vs equal weights.") in text
    if len(head["seeds"]) == 1:  # no spread: a higher AUC is an improvement
        improved = [name for name in auc if name != "FixedWeights" and auc[name] > base_auc]
        assert (("these strategies improved the drowned-out task: " + ", ".join(improved) + ".") if improved
                else "No strategy improved the drowned-out task") in text


def test_07_real_digits_headline(executed):
    head = headline_of(executed, "07")
    scarce, plentiful = head["by_fraction"]["0.05"], head["by_fraction"]["0.3"]
    # Real MNIST digits, four attribute tasks, each label given with probability p. Seeds 0/1/2, mean test
    # accuracy of the masked multi-task network: p = 0.05 (~200 labels per task) 0.903/0.920/0.923,
    # p = 0.3 (~1,170 per task) 0.962/0.963/0.947.
    assert scarce["multi"] >= 0.87
    assert plentiful["multi"] >= 0.94
    # Plain Keras can use only the fully labelled rows: none at p = 0.05 (0/0/0 rows), about 30 at
    # p = 0.3 (32/28/40), where it reached 0.704/0.708/0.793 — 0.258/0.255/0.154 below the masked network.
    assert scarce["plain"] is None and scarce["complete_rows"] == 0
    assert plentiful["plain"] <= plentiful["multi"] - 0.10
    # One masked network against four separate ones: with scarce labels (p = 0.05) it was ahead in every
    # seed, +0.008/+0.014/+0.009 — small; with more (p = 0.3) −0.001/+0.004/−0.015, not asserted.
    assert scarce["multi_minus_separate"] > 0
