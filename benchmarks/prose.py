"""The measured figures the docs and READMEs quote, rendered from the committed result files.

``python benchmarks/prose.py`` rewrites every marked block of the pages in
``FILES`` (the docs' topic and benchmark pages, ``benchmarks/README.md``,
``data/README.md`` and ``notebooks/README.md``); ``--check`` only reports the
blocks that differ from their result files (exit status 1). A block is the
text between ``<!-- figures:NAME -->`` and ``<!-- /figures -->``; everything
outside the markers is left alone.

A block's words are the Jinja template ``benchmarks/templates/NAME.md.j2``;
its figures and the decisions they imply (faster or slower, met or not,
which backend) are computed from the result file by the function that
``BLOCKS`` names, in the ``prose_*.py`` module of its benchmark, and handed
to the template as its context. The files and what writes them:

* ``benchmarks/results/backends.json``: ``python benchmarks/run.py --backends
  tensorflow,jax,torch --json``; ``tensorflow.json``: ``python benchmarks/run.py
  --backend tensorflow --only a,e,g --rows a,a-spe8 --json`` (``prose_backends.py``);
* ``benchmarks/results/fit_time.json``: ``python benchmarks/fit_time.py --json
  benchmarks/results/fit_time.json`` (``prose_fit_time.py``); ``fit_time_slow.json``: the same at 100
  and 1,000 tasks on a machine slowed to the slowest of its kind (benchmarks/README.md says how);
* ``benchmarks/results/balancing.json``: ``python benchmarks/balancing.py
  --output benchmarks/results`` (``prose_balancing.py``);
* ``benchmarks/results/serving.json`` and ``distribute.json``: ``python
  benchmarks/serving.py --output benchmarks/results/serving.json``, ``python
  benchmarks/distribute.py --json`` (``prose_deploy.py``);
* ``benchmarks/results/representation.json``: ``python benchmarks/representation.py
  --output benchmarks/results`` (``prose_representation.py``);
* ``benchmarks/results/demo.json``: ``python benchmarks/demo.py`` (``prose_demo.py``);
* ``notebooks/results/NN_name.json``: ``python notebooks/build.py --execute``
  (``prose_notebooks.py``).

Every figure and every word that depends on one is computed from the file,
so a new run cannot leave a stale number or a stale conclusion in the prose;
``tests/test_prose.py`` fails when a block is stale.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import prose_backends
import prose_balancing
import prose_demo
import prose_deploy
import prose_fit_time
import prose_notebooks
import prose_representation
from prose_text import render_template

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NOTEBOOK_RESULTS = ROOT / "notebooks" / "results"
BLOCK = re.compile(r"(<!-- figures:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.DOTALL)

# Each block: the result file it is rendered from, and the function that computes its template's context.
BLOCKS = {
    "backends": ("backends", prose_backends.section),
    "backends-summary": ("backends", prose_backends.summary),
    "steps-per-execution": ("tensorflow", prose_backends.steps_per_execution),
    "fit-time": ("fit_time", prose_fit_time.fit_time),
    "fit-time-summary": ("fit_time", prose_fit_time.summary),
    "fit-time-slow": ("fit_time_slow", prose_fit_time.fit_time),
    "balancing-summary": ("balancing", prose_balancing.summary),
    "balancing-choice": ("balancing", prose_balancing.choice),
    "balancing-run": ("balancing", prose_balancing.run),
    "balancing-tables": ("balancing", prose_balancing.tables),
    "balancing-reading": ("balancing", prose_balancing.reading),
    "representation-summary": ("representation", prose_representation.representation),
    "serving-summary": ("serving", prose_deploy.serving),
    "distribute-summary": ("distribute", prose_deploy.distribute),
    "demo": ("demo", prose_demo.demo),
    "notebook-headlines": ("notebooks", prose_notebooks.headlines),
}
# The pages that hold figures blocks (README.md holds none: its figures live on these pages).
FILES = ("docs/topics/backends.md", "docs/topics/balancing.md", "docs/topics/demo.md",
         "docs/topics/distributed.md", "docs/topics/many_tasks.md", "docs/topics/serving.md",
         "docs/benchmarks/backends.md", "docs/benchmarks/fit_time.md",
         "docs/benchmarks/balancing.md", "docs/benchmarks/representation.md", "docs/benchmarks/serving.md",
         "docs/benchmarks/distribute.md", "docs/benchmarks/demo.md",
         "benchmarks/README.md", "data/README.md", "notebooks/README.md")


def load(name: str = "backends") -> dict:
    """A result file of ``benchmarks/results``, or (``"notebooks"``) every headline file of ``notebooks/results``."""
    if name == "notebooks":
        return {path.stem: json.loads(path.read_text()) for path in sorted(NOTEBOOK_RESULTS.glob("*.json"))}
    return json.loads((RESULTS / f"{name}.json").read_text())


def render_block(name: str, data: dict | None = None) -> str:
    """The text of block ``name``, from ``data`` or else from its result file."""
    if name not in BLOCKS:
        raise KeyError(f"unknown figures block {name!r}; known: {sorted(BLOCKS)}")
    source, context = BLOCKS[name]
    return render_template(name, context(load(source) if data is None else data))


def render(text: str, report: dict | None = None) -> str:
    """``text`` with every figures block rendered: the ``backends.json`` blocks from ``report`` if given,
    every other block from its own file."""
    def block(match):
        name = match.group("name")
        data = report if report is not None and BLOCKS.get(name, ("",))[0] == "backends" else None
        return match.group(1) + render_block(name, data) + match.group(4)

    return BLOCK.sub(block, text)


def blocks(text: str) -> list[str]:
    """The names of the figures blocks in ``text``, in order."""
    return [m.group("name") for m in BLOCK.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/prose.py", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale blocks (exit 1), change nothing")
    args = parser.parse_args(argv)
    stale = []
    for name in FILES:
        path = ROOT / name
        text = path.read_text()
        rendered = render(text)
        if rendered != text:
            stale.append(name)
            if not args.check:
                path.write_text(rendered)
    verb = "stale" if args.check else "rewritten"
    print(f"{verb}: {', '.join(stale)}" if stale else "every figures block matches benchmarks/results")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
