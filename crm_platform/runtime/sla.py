"""Where a record stands against its SLA policy, computed from its audit history.

For each record a policy applies to (the first of its entity's policies,
in file order, whose ``applies_when`` holds) and whose priority has targets:

- the clock starts when the record was created;
- it stops while the record is in a ``pause_in`` state (waiting on the
  customer) and, for the resolution target, while it is in a ``resolved_in``
  state (a reopened ticket's clock resumes);
- the first response is the first move out of a ``first_response.leaves``
  state, or the moment written in ``first_response.field``;
- only business time counts (``runtime.business_hours``); due times move
  while the clock is stopped.

``sla_of`` is the one function pages, reports and the escalation scan call.
``run_due`` fires the escalation steps whose threshold has been crossed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import peewee as pw

from ..compiler.sla import CompiledPolicy
from ..definitions.sla import EscalationStep
from ..errors import CRMError
from . import business_hours as bh
from .history import Cause
from .users import Actor

if TYPE_CHECKING:
    from ..compiler.compiled import CompiledEntity
    from ..engine import CRM

log = logging.getLogger("crm.sla")

ON_TRACK, AT_RISK, BREACHED, MET, PAUSED = "on_track", "at_risk", "breached", "met", "paused"
LABELS = {ON_TRACK: "On track", AT_RISK: "At risk", BREACHED: "Breached", MET: "Met", PAUSED: "Paused"}
AT_RISK_PERCENT = 80  # from 80 % of a target's time on, it is at risk
TARGET_LABELS = {"first_response": "First response", "resolution": "Resolution"}
TARGET_WORDS = {"first_response": "first response", "resolution": "resolution"}
ID_CHUNK = 500  # record ids per IN (...) list


@dataclass(frozen=True)
class TargetStatus:
    """One target (first response or resolution) of one record."""

    name: str
    target: dt.timedelta  # business time allowed
    used: dt.timedelta  # business time the clock has run
    due_at: dt.datetime  # naive UTC; while the clock is stopped, as if it ran again now
    done_at: dt.datetime | None  # when it was responded to / resolved
    status: str  # ON_TRACK, AT_RISK, BREACHED, MET, PAUSED

    @property
    def label(self) -> str:
        return TARGET_LABELS[self.name]

    @property
    def status_label(self) -> str:
        return LABELS[self.status]

    @property
    def percent(self) -> float:
        return 100 * (self.used / self.target)

    @property
    def done(self) -> bool:
        return self.done_at is not None


@dataclass(frozen=True)
class SlaState:
    """A record against its policy."""

    policy: CompiledPolicy
    record_id: int
    priority: str
    started_at: dt.datetime
    paused: list[tuple[dt.datetime, dt.datetime | None]]  # (from, until; None: still paused)
    first_response_at: dt.datetime | None
    targets: dict[str, TargetStatus]  # in order: first_response, resolution
    status: str
    current: TargetStatus | None = None  # the target that is running (first response, then resolution)

    @property
    def label(self) -> str:
        return LABELS[self.status]

    @property
    def due_at(self) -> dt.datetime | None:
        return self.current.due_at if self.current else None

    @property
    def percent(self) -> float:
        """The share of the running target's time used (of the last one when all are done)."""
        shown = self.current or list(self.targets.values())[-1]
        return shown.percent


# --- the computation, from a record's state moves -----------------------------------------------


