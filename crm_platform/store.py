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


def add_missing_columns(database: pw.Database, models: list[type[pw.Model]]) -> list[str]:
    """Add the columns that ``models`` have and their existing tables lack; return "table.column" names.

    ``create_tables(safe=True)`` makes missing tables but never touches an existing
    one, so a database made by an earlier version (or before a field was added to a
    schema) would fail on the first query naming the new column. Only columns that
    can be added to rows already there are added: nullable ones or ones with a
    default; anything else raises with the fix, before any column was added.
    """
    from playhouse.migrate import SchemaMigrator, migrate

    missing = []
    for model in models:
        table = model._meta.table_name
        if not database.table_exists(table):
            continue
        present = {column.name for column in database.get_columns(table)}
        for field in model._meta.sorted_fields:
            if field.column_name not in present:
                missing.append((model, field))
    blocked = [f"{m._meta.table_name}.{f.column_name}" for m, f in missing if not f.null and f.default is None]
    if blocked:
        raise RuntimeError(
            f"cannot add required columns to existing tables: {', '.join(blocked)}; "
            "give the field a default or make it optional, or migrate the data by hand"
        )
    if missing:
        migrator = SchemaMigrator.from_database(database)
        with database.atomic():
            migrate(*(migrator.add_column(m._meta.table_name, f.column_name, f) for m, f in missing))
    return [f"{m._meta.table_name}.{f.column_name}" for m, f in missing]
