"""How many timers does ``fire_due`` fire per second, next to a bare claim of the same rows?

Run from the project root:  .venv/bin/python bench/timers.py [--rows N]

Setup (not timed): the default pack on a SQLite file, 2,000 web leads from
DACH created through the write path with the queue held (tasks are not run),
so each lead has one pending follow-up timer ("Welcome new web leads", step 2,
due in three days) and the tables hold what they would in production: the
leads, their audit rows and outbox rows. The file is copied once per round,
so every round starts from the same state.

Rows:

- bare claim (baseline): per due timer, in its own transaction, the
  conditional UPDATE pending -> fired (what makes a firing exactly-once) and
  nothing else;
- follow-up timers (``fire_due``): the platform firing the same timers three
  days later: claim, load the rule and the record, check the stop conditions
  (a reply since the sequence started, unsubscribed, ``unless``), plan the
  step's email as an outbox row, write the timeline line, one transaction
  each. **The headline: timers fired per second;**
- every-N rule over the leads (informative): one ``every`` timer whose rule
  condition holds for every lead: records matched and planned per second
  (one transaction for the whole firing).

The queue is held in every row (the outbox rows are written, no task is
queued), so the numbers are the database side of firing. Times are the best
of three rounds, garbage collector off while timing.

The last line printed is one JSON object: follow-up timers fired per second,
and its ratio to the bare claim measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crm_platform.application import create_app  # noqa: E402
from crm_platform.runtime.clock import FixedClock  # noqa: E402
from crm_platform.runtime.time_triggers import sync_rules  # noqa: E402
from crm_platform.runtime.users import Actor  # noqa: E402

ROUNDS = 3
START = dt.datetime(2026, 11, 23, 10, 0)
EVERY_RULE = """
rule "Bench every hour"
  on lead every 1 hours
  when lead.source == "web"
  then
    notify role "sales-manager" "Lead {last_name} is still open"
"""


def engine(db: Path, pack: Path, clock: FixedClock):
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{db}",
            "QUEUE_URL": "memory://",
            "PACK_DIR": str(pack),
            "SECRET_KEY": "bench",
            "CLOCK": clock,
        }
    )
    crm = app.extensions["crm"]
    crm.outbox.enqueue = lambda *args: None  # the queue is held: rows are written, no task runs
    return crm


def setup(work: Path, rows: int) -> tuple[Path, Path]:
    """A pack (the default one plus the every-N bench rule) and a database with ``rows`` leads."""
    pack = work / "pack"
    pack.mkdir()
    shutil.copy(ROOT / "pack.yaml", pack / "pack.yaml")
    for folder in ("schemas", "workflows", "rules", "templates", "segments", "sla"):
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, pack / folder)
    (pack / "rules" / "bench.rules").write_text(EVERY_RULE)
    db = work / "seed.sqlite3"
    crm = engine(db, pack, FixedClock(START))
    crm.init_db()
    crm.directory.create_user("anna@bench.example", "Anna", "secret", roles=["sales"], teams=["sales-dach"])
    system = Actor.system()
    for i in range(rows):
        data = {"last_name": f"Lead {i}", "email": f"lead{i}@bench.example", "source": "web", "country": "DE"}
        crm.records.create("lead", data, system, "api")
    assert crm.timers.counts() == {"pending": rows}
    crm.database.execute_sql("pragma wal_checkpoint(TRUNCATE)")
    crm.database.close()
    return db, pack


def fresh(db: Path, work: Path, name: str) -> Path:
    copy = work / f"{name}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copy(db, copy)
    return copy


def bare_claim(crm, now: dt.datetime) -> int:
    Timer = crm.tables.Timer
    ids = [t.id for t in Timer.select(Timer.id).where((Timer.status == "pending") & (Timer.due_at <= now))]
    fired = 0
    for timer_id in ids:
        with crm.database.atomic():
            fired += (
                Timer.update(status="fired", fired_at=now)
                .where((Timer.id == timer_id) & (Timer.status == "pending"))
                .execute()
            )
    return fired


def follow_ups(crm, now: dt.datetime) -> int:
    return crm.timers.fire_due(now)


def every_rule(crm, now: dt.datetime) -> tuple[int, float]:
    """Fire only the bench rule's every-N timer; returns the records it planned for and the time it took."""
    Timer = crm.tables.Timer
    Timer.update(status="cancelled").where(Timer.kind == "follow_up").execute()  # untimed: only the every timer
    sync_rules(crm)
    Timer.update(status="cancelled").where((Timer.kind != "follow_up") & (Timer.rule != "Bench every hour")).execute()
    due = now + dt.timedelta(hours=1)  # the every timer's first run
    start = time.perf_counter()
    crm.timers.fire_due(due)
    elapsed = time.perf_counter() - start
    (timer,) = Timer.select().where((Timer.rule == "Bench every hour") & (Timer.status == "fired"))
    matched = int(timer.note.split()[0])
    return matched, elapsed


def timed(fn, db: Path, work: Path, pack: Path, name: str, rows: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        crm = engine(fresh(db, work, name), pack, FixedClock(START + dt.timedelta(days=3)))
        now = crm.clock.utcnow()
        assert crm.compiled and crm.definition_version  # compile and bind outside the timing
        gc.disable()
        try:
            if fn is every_rule:
                matched, elapsed = every_rule(crm, now)
                assert matched == rows, matched
            else:
                start = time.perf_counter()
                fired = fn(crm, now)
                elapsed = time.perf_counter() - start
                assert fired == rows, fired
        finally:
            gc.enable()
            crm.database.close()
        best = min(best, elapsed)
    return rows / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"setting up {rows} leads with a pending follow-up each ...", file=sys.stderr)
        db, pack = setup(work, rows)
        results = {
            "bare claim (baseline)": timed(bare_claim, db, work, pack, "bare", rows),
            "follow-up timers (fire_due)": timed(follow_ups, db, work, pack, "follow", rows),
            "every-N rule over the leads": timed(every_rule, db, work, pack, "every", rows),
        }
    baseline = results["bare claim (baseline)"]
    print(f"{'row':<32} {'per second':>12} {'vs baseline':>12}")
    for name, rate in results.items():
        print(f"{name:<32} {rate:>12,.0f} {rate / baseline:>12.2f}")
    headline = results["follow-up timers (fire_due)"]
    print(
        json.dumps(
            {
                "metric": "follow_up_timers_fired_per_second",
                "value": round(headline),
                "vs_bare_claim": round(headline / baseline, 3),
                "every_rule_records_per_second": round(results["every-N rule over the leads"]),
            }
        )
    )


if __name__ == "__main__":
    main()
