"""Test settings: quiet TensorFlow logs, a fixed seed, the keras_mtl under test, missing tools.

The suite tests the *installed* keras_mtl: the README's test command runs the
``pytest`` script, which (unlike ``python -m pytest``) does not put the
checkout on ``sys.path``. Under ``CI=true`` a run that imports the checkout
instead stops before its first test, in this process and in the pytest runs
that tests/test_backends.py starts under the other backends.
"""

import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402

CHECKOUT = Path(__file__).resolve().parent.parent
ON_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, message: str) -> None:
    """Skips the calling test when a dependency is missing; under ``CI=true`` fails instead.

    Args:
        available: whether the tool or package the test needs is there.
        message: names what is missing and how ``.ci/run`` installs it.
    """
    if available:
        return
    if ON_CI:
        pytest.fail(f"missing under CI=true: {message}", pytrace=False)
    pytest.skip(message)


def package_dir() -> Path:
    """The directory of the keras_mtl that ``import keras_mtl`` finds here (without importing it)."""
    return Path(importlib.util.find_spec("keras_mtl").origin).resolve().parent


def editable_from_checkout() -> bool:
    """Whether the installed keras-mtl distribution is an editable install of this checkout."""
    try:
        text = importlib.metadata.distribution("keras-mtl").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return False
    info = json.loads(text or "{}")
    return bool(info.get("dir_info", {}).get("editable")) and info.get("url") == CHECKOUT.as_uri()


def checkout_import_problem() -> str | None:
    """Why the keras_mtl imported here is not the installed one, or ``None`` if it is.

    An editable install of this checkout counts as installed: its files are
    the checkout's by design.
    """
    found = package_dir()
    # The checkout's own source folder; a virtual environment inside the checkout
    # (as .ci/run makes) holds the installed copy, which is what is tested.
    if found != CHECKOUT / "keras_mtl" or editable_from_checkout():
        return None
    return (f"keras_mtl is imported from the checkout ({found}), not from the installed package: "
            "run the suite as README.md's Quick start says (the `pytest` command, not `python -m pytest`, "
            "which puts the current directory first on sys.path)")


if checkout_import_problem() is not None:
    # This process runs the checkout (PYTHONPATH=$PWD, a developer's choice): so do its children.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(package_dir().parent), os.environ.get("PYTHONPATH")) if p)


def installed_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def frameworks() -> str:
    """The versions of the frameworks the suite runs with, as one line."""
    return ", ".join(f"{name} {installed_version(name)}" for name in ("tensorflow", "keras", "jax", "torch"))


def pytest_report_header(config):
    return [f"keras_mtl: {package_dir()}", f"frameworks: {frameworks()}"]


def pytest_terminal_summary(terminalreporter):
    # Also under -q, which hides the header: the last lines of a run say what it ran with.
    terminalreporter.write_line(f"frameworks: {frameworks()}")


def pytest_sessionstart(session):
    problem = checkout_import_problem()
    if ON_CI and problem is not None:
        pytest.exit(f"CI=true: {problem}", returncode=3)


@pytest.fixture(autouse=True)
def _fixed_seed():
    keras.utils.set_random_seed(1234)
