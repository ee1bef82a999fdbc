"""Runs the keras_mtl benchmark: ``python benchmarks/run.py [options]``.

Without ``--backends``, every row runs in this process on one Keras backend
(``--backend``, else ``KERAS_BACKEND``): see ``harness.py``. With
``--backends tensorflow,jax,torch``, the comparison rows run on each backend
in its own subprocess and are printed side by side: see ``backends.py``.
``--help`` lists the options.
"""

import os
import sys

from options import parse


def main(argv: list[str] | None = None) -> int:
    """Parses the options, fixes the backend, then imports and runs the benchmark."""
    args = parse(argv)
    if args.backends:
        import backends

        return backends.main(args)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend  # read once, when Keras is first imported
    import harness

    return harness.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
