"""The documentation: the site builds with warnings as errors, the guides and README's code run.

The site is built by Sphinx (``docs/conf.py``), which the ``test`` extra
installs, into a temporary folder and without network. Guides run as scripts
at the small size (``KERAS_MTL_GUIDE_SIZE=small``), README's Python blocks as
written, each in an empty folder of its own.
"""

import ast
import html
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import require

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GUIDES = sorted((DOCS / "guides").glob("*.py"))

# Every public module and the API page that documents it.
PUBLIC_MODULES = {
    "keras_mtl": "keras_mtl", "keras_mtl.data": "data", "keras_mtl.missing": "missing",
    "keras_mtl.kinds": "kinds", "keras_mtl.losses": "losses", "keras_mtl.metrics": "metrics",
    "keras_mtl.balancing": "balancing",
    "keras_mtl.sharing": "sharing", "keras_mtl.transfer": "transfer", "keras_mtl.distribute": "distribute",
    "keras_mtl.export": "export", "keras_mtl.plotting": "plotting", "keras_mtl.datasets": "datasets",
    "keras_mtl.cli": "cli",
}


def _sphinx_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("sphinx", "furo", "myst_parser"))


def _child_env(**extra) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}
    env.pop("MPLBACKEND", None)
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The built site: Sphinx with -W (warnings are errors), offline."""
    require(_sphinx_available(), "Sphinx, Furo and MyST-Parser are in the test extra: pip install '.[test]'")
    out = tmp_path_factory.mktemp("site")
    start = time.monotonic()
    env = _child_env(no_proxy="*", http_proxy="http://0.0.0.0:9", https_proxy="http://0.0.0.0:9")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(out / ".doctrees"), str(DOCS), str(out / "html")],
        capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, f"the docs build failed:\n{result.stderr[-6000:]}"
    print(f"docs built in {time.monotonic() - start:.0f} s")
    return out / "html"


def test_the_site_builds_with_every_page(site):
    for page in ["index", "faq", "testing", "notebooks", "data", "changelog", "api/index",
                 *[f"guides/{g.stem}" for g in GUIDES],
                 *[f"topics/{p.stem}" for p in (DOCS / "topics").glob("*.md")],
                 *[f"benchmarks/{p.stem}" for p in (DOCS / "benchmarks").glob("*.md")]]:
        assert (site / f"{page}.html").is_file(), page
    assert (site / "searchindex.js").is_file()


def test_the_site_loads_nothing_from_the_network(site):
    remote = re.compile(r"""(?:src|href)=["'](?:https?:)?//""")
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert not remote.search(re.sub(r'<a [^>]*href="https?://[^"]*"', "", text)), page
    for sheet in site.rglob("*.css"):
        assert "@import url(http" not in sheet.read_text(), sheet


@pytest.mark.parametrize("module", list(PUBLIC_MODULES))
def test_every_public_module_has_an_api_page_with_every_public_name(site, module):
    page = site / "api" / f"{PUBLIC_MODULES[module]}.html"
    assert page.is_file(), f"no API page for {module}"
    ids = {m for p in (site / "api").glob("*.html") for m in re.findall(r'id="([\w.-]+)"', p.read_text())}
    imported = importlib.import_module(module)
    names = [n for n in getattr(imported, "__all__", []) if not n.startswith("__")]
    undocumented = []
    for name in names:
        value = getattr(imported, name)
        if isinstance(value, type(sys)):
            found = f"module-{value.__name__}" in ids
        else:
            homes = {module, getattr(value, "__module__", module)}
            found = any(f"{home}.{name}" in ids for home in homes)
        if not found:
            undocumented.append(name)
    assert not undocumented, f"{module}: no API entry for {undocumented}"


def test_the_cli_page_shows_every_command(site):
    text = (site / "api" / "cli.html").read_text()
    for command in ("demo", "export", "inspect"):
        assert f"usage: keras-mtl {command}" in text


