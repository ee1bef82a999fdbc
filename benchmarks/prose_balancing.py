"""Figures of ``benchmarks/results/balancing.json`` (``benchmarks/balancing.py``): balancing page, data/README.

Each task set's ``summary`` holds, per configuration, every task's metric,
Δm and the step time relative to ``FixedWeights`` as ``[mean, std]`` over
the seeds, and its rank by mean Δm; ``runs`` holds every training.
"""

from __future__ import annotations

import datetime
import re

from balancing import TUNED, WIDE, mean_over_tasks
from prose_text import strategy_cost

from keras_mtl.balancing import _STRATEGIES


def _average_size(report) -> list[str]:
    """The strategies whose update has the size of an average task gradient (from the run's notes)."""
    note = next(n for n in report["notes"] if " update at the size of an average" in n)
    return [name.strip() for name in re.split(r",| and ", note.split(" update at")[0]) if name.strip()]


def _kinds(report) -> dict[str, str]:
    """Each strategy's kind of cost, "losses" or "per-task gradients", asked of its class."""
    configs = {c for t in report["task_sets"].values() for c in t["summary"]}
    costs = {c: strategy_cost(c) for c in configs}
    return {c: "losses" if cost == "losses" else "per-task gradients" for c, cost in costs.items() if cost}


def _costs(report, kind) -> list[float]:
    """The step time relative to ``FixedWeights`` of every strategy of one kind, in every task set."""
    kinds = _kinds(report)
    return [entry["relative_step_time"][0] for t in report["task_sets"].values()
            for c, entry in t["summary"].items() if kinds.get(c) == kind and entry.get("relative_step_time")]


def _ranked(task_set) -> list[str]:
    return sorted((c for c, e in task_set["summary"].items() if "rank" in e),
                  key=lambda c: task_set["summary"][c]["rank"])


def _untuned(task_set) -> list[str]:
    return [c for c in _ranked(task_set) if c != TUNED]


def _delta(task_set, config) -> float:
    return task_set["summary"][config]["delta_m"][0]


def _leads_every_seed(task_set, config) -> bool:
    """``config`` has the lowest Δm of every configuration in every seed."""
    summary = task_set["summary"]
    mine = summary[config]["delta_m_per_seed"]
    return all(mine[i] < entry["delta_m_per_seed"][i] for c, entry in summary.items()
               if c != config and "delta_m_per_seed" in entry for i in range(len(mine)))


def _tuned_first(report) -> list[str]:
    """The task sets on which tuned equal weights rank first."""
    return [n for n, t in report["task_sets"].items() if _ranked(t)[0] == TUNED]


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


def _split_by_gap(values: dict[str, float]) -> tuple[list[str], list[str]]:
    """``values``' keys split at the widest gap of the sorted values: (high, low)."""
    ordered = sorted(values, key=values.get)
    gaps = [values[b] - values[a] for a, b in zip(ordered, ordered[1:])]
    cut = gaps.index(max(gaps)) + 1
    return ordered[cut:], ordered[:cut]


# -- data/README's tables and how they were measured -------------------------------------------

def _row(config: str, entry: dict, marked: list[str]) -> dict:
    kind = "single" if config.startswith("single_") else "tuned" if config == TUNED else "strategy"
    return {"config": config, "entry": entry, "kind": kind, "task": config.removeprefix("single_"),
            "marked": config in marked}


def _rows(task_set: dict, marked: list[str]) -> list[dict]:
    """A task set's table rows; a wide set's single-task networks as one row, each with its task mean."""
    rows = [_row(c, e, marked) for c, e in task_set["summary"].items()]
    if len(task_set["tasks"]) <= WIDE:
        return rows
    singles = [row for row in rows if row["kind"] == "single"]
    rows = [{**singles[0], "kind": "singles", "mean": mean_over_tasks(task_set, [r["config"] for r in singles])}] + [
        {**row, "mean": mean_over_tasks(task_set, [row["config"]])} for row in rows if row["kind"] != "single"]
    return rows


def tables(report: dict) -> dict:
    """data/README.md: one ranked table per task set (a set of more than ``WIDE`` tasks: their mean)."""
    marked = _average_size(report)
    return {"task_sets": {name: {**task_set, "wide": len(task_set["tasks"]) > WIDE,
                                 "rows": _rows(task_set, marked)}
                          for name, task_set in report["task_sets"].items()}}


