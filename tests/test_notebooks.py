"""Every notebook runs top to bottom at the small size, and its headline numbers hold.

Each notebook is executed once per test session (the module-scoped ``executed``
fixture); its last code cell writes ``headline.json`` into the working
directory, and the headline tests below read it.

The thresholds were chosen from three small-size runs per notebook
(``KERAS_MTL_NOTEBOOK_SEED`` = 0, 1, 2; the test itself runs the default
seed 0); the measured values are in the comment next to each threshold.
Where a notebook's claim does not hold at the small size for every seed,
the test checks what does hold and says so.
"""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
ENVIRONMENT = {"KERAS_MTL_NOTEBOOK_SIZE": "small", "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}


class Run:
    """One small-size execution of a notebook: the executed cells, the headline, the error."""

    def __init__(self, notebook, headline, error):
        self.notebook, self.headline, self.error = notebook, headline, error


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Returns ``run(name)``: the notebook's small-size execution, run at most once."""
    runs = {}

    def run(name):
        if name not in runs:
            path = next(p for p in NOTEBOOKS if p.name.startswith(name))
            workdir = tmp_path_factory.mktemp(path.stem)
            notebook = nbformat.read(path, as_version=4)
            client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                                    resources={"metadata": {"path": str(workdir)}})
            error = None
            with pytest.MonkeyPatch.context() as env:
                for key, value in ENVIRONMENT.items():
                    env.setenv(key, value)
                env.delenv("KERAS_MTL_NOTEBOOK_SEED", raising=False)
                try:
                    client.execute()
                except Exception as exc:  # reported by every test that uses this run
                    error = exc
            headline_file = workdir / "headline.json"
            headline = json.loads(headline_file.read_text()) if headline_file.exists() else None
            runs[name] = Run(notebook, headline, error)
        return runs[name]

    return run


def headline_of(executed, name):
    run = executed(name)
    if run.error is not None:
        pytest.fail(f"notebook {name} failed at the small size: {run.error}")
    assert run.headline is not None, f"notebook {name} wrote no headline.json"
    assert run.headline["size"] == "small"
    return run.headline


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_at_small_size(path, executed):
    run = executed(path.name[:2])
    assert run.error is None, str(run.error)
    errors = [out for cell in run.notebook.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    assert run.headline is not None, "the last code cell must write headline.json"


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
    narrow, wide = (str(w) for w in head["widths"])
    single, multi = head["single"], head["multi"]
    # The claim "one network beats four" does not hold here: at the small size, as at the full size
    # (see the notebook's reading), the multi-task network was worse at both widths — multi − single
    # at widths 2/16: −0.015/−0.135, −0.095/−0.107, −0.084/−0.112 for seeds 0/1/2. Not asserted.
    # What holds is the capacity half of the sweep: both kinds of network learn, and gain from width.
    # Seeds 0/1/2: single-task mean AUC at width 2: 0.588/0.706/0.725, width 16: 0.830/0.792/0.817;
    # multi-task at width 2: 0.573/0.612/0.642, width 16: 0.694/0.684/0.704.
    assert single[wide] >= 0.75
    assert multi[wide] >= 0.62
    assert single[wide] >= single[narrow] + 0.04   # measured gains +0.242/+0.086/+0.092
    assert multi[wide] >= multi[narrow] + 0.03     # measured gains +0.121/+0.072/+0.062


def test_03_sharing_headline(executed):
    head = headline_of(executed, "03")
    # Too little training to rank the architectures (their street-scene means overlap across seeds);
    # what holds: the unrelated parity task is learnable alone (single-task AUC 1.000 for seeds
    # 0/1/2), hard sharing learns the street tasks above chance (mean AUC 0.663/0.628/0.676), and
    # pairing the stop sign with parity costs the stop sign (negative transfer): the stop-sign
    # transfer averaged over the five architectures was −0.158/−0.091/−0.251.
    assert head["single_auc"]["parity"] >= 0.95
    assert head["street_mean_auc"]["hard"] >= 0.58
    transfer = head["stop_sign_transfer"]
    assert sum(transfer.values()) / len(transfer) <= -0.04


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
    # The claim (pretraining on A helps B) does not hold, at the small size nor at the full size
    # (full: every transferred variant 0.48-0.51, scratch 0.665; see the notebook's reading): at the
    # small size the best related variant reached 0.506/0.485/0.503 and the best unrelated one
    # 0.488/0.512/0.534 for seeds 0/1/2, below B from scratch. Not asserted. What holds: B is
    # learnable from its 60 images (scratch 0.672/0.676/0.646) and the related source network
    # learned its own tasks A (mean test AUC 0.759/0.691/0.754).
    assert head["scratch_auc"] >= 0.60
    assert head["source_auc"]["related"] >= 0.63


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
    # GradNorm 0.546/0.548/0.551, PCGrad 0.548/0.556/0.528; lowest of all 0.516). Asserted is only
    # that no strategy breaks the task (a NaN or a collapsed head fails this).
    assert min(auc.values()) >= 0.45
