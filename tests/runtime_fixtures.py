"""Fixtures and helpers for the runtime tests (records, permissions, outbox).

Each test gets its own engine on a fresh SQLite file, with the project's
default pack, the fixed clock of ``conftest.clock`` and Huey in immediate
mode (``memory://``): actions run inline right after the change commits,
except those due later (a follow-up), which Huey keeps in its schedule.

A test module makes the fixtures it uses its own by assignment (an import
would read as unused to ruff): ``crm_app, crm = runtime_fixtures.crm_app,
runtime_fixtures.crm``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from crm_platform.application import create_app
from crm_platform.runtime.users import Actor

from .conftest import PROJECT

SYSTEM = Actor.system()


def build_app(tmp_path, clock, **config):
    """A Flask app serving the default pack on its own database, with an inline queue."""
    settings = {
        "TESTING": True,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'crm.sqlite3'}",
        "QUEUE_URL": "memory://",
        "PACK_DIR": str(PROJECT),
        "SECRET_KEY": "t",
        "CLOCK": clock,
    }
    settings.update(config)
    return create_app(settings)


@pytest.fixture
def make_crm(tmp_path, clock) -> Callable:
    """``make_crm(**config)``: an initialised engine; extra config (e.g. ``SMTP_URL``) wins."""
    engines = []

    def build(**config):
        app = build_app(tmp_path, clock, **config)
        crm = app.extensions["crm"]
        crm.init_db()
        engines.append(crm)
        return crm

    yield build
    for crm in engines:
        crm.database.close()


@pytest.fixture
def crm_app(tmp_path, clock):
    """An app whose engine has its tables; for the command-line tests."""
    app = build_app(tmp_path, clock)
    app.extensions["crm"].init_db()
    yield app
    app.extensions["crm"].database.close()


@pytest.fixture
def crm(crm_app):
    """The engine (``app.extensions["crm"]``) of ``crm_app``."""
    return crm_app.extensions["crm"]


class HeldQueue:
    """Stands in for the queue: remembers what was handed over instead of running it.

    ``failing=True`` makes every hand-over fail like an unreachable queue.
    """

    def __init__(self, outbox):
        self.outbox = outbox
        self.original = outbox.enqueue
        self.calls: list[tuple[str, int, object]] = []
        self.failing = False
        outbox.enqueue = self

    def __call__(self, kind, outbox_id, eta):
        if self.failing:
            raise ConnectionRefusedError("queue storage unreachable")
        self.calls.append((kind, outbox_id, eta))

    def release(self) -> None:
        """Hand over to the real (inline) queue again."""
        self.outbox.enqueue = self.original


@pytest.fixture
def held(crm):
    """The outbox of ``crm`` with its queue held: rows are planned and handed over, not run."""
    queue = HeldQueue(crm.outbox)
    yield queue
    queue.release()


def user(crm, email: str, *, roles=(), teams=(), **flags) -> Actor:
    """Create a user and return the actor acting as them."""
    name = email.split("@")[0].capitalize()
    user_id = crm.directory.create_user(email, name, "secret", roles=roles, teams=teams, **flags)
    return crm.directory.actor(user_id)


def model(crm, entity: str):
    return crm.compiled.entities[entity].model


def stored(crm, entity: str, record_id: int):
    """The record as it is in the database now (None if there is none)."""
    m = model(crm, entity)
    return m.get_or_none(m.id == record_id)


def audit_rows(crm, entity: str | None = None, record_id: int | None = None) -> list:
    Audit = crm.tables.Audit
    query = Audit.select().order_by(Audit.id)
    if entity is not None:
        query = query.where(Audit.entity == entity)
    if record_id is not None:
        query = query.where(Audit.record_id == record_id)
    return list(query)


def outbox_rows(crm) -> list:
    Outbox = crm.tables.Outbox
    return list(Outbox.select().order_by(Outbox.id))


def outbox_row(crm, kind: str, record_id: int | None = None):
    """The one outbox row of ``kind`` (of lead ``record_id`` if given)."""
    rows = [r for r in outbox_rows(crm) if r.kind == kind and (record_id is None or r.record_id == record_id)]
    assert len(rows) == 1, [(r.id, r.kind, r.record_id) for r in outbox_rows(crm)]
    return rows[0]


def closed_port() -> int:
    """A local TCP port nobody listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
