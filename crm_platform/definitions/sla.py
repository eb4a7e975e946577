"""SLA policies: ``sla/*.yaml``, one policy per file.

``build_policy`` turns a file that passed the meta-schema into an
``SlaPolicyDef`` and checks what the file alone decides (durations, business
hours that do not overlap, holidays, the time zone, ascending escalation
thresholds). ``check_policies`` checks what spans files: the entity, its
priority values and states, the ``applies_when`` condition, the roles and
teams an escalation names. Both report through ``Diagnostics`` with the
position of the offending value.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass, field

from ..errors import Location
from .diagnostics import Diagnostics, did_you_mean, see_docs
from .entities import humanize
from .model import Pack, Ref
from .nodes import Expr
from .parser import SyntaxProblem, parse_expression
from .source import PosList, PosMap, located

DOCS = "sla-policies"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TARGETS = ("first_response", "resolution")
ALWAYS = "24/7"
CLOSED = "closed"
NOTIFY_WHO = ("owner", "team", "team_lead")  # or "role NAME", "team NAME"
_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*$")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass
class Duration:
    """A target as written: ``2d 4h``; days are business days (see ``day_minutes``)."""

    days: int
    minutes: int
    text: str
    loc: Location


@dataclass
class EscalationStep:
    """One step of a chain: at ``percent`` of a target's time, do ``action``."""

    target: str  # first_response | resolution
    index: int  # position in its chain, from 0: part of its identity
    percent: int
    action: str  # notify | reassign | set_priority
    argument: str  # owner, team, team_lead, "role NAME", "team NAME"; team_lead; a priority value
    loc: Location
    argument_loc: Location
    message: str | None = None

    @property
    def recipient(self) -> tuple[str, str | None]:
        """(kind, name) of a notify step: ("owner", None), ("role", "support-lead"), ..."""
        kind, _, name = self.argument.partition(" ")
        return kind, (name.strip() or None)


@dataclass
class SlaPolicyDef:
    name: str
    file: str
    loc: Location
    label: str
    entity: Ref
    priority_field: Ref
    state_field: Ref | None  # None: the entity's only workflow
    timezone: str | None  # None: the company's
    always: bool  # 24/7
    week: tuple[tuple[tuple[int, int], ...], ...]  # per weekday (Monday first): (start, end) minutes
    holidays: dict[dt.date, str]
    targets: dict[str, dict[str, Duration]]  # priority value -> target -> duration
    target_refs: list[Ref]  # the priority values as written, for checks
    first_response_leaves: list[Ref] = field(default_factory=list)
    first_response_field: Ref | None = None
    pause_in: list[Ref] = field(default_factory=list)
    resolved_in: list[Ref] = field(default_factory=list)  # empty: the workflow's final states
    applies_when: Expr | None = None
    applies_source: str | None = None
    escalation: list[EscalationStep] = field(default_factory=list)
    locs: dict[str, Location] = field(default_factory=dict)

    def at(self, key: str) -> Location:
        return self.locs.get(key, self.loc)

    @property
    def day_minutes(self) -> int:
        """What ``1d`` is: 24 hours around the clock, else the longest business day of the week."""
        if self.always:
            return DAY_MINUTES
        return max(sum(end - start for start, end in day) for day in self.week)


DAY_MINUTES = 24 * 60


def build_policy(data: PosMap, file: str, diag: Diagnostics) -> SlaPolicyDef:
    """Build a policy from a file that passed the meta-schema, checking what the file alone decides."""
    locs = {key: data.value_loc(key) for key in data}
    policy = SlaPolicyDef(
        name=data["sla"],
        file=file,
        loc=data.value_loc("sla"),
        label=data.get("label") or humanize(data["sla"]),
        entity=Ref(data["entity"], data.value_loc("entity")),
        priority_field=Ref(data.get("priority_field", "priority"), data.value_loc("priority_field")),
        state_field=Ref(data["state_field"], data.value_loc("state_field")) if "state_field" in data else None,
        timezone=_timezone(data, diag),
        always=False,
        week=((),) * 7,
        holidays=_holidays(data.get("holidays") or PosList(), diag),
        targets={},
        target_refs=[],
        locs=locs,
    )
    _business_hours(policy, data, diag)
    targets = data["targets"]
    for priority, spec in targets.items():
        policy.target_refs.append(Ref(priority, targets.key_loc(priority)))
        policy.targets[priority] = {
            name: duration for name in TARGETS if name in spec and (duration := _duration(spec, name, diag))
        }
    first = data.get("first_response") or PosMap()
    if "leaves" in first and "field" in first:
        diag.fail(
            "first_response takes either 'leaves' or 'field', not both",
            first.key_loc("field"),
            "leaves: the ticket's first move out of these states; field: a datetime field being set",
        )
    if "field" in first:
        policy.first_response_field = Ref(first["field"], first.value_loc("field"))
    policy.first_response_leaves = _refs(first, "leaves")
    policy.pause_in = _refs(data, "pause_in")
    policy.resolved_in = _refs(data, "resolved_in")
    if "applies_when" in data:
        source = located(data, "applies_when")
        policy.applies_source = source.text
        try:
            policy.applies_when = parse_expression(source.expression, source.loc, source.quoted)
        except SyntaxProblem as problem:
            diag.fail(problem.message, problem.loc, problem.hint)
    chains = data.get("escalation") or PosMap()
    for target in TARGETS:
        policy.escalation += _chain(target, chains.get(target) or PosList(), diag)
    return policy


def _refs(data: PosMap, key: str) -> list[Ref]:
    value = data.get(key)
    if value is None:
        return []
    if isinstance(value, PosList):
        return [Ref(name, value.item_loc(i)) for i, name in enumerate(value)]
    return [Ref(value, data.value_loc(key))]


def _timezone(data: PosMap, diag: Diagnostics) -> str | None:
    zone = data.get("timezone")
    if zone is None:
        return None
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        diag.fail(
            f"unknown time zone {zone!r}",
            data.value_loc("timezone"),
            "use an IANA name such as Europe/Berlin or America/New_York",
        )
        return None
    return zone


def _holidays(items: PosList, diag: Diagnostics) -> dict[dt.date, str]:
    holidays = {}
    for i, item in enumerate(items):
        day = item["date"]
        if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
            diag.fail(f"expected a date written as YYYY-MM-DD, got {day!r}", item.value_loc("date"))
            continue
        if day in holidays:
            diag.fail(f"holiday {day.isoformat()} is listed twice", items.item_loc(i))
        holidays[day] = item.get("name") or day.isoformat()
    return holidays


def _business_hours(policy: SlaPolicyDef, data: PosMap, diag: Diagnostics) -> None:
    hours = data.get("business_hours", ALWAYS)
    where = data.value_loc("business_hours")
    if isinstance(hours, str):
        if hours.strip() != ALWAYS:
            diag.fail(
                f"business_hours must be '24/7' or a mapping of weekdays, got {hours!r}",
                where,
                "e.g. business_hours: {mon: ['08:00-18:00'], ..., sat: closed}",
            )
        policy.always = True
        return
    week: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
    for day, value in hours.items():
        index = WEEKDAYS.index(day)
        if isinstance(value, str) and value.strip() == CLOSED:
            continue
        if isinstance(value, str):
            ranges, locs = [value], [hours.value_loc(day)]
        else:
            ranges, locs = list(value), [value.item_loc(i) for i in range(len(value))]
        for text, loc in zip(ranges, locs, strict=True):
            span = _range(text, loc, diag)
            if span is not None:
                week[index].append(span)
    policy.week = tuple(tuple(sorted(day)) for day in week)
    _check_overlaps(policy.week, hours, diag)
    if not any(policy.week):
        diag.fail("the business hours have no open time", where, "open at least one weekday, or use '24/7'")


