"""notebooks/README figures of the notebooks' headline files, ``notebooks/results/NN_name.json``.

Each notebook (``notebooks/src/NN_name.py``) writes its headline numbers
there with the size it ran at (``size``) and its seeds; every sentence says
both. The files hold seed means only (``05`` also its seed-spread
verdicts), so no sentence claims more than a mean unless the file does.
"""

from __future__ import annotations


def street_scenes(result: dict) -> dict:
    aucs = result["test_auc"]
    return {"aucs": list(aucs.values()), "hardest": min(aucs, key=aucs.get),
            "agree": abs(result["loss_by_hand"] - result["loss_reported"]) < 1e-5}


def mtl_vs_separate(result: dict) -> dict:
    gaps = result["multi_minus_separate"]
    same = [v for k, v in gaps.items() if k.startswith("multi/")]
    equal = [v for k, v in gaps.items() if k.startswith("multi_equal_params/")]
    return {"same": same, "same_higher": sum(v > 0 for v in same), "equal": equal,
            "equal_higher": sum(v > 0 for v in equal), "worst": sorted(set(result["worst_task"].values())),
            "gradnorm": result.get("gradnorm_worst_task_auc") or {}}


def sharing(result: dict) -> dict:
    means = result["street_mean_auc"]
    transfer = result["stop_sign_transfer"]
    return {"means": means, "best": max(means, key=means.get), "worst": min(means, key=means.get),
            "transfer": transfer, "hurt": [a for a, v in transfer.items() if v < 0],
            "helped": [a for a, v in transfer.items() if v >= 0]}


def many_tasks(result: dict) -> dict:
    return {"together": result["together_auc"][str(result["most_others"])]}


def transfer_learning(result: dict) -> dict:
    return {"verdicts": sorted({entry["verdict"] for entry in result["by_source"].values()})}


def balancing(result: dict) -> dict:
    auc = result["defect_auc"]
    return {"best": max((n for n in auc if n != "FixedWeights"), key=auc.get)}


def real_digits(result: dict) -> dict:
    fractions = result["by_fraction"]
    ordered = sorted(fractions, key=float)
    scarce = [fractions[f] for f in ordered[:2]]
    ahead = [f["multi_minus_separate"] > 0 for f in scarce]
    trained = [f for f in ordered if fractions[f]["plain"] is not None]
    return {"scarce": scarce, "plentiful": fractions[ordered[-1]],
            "scarce_verdict": "beat" if all(ahead) else "trailed" if not any(ahead) else "level",
            "untrained": len(trained) < len(ordered),
            "first_trained": float(trained[0]) if trained else None,
            "last_trained": {**fractions[trained[-1]], "fraction": float(trained[-1])} if trained else None}


FIGURES = {"01_street_scenes": street_scenes, "02_mtl_vs_separate": mtl_vs_separate, "03_sharing": sharing,
           "04_many_tasks": many_tasks, "05_transfer_learning": transfer_learning, "06_balancing": balancing,
           "07_real_digits": real_digits}


def headlines(results: dict) -> dict:
    """notebooks/README.md: one sentence per notebook, from its headline file, with the size and seeds it ran at."""
    notebooks = {}
    for name, figures in FIGURES.items():
        if name in results:
            result = results[name]
            seeds = list(result["seeds"]) if "seeds" in result else [result["seed"]]
            notebooks[name] = {**result, **figures(result), "seeds": seeds}
    return {"sizes": sorted({r["size"] for r in results.values()}), "notebooks": notebooks}
