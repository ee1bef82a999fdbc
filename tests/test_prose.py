"""The benchmark figures quoted in the READMEs are the committed result files' (benchmarks/prose.py)."""

import copy
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from jinja2 import meta

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import fit_time  # noqa: E402
import prose  # noqa: E402
import prose_text  # noqa: E402

# Every page with figures blocks, and its blocks in order (README.md holds none).
BLOCKS = {"docs/topics/backends.md": ["backends-summary", "steps-per-execution"],
          "docs/topics/balancing.md": ["representation-summary", "balancing-choice", "balancing-summary"],
          "docs/topics/demo.md": ["demo"],
          "docs/topics/distributed.md": ["distribute-summary"],
          "docs/topics/many_tasks.md": ["fit-time-summary"],
          "docs/topics/serving.md": ["serving-summary"],
          "docs/benchmarks/backends.md": ["backends", "steps-per-execution"],
          "docs/benchmarks/fit_time.md": ["fit-time"],
          "docs/benchmarks/balancing.md": ["balancing-run", "balancing-tables", "balancing-reading"],
          "docs/benchmarks/representation.md": ["representation-summary"],
          "docs/benchmarks/serving.md": ["serving-summary"],
          "docs/benchmarks/distribute.md": ["distribute-summary"],
          "docs/benchmarks/demo.md": ["demo"],
          "benchmarks/README.md": ["backends", "fit-time", "fit-time-slow"],
          "data/README.md": ["balancing-run", "balancing-tables", "balancing-reading"],
          "notebooks/README.md": ["notebook-headlines"]}
# The page of the backends' headline table.
BACKENDS_PAGE = "docs/topics/backends.md"


@pytest.fixture(scope="module")
def report():
    return prose.load("backends")


def test_the_pages_with_blocks_are_the_ones_prose_renders():
    assert sorted(prose.FILES) == sorted(BLOCKS)
    assert prose.blocks((ROOT / "README.md").read_text()) == []
    # no other page of the repository or the docs holds a block that would never be rendered
    pages = {*ROOT.glob("*.md"), *ROOT.glob("*/*.md"), *(ROOT / "docs").rglob("*.md")}
    marked = {str(p.relative_to(ROOT)) for p in pages if prose.blocks(p.read_text())}
    assert marked == set(BLOCKS)


def _declared_options(script: Path) -> set[str]:
    """The options a benchmark's command line declares: its own and those of the benchmark modules it imports."""
    text = script.read_text()
    modules = [script.parent / f"{name}.py" for name in re.findall(r"^from (\w+) import", text, re.M)]
    sources = [text, *(m.read_text() for m in modules if m.is_file())]
    return {option for source in sources for call in re.findall(r"add_argument\(([^)]*)\)", source)
            for option in re.findall(r'"(--[\w-]+)"', call)}


@pytest.mark.parametrize("page", sorted(p for p in BLOCKS if p.startswith("docs/benchmarks/")))
def test_a_benchmark_page_runs_its_benchmark_with_options_the_script_declares(page):
    commands = re.findall(r"^python (benchmarks/\w+\.py)([^#\n]*)", (ROOT / page).read_text(), re.M)
    assert commands, f"{page} says how to run its benchmark"
    for script, arguments in commands:
        assert (ROOT / script).is_file(), script
        assert set(re.findall(r"--[\w-]+", arguments)) <= _declared_options(ROOT / script), (page, arguments)


