"""Automation end to end: the write path in this process, a real Huey consumer
process (``flask --app app worker``) and a real SMTP server on loopback.
"""

from __future__ import annotations

import collections
import shutil
import time

import pytest

from crm_platform.application import create_app
from crm_platform.errors import TransitionNotAllowed
from crm_platform.runtime.users import Actor

from .conftest import GOOD, PROJECT
from .live import Worker, live_config, wait_for, worker_env

SYSTEM = Actor.system()


@pytest.fixture
def live(tmp_path, smtp):
    """``live(pack_dir, **settings)`` -> (engine, start_worker) sharing a database and a queue."""
    workers: list[Worker] = []

    def build(pack_dir=PROJECT, **settings):
        config = live_config(tmp_path, pack_dir, smtp.url, **settings)
        app = create_app({"TESTING": True, **config})
        crm = app.extensions["crm"]
        crm.init_db()

        def start_worker(threads: int = 2) -> Worker:
            worker = Worker(worker_env(config), tmp_path / f"worker{len(workers)}.log", threads).start()
            workers.append(worker)
            return worker

        return crm, start_worker

    yield build
    for worker in workers:
        worker.stop()


def settled(crm) -> bool:
    """No action is waiting to run now (follow-ups due later may stay queued)."""
    Outbox = crm.tables.Outbox
    busy = Outbox.select().where(
        Outbox.status.in_(("pending", "running", "retrying", "waiting"))
        | ((Outbox.status == "queued") & Outbox.due_at.is_null())
    )
    return not busy.exists()


def reps(crm, team: str, names: list[str]) -> list[int]:
    return [
        crm.directory.create_user(f"{name}@test.example.com", name.title(), "secret", roles=["sales"], teams=[team])
        for name in names
    ]


def test_dach_web_leads_go_round_robin_to_three_reps_and_each_gets_the_welcome_email(live, smtp):
    crm, start_worker = live()
    anna, ben, clara = reps(crm, "sales-dach", ["anna", "ben", "clara"])
    start_worker()
    Lead = crm.compiled.entities["lead"].model
    leads = [
        crm.records.create(
            "lead",
            {"last_name": name, "first_name": "Kim", "email": f"{name.lower()}@lead.example", "country": country},
            SYSTEM,
            "form",
        )
        for name, country in [("Adler", "DE"), ("Bauer", "AT"), ("Conti", "CH")]
    ]
    wait_for(lambda: smtp.sink.count() >= 3 and settled(crm), what="three assignments and three welcome emails")

    # Each rep gets one: two worker threads run the three assignments, so who gets which
    # lead depends on which assignment runs first, not on the order the leads came in.
    owners = {lead.id: Lead.get_by_id(lead.id).owner for lead in leads}
    assert sorted(owners.values()) == sorted([anna, ben, clara])
    received = {m.recipients[0]: m for m in smtp.sink.snapshot()}
    assert sorted(received) == ["adler@lead.example", "bauer@lead.example", "conti@lead.example"]
    assert received["adler@lead.example"].subject == "Thanks for your interest, Kim"
    names = {anna: "Anna", ben: "Ben", clara: "Clara"}
    timeline = crm.history.entries("lead", leads[0].id)
    summaries = [entry.summary for entry in timeline]
    assert f"assigned owner to {names[owners[leads[0].id]]} (sales-dach, round robin)" in summaries
    assert any(s.startswith("email 'welcome' sent to adler@lead.example") for s in summaries)
    assignment = next(e for e in timeline if e.kind == "update" and e.rule == "Route DACH web leads")
    assert assignment.channel == "rule"
    assert assignment.reason == {"source": "web", "country": "DE"}
    assert crm.tables.Mail.select().where(crm.tables.Mail.status == "sent").count() == 3


def test_load_balancing_picks_the_least_loaded_rep_and_skips_one_who_is_away(live, smtp):
    crm, start_worker = live()
    busy, lighter, idle_but_away = reps(crm, "sales-us", ["busy", "lighter", "away"])
    crm.directory.set_flags(idle_but_away, away=True)
    for index, owner in enumerate([busy, busy, lighter]):
        crm.records.create("lead", {"last_name": f"Open{index}", "source": "event", "owner": owner}, SYSTEM, "import")
    start_worker()
    lead = crm.records.create(
        "lead", {"last_name": "Young", "email": "young@lead.example", "country": "US"}, SYSTEM, "form"
    )
    Lead = crm.compiled.entities["lead"].model
    wait_for(lambda: Lead.get_by_id(lead.id).owner is not None and settled(crm), what="the assignment")

    assert Lead.get_by_id(lead.id).owner == lighter
    assert Lead.get_by_id(lead.id).team == "sales-us"