def measure(
    policy: CompiledPolicy,
    record_id: int,
    priority: str | None,
    created_at: dt.datetime,
    moves: list[tuple[dt.datetime, str | None, str]],
    now: dt.datetime,
    first_response_value: dt.datetime | None = None,
) -> SlaState | None:
    """The SLA state of one record; None if its priority has no targets.

    ``moves`` are the record's state changes, oldest first, as (at, from, to),
    its creation included as (created_at, None, first state). Pure: no database.
    """
    targets = policy.targets.get(priority or "")
    if not targets or not moves:
        return None
    segments = _segments(moves, now)
    current_state = moves[-1][2]
    if policy.first_response_field is not None:
        first_response = first_response_value
    else:
        first_response = next((at for at, old, _ in moves if old in policy.first_response_leaves), None)
    resolved_at = moves[-1][0] if current_state in policy.resolved_in else None
    done = {"first_response": first_response, "resolution": resolved_at}
    results = {}
    for name in ("first_response", "resolution"):
        if name not in targets:
            continue
        stopped = policy.pause_in | (policy.resolved_in if name == "resolution" else frozenset())
        results[name] = _target(policy.calendar, name, targets[name], segments, stopped, done[name], now, current_state)
    pending = [t for t in results.values() if not t.done]
    current = pending[0] if pending else None
    if any(t.status == BREACHED for t in results.values()):
        status = BREACHED
    else:
        status = current.status if current else MET
    paused = [(start, None if end == now and state == current_state else end) for start, end, state in segments
              if state in policy.pause_in]  # fmt: skip
    return SlaState(policy, record_id, priority, created_at, paused, first_response, results, status, current)


def _segments(moves, now) -> list[tuple[dt.datetime, dt.datetime, str]]:
    """(from, until, state) for each stretch of time in one state, the last one until ``now``."""
    result = []
    for (at, _, state), following in zip(moves, [*moves[1:], None], strict=True):
        until = following[0] if following else max(now, at)
        result.append((at, until, state))
    return result


def _target(calendar, name, allowed, segments, stopped, done_at, now, current_state) -> TargetStatus:
    end = done_at or now
    running = [(max(a, segments[0][0]), min(b, end)) for a, b, state in segments if state not in stopped and a < end]
    used, due = dt.timedelta(), None
    for start, until in running:
        part = bh.elapsed(calendar, start, until)
        if due is None and used + part >= allowed:
            due = bh.add(calendar, start, allowed - used)
        used += part
    if due is None:  # not reached yet: the rest from the end (now, or when it was met)
        due = bh.add(calendar, end, allowed - used)
    if done_at is not None:
        status = MET if used <= allowed else BREACHED
    elif used >= allowed:
        status = BREACHED
    elif current_state in stopped:
        status = PAUSED
    else:
        status = AT_RISK if used * 100 >= allowed * AT_RISK_PERCENT else ON_TRACK
    return TargetStatus(name, allowed, used, due, done_at, status)


def crossed(target: TargetStatus, percent: int) -> bool:
    """Whether ``percent`` of the target's time is used (exact: no rounding at the threshold)."""
    return target.used * 100 >= target.target * percent


# --- reading records and their history ------------------------------------------------------------


def policy_for(crm: CRM, ce: CompiledEntity, record) -> CompiledPolicy | None:
    """The first of the entity's policies that applies to ``record``."""
    return next((p for p in crm.compiled.sla.get(ce.name, ()) if p.applies_to(record, crm.ctx)), None)


def has_policies(crm: CRM, ce: CompiledEntity) -> bool:
    return bool(crm.compiled.sla.get(ce.name))


def sla_of(crm: CRM, ce: CompiledEntity, records: Iterable, now: dt.datetime) -> dict[int, SlaState]:
    """Record id -> ``SlaState`` for each of ``records`` (model instances) under a policy.

    Records no policy applies to, or whose priority has no targets, are left
    out. The state moves come from the audit, a chunk of records per query.
    """
    chosen = [(record, policy) for record in records if (policy := policy_for(crm, ce, record)) is not None]
    result = {}
    for i in range(0, len(chosen), ID_CHUNK):
        chunk = chosen[i : i + ID_CHUNK]
        moves = _moves(crm, ce, [record.id for record, _ in chunk], {policy.state_field for _, policy in chunk})
        for record, policy in chunk:
            history = moves.get((record.id, policy.state_field), [])
            # Records written without a creation audit (a bulk load): they started in the
            # state their first move left, or are in their current one since creation.
            if not history or history[0][1] is not None:
                first = history[0][1] if history else getattr(record, policy.state_field)
                history = [(record.created_at, None, first), *history]
            state = measure(
                policy,
                record.id,
                getattr(record, policy.priority_field),
                record.created_at,
                history,
                now,
                getattr(record, policy.first_response_field) if policy.first_response_field else None,
            )
            if state is not None:
                result[record.id] = state
    return result


