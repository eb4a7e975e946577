"""The one write path: every create, update, stage move and delete of a record.

Forms, the API, imports, rule actions and workers all come through here, so
nothing can skip a step. The order is fixed:

1. validate the payload against the entity's JSON Schema and field rules
   (read-only fields, links and users that exist, unique values);
2. check the actor's permission (and the "own records only" scope);
3. for a stage move, check the workflow guard and the target's required fields;
4. in one transaction: save the record (refused if its version is stale),
   write the audit entry, and plan the actions of the rules the change
   fires as outbox rows, which are handed to the queue after commit.

A failure at any step raises a typed error and writes nothing. Models are
written with ``insert``/``update`` queries here and nowhere else.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

import peewee as pw

from ..compiler.compiled import CompiledApp, CompiledEntity
from ..errors import ConflictError, NotFound, ValidationError
from . import values as v
from .events import Change, matching_rules, plan
from .history import Cause, History
from .outbox import Outbox
from .permissions import Permissions
from .users import HUMAN_CHANNELS, Actor, Directory

log = logging.getLogger("crm.records")

CHANNELS = ("form", "api", "import", "rule", "worker", "system")


@dataclass(frozen=True)
class WriteSettings:
    chain_limit: int = 10  # rule-triggered changes in a row before the loop guard stops the chain


class Records:
    """Creates, changes, moves and deletes records of one company."""

    def __init__(
        self,
        compiled: CompiledApp,
        directory: Directory,
        permissions: Permissions,
        history: History,
        outbox: Outbox,
        ctx,
        definition_version: int,
        settings: WriteSettings = WriteSettings(),
    ):
        self.compiled = compiled
        self.directory = directory
        self.permissions = permissions
        self.history = history
        self.outbox = outbox
        self.ctx = ctx
        self.definition_version = definition_version
        self.settings = settings

    # --- reading -------------------------------------------------------------

    def entity(self, name: str) -> CompiledEntity:
        try:
            return self.compiled.entities[name]
        except KeyError:
            raise NotFound(f"there is no entity {name!r}") from None

    def get(self, entity: str, record_id: int, actor: Actor, operation: str = "read"):
        """The record, if it exists and ``actor`` may ``operation`` it."""
        ce = self.entity(entity)
        record = ce.model.get_or_none(ce.model.id == record_id)
        if record is None:
            raise NotFound(f"there is no {ce.definition.label} #{record_id}")
        self.permissions.require_record(actor, entity, operation, record)
        return record

    def select(self, entity: str, actor: Actor):
        """A query over the records ``actor`` may read (own only, where the role says so)."""
        ce = self.entity(entity)
        self.permissions.require(actor, entity, "read")
        query = ce.model.select()
        if self.permissions.own_only(actor, entity, "read"):
            owner = getattr(ce.model, self.permissions.owner_field(entity))
            query = query.where(owner == actor.user_id)
        return query

    # --- writing -------------------------------------------------------------

    def create(
        self, entity: str, data: dict, actor: Actor, channel: str, *, form=None, cause: Cause | None = None, rules=True
    ):
        """Create a record from ``data`` (field -> value); return the saved record.

        ``rules=False`` (an import's choice) audits the change but fires no rules.
        """
        ce = self.entity(entity)
        payload = v.payload_to_json(data)
        if channel in HUMAN_CHANNELS and actor.user_id and ce.definition.owner_field:
            payload.setdefault(ce.definition.owner_field.name, actor.user_id)
        self._validate(ce, payload, actor, channel, partial=False)
        self.permissions.require(actor, entity, "create")
        record = ce.model()
        for name, machine in ce.workflows.items():
            setattr(record, name, machine.initial)
            if machine.probability_field and machine.states[machine.initial].probability is not None:
                setattr(record, machine.probability_field, machine.states[machine.initial].probability)
        self._assign(ce, record, payload)
        # Unique values are checked by the insert itself: its IntegrityError
        # becomes the same field message (_unique_race), one query less per record.
        now = self.ctx.now()
        record.created_at = record.updated_at = now
        record.version = 1
        self._compute(ce, record)
        with self._transaction():
            with self._unique_race(ce, record):
                record.id = ce.model.insert({k: val for k, val in record.__data__.items() if k != "id"}).execute()
            changes = {
                name: [None, value]
                for name, value in v.snapshot(ce.definition, record).items()
                if name not in ("id", "version", "created_at", "updated_at") and value not in (None, [], "")
            }
            self._after_write(ce, record, "create", changes, {}, actor, channel, cause, form=form, rules=rules)
        return record

    def update(
        self,
        entity: str,
        record_id: int,
        data: dict,
        actor: Actor,
        channel: str,
        *,
        version=None,
        cause=None,
        rules=True,
    ):
        """Change fields of a record; ``version`` is the one the change was based on.

        ``rules=False`` (an import's choice) audits the change but fires no rules.
        """
        ce = self.entity(entity)
        record, before = self._changed_copy(ce, record_id, data, actor, channel, version)
        return self._save(ce, record, before, "update", actor, channel, cause, rules=rules)

    def transition(self, entity: str, record_id: int, target: str, actor: Actor, channel: str, **options):
        """Move a record to stage ``target`` through its workflow's guard.

        ``data`` fills fields in the same step (what the stage requires);
        ``field`` picks the workflow when an entity has several.
        """
        data, version, cause = options.get("data") or {}, options.get("version"), options.get("cause")
        ce = self.entity(entity)
        machine = self._machine(ce, options.get("field"))
        record, before = self._changed_copy(ce, record_id, data, actor, channel, version)
        roles = None if actor.superuser else actor.roles
        machine.check(record, target, roles, self.ctx)
        setattr(record, machine.field, target)
        if machine.probability_field and machine.states[target].probability is not None:
            setattr(record, machine.probability_field, machine.states[target].probability)
        return self._save(ce, record, before, "transition", actor, channel, cause)

    def delete(self, entity: str, record_id: int, actor: Actor, channel: str, *, version=None, cause=None) -> None:
        """Delete a record; its audit and timeline stay."""
        ce = self.entity(entity)
        record = self.get(entity, record_id, actor, "delete")
        self._check_version(ce, record, version)
        with self._transaction():
            deleted = ce.model.delete().where((ce.model.id == record.id) & (ce.model.version == record.version))
            if not deleted.execute():
                raise self._conflict(ce, record.id, record.version)
            changes = {
                name: [value, None]
                for name, value in v.snapshot(ce.definition, record).items()
                if name not in ("id", "version", "created_at", "updated_at") and value not in (None, [], "")
            }
            record.version += 1
            self._after_write(ce, record, "delete", changes, {}, actor, channel, cause)

    # --- the steps -------------------------------------------------------------

    def _changed_copy(self, ce: CompiledEntity, record_id: int, data: dict, actor, channel, version):
        """Validate ``data``, load the record the actor may update, apply ``data`` in memory.

        Returns the record with the new values and its stored values before them.
        """
        payload = v.payload_to_json(data)
        self._validate(ce, payload, actor, channel, partial=True)
        record = self.get(ce.name, record_id, actor, "update")
        self._check_version(ce, record, version)
        before = self._stored(ce, record)
        self._assign(ce, record, payload)
        self._check_unique(ce, record, payload)
        return record, before

    def _validate(self, ce: CompiledEntity, payload: dict, actor: Actor, channel: str, partial: bool) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        errors = ce.validator.errors(payload, partial=partial)
        definition = ce.definition
        read_only = self.permissions.read_only_fields(actor, definition.name) if channel in HUMAN_CHANNELS else ()
        for name in payload:
            field = definition.fields.get(name)
            if field is None:
                continue
            if name in ce.workflows and (partial or payload[name] != ce.workflows[name].initial):
                errors.setdefault(name, []).append(
                    f"changes only by moving the record through {ce.workflows[name].label or 'its workflow'}"
                )
            elif channel in HUMAN_CHANNELS and (field.read_only or name in read_only):
                errors.setdefault(name, []).append("is read-only")
        if not errors:
            self._check_references(ce, payload, errors, actor if channel in HUMAN_CHANNELS else None)
        if errors:
            raise ValidationError(errors)

    def _check_references(self, ce: CompiledEntity, payload: dict, errors: dict, person: Actor | None) -> None:
        """Linked records and users must exist; a person may only link records they may read.

        A record hidden from ``person`` is reported as missing, so ids cannot be probed.
        """
        for name, value in payload.items():
            field = ce.definition.fields.get(name)
            if field is None or value is None:
                continue
            if field.type == "link":
                target = self.compiled.entities[field.entity]
                if person is None:
                    visible = target.model.select()
                elif self.permissions.can(person, field.entity, "read"):
                    visible = self.select(field.entity, person)
                else:
                    visible = None
                if visible is None or not visible.where(target.model.id == value).exists():
                    errors.setdefault(name, []).append(f"there is no {target.definition.label} #{value}")
            elif field.type == "user" and not self.directory.exists(value):
                errors.setdefault(name, []).append(f"there is no user #{value}")

    def _assign(self, ce: CompiledEntity, record, payload: dict) -> None:
        for name, value in payload.items():
            field = ce.definition.fields.get(name)
            if field is None:  # a money field's currency
                setattr(record, name, value)
            else:
                setattr(record, v.storage_name(field), v.from_json(field, value))

    def _check_unique(self, ce: CompiledEntity, record, payload: dict) -> None:
        errors = {}
        for name in payload:
            field = ce.definition.fields.get(name)
            if field is None or not field.unique:
                continue
            value = getattr(record, v.storage_name(field))
            if value is None:
                continue
            column = getattr(ce.model, name)
            query = ce.model.select(ce.model.id).where(column == value)
            if record.id is not None:
                query = query.where(ce.model.id != record.id)
            other = query.first()
            if other is not None:
                errors[name] = [f"is already used by {ce.definition.label} #{other.id}"]
        if errors:
            raise ValidationError(errors)

    @contextmanager
    def _unique_race(self, ce: CompiledEntity, record):
        """A unique value taken by a concurrent write after the check: the same field message."""
        try:
            with self.outbox.tables.database.atomic():
                yield
        except pw.IntegrityError:
            unique = [f.name for f in ce.definition.fields.values() if f.unique]
            self._check_unique(ce, record, dict.fromkeys(unique))
            raise

    def _compute(self, ce: CompiledEntity, record) -> None:
        for name, expression in ce.computed:
            setattr(record, name, expression(record, self.ctx))

    def _check_version(self, ce: CompiledEntity, record, version) -> None:
        if version is not None and int(version) != record.version:
            raise self._conflict(ce, record.id, int(version), record.version)

    def _conflict(self, ce: CompiledEntity, record_id: int, based_on: int, current: int | None = None):
        fields = self.history.fields_changed_since(ce.name, record_id, based_on)
        what = ", ".join(fields) if fields else "the record"
        return ConflictError(
            f"{ce.definition.label} #{record_id} was changed by someone else meanwhile ({what}); "
            "reload it and apply your change again",
            fields,
            current,
        )

    def _machine(self, ce: CompiledEntity, field: str | None):
        if not ce.workflows:
            raise ValidationError({"": [f"{ce.definition.plural} have no stages"]})
        if field is None:
            if len(ce.workflows) > 1:
                raise ValidationError({"": ["name the workflow's field: " + ", ".join(ce.workflows)]})
            return next(iter(ce.workflows.values()))
        if field not in ce.workflows:
            raise ValidationError({field: ["is not a stage field"]})
        return ce.workflows[field]

    def _stored(self, ce: CompiledEntity, record) -> dict:
        # The raw values (a link's id, not the linked record, which would be loaded).
        return dict(record.__data__)

    def _save(self, ce: CompiledEntity, record, before: dict, operation: str, actor, channel, cause, rules=True):
        self._compute(ce, record)
        model = ce.model
        after = record.__data__
        changed = {
            name: (before.get(name), after.get(name))
            for name in model._meta.fields
            if name not in ("id", "version", "created_at", "updated_at") and before.get(name) != after.get(name)
        }
        if not changed:
            return record
        based_on = record.version
        record.version = based_on + 1
        record.updated_at = self.ctx.now()
        with self._transaction():
            columns = {model._meta.fields[name]: new for name, (_, new) in changed.items()}
            columns[model.version] = record.version
            columns[model.updated_at] = record.updated_at
            with self._unique_race(ce, record):
                saved = model.update(columns).where((model.id == record.id) & (model.version == based_on)).execute()
            if not saved:
                raise self._conflict(ce, record.id, based_on)
            audit_changes = {name: [v.to_json(a), v.to_json(b)] for name, (a, b) in changed.items()}
            self._after_write(ce, record, operation, audit_changes, changed, actor, channel, cause, rules=rules)
        return record

    def _after_write(self, ce, record, operation, audit_changes, changed, actor, channel, cause, form=None, rules=True):
        """Audit the change and plan what it triggers (inside the transaction); ``rules=False`` only audits."""
        audit_id = self.history.audit(
            ce.name,
            record.id,
            operation,
            record.version,
            self.ctx.now(),
            actor.user_id,
            channel,
            audit_changes,
            cause,
        )
        if not rules:
            return
        depth = cause.depth if cause else 0
        change = Change(
            entity=ce.name,
            operation=operation,
            record=record,
            audit_id=audit_id,
            changes=changed,
            state_fields=tuple(ce.workflows),
            form=form,
            depth=depth,
        )
        fired = matching_rules(self.compiled.rules, change, self.ctx)
        if not fired:
            return
        if depth >= self.settings.chain_limit:
            stopped = ", ".join(repr(rule.name) for rule, _ in fired)
            self.history.note(
                ce.name,
                record.id,
                self.ctx.now(),
                "error",
                f"automation stopped: {depth} rule-triggered changes in a row reached the limit of "
                f"{self.settings.chain_limit}; not running {stopped} again",
                rule=cause.rule if cause else None,
                detail={"chain_limit": self.settings.chain_limit, "rules": [rule.name for rule, _ in fired]},
            )
            return
        snapshot = v.snapshot(ce.definition, record) if operation == "delete" else None
        self.outbox.plan(change, plan(fired), self.definition_version, snapshot)

    def _transaction(self):
        # One write at a time: on SQLite the database is opened with BEGIN IMMEDIATE,
        # so a transaction that reads and then writes never fails to upgrade its lock.
        return self.outbox.tables.database.atomic()
