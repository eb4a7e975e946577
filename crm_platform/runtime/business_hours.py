"""Business time: how much of it lies between two moments, and when N of it has passed.

Pure functions over a ``Calendar`` (a time zone, the open ranges of each
weekday, the holidays). Moments are naive UTC, as the platform stores them;
ranges are wall-clock times in the calendar's zone, turned into UTC day by day
with ``zoneinfo``, so a business day that contains a DST change is as long as
the clock on the wall says (08:00-18:00 is ten hours on both sides of it).

A range may end after midnight (``22:00-06:00``): it belongs to the day it
starts on, so a holiday closes the whole night shift that starts on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

DAY_MINUTES = 24 * 60
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A calendar with no open time in this many days is treated as never open
# (every weekday closed, or a holiday list that covers everything).
SEARCH_DAYS = 3 * 366


@dataclass(frozen=True)
class Calendar:
    """When the clock of an SLA runs.

    ``week`` has one entry per weekday, Monday first: (start, end) minutes
    after local midnight, sorted, ``end`` up to 2 x 1440 for a range that
    runs past midnight. ``always`` (24/7) ignores ``week`` and ``holidays``.
    """

    zone: ZoneInfo
    week: tuple[tuple[tuple[int, int], ...], ...] = ((),) * 7
    holidays: frozenset[dt.date] = field(default_factory=frozenset)
    always: bool = False
    days: dict = field(default_factory=dict, compare=False, hash=False, repr=False)  # date -> its UTC ranges

    @classmethod
    def around_the_clock(cls, zone: str = "UTC") -> Calendar:
        return cls(ZoneInfo(zone), always=True)


def _utc(local: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """A naive local wall-clock time in ``zone`` -> naive UTC."""
    return local.replace(tzinfo=zone).astimezone(dt.UTC).replace(tzinfo=None)


def _local_date(utc: dt.datetime, zone: ZoneInfo) -> dt.date:
    return utc.replace(tzinfo=dt.UTC).astimezone(zone).date()


def _open_ranges(calendar: Calendar, day: dt.date) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
    """The open ranges that start on local ``day``, as naive UTC (start, end)."""
    # Measuring thousands of records asks for the same days again and again: each
    # calendar keeps the days it worked out (they depend on nothing else).
    found = calendar.days.get(day)
    if found is None:
        found = calendar.days[day] = _day_ranges(calendar, day)
    return found


def _day_ranges(calendar: Calendar, day: dt.date) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
    if day in calendar.holidays:
        return ()
    midnight = dt.datetime.combine(day, dt.time())
    return tuple(
        (
            _utc(midnight + dt.timedelta(minutes=start), calendar.zone),
            _utc(midnight + dt.timedelta(minutes=end), calendar.zone),
        )
        for start, end in calendar.week[day.weekday()]
    )


def _ranges_from(calendar: Calendar, start: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Open ranges (UTC) that end after ``start``, in order, clipped to begin no earlier than it."""
    # Start a day early: yesterday's night shift may still be running.
    first = _local_date(start, calendar.zone) - dt.timedelta(days=1)
    for offset in range(SEARCH_DAYS):
        for begin, end in _open_ranges(calendar, first + dt.timedelta(days=offset)):
            if end > start:
                yield max(begin, start), end
    raise ValueError("the business hours have no open time in the next three years")


def elapsed(calendar: Calendar, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
    """Business time between two naive UTC moments (zero if ``end`` is not after ``start``)."""
    if end <= start:
        return dt.timedelta()
    if calendar.always:
        return end - start
    total = dt.timedelta()
    for begin, finish in _ranges_from(calendar, start):
        if begin >= end:
            break
        total += min(finish, end) - begin
    return total


def add(calendar: Calendar, start: dt.datetime, amount: dt.timedelta) -> dt.datetime:
    """The naive UTC moment at which ``amount`` of business time has passed since ``start``.

    Raises ``ValueError`` if the calendar has no open time (to be refused
    when the definitions are checked, so it does not happen at run time).
    """
    if calendar.always:
        return start + amount
    left = amount
    for begin, finish in _ranges_from(calendar, start):
        if left <= finish - begin:
            return begin + left
        left -= finish - begin
    raise AssertionError("unreachable")  # _ranges_from raises when it runs out


def is_open(calendar: Calendar, moment: dt.datetime) -> bool:
    """Whether the clock runs at naive UTC ``moment``."""
    if calendar.always:
        return True
    begin, _ = next(_ranges_from(calendar, moment))
    return begin == moment