def _moves(crm: CRM, ce: CompiledEntity, ids: list[int], fields: set[str]) -> dict:
    """(record id, state field) -> [(at, from, to), ...] from the audit, oldest first."""
    Audit = crm.tables.Audit
    query = (
        Audit.select(Audit.record_id, Audit.at, Audit.changes)
        .where((Audit.entity == ce.name) & Audit.record_id.in_(ids) & Audit.operation.in_(["create", "transition"]))
        .order_by(Audit.id)
    )
    result: dict = {}
    # The raw rows: peewee's conversions were two thirds of the time for 10,000 tickets.
    for record_id, at, changes in crm.database.execute(query):
        changes = Audit.changes.python_value(changes) if isinstance(changes, str) else changes
        for name in fields:
            if name in changes:
                old, new = changes[name]
                at = at if isinstance(at, dt.datetime) else dt.datetime.fromisoformat(at)
                result.setdefault((record_id, name), []).append((at, old, new))
    return result


# --- escalation ---------------------------------------------------------------------------------


def run_due(crm: CRM, now: dt.datetime | None = None) -> int:
    """Fire every escalation step whose threshold has been crossed and that has not fired yet.

    Scans the records of each entity with policies that are not resolved;
    returns how many steps fired. Each step's row in ``crm_sla_escalation``
    is written in the transaction of its effect, and is unique per record,
    policy, target and step: several workers scanning at once fire it once.
    """
    now = now or crm.clock.utcnow()
    fired = 0
    for entity, policies in crm.compiled.sla.items():
        ce = crm.compiled.entities[entity]
        if not any(policy.definition.escalation for policy in policies):
            continue
        model = ce.model
        query = model.select()
        # Only records still running against some policy: not resolved under every one.
        resolved = set.intersection(*(set(p.resolved_in) for p in policies))
        fields = {p.state_field for p in policies}
        if len(fields) == 1 and resolved:
            query = query.where(getattr(model, fields.pop()).not_in(sorted(resolved)))
        last_id = 0
        while True:
            chunk = list(query.where(model.id > last_id).order_by(model.id).limit(ID_CHUNK))
            if not chunk:
                break
            last_id = chunk[-1].id
            states = sla_of(crm, ce, chunk, now)
            done = _fired(crm, entity, list(states))
            for record in chunk:
                state = states.get(record.id)
                if state is not None:
                    fired += _escalate(crm, ce, record, state, done, now)
    return fired


def _fired(crm: CRM, entity: str, ids: list[int]) -> set[tuple]:
    Escalation = crm.tables.SlaEscalation
    if not ids:
        return set()
    rows = Escalation.select(Escalation.record_id, Escalation.policy, Escalation.target, Escalation.step).where(
        (Escalation.entity == entity) & Escalation.record_id.in_(ids)
    )
    return set(rows.tuples())


def _escalate(crm: CRM, ce: CompiledEntity, record, state: SlaState, done: set, now: dt.datetime) -> int:
    fired = 0
    for target in state.targets.values():
        if target.done:
            continue
        for step in state.policy.steps(target.name):
            if not crossed(target, step.percent) or (record.id, state.policy.name, target.name, step.index) in done:
                continue
            if fire_step(crm, ce, record.id, state.policy, step, target, now):
                fired += 1
    return fired


