"""Times ``keras-mtl demo`` beside this machine's matmul rate: ``python benchmarks/demo.py``.

The demo's wall time depends on the machine; a TensorFlow 2048³ float32 matmul
measures how fast this one is, so that any machine can be scaled to the
reference (a 2-core machine at 156 GFLOP/s, on which the demo must finish
within 180 s): ``time at the reference ≈ time here × (rate here / 156)``.
The matmul is measured before and after the demo; a large difference means
another job shared the cores. The demo runs twice (``--repeats``) and the
faster run counts: its test figures must be the same every time.

The matmul scales convolution training only roughly, so a second estimate
is calibrated on the demo itself: the demo of 2026-11-29 (classic blocks,
24/48/96 channels, the same data and schedule) took 357 s on the reference
machine. The benchmark times training steps of that model and of today's in
turn, estimates the old demo's time here from the ratio, and scales 357 s by
today's demo time over that estimate. Only the training phase is rescaled,
so the old demo's slower scene drawing is left out and the estimate errs
high. Prints one JSON object, also written to
``--output``/``demo_benchmark.json`` and (the full demo, or with ``--results``)
to ``benchmarks/results/demo.json``, from which ``benchmarks/prose.py``
renders the README's figures. The demo's own phase timings
(``metrics.json``) are copied into it.

Usage::

    python benchmarks/demo.py                       # the full demo
    python benchmarks/demo.py --size small --repeats 1   # the small one (seconds)
"""

import argparse
import datetime
import json
import os
import time
from pathlib import Path

REFERENCE_GFLOPS = 156.0   # the reference machine's TF 2048³ matmul rate
REFERENCE_BUDGET_S = 180.0  # the demo's wall-time budget on that machine
REFERENCE_OLD_DEMO_S = 357.0  # the 2026-11-29 demo on that machine, whose model was:
OLD_MODEL = {"width": 24, "pool_first": False, "multipliers": (1, 2, 4)}
RESULTS = Path(__file__).resolve().parent / "results" / "demo.json"


def matmul_gflops(n: int = 2048, repeats: int = 10, rounds: int = 3) -> float:
    """The best rate of ``rounds`` timings of ``repeats`` TensorFlow n×n float32 matmuls.

    Args:
        n: matrix side.
        repeats: matmuls per timing (chained, so none is skipped).
        rounds: timings; the fastest counts (the least disturbed by other jobs).

    Returns:
        GFLOP/s, counting 2·n³ floating-point operations per matmul.
    """
    import tensorflow as tf

    a = tf.random.normal((n, n), seed=0)
    b = tf.random.normal((n, n), seed=1)

    @tf.function
    def chain(x):
        for _ in range(repeats):
            x = tf.matmul(x, b) * (1.0 / n)
        return x

    chain(a).numpy()   # trace and warm up
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        chain(a).numpy()
        best = min(best, time.perf_counter() - started)
    return 2.0 * n**3 * repeats / best / 1e9


