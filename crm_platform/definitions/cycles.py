"""Finding rules that can trigger each other in a circle.

Each rule writes something (a field, a stage, a new record) and listens for
something (a change, an update, a creation). When what one rule writes is
what another listens for, there is an edge; a cycle in that graph is a chain
of automation that could run forever. Each cycle is reported once, with the
path, so the admin sees which trigger to narrow.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import nodes as n
from .diagnostics import Diagnostics
from .model import Pack

ANY_FIELD = "*"
CREATED = "+created"


@dataclass(frozen=True)
class Write:
    """Something a rule's actions change: (entity, field), or (entity, CREATED).
    A move also names the stage it moves to; a ``set`` to a literal, the value."""

    entity: str
    field: str
    state: str | None = None
    value: object = None

    def __str__(self) -> str:
        if self.field == CREATED:
            return f"creates a {self.entity}"
        if self.state is not None:
            return f"moves {self.entity} to {self.state}"
        return f"sets {self.entity}.{self.field}"


@dataclass(frozen=True)
class Listen:
    """What fires a rule: a write to (entity, field), narrowed for stage triggers
    to moves into (``enters``) or out of (``leaves``) one stage."""

    entity: str
    field: str
    enters: str | None = None
    leaves: str | None = None
    to: object = None  # `FIELD changed to VALUE`


def rule_writes(rule: n.Rule, pack: Pack) -> list[Write]:
    """What a rule's actions (nested follow-ups included) may change."""
    entity = pack.entities.get(rule.trigger.entity)
    writes: list[Write] = []

    def visit(actions):
        for action in actions:
            if isinstance(action, n.SetField):
                value = action.value.value if isinstance(action.value, n.Literal) else None
                writes.append(Write(rule.trigger.entity, action.target.parts[-1], value=value))
            elif isinstance(action, n.Move):
                for workflow in pack.workflows.values():
                    if workflow.entity.name == rule.trigger.entity and action.state in workflow.states:
                        writes.append(Write(rule.trigger.entity, workflow.field.name, action.state))
            elif isinstance(action, n.Assign | n.Escalate) and entity is not None:
                queue = isinstance(action, n.Assign) and action.strategy == "queue"
                ref = entity.team_field if queue else entity.owner_field
                if ref is not None:
                    writes.append(Write(rule.trigger.entity, ref.name))
            elif isinstance(action, n.Create):
                writes.append(Write(action.entity, CREATED))
            elif isinstance(action, n.AddToCampaign):
                writes.append(Write("campaign_member", CREATED))
            elif isinstance(action, n.FollowUp):
                visit(action.actions)

    visit(rule.actions)
    return writes


def rule_listens(rule: n.Rule, pack: Pack) -> list[Listen]:
    """Which writes would fire this rule."""
    trigger = rule.trigger
    if trigger.kind == "created":
        return [Listen(trigger.entity, CREATED)]
    if trigger.kind == "updated":
        return [Listen(trigger.entity, ANY_FIELD)]
    if trigger.kind == "changed":
        to = trigger.change_to.value if trigger.change_to is not None else None
        return [Listen(trigger.entity, trigger.field, to=to)]
    if trigger.kind in ("enters", "leaves"):
        stage = {trigger.kind: trigger.state}
        return [
            Listen(trigger.entity, w.field.name, **stage)
            for w in pack.workflows.values()
            if w.entity.name == trigger.entity and trigger.state in w.states
        ]
    return []  # time, form, email and delete triggers are not fired by rule writes


def _fires(write: Write, listen: Listen) -> bool:
    if write.entity != listen.entity:
        return False
    if listen.field == CREATED or write.field == CREATED:
        return write.field == listen.field
    if listen.field not in (ANY_FIELD, write.field):
        return False
    # A move into one stage enters only that stage, and leaves any other.
    if write.state is not None and listen.enters is not None:
        return write.state == listen.enters
    if write.state is not None and listen.leaves is not None:
        return write.state != listen.leaves
    # A write of a known value fires `changed to VALUE` only for that value.
    known = write.state if write.state is not None else write.value
    if listen.to is not None and known is not None:
        return known == listen.to
    return True


def check_cycles(pack: Pack, diag: Diagnostics) -> None:
    """Report each cycle among enabled rules once, at its first rule."""
    rules = [r for r in pack.rules if r.enabled and r.trigger.entity in pack.entities]
    # Listeners by (entity, field), so each write is matched only against rules that
    # listen to its field or to any field of its entity, not against every rule.
    listening: dict[tuple[str, str], list[tuple[int, Listen]]] = {}
    for j, rule in enumerate(rules):
        for listen in rule_listens(rule, pack):
            listening.setdefault((listen.entity, listen.field), []).append((j, listen))
    edges: dict[int, list[tuple[int, Write]]] = {i: [] for i in range(len(rules))}
    for i, rule in enumerate(rules):
        for write in rule_writes(rule, pack):
            candidates = listening.get((write.entity, write.field), [])
            if write.field != CREATED:
                candidates = candidates + listening.get((write.entity, ANY_FIELD), [])
            fired = sorted({j for j, listen in candidates if _fires(write, listen)})
            edges[i].extend((j, write) for j in fired)
    for component in _strongly_connected(edges):
        start = min(component, key=lambda i: rules[i].loc)
        path = _cycle_from(start, component, edges)
        if path is None:
            continue
        steps = [f"{rules[i].name!r} {write}" for i, write in path]
        description = " -> ".join(steps) + f" -> {rules[start].name!r}"
        # A warning: a condition may end the chain, and the loop guard stops it at run time.
        diag.warn(
            f"rules can trigger each other in a cycle: {description}",
            rules[start].loc,
            "narrow a trigger so the chain ends: 'FIELD changed to VALUE' or 'enters STATE' instead of "
            "'updated' (conditions are not taken into account)",
        )


def _strongly_connected(edges: dict[int, list[tuple[int, Write]]]) -> list[set[int]]:
    """Tarjan's algorithm; keeps components that contain a cycle."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []
    counter = [0]

    def visit(v: int) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w, _ in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or any(w == v for w, _ in edges[v]):
                result.append(component)

    for v in edges:
        if v not in index:
            visit(v)
    return result


def _cycle_from(start: int, component: set[int], edges) -> list[tuple[int, Write]] | None:
    """A shortest path from ``start`` back to itself inside ``component``."""
    from collections import deque

    queue = deque([(start, [])])
    seen = set()
    while queue:
        node, path = queue.popleft()
        for target, write in edges[node]:
            if target not in component:
                continue
            step = path + [(node, write)]
            if target == start:
                return step
            if target not in seen:
                seen.add(target)
                queue.append((target, step))
    return None