def _range(text: str, loc: Location, diag: Diagnostics) -> tuple[int, int] | None:
    match = _RANGE.match(text)
    if match is None:
        diag.fail(
            f"{text!r} is not a time range",
            loc,
            "write ranges as 'HH:MM-HH:MM', e.g. '08:00-12:00'; a day without hours is 'closed'",
        )
        return None
    h1, m1, h2, m2 = map(int, match.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        diag.fail(f"{text!r} is not a time of day", loc, "hours go from 00 to 23 (24:00 ends a day), minutes 00 to 59")
        return None
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end == start:
        diag.fail(f"the range {text!r} is empty", loc)
        return None
    if end < start:  # over midnight: it belongs to the day it starts on
        end += DAY_MINUTES
    return start, end


def _check_overlaps(week, hours: PosMap, diag: Diagnostics) -> None:
    """Ranges on the week's timeline (a night shift runs into the next day) must not overlap."""
    spans = []
    for index, day in enumerate(week):
        for start, end in day:
            base = index * DAY_MINUTES
            spans.append((base + start, base + end, WEEKDAYS[index]))
            if base + end > 7 * DAY_MINUTES:  # Sunday night runs into Monday
                spans.append((base + start - 7 * DAY_MINUTES, base + end - 7 * DAY_MINUTES, WEEKDAYS[index]))
    spans.sort()
    for (_, first_end, first_day), (second_start, _, second_day) in zip(spans, spans[1:], strict=False):
        if second_start < first_end:
            same = first_day == second_day
            diag.fail(
                f"business hours overlap on {second_day}" + ("" if same else f" (with the hours of {first_day})"),
                hours.value_loc(second_day),
                "ranges of a day must not overlap; merge them into one",
            )


def _duration(spec: PosMap, key: str, diag: Diagnostics) -> Duration | None:
    text, loc = str(spec[key]), spec.value_loc(key)
    match = _DURATION.match(text)
    if match is None or not any(match.groups()):
        diag.fail(
            f"{text!r} is not a duration",
            loc,
            "write durations of business time as e.g. 30m, 4h, 1h30m or 2d",
        )
        return None
    days, hours, minutes = (int(g or 0) for g in match.groups())
    if days == hours == minutes == 0:
        diag.fail(f"the duration {text!r} is zero", loc, "a target must be more than zero")
        return None
    return Duration(days, hours * 60 + minutes, text, loc)


def _chain(target: str, steps: PosList, diag: Diagnostics) -> list[EscalationStep]:
    chain, previous = [], None
    for index, step in enumerate(steps):
        actions = [key for key in ("notify", "reassign", "set_priority") if key in step]
        if len(actions) != 1:
            diag.fail(
                f"an escalation step does {'nothing' if not actions else 'more than one thing'}",
                steps.item_loc(index),
                "give each step one of notify, reassign or set_priority (two steps may share a threshold)",
            )
            continue
        action = actions[0]
        percent = step["at"]
        if previous is not None and percent < previous:
            diag.fail(
                f"escalation thresholds must ascend: {percent}% comes after {previous}%",
                step.value_loc("at"),
                "order the steps of a chain by their threshold",
            )
        previous = percent
        argument = str(step[action])
        if action == "notify":
            kind, _, name = argument.partition(" ")
            if not ((kind in NOTIFY_WHO and not name) or (kind in ("role", "team") and name.strip())):
                diag.fail(
                    f"notify {argument!r}: expected owner, team, team_lead, 'role NAME' or 'team NAME'",
                    step.value_loc(action),
                    did_you_mean(kind, NOTIFY_WHO + ("role", "team")),
                )
                continue
        chain.append(
            EscalationStep(
                target=target,
                index=index,
                percent=percent,
                action=action,
                argument=argument,
                loc=steps.item_loc(index),
                argument_loc=step.value_loc(action),
                message=step.get("message"),
            )
        )
    return chain


# --- cross-file checks -------------------------------------------------------


def check_policies(pack: Pack, diag: Diagnostics) -> None:
    """Check each policy against the entity, its workflow, roles and teams."""
    from .typecheck import TypeChecker  # typecheck imports the model; keep this module light

    for policy in pack.sla_policies.values():
        entity = pack.entities.get(policy.entity.name)
        if entity is None:
            if policy.entity.name not in pack.unloaded_entities:
                diag.fail(
                    f"unknown entity {policy.entity.name!r} in SLA policy {policy.name!r}",
                    policy.entity.loc,
                    did_you_mean(policy.entity.name, pack.entities) or see_docs(DOCS),
                )
            continue
        _check_priorities(policy, entity, diag)
        states = _check_states(pack, policy, entity, diag)
        if policy.first_response_field is not None:
            found = entity.fields.get(policy.first_response_field.name)
            if found is None or found.type != "datetime":
                diag.fail(
                    f"first_response field {policy.first_response_field.name!r} is not a datetime field of "
                    f"{entity.name}",
                    policy.first_response_field.loc,
                    did_you_mean(
                        policy.first_response_field.name,
                        [f.name for f in entity.fields.values() if f.type == "datetime"],
                    ),
                )
        if policy.applies_when is not None:
            TypeChecker(pack.entities, entity, diag, pack.teams).check_condition(policy.applies_when, "applies_when")
        _check_steps(pack, policy, entity, states, diag)


def _check_priorities(policy: SlaPolicyDef, entity, diag: Diagnostics) -> None:
    field_def = entity.fields.get(policy.priority_field.name)
    if field_def is None or field_def.type != "choice":
        diag.fail(
            f"{entity.name} has no choice field {policy.priority_field.name!r} to take priorities from",
            policy.priority_field.loc if "priority_field" in policy.locs else policy.at("targets"),
            "name it with priority_field: NAME",
        )
        return
    for ref in policy.target_refs:
        if ref.name not in field_def.options:
            diag.fail(
                f"unknown priority value {ref.name!r} of {entity.name}.{field_def.name}",
                ref.loc,
                did_you_mean(ref.name, field_def.options) or f"values: {', '.join(field_def.options)}",
            )


def _check_states(pack: Pack, policy: SlaPolicyDef, entity, diag: Diagnostics) -> set[str] | None:
    workflows = [w for w in pack.workflows.values() if w.entity.name == entity.name]
    if policy.state_field is not None:
        workflows = [w for w in workflows if w.field.name == policy.state_field.name]
    if len(workflows) != 1:
        if pack.workflow_failed_for(entity.name):
            return None
        where = policy.state_field.loc if policy.state_field else policy.entity.loc
        what = "no workflow" if not workflows else "several workflows"
        diag.fail(f"{entity.name} has {what} to follow", where, "name its state field with state_field: NAME")
        return None
    workflow = workflows[0]
    for ref in [*policy.first_response_leaves, *policy.pause_in, *policy.resolved_in]:
        if ref.name not in workflow.states:
            diag.fail(
                f"unknown state {ref.name!r} of workflow {workflow.name!r}",
                ref.loc,
                did_you_mean(ref.name, workflow.states) or f"states: {', '.join(workflow.states)}",
            )
    return set(workflow.states)


def _check_steps(pack: Pack, policy: SlaPolicyDef, entity, states, diag: Diagnostics) -> None:
    priority = entity.fields.get(policy.priority_field.name)
    for step in policy.escalation:
        if step.action == "set_priority":
            if priority is not None and step.argument not in priority.options:
                diag.fail(
                    f"unknown priority value {step.argument!r}",
                    step.argument_loc,
                    did_you_mean(step.argument, priority.options) or f"values: {', '.join(priority.options)}",
                )
        elif step.action == "reassign":
            if step.argument != "team_lead":
                diag.fail(f"reassign to {step.argument!r}: only team_lead is supported", step.argument_loc)
            elif entity.team_field is None or entity.owner_field is None:
                diag.fail(f"{entity.name} has no owner and team (queue) field to reassign with", step.argument_loc)
        else:
            kind, name = step.recipient
            if kind in ("owner",) and entity.owner_field is None:
                diag.fail(f"{entity.name} has no owner field to notify", step.argument_loc)
            elif kind in ("team", "team_lead") and name is None and entity.team_field is None:
                diag.fail(f"{entity.name} has no team (queue) field to notify", step.argument_loc)
            elif kind == "role" and name not in pack.roles and not pack.settings_failed:
                diag.fail(f"unknown role {name!r}", step.argument_loc, did_you_mean(name, pack.roles))
            elif kind == "team" and name is not None and name not in pack.teams and not pack.settings_failed:
                diag.fail(f"unknown team {name!r}", step.argument_loc, did_you_mean(name, pack.teams))
