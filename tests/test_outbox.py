"""Rules at work on the default pack: a change plans its actions as outbox rows
in its own transaction; they run after commit (inline here, Huey's immediate
mode), once, in order, with retries and backoff, and the sweep recovers what
was stranded. Plus the commands around it (``create-admin``, ``seed-demo``,
``explain``, ``outbox``)."""

from __future__ import annotations

import datetime as dt

import pytest

from crm_platform.errors import ValidationError
from crm_platform.runtime.history import explain_lines

from . import runtime_fixtures
from .runtime_fixtures import SYSTEM, audit_rows, closed_port, model, outbox_row, outbox_rows, stored, user

crm_app, crm = runtime_fixtures.crm_app, runtime_fixtures.crm  # the fixtures
make_crm, held = runtime_fixtures.make_crm, runtime_fixtures.held

NOW = dt.datetime(2026, 11, 23, 10, 0)
WELCOME, DACH, INTERNATIONAL = "Welcome new web leads", "Route DACH web leads", "Route international web leads"


def web_lead(number: int = 1, country: str = "DE", **extra) -> dict:
    return {
        "first_name": "Jane",
        "last_name": f"Doe {number}",
        "email": f"jane{number}@example.com",
        "source": "web",
        "country": country,
        **extra,
    }


def team(crm, name: str, *people: str) -> list[int]:
    """Create sales reps in team ``name``; their user ids, in creation order."""
    return [user(crm, f"{person}@example.com", roles=["sales"], teams=[name]).user_id for person in people]


@pytest.fixture
def dach(crm) -> list[int]:
    return team(crm, "sales-dach", "anna", "ben", "clara")


def statuses(crm) -> list[tuple[str, str]]:
    return [(row.kind, row.status) for row in outbox_rows(crm)]


def mails(crm) -> list:
    return list(crm.tables.Mail.select().order_by(crm.tables.Mail.id))


def activities(crm) -> list:
    Activity = model(crm, "activity")
    return list(Activity.select().order_by(Activity.id))


# --- planning in the change's transaction ----------------------------------------


def test_web_lead_plans_its_actions_in_the_create_transaction(crm, dach, held):
    lead = crm.records.create("lead", web_lead(), SYSTEM, "api")
    (create,) = audit_rows(crm, "lead", lead.id)
    rows = outbox_rows(crm)
    assert [(r.rule, r.path, r.kind) for r in rows] == [
        (WELCOME, "1", "send_email"),
        (DACH, "1", "assign"),
        (DACH, "2", "create"),
    ]
    assert all(r.key == f"{create.id}/{r.rule}/{r.path}" for r in rows)
    assert all((r.entity, r.record_id, r.created_at, r.attempts) == ("lead", lead.id, NOW, 0) for r in rows)
    assert [r.status for r in rows] == ["queued", "queued", "waiting"]
    assert rows[2].after_id == rows[1].id  # the activity waits for the assignment
    assert rows[1].payload["reason"] == {"country": "DE", "source": "web"}
    # Handed to the queue after commit; the follow-up is a timer three days later, in the same transaction.
    assert held.calls == [("send_email", rows[0].id, None), ("assign", rows[1].id, None)]
    (follow_up,) = crm.timers.pending()
    assert (follow_up.kind, follow_up.rule, follow_up.step, follow_up.record_id) == ("follow_up", WELCOME, "2", lead.id)
    assert (follow_up.key, follow_up.due_at) == (f"{create.id}/{WELCOME}/2", NOW + dt.timedelta(days=3))


def test_invalid_web_lead_plans_no_actions(crm, dach, held):
    with pytest.raises(ValidationError):
        crm.records.create("lead", web_lead(email="jane at example"), SYSTEM, "api")
    assert outbox_rows(crm) == [] and held.calls == [] and crm.timers.pending() == []
    crm.records.create("lead", web_lead(), SYSTEM, "api")
    assert len(outbox_rows(crm)) == 3 and len(crm.timers.pending()) == 1


