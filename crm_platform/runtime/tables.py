"""The platform's own tables, next to the company's entity tables.

Every name starts with ``crm_`` so that no entity name is reserved. Like the
entity models, these are made by a factory on a fresh base class and bound
to one company's database: nothing here is module-level state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import peewee as pw


class JSONField(pw.TextField):
    """Any JSON value, stored as text on every database."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, default=str, sort_keys=True)

    def python_value(self, value):
        return None if value is None else json.loads(value)


class PreparedInsert:
    """An INSERT of one model whose SQL peewee builds once, then runs with new values.

    The audit and outbox rows are written on every change; building their SQL
    anew each time was a third of the write path (bench/write_path.py). Values
    still go through each field's ``db_value`` and are passed as parameters.
    """

    def __init__(self, model: type[pw.Model], columns: tuple[str, ...]):
        # In the model's order, which is the order peewee writes the columns in.
        self.fields = [field for field in model._meta.sorted_fields if field.name in columns]
        self.sql, _ = model.insert({field: None for field in self.fields}).sql()
        written = ", ".join(f'"{field.column_name}"' for field in self.fields)
        if f"({written})" not in self.sql:
            raise RuntimeError(f"unexpected column order in {self.sql}")
        self.returning = " RETURNING " in self.sql.upper()
        self.database = model._meta.database

    def __call__(self, **values) -> int:
        """Insert one row; returns its id."""
        params = [field.db_value(values.get(field.name)) for field in self.fields]
        cursor = self.database.execute_sql(self.sql, params)
        return cursor.fetchone()[0] if self.returning else cursor.lastrowid


@dataclass
class SystemTables:
    """The models of the platform's tables for one database."""

    database: pw.Database
    User: type[pw.Model]
    TeamMember: type[pw.Model]
    UserRole: type[pw.Model]
    RoundRobin: type[pw.Model]
    DefinitionVersion: type[pw.Model]
    Audit: type[pw.Model]
    Outbox: type[pw.Model]
    Timeline: type[pw.Model]
    Mail: type[pw.Model]
    Notification: type[pw.Model]
    SavedView: type[pw.Model]
    ApiToken: type[pw.Model]
    CalendarFeed: type[pw.Model]
    ImportJob: type[pw.Model]
    ImportProblem: type[pw.Model]
    InboundMail: type[pw.Model]

    @property
    def models(self) -> list[type[pw.Model]]:
        return [
            self.User, self.TeamMember, self.UserRole, self.RoundRobin, self.DefinitionVersion,
            self.Audit, self.Outbox, self.Timeline, self.Mail, self.Notification, self.SavedView, self.ApiToken,
            self.CalendarFeed, self.ImportJob, self.ImportProblem, self.InboundMail,
        ]  # fmt: skip

    def create_tables(self) -> None:
        """Create the tables that do not exist yet."""
        self.database.create_tables(self.models, safe=True)


