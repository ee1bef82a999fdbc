"""The measured figures the docs and READMEs quote, rendered from the committed result files.

``python benchmarks/prose.py`` rewrites every marked block of the pages in
``FILES`` (the docs' topic pages, ``benchmarks/README.md``, ``data/README.md``
and ``notebooks/README.md``); ``--check`` only reports the blocks that differ
from their result files (exit status 1). A block is the
text between ``<!-- figures:NAME -->`` and ``<!-- /figures -->``; everything
outside the markers is left alone. ``RENDERERS`` maps each block to its
result file and its render function; the files and what writes them:

* ``benchmarks/results/backends.json``: ``python benchmarks/run.py --backends
  tensorflow,jax,torch --json``;
* ``benchmarks/results/tensorflow.json``: ``python benchmarks/run.py --backend
  tensorflow --only a,e,g --rows a,a-spe8 --json`` (``steps_per_execution``);
* ``benchmarks/results/many_tasks.json``: ``python benchmarks/many_tasks.py
  --json benchmarks/results/many_tasks.json`` (``prose_many_tasks.py``);
* ``benchmarks/results/fit_time.json``: ``python benchmarks/fit_time.py --json
  benchmarks/results/fit_time.json`` (``prose_fit_time.py``);
* ``benchmarks/results/balancing.json``: ``python benchmarks/balancing.py
  --output benchmarks/results`` (``prose_balancing.py``);
* ``benchmarks/results/serving.json`` and ``distribute.json``: ``python
  benchmarks/serving.py --output benchmarks/results/serving.json``, ``python
  benchmarks/distribute.py --json`` (``prose_deploy.py``);
* ``benchmarks/results/representation.json``: ``python benchmarks/representation.py
  --output benchmarks/results`` (``prose_representation.py``);
* ``notebooks/results/NN_name.json``: ``python notebooks/build.py --execute``
  (``prose_notebooks.py``).

Every figure and every word that depends on one (faster or slower, met or
not, which backend) is computed from the file, so a new run cannot leave a
stale number or a stale conclusion in the prose; ``tests/test_prose.py``
fails when a block is stale.
"""
from __future__ import annotations

import argparse
import re
import sys

from backends import MAX_WAIT, ROWS, TORCH_ROW, side_by_side
from prose_balancing import balancing_reading, balancing_run, balancing_summary, balancing_tables
from prose_deploy import distribute_summary, serving_summary
from prose_fit_time import fit_time_section
from prose_many_tasks import many_tasks_reading, many_tasks_section, many_tasks_summary
from prose_notebooks import load_notebooks, notebook_headlines
from prose_representation import representation_summary
from prose_text import BACKEND_NAMES, ROOT, load
from prose_text import times as _times
from prose_text import wrap as _wrap

