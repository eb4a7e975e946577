"""Timers in the database: follow-up sequences and the rules triggered by time.

Logic tests run on a fixed clock with Huey in immediate mode (actions run
inline once the transaction that planned them commits); the clock is moved
instead of waiting. The live test runs a real consumer process and
``flask --app app timers run --at``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import subprocess
import sys
import threading

import pytest

from crm_platform.runtime import inbound, time_triggers
from crm_platform.runtime.due_work import run_due_work
from crm_platform.runtime.inbound import InboundEmail
from crm_platform.runtime.time_triggers import sync_rules

from . import runtime_fixtures, web_fixtures
from .conftest import PROJECT, edit
from .live import Worker, live_config, wait_for, worker_env
from .runtime_fixtures import SYSTEM, HeldQueue, build_app, outbox_rows, user

crm_app, crm, make_crm = runtime_fixtures.crm_app, runtime_fixtures.crm, runtime_fixtures.make_crm  # the fixtures
web_app, sign_in = web_fixtures.web_app, web_fixtures.sign_in

NOW = dt.datetime(2026, 11, 23, 10, 0)  # conftest's clock: Monday, 11:00 in Berlin (the pack's time zone)
WELCOME, NURTURE, ESCALATE = "Welcome new web leads", "Nurture new contacts", "Escalate untouched hot tickets"

# Added to a copy of the default pack: a three-step sequence and a renewal reminder.
TEST_RULES = """\
rule "Nurture new contacts"
  on contact created
  when contact.email is not empty
  then
    send_email "nurture_welcome" to contact.email
    follow_up after 3 days unless contact.segment == "enterprise":
      send_email "nurture_nudge" to contact.email
      follow_up after 4 days:
        send_email "nurture_last_try" to contact.email

rule "Remind owners of renewals"
  on deal 30 days before close_date
  when deal.deal_type == "renewal"
  then
    notify deal.owner "Renewal of {name} is due in 30 days"
