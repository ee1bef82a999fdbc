"""The examples in docstrings run and print what they claim; every public module has some.

The modules are collected from the package itself (every module and
subpackage under ``keras_mtl/``), so a new module cannot be forgotten. One
is left out only by an entry in :data:`EXCLUDED` that says why.
"""

import doctest
import importlib
import pkgutil

import pytest

import keras_mtl

# One framework's train steps each (keras_mtl/backend/__init__.py imports the one of the running
# backend): they run only inside a train step, which test_model.py and test_backends.py exercise on
# every backend, and importing another framework's module beside this one is unsafe (PyTorch beside
# TensorFlow can crash the process). keras_mtl.backend itself is tested.
_TRAIN_STEPS = "one backend's train steps, exercised by fitting a model under that backend"
EXCLUDED = {
    "keras_mtl.backend.jax": _TRAIN_STEPS,
    "keras_mtl.backend.tensorflow": _TRAIN_STEPS,
    "keras_mtl.backend.torch": _TRAIN_STEPS,
    # The TFDS builder's example prepares the dataset on disk (tfds.load writes ~/tensorflow_datasets);
    # tests/test_street_scenes.py runs the builder with DatasetBuilderTestCase on dummy data instead.
    "keras_mtl.datasets.street_scenes_tfds": "builds a TFDS dataset on disk; tested by test_street_scenes.py",
}


def package_modules() -> list[str]:
    """Every public module and subpackage of keras_mtl (a ``_``-prefixed name is private)."""
    found = pkgutil.walk_packages(keras_mtl.__path__, prefix="keras_mtl.")
    return sorted(info.name for info in found if not info.name.rpartition(".")[2].startswith("_"))


MODULES = [name for name in package_modules() if name not in EXCLUDED]


def test_every_exclusion_names_a_module_of_the_package():
    assert set(EXCLUDED) <= set(package_modules())
    assert {"keras_mtl.balancing.base", "keras_mtl.kinds", "keras_mtl.missing"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.IGNORE_EXCEPTION_DETAIL
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no docstring example"