def test_every_block_has_a_template_and_every_template_serves_a_block():
    """``templates/NAME.md.j2`` is the text of block NAME; the other templates hold what blocks import."""
    folder = prose_text.TEMPLATES
    assert {p.name.removesuffix(".md.j2") for p in folder.glob("*.md.j2")} == set(prose.BLOCKS)
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".j2")) == []
    environment = prose_text.ENVIRONMENT
    imported = set()
    for name in prose.BLOCKS:
        source = environment.loader.get_source(environment, f"{name}.md.j2")[0]
        imported |= set(meta.find_referenced_templates(environment.parse(source)))
    shared = {p.name for p in folder.glob("*.j2") if not p.name.endswith(".md.j2")}
    assert shared and shared <= imported


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
    readme = (ROOT / BACKENDS_PAGE).read_text()
    masking = [f"{stored[f'{b}: keras_mtl 4 tasks / plain Keras 4 heads']:.2f}" for b in report["backends"]]
    many = [f"{stored[f'{b}: keras_mtl 100 tasks / plain Keras Dense(100)']:.2f}" for b in report["backends"]]
    a_over_b = [report["rows"][b]["a"]["value"] / report["rows"][b]["b"]["value"] for b in report["backends"]]
    assert _cells(readme, "ratio (target ≥ 0.95)") == masking == [f"{r:.2f}" for r in a_over_b]
    assert _cells(readme, "ratio") == many
    section = (ROOT / "benchmarks/README.md").read_text()
    for what, ratio in stored.items():
        assert _cells(section, what)[0] == f"{ratio:.2f}", what


def test_the_table_values_are_the_rows_best_rounds(report):
    readme = (ROOT / BACKENDS_PAGE).read_text()
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
    names = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
    rate = {b: {r: report["rows"][b][r]["value"] for r in ("a", "b", "d", "d-dense")} for b in report["backends"]}
    loop = report["rows"]["torch"]["torch"]["value"]
    fastest = max(rate, key=lambda b: rate[b]["a"])
    summary = prose.render_block("backends-summary", report).replace("\n", " ")
    assert f"**For speed, pick {names[fastest]}**" in summary
    assert f"(target 1.2: {'met' if rate[fastest]['a'] / loop >= 1.2 else 'not met'})" in summary
    slow = [names[b] for b in rate if rate[b]["a"] / rate[b]["b"] < 0.95]
    within = "On every backend masking the missing labels keeps keras_mtl within the 0.95× target"
    assert (within in summary) == (not slow)

    # TensorFlow fastest at twice JAX, masking at par on TensorFlow and too slow on JAX
    tf_a = rate["tensorflow"]["b"]
    faster = _changed(report, tensorflow_a=tf_a, jax_a=tf_a / 2)
    summary = prose.render_block("backends-summary", faster).replace("\n", " ")
    assert "**For speed, pick TensorFlow**: keras_mtl trains 2.00× faster there than on JAX" in summary
    assert f"(target 1.2: {'met' if tf_a / loop >= 1.2 else 'not met'})" in summary
    assert "costs more than the target allows on JAX" in summary
    reading = prose.render_block("backends", faster).replace("\n  ", " ")
    assert "**TensorFlow is the fastest backend**" in reading and "target is missed on JAX" in reading

    # 100 tasks as fast as one head on PyTorch: its ratio reads 1.00
    even = _changed(report, torch_d=rate["torch"]["d-dense"])
    summary = prose.render_block("backends-summary", even).replace("\n", " ")
    many = [f"{rate[b]['d'] / rate[b]['d-dense']:.2f}" for b in ("tensorflow", "jax")]
    assert f"| ratio | {many[0]} | {many[1]} | 1.00 |" in summary
    # the backend whose rounds spread most is the one a busy machine slows most
    spread = {b: max(max(r["value"] for r in report["rows"][b][row]["rounds"])
                     / min(r["value"] for r in report["rows"][b][row]["rounds"]) for row in ("a", "b", "d", "d-dense"))
              for b in report["backends"]}
    assert f"On a busy machine the {names[max(spread, key=spread.get)]} backend slows down most." in summary


def test_a_changed_figure_is_put_back(report):
    text = (ROOT / BACKENDS_PAGE).read_text()
    stale = re.sub(r"\| ratio \| \d\.\d\d \|", "| ratio | 9.99 |", text, count=1)
    assert stale != text
    assert prose.render(stale, report) == text
    with pytest.raises(KeyError, match="unknown figures block"):
        prose.render("<!-- figures:nothing -->\nx\n<!-- /figures -->", report)


