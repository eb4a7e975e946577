"""What an actor may do to an entity's records, from the pack's roles.

A user's roles add up: an operation is allowed if any role grants it; the
"own records only" scope applies only if every granting role has it; a
field is read-only only if it is read-only in every role that may update
the entity. Superusers and the system (rules, workers) may do everything.
"""

from __future__ import annotations

from ..definitions.model import Pack
from ..errors import PermissionDenied
from .users import Actor

OPERATIONS = ("create", "read", "update", "delete")


class Permissions:
    """The roles of one pack, answering questions about one actor at a time."""

    def __init__(self, pack: Pack):
        self.roles = pack.roles
        self.owner_fields = {
            name: entity.owner_field.name for name, entity in pack.entities.items() if entity.owner_field
        }
        self.labels = {name: entity.plural.lower() for name, entity in pack.entities.items()}

    def _granting(self, actor: Actor, entity: str, operation: str) -> list:
        granting = []
        for name in actor.roles:
            role = self.roles.get(name)
            if role is None:
                continue
            allowed = role.permissions.get(entity, set()) | role.permissions.get("*", set())
            if operation in allowed:
                granting.append(role)
        return granting

    def can(self, actor: Actor, entity: str, operation: str) -> bool:
        """True if ``actor`` may ``operation`` (create/read/update/delete) some ``entity`` records."""
        return actor.superuser or bool(self._granting(actor, entity, operation))

    def require(self, actor: Actor, entity: str, operation: str) -> None:
        """Raise ``PermissionDenied`` unless ``actor`` may ``operation`` ``entity`` records."""
        if not self.can(actor, entity, operation):
            raise PermissionDenied(f"you may not {operation} {self.labels.get(entity, entity)}")

    def own_only(self, actor: Actor, entity: str, operation: str = "read") -> bool:
        """True if ``actor`` may touch only records it owns (entities with an owner field)."""
        if actor.superuser or entity not in self.owner_fields:
            return False
        granting = self._granting(actor, entity, operation)
        return bool(granting) and all(role.scope == "own" for role in granting)

    def require_record(self, actor: Actor, entity: str, operation: str, record) -> None:
        """Raise ``PermissionDenied`` unless ``actor`` may ``operation`` this very record."""
        self.require(actor, entity, operation)
        if self.own_only(actor, entity, operation):
            owner = getattr(record, self.owner_fields[entity], None)
            if owner != actor.user_id:
                raise PermissionDenied(f"you may only {operation} your own {self.labels.get(entity, entity)}")

    def read_only_fields(self, actor: Actor, entity: str) -> frozenset[str]:
        """Fields ``actor`` may not set on ``entity`` (beyond those read-only for everyone)."""
        if actor.superuser:
            return frozenset()
        granting = self._granting(actor, entity, "update") or self._granting(actor, entity, "create")
        if not granting:
            return frozenset()
        sets = [{ref.name for ref in role.read_only_fields.get(entity, [])} for role in granting]
        return frozenset(set.intersection(*sets))

    def owner_field(self, entity: str) -> str | None:
        return self.owner_fields.get(entity)
