"""The examples in docstrings run and print what they claim; every public module has some."""

import doctest
import importlib

import pytest

MODULES = [
    "keras_mtl.missing",
    "keras_mtl.distribute",
    "keras_mtl.losses",
    "keras_mtl.metrics",
    "keras_mtl.tasks",
    "keras_mtl.heads",
    "keras_mtl.backend",
    "keras_mtl.model",
    "keras_mtl.data",
    "keras_mtl.export",
    "keras_mtl.balancing",
    "keras_mtl.sharing",
    "keras_mtl.transfer",
    "keras_mtl.plotting",  # switches matplotlib to Agg when there is no display
    "keras_mtl.comparison",
    "keras_mtl.kinds",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.IGNORE_EXCEPTION_DETAIL
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no docstring example"