def test_check_reports_a_changed_figure_and_a_run_puts_it_back(tmp_path, monkeypatch, capsys):
    """``python benchmarks/prose.py --check`` fails on a stale page and leaves it; without ``--check`` it
    rewrites the page from the result files."""
    page = tmp_path / BACKENDS_PAGE
    page.parent.mkdir(parents=True)
    text = (ROOT / BACKENDS_PAGE).read_text()
    page.write_text(re.sub(r"\| ratio \| \d\.\d\d \|", "| ratio | 9.99 |", text, count=1))
    monkeypatch.setattr(prose, "ROOT", tmp_path)
    monkeypatch.setattr(prose, "FILES", (BACKENDS_PAGE,))
    assert prose.main(["--check"]) == 1 and page.read_text() != text
    assert f"stale: {BACKENDS_PAGE}" in capsys.readouterr().out
    assert prose.main([]) == 0 and page.read_text() == text
    assert prose.main(["--check"]) == 0


def _flat(text):
    return " ".join(text.split())


# -- benchmarks/results/tensorflow.json (README's steps_per_execution sentence) -------------

def test_steps_per_execution_is_the_ratio_the_harness_stored():
    report = prose.load("tensorflow")
    stored = {(t["row"], t["baseline"]): t["ratio"] for t in report["targets"]}
    # both together against the defaults: the product of the two ratios the harness computed
    factor = stored[("a-spe8/xla", "a/xla")] * stored[("a/xla", "a")]
    text = _flat(prose.render_block("steps-per-execution", report))
    if factor >= 1.05:
        assert f"made training {factor:.2f}× faster than Keras's defaults" in text
    elif factor <= 0.95:
        assert f"made training {1 / factor:.2f}× slower than Keras's defaults" in text
    assert f"`steps_per_execution=8` alone {stored[('a-spe8', 'a')]:.2f}×" in text

    changed = copy.deepcopy(report)
    rows = {row["id"]: row for row in changed["rows"]}
    rows["a-spe8/xla"]["value"] = rows["a"]["value"] / 2
    text = _flat(prose.render_block("steps-per-execution", changed))
    assert "made training 2.00× slower than Keras's defaults" in text


# -- benchmarks/results/balancing.json ------------------------------------------------------

@pytest.fixture(scope="module")
def balancing():
    return prose.load("balancing")


def test_balancing_tables_are_the_summaries_of_the_runs(balancing):
    tables = prose.render_block("balancing-tables", balancing)
    mnist = balancing["task_sets"]["multi_mnist"]
    # GradNorm's left accuracy and Δm, recomputed from its three runs (population std, as the benchmark)
    runs = [r for r in mnist["runs"] if r["config"] == "GradNorm"]
    left = np.array([r["metric"]["left"] for r in runs]) * 100
    cells = _cells(tables, str(mnist["summary"]["GradNorm"]["rank"]))
    assert cells[0] == "`GradNorm`"
    assert cells[1] == f"{left.mean():.2f} ± {left.std():.2f}"
    delta = mnist["summary"]["GradNorm"]["delta_m"][0]
    assert cells[3].startswith(f"+{delta:.2f} ± ") and delta > 0
    # the tuned row: its learning rate, its left accuracy over its runs, Δm with a typographic minus sign
    tuned = mnist["summary"]["FixedWeights (tuned lr)"]
    runs = [r for r in mnist["runs"] if r["config"] == "FixedWeights (tuned lr)"]
    left = np.array([r["metric"]["left"] for r in runs]) * 100
    assert (f"| {tuned['rank']} | `FixedWeights`, tuned lr {prose_text.learning_rate(tuned['lr'])} "
            f"| {left.mean():.2f} ± {left.std():.2f} |") in tables
    assert f"| {tuned['delta_m'][0]:+.2f} ± {tuned['delta_m'][1]:.2f} |".replace("-", "−") in tables