def system_tables(database: pw.Database) -> SystemTables:
    """Make the platform's models, bound to ``database``."""

    class Base(pw.Model):
        class Meta:
            legacy_table_names = False

    Base._meta.database = database

    class User(Base):
        email = pw.CharField(max_length=254, unique=True)
        name = pw.CharField(max_length=120)
        password_hash = pw.CharField(max_length=255)
        active = pw.BooleanField(default=True)
        away = pw.BooleanField(default=False)
        superuser = pw.BooleanField(default=False)  # every permission, whatever the pack's roles say
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "crm_user"

    class TeamMember(Base):
        team = pw.CharField(max_length=64, index=True)
        user = pw.ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
        lead = pw.BooleanField(default=False)

        class Meta:
            table_name = "crm_team_member"
            indexes = ((("team", "user"), True),)

    class UserRole(Base):
        role = pw.CharField(max_length=64, index=True)
        user = pw.ForeignKeyField(User, backref="role_links", on_delete="CASCADE")

        class Meta:
            table_name = "crm_user_role"
            indexes = ((("role", "user"), True),)

    class RoundRobin(Base):
        """Whose turn it is in a team: the last user given a record."""

        team = pw.CharField(max_length=64, primary_key=True)
        last_user_id = pw.IntegerField(null=True)
        turns = pw.IntegerField(default=0)

        class Meta:
            table_name = "crm_round_robin"

    class DefinitionVersion(Base):
        """One row per distinct content of the pack: the number shown as 'v3'."""

        digest = pw.CharField(max_length=64, unique=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "crm_definition_version"

    class Audit(Base):
        """Who changed what, when, through which channel, and for automated changes why."""

        entity = pw.CharField(max_length=64)
        record_id = pw.IntegerField()
        operation = pw.CharField(max_length=16)  # create, update, transition, delete
        version = pw.IntegerField()  # the record's version after the change
        at = pw.DateTimeField(index=True)
        user_id = pw.IntegerField(null=True)
        channel = pw.CharField(max_length=16)  # form, api, import, rule, worker, system
        changes = JSONField()  # field -> [old, new]
        rule = pw.CharField(max_length=200, null=True)
        definition_version = pw.IntegerField(null=True)
        reason = JSONField(null=True)  # field -> value that made the rule's condition true
        depth = pw.IntegerField(default=0)  # how many rule-triggered changes led here

        class Meta:
            table_name = "crm_audit"
            indexes = ((("entity", "record_id", "version"), False),)

    class Outbox(Base):
        """An action a change triggered: planned in the change's transaction, run by a worker."""

        key = pw.CharField(max_length=255, unique=True)  # idempotency key
        kind = pw.CharField(max_length=32)
        entity = pw.CharField(max_length=64)
        record_id = pw.IntegerField()
        rule = pw.CharField(max_length=200)
        path = pw.CharField(max_length=64)  # the action's position in the rule, e.g. "1" or "2.1"
        definition_version = pw.IntegerField()
        payload = JSONField()  # reason, record snapshot, extra inputs
        depth = pw.IntegerField(default=1)
        after = pw.ForeignKeyField("self", null=True, backref="next", on_delete="SET NULL")
        status = pw.CharField(max_length=16, index=True)  # waiting pending queued running retrying done failed
        attempts = pw.IntegerField(default=0)
        due_at = pw.DateTimeField(null=True, index=True)  # when it may run (retries, follow-ups)
        lease_until = pw.DateTimeField(null=True)  # a running action's claim expires then
        enqueued_at = pw.DateTimeField(null=True)
        result = pw.TextField(null=True)
        error = pw.TextField(null=True)
        created_at = pw.DateTimeField()
        finished_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "crm_outbox"
            indexes = ((("entity", "record_id"), False),)

    class Timeline(Base):
        """What happened to a record besides field changes: actions, emails, errors."""

        entity = pw.CharField(max_length=64)
        record_id = pw.IntegerField()
        at = pw.DateTimeField()
        kind = pw.CharField(max_length=16)  # action, email, notification, error, skipped
        summary = pw.TextField()
        detail = JSONField(null=True)
        rule = pw.CharField(max_length=200, null=True)
        outbox_id = pw.IntegerField(null=True)

        class Meta:
            table_name = "crm_timeline"
            indexes = ((("entity", "record_id", "at"), False),)

    class Mail(Base):
        """Every email the platform sent, or kept when no SMTP server is configured."""

        key = pw.CharField(max_length=255, unique=True)
        message_id = pw.CharField(max_length=255)
        sender = pw.CharField(max_length=254)
        recipient = pw.CharField(max_length=254)
        subject = pw.CharField(max_length=255)
        body = pw.TextField()
        entity = pw.CharField(max_length=64, null=True)
        record_id = pw.IntegerField(null=True)
        status = pw.CharField(max_length=16)  # kept, handed_over, sent, rejected
        smtp_reply = pw.TextField(null=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "crm_mail"

    class Notification(Base):
        key = pw.CharField(max_length=255, unique=True)
        user = pw.ForeignKeyField(User, backref="notifications", on_delete="CASCADE")
        message = pw.TextField()
        entity = pw.CharField(max_length=64, null=True)
        record_id = pw.IntegerField(null=True)
        created_at = pw.DateTimeField()
        read_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "crm_notification"
            indexes = ((("user", "read_at"), False),)

    class SavedView(Base):
        """A list view a user saved: its search, filters and sort as a query string."""

        user = pw.ForeignKeyField(User, backref="saved_views", on_delete="CASCADE")
        entity = pw.CharField(max_length=64)
        name = pw.CharField(max_length=80)
        query = pw.TextField()
        shared = pw.BooleanField(default=False)  # visible to every user who may read the entity
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "crm_saved_view"
            indexes = ((("user", "entity", "name"), True),)

    class ApiToken(Base):
        """A user's token for the REST API; only its SHA-256 digest is kept."""

        user = pw.ForeignKeyField(User, backref="api_tokens", on_delete="CASCADE")
        name = pw.CharField(max_length=80)
        digest = pw.CharField(max_length=64, unique=True)
        prefix = pw.CharField(max_length=12)  # the token's first characters, to recognise it in lists
        created_at = pw.DateTimeField()
        last_used_at = pw.DateTimeField(null=True)
        revoked_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "crm_api_token"

    class CalendarFeed(Base):
        """A user's secret iCalendar feed URL; only its SHA-256 digest is kept."""

        user = pw.ForeignKeyField(User, backref="calendar_feeds", on_delete="CASCADE", unique=True)
        digest = pw.CharField(max_length=64, unique=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "crm_calendar_feed"

    class ImportJob(Base):
        """One file being imported into one entity: its settings and how far it got (to resume)."""

        user = pw.ForeignKeyField(User, backref="imports", on_delete="CASCADE", null=True)
        entity = pw.CharField(max_length=64)
        filename = pw.CharField(max_length=255)
        path = pw.TextField()  # where the uploaded file is kept until the import is done
        format = pw.CharField(max_length=16)  # csv, xlsx, vcard, google, outlook
        mapping = JSONField()  # column -> field
        options = JSONField()  # match keys, on duplicate (skip/update/create), run rules
        status = pw.CharField(max_length=16, index=True)  # previewed, queued, running, done, failed
        total_rows = pw.IntegerField(default=0)
        next_row = pw.IntegerField(default=0)  # rows before this one are settled: resume here
        created = pw.IntegerField(default=0)
        updated = pw.IntegerField(default=0)
        skipped = pw.IntegerField(default=0)
        failed = pw.IntegerField(default=0)
        error = pw.TextField(null=True)
        created_at = pw.DateTimeField()
        finished_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "crm_import_job"

    class ImportProblem(Base):
        """A row an import could not take, with the reason per field (the error report)."""

        job = pw.ForeignKeyField(ImportJob, backref="problems", on_delete="CASCADE")
        row_number = pw.IntegerField()  # as a spreadsheet numbers it: the header is row 1
        data = JSONField()
        errors = JSONField()  # field -> messages

        class Meta:
            table_name = "crm_import_problem"
            indexes = ((("job", "row_number"), True),)

    class InboundMail(Base):
        """An email received through the inbound-email webhook, and the record it was matched to."""

        message_id = pw.CharField(max_length=255, unique=True)  # a redelivered webhook is stored once
        in_reply_to = pw.CharField(max_length=255, null=True)
        references = pw.TextField(null=True)
        sender = pw.CharField(max_length=254, index=True)
        recipients = pw.TextField()
        subject = pw.CharField(max_length=255)
        text = pw.TextField(null=True)
        html = pw.TextField(null=True)
        headers = JSONField(null=True)
        entity = pw.CharField(max_length=64, null=True)  # null: matched to no record
        record_id = pw.IntegerField(null=True)
        received_at = pw.DateTimeField()

        class Meta:
            table_name = "crm_inbound_mail"
            indexes = ((("entity", "record_id", "received_at"), False),)

    return SystemTables(
        database, User, TeamMember, UserRole, RoundRobin, DefinitionVersion, Audit, Outbox, Timeline, Mail,
        Notification, SavedView, ApiToken, CalendarFeed, ImportJob, ImportProblem, InboundMail,
    )  # fmt: skip
