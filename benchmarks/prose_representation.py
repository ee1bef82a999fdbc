"""Figures of ``benchmarks/results/representation.json`` (``benchmarks/representation.py``): the balancing page.

``step_ms`` holds, per configuration, the median milliseconds per training
step of ``FixedWeights`` and of every aggregator as ``<name>:parameters`` and
``<name>:representation``; ``matmul_gflops`` the rate before and after.
"""

from __future__ import annotations

import statistics

CONFIGS = ("multi_mnist", "mlp_10")  # the configurations the page shows, in its order


def _ratios(report, config, wrt) -> dict[str, float]:
    """Each aggregator's time per step ÷ ``FixedWeights``'s, for one ``wrt``."""
    times = report["step_ms"][config]
    base = times["FixedWeights"]
    return {key.split(":")[0]: value / base for key, value in times.items() if key.endswith(f":{wrt}")}


def representation(report: dict) -> dict:
    """docs/topics/balancing.md: the cost of ``wrt="parameters"`` against ``wrt="representation"``, and the reading."""
    configs = [c for c in CONFIGS if c in report["step_ms"]]
    ratios = {c: {wrt: _ratios(report, c, wrt) for wrt in ("parameters", "representation")} for c in configs}
    speedups = {c: {n: r["parameters"][n] / r["representation"][n] for n in r["parameters"]}
                for c, r in ratios.items()}
    return {"report": report, "configs": configs, "aggregators": list(ratios[configs[0]]["parameters"]),
            "ratios": ratios, "median_speedup": {c: statistics.median(s.values()) for c, s in speedups.items()},
            "slower": {c: [n for n, s in speedup.items() if s < 1] for c, speedup in speedups.items()}}
