"""Collecting findings while a pack is loaded and compiled.

Every stage reports through one ``fail`` so every finding gets its location,
source line and hint the same way, and the pack's problems are reported all
at once instead of one per run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from ..errors import DOCS, DefinitionError, Finding, Location


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """Return "did you mean 'x'?" for the closest candidate, or None."""
    close = difflib.get_close_matches(str(word), sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def see_docs(section: str) -> str:
    """A pointer into the reference, for hints."""
    return f"see {DOCS}#{section}"


class Diagnostics:
    """Collects findings; knows each file's text to quote the offending line."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self._sources: dict[str, list[str]] = {}

    def add_source(self, file: str, text: str) -> None:
        """Remember a file's text so findings in it can show the source line."""
        self._sources[file] = text.splitlines()

    def fail(self, message: str, where: Location, hint: str | None = None) -> None:
        """Record an error at ``where``."""
        self._add(message, where, hint, "error")

    def warn(self, message: str, where: Location, hint: str | None = None) -> None:
        """Record a warning at ``where``."""
        self._add(message, where, hint, "warning")

    def _add(self, message: str, where: Location, hint: str | None, severity: str) -> None:
        lines = self._sources.get(where.file, [])
        source = lines[where.line - 1] if 0 < where.line <= len(lines) else None
        self.findings.append(Finding(where, message, hint, severity, source))

    @property
    def has_errors(self) -> bool:
        return any(f.is_error for f in self.findings)

    def raise_if_errors(self) -> None:
        """Raise a DefinitionError carrying every finding if any is an error."""
        if self.has_errors:
            raise DefinitionError(self.findings)
