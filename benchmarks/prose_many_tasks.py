"""Figures of ``benchmarks/results/many_tasks.json`` (``benchmarks/many_tasks.py``): docs and benchmarks README."""

from __future__ import annotations

from many_tasks import side_by_side
from prose_text import BACKEND_NAMES, times, wrap

NAMES = BACKEND_NAMES


def many_tasks_summary(report: dict) -> str:
    """docs/topics/many_tasks.md: the sentences on many named tasks against one fused head, per backend."""
    targets = {(t["backend"], t["tasks"], t["ratio"]): t for t in report["targets"]}
    tasks = report["tasks"]
    parts = []
    for backend in report["backends"]:
        steady = ", ".join(f"{targets[(backend, t, 'steady')]['value']:.2f}× at {t:,}" for t in tasks)
        first = ", ".join(f"{targets[(backend, t, 'first_epoch')]['value']:.2f}×" for t in tasks)
        parts.append(f"{NAMES[backend]} {steady} (first epoch {first})")
    missed = [f"{NAMES[t['backend']]} {t['tasks']:,} tasks {t['ratio'].replace('_', ' ')}"
              for t in report["targets"] if not t["met"]]
    start, end = report["start"], report["end"]
    settings = report["settings"]
    text = (f"Measured by `python benchmarks/many_tasks.py` ({start['time'][:10]}, "
            f"{settings['examples']:,} examples, batch {settings['batch_size']}, "
            f"{int(settings['missing'] * 100)} % of labels missing, no metrics; load average "
            f"{start['loadavg'].split()[0]} at the start, {end['loadavg'].split()[0]} at the end): named binary "
            f"tasks train at " + "; ".join(parts) + " the speed of one plain `Dense(T)` head with a masked "
            "loss (targets: ≥ 0.8×, first epoch ≤ 3×). "
            + (f"Missed: {', '.join(missed)}. " if missed else "Every target met. ")
            + f"The rounds ran on a {_machine_state(report)} machine; `benchmarks/README.md` has the table, "
            "the matmul rate beside each figure, and the caveats.")
    return wrap(text) + "\n"


def _measurements(report: dict) -> list[dict]:
    """Every timed measurement of every round (keras_mtl, plain, pipelines, ...)."""
    return [m for rounds in report["raw"].values() for r in rounds for row in r.get("rows", {}).values()
            for m in row.values() if isinstance(m, dict) and "matmul_gflops" in m]


def _busy(report: dict) -> int:
    """How many measurements ran while other processes used more than the quiet share of the cores."""
    return sum(m["other_cores"] is not None and m["other_cores"] > report["settings"]["quiet_cores"]
               for m in _measurements(report))


def _machine_state(report: dict) -> str:
    return "quiet" if _busy(report) == 0 else "shared"


def _versions(machine: dict) -> str:
    torch, _, build = machine["torch"].partition("+")
    return (f"TensorFlow {machine['tensorflow']}, Keras {machine['keras']}, JAX {machine['jax']}, "
            f"PyTorch {torch}" + (f" ({build.upper()})" if build else ""))


def many_tasks_section(report: dict) -> str:
    """benchmarks/README.md: when and how the run was made, how busy the machine was, and the table."""
    start, end = report["start"], report["end"]
    machine = report["machine"][report["backends"][0]]
    measured = _measurements(report)
    busy = _busy(report)
    peak = max(float(m["loadavg"].split()[0]) for m in measured)
    rates = [m["matmul_gflops"] for m in measured if m["matmul_gflops"]]
    cpu = " ".join(machine["cpu"].replace("(R)", "").split()[:2])
    gpus = "no GPU" if not machine["gpus"] else f"{machine['gpus']} GPU(s)"
    text = (f"{start['time'][:10]}, {start['time'][11:16]}–{end['time'][11:16]} UTC ({report['wall_s'] / 60:.1f} "
            f"min), `{' '.join(report['command'])}`; {machine['cpu_count']} vCPU {cpu}, {gpus}; "
            f"{_versions(machine)}. The machine was {_machine_state(report)}: load average "
            f"{start['loadavg'].split()[0]} at the start, {end['loadavg'].split()[0]} at the end "
            f"(up to {peak:.1f} in between); other processes used "
            f"more than {report['settings']['quiet_cores']:g} cores during {busy} of the {len(measured)} "
            f"measurements, and the 2048³ matmul rate ranged over {min(rates):.0f}–{max(rates):.0f} GFLOP/s. "
            "Every figure below is in `benchmarks/results/many_tasks.json`, with every round's raw numbers "
            "(rendered by `python benchmarks/prose.py`).")
    failed = [b for b in report["backends"] if b not in report["results"]]
    return wrap(text) + "\n\n" + side_by_side(report["results"], failed, markdown=True) + "\n"


