"""``escalate``: hand the record to someone above (a user, a team's member or
a role's holder with the fewest open records) and tell them."""

from __future__ import annotations

from .assign import open_records
from .notify import notify_users, recipients
from .run import ActionRun, PermanentFailure


def escalate(run: ActionRun) -> str:
    node = run.node
    definition = run.entity.definition
    field = definition.owner_field.name if len(node.target.parts) == 1 else node.target.parts[-1]
    candidates = recipients(run, node.to, available_only=True)
    if not candidates:
        raise PermanentFailure("nobody to escalate to: no active user who is not away")
    user_id = min(candidates, key=lambda u: (open_records(run, field, u), u))
    previous = getattr(run.record, field, None)
    run.engine.records.update(definition.name, run.record.id, {field: user_id}, run.actor, "rule", cause=run.cause)
    title = run.entity.title_of(run.record)
    notify_users(run, [user_id], f"Escalated to you: {definition.label} {title!r}")
    before = f" from {run.user_name(previous)}" if previous else ""
    return f"escalated{before} to {run.user_name(user_id)}"
