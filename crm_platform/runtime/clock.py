"""The injected clock: the one place the platform asks what time it is.

Datetimes are stored as naive UTC. ``today`` is the company's local date,
which is what an admin means by "today" in a rule.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field


class SystemClock:
    """The real time."""

    def utcnow(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass
class FixedClock:
    """A clock that says what it is told; for tests, backfills and dry runs."""

    at: dt.datetime

    def utcnow(self) -> dt.datetime:
        return self.at

    def advance(self, **delta) -> None:
        """Move the clock forward, e.g. ``advance(days=3)``."""
        self.at += dt.timedelta(**delta)


@dataclass
class EvalContext:
    """What compiled expressions may ask of the world: the time, in a time zone."""

    clock: SystemClock | FixedClock = field(default_factory=SystemClock)
    timezone: str = "UTC"

    def __post_init__(self):
        self._zone = zoneinfo.ZoneInfo(self.timezone)

    def now(self) -> dt.datetime:
        """Now, as naive UTC (how datetimes are stored)."""
        return self.clock.utcnow()

    def today(self) -> dt.date:
        """Today's date in the company's time zone."""
        return self.local_date(self.clock.utcnow())

    def local_date(self, utc: dt.datetime) -> dt.date:
        """The company's local date at the naive UTC moment ``utc``."""
        return utc.replace(tzinfo=dt.UTC).astimezone(self._zone).date()