def test_stage_moves_refused_by_the_workflow_change_nothing(live):
    crm, _ = live()
    lead = crm.records.create("lead", {"last_name": "Guarded", "source": "event"}, SYSTEM, "form")
    audits_before = crm.tables.Audit.select().count()

    with pytest.raises(TransitionNotAllowed) as illegal:
        crm.records.transition("lead", lead.id, "converted", SYSTEM, "form")
    assert "there is no move from New to Converted" in str(illegal.value)
    with pytest.raises(TransitionNotAllowed) as missing:
        crm.records.transition("lead", lead.id, "disqualified", SYSTEM, "form")
    assert "Disqualification reason must be filled in" in str(missing.value)

    fresh = crm.compiled.entities["lead"].model.get_by_id(lead.id)
    assert (fresh.status, fresh.version) == ("new", 1)
    assert crm.tables.Audit.select().count() == audits_before
    moved = crm.records.transition("lead", lead.id, "disqualified", SYSTEM, "form", data={"lost_reason": "no_budget"})
    assert (moved.status, moved.lost_reason, moved.version) == ("disqualified", "no_budget", 2)


def test_a_self_triggering_rule_pair_stops_at_the_loop_guard(live, tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(GOOD, pack)
    with open(pack / "rules" / "leads.rules", "a") as rules:
        rules.write(
            '\nrule "Ping"\n  on lead score changed\n  then\n    set lead.opted_in = not lead.opted_in\n'
            '\nrule "Pong"\n  on lead opted_in changed\n  then\n    set lead.score = lead.score + 1\n'
        )
    crm, start_worker = live(pack, RULE_CHAIN_LIMIT=10)
    lead = crm.records.create("lead", {"first_name": "Lo", "last_name": "Op", "source": "event"}, SYSTEM, "form")
    start_worker()
    crm.records.update("lead", lead.id, {"score": 1}, SYSTEM, "form")
    Timeline = crm.tables.Timeline
    stopped = Timeline.select().where((Timeline.record_id == lead.id) & (Timeline.kind == "error"))
    wait_for(lambda: stopped.exists() and settled(crm), what="the loop guard")

    (error,) = list(stopped)
    assert "reached the limit of 10" in error.summary
    Audit = crm.tables.Audit
    automated = Audit.select().where((Audit.record_id == lead.id) & Audit.rule.is_null(False))
    assert automated.count() == 10  # ten rule-triggered changes, then the guard
    assert max(row.depth for row in automated) == 10
    time.sleep(0.5)  # the worker is idle, not still looping
    assert Audit.select().where(Audit.record_id == lead.id).count() == 12  # create, the human change, ten by rules


def test_every_email_arrives_exactly_once_when_the_worker_is_killed_mid_run(live, smtp, tmp_path):
    pack = tmp_path / "pack"
    pack.mkdir()
    shutil.copy(GOOD / "pack.yaml", pack / "pack.yaml")
    for folder in ("schemas", "workflows", "templates"):
        shutil.copytree(GOOD / folder, pack / folder)
    (pack / "rules").mkdir()
    (pack / "rules" / "welcome.rules").write_text(
        'rule "Welcome every lead"\n  on lead created\n  then\n    send_email "welcome" to lead.email\n'
    )
    # A task the killed worker had taken from the queue but not yet claimed leaves its row
    # "queued": the sweep queues it again after OUTBOX_REQUEUE_SECONDS (10 minutes by default).
    crm, start_worker = live(pack, ACTION_LEASE_SECONDS=2, OUTBOX_REQUEUE_SECONDS=2)
    total = 1000
    for index in range(total):
        crm.records.create(
            "lead",
            {"first_name": "P", "last_name": f"Person {index}", "email": f"p{index}@lead.example", "source": "event"},
            SYSTEM,
            "import",
        )
    first = start_worker()
    wait_for(lambda: smtp.sink.count() >= 300, what="the first 300 emails")
    first.kill()
    killed_at = smtp.sink.count()
    assert killed_at < total, "the worker finished before it could be killed; queue more emails"
    time.sleep(2.5)  # let the killed worker's lease run out
    start_worker()
    wait_for(lambda: settled(crm) and smtp.sink.count() >= total, timeout=120, what="every email")
    time.sleep(0.5)  # anything sent twice would arrive now

    received = smtp.sink.snapshot()
    per_address = collections.Counter(m.recipients[0] for m in received)
    assert len(per_address) == total
    assert [address for address, n in per_address.items() if n > 1] == []
    assert len({m.message_id for m in received}) == total == len(received)
    assert crm.outbox.counts() == {"done": total}
    # "handed_over": the server had the message when the worker was killed, before it read the reply.
    statuses = collections.Counter(row.status for row in crm.tables.Mail.select())
    assert set(statuses) <= {"sent", "handed_over"} and sum(statuses.values()) == total
    assert statuses["handed_over"] <= 2  # at most one message in flight per worker thread
