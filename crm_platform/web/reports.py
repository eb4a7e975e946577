"""The numbers behind the dashboards: plain functions returning dataclasses.

Nothing here is written for one entity; each report finds what it applies to
in the compiled definitions:

- **funnel**: workflows with a ``probability_field`` (open stages, then the
  stages with ``outcome: won``);
- **won and lost per month**: workflows with final states marked
  ``outcome: won`` or ``outcome: lost``, counted from the audit's stage moves;
- **source conversion**: entities with a choice field named ``source`` and a
  workflow with ``outcome: won`` states;
- **SLA status**: entities with SLA policies (``sla/*.yaml``, business hours,
  pauses: ``runtime.sla``), else workflows whose open states have ``sla_hours``;
- **membership results**: entities with a choice field named ``status`` and a
  required link (in the default pack: campaign members per campaign).

Every read goes through ``crm.records.select(entity, actor)``, so the
permissions and the "own records only" scope apply, and the counting and
summing happens in the database (``COUNT``/``SUM`` with ``GROUP BY``).
Datetimes are naive UTC, as stored; months are the company's local months.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import peewee as pw

from ..compiler.compiled import CompiledEntity
from ..compiler.statemachine import StateMachine
from ..definitions.model import FieldDef
from ..runtime import sla
from ..runtime.users import Actor

if TYPE_CHECKING:
    from ..engine import CRM

SOURCE_FIELD = "source"  # the choice field whose values the conversion report compares
STATUS_FIELD = "status"  # the choice field the membership report counts by
MEMBERSHIP_TOP = 10  # groups (e.g. campaigns) shown, the largest first
ID_CHUNK = 500  # record ids per IN (...) list, well below every database's parameter limit

# SLA buckets: the share of the state's SLA time that has passed.
WITHIN, AT_RISK, BREACHED, PAUSED = "within", "at_risk", "breached", "paused"
SLA_LABELS = {WITHIN: "Within SLA", AT_RISK: "At risk", BREACHED: "Breached"}
# Under an SLA policy a record's clock may also be stopped (waiting on the customer).
POLICY_LABELS = {**SLA_LABELS, PAUSED: "Paused"}
POLICY_BUCKETS = {sla.ON_TRACK: WITHIN, sla.AT_RISK: AT_RISK, sla.BREACHED: BREACHED, sla.PAUSED: PAUSED}
AT_RISK_FROM = 0.8  # from 80 % of the SLA time on, a record is at risk; past 100 % it is breached


def readable(crm: CRM, actor: Actor) -> list[CompiledEntity]:
    """The entities ``actor`` may read, in definition order."""
    return [ce for ce in crm.compiled.entities.values() if crm.permissions.can(actor, ce.name, "read")]


def amount_field(ce: CompiledEntity) -> FieldDef | None:
    """The money field a funnel sums: the entity's first one that is not computed."""
    return next((f for f in ce.definition.fields.values() if f.type == "money" and not f.is_computed), None)


def choice_field(ce: CompiledEntity, name: str) -> FieldDef | None:
    """The entity's field ``name`` if it is a choice field."""
    field_def = ce.definition.fields.get(name)
    return field_def if field_def is not None and field_def.type == "choice" else None


def outcome_states(machine: StateMachine, outcome: str) -> list[str]:
    """The (final) states of ``machine`` marked ``outcome: won`` or ``outcome: lost``."""
    return [s.name for s in machine.states.values() if s.outcome == outcome]


# --- the pipeline funnel ------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelStage:
    state: str
    label: str
    final: bool  # a won stage, shown after the open ones
    count: int
    amount: Decimal | None  # None: the entity has no money field
    forecast: Decimal | None  # the amounts weighted by each record's probability


@dataclass(frozen=True)
class Funnel:
    entity: str
    workflow: str
    label: str  # the workflow's
    amount_label: str | None
    currency: str | None
    stages: list[FunnelStage]


def funnels(crm: CRM, actor: Actor) -> list[Funnel]:
    """A funnel for every workflow with a probability field on an entity ``actor`` may read."""
    return [
        f
        for ce in readable(crm, actor)
        for machine in ce.workflows.values()
        if machine.probability_field
        for f in funnel(crm, actor, ce, machine)
    ]