def run(report: dict) -> dict:
    """data/README.md: how the tables were measured (seeds, date, machine, load)."""
    sets = report["task_sets"]
    first = next(iter(sets))
    tuning = sum(len(t["tuning"]["grid"]) for t in sets.values())
    machines = report.get("machines", [report["machine"]])
    rates = [m[k] for m in machines for k in ("matmul_gflops_2048_before", "matmul_gflops_2048_after")]
    loads = [m[k][0] for m in machines for k in ("loadavg_before", "loadavg_after")]
    return {"machine": report["machine"], "first": first, "runs": len(machines),
            "rates": [min(rates), max(rates)], "loads": [min(loads), max(loads)],
            "seeds": sorted({s for t in sets.values() for s in t["settings"]["seeds"]}),
            "day": datetime.datetime.fromisoformat(report["date"]).date().isoformat(),
            "minutes": report["total_seconds"] / 60, "processes": report.get("processes", 1),
            "trainings_per_seed": sorted({len({r["config"] for r in t["runs"]}) for t in sets.values()}),
            "tuning_per_set": tuning // len(sets), "trainings": sum(len(t["runs"]) for t in sets.values()) + tuning,
            "fixed_ms": [1000 * r["step_seconds"] for r in sets[first]["runs"] if r["config"] == "FixedWeights"]}


# -- the balancing page's paragraph ----------------------------------------------------------------

def _extremes(task_set) -> dict:
    """The best and the worst untuned configuration and their Δm."""
    best, worst = _untuned(task_set)[0], _untuned(task_set)[-1]
    return {"best": best, "worst": worst, "best_delta": _delta(task_set, best), "worst_delta": _delta(task_set, worst)}


def summary(report: dict) -> dict:
    """docs/topics/balancing.md: the paragraph on the measured strategies."""
    sets = report["task_sets"]
    (first, a), (second, b) = list(sets.items())[:2]
    close = _middle_half(_untuned(a))
    lead = _untuned(b)[0]
    defect = next(t for t, info in b["tasks"].items() if info["metric"] == "auc")
    tuned_first = _tuned_first(report)
    return {"report": report, "first": first, "second": second, "sets": list(sets),
            "settings": [t["settings"] for t in sets.values()],
            "beat": {n: below for n, t in sets.items() if (below := [c for c in _untuned(t) if _delta(t, c) < 0])},
            "extremes": {first: _extremes(a), second: _extremes(b)},
            "close_ranks": [a["summary"][close[0]]["rank"], a["summary"][close[-1]]["rank"]],
            "close_span": _delta(a, close[-1]) - _delta(a, close[0]),
            # the lead on the pair rescues the binary task that equal weights drown out
            "rescued": (b["summary"][lead]["metric"][defect][0]
                        > b["summary"]["FixedWeights"]["metric"][defect][0] + 0.05),
            "tuned_first": tuned_first, "tuned_everywhere": len(tuned_first) == len(sets),
            "tuned_lrs": [sets[n]["tuning"]["chosen_lr"] for n in tuned_first],
            "tuned_beyond_spread": all(_leads_every_seed(sets[n], TUNED) for n in tuned_first),
            "tuned_deltas": [_delta(sets[n], TUNED) for n in tuned_first],
            "tuned_lr_changed": any(sets[n]["tuning"]["chosen_lr"] != report["learning_rate"] for n in tuned_first),
            "trade": _tuned_trade(b) if second in tuned_first else None,
            "losses": _costs(report, "losses"), "gradients": _costs(report, "per-task gradients"),
            "nash": a["summary"]["NashMTL"]["rank"], "ranked": len(_ranked(a)),
            "nash_behind": a["summary"]["NashMTL"]["rank"] > a["summary"]["FixedWeights"]["rank"]}


# -- data/README's reading -------------------------------------------------------------------

def _tuned(report) -> dict:
    """Where tuned equal weights rank first, whether the grid's edge won, and what they traded on each set."""
    sets = report["task_sets"]
    lead = _tuned_first(report)
    top = [n for n in lead if sets[n]["tuning"]["chosen_lr"] == max(sets[n]["tuning"]["grid"])]
    trades = []
    for name in lead:
        trade = _tuned_trade(sets[name])
        if trade:
            summary, tasks = sets[name]["summary"], sets[name]["tasks"]
            trades.append({"name": name, "epochs": sets[name]["settings"]["epochs"],
                           "single_lr": summary["single_" + trade[0]]["lr"],
                           "tasks": [{"task": task, "metric": tasks[task]["metric"],
                                      "tuned": summary[TUNED]["metric"][task][0],
                                      "single": summary["single_" + task]["metric"][task][0]} for task in trade]})
    return {"lead": lead, "every_seed": all(_leads_every_seed(sets[n], TUNED) for n in lead),
            "both": len(lead) == len(sets) == 2, "top": top, "top_lrs": [sets[n]["tuning"]["chosen_lr"] for n in top],
            "single_lrs": sorted({e["lr"] for t in sets.values() for c, e in t["summary"].items()
                                  if c.startswith("single_")}), "trades": trades}


