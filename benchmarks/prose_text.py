"""The words every figures block shares: the templates' Jinja environment and filters, the backends' names.

The text of a block is the template ``templates/<block>.md.j2``; the filters
below format its figures (``{{ ratio|fmt(".2f") }}``, ``{{ names|and_list }}``)
and lay out its paragraphs (``{% filter paragraph %}``) so that no template
repeats a format. Wording that several blocks share is a macro of
``templates/macros.j2``.

Writing a template: a paragraph or a list item may span as many lines as
reads well, since its filter rewraps it. A block tag (``{% if %}``,
``{% endfor %}``) takes the newline that follows it, so a tag that ends a
line joins that line to the next; where a space must follow, write the
following text on the tag's line. ``{%-`` also removes the whitespace
before a tag, ``+%}`` keeps the newline after it.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"

# How every page names the Keras backends (the keys are KERAS_BACKEND's values).
BACKEND_NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


def strategy_cost(name: str) -> str | None:
    """What a balancing strategy costs per step, from its class (``None`` for a name that is no strategy).

    ``"losses"`` for a loss weighting (Keras's own training step), ``"per-task
    gradients"`` for a strategy that differentiates every task's loss with
    respect to every shared parameter, and ``"per-task gradients, last shared
    kernel only"`` for one that needs them for the last shared kernel only
    (``Balancer.gradient_scope`` is ``None``, ``"shared"`` or ``"last_shared"``).
    """
    from keras_mtl import balancing

    strategy = getattr(balancing, name, None)
    if not (isinstance(strategy, type) and issubclass(strategy, balancing.Balancer)):
        return None
    scope = strategy.gradient_scope
    if scope is None:
        return "losses"
    return "per-task gradients" if scope == "shared" else "per-task gradients, last shared kernel only"


# -- the filters -----------------------------------------------------------------------------

def and_list(values) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def and_sep(loop) -> str:
    """What follows an item of a ``{% for %}`` loop written as ``"a, b and c"``."""
    return "" if loop.last else " and " if loop.revindex == 2 else ", "


def sep(loop, separator: str = ", ") -> str:
    """What follows an item of a ``{% for %}`` loop written as ``"a, b, c"`` (``separator`` between items)."""
    return "" if loop.last else separator


def wrap(text: str, width: int = 78, indent: str = "") -> str:
    """Breaks a paragraph at spaces (never inside a backtick span) into lines of about ``width``."""
    lines, line, ticks = [], "", 0
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width and ticks % 2 == 0:
            lines.append(line)
            line = indent + word
        else:
            line = f"{line} {word}" if line else word
        ticks += word.count("`")
    return "\n".join([*lines, line])


def paragraph(text: str) -> str:
    """A template's paragraph rewrapped into lines of about 78 characters, ending with a newline (so a blank
    line after ``{% endfilter %}`` separates it from what follows)."""
    return wrap(" ".join(text.split())) + "\n"


def bullet(text: str) -> str:
    """A Markdown list item, wrapped with a hanging indent, ending with a newline (as ``paragraph``)."""
    return wrap("- " + " ".join(text.split()), indent="  ") + "\n"


def fmt(value, spec: str) -> str:
    """``value`` in a Python format spec: ``{{ 12345.6|fmt(",.0f") }}`` is ``12,346``."""
    return format(value, spec)


def minus(text: str) -> str:
    """The typographic minus sign for a hyphen: ``−1.6``."""
    return str(text).replace("-", "−")


def span(values, spec: str = ".2f", unit: str = "") -> str:
    """``"1.1–6.6×"`` from the smallest and largest of ``values`` (one figure when they agree)."""
    values = list(values)
    low, high = format(min(values), spec), format(max(values), spec)
    return f"{low}{unit}" if low == high else f"{low}–{high}{unit}"


def min_max(values, spec: str = ".0f") -> str:
    """``"42–296"``: the smallest and the largest of ``values``, both always shown."""
    values = list(values)
    return f"{format(min(values), spec)}–{format(max(values), spec)}"


def pair(mean_std, scale: float = 1.0, digits: int = 2, sign: bool = False) -> str:
    """``mean ± std`` (the mean alone when the std is 0, as for a reference row)."""
    mean, std = mean_std
    head = minus(format(mean * scale, f"{'+' if sign else ''}.{digits}f"))
    return head if std == 0 else f"{head} ± {std * scale:.{digits}f}"


def learning_rate(value: float) -> str:
    """``3e-3`` for 0.003."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``15th``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def code(text) -> str:
    """``text`` in backticks: Markdown code."""
    return f"`{text}`"


def backend(name: str) -> str:
    """A backend's display name: ``torch`` is ``PyTorch``."""
    return BACKEND_NAMES.get(name, name)


def build_version(version: str) -> str:
    """A version with its local build label in brackets: ``2.13.0+cpu`` is ``2.13.0 (CPU)``."""
    number, _, build = version.partition("+")
    return number + (f" ({build.upper()})" if build else "")


FILTERS = {f.__name__: f for f in (and_list, and_sep, sep, paragraph, bullet, fmt, minus, span, min_max, pair,
                                  learning_rate, ordinal, code, backend, build_version)}

# Block tags on a line of their own leave no trace (trim_blocks, lstrip_blocks), so tables and lists read
# as they render; a name missing from the context is an error, not an empty string.
ENVIRONMENT = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True, lstrip_blocks=True,
                                 keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
ENVIRONMENT.filters.update(FILTERS)


def render_template(name: str, context: dict) -> str:
    """The text of ``templates/<name>.md.j2`` with ``context``."""
    return ENVIRONMENT.get_template(f"{name}.md.j2").render(context)
