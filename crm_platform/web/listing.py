"""List queries from a page's URL: search, filters per field type, sort, pagination.

The same ``ListRequest`` drives the list page, its export link and saved
views (which store its query string), so all three always agree.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import operator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from urllib.parse import urlencode

import peewee as pw
from werkzeug.datastructures import MultiDict

from ..compiler.compiled import CompiledEntity
from ..compiler.forms import FieldSpec
from ..compiler.schemas import DECIMAL_LIMIT, LARGEST_INTEGER
from .formats import Formats

PER_PAGE = 50
MAX_PER_PAGE = 200
RANGE_TYPES = ("integer", "decimal", "money", "percent", "date", "datetime")
SYSTEM_SORTS = ("created_at", "updated_at", "id")


@dataclass(frozen=True)
class ListRequest:
    """What a list page shows: the search text, filters, sort and page."""

    q: str = ""
    sort: str = ""  # "field" ascending, "-field" descending, "" = the entity's default
    page: int = 1
    per_page: int = PER_PAGE
    filters: dict[str, str] = field(default_factory=dict)  # "status" -> "new", "amount.from" -> "100"

    @classmethod
    def from_args(cls, args: MultiDict, ce: CompiledEntity) -> ListRequest:
        """Read the URL's arguments, ignoring what does not name a filterable field."""
        names = {spec.name for spec in ce.list.filters}
        filters = {}
        for key, value in args.items():
            if not key.startswith("f.") or value == "":
                continue
            name = key[2:].removesuffix(".from").removesuffix(".to")
            if name in names:
                filters[key[2:]] = value
        return cls(
            q=args.get("q", "").strip(),
            sort=args.get("sort", ""),
            page=max(_int(args.get("page"), 1), 1),
            per_page=min(max(_int(args.get("per_page"), PER_PAGE), 1), MAX_PER_PAGE),
            filters=filters,
        )

    def args(self, **changes) -> dict[str, str]:
        """The URL arguments of this request with ``changes`` applied (page resets unless given)."""
        changed = replace(self, **({"page": 1} | changes))
        args = {f"f.{k}": v for k, v in changed.filters.items()}
        if changed.q:
            args["q"] = changed.q
        if changed.sort:
            args["sort"] = changed.sort
        if changed.page > 1:
            args["page"] = str(changed.page)
        if changed.per_page != PER_PAGE:
            args["per_page"] = str(changed.per_page)
        return args

    def query_string(self, **changes) -> str:
        return urlencode(self.args(**changes))


@dataclass
class Page:
    rows: list
    total: int
    number: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(math.ceil(self.total / self.per_page), 1)


def sort_key(ce: CompiledEntity, request: ListRequest) -> str:
    """The effective sort: the requested one if it names a column, else the entity's default."""
    sortable = {spec.name for spec in ce.list.columns if spec.type not in ("multi_choice", "tags")}
    name = request.sort.removeprefix("-")
    if name in sortable or name in SYSTEM_SORTS:
        return request.sort
    return ce.list.default_sort


def apply(query: pw.ModelSelect, ce: CompiledEntity, request: ListRequest, formats: Formats) -> pw.ModelSelect:
    """``query`` narrowed by the request's search and filters, in its sort order."""
    model = ce.model
    if request.q:
        terms = [getattr(model, name).contains(request.q) for name in ce.list.search]
        if terms:
            query = query.where(functools.reduce(operator.or_, terms))
    specs = {spec.name: spec for spec in ce.list.filters}
    for key, value in request.filters.items():
        name, _, bound = key.partition(".")
        condition = _filter(model, specs[name], bound, value, formats)
        if condition is not None:
            query = query.where(condition)
    key = sort_key(ce, request)
    column = _column(model, specs.get(key.removeprefix("-")), key.removeprefix("-"))
    return query.order_by(column.desc() if key.startswith("-") else column.asc(), model.id.desc())


def fetch(query: pw.ModelSelect, request: ListRequest) -> Page:
    """One page of ``query`` and the total count."""
    total = query.count()
    pages = max(math.ceil(total / request.per_page), 1)
    number = min(request.page, pages)
    rows = list(query.paginate(number, request.per_page))
    return Page(rows, total, number, request.per_page)


def _column(model, spec: FieldSpec | None, name: str):
    if spec is not None and spec.type == "link":
        return getattr(model, f"{name}_id")
    return getattr(model, name)


def _filter(model, spec: FieldSpec, bound: str, value: str, formats: Formats):
    """One filter as a condition; a value that cannot be read filters nothing out."""
    column = _column(model, spec, spec.name)
    try:
        if bound in ("from", "to") and spec.type in RANGE_TYPES:
            parsed = _bound(spec, value, bound, formats)
            return column >= parsed if bound == "from" else column < parsed
        if spec.type in ("tags", "multi_choice"):
            # JSON text lists: match the quoted element.
            return column.contains(f'"{value}"')
        if spec.type == "boolean":
            return column == (value == "1")
        if spec.type in ("user", "link"):
            return column == _storable_int(int(value))
        if spec.type in RANGE_TYPES:
            return column == _bound(spec, value, "from", formats)
        return column == value
    except (ValueError, ArithmeticError):  # OverflowError: a date at the end of the calendar
        return None


def _bound(spec: FieldSpec, value: str, bound: str, formats: Formats):
    if spec.type == "date":
        day = dt.date.fromisoformat(value)
        return day if bound == "from" else day + dt.timedelta(days=1)
    if spec.type == "datetime":
        # A day in the company's time zone, as the stored naive UTC bounds.
        day = dt.date.fromisoformat(value[:10]) + dt.timedelta(days=0 if bound == "from" else 1)
        start = dt.datetime.combine(day, dt.time(), formats.tz)
        return start.astimezone(dt.UTC).replace(tzinfo=None)
    if spec.type == "integer":
        number = _storable_int(int(value))
        return number if bound == "from" else number + 1
    number = formats.parse_decimal(value)
    if not number.is_finite() or abs(number) >= DECIMAL_LIMIT:
        raise ValueError(value)
    return number if bound == "from" else number + Decimal("0.01")


def _storable_int(number: int) -> int:
    """``number`` if a 64-bit column can hold it (and one more, for an upper bound)."""
    if abs(number) >= LARGEST_INTEGER:
        raise ValueError(number)
    return number


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default
