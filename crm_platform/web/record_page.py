"""The record page: a record's fields by section, its stage path and moves,
its related lists, and its timeline (changes, what rules did and why, emails,
linked activities).

Its route is on the records blueprint (``records.record_page``).
"""

from __future__ import annotations

import datetime as dt

from flask import render_template, url_for
from markupsafe import Markup

from ..compiler.compiled import CompiledEntity
from ..errors import PermissionDenied
from ..runtime import sla
from ..runtime import values as v
from ..runtime.history import Entry
from ..runtime.timers import describe
from ..store import read_snapshot
from . import present
from .auth import actor
from .formats import show
from .records import RELATED_ROWS, bp, entity_or_404
from .state import crm, formats


@bp.get("/<entity>/<int:record_id>")
def record_page(entity: str, record_id: int):
    """The record: its fields by section, stage path, moves, related lists and timeline."""
    ce = entity_or_404(entity)
    # One snapshot: the fields, related lists and timeline agree even while a worker writes.
    with read_snapshot(crm().database):
        return _record_page(ce, record_id)


def _record_page(ce: CompiledEntity, record_id: int):
    entity = ce.name
    record = crm().records.get(entity, record_id, actor())
    specs = ce.form.fields
    names, fmt = present.names_for(crm().compiled, crm().tables, specs, [record]), formats()
    sections = [
        (section.label, [(spec, present.cell(record, spec, names, fmt)) for spec in section.fields])
        for section in ce.form.sections
    ]
    permissions, who = crm().permissions, actor()
    return render_template(
        "web/record.html",
        ce=ce,
        record=record,
        title=ce.title_of(record),
        sections=sections,
        stages=stage_paths(ce, record),
        sla=sla.sla_of(crm(), ce, [record], crm().clock.utcnow()).get(record.id),
        related=related_lists(ce, record),
        timeline=timeline(ce, record),
        can_update=_may(permissions, who, entity, "update", record),
        can_delete=_may(permissions, who, entity, "delete", record),
        # A campaign's email runs, for those who may change the campaign.
        campaign_runs=entity == "campaign" and _may(permissions, who, entity, "update", record),
    )


def _may(permissions, who, entity: str, operation: str, record) -> bool:
    try:
        permissions.require_record(who, entity, operation, record)
    except PermissionDenied:
        return False
    return True


def stage_paths(ce: CompiledEntity, record) -> list[dict]:
    """Each workflow of the record: its stages (current one marked) and the moves out of it."""
    paths = []
    for field, machine in ce.workflows.items():
        current = getattr(record, field)
        paths.append(
            {
                "field": field,
                "label": machine.label,
                "current": current,
                "states": list(machine.states.values()),
                "moves": machine.transitions_from(current),
            }
        )
    return paths


def related_lists(ce: CompiledEntity, record) -> list[dict]:
    """The records of other entities that link here, those the user may read."""
    result, who = [], actor()
    for related in ce.form.related:
        if not crm().permissions.can(who, related.entity, "read"):
            continue
        other = crm().compiled.entities[related.entity]
        link = getattr(other.model, f"{related.field}_id")
        query = crm().records.select(related.entity, who).where(link == record.id)
        rows = list(query.order_by(other.model.id.desc()).limit(RELATED_ROWS))
        columns = [s for s in other.list.columns if s.name != related.field and not present.is_title(other, s)][:4]
        result.append(
            {
                "related": related,
                "entity": other,
                "columns": columns,
                "rows": present.rows(crm().compiled, crm().tables, other, columns, rows, formats()),
                "total": query.count() if len(rows) == RELATED_ROWS else len(rows),
                "can_create": crm().permissions.can(who, related.entity, "create"),
            }
        )
    return result


