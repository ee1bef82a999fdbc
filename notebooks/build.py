"""Generates the notebooks from their sources, and optionally executes them.

The sources are Python files in jupytext's percent format, ``notebooks/src/NN_name.py``;
each becomes ``notebooks/NN_name.ipynb``. With ``--execute`` every notebook also runs top
to bottom (in ``notebooks/``, so that it writes ``notebooks/results/NN_name.json``) and is
saved with its outputs.

Usage::

    python notebooks/build.py                          # regenerate every .ipynb, no outputs
    python notebooks/build.py --execute                # regenerate and run at full size
    python notebooks/build.py --execute --size small 02 05   # run two of them at the small size
"""

import argparse
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def sources(prefixes=()):
    """The notebook sources, sorted; only those whose name starts with one of ``prefixes`` if given."""
    found = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    if prefixes:
        found = [p for p in found if p.name.startswith(tuple(prefixes))]
    return found


def read_notebook(source: Path) -> nbformat.NotebookNode:
    """The notebook of one source file (no outputs), with a Python 3 kernel.

    Args:
        source: a ``notebooks/src/NN_name.py`` file in jupytext percent format.

    Returns:
        An ``nbformat`` version-4 notebook.
    """
    notebook = jupytext.read(source, fmt="py:percent")
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


def execute(notebook, workdir: Path, size: str, timeout: int | None = None):
    """Runs ``notebook`` in ``workdir`` at ``size`` ("full" or "small"), in place.

    ``timeout`` is per cell, in seconds; none by default, since one cell of a full-size
    grid (02) trains for hours on a 2-core machine.
    """
    os.environ["KERAS_MTL_NOTEBOOK_SIZE"] = size
    # The inline backend embeds every figure in the saved notebook; a non-interactive backend
    # such as Agg (a common MPLBACKEND on servers) would drop them all silently.
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    # The kernel imports keras_mtl from this checkout, whatever is installed.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="number prefixes (e.g. 02 05); default: all")
    parser.add_argument("--execute", action="store_true", help="run each notebook and save its outputs")
    parser.add_argument("--size", choices=("full", "small"), default="full")
    args = parser.parse_args(argv)
    chosen = sources(args.notebooks)
    if not chosen:
        sys.exit(f"no notebook source in {SOURCES} matches {args.notebooks}")
    for source in chosen:
        notebook = read_notebook(source)
        if args.execute:
            started = time.perf_counter()
            execute(notebook, HERE, args.size)
            notebook.metadata["keras_mtl"] = {"size": args.size}
            print(f"{source.stem}: executed at size {args.size} in {time.perf_counter() - started:.0f} s")
        out = HERE / f"{source.stem}.ipynb"
        nbformat.write(notebook, out)
        print("wrote", out.relative_to(HERE.parent))


if __name__ == "__main__":
    main()
