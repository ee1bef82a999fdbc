"""Many named tasks against one plain Keras head: ``python benchmarks/many_tasks.py``.

With ``pack_labels=True`` ``kmtl.data.from_arrays`` packs the labels of a
label group into one matrix per batch and ``MultiTaskModel`` computes every task
with one output layer. This benchmark measures what T named binary tasks
cost against the fastest plain-Keras way to train T binary outputs: one
``Dense(T, sigmoid)`` head with a masked loss.

On each backend (``--backends``, one subprocess per backend and round, with
``KERAS_BACKEND`` set, the rounds interleaved as in ``backends.py``) and for
each T (``--tasks``), on the trunk 784 → Dense(256, relu) → Dense(256, relu),
batch 256, Adam, 16,384 synthetic examples (a random linear teacher, 80 % of
the labels missing), first epoch + 3:

* ``keras_mtl``: T tasks ``kmtl.Task(f"A{i}")``, ``metrics=[]``, fed by
  ``kmtl.data.from_arrays(..., batch_size=256, shuffle=True, seed=0, pack_labels=True)``;
* ``plain``: one ``Dense(T, sigmoid)`` head and a masked binary
  cross-entropy in ``keras.ops`` (NaN = missing, sum over labelled entries /
  batch size, keras_mtl's ``normalize="batch"``), fed by
  ``tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n, seed=0).batch(256)``;
* ``keras_mtl_metrics``: ``keras_mtl`` with its default metrics (masked AUC
  and accuracy), for information;
* ``pipeline``: the ``keras_mtl`` dataset alone, 3 passes, read inside a
  ``tf.function`` (as TensorFlow's ``fit`` reads it) and as NumPy batches (as
  the JAX and PyTorch backends' ``fit`` read it); ``plain_pipeline``: the
  plain dataset inside a ``tf.function``, for information.

Each training row reports its first epoch (tracing and compilation
included) and its steady rate: examples/s from the end of an epoch's first
step to the end of its last, best epoch after the first. Over the rounds a
row keeps its best steady rate and its shortest first epoch. Every row is
timed after a 2048³ ``tf.matmul`` measured in the same process, with the
load average and the CPU other processes used meanwhile.

Targets (printed, never asserted): ``keras_mtl`` / ``plain`` steady ≥ 0.8,
first epoch ≤ 3 × plain's, and from 1000 tasks the pipeline (read the way
that backend's ``fit`` reads it) ≥ 10 × what ``keras_mtl`` training consumes.

Example:
    ``python benchmarks/many_tasks.py --backends tensorflow --tasks 100 --rounds 1``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

from load import CpuMeter, loadavg, wait_until_quiet

__all__ = ["QUICK", "Settings", "Target", "main", "merge", "side_by_side", "targets"]

BACKENDS = ("tensorflow", "jax", "torch")
TRAINING_ROWS = ("keras_mtl", "plain", "keras_mtl_metrics")
PIPELINE_ROWS = ("pipeline", "plain_pipeline")
GRAPH_READ = ("tensorflow",)  # backends whose fit reads the tf.data batches inside a graph


@dataclass(frozen=True)
class Settings:
    """Sizes of a run.

    Attributes:
        examples: training examples (full batches only, for the steady rate).
        batch_size: examples per step.
        epochs: epochs per training row, the first included.
        input_dim: input features.
        hidden: units of the trunk's relu layers.
        missing: share of the labels missing.
        pipeline_passes: timed passes over the data of each pipeline row
            (after one untimed pass).
        matmul_size: side of the square ``tf.matmul`` timed before each row.
        matmul_repeats: timed repetitions of it (the best counts).
        max_wait: seconds to wait, before each row, for other processes to
            use at most ``quiet_cores``.
        quiet_cores: other processes' CPU use counted as quiet.
        warm_up_examples: examples of the untimed training that opens each
            process (0: none).
        seed: seed of the data, of the shuffles and of every model.
    """

    examples: int = 16384
    batch_size: int = 256
    epochs: int = 4
    input_dim: int = 784
    hidden: tuple[int, ...] = (256, 256)
    missing: float = 0.8
    pipeline_passes: int = 3
    matmul_size: int = 2048
    matmul_repeats: int = 3
    max_wait: float = 10.0
    quiet_cores: float = 0.5
    warm_up_examples: int = 2048
    seed: int = 0


QUICK = Settings(examples=768, epochs=2, pipeline_passes=1, matmul_size=256, matmul_repeats=1, max_wait=0.0,
                 warm_up_examples=256)
"""Tiny settings that run every row in seconds (numbers meaningless)."""
QUICK_TASKS = (20, 40)
TASKS = (100, 1000)


# -- one backend, one round (the subprocess) --------------------------------------------

def _worker(settings: Settings, tasks: Sequence[int], round_: int, output: str) -> None:
    """Measures every row of one backend for each T and writes them to ``output``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf
    from harness import StepClock, machine_info, matmul_gflops
    from keras import ops

    import keras_mtl as kmtl

    n, d, width = settings.examples, settings.input_dim, max(tasks)
    rng = np.random.default_rng(settings.seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    teacher = rng.standard_normal((d, width), dtype=np.float32)
    complete = (x @ teacher > 0).astype(np.float32)
    labels = np.where(rng.random((n, width)) < settings.missing, np.float32(np.nan), complete)

    def masked_binary_crossentropy(y_true, y_pred):
        # Per example Σ over labelled entries; Keras's mean over the batch then gives Σ / m.
        labelled = ops.logical_not(ops.isnan(y_true))
        y = ops.where(labelled, y_true, 0.0)
        p = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
        entries = -(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p))
        return ops.sum(ops.where(labelled, entries, 0.0), axis=-1)

    def trunk():
        inputs = keras.Input((d,), name="x")
        features = inputs
        for i, units in enumerate(settings.hidden):
            features = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(features)
        return inputs, features

    def kmtl_tasks(count):
        return [kmtl.Task(f"A{i}") for i in range(count)]

    def kmtl_dataset(count, examples=n):
        columns = {f"A{i}": labels[:examples, i] for i in range(count)}
        return kmtl.data.from_arrays(x[:examples], columns, kmtl_tasks(count), batch_size=settings.batch_size,
                                     shuffle=True, seed=settings.seed, pack_labels=True)

    def plain_dataset(count, examples=n):
        return (tf.data.Dataset.from_tensor_slices((x[:examples], labels[:examples, :count]))
                .shuffle(examples, seed=settings.seed).batch(settings.batch_size))

    def kmtl_row(count, metrics, examples=n):
        inputs, features = trunk()
        model = kmtl.MultiTaskModel(inputs, features, kmtl_tasks(count))
        model.compile(optimizer="adam", metrics=metrics)
        return model, lambda: kmtl_dataset(count, examples)

    def plain_row(count, examples=n):
        inputs, features = trunk()
        model = keras.Model(inputs, keras.layers.Dense(count, activation="sigmoid", name="tasks")(features))
        model.compile(optimizer="adam", loss=masked_binary_crossentropy)
        return model, lambda: plain_dataset(count, examples)

    def fresh():
        keras.backend.clear_session()
        keras.utils.set_random_seed(settings.seed)

    def before():
        other_before = wait_until_quiet(settings.max_wait, settings.quiet_cores, lambda line: print(line, flush=True))
        return {"loadavg": loadavg(), "other_cores_before": other_before,
                "matmul_gflops": matmul_gflops(settings.matmul_size, settings.matmul_repeats)[0]}

    def train(build):
        fresh()
        start = time.perf_counter()
        model, make_dataset = build()
        dataset = make_dataset()
        build_s = time.perf_counter() - start
        record = before()
        clock, meter = StepClock(), CpuMeter()
        start = time.perf_counter()
        history = model.fit(dataset, epochs=settings.epochs, verbose=0, callbacks=[clock], shuffle=False)
        record["other_cores"] = meter.stop()
        ends = [start, *clock.epoch_ends]
        epoch_s = [b - a for a, b in zip(ends[:-1], ends[1:], strict=True)]
        steady = [clock.steady_rate(e, settings.batch_size) for e in range(len(epoch_s))]
        timed = [r for r in steady[1:] if r is not None]
        return dict(record, build_s=build_s, first_epoch_s=epoch_s[0], epoch_s=epoch_s, steady=steady,
                    value=max(timed) if timed else n / min(epoch_s[1:]),
                    loss=[float(v) for v in history.history["loss"]], jit_compile=bool(model.jit_compile))

    def drain_in_graph(dataset):
        @tf.function
        def drain():
            iterator = iter(dataset)
            first = next(iterator)
            with tf.control_dependencies(tf.nest.flatten(first)):
                start = tf.timestamp()
            count = tf.constant(0, tf.int64)
            for element in iterator:
                count += tf.shape(element[0], out_type=tf.int64)[0]
            with tf.control_dependencies([count]):
                return count, tf.timestamp() - start

        drain()  # traced, untimed
        passes = []
        for _ in range(settings.pipeline_passes):
            begin = time.perf_counter()
            after_first, elapsed = (float(v.numpy()) for v in drain())
            passes.append({"wall_s": time.perf_counter() - begin, "after_first": after_first,
                           "elapsed_s": elapsed, "rate": after_first / elapsed})
        return passes

    def drain_as_numpy(dataset):
        passes = []
        for timed in [False] + [True] * settings.pipeline_passes:
            begin = time.perf_counter()
            batches = dataset.as_numpy_iterator()
            first = next(batches)
            start, count = time.perf_counter(), 0
            for batch in batches:
                count += len(batch[0])
            end = time.perf_counter()
            if timed:
                passes.append({"wall_s": end - begin, "after_first": count, "elapsed_s": end - start,
                               "rate": count / (end - start)})
            del first
        return passes

    def pipeline(make_dataset, numpy_too):
        fresh()
        record = before()
        meter = CpuMeter()
        dataset = make_dataset()
        record["graph"] = drain_in_graph(dataset)
        if numpy_too:
            record["numpy"] = drain_as_numpy(dataset)
        record["other_cores"] = meter.stop()
        for mode in ("graph", "numpy"):
            if mode in record:
                record[f"{mode}_value"] = max(p["rate"] for p in record[mode])
        return record

    backend = keras.backend.backend()
    machine = machine_info()
    print(f"  {backend}, round {round_}: loadavg {machine['loadavg_start']}", flush=True)
    if settings.warm_up_examples:  # the process's first training pays for thread pools and kernels
        for build in (lambda: kmtl_row(min(tasks), [], settings.warm_up_examples),
                      lambda: plain_row(min(tasks), settings.warm_up_examples)):
            fresh()
            model, make_dataset = build()
            model.fit(make_dataset(), epochs=1, verbose=0)
    found = {}
    for count in tasks:
        # Alternate which model trains first, so neither always runs right after the warm-up.
        order = ("keras_mtl", "plain") if round_ % 2 else ("plain", "keras_mtl")
        builds = {"keras_mtl": lambda c=count: kmtl_row(c, []), "plain": lambda c=count: plain_row(c),
                  "keras_mtl_metrics": lambda c=count: kmtl_row(c, None)}
        rows = {}
        for name in (*order, "keras_mtl_metrics"):
            rows[name] = train(builds[name])
            row = rows[name]
            print(f"  {backend} T={count} {name:<18} {row['value']:>9,.0f} ex/s, first epoch "
                  f"{row['first_epoch_s']:.1f} s, matmul {row['matmul_gflops']:,.0f} GFLOP/s, other cores "
                  f"{row['other_cores']:.1f}, loss {row['loss'][0]:.3f} -> {row['loss'][-1]:.3f}", flush=True)
        rows["pipeline"] = pipeline(lambda c=count: kmtl_dataset(c), numpy_too=True)
        rows["plain_pipeline"] = pipeline(lambda c=count: plain_dataset(c), numpy_too=False)
        for name in PIPELINE_ROWS:
            row = rows[name]
            numpy_rate = f", as NumPy {row['numpy_value']:,.0f}" if "numpy_value" in row else ""
            print(f"  {backend} T={count} {name:<18} {row['graph_value']:>9,.0f} ex/s in a graph{numpy_rate}, "
                  f"matmul {row['matmul_gflops']:,.0f} GFLOP/s", flush=True)
        found[str(count)] = rows
    machine["loadavg_end"] = loadavg()
    with open(output, "w") as f:
        json.dump({"backend": backend, "round": round_, "machine": machine, "rows": found}, f, indent=2)