"""
TEMPLATES = {
    "nurture_welcome": "Welcome",
    "nurture_nudge": "Still interested?",
    "nurture_last_try": "Last try",
}


@pytest.fixture
def pack(tmp_path):
    """A copy of the default pack with ``TEST_RULES`` and their templates."""
    root = tmp_path / "pack"
    root.mkdir()
    shutil.copy(PROJECT / "pack.yaml", root / "pack.yaml")
    for folder in ("schemas", "workflows", "rules", "templates", "segments", "sla"):
        if (PROJECT / folder).is_dir():
            shutil.copytree(PROJECT / folder, root / folder)
    (root / "rules" / "sequences.rules").write_text(TEST_RULES)
    for name, subject in TEMPLATES.items():
        body = f"Subject: {subject}\n\nHello {{{{ contact.last_name }}}}\n"
        (root / "templates" / "email" / f"{name}.txt").write_text(body)
    return root


@pytest.fixture
def seq(make_crm, pack):
    """The engine on the pack with the test rules."""
    return make_crm(PACK_DIR=str(pack))


def web_lead(number: int = 1, **extra) -> dict:
    return {"first_name": "Jane", "last_name": f"Doe {number}", "email": f"jane{number}@example.com",
            "source": "web", "country": "DE", **extra}  # fmt: skip


@pytest.fixture
def dach(crm):
    return user(crm, "anna@example.com", roles=["sales"], teams=["sales-dach"]).user_id


def contact(crm, number: int, **extra):
    data = {"last_name": f"Miller {number}", "email": f"m{number}@example.com", **extra}
    return crm.records.create("contact", data, SYSTEM, "api")


def subjects(crm, to: str | None = None) -> list[str]:
    Mail = crm.tables.Mail
    query = Mail.select().order_by(Mail.id)
    if to is not None:
        query = query.where(Mail.recipient == to)
    return [mail.subject for mail in query]


def timers(crm, **match) -> list:
    return [t for t in crm.timers.pending(include_done=True) if all(getattr(t, k) == v for k, v in match.items())]


def timeline(crm, entity: str, record_id: int) -> list[str]:
    return [e.summary for e in crm.history.entries(entity, record_id) if e.kind in ("action", "skipped", "error")]


def reply(crm, entity: str, record_id: int, at: dt.datetime, n: int = 1) -> None:
    """Store an inbound email matched to the record, as ``POST /api/inbound-email`` does."""
    crm.tables.InboundMail.insert(
        message_id=f"<reply-{entity}-{record_id}-{n}@example.com>", sender="m@example.com", recipients="crm@x",
        subject="Re: Welcome", text="Call me", entity=entity, record_id=record_id, received_at=at,
    ).execute()  # fmt: skip


# --- follow-up sequences -----------------------------------------------------------------


def test_three_step_sequence_runs_welcome_nudge_and_last_try_on_their_days(seq, clock):
    person = contact(seq, 1)
    (step2,) = timers(seq, kind="follow_up")
    assert (step2.status, step2.due_at, step2.rule, step2.step, step2.record_id) == (
        "pending",
        NOW + dt.timedelta(days=3),
        NURTURE,
        "2",
        person.id,
    )
    assert not any(r.kind == "follow_up" for r in outbox_rows(seq))  # a timer, not an outbox row
    assert subjects(seq) == ["Welcome"]

    clock.advance(days=3)
    assert seq.timers.fire_due() == 1
    assert subjects(seq) == ["Welcome", "Still interested?"]
    (step3,) = timers(seq, kind="follow_up", status="pending")
    assert (step3.step, step3.due_at) == ("2.2", NOW + dt.timedelta(days=7))
    clock.advance(days=3, hours=23)
    assert seq.timers.fire_due() == 0  # not due before day 7
    clock.advance(hours=1)
    assert seq.timers.fire_due() == 1
    assert subjects(seq) == ["Welcome", "Still interested?", "Last try"]
    lines = timeline(seq, "contact", person.id)
    assert lines == [
        f"Follow-up step 2 of rule '{NURTURE}' sent: 1 action planned, next step scheduled",
        f"Follow-up step 3 of rule '{NURTURE}' sent: 1 action planned",
    ]
    assert seq.timers.fire_due() == 0 and timers(seq, status="pending", kind="follow_up") == []


def test_an_inbound_reply_stops_the_sequence_at_step_two(seq, clock):
    replied, silent = contact(seq, 1), contact(seq, 2)
    reply(seq, "contact", silent.id, NOW - dt.timedelta(days=1))  # before the sequence started: no stop
    reply(seq, "contact", replied.id, NOW + dt.timedelta(days=1, minutes=2))

    clock.advance(days=3)
    assert seq.timers.fire_due() == 2
    assert subjects(seq, "m1@example.com") == ["Welcome"]
    assert subjects(seq, "m2@example.com") == ["Welcome", "Still interested?"]
    assert timeline(seq, "contact", replied.id) == [
        f"Follow-up step 2 of rule '{NURTURE}' stopped: a reply was received on 2026-11-24 10:02"
    ]
    stopped = timers(seq, record_id=replied.id)
    assert [(t.step, t.status) for t in stopped] == [("2", "skipped")]  # no step 3 is scheduled

    clock.advance(days=4)
    assert seq.timers.fire_due() == 1  # only the silent contact's last try
    assert subjects(seq, "m1@example.com") == ["Welcome"]
    assert subjects(seq, "m2@example.com")[-1] == "Last try"


def test_a_reply_received_by_the_inbound_email_path_stops_the_sequence_but_an_out_of_office_does_not(seq, clock):
    replied, away = contact(seq, 1), contact(seq, 2)
    clock.advance(days=1)
    answer = InboundEmail(message_id="<r1@example.com>", sender="M1@example.com", subject="Re: Welcome", text="Call me")
    out_of_office = InboundEmail(
        message_id="<ooo@example.com>",
        sender="m2@example.com",
        subject="Out of office: Welcome",
        text="I am away until Monday.",
        headers=[["Auto-Submitted", "auto-replied"]],
    )
    assert inbound.receive(seq, answer).match == inbound.Match("contact", replied.id, "address")
    assert inbound.receive(seq, out_of_office).match == inbound.Match("contact", away.id, "address")

    clock.advance(days=2)
    assert seq.timers.fire_due() == 2
    assert subjects(seq, "m1@example.com") == ["Welcome"]
    assert subjects(seq, "m2@example.com") == ["Welcome", "Still interested?"]
    assert timeline(seq, "contact", replied.id)[-1] == (
        f"Follow-up step 2 of rule '{NURTURE}' stopped: a reply was received on 2026-11-24 10:00"
    )
    noted = [e.summary for e in seq.history.entries("contact", away.id) if e.kind == "email_received"]
    assert noted == ["Automatic reply (Auto-Submitted: auto-replied): " + inbound.timeline_summary(out_of_office)]


def test_a_reply_after_step_two_stops_step_three(seq, clock):
    person = contact(seq, 1)
    clock.advance(days=3)
    seq.timers.fire_due()
    reply(seq, "contact", person.id, NOW + dt.timedelta(days=5))
    clock.advance(days=4)
    assert seq.timers.fire_due() == 1
    assert subjects(seq) == ["Welcome", "Still interested?"]
    assert timeline(seq, "contact", person.id)[-1] == (
        f"Follow-up step 3 of rule '{NURTURE}' stopped: a reply was received on 2026-11-28 10:00"
    )


def test_a_stage_change_stops_the_follow_up_through_its_unless(crm, dach, clock):
    moved = crm.records.create("lead", web_lead(1), SYSTEM, "api")
    untouched = crm.records.create("lead", web_lead(2), SYSTEM, "api")
    crm.records.transition("lead", moved.id, "contacted", SYSTEM, "form")
    clock.advance(days=3)
    assert crm.timers.fire_due() == 2
    assert subjects(crm, "jane1@example.com") == ["Thanks for your interest, Jane"]
    assert subjects(crm, "jane2@example.com") == ["Thanks for your interest, Jane", "Can we help you, Jane?"]
    assert timeline(crm, "lead", moved.id)[-1] == (
        f"Follow-up step 2 of rule '{WELCOME}' skipped because lead.status is 'contacted'"
    )
    assert timeline(crm, "lead", untouched.id)[-1] == f"Follow-up step 2 of rule '{WELCOME}' sent: 1 action planned"
    (nudge,) = [r for r in outbox_rows(crm) if r.path == "2.1"]
    assert (nudge.record_id, nudge.kind, nudge.status, nudge.rule) == (untouched.id, "send_email", "done", WELCOME)
    assert nudge.payload["reason"] == {"email": "jane2@example.com", "source": "web"}


def test_an_unsubscribed_contact_gets_no_more_email_steps(seq, clock):
    leaving, staying = contact(seq, 1), contact(seq, 2)
    seq.records.update("contact", leaving.id, {"unsubscribed": True}, SYSTEM, "form")
    clock.advance(days=3)
    assert seq.timers.fire_due() == 2
    assert subjects(seq, "m1@example.com") == ["Welcome"]
    assert subjects(seq, "m2@example.com") == ["Welcome", "Still interested?"]
    assert timeline(seq, "contact", leaving.id) == [
        f"Follow-up step 2 of rule '{NURTURE}' stopped: the contact unsubscribed"
    ]
    assert timeline(seq, "contact", staying.id)[0].startswith(f"Follow-up step 2 of rule '{NURTURE}' sent")


def test_a_lead_who_unsubscribed_gets_no_more_email_steps(crm, dach, clock):
    leaving = crm.records.create("lead", web_lead(1), SYSTEM, "api")
    staying = crm.records.create("lead", web_lead(2), SYSTEM, "api")  # no marketing consent, not unsubscribed
    crm.records.update("lead", leaving.id, {"unsubscribed": True}, SYSTEM, "form")
    clock.advance(days=3)
    assert crm.timers.fire_due() == 2
    assert subjects(crm, "jane1@example.com") == ["Thanks for your interest, Jane"]
    assert subjects(crm, "jane2@example.com")[-1] == "Can we help you, Jane?"
    step = f"Follow-up step 2 of rule '{WELCOME}'"
    assert timeline(crm, "lead", leaving.id)[-1] == f"{step} stopped: the lead unsubscribed"
    assert timeline(crm, "lead", staying.id)[-1] == f"{step} sent: 1 action planned"


def test_a_deleted_record_ends_its_sequence(seq, clock):
    person = contact(seq, 1)
    seq.records.delete("contact", person.id, SYSTEM, "form")
    clock.advance(days=3)
    assert seq.timers.fire_due() == 1
    (timer,) = timers(seq, kind="follow_up")
    assert timer.status == "skipped"
    assert timer.note == f"Follow-up step 2 of rule '{NURTURE}' stopped: the record was deleted"
    assert subjects(seq) == ["Welcome"]


def test_an_admin_stops_a_sequence_from_the_command_line(crm_app, crm, dach, clock):
    lead = crm.records.create("lead", web_lead(1), SYSTEM, "api")
    other = crm.records.create("lead", web_lead(2), SYSTEM, "api")
    (timer,) = timers(crm, record_id=lead.id)
    runner = crm_app.test_cli_runner()
    result = runner.invoke(args=["timers", "stop", str(timer.id)])
    assert result.exit_code == 0, result.output
    assert result.output == f"Follow-up step 2 of rule '{WELCOME}' stopped by an admin (command line)\n"
    again = runner.invoke(args=["timers", "stop", str(timer.id)])
    assert again.exit_code == 1 and f"Error: timer {timer.id} is not pending" in again.output
    sync_rules(crm)
    (schedule,) = timers(crm, rule=ESCALATE)
    refused = runner.invoke(args=["timers", "stop", str(schedule.id)])
    assert refused.exit_code == 1
    assert f"timer {schedule.id} is the schedule of rule '{ESCALATE}'; disable the rule to stop it" in refused.output
    assert timers(crm, rule=ESCALATE)[0].status == "pending"

    clock.advance(days=3)
    assert crm.timers.fire_due() == 4  # the other lead's step, and the three schedules of time-triggered rules
    assert subjects(crm, "jane1@example.com") == ["Thanks for your interest, Jane"]
    assert subjects(crm, "jane2@example.com")[-1] == "Can we help you, Jane?"
    stopped = f"Follow-up step 2 of rule '{WELCOME}' stopped by an admin (command line)"
    assert timeline(crm, "lead", lead.id)[-1] == stopped
    assert timers(crm, record_id=other.id)[0].status == "fired"


def test_an_admin_stops_a_timer_in_the_console(web_app, sign_in, clock):
    crm = web_app.extensions["crm"]
    lead = crm.records.create("lead", web_lead(1, country="FR"), SYSTEM, "api")
    (timer,) = timers(crm, record_id=lead.id)
    admin = sign_in("admin")
    page = admin.get("/admin/timers/").get_data(as_text=True)
    assert f"/admin/timers/stop/{timer.id}" in page and WELCOME in page
    response = admin.post(f"/admin/timers/stop/{timer.id}", data={})
    assert response.status_code == 302
    assert timers(crm, record_id=lead.id)[0].status == "cancelled"
    assert f"/admin/timers/stop/{timer.id}" not in admin.get("/admin/timers/").get_data(as_text=True)
    assert timeline(crm, "lead", lead.id)[-1].startswith(f"Follow-up step 2 of rule '{WELCOME}' stopped by ")
    assert sign_in("anna").post(f"/admin/timers/stop/{timer.id}").status_code in (302, 403)
    refused = admin.post(f"/admin/timers/stop/{timer.id}", follow_redirects=True).get_data(as_text=True)
    assert f"Not stopped: timer {timer.id} is not pending" in refused


def test_the_record_page_shows_the_steps_still_to_come(web_app, sign_in, clock):
    crm = web_app.extensions["crm"]
    lead = crm.records.create("lead", web_lead(1, country="FR"), SYSTEM, "api")
    page = sign_in("admin").get(f"/r/lead/{lead.id}").get_data(as_text=True)
    assert f"Follow-up step 2 of rule &#39;{WELCOME}&#39; is due" in page
    clock.advance(days=3)
    crm.timers.fire_due()
    page = sign_in("admin").get(f"/r/lead/{lead.id}").get_data(as_text=True)
    assert "is due" not in page and f"Follow-up step 2 of rule &#39;{WELCOME}&#39; sent" in page


# --- exactly once ------------------------------------------------------------------------------


def test_each_timer_fires_once_when_two_workers_fire_at_the_same_time(crm, dach, clock):
    leads = [crm.records.create("lead", web_lead(i), SYSTEM, "api") for i in range(20)]
    clock.advance(days=3)
    start = threading.Barrier(2)
    counts: list[int] = []

    def worker():
        start.wait()
        counts.append(crm.timers.fire_due())

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 20
    assert [t.status for t in timers(crm, kind="follow_up")] == ["fired"] * 20
    nudges = [r for r in outbox_rows(crm) if r.path == "2.1"]
    assert sorted(r.record_id for r in nudges) == [lead.id for lead in leads]
    assert subjects(crm).count("Can we help you, Jane?") == 20


def test_a_firing_that_fails_is_rolled_back_and_retried(crm, dach, clock, monkeypatch):
    crm.records.create("lead", web_lead(1), SYSTEM, "api")
    clock.advance(days=3)
    original = crm.outbox.plan_children

    def broken(*args):
        original(*args)  # written, then rolled back with the timer's claim
        raise RuntimeError("disk full")

    monkeypatch.setattr(crm.outbox, "plan_children", broken)
    assert crm.timers.fire_due() == 0
    (timer,) = timers(crm, kind="follow_up")
    assert (timer.status, timer.attempts, timer.note) == ("pending", 1, "RuntimeError: disk full")
    assert timer.due_at == NOW + dt.timedelta(days=3, minutes=1)
    assert [r for r in outbox_rows(crm) if r.path == "2.1"] == []
    monkeypatch.setattr(crm.outbox, "plan_children", original)
    clock.advance(minutes=1)
    assert crm.timers.fire_due() == 1
    assert subjects(crm)[-1] == "Can we help you, Jane?"


# --- rules triggered by time ------------------------------------------------------------------


def hot_ticket(crm, number: int = 1):
    ticket = crm.records.create(
        "ticket", {"subject": f"Down {number}", "priority": "high", "requester_email": "x@example.com"}, SYSTEM, "api"
    )
    return crm.records.transition("ticket", ticket.id, "open", SYSTEM, "form")


def test_every_n_minutes_fires_once_after_downtime_and_stays_on_its_grid(crm, clock):
    user(crm, "lead@example.com", roles=["support-lead"])
    user(crm, "l2@example.com", roles=["support"], teams=["support-l2"])
    ticket = hot_ticket(crm)
    assert sync_rules(crm) == (3, 0)  # two "every" rules and the birthday rule of the default pack
    (timer,) = timers(crm, rule=ESCALATE)
    assert (timer.kind, timer.due_at, timer.record_id) == ("every", NOW + dt.timedelta(minutes=15), None)

    clock.advance(hours=6)  # the worker was down for 24 periods
    run_due_work(crm)
    fired, pending = timers(crm, rule=ESCALATE)
    assert fired.status == "fired" and fired.note.startswith("1 ticket record(s) matched")
    assert (pending.status, pending.due_at) == ("pending", NOW + dt.timedelta(hours=6, minutes=15))
    escalations = [r for r in outbox_rows(crm) if r.rule == ESCALATE]
    assert [(r.record_id, r.status) for r in escalations] == [(ticket.id, "done")]
    assert escalations[0].payload["reason"]["priority"] == "high"

    assert run_due_work(crm)["fire_timers"] == 0  # nothing more is due at this moment
    clock.advance(minutes=15)
    run_due_work(crm)
    first, second, pending = timers(crm, rule=ESCALATE)
    assert second.status == "fired" and second.note.startswith("0 ticket record(s) matched")  # just escalated
    assert pending.due_at == NOW + dt.timedelta(hours=6, minutes=30)
    assert len([r for r in outbox_rows(crm) if r.rule == ESCALATE]) == 1


def test_every_n_minutes_plans_nothing_for_records_its_condition_rejects(crm, clock):
    low = {"subject": "Low", "priority": "low", "requester_email": "x@example.com"}
    crm.records.create("ticket", low, SYSTEM, "api")
    sync_rules(crm)
    clock.advance(hours=5)
    run_due_work(crm)
    assert [r for r in outbox_rows(crm) if r.rule == ESCALATE] == []
    assert timers(crm, rule=ESCALATE, status="fired")[0].note.startswith("0 ticket record(s) matched")


def test_a_rule_run_cut_off_mid_way_resumes_without_planning_twice(crm, clock, monkeypatch):
    user(crm, "lead@example.com", roles=["support-lead"])
    user(crm, "l2@example.com", roles=["support"], teams=["support-l2"])
    tickets = [hot_ticket(crm, i) for i in range(3)]
    sync_rules(crm)
    monkeypatch.setattr(time_triggers, "BATCH", 2)  # two pages: tickets 1-2 and ticket 3, each its own transaction
    settle = crm.timers.settle

    def dies(*args):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(crm.timers, "settle", dies)
    queue = HeldQueue(crm.outbox)  # the escalations wait: the tickets still match when the run resumes
    clock.advance(hours=5)
    assert crm.timers.fire_due() == 0
    (running,) = timers(crm, rule=ESCALATE)
    assert (running.status, running.attempts, running.note) == ("running", 1, "RuntimeError: worker killed")
    assert running.lease_until == clock.at + dt.timedelta(minutes=1)  # taken up again after the retry delay
    assert len([r for r in outbox_rows(crm) if r.rule == ESCALATE]) == 3  # the pages done stay done

    monkeypatch.setattr(crm.timers, "settle", settle)
    assert crm.timers.fire_due() == 0  # its lease holds: no other worker takes it
    clock.advance(minutes=1, seconds=1)
    assert crm.timers.fire_due() == 3  # this one and the pack's two other time-triggered rules, cut off alike
    fired, pending = timers(crm, rule=ESCALATE)
    assert (fired.status, fired.lease_until) == ("fired", None)
    assert fired.note.startswith("3 ticket record(s) matched")
    assert pending.status == "pending"
    escalations = [r for r in outbox_rows(crm) if r.rule == ESCALATE]
    assert sorted(r.record_id for r in escalations) == [t.id for t in tickets]  # each once
    queue.release()


def test_a_rule_run_given_up_after_its_attempts_still_runs_at_its_next_regular_time(crm, clock, monkeypatch):
    sync_rules(crm)
    monkeypatch.setattr(crm.timers, "settings", dataclasses.replace(crm.timers.settings, max_attempts=1))

    def dies(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(crm.timers, "settle", dies)
    clock.advance(minutes=20)  # the 10:15 run is due
    crm.timers.fire_due()
    failed, pending = timers(crm, rule=ESCALATE)
    assert (failed.status, failed.note) == ("failed", "RuntimeError: disk full")
    # One bad firing does not end the rule's schedule: its next run is on its grid, as if it had fired.
    assert (pending.status, pending.due_at) == ("pending", NOW + dt.timedelta(minutes=30))
    (date_rule,) = [t for t in timers(crm, kind="date", status="pending")]
    assert date_rule.due_at == dt.datetime(2026, 11, 24, 7, 0)  # tomorrow 08:00 in Berlin


def greeted(crm) -> list[str]:
    Mail = crm.tables.Mail
    return sorted(m.recipient for m in Mail.select().where(Mail.subject.startswith("Happy birthday")))


def test_birthdays_are_greeted_yearly_on_the_day_29_february_on_28_in_other_years(crm, clock):
    contact(crm, 1, birthday="1990-12-01")
    contact(crm, 2, birthday="1992-02-29")
    contact(crm, 3, birthday="1985-12-02")
    contact(crm, 4, birthday="1990-12-01", unsubscribed=True)  # the rule's condition says no
    sync_rules(crm)
    (timer,) = timers(crm, kind="date")
    assert timer.due_at == dt.datetime(2026, 11, 23, 7, 0)  # 08:00 in Berlin, today

    clock.at = dt.datetime(2026, 12, 1, 6, 59)
    run_due_work(crm)  # covers 23-30 November
    assert greeted(crm) == []
    clock.at = dt.datetime(2026, 12, 1, 7, 0)
    run_due_work(crm)
    assert greeted(crm) == ["m1@example.com"]
    run_due_work(crm)
    assert greeted(crm) == ["m1@example.com"]  # once per record and day

    clock.at = dt.datetime(2027, 2, 28, 7, 0)  # 2027 is no leap year; the backfill covers December to February
    run_due_work(crm)
    assert greeted(crm) == ["m1@example.com", "m2@example.com", "m3@example.com"]
    (leap,) = [r for r in outbox_rows(crm) if r.rule == "Birthday greeting" and "2027-02-28" in r.key]
    assert leap.record_id == 2

    clock.at = dt.datetime(2028, 2, 28, 7, 0)  # a leap year: not on the 28th ...
    run_due_work(crm)
    assert greeted(crm).count("m2@example.com") == 1
    clock.at = dt.datetime(2028, 2, 29, 7, 0)  # ... but on the 29th
    run_due_work(crm)
    assert greeted(crm).count("m2@example.com") == 2


def test_renewal_reminder_fires_30_days_before_the_close_date(seq, clock):
    owner = user(seq, "rita@example.com", roles=["sales"]).user_id

    def deal(name: str, kind: str, close: str):
        data = {"name": name, "deal_type": kind, "close_date": close, "owner": owner}
        return seq.records.create("deal", data, SYSTEM, "api")

    due = deal("Renew ACME", "renewal", "2027-01-15")
    deal("Renew Beta", "renewal", "2027-01-16")  # a day later
    deal("New Gamma", "new_business", "2027-01-15")  # the rule's condition says no
    clock.at = dt.datetime(2026, 12, 16, 7, 0)
    run_due_work(seq)
    Notification = seq.tables.Notification
    assert [n.message for n in Notification.select()] == ["Renewal of Renew ACME is due in 30 days"]
    (row,) = [r for r in outbox_rows(seq) if r.rule == "Remind owners of renewals"]
    assert (row.record_id, row.payload["reason"]) == (due.id, {"deal_type": "renewal"})
    assert row.key == f"date@2026-12-16/deal#{due.id}/Remind owners of renewals/1"


# --- definitions change ------------------------------------------------------------------------


def test_disabling_or_removing_a_rule_cancels_its_pending_timers(make_crm, pack, dach, clock, crm):
    first = make_crm(PACK_DIR=str(pack))
    lead = first.records.create("lead", web_lead(1), SYSTEM, "api")
    sync_rules(first)
    assert {t.rule for t in timers(first, status="pending")} == {
        WELCOME,
        ESCALATE,
        "Remind owners of stale deals",
        "Birthday greeting",
        "Remind owners of renewals",
    }

    edit(pack / "rules" / "leads.rules", f'rule "{WELCOME}" priority 20', f'rule "{WELCOME}" priority 20 disabled')
    tickets = (pack / "rules" / "tickets.rules").read_text()
    start = tickets.index(f'rule "{ESCALATE}"')
    end = tickets.find("\nrule ", start) + 1 or len(tickets)  # up to the next rule, or to the end
    (pack / "rules" / "tickets.rules").write_text(tickets[:start] + tickets[end:])
    second = make_crm(PACK_DIR=str(pack))
    assert sync_rules(second) == (0, 2)
    (follow_up,) = timers(second, rule=WELCOME)
    assert (follow_up.status, follow_up.note) == ("cancelled", f"rule '{WELCOME}' was disabled")
    assert timeline(second, "lead", lead.id)[-1] == (
        f"Follow-up step 2 of rule '{WELCOME}' cancelled: rule '{WELCOME}' was disabled"
    )
    (every,) = timers(second, rule=ESCALATE)
    assert (every.status, every.note) == ("cancelled", f"rule '{ESCALATE}' was removed")
    assert {t.rule for t in timers(second, status="pending")} == {
        "Remind owners of stale deals",
        "Birthday greeting",
        "Remind owners of renewals",
    }
    clock.advance(days=3)
    assert second.timers.fire_due() == 3  # the rule-wide timers left; no nudge
    assert len(subjects(second)) == 1


def test_a_follow_up_of_a_disabled_rule_fired_before_any_sync_says_the_rule_was_disabled(make_crm, pack, dach, clock):
    first = make_crm(PACK_DIR=str(pack))
    lead = first.records.create("lead", web_lead(1), SYSTEM, "api")
    edit(pack / "rules" / "leads.rules", f'rule "{WELCOME}" priority 20', f'rule "{WELCOME}" priority 20 disabled')
    second = make_crm(PACK_DIR=str(pack))  # fires without syncing first (as a process on other definitions may)
    clock.advance(days=3)
    second.timers.fire_due()
    (timer,) = timers(second, rule=WELCOME)
    line = f"Follow-up step 2 of rule '{WELCOME}' skipped: rule '{WELCOME}' was disabled"
    assert (timer.status, timer.note) == ("skipped", line)
    assert timeline(second, "lead", lead.id)[-1] == line


def test_a_follow_up_step_removed_from_its_rule_is_cancelled(make_crm, pack, dach, crm):
    first = make_crm(PACK_DIR=str(pack))
    lead = first.records.create("lead", web_lead(1), SYSTEM, "api")
    step = '    follow_up after 3 days unless lead.status != "new":\n      send_email "lead_nudge" to lead.email\n'
    edit(pack / "rules" / "leads.rules", step, "")
    second = make_crm(PACK_DIR=str(pack))
    assert sync_rules(second)[1] == 1
    (timer,) = timers(second, rule=WELCOME)
    assert (timer.status, timer.note) == ("cancelled", f"rule '{WELCOME}' no longer has this follow-up step")
    assert timeline(second, "lead", lead.id)[-1] == (
        f"Follow-up step 2 of rule '{WELCOME}' cancelled: rule '{WELCOME}' no longer has this follow-up step"
    )


def test_a_changed_schedule_replaces_the_rule_wide_timer(make_crm, pack, clock):
    first = make_crm(PACK_DIR=str(pack))
    sync_rules(first)
    edit(pack / "rules" / "tickets.rules", "on ticket every 15 minutes", "on ticket every 2 hours")
    second = make_crm(PACK_DIR=str(pack))
    assert sync_rules(second) == (1, 1)
    old, new = timers(second, rule=ESCALATE)
    assert (old.status, old.note) == ("cancelled", f"the trigger of rule '{ESCALATE}' changed")
    assert (new.status, new.due_at, new.payload["trigger"]) == ("pending", NOW + dt.timedelta(hours=2), "every 2 hours")


def test_a_process_with_older_definitions_cancels_nothing_the_newer_ones_scheduled(make_crm, pack, dach, clock):
    old = make_crm(PACK_DIR=str(pack))
    assert old.definition_version  # registered first: these are the older definitions
    edit(pack / "rules" / "tickets.rules", "on ticket every 15 minutes", "on ticket every 2 hours")
    new = make_crm(PACK_DIR=str(pack))
    new.records.create("lead", web_lead(1), SYSTEM, "api")  # a follow-up timer too
    sync_rules(new)
    before = {(t.id, t.rule) for t in timers(new, status="pending")}
    assert {rule for _, rule in before} >= {WELCOME, ESCALATE}

    # A worker still on the old definitions starts (a rolling deploy): it leaves the timers alone.
    assert sync_rules(old) == (0, 0)
    assert {(t.id, t.rule) for t in timers(new, status="pending")} == before
    (every,) = timers(new, rule=ESCALATE, status="pending")
    assert every.payload["trigger"] == "every 2 hours"


# --- the command line ----------------------------------------------------------------------------


def test_timers_list_and_run_at_a_moment(tmp_path, crm, dach):
    lead = crm.records.create("lead", web_lead(1), SYSTEM, "api")
    sync_rules(crm)
    cli = build_app(tmp_path, None)  # a fresh process's app: its clock not built yet
    runner = cli.test_cli_runner()
    listed = runner.invoke(args=["timers", "list"])
    assert listed.exit_code == 0, listed.output
    ids = {t.rule: t.id for t in timers(crm)}
    assert listed.output.splitlines() == [
        f"#{ids['Birthday greeting']}  2026-11-23 07:00  pending   date       every contact  rule 'Birthday greeting'",
        f"#{ids[ESCALATE]}  2026-11-23 10:15  pending   every      every ticket  rule '{ESCALATE}'",
        f"#{ids['Remind owners of stale deals']}  2026-11-23 12:00  pending   every      every deal  "
        "rule 'Remind owners of stale deals'",
        f"#1  2026-11-26 10:00  pending   follow_up  lead #{lead.id}  rule '{WELCOME}'  step 2",
    ]

    bad = runner.invoke(args=["timers", "run", "--at", "next tuesday"])
    assert bad.exit_code == 2 and "'next tuesday' is not a date and time like 2026-12-01T10:00" in bad.output
    ran = runner.invoke(args=["timers", "run", "--at", "2026-11-26T10:00"])
    assert ran.exit_code == 0, ran.output
    lines = ran.output.splitlines()
    step = f"Follow-up step 2 of rule '{WELCOME}'"
    assert f"#1 fired     {step}: {step} sent: 1 action planned" in lines
    assert lines[-1].startswith("as of 2026-11-26 10:00 UTC: fire_timers: 4")
    assert subjects(crm)[-1] == "Can we help you, Jane?"
    assert "follow_up" not in runner.invoke(args=["timers", "list"]).output
    everything = runner.invoke(args=["timers", "list", "--all"]).output
    assert f"#1  2026-11-26 10:00  fired     follow_up  lead #{lead.id}" in everything


# --- live: a real consumer process and the command ---------------------------------------------


def test_live_two_timers_run_processes_fire_each_step_once_and_the_worker_sends_it(tmp_path, smtp):
    config = live_config(tmp_path, PROJECT, smtp.url)
    app = build_app(tmp_path, None, **config)
    crm = app.extensions["crm"]
    crm.init_db()
    crm.directory.create_user("anna@test.example.com", "Anna", "secret", roles=["sales"], teams=["sales-dach"])
    worker = Worker(worker_env(config), tmp_path / "worker.log").start()
    try:
        leads = [crm.records.create("lead", web_lead(i), SYSTEM, "form") for i in range(10)]
        wait_for(lambda: smtp.sink.count() >= 10, what="the welcome emails")
        moment = (timers(crm, kind="follow_up")[-1].due_at + dt.timedelta(minutes=1)).isoformat(timespec="minutes")
        env = {**worker_env(config), "PYTHONPATH": str(PROJECT)}
        command = [sys.executable, "-m", "flask", "--app", "app", "timers", "run", "--at", moment]
        runs = [subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        outputs = [run.communicate(timeout=120)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        fired = [int(out.splitlines()[-1].split("fire_timers: ")[1].split(",")[0]) for out in outputs]
        assert sum(fired) == 10 + 3, outputs  # each lead's step 2 once, and the three rules' schedules
        wait_for(lambda: smtp.sink.count() >= 20, what="the nudges sent by the worker process")
        nudged = sorted(m.recipients[0] for m in smtp.sink.snapshot() if m.subject == "Can we help you, Jane?")
        assert nudged == sorted(f"jane{i}@example.com" for i in range(10))
        assert {t.status for t in timers(crm, kind="follow_up")} == {"fired"}
        assert f"Follow-up step 2 of rule '{WELCOME}' sent: 1 action planned" in timeline(crm, "lead", leads[0].id)
    finally:
        worker.stop()
    assert smtp.sink.count() == 20


def test_live_a_reply_posted_to_the_inbound_email_webhook_stops_a_three_step_sequence(tmp_path, smtp, pack):
    """The issue's scenario end to end: a real consumer process sends over SMTP, the reply arrives
    through ``POST /api/inbound-email`` threaded to the welcome email, and ``flask timers run --at``
    (a separate process, as of day 3 and day 7) fires the steps: the person who replied gets no
    more email, the silent one gets all three."""
    config = live_config(tmp_path, pack, smtp.url, INBOUND_EMAIL_SECRET="hush")
    app = build_app(tmp_path, None, **config)
    crm = app.extensions["crm"]
    crm.init_db()
    worker = Worker(worker_env(config), tmp_path / "worker.log").start()
    env = {**worker_env(config), "PYTHONPATH": str(PROJECT)}

    def timers_run(at: dt.datetime) -> str:
        command = [sys.executable, "-m", "flask", "--app", "app", "timers", "run", "--at", at.isoformat()]
        done = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    try:
        replied, silent = contact(crm, 1), contact(crm, 2)
        wait_for(lambda: smtp.sink.count() >= 2, what="the welcome emails")
        started = crm.timers.pending()[0].created_at
        welcome = next(m for m in smtp.sink.snapshot() if m.recipients == ["m1@example.com"])
        answer = app.test_client().post(
            "/api/inbound-email",
            headers={"X-CRM-Secret": "hush"},
            json={"from": "M One <m1@example.com>", "subject": "Re: Welcome", "text": "Call me on Friday",
                  "message_id": "<answer-1@mail.example.com>", "in_reply_to": welcome.message_id},
        )  # fmt: skip
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["matched"] == {"entity": "contact", "id": replied.id, "by": "thread"}

        timers_run(started + dt.timedelta(days=3, minutes=1))
        wait_for(lambda: smtp.sink.count() >= 3, what="the second step's email")
        timers_run(started + dt.timedelta(days=7, minutes=2))
        wait_for(lambda: smtp.sink.count() >= 4, what="the third step's email")
    finally:
        worker.stop()

    received = [(m.recipients[0], m.subject) for m in smtp.sink.snapshot()]
    assert sorted(received) == [
        ("m1@example.com", "Welcome"),
        ("m2@example.com", "Last try"),
        ("m2@example.com", "Still interested?"),
        ("m2@example.com", "Welcome"),
    ]
    lines = timeline(crm, "contact", replied.id)
    assert lines[-1].startswith(f"Follow-up step 2 of rule '{NURTURE}' stopped: a reply was received on ")
    assert [t.status for t in timers(crm, record_id=replied.id)] == ["skipped"]
    assert [t.status for t in timers(crm, record_id=silent.id)] == ["fired", "fired"]