def test_actions_are_rolled_back_with_the_change_that_planned_them(crm, dach, held, monkeypatch):
    plan = crm.outbox.plan

    def plan_then_fail(*args):
        plan(*args)
        assert len(outbox_rows(crm)) == 3 and len(crm.timers.pending()) == 1  # written, inside the transaction
        raise RuntimeError("the database went away")

    monkeypatch.setattr(crm.outbox, "plan", plan_then_fail)
    with pytest.raises(RuntimeError):
        crm.records.create("lead", web_lead(), SYSTEM, "api")
    assert model(crm, "lead").select().count() == 0
    assert audit_rows(crm) == [] and outbox_rows(crm) == [] and crm.timers.pending() == []
    assert held.calls == []  # nothing was handed over for a change that did not commit


# --- order, assignment ------------------------------------------------------------


def test_assignment_runs_before_the_activity_which_gets_the_new_owner(crm, dach, held):
    lead = crm.records.create("lead", web_lead(), SYSTEM, "api")
    assign, create = outbox_row(crm, "assign"), outbox_row(crm, "create")
    assert crm.runner.run(create.id) == "not runnable (done, taken or not due)"
    assert activities(crm) == []

    assert crm.runner.run(assign.id) == "assigned owner to Anna (sales-dach, round robin)"
    assert outbox_row(crm, "create").status == "queued"  # released and handed over
    assert held.calls[-1] == ("create", create.id, None)
    crm.runner.run(create.id)
    (activity,) = activities(crm)
    assert activity.owner == stored(crm, "lead", lead.id).owner == dach[0]
    assert (activity.lead_id, activity.subject, activity.kind) == (lead.id, "Call new web lead", "task")
    assert activity.due_date == dt.date(2026, 11, 25)


def test_web_lead_gets_owner_team_and_activity_inline(crm, dach):
    lead = crm.records.create("lead", web_lead(), SYSTEM, "api")
    saved = stored(crm, "lead", lead.id)
    assert (saved.owner, saved.team, saved.version) == (dach[0], "sales-dach", 2)
    assert [a.owner for a in activities(crm)] == [dach[0]]
    assert statuses(crm) == [("send_email", "done"), ("assign", "done"), ("create", "done")]
    assert [t.kind for t in crm.timers.pending()] == ["follow_up"]


def test_round_robin_gives_three_leads_to_three_members_in_id_order(crm, dach):
    leads = [crm.records.create("lead", web_lead(n), SYSTEM, "api") for n in (1, 2, 3, 4)]
    assert [stored(crm, "lead", lead.id).owner for lead in leads] == [*dach, dach[0]]


def test_round_robin_skips_an_away_member(crm, dach):
    crm.directory.set_flags(dach[1], away=True)
    leads = [crm.records.create("lead", web_lead(n), SYSTEM, "api") for n in (1, 2, 3)]
    assert [stored(crm, "lead", lead.id).owner for lead in leads] == [dach[0], dach[2], dach[0]]


def test_round_robin_with_nobody_available_fails_the_assignment_for_good(crm, dach):
    for member in dach:
        crm.directory.set_flags(member, away=True)
    lead = crm.records.create("lead", web_lead(), SYSTEM, "api")
    assign = outbox_row(crm, "assign")
    assert (assign.status, assign.attempts) == ("failed", 1)
    assert assign.error == "team 'sales-dach' has no member who is active and not away"
    assert outbox_row(crm, "create").status == "waiting"
    assert stored(crm, "lead", lead.id).owner is None
    errors = [e for e in crm.history.entries("lead", lead.id) if e.kind == "error"]
    assert [e.summary for e in errors] == [
        "assign (rule 'Route DACH web leads') failed: team 'sales-dach' has no member who is active and not away"
    ]


