"""The release: sdist and wheel build, pass ``twine check``, and the wheel alone runs README's example.

Built without build isolation (the setuptools this environment has), from a copy
of the checkout, so the source tree stays as it is for the other tests.
"""

import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import CHECKOUT

import keras_mtl

SOURCES = ("keras_mtl", "setup.cfg", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md")
# PYTHONPATH dropped: the installed wheel must be what the example imports.
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
       "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONSAFEPATH": "1", "MPLBACKEND": "Agg"}


def run(*args, cwd, env=ENV):
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        path = CHECKOUT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", root / "dist", source, cwd=root)
    return root / "dist"


def test_sdist_and_wheel_build_and_pass_twine_check(dist):
    version = keras_mtl.__version__
    wheel, sdist = dist / f"keras_mtl-{version}-py3-none-any.whl", dist / f"keras_mtl-{version}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(p.name for p in dist.iterdir())
    report = run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist, cwd=dist).stdout
    assert report.count("PASSED") == 2, report


def test_the_wheel_holds_every_module_the_licence_and_the_metadata(dist):
    version = keras_mtl.__version__
    with zipfile.ZipFile(dist / f"keras_mtl-{version}-py3-none-any.whl") as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"keras_mtl-{version}.dist-info/METADATA").decode()
        entry_points = wheel.read(f"keras_mtl-{version}.dist-info/entry_points.txt").decode()
    modules = {p.relative_to(CHECKOUT).as_posix() for p in (CHECKOUT / "keras_mtl").rglob("*.py")}
    assert modules and modules <= names, sorted(modules - names)
    assert any(n.startswith(f"keras_mtl-{version}.dist-info/") and n.endswith("LICENSE") for n in names), names
    assert re.search(r"^Name: keras-mtl$", metadata, re.M)
    assert re.search(rf"^Version: {re.escape(version)}$", metadata, re.M)
    assert re.search(r"^License(-Expression)?: Apache-2.0$", metadata, re.M)
    assert re.search(r"^Requires-Dist: tensorflow", metadata, re.M)
    assert "# keras_mtl" in metadata  # README.md is the long description
    assert "keras-mtl = keras_mtl.cli:main" in entry_points


def test_the_installed_wheel_runs_the_readme_example(dist, tmp_path):
    # A fresh venv holding only the wheel; the frameworks come from this environment through a .pth
    # file, which Python reads after the venv's own site-packages, so the wheel's keras_mtl comes first.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                       cwd=tmp_path).stdout.strip())
    (purelib / "frameworks.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    wheel = dist / f"keras_mtl-{keras_mtl.__version__}-py3-none-any.whl"
    run(sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", purelib, wheel, cwd=tmp_path)

    where = run(python, "-c", "import keras_mtl; print(keras_mtl.__file__); print(keras_mtl.__version__)",
                cwd=tmp_path).stdout.split()
    assert Path(where[0]).is_relative_to(purelib) and where[1] == keras_mtl.__version__, where
    example = re.findall(r"^```python\n(.*?)^```", (CHECKOUT / "README.md").read_text(), re.S | re.M)[0]
    run(python, "-c", example, cwd=tmp_path)
    assert (tmp_path / "serving" / "street" / "1" / "saved_model.pb").is_file()
