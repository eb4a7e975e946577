"""``notify``: an in-app notification to a user, the members of a team, or
everyone with a role. One notification per user and action (its key), so a
retried action never notifies twice."""

from __future__ import annotations

from ..definitions import nodes as n
from .run import ActionRun, PermanentFailure


def recipients(run: ActionRun, to: n.Recipient, *, available_only: bool = False) -> list[int]:
    """The user ids a recipient names."""
    directory = run.engine.directory
    if to.kind == "role":
        return directory.users_with_role(to.name, available_only=available_only)
    if to.kind == "team":
        return directory.team_members(to.name, available_only=available_only)
    if to.kind == "user":
        info = directory.find(to.name)
        return [info.id] if info and info.active else []
    user_id = run.value("to")
    return [user_id] if user_id and directory.exists(user_id) else []


def notify_users(run: ActionRun, user_ids: list[int], message: str) -> None:
    Notification = run.engine.tables.Notification
    now = run.engine.ctx.now()
    for user_id in user_ids:
        Notification.insert(
            key=f"{run.row.key}:{user_id}",
            user=user_id,
            message=message,
            entity=run.entity.name,
            record_id=run.row.record_id,
            created_at=now,
        ).on_conflict_ignore().execute()


def notify(run: ActionRun) -> str:
    node: n.Notify = run.node
    users = recipients(run, node.to)
    if not users:
        raise PermanentFailure(f"nobody to notify: {_describe(node.to)} names no active user")
    message = run.fill(node.message)
    notify_users(run, users, message)
    names = ", ".join(run.user_name(u) for u in users)
    return f"notified {names}: {message}"


def _describe(to: n.Recipient) -> str:
    if to.kind in ("role", "team", "user"):
        return f"{to.kind} {to.name!r}"
    return to.path.dotted
