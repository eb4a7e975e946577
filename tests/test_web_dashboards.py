"""The dashboards page and the reports behind it, with the default pack.

Records are made through the write path; the clock is the fixed one of
``conftest.clock`` (Monday 2026-11-23 10:00 UTC, 11:00 in Berlin), moved
where a test is about time. Money shows in the pack's locale (de_DE, EUR).
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import re
import time
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest
from babel.numbers import format_currency

from crm_platform.seed import DEMO_PASSWORD
from crm_platform.web import reports

from . import web_fixtures
from .web_fixtures import SYSTEM, user_id

web_app, web_crm, sign_in = web_fixtures.web_app, web_fixtures.web_crm, web_fixtures.sign_in

T0 = dt.datetime(2026, 11, 23, 10, 0)
PAYLOAD = "<script>alert(1)</script>"

# The moves that take a new deal to a stage, with what each stage requires.
PATHS = {
    "prospecting": [],
    "qualification": ["qualification"],
    "proposal": ["qualification", "proposal"],
    "negotiation": ["qualification", "proposal", "negotiation"],
    "won": ["qualification", "proposal", "negotiation", "won"],
    "lost": ["lost"],
}
REQUIRED = {"proposal": {"close_date": "2026-12-31"}, "lost": {"lost_reason": "price"}}


def eur(amount) -> str:
    return format_currency(Decimal(amount), "EUR", locale="de_DE")


def make_deal(crm, name: str, amount=None, stage: str = "prospecting", actor=SYSTEM, **fields) -> int:
    channel = "system" if actor is SYSTEM else "form"
    data = {"name": name, **fields}
    if amount is not None:
        data["amount"] = amount
    deal_id = crm.records.create("deal", data, actor, channel).id
    move_deal(crm, deal_id, stage, actor)
    return deal_id


def move_deal(crm, deal_id: int, stage: str, actor=SYSTEM) -> None:
    channel = "system" if actor is SYSTEM else "form"
    for target in PATHS[stage]:
        crm.records.transition("deal", deal_id, target, actor, channel, data=REQUIRED.get(target))


def make_ticket(crm, subject: str, *moves: str) -> int:
    ticket_id = crm.records.create("ticket", {"subject": subject}, SYSTEM, "system").id
    for target in moves:
        data = {"resolution": "done"} if target == "resolved" else None
        crm.records.transition("ticket", ticket_id, target, SYSTEM, "system", data=data)
    return ticket_id


def actor_of(crm, name: str):
    return crm.directory.actor(user_id(crm, name))


def page(client) -> str:
    response = client.get("/dashboards/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def titles(text: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<h2 id="panel-\d+">(.*?)</h2>', text)]


def panel(text: str, title: str) -> str:
    """The HTML of the dashboard card headed ``title``."""
    match = re.search(rf'<h2 id="panel-\d+">{re.escape(html.escape(title))}</h2>(.*?)</section>', text, re.S)
    assert match, f"no panel {title!r} in {titles(text)}"
    return match.group(1)


def table(text: str, title: str) -> dict[str, list[str]]:
    """The numbers table of a card: row heading -> the row's cells, as shown."""
    rows = re.findall(r'<tr><th scope="row">(.*?)</th>(.*?)</tr>', panel(text, title), re.S)
    return {
        html.unescape(head): [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", cells)]
        for head, cells in rows
    }


def stage_numbers(funnel: reports.Funnel) -> dict[str, tuple]:
    return {s.state: (s.count, s.amount, s.forecast) for s in funnel.stages}


# --- the page ---------------------------------------------------------------------------------


def test_dashboards_need_sign_in(web_app):
    response = web_app.test_client().get("/dashboards/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_admin_sees_a_chart_per_report_even_without_records(sign_in):
    text = page(sign_in("admin"))
    assert titles(text) == [
        "Deal pipeline: funnel",
        "Deal pipeline: won and lost per month",
        "Lead lifecycle: won and lost per month",
        "Deals: conversion by source",
        "Leads: conversion by lead source",
        "Ticket lifecycle: SLA status",
        "Campaigns: campaign members by status",
    ]
    assert "No data yet" in panel(text, "Campaigns: campaign members by status")


def test_every_chart_is_valid_svg_with_a_data_table(sign_in, web_crm):
    client = sign_in("admin")
    make_deal(web_crm, "Big & small", 1000, "won", source="web")
    make_ticket(web_crm, "Printer <on fire>")
    text = page(client)
    charts = re.findall(r"<svg .*?</svg>", text, re.S)
    assert len(charts) == len(titles(text)) == 7
    for chart in charts:
        root = ET.fromstring(chart)
        assert root.get("role") == "img" and root.get("aria-label")
    assert text.count('<details class="chart-data">') == 7
    assert "<script" not in "".join(charts)


def test_user_who_may_read_nothing_charted_is_told_so(sign_in, web_crm):
    web_crm.directory.create_user("nobody@demo.example.com", "Nobody", DEMO_PASSWORD)
    text = page(sign_in("nobody"))
    assert titles(text) == []
    assert "There is nothing to chart for you" in text


# --- the funnel -------------------------------------------------------------------------------


def test_funnel_counts_sums_and_forecasts_each_open_stage_and_the_won_one(sign_in, web_crm):
    client = sign_in("admin")
    make_deal(web_crm, "A", 1000)
    make_deal(web_crm, "B", 2000)
    make_deal(web_crm, "C", 4000, "qualification")
    make_deal(web_crm, "D", Decimal("10000.50"), "proposal")
    make_deal(web_crm, "E", 3000, "won")
    make_deal(web_crm, "F", 7000, "lost")
    make_deal(web_crm, "G")  # no amount yet

    (funnel,) = reports.funnels(web_crm, SYSTEM)
    assert (funnel.entity, funnel.workflow, funnel.currency, funnel.amount_label) == (
        "deal",
        "deal_pipeline",
        "EUR",
        "Amount",
    )
    assert stage_numbers(funnel) == {
        "prospecting": (3, Decimal("3000.00"), Decimal("300.00")),
        "qualification": (1, Decimal("4000.00"), Decimal("800.00")),
        "proposal": (1, Decimal("10000.50"), Decimal("5000.25")),
        "negotiation": (0, Decimal("0"), Decimal("0.00")),
        "won": (1, Decimal("3000.00"), Decimal("3000.00")),
    }  # lost deals are not in the funnel

    rows = table(page(client), "Deal pipeline: funnel")
    assert rows == {
        "Prospecting": ["3", eur(3000), eur(300)],
        "Qualification": ["1", eur(4000), eur(800)],
        "Proposal": ["1", eur("10000.50"), eur("5000.25")],
        "Negotiation": ["0", eur(0), eur(0)],
        "Closed won": ["1", eur(3000), eur(3000)],
    }


def test_forecast_uses_each_records_own_probability(web_crm):
    deal_id = make_deal(web_crm, "A", 1000, "qualification")
    make_deal(web_crm, "B", 1000, "qualification")
    web_crm.records.update("deal", deal_id, {"probability": 40}, SYSTEM, "system")
    (funnel,) = reports.funnels(web_crm, SYSTEM)
    assert stage_numbers(funnel)["qualification"] == (2, Decimal("2000.00"), Decimal("600.00"))  # 400 + 200


def test_sales_rep_sees_only_the_numbers_of_own_deals(sign_in, web_crm):
    anna_client, maria_client = sign_in("anna"), sign_in("maria")
    anna, ben = actor_of(web_crm, "anna"), actor_of(web_crm, "ben")
    make_deal(web_crm, "Anna 1", 1000, actor=anna)
    make_deal(web_crm, "Anna 2", 2000, "won", actor=anna)
    make_deal(web_crm, "Ben 1", 5000, actor=ben)
    make_deal(web_crm, "Ben 2", 7000, "won", actor=ben)

    (mine,) = reports.funnels(web_crm, anna)
    assert stage_numbers(mine)["prospecting"] == (1, Decimal("1000.00"), Decimal("100.00"))
    assert stage_numbers(mine)["won"] == (1, Decimal("2000.00"), Decimal("2000.00"))
    anna_page = page(anna_client)
    assert table(anna_page, "Deal pipeline: funnel")["Prospecting"] == ["1", eur(1000), eur(100)]
    assert table(anna_page, "Deal pipeline: won and lost per month")["November 2026"] == ["1", "0"]
    assert eur(5000) not in anna_page and eur(7000) not in anna_page

    manager_page = page(maria_client)  # the sales manager's role reads every deal
    assert table(manager_page, "Deal pipeline: funnel")["Prospecting"] == ["2", eur(6000), eur(600)]
    assert table(manager_page, "Deal pipeline: won and lost per month")["November 2026"] == ["2", "0"]


def test_support_agent_sees_no_pipeline_chart(sign_in, web_crm):
    client = sign_in("gina")
    make_deal(web_crm, "Secret deal", 99000, source="web")
    text = page(client)
    assert titles(text) == ["Ticket lifecycle: SLA status"]
    assert "Secret deal" not in text and eur(99000) not in text
    assert reports.funnels(web_crm, actor_of(web_crm, "gina")) == []


# --- won and lost per month --------------------------------------------------------------------


def test_won_and_lost_are_counted_per_local_month_for_the_last_twelve(sign_in, web_crm, clock):
    client = sign_in("admin")
    ids = {name: make_deal(web_crm, name, 1000) for name in "ABCDEFG"}

    def at(moment: dt.datetime, name: str, stage: str) -> None:
        clock.at = moment
        move_deal(web_crm, ids[name], stage)

    at(dt.datetime(2025, 11, 30, 22, 30), "A", "won")  # 23:30 in Berlin: November 2025, before the window
    at(dt.datetime(2025, 11, 30, 23, 30), "B", "won")  # 00:30 on 1 December in Berlin: the window's first month
    at(dt.datetime(2026, 9, 10, 12, 0), "C", "won")
    at(dt.datetime(2026, 9, 11, 12, 0), "D", "lost")
    at(dt.datetime(2026, 10, 31, 23, 30), "E", "won")  # 00:30 on 1 November in Berlin
    at(T0, "F", "won")
    at(T0, "G", "negotiation")  # a move, but not to an outcome

    trends = {t.workflow: t for t in reports.outcome_trends(web_crm, SYSTEM)}
    assert set(trends) == {"deal_pipeline", "lead_lifecycle"}
    deals = trends["deal_pipeline"]
    assert (deals.won_states, deals.lost_states) == (["Closed won"], ["Closed lost"])
    assert [m.month for m in deals.months] == [dt.date(2025, 12, 1)] + [dt.date(2026, n, 1) for n in range(1, 12)]
    counted = {m.month: (m.won, m.lost) for m in deals.months if m.won or m.lost}
    assert counted == {
        dt.date(2025, 12, 1): (1, 0),
        dt.date(2026, 9, 1): (1, 1),
        dt.date(2026, 11, 1): (2, 0),
    }
    assert all(m.won == m.lost == 0 for m in trends["lead_lifecycle"].months)

    rows = table(page(client), "Deal pipeline: won and lost per month")
    assert list(rows)[0] == "Dezember 2025" and list(rows)[-1] == "November 2026"
    assert rows["September 2026"] == ["1", "1"]
    assert rows["Oktober 2026"] == ["0", "0"]


def test_deleted_records_no_longer_count_as_won(web_crm):
    deal_id = make_deal(web_crm, "A", 1000, "won")
    make_deal(web_crm, "B", 1000, "won")
    web_crm.records.delete("deal", deal_id, SYSTEM, "system")
    (trend,) = [t for t in reports.outcome_trends(web_crm, SYSTEM) if t.entity == "deal"]
    assert trend.months[-1].won == 1


# --- conversion per source ---------------------------------------------------------------------


def test_conversion_rate_per_source(sign_in, web_crm):
    client = sign_in("admin")
    make_deal(web_crm, "W1", 1000, "won", source="web")
    make_deal(web_crm, "W2", 1000, source="web")
    make_deal(web_crm, "W3", 1000, "lost", source="web")
    make_deal(web_crm, "R1", 1000, "won", source="referral")
    make_deal(web_crm, "R2", 1000, "won", source="referral")
    make_deal(web_crm, "E1", 1000, "lost", source="event")
    make_deal(web_crm, "N1", 1000, "won")

    (conversion,) = [c for c in reports.source_conversions(web_crm, SYSTEM) if c.entity == "deal"]
    rows = {row.value: (row.total, row.won, row.rate) for row in conversion.rows}
    assert rows == {
        "web": (3, 1, Decimal("33.3")),
        "referral": (2, 2, Decimal("100.0")),
        "event": (1, 0, Decimal("0.0")),
        "cold_call": (0, 0, None),
        "partner": (0, 0, None),
        "other": (0, 0, None),
        None: (1, 1, Decimal("100.0")),
    }

    shown = table(page(client), "Deals: conversion by source")
    assert shown["Web"] == ["3", "1", "33,3 %"]
    assert shown["Referral"] == ["2", "2", "100 %"]
    assert shown["Cold call"] == ["0", "0", "–"]
    assert shown["Not set"] == ["1", "1", "100 %"]


# --- SLA ---------------------------------------------------------------------------------------


def sla_counts(crm, actor=SYSTEM) -> dict[str, tuple[int, int, int, int]]:
    (overview,) = reports.sla_overviews(crm, actor, crm.ctx.now())
    buckets = ("within", "at_risk", "breached", "paused")
    return {s.state: tuple(s.counts[b] for b in buckets) for s in overview.states}


# The default pack's sla/support.yaml: business hours in Berlin (Mon-Thu 08-12 and 13-18); a
# normal ticket has 4 business hours to a first response (leaving "new") and 2 business days
# (18 h) to resolution; waiting on the customer pauses the clock. T0 is Monday 11:00 in Berlin.


def test_sla_buckets_follow_the_policy_in_business_time(sign_in, web_crm, clock):
    client = sign_in("gina")
    make_ticket(web_crm, "New one")
    moved = make_ticket(web_crm, "Being worked on", "open")  # responded at once: resolution runs
    make_ticket(web_crm, "Waiting", "open", "waiting_on_customer")  # paused
    make_ticket(web_crm, "Spam", "closed")  # resolved: not counted

    assert sla_counts(web_crm) == {
        "new": (1, 0, 0, 0), "open": (1, 0, 0, 0), "waiting_on_customer": (0, 0, 0, 1), "escalated": (0, 0, 0, 0),
    }  # fmt: skip
    clock.advance(hours=4, minutes=11)  # 11:00-12:00 and 13:00-15:11: 3 h 11 min of 4 h
    assert sla_counts(web_crm)["new"] == (1, 0, 0, 0)
    clock.advance(minutes=1)  # 3 h 12 min: 80 %
    assert sla_counts(web_crm)["new"] == (0, 1, 0, 0)
    clock.advance(minutes=47)  # 15:59
    assert sla_counts(web_crm)["new"] == (0, 1, 0, 0)
    clock.advance(minutes=1)  # 16:00, the due time: breached
    assert sla_counts(web_crm)["new"] == (0, 0, 1, 0)

    web_crm.records.transition("ticket", moved, "escalated", SYSTEM, "system")
    assert sla_counts(web_crm)["open"] == (0, 0, 0, 0) and sla_counts(web_crm)["escalated"] == (1, 0, 0, 0)
    clock.at = T0 + dt.timedelta(days=2)  # Wednesday 11:00: 9 h + 9 h + 3 h = 21 h of 18 h
    assert sla_counts(web_crm)["escalated"] == (0, 0, 1, 0)
    assert sla_counts(web_crm)["waiting_on_customer"] == (0, 0, 0, 1)  # still paused

    rows = table(page(client), "Ticket lifecycle: SLA status")
    assert rows == {
        "New": ["0", "0", "1", "0", "1"],
        "Open": ["0", "0", "0", "0", "0"],
        "Waiting on customer": ["0", "0", "0", "1", "1"],
        "Escalated": ["0", "0", "1", "0", "1"],
        "Total": ["0", "0", "2", "1", "3"],
    }


def test_sla_status_of_records_for_other_pages(web_crm, clock):
    fresh = make_ticket(web_crm, "Fresh")
    waiting = make_ticket(web_crm, "Waiting", "open", "waiting_on_customer")
    clock.advance(hours=1)  # 12:00 Berlin, lunch
    moved = make_ticket(web_crm, "Moved", "open")
    clock.advance(hours=2)  # 14:00 Berlin
    ce = web_crm.compiled.entities["ticket"]
    machine = ce.workflows["status"]

    statuses = reports.sla_status(web_crm, ce, machine, list(ce.model.select()), web_crm.ctx.now())

    assert statuses[fresh] == reports.SlaStatus(
        state="new",
        entered_at=T0,
        due_at=T0 + dt.timedelta(hours=5),  # 4 business hours: 11-12 and 13-16
        elapsed_ratio=0.5,
        bucket=reports.WITHIN,
        label="Within SLA",
    )
    assert (statuses[waiting].bucket, statuses[waiting].label) == (reports.PAUSED, "Paused")
    assert statuses[moved].entered_at == T0 + dt.timedelta(hours=1)
    assert statuses[moved].due_at == dt.datetime(2026, 11, 25, 11, 0)  # 17 more business hours: Wednesday 12:00
    assert statuses[moved].elapsed_ratio == pytest.approx(1 / 18)
    assert (statuses[moved].bucket, statuses[moved].label) == (reports.WITHIN, "Within SLA")


# --- campaign results (memberships) ---------------------------------------------------------------


def add_members(crm, campaign_id: int, *statuses: str) -> None:
    for status in statuses:
        crm.records.create("campaign_member", {"campaign": campaign_id, "status": status}, SYSTEM, "system")


def test_campaign_member_counts_by_status_for_the_ten_largest_campaigns(sign_in, web_crm):
    client = sign_in("julia")
    spring = web_crm.records.create("campaign", {"name": "Spring"}, SYSTEM, "system").id
    add_members(web_crm, spring, "sent", "sent", "responded")
    small = [web_crm.records.create("campaign", {"name": f"Small {n:02}"}, SYSTEM, "system").id for n in range(11)]
    for campaign_id in small:
        add_members(web_crm, campaign_id, "opened")
    web_crm.records.create("campaign", {"name": "Empty"}, SYSTEM, "system")

    (result,) = reports.membership_results(web_crm, SYSTEM)
    assert (result.entity, result.link, result.target) == ("campaign_member", "campaign", "campaign")
    assert len(result.groups) == 10
    assert (result.groups[0].title, result.groups[0].counts, result.groups[0].total) == (
        "Spring",
        {"sent": 2, "responded": 1},
        3,
    )
    assert [g.title for g in result.groups[1:]] == [f"Small {n:02}" for n in range(9)]

    text = page(client)
    assert titles(text) == [
        "Lead lifecycle: won and lost per month",
        "Leads: conversion by lead source",
        "Campaigns: campaign members by status",
    ]
    rows = table(text, "Campaigns: campaign members by status")
    # Targeted, sent, opened, clicked, responded, unsubscribed, bounced, total
    assert rows["Spring"] == ["0", "2", "0", "0", "1", "0", "0", "3"]
    assert rows["Small 00"] == ["0", "0", "1", "0", "0", "0", "0", "1"]
    assert "Small 10" not in rows and "Empty" not in rows


def test_a_campaign_name_is_escaped_in_the_chart_and_the_table(sign_in, web_crm):
    client = sign_in("julia")
    campaign = web_crm.records.create("campaign", {"name": PAYLOAD}, SYSTEM, "system").id
    add_members(web_crm, campaign, "sent")
    text = page(client)
    assert PAYLOAD not in text
    card = panel(text, "Campaigns: campaign members by status")
    assert card.count(html.escape(PAYLOAD, quote=False)) >= 2  # the chart's label (and its tooltip) and the table
    assert table(text, "Campaigns: campaign members by status")[PAYLOAD][-1] == "1"
    ET.fromstring(re.search(r"<svg .*?</svg>", card, re.S).group(0))


# --- scale ---------------------------------------------------------------------------------------


def bulk_insert(database, model, rows: list[dict]) -> None:
    """Insert ``rows`` (dicts with the same keys) with one prepared statement.

    Written directly, not through the write path: the test using it is about
    reading many records, and peewee would take seconds to build 10,000 rows' SQL.
    """
    given = [model._meta.fields[name] for name in rows[0]]
    # Peewee adds every column with a default to an INSERT; give those their default.
    defaults = [f for f in model._meta.sorted_fields if f.default is not None and f.name not in rows[0]]
    fields = given + defaults
    sql, params = model.insert_many([[None] * len(fields)], fields=fields).sql()
    assert len(params) == len(fields), sql
    values = [[f.db_value(row[f.name]) for f in given] + [f.db_value(f.default) for f in defaults] for row in rows]
    database.cursor().executemany(sql, values)


class QueryCounter(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record):
        self.count += 1


def test_dashboard_with_ten_thousand_records_renders_quickly(sign_in, web_crm):
    client = sign_in("admin")
    n = 10_000
    deal, ticket = web_crm.compiled.entities["deal"].model, web_crm.compiled.entities["ticket"].model
    Audit = web_crm.tables.Audit
    stages = ["prospecting", "qualification", "proposal", "negotiation", "won"]
    deals, tickets, audit = [], [], []
    for i in range(n):
        stage = stages[i % 5]
        deals.append(
            {
                "id": i + 1,
                "name": f"Deal {i}",
                "stage": stage,
                "amount": Decimal(100),
                "amount_currency": "EUR",
                "probability": Decimal(50),
                "source": "web",
                "created_at": T0,
                "updated_at": T0,
                "version": 2 if stage == "won" else 1,
            }
        )
        tickets.append(
            {"id": i + 1, "subject": f"T{i}", "status": "open", "created_at": T0, "updated_at": T0, "version": 2}
        )
        moves = [("ticket", "status", "new", "open")] + (
            [("deal", "stage", "negotiation", "won")] if stage == "won" else []
        )
        for entity, field, old, new in moves:
            audit.append(
                {
                    "entity": entity,
                    "record_id": i + 1,
                    "operation": "transition",
                    "version": 2,
                    "at": T0,
                    "channel": "system",
                    "changes": {field: [old, new]},
                }
            )
    with web_crm.database.atomic():
        for model, rows in ((deal, deals), (ticket, tickets), (Audit, audit)):
            bulk_insert(web_crm.database, model, rows)

    counter, peewee_log = QueryCounter(), logging.getLogger("peewee")
    level = peewee_log.level
    peewee_log.addHandler(counter)
    peewee_log.setLevel(logging.DEBUG)
    try:
        started = time.perf_counter()
        text = page(client)
        elapsed = time.perf_counter() - started
    finally:
        peewee_log.removeHandler(counter)
        peewee_log.setLevel(level)

    assert table(text, "Deal pipeline: funnel")["Prospecting"] == ["2.000", eur(200000), eur(100000)]
    assert table(text, "Deal pipeline: won and lost per month")["November 2026"] == ["2.000", "0"]
    assert table(text, "Deals: conversion by source")["Web"] == ["10.000", "2.000", "20 %"]
    assert table(text, "Ticket lifecycle: SLA status")["Open"] == ["10.000", "0", "0", "0", "10.000"]
    assert counter.count < 60, f"{counter.count} queries"
    assert elapsed < 5, f"{elapsed:.2f} s"
