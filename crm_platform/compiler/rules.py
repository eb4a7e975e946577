"""Compiled rules and the index the runtime dispatches events through.

Rules are indexed by (entity, event, detail), so dispatching an event costs
the same however many unrelated rules exist. Within one key, rules are in
priority order (higher first, then file order). Actions are compiled, not
run: every expression in them becomes a function; the runtime plans and the
workers execute.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..definitions import nodes as n
from ..definitions.typecheck import fields_read
from .expressions import CompiledExpression, ExpressionCompiler


@dataclass(frozen=True)
class CompiledAction:
    """An action node with each of its expressions compiled."""

    node: n.Action
    expressions: dict[str, CompiledExpression]
    children: tuple[CompiledAction, ...] = ()

    @property
    def kind(self) -> str:
        return type(self.node).__name__


@dataclass(frozen=True)
class CompiledRule:
    name: str
    file: str
    line: int
    priority: int
    stop: bool
    enabled: bool
    trigger: n.Trigger
    condition: CompiledExpression | None
    actions: tuple[CompiledAction, ...]
    fields_read: tuple[str, ...]  # what the condition looked at, for "because ..."
    source: str

    def matches(self, record, ctx) -> bool:
        """True if the rule's condition holds for ``record`` (no condition: always)."""
        return self.condition is None or bool(self.condition(record, ctx))

    def python_source(self) -> str:
        """The generated code of the condition and every action expression."""
        parts = [self.condition.python] if self.condition else []

        def collect(actions):
            for action in actions:
                parts.extend(e.python for e in action.expressions.values())
                collect(action.children)

        collect(self.actions)
        return "\n".join(parts) or "# this rule has no expressions\n"


def index_key(trigger: n.Trigger) -> tuple[str, str, str | None]:
    """The dispatch key of a trigger: (entity, event kind, field/state/form)."""
    detail = {
        "changed": trigger.field,
        "enters": trigger.state,
        "leaves": trigger.state,
        "form": trigger.form,
        "date": trigger.field,
    }.get(trigger.kind)
    return (trigger.entity, trigger.kind, detail)


class RuleIndex:
    """Rules by dispatch key, in the order they run."""

    def __init__(self, rules: list[CompiledRule]):
        self.rules = {rule.name: rule for rule in rules}
        self._by_key: dict[tuple, list[CompiledRule]] = {}
        for rule in rules:
            if rule.enabled:
                self._by_key.setdefault(index_key(rule.trigger), []).append(rule)
        for bucket in self._by_key.values():
            bucket.sort(key=lambda r: (-r.priority, r.file, r.line))

    def for_event(self, entity: str, kind: str, detail: str | None = None) -> list[CompiledRule]:
        """Enabled rules for one event, in run order."""
        return self._by_key.get((entity, kind, detail), [])

    def scheduled(self) -> list[CompiledRule]:
        """Enabled time-driven rules (every N, N days before/after)."""
        return [r for bucket in self._by_key.values() for r in bucket if r.trigger.kind in ("every", "date")]


def compile_rule(rule: n.Rule) -> CompiledRule:
    """Compile a checked rule."""
    compiler = ExpressionCompiler(rule.trigger.entity)
    file, line = rule.loc.file, rule.loc.line
    condition = None
    if rule.condition is not None:
        condition = compiler.compile(
            rule.condition, "condition", f"rule {file}:{line}", _first_line(rule.source, "when")
        )
    return CompiledRule(
        name=rule.name,
        file=file,
        line=line,
        priority=rule.priority,
        stop=rule.stop,
        enabled=rule.enabled,
        trigger=rule.trigger,
        condition=condition,
        actions=tuple(_compile_action(a, compiler) for a in rule.actions),
        fields_read=tuple(fields_read(rule.condition, rule.trigger.entity)),
        source=rule.source,
    )


def _compile_action(action: n.Action, compiler: ExpressionCompiler) -> CompiledAction:
    expressions = {}
    where = f"{action.loc.file}:{action.loc.line}"
    for f in fields(action):
        value = getattr(action, f.name)
        if f.name == "target" or isinstance(value, n.Duration):
            continue  # the rule's own record, or a constant delay
        if isinstance(value, n.Recipient):
            value = value.path
        if isinstance(value, n.Expr):
            expressions[f.name] = compiler.compile(value, "value", where, f.name)
    if isinstance(action, n.Create):
        for name, expr, loc in action.values:
            expressions[name] = compiler.compile(expr, "value", f"{loc.file}:{loc.line}", name)
    if isinstance(action, n.Assign) and action.team is not None and action.team.by is not None:
        expressions["team_by"] = compiler.compile(action.team.by, "value", where, "team by")
    children = ()
    if isinstance(action, n.FollowUp):
        children = tuple(_compile_action(child, compiler) for child in action.actions)
    return CompiledAction(action, expressions, children)


def _first_line(source: str, keyword: str) -> str:
    for line in source.splitlines():
        if line.strip().startswith(keyword + " "):
            return line.strip()[len(keyword) + 1 :]
    return ""
