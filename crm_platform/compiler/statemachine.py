"""State machines compiled from workflows.

The runtime asks ``check`` before every change of a state field; it answers
with the transition to run, or raises ``TransitionNotAllowed`` listing every
reason the move is refused (no such transition, role, guard, missing fields),
so the person sees all of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..definitions.model import WorkflowDef
from ..errors import TransitionNotAllowed
from .expressions import CompiledExpression, ExpressionCompiler


@dataclass(frozen=True)
class State:
    name: str
    label: str
    initial: bool
    final: bool
    require: tuple[str, ...]
    probability: int | None
    sla_hours: float | None
    outcome: str | None = None


@dataclass(frozen=True)
class Transition:
    source: str
    target: str
    label: str
    roles: frozenset[str]
    guard: CompiledExpression | None


class StateMachine:
    """The compiled form of one workflow."""

    def __init__(self, workflow: WorkflowDef, guards: dict[int, CompiledExpression], field_labels=None):
        self.name = workflow.name
        self.label = workflow.label
        self.entity = workflow.entity.name
        self.field = workflow.field.name
        self.probability_field = workflow.probability_field.name if workflow.probability_field else None
        self.field_labels = dict(field_labels or {})
        self.states = {
            s.name: State(
                s.name,
                s.label,
                s.initial,
                s.final,
                tuple(r.name for r in s.require),
                s.probability,
                s.sla_hours,
                s.outcome,
            )
            for s in workflow.states.values()
        }
        self.initial = next(s.name for s in self.states.values() if s.initial)
        self._transitions: dict[tuple[str, str], Transition] = {}
        self._outgoing: dict[str, list[Transition]] = {name: [] for name in self.states}
        for index, t in enumerate(workflow.transitions):
            for source in t.sources:
                transition = Transition(
                    source.name, t.target.name, t.label, frozenset(r.name for r in t.roles), guards.get(index)
                )
                self._transitions[(source.name, t.target.name)] = transition
                self._outgoing[source.name].append(transition)

    def transitions_from(self, state: str) -> list[Transition]:
        """The moves defined out of ``state`` (for buttons and the kanban board)."""
        return list(self._outgoing.get(state, ()))

    def _label(self, state: str) -> str:
        return self.states[state].label if state in self.states else repr(state)

    def check(self, record, target: str, roles, ctx) -> Transition:
        """Return the transition from the record's state to ``target`` if allowed.

        ``roles`` are the acting user's role names (``None``: an automated
        move that is not bound by roles). Raises ``TransitionNotAllowed``.
        """
        source = getattr(record, self.field)
        transition = self._transitions.get((source, target))
        if transition is None:
            allowed = ", ".join(self._label(t.target) for t in self._outgoing.get(source, ())) or "none"
            if target not in self.states:
                reason = f"{target!r} is not a stage of {self.label}"
            else:
                reason = f"there is no move from {self._label(source)} to {self._label(target)} (allowed: {allowed})"
            raise TransitionNotAllowed(str(source), target, [reason])
        reasons = []
        if transition.roles and roles is not None and not transition.roles.intersection(roles):
            reasons.append("only " + ", ".join(sorted(transition.roles)) + " may make this move")
        if transition.guard is not None and not transition.guard(record, ctx):
            reasons.append(f"the condition is not met: {transition.guard.source}")
        missing = [f for f in self.states[target].require if _empty(getattr(record, f, None))]
        if missing:
            names = ", ".join(self.field_labels.get(f, f) for f in missing)
            reasons.append(f"{names} must be filled in to enter {self.states[target].label}")
        if reasons:
            raise TransitionNotAllowed(source, target, reasons)
        return transition


def _empty(value) -> bool:
    return value is None or value == "" or value == []


def compile_workflow(workflow: WorkflowDef, field_labels: dict[str, str] | None = None) -> StateMachine:
    """Compile guards and build the state machine of a checked workflow.

    ``field_labels`` (field name -> label) lets refusals name fields as people see them.
    """
    compiler = ExpressionCompiler(workflow.entity.name)
    guards = {
        index: compiler.compile(t.guard, "guard", f"{workflow.file}:{t.loc.line}", t.guard_source or "")
        for index, t in enumerate(workflow.transitions)
        if t.guard is not None
    }
    return StateMachine(workflow, guards, field_labels or {})
