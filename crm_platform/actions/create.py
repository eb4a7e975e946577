"""``create``: a related record (a follow-up task, a kick-off call)."""

from __future__ import annotations

from .run import ActionRun


def create(run: ActionRun) -> str:
    node = run.node
    values = {name: run.value(name) for name, _, _ in node.values}
    values = {name: value for name, value in values.items() if value is not None}
    records = run.engine.records
    record = records.create(node.entity, values, run.actor, "rule", cause=run.cause)
    created = records.entity(node.entity)
    return f"created {created.definition.label} #{record.id} {created.title_of(record)!r}"
