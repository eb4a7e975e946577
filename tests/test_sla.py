"""SLA policies: business-time arithmetic, a ticket's SLA from its history, the
escalation chain, and the checks of ``sla/*.yaml``.

The engine tests run the project's pack with ``tests/fixtures/sla/support.yaml``
as its policy (office hours 09:00-12:00 and 13:00-17:00 in Berlin, Monday
2026-12-07 a holiday; high priority: 1 h to respond, 4 h to resolve).
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import threading
from zoneinfo import ZoneInfo

import pytest

from crm_platform.runtime import business_hours as bh
from crm_platform.runtime import sla
from crm_platform.runtime.clock import FixedClock
from crm_platform.runtime.due_work import run_due_work
from crm_platform.seed import DEMO_PASSWORD, seed_demo

from .conftest import FIXTURES, PROJECT, findings_of
from .live import Worker, live_config, worker_env
from .runtime_fixtures import SYSTEM, build_app
from .web_fixtures import cheap_password_hashes, user_id

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = tuple([((9 * 60, 12 * 60), (13 * 60, 17 * 60))] * 5 + [(), ()])
CAL = bh.Calendar(BERLIN, OFFICE, frozenset({dt.date(2026, 12, 7)}))
PACK_PARTS = ("pack.yaml", "schemas", "workflows", "rules", "templates", "segments")


def berlin(*args) -> dt.datetime:
    """A Berlin wall-clock time as naive UTC (how the platform stores moments)."""
    return dt.datetime(*args, tzinfo=BERLIN).astimezone(dt.UTC).replace(tzinfo=None)


def hours(n: float) -> dt.timedelta:
    return dt.timedelta(hours=n)


# --- business-time arithmetic -------------------------------------------------------------------


def test_business_time_skips_the_night():
    # Thursday 2026-12-03 16:00 -> Friday 10:00: one hour each side of the night.
    assert bh.elapsed(CAL, berlin(2026, 12, 3, 16), berlin(2026, 12, 4, 10)) == hours(2)
    assert bh.add(CAL, berlin(2026, 12, 3, 16, 30), hours(1)) == berlin(2026, 12, 4, 9, 30)
    assert bh.elapsed(CAL, berlin(2026, 12, 4, 10), berlin(2026, 12, 3, 16)) == dt.timedelta()  # backwards


def test_business_time_skips_the_weekend_and_a_holiday():
    # Friday 2026-11-27 16:00 -> Monday 10:00 (a working Monday): 2 hours.
    assert bh.elapsed(CAL, berlin(2026, 11, 27, 16), berlin(2026, 11, 30, 10)) == hours(2)
    # Friday 2026-12-04 16:00 -> Tuesday 10:00, Monday the 7th a holiday: still 2 hours.
    assert bh.elapsed(CAL, berlin(2026, 12, 4, 16), berlin(2026, 12, 8, 10)) == hours(2)
    assert bh.add(CAL, berlin(2026, 12, 4, 16), hours(4)) == berlin(2026, 12, 8, 12)
    # Started on a Saturday: the clock waits for Monday morning.
    assert bh.add(CAL, berlin(2026, 11, 28, 11), hours(1)) == berlin(2026, 11, 30, 10)


def test_business_time_with_several_ranges_a_day():
    assert bh.elapsed(CAL, berlin(2026, 11, 30, 11), berlin(2026, 11, 30, 14)) == hours(2)  # lunch 12-13
    assert bh.add(CAL, berlin(2026, 11, 30, 11, 30), hours(1)) == berlin(2026, 11, 30, 13, 30)
    assert bh.add(CAL, berlin(2026, 11, 30, 12, 15), hours(1)) == berlin(2026, 11, 30, 14)
    assert bh.is_open(CAL, berlin(2026, 11, 30, 13)) and not bh.is_open(CAL, berlin(2026, 11, 30, 12, 30))


def test_a_night_shift_runs_past_midnight():
    night = bh.Calendar(BERLIN, (((22 * 60, 30 * 60),),) + ((),) * 6)  # Monday 22:00 - Tuesday 06:00
    assert bh.elapsed(night, berlin(2026, 11, 30, 23), berlin(2026, 12, 1, 5)) == hours(6)
    assert bh.add(night, berlin(2026, 11, 30, 21), hours(8)) == berlin(2026, 12, 1, 6)
    assert bh.add(night, berlin(2026, 11, 30, 21), hours(9)) == berlin(2026, 12, 7, 23)  # a week later


def test_business_time_across_a_daylight_saving_change():
    sundays = bh.Calendar(BERLIN, ((),) * 6 + (((0, 24 * 60),),))  # open all Sunday, local time
    assert bh.elapsed(sundays, berlin(2026, 10, 24, 12), berlin(2026, 10, 26, 12)) == hours(25)  # clocks go back
    assert bh.elapsed(sundays, berlin(2026, 3, 28, 12), berlin(2026, 3, 30, 12)) == hours(23)  # clocks go forward
    # Office hours keep their wall-clock times: Friday before the change 16:00 (14:00 UTC),
    # plus 2 hours is Monday 10:00 CET, which is 09:00 UTC.
    due = bh.add(CAL, berlin(2026, 10, 23, 16), hours(2))
    assert due == dt.datetime(2026, 10, 26, 9, 0) == berlin(2026, 10, 26, 10)
    assert bh.elapsed(CAL, dt.datetime(2026, 10, 23, 14, 0), due) == hours(2)


def test_around_the_clock_counts_every_hour():
    always = bh.Calendar.around_the_clock("Europe/Berlin")
    start = berlin(2026, 12, 4, 16)
    assert bh.elapsed(always, start, start + hours(80)) == hours(80)
    assert bh.add(always, start, hours(80)) == start + hours(80)


def test_a_calendar_that_is_never_open_is_refused():
    closed = bh.Calendar(BERLIN)
    with pytest.raises(ValueError, match="no open time"):
        bh.add(closed, berlin(2026, 12, 4, 16), hours(1))


# --- the engine -----------------------------------------------------------------------------------


def sla_pack(tmp_path, policy: str = "support.yaml"):
    """The project's pack with a policy from tests/fixtures/sla (good or broken) as sla/support.yaml."""
    target = tmp_path / "pack"
    for part in PACK_PARTS:
        source = PROJECT / part
        if source.is_dir():
            shutil.copytree(source, target / part)
        elif source.exists():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target / part)
    (target / "sla").mkdir()
    shutil.copy(FIXTURES / "sla" / policy, target / "sla" / "support.yaml")
    return target


