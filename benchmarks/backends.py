"""keras_mtl on every Keras backend, side by side: ``python benchmarks/run.py --backends ...``.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so every
backend runs in its own subprocess (``run.py --backend NAME``), one round
at a time and interleaved — round 1 on each backend, then round 2, … — so
that a slow spell of the machine does not fall on one backend only. Each
row keeps its fastest round (and shortest first epoch), as in
``harness.py``.

On each backend: keras_mtl with 4 tasks and 30 % missing labels (row a)
against plain Keras with 4 unmasked heads and the same metrics (b), and
keras_mtl with 100 named tasks (d) against one plain ``Dense(100)`` head
(d-dense). The plain PyTorch loop of ``torch_loop.py`` runs in the torch
subprocess (else in the first one). Every absolute figure is printed with
the ``tf.matmul`` rate measured just before it.

Targets: on every backend a / b ≥ 0.95; on the fastest backend (by row a),
a / the PyTorch loop ≥ 1.2. This module imports neither Keras nor a
framework.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from load import loadavg

__all__ = ["ROWS", "Target", "main", "merge", "side_by_side", "targets"]

ROWS = ("a", "b", "d", "d-dense")  # the Keras rows run on every backend
TORCH_ROW = "torch"  # the plain PyTorch loop (harness.TORCH_ROW)
RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run.py")
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")  # committed result files
MAX_WAIT = 30.0  # seconds each row waits for a quiet machine (the harness alone waits 180)


@dataclass(frozen=True)
class Target:
    """A ratio of two rows, each on its own backend, with an optional lower bound.

    Attributes:
        what: the comparison in words.
        row: ``(backend, row id)`` measured.
        baseline: ``(backend, row id)`` it is compared with.
        minimum: the ratio must be at least this (``None``: no bound).
    """

    what: str
    row: tuple[str, str]
    baseline: tuple[str, str]
    minimum: float | None = None


def _command(args: argparse.Namespace, backend: str, output: str, torch_loop: bool) -> list[str]:
    """The ``run.py`` command of one round on one backend."""
    command = [sys.executable, RUN, "--backend", backend, "--rounds", "1", "--retries", "0", "--output", output,
               "--only", "a,b,d" + (",p" if torch_loop else ""), "--rows", ",".join(ROWS)]
    max_wait = args.max_wait if args.max_wait is not None else (None if args.quick else MAX_WAIT)
    for flag, value in (("--steps", args.steps), ("--epochs", args.epochs), ("--max-wait", max_wait)):
        if value is not None:
            command += [flag, str(value)]
    return command + (["--quick"] if args.quick else [])


def _run_round(command: list[str], backend: str, output: str) -> dict:
    """Runs one round; returns its ``bench.json``, or ``{"error": …}`` if it failed."""
    os.makedirs(output, exist_ok=True)
    stderr_path = os.path.join(output, "stderr.txt")
    with open(stderr_path, "w") as stderr:
        status = subprocess.run(command, env=dict(os.environ, KERAS_BACKEND=backend), stderr=stderr,
                                check=False).returncode
    if status == 0:
        with open(os.path.join(output, "bench.json")) as f:
            return json.load(f)
    with open(stderr_path) as f:
        tail = f.read().strip().splitlines()[-15:]
    return {"error": f"exit status {status}", "stderr_tail": tail}


def merge(rounds: list[dict]) -> dict:
    """One backend's rounds merged: each row at its fastest round.

    Args:
        rounds: the ``bench.json`` of every round that succeeded.

    Returns:
        ``{row id: row}``, each row the fastest round's, with
        ``first_epoch_s`` the shortest of all rounds and ``rounds`` every
        round's ``value``, ``first_epoch_s``, ``matmul_gflops``,
        ``other_cores`` and ``loadavg``.
    """
    found: dict[str, list[dict]] = {}
    for report in rounds:
        for row in report["rows"]:
            found.setdefault(row["id"], []).append(row)
    merged = {}
    for row_id, rows in found.items():
        best = dict(max(rows, key=lambda r: r["value"]))
        best["first_epoch_s"] = min(r["first_epoch_s"] for r in rows)
        best["rounds"] = [{k: r.get(k) for k in ("value", "first_epoch_s", "matmul_gflops", "other_cores",
                                                  "loadavg")} for r in rows]
        merged[row_id] = best
    return merged


def targets(rows: dict[str, dict[str, dict]], backends: list[str]) -> list[Target]:
    """The comparisons whose rows were all measured (``rows``: backend → row id → row)."""
    found = []
    for backend in backends:
        have = rows.get(backend, {})
        if "a" in have and "b" in have:
            found.append(Target(f"{backend}: keras_mtl 4 tasks / plain Keras 4 heads", (backend, "a"),
                                (backend, "b"), 0.95))
        if "d" in have and "d-dense" in have:
            found.append(Target(f"{backend}: keras_mtl 100 tasks / plain Keras Dense(100)", (backend, "d"),
                                (backend, "d-dense")))
    torch_at = next((b for b in backends if TORCH_ROW in rows.get(b, {})), None)
    with_a = [b for b in backends if "a" in rows.get(b, {})]
    if torch_at and with_a:
        fastest = max(with_a, key=lambda b: rows[b]["a"]["value"])
        found.append(Target(f"fastest backend ({fastest}): keras_mtl 4 tasks / plain PyTorch loop",
                            (fastest, "a"), (torch_at, TORCH_ROW), 1.2))
    return found


def _ratio(target: Target, rows: dict[str, dict[str, dict]]) -> float:
    return rows[target.row[0]][target.row[1]]["value"] / rows[target.baseline[0]][target.baseline[1]]["value"]


def _met(target: Target, rows: dict[str, dict[str, dict]]) -> str:
    if target.minimum is None:
        return ""
    return "yes" if _ratio(target, rows) >= target.minimum else "NO"


def _table(header: list[str], lines: list[list[str]], markdown: bool) -> str:
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(out + ["| " + " | ".join(cells) + " |" for cells in lines])
    widths = [max(len(c) for c in column) for column in zip(header, *lines, strict=True)]
    text = ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
            for cells in [header, ["-" * w for w in widths], *lines]]
    return "\n".join(text)


def side_by_side(rows: dict[str, dict[str, dict]], backends: list[str], failed: Sequence[str] = (),
                 markdown: bool = False) -> str:
    """The rows of every backend side by side, then the ratios and targets.

    Each backend has three columns: steady examples/s (best round), first
    epoch in seconds (shortest), and the matmul rate measured just before
    the best round, in GFLOP/s. A row missing on a backend in ``failed``
    reads "failed".
    """
    header = ["row", "what"]
    for backend in backends:
        header += [f"{backend} ex/s", "first epoch (s)", "matmul GFLOP/s"]
    order = [*ROWS, TORCH_ROW]
    labels = {i: r["label"] for b in backends for i, r in rows.get(b, {}).items()}
    lines = []
    for row_id in [i for i in order if i in labels]:
        cells = [row_id, labels[row_id] + (" (no Keras)" if row_id == TORCH_ROW else "")]
        for backend in backends:
            row = rows.get(backend, {}).get(row_id)
            if row is None:
                cells += ["failed" if backend in failed else "", "", ""]
                continue
            matmul = row.get("matmul_gflops")
            cells += [f"{row['value']:,.0f}", f"{row['first_epoch_s']:.1f}",
                      "" if matmul is None else f"{matmul:,.0f}"]
        lines.append(cells)
    table = _table(header, lines, markdown)
    found = targets(rows, backends)
    checks = [[t.what, f"{_ratio(t, rows):.2f}", "" if t.minimum is None else f">= {t.minimum:g}",
               _met(t, rows)] for t in found]
    return table + "\n\n" + _table(["ratio", "value", "target", "met"], checks, markdown)


def main(args: argparse.Namespace) -> int:
    """Runs every backend's rounds, prints the side-by-side table, writes the results.

    Writes ``backends.json`` (every merged row, every round, the targets,
    each backend's machine record, the load average at start and end) and
    ``backends.md`` (the tables in Markdown) into ``args.output``; each
    round's own ``bench.json`` lies in ``<output>/<backend>/round_<n>/``.
    With ``args.json``, ``backends.json`` also goes to ``benchmarks/results/``.

    Returns:
        0 if every backend ran, 1 if one failed (its error is printed).
    """
    backends = args.backends
    torch_at = "torch" if "torch" in backends else backends[0]
    rounds = args.rounds or (1 if args.quick else 3)
    start = {"loadavg": loadavg(), "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    print(f"backends {','.join(backends)}: {rounds} round(s), loadavg {start['loadavg']}", flush=True)
    reports: dict[str, list[dict]] = {b: [] for b in backends}
    errors: dict[str, dict] = {}
    for n in range(1, rounds + 1):
        for backend in backends:
            output = os.path.join(args.output, backend, f"round_{n}")
            print(f"== round {n} of {rounds}: {backend} (loadavg {loadavg()})", flush=True)
            report = _run_round(_command(args, backend, output, backend == torch_at), backend, output)
            if "error" in report:
                errors.setdefault(backend, report)
                print(f"!! {backend} failed ({report['error']}):\n   " + "\n   ".join(report["stderr_tail"]),
                      flush=True)
            else:
                reports[backend].append(report)
    rows = {b: merge(r) for b, r in reports.items() if r}
    end = {"loadavg": loadavg(), "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    print()
    print(side_by_side(rows, backends, errors))
    print(f"\nloadavg {start['loadavg']} at the start ({start['time']}), {end['loadavg']} at the end "
          f"({end['time']})")
    os.makedirs(args.output, exist_ok=True)
    found = targets(rows, backends)
    report = {
        "start": start, "end": end, "backends": backends, "rounds": rounds,
        "machine": {b: r[0]["machine"] for b, r in reports.items() if r},
        "settings": {b: r[0]["settings"] for b, r in reports.items() if r},
        "rows": rows, "errors": errors,
        "targets": [dict(what=t.what, row=t.row, baseline=t.baseline, minimum=t.minimum,
                         ratio=_ratio(t, rows), met=_met(t, rows) or None) for t in found],
    }
    with open(os.path.join(args.output, "backends.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    with open(os.path.join(args.output, "backends.md"), "w") as f:
        f.write(side_by_side(rows, backends, errors, markdown=True) + "\n")
    print(f"Wrote {os.path.join(args.output, 'backends.json')} and backends.md")
    if args.json:  # the file the READMEs' figures are rendered from (benchmarks/prose.py)
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, "backends.json"), "w") as f:
            json.dump(report, f, indent=2, default=str)
        print(f"Wrote {os.path.join(RESULTS, 'backends.json')}: python benchmarks/prose.py renders the READMEs")
    return 1 if errors else 0
