"""Compiling SLA policies: business calendars, targets as durations, and the
``applies_when`` condition compiled like a workflow guard."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from ..definitions.model import Pack
from ..definitions.sla import EscalationStep, SlaPolicyDef
from ..runtime.business_hours import Calendar
from .expressions import CompiledExpression, ExpressionCompiler


@dataclass(frozen=True)
class CompiledPolicy:
    """One policy, ready for ``runtime.sla``."""

    definition: SlaPolicyDef
    calendar: Calendar
    condition: CompiledExpression | None
    targets: dict[str, dict[str, dt.timedelta]]  # priority value -> target -> business time
    state_field: str
    first_response_leaves: frozenset[str]
    pause_in: frozenset[str]
    resolved_in: frozenset[str]

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def label(self) -> str:
        return self.definition.label

    @property
    def entity(self) -> str:
        return self.definition.entity.name

    @property
    def priority_field(self) -> str:
        return self.definition.priority_field.name

    @property
    def first_response_field(self) -> str | None:
        ref = self.definition.first_response_field
        return ref.name if ref else None

    def steps(self, target: str) -> list[EscalationStep]:
        return [step for step in self.definition.escalation if step.target == target]

    def applies_to(self, record, ctx) -> bool:
        return self.condition is None or bool(self.condition(record, ctx))


def compile_policies(pack: Pack) -> dict[str, list[CompiledPolicy]]:
    """Entity -> its policies in file order (the first that applies to a record wins).

    The pack must have passed analysis (``compile_pack`` raises before this otherwise).
    """
    result: dict[str, list[CompiledPolicy]] = {}
    for policy in sorted(pack.sla_policies.values(), key=lambda p: p.file):
        workflow = next(
            w
            for w in pack.workflows.values()
            if w.entity.name == policy.entity.name
            and (policy.state_field is None or w.field.name == policy.state_field.name)
        )
        condition = None
        if policy.applies_when is not None:
            condition = ExpressionCompiler(policy.entity.name).compile(
                policy.applies_when, "condition", f"{policy.file}:{policy.at('applies_when').line}",
                policy.applies_source or "",
            )  # fmt: skip
        day = policy.day_minutes
        targets = {
            priority: {
                name: dt.timedelta(minutes=duration.days * day + duration.minutes) for name, duration in spec.items()
            }
            for priority, spec in policy.targets.items()
        }
        zone = ZoneInfo(policy.timezone or pack.settings.timezone)
        calendar = Calendar(zone, policy.week, frozenset(policy.holidays), policy.always)
        leaves = {ref.name for ref in policy.first_response_leaves}
        if not leaves and policy.first_response_field is None and workflow.initial is not None:
            leaves = {workflow.initial.name}
        resolved = {ref.name for ref in policy.resolved_in} or {s.name for s in workflow.states.values() if s.final}
        compiled = CompiledPolicy(
            definition=policy,
            calendar=calendar,
            condition=condition,
            targets=targets,
            state_field=workflow.field.name,
            first_response_leaves=frozenset(leaves),
            pause_in=frozenset(ref.name for ref in policy.pause_in),
            resolved_in=frozenset(resolved),
        )
        result.setdefault(policy.entity.name, []).append(compiled)
    return result
