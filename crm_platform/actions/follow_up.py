"""``follow_up after D unless C: actions``: a step of a sequence.

Planning a follow-up writes a timer (``runtime/timers.py``); when it fires,
``fire_follow_up`` checks the record as it is then and either plans the
step's actions (a nested follow-up becomes the sequence's next timer, due
relative to now) or ends the sequence, with a line on the timeline either
way. ``follow_up`` is the action executor for follow-ups planned as outbox
rows before timers existed.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from ..definitions import nodes as n
from ..definitions.typecheck import fields_read
from ..runtime.time_triggers import find_action, obsolete
from ..runtime.timers import describe
from ..runtime.values import to_json
from .run import ActionRun, Skip


def follow_up(run: ActionRun) -> str:
    if "unless" in run.action.expressions and run.value("unless"):
        raise Skip("its 'unless' condition holds now, so the record has moved on")
    rows = run.engine.outbox.plan_children(run.row, run.action.children, run.row.definition_version)
    return f"follow-up due: {len(rows)} action{'s' if len(rows) != 1 else ''} planned"


def fire_follow_up(crm, timer, now: dt.datetime) -> tuple[str, str]:
    """The timer handler of a follow-up step: (status, note); the timeline says the same."""
    what = describe(timer)
    rules = crm.compiled.rules.rules
    gone = obsolete(timer, rules)  # removed, disabled, or without this step: the timeline says which
    if gone is not None:
        return _end(crm, timer, "skipped", f"{what} skipped: {gone}")
    action = find_action(rules[timer.rule], timer.step or "")
    ce = crm.compiled.entities.get(timer.entity)
    record = ce.model.get_or_none(ce.model.id == timer.record_id) if ce is not None else None
    if record is None:
        return _end(crm, timer, "skipped", f"{what} stopped: the record was deleted", note=False)
    why = stop_reason(crm, timer, action, ce, record)
    if why is not None:
        return _end(crm, timer, "skipped", f"{what} {why}")
    payload = timer.payload or {}
    parent = SimpleNamespace(
        key=timer.key,
        entity=timer.entity,
        record_id=timer.record_id,
        rule=timer.rule,
        path=timer.step,
        payload={"v": 1, "reason": payload.get("reason"), "started_at": payload.get("started_at")},
        depth=payload.get("depth", 1),
    )
    planned = len(crm.outbox.plan_children(parent, action.children, crm.definition_version))
    steps = sum(isinstance(child.node, n.FollowUp) for child in action.children)
    summary = f"{what} sent: {planned} action{'s' if planned != 1 else ''} planned"
    if steps:
        summary += ", next step scheduled"
    crm.history.note(
        timer.entity, timer.record_id, crm.ctx.now(), "action", summary, rule=timer.rule,
        detail={"timer": timer.id, "step": timer.step, "reason": payload.get("reason")},
    )  # fmt: skip
    return "fired", summary


def stop_reason(crm, timer, action, ce, record) -> str | None:
    """Why the sequence ends here ("stopped: a reply was received ..."), or None to go ahead."""
    InboundMail = crm.tables.InboundMail
    started = (timer.payload or {}).get("started_at")
    replies = InboundMail.select(InboundMail.received_at).where(
        (InboundMail.entity == timer.entity)
        & (InboundMail.record_id == timer.record_id)
        & (InboundMail.automatic == False)  # noqa: E712 - an out-of-office reply is no answer
    )
    if started:
        replies = replies.where(InboundMail.received_at >= dt.datetime.fromisoformat(started))
    reply = replies.order_by(InboundMail.received_at).first()
    if reply is not None:
        return f"stopped: a reply was received on {reply.received_at:%Y-%m-%d %H:%M}"
    if any(isinstance(child.node, n.SendEmail) for child in action.children):
        who = unsubscribed(crm, ce, record)
        if who:
            return f"stopped: {who} unsubscribed"
    if "unless" in action.expressions and action.expressions["unless"](record, crm.ctx):
        return f"skipped because {_because(action.node.unless, ce.name, record)}"
    return None


def unsubscribed(crm, ce, record) -> str | None:
    """Who of the record (itself, or a linked record with an ``unsubscribed`` field) unsubscribed."""
    fields = ce.definition.fields
    if "unsubscribed" in fields and getattr(record, "unsubscribed", False):
        return f"the {ce.definition.label.lower()}"
    for name, field in fields.items():
        if field.type != "link" or field.entity not in crm.compiled.entities:
            continue
        target = crm.compiled.entities[field.entity]
        linked_id = getattr(record, f"{name}_id", None)
        if linked_id is None or "unsubscribed" not in target.definition.fields:
            continue
        linked = target.model.get_or_none(target.model.id == linked_id)
        if linked is not None and linked.unsubscribed:
            return f"the linked {target.definition.label.lower()} ({target.title_of(linked)})"
    return None


def _because(expr, entity: str, record) -> str:
    """``lead.status is 'contacted'`` for each field the condition read."""
    parts = []
    for path in fields_read(expr, entity):
        value = record
        for part in path.split("."):
            value = None if value is None else getattr(value, part, None)
        if hasattr(value, "_meta") and hasattr(value, "id"):
            value = value.id
        parts.append(f"{entity}.{path} is {to_json(value)!r}")
    return " and ".join(parts) or "its 'unless' condition holds"


def _end(crm, timer, status: str, summary: str, note: bool = True) -> tuple[str, str]:
    if note:
        crm.history.note(
            timer.entity, timer.record_id, crm.ctx.now(), "skipped", summary, rule=timer.rule,
            detail={"timer": timer.id, "step": timer.step},
        )  # fmt: skip
    return status, summary
