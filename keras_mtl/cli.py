"""The ``keras-mtl`` command: ``demo``, ``export``, ``inspect``.

The parser imports neither TensorFlow nor Keras: ``keras-mtl --help`` and a
mistyped option answer at once, and each subcommand imports what it needs.
Benchmarks are not part of the package: ``python benchmarks/run.py`` in a
checkout of the repository runs them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _demo(args) -> int:
    from keras_mtl.demo import run_demo

    # Progress bars only on a terminal: in a log file they are megabytes of "\r" rewrites.
    run_demo(args.output, epochs=args.epochs, size=args.size, missing=args.missing,
             seed=args.seed, verbose=0 if args.quiet else "auto")
    return 0


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _export(args) -> int:
    if not os.path.isfile(args.model):
        return _error(f"{args.model} is not a file; give the path of a .keras model.")
    if args.version is not None and args.version < 0:
        return _error(f"--version {args.version}: versions are integers >= 0.")
    base = Path(args.directory)
    if (base / "saved_model.pb").exists():
        return _error(f"{base} is itself a SavedModel version directory; give its parent "
                      f"(the model base directory), e.g. {base.parent}.")

    import keras

    # A public name of the package loads its whole core, which registers the classes the file names.
    from keras_mtl import MultiTaskModel, export_saved_model
    from keras_mtl.export import next_version_dir

    model = keras.saving.load_model(args.model)
    if not isinstance(model, MultiTaskModel):
        return _error(f"{args.model} holds a {type(model).__name__}, not a keras_mtl "
                      "MultiTaskModel.")
    target = next_version_dir(base) if args.version is None else base / str(args.version)
    try:
        export_saved_model(model, target, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as error:
        return _error(str(error))
    print(f"Exported {args.model} to {target}")
    return 0


def _shape(shape) -> list | None:
    if shape.rank is None:
        return None
    return [-1 if d is None else d for d in shape.as_list()]


def _inspect(args) -> int:
    from keras_mtl.export import latest_version_dir, read_tasks

    path = Path(args.directory)
    if not path.is_dir():
        return _error(f"{path} is not a directory.")
    if not (path / "saved_model.pb").exists():
        latest = latest_version_dir(path)
        if latest is None:
            return _error(f"no SavedModel in {path} (and no numbered version directory "
                          "below it holding one).")
        path = latest

    import tensorflow as tf

    try:
        tasks = read_tasks(path)["tasks"]
    except FileNotFoundError:
        tasks = None  # a SavedModel not written by keras_mtl: show its signatures
    loaded = tf.saved_model.load(str(path))
    report = {"path": str(path), "tasks": tasks, "signatures": {}}
    for name in sorted(loaded.signatures):
        fn = loaded.signatures[name]
        _, inputs = fn.structured_input_signature
        report["signatures"][name] = {
            "inputs": {k: {"shape": _shape(v.shape), "dtype": v.dtype.name}
                       for k, v in sorted(inputs.items())},
            "outputs": {k: {"shape": _shape(v.shape), "dtype": v.dtype.name}
                        for k, v in sorted(fn.structured_outputs.items())},
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"SavedModel {path}")
    if tasks is None:
        print("Tasks: none recorded (not exported by keras_mtl)")
    else:
        print("Tasks:")
        for task in tasks:
            print(f"  {task['name']:<16}{task['kind']:<13}units={task['units']}  "
                  f"{', '.join(task['unit_names'])}")
    for name, sig in report["signatures"].items():
        print(f"Signature {name}:")
        for direction in ("inputs", "outputs"):
            for key, spec in sig[direction].items():
                shape = "unknown" if spec["shape"] is None else tuple(spec["shape"])
                print(f"  {direction[:-1]:<7}{key:<20}{spec['dtype']:<9}{shape}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``keras-mtl`` argument parser; each command's ``run`` takes the parsed arguments.

    Example:
        >>> args = build_parser().parse_args(["export", "street.keras", "serving/street"])
        >>> args.command, args.model, args.directory, args.version
        ('export', 'street.keras', 'serving/street', None)
    """
    parser = argparse.ArgumentParser(prog="keras-mtl", description="Multi-task learning for Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="train the street-scenes demo and write its results",
        description="Train one CNN with four object heads on street scenes with half the labels "
                    "missing; write metrics, plots and a SavedModel. It prints first how long a run "
                    "took on a 2-core machine; --size small is the quick first look.")
    demo.add_argument("--output", default="mtl_demo", help="output directory (default: mtl_demo)")
    demo.add_argument("--epochs", type=int, default=None, help="epochs (default: 4 full, 3 small)")
    demo.add_argument("--size", choices=("small", "full"), default="full",
                      help="full: 24,000 training scenes, 4 epochs; small: 3,000 scenes, 3 epochs, "
                           "for a first look (default: full)")
    demo.add_argument("--missing", type=float, default=0.5,
                      help="share of training and validation labels hidden (default: 0.5)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data and the weights (default: 0)")
    demo.add_argument("--quiet", action="store_true",
                      help="no per-epoch output (progress bars show only on a terminal anyway)")
    demo.set_defaults(run=_demo)

    export = commands.add_parser("export", help="export a .keras model as a TF-Serving SavedModel")
    export.add_argument("model", help="a .keras file holding a MultiTaskModel")
    export.add_argument("directory", help="model base directory; the next free version is used")
    export.add_argument("--version", type=int, default=None,
                        help="version number to write (default: one above the highest present)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing version")
    export.set_defaults(run=_export)

    inspect = commands.add_parser("inspect", help="show the tasks and signatures of a SavedModel")
    inspect.add_argument("directory", help="a version directory or a model base directory")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON, for scripts")
    inspect.set_defaults(run=_inspect)
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