NAMES = BACKEND_NAMES
BLOCK = re.compile(r"(<!-- figures:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.DOTALL)


# -- figures from a --backends report ------------------------------------------

def _value(report, backend, row_id) -> float:
    return report["rows"][backend][row_id]["value"]


def _ratio(report, row, baseline) -> float:
    return _value(report, *row) / _value(report, *baseline)


def _keras_backends(report) -> list[str]:
    return [b for b in report["backends"] if "a" in report["rows"].get(b, {})]


def _fastest(report) -> str:
    return max(_keras_backends(report), key=lambda b: _value(report, b, "a"))


def _torch_at(report) -> str | None:
    return next((b for b in report["backends"] if TORCH_ROW in report["rows"].get(b, {})), None)


def _masking_target(report) -> float:
    """The minimum of the a / b targets (the same on every backend)."""
    return next(t["minimum"] for t in report["targets"]
                if t["what"].endswith("keras_mtl 4 tasks / plain Keras 4 heads"))


def _loop_target(report) -> dict | None:
    """The fastest backend's row a against the plain PyTorch loop: ratio and minimum."""
    target = next((t for t in report["targets"] if "plain PyTorch loop" in t["what"]), None)
    if target is None:
        return None
    ratio = _value(report, _fastest(report), "a") / _value(report, _torch_at(report), TORCH_ROW)
    return {"ratio": ratio, "minimum": target["minimum"]}


def _spread(report, backend, rows=None) -> float:
    """The largest slowest-to-fastest round factor of a backend's rows."""
    found = [row for row_id, row in report["rows"][backend].items() if rows is None or row_id in rows]
    return max(max(r["value"] for r in row["rounds"]) / min(r["value"] for r in row["rounds"]) for row in found)


def _versions(report) -> str:
    machine = report["machine"][report["backends"][0]]
    kernel = machine["platform"].split("-")[1]
    parts = [f"Python {machine['python']}", f"TensorFlow {machine['tensorflow']}", f"Keras {machine['keras']}"]
    if machine.get("jax"):
        parts.append(f"JAX {machine['jax']}")
    if machine.get("torch"):
        torch, _, build = machine["torch"].partition("+")
        parts.append(f"PyTorch {torch}" + (f" ({build.upper()})" if build else ""))
    parts.append(f"keras_mtl {machine['keras_mtl']}")
    gpus = "no GPU" if not machine["gpus"] else f"{machine['gpus']} GPU(s)"
    return (f"{machine['cpu_count']} vCPU {machine['cpu']}, {gpus}; Linux {kernel}; " + ", ".join(parts[:-1])
            + f", {parts[-1]}")


def _command(report) -> str:
    command = f"python benchmarks/run.py --backends {','.join(report['backends'])}"
    settings = report.get("settings", {}).get(report["backends"][0], {})
    if settings.get("max_wait") is not None and settings["max_wait"] != MAX_WAIT:
        command += f" --max-wait {settings['max_wait']:g}"
    return command


def _rounds(report):
    return [r for b in report["rows"] for row in report["rows"][b].values() for r in row["rounds"]]


def _best(report):
    return [row for b in report["rows"] for row in report["rows"][b].values()]


def _date(stamp: str) -> tuple[str, str]:
    day, clock, *_ = stamp.split()
    return day, clock[:5]


def _conditions(report) -> str:
    """When, what, on which machine, and how busy it was."""
    day, start = _date(report["start"]["time"])
    _, end = _date(report["end"]["time"])
    cores = report["machine"][report["backends"][0]]["cpu_count"]
    others = max(r["other_cores"] for r in _rounds(report))
    best_others = max(row["other_cores"] for row in _best(report))
    all_rates = [r["matmul_gflops"] for r in _rounds(report)]
    best_rates = [row["matmul_gflops"] for row in _best(report)]
    quiet = (f"every best round below ran while they used {best_others:.1f}" if best_others < 0.05 else
             f"during the best rounds below they used up to {best_others:.1f}")
    return _wrap(f"{day}, {start}–{end} UTC, `{_command(report)}` ({report['rounds']} interleaved rounds). "
                 f"{_versions(report)}. Load average {report['start']['loadavg']} at the start and "
                 f"{report['end']['loadavg']} at the end: other processes shared the {cores} cores. Other "
                 f"processes used up to {others:.1f} cores during a row; {quiet}. The TF 2048³ matmul rate "
                 f"ranged over {min(all_rates):.0f}–{max(all_rates):.0f} GFLOP/s through the run and "
                 f"{min(best_rates):.0f}–{max(best_rates):.0f} GFLOP/s at the rows' best rounds (columns "
                 '"matmul GFLOP/s").')


def _ranges(report) -> str:
    backends = report["backends"]
    lines = [f"Range over the {report['rounds']} rounds (examples/s, slowest–fastest):", "",
             "| row | " + " | ".join(backends) + " |", "|---|" + "---|" * len(backends)]
    for row_id in [*ROWS, TORCH_ROW]:
        cells = []
        for backend in backends:
            row = report["rows"].get(backend, {}).get(row_id)
            values = [r["value"] for r in row["rounds"]] if row else []
            cells.append(f"{min(values):,.0f}–{max(values):,.0f}" if values else "")
        if any(cells):
            label = "torch (plain PyTorch loop)" if row_id == TORCH_ROW else row_id
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _speed_against_others(report, row_id, fastest) -> list[tuple[str, float]]:
    return [(b, _value(report, fastest, row_id) / _value(report, b, row_id))
            for b in _keras_backends(report) if b != fastest]


def _reading(report) -> str:
    backends = _keras_backends(report)
    fastest = _fastest(report)
    masking = {b: _ratio(report, (b, "a"), (b, "b")) for b in backends}
    many = {b: _ratio(report, (b, "d"), (b, "d-dense")) for b in backends}
    minimum = _masking_target(report)
    bullets = []

    failing = [b for b in backends if masking[b] < minimum]
    figures = _times([f"{masking[b]:.2f}× ({NAMES[b]})" for b in backends])
    head = "Masking costs nothing on any backend" if not failing else "Masking costs time on " + _times(
        [NAMES[b] for b in failing])
    count = {2: "both", 3: "all three"}.get(len(backends), f"all {len(backends)}")
    met = (f"the {minimum:g} target is met on {count}" if not failing else
           f"the {minimum:g} target is missed on " + _times([NAMES[b] for b in failing]))
    bullets.append(f"**{head}**: keras_mtl with 4 tasks and 30 % missing labels runs at {figures} plain Keras "
                   f"with complete labels and the same metrics — {met}.")

    faster = _times([f"{factor:.2f}× {NAMES[b] if b != 'torch' else 'the Keras PyTorch backend'}"
                     for b, factor in _speed_against_others(report, "a", fastest)])
    many_faster = ", ".join(f"{factor:.2f}× {NAMES[b]}" for b, factor in
                            _speed_against_others(report, "d", fastest) if b == "tensorflow")
    jit = report["rows"][fastest]["a"]["jit_compile"]
    bullets.append(f"**{NAMES[fastest]} is the fastest backend**: {faster} for row a"
                   + (f" ({many_faster} for 100 tasks)" if many_faster else "")
                   + (", with XLA on by Keras's default there." if jit else ", without XLA."))

    loop = _loop_target(report)
    if loop:
        torch_at = _torch_at(report)
        verdict = "met" if loop["ratio"] >= loop["minimum"] else "not met"
        bullets.append(
            f"**Against a plain PyTorch loop** the fastest backend reaches {loop['ratio']:.2f}× "
            f"({_value(report, fastest, 'a'):,.0f} against {_value(report, torch_at, TORCH_ROW):,.0f} "
            f"examples/s): the {loop['minimum']:g} target is {verdict}. The loop has no metrics, while "
            "rows a and b compute AUC and accuracy per task.")

    worst = min(backends, key=many.get)
    listed = [f"{many[b]:.2f}× on {NAMES[b]}" for b in backends]
    text = f"**100 tasks against one `Dense(100)`**: {_times(listed)}"
    if many[worst] < 0.8 * min(v for b, v in many.items() if b != worst):
        also = (", while with 4 tasks it is faster than plain Keras there too" if masking[worst] > 1 else "")
        text += (f": on the {NAMES[worst]} backend keras_mtl's 100 named tasks cost much more than plain "
                 f"Keras's one head{also}")
    bullets.append(text + ".")

    keras_rows = set(ROWS)
    spread = {b: _spread(report, b, keras_rows) for b in backends}
    busiest = max(backends, key=spread.get)
    row = max((r for i, r in report["rows"][busiest].items() if i in keras_rows),
              key=lambda r: max(x["value"] for x in r["rounds"]) / min(x["value"] for x in r["rounds"]))
    slow = min(row["rounds"], key=lambda r: r["value"])
    fast = max(row["rounds"], key=lambda r: r["value"])
    loop_spread = (f" (the plain PyTorch loop {_spread(report, _torch_at(report), {TORCH_ROW}):.0f}×)"
                   if busiest == _torch_at(report) else "")
    rest = _times([f"{NAMES[b]}'s up to {spread[b]:.1f}×" for b in backends if b != busiest])
    bullets.append(
        f"**A busy machine slows the {NAMES[busiest]} backend most**: between its slowest and fastest rounds "
        f"(other processes using {slow['other_cores']:.1f} cores, then {fast['other_cores']:.1f}) its rows "
        f"varied up to {spread[busiest]:.0f}×{loop_spread}, {rest}. Compare absolute figures only beside their "
        "matmul rate.")
    return "Reading:\n\n" + "\n".join(_wrap(f"- {b}", indent="  ") for b in bullets)


def backends_section(report: dict) -> str:
    """benchmarks/README.md: the run, its tables, the ranges and the reading."""
    day, _ = _date(report["start"]["time"])
    failed = list(report.get("errors", {}))
    tables = side_by_side(report["rows"], report["backends"], failed, markdown=True)
    source = ("The figures of this section are rendered from `benchmarks/results/backends.json` by "
              "`python benchmarks/prose.py`; edit that script, not the text.")
    return "\n\n".join([f"### Every backend side by side ({day})", _wrap(source), _conditions(report), tables,
                        _ranges(report), _reading(report)]) + "\n"


SUMMARY_ROWS = [
    ("a", "keras_mtl, 4 tasks, 30 % missing"),
    ("b", "plain Keras, 4 heads, complete labels, same metrics"),
    (("a", "b"), None),
    ("d", "keras_mtl, 100 named tasks"),
    ("d-dense", "plain Keras, one `Dense(100)` head"),
    (("d", "d-dense"), "ratio"),
]


def backends_summary(report: dict) -> str:
    """docs/topics/backends.md: the headline table and which backend to pick."""
    backends = _keras_backends(report)
    day, _ = _date(report["start"]["time"])
    best_rates = [row["matmul_gflops"] for row in _best(report)]
    lines = [f"Measured on the 2-core development machine ({day}, {report['rounds']} interleaved rounds,",
             f"best round per row; load average {report['start']['loadavg']} at the start, "
             f"{report['end']['loadavg']} at the end; matmul",
             f"{min(best_rates):.0f}–{max(best_rates):.0f} GFLOP/s at the best rounds), in steady-state examples/s:",
             "", "| what | " + " | ".join(NAMES[b] for b in backends) + " |", "|---|" + "---|" * len(backends)]
    for row, label in SUMMARY_ROWS:
        if isinstance(row, tuple):
            label = label or f"ratio (target ≥ {_masking_target(report):g})"
            cells = [f"{_ratio(report, (b, row[0]), (b, row[1])):.2f}" for b in backends]
        else:
            cells = [f"{_value(report, b, row):,.0f}" for b in backends]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    torch_at = _torch_at(report)
    if torch_at:
        cells = ["" if b != torch_at else f"{_value(report, b, TORCH_ROW):,.0f}" for b in backends]
        lines.append("| plain PyTorch loop (`torch.nn`, eager, no metrics) | " + " | ".join(cells) + " |")

    fastest = _fastest(report)
    against = _times([f"{factor:.2f}× faster {'there ' if i == 0 else ''}than on "
                      + ("the PyTorch backend" if b == "torch" else NAMES[b])
                      for i, (b, factor) in enumerate(_speed_against_others(report, "a", fastest))])
    xla = [NAMES[b] for b in backends if report["rows"][b]["a"]["jit_compile"]]
    no_xla = [NAMES[b] for b in backends if not report["rows"][b]["a"]["jit_compile"]]
    text = f"**For speed, pick {NAMES[fastest]}**: keras_mtl trains {against}"
    if xla and no_xla:
        text += (f" (Keras's default `jit_compile=\"auto\"` turns XLA on for {_times(xla)}; on {_times(no_xla)} "
                 "it stays off on a CPU)")
    loop = _loop_target(report)
    if loop:
        verdict = "met" if loop["ratio"] >= loop["minimum"] else "not met"
        text += f", and {loop['ratio']:.2f}× as fast as the plain PyTorch loop (target {loop['minimum']:g}: {verdict})"
    text += "."
    minimum = _masking_target(report)
    failing = [NAMES[b] for b in backends if _ratio(report, (b, "a"), (b, "b")) < minimum]
    text += (" On every backend masking the missing labels costs nothing against plain Keras on complete labels."
             if not failing else f" Masking the missing labels costs more than the target allows on {_times(failing)}.")
    many = {b: _ratio(report, (b, "d"), (b, "d-dense")) for b in backends}
    worst = min(backends, key=many.get)
    busiest = max(backends, key=lambda b: _spread(report, b, set(ROWS)))
    if many[worst] < 0.8:
        text += f" Avoid the {NAMES[worst]} backend for many tasks ({many[worst]:.2f}× of one `Dense(100)` head there)"
        text += " and on a busy machine, where it slows down most." if busiest == worst else "."
    if busiest != worst or many[worst] >= 0.8:
        text += f" On a busy machine the {NAMES[busiest]} backend slows down most."
    return "\n".join(lines) + "\n\n" + _wrap(text) + "\n"


# -- figures from a TensorFlow-only run (python benchmarks/run.py --backend tensorflow --json) ----------

SPE_COMMAND = "python benchmarks/run.py --backend tensorflow --only a,e,g --rows a,a-spe8 --json"


def _compared(factor: float, than: str) -> str:
    if factor >= 1.05:
        return f"{factor:.2f}× faster than {than}"
    if factor <= 0.95:
        return f"{1 / factor:.2f}× slower than {than}"
    return f"about as fast as {than} ({factor:.2f}×)"


def steps_per_execution(report: dict) -> str:
    """docs/topics/backends.md: what ``steps_per_execution=8`` and XLA buy on TensorFlow (rows a-spe8/xla, a)."""
    rows = {row["id"]: row for row in report["rows"]}
    base, both = rows["a"], rows["a-spe8/xla"]
    factor = both["value"] / base["value"]
    alone = {"`steps_per_execution=8`": rows["a-spe8"]["value"] / base["value"],
             "`jit_compile=True`": rows["a/xla"]["value"] / base["value"]}
    machine = report["machine"]
    used = [base, both, rows["a-spe8"], rows["a/xla"]]
    rates = [row["matmul_gflops"] for row in used]
    others = max(row["other_cores"] or 0.0 for row in used)
    compared = _compared(factor, "Keras's defaults")
    text = (f"On TensorFlow, `compile(steps_per_execution=8, jit_compile=True)` made training {compared} "
            f"({both['value']:,.0f} against {base['value']:,.0f} "
            f"examples/s; " + ", ".join(f"{what} alone {value:.2f}×" for what, value in alone.items())
            + f") in the TensorFlow-only run of {machine['time_start'][:10]} (`{SPE_COMMAND} --max-wait "
            f"{report['settings']['max_wait']:g} --retries {report['settings']['retries']}`, best of "
            f"{report['settings']['rounds']} rounds; load average {machine['loadavg_start'].split()[0]} at the "
            f"start and {machine['loadavg_end'].split()[0]} at the end, other processes using up to "
            f"{others:.1f} cores and the matmul at {min(rates):.0f}–{max(rates):.0f} GFLOP/s during these "
            "rows' best rounds).")
    return _wrap(text) + "\n"


# -- figures from benchmarks/demo.py ------------------------------------------------

DEMO_PHASES = {"draw": "drawing the scenes", "build": "model and pipelines", "train": "training",
               "evaluate": "test evaluation", "plots": "plots", "export": "SavedModel export"}


def _verdict(seconds: float, budget: float) -> str:
    return f"within the {budget:.0f} s budget" if seconds <= budget else f"over the {budget:.0f} s budget"


def _runs(report: dict) -> str:
    runs = report.get("demo_seconds_runs") or []
    if len(runs) < 2:
        return ""
    return f" (the fastest of {len(runs)} runs: {_times([f'{s:.0f}' for s in runs])} s)"


def _calibrated(report: dict) -> str:
    """The estimate calibrated on the old demo's time on the reference machine, if measured."""
    calibrated = report.get("demo_seconds_at_reference_by_old_demo")
    if calibrated is None:
        return ""
    return (f". Calibrated instead on the demo of 2026-11-29, which took "
            f"{report['reference_old_demo_seconds']:.0f} s on the reference machine and whose training steps "
            f"took {report['old_over_new_train_step']:.2f}× as long as today's here, it is {calibrated:.0f} s: "
            + _verdict(calibrated, report["reference_budget_seconds"]))


def demo_summary(report: dict) -> str:
    """docs/topics/demo.md: the paragraph on the demo's wall time, its phases, its budget and its test figures."""
    phases = report.get("phase_seconds") or {}
    parts = [f"{DEMO_PHASES.get(name, name)} {seconds:.{0 if seconds >= 1 else 1}f} s"
             for name, seconds in phases.items()]
    epochs = report.get("epoch_seconds") or []
    if epochs and "train" in phases:
        index = list(phases).index("train")
        parts[index] += f" ({_times([f'{s:.0f}' for s in epochs])} s per epoch)"
    rate = max(report["matmul_gflops_before"], report["matmul_gflops_after"])
    scaled, budget = report["demo_seconds_at_reference"], report["reference_budget_seconds"]
    names = list(report["test_auc"])
    auc = " / ".join(f"{report['test_auc'][n]:.3f}" for n in names)
    accuracy = report.get("test_accuracy") or {}
    low = [n.replace("_", " ") for n in names if report["test_auc"][n] < 0.95]
    hardest = min(names, key=report["test_auc"].get)
    text = (f"Measured by `python benchmarks/demo.py` on the {report['cpus']}-core development machine "
            f"({report['date']}, default settings; load average "
            f"{' / '.join(f'{v:.1f}' for v in report['load_average'])} over 1 / 5 / 15 min at the end, "
            "the benchmark's own work included): "
            f"{report['demo_seconds']:.0f} s wall clock in all{_runs(report)} — " + ", ".join(parts) + " — with the TF "
            f"2048³ matmul at {report['matmul_gflops_before']:.0f} GFLOP/s before the run and "
            f"{report['matmul_gflops_after']:.0f} after. Scaled by the faster rate, {rate:.0f} GFLOP/s, to the "
            f"{report['reference_gflops']:.0f} GFLOP/s reference that is {scaled:.0f} s: "
            + _verdict(scaled, budget) + _calibrated(report)
            + f". Test AUC {' / '.join(n.replace('_', ' ') for n in names)} {auc}"
            + (f" (accuracy {' / '.join(f'{accuracy[n]:.2f}' for n in names)})" if accuracy else "")
            + ", every AUC over all 2,000 test images: "
            + ("every object at AUC ≥ 0.95" if not low else f"{_times(low)} below AUC 0.95")
            + f", the {hardest.replace('_', ' ')} the hardest. `benchmarks/results/demo.json` holds the run.")
    return _wrap(text) + "\n"


# -- the files and their blocks ------------------------------------------------

# Each block: the result file it is rendered from, and how.
RENDERERS = {"backends": ("backends", backends_section), "backends-summary": ("backends", backends_summary),
             "many-tasks-summary": ("many_tasks", many_tasks_summary), "many-tasks": ("many_tasks", many_tasks_section),
             "many-tasks-reading": ("many_tasks", many_tasks_reading),
             "balancing-summary": ("balancing", balancing_summary), "balancing-run": ("balancing", balancing_run),
             "balancing-tables": ("balancing", balancing_tables),
             "balancing-reading": ("balancing", balancing_reading),
             "steps-per-execution": ("tensorflow", steps_per_execution),
             "notebook-headlines": ("notebooks", notebook_headlines),
             "serving-summary": ("serving", serving_summary), "distribute-summary": ("distribute", distribute_summary),
             "representation-summary": ("representation", representation_summary),
             "demo": ("demo", demo_summary), "fit-time": ("fit_time", fit_time_section)}
# The pages that hold figures blocks (README.md holds none: its figures live on these pages).
FILES = ("docs/topics/backends.md", "docs/topics/balancing.md", "docs/topics/demo.md",
         "docs/topics/distributed.md", "docs/topics/many_tasks.md", "docs/topics/serving.md",
         "benchmarks/README.md", "data/README.md", "notebooks/README.md")


def render(text: str, report: dict) -> str:
    """``text`` with every figures block rendered from ``report`` (``backends.json``) or its own file."""
    def block(match):
        name = match.group("name")
        if name not in RENDERERS:
            raise KeyError(f"unknown figures block {name!r}; known: {sorted(RENDERERS)}")
        source, renderer = RENDERERS[name]
        data = report if source == "backends" else load_notebooks() if source == "notebooks" else load(source)
        return match.group(1) + renderer(data) + match.group(4)

    return BLOCK.sub(block, text)


def blocks(text: str) -> list[str]:
    """The names of the figures blocks in ``text``, in order."""
    return [m.group("name") for m in BLOCK.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/prose.py", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale blocks (exit 1), change nothing")
    args = parser.parse_args(argv)
    report = load("backends")
    stale = []
    for name in FILES:
        path = ROOT / name
        text = path.read_text()
        rendered = render(text, report)
        if rendered != text:
            stale.append(name)
            if not args.check:
                path.write_text(rendered)
    verb = "stale" if args.check else "rewritten"
    print(f"{verb}: {', '.join(stale)}" if stale else "every figures block matches benchmarks/results")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