def test_a_wide_task_set_shows_the_mean_over_its_tasks(balancing):
    wide = balancing["task_sets"]["many_tasks"]
    runs, tasks = wide["runs"], list(wide["tasks"])
    assert len(tasks) == 40
    # per seed the mean AUC over the 40 tasks, then mean ± population std over seeds (NumPy)
    seeds = sorted({r["seed"] for r in runs})
    single = np.array([np.mean([r["metric"][t] for t in tasks for r in runs
                                if r["config"] == f"single_{t}" and r["seed"] == s]) for s in seeds])
    fixed = np.array([np.mean(list(r["metric"].values())) for r in runs if r["config"] == "FixedWeights"])
    tables = prose.render_block("balancing-tables", balancing)
    section = tables[tables.index("many_tasks"):]
    assert "| rank | configuration | mean AUC of the 40 tasks | Δm % | time per step |" in section
    assert f"|  | single-task networks | {single.mean():.3f} ± {single.std():.3f} | — | — |" in section
    rank = wide["summary"]["FixedWeights"]["rank"]
    assert f"| {rank} | `FixedWeights` | {fixed.mean():.3f} ± {fixed.std():.3f} |" in section
    assert "single task: t00" not in section

    reading = _flat(prose.render_block("balancing-reading", balancing))
    deltas = {c: e["delta_m"][0] for c, e in wide["summary"].items()
              if "rank" in e and c != "FixedWeights (tuned lr)"}
    near = sum(abs(d - deltas["FixedWeights"]) <= 1.0 for d in deltas.values())
    assert f"{near} of the {len(deltas)} strategies lie within a point of `FixedWeights`' Δm" in reading
    tuned_gain = deltas["FixedWeights"] - wide["summary"]["FixedWeights (tuned lr)"]["delta_m"][0]
    best_gain = deltas["FixedWeights"] - min(deltas.values())
    assert f"{tuned_gain:.1f} points better than at 1e-3" in reading
    assert ("the learning rate matters more than the weighting" in reading) == (tuned_gain > best_gain)


def test_balancing_run_conditions_come_from_the_file(balancing):
    text = _flat(prose.render_block("balancing-run", balancing))
    steps = [1000 * r["step_seconds"] for r in balancing["task_sets"]["multi_mnist"]["runs"]
             if r["config"] == "FixedWeights"]
    assert f"MultiMNIST: {min(steps):.1f}–{max(steps):.1f} ms per step" in text
    assert f"{balancing['total_seconds'] / 60:.1f} minutes" in text
    machines = balancing.get("machines", [balancing["machine"]])
    rates = [m[k] for m in machines for k in ("matmul_gflops_2048_before", "matmul_gflops_2048_after")]
    if len(machines) > 1:  # merged runs: the range over every run's readings
        assert f"matmul from {min(rates):.1f} to {max(rates):.1f} GFLOP/s" in text
    else:
        assert f"matmul {rates[0]:.1f} GFLOP/s before" in text
    single = {k: v for k, v in balancing.items() if k != "machines"}
    assert f"matmul {rates[0]:.1f} GFLOP/s before" in _flat(prose.render_block("balancing-run", single))


def _beating(report) -> dict:
    """Per task set, the untuned configurations below the single-task networks (Δm < 0), in rank order."""
    found = {}
    for name, task_set in report["task_sets"].items():
        summary = task_set["summary"]
        below = sorted((c for c, e in summary.items() if "rank" in e and c != "FixedWeights (tuned lr)"
                        and e["delta_m"][0] < 0), key=lambda c: summary[c]["rank"])
        if below:
            found[name] = below
    return found


def _beat_phrase(report) -> str:
    beating = _beating(report)
    verb = "beats" if sum(map(len, beating.values())) == 1 else "beat"
    return prose_text.and_list([prose_text.and_list([f"`{c}`" for c in configs]) + " on "
                                + ("MultiMNIST" if name == "multi_mnist" else name)
                                for name, configs in beating.items()]) + f" {verb} the single-task networks"


