"""``{field}`` placeholders in titles and notification messages.

Filled by plain substitution of checked field names, never by
``str.format``, which would let ``{account.__class__}`` reach attributes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def fill(text: str, value_of: Callable[[str], object]) -> str:
    """Replace each ``{name}`` by ``value_of(name)`` (empty for ``None``)."""

    def replace(match: re.Match) -> str:
        value = value_of(match.group(1).strip())
        return "" if value is None else str(value)

    return PLACEHOLDER.sub(replace, text)


def split(text: str) -> tuple[tuple[str, str | None], ...]:
    """``text`` as (literal, name) parts, for filling many times: ``"{a} x"`` -> (("", "a"), (" x", None))."""
    parts, position = [], 0
    for match in PLACEHOLDER.finditer(text):
        parts.append((text[position : match.start()], match.group(1).strip()))
        position = match.end()
    parts.append((text[position:], None))
    return tuple(parts)


def fill_parts(parts: tuple[tuple[str, str | None], ...], value_of: Callable[[str], object]) -> str:
    """``fill`` for a text already ``split``."""
    out = []
    for literal, name in parts:
        out.append(literal)
        if name is not None:
            value = value_of(name)
            if value is not None:
                out.append(str(value))
    return "".join(out)