def _round_ratios(report: dict, backend: str, tasks: str) -> list[float]:
    return [r["rows"][tasks]["keras_mtl"]["value"] / r["rows"][tasks]["plain"]["value"]
            for r in report["raw"][backend]]


def _missed(report: dict, backend: str) -> list[str]:
    names = {"steady": "steady-rate", "first_epoch": "first-epoch", "pipeline": "pipeline"}
    return [f"the {names.get(t['ratio'], t['ratio'])} target at {t['tasks']:,} tasks" for t in report["targets"]
            if t["backend"] == backend and t["met"] is False]


def _backend_bullet(report: dict, backend: str) -> str:
    results = report["results"][backend]
    few, many = sorted(results, key=int)[0], sorted(results, key=int)[-1]
    ratio = {t: results[t]["ratios"] for t in (few, many)}
    missed = _missed(report, backend)
    head = "meets every target" if not missed else "misses " + times(missed)
    rounds = " and ".join(", ".join(f"{v:.2f}" for v in _round_ratios(report, backend, t)) for t in (few, many))
    mode = ratio[many]["pipeline_mode"]
    other = "graph" if mode == "numpy" else "numpy"
    text = (f"**{NAMES[backend]}** {head}: {ratio[few]['steady']:.2f} × and {ratio[many]['steady']:.2f} × plain "
            f"Keras's steady rate at {int(few):,} and {int(many):,} tasks (round by round {rounds}), first epoch "
            f"{ratio[few]['first_epoch']:.2f} × and {ratio[many]['first_epoch']:.2f} × "
            f"({results[many]['keras_mtl']['first_epoch_s']:.1f} s against "
            f"{results[many]['plain']['first_epoch_s']:.1f} s at {int(many):,} tasks), "
            f"pipeline {ratio[many]['pipeline']:.1f} × what training consumes at "
            f"{int(many):,} tasks read {'in a graph' if mode == 'graph' else 'as NumPy'}")
    if other in results[many]["pipeline"]:
        text += (f" ({results[many]['pipeline'][other]['value'] / results[many]['keras_mtl']['value']:.1f} × read "
                 + ("as NumPy" if other == "numpy" else "in a graph") + ")")
    text += "."
    for tasks in (few, many):  # a best round measured busy against one measured quiet
        mine, plain = results[tasks]["keras_mtl"], results[tasks]["plain"]
        busy, quiet = sorted((mine, plain), key=lambda r: r["other_cores"], reverse=True)
        if busy["other_cores"] > 0.5 and quiet["other_cores"] < 0.1:
            who = "keras_mtl's" if busy is mine else "plain's"
            text += (f" At {int(tasks):,} tasks {who} best round ran while other processes used "
                     f"{busy['other_cores']:.1f} cores (matmul {busy['matmul_gflops']:.0f} GFLOP/s), the other's on "
                     f"a quiet machine (matmul {quiet['matmul_gflops']:.0f}).")
    plain_epochs = [v for r in report["raw"][backend] for v in r["rows"][many]["plain"]["steady"]]
    if max(plain_epochs) > 5 * min(plain_epochs):
        text += (f" The same plain model varied {min(plain_epochs):,.0f}–{max(plain_epochs):,.0f} examples/s "
                 f"between epochs at {int(many):,} tasks.")
    beaten = sum(r["rows"][t]["keras_mtl_metrics"]["value"] > r["rows"][t]["keras_mtl"]["value"]
                 for r in report["raw"][backend] for t in (few, many))
    if beaten:
        text += (f" In {beaten} of {2 * len(report['raw'][backend])} measurements keras_mtl with metrics outran "
                 "keras_mtl without them, a measure of the noise.")
    return text


def many_tasks_reading(report: dict) -> str:
    """benchmarks/README.md: per backend, the targets met or missed and what the rounds show."""
    items = [_backend_bullet(report, b) for b in report["backends"] if b in report["results"]]
    pipelines = [m["value"] for b in report["results"].values() for t in b.values()
                 for m in t["pipeline"].values()]
    most = str(max(int(t) for t in report["tasks"]))
    above = all(max(m["value"] for m in b[most]["pipeline"].values()) > b[most]["plain_pipeline"]["graph"]["value"]
                for b in report["results"].values())
    items.append(f"The pipeline alone reads {min(pipelines) / 1e6:.1f}–{max(pipelines) / 1e6:.1f} M examples/s at "
                 + " and ".join(f"{int(t):,}" for t in report["tasks"]) + " tasks on every backend"
                 + (f", above plain Keras's `from_tensor_slices` pipeline at {int(most):,} tasks" if above else "")
                 + ".")
    return "Reading:\n\n" + "\n".join(wrap(f"- {item}", indent="  ") for item in items) + "\n"
