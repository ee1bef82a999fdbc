"""Runs the keras_mtl benchmark: ``python benchmarks/run.py [options]``.

The same as ``keras-mtl bench [options]``; see ``--help`` for the options.
"""

import sys

from keras_mtl.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
