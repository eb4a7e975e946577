"""How fast is the one write path, next to a raw peewee insert of the same rows?

Run from the project root:  .venv/bin/python bench/write_path.py [--profile]

Creates 2,000 leads through ``crm.records.create("lead", ...)`` on the default
pack: a SQLite database file and a real ``SqliteHuey`` queue file, no consumer
running, the system actor on the "api" channel. The leads are a realistic mix
(``random.Random(42)``): web leads from DACH and from elsewhere (each fires
"Welcome new web leads" and one of the two routing rules: four outbox rows and
three queued tasks), referral and partner leads (the score boost: one row and
one task) and event or cold-call leads (no rule). The baseline inserts the
very rows the write path stored (read back from its table, ``id`` left out)
with one ``Model.insert(row).execute()`` each, autocommitted, into a fresh
database opened the same way (``crm_platform.store.open_database``: WAL,
synchronous=normal) whose tables are made from a second compile of the same
pack, so the table, its columns and its indexes are the same.

Every round starts from fresh files for both, and the rounds alternate
between them; each keeps its fastest round. The garbage collector is off
while timing. Informative rows: the write path on the leads that fire no rule
(validation, unique check, insert and audit, without outbox or queue) and on
those that do.

``--profile`` adds one more write-path pass over the whole mix on fresh files
under cProfile and prints its top 25 functions by cumulative time (and the
top 15 by own time), before the last line.

The last line printed is one JSON object with the ratio of the write path's
records per second to the raw inserts'. Compare ratios, not absolute times.
"""

from __future__ import annotations

import cProfile
import datetime as dt
import gc
import io
import json
import pstats
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crm_platform.application import create_app  # noqa: E402
from crm_platform.compiler import compile_pack  # noqa: E402
from crm_platform.definitions import load_pack  # noqa: E402
from crm_platform.runtime.users import Actor  # noqa: E402
from crm_platform.store import open_database  # noqa: E402

ROWS = 2_000
ROUNDS = 3
TARGET = ">= 0.33"
WEB_DACH, WEB_OTHER, REFERRAL, NO_RULE = "web, DACH", "web, elsewhere", "referral/partner", "event/cold call"


def make_leads(count: int) -> list[tuple[str, dict]]:
    """(group, payload) pairs; deterministic (seed 42), every email unique."""
    rng = random.Random(42)
    first = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ida", "Jonas"]
    last = ["Meier", "Schmidt", "Novak", "Rossi", "Dubois", "Smith", "Keller", "Brown", "Weber", "Lang"]
    groups = [WEB_DACH, WEB_OTHER, REFERRAL, NO_RULE]
    leads = []
    for i in range(count):
        group = rng.choices(groups, [40, 25, 20, 15])[0]
        if group == WEB_DACH:
            source, country = "web", rng.choice(["DE", "DE", "AT", "CH"])
        elif group == WEB_OTHER:
            source, country = "web", rng.choice(["US", "GB", "FR", "other"])
        elif group == REFERRAL:
            source, country = rng.choice(["referral", "partner"]), rng.choice(["DE", "US", "GB"])
        else:
            source, country = rng.choice(["event", "cold_call"]), rng.choice(["DE", "FR", "US"])
        payload = {
            "first_name": rng.choice(first),
            "last_name": rng.choice(last),
            "email": f"lead{i}@example{i % 97}.com",
            "company": f"Company {rng.randint(1, 500)}",
            "job_title": rng.choice(["CEO", "CTO", "Head of Sales", "IT Manager", None]),
            "phone": f"+49 30 {rng.randint(1000000, 9999999)}",
            "country": country,
            "source": source,
            "employees": rng.randint(1, 5000),
            "interests": rng.sample(["crm", "helpdesk", "marketing", "analytics"], rng.randint(0, 2)),
            "score": rng.randint(0, 60),
        }
        leads.append((group, {k: v for k, v in payload.items() if v is not None}))
    return leads


