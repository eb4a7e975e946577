"""The per-user iCalendar feed behind a secret URL, and the page that makes it."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import icalendar
import pytest

from . import web_fixtures
from .web_fixtures import SYSTEM, user_id

web_app, web_crm, sign_in = web_fixtures.web_app, web_fixtures.web_crm, web_fixtures.sign_in  # the fixtures


def activity(crm, owner: str, **data):
    data = {"kind": "meeting", "subject": "Meeting", "owner": user_id(crm, owner)} | data
    return crm.records.create("activity", data, SYSTEM, "form")


def create_feed(client) -> str:
    """Create (or regenerate) the signed-in user's feed; the feed's path from the page shown once."""
    response = client.post("/account/calendar")
    assert response.status_code == 200
    match = re.search(r'value="http://localhost(/ical/[\w-]+\.ics)"', response.get_data(as_text=True))
    assert match, "the page shows no feed address"
    return match.group(1)


def events(response) -> dict[str, icalendar.Event]:
    assert response.status_code == 200 and response.mimetype == "text/calendar"
    calendar = icalendar.Calendar.from_ical(response.get_data())
    return {str(event["summary"]): event for event in calendar.walk("VEVENT")}


def test_feed_parses_and_has_only_the_users_activities(web_crm, web_app, sign_in):
    activity(web_crm, "anna", subject="Anna's call", starts_at="2026-11-24T09:30:00Z")
    activity(web_crm, "anna", subject="Anna's task", due_date="2026-11-25")
    activity(web_crm, "anna", subject="Undated")
    activity(web_crm, "ben", subject="Ben's call", starts_at="2026-11-24T09:30:00Z")
    path = create_feed(sign_in("anna"))
    response = web_app.test_client().get(path)  # no session
    assert set(events(response)) == {"Anna's call", "Anna's task"}
    assert response.headers["Cache-Control"] == "private, no-store"


def test_datetimes_are_utc_with_z_and_last_thirty_minutes(web_crm, web_app, sign_in):
    record = activity(web_crm, "anna", subject="Call", starts_at="2026-11-24T10:30:00+01:00")
    path = create_feed(sign_in("anna"))
    body = web_app.test_client().get(path).get_data(as_text=True)
    assert "DTSTART:20261124T093000Z" in body and "DTEND:20261124T100000Z" in body
    event = events(web_app.test_client().get(path))["Call"]
    assert event["uid"] == f"activity-{record.id}@{web_crm.company.slug}"
    assert event.decoded("dtstart") == dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC)
    assert f"http://localhost/r/activity/{record.id}" in str(event["description"])
    assert str(event["url"]) == f"http://localhost/r/activity/{record.id}"


def test_dates_are_all_day_events(web_crm, web_app, sign_in):
    activity(web_crm, "anna", subject="Report", kind="task", due_date="2026-11-25")
    path = create_feed(sign_in("anna"))
    body = web_app.test_client().get(path).get_data(as_text=True)
    assert "DTSTART;VALUE=DATE:20261125" in body and "DTEND;VALUE=DATE:20261126" in body
    event = events(web_app.test_client().get(path))["Report"]
    assert event.decoded("dtstart") == dt.date(2026, 11, 25)


def test_the_first_filled_calendar_field_dates_the_event(web_crm, web_app, sign_in):
    activity(web_crm, "anna", subject="Both", starts_at="2026-11-24T08:00:00Z", due_date="2026-11-30")
    path = create_feed(sign_in("anna"))
    feed = events(web_app.test_client().get(path))
    assert list(feed) == ["Both"]
    assert feed["Both"].decoded("dtstart") == dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)


def test_done_activities_are_marked(web_crm, web_app, sign_in):
    activity(web_crm, "anna", subject="Finished", due_date="2026-11-20", done=True)
    activity(web_crm, "anna", subject="Open", due_date="2026-11-20")
    feed = events(web_app.test_client().get(create_feed(sign_in("anna"))))
    assert set(feed) == {"✓ Finished", "Open"}
    assert feed["✓ Finished"]["categories"].cats == ["Done"]
    assert "categories" not in feed["Open"]


def test_records_older_than_a_year_are_left_out(web_crm, web_app, sign_in):
    activity(web_crm, "anna", subject="Ancient", due_date="2024-01-10")
    activity(web_crm, "anna", subject="Recent", due_date="2026-01-10")
    feed = events(web_app.test_client().get(create_feed(sign_in("anna"))))
    assert set(feed) == {"Recent"}


def test_regenerating_invalidates_the_old_url(web_crm, web_app, sign_in):
    activity(web_crm, "anna", subject="Call", starts_at="2026-11-24T09:30:00Z")
    anna = sign_in("anna")
    old = create_feed(anna)
    new = create_feed(anna)
    assert old != new
    anonymous = web_app.test_client()
    assert anonymous.get(old).status_code == 404
    assert set(events(anonymous.get(new))) == {"Call"}
    assert web_crm.tables.CalendarFeed.select().count() == 1


def test_only_the_digest_of_the_secret_is_stored(web_crm, sign_in):
    path = create_feed(sign_in("anna"))
    secret = path.removeprefix("/ical/").removesuffix(".ics")
    feed = web_crm.tables.CalendarFeed.get()
    assert feed.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert feed.user_id == user_id(web_crm, "anna")


def test_turning_the_feed_off_makes_its_url_unknown(web_crm, web_app, sign_in):
    anna = sign_in("anna")
    path = create_feed(anna)
    assert anna.post("/account/calendar/delete").status_code == 200
    assert web_app.test_client().get(path).status_code == 404
    assert "You have no calendar feed." in anna.get("/account/calendar").get_data(as_text=True)


@pytest.mark.parametrize("path", ["/ical/unknown.ics", "/ical/" + "a" * 43 + ".ics"])
def test_unknown_secret_is_not_found(web_app, path):
    assert web_app.test_client().get(path).status_code == 404


def test_a_deactivated_users_feed_is_not_found(web_crm, web_app, sign_in):
    path = create_feed(sign_in("anna"))
    web_crm.directory.set_flags(user_id(web_crm, "anna"), active=False)
    assert web_app.test_client().get(path).status_code == 404


def test_the_settings_page_needs_a_session(web_app):
    anonymous = web_app.test_client()
    for response in (anonymous.get("/account/calendar"), anonymous.post("/account/calendar")):
        assert response.status_code == 302 and "/login" in response.location
    assert web_app.extensions["crm"].tables.CalendarFeed.select().count() == 0


def test_the_settings_page_shows_the_state_but_never_the_secret_again(web_crm, sign_in):
    anna = sign_in("anna")
    page = anna.get("/account/calendar").get_data(as_text=True)
    assert "You have no calendar feed." in page and "Create the feed address" in page
    path = create_feed(anna)
    page = anna.get("/account/calendar").get_data(as_text=True)
    assert "Make a new address" in page and path not in page and "/ical/" not in page


def test_the_calendar_links_the_feed_page(sign_in):
    page = sign_in("anna").get("/calendar").get_data(as_text=True)
    assert 'href="/account/calendar"' in page


def test_feed_forms_carry_csrf_tokens(web_app, web_crm, sign_in, monkeypatch):
    anna = sign_in("anna")
    create_feed(anna)
    page = anna.get("/account/calendar").get_data(as_text=True)
    assert page.count('name="csrf_token"') >= 3  # sign-out, regenerate, turn off
    web_app.config["WTF_CSRF_ENABLED"] = True
    assert anna.post("/account/calendar").status_code == 400  # no token