def test_load_balancing_picks_the_member_with_the_fewest_open_leads(crm):
    frank, grace, hank = team(crm, "sales-us", "frank", "grace", "hank")
    team(crm, "sales-intl", "ines")

    def existing(owner, number, closed=False):
        lead = crm.records.create(
            "lead", {"last_name": f"Old {number}", "source": "event", "owner": owner}, SYSTEM, "rule"
        )
        if closed:
            crm.records.transition("lead", lead.id, "disqualified", SYSTEM, "rule", data={"lost_reason": "other"})

    for number, (owner, closed) in enumerate(
        [(frank, False), (frank, False), (grace, False), (grace, True), (grace, True), (hank, False), (hank, False)]
    ):
        existing(owner, number, closed)

    first = crm.records.create("lead", web_lead(1, "US"), SYSTEM, "api")
    assert (stored(crm, "lead", first.id).owner, stored(crm, "lead", first.id).team) == (grace, "sales-us")
    # Now each has two open leads: the tie goes to the lowest id.
    second = crm.records.create("lead", web_lead(2, "US"), SYSTEM, "api")
    assert stored(crm, "lead", second.id).owner == frank
    assert outbox_row(crm, "assign", second.id).result == "assigned owner to Frank (sales-us, load balanced)"
    assert outbox_row(crm, "assign", second.id).rule == INTERNATIONAL


# --- email and follow-up ----------------------------------------------------------


def test_welcome_email_is_kept_without_smtp_and_shown_on_the_timeline(crm, dach):
    lead = crm.records.create("lead", web_lead(), SYSTEM, "api")
    (mail,) = mails(crm)
    assert (mail.status, mail.recipient, mail.entity, mail.record_id) == ("kept", "jane1@example.com", "lead", lead.id)
    assert mail.subject == "Thanks for your interest, Jane"
    assert "Hello Jane," in mail.body
    (email,) = [e for e in crm.history.entries("lead", lead.id) if e.kind == "email"]
    assert email.summary == "email 'welcome' sent to jane1@example.com: Thanks for your interest, Jane"
    assert (email.rule, email.definition_version) == (WELCOME, 1)


def test_lead_without_email_gets_no_welcome(crm, dach):
    crm.records.create("lead", web_lead(email=None), SYSTEM, "api")
    assert mails(crm) == []
    assert [row.rule for row in outbox_rows(crm)] == [DACH, DACH]


def test_follow_up_waits_three_days_then_sends_the_nudge(crm, dach, clock):
    crm.records.create("lead", web_lead(), SYSTEM, "api")
    (follow_up,) = crm.timers.pending()
    assert (follow_up.status, follow_up.due_at) == ("pending", NOW + dt.timedelta(days=3))
    assert crm.timers.fire_due() == 0  # not due yet

    clock.advance(days=3)
    assert crm.timers.fire_due() == 1  # tests/test_timers.py has the sequences and their stop conditions
    assert crm.timers.pending() == []
    assert [m.subject for m in mails(crm)] == ["Thanks for your interest, Jane", "Can we help you, Jane?"]
    nudge = outbox_rows(crm)[-1]
    assert (nudge.kind, nudge.path, nudge.status, nudge.key) == ("send_email", "2.1", "done", f"{follow_up.key}.1")


def test_follow_up_is_skipped_when_the_lead_has_moved_on(crm, dach, clock):
    lead = crm.records.create("lead", web_lead(), SYSTEM, "api")
    crm.records.transition("lead", lead.id, "contacted", SYSTEM, "form")
    clock.advance(days=3)
    assert crm.timers.fire_due() == 1
    (follow_up,) = crm.timers.pending(include_done=True)
    assert follow_up.status == "skipped"
    assert len(mails(crm)) == 1


def test_actions_of_a_deleted_lead_are_skipped(crm, dach, held):
    lead = crm.records.create("lead", web_lead(), SYSTEM, "api")
    crm.records.delete("lead", lead.id, SYSTEM, "form")
    held.release()
    crm.runner.run(outbox_row(crm, "assign").id)
    assert outbox_row(crm, "assign").status == "skipped"
    assert outbox_row(crm, "assign").result == f"Lead #{lead.id} was deleted"
    assert outbox_row(crm, "create").status == "skipped"  # released by the skip, then skipped itself
    assert activities(crm) == []
    assert crm.tables.RoundRobin.select().count() == 0


