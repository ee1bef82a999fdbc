"""README and benchmarks/README figures of ``benchmarks/results/many_tasks.json`` (``benchmarks/many_tasks.py``)."""

from __future__ import annotations

from many_tasks import side_by_side
from prose_text import wrap

NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


def many_tasks_summary(report: dict) -> str:
    """README's sentences on many named tasks against one fused head, per backend."""
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
            + "The rounds ran on a shared machine; `benchmarks/README.md` has the table, the matmul "
            "rate beside each figure, and the caveats.")
    return wrap(text) + "\n"


def _measurements(report: dict) -> list[dict]:
    """Every timed measurement of every round (keras_mtl, plain, pipelines, ...)."""
    return [m for rounds in report["raw"].values() for r in rounds for row in r.get("rows", {}).values()
            for m in row.values() if isinstance(m, dict) and "matmul_gflops" in m]


def _versions(machine: dict) -> str:
    torch, _, build = machine["torch"].partition("+")
    return (f"TensorFlow {machine['tensorflow']}, Keras {machine['keras']}, JAX {machine['jax']}, "
            f"PyTorch {torch}" + (f" ({build.upper()})" if build else ""))


def many_tasks_section(report: dict) -> str:
    """benchmarks/README.md: when and how the run was made, how busy the machine was, and the table."""
    start, end = report["start"], report["end"]
    machine = report["machine"][report["backends"][0]]
    measured = _measurements(report)
    busy = sum(m["other_cores"] is not None and m["other_cores"] > report["settings"]["quiet_cores"]
               for m in measured)
    peak = max(float(m["loadavg"].split()[0]) for m in measured)
    rates = [m["matmul_gflops"] for m in measured if m["matmul_gflops"]]
    cpu = " ".join(machine["cpu"].replace("(R)", "").split()[:2])
    gpus = "no GPU" if not machine["gpus"] else f"{machine['gpus']} GPU(s)"
    text = (f"{start['time'][:10]}, {start['time'][11:16]}–{end['time'][11:16]} UTC ({report['wall_s'] / 60:.1f} "
            f"min), `{' '.join(report['command'])}`; {machine['cpu_count']} vCPU {cpu}, {gpus}; "
            f"{_versions(machine)}. The machine was shared: load average {start['loadavg'].split()[0]} at the "
            f"start, {end['loadavg'].split()[0]} at the end (up to {peak:.1f} in between); other processes used "
            f"more than {report['settings']['quiet_cores']:g} cores during {busy} of the {len(measured)} "
            f"measurements, and the 2048³ matmul rate ranged over {min(rates):.0f}–{max(rates):.0f} GFLOP/s. "
            "Every figure below is in `benchmarks/results/many_tasks.json`, with every round's raw numbers "
            "(rendered by `python benchmarks/prose.py`).")
    failed = [b for b in report["backends"] if b not in report["results"]]
    return wrap(text) + "\n\n" + side_by_side(report["results"], failed, markdown=True) + "\n"