@pytest.fixture
def sla_clock():
    return FixedClock(berlin(2026, 12, 4, 16))  # Friday 16:00, the Monday after is a holiday


@pytest.fixture
def sla_app(tmp_path, sla_clock, monkeypatch):
    cheap_password_hashes(monkeypatch)
    app = build_app(
        tmp_path, sla_clock, PACK_DIR=str(sla_pack(tmp_path)), WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False
    )
    engine = app.extensions["crm"]
    engine.init_db()
    seed_demo(engine.directory)
    yield app
    engine.database.close()


@pytest.fixture
def crm(sla_app):
    return sla_app.extensions["crm"]


def ticket(crm, **data):
    values = {"subject": "Printer on fire", "category": "technical", "priority": "high", **data}
    return crm.records.create("ticket", values, SYSTEM, "form")


def state_of(crm, record_id: int) -> sla.SlaState:
    ce = crm.compiled.entities["ticket"]
    record = ce.model.get_by_id(record_id)
    return sla.sla_of(crm, ce, [record], crm.clock.utcnow())[record_id]


def at(clock, moment: dt.datetime) -> None:
    clock.at = moment


def notifications(crm, record_id: int) -> list[tuple[str, str]]:
    N, U = crm.tables.Notification, crm.tables.User
    rows = N.select(U.name, N.message).join(U).where(N.key.startswith("sla:") & (N.record_id == record_id))
    return sorted(rows.tuples())