def test_a_welcome_email_for_a_lead_deleted_before_it_ran_is_skipped(crm, dach, held):
    lead = crm.records.create("lead", web_lead(), SYSTEM, "api")
    crm.records.delete("lead", lead.id, SYSTEM, "form")
    held.release()
    email = outbox_row(crm, "send_email")
    assert crm.runner.run(email.id) == f"skipped: Lead #{lead.id} was deleted"
    assert outbox_row(crm, "send_email").status == "skipped"
    assert mails(crm) == []


# --- once -----------------------------------------------------------------------------


def test_running_an_outbox_row_again_does_nothing(crm, dach):
    lead = crm.records.create("lead", web_lead(), SYSTEM, "api")
    audits = len(audit_rows(crm))
    for row in outbox_rows(crm):
        if row.status == "done":
            assert crm.runner.run(row.id) == "not runnable (done, taken or not due)"
    assert len(mails(crm)) == 1 and len(activities(crm)) == 1
    assert len(audit_rows(crm)) == audits
    assert stored(crm, "lead", lead.id).owner == dach[0]
    assert crm.tables.RoundRobin.get_by_id("sales-dach").last_user_id == dach[0]


def test_email_whose_row_runs_again_is_not_sent_twice(crm, dach):
    crm.records.create("lead", web_lead(), SYSTEM, "api")
    send = outbox_row(crm, "send_email")
    # As if the worker's completion had been lost and the row was queued again.
    crm.tables.Outbox.update(status="queued").where(crm.tables.Outbox.id == send.id).execute()
    assert crm.runner.run(send.id) == "already sent"
    assert len(mails(crm)) == 1
    assert outbox_row(crm, "send_email").status == "done"


# --- failures and retries ------------------------------------------------------------


def test_transient_failure_backs_off_exponentially_then_fails(crm, dach, held, clock):
    crm.records.create("lead", web_lead(), SYSTEM, "api")
    send = outbox_row(crm, "send_email")
    dues = []
    for attempt in range(1, 5):
        row = crm.outbox.claim(send.id)
        assert (row.status, row.attempts) == ("running", attempt)
        assert crm.outbox.fail(row, "421 try again later", permanent=False) is False
        row = outbox_row(crm, "send_email")
        assert (row.status, row.error) == ("retrying", "421 try again later")
        dues.append(row.due_at - clock.at)
        assert crm.outbox.claim(send.id) is None  # not due yet
        clock.advance(seconds=dues[-1].total_seconds())
    assert [d.total_seconds() for d in dues] == [10, 20, 40, 80]

    row = crm.outbox.claim(send.id)
    assert crm.outbox.fail(row, "421 try again later", permanent=False) is True
    row = outbox_row(crm, "send_email")
    assert (row.status, row.attempts, row.error) == ("failed", 5, "421 try again later")
    assert crm.outbox.claim(send.id) is None


def test_permanent_failure_fails_at_once(crm, dach, held):
    crm.records.create("lead", web_lead(), SYSTEM, "api")
    row = crm.outbox.claim(outbox_row(crm, "send_email").id)
    assert crm.outbox.fail(row, "550 no such mailbox", permanent=True) is True
    assert (outbox_row(crm, "send_email").status, outbox_row(crm, "send_email").attempts) == ("failed", 1)


def smtp_down(make_crm):
    """An engine whose SMTP server refuses connections."""
    return make_crm(SMTP_URL=f"smtp://127.0.0.1:{closed_port()}")


def test_first_failed_attempt_leaves_the_row_retrying(make_crm):
    crm = smtp_down(make_crm)
    team(crm, "sales-dach", "anna")
    crm.records.create("lead", web_lead(), SYSTEM, "api")
    send = outbox_row(crm, "send_email")
    assert send.attempts == 1
    assert send.error.startswith("ConnectionRefusedError")
    assert send.due_at == NOW + dt.timedelta(seconds=10)
    assert send.status == "retrying"


