"""The record page's timeline: activities linked to a record appear among its changes."""

from __future__ import annotations

import re

from . import web_fixtures
from .web_fixtures import SYSTEM, user_id

web_app, web_crm, sign_in = web_fixtures.web_app, web_fixtures.web_crm, web_fixtures.sign_in


def timeline_of(html: str) -> str:
    start = html.index('class="card timeline"')
    return html[start : html.index("</section>", start)]


def test_linked_calls_and_tasks_are_on_the_timeline_at_their_time(web_crm, sign_in):
    deal = web_crm.records.create("deal", {"name": "Big one"}, SYSTEM, "form")
    anna = user_id(web_crm, "anna")
    call = web_crm.records.create(
        "activity",
        {"kind": "call", "subject": "Discovery call", "deal": deal.id, "owner": anna,
         "starts_at": "2026-12-01T09:00:00Z"},
        SYSTEM, "form",
    )  # fmt: skip
    web_crm.records.create(
        "activity", {"kind": "task", "subject": "Send deck", "deal": deal.id, "done": True}, SYSTEM, "form"
    )
    timeline = timeline_of(sign_in("admin").get(f"/r/deal/{deal.id}").get_data(as_text=True))
    assert f'<a href="/r/activity/{call.id}">Activity: Discovery call</a> · Anna Schmidt' in timeline
    assert "Activity: Send deck (done)" in timeline
    # Newest first: the call on 1 December comes before the deal's creation today.
    assert timeline.index("Discovery call") < timeline.index("Created")
    assert re.search(r"01\.12\.2026, 10:00:00", timeline)  # the company's time zone


def test_activities_hidden_from_the_user_stay_off_the_timeline(web_crm, sign_in):
    anna, ben = user_id(web_crm, "anna"), user_id(web_crm, "ben")
    deal = web_crm.records.create("deal", {"name": "Shared", "owner": anna}, SYSTEM, "form")
    web_crm.records.create(
        "activity", {"kind": "call", "subject": "Ben's private call", "deal": deal.id, "owner": ben}, SYSTEM, "form"
    )
    timeline = timeline_of(sign_in("anna").get(f"/r/deal/{deal.id}").get_data(as_text=True))
    assert "private call" not in timeline
