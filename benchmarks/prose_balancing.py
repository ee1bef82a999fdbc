"""Figures of ``benchmarks/results/balancing.json`` (``benchmarks/balancing.py``): balancing page, data/README.

Each task set's ``summary`` holds, per configuration, every task's metric,
Δm and the step time relative to ``FixedWeights`` as ``[mean, std]`` over
the seeds, and its rank by mean Δm; ``runs`` holds every training.
"""

from __future__ import annotations

import datetime
import re

from prose_text import BACKEND_NAMES, bullets, span, strategy_cost, times, wrap

TUNED = "FixedWeights (tuned lr)"
TITLES = {"multi_mnist": "MultiMNIST", "scale_conflict": "scale_conflict"}
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


def _kinds(report) -> dict[str, str]:
    """Each strategy's kind of cost, "losses" or "per-task gradients", asked of its class."""
    kinds = {}
    for task_set in report["task_sets"].values():
        for config in task_set["summary"]:
            cost = strategy_cost(config)
            if cost is not None:
                kinds[config] = "losses" if cost == "losses" else "per-task gradients"
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
    backend = BACKEND_NAMES.get(machine["backend"], machine["backend"])
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
    kinds = _kinds(report)
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
    """docs/topics/balancing.md: the paragraph on the measured strategies."""
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
    text += "; tables and caveats are on the [data page](../data.md#benchmark-task-balancing)."
    return wrap(text) + "\n"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# -- data/README's reading -------------------------------------------------------------------

def _cost_cells(report) -> dict[str, str]:
    """Each strategy's whole cost ("losses", "per-task gradients", ...), asked of its class."""
    configs = {c for t in report["task_sets"].values() for c in t["summary"]}
    return {c: strategy_cost(c) for c in sorted(configs) if strategy_cost(c) is not None}


def _split_by_gap(values: dict[str, float]) -> tuple[list[str], list[str]]:
    """``values``' keys split at the widest gap of the sorted values: (high, low)."""
    ordered = sorted(values, key=values.get)
    gaps = [values[b] - values[a] for a, b in zip(ordered, ordered[1:])]
    cut = gaps.index(max(gaps)) + 1
    return ordered[cut:], ordered[:cut]


def _against_single(task_set, task) -> str:
    """``MAE 11.6 against 59.8``: the tuned row's metric against the single-task network's."""
    summary, metric = task_set["summary"], task_set["tasks"][task]["metric"]
    unit, scale, digits = UNITS[metric]
    digits = 2 if metric == "auc" else 1
    return (f"{unit.split()[0]} {summary[TUNED]['metric'][task][0] * scale:.{digits}f} against "
            f"{summary['single_' + task]['metric'][task][0] * scale:.{digits}f}")


def _tuned_bullet(report) -> str:
    sets = report["task_sets"]
    lead = [n for n, t in sets.items() if _ranked(t)[0] == TUNED]
    every = all(_leads_every_seed(sets[n], TUNED) for n in lead)
    where = "both sets" if len(lead) == len(sets) == 2 else times([TITLES.get(n, n) for n in lead])
    if not lead:
        return "**Tuned equal weights do not rank first** on any set."
    text = (f"**Tuned equal weights rank first on {where}**, "
            + ("beyond the seed spread (better than every other row in every seed)." if every else
               "though not in every seed."))
    top = [n for n in lead if sets[n]["tuning"]["chosen_lr"] == max(sets[n]["tuning"]["grid"])]
    single_lr = {e["lr"] for t in sets.values() for c, e in t["summary"].items() if c.startswith("single_")}
    if top:
        chosen = times(sorted({_lr(sets[n]["tuning"]["chosen_lr"]) for n in top}))
        text += (" Part of that is the learning rate rather than multi-task learning: the grid's largest value "
                 f"({chosen}) won on {'both sets' if len(top) == 2 else times([TITLES.get(n, n) for n in top])} — "
                 "the best setting may lie beyond the grid — and the single-task baselines it is measured "
                 f"against were trained at {times([_lr(v) for v in sorted(single_lr)])}.")
    for name in lead:
        trade = _tuned_trade(sets[name])
        if trade:
            summary = sets[name]["summary"]
            gained, lost = (_against_single(sets[name], task) for task in trade)
            text += (f" On `{name}` its Δm comes entirely from `{trade[0]}` ({gained} for the single-task "
                     f"network at {_lr(summary['single_' + trade[0]]['lr'])} in {sets[name]['settings']['epochs']} "
                     f"epochs), while `{trade[1]}` stays drowned out ({lost}): Δm averages a gain and a "
                     "loss, and tuning the learning rate does not resolve the conflict.")
    return text