def test_unreachable_mail_server_is_retried_then_failed_with_an_error_on_the_timeline(make_crm, clock):
    crm = smtp_down(make_crm)
    team(crm, "sales-dach", "anna")
    lead = crm.records.create("lead", web_lead(), SYSTEM, "api")
    send = outbox_row(crm, "send_email")
    for attempt in range(2, 5):
        clock.at = outbox_row(crm, "send_email").due_at
        assert crm.runner.run(send.id).startswith("failed: ")
        row = outbox_row(crm, "send_email")
        assert (row.status, row.attempts) == ("retrying", attempt)
        assert row.due_at - clock.at == dt.timedelta(seconds=10 * 2 ** (attempt - 1))
    clock.at = outbox_row(crm, "send_email").due_at
    crm.runner.run(send.id)
    row = outbox_row(crm, "send_email")
    assert (row.status, row.attempts) == ("failed", 5)
    assert row.error.startswith("ConnectionRefusedError: ")
    assert mails(crm) == []

    entries = crm.history.entries("lead", lead.id)
    assert [e.kind for e in entries if e.rule == WELCOME] == ["retry"] * 4 + ["error"]
    error = entries[-1]
    assert error.summary.startswith("send email (rule 'Welcome new web leads') failed: ConnectionRefusedError")
    assert error.definition_version == 1
    # The other rule's actions are not held up by the failing email.
    assert stored(crm, "lead", lead.id).owner is not None


def test_admin_retry_runs_a_failed_action_again(crm, dach, held):
    crm.records.create("lead", web_lead(), SYSTEM, "api")
    send = outbox_row(crm, "send_email")
    crm.outbox.fail(crm.outbox.claim(send.id), "550 mailbox full", permanent=True)
    with pytest.raises(LookupError, match=f"action {send.id + 2} is not a failed action"):
        crm.outbox.retry(send.id + 2)  # the assignment: queued, not failed
    held.release()

    crm.outbox.retry(send.id)
    row = outbox_row(crm, "send_email")
    assert (row.status, row.attempts, row.error) == ("done", 1, None)
    assert len(mails(crm)) == 1


# --- the sweep --------------------------------------------------------------------


def test_sweep_requeues_a_running_row_whose_lease_expired(crm, dach, held, clock):
    lead = crm.records.create("lead", web_lead(), SYSTEM, "api")
    assign = outbox_row(crm, "assign")
    assert crm.outbox.claim(assign.id).status == "running"  # its worker then dies
    held.release()
    clock.advance(seconds=299)
    assert crm.outbox.sweep() == 0
    assert outbox_row(crm, "assign").status == "running"

    clock.advance(seconds=2)  # past the 300 s lease
    assert crm.outbox.sweep() == 1
    row = outbox_row(crm, "assign")
    assert (row.status, row.attempts) == ("done", 2)
    assert stored(crm, "lead", lead.id).owner == dach[0]
    assert outbox_row(crm, "create").status == "done"


def test_sweep_requeues_a_pending_row_its_handoff_missed(crm, dach, held, clock):
    held.failing = True  # the queue is unreachable when the change commits
    crm.records.create("lead", web_lead(), SYSTEM, "api")
    assert statuses(crm) == [("send_email", "pending"), ("assign", "pending"), ("create", "waiting")]
    held.release()
    clock.advance(seconds=4)
    assert crm.outbox.sweep() == 0  # within the hand-off's grace
    clock.advance(seconds=2)
    assert crm.outbox.sweep() == 2
    assert statuses(crm) == [("send_email", "done"), ("assign", "done"), ("create", "done")]


# --- explaining ------------------------------------------------------------------------


def test_explain_names_the_rule_its_version_and_the_reason(crm, dach):
    lead = crm.records.create("lead", web_lead(), SYSTEM, "api")
    lines = explain_lines(crm.history.entries("lead", lead.id, automated_only=True), "Lead #1 'Jane Doe 1'")
    assert lines[0] == "Automated history of Lead #1 'Jane Doe 1'"
    assert "2026-11-23 10:00:00  changed owner: (empty) -> 1, team: (empty) -> sales-dach" in lines
    assert "    by rule 'Route DACH web leads' (v1), because country = DE and source = web" in lines
    assert "    by rule 'Welcome new web leads' (v1), because email = jane1@example.com and source = web" in lines

    manual = crm.records.create("lead", {"last_name": "Manual", "source": "event"}, SYSTEM, "form")
    lines = explain_lines(crm.history.entries("lead", manual.id, automated_only=True), "Lead #2")
    assert lines == ["Automated history of Lead #2", "  (no automated changes)"]


