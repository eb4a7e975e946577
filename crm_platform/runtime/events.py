"""From a saved change to the actions it triggers.

A change raises events (created; updated with the changed fields, one
"changed" per field; left and entered a stage; deleted; a public form
submitted). The rules listening to any of them are looked up in the rule
index by (entity, event, detail), so the cost does not grow with unrelated
rules, then run in priority order: each matching rule's actions are
*planned* (become outbox rows in the same transaction), never executed here.
A rule marked ``stop`` ends the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..compiler.rules import CompiledAction, CompiledRule, RuleIndex
from ..definitions import nodes as n
from .values import to_json


@dataclass
class Change:
    """A saved change of one record, as the rules see it."""

    entity: str
    operation: str  # create, update, transition, delete, email_received
    record: object  # the model instance after the change (before it, for a delete)
    audit_id: int | None  # None for an event that changed no field (an email received)
    changes: dict[str, tuple] = field(default_factory=dict)  # field -> (old, new), stored form
    state_fields: tuple[str, ...] = ()
    form: str | None = None  # the public form a create came through
    depth: int = 0  # rule-triggered changes that led to this one
    event_key: str | None = None  # prefix of the actions' keys when there is no audit row ("mail-7")

    @property
    def key(self) -> str:
        """What makes the keys of the actions this change plans unique (with rule and path)."""
        return self.event_key or str(self.audit_id)


@dataclass(frozen=True)
class PlannedAction:
    """One action of one matching rule, ready to become an outbox row."""

    rule: CompiledRule
    action: CompiledAction
    path: str
    reason: dict
    chained: bool  # runs after the rule's previous action has finished


def event_keys(change: Change) -> list[tuple[str, str | None]]:
    """The (event, detail) pairs a change raises."""
    if change.operation == "create":
        keys = [("created", None)]
        if change.form:
            keys.append(("form", change.form))
        return keys
    if change.operation == "delete":
        return [("deleted", None)]
    if change.operation == "email_received":
        return [("email", None)]
    keys = [("updated", None)]
    for name in change.changes:
        keys.append(("changed", name))
        if name in change.state_fields:
            old, new = change.changes[name]
            keys += [("leaves", old), ("enters", new)]
    return keys


def matching_rules(index: RuleIndex, change: Change, ctx) -> list[tuple[CompiledRule, dict]]:
    """Rules that fire for ``change``, in run order, each with the values that made it fire."""
    candidates: dict[str, CompiledRule] = {}
    for kind, detail in event_keys(change):
        for rule in index.for_event(change.entity, kind, detail):
            if rule.name not in candidates and _trigger_fits(rule.trigger, change):
                candidates[rule.name] = rule
    ordered = sorted(candidates.values(), key=lambda r: (-r.priority, r.file, r.line))
    fired = []
    for rule in ordered:
        # The condition is called directly: this is the hot path (bench/dispatch.py).
        if rule.condition is not None and not rule.condition(change.record, ctx):
            continue
        fired.append((rule, reason_of(rule, change.record)))
        if rule.stop:
            break
    return fired


def _trigger_fits(trigger: n.Trigger, change: Change) -> bool:
    """``FIELD changed [from A] [to B]`` narrows the change it listens for."""
    if trigger.kind != "changed" or (trigger.change_from is None and trigger.change_to is None):
        return True
    old, new = change.changes[trigger.field]
    if trigger.change_from is not None and to_json(old) != trigger.change_from.value:
        return False
    return trigger.change_to is None or to_json(new) == trigger.change_to.value


def reason_of(rule: CompiledRule, record) -> dict:
    """The values of the fields the rule's condition read: "because country = DE"."""
    reason = {}
    for path in rule.fields_read:
        value = record
        for part in path.split("."):
            value = None if value is None else getattr(value, part, None)
        if hasattr(value, "_meta") and hasattr(value, "id"):
            value = value.id
        reason[path] = to_json(value)
    return reason


def plan(fired: list[tuple[CompiledRule, dict]]) -> list[PlannedAction]:
    """Each fired rule's actions in order; a rule's actions run one after another,
    so an action sees what the previous one did (the owner an assignment set).
    A follow-up waits for its own time instead."""
    planned = []
    for rule, reason in fired:
        for index, action in enumerate(rule.actions, start=1):
            chained = index > 1 and not isinstance(action.node, n.FollowUp)
            planned.append(PlannedAction(rule, action, str(index), reason, chained))
    return planned
