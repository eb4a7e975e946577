"""Columns of a file -> fields of an entity.

A column matches a field by its name or its label, ignoring case, spaces,
underscores and hyphens (``First name``, ``first_name``, ``FIRSTNAME``); a
trailing ``(UTC)`` (the XLSX export's datetime headers) is ignored too.
``<Label> currency`` or ``<name>_currency`` is the money field's currency.
A mapping passed in (column -> field) wins over the automatic match, and
``""`` as the field leaves a column out. A converted contacts file (vCard, Google,
Outlook; see ``contacts.py``) comes with a preset for the columns no field's name or
label matches (a contact's ``Company`` -> its account link), under what is passed in.

Stage fields (they move only through their workflow) and computed fields
are never targets: such columns are reported as unmapped with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..compiler.compiled import CompiledEntity
from ..errors import ValidationError


@dataclass
class Mapping:
    """column index -> target key (a field name or ``<money>_currency``), and what was left out."""

    columns: dict[int, str]
    unmapped: dict[str, str] = field(default_factory=dict)  # column -> why

    def as_json(self, header: list[str]) -> dict[str, str]:
        """column name -> target, ``""`` for a column left out: stored on the job, so that
        a resumed job maps the file exactly as it started."""
        return {name: self.columns.get(i, "") for i, name in enumerate(header)}


def normal(text: str) -> str:
    """A header or name reduced for matching."""
    text = re.sub(r"\(utc\)\s*$", "", str(text).strip().lower())
    return re.sub(r"[\s_\-]+", "", text)


def targets(ce: CompiledEntity) -> tuple[dict[str, str], dict[str, str]]:
    """(normalised name or label -> target key, excluded normalised names -> why)."""
    found, excluded = {}, {}
    for fd in ce.definition.fields.values():
        keys = (normal(fd.name), normal(fd.label))
        if fd.type == "state":
            why = f"{fd.label} changes only through its workflow; new records start at the first stage"
            excluded.update(dict.fromkeys(keys, why))
            continue
        if fd.is_computed:
            excluded.update(dict.fromkeys(keys, f"{fd.label} is computed"))
            continue
        for key in keys:
            found.setdefault(key, fd.name)
        if fd.type == "money":
            for key in (normal(f"{fd.name}_currency"), normal(f"{fd.label} currency")):
                found.setdefault(key, f"{fd.name}_currency")
    excluded.setdefault("id", "the record id is given by the CRM")
    return found, excluded


def match(ce: CompiledEntity, header: list[str], given: dict[str, str] | None = None) -> Mapping:
    """Map ``header`` to the fields of ``ce``; ``given`` (column -> field) overrides.

    Raises ``ValidationError`` (keyed by column, or by field for a missing required one)
    if a given target is unknown, two columns fill one field, no column matches any field,
    or a required field without a default has no column. Nothing has been written then.
    """
    found, excluded = targets(ce)
    valid_targets = set(found.values())
    from .contacts import preset  # here: contacts imports job, which imports this module

    # The preset fills in only where no field has the column's name or label (a lead's Company is its own field).
    presets = {c: t for c, t in preset(header).items() if t in valid_targets and normal(c) not in found}
    given = presets | dict(given or {})
    columns, unmapped, errors = {}, {}, {}
    for column in given:
        if column not in header:
            errors.setdefault(column, []).append("there is no such column in the file")
    for index, name in enumerate(header):
        if name in given:
            target = given[name]
            if not target:
                unmapped[name] = "left out"
                continue
            if target not in valid_targets:
                errors.setdefault(name, []).append(f"there is no importable field {target!r}")
                continue
        else:
            key = normal(name)
            target = found.get(key)
            if target is None:
                unmapped[name] = excluded.get(key, "no field of that name or label")
                continue
        if target in columns.values():
            errors.setdefault(name, []).append(f"{target!r} is already filled from another column")
            continue
        columns[index] = target
    if not columns and not errors:
        labels = ", ".join(fd.label for fd in ce.definition.fields.values() if fd.name in valid_targets)
        raise ValidationError({"": [f"no column of the first row names a field; is there a header row? ({labels})"]})
    for fd in ce.definition.fields.values():
        if fd.required and not fd.has_default and fd.name in valid_targets and fd.name not in columns.values():
            errors.setdefault(fd.name, []).append(f"is required, but no column holds {fd.label}")
    if errors:
        raise ValidationError(errors)
    return Mapping(columns, unmapped)
