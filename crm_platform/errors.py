"""The platform's error types.

Every error a person can cause carries what that person needs to act: a
definition error names file, line and column and renders the source line with
a caret, like a compiler; a record error names the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DOCS = "docs/definitions.md"


@dataclass(frozen=True, order=True)
class Location:
    """A position in a definition file; line and column count from 1."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Finding:
    """One problem found in a pack: where, what, and how to fix it."""

    location: Location
    message: str
    hint: str | None = None
    severity: str = "error"
    source_line: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.location}: {self.severity}: {self.message}"

    def render(self) -> str:
        """Render like a compiler diagnostic: header, source line, caret, hint."""
        lines = [str(self)]
        if self.source_line is not None and self.location.column:
            lines.append("    " + self.source_line.rstrip("\n"))
            lines.append("    " + " " * (self.location.column - 1) + "^")
        if self.hint:
            lines.append(f"    hint: {self.hint}")
        return "\n".join(lines)

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


class CRMError(Exception):
    """Root of every error the platform raises on purpose."""


class DefinitionError(CRMError):
    """A pack has errors. Holds every finding, sorted by file and position."""

    def __init__(self, findings: list[Finding]):
        self.findings = sorted(findings, key=lambda f: f.location)
        super().__init__("\n".join(f.render() for f in self.findings))

    def __reduce__(self):
        return (type(self), (self.findings,))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.is_error]


class ValidationError(CRMError):
    """A record payload is invalid: one message (or more) per field."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        summary = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(errors.items()))
        super().__init__(summary)

    def __reduce__(self):
        return (type(self), (self.errors,))


class PermissionDenied(CRMError):
    """The acting user may not do this."""

    def __reduce__(self):
        return (type(self), (str(self),))


class TransitionNotAllowed(CRMError):
    """A stage change was refused; ``reasons`` says why, for the person."""

    def __init__(self, source: str, target: str, reasons: list[str]):
        self.source, self.target, self.reasons = source, target, reasons
        super().__init__(f"cannot move from {source!r} to {target!r}: " + "; ".join(reasons))

    def __reduce__(self):
        return (type(self), (self.source, self.target, self.reasons))


class ConflictError(CRMError):
    """A write was based on a stale version of a record; ``fields`` changed meanwhile."""

    def __init__(self, message: str, fields: list[str] | None = None, current_version: int | None = None):
        self.fields = list(fields or [])
        self.current_version = current_version
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (str(self), self.fields, self.current_version))


class NotFound(CRMError):
    """No record (or user) with that id, or not one the actor may see."""