@pytest.mark.parametrize("guide", GUIDES, ids=[g.stem for g in GUIDES])
def test_every_guide_runs_at_the_small_size(guide, tmp_path):
    result = subprocess.run([sys.executable, str(guide)], cwd=tmp_path, capture_output=True, text=True,
                            env=_child_env(KERAS_MTL_GUIDE_SIZE="small"), timeout=600)
    assert result.returncode == 0, f"{guide.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def test_every_guide_has_the_header_and_renders_prose_and_code():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        from kmtl_docs import guide_to_markdown, parse_header
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    assert GUIDES, "no guides in docs/guides"
    for guide in GUIDES:
        source = guide.read_text()
        fields, _ = parse_header(source)
        assert fields["Title"] and fields["Description"], guide.name
        page = guide_to_markdown(source)
        assert page.startswith(f"# {fields['Title']}\n") and "```python\n" in page, guide.name
    sample = '"""\nTitle: T\nDescription: D\n"""\n\n# ## Part\n#\n# Prose.\n\nx = 1\n# a code comment\ny = 2\n'
    assert guide_to_markdown(sample) == ("# T\n\n*D*\n\n## Part\n\nProse.\n\n"
                                         "```python\nx = 1\n# a code comment\ny = 2\n```\n")


def _readme_python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)


def test_readme_python_blocks_run_as_written(tmp_path):
    blocks = _readme_python_blocks()
    assert blocks, "README.md has no Python block"
    for i, block in enumerate(blocks):
        folder = tmp_path / f"block{i}"
        folder.mkdir()
        result = subprocess.run([sys.executable, "-c", block], cwd=folder, capture_output=True, text=True,
                                env=_child_env(), timeout=600)
        assert result.returncode == 0, f"README block {i} failed:\n{result.stderr[-3000:]}"
    # The example's own promises: a saved model and a SavedModel version directory.
    assert (tmp_path / "block0" / "street.keras").is_file()
    assert (tmp_path / "block0" / "serving" / "street" / "1" / "saved_model.pb").is_file()


def test_readme_keeps_the_quick_start_block_ci_reads():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"^## Quick start\n.*?^```bash\n(.*?)^```", text, re.S | re.M).group(1)
    assert block.splitlines() == ['python -m pip install . && keras-mtl demo',
                                  'python -m pip install ".[test]" && pytest -q -n auto tests']
    assert "TensorFlow 2.21.0, Keras 3.15.1, JAX 0.10.2 and PyTorch 2.14.1" in " ".join(text.split())


def test_readme_links_point_at_files_that_exist():
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), target


# -- facts the docs state about the library ------------------------------------------------