def test_breach_chain_over_a_weekend_and_a_holiday_fires_each_step_once_at_its_time(crm, sla_clock):
    gina, ivan = user_id(crm, "gina"), user_id(crm, "ivan")
    record = ticket(crm, owner=gina)  # high: routed to the Support Level 2 queue, whose lead is Ivan
    assert crm.records.get("ticket", record.id, SYSTEM).team == "support-l2"
    at(sla_clock, berlin(2026, 12, 4, 16, 20))
    crm.records.transition("ticket", record.id, "open", SYSTEM, "form")  # first response after 20 minutes

    state = state_of(crm, record.id)
    assert state.policy.name == "support" and state.priority == "high"
    assert state.targets["first_response"].status == sla.MET
    # 4 business hours: Friday 16-17, then Tuesday 9-12 (weekend, Monday holiday).
    assert state.targets["resolution"].due_at == berlin(2026, 12, 8, 12)
    assert state.status == sla.ON_TRACK and state.current.name == "resolution"

    steps = [
        (berlin(2026, 12, 8, 11, 12), 80),  # 3 h 12 min used: Fri 16-17, Tue 9-11:12
        (berlin(2026, 12, 8, 12, 0), 100),
        (berlin(2026, 12, 8, 15, 0), 150),  # 6 h: Tue 9-12 and 13-15, after lunch
    ]
    for moment, _ in steps:
        at(sla_clock, moment - dt.timedelta(minutes=1))
        assert sla.run_due(crm) == 0, f"nothing is due a minute before {moment}"
        at(sla_clock, moment)
        assert sla.run_due(crm) == 1
        assert sla.run_due(crm) == 0  # once
    at(sla_clock, berlin(2026, 12, 9, 12))
    assert sla.run_due(crm) == 0  # nothing left in the chain

    Escalation = crm.tables.SlaEscalation
    fired = list(Escalation.select().where(Escalation.record_id == record.id).order_by(Escalation.step))
    assert [(e.target, e.step, e.percent, e.fired_at) for e in fired] == [
        ("resolution", index, percent, moment) for index, (moment, percent) in enumerate(steps)
    ]
    assert crm.records.get("ticket", record.id, SYSTEM).owner == ivan
    lines = [e.summary for e in crm.history.entries("ticket", record.id) if e.summary.startswith("SLA ")]
    assert lines == [
        "SLA resolution 80% used (due Tue 12:00): notified Gina Lopez",
        "SLA resolution 100% used (due Tue 12:00): reassigned to Ivan Petrov, the team lead of Support Level 2",
        "SLA resolution 150% used (due Tue 12:00): notified Ivan Petrov",
    ]
    assert notifications(crm, record.id) == [
        ("Gina Lopez", f"SLA resolution 80% used (due Tue 12:00) on Ticket #{record.id} 'Printer on fire'"),
        ("Ivan Petrov", "Ticket far past its SLA"),
    ]
    # The reassignment went through the write path, explained by the policy.
    (change,) = [e for e in crm.history.entries("ticket", record.id) if e.kind == "update" and "owner" in e.changes]
    assert change.changes["owner"] == [gina, ivan] and change.rule == "SLA policy 'Support SLA'"
    assert state_of(crm, record.id).status == sla.BREACHED


