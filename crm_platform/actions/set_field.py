"""``set``: change one field of the record through the write path."""

from __future__ import annotations

from ..runtime.values import to_json
from .run import ActionRun


def set_field(run: ActionRun) -> str:
    field = run.node.target.parts[-1]
    value = run.value("value")
    run.engine.records.update(run.entity.name, run.record.id, {field: value}, run.actor, "rule", cause=run.cause)
    return f"set {field} to {to_json(value)!r}"