def test_the_balancing_table_states_each_strategys_cost():
    """docs/topics/balancing.md's cost column is what each strategy class says (its gradient_scope)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from prose_text import strategy_cost
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    import keras_mtl as kmtl

    text = (DOCS / "topics" / "balancing.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)\(.*?\)`[^|]*\|[^|]*\| ([^|]+?) \|", text, re.M))
    strategies = [n for n in kmtl.balancing.__all__ if isinstance(getattr(kmtl.balancing, n), type)
                  and issubclass(getattr(kmtl.balancing, n), kmtl.balancing.Balancer)
                  and n not in ("Balancer", "GradientAggregator")]
    assert sorted(rows) == sorted(strategies)
    assert {n: strategy_cost(n) for n in rows} == rows
    # The backends page names every strategy that needs per-task gradients.
    gradients = sorted(n for n in strategies if getattr(kmtl.balancing, n).gradient_scope is not None)
    backends = " ".join((DOCS / "topics" / "backends.md").read_text().split())
    assert f"The {len(gradients)} strategies that need per-task gradients" in backends
    assert all(f"`{n}`" in backends for n in gradients)
    # README counts them all.
    assert f"**Task balancing**: {len(strategies)} strategies" in (ROOT / "README.md").read_text()


def test_faq_class_names_are_labels_as_shown():
    """docs/faq.md: the names of its example label a categorical task; an unknown name raises as quoted."""
    import keras_mtl as kmtl

    weather = kmtl.Task("weather", kind="categorical", class_names=["sunny", "rain", "fog", "snow"])
    assert weather.num_classes == 4
    x = np.zeros((4, 2), "float32")
    _, y = next(iter(kmtl.data.from_arrays(x, {"weather": ["rain", "?", "sunny", None]}, [weather],
                                           batch_size=4, pack_labels=False)))
    assert y["weather"].numpy().tolist() == [1, kmtl.MISSING, 0, kmtl.MISSING]
    faq = " ".join((DOCS / "faq.md").read_text().split())
    assert "label 'hail' at index 3 is not one of its class_names" in faq
    with pytest.raises(ValueError, match=r"Task 'weather' \(categorical\): label 'hail' at index 3 is not one "
                                         r"of its class_names"):
        kmtl.data.from_arrays(x, {"weather": ["rain", "?", "sunny", "hail"]}, [weather])


def test_every_link_inside_the_site_reaches_its_page_and_anchor(site):
    """The link checker: each relative ``href`` of every page names a file of the site and, after ``#``,
    an ``id`` on that page. Links to other sites are not followed (the suite runs offline)."""
    href = re.compile(r'<a [^>]*href="([^"]*)"')
    ids_of = {}

    def ids(page):
        if page not in ids_of:
            ids_of[page] = set(re.findall(r'\bid="([^"]+)"', page.read_text()))
        return ids_of[page]

    broken = []
    for page in sorted(site.rglob("*.html")):
        if "_modules" in page.parts:  # viewcode's source listings link only into the API pages
            continue
        for link in href.findall(page.read_text()):
            if "://" in link or link.startswith(("mailto:", "javascript:")):
                continue
            path, _, anchor = html.unescape(link).partition("#")
            target = (page.parent / path).resolve() if path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {link} (no such file)")
            elif anchor and target.suffix == ".html" and anchor not in ids(target):
                broken.append(f"{page.relative_to(site)}: {link} (no id {anchor!r} there)")
    assert not broken, "\n".join(broken[:40])


DOC_PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted((DOCS / "topics").glob("*.md"))]


def _dotted(node) -> list[str] | None:
    """``["kmtl", "data", "from_arrays"]`` for the expression ``kmtl.data.from_arrays``, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def test_code_in_the_docs_pages_names_functions_and_arguments_that_exist():
    """Code blocks of the Markdown pages are fragments (they lean on the page's context), so they are
    not run: each parses, every ``kmtl.``/``keras.`` name it uses exists, and every keyword argument it
    passes to one of them, or to ``model.<method>`` of a MultiTaskModel, is a parameter there."""
    import keras

    roots = {"kmtl": __import__("keras_mtl"), "keras": keras, "model": __import__("keras_mtl").MultiTaskModel}
    import keras_mtl.plotting  # noqa: F401  (on demand: make kmtl.plotting.* resolvable)

    problems, checked = [], 0
    for page in DOC_PAGES:
        for block in re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M):
            where = page.relative_to(ROOT)
            try:
                tree = ast.parse(block)
            except SyntaxError as error:
                problems.append(f"{where}: does not parse: {error}")
                continue
            for node in ast.walk(tree):
                chain = _dotted(node.func if isinstance(node, ast.Call) else node)
                if not chain or chain[0] not in roots or len(chain) < 2:
                    continue
                target = roots[chain[0]]
                try:
                    for part in chain[1:]:
                        target = getattr(target, part)
                except AttributeError:
                    problems.append(f"{where}: {'.'.join(chain)} does not exist")
                    continue
                if not isinstance(node, ast.Call) or not callable(target):
                    continue
                try:
                    parameters = inspect.signature(target).parameters
                except (TypeError, ValueError):
                    continue
                checked += 1
                if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
                    continue
                for keyword in node.keywords:
                    if keyword.arg is not None and keyword.arg not in parameters:
                        problems.append(f"{where}: {'.'.join(chain)}() has no argument {keyword.arg!r}")
    assert not problems, "\n".join(dict.fromkeys(problems))  # a call's name is also an attribute node
    assert checked >= 10, f"only {checked} calls checked: the code blocks were not found"