def timeline(ce: CompiledEntity, record) -> list[dict]:
    """The record's history, newest first, with field labels and values shown as the fields are."""
    users = present.user_names(crm().tables)
    specs = {spec.name: spec for spec in ce.form.fields}
    entries = list(reversed(crm().history.entries(ce.name, record.id)))
    links = _linked_titles(ce, entries)
    items = []
    for entry in entries:
        changes = [
            (specs[name].label if name in specs else name, _shown(ce, specs.get(name), old, users, links),
             _shown(ce, specs.get(name), new, users, links))
            for name, (old, new) in (entry.changes or {}).items()
        ]  # fmt: skip
        by = users.get(entry.user_id) if entry.user_id else None
        items.append({"entry": entry, "changes": changes, "by": by})
    items += _activities(ce, record, users)
    items += _pending_steps(ce, record)
    items.sort(key=lambda item: item["entry"].at, reverse=True)
    return items


def _pending_steps(ce: CompiledEntity, record) -> list[dict]:
    """The record's follow-up steps still to come, at their due time (on top: they are in the future)."""
    Timer = crm().tables.Timer
    pending = Timer.select().where(
        (Timer.entity == ce.name) & (Timer.record_id == record.id) & (Timer.status == "pending")
    )
    return [
        {"entry": Entry(at=t.due_at, kind="pending", summary=f"{describe(t)} is due", rule=t.rule), "changes": []}
        for t in pending.order_by(Timer.due_at)
    ]


TIMELINE_ACTIVITIES = 50


def _activities(ce: CompiledEntity, record, users) -> list[dict]:
    """Linked records that belong on a calendar (calls, meetings, tasks) as timeline entries,
    at their date (or when they were logged), those the user may read."""
    items = []
    for related in ce.form.related:
        other = crm().compiled.entities[related.entity]
        calendar = [other.definition.fields[ref.name] for ref in other.definition.calendar]
        if not calendar or not crm().permissions.can(actor(), other.name, "read"):
            continue
        link = getattr(other.model, f"{related.field}_id")
        query = crm().records.select(other.name, actor()).where(link == record.id)
        done = other.definition.done_field
        owner = other.definition.owner_field
        for row in query.order_by(other.model.id.desc()).limit(TIMELINE_ACTIVITIES):
            when = next((getattr(row, f.name) for f in calendar if getattr(row, f.name) is not None), None)
            if when is None:
                when = row.created_at
            elif not isinstance(when, dt.datetime):
                when = dt.datetime.combine(when, dt.time())
            state = " (done)" if done and getattr(row, done.name) else ""
            entry = Entry(at=when, kind=other.name, summary=f"{other.definition.label}: {other.title_of(row)}{state}")
            by = users.get(getattr(row, owner.name)) if owner and getattr(row, owner.name) else None
            href = url_for("records.record_page", entity=other.name, record_id=row.id)
            items.append({"entry": entry, "changes": [], "by": by, "href": href})
    return items


def _linked_titles(ce: CompiledEntity, entries) -> dict[str, dict[int, str]]:
    """Titles of the records link fields pointed to in ``entries``, those the user may read."""
    ids: dict[str, set] = {}
    for entry in entries:
        for name, values in (entry.changes or {}).items():
            field = ce.definition.fields.get(name)
            if field is not None and field.type == "link":
                ids.setdefault(field.entity, set()).update(i for i in values if isinstance(i, int))
    titles = {}
    for entity, wanted in ids.items():
        if crm().permissions.can(actor(), entity, "read"):
            target = crm().compiled.entities[entity]
            query = crm().records.select(entity, actor()).where(target.model.id.in_(wanted))
            titles[entity] = {r.id: target.title_of(r) for r in query}
    return titles


def _shown(ce: CompiledEntity, spec, value, users, links) -> str:
    """A value from the audit (JSON form) as the record page shows the field."""
    if value is None or value == "" or value == []:
        return "(empty)"
    if spec is None:
        return str(value)
    field = ce.definition.fields[spec.name]
    if spec.type == "link":
        return links.get(field.entity, {}).get(value, f"#{value}")
    shown = show(v.from_json(field, value), spec, formats(), users if spec.type == "user" else None)
    return str(shown) if not isinstance(shown, Markup) else shown.striptags()
