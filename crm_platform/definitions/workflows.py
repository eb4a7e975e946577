"""Building ``WorkflowDef`` from a structurally valid ``workflows/*.yaml`` file.

Checks what the workflow alone decides: one initial state, transitions that
name its states, no duplicate transitions, every state reachable and every
non-final state with a way out. Whether the entity, its fields and the roles
exist is checked by ``analysis``.
"""

from __future__ import annotations

from collections import deque

from .diagnostics import Diagnostics, did_you_mean
from .entities import check_name, humanize
from .model import Ref, StateDef, TransitionDef, WorkflowDef
from .parser import SyntaxProblem, parse_expression
from .source import PosList, PosMap, located


def build_workflow(data: PosMap, file: str, diag: Diagnostics) -> WorkflowDef:
    """Build a workflow and check its graph."""
    states_data = data["states"]
    states = {}
    for name, spec in states_data.items():
        spec = spec if isinstance(spec, PosMap) else PosMap()
        check_name(name, states_data.key_loc(name), "state", diag)
        states[name] = StateDef(
            name=name,
            loc=states_data.key_loc(name),
            label=spec.get("label") or humanize(name),
            initial=spec.get("initial", False),
            final=spec.get("final", False),
            require=[Ref(f, spec["require"].item_loc(i)) for i, f in enumerate(spec.get("require", []))],
            probability=spec.get("probability"),
            sla_hours=spec.get("sla_hours"),
            outcome=spec.get("outcome"),
        )
    workflow = WorkflowDef(
        name=data["workflow"],
        file=file,
        loc=data.value_loc("workflow"),
        entity=Ref(data["entity"], data.value_loc("entity")),
        field=Ref(data["field"], data.value_loc("field")),
        states=states,
        transitions=[_transition(t, states, diag) for t in data["transitions"]],
        label=data.get("label") or humanize(data["workflow"]),
        probability_field=(
            Ref(data["probability_field"], data.value_loc("probability_field")) if "probability_field" in data else None
        ),
    )
    _check_initial(workflow, data, diag)
    _check_transitions(workflow, diag)
    _check_graph(workflow, diag)
    return workflow


def _transition(data: PosMap, states: dict[str, StateDef], diag: Diagnostics) -> TransitionDef:
    sources = data["from"]
    if isinstance(sources, PosList):
        refs = [Ref(s, sources.item_loc(i)) for i, s in enumerate(sources)]
    else:
        refs = [Ref(sources, data.value_loc("from"))]
    target = Ref(data["to"], data.value_loc("to"))
    roles = data.get("roles", PosList())
    transition = TransitionDef(
        sources=refs,
        target=target,
        loc=data.loc,
        label=data.get("label") or (states[target.name].label if target.name in states else humanize(target.name)),
        roles=[Ref(r, roles.item_loc(i)) for i, r in enumerate(roles)],
    )
    if "when" in data:
        source = located(data, "when")
        transition.guard_source = source.text
        try:
            transition.guard = parse_expression(source.expression, source.loc, source.quoted)
        except SyntaxProblem as problem:
            diag.fail(problem.message, problem.loc, problem.hint)
    return transition


def _check_initial(workflow: WorkflowDef, data: PosMap, diag: Diagnostics) -> None:
    initial = [s for s in workflow.states.values() if s.initial]
    if not initial:
        diag.fail(
            f"workflow {workflow.name!r} has no initial state",
            data.key_loc("states"),
            "mark the state new records start in with initial: true",
        )
    for extra in initial[1:]:
        diag.fail(
            f"more than one initial state: {initial[0].name!r} and {extra.name!r}",
            extra.loc,
            "a workflow has exactly one initial state",
        )
    for state in workflow.states.values():
        if state.initial and state.final:
            diag.fail(
                f"state {state.name!r} is both initial and final",
                state.loc,
                "records could never move; make it one or the other",
            )
        if state.outcome and not state.final:
            diag.fail(
                f"state {state.name!r} has an outcome but is not final",
                state.loc,
                "only a final state is won or lost; add final: true or remove outcome",
            )


def _check_transitions(workflow: WorkflowDef, diag: Diagnostics) -> None:
    seen = {}
    for transition in workflow.transitions:
        for ref in [*transition.sources, transition.target]:
            if ref.name not in workflow.states:
                diag.fail(
                    f"unknown state {ref.name!r} in workflow {workflow.name!r}",
                    ref.loc,
                    did_you_mean(ref.name, workflow.states) or f"states: {', '.join(workflow.states)}",
                )
        for source in transition.sources:
            key = (source.name, transition.target.name)
            if source.name == transition.target.name:
                diag.fail(
                    f"transition from {source.name!r} to itself", source.loc, "a transition must change the state"
                )
            elif key in seen:
                diag.fail(
                    f"duplicate transition {source.name} -> {transition.target.name}",
                    source.loc,
                    f"it is already defined at line {seen[key].line}",
                )
            else:
                seen[key] = source.loc


def _check_graph(workflow: WorkflowDef, diag: Diagnostics) -> None:
    outgoing: dict[str, set[str]] = {name: set() for name in workflow.states}
    for transition in workflow.transitions:
        for source in transition.sources:
            if source.name in outgoing and transition.target.name in workflow.states:
                outgoing[source.name].add(transition.target.name)
    initial = workflow.initial
    if initial is None:
        return
    reached = _reachable(initial.name, outgoing)
    for state in workflow.states.values():
        if state.name not in reached:
            diag.fail(
                f"state {state.name!r} cannot be reached from the initial state {initial.name!r}",
                state.loc,
                "add a transition into it, or remove it",
            )
        elif not state.final and not outgoing[state.name]:
            diag.fail(
                f"state {state.name!r} is not final but has no transition out of it",
                state.loc,
                "add a transition from it, or mark it final: true",
            )
        elif state.final and outgoing[state.name]:
            diag.warn(
                f"final state {state.name!r} has transitions out of it",
                state.loc,
                "a final state is meant to be an end; remove final: true if records may leave it",
            )


def _reachable(start: str, outgoing: dict[str, set[str]]) -> set[str]:
    seen, queue = {start}, deque([start])
    while queue:
        for target in outgoing[queue.popleft()]:
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen
