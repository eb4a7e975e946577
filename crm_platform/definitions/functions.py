"""The function library of the expression language.

This registry is the sandbox's whole surface: an expression may call these
functions and nothing else. Each entry has a signature for the type checker
and an implementation the compiled code calls. Functions that need "now"
take the evaluation context first and read its clock, so tests control time.
Every function passes ``None`` (an empty field) through as ``None``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal


@dataclass(frozen=True)
class Function:
    name: str
    params: tuple[frozenset[str], ...]  # accepted value kinds per parameter
    returns: str | None  # a value kind, or None: "the type of the first argument"
    impl: Callable
    needs_context: bool = False
    optional: int = 0  # how many trailing parameters may be left out
    doc: str = ""


def _utc_naive(value) -> dt.datetime:
    """Stored datetimes are naive UTC; ``ctx.now()`` is naive UTC too."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    return dt.datetime.combine(value, dt.time())


def days_since(ctx, value):
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (ctx.now() - _utc_naive(value)).days
    return (ctx.today() - value).days


def days_until(ctx, value):
    result = days_since(ctx, value)
    return None if result is None else -result


def hours_since(ctx, value):
    if value is None:
        return None
    return (ctx.now() - _utc_naive(value)).total_seconds() / 3600


def _text(fn):
    return lambda value: None if value is None else fn(value)


def length(value):
    return None if value is None else len(value)


def round_(value, digits=0):
    if value is None:
        return None
    step = Decimal(1).scaleb(-int(digits))
    if isinstance(value, Decimal):
        return value.quantize(step, rounding=ROUND_HALF_UP)
    if isinstance(value, float):
        # Half up, as documented (Python's round() goes half to even: round(2.5) == 2).
        rounded = Decimal(repr(value)).quantize(step, rounding=ROUND_HALF_UP)
        return float(rounded) if digits else int(rounded)
    return round(value, int(digits)) if digits else round(value)


def abs_(value):
    return None if value is None else abs(value)


def coalesce(value, fallback):
    return fallback if value is None or value == "" or value == [] else value


def date(ctx, value):
    """A date stays; a date and time (stored as UTC) becomes the company's local date,
    so that ``date(x) == today`` means what it says."""
    if value is None:
        return None
    return ctx.local_date(_utc_naive(value)) if isinstance(value, dt.datetime) else value


def year(ctx, value):
    local = date(ctx, value)
    return None if local is None else local.year


def month(ctx, value):
    local = date(ctx, value)
    return None if local is None else local.month


TEMPORAL = frozenset({"date", "datetime"})
STRING = frozenset({"string"})
NUMBER = frozenset({"number"})
ANY = frozenset({"string", "number", "boolean", "date", "datetime", "list", "user", "link"})

FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in [
        Function("days_since", (TEMPORAL,), "number", days_since, True,
                 doc="whole days from a date (or date and time) until now"),
        Function("days_until", (TEMPORAL,), "number", days_until, True,
                 doc="whole days from now until a date"),
        Function("hours_since", (TEMPORAL,), "number", hours_since, True,
                 doc="hours (with fractions) from a date and time until now"),
        Function("lower", (STRING,), "string", _text(str.lower), doc="text in lowercase"),
        Function("upper", (STRING,), "string", _text(str.upper), doc="text in uppercase"),
        Function("trim", (STRING,), "string", _text(str.strip), doc="text without surrounding spaces"),
        Function("length", (frozenset({"string", "list"}),), "number", length,
                 doc="number of characters of a text, or of items of a list"),
        Function("round", (NUMBER, NUMBER), "number", round_, optional=1,
                 doc="a number rounded half up to N decimals (default 0)"),
        Function("abs", (NUMBER,), "number", abs_, doc="a number without its sign"),
        Function("coalesce", (ANY, ANY), None, coalesce,
                 doc="the first value, or the second if the first is empty"),
        Function("year", (TEMPORAL,), "number", year, True, doc="the year of a date (local date of a date and time)"),
        Function("month", (TEMPORAL,), "number", month, True,
                 doc="the month (1-12) of a date (local date of a date and time)"),
        Function("date", (TEMPORAL,), "date", date, True,
                 doc="the company's local date of a date and time; a date stays as it is"),
    ]
}  # fmt: skip
