"""Records as pages show them: display names of linked records and users,
fetched once per page rather than once per row."""

from __future__ import annotations

from dataclasses import dataclass

from flask import g, url_for
from markupsafe import Markup, escape

from ..compiler.compiled import CompiledApp
from ..compiler.forms import FieldSpec
from ..runtime import values as v
from .formats import Formats, show


def user_names(tables) -> dict[int, str]:
    """Every user's id -> name, once per request."""
    if "crm_user_names" not in g:
        User = tables.User
        g.crm_user_names = {u.id: u.name for u in User.select(User.id, User.name)}
    return g.crm_user_names


def titles(compiled: CompiledApp, entity: str, ids) -> dict[int, str]:
    """Record id -> title for the given ids of ``entity``."""
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    ce = compiled.entities[entity]
    return {r.id: ce.title_of(r) for r in ce.model.select().where(ce.model.id.in_(ids))}


def names_for(compiled: CompiledApp, tables, specs: list[FieldSpec], records) -> dict[str, dict[int, str]]:
    """For each user or link field in ``specs``: id -> display name, for ``records``."""
    names = {}
    for spec in specs:
        if spec.type == "user":
            names[spec.name] = user_names(tables)
        elif spec.type == "link":
            ids = [getattr(r, f"{spec.name}_id") for r in records]
            names[spec.name] = titles(compiled, spec.link_entity, ids)
    return names


def is_title(ce, spec: FieldSpec) -> bool:
    """True if the entity's title is this field alone (a row's link already shows it)."""
    return (ce.definition.title or "").strip() == "{" + spec.name + "}"


def value_of(record, spec: FieldSpec):
    """The stored value of a field (a link as its id)."""
    return getattr(record, f"{spec.name}_id" if spec.type == "link" else spec.name)


def cell(record, spec: FieldSpec, names: dict, formats: Formats):
    """A field of a record, formatted for a page."""
    return show(value_of(record, spec), spec, formats, names.get(spec.name), record)


def json_value(record, spec: FieldSpec):
    """A field in its JSON form (exports, the kanban's data)."""
    return v.to_json(value_of(record, spec))


@dataclass
class Row:
    """One record as a table row: its link, its title and its cells as (column label, value)."""

    id: int
    href: str
    title: str
    cells: list[tuple[str, object]]


def rows(compiled: CompiledApp, tables, ce, columns: list[FieldSpec], records, formats: Formats) -> list[Row]:
    """Table rows for ``records`` of ``ce``: names prefetched, cells formatted, links built once."""
    names = names_for(compiled, tables, columns, records)
    # A record's page is its list's URL plus its id (/r/lead/ + 7): one url_for per table, not per row.
    base = url_for("records.list_page", entity=ce.name)
    # Per column, once: where its value is, its names, and its label escaped for every cell's data-label.
    plan = [
        (
            spec,
            f"{spec.name}_id" if spec.type == "link" else spec.name,
            names.get(spec.name),
            Markup(escape(spec.label)),
        )
        for spec in columns
    ]
    return [
        Row(
            record.id,
            f"{base}{record.id}",
            ce.title_of(record),
            [(label, show(getattr(record, attr), spec, formats, known, record)) for spec, attr, known, label in plan],
        )
        for record in records
    ]