def funnel(crm: CRM, actor: Actor, ce: CompiledEntity, machine: StateMachine) -> list[Funnel]:
    """Per open stage (in workflow order) and won stage: count, amount and forecast.

    The forecast is the sum of amount x probability / 100, with the record's
    probability (the stage's if the record has none). Amounts in different
    currencies are not added up: there is one funnel per currency found
    (usually one); an entity without a money field gets one funnel of counts.
    """
    model = ce.model
    state = getattr(model, machine.field)
    probability = getattr(model, machine.probability_field)
    shown = [s for s in machine.states.values() if not s.final or s.outcome == "won"]
    money = amount_field(ce)
    default_currency = (money.currency if money else None) or crm.settings.currency
    columns = [state, probability, pw.fn.COUNT(model.id)]
    groups = [state, probability]
    if money:
        amount, currency = getattr(model, money.name), getattr(model, f"{money.name}_currency")
        columns += [currency, pw.fn.SUM(amount)]
        groups.append(currency)
    query = crm.records.select(ce.name, actor).select(*columns).where(state.in_([s.name for s in shown]))
    # (currency, state) -> [count, amount, forecast]
    totals: dict[tuple[str | None, str], list] = {}
    for row in query.group_by(*groups).tuples():
        name, percent, count = row[0], row[1], row[2]
        key = ((row[3] or default_currency) if money else None, name)
        entry = totals.setdefault(key, [0, Decimal(0), Decimal(0)])
        entry[0] += count
        if money and row[4] is not None:
            total = amount.python_value(row[4])  # peewee leaves SUM unconverted: minor units
            if percent is None:
                percent = machine.states[name].probability or 0
            entry[1] += total
            entry[2] += total * Decimal(percent) / 100
    currencies = sorted({c for c, _ in totals}, key=lambda c: (c != default_currency, c or "")) or [
        default_currency if money else None
    ]

    def stage(currency: str | None, s) -> FunnelStage:
        count, amount, forecast = totals.get((currency, s.name), (0, Decimal(0), Decimal(0)))
        return FunnelStage(
            state=s.name,
            label=s.label,
            final=s.final,
            count=count,
            amount=amount if money else None,
            forecast=forecast.quantize(Decimal("0.01")) if money else None,
        )

    return [
        Funnel(
            entity=ce.name,
            workflow=machine.name,
            label=machine.label,
            amount_label=money.label if money else None,
            currency=currency,
            stages=[stage(currency, s) for s in shown],
        )
        for currency in currencies
    ]


# --- won and lost per month ------------------------------------------------------------------


@dataclass(frozen=True)
class OutcomeMonth:
    month: dt.date  # the first day of the (local) month
    won: int
    lost: int


@dataclass(frozen=True)
class OutcomeTrend:
    entity: str
    workflow: str
    label: str
    won_states: list[str]  # labels
    lost_states: list[str]
    months: list[OutcomeMonth]


def outcome_trends(crm: CRM, actor: Actor, months: int = 12) -> list[OutcomeTrend]:
    """Won and lost per month for every workflow with outcome states on an entity ``actor`` may read."""
    return [
        outcome_trend(crm, actor, ce, machine, months)
        for ce in readable(crm, actor)
        for machine in ce.workflows.values()
        if any(s.outcome for s in machine.states.values())
    ]