# -- merging rounds, ratios, targets -------------------------------------------------

def pipeline_mode(backend: str) -> str:
    """How that backend's ``fit`` reads the ``tf.data`` batches: ``"graph"`` or ``"numpy"``."""
    return "graph" if backend in GRAPH_READ else "numpy"


def merge(rounds: Sequence[dict], backend: str) -> dict:
    """One backend's rounds merged: ``{T: {row: best, ..., "ratios": {...}}}``.

    A training row keeps its best steady rate and, separately, its shortest
    first epoch, each with the matmul rate, other processes' CPU and the
    round it came from; a pipeline row its best pass in each reading mode.
    Ratios: ``steady`` = keras_mtl / plain steady rates, ``first_epoch`` =
    keras_mtl / plain first epochs, ``pipeline`` = the pipeline read as this
    backend's ``fit`` reads it / keras_mtl's steady rate.
    """
    merged = {}
    for count in rounds[0]["rows"]:
        best = {}
        for name in TRAINING_ROWS:
            measured = [(r["round"], r["rows"][count][name]) for r in rounds]
            fastest_round, fastest = max(measured, key=lambda m: m[1]["value"])
            quickest_round, quickest = min(measured, key=lambda m: m[1]["first_epoch_s"])
            best[name] = {"value": fastest["value"], "round": fastest_round,
                          "matmul_gflops": fastest["matmul_gflops"], "other_cores": fastest["other_cores"],
                          "first_epoch_s": quickest["first_epoch_s"], "first_epoch_round": quickest_round,
                          "first_epoch_matmul_gflops": quickest["matmul_gflops"]}
        for name in PIPELINE_ROWS:
            best[name] = {}
            for mode in ("graph", "numpy"):
                measured = [(r["round"], r["rows"][count][name]) for r in rounds if mode in r["rows"][count][name]]
                if measured:
                    fastest_round, fastest = max(measured, key=lambda m: m[1][f"{mode}_value"])
                    best[name][mode] = {"value": fastest[f"{mode}_value"], "round": fastest_round,
                                        "matmul_gflops": fastest["matmul_gflops"]}
        mode = pipeline_mode(backend)
        best["ratios"] = {
            "steady": best["keras_mtl"]["value"] / best["plain"]["value"],
            "first_epoch": best["keras_mtl"]["first_epoch_s"] / best["plain"]["first_epoch_s"],
            "pipeline": best["pipeline"][mode]["value"] / best["keras_mtl"]["value"],
            "pipeline_mode": mode,
        }
        merged[count] = best
    return merged


