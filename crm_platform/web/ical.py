"""A user's calendar as an iCalendar feed behind a secret URL, and the page
that creates, regenerates or turns off that URL.

``GET /ical/SECRET.ics`` needs no session: calendar apps cannot sign in, so
the secret is the credential. Only its SHA-256 digest is stored
(``CalendarFeed``, one per user); regenerating replaces it, so the old URL
stops working at once. The feed holds, for every entity with ``calendar:``
fields and an owner field, the records the user owns and may read, each as a
VEVENT on its first filled calendar field. See ``docs/exports.md``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

import icalendar
from flask import Blueprint, Response, render_template, url_for

from ..compiler.compiled import CompiledEntity
from ..errors import NotFound
from ..runtime.users import Actor
from ..store import read_snapshot
from .auth import actor
from .state import crm

bp = Blueprint("ical", __name__)

EVENT_MINUTES = 30  # a datetime's event length: there is no generic "ends at" field
PAST_DAYS = 365  # older records are left out so feeds polled every few minutes stay small


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(user_id: int) -> str:
    """A new secret for ``user_id``'s feed, replacing any earlier one; only its digest is kept."""
    CalendarFeed = crm().tables.CalendarFeed
    secret = secrets.token_urlsafe(32)
    with crm().database.atomic():
        CalendarFeed.delete().where(CalendarFeed.user == user_id).execute()
        CalendarFeed.insert(user=user_id, digest=digest(secret), created_at=crm().clock.utcnow()).execute()
    return secret


def owner_of(secret: str) -> Actor:
    """The active user whose feed ``secret`` opens; raises ``NotFound`` otherwise."""
    CalendarFeed = crm().tables.CalendarFeed
    feed = CalendarFeed.get_or_none(CalendarFeed.digest == digest(secret))
    if feed is None:
        raise NotFound("there is no such calendar feed")
    try:
        return crm().directory.actor(feed.user_id)
    except LookupError:
        raise NotFound("there is no such calendar feed") from None


# --- the page ------------------------------------------------------------------------


def _feed_of(user_id: int):
    CalendarFeed = crm().tables.CalendarFeed
    return CalendarFeed.get_or_none(CalendarFeed.user == user_id)


@bp.get("/account/calendar")
def settings():
    """Whether the signed-in user has a feed, and the buttons to create, regenerate or turn it off."""
    return render_template("web/calendar_feed.html", feed=_feed_of(actor().user_id), url=None)


@bp.post("/account/calendar")
def regenerate():
    """Create or regenerate the feed URL and show it, this once."""
    secret = issue(actor().user_id)
    url = url_for("ical.feed", secret=secret, _external=True)
    return render_template("web/calendar_feed.html", feed=_feed_of(actor().user_id), url=url)


@bp.post("/account/calendar/delete")
def turn_off():
    """Turn the feed off: its URL answers 404 from now on."""
    CalendarFeed = crm().tables.CalendarFeed
    CalendarFeed.delete().where(CalendarFeed.user == actor().user_id).execute()
    return render_template("web/calendar_feed.html", feed=None, url=None)


# --- the feed ------------------------------------------------------------------------


@bp.get("/ical/<secret>.ics")
def feed(secret: str):
    """The feed of the user ``secret`` belongs to (no sign-in); 404 for an unknown secret."""
    who = owner_of(secret)
    with read_snapshot(crm().database):
        calendar = build(who)
    return Response(
        calendar.to_ical(),
        mimetype="text/calendar",
        headers={"Cache-Control": "private, no-store", "Content-Disposition": 'inline; filename="calendar.ics"'},
    )


def build(who: Actor) -> icalendar.Calendar:
    """The calendar of ``who``: their records of every entity with calendar fields."""
    name = crm().settings.name
    calendar = icalendar.Calendar()
    calendar.add("prodid", f"-//{name}//CRM calendar feed//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", f"{name}: {who.name}" if who.name else name)
    since = crm().clock.utcnow() - dt.timedelta(days=PAST_DAYS)
    for ce in crm().compiled.entities.values():
        owner = ce.definition.owner_field
        if not ce.definition.calendar or owner is None or not crm().permissions.can(who, ce.name, "read"):
            continue
        query = crm().records.select(ce.name, who).where(getattr(ce.model, owner.name) == who.user_id)
        for record, value in _dated(ce, query, since):
            calendar.add_component(event(ce, record, value))
    return calendar


def _dated(ce: CompiledEntity, query, since: dt.datetime):
    """(record, value of its first filled calendar field) for the records dated from ``since`` on."""
    fields = [ce.definition.fields[ref.name] for ref in ce.definition.calendar]
    for index, field in enumerate(fields):
        column = getattr(ce.model, field.name)
        q = query.where(column >= (since if field.type == "datetime" else since.date()))
        for earlier in fields[:index]:
            q = q.where(getattr(ce.model, earlier.name).is_null())
        for record in q.order_by(column, ce.model.id):
            yield record, getattr(record, field.name)


def event(ce: CompiledEntity, record, value: dt.date) -> icalendar.Event:
    """One record as a VEVENT: a datetime lasts ``EVENT_MINUTES`` (in UTC), a date is all day."""
    item = icalendar.Event()
    item.add("uid", f"{ce.name}-{record.id}@{crm().company.slug}")
    item.add("dtstamp", _utc(record.updated_at))
    item.add("created", _utc(record.created_at))
    item.add("last-modified", _utc(record.updated_at))
    item.add("sequence", record.version)
    done = ce.definition.done_field is not None and bool(getattr(record, ce.definition.done_field.name))
    title = ce.title_of(record)
    item.add("summary", f"✓ {title}" if done else title)
    if done:
        item.add("categories", ["Done"])
    link = url_for("records.record_page", entity=ce.name, record_id=record.id, _external=True)
    item.add("url", link)
    item.add("description", f"{ce.definition.label}: {title}\n{link}")
    if isinstance(value, dt.datetime):
        start = _utc(value)
        item.add("dtstart", start)
        item.add("dtend", start + dt.timedelta(minutes=EVENT_MINUTES))
    else:
        item.add("dtstart", value)
        item.add("dtend", value + dt.timedelta(days=1))
        item.add("transp", "TRANSPARENT")  # an all-day due date does not block the day
    return item


def _utc(value: dt.datetime) -> dt.datetime:
    """A stored (naive UTC) datetime as an aware one, so it is written with ``Z``."""
    return value.replace(tzinfo=dt.UTC)
