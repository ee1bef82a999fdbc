"""The package's layout: its modules import one another one way (DESIGN.md §4).

Read from the source, nothing imported: a deferred import inside a function
ties two modules as much as one at the top of the file.
"""

import ast
import subprocess
import sys

import pytest
from conftest import CHECKOUT, require

PACKAGE = CHECKOUT / "keras_mtl"
# CI runs a clean clone with a copy of the shared tools beside it, at ../shared.
IMPORT_CYCLES = CHECKOUT.parent / "shared" / "tools" / "import_cycles.py"

# Lower layers never import higher ones: missing ← losses/metrics ← kinds ← tasks ← model ← export/cli.
LAYERS = [("missing",), ("losses", "metrics"), ("kinds",), ("tasks",), ("model",), ("export", "cli")]


def test_no_import_cycles():
    require(IMPORT_CYCLES.is_file(),
            f"{IMPORT_CYCLES} is missing: CI copies the shared tools beside the checkout, at ../shared")
    done = subprocess.run([sys.executable, str(IMPORT_CYCLES), str(PACKAGE)], capture_output=True, text=True,
                          cwd=CHECKOUT, timeout=120)
    report = f"{IMPORT_CYCLES.name} {PACKAGE}:\n{done.stdout}{done.stderr}"
    assert done.returncode == 0, report
    assert done.stdout.rstrip().endswith(" 0 cycle(s)"), report


def imported_modules(path):
    """The keras_mtl modules that ``path`` imports anywhere (top level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name.split(".")[1] for name in found if name.startswith("keras_mtl.")}


@pytest.mark.parametrize("layer", range(len(LAYERS) - 1), ids=lambda i: "/".join(LAYERS[i]))
def test_lower_modules_never_import_higher_ones(layer):
    higher = {name for names in LAYERS[layer + 1:] for name in names}
    for name in LAYERS[layer]:
        wrong = imported_modules(PACKAGE / f"{name}.py") & higher
        assert not wrong, f"keras_mtl/{name}.py imports {sorted(wrong)}, which build on it"


def test_the_data_pipelines_never_import_the_model():
    assert "model" not in imported_modules(PACKAGE / "data.py")