def outcome_trend(crm: CRM, actor: Actor, ce: CompiledEntity, machine: StateMachine, months: int = 12) -> OutcomeTrend:
    """How many records entered a won and a lost state in each of the last ``months`` months.

    The months are the company's, up to and including the current one. A
    record counts once per move into an outcome state (an audit row with
    operation ``transition``); records since deleted, or that ``actor`` may
    not read, do not count.
    """
    starts = month_starts(crm.ctx.today(), months)
    tz = ZoneInfo(crm.settings.timezone)
    bounds = [_utc(day, tz) for day in [*starts, _next_month(starts[-1])]]
    Audit = crm.tables.Audit
    bucket = pw.Case(None, [(Audit.at < bounds[i + 1], i) for i in range(months)])
    visible = crm.records.select(ce.name, actor).select(ce.model.id)
    counts: dict[str, list[int]] = {}
    for outcome in ("won", "lost"):
        counts[outcome] = [0] * months
        entering = _entering(Audit, machine, outcome_states(machine, outcome))
        if entering is None:
            continue
        query = (
            Audit.select(bucket.alias("bucket"), pw.fn.COUNT(Audit.id))
            .where(
                (Audit.entity == ce.name)
                & (Audit.operation == "transition")
                & (Audit.at >= bounds[0])
                & (Audit.at < bounds[-1])
                & entering
                & Audit.record_id.in_(visible)
            )
            .group_by(pw.SQL("bucket"))
        )
        for index, count in query.tuples():
            if index is not None:
                counts[outcome][index] = count
    return OutcomeTrend(
        entity=ce.name,
        workflow=machine.name,
        label=machine.label,
        won_states=[machine.states[s].label for s in outcome_states(machine, "won")],
        lost_states=[machine.states[s].label for s in outcome_states(machine, "lost")],
        months=[OutcomeMonth(day, counts["won"][i], counts["lost"][i]) for i, day in enumerate(starts)],
    )


