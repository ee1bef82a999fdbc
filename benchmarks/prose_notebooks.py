"""notebooks/README figures of the notebooks' headline files, ``notebooks/results/NN_name.json``.

Each notebook (``notebooks/src/NN_name.py``) writes its headline numbers
there with the size it ran at (``size``) and its seeds; every sentence here
says both. The files hold seed means only (``05`` also its seed-spread
verdicts), so no sentence claims more than a mean unless the file does.
"""

from __future__ import annotations

import json

from prose_text import ROOT, bullets, times, wrap

NOTEBOOK_RESULTS = ROOT / "notebooks" / "results"


def load_notebooks() -> dict:
    """Every headline file of ``notebooks/results``, by notebook name."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(NOTEBOOK_RESULTS.glob("*.json"))}


def _seeds(result: dict) -> list[int]:
    return list(result["seeds"]) if "seeds" in result else [result["seed"]]


def _at(result: dict) -> str:
    """``size full, seeds 0, 1 and 2`` — how a figure was measured."""
    seeds = _seeds(result)
    names = times([str(s) for s in seeds])
    return f"size {result['size']}, seed{'s' if len(seeds) > 1 else ''} {names}"


def _mean_of(result: dict) -> str:
    count = len(_seeds(result))
    return "mean over the seeds" if count > 1 else "one seed, spread not measured"


def _sign(value: float, digits: int = 3) -> str:
    return f"{value:+.{digits}f}".replace("-", "−")


def street_scenes(result: dict) -> str:
    aucs = result["test_auc"]
    agree = abs(result["loss_by_hand"] - result["loss_reported"]) < 1e-5
    hardest = min(aucs, key=aucs.get)
    return (f"`01_street_scenes` ({_at(result)}): the masked loss by hand, {result['loss_by_hand']:.5f}, "
            + ("equals" if agree else "differs from") + f" keras_mtl's {result['loss_reported']:.5f}; trained "
            f"with labels missing, the four test AUCs are {min(aucs.values()):.3f}–{max(aucs.values()):.3f} "
            f"(hardest: {hardest.replace('_', ' ')})")


def mtl_vs_separate(result: dict) -> str:
    gaps = result["multi_minus_separate"]
    same = {k: v for k, v in gaps.items() if k.startswith("multi/")}
    better = sum(v > 0 for v in same.values())
    worst = sorted(set(result["worst_task"].values()))
    text = (f"`02_mtl_vs_separate` ({_at(result)}): one network minus four networks, mean AUC of the four "
            f"tasks at the same architecture, {_sign(min(same.values()))} to {_sign(max(same.values()))} over "
            f"{len(same)} cells ({_mean_of(result)}); higher in {better} of them; the task the shared network "
            f"serves worst: {times([t.replace('_', ' ') for t in worst])}")
    equal = {k: v for k, v in gaps.items() if k.startswith("multi_equal_params/")}
    if equal:
        text += (f"; at the same parameter count {_sign(min(equal.values()))} to {_sign(max(equal.values()))}, "
                 f"higher in {sum(v > 0 for v in equal.values())} of {len(equal)}")
    if result.get("gradnorm_worst_task_auc"):
        text += "; with GradNorm that task reached AUC " + ", ".join(
            f"{v:.3f} (relatedness {k[1:]})" for k, v in result["gradnorm_worst_task_auc"].items())
    return text


def sharing(result: dict) -> str:
    means = result["street_mean_auc"]
    best, worst = max(means, key=means.get), min(means, key=means.get)
    transfer = result["stop_sign_transfer"]
    hurt = [a for a, v in transfer.items() if v < 0]
    helped = [a for a, v in transfer.items() if v >= 0]
    text = (f"`03_sharing` ({_at(result)}): mean street-scenes AUC {means[worst]:.3f} ({worst}) to "
            f"{means[best]:.3f} ({best}); beside the unrelated parity task the stop sign's AUC changed by "
            + ", ".join(f"{_sign(v)} ({a})" for a, v in transfer.items()) + " against the stop sign alone")
    if hurt and helped:
        text += f": only {times(helped)} did not lose"
    elif hurt:
        text += ": every architecture lost"
    return text + f" ({_mean_of(result)})"


def many_tasks(result: dict) -> str:
    gain = result["gain_with_most_others"]
    together = result["together_auc"][str(result["most_others"])]
    return (f"`04_many_tasks` ({_at(result)}): the target tasks' mean AUC {result['alone_auc']:.3f} alone and "
            f"{together:.3f} beside {result['most_others']} other tasks ({_sign(gain)}, {_mean_of(result)})")


def transfer_learning(result: dict) -> str:
    sources = result["by_source"]
    verdicts = sorted({entry["verdict"] for entry in sources.values()})
    parts = [f"{_sign(entry['best_minus_scratch'])} from {source} (probe {_sign(entry['probe_gain_over_random'])})"
             + ("" if len(verdicts) == 1 else f", {entry['verdict']}") for source, entry in sources.items()]
    return (f"`05_transfer_learning` ({_at(result)}): AUC on B with 60 labels, best pretrained variant minus "
            f"training from scratch (a linear probe's gain over an untrained trunk in brackets): "
            + "; ".join(parts) + (f" ({verdicts[0]})" if len(verdicts) == 1 else ""))


def balancing(result: dict) -> str:
    auc, mae = result["defect_auc"], result["price_mae"]
    base = "FixedWeights"
    best = max((n for n in auc if n != base), key=auc.get)
    return (f"`06_balancing` ({_at(result)}): equal weights reach defect AUC {auc[base]:.3f} and price MAE "
            f"{mae[base]:.2f}; the best strategy for the drowned-out defect task, {best}, reaches "
            f"{auc[best]:.3f} ({_sign(auc[best] - auc[base])}) at price MAE {mae[best]:.2f} ({_mean_of(result)})")


def real_digits(result: dict) -> str:
    fractions = result["by_fraction"]
    ordered = sorted(fractions, key=float)
    scarce = ordered[:2]
    plentiful = ordered[-1]
    last = fractions[plentiful]
    ahead = [fractions[f]["multi_minus_separate"] > 0 for f in scarce]
    label = "beat" if all(ahead) else "trailed" if not any(ahead) else "was level with"
    pairs = ", ".join(f"{fractions[f]['multi']:.3f} against {fractions[f]['separate']:.3f} with "
                      f"~{fractions[f]['labels_per_task']}" for f in scarce) + " labels per task"
    text = (f"`07_real_digits` ({_at(result)}): the masked multi-task network {label} four separate networks "
            f"while labels were scarce — mean accuracy {pairs} ({_mean_of(result)}) — and the difference was "
            f"{_sign(last['multi_minus_separate'])} with ~{last['labels_per_task']:,} labels per task")
    empty = [f for f in ordered if fractions[f]["plain"] is None]
    trained = [f for f in ordered if fractions[f]["plain"] is not None]
    if empty:
        text += (f"; plain Keras, limited to the fully labelled rows, had none to train on below "
                 f"{float(trained[0]):.0%} of labels given" if trained else
                 "; plain Keras, limited to the fully labelled rows, had none to train on at any budget")
    if trained:
        top = trained[-1]
        text += (f" and reached {fractions[top]['plain']:.3f} on {fractions[top]['complete_rows']:,} such rows "
                 f"at {float(top):.0%}")
    return text.replace(" %", "%")


HEADLINES = {"01_street_scenes": street_scenes, "02_mtl_vs_separate": mtl_vs_separate, "03_sharing": sharing,
             "04_many_tasks": many_tasks, "05_transfer_learning": transfer_learning, "06_balancing": balancing,
             "07_real_digits": real_digits}


def notebook_headlines(results: dict) -> str:
    """notebooks/README.md: one sentence per notebook, from its headline file, with the size and seeds it ran at."""
    sizes = sorted({r["size"] for r in results.values()})
    at = f"size {sizes[0]}" if len(sizes) == 1 else f"sizes {times(sizes)}"
    intro = (f"Headline figures of the committed runs ({at}), from `notebooks/results/` by "
             "`python benchmarks/prose.py`; each notebook's own reading says which differences exceed the "
             "seed spread:")
    return wrap(intro) + "\n\n" + bullets([HEADLINES[name](results[name]) + "." for name in HEADLINES
                                           if name in results]) + "\n"
