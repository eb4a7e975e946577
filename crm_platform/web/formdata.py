"""Submitted HTML forms -> payloads for the write path.

Each widget sends text; here it becomes the field's JSON value. What cannot
be read (``abc`` in a number field) is reported against the field; the rest
(required, ranges, choices, links) is judged by the write path, so forms,
the API and imports get the same messages.
"""

from __future__ import annotations

import datetime as dt

from werkzeug.datastructures import MultiDict

from ..compiler.forms import FieldSpec
from .formats import Formats

NOT_A_NUMBER = "must be a number"


def editable(specs, read_only: frozenset[str] = frozenset()) -> list[FieldSpec]:
    """The fields a person may fill in on a form (not computed, not read-only, not a stage)."""
    return [s for s in specs if not s.read_only and s.type != "state" and s.name not in read_only]


def parse(specs: list[FieldSpec], form: MultiDict, formats: Formats) -> tuple[dict, dict[str, list[str]]]:
    """Read ``specs`` from ``form``; return (payload, errors per field)."""
    payload, errors = {}, {}
    for spec in specs:
        try:
            payload[spec.name] = _value(spec, form, formats)
        except ValueError as error:
            errors[spec.name] = [str(error)]
    return payload, errors


def _value(spec: FieldSpec, form: MultiDict, formats: Formats):
    kind = spec.type
    if kind == "boolean":
        # A hidden "0" comes before the checkbox, so an unticked box still sends a value.
        return form.getlist(spec.name)[-1:] == ["1"]
    if spec.multiple:
        values = form.getlist(spec.name)
        if kind == "tags":
            values = [tag.strip() for value in values for tag in value.split(",")]
        return [v for v in dict.fromkeys(values) if v]
    text = (form.get(spec.name) or "").strip()
    if text == "":
        return None
    if kind in ("integer", "link", "user"):
        try:
            return int(text)
        except ValueError:
            raise ValueError("must be a whole number" if kind == "integer" else "pick one from the list") from None
    if kind in ("decimal", "money", "percent"):
        try:
            return formats.parse_decimal(text)
        except ValueError:
            raise ValueError(NOT_A_NUMBER) from None
    if kind == "date":
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise ValueError("must be a date (YYYY-MM-DD)") from None
    if kind == "datetime":
        try:
            return formats.parse_datetime(text)
        except ValueError:
            raise ValueError("must be a date and time (YYYY-MM-DDTHH:MM)") from None
    return text
