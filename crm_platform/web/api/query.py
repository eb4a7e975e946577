"""The list endpoint's query string: filters, ranges, search, sort, pages, fields.

Unlike the list page, which ignores what it cannot read, the API refuses a
query it does not understand (``QueryError`` -> 400), so a client's typo
never silently returns every record.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import peewee as pw
from werkzeug.datastructures import MultiDict

from ...compiler.compiled import CompiledEntity
from ...compiler.schemas import DECIMAL_LIMIT, LARGEST_INTEGER
from ...definitions.model import FieldDef

PER_PAGE = 50
MAX_PER_PAGE = 200
RESERVED = ("q", "sort", "page", "per_page", "fields")
RANGE_TYPES = ("integer", "decimal", "money", "percent", "date", "datetime")
LIST_TYPES = ("multi_choice", "tags")
# System columns: (name, type) as filters and sorts know them.
SYSTEM_FIELDS = {"id": "integer", "version": "integer", "created_at": "datetime", "updated_at": "datetime"}
BOUNDS = {"gte": operator.ge, "lte": operator.le}


class QueryError(ValueError):
    """The query string cannot be understood; the message says which parameter and why."""


@dataclass(frozen=True)
class Filter:
    name: str
    type: str
    op: str  # "eq", "gte", "lte"
    value: object


@dataclass(frozen=True)
class ApiQuery:
    q: str = ""
    sort: str = ""
    page: int = 1
    per_page: int = PER_PAGE
    fields: tuple[str, ...] = ()
    filters: tuple[Filter, ...] = field(default_factory=tuple)


def field_types(ce: CompiledEntity) -> dict[str, str]:
    """Every field a query may name, with its type (system fields included)."""
    types = dict(SYSTEM_FIELDS)
    types.update({name: f.type for name, f in ce.definition.fields.items()})
    return types


def sortable(ce: CompiledEntity) -> list[str]:
    return [name for name, kind in field_types(ce).items() if kind not in LIST_TYPES]


def selectable(ce: CompiledEntity) -> list[str]:
    """The keys of a record's JSON form."""
    names = list(SYSTEM_FIELDS)
    for name, f in ce.definition.fields.items():
        names.append(name)
        if f.type == "money":
            names.append(f"{name}_currency")
    return names


def parse(args: MultiDict, ce: CompiledEntity) -> ApiQuery:
    """Read the query string; raise ``QueryError`` naming the first thing wrong."""
    types = field_types(ce)
    filters = []
    for key, value in args.items(multi=True):
        if key in RESERVED:
            continue
        name, _, bound = key.partition("__")
        if name not in types:
            raise QueryError(f"{key!r} is not a field of {ce.definition.plural.lower()} (nor a query parameter)")
        kind = types[name]
        if bound and bound not in BOUNDS:
            raise QueryError(f"{key!r}: the only suffixes are __gte and __lte")
        if bound and kind not in RANGE_TYPES:
            raise QueryError(f"{key!r}: ranges work only on numbers, dates and times")
        definition = ce.definition.fields.get(name)
        filters.append(Filter(name, kind, bound or "eq", _value(key, definition, kind, value, bound)))
    sort = args.get("sort", "")
    if sort and sort.removeprefix("-") not in sortable(ce):
        raise QueryError(f"sort: {sort.removeprefix('-')!r} is not a sortable field")
    fields = tuple(name.strip() for name in args.get("fields", "").split(",") if name.strip())
    unknown = [name for name in fields if name not in selectable(ce)]
    if unknown:
        raise QueryError("fields: not fields of this record: " + ", ".join(unknown))
    return ApiQuery(
        q=args.get("q", "").strip(),
        sort=sort,
        page=_int("page", args.get("page"), 1, 1, LARGEST_INTEGER),
        per_page=_int("per_page", args.get("per_page"), PER_PAGE, 1, MAX_PER_PAGE),
        fields=fields,
        filters=tuple(filters),
    )


def apply(query: pw.ModelSelect, ce: CompiledEntity, request: ApiQuery) -> pw.ModelSelect:
    """``query`` narrowed by the search and filters, in the requested order (id breaks ties)."""
    model = ce.model
    if request.q:
        terms = [getattr(model, name).contains(request.q) for name in ce.list.search]
        if terms:
            query = query.where(functools.reduce(operator.or_, terms))
    for item in request.filters:
        column = _column(ce, item.name)
        if item.type in LIST_TYPES:
            query = query.where(column.contains(f'"{item.value}"'))  # JSON text lists: the quoted element
        elif item.op == "eq" and item.value is None:
            query = query.where(column.is_null())
        elif item.op == "eq":
            query = query.where(column == item.value)
        elif item.op == "lte" and isinstance(item.value, tuple):  # a whole day of a datetime field
            query = query.where(column < item.value[0])
        else:
            query = query.where(BOUNDS[item.op](column, item.value))
    sort = request.sort or ce.list.default_sort
    column = _column(ce, sort.removeprefix("-"))
    return query.order_by(column.desc() if sort.startswith("-") else column.asc(), model.id.desc())


def _column(ce: CompiledEntity, name: str):
    definition = ce.definition.fields.get(name)
    if definition is not None and definition.type == "link":
        return getattr(ce.model, f"{name}_id")
    return getattr(ce.model, name)


def _value(key: str, definition: FieldDef | None, kind: str, text: str, bound: str):
    """The filter's value as the column compares it; ``QueryError`` if it cannot be read."""
    if text == "" and not bound and kind not in ("string", "text", "email", "phone", "url"):
        return None  # ?field= : the field is empty
    try:
        if kind in ("integer", "link", "user"):
            number = int(text)
            if abs(number) >= LARGEST_INTEGER:
                raise ValueError(text)
            return number
        if kind in ("decimal", "money", "percent"):
            number = Decimal(text)
            if not number.is_finite() or abs(number) >= DECIMAL_LIMIT:
                raise ValueError(text)
            return number
        if kind == "boolean":
            if text not in ("true", "false"):
                raise ValueError(text)
            return text == "true"
        if kind == "date":
            if len(text) != 10:
                raise ValueError(text)
            return dt.date.fromisoformat(text)
        if kind == "datetime":
            return _moment(text, bound)
    except (ValueError, InvalidOperation, OverflowError):
        raise QueryError(f"{key}: {text!r} is not a valid {_words(kind)}") from None
    if definition is not None and definition.options and kind in ("choice", "state", "multi_choice"):
        if text not in definition.options:
            raise QueryError(f"{key}: {text!r} is not one of " + ", ".join(definition.options))
    return text


def _moment(text: str, bound: str):
    """A datetime bound as naive UTC; a bare date means the whole day (UTC)."""
    if len(text) == 10:
        day = dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
        return (day + dt.timedelta(days=1),) if bound == "lte" else day
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


def _words(kind: str) -> str:
    return {
        "integer": "whole number",
        "link": "record id",
        "user": "user id",
        "boolean": "true or false",
        "date": "date (YYYY-MM-DD)",
        "datetime": "date and time (ISO 8601)",
    }.get(kind, "number")


def _int(name: str, text: str | None, default: int, low: int, high: int) -> int:
    if text is None or text == "":
        return default
    try:
        number = int(text)
    except ValueError:
        raise QueryError(f"{name}: {text!r} is not a whole number") from None
    if not low <= number <= high:
        raise QueryError(f"{name}: must be between {low} and {high}")
    return number
