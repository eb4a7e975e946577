"""``move``: a stage change through the workflow's guard, like any other."""

from __future__ import annotations

from .run import ActionRun


def move(run: ActionRun) -> str:
    node = run.node
    machine = next(m for m in run.entity.workflows.values() if node.state in m.states)
    source = getattr(run.record, machine.field)
    run.engine.records.transition(
        run.entity.name, run.record.id, node.state, run.actor, "rule", field=machine.field, cause=run.cause
    )
    return f"moved from {source} to {node.state}"
