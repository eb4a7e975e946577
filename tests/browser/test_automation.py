"""Rules run by the worker show on the record's timeline (rules/leads.rules)."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Page, expect

from .conftest import DACH_TEAM, create_record

RULE = "Route DACH web leads"
ROUTED = ("assigned owner to", "created Activity")


def reload_until(page: Page, done, timeout: float = 20.0) -> None:
    """Reload ``page`` until ``done(page)`` holds: the worker runs after the request has answered."""
    deadline = time.monotonic() + timeout
    while not done(page):
        assert time.monotonic() < deadline, f"not done after {timeout} s on {page.url}"
        time.sleep(0.25)
        page.reload()


def test_the_timeline_shows_a_dach_web_lead_routed_round_robin_by_its_rule(signed_in_page, shot, unique):
    page = signed_in_page()
    # "Route DACH web leads" fires on create when source is web and country is DE, AT or CH.
    lead = {"first_name": "Lena", "last_name": f"Route-{unique}", "country": "DE", "source": "web"}
    create_record(page, "lead", lead)
    shot(page, "created")
    timeline = page.locator("section.timeline")
    expect(timeline).to_contain_text("Created by Ada Admin")

    # Both actions of the rule, each recorded when it has run.
    reload_until(page, lambda p: all(s in p.locator("section.timeline").inner_text() for s in ROUTED))
    # Once more: the record page reads the fields, the related lists and the timeline one after the
    # other, not in one transaction, so the page that first shows the timeline entries may still show
    # the fields from before the worker's commit. Everything is committed now.
    page.reload()
    shot(page, "routed")

    assignment = timeline.locator("li.event-action", has_text="assigned owner to")
    expect(assignment).to_have_count(1)
    text = assignment.inner_text()
    owner = next((name for name in DACH_TEAM if f"assigned owner to {name} (sales-dach, round robin)" in text), None)
    assert owner, f"not assigned round robin within sales-dach: {text!r}"
    expect(assignment.locator("p.why")).to_contain_text(f"by rule “{RULE}”")
    expect(assignment.locator("p.why")).to_contain_text("because country = DE and source = web")
    change = timeline.locator("li.event-update", has_text=RULE)
    expect(change.locator("ul.changes li", has_text="Owner")).to_have_text(re.compile(rf"^Owner: .+ → {owner}$"))
    expect(change.locator("ul.changes")).to_contain_text("Team: (empty) → Sales DACH")
    # The rule's second action: a call task for the new owner, listed on the lead.
    expect(timeline.locator("li.event-action", has_text="'Call new web lead'")).to_have_count(1)
    expect(page.locator("dl.fields div:has(> dt:text-is('Owner')) dd")).to_have_text(owner)
    expect(page.locator("section.related", has_text="Activities")).to_contain_text("Call new web lead")