def fire_step(crm: CRM, ce: CompiledEntity, record_id: int, policy: CompiledPolicy, step: EscalationStep,
              target: TargetStatus, now: dt.datetime) -> bool:  # fmt: skip
    """Fire one step: its row, its effect and its timeline line in one transaction.

    Returns False if the step had fired already (another worker got there
    first). An effect the write path refuses is rolled back and reported on
    the timeline; the step counts as fired, so it is not retried every scan.
    """
    Escalation, database = crm.tables.SlaEscalation, crm.database
    due = target.due_at.replace(tzinfo=dt.UTC).astimezone(policy.calendar.zone)
    head = f"SLA {TARGET_WORDS[target.name]} {step.percent}% used (due {due:%a %H:%M})"
    try:
        with database.atomic():
            row_id = Escalation.insert(
                entity=ce.name, record_id=record_id, policy=policy.name, target=target.name, step=step.index,
                percent=step.percent, due_at=target.due_at, fired_at=now, summary=head,
            ).execute()  # fmt: skip
            kind = "action"
            try:
                with database.atomic():
                    effect = _effect(crm, ce, record_id, policy, step, head)
            except CRMError as exc:
                kind, effect = "error", f"failed: {exc}"
            summary = f"{head}: {effect}"
            Escalation.update(summary=summary).where(Escalation.id == row_id).execute()
            crm.history.note(
                ce.name, record_id, now, kind, summary,
                detail={"sla": policy.name, "target": target.name, "step": step.index, "percent": step.percent},
                rule=_rule(policy),
            )  # fmt: skip
    except pw.IntegrityError:
        return False
    log.info("%s #%s: %s", ce.name, record_id, summary)
    return True


def _rule(policy: CompiledPolicy) -> str:
    return f"SLA policy {policy.label!r}"


def _effect(crm: CRM, ce: CompiledEntity, record_id: int, policy: CompiledPolicy, step: EscalationStep, head: str):
    """Carry out a step on the record as it is now; return what was done, for the timeline."""
    record = ce.model.get_by_id(record_id)
    definition = ce.definition
    owner = getattr(record, definition.owner_field.name) if definition.owner_field else None
    team = getattr(record, definition.team_field.name) if definition.team_field else None
    cause = Cause(rule=_rule(policy), definition_version=crm.definition_version, reason={"sla": head})
    if step.action == "set_priority":
        old = getattr(record, policy.priority_field)
        if old == step.argument:
            return f"priority is {step.argument} already"
        crm.records.update(ce.name, record_id, {policy.priority_field: step.argument}, Actor.system(), "system",
                           cause=cause)  # fmt: skip
        return f"priority {old} -> {step.argument}"
    if step.action == "reassign":
        if team is None:
            return "no queue to find a team lead in; not reassigned"
        lead = crm.directory.team_lead(team)
        if lead is None:
            return f"{_team_label(crm, team)} has no active team lead; not reassigned"
        who = f"{_user_name(crm, lead)}, the team lead of {_team_label(crm, team)}"
        if owner == lead:
            return f"assigned to {who} already"
        info = crm.directory.get(lead)
        if info is not None and info.away:  # away means no new assignments (docs/runtime.md), escalated or not
            return f"{who}, is away; not reassigned"
        crm.records.update(ce.name, record_id, {definition.owner_field.name: lead}, Actor.system(), "system",
                           cause=cause)  # fmt: skip
        return f"reassigned to {who}"
    kind, name = step.recipient
    if kind == "owner":
        users, whom = ([owner] if owner else []), "the assignee"
    elif kind == "team_lead":
        lead = crm.directory.team_lead(team) if team else None
        users, whom = ([lead] if lead else []), f"the team lead of {_team_label(crm, team) if team else 'the queue'}"
    elif kind == "team":
        team_name = name or team
        users = crm.directory.team_members(team_name) if team_name else []
        whom = f"team {_team_label(crm, team_name) if team_name else '(no queue)'}"
    else:
        users, whom = crm.directory.users_with_role(name), f"role {name}"
    if not users:
        return f"nobody to notify ({whom} names no active user)"
    title = ce.title_of(record)
    message = step.message or f"{head} on {definition.label} #{record_id} '{title}'"
    Notification = crm.tables.Notification
    for user_id in users:
        Notification.insert(
            key=f"sla:{ce.name}:{record_id}:{policy.name}:{step.target}:{step.index}:{user_id}",
            user=user_id, message=message, entity=ce.name, record_id=record_id, created_at=crm.ctx.now(),
        ).on_conflict_ignore().execute()  # fmt: skip
    return "notified " + ", ".join(_user_name(crm, u) for u in users)


def _user_name(crm: CRM, user_id: int) -> str:
    info = crm.directory.get(user_id)
    return info.name if info else f"user #{user_id}"


def _team_label(crm: CRM, team: str) -> str:
    found = crm.compiled.pack.teams.get(team)
    return found.label if found else team