class WritePathDB:
    """A fresh company (database and queue files) with the default pack."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True)
        self.app = create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "bench",
                "PACK_DIR": str(ROOT),
                "DATABASE_URL": f"sqlite:///{directory / 'crm.sqlite3'}",
                "QUEUE_URL": f"sqlite:///{directory / 'queue.sqlite3'}",
            },
            instance_path=str(directory),
        )
        self.crm = self.app.extensions["crm"]
        self.crm.init_db()
        self.actor = Actor.system()
        # Build every lazy part (records, outbox, queue, definition version) and
        # open both connections before timing: one throw-away lead through the path.
        self.crm.records.create("lead", {"last_name": "Warm-up", "source": "web", "country": "DE"}, self.actor, "api")
        huey = self.crm.queue.huey
        self.outbox_before = sum(self.crm.outbox.counts().values())
        self.tasks_before = len(huey) + huey.scheduled_count()

    def planned(self) -> tuple[int, int]:
        """Outbox rows written and tasks queued since the warm-up."""
        huey = self.crm.queue.huey
        outbox = sum(self.crm.outbox.counts().values()) - self.outbox_before
        return outbox, len(huey) + huey.scheduled_count() - self.tasks_before

    def create_all(self, payloads: list[dict]) -> None:
        create, actor = self.crm.records.create, self.actor
        for payload in payloads:
            create("lead", payload, actor, "api")

    def stored_rows(self) -> list[dict]:
        model = self.crm.compiled.entities["lead"].model
        rows = list(model.select().where(model.last_name != "Warm-up").order_by(model.id).dicts())
        for row in rows:
            del row["id"]
        return rows

    def close(self) -> None:
        self.crm.database.close()
        self.crm.queue.huey.storage.close()


class RawDB:
    """A fresh database with the same lead table, written with plain inserts."""

    def __init__(self, directory: Path, compiled):
        directory.mkdir(parents=True)
        self.database = open_database(f"sqlite:///{directory / 'raw.sqlite3'}")
        compiled.bind(self.database)
        compiled.create_tables()
        self.model = compiled.entities["lead"].model
        now = dt.datetime.now()
        self.model.insert(last_name="Warm-up", source="web", version=1, created_at=now, updated_at=now).execute()

    def insert_all(self, rows: list[dict]) -> None:
        model = self.model
        for row in rows:
            model.insert(row).execute()

    def close(self) -> None:
        self.database.close()


def timed(work) -> float:
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        work()
        return time.perf_counter() - started
    finally:
        gc.enable()


def profile_summary(profiler: cProfile.Profile) -> str:
    """Top 25 by cumulative time; the platform's and huey's own functions by
    cumulative time (where the time goes, by step); top 15 by own time."""
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(25)
    out.write("--- only crm_platform and huey functions, by cumulative time ---\n")
    stats.sort_stats("cumulative").print_stats(r"crm_platform|huey", 25)
    stats.sort_stats("tottime").print_stats(15)
    text = out.getvalue()
    for prefix in sorted({p for p in sys.path if p and Path(p).is_dir()}, key=len, reverse=True):
        text = text.replace(prefix.rstrip("/") + "/", "")  # paths relative to the project or site-packages
    return text


def main() -> None:
    profile = "--profile" in sys.argv[1:]
    leads = make_leads(ROWS)
    payloads = [payload for _, payload in leads]
    by_group = {g: [p for grp, p in leads if grp == g] for g in (WEB_DACH, WEB_OTHER, REFERRAL, NO_RULE)}
    fires = by_group[WEB_DACH] + by_group[WEB_OTHER] + by_group[REFERRAL]
    raw_compiled = compile_pack(load_pack(ROOT))  # its own models, bound to the raw databases

    work = Path(tempfile.mkdtemp(prefix="bench-write-path-"))
    best = {"write path": float("inf"), "raw insert": float("inf"), "no rule": float("inf"), "rules": float("inf")}
    rows: list[dict] | None = None
    outbox_rows = queued_tasks = 0
    try:
        for round_ in range(ROUNDS):
            company = WritePathDB(work / f"wp{round_}")
            best["write path"] = min(best["write path"], timed(lambda c=company: c.create_all(payloads)))
            if rows is None:
                rows = company.stored_rows()
                assert len(rows) == ROWS, f"the write path stored {len(rows)} leads, not {ROWS}"
                outbox_rows, queued_tasks = company.planned()
            company.close()

            raw = RawDB(work / f"raw{round_}", raw_compiled)
            best["raw insert"] = min(best["raw insert"], timed(lambda r=raw, rows=rows: r.insert_all(rows)))
            assert raw.model.select().count() == ROWS + 1
            raw.close()

            # Informative: the two halves of the mix, each on fresh files.
            for name, part in (("no rule", by_group[NO_RULE]), ("rules", fires)):
                company = WritePathDB(work / f"{name.replace(' ', '-')}{round_}")
                best[name] = min(best[name], timed(lambda c=company, p=part: c.create_all(p)))
                company.close()

        profile_text = ""
        if profile:
            company = WritePathDB(work / "profile")
            profiler = cProfile.Profile()
            profiler.enable()
            company.create_all(payloads)
            profiler.disable()
            company.close()
            profile_text = profile_summary(profiler)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    groups = ", ".join(f"{name} {len(part)}" for name, part in by_group.items())
    print(f"leads: {ROWS:,} (random.Random(42)): {groups}")
    print("write path: records.create('lead', ..., Actor.system(), 'api'), default pack, SqliteHuey file, no consumer")
    print(f"  per mix pass: {outbox_rows:,} outbox rows, {queued_tasks:,} tasks queued (follow-ups too, with an eta)")
    print("raw insert: lead_model.insert(row).execute() per row, autocommit, same table and indexes")
    print(f"rounds: {ROUNDS}, best of each; fresh database files every round")
    print()
    header = f"{'candidate':<40} {'rows':>6} {'us/row':>9} {'rows/s':>9} {'x raw':>7}"
    print(header)
    print("-" * len(header))
    raw_us = best["raw insert"] / ROWS * 1e6
    table = [
        ("raw peewee insert (baseline)", ROWS, best["raw insert"]),
        ("write path, whole mix (headline)", ROWS, best["write path"]),
        ("write path, leads firing no rule", len(by_group[NO_RULE]), best["no rule"]),
        ("write path, leads firing rules", len(fires), best["rules"]),
    ]
    for name, count, seconds in table:
        us = seconds / count * 1e6
        print(f"{name:<40} {count:>6} {us:>9.1f} {count / seconds:>9.0f} {us / raw_us:>7.2f}")
    ratio = best["raw insert"] / best["write path"]
    print(f"\nwrite path records/s divided by raw insert rows/s: {ratio:.3f} (target {TARGET})")
    if profile_text:
        print(f"\ncProfile of one write-path pass over the whole mix ({ROWS:,} leads, fresh files):")
        print(profile_text.rstrip())
    print(json.dumps({"metric": "write_path_vs_raw_insert", "value": round(ratio, 3), "target": TARGET}))


if __name__ == "__main__":
    main()
