"""How fast is a CSV import through the one write path, next to raw ``executemany``?

Run from the project root:  .venv/bin/python bench/import.py [ROWS]

Writes a CSV of ROWS (default 100,000) leads (``random.Random(42)``; first and
last name, a unique email, company, country, source, score, employees) and
imports it with ``crm_platform.imports`` into a fresh SQLite company on the
default pack (``start`` and ``run_job`` are timed, so reading and mapping the
file count; ``run_job`` gets ``read=job.read``, as the CLI does, so the file is
read and parsed once): every row is read, mapped, validated (JSON Schema: the
compiled fast path, jsonschema for a row it is unsure of), checked for a
duplicate email (``match=["email"]``, skip; trimmed, any case), created through
the one write path and audited (``crm.records.create_many`` per chunk: one
``executemany`` of the records, whose unique index checks the emails as in
``create``; one ``executemany`` of the audit rows, their ids known without a
read-back; webhooks asked once per chunk, none subscribed), in chunks of 500
rows per transaction with the job's resume point.
Rules are OFF (``rules=False``, the CLI's ``--no-rules``): with them, each web
lead would also plan outbox rows and queue tasks, which ``bench/write_path.py``
measures.

The baseline reads the rows the import stored back (``id`` left out) and
inserts them with one ``sqlite3`` ``executemany`` into the same lead table
(created by a second compile of the same pack, so the columns and indexes are
the same) in a fresh database opened the same way (WAL, synchronous=normal),
one transaction. Writing the CSV file is not timed; reading it is part of the
import only (the baseline starts from the rows in memory).

Both run ROUNDS (3) times, interleaved, each on fresh database files; the best
round of each is kept (README: "How to read the numbers"). The last line
printed is one JSON object with the ratio of the import's rows per second to
the raw ``executemany``'s. Compare ratios, not absolute times.
"""

from __future__ import annotations

import csv
import gc
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crm_platform.application import create_app  # noqa: E402
from crm_platform.compiler import compile_pack  # noqa: E402
from crm_platform.definitions import load_pack  # noqa: E402
from crm_platform.imports import Options, run_job, start  # noqa: E402
from crm_platform.runtime.users import Actor  # noqa: E402
from crm_platform.store import open_database  # noqa: E402

ROWS = 100_000
ROUNDS = 3
TARGET = ">= 0.25"
HEADER = ["First name", "Last name", "Email", "Company", "Country", "Lead source", "Lead score", "Employees"]


def write_leads(path: Path, count: int) -> None:
    """A deterministic (seed 42) CSV of ``count`` leads, every email unique."""
    rng = random.Random(42)
    first = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ida", "Jonas"]
    last = ["Meier", "Schmidt", "Novak", "Rossi", "Dubois", "Smith", "Keller", "Brown", "Weber", "Lang"]
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for i in range(count):
            writer.writerow(
                [
                    rng.choice(first),
                    rng.choice(last),
                    f"lead{i}@example{i % 97}.com",
                    f"Company {rng.randint(1, 500)}",
                    rng.choice(["DE", "AT", "CH", "FR", "GB", "US", "other"]),
                    rng.choice(["web", "referral", "event", "cold_call", "partner"]),
                    rng.randint(0, 100),
                    rng.randint(1, 5000),
                ]
            )


def timed(work):
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        result = work()
        return time.perf_counter() - started, result
    finally:
        gc.enable()


def import_once(work: Path, source: Path, count: int):
    """Import ``source`` into a fresh company in ``work``; (seconds, the lead rows stored)."""
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "bench",
            "PACK_DIR": str(ROOT),
            "DATABASE_URL": f"sqlite:///{work / 'crm.sqlite3'}",
            "QUEUE_URL": f"sqlite:///{work / 'queue.sqlite3'}",
        },
        instance_path=str(work),
    )
    crm = app.extensions["crm"]
    crm.init_db()
    options = Options(match=["email"], on_duplicate="skip", rules=False)

    def run_import():
        job = start(crm, "lead", source, actor=Actor.system(), options=options)
        return run_job(crm, job.id, read=job.read)  # as the CLI does: the file is read once

    seconds, job = timed(run_import)
    assert (job.status, job.created, job.failed) == ("done", count, 0), (job.status, job.created, job.failed)
    audits = crm.tables.Audit.select().where(crm.tables.Audit.channel == "import").count()
    assert audits == count, audits

    model = crm.compiled.entities["lead"].model
    rows = list(model.select().order_by(model.id).tuples())
    columns = [field.column_name for field in model._meta.sorted_fields]
    id_at = columns.index("id")
    rows = [row[:id_at] + row[id_at + 1 :] for row in rows]
    columns.pop(id_at)
    crm.database.close()
    return seconds, columns, rows


def raw_once(path: Path, columns: list[str], raw_rows: list[tuple]) -> float:
    """One ``executemany`` of ``raw_rows`` into a fresh lead table at ``path``; seconds."""
    raw_compiled = compile_pack(load_pack(ROOT))
    raw_db = open_database(f"sqlite:///{path}")
    raw_compiled.bind(raw_db)
    raw_compiled.create_tables()
    raw_db.close()
    table = raw_compiled.entities["lead"].model._meta.table_name
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=wal")
    connection.execute("PRAGMA synchronous=normal")
    names = ", ".join(f'"{c}"' for c in columns)  # the column names come from the compiled model
    sql = f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})'

    def insert_raw():
        with connection:
            connection.executemany(sql, raw_rows)

    seconds, _ = timed(insert_raw)
    assert connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == len(raw_rows)
    connection.close()
    return seconds


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else ROWS
    base = Path(tempfile.mkdtemp(prefix="bench-import-"))
    source = base / "leads.csv"
    write_leads(source, count)

    import_times, raw_times, raw_rows, columns = [], [], None, None
    for round_number in range(ROUNDS):
        work = base / f"round{round_number}"
        work.mkdir()
        seconds, columns, rows = import_once(work, source, count)
        import_times.append(seconds)
        if raw_rows is None:
            raw_rows = [
                tuple(str(value) if not isinstance(value, int | float | str | None) else value for value in row)
                for row in rows
            ]
        raw_times.append(raw_once(work / "raw.sqlite3", columns, raw_rows))

    import_seconds, raw_seconds = min(import_times), min(raw_times)
    import_rate, raw_rate = count / import_seconds, count / raw_seconds
    print(f"rows                          {count:>10,}   (best of {ROUNDS} rounds)")
    print(f"import (validate, dedupe on email, audit, rules off)  {import_seconds:8.2f} s  {import_rate:10,.0f} rows/s")
    print(f"raw sqlite3 executemany                               {raw_seconds:8.2f} s  {raw_rate:10,.0f} rows/s")
    print(
        json.dumps({"metric": "import_vs_raw_executemany", "value": round(import_rate / raw_rate, 4), "target": TARGET})
    )


if __name__ == "__main__":
    main()