@dataclass(frozen=True)
class Target:
    """A bound on one ratio of one backend and T.

    Attributes:
        ratio: key in ``merge``'s ``ratios``.
        what: the ratio in words.
        minimum: the ratio must be at least this (``None``: no lower bound).
        maximum: the ratio must be at most this (``None``: no upper bound).
    """

    ratio: str
    what: str
    minimum: float | None = None
    maximum: float | None = None

    def bound(self) -> str:
        return f">= {self.minimum:g}" if self.minimum is not None else f"<= {self.maximum:g}"

    def met(self, value: float) -> bool:
        return value >= self.minimum if self.minimum is not None else value <= self.maximum


STEADY = Target("steady", "keras_mtl / plain steady examples/s", minimum=0.8)
FIRST_EPOCH = Target("first_epoch", "keras_mtl / plain first epoch", maximum=3.0)
PIPELINE = Target("pipeline", "pipeline / keras_mtl training examples/s", minimum=10.0)
PIPELINE_FROM = 1000  # tasks from which the pipeline target applies


def targets(count: int) -> list[Target]:
    """The targets that apply to ``count`` tasks."""
    return [STEADY, FIRST_EPOCH] + ([PIPELINE] if count >= PIPELINE_FROM else [])


def verdicts(results: dict[str, dict]) -> list[dict]:
    """Every target of every backend and T, with its ratio and whether it is met."""
    found = []
    for backend, by_count in results.items():
        for count, rows in by_count.items():
            for target in targets(int(count)):
                value = rows["ratios"][target.ratio]
                found.append({"backend": backend, "tasks": int(count), "ratio": target.ratio, "what": target.what,
                              "value": value, "bound": target.bound(), "met": target.met(value)})
    return found


