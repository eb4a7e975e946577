"""The engine as a Flask extension: ``app.extensions["crm"]``.

It is the composition root of one company: its pack, database, queue,
mailer and clock, and the runtime parts made from them (the write path, the
outbox, the action runner). Each part is built on first use (not at import,
not in ``create_app``), so commands such as ``check`` work even while the
project's own pack is broken, and a worker builds only what it runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import peewee as pw
from flask import Flask

from .actions import EXECUTORS
from .actions.email import Templates
from .actions.mailer import make_mailer
from .actions.run import ActionRunner, PermanentFailure
from .campaigns.runs import Campaigns, CampaignSettings
from .compiler import CompiledApp, compile_pack
from .definitions import load_pack
from .runtime.clock import EvalContext, SystemClock
from .runtime.due_work import TIMER_KINDS
from .runtime.history import History
from .runtime.outbox import Outbox, OutboxSettings
from .runtime.permissions import Permissions
from .runtime.records import Records, WriteSettings
from .runtime.subscriptions import Subscriptions
from .runtime.tables import SystemTables, system_tables
from .runtime.timers import Timers, TimerSettings
from .runtime.users import Directory
from .store import add_missing_columns, open_database
from .worker import Queue, make_huey


def lazy(build):
    """A part built on first use, once, even when threads ask for it together."""
    name = build.__name__

    def get(self):
        try:
            return self.__dict__[name]
        except KeyError:
            with self._lock:
                if name not in self.__dict__:
                    self.__dict__[name] = build(self)
                return self.__dict__[name]

    return property(get, doc=build.__doc__)


@dataclass
class Company:
    """One company served by this instance: its definitions and its data."""

    slug: str
    pack_dir: Path
    database_url: str


class CRM:
    """One company's running platform."""

    def __init__(self, app: Flask | None = None):
        self.company: Company | None = None
        self.added_columns: list[str] = []  # what the last init_db added to existing tables
        self.config: dict = {}
        self._lock = threading.RLock()  # web threads and embedded workers build parts lazily
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register with ``app`` and read the company from its config."""
        self.config = app.config
        self.company = Company(
            slug=app.config["COMPANY"],
            pack_dir=Path(app.config["PACK_DIR"]),
            database_url=app.config["DATABASE_URL"],
        )
        app.extensions["crm"] = self

    # --- definitions and storage --------------------------------------------

    @lazy
    def compiled(self) -> CompiledApp:
        """The company's compiled definitions (raises ``DefinitionError`` if broken)."""
        compiled = compile_pack(load_pack(self.company.pack_dir))
        compiled.bind(self.database)
        return compiled

    @lazy
    def database(self) -> pw.Database:
        return open_database(self.company.database_url)

    @lazy
    def tables(self) -> SystemTables:
        return system_tables(self.database)

    @property
    def settings(self):
        """The company settings from ``pack.yaml`` (name, currency, locale, time zone)."""
        return self.compiled.pack.settings

    @lazy
    def definition_version(self) -> int:
        """The number of this content of the definitions ("v3"), the same for every process."""
        Version = self.tables.DefinitionVersion
        digest = self.compiled.version
        Version.insert(digest=digest, created_at=self.clock.utcnow()).on_conflict_ignore().execute()
        return Version.get(Version.digest == digest).id

    def init_db(self) -> list[str]:
        """Create the platform's and the entities' tables, and the columns that existing
        tables lack (a database made by an earlier version); return the tables now present."""
        with self.database.connection_context():
            # Columns first: creating the tables also creates any missing index
            # (IF NOT EXISTS), and an index on a column not there yet would fail.
            self.added_columns = add_missing_columns(self.database, self.tables.models + self.compiled.models)
            self.tables.create_tables()
            self.compiled.create_tables()
            return self.database.get_tables()

    # --- the runtime ------------------------------------------------------------

    @lazy
    def clock(self):
        return self.config.get("CLOCK") or SystemClock()

    @lazy
    def ctx(self) -> EvalContext:
        return EvalContext(self.clock, self.settings.timezone)

    @lazy
    def directory(self) -> Directory:
        pack = self.compiled.pack
        return Directory(self.tables, self.clock, pack.teams, pack.roles)

    @lazy
    def permissions(self) -> Permissions:
        return Permissions(self.compiled.pack)

    @lazy
    def history(self) -> History:
        return History(self.tables)

    @lazy
    def outbox(self) -> Outbox:
        c = self.config
        settings = OutboxSettings(
            lease_seconds=float(c.get("ACTION_LEASE_SECONDS", 300)),
            requeue_after_seconds=float(c.get("OUTBOX_REQUEUE_SECONDS", 600)),
            max_attempts=int(c.get("ACTION_MAX_ATTEMPTS", 5)),
            retry_base_seconds=float(c.get("ACTION_RETRY_BASE_SECONDS", 10)),
        )
        return Outbox(
            self.tables, self.clock, lambda *args: self.queue.enqueue(*args), settings,
            follow_ups=lambda **step: self.timers.follow_up(**step),
        )  # fmt: skip

    @lazy
    def timers(self) -> Timers:
        """Follow-up steps and time-triggered rules, stored with their due times (``crm_timer``)."""
        settings = TimerSettings(retry_base_seconds=float(self.config.get("TIMER_RETRY_SECONDS", 60)))
        return Timers(self, TIMER_KINDS, settings)

    @lazy
    def records(self) -> Records:
        """The one write path."""
        return Records(
            self.compiled,
            self.directory,
            self.permissions,
            self.history,
            self.outbox,
            self.ctx,
            self.definition_version,
            WriteSettings(chain_limit=int(self.config.get("RULE_CHAIN_LIMIT", 10))),
            webhooks=self.webhooks,
        )

    @lazy
    def webhooks(self) -> Subscriptions:
        """The webhook subscriptions (managed in the console) and the planning of their deliveries."""
        return Subscriptions(self, cache_seconds=float(self.config.get("WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS", 10)))

    @lazy
    def queue(self) -> Queue:
        return Queue(make_huey(self.config["QUEUE_URL"], f"crm-{self.company.slug}"), self)

    @lazy
    def runner(self) -> ActionRunner:
        return ActionRunner(self, EXECUTORS)

    @lazy
    def mailer(self):
        return make_mailer(self.config.get("SMTP_URL"))

    @lazy
    def templates(self) -> Templates:
        return Templates(self.company.pack_dir, self.settings.name)

    @lazy
    def campaigns(self) -> Campaigns:
        """Campaign runs (``campaigns/runs.py``)."""
        c = self.config
        settings = CampaignSettings(
            chunk_size=int(c.get("CAMPAIGN_CHUNK_SIZE", 100)),
            lease_seconds=float(c.get("CAMPAIGN_LEASE_SECONDS", 60)),
            queue_wait_seconds=float(c.get("OUTBOX_REQUEUE_SECONDS", 600)),
            base_url=c.get("BASE_URL") or f"http://{c.get('CRM_HOST', '127.0.0.1')}:{c.get('CRM_PORT', 5000)}",
            secret=c["SECRET_KEY"],
        )
        return Campaigns(self, settings)

    @property
    def mail_from(self) -> str:
        return self.config.get("MAIL_FROM") or f"crm@{self.company.slug}.example.com"

    @property
    def webhook_secret(self) -> str:
        secret = self.config.get("WEBHOOK_SECRET")
        if not secret:
            raise PermanentFailure("set WEBHOOK_SECRET to sign webhooks")
        return secret

    @property
    def webhook_timeout(self) -> float:
        return float(self.config.get("WEBHOOK_TIMEOUT_SECONDS", 10))
