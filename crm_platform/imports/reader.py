"""Files -> a header and rows of cells.

CSV is decoded as UTF-8 (with or without a byte order mark), else as cp1252,
else as latin-1; a fallback is reported in ``Table.notes`` so the person
knows their accents were guessed. The delimiter is the one of ``, ; tab``
found most often in the header line (German spreadsheets write ``;``).
XLSX is read with openpyxl in read-only mode: the first sheet, typed cells.

A file that cannot be read at all raises ``FileRejected`` with a message a
person can act on.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CRMError

FORMATS = ("csv", "xlsx")
BINARY_SAMPLE = 8192


class FileRejected(CRMError):
    """The file cannot be imported at all (empty, binary, no header, unknown format)."""

    def __reduce__(self):
        return (type(self), (str(self),))


@dataclass
class Table:
    """What a file holds: its header, its data rows and notes.

    Each row is (row number as a spreadsheet shows it, the header being 1; cells), the
    cells text (CSV) or typed (XLSX). Empty rows are left out.
    """

    header: list[str]
    rows: list[tuple[int, list]]
    format: str
    encoding: str | None = None
    notes: list[str] = field(default_factory=list)
    # Records the reader could not read at all (a broken vCard): (row number, cells, reason).
    rejected: list[tuple[int, list, str]] = field(default_factory=list)


def format_of(path: Path) -> str:
    """``csv``, ``xlsx`` or ``vcard`` by the file name; raises ``FileRejected`` for anything else."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("csv", "txt"):
        return "csv"
    if suffix in ("xlsx", "xlsm"):
        return "xlsx"
    if suffix in ("vcf", "vcard"):
        return "vcard"
    raise FileRejected(f"{path.name}: cannot import .{suffix} files; use CSV, XLSX or vCard (.vcf)")


def read_table(path: Path) -> Table:
    """The header and rows of the CSV, XLSX or vCard file at ``path``.

    A vCard file (by its name, or a text file that starts with ``BEGIN:VCARD``) and a
    Google Contacts or Outlook CSV export are converted to contact columns (``contacts.py``);
    ``Table.format`` is then ``vcard``, ``google`` or ``outlook``.

    Raises ``FileRejected`` for a missing, empty or binary file, one without a header,
    an XLSX file that is not a workbook, or a vCard file without a card.
    """
    from . import contacts  # here: contacts imports this module

    path = Path(path)
    kind = format_of(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise FileRejected(f"{path.name}: cannot be read ({error.strerror})") from None
    if not data:
        raise FileRejected(f"{path.name}: the file is empty (0 bytes)")
    if kind == "csv" and contacts.is_vcard(data):
        kind = "vcard"
    if kind == "vcard":
        table = contacts.read_vcard(data, path.name)
    elif kind == "csv":
        table = contacts.convert_csv(read_csv(data, path.name), path.name)
    else:
        table = read_xlsx(data, path.name)
    header = [str(cell).strip() if cell is not None else "" for cell in table.header]
    if not any(header):
        raise FileRejected(f"{path.name}: the first row is empty; it must name the columns")
    table.header = header
    return table


def decode(data: bytes, name: str) -> tuple[str, str, list[str]]:
    """``data`` as text: (text, encoding, notes)."""
    if b"\x00" in data[:BINARY_SAMPLE]:
        raise FileRejected(f"{name}: this is not a text file (it holds binary data); save it as CSV or XLSX")
    try:
        return data.decode("utf-8-sig"), "utf-8", []
    except UnicodeDecodeError:
        pass
    for encoding in ("cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        note = f"{name} is not UTF-8; read it as {encoding} (Windows/Excel) - check accented letters"
        return text, encoding, [note]
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def read_csv(data: bytes, name: str) -> Table:
    text, encoding, notes = decode(data, name)
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as error:  # e.g. a cell over the csv module's field limit (131,072 characters)
        raise FileRejected(f"{name}: cannot be read as CSV ({error})") from None
    if not rows:
        raise FileRejected(f"{name}: the file holds no rows")
    # "".join(row).strip(): a row with a non-blank cell, one call instead of one per cell.
    body = [(number, row) for number, row in enumerate(rows[1:], start=2) if "".join(row).strip()]
    return Table(rows[0], body, "csv", encoding, notes)


def read_xlsx(data: bytes, name: str) -> Table:
    from openpyxl import load_workbook  # imported here: only XLSX imports pay for it

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise FileRejected(f"{name}: not an Excel workbook ({error})") from None
    try:
        sheet = workbook.worksheets[0]
        rows = list(_values(sheet.iter_rows(values_only=True)))
    finally:
        workbook.close()
    if not rows:
        raise FileRejected(f"{name}: the first sheet is empty")
    body = [(n, row) for n, row in enumerate(rows[1:], start=2) if any(cell not in (None, "") for cell in row)]
    return Table(rows[0], body, "xlsx")


def _values(rows) -> Iterator[list]:
    for row in rows:
        yield list(row)