def test_reassignment_skips_a_team_lead_who_is_away_and_says_so(crm, sla_clock):
    gina, ivan = user_id(crm, "gina"), user_id(crm, "ivan")
    crm.directory.set_flags(ivan, away=True)  # away: no new assignments, escalations or not
    record = ticket(crm, owner=gina)
    crm.records.transition("ticket", record.id, "open", SYSTEM, "form")
    at(sla_clock, berlin(2026, 12, 8, 12))  # resolution 100 %: the reassign step
    assert sla.run_due(crm) == 2  # resolution 80 % and 100 %
    assert crm.records.get("ticket", record.id, SYSTEM).owner == gina
    lines = [e.summary for e in crm.history.entries("ticket", record.id) if e.summary.startswith("SLA ")]
    assert lines[-1] == (
        "SLA resolution 100% used (due Tue 12:00): Ivan Petrov, the team lead of Support Level 2, is away; "
        "not reassigned"
    )


def test_a_step_fires_once_even_when_two_workers_reach_it(crm, sla_clock):
    record = ticket(crm, owner=user_id(crm, "gina"))
    at(sla_clock, berlin(2026, 12, 8, 12))
    state = state_of(crm, record.id)
    ce = crm.compiled.entities["ticket"]
    step = state.policy.steps("resolution")[0]
    target = state.targets["resolution"]
    assert sla.fire_step(crm, ce, record.id, state.policy, step, target, sla_clock.utcnow()) is True
    # A second worker that read the record before the first committed: refused by the unique row.
    assert sla.fire_step(crm, ce, record.id, state.policy, step, target, sla_clock.utcnow()) is False
    assert len(notifications(crm, record.id)) == 1
    # The periodic due work runs the scan: the other steps due by now (first response 100 %, resolution 100 %).
    assert run_due_work(crm)["sla_escalations"] == 2


