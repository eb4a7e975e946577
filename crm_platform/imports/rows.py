"""A row's cells -> a payload in JSON form for the write path, with the errors per field.

Cells are text (CSV) or typed (XLSX: numbers, dates, booleans). An empty cell
is left out of the payload, so a new record gets the field's default and an
updated record keeps its value. What a cell cannot be read as is reported
against the field; everything else (required, ranges, lengths, unique) is
judged by the write path's validator, so imports get the forms' messages.

A leading apostrophe before ``= + - @`` (how exports neutralise formulas,
including negative numbers) is removed, so an export imports back unchanged;
the text after it is kept as text, never evaluated.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from ..compiler.compiled import CompiledApp, CompiledEntity
from ..runtime import values as v

FORMULA_STARTS = "=+-@\t\r"
TEXT_KINDS = frozenset({"string", "text", "email", "phone", "url"})
TRUE = {"yes", "y", "true", "1", "ja", "x", "on"}
FALSE = {"no", "n", "false", "0", "nein", "off"}


def name_key(text: str) -> str:
    """How a name in a cell is compared with stored names: spaces collapsed, case ignored."""
    return " ".join(text.split()).casefold()


class Lookups:
    """Names -> ids for link and user cells, loaded once per import on first use."""

    def __init__(self, compiled: CompiledApp, tables):
        self.compiled = compiled
        self.tables = tables
        self._cache: dict[str, dict[str, int | None]] = {}

    def user(self, text: str) -> int | None:
        names = self._cache.get("@user")
        if names is None:
            names = {}
            User = self.tables.User
            for user in User.select(User.id, User.name, User.email):
                for key in (name_key(user.name), name_key(user.email)):
                    names[key] = user.id if key not in names else None  # None: ambiguous
            self._cache["@user"] = names
        return names.get(name_key(text), -1)

    def record(self, entity: str, text: str) -> int | None:
        titles = self._cache.get(entity)
        if titles is None:
            titles = {}
            ce = self.compiled.entities[entity]
            for record in ce.model.select():
                key = name_key(ce.title_of(record))
                titles[key] = record.id if key not in titles else None
            self._cache[entity] = titles
        return titles.get(name_key(text), -1)


def neutralise(text: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading apostrophe (exports, error reports)."""
    if text and text[0] in FORMULA_STARTS:
        return "'" + text
    return text


def unneutralise(text: str) -> str:
    """``'=x`` -> ``=x``: undo an export's formula guard."""
    if len(text) > 1 and text[0] == "'" and text[1] in FORMULA_STARTS:
        return text[1:]
    return text


def payload(ce: CompiledEntity, columns: dict[int, str], cells: list, lookups: Lookups) -> tuple[dict, dict]:
    """(payload, errors per field) of one row; ``columns`` maps cell index -> target key."""
    return Mapper(ce, columns, lookups)(cells)


class Mapper:
    """``payload`` for the rows of one file: each column's field looked up once, not per cell."""

    def __init__(self, ce: CompiledEntity, columns: dict[int, str], lookups: Lookups):
        fields = ce.definition.fields
        # (cell index, target key, its field or None for a money field's currency, text as it is?,
        # the reading of a cell for the common kinds, else None: value() decides)
        self.plan = [
            (
                index,
                target,
                fields.get(target),
                target in fields and fields[target].type in TEXT_KINDS,
                _reading(fields[target]) if target in fields else None,
            )
            for index, target in columns.items()
        ]
        self.lookups = lookups

    def __call__(self, cells: list) -> tuple[dict, dict]:
        """(payload, errors per field) of the row ``cells``."""
        data, errors = {}, {}
        count = len(cells)
        for index, target, fd, text, read in self.plan:
            cell = cells[index] if index < count else None
            if type(cell) is str:
                cell = cell.strip()
                if not cell:
                    continue
                if cell[0] == "'":
                    cell = unneutralise(cell)
                if text:  # most cells: the text as it is (value() does the same)
                    data[target] = cell
                    continue
            elif cell is None:
                continue
            if fd is None:  # a money field's currency
                data[target] = str(cell).strip().upper()
                continue
            try:
                data[target] = read(cell) if read is not None else value(fd, cell, self.lookups)
            except ValueError as error:
                errors.setdefault(target, []).append(str(error))
        return data, errors


