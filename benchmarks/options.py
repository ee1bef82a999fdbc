"""The command line of ``python benchmarks/run.py`` (argparse only, no Keras import).

The backend must be chosen before Keras is imported, so the options are
parsed here first and the benchmark modules are imported afterwards.
"""

from __future__ import annotations

import argparse

__all__ = ["BACKENDS", "GROUPS", "build_parser", "parse"]

GROUPS = "abcdefghp"
BACKENDS = ("tensorflow", "jax", "torch")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _groups(text: str) -> str:
    letters = {g.strip().lower() for g in text.split(",") if g.strip()}
    unknown = sorted(letters - set(GROUPS))
    if unknown or not letters:
        raise argparse.ArgumentTypeError(f"takes letters among {','.join(GROUPS)}; got {text!r}")
    return "".join(g for g in GROUPS if g in letters)


def _backends(text: str) -> list[str]:
    names = [b.strip().lower() for b in text.split(",") if b.strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"takes distinct names among {','.join(BACKENDS)}; got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python benchmarks/run.py``."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Benchmark keras_mtl against plain Keras (and a plain PyTorch loop): throughput "
                    "and first-epoch time, with the machine's matmul rate beside every row.")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes that run every row in seconds (numbers meaningless)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="Keras backend of this run (default: KERAS_BACKEND, else tensorflow)")
    parser.add_argument("--backends", type=_backends,
                        help="comma-separated backends, e.g. tensorflow,jax,torch: run the "
                             "comparison rows on each, one subprocess per backend and round, and "
                             "print them side by side")
    parser.add_argument("--only", type=_groups,
                        help="comma-separated row groups among a,b,c,d,e,f,g,h,p (e: also run every "
                             "training row with jit_compile=True; p: the plain PyTorch loop); "
                             "default: all")
    parser.add_argument("--rows", type=lambda t: [r.strip() for r in t.split(",") if r.strip()],
                        help="comma-separated training row ids (a, b, d-dense, ...) to keep "
                             "within the groups")
    parser.add_argument("--output", default="bench_results",
                        help="directory for the results (default: bench_results)")
    parser.add_argument("--json", action="store_true",
                        help="also write the report to benchmarks/results/ (backends.json with --backends, "
                             "else tensorflow.json, ...: the backend's name), the files the READMEs' figures "
                             "come from (python benchmarks/prose.py)")
    parser.add_argument("--steps", type=_positive, help="steps per epoch (default 40)")
    parser.add_argument("--epochs", type=_positive, help="timed epochs after the first (default 3)")
    parser.add_argument("--rounds", type=_positive,
                        help="passes over all rows; each row keeps its best (default 3; 1 with --quick)")
    parser.add_argument("--retries", type=int,
                        help="extra attempts at a row while other processes used more than half a core "
                             "(default 2, with --backends 0: its rounds repeat every row; 0 with --quick)")
    parser.add_argument("--max-wait", type=float,
                        help="seconds to wait for other processes to go quiet before each row "
                             "(default 180, with --backends 30; 0 with --quick)")
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Parses the options; ``--backends`` excludes ``--backend``, ``--only`` and ``--rows``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.backends and (args.backend or args.only or args.rows):
        parser.error("--backends runs its own rows on each backend; drop --backend, --only and --rows")
    return args