def test_balancing_summary_follows_the_numbers(balancing):
    text = _flat(prose.render_block("balancing-summary", balancing))
    beating = _beating(balancing)
    assert ("no strategy at that learning rate beats the single-task networks" in text) == (not beating)
    if beating:
        assert f"only {_beat_phrase(balancing)}:" in text
    sets = balancing["task_sets"]
    tuned = [t["summary"]["FixedWeights (tuned lr)"] for t in sets.values()]
    if all(t["rank"] == 1 for t in tuned):
        where = "both" if len(sets) == 2 else f"all {len(sets)} task sets"
        deltas = prose_text.and_list([f"{t['delta_m'][0]:+.1f} %".replace("-", "−") for t in tuned])
        assert f"rank first on {where}," in text and f"(Δm {deltas})" in text
    mnist = sets["multi_mnist"]["summary"]
    ranked = sum("rank" in e for e in mnist.values())
    assert f"(here {prose_text.ordinal(mnist['NashMTL']['rank'])} of {ranked} on MultiMNIST)" in text

    changed = copy.deepcopy(balancing)
    mnist = changed["task_sets"]["multi_mnist"]["summary"]
    mnist["ScaleInvariant"]["delta_m"][0] = -50.0             # an untuned strategy beats single tasks
    mnist["ScaleInvariant"]["delta_m_per_seed"][0] = -90.0    # and the tuned row no longer leads every seed
    text = _flat(prose.render_block("balancing-summary", changed))
    assert "`ScaleInvariant` on MultiMNIST" in text and f"only {_beat_phrase(changed)}:" in text
    assert "Δm (lower is better) runs from −50.0 % (`ScaleInvariant`)" in text
    assert "though not in every seed" in text


def test_balancing_choice_orders_every_configuration_by_its_mean_rank(balancing):
    text = prose.render_block("balancing-choice", balancing)
    sets = balancing["task_sets"]
    configs = {c for t in sets.values() for c, e in t["summary"].items() if "rank" in e}
    mean_rank = {c: np.mean([t["summary"][c]["rank"] for t in sets.values() if "rank" in t["summary"].get(c, {})])
                 for c in configs}
    rows = [line.split(" | ")[0].strip("| `") for line in text.splitlines() if line.startswith("| `")]
    assert rows == sorted(configs, key=lambda c: (mean_rank[c], c))
    for config in rows:
        assert f" | {mean_rank[config]:.1f} | " in next(line for line in text.splitlines()
                                                       if line.startswith(f"| `{config}` |"))
    tuned_first = mean_rank["FixedWeights (tuned lr)"] < min(v for c, v in mean_rank.items()
                                                             if c != "FixedWeights (tuned lr)")
    assert ("Try equal weights with a tuned learning rate first" in _flat(text)) == tuned_first
    # Tuned equal weights fall to last place everywhere: the advice goes.
    worse = copy.deepcopy(balancing)
    for task_set in worse["task_sets"].values():
        task_set["summary"]["FixedWeights (tuned lr)"]["rank"] = 99
    advice = "Try equal weights with a tuned learning rate first"
    assert advice not in _flat(prose.render_block("balancing-choice", worse))