# -- the table ---------------------------------------------------------------------------

def _cell(value: float, count: int, target: Target) -> str:
    if target not in targets(count):
        return f"{value:.2f}"
    return f"{value:.2f} " + ("yes" if target.met(value) else "NO")


def _table(header: list[str], lines: list[list[str]], markdown: bool) -> str:
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(out + ["| " + " | ".join(cells) + " |" for cells in lines])
    widths = [max(len(c) for c in column) for column in zip(header, *lines, strict=True)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
                     for cells in [header, ["-" * w for w in widths], *lines])


def side_by_side(results: dict[str, dict], failed: Sequence[str] = (), markdown: bool = False) -> str:
    """One line per backend and T: rates, first epochs, ratios with their targets, machine.

    "matmul GFLOP/s" and "other cores" are those of the best rounds of
    keras_mtl and plain (keras_mtl / plain); "pipeline" is the pipeline read
    in a graph / as NumPy, and "pipeline ÷ training" uses the reading of that
    backend's ``fit`` (marked *).
    """
    header = ["backend", "tasks", "keras_mtl ex/s", "plain ex/s", "ratio (>= 0.8)", "keras_mtl 1st epoch (s)",
              "plain 1st epoch (s)", "ratio (<= 3)", "keras_mtl + metrics ex/s", "pipeline ex/s graph / NumPy",
              f"pipeline ÷ training (>= 10 from {PIPELINE_FROM} tasks)", "plain pipeline ex/s", "matmul GFLOP/s",
              "other cores"]
    lines = []
    for backend, by_count in results.items():
        for count, rows in by_count.items():
            kmtl, plain, ratios = rows["keras_mtl"], rows["plain"], rows["ratios"]
            reads = {m: f"{rows['pipeline'][m]['value']:,.0f}" + ("*" if m == ratios["pipeline_mode"] else "")
                     for m in ("graph", "numpy")}
            lines.append([
                backend, count, f"{kmtl['value']:,.0f}", f"{plain['value']:,.0f}",
                _cell(ratios["steady"], int(count), STEADY), f"{kmtl['first_epoch_s']:.1f}",
                f"{plain['first_epoch_s']:.1f}", _cell(ratios["first_epoch"], int(count), FIRST_EPOCH),
                f"{rows['keras_mtl_metrics']['value']:,.0f}", f"{reads['graph']} / {reads['numpy']}",
                _cell(ratios["pipeline"], int(count), PIPELINE),
                f"{rows['plain_pipeline']['graph']['value']:,.0f}",
                f"{kmtl['matmul_gflops']:,.0f} / {plain['matmul_gflops']:,.0f}",
                f"{kmtl['other_cores']:.1f} / {plain['other_cores']:.1f}"])
    for backend in failed:
        lines.append([backend, "failed"] + [""] * (len(header) - 2))
    return _table(header, lines, markdown)