# --- commands ---------------------------------------------------------------------------


@pytest.fixture
def cli(crm_app):
    return crm_app.test_cli_runner()


def test_create_admin_creates_a_superuser_once(cli, crm):
    result = cli.invoke(args=["create-admin", "--email", "a@x.com", "--name", "A", "--password", "secret"])
    assert (result.exit_code, result.output) == (0, "admin a@x.com created (user #1)\n")
    info = crm.directory.find("a@x.com")
    assert (info.superuser, info.roles, info.name) == (True, ["admin"], "A")
    assert crm.directory.check_password("a@x.com", "secret") == info.id

    again = cli.invoke(args=["create-admin", "--email", "A@x.com", "--name", "B", "--password", "other"])
    assert again.exit_code == 1
    assert "email: is already used by another user" in again.output
    assert crm.directory.count() == 1


def test_seed_demo_creates_the_demo_users_once(cli, crm):
    assert cli.invoke(args=["seed-demo", "--no-records"]).output == "12 demo users created\n"
    assert cli.invoke(args=["seed-demo", "--no-records"]).output == "0 demo users created\n"
    assert crm.directory.check_password("anna@demo.example.com", "demo") is not None
    assert len(crm.directory.team_members("sales-dach")) == 4


def test_seed_demo_fills_an_empty_company_with_sample_records_once(cli, crm):
    first = cli.invoke(args=["seed-demo"]).output.splitlines()
    assert first[0] == "12 demo users created"
    assert first[1].endswith(" demo records created") and int(first[1].split()[0]) > 50
    deals = crm.compiled.entities["deal"].model
    assert {d.stage for d in deals.select()} >= {"prospecting", "proposal", "won", "lost"}
    assert cli.invoke(args=["seed-demo"]).output == "0 demo users created\n0 demo records created\n"


def test_explain_command_prints_the_automated_history(cli, crm):
    cli.invoke(args=["seed-demo", "--no-records"])
    crm.records.create("lead", web_lead(), SYSTEM, "api")
    result = cli.invoke(args=["explain", "lead", "1"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "Automated history of Lead #1 'Jane Doe 1'"
    assert "    by rule 'Route DACH web leads' (v1), because country = DE and source = web" in lines

    missing = cli.invoke(args=["explain", "lead", "99"])
    assert missing.exit_code == 1 and "there is no Lead #99" in missing.output


def test_outbox_commands_list_failed_actions_and_retry_only_those(cli, crm, dach, held):
    crm.records.create("lead", web_lead(), SYSTEM, "api")
    send = outbox_row(crm, "send_email")
    crm.outbox.fail(crm.outbox.claim(send.id), "550 mailbox full", permanent=True)

    listed = cli.invoke(args=["outbox", "list", "--status", "failed"])
    assert listed.exit_code == 0
    assert listed.output.splitlines() == [
        f"#{send.id} failed   send_email      lead #1  rule 'Welcome new web leads'  error: 550 mailbox full"
    ]
    assert len(cli.invoke(args=["outbox", "list"]).output.splitlines()) == 3

    assign = outbox_row(crm, "assign")
    refused = cli.invoke(args=["outbox", "retry", str(assign.id)])
    assert refused.exit_code == 1
    assert f"action {assign.id} is not a failed action" in refused.output
    assert outbox_row(crm, "assign").status == "queued"

    retried = cli.invoke(args=["outbox", "retry", str(send.id)])
    assert (retried.exit_code, retried.output) == (0, f"action #{send.id} queued again\n")
    assert outbox_row(crm, "send_email").status == "queued"  # the queue is held in this test
    assert cli.invoke(args=["outbox", "list", "--status", "failed"]).output == ""