def test_two_workers_scanning_at_once_fire_each_step_once(tmp_path, crm, sla_clock):
    record = ticket(crm, owner=user_id(crm, "gina"))
    at(sla_clock, berlin(2026, 12, 8, 16))  # every step of both chains is due
    # A second engine on the same database: another worker process's view.
    other = build_app(tmp_path, sla_clock, PACK_DIR=str(crm.company.pack_dir)).extensions["crm"]
    start, counts = threading.Barrier(2), []

    def scan(engine):
        start.wait()
        with engine.database.connection_context():
            counts.append(sla.run_due(engine))

    workers = [threading.Thread(target=scan, args=(engine,)) for engine in (crm, other)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    other.database.close()
    assert sum(counts) == 4  # first response 100 %; resolution 80, 100, 150 %
    Escalation = crm.tables.SlaEscalation
    assert Escalation.select().where(Escalation.record_id == record.id).count() == 4
    assert len(notifications(crm, record.id)) == 3  # Gina twice (two steps), Ivan once
    timeline = [e for e in crm.history.entries("ticket", record.id) if e.summary.startswith("SLA ")]
    assert len(timeline) == 4


def test_waiting_on_the_customer_pauses_the_clock_and_moves_the_due_time(crm, sla_clock):
    at(sla_clock, berlin(2026, 11, 30, 9))  # Monday
    record = ticket(crm)
    at(sla_clock, berlin(2026, 11, 30, 9, 10))
    crm.records.transition("ticket", record.id, "open", SYSTEM, "form")
    first_due = state_of(crm, record.id).targets["resolution"].due_at
    assert first_due == berlin(2026, 11, 30, 14)  # 9-12 and 13-14

    at(sla_clock, berlin(2026, 11, 30, 10))
    crm.records.transition("ticket", record.id, "waiting_on_customer", SYSTEM, "form")  # 1 h used
    at(sla_clock, berlin(2026, 11, 30, 15))
    paused = state_of(crm, record.id)
    assert paused.status == sla.PAUSED and paused.targets["resolution"].status == sla.PAUSED
    assert paused.targets["resolution"].used == hours(1)
    assert paused.paused == [(berlin(2026, 11, 30, 10), None)]
    assert paused.due_at == berlin(2026, 12, 1, 10)  # 3 h left, counted from now: Mon 15-17, Tue 9-10
    assert sla.run_due(crm) == 0  # 5 hours after the first due time, but paused: nothing fires

    at(sla_clock, berlin(2026, 12, 1, 10))  # the customer replied on Tuesday 10:00
    crm.records.transition("ticket", record.id, "open", SYSTEM, "form")
    resumed = state_of(crm, record.id)
    assert resumed.status == sla.ON_TRACK and resumed.paused == [(berlin(2026, 11, 30, 10), berlin(2026, 12, 1, 10))]
    # Paused business time: Mon 10-12, 13-17 and Tue 9-10 = 7 h; the due time moved by exactly that.
    assert resumed.due_at == berlin(2026, 12, 1, 14)
    assert bh.elapsed(CAL, first_due, resumed.due_at) == hours(7)
    at(sla_clock, berlin(2026, 12, 1, 13, 59))
    assert resumed.targets["resolution"].used == hours(1) and sla.run_due(crm) == 1  # the 80 % step only


def test_a_ticket_answered_and_resolved_in_time_meets_its_sla(crm, sla_clock):
    at(sla_clock, berlin(2026, 11, 30, 9))
    record = ticket(crm, owner=user_id(crm, "gina"))
    at(sla_clock, berlin(2026, 11, 30, 9, 45))
    crm.records.transition("ticket", record.id, "open", SYSTEM, "form")
    at(sla_clock, berlin(2026, 11, 30, 11))
    crm.records.transition("ticket", record.id, "resolved", SYSTEM, "form", data={"resolution": "Fan replaced"})
    at(sla_clock, berlin(2026, 12, 3, 11))  # days later
    state = state_of(crm, record.id)
    assert state.status == sla.MET and state.current is None
    assert state.targets["first_response"].done_at == berlin(2026, 11, 30, 9, 45)
    assert state.targets["resolution"].done_at == berlin(2026, 11, 30, 11)
    assert state.percent == 50.0  # 2 of 4 hours
    assert sla.run_due(crm) == 0

    # Reopened: the clock resumes where it stopped.
    crm.records.transition("ticket", record.id, "open", SYSTEM, "form")
    at(sla_clock, berlin(2026, 12, 3, 12))
    reopened = state_of(crm, record.id)
    assert reopened.status == sla.ON_TRACK and reopened.targets["resolution"].used == hours(3)


def test_a_late_first_response_is_breached_and_tickets_outside_the_policy_have_none(crm, sla_clock):
    at(sla_clock, berlin(2026, 11, 30, 9))
    late = ticket(crm)
    feature = ticket(crm, category="feature_request")  # applies_when excludes it
    at(sla_clock, berlin(2026, 11, 30, 10, 30))
    crm.records.transition("ticket", late.id, "open", SYSTEM, "form")
    ce = crm.compiled.entities["ticket"]
    states = sla.sla_of(crm, ce, list(ce.model.select()), sla_clock.utcnow())
    assert set(states) == {late.id} and feature.id not in states
    assert states[late.id].targets["first_response"].status == sla.BREACHED
    assert states[late.id].status == sla.BREACHED  # a breach stays visible after the response


def test_the_record_page_shows_the_policy_due_times_and_a_pause(sla_app, crm, sla_clock):
    at(sla_clock, berlin(2026, 11, 30, 9))
    record = ticket(crm, owner=user_id(crm, "gina"))
    at(sla_clock, berlin(2026, 11, 30, 9, 10))
    crm.records.transition("ticket", record.id, "open", SYSTEM, "form")
    crm.records.transition("ticket", record.id, "waiting_on_customer", SYSTEM, "form")
    client = sla_app.test_client()
    response = client.post("/login", data={"email": "gina@demo.example.com", "password": DEMO_PASSWORD})
    assert response.status_code == 302

    at(sla_clock, berlin(2026, 11, 30, 15))
    html = client.get(f"/r/ticket/{record.id}").get_data(as_text=True)
    start = html.index('aria-label="SLA"')
    card = html[start : html.index("</section>", start)]
    assert "SLA: Support SLA" in card and '<span class="badge">Paused</span>' in card
    assert "First response</dt><dd>Met" in card and "Resolution</dt><dd>Paused" in card
    # Due times as stored moments (UTC) and shown in the company's time zone.
    assert '<time datetime="2026-11-30T09:00:00Z">30.11.2026, 10:00:00</time>' in card  # response due
    # Resolution: 10 minutes used, 3 h 50 left if it ran again now: Monday 15-17, Tuesday 9-10:50.
    assert f'<time datetime="{berlin(2026, 12, 1, 10, 50).isoformat()}Z">01.12.2026, 10:50:00</time>' in card
    assert "if the clock ran again now" in card

    feature = ticket(crm, category="feature_request")  # no policy applies: no SLA card
    assert 'aria-label="SLA"' not in client.get(f"/r/ticket/{feature.id}").get_data(as_text=True)


def test_steps_can_notify_a_team_and_its_lead_and_raise_the_priority(tmp_path, sla_clock, monkeypatch):
    cheap_password_hashes(monkeypatch)
    pack = sla_pack(tmp_path)
    policy = pack / "sla" / "support.yaml"
    policy.write_text(
        policy.read_text().replace(
            "    - {at: 100, notify: owner}\n",
            "    - {at: 100, notify: owner}\n    - {at: 100, notify: team}\n"
            "    - {at: 100, notify: team_lead}\n    - {at: 100, set_priority: urgent}\n",
            1,
        )
    )
    app = build_app(tmp_path, sla_clock, PACK_DIR=str(pack))
    engine = app.extensions["crm"]
    engine.init_db()
    seed_demo(engine.directory)
    try:
        at(sla_clock, berlin(2026, 11, 30, 9))
        record = ticket(engine, priority="normal")  # the support queue, nobody assigned yet
        at(sla_clock, berlin(2026, 11, 30, 13))  # 3 of 4 hours: 75 %
        assert sla.run_due(engine) == 0
        at(sla_clock, berlin(2026, 11, 30, 14))  # the first response is due now
        assert sla.run_due(engine) == 4
        lines = [e.summary for e in engine.history.entries("ticket", record.id) if e.summary.startswith("SLA ")]
        assert lines == [
            "SLA first response 100% used (due Mon 14:00): nobody to notify (the assignee names no active user)",
            "SLA first response 100% used (due Mon 14:00): notified Gina Lopez, Hugo Berg, Ivan Petrov",
            "SLA first response 100% used (due Mon 14:00): notified Ivan Petrov",
            "SLA first response 100% used (due Mon 14:00): priority normal -> urgent",
        ]
        assert engine.records.get("ticket", record.id, SYSTEM).priority == "urgent"
        # Urgent: 2 hours to resolve, 4 used: the resolution chain fires at once, each step once.
        assert sla.run_due(engine) == 3 and sla.run_due(engine) == 0
    finally:
        engine.database.close()


# --- definitions -----------------------------------------------------------------------------------


def test_the_default_pack_and_the_test_policy_pass_check(tmp_path):
    assert findings_of(PROJECT) == []
    assert findings_of(sla_pack(tmp_path)) == []


def test_flask_check_reports_policy_errors(tmp_path):
    from crm_platform.application import create_app

    pack = sla_pack(tmp_path, "broken/zone-overlap-order.yaml")
    runner = create_app({"TESTING": True, "PACK_DIR": str(pack), "SECRET_KEY": "t"}).test_cli_runner()
    result = runner.invoke(args=["check", str(pack)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{pack}/sla/support.yaml:6:11: error: unknown time zone 'Europe/Berlinn'; "
        "use an IANA name such as Europe/Berlin or America/New_York",
        f"{pack}/sla/support.yaml:9:8: error: business hours overlap on tue; "
        "ranges of a day must not overlap; merge them into one",
        f"{pack}/sla/support.yaml:30:12: error: escalation thresholds must ascend: 50% comes after 100%; "
        "order the steps of a chain by their threshold",
    ]
    clean = create_app({"TESTING": True, "SECRET_KEY": "t"}).test_cli_runner().invoke(args=["check", str(PROJECT)])
    assert (clean.exit_code, clean.output) == (0, "")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "bad-keys.yaml",
            [
                "sla/support.yaml:12:3: error: unknown key 'friday'",
                "sla/support.yaml:28:31: error: unknown key 'wait'",
            ],
        ),
        (
            "unknown-priority-and-state.yaml",
            [
                "sla/support.yaml:19:3: error: unknown priority value 'hihg' of ticket.priority",
                "sla/support.yaml:22:12: error: unknown state 'waiting_for_customer' of workflow 'ticket_lifecycle'",
            ],
        ),
        (
            "zone-overlap-order.yaml",
            [
                "sla/support.yaml:6:11: error: unknown time zone 'Europe/Berlinn'",
                "sla/support.yaml:9:8: error: business hours overlap on tue",
                "sla/support.yaml:30:12: error: escalation thresholds must ascend: 50% comes after 100%",
            ],
        ),
        (
            "condition-and-duration.yaml",
            [
                "sla/support.yaml:5:22: error: unknown field 'categroy' on ticket",
                "sla/support.yaml:20:44: error: '2 days' is not a duration",
            ],
        ),
    ],
)
def test_policy_errors_name_file_line_and_column(tmp_path, case, expected):
    found = [f for f in findings_of(sla_pack(tmp_path, f"broken/{case}")) if "error" in f]
    assert [f.split(" in ")[0] if "unknown key" in f else f for f in found] == expected


