"""Sphinx extension of the keras_mtl docs: guides as Python files, and the CLI's help.

A guide is a Python file in the style of keras.io's guides: a docstring header
with ``Title:`` and ``Description:`` lines, then code, with the prose in
comment paragraphs. A comment paragraph is a run of lines that all start with
``#`` at the first column and that follows a blank line (or the header); it
renders as Markdown with the leading ``# `` removed. Every other line is code
and renders in a Python block, comments inside code included. The guide is
executed as written by ``tests/test_docs.py``.
"""

from __future__ import annotations

import ast
import re

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from myst_parser.parsers.sphinx_ import MystParser

HEADER_FIELDS = ("Title", "Description")


def parse_header(source: str) -> tuple[dict[str, str], str]:
    """The header fields of a guide (``{"Title": ..., "Description": ...}``) and the body after it."""
    module = ast.parse(source)
    first = module.body[0] if module.body else None
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        raise ValueError("a guide starts with a docstring holding 'Title:' and 'Description:' lines")
    fields, key = {}, None
    for line in first.value.value.strip().splitlines():
        match = re.match(r"^(\w[\w ]*):\s*(.*)$", line)
        if match and match.group(1) in HEADER_FIELDS:
            key = match.group(1)
            fields[key] = match.group(2).strip()
        elif key and line.strip():
            fields[key] += " " + line.strip()
    missing = [f for f in HEADER_FIELDS if not fields.get(f)]
    if missing:
        raise ValueError(f"the guide's header has no {', '.join(missing)} line")
    body = "\n".join(source.splitlines()[first.end_lineno:])
    return fields, body


def guide_to_markdown(source: str) -> str:
    """The Markdown page of a guide: title, description, then prose and code in order."""
    fields, body = parse_header(source)
    parts = [f"# {fields['Title']}", f"*{fields['Description']}*"]
    code: list[str] = []
    prose: list[str] | None = None
    previous_blank = True

    def flush_code():
        text = "\n".join(code).strip("\n")
        if text:
            parts.append(f"```python\n{text}\n```")
        code.clear()

    for line in body.splitlines():
        is_comment = line.startswith("#") and not line.startswith("#!")
        if prose is not None:
            if is_comment:
                prose.append(re.sub(r"^# ?", "", line))
                continue
            parts.append("\n".join(prose))
            prose = None
        if is_comment and previous_blank:
            flush_code()
            prose = [re.sub(r"^# ?", "", line)]
            continue
        code.append(line)
        previous_blank = not line.strip()
    if prose is not None:
        parts.append("\n".join(prose))
    flush_code()
    return "\n\n".join(parts) + "\n"


class GuideParser(MystParser):
    """Parses a guide (a ``.py`` file under ``guides/``) as the Markdown of :func:`guide_to_markdown`."""

    supported = ("guide",)

    def parse(self, inputstring: str, document) -> None:
        super().parse(guide_to_markdown(inputstring), document)


class CliHelp(Directive):
    """``.. kmtl-cli-help:: [subcommand]``: the ``keras-mtl`` parser's help as a literal block."""

    optional_arguments = 1
    option_spec = {"prog": directives.unchanged}

    def run(self):
        from keras_mtl.cli import build_parser

        parser = build_parser()
        if self.arguments:
            name = self.arguments[0]
            sub = next(a for a in parser._subparsers._group_actions if a.choices)  # argparse's subparsers
            parser = sub.choices[name]
        text = parser.format_help()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def escape_starred_parameters(app, what, name, obj, options, lines):
    """``:param a, **kwargs:`` (a Google-style entry naming several parameters) with its stars escaped.

    Napoleon escapes the stars of ``**kwargs`` only when it stands alone; in a
    shared entry reStructuredText would read them as the start of bold text.
    """
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*:param )([^:]*)(:.*)$", line)
        if match and re.search(r"(?<!\\)\*", match.group(2)):
            lines[i] = match.group(1) + re.sub(r"(?<!\\)\*", r"\\*", match.group(2)) + match.group(3)


def setup(app):
    app.connect("autodoc-process-docstring", escape_starred_parameters)
    app.add_source_suffix(".py", "guide")
    app.add_source_parser(GuideParser)
    app.add_directive("kmtl-cli-help", CliHelp)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