def train_step_ratio(old: dict, new: dict, steps: int = 20, rounds: int = 3, clock=time.perf_counter) -> float:
    """How many times longer a training step of ``build_street_model(**old)`` takes than one of ``new``.

    Both models train on the same batch of 64 scenes in turn, ``rounds``
    times ``steps`` steps each; each model's fastest round counts.
    ``clock`` reads the time in seconds.

    Returns:
        The old model's step time over the new one's.
    """
    from keras_mtl import data
    from keras_mtl.datasets.street_scenes import OBJECT_TASKS, generate_street_scenes
    from keras_mtl.demo import build_street_model

    images, labels = generate_street_scenes(64, image_size=old.get("image_size", 64), seed=0,
                                            missing="uniform", missing_fraction=0.5)
    models = []
    for kwargs in (old, new):
        model = build_street_model(**kwargs)
        model.compile(optimizer="adam")
        models.append(model)
    x, y = next(iter(data.from_arrays(images, {n: labels[n] for n in OBJECT_TASKS}, models[0], batch_size=64)))
    best = [float("inf")] * 2
    for _ in range(rounds):
        for i, model in enumerate(models):
            model.train_on_batch(x, y)   # traced on the first round; a warm step after
            started = clock()
            for _ in range(steps):
                model.train_on_batch(x, y)
            best[i] = min(best[i], clock() - started)
    return best[0] / best[1]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("small", "full"), default="full")
    parser.add_argument("--output", default="demo_benchmark", help="demo output directory")
    parser.add_argument("--repeats", type=int, default=2,
                        help="demo runs; the fastest counts, the least disturbed by other jobs (default: 2)")
    parser.add_argument("--results", type=Path, default=None,
                        help=f"result file (default: {RESULTS.relative_to(RESULTS.parents[2])} for the full "
                             "demo, none for the small one)")
    args = parser.parse_args(argv)
    from keras_mtl.demo import SIZES, run_demo

    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: give at least 1.")
    before = matmul_gflops()
    runs = []   # (seconds, test metrics, the run's metrics.json)
    for _ in range(args.repeats):
        started = time.perf_counter()
        metrics = run_demo(args.output, size=args.size, verbose=0)
        seconds = time.perf_counter() - started
        demo_file = Path(args.output) / "metrics.json"
        runs.append((seconds, metrics, json.loads(demo_file.read_text()) if demo_file.exists() else {}))
    after = matmul_gflops()
    if any(run[1] != runs[0][1] for run in runs):
        raise RuntimeError("the demo's test figures differed between runs with the same seed: it is not reproducible")
    seconds, metrics, written = min(runs, key=lambda run: run[0])
    rate = max(before, after)
    scaled = seconds * rate / REFERENCE_GFLOPS
    new_model = {key: SIZES["full"][key] for key in OLD_MODEL}
    step_ratio = train_step_ratio(OLD_MODEL, new_model) if args.size == "full" else None
    train = (written.get("phase_seconds") or {}).get("train")
    calibrated = None
    if step_ratio and train:
        old_demo_here = seconds + train * (step_ratio - 1.0)
        calibrated = REFERENCE_OLD_DEMO_S * seconds / old_demo_here
    result = {
        "size": args.size,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "demo_seconds": round(seconds, 1),
        "demo_seconds_runs": [round(run[0], 1) for run in runs],
        "matmul_gflops_before": round(before, 1),
        "matmul_gflops_after": round(after, 1),
        "reference_gflops": REFERENCE_GFLOPS,
        "demo_seconds_at_reference": round(scaled, 1),
        "reference_budget_seconds": REFERENCE_BUDGET_S,
        "within_budget": bool(scaled <= REFERENCE_BUDGET_S) if args.size == "full" else None,
        "old_model": {key: list(v) if isinstance(v, tuple) else v for key, v in OLD_MODEL.items()},
        "old_over_new_train_step": None if step_ratio is None else round(step_ratio, 3),
        "reference_old_demo_seconds": REFERENCE_OLD_DEMO_S,
        "demo_seconds_at_reference_by_old_demo": None if calibrated is None else round(calibrated, 1),
        "within_budget_by_old_demo": None if calibrated is None else bool(calibrated <= REFERENCE_BUDGET_S),
        "test_auc": {name: round(m["auc"], 4) for name, m in metrics.items()},
        "test_accuracy": {name: round(m["accuracy"], 4) for name, m in metrics.items() if "accuracy" in m},
        "phase_seconds": written.get("phase_seconds"),
        "epoch_seconds": written.get("epoch_seconds"),
        "cpus": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps(result, indent=1))
    Path(args.output).mkdir(parents=True, exist_ok=True)
    (Path(args.output) / "demo_benchmark.json").write_text(json.dumps(result, indent=1))
    results = args.results or (RESULTS if args.size == "full" else None)
    if results is not None:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
