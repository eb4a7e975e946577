"""Values as people read them: dates, times and money in the company's locale,
time zone and currency (Babel), and each field type shown its own way.

Stored datetimes are naive UTC; pages show them in the company's time zone and
``datetime-local`` inputs are read back in it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import NumberFormatError, parse_decimal
from flask import Flask
from markupsafe import Markup, escape

from ..definitions.model import Settings


class Formats:
    """Formatting and parsing for one company's settings."""

    def __init__(self, settings: Settings):
        self.locale = Locale.parse(settings.locale)
        self.tz = ZoneInfo(settings.timezone)
        self.currency = settings.currency
        # The locale's patterns, parsed once: babel's format_* functions look them up on every call.
        self._decimal = self.locale.decimal_formats[None]
        self._currency = self.locale.currency_formats["standard"]
        # Whole numbers in the common 3-digit grouping need no pattern at all (lists show many).
        symbols = self.locale.number_symbols["latn"]
        self._group = symbols["group"] if self._decimal.grouping == (3, 3) else None
        self._minus = symbols["minusSign"]

    def money(self, value, currency: str | None = None) -> str:
        if value is None:
            return ""
        return self._currency.apply(value, self.locale, currency=currency or self.currency, currency_digits=True)

    def number(self, value) -> str:
        if value is None:
            return ""
        if type(value) is int and self._group is not None:
            text = f"{abs(value):,}".replace(",", self._group)
            return self._minus + text if value < 0 else text
        return self._decimal.apply(value, self.locale)

    def percent(self, value) -> str:
        return "" if value is None else f"{self.number(value)} %"

    def date(self, value: dt.date | None) -> str:
        return "" if value is None else format_date(value, "medium", locale=self.locale)

    def datetime(self, value: dt.datetime | None) -> str:
        """A stored (naive UTC) datetime in the company's time zone."""
        if value is None:
            return ""
        return format_datetime(self.local(value), "medium", tzinfo=self.tz, locale=self.locale)

    def local(self, value: dt.datetime) -> dt.datetime:
        """Naive UTC -> aware, in the company's time zone."""
        return value.replace(tzinfo=dt.UTC).astimezone(self.tz)

    def input_datetime(self, value: dt.datetime | None) -> str:
        """The value of a ``datetime-local`` input: local wall time to the minute."""
        if value is None:
            return ""
        # Seconds only when there are some, so saving the form as shown changes nothing.
        return self.local(value).strftime("%Y-%m-%dT%H:%M:%S" if value.second else "%Y-%m-%dT%H:%M")

    def parse_datetime(self, text: str) -> dt.datetime:
        """A ``datetime-local`` input (company time) -> aware datetime; ValueError if malformed."""
        value = dt.datetime.fromisoformat(text)
        return value.replace(tzinfo=self.tz) if value.tzinfo is None else value

    def parse_decimal(self, text: str) -> Decimal:
        """A number typed as ``1234.5`` (what number inputs send) or in the company's locale (``1.234,5``)."""
        cleaned = text.replace(" ", "").replace("\u00a0", "")
        try:
            return Decimal(cleaned)
        except InvalidOperation:
            pass
        try:
            return parse_decimal(cleaned, locale=self.locale, strict=True)
        except NumberFormatError:
            raise ValueError(text) from None


def show(value, spec, formats: Formats, names: dict | None = None, record=None):
    """One field's value for display: text (escaped by Jinja) or Markup.

    ``names`` maps ids to display names for user and link fields, prefetched
    once per page so a list of 50 rows does not query 50 times.
    """
    kind = spec.type
    if value is None or value == [] or value == "":
        return ""
    if kind == "money":
        currency = getattr(record, f"{spec.name}_currency", None) if record is not None else None
        return formats.money(value, currency or spec.currency)
    if kind in ("integer", "decimal"):
        return formats.number(value)
    if kind == "percent":
        return formats.percent(value)
    if kind == "boolean":
        return "Yes" if value else "No"
    if kind == "date":
        return formats.date(value)
    if kind == "datetime":
        return formats.datetime(value)
    if kind in ("choice", "state", "team"):
        return spec.choice_labels.get(value, value)
    if kind == "multi_choice":
        return ", ".join(spec.choice_labels.get(v, v) for v in value)
    if kind == "tags":
        return Markup(" ").join(Markup('<span class="tag">{}</span>').format(t) for t in value)
    if kind in ("user", "link"):
        return (names or {}).get(value, f"#{value}")
    if kind == "email":
        return Markup('<a href="mailto:{0}">{0}</a>').format(value)
    if kind == "url" and str(value).startswith(("http://", "https://")):
        return Markup('<a href="{0}" rel="noopener noreferrer">{0}</a>').format(value)
    if kind == "phone":
        return Markup('<a href="tel:{0}">{0}</a>').format(value)
    if kind == "text":
        return Markup("<br>").join(escape(line) for line in str(value).splitlines())
    return value


def register_filters(app: Flask) -> None:
    """Make the company's formats available to templates as filters."""
    from .state import formats

    app.jinja_env.filters["money"] = lambda v, c=None: formats().money(v, c)
    app.jinja_env.filters["number"] = lambda v: formats().number(v)
    app.jinja_env.filters["date"] = lambda v: formats().date(v)
    app.jinja_env.filters["datetime"] = lambda v: formats().datetime(v)
    app.jinja_env.filters["input_datetime"] = lambda v: formats().input_datetime(v)
    app.jinja_env.globals["formats"] = formats
