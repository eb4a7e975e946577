"""The platform's own tables, next to the company's entity tables.

Every name starts with ``crm_`` so that no entity name is reserved. Like the
entity models, these are made by a factory on a fresh base class and bound
to one company's database: nothing here is module-level state.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import peewee as pw

# json.dumps with options builds a new encoder per call; this one is made once (it keeps no state).
_encode_json = json.JSONEncoder(default=str, sort_keys=True).encode


class JSONField(pw.TextField):
    """Any JSON value, stored as text on every database."""

    def db_value(self, value):
        return None if value is None else _encode_json(value)

    def python_value(self, value):
        return None if value is None else json.loads(value)


# Field classes (exactly these, not subclasses such as JSONField) whose db_value returns a
# value of this type unchanged.
_BOUND_AS_IS = {pw.CharField: str, pw.TextField: str, pw.IntegerField: int, pw.BigIntegerField: int}


class PreparedInsert:
    """An INSERT of one model whose SQL peewee builds once, then runs with new values.

    The audit and outbox rows are written on every change; building their SQL
    anew each time was a third of the write path (bench/write_path.py). Values
    still go through each field's ``db_value`` (``_params`` skips the calls that
    would return the value unchanged) and are passed as parameters.
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
        self._names = [field.name for field in self.fields]
        sqlite = isinstance(self.database, pw.SqliteDatabase)
        self._as_is = [(i, field.name, _converter(field, sqlite), _BOUND_AS_IS.get(type(field)))
                       for i, field in enumerate(self.fields)]  # fmt: skip
        # executemany with ids: SQLite gives the rows of one statement run under the write lock
        # consecutive rowids (the largest + 1) when the key is a plain AutoField (no AUTOINCREMENT).
        self._consecutive = sqlite and not self.returning and type(model._meta.primary_key) is pw.AutoField
        self._last = f'SELECT max("{model._meta.primary_key.column_name}") FROM "{model._meta.table_name}"'

    def _params(self, values: dict) -> list:
        params = list(map(values.get, self._names))
        # None is NULL for every field, and a str for a CharField is bound as it is: no call for those.
        for i, _, convert, kind in self._as_is:
            x = params[i]
            if x is not None and type(x) is not kind:
                params[i] = convert(x)
        return params

    def __call__(self, **values) -> int:
        """Insert one row; returns its id."""
        params = [field.db_value(values.get(field.name)) for field in self.fields]
        cursor = self.database.execute_sql(self.sql, params)
        return cursor.fetchone()[0] if self.returning else cursor.lastrowid

    def each(self, rows: list[dict]) -> list[int]:
        """Insert ``rows`` one statement each on one cursor (inside the caller's transaction); their ids.

        One statement per row, so each id is the database's own answer for its row.
        """
        sql, returning = self.sql, self.returning
        cursor = self.database.cursor()
        ids = []
        with pw.__exception_wrapper__:  # the driver's errors as peewee's (IntegrityError), as execute_sql does
            for values in rows:
                cursor.execute(sql, self._params(values))
                ids.append(cursor.fetchone()[0] if returning else cursor.lastrowid)
        return ids

    def many(self, rows: list[dict], common: dict | None = None) -> list[int]:
        """Insert ``rows`` with one ``executemany`` inside the caller's transaction; their ids.

        ``common`` holds the values every row has (converted once, not per row). On SQLite
        the ids are known without reading them back: the rows get the rowids after the largest
        one (read first, under the transaction's write lock), which is checked after the insert.
        Elsewhere, outside a transaction, or near the largest rowid, the rows go one statement
        each (``each``).
        """
        if not rows:
            return []
        database = self.database
        if not (self._consecutive and database.in_transaction()):
            return self.each([{**common, **values} for values in rows] if common else rows)
        cursor = database.cursor()
        with pw.__exception_wrapper__:  # the driver's errors as peewee's (IntegrityError), as execute_sql does
            largest = cursor.execute(self._last).fetchone()[0] or 0
            if largest + len(rows) >= _LARGEST_ROWID:  # SQLite would pick random free rowids
                return self.each([{**common, **values} for values in rows] if common else rows)
            cursor.executemany(self.sql, self._rows_params(rows, common))
            last = cursor.execute("SELECT last_insert_rowid()").fetchone()[0]
        if last != largest + len(rows):
            raise RuntimeError(f"{self.sql}: rowids {largest + 1}..{last} are not consecutive for {len(rows)} rows")
        return list(range(largest + 1, last + 1))

    def _rows_params(self, rows: list[dict], common: dict | None) -> list[list]:
        if not common:
            return [self._params(values) for values in rows]
        shared = self._params(common)
        own = [item for item in self._as_is if item[1] not in common]
        return [_row_params(shared, own, values) for values in rows]


