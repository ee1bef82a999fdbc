"""docs/topics/balancing.md figures of ``benchmarks/results/representation.json`` (``benchmarks/representation.py``).

``step_ms`` holds, per configuration, the median milliseconds per training
step of ``FixedWeights`` and of every aggregator as ``<name>:parameters`` and
``<name>:representation``; ``matmul_gflops`` the rate before and after.
"""

from __future__ import annotations

import statistics

from prose_text import BACKEND_NAMES, span, wrap

CONFIGS = {"multi_mnist": "MultiMNIST CNN, 2 tasks", "mlp_10": "MLP 784→512→256, 10 tasks"}


def _ratios(report, config, wrt) -> dict[str, float]:
    """Each aggregator's time per step ÷ ``FixedWeights``'s, for one ``wrt``."""
    times = report["step_ms"][config]
    base = times["FixedWeights"]
    return {key.split(":")[0]: value / base for key, value in times.items() if key.endswith(f":{wrt}")}


def representation_summary(report: dict) -> str:
    """docs/topics/balancing.md: the cost of ``wrt="parameters"`` against ``wrt="representation"``, and the reading."""
    configs = [c for c in CONFIGS if c in report["step_ms"]]
    names = list(_ratios(report, configs[0], "parameters"))
    header = "| aggregator | " + " | ".join(f"{CONFIGS[c]}: parameters | representation" for c in configs) + " |"
    lines = [header, "|---|" + "---|---|" * len(configs)]
    for name in names:
        cells = []
        for config in configs:
            cells += [f"{_ratios(report, config, wrt)[name]:.2f}" for wrt in ("parameters", "representation")]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    sentences = []
    for config in configs:
        parameters, representation = (_ratios(report, config, w) for w in ("parameters", "representation"))
        speedups = {n: parameters[n] / representation[n] for n in names}
        slower = [f"`{n}`" for n, s in speedups.items() if s < 1]
        text = (f"on the {CONFIGS[config]} the step costs {span(parameters.values(), unit='×')} "
                f"`FixedWeights` with `wrt=\"parameters\"` and {span(representation.values(), unit='×')} "
                f"with `wrt=\"representation\"`, a median of {statistics.median(speedups.values()):.1f}× less")
        if slower:
            text += f" (except {', '.join(slower)}, slower there)"
        sentences.append(text)
    rates = report["matmul_gflops"]
    intro = (f"Measured with `python benchmarks/representation.py` on {BACKEND_NAMES[report['backend']]} "
             f"({report['date'][:10]}, {report['cpus']} cores, matmul {rates[0]:.0f} / {rates[1]:.0f} GFLOP/s "
             f"before / after, load average {report['loadavg_end'][0]:.1f} at the end), time per step ÷ "
             "`FixedWeights`" + (" (a `--quick` run, an eighth of the data: rough)" if report["quick"] else "") + ":")
    reading = "; ".join(sentences)
    return (wrap(intro) + "\n\n" + "\n".join(lines) + "\n\n" + wrap(reading[0].upper() + reading[1:] + ".")
            + "\n")
