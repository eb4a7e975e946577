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

``create_many`` runs the same steps for a batch of creates (an import's chunk),
each step written once and shared with ``create``, its queries made per batch;
a refused row is returned as its error and the others are saved.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

import peewee as pw

from ..compiler.compiled import CompiledApp, CompiledEntity
from ..errors import ConflictError, NotFound, PermissionDenied, ValidationError
from . import values as v
from .events import Change, matching_rules, plan
from .history import Cause, History
from .outbox import Outbox
from .permissions import Permissions
from .tables import PreparedInsert
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
        webhooks=None,  # runtime.subscriptions.Subscriptions: deliveries to integrations
    ):
        self.compiled = compiled
        self.directory = directory
        self.permissions = permissions
        self.history = history
        self.outbox = outbox
        self.ctx = ctx
        self.definition_version = definition_version
        self.settings = settings
        self.webhooks = webhooks
        self._inserts: dict[str, PreparedInsert] = {}  # entity -> its INSERT, built on first use
        self._audited: dict[str, set[str]] = {}  # entity -> the names its audit records, likewise
        self._setters: dict[str, dict] = {}  # entity -> how _assign sets each field, likewise
        self._initial: dict[str, dict] = {}  # entity -> a new record's stage (and probability), likewise
        self._indexed: dict[str, bool] = {}  # entity -> its unique fields have unique indexes, likewise
        self._among: dict[tuple, str] = {}  # (table, column, count) -> the SQL of _ids_among, likewise

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
        payload = self._new_payload(ce, data, actor, channel)
        self._validate(ce, payload, actor, channel, partial=False)
        self.permissions.require(actor, entity, "create")
        record = self._new_record(ce, payload, self.ctx.now())
        # Unique values are checked by the insert itself: its IntegrityError
        # becomes the same field message (_unique_race), one query less per record.
        with self._transaction():
            with self._unique_race(ce, record):
                self._insert_new(ce, [record])
            changes = self._created_changes(ce, record)
            self._after_write(ce, record, "create", changes, {}, actor, channel, cause, form=form, rules=rules)
        return record

    def create_many(self, entity: str, rows: list[dict], actor: Actor, channel: str, *, rules=True, cause=None):
        """Create a record from each of ``rows``; per row, in order, the saved record or the
        ``ValidationError`` / ``PermissionDenied`` that refused it (a bad row stops no other).

        Every row gets the same steps and messages as ``create``, made once per batch where
        they query: one query per link field and one for users; one ``executemany`` of the
        records, whose unique indexes check the unique values as in ``create`` (if they refuse
        the batch: one query per unique field finds the clashes, between the rows the first
        keeps the value, and the others are inserted); one ``executemany`` of the audit; then
        per record the same planning as ``create`` (webhooks if a subscription listens, rules
        unless ``rules=False``). Runs inside the caller's transaction if there is one (an
        import's chunk), else in its own.
        """
        ce = self.entity(entity)
        payloads = [self._new_payload(ce, data, actor, channel) for data in rows]
        results: list = [ValidationError(e) if e else None for e in self._errors(ce, payloads, actor, channel, False)]
        try:
            self.permissions.require(actor, entity, "create")
        except PermissionDenied as denied:
            return [result or denied for result in results]
        now = self.ctx.now()
        fresh = {i: self._new_record(ce, payloads[i], now) for i, result in enumerate(results) if result is None}
        with self._transaction():
            # Unique values are checked by the insert itself, as in create, where the database has
            # a unique index for each: only when one refuses the batch are the clashes looked up
            # and the other rows inserted. Without such indexes (an older table), before.
            by_index = self._unique_indexed(ce)
            clashes = {} if by_index else self._unique_clashes(ce, fresh)
            saved = {i: record for i, record in fresh.items() if i not in clashes}
            inserted = self._inserted(ce, saved)
            if not inserted and by_index:
                clashes = self._unique_clashes(ce, fresh)
                saved = {i: record for i, record in fresh.items() if i not in clashes}
                inserted = self._inserted(ce, saved)
            if not inserted:  # a concurrent write took a unique value after the check
                for i, record in list(saved.items()):
                    try:
                        with self._unique_race(ce, record):
                            self._insert_new(ce, [record])
                    except ValidationError as error:
                        results[i] = error
                        del saved[i]
            for i, clash in clashes.items():
                results[i] = ValidationError(
                    {
                        name: [f"is already used by {ce.definition.label} #{other if stored else fresh[other].id}"]
                        for name, (stored, other) in clash.items()
                    }
                )
            changes = {i: self._created_changes(ce, record) for i, record in saved.items()}
            audit_ids = self.history.audit_created(
                ce.name, [(record.id, changes[i]) for i, record in saved.items()], now, actor.user_id, channel, cause
            )
            # Asked once for the batch: with no subscription and no rules, nothing is planned per record.
            webhooks = self.webhooks is not None and self.webhooks.listens(ce.name, "create")
            if webhooks or rules:
                for (i, record), audit_id in zip(saved.items(), audit_ids, strict=True):
                    args = (ce, record, "create", changes[i], {}, audit_id, actor, channel, cause, None, rules)
                    self._planned(*args, webhooks=webhooks)
            for i, record in saved.items():
                results[i] = record
        return results

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

    def _new_payload(self, ce: CompiledEntity, data: dict, actor: Actor, channel: str) -> dict:
        """A create's payload in JSON form; a person's new record is theirs unless it names an owner."""
        payload = v.payload_to_json(data)
        if channel in HUMAN_CHANNELS and actor.user_id and ce.definition.owner_field:
            payload.setdefault(ce.definition.owner_field.name, actor.user_id)
        return payload

    def _new_record(self, ce: CompiledEntity, payload: dict, now):
        """An unsaved record of a valid create payload: initial stages, values, stamps, computed fields."""
        initial = self._initial.get(ce.name)
        if initial is None:  # the same for every new record of the entity
            initial = {}
            for name, machine in ce.workflows.items():
                initial[name] = machine.initial
                if machine.probability_field and machine.states[machine.initial].probability is not None:
                    initial[machine.probability_field] = machine.states[machine.initial].probability
            self._initial[ce.name] = initial
        values = initial.copy()
        setters = self._setters_of(ce)
        for name, value in payload.items():  # a payload's names are its model's field names
            field = setters[name][1] if name in setters else None
            values[name] = value if field is None else v.from_json(field, value)
        values["created_at"] = values["updated_at"] = now
        values["version"] = 1
        record = ce.model()
        # What the fields' accessors do on a new record (nothing linked is cached yet), without a call per field.
        record.__data__.update(values)
        record._dirty.update(values)
        self._compute(ce, record)
        return record

    def _insert_new(self, ce: CompiledEntity, records: list) -> None:
        """Insert new records (a prepared statement built once per entity; a batch with one
        ``executemany``, ``PreparedInsert.many``); sets their ids."""
        insert = self._inserts.get(ce.name)
        if insert is None:
            columns = tuple(name for name in ce.model._meta.fields if name != "id")
            insert = self._inserts[ce.name] = PreparedInsert(ce.model, columns)
        values = [r.__data__ for r in records]
        ids = insert.many(values) if len(values) > 1 else insert.each(values)
        for record, record_id in zip(records, ids, strict=True):
            record.id = record_id

    def _unique_indexed(self, ce: CompiledEntity) -> bool:
        """True if the database has a unique index on each unique field's column (asked once per entity)."""
        known = self._indexed.get(ce.name)
        if known is None:
            model = ce.model
            wanted = {getattr(model, f.name).column_name for f in ce.definition.fields.values() if f.unique}
            indexes = model._meta.database.get_indexes(model._meta.table_name)
            have = {index.columns[0] for index in indexes if index.unique and len(index.columns) == 1}
            known = self._indexed[ce.name] = wanted <= have
        return known

    def _inserted(self, ce: CompiledEntity, records: dict) -> bool:
        """Insert ``records`` (row -> record) in one go; False, with none of them inserted, if the
        database refused one (a unique value taken)."""
        try:
            with self.outbox.tables.database.atomic():
                self._insert_new(ce, list(records.values()))
        except pw.IntegrityError:
            return False
        return True

    def _created_changes(self, ce: CompiledEntity, record) -> dict:
        """The audit changes of a create: every filled field (a link as its id) -> [None, value]."""
        # What v.snapshot reads, from the record's raw values: a link's value there is its id.
        audited = self._audited.get(ce.name)
        if audited is None:
            fields = ce.definition.fields.values()
            audited = {f.name for f in fields} | {f"{f.name}_currency" for f in fields if f.type == "money"}
            self._audited[ce.name] = audited
        changes, as_is, to_json = {}, v.AS_IS, v.to_json
        for name, value in record.__data__.items():  # the values set, fewer than the fields
            if value is None or name not in audited:
                continue
            if type(value) not in as_is:
                value = to_json(value)
            if value or not (value == "" or value == []):  # 0 and False are values, "" and [] are not
                changes[name] = [None, value]
        return changes

    def _unique_clashes(self, ce: CompiledEntity, records: dict[int, object]) -> dict[int, dict]:
        """Row -> {field: (True, id of the stored record) or (False, the earlier row)} for unique values taken.

        One query per unique field for all ``records``; between the rows, the first keeps the value.
        """
        clashes: dict[int, dict] = {}
        for field in ce.definition.fields.values():
            if not field.unique:
                continue
            column = getattr(ce.model, field.name)
            attribute = v.storage_name(field)
            values = {i: getattr(record, attribute) for i, record in records.items()}
            wanted = set(values.values()) - {None}
            taken = {}
            for group in _groups(list(wanted)):
                for value, record_id in self._ids_among(column, group):
                    taken.setdefault(value, record_id)
            first: dict = {}
            for i, value in values.items():
                if value is None:
                    continue
                if value in taken:
                    clashes.setdefault(i, {})[field.name] = (True, taken[value])
                elif value in first:
                    clashes.setdefault(i, {})[field.name] = (False, first[value])
                else:
                    first[value] = i
        return clashes

    def _ids_among(self, column, values: list) -> list[tuple]:
        """(value, id) of the stored rows whose ``column`` is among ``values``, like
        ``select(column, id).where(_among(column, values)).tuples()``: the SQL is built once per
        column and count, with bare placeholders, and the values are bound directly (peewee's
        node per value is ~3 us each)."""
        model = column.model
        database = model._meta.database
        # Names, not the column: a peewee column's == builds an expression, which a dict takes for True.
        key = (model._meta.table_name, column.column_name, len(values))
        sql = self._among.get(key)
        if sql is None:
            placeholders = pw.SQL(f"({', '.join([database.param] * len(values))})")
            sql, params = model.select(column, model.id).where(column.in_(placeholders)).sql()
            if params:  # the IN list must be the query's only parameters
                raise RuntimeError(f"unexpected parameters {params} in {sql}")
            self._among[key] = sql
        cursor = database.execute_sql(sql, list(map(column.db_value, values)))
        convert = column.python_value
        return [(None if value is None else convert(value), record_id) for value, record_id in cursor.fetchall()]

    def _validate(self, ce: CompiledEntity, payload: dict, actor: Actor, channel: str, partial: bool) -> None:
        errors = self._errors(ce, [payload], actor, channel, partial)[0]
        if errors:
            raise ValidationError(errors)

    def _errors(self, ce: CompiledEntity, payloads: list[dict], actor: Actor, channel: str, partial: bool):
        """Per payload its messages per field: the schema, stage and read-only fields, and for the
        payloads with none of those, their links and users (_check_references)."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        human = channel in HUMAN_CHANNELS
        definition = ce.definition
        read_only = self.permissions.read_only_fields(actor, definition.name) if human else ()
        # The fields a payload may not set here: asked once, not per field of every payload.
        locked = {name for name, field in definition.fields.items() if field.read_only} | set(read_only)
        guarded = set(ce.workflows) | locked if human else set(ce.workflows)
        results = []
        for payload in payloads:
            errors = ce.validator.errors(payload, partial=partial)
            for name in payload if not guarded.isdisjoint(payload) else ():  # most set no guarded field
                if name not in guarded:
                    continue
                if name in ce.workflows and (partial or payload[name] != ce.workflows[name].initial):
                    errors.setdefault(name, []).append(
                        f"changes only by moving the record through {ce.workflows[name].label or 'its workflow'}"
                    )
                elif human and name in locked:
                    errors.setdefault(name, []).append("is read-only")
            results.append(errors)
        clean = [(payload, errors) for payload, errors in zip(payloads, results, strict=True) if not errors]
        self._check_references(ce, clean, actor if human else None)
        return results

    def _check_references(self, ce: CompiledEntity, checked: list[tuple[dict, dict]], person: Actor | None) -> None:
        """Linked records and users must exist; a person may only link records they may read.

        One query per link field (and one for users) for all ``(payload, errors)`` pairs; the
        messages go into each pair's errors. A record hidden from ``person`` is reported as
        missing, so ids cannot be probed.
        """
        for name, field in ce.definition.fields.items():
            if field.type not in ("link", "user"):
                continue
            wanted = {payload[name] for payload, _ in checked if payload.get(name) is not None}
            if not wanted:
                continue
            if field.type == "user":
                User = self.directory.tables.User
                visible, column, label = User.select(User.id), User.id, "user"
            else:
                target = self.compiled.entities[field.entity]
                column, label = target.model.id, target.definition.label
                if person is None:
                    visible = target.model.select(column)
                elif self.permissions.can(person, field.entity, "read"):
                    visible = self.select(field.entity, person).select(column)
                else:
                    visible = None
            found = set()
            for group in _groups(sorted(wanted) if visible is not None else []):
                found.update(row[0] for row in visible.where(_among(column, group)).tuples())
            for payload, errors in checked:
                value = payload.get(name)
                if value is not None and value not in found:
                    errors.setdefault(name, []).append(f"there is no {label} #{value}")

    def _setters_of(self, ce: CompiledEntity) -> dict:
        """Field name -> (its attribute, the field if its JSON value needs from_json), once per entity."""
        setters = self._setters.get(ce.name)
        if setters is None:
            setters = self._setters[ce.name] = {
                name: (v.storage_name(field), field if field.type in v.CONVERTED_TYPES else None)
                for name, field in ce.definition.fields.items()
            }
        return setters

    def _assign(self, ce: CompiledEntity, record, payload: dict) -> None:
        setters = self._setters_of(ce)
        for name, value in payload.items():
            attribute, field = setters.get(name) or (name, None)  # not a field: a money field's currency
            setattr(record, attribute, value if field is None else v.from_json(field, value))

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
        self._planned(ce, record, operation, audit_changes, changed, audit_id, actor, channel, cause, form, rules)

    def _planned(
        self, ce, record, operation, audit_changes, changed, audit_id, actor, channel, cause, form, rules, webhooks=True
    ):
        """Plan what an audited change triggers (inside its transaction); ``rules=False`` plans no rule,
        ``webhooks=False`` (a batch whose entity has no subscription to it) no delivery."""
        if webhooks and self.webhooks is not None:  # integrations hear of every change, rules or not
            self.webhooks.plan(ce, record, operation, audit_changes, audit_id, actor, channel)
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


def _among(column, values: list):
    """``column IN (values)``, its list written as one SQL node (peewee builds a node per value:
    ~15 ms for 500, bench/import.py); the values go through the column's ``db_value``."""
    param = column.model._meta.database.param
    return column.in_(pw.SQL(f"({', '.join([param] * len(values))})", [column.db_value(x) for x in values]))


def _groups(values: list, size: int = 500):
    """``values`` in slices short enough for one ``IN (...)`` on every database."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