def test_balancing_reading_counts_seeds_and_compares_per_seed(balancing):
    text = _flat(prose.render_block("balancing-reading", balancing))
    summary = balancing["task_sets"]["multi_mnist"]["summary"]
    strategies = [c for c, e in summary.items() if "rank" in e and c != "FixedWeights (tuned lr)"]
    worst = [int(np.argmax(summary[c]["delta_m_per_seed"])) for c in strategies]
    assert f"Seed 2 is the worst for {worst.count(2)} of the {len(strategies)} strategies" in text
    conflict = balancing["task_sets"]["scale_conflict"]["summary"]
    gains = np.subtract(conflict["FixedWeights"]["delta_m_per_seed"], conflict["PCGrad"]["delta_m_per_seed"])
    assert f"by {gains.min():.1f}–{gains.max():.1f} points" in text
    assert "on MultiMNIST `PCGrad` is no better than `FixedWeights`" in text
    # The middle half of the 1e-3 ranking: its ranks and its spread of Δm, written out from the file.
    ranked = sorted(strategies, key=lambda c: summary[c]["rank"])
    middle = ranked[len(ranked) // 4:len(ranked) - len(ranked) // 4]
    spread = summary[middle[-1]]["delta_m"][0] - summary[middle[0]]["delta_m"][0]
    assert (f"the middle half of the ranking (ranks {summary[middle[0]]['rank']}–{summary[middle[-1]]['rank']}) "
            f"spans only {spread:.1f} points") in text

    changed = copy.deepcopy(balancing)
    fixed = changed["task_sets"]["multi_mnist"]["summary"]["FixedWeights"]["delta_m_per_seed"]
    changed["task_sets"]["multi_mnist"]["summary"]["PCGrad"]["delta_m_per_seed"] = [v - 0.5 for v in fixed]
    assert ("on MultiMNIST `PCGrad` is better than `FixedWeights` in every seed, by 0.5 points"
            in _flat(prose.render_block("balancing-reading", changed)))


# -- benchmarks/results/serving.json and distribute.json ------------------------------------

def test_serving_table_and_reading(tmp_path):
    report = prose.load("serving")
    text = prose.render_block("serving-summary", report)
    row = next(r for r in report["rows"] if (r["model"], r["batch"], r["method"]) == ("mlp", 1, "keras_call"))
    assert _cells(text, "MLP 784→512→256, 4 tasks, 1")[1] == f"{row['p50_ms']:.2f} / {row['p99_ms']:.2f}"
    assert f"{report['start']['time'][:10]}" in text and "serve the SavedModel" in text

    slow = copy.deepcopy(report)  # the SavedModel slower than eager Keras at batch 1
    for r in slow["rows"]:
        if r["method"] == "saved_model" and r["batch"] == 1:
            r["p50_ms"] = 1000.0
    text = _flat(prose.render_block("serving-summary", slow))
    assert "not faster than an eager call at batch 1" in text and "serve the SavedModel" not in text
    assert "slower than Keras's compiled predict step" not in text  # batch 256 still as fast: mixed


def test_distribute_table_and_reading():
    report = prose.load("distribute")
    text = prose.render_block("distribute-summary", report)
    two = report["rows"][2]
    assert _cells(text, "two workers")[:2] == [f"{two['examples_per_s']:,.0f}",
                                                f"{two['examples_per_s'] / report['rows'][0]['examples_per_s']:.2f}"]
    assert "the second worker only adds contention" in _flat(text)

    faster = copy.deepcopy(report)
    faster["rows"][2]["ratio_vs_single"] = 1.8
    assert "two workers ran 1.80× as fast as one process" in _flat(prose.render_block("distribute-summary", faster))


def test_representation_table_and_reading():
    report = prose.load("representation")
    text = prose.render_block("representation-summary", report)
    times = report["step_ms"]["mlp_10"]
    base = times["FixedWeights"]
    assert _cells(text, "`MGDA`")[2:] == [f"{times['MGDA:parameters'] / base:.2f}",
                                          f"{times['MGDA:representation'] / base:.2f}"]

    slower = copy.deepcopy(report)  # the representation step slower than the parameters one
    slower["step_ms"]["mlp_10"]["UPGrad:representation"] = 100 * slower["step_ms"]["mlp_10"]["UPGrad:parameters"]
    assert "except `UPGrad`, slower there" in _flat(prose.render_block("representation-summary", slower))


# -- benchmarks/results/fit_time.json (the many-tasks page) ------------------------------------

def test_fit_time_summary_quotes_each_backends_span_at_100_and_1000_tasks():
    report = prose.load("fit_time")
    text = _flat(prose.render_block("fit-time-summary", report))
    for backend in report["machines"]:
        for tasks in (100, 1000):
            speeds = [fit_time.ratios(r)["speed"] for r in report["rows"]
                      if r["backend"] == backend and r["tasks"] == tasks]
            assert prose_text.span(speeds, unit="×") in text, (backend, tasks)
    many = [r for r in report["rows"] if r["tasks"] >= 100]
    assert f"{sum(fit_time.ratios(r)['met'] for r in many)} of these {len(many)} rows" in text
    # Every row sped up past the targets: the count follows.
    fast = copy.deepcopy(report)
    for row in fast["rows"]:
        row["keras_mtl"]["fit_s"] = row["plain"]["fit_s"] / 2
        row["keras_mtl"]["epoch_s"] = [s / 2 for s in row["plain"]["epoch_s"]]
    assert f"{len(many)} of these {len(many)} rows" in _flat(prose.render_block("fit-time-summary", fast))


# -- notebooks/results/*.json ---------------------------------------------------------------

def test_notebook_headlines_say_the_size_and_the_figures():
    results = prose.load("notebooks")
    text = _flat(prose.render_block("notebook-headlines", results))
    digits = results["07_real_digits"]
    scarce = digits["by_fraction"]["0.02"]
    assert f"`07_real_digits` (size {digits['size']}, seeds 0, 1 and 2)" in text
    assert f"{scarce['multi']:.3f} against {scarce['separate']:.3f} with ~{scarce['labels_per_task']}" in text
    streets = results["01_street_scenes"]
    assert f"`01_street_scenes` (size {streets['size']}, seed {streets['seed']})" in text
    many = results["04_many_tasks"]
    assert f"{many['alone_auc']:.3f} alone" in text

    rerun = copy.deepcopy(results)  # a full-size rerun with other figures: the text follows
    rerun["04_many_tasks"].update(size="full", seeds=[0, 1, 2], alone_auc=0.5, gain_with_most_others=-0.1)
    rerun["07_real_digits"]["by_fraction"]["0.02"]["multi_minus_separate"] = -0.01
    rerun["07_real_digits"]["by_fraction"]["0.05"]["multi_minus_separate"] = -0.02
    text = _flat(prose.render_block("notebook-headlines", rerun))
    assert "`04_many_tasks` (size full, seeds 0, 1 and 2): the target tasks' mean AUC 0.500 alone" in text
    assert "(−0.100, mean over the seeds)" in text
    assert "network trailed four separate networks while labels were scarce" in text


def test_the_demo_paragraph_quotes_the_demo_run():
    report = prose.load("demo")
    text = prose.render_block("demo", report).replace("\n", " ")
    auc = " / ".join(f"{v:.3f}" for v in report["test_auc"].values())
    assert f"{report['demo_seconds']:.0f} s wall clock" in text and auc in text
    scaled = report["demo_seconds_at_reference"]   # time × the faster matmul rate / 156
    rate = max(report["matmul_gflops_before"], report["matmul_gflops_after"])
    assert scaled == pytest.approx(report["demo_seconds"] * rate / 156, abs=0.1)
    verdict = "within" if scaled <= 180 else "over"
    assert f"that is {scaled:.0f} s: {verdict} the 180 s budget" in text
    runs = report["demo_seconds_runs"]
    assert min(runs) == report["demo_seconds"] and f"fastest of {len(runs)} runs" in text
    calibrated = report["demo_seconds_at_reference_by_old_demo"]   # 357 s × time here / the old demo's time here
    old_here = report["demo_seconds"] + report["phase_seconds"]["train"] * (report["old_over_new_train_step"] - 1)
    assert calibrated == pytest.approx(357 * report["demo_seconds"] / old_here, abs=0.1)
    verdict = "within" if calibrated <= 180 else "over"
    ratio = report["old_over_new_train_step"]
    assert f"{ratio:.2f}× as long as today's here, it is {calibrated:.0f} s: {verdict}" in text
    slow = {**report, "demo_seconds_at_reference": 181.0, "demo_seconds_at_reference_by_old_demo": 190.0,
            "test_auc": {**report["test_auc"], "pedestrian": 0.94}}
    text = prose.render_block("demo", slow).replace("\n", " ")
    assert "that is 181 s: over the 180 s budget" in text and "it is 190 s: over the 180 s budget" in text
    assert "pedestrian below AUC 0.95" in text
    fast = {**slow, "demo_seconds_at_reference": 179.0, "demo_seconds_at_reference_by_old_demo": 150.0}
    text = prose.render_block("demo", fast).replace("\n", " ")
    assert "that is 179 s: within the 180 s budget" in text and "it is 150 s: within the 180 s budget" in text
