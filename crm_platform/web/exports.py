"""Exports of a list view as CSV, XLSX and JSON.

The three formats share one row source: the list page's ``ListRequest``
(search, filters, sort) applied to ``crm.records.select(entity, actor)``, so
an export holds exactly the rows the user's list shows them, own-records
scope included, and the list's columns (``list:``) plus the id. Rows are read
in chunks of ``CHUNK`` inside one read snapshot; CSV and JSON are streamed,
XLSX is written by openpyxl's write-only workbook.

See ``docs/exports.md`` for the format decisions.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from flask import Response, request, stream_with_context
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from ..compiler.compiled import CompiledEntity
from ..compiler.forms import FieldSpec
from ..imports.rows import neutralise
from ..store import read_snapshot
from . import listing, present
from .auth import actor
from .state import crm, formats

CHUNK = 1000
EXCEL_DIGITS = 15  # a spreadsheet's numbers are doubles: longer numbers are written as text
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class Column:
    """One exported column: a list field, or the currency that goes with a money field."""

    name: str  # the key in JSON: the field's name, or "<money>_currency"
    label: str
    spec: FieldSpec
    currency: bool = False


@dataclass
class Export:
    """What an export holds: the entity, its query (not yet run) and its columns."""

    ce: CompiledEntity
    query: object
    columns: list[Column]

    def filename(self, extension: str) -> str:
        return f"{self.ce.definition.plural.lower().replace(' ', '_')}.{extension}"

    def chunks(self) -> Iterator[tuple[list, dict]]:
        """The rows in chunks of ``CHUNK``, each with the display names of its users and links."""
        specs = [column.spec for column in self.columns if not column.currency]
        offset = 0
        with read_snapshot(crm().database):
            while True:
                rows = list(self.query.offset(offset).limit(CHUNK))
                if not rows:
                    return
                yield rows, present.names_for(crm().compiled, crm().tables, specs, rows)
                if len(rows) < CHUNK:
                    return
                offset += CHUNK


def from_request(ce: CompiledEntity) -> Export:
    """The export of the list view the request's arguments describe.

    Raises ``PermissionDenied`` (before anything is streamed) if the user may not read the entity.
    """
    req = listing.ListRequest.from_args(request.args, ce)
    query = listing.apply(crm().records.select(ce.name, actor()), ce, req, formats())
    return Export(ce, query, columns_of(ce))


def columns_of(ce: CompiledEntity) -> list[Column]:
    """The list's columns, each money column followed by its currency."""
    columns = []
    for spec in ce.list.columns:
        columns.append(Column(spec.name, spec.label, spec))
        if spec.type == "money":
            columns.append(Column(f"{spec.name}_currency", f"{spec.label} currency", spec, currency=True))
    return columns


def raw_value(record, column: Column):
    """The stored value of a column (a link as its id, a currency as its code)."""
    if column.currency:
        return getattr(record, column.name)
    return present.value_of(record, column.spec)


# --- CSV -----------------------------------------------------------------------------


def text_value(record, column: Column, names: dict) -> str:
    """A value as CSV text: users and links by name, ISO dates, yes/no, lists comma-separated."""
    value = raw_value(record, column)
    if value is None:
        return ""
    if column.currency:
        return str(value)
    if column.spec.type in ("user", "link"):
        return names.get(column.spec.name, {}).get(value, str(value))
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds") + "Z"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def csv_response(export: Export) -> Response:
    """The export as UTF-8 CSV (no byte order mark), streamed a chunk at a time."""

    def generate() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["id", *[neutralise(column.label) for column in export.columns]])
        for rows, names in export.chunks():
            for record in rows:
                values = [neutralise(text_value(record, column, names)) for column in export.columns]
                writer.writerow([record.id, *values])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
        yield out.getvalue()  # the header of an empty export

    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{export.filename("csv")}"'},
    )


# --- XLSX ----------------------------------------------------------------------------


def cell_value(record, column: Column, names: dict):
    """A value as an XLSX cell holds it: numbers, dates, datetimes (UTC) and booleans typed,
    everything else as neutralised text."""
    value = raw_value(record, column)
    if value is None:
        return None
    typed = not column.currency and column.spec.type not in ("user", "link")
    if typed and (isinstance(value, bool | dt.date) or (isinstance(value, int | Decimal) and _exact(value))):
        return value
    return neutralise(ILLEGAL_CHARACTERS_RE.sub("", text_value(record, column, names)))


def _exact(number: int | Decimal) -> bool:
    """True if a spreadsheet holds ``number`` without rounding (15 significant digits)."""
    if isinstance(number, int):
        return abs(number) < 10**EXCEL_DIGITS
    return number.is_finite() and len(number.normalize().as_tuple().digits) <= EXCEL_DIGITS


def xlsx_header(column: Column) -> str:
    label = f"{column.label} (UTC)" if column.spec.type == "datetime" and not column.currency else column.label
    return neutralise(label)


def xlsx_response(export: Export) -> Response:
    """The export as an XLSX workbook of one sheet, written in write-only mode."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=_sheet_title(export.ce.definition.plural))
    sheet.append(["id", *[xlsx_header(column) for column in export.columns]])
    formats_by_type = {"date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm:ss"}
    for rows, names in export.chunks():
        for record in rows:
            cells = [record.id]
            for column in export.columns:
                cell = WriteOnlyCell(sheet, value=cell_value(record, column, names))
                if isinstance(cell.value, str):
                    cell.data_type = "s"  # never "f": text is text, whatever it starts with
                elif cell.value is not None and column.spec.type in formats_by_type:
                    cell.number_format = formats_by_type[column.spec.type]
                cells.append(cell)
            sheet.append(cells)
    # The rows went to openpyxl's temporary sheet file; what is held here is the compressed workbook.
    out = io.BytesIO()
    workbook.save(out)
    return Response(
        out.getvalue(),
        mimetype=XLSX_MIMETYPE,
        headers={"Content-Disposition": f'attachment; filename="{export.filename("xlsx")}"'},
    )


def _sheet_title(plural: str) -> str:
    """A sheet title Excel accepts: at most 31 characters, none of ``[]:*?/\\``."""
    title = "".join(ch for ch in plural if ch not in "[]:*?/\\")[:31]
    return title or "Export"


# --- JSON ----------------------------------------------------------------------------


def json_record(record, export: Export) -> dict:
    """The record's id and list columns in their JSON form (links and users as ids)."""
    values = {"id": record.id}
    for column in export.columns:
        values[column.name] = (
            present.json_value(record, column.spec) if not column.currency else raw_value(record, column)
        )
    return values


def json_response(export: Export) -> Response:
    """``{"entity", "columns", "records"}``, streamed a chunk of records at a time."""
    columns = [{"name": "id", "label": "ID", "type": "integer"}] + [
        {"name": c.name, "label": c.label, "type": "currency" if c.currency else c.spec.type} for c in export.columns
    ]

    def generate() -> Iterator[str]:
        head = json.dumps({"entity": export.ce.name, "columns": columns})
        yield head[:-1] + ', "records": ['
        first = True
        for rows, _names in export.chunks():
            parts = [json.dumps(json_record(record, export)) for record in rows]
            yield ("" if first else ", ") + ", ".join(parts)
            first = False
        yield "]}"

    return Response(
        stream_with_context(generate()),
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{export.filename("json")}"'},
    )


RESPONSES = {"csv": csv_response, "xlsx": xlsx_response, "json": json_response}


def respond(ce: CompiledEntity, kind: str) -> Response:
    """The list view of ``ce`` the request describes, exported as ``kind`` (csv, xlsx or json)."""
    return RESPONSES[kind](from_request(ce))
