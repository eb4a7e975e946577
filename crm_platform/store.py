"""Opening a company's database from its URL.

SQLite is the embedded default (WAL, foreign keys on); any other URL that
peewee's ``db_url`` understands, such as ``postgresql://``, scales out.
"""

from __future__ import annotations

from pathlib import Path

import peewee as pw
from playhouse.db_url import connect

SQLITE_PRAGMAS = {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000, "synchronous": "normal"}


def open_database(url: str) -> pw.Database:
    """A peewee database for ``url`` (``sqlite:///path`` or ``postgresql://...``)."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # BEGIN IMMEDIATE: a transaction takes the write lock when it starts, so one
        # that reads and then writes never fails to upgrade its lock under concurrency.
        return pw.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE")
    return connect(url)


def read_snapshot(database: pw.Database):
    """A transaction for reads only: every query in it sees the same state.

    On SQLite it starts deferred, so a page that only reads never takes the
    write lock (plain transactions here begin IMMEDIATE, see above).
    """
    if isinstance(database, pw.SqliteDatabase):
        return database.atomic(lock_type="DEFERRED")
    return database.atomic()