def _reading(fd):
    """What ``value(fd, cell, ...)`` does for a field of a common kind (a whole number, a choice),
    without its dispatch on the kind per cell; None for the other kinds."""
    if fd.type == "integer":
        return _integer
    if fd.type == "choice":
        return lambda cell: _choice(fd, str(cell).strip())
    return None


def value(fd, cell, lookups: Lookups):
    """One cell as the JSON value of field ``fd``; raises ``ValueError`` with the reason."""
    kind = fd.type
    if type(cell) is str and kind in TEXT_KINDS:  # most cells: the text as it is (stripped by payload)
        return cell
    if kind in ("integer",):
        return _integer(cell)
    if kind in v.DECIMAL_TYPES:
        return _number(cell)
    if kind == "boolean":
        if isinstance(cell, bool):
            return cell
        text = str(cell).strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
        raise ValueError(f"must be yes or no, not {cell!r}")
    if kind == "date":
        if isinstance(cell, dt.datetime):
            return cell.date().isoformat()
        if isinstance(cell, dt.date):
            return cell.isoformat()
        try:
            return dt.date.fromisoformat(str(cell).strip()[:10]).isoformat()
        except ValueError:
            raise ValueError(f"must be a date (YYYY-MM-DD), not {cell!r}") from None
    if kind == "datetime":
        if not isinstance(cell, dt.datetime):
            try:
                cell = dt.datetime.fromisoformat(str(cell).strip().replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"must be a date and time (YYYY-MM-DDTHH:MM:SSZ), not {cell!r}") from None
        return v.to_json(v.from_json(fd, cell))  # naive UTC
    if kind == "choice":
        return _choice(fd, str(cell).strip())
    if kind in ("multi_choice", "tags"):
        items = [item.strip() for item in str(cell).split(",") if item.strip()]
        items = list(dict.fromkeys(items))
        return [_choice(fd, item) for item in items] if kind == "multi_choice" else items
    if kind == "link":
        return _reference(cell, lambda text: lookups.record(fd.entity, text), fd.entity)
    if kind == "user":
        return _reference(cell, lookups.user, "user")
    if isinstance(cell, float) and cell.is_integer():
        cell = int(cell)
    return str(cell).strip() if not isinstance(cell, str) else cell


def _integer(cell) -> int:
    if isinstance(cell, bool):
        raise ValueError("must be a whole number")
    if isinstance(cell, int):
        return cell
    if isinstance(cell, float) and cell.is_integer():
        return int(cell)
    try:
        return int(str(cell).strip())
    except ValueError:
        raise ValueError(f"must be a whole number, not {cell!r}") from None


def _number(cell):
    if isinstance(cell, bool):
        raise ValueError("must be a number")
    if isinstance(cell, int | float):
        return cell
    text = str(cell).strip().replace(" ", "")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"must be a number, not {cell!r}") from None
    return v.to_json(number)


def _choice(fd, text: str) -> str:
    if text in fd.options:
        return text
    lowered = text.lower()
    for key, label in fd.options.items():
        if lowered in (key.lower(), str(label).lower()):
            return key
    return text  # the validator names the allowed values


def _reference(cell, lookup, what: str) -> int:
    if isinstance(cell, int) and not isinstance(cell, bool):
        return cell
    text = str(cell).strip()
    if text.isdigit():
        return int(text)
    found = lookup(text)
    if found is None:
        raise ValueError(f"{text!r} names more than one {what}; use the id")
    if found == -1:
        raise ValueError(f"there is no {what} {text!r}")
    return found
