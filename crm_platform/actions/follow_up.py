"""``follow_up after D unless C``: when its time comes, plan the nested actions
unless the condition says the record has moved on."""

from __future__ import annotations

from .run import ActionRun, Skip


def follow_up(run: ActionRun) -> str:
    if "unless" in run.action.expressions and run.value("unless"):
        raise Skip("its 'unless' condition holds now, so the record has moved on")
    rows = run.engine.outbox.plan_children(run.row, run.action.children, run.row.definition_version)
    return f"follow-up due: {len(rows)} action{'s' if len(rows) != 1 else ''} planned"
