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