def _first_set_bullet(report, name) -> str:
    task_set = report["task_sets"][name]
    summary = task_set["summary"]
    ranked = [c for c in _ranked(task_set) if c != TUNED]
    deltas = [_delta(task_set, c) for c in ranked]
    seeds = task_set["settings"]["seeds"]
    worst_seed = {c: summary[c]["delta_m_per_seed"].index(max(summary[c]["delta_m_per_seed"])) for c in ranked}
    text = (f"**{TITLES.get(name, name)}**: at lr {_lr(report['learning_rate'])} "
            + ("every strategy is worse than" if min(deltas) > 0 else "not every strategy is worse than")
            + f" the single-task networks (Δm {_pct(min(deltas))} to {_pct(max(deltas))}).")
    fixed = summary["FixedWeights"]["delta_m_per_seed"]
    common = max(set(worst_seed.values()), key=list(worst_seed.values()).count)
    count = list(worst_seed.values()).count(common)
    if count > len(ranked) / 2:
        which = "every strategy" if count == len(ranked) else f"{count} of the {len(ranked)} strategies"
        text += (f" Seed {seeds[common]} is the worst for {which} (e.g. `FixedWeights` "
                 + ", ".join(_minus(f"{v:+.1f}") for v in fixed) + f" % in seeds {', '.join(map(str, seeds))}), "
                 "so the ± largely reflects the seed, not the strategy.")
    best = ranked[0]
    beats = all(x < y for x, y in zip(summary[best]["delta_m_per_seed"], fixed, strict=True))
    rest = ranked[1:]
    spread = _delta(task_set, rest[-1]) - _delta(task_set, rest[0])
    wider = sum(2 * summary[c]["delta_m"][1] > spread for c in rest)
    share = "most rows" if wider > len(rest) / 2 else f"{wider} of {len(rest)} rows"
    text += (f" `{best}` (rank {summary[best]['rank']}) " + ("beats" if beats else "does not beat in every seed")
             + f" `FixedWeights`{' in every seed' if beats else ''}, but ranks {summary[rest[0]]['rank']}–"
             f"{summary[rest[-1]]['rank']} span only {spread:.1f} points"
             + (f", less than two standard deviations of {share}." if wider else "."))
    return text


def _conflict_bullet(report, name) -> str:
    task_set = report["task_sets"][name]
    summary, tasks = task_set["summary"], task_set["tasks"]
    ranked = [c for c in _ranked(task_set) if c != TUNED]
    auc_task = next(t for t, i in tasks.items() if i["metric"] == "auc")
    mae_task = next(t for t, i in tasks.items() if i["metric"] == "mae")
    auc = {c: summary[c]["metric"][auc_task][0] for c in ranked}
    mae = {c: summary[c]["metric"][mae_task][0] for c in ranked}
    single_mae = summary[f"single_{mae_task}"]["metric"][mae_task][0]
    rescue, stay = _split_by_gap(auc)
    worst = ranked[-1]
    lost = worst in stay and mae[worst] > single_mae
    kept = [c for c in stay if not (lost and c == worst)]
    rescue = sorted(rescue, key=ranked.index)

    def deltas(configs):
        values = [_delta(task_set, c) for c in configs]
        return f"Δm {_pct(min(values))} to {_pct(max(values))}"

    text = (f"**{name}**: the strategies split into those that rescue `{auc_task}` (AUC "
            f"{span([auc[c] for c in rescue])}: " + ", ".join(f"`{c}`" for c in rescue) + f"; {deltas(rescue)}) "
            f"at some cost to `{mae_task}` (MAE {span([mae[c] for c in rescue], '{:.1f}')} against "
            f"{single_mae:.1f}), and those that stay with equal weights' outcome (AUC "
            f"{span([auc[c] for c in kept])}; {deltas(kept)})")
    if lost:
        text += (f"; `{worst}` is worst ({_pct(_delta(task_set, worst))}), losing `{mae_task}` without saving "
                 f"`{auc_task}`")
    text += "."
    upgrad = [r for r in task_set["runs"] if r["config"] == "UPGrad"]
    fixed = {r["seed"]: r for r in task_set["runs"] if r["config"] == "FixedWeights"}
    gaps = [abs(r["metric"][t] - fixed[r["seed"]]["metric"][t]) / abs(fixed[r["seed"]]["metric"][t])
            for r in upgrad for t in tasks]
    if upgrad and max(gaps) < 1e-2:
        text += (f" `UPGrad` matches `FixedWeights` within {100 * max(gaps):.2g} % in every seed: when the two "
                 "gradients do not conflict it returns their mean, which Adam follows almost exactly like the sum "
                 "— here they apparently rarely conflict in direction; the conflict is one of scale.")
    return text