def month_starts(today: dt.date, months: int) -> list[dt.date]:
    """The first days of the ``months`` months up to and including ``today``'s, oldest first."""
    index = today.year * 12 + today.month - 1
    return [dt.date(i // 12, i % 12 + 1, 1) for i in range(index - months + 1, index + 1)]


def _next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _utc(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """Local midnight at the start of ``day`` as naive UTC."""
    return dt.datetime.combine(day, dt.time(), tz).astimezone(dt.UTC).replace(tzinfo=None)


def _entering(Audit, machine: StateMachine, targets: list[str]):
    """Audit rows whose changes move ``machine``'s field into one of ``targets``, or None if none.

    The audit keeps changes as JSON text with sorted keys, so a move reads
    ``"stage": ["negotiation", "won"]``: one exact text per possible source.
    """
    texts = [
        json.dumps({machine.field: [source, target]})[1:-1]
        for target in targets
        for source in [None, *machine.states]
        if source != target
    ]
    if not texts:
        return None
    return functools.reduce(operator.or_, [_contains(Audit.changes, text) for text in texts])


def _contains(column, text: str):
    """``column`` contains ``text`` literally (LIKE with its wildcards escaped).

    Written out because ``column.contains`` would pass the pattern through the
    JSON column's converter, quoting it.
    """
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = pw.NodeList(
        (pw.Value(f"%{escaped}%", converter=False), pw.SQL("ESCAPE"), pw.Value("\\", converter=False))
    )
    return pw.Expression(column, pw.OP.ILIKE, pattern)


# --- conversion per source ---------------------------------------------------------------------


@dataclass(frozen=True)
class SourceRow:
    value: str | None  # None: records without a source
    label: str
    total: int
    won: int

    @property
    def rate(self) -> Decimal | None:
        """Won / total as a percentage with one decimal; None without records."""
        if not self.total:
            return None
        return (Decimal(self.won) * 100 / self.total).quantize(Decimal("0.1"))


@dataclass(frozen=True)
class SourceConversion:
    entity: str
    workflow: str
    field_label: str  # the source field's
    won_states: list[str]  # labels
    rows: list[SourceRow]


def source_conversions(crm: CRM, actor: Actor) -> list[SourceConversion]:
    """Conversion per source for every readable entity with a ``source`` choice field and won states."""
    return [
        source_conversion(crm, actor, ce, machine)
        for ce in readable(crm, actor)
        if choice_field(ce, SOURCE_FIELD)
        for machine in ce.workflows.values()
        if outcome_states(machine, "won")
    ]


def source_conversion(crm: CRM, actor: Actor, ce: CompiledEntity, machine: StateMachine) -> SourceConversion:
    """Per value of the ``source`` field: records, records now in a won state, and the rate.

    Every option is listed (in the definition's order, unused ones with 0),
    then records without a source, if any.
    """
    source_def = ce.definition.fields[SOURCE_FIELD]
    model = ce.model
    source = getattr(model, SOURCE_FIELD)
    won = outcome_states(machine, "won")
    is_won = pw.Case(None, [(getattr(model, machine.field).in_(won), 1)], 0)
    query = (
        crm.records.select(ce.name, actor)
        .select(source, pw.fn.COUNT(model.id), pw.fn.SUM(is_won))
        .group_by(source)
        .tuples()
    )
    found = {value: (total, int(won_count or 0)) for value, total, won_count in query}
    rows = [SourceRow(value, label, *found.pop(value, (0, 0))) for value, label in source_def.options.items()]
    if None in found:
        rows.append(SourceRow(None, "Not set", *found.pop(None)))
    # Values no longer among the options (an option removed from the definition).
    rows += [SourceRow(value, str(value), *counts) for value, counts in sorted(found.items())]
    return SourceConversion(
        entity=ce.name,
        workflow=machine.name,
        field_label=source_def.label,
        won_states=[machine.states[s].label for s in won],
        rows=rows,
    )


# --- SLA ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlaStatus:
    """Where one record stands against the SLA of the state it is in."""

    state: str
    entered_at: dt.datetime  # naive UTC
    due_at: dt.datetime  # naive UTC
    elapsed_ratio: float  # time in the state / SLA time: 0.5 is half-way, above 1 breached
    bucket: str  # WITHIN, AT_RISK or BREACHED
    label: str  # the bucket's label, e.g. "At risk"


def sla_states(machine: StateMachine) -> dict[str, float]:
    """State -> SLA hours, for the open (not final) states of ``machine`` that have one."""
    return {s.name: s.sla_hours for s in machine.states.values() if s.sla_hours and not s.final}


def sla_bucket(ratio: float) -> str:
    """WITHIN below 80 % of the SLA time, AT_RISK from 80 % up to 100 %, BREACHED beyond."""
    if ratio < AT_RISK_FROM:
        return WITHIN
    return AT_RISK if ratio <= 1 else BREACHED


def sla_status(
    crm: CRM, ce: CompiledEntity, machine: StateMachine, records: Iterable, now: dt.datetime
) -> dict[int, SlaStatus]:
    """Record id -> ``SlaStatus``, for the ``records`` that are in a state of ``machine`` with ``sla_hours``.

    ``records`` are rows the caller may read (model instances or named
    tuples), each with ``id``, ``created_at`` and ``machine``'s state field;
    records in a state without an SLA are left out. ``now`` is naive UTC.

    The time in the state runs from the latest audited move of the state
    field (which, since the field changes only by moves, is the move into
    the current state) or from ``created_at`` if the record never moved.
    That is the simple SLA, plain elapsed hours around the clock, for
    entities without SLA policies. For an entity with policies the status
    comes from ``runtime.sla`` (business hours, pauses): ``entered_at`` is when
    the clock started, ``due_at`` and ``elapsed_ratio`` are those of the
    running target (first response, then resolution), and a record waiting on
    the customer is in the PAUSED bucket.
    """
    if sla.has_policies(crm, ce):
        return _policy_statuses(crm, ce, machine, records, now)
    hours = sla_states(machine)
    pending = [r for r in records if getattr(r, machine.field) in hours]
    return _statuses(machine, pending, _entered_at(crm, ce, machine, [r.id for r in pending]), now)


def sla_tracked_states(crm: CRM, ce: CompiledEntity, machine: StateMachine) -> list[str]:
    """The states of ``machine`` in which a record's SLA is watched (at-risk lists, dashboards).

    Under policies: the states that are neither final nor resolved; else the states with ``sla_hours``.
    """
    policies = [p for p in crm.compiled.sla.get(ce.name, ()) if p.state_field == machine.field]
    if not policies:
        return list(sla_states(machine))
    resolved = set().union(*(p.resolved_in for p in policies))
    return [s.name for s in machine.states.values() if not s.final and s.name not in resolved]


def _policy_statuses(crm: CRM, ce: CompiledEntity, machine: StateMachine, records: Iterable, now) -> dict:
    result = {}
    records = list(records)
    states = {r.id: getattr(r, machine.field) for r in records}
    for record_id, state in sla.sla_of(crm, ce, records, now).items():
        if state.current is None:  # responded and resolved: nothing is running
            continue
        # What is at stake now: the running target (a late first response is history
        # on the record page; the resolution may still be made in time).
        bucket = POLICY_BUCKETS[state.current.status]
        result[record_id] = SlaStatus(
            states[record_id], state.started_at, state.due_at, state.percent / 100, bucket, POLICY_LABELS[bucket]
        )
    return result


def _statuses(machine: StateMachine, records: list, entered: dict[int, dt.datetime], now: dt.datetime) -> dict:
    hours = sla_states(machine)
    result = {}
    for record in records:
        state = getattr(record, machine.field)
        since = entered.get(record.id) or record.created_at
        allowed = dt.timedelta(hours=hours[state])
        ratio = max((now - since) / allowed, 0.0)
        bucket = sla_bucket(ratio)
        result[record.id] = SlaStatus(state, since, since + allowed, ratio, bucket, SLA_LABELS[bucket])
    return result


def _entered_at(crm: CRM, ce: CompiledEntity, machine: StateMachine, ids) -> dict[int, dt.datetime]:
    """Record id -> when its state field last moved, for those of ``ids`` that ever moved.

    ``ids`` is a list (asked in chunks) or a query selecting the ids (one subquery).
    """
    Audit = crm.tables.Audit
    moved = _contains(Audit.changes, json.dumps(machine.field) + ": [")
    chunks = [ids] if isinstance(ids, pw.Query) else [ids[i : i + ID_CHUNK] for i in range(0, len(ids), ID_CHUNK)]
    entered = {}
    for chunk in chunks:
        query = (
            Audit.select(Audit.record_id, pw.fn.MAX(Audit.at))
            .where((Audit.entity == ce.name) & (Audit.operation == "transition") & Audit.record_id.in_(chunk) & moved)
            .group_by(Audit.record_id)
        )
        entered.update(query.tuples())
    return entered


@dataclass(frozen=True)
class SlaStateCount:
    state: str
    label: str
    sla_hours: float | None  # None under SLA policies (the targets are per priority)
    counts: dict[str, int]  # bucket -> records

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class SlaOverview:
    entity: str
    workflow: str
    label: str
    states: list[SlaStateCount]
    buckets: dict[str, str] = field(default_factory=lambda: dict(SLA_LABELS))  # bucket -> label, in order
    policies: list[str] = field(default_factory=list)  # labels of the SLA policies counted, if any

    def count(self, bucket: str) -> int:
        return sum(s.counts[bucket] for s in self.states)


def sla_overviews(crm: CRM, actor: Actor, now: dt.datetime) -> list[SlaOverview]:
    """The SLA overview of every workflow with SLA states (or an SLA policy) on an entity ``actor`` may read."""
    result = []
    for ce in readable(crm, actor):
        for machine in ce.workflows.values():
            if any(p.state_field == machine.field for p in crm.compiled.sla.get(ce.name, ())):
                result.append(policy_overview(crm, actor, ce, machine, now))
            elif sla_states(machine) and not sla.has_policies(crm, ce):
                result.append(sla_overview(crm, actor, ce, machine, now))
    return result


def policy_overview(crm: CRM, actor: Actor, ce: CompiledEntity, machine: StateMachine, now) -> SlaOverview:
    """Per state that is not resolved: how many records under a policy are within, at risk, breached, paused."""
    states = sla_tracked_states(crm, ce, machine)
    query = crm.records.select(ce.name, actor).where(getattr(ce.model, machine.field).in_(states))
    counts = {name: dict.fromkeys(POLICY_LABELS, 0) for name in states}
    for status in _policy_statuses(crm, ce, machine, query, now).values():
        counts[status.state][status.bucket] += 1
    return SlaOverview(
        entity=ce.name,
        workflow=machine.name,
        label=machine.label,
        states=[SlaStateCount(name, machine.states[name].label, None, counts[name]) for name in states],
        buckets=dict(POLICY_LABELS),
        policies=[p.label for p in crm.compiled.sla[ce.name] if p.state_field == machine.field],
    )


def sla_overview(crm: CRM, actor: Actor, ce: CompiledEntity, machine: StateMachine, now: dt.datetime) -> SlaOverview:
    """Per state with an SLA: how many of the records ``actor`` may read are within, at risk, breached."""
    model = ce.model
    states = sla_states(machine)
    state = getattr(model, machine.field)
    query = crm.records.select(ce.name, actor).where(state.in_(list(states)))
    rows = list(query.select(model.id, model.created_at, state).namedtuples())
    entered = _entered_at(crm, ce, machine, query.select(model.id))  # one query, not one per 500 records
    counts = {name: dict.fromkeys(SLA_LABELS, 0) for name in states}
    for status in _statuses(machine, rows, entered, now).values():
        counts[status.state][status.bucket] += 1
    return SlaOverview(
        entity=ce.name,
        workflow=machine.name,
        label=machine.label,
        states=[SlaStateCount(name, machine.states[name].label, hours, counts[name]) for name, hours in states.items()],
    )


# --- membership results (campaign members per campaign) ------------------------------------------


@dataclass(frozen=True)
class MembershipGroup:
    record_id: int  # the linked record, e.g. the campaign
    title: str
    counts: dict[str, int]  # status -> members

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class MembershipResult:
    entity: str  # the members' entity, e.g. campaign_member
    link: str  # its required link field, e.g. campaign
    target: str  # the linked entity, e.g. campaign
    statuses: list[tuple[str | None, str]]  # (value, label) of the status field, in order
    groups: list[MembershipGroup] = field(default_factory=list)  # the largest first


def membership_entities(crm: CRM) -> list[tuple[CompiledEntity, FieldDef]]:
    """(members' entity, link) pairs: entities with a ``status`` choice field, per required link.

    The convention that makes "campaign results" generic: a record that
    belongs to exactly one other record (a required link) and has a status
    is a membership; the report counts memberships per linked record by status.
    """
    return [
        (ce, f)
        for ce in crm.compiled.entities.values()
        if choice_field(ce, STATUS_FIELD)
        for f in ce.definition.fields.values()
        if f.type == "link" and f.required
    ]


def membership_results(crm: CRM, actor: Actor, limit: int = MEMBERSHIP_TOP) -> list[MembershipResult]:
    """Membership results for every pair where ``actor`` may read both entities."""
    return [
        membership_result(crm, actor, ce, link, limit)
        for ce, link in membership_entities(crm)
        if crm.permissions.can(actor, ce.name, "read") and crm.permissions.can(actor, link.entity, "read")
    ]


def membership_result(
    crm: CRM, actor: Actor, ce: CompiledEntity, link: FieldDef, limit: int = MEMBERSHIP_TOP
) -> MembershipResult:
    """For the ``limit`` linked records with the most members: members per status."""
    model = ce.model
    target = crm.compiled.entities[link.entity]
    column, status, count = getattr(model, link.name), getattr(model, STATUS_FIELD), pw.fn.COUNT(model.id)
    members = crm.records.select(ce.name, actor)
    top = (
        members.select(column, count)
        .where(column.is_null(False))
        .group_by(column)
        .order_by(count.desc(), column)
        .limit(limit)
        .tuples()
    )
    ids = [record_id for record_id, _ in top]
    counts: dict[int, dict[str, int]] = {i: {} for i in ids}
    if ids:
        for record_id, value, n in (
            members.select(column, status, count).where(column.in_(ids)).group_by(column, status).tuples()
        ):
            counts[record_id][value] = n
    linked = crm.records.select(target.name, actor).where(target.model.id.in_(ids)) if ids else []
    titles = {r.id: target.title_of(r) for r in linked}
    options = ce.definition.fields[STATUS_FIELD].options
    seen = {value for c in counts.values() for value in c}
    # Values no longer among the options, then members without a status.
    statuses = [*options.items(), *[(v, str(v)) for v in sorted(seen - set(options) - {None})]]
    if None in seen:
        statuses.append((None, "Not set"))
    return MembershipResult(
        entity=ce.name,
        link=link.name,
        target=target.name,
        statuses=statuses,
        groups=[MembershipGroup(i, titles.get(i) or f"{target.definition.label} #{i}", counts[i]) for i in ids],
    )