_LARGEST_ROWID = 2**63 - 1


def _row_params(shared: list, own: list, values: dict) -> list:
    params = shared.copy()
    for i, name, convert, kind in own:
        x = values.get(name)
        params[i] = x if x is None or type(x) is kind else convert(x)
    return params


def _converter(field: pw.Field, sqlite: bool):
    """``field.db_value``; on SQLite a datetime becomes the text the sqlite3 module's adapter (and
    peewee's, on Python 3.12+) would bind, ``isoformat(" ")``, without that adapter's call per value."""
    if type(field) is JSONField:  # its db_value without the call around it (None never gets here)
        return _encode_json
    db_value = field.db_value
    if not (sqlite and type(field) is pw.DateTimeField):
        return db_value
    last = (None, None)  # the last datetime and its text: a batch's rows share their stamps

    def convert(x):
        nonlocal last
        if type(x) is not dt.datetime:
            return db_value(x)
        seen = last  # read once, replaced whole: threads see a matching pair
        if seen[0] is x:
            return seen[1]
        text = x.isoformat(" ")
        last = (x, text)
        return text

    return convert


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
    Timer: type[pw.Model]
    WebhookSubscription: type[pw.Model]
    WebhookDelivery: type[pw.Model]
    CampaignRun: type[pw.Model]
    CampaignSend: type[pw.Model]
    SlaEscalation: type[pw.Model]

    @property
    def models(self) -> list[type[pw.Model]]:
        return [
            self.User, self.TeamMember, self.UserRole, self.RoundRobin, self.DefinitionVersion,
            self.Audit, self.Outbox, self.Timeline, self.Mail, self.Notification, self.SavedView, self.ApiToken,
            self.CalendarFeed, self.ImportJob, self.ImportProblem, self.InboundMail, self.Timer,
            self.WebhookSubscription, self.WebhookDelivery,
            self.CampaignRun, self.CampaignSend, self.SlaEscalation,
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
        # Set when a worker claims the job and after each chunk: a running job whose
        # heartbeat is old lost its worker, and the sweep queues it again.
        heartbeat_at = pw.DateTimeField(null=True)

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
        matched_by = pw.CharField(max_length=16, null=True)  # thread, tag, address or created (runtime/inbound.py)
        automatic = pw.BooleanField(default=False)  # an auto-reply (out of office): fires nothing, stops nothing
        received_at = pw.DateTimeField()

        class Meta:
            table_name = "crm_inbound_mail"
            indexes = ((("entity", "record_id", "received_at"), False),)

    class WebhookSubscription(Base):
        """An outside system told of changes to one entity's records (see runtime/subscriptions.py)."""

        name = pw.CharField(max_length=120)
        entity = pw.CharField(max_length=64, index=True)
        events = JSONField()  # some of: created, updated, deleted, stage_changed
        url = pw.CharField(max_length=2000)
        secret = pw.CharField(max_length=128)  # the HMAC key: kept as is, the signature needs it
        active = pw.BooleanField(default=True)
        created_at = pw.DateTimeField()
        created_by = pw.IntegerField(null=True)  # user id

        class Meta:
            table_name = "crm_webhook_subscription"

    class WebhookDelivery(Base):
        """One attempt to deliver one event to one subscription: the delivery log."""

        subscription = pw.ForeignKeyField(WebhookSubscription, backref="deliveries", on_delete="CASCADE")
        outbox_id = pw.IntegerField(null=True, index=True)  # null for a test event
        event_id = pw.CharField(max_length=64)  # X-CRM-Delivery, the same on every attempt
        event = pw.CharField(max_length=32)
        entity = pw.CharField(max_length=64)
        record_id = pw.IntegerField(null=True)
        attempt = pw.IntegerField()
        status = pw.CharField(max_length=16, index=True)  # delivered, failed
        http_status = pw.IntegerField(null=True)
        response = pw.TextField(null=True)  # the start of the receiver's answer
        error = pw.TextField(null=True)
        duration_ms = pw.IntegerField()
        at = pw.DateTimeField()

        class Meta:
            table_name = "crm_webhook_delivery"
            indexes = ((("subscription", "at"), False),)

    class Timer(Base):
        """Something due at a time: a follow-up step, a time-triggered rule's next run, ...

        Stored, not only in the queue's schedule, so that it survives restarts,
        crashes and definition reloads (see ``runtime/timers.py``).
        """

        key = pw.CharField(max_length=255, unique=True)  # idempotency key of the scheduling
        kind = pw.CharField(max_length=32)  # follow_up, every, date, ...
        entity = pw.CharField(max_length=64, null=True)
        record_id = pw.IntegerField(null=True)  # null: a rule-wide timer
        rule = pw.CharField(max_length=200, null=True)
        step = pw.CharField(max_length=64, null=True)  # the action path in the rule, e.g. "2" or "2.2"
        due_at = pw.DateTimeField(index=True)
        status = pw.CharField(max_length=16, index=True)  # pending running fired cancelled skipped failed
        attempts = pw.IntegerField(default=0)  # failed firings so far (each rolled back)
        lease_until = pw.DateTimeField(null=True)  # a running rule-wide firing may be taken over after this
        payload = JSONField(null=True)
        created_at = pw.DateTimeField()
        fired_at = pw.DateTimeField(null=True)
        note = pw.TextField(null=True)  # what firing did, or why it was cancelled

        class Meta:
            table_name = "crm_timer"
            indexes = ((("status", "due_at"), False), (("entity", "record_id"), False))

    class CampaignRun(Base):
        """One run of a campaign's email step over a segment (see ``campaigns/runs.py``)."""

        campaign_id = pw.IntegerField(index=True)  # a record of the ``campaign`` entity
        segment = pw.CharField(max_length=120)  # "yaml:NAME" or "view:ID"
        segment_label = pw.CharField(max_length=200)
        entity = pw.CharField(max_length=64)  # contact or lead
        template = pw.CharField(max_length=120)
        step = pw.IntegerField(default=1)
        status = pw.CharField(max_length=16, index=True)  # scheduled queued running paused stopped done
        members = JSONField(null=True)  # the member ids, snapshot when the run starts
        cursor = pw.IntegerField(default=0)  # members before this index are settled
        total = pw.IntegerField(default=0)
        processed = pw.IntegerField(default=0)
        sent = pw.IntegerField(default=0)
        skipped_unsubscribed = pw.IntegerField(default=0)
        skipped_duplicate = pw.IntegerField(default=0)
        skipped_invalid = pw.IntegerField(default=0)
        failed = pw.IntegerField(default=0)
        lease_token = pw.CharField(max_length=32, null=True)  # the worker processing it now
        lease_until = pw.DateTimeField(null=True)  # ... until then; later, the sweep queues it again
        created_by = pw.IntegerField(null=True)
        created_at = pw.DateTimeField()
        scheduled_at = pw.DateTimeField(null=True, index=True)
        started_at = pw.DateTimeField(null=True)
        finished_at = pw.DateTimeField(null=True)
        error = pw.TextField(null=True)

        class Meta:
            table_name = "crm_campaign_run"

    class CampaignSend(Base):
        """The idempotency record of one campaign email: one per (campaign, step, member)."""

        campaign_id = pw.IntegerField()
        step = pw.IntegerField()
        entity = pw.CharField(max_length=64)
        member_id = pw.IntegerField()
        run_id = pw.IntegerField(index=True)  # the run that settled it last
        address = pw.CharField(max_length=254, null=True)  # lower-cased
        # sending, sent, failed, skipped_unsubscribed, skipped_duplicate, skipped_invalid
        status = pw.CharField(max_length=24)
        message_id = pw.CharField(max_length=255, null=True)
        error = pw.TextField(null=True)
        at = pw.DateTimeField()

        class Meta:
            table_name = "crm_campaign_send"
            indexes = (
                (("campaign_id", "step", "entity", "member_id"), True),
                (("campaign_id", "step", "address"), False),
            )

    class SlaEscalation(Base):
        """A step of an SLA escalation chain that has fired: one row per record, policy, target and step,
        written in the step's transaction, so each step fires once however many workers scan."""

        entity = pw.CharField(max_length=64)
        record_id = pw.IntegerField()
        policy = pw.CharField(max_length=64)
        target = pw.CharField(max_length=16)  # first_response, resolution
        step = pw.IntegerField()  # position in the chain, from 0
        percent = pw.IntegerField()
        due_at = pw.DateTimeField()  # the target's due time when the step fired
        fired_at = pw.DateTimeField()
        summary = pw.TextField()

        class Meta:
            table_name = "crm_sla_escalation"
            indexes = ((("entity", "record_id", "policy", "target", "step"), True),)

    return SystemTables(
        database, User, TeamMember, UserRole, RoundRobin, DefinitionVersion, Audit, Outbox, Timeline, Mail,
        Notification, SavedView, ApiToken, CalendarFeed, ImportJob, ImportProblem, InboundMail, Timer,
        WebhookSubscription, WebhookDelivery, CampaignRun, CampaignSend, SlaEscalation,
    )  # fmt: skip
