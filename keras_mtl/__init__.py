"""keras_mtl: multi-task learning for Keras 3 with missing labels.

``import keras_mtl`` imports the Keras-dependent core at once, which registers
its classes so that ``keras.saving.load_model`` needs no ``custom_objects``.
The modules with heavier or optional dependencies load on first use, as
attributes (PEP 562): ``kmtl.plotting`` (matplotlib), ``kmtl.datasets``
(TensorFlow Datasets), ``kmtl.demo`` and ``kmtl.cli``. The ``keras-mtl``
command defers the core too, so that ``keras-mtl --help`` answers without
starting TensorFlow; there, the first public name used loads the whole core.
"""

import importlib
import os
import sys

__version__ = "0.2.0"

# Public name -> the module that defines it ("" : the name is the module itself).
_CORE = {
    "MISSING": "missing", "MISSING_REGRESSION": "missing", "CompareResult": "comparison",
    "MultiTaskModel": "model", "Task": "tasks", "compare": "comparison",
    "export_saved_model": "export",
    **{module: "" for module in ("balancing", "comparison", "data", "distribute", "export", "heads",
                                 "kinds", "losses", "metrics", "missing", "model", "sharing", "tasks",
                                 "transfer")},
}
# Submodules imported on first use, also when the core is loaded.
_ON_DEMAND = ("backend", "cli", "datasets", "demo", "plotting")

__all__ = [
    "MISSING",
    "MISSING_REGRESSION",
    "CompareResult",
    "MultiTaskModel",
    "Task",
    "__version__",
    "balancing",
    "compare",
    "data",
    "distribute",
    "export_saved_model",
    "kinds",
    "losses",
    "metrics",
    "missing",
    "sharing",
    "transfer",
]


def _load_core() -> None:
    """Imports every core module (registering its classes) and binds the public names."""
    for name, module in _CORE.items():
        target = importlib.import_module(f"keras_mtl.{module or name}")
        globals()[name] = target if not module else getattr(target, name)


def __getattr__(name: str):
    # A submodule asked for by name (``from keras_mtl import balancing`` inside the package
    # while the core is deferred) imports only itself: loading the whole core from there
    # would re-enter the module that is being imported.
    if name in _ON_DEMAND or _CORE.get(name) == "":
        return importlib.import_module(f"keras_mtl.{name}")
    if name in _CORE:
        _load_core()
        return globals()[name]
    raise AttributeError(f"module 'keras_mtl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_CORE, *_ON_DEMAND})


def _is_the_command() -> bool:
    """Whether this process is the ``keras-mtl`` console script (its program name)."""
    program = (getattr(sys, "argv", None) or [""])[0]
    return os.path.basename(program).removesuffix(".exe") == "keras-mtl"


# The `keras-mtl` command imports the core when a subcommand first needs it.
if not _is_the_command():
    _load_core()