def _middle_half(ranked: list) -> list:
    """The middle half of a ranking: what the strategies typically reach, without the outliers at either end."""
    return ranked[len(ranked) // 4:len(ranked) - len(ranked) // 4]


def _first_set(report, name) -> dict:
    """The first task set: every strategy against the single tasks, the worst seed, the best strategy's lead."""
    task_set = report["task_sets"][name]
    summary = task_set["summary"]
    ranked = _untuned(task_set)
    deltas = [_delta(task_set, c) for c in ranked]
    worst_seed = [summary[c]["delta_m_per_seed"].index(max(summary[c]["delta_m_per_seed"])) for c in ranked]
    common = max(set(worst_seed), key=worst_seed.count)
    fixed = summary["FixedWeights"]["delta_m_per_seed"]
    best, rest = ranked[0], _middle_half(ranked)
    spread = _delta(task_set, rest[-1]) - _delta(task_set, rest[0])
    return {"name": name, "strategies": len(ranked), "deltas": deltas, "all_worse": min(deltas) > 0,
            "seeds": task_set["settings"]["seeds"], "worst_seed": common, "worst_seed_count": worst_seed.count(common),
            "fixed": fixed, "best": best, "best_rank": summary[best]["rank"],
            "beats": all(x < y for x, y in zip(summary[best]["delta_m_per_seed"], fixed, strict=True)),
            "rest": len(rest), "rest_ranks": [summary[rest[0]]["rank"], summary[rest[-1]]["rank"]], "spread": spread,
            "wider": sum(2 * summary[c]["delta_m"][1] > spread for c in rest)}


def _conflict(report, name) -> dict:
    """The scale-conflicting pair: the strategies that rescue the binary task against those that do not."""
    task_set = report["task_sets"][name]
    summary, tasks = task_set["summary"], task_set["tasks"]
    ranked = _untuned(task_set)
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
    upgrad = [r for r in task_set["runs"] if r["config"] == "UPGrad"]
    fixed = {r["seed"]: r for r in task_set["runs"] if r["config"] == "FixedWeights"}
    gaps = [abs(r["metric"][t] - fixed[r["seed"]]["metric"][t]) / abs(fixed[r["seed"]]["metric"][t])
            for r in upgrad for t in tasks]
    return {"name": name, "auc_task": auc_task, "mae_task": mae_task, "single_mae": single_mae,
            "rescue": {"configs": rescue, "auc": [auc[c] for c in rescue], "mae": [mae[c] for c in rescue],
                       "deltas": [_delta(task_set, c) for c in rescue]},
            "kept": {"auc": [auc[c] for c in kept], "deltas": [_delta(task_set, c) for c in kept]},
            "lost": lost, "worst": worst, "worst_delta": _delta(task_set, worst),
            "upgrad_gap": max(gaps) if upgrad and max(gaps) < 1e-2 else None}


def _published(report, first) -> dict:
    """Against the published ranking: Nash-MTL's rank, PCGrad against equal weights per seed, the budget."""
    sets = report["task_sets"]
    pcgrad = {}
    for name, task_set in sets.items():
        summary = task_set["summary"]
        pcgrad[name] = [f - p for p, f in zip(summary["PCGrad"]["delta_m_per_seed"],
                                              summary["FixedWeights"]["delta_m_per_seed"], strict=True)]
    return {"nash": sets[first]["summary"]["NashMTL"]["rank"], "ranked": len(_ranked(sets[first])), "pcgrad": pcgrad,
            "tuned_everywhere": all(_ranked(t)[0] == TUNED for t in sets.values()),
            "examples": [t["settings"]["train_examples"] for t in sets.values()],
            "epochs": [t["settings"]["epochs"] for t in sets.values()], "seeds": len(sets[first]["settings"]["seeds"])}


def _step_time(report, first) -> dict:
    """The cost per step of each kind of strategy, the extremes on the other sets, and the noise."""
    sets = report["task_sets"]
    configs = {c for t in sets.values() for c in t["summary"]}
    full = sorted(c for c in configs if strategy_cost(c) == "per-task gradients")
    a = sets[first]["summary"]
    others = {}
    for name, task_set in sets.items():
        if name != first:
            step = {c: task_set["summary"][c]["relative_step_time"][0] for c in full if c in task_set["summary"]}
            low, high = min(step, key=step.get), max(step, key=step.get)
            others[name] = {"low": low, "high": high, "low_step": step[low], "high_step": step[high]}
    stds = [(e["relative_step_time"][1], c, n) for n, t in sets.items() for c, e in t["summary"].items()
            if e.get("relative_step_time")]
    top, config, where = max(stds)
    return {"losses": _costs(report, "losses"), "gradients": _costs(report, "per-task gradients"),
            "full": [a[c]["relative_step_time"][0] for c in full if c in a], "others": others,
            "noisiest": {"std": top, "config": config, "set": where}, "tuned": a[TUNED]["relative_step_time"]}


def _wide_sets(report) -> list[dict]:
    """Each set of more than ``WIDE`` tasks: its task means, the strategies' spread and what tuning gave."""
    found = []
    for name, task_set in report["task_sets"].items():
        if len(task_set["tasks"]) <= WIDE:
            continue
        summary, strategies = task_set["summary"], _untuned(task_set)
        means = {c: mean_over_tasks(task_set, [c])[0] for c in strategies}
        deltas = {c: _delta(task_set, c) for c in strategies}
        fixed, best = deltas["FixedWeights"], strategies[0]
        near = [c for c in strategies if abs(deltas[c] - fixed) <= 1.0]
        found.append({"name": name, "tasks": len(task_set["tasks"]),
                      "metric": next(iter(task_set["tasks"].values()))["metric"],
                      "single": mean_over_tasks(task_set, [c for c in summary if c.startswith("single_")])[0],
                      "means": [min(means.values()), max(means.values())],
                      "deltas": [min(deltas.values()), max(deltas.values())],
                      "all_worse": min(deltas.values()) > 0, "strategies": len(strategies),
                      "near": len(near), "best": best, "best_delta": deltas[best], "fixed": fixed,
                      "tuned": mean_over_tasks(task_set, [TUNED])[0] if TUNED in summary else None,
                      "tuned_delta": _delta(task_set, TUNED) if TUNED in summary else None,
                      "tuned_lr": summary[TUNED]["lr"] if TUNED in summary else None})
    return found


def reading(report: dict) -> dict:
    """data/README.md: the reading of the two tables and its caveats, every figure from the run."""
    first, second = list(report["task_sets"])[:2]
    return {"first": first, "learning_rate": report["learning_rate"], "tuned": _tuned(report),
            "first_set": _first_set(report, first), "conflict": _conflict(report, second),
            "wide_sets": _wide_sets(report),
            "published": _published(report, first), "step_time": _step_time(report, first),
            "task_counts": sorted({len(t["tasks"]) for t in report["task_sets"].values()})}


# -- docs/topics/balancing.md: which to try first ------------------------------------------------

def choice(report: dict) -> dict:
    """Every configuration ranked by its mean rank over the task sets, with its cost per step.

    A configuration's rank in a set is its place by mean Δm there; one that a
    set did not run is left out of that set's mean. The step time is its
    median relative to ``FixedWeights``, as mean over the sets; the peak
    memory the largest of the sets'.
    """
    sets = report["task_sets"]
    configs = {c for t in sets.values() for c, e in t["summary"].items() if "rank" in e}
    rows = []
    for config in configs:
        entries = {name: t["summary"].get(config) for name, t in sets.items()}
        ranks = [e["rank"] for e in entries.values() if e and "rank" in e]
        times = [e["relative_step_time"][0] for e in entries.values() if e and e.get("relative_step_time")]
        peaks = [e["peak_memory_mb"][0] for e in entries.values() if e and e.get("peak_memory_mb")]
        rows.append({"config": config, "cost": strategy_cost(config.split(" ")[0]) or "losses",
                     "delta": {n: e["delta_m"][0] if e and "delta_m" in e else None for n, e in entries.items()},
                     "rank": {n: e["rank"] if e and "rank" in e else None for n, e in entries.items()},
                     "mean_rank": sum(ranks) / len(ranks), "sets_run": len(ranks),
                     "step_time": sum(times) / len(times) if times else None,
                     "peak_mb": max(peaks) if peaks else None})
    rows.sort(key=lambda r: (r["mean_rank"], r["config"]))
    untuned = [r for r in rows if r["config"] != TUNED]
    fixed = next(r for r in rows if r["config"] == "FixedWeights")
    cheap = [r for r in untuned if r["cost"] == "losses"]
    tuned = next((r for r in rows if r["config"] == TUNED), None)
    return {"sets": list(sets), "rows": rows, "top": untuned[:3], "tuned": tuned,
            "fixed": fixed, "best_cheap": cheap[0] if cheap else None,
            "ahead_of_fixed": [r for r in untuned if r["mean_rank"] < fixed["mean_rank"]],
            "seeds": len(next(iter(sets.values()))["settings"]["seeds"]), "configs": len(rows),
            "unranked": [name for name in _STRATEGIES if name not in configs]}