def _published_bullet(report, first) -> str:
    sets = report["task_sets"]
    a = sets[first]["summary"]
    text = ("**Against the published ranking**: papers on gradient aggregation (e.g. Nash-MTL, Navon et al., ICML "
            "2022; FAMO, Liu et al., NeurIPS 2023) report their methods ahead of linear scalarization on their "
            f"benchmarks; here `NashMTL` ranks {_ordinal(a['NashMTL']['rank'])} of {len(_ranked(sets[first]))} on "
            f"{TITLES.get(first, first)}")
    parts = []
    for name, task_set in sets.items():
        summary = task_set["summary"]
        better = [f - p for p, f in zip(summary["PCGrad"]["delta_m_per_seed"],
                                        summary["FixedWeights"]["delta_m_per_seed"], strict=True)]
        where = f"on `{name}`" if name != first else f"on {TITLES.get(name, name)}"
        parts.append(f"{where} `PCGrad` is better than `FixedWeights` in every seed, by "
                     f"{span(better, '{:.1f}')} points" if min(better) > 0 else
                     f"{where} `PCGrad` is no better than `FixedWeights`")
    text += "; " + "; ".join(parts) + "."
    first_everywhere = all(_ranked(t)[0] == TUNED for t in sets.values())
    examples = times(sorted({f"{t['settings']['train_examples']:,}" for t in sets.values()}))
    text += (" Kurin et al. (2022) found tuned unitary scalarization on par with such methods; here it is "
             + ("ahead of them, though it alone had its learning rate tuned." if first_everywhere else
                "not ahead of them everywhere.")
             + " Likely reasons: a very small budget ("
             + " or ".join(sorted({str(t["settings"]["epochs"]) for t in sets.values()}))
             + f" epochs, {examples} examples, "
             "final-epoch metrics), tiny trunks, one shared learning rate that suits some methods more than "
             f"others, only two tasks, and {len(sets[first]['settings']['seeds'])} seeds.")
    return text


def _time_bullet(report, first) -> str:
    sets = report["task_sets"]
    cells = _cost_cells(report)
    losses, gradients = _costs(report, "losses"), _costs(report, "per-task gradients")
    full = [c for c, cell in cells.items() if cell == "per-task gradients"]
    a = sets[first]["summary"]
    text = (f"**Time per step**: the loss weightings cost {span(losses, '{:.1f}', '×')} `FixedWeights`; the methods "
            f"that need one gradient per task cost {span(gradients, '{:.1f}', '×')} (on {TITLES.get(first, first)} "
            f"{span([a[c]['relative_step_time'][0] for c in full if c in a], '{:.1f}', '×')} for those that "
            "differentiate every shared parameter")
    for name, task_set in sets.items():
        if name == first:
            continue
        step = {c: task_set["summary"][c]["relative_step_time"][0] for c in full if c in task_set["summary"]}
        low, high = min(step, key=step.get), max(step, key=step.get)
        text += (f"; on the small trunk of `{name}` as little as {step[low]:.1f}× for `{low}` and up to "
                 f"{step[high]:.1f}× for `{high}`")
    stds = [(e["relative_step_time"][1], c, n) for n, t in sets.items() for c, e in t["summary"].items()
            if e.get("relative_step_time")]
    top, config, where = max(stds)
    tuned = a[TUNED]["relative_step_time"]
    text += (f"). The load on the machine makes these ratios noisy: their seed-to-seed std reaches {top:.1f} "
             f"(`{config}` on {TITLES.get(where, where)}), and the tuned row, the same network as `FixedWeights`, "
             f"measured {_pair(tuned)} there.")
    return text


def balancing_reading(report: dict) -> str:
    """data/README.md: the reading of the two tables and its caveats, every figure from the run."""
    first, second = list(report["task_sets"])[:2]
    items = [_tuned_bullet(report), _first_set_bullet(report, first), _conflict_bullet(report, second),
             _published_bullet(report, first), _time_bullet(report, first)]
    return "Reading, and the caveats that go with it:\n\n" + bullets(items) + "\n"