# --- live: the escalation chain fired by `flask timers run --at` in its own process --------------------


def test_live_each_step_fires_once_at_its_moment_from_separate_timers_run_processes(tmp_path, sla_clock, smtp):
    """The weekend-and-holiday chain again, each moment run by a separate ``flask --app app timers
    run --at`` process (the periodic task's due work) while a real consumer process runs: nothing a
    minute early, each step once, none again later."""
    config = live_config(tmp_path, sla_pack(tmp_path), smtp.url)
    app = build_app(tmp_path, sla_clock, **config)
    crm = app.extensions["crm"]
    crm.init_db()
    seed_demo(crm.directory)
    gina, ivan = user_id(crm, "gina"), user_id(crm, "ivan")
    record = ticket(crm, owner=gina)
    at(sla_clock, berlin(2026, 12, 4, 16, 20))
    crm.records.transition("ticket", record.id, "open", SYSTEM, "form")
    env = {**worker_env(config), "PYTHONPATH": str(PROJECT)}

    def timers_run(moment: dt.datetime) -> int:
        command = [sys.executable, "-m", "flask", "--app", "app", "timers", "run", "--at", moment.isoformat()]
        done = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return int(done.stdout.splitlines()[-1].split("sla_escalations: ")[1].split(",")[0])

    worker = Worker(worker_env(config), tmp_path / "worker.log").start()
    try:
        fired = [
            timers_run(moment)
            for moment in (
                berlin(2026, 12, 8, 11, 11),  # a minute before 80%
                berlin(2026, 12, 8, 11, 12),
                berlin(2026, 12, 8, 11, 30),
                berlin(2026, 12, 8, 12, 0),
                berlin(2026, 12, 8, 15, 0),
                berlin(2026, 12, 9, 12, 0),
            )
        ]
    finally:
        worker.stop()

    assert fired == [0, 1, 0, 1, 1, 0]
    assert crm.records.get("ticket", record.id, SYSTEM).owner == ivan
    Escalation = crm.tables.SlaEscalation
    steps = Escalation.select(Escalation.percent).where(Escalation.record_id == record.id).order_by(Escalation.step)
    assert [percent for (percent,) in steps.tuples()] == [80, 100, 150]
