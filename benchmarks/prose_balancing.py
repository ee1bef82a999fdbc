"""README and data/README figures of ``benchmarks/results/balancing.json`` (``benchmarks/balancing.py``).

Each task set's ``summary`` holds, per configuration, every task's metric,
Δm and the step time relative to ``FixedWeights`` as ``[mean, std]`` over
the seeds, and its rank by mean Δm; ``runs`` holds every training.
"""

from __future__ import annotations

import datetime
import re

from prose_text import ROOT, span, times, wrap

TUNED = "FixedWeights (tuned lr)"
TITLES = {"multi_mnist": "MultiMNIST", "scale_conflict": "scale_conflict"}
BACKENDS = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
UNITS = {"accuracy": ("accuracy %", 100, 2), "auc": ("AUC", 1, 3), "mae": ("MAE", 1, 2)}


def _lr(value: float) -> str:
    """``3e-3`` for 0.003."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _minus(text: str) -> str:
    return text.replace("-", "−")


def _pair(pair, scale=1.0, digits=2, sign=False) -> str:
    """``mean ± std`` (the mean alone when the std is 0, as for the reference row)."""
    mean, std = pair
    head = _minus(f"{mean * scale:+.{digits}f}" if sign else f"{mean * scale:.{digits}f}")
    return head if std == 0 else f"{head} ± {std * scale:.{digits}f}"


def _average_size(report) -> list[str]:
    """The strategies whose update has the size of an average task gradient (from the run's notes)."""
    note = next(n for n in report["notes"] if " update at the size of an average" in n)
    return [name.strip() for name in re.split(r",| and ", note.split(" update at")[0]) if name.strip()]


def _kinds() -> dict[str, str]:
    """Each strategy's cost ("losses" or "per-task gradients"), from README's table of strategies."""
    kinds = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        match = re.match(r"\| `(\w+)\(.*?\)`[^|]*\|[^|]*\| (losses|per-task gradients)", line)
        if match:
            kinds[match.group(1)] = match.group(2)
    return kinds


def _label(config: str, entry: dict, marked: list[str]) -> str:
    if config.startswith("single_"):
        return "single task: " + config.removeprefix("single_")
    if config == TUNED:
        return f"`FixedWeights`, tuned lr {_lr(entry['lr'])}"
    return f"`{config}`" + ("¹" if config in marked else "")


def _table(name: str, task_set: dict, marked: list[str]) -> str:
    tasks = task_set["tasks"]
    header = [f"{task} {UNITS[info['metric']][0]}" for task, info in tasks.items()]
    lines = [f"{TITLES.get(name, name)} (tuned equal weights chose lr {_lr(task_set['tuning']['chosen_lr'])}):", "",
             "| rank | configuration | " + " | ".join(header) + " | Δm % | time per step |",
             "|---|---|" + "---|" * len(header) + "---|---|"]
    for config, entry in task_set["summary"].items():
        cells = []
        for task, info in tasks.items():
            _, scale, digits = UNITS[info["metric"]]
            pair = entry["metric"].get(task)
            cells.append(_pair(pair, scale, digits) if pair else "—")
        delta = _pair(entry["delta_m"], sign=True) if "delta_m" in entry else "—"
        step = _pair(entry["relative_step_time"]) if entry.get("relative_step_time") else "—"
        lines.append(f"| {entry.get('rank', '')} | {_label(config, entry, marked)} | " + " | ".join(cells)
                     + f" | {delta} | {step} |")
    return "\n".join(lines)


def balancing_tables(report: dict) -> str:
    """data/README.md: one ranked table per task set."""
    marked = _average_size(report)
    return "\n\n".join(_table(name, task_set, marked) for name, task_set in report["task_sets"].items()) + "\n"


def _step_ms(task_set, config) -> list[float]:
    return [1000 * r["step_seconds"] for r in task_set["runs"] if r["config"] == config]


def balancing_run(report: dict) -> str:
    """data/README.md: how the tables were measured (seeds, date, machine, load)."""
    machine = report["machine"]
    seeds = sorted({s for t in report["task_sets"].values() for s in t["settings"]["seeds"]})
    trainings = sum(len(t["runs"]) for t in report["task_sets"].values())
    tuning = sum(len(t["tuning"]["grid"]) for t in report["task_sets"].values())
    per_seed = {len({r["config"] for r in t["runs"]}) for t in report["task_sets"].values()}
    first = next(iter(report["task_sets"]))
    fixed = _step_ms(report["task_sets"][first], "FixedWeights")
    day = datetime.datetime.fromisoformat(report["date"]).date().isoformat()
    load_start, load_end = machine["loadavg_before"], machine["loadavg_after"]
    backend = BACKENDS.get(machine["backend"], machine["backend"])
    tuning_per_set = tuning // len(report["task_sets"])
    text = (f"Mean ± std over seeds {times([str(s) for s in seeds])}; rows ranked by mean Δm. Run on {day} "
            f"(UTC) on {machine['cpus']} shared CPU cores ({backend} backend, Keras "
            f"{machine['keras']}), {report['total_seconds'] / 60:.1f} minutes for the whole run "
            f"({'/'.join(map(str, sorted(per_seed)))} trainings per seed and set plus {tuning_per_set} "
            f"tuning runs per set: {trainings + tuning} trainings); float32 2048³ matmul "
            f"{machine['matmul_gflops_2048_before']:.1f} GFLOP/s before and {machine['matmul_gflops_2048_after']:.1f} "
            f"GFLOP/s after, 1-minute load average {load_start[0]:.1f} at the start and {load_end[0]:.1f} at the "
            f"end (15-minute: {load_end[2]:.1f}) — other work ran beside it, so step times are noisy "
            f"(`FixedWeights` on {TITLES.get(first, first)}: {span(fixed, '{:.1f}')} ms per step across seeds).")
    return wrap(text) + "\n"


# -- the reading ---------------------------------------------------------------------------

def _ranked(task_set) -> list[str]:
    return sorted((c for c, e in task_set["summary"].items() if "rank" in e),
                  key=lambda c: task_set["summary"][c]["rank"])


def _delta(task_set, config) -> float:
    return task_set["summary"][config]["delta_m"][0]


def _leads_every_seed(task_set, config) -> bool:
    """``config`` has the lowest Δm of every configuration in every seed."""
    summary = task_set["summary"]
    mine = summary[config]["delta_m_per_seed"]
    return all(mine[i] < entry["delta_m_per_seed"][i] for c, entry in summary.items()
               if c != config and "delta_m_per_seed" in entry for i in range(len(mine)))


def _costs(report, kind) -> list[float]:
    kinds = _kinds()
    return [entry["relative_step_time"][0] for t in report["task_sets"].values()
            for c, entry in t["summary"].items() if kinds.get(c) == kind and entry.get("relative_step_time")]


def _pct(value: float) -> str:
    return _minus(f"{value:+.1f} %")


def _tuned_trade(task_set) -> tuple[str, str] | None:
    """(task it gained, task it lost against the single-task networks) when tuning traded one for the other."""
    summary, tasks = task_set["summary"], task_set["tasks"]
    gains = {}
    for task, info in tasks.items():
        tuned, single = summary[TUNED]["metric"][task][0], summary[f"single_{task}"]["metric"][task][0]
        gains[task] = (tuned - single) if info["higher_is_better"] else (single - tuned)
    won = [t for t, g in gains.items() if g > 0]
    lost = [t for t, g in gains.items() if g < 0]
    return (won[0], lost[0]) if len(won) == 1 and len(lost) == 1 else None


def balancing_summary(report: dict) -> str:
    """README.md: the paragraph under "Task balancing"."""
    sets = report["task_sets"]
    (first, a), (second, b) = list(sets.items())[:2]
    settings = [t["settings"] for t in sets.values()]
    seeds = len(settings[0]["seeds"])
    epochs = times(sorted({str(s["epochs"]) for s in settings}))
    untuned = {n: [c for c in _ranked(t) if c != TUNED] for n, t in sets.items()}
    beat = [n for n, configs in untuned.items() if _delta(sets[n], configs[0]) < 0]
    lr = _lr(report["learning_rate"])

    def extremes(name):
        best, worst = untuned[name][0], untuned[name][-1]
        return (f"from {_pct(_delta(sets[name], best))} (`{best}`) to {_pct(_delta(sets[name], worst))} "
                f"(`{worst}`)")

    close = untuned[first][1:]
    close_span = _delta(a, close[-1]) - _delta(a, close[0])
    ranks = f"{a['summary'][close[0]]['rank']}–{a['summary'][close[-1]]['rank']}"
    verdict = ("no strategy at that learning rate beats the single-task networks" if not beat else
               "at that learning rate only " + times([f"`{untuned[n][0]}` on {TITLES.get(n, n)}" for n in beat])
               + " beats the single-task networks")
    text = (f"On MultiMNIST (two real MNIST digits overlaid) and on notebook 06's scale-conflicting pair "
            f"(`python benchmarks/balancing.py`: every registered strategy at Adam {lr}, {seeds} seeds, a "
            f"small budget of {epochs} epochs), {verdict}: Δm (lower is better) runs {extremes(first)} on "
            f"{TITLES.get(first, first)}, ranks {ranks} within {close_span:.1f} points of each other, and "
            f"{extremes(second)} on the pair")
    lead = untuned[second][0]
    defect = next(t for t, info in b["tasks"].items() if info["metric"] == "auc")
    if b["summary"][lead]["metric"][defect][0] > b["summary"]["FixedWeights"]["metric"][defect][0] + 0.05:
        text += ", led by the strategies that rescue the drowned-out binary task"
    tuned_first = [n for n, t in sets.items() if _ranked(t)[0] == TUNED]
    if tuned_first:
        where = "both" if len(tuned_first) == len(sets) else times([TITLES.get(n, n) for n in tuned_first])
        lrs = sorted({_lr(sets[n]["tuning"]["chosen_lr"]) for n in tuned_first})
        spread = ("beyond the seed spread" if all(_leads_every_seed(sets[n], TUNED) for n in tuned_first)
                  else "though not in every seed")
        figures = times([_pct(_delta(sets[n], TUNED)) for n in tuned_first])
        text += (f". Equal weights with the learning rate tuned on a validation split ({', '.join(lrs)}) rank "
                 f"first on {where}, {spread} (Δm {figures})")
        if any(sets[n]["tuning"]["chosen_lr"] != report["learning_rate"] for n in tuned_first):
            text += f" — partly because the single-task baselines stayed at {lr}"
            trade = _tuned_trade(b) if second in tuned_first else None
            if trade:
                text += (f", and on the pair only by learning `{trade[0]}` better while `{trade[1]}` stays "
                         "worse than alone")
    losses, gradients = _costs(report, "losses"), _costs(report, "per-task gradients")
    text += (f". Per step, loss weightings cost {span(losses, '{:.1f}', '×')} `FixedWeights` and "
             f"per-task-gradient methods {span(gradients, '{:.1f}', '×')}.")
    nash, fixed = a["summary"]["NashMTL"]["rank"], a["summary"]["FixedWeights"]["rank"]
    total = len(_ranked(a))
    text += (" This disagrees with the published ranking, where gradient methods such as Nash-MTL lead "
             f"(here {_ordinal(nash)} of {total} on MultiMNIST), likely because of tiny trunks, short schedules "
             "and one shared learning rate" if nash > fixed else
             f" As in the published ranking, Nash-MTL is ahead of equal weights ({_ordinal(nash)} of {total} on "
             "MultiMNIST)")
    text += "; tables and caveats are in [`data/README.md`](data/README.md#benchmark-task-balancing)."
    return wrap(text) + "\n"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
