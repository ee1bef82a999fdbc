"""Times ``keras-mtl demo`` beside this machine's matmul rate: ``python benchmarks/demo.py``.

The demo's wall time depends on the machine; a TensorFlow 2048³ float32 matmul
measures how fast this one is, so that any machine can be scaled to the
reference (a 2-core machine at 156 GFLOP/s, on which the demo must finish
within 180 s): ``time at the reference ≈ time here × (rate here / 156)``.
The matmul is measured before and after the demo; a large difference means
another job shared the cores. Prints one JSON object, also written to
``--output``/``demo_benchmark.json`` and (the full demo, or with ``--results``)
to ``benchmarks/results/demo.json``, from which ``benchmarks/prose.py``
renders the README's figures. The demo's own phase timings
(``metrics.json``) are copied into it.

Usage::

    python benchmarks/demo.py                       # the full demo
    python benchmarks/demo.py --size small          # the small one (seconds)
"""

import argparse
import datetime
import json
import os
import time
from pathlib import Path

REFERENCE_GFLOPS = 156.0   # the reference machine's TF 2048³ matmul rate
REFERENCE_BUDGET_S = 180.0  # the demo's wall-time budget on that machine
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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("small", "full"), default="full")
    parser.add_argument("--output", default="demo_benchmark", help="demo output directory")
    parser.add_argument("--results", type=Path, default=None,
                        help=f"result file (default: {RESULTS.relative_to(RESULTS.parents[2])} for the full "
                             "demo, none for the small one)")
    args = parser.parse_args(argv)
    from keras_mtl.demo import run_demo

    before = matmul_gflops()
    started = time.perf_counter()
    metrics = run_demo(args.output, size=args.size, verbose=0)
    seconds = time.perf_counter() - started
    after = matmul_gflops()
    rate = max(before, after)
    scaled = seconds * rate / REFERENCE_GFLOPS
    demo_file = Path(args.output) / "metrics.json"
    written = json.loads(demo_file.read_text()) if demo_file.exists() else {}
    result = {
        "size": args.size,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "demo_seconds": round(seconds, 1),
        "matmul_gflops_before": round(before, 1),
        "matmul_gflops_after": round(after, 1),
        "reference_gflops": REFERENCE_GFLOPS,
        "demo_seconds_at_reference": round(scaled, 1),
        "reference_budget_seconds": REFERENCE_BUDGET_S,
        "within_budget": bool(scaled <= REFERENCE_BUDGET_S) if args.size == "full" else None,
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