# -- the parent process ------------------------------------------------------------------

def _round(settings_json: str, tasks: Sequence[int], backend: str, round_: int, directory: str) -> dict:
    """Runs one round on one backend in a subprocess; its report, or ``{"error": …}``."""
    output = os.path.join(directory, f"{backend}_round_{round_}.json")
    stderr_path = output[:-5] + ".stderr.txt"
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--round", str(round_), "--settings",
               settings_json, "--tasks", ",".join(map(str, tasks)), "--output", output]
    with open(stderr_path, "w") as stderr:
        status = subprocess.run(command, env=dict(os.environ, KERAS_BACKEND=backend), stderr=stderr,
                                check=False).returncode
    if status == 0:
        with open(output) as f:
            return json.load(f)
    with open(stderr_path) as f:
        return {"error": f"exit status {status}", "stderr_tail": f.read().strip().splitlines()[-15:]}


def _now() -> dict:
    return {"loadavg": loadavg(), "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark, prints the table, writes the JSON report.

    Returns:
        0 if every backend ran every round, 1 otherwise (the errors are
        printed and kept in the report).
    """
    args = _parser().parse_args(argv)
    settings = QUICK if args.quick else Settings()
    if args.max_wait is not None:
        settings = dataclasses.replace(settings, max_wait=args.max_wait)
    tasks = args.tasks or (QUICK_TASKS if args.quick else TASKS)
    if args.worker:
        _worker(Settings(**{**json.loads(args.settings), "hidden": tuple(json.loads(args.settings)["hidden"])}),
                tasks, args.round, args.output)
        return 0
    backends = args.backends or list(BACKENDS)
    rounds = args.rounds or (1 if args.quick else 3)
    start = _now()
    wall = time.perf_counter()
    print(f"many tasks: backends {','.join(backends)}, T = {','.join(map(str, tasks))}, {rounds} round(s), "
          f"{settings.examples} examples, {settings.epochs} epochs; loadavg {start['loadavg']}", flush=True)
    raw: dict[str, list[dict]] = {b: [] for b in backends}
    errors: dict[str, list[dict]] = {}
    settings_json = json.dumps(dataclasses.asdict(settings))
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(1, rounds + 1):
            for backend in backends:
                print(f"== round {round_} of {rounds}: {backend} (loadavg {loadavg()})", flush=True)
                report = _round(settings_json, tasks, backend, round_, scratch)
                if "error" in report:
                    errors.setdefault(backend, []).append(dict(report, round=round_))
                    print(f"!! {backend} failed ({report['error']}):\n   " + "\n   ".join(report["stderr_tail"]),
                          flush=True)
                else:
                    raw[backend].append(report)
    results = {b: merge(r, b) for b, r in raw.items() if r}
    end = _now()
    table = side_by_side(results, [b for b in backends if b not in results])
    found = verdicts(results)
    print()
    print(table)
    print()
    for v in found:
        print(f"  {v['backend']}, {v['tasks']} tasks: {v['what']} {v['value']:.2f} (target {v['bound']}): "
              + ("met" if v["met"] else "NOT met"))
    elapsed = time.perf_counter() - wall
    print(f"\nloadavg {start['loadavg']} at the start ({start['time']}), {end['loadavg']} at the end "
          f"({end['time']}); {elapsed / 60:.1f} min")
    report = {
        "command": ["python", "benchmarks/many_tasks.py", *(argv if argv is not None else sys.argv[1:])],
        "start": start, "end": end, "wall_s": elapsed, "backends": backends, "tasks": list(tasks),
        "rounds": rounds, "settings": dataclasses.asdict(settings),
        "machine": {b: r[0]["machine"] for b, r in raw.items() if r},
        "results": results, "targets": found, "raw": raw, "errors": errors,
        "table_markdown": side_by_side(results, [b for b in backends if b not in results], markdown=True),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    print(f"Wrote {args.json}")
    return 1 if errors else 0


def _list(kind):
    def parse(text: str) -> list:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        if not values or len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"takes distinct comma-separated values; got {text!r}")
        return values
    return parse


def _backends(text: str) -> list[str]:
    names = _list(str)(text.lower())
    if set(names) - set(BACKENDS):
        raise argparse.ArgumentTypeError(f"takes names among {','.join(BACKENDS)}; got {text!r}")
    return names


def _tasks(text: str) -> list[int]:
    counts = _list(int)(text)
    if min(counts) < 1:
        raise argparse.ArgumentTypeError(f"task counts must be positive; got {text!r}")
    return counts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/many_tasks.py",
        description="T named keras_mtl tasks against one plain Keras Dense(T) head with a masked loss, "
                    "on every backend, with the machine's matmul rate beside every row.")
    parser.add_argument("--backends", type=_backends, help="comma-separated, default tensorflow,jax,torch")
    parser.add_argument("--tasks", type=_tasks,
                        help=f"comma-separated task counts, default {','.join(map(str, TASKS))} "
                             f"({','.join(map(str, QUICK_TASKS))} with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds per backend (numbers meaningless)")
    parser.add_argument("--json", default=os.path.join("bench_results", "many_tasks.json"),
                        help="where the report goes (default bench_results/many_tasks.json)")
    parser.add_argument("--rounds", type=int, help="rounds per backend, each row keeps its best (default 3; 1 "
                                                   "with --quick)")
    parser.add_argument("--max-wait", type=float, help="seconds to wait before each row for other processes to go "
                                                       "quiet (default 10; 0 with --quick)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(main())
