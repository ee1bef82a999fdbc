"""The ``keras-mtl`` command: ``demo``, ``export``, ``inspect``, ``bench``."""

from __future__ import annotations

import argparse
import json
import os
import sys


def _demo(args) -> int:
    from keras_mtl.demo import run_demo

    run_demo(args.output, epochs=args.epochs, size=args.size, missing=args.missing,
             seed=args.seed, verbose=0 if args.quiet else 1)
    return 0


def _export(args) -> int:
    import keras

    import keras_mtl  # noqa: F401  # registers the classes the file names
    from keras_mtl.export import export_saved_model, next_version_dir

    model = keras.saving.load_model(args.model)
    if not hasattr(model, "tasks"):
        print(f"error: {args.model} holds a {type(model).__name__}, not a keras_mtl "
              "MultiTaskModel.", file=sys.stderr)
        return 2
    target = next_version_dir(args.directory)
    export_saved_model(model, target)
    print(f"Exported {args.model} to {target}")
    return 0


def _inspect(args) -> int:
    import tensorflow as tf

    from keras_mtl.export import read_tasks

    path = args.directory
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        versions = sorted((int(p) for p in os.listdir(path) if p.isdigit()), reverse=True)
        if not versions:
            print(f"error: no SavedModel in {path} (and no numbered versions below it).",
                  file=sys.stderr)
            return 2
        path = os.path.join(path, str(versions[0]))
    metadata = read_tasks(path)
    loaded = tf.saved_model.load(path)
    report = {"path": path, "tasks": metadata["tasks"], "signatures": {}}
    for name, fn in loaded.signatures.items():
        _, inputs = fn.structured_input_signature
        report["signatures"][name] = {
            "inputs": {k: {"shape": [-1 if d is None else d for d in v.shape.as_list()],
                           "dtype": v.dtype.name} for k, v in inputs.items()},
            "outputs": {k: {"shape": [-1 if d is None else d for d in v.shape.as_list()],
                            "dtype": v.dtype.name} for k, v in fn.structured_outputs.items()},
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"SavedModel {path}")
    print("Tasks:")
    for task in report["tasks"]:
        print(f"  {task['name']:<16}{task['kind']:<13}units={task['units']}  "
              f"{', '.join(task['unit_names'])}")
    for name, sig in report["signatures"].items():
        print(f"Signature {name}:")
        for direction in ("inputs", "outputs"):
            for key, spec in sig[direction].items():
                print(f"  {direction[:-1]:<7}{key:<20}{spec['dtype']:<9}{tuple(spec['shape'])}")
    return 0


def _bench(args) -> int:
    from keras_mtl.bench import main as bench_main

    return bench_main(args.bench_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keras-mtl", description="Multi-task learning for Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train the street-scenes demo and write its results")
    demo.add_argument("--output", default="mtl_demo", help="output directory (default: mtl_demo)")
    demo.add_argument("--epochs", type=int, default=None, help="epochs (default: 10 full, 2 small)")
    demo.add_argument("--size", choices=("small", "full"), default="full")
    demo.add_argument("--missing", type=float, default=0.5,
                      help="share of training labels missing (default: 0.5)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=_demo)

    export = commands.add_parser("export", help="export a .keras model as a TF-Serving SavedModel")
    export.add_argument("model", help="a .keras file holding a MultiTaskModel")
    export.add_argument("directory", help="model base directory; the next free version is used")
    export.set_defaults(run=_export)

    inspect = commands.add_parser("inspect", help="show the tasks and signatures of a SavedModel")
    inspect.add_argument("directory", help="a version directory or a model base directory")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(run=_inspect)
    bench = commands.add_parser("bench", help="benchmark keras_mtl against plain Keras",
                                add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER,
                       help="options of the benchmark (see keras-mtl bench --help)")
    bench.set_defaults(run=_bench)
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
