"""An import job: from a file to records, through the one write path, resumable.

``start(crm, entity, path, ...)`` reads the file, maps its columns and stores
an ``ImportJob`` (nothing else is written; a file that cannot be read, a
mapping error or a missing required column raises first). ``run_job(crm,
job_id)`` then imports the rows in chunks of ``Options.chunk`` (reading the file
again, unless the same process hands it ``read=job.read`` from ``start`` and the
file's size and modification time are unchanged): each chunk is
ONE transaction that also moves the job's ``next_row`` and counters, so after
a crash (even SIGKILL) the job resumes at ``next_row`` with no row lost or
written twice. A worker can call ``run_job`` as it is.

The rows of a chunk go through the one write path with channel ``import``
(validation, permissions, audit, and rules unless the job says ``rules:
false``): the new ones in one ``crm.records.create_many``, duplicates to update
through ``crm.records.update``. A row that fails is kept as an
``ImportProblem`` with its cells and the reason per field; the other rows are
imported.

Duplicates: a row whose ``match`` fields (all non-empty) equal those of a
stored record - one imported earlier from the same file included - is skipped,
updates that record (with the row's non-empty cells), or is created anyway,
as ``on_duplicate`` says. Text keys match trimmed and whatever their case
(``Anna@X.com `` is ``anna@x.com``).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from ..errors import NotFound, PermissionDenied, ValidationError
from ..runtime import values as v
from ..runtime.users import Actor
from . import mapping as m
from . import rows
from .reader import FileRejected, Table, read_table

ON_DUPLICATE = ("skip", "update", "create")
CHUNK = 500


@dataclass
class Options:
    """How a job treats duplicates and rules (stored on the job as JSON)."""

    match: list[str] = field(default_factory=list)
    on_duplicate: str = "skip"
    rules: bool = True
    chunk: int = CHUNK

    @classmethod
    def from_json(cls, data: dict) -> Options:
        known = {k: data[k] for k in ("match", "on_duplicate", "rules", "chunk") if k in data}
        return cls(**known)


@dataclass
class RowResult:
    """A previewed row: its number in the file, the payload and the errors per field."""

    row_number: int
    payload: dict
    errors: dict[str, list[str]]
    action: str  # create, update, skip, or "error"


@dataclass
class Preview:
    mapping: dict[str, str]
    unmapped: dict[str, str]
    notes: list[str]
    total_rows: int
    rows: list[RowResult]


def _check_options(ce, options: Options, targets: set[str]) -> None:
    errors = {}
    if options.on_duplicate not in ON_DUPLICATE:
        errors["on_duplicate"] = [f"must be one of {', '.join(ON_DUPLICATE)}"]
    for key in options.match:
        if key not in ce.definition.fields:
            errors.setdefault("match", []).append(f"there is no field {key!r}")
        elif key not in targets:
            errors.setdefault("match", []).append(f"no column of the file holds {key!r}")
    if options.chunk < 1:
        errors["chunk"] = ["must be at least 1"]
    if errors:
        raise ValidationError(errors)


@dataclass(frozen=True)
class Read:
    """A file as ``start`` read it, for ``run_job`` in the same process (kept in memory only)."""

    path: str
    stamp: tuple[int, int]  # size and modification time (ns) before the read
    table: Table

    def table_for(self, path: str) -> Table | None:
        """The table, if ``path`` is this file and it has not changed since; else None."""
        return self.table if path == self.path and _stamp(Path(path)) == self.stamp else None


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _prepare(crm, entity: str, path: Path, given: dict | None, options: Options):
    ce = crm.records.entity(entity)
    table = read_table(path)
    mapping = m.match(ce, table.header, given)
    _check_options(ce, options, set(mapping.columns.values()))
    return ce, table, mapping


def preview(crm, entity: str, path: Path, *, mapping: dict | None = None, options=None, limit: int = 20) -> Preview:
    """The first ``limit`` rows as they would be imported, with their errors; writes nothing.

    Raises ``FileRejected`` or ``ValidationError`` (mapping, options) like ``start``.
    """
    options = options or Options()
    ce, table, mapped = _prepare(crm, entity, Path(path), mapping, options)
    lookups = rows.Lookups(crm.compiled, crm.tables)
    index = _KeyIndex(ce, options.match) if options.match else None
    if index:
        index.refresh()
    results = []
    for number, cells in table.rows[:limit]:
        data, errors = rows.payload(ce, mapped.columns, cells, lookups)
        if not errors:
            errors = ce.validator.errors(data, partial=False)
        action = "error" if errors else _action(data, options, index)
        results.append(RowResult(number, data, errors, action))
    return Preview(mapped.as_json(table.header), mapped.unmapped, table.notes, len(table.rows), results)


def start(crm, entity: str, path: Path, *, actor: Actor, mapping: dict | None = None, options=None):
    """Check the file, its mapping and the actor's permission; store a queued job and return it.

    The returned job's ``notes`` say what the reader guessed (a fallback encoding).

    Raises ``FileRejected`` (unreadable file), ``ValidationError`` (mapping, options, a missing
    required column) or ``PermissionDenied``; nothing is stored then.
    """
    options = options or Options()
    path = Path(path).resolve()
    stamp = _stamp(path)  # before the read: a change while reading is a change
    ce, table, mapped = _prepare(crm, entity, path, mapping, options)
    _require(crm, actor, entity, options)
    job = crm.tables.ImportJob.create(
        user=actor.user_id,
        entity=ce.name,
        filename=path.name,
        path=str(path),
        format=table.format,
        mapping=mapped.as_json(table.header),
        options=asdict(options),
        status="queued",
        total_rows=len(table.rows),
        created_at=crm.ctx.now(),
    )
    job.notes = table.notes  # not stored: what the reader guessed (an encoding), to show now
    job.read = Read(str(path), stamp, table) if stamp else None  # not stored: for run_job(read=...)
    return job


def _require(crm, actor: Actor, entity: str, options: Options) -> None:
    crm.permissions.require(actor, entity, "create")
    if options.on_duplicate == "update":
        crm.permissions.require(actor, entity, "update")


def run_job(
    crm, job_id: int, *, progress: Callable[[int], None] | None = None, after_chunk=None, read: Read | None = None
):
    """Import the rows of job ``job_id`` from its ``next_row`` on; return the finished job.

    ``progress(n)`` is told after each chunk how many rows it settled; ``after_chunk(job)``
    is called after each committed chunk (tests use it to simulate a crash). ``read`` is
    ``start``'s ``job.read`` in the same process: its rows are used if the job's file is
    unchanged since (same size and modification time), else the file is read again. A file
    that can no longer be read, or an actor who may not create, fails the job and raises.
    """
    ImportJob = crm.tables.ImportJob
    job = ImportJob.get_by_id(job_id)
    if job.status == "done":
        return job
    options = Options.from_json(job.options)
    actor = crm.directory.actor(job.user_id) if job.user_id else Actor.system()
    try:
        _require(crm, actor, job.entity, options)
        ce = crm.records.entity(job.entity)
        table = (read.table_for(job.path) if read else None) or read_table(Path(job.path))
        mapped = m.match(ce, table.header, job.mapping)
    except (FileRejected, ValidationError, PermissionDenied, NotFound) as error:  # recorded, then raised
        _fail(job, str(error))
        raise
    _set(job, status="running")
    importer = _Importer(crm, ce, table, mapped.columns, options, actor, job)
    while job.next_row < len(table.rows):
        before = job.next_row
        try:
            importer.chunk(job.next_row, min(job.next_row + options.chunk, len(table.rows)))
        except _Overtaken:
            # Another runner (a worker that took the job over, a second --resume) settled these
            # rows first; this chunk was rolled back, and that runner carries on.
            return ImportJob.get_by_id(job_id)
        if progress:
            progress(job.next_row - before)
        if after_chunk:
            after_chunk(job)
    _set(job, status="done", finished_at=crm.ctx.now())
    return job


def _fail(job, message: str) -> None:
    _set(job, status="failed", error=message)


def _set(job, **values) -> None:
    """Store ``values`` on the job row (an update query: jobs are not records, but nothing calls save())."""
    ImportJob = type(job)
    ImportJob.update(**values).where(ImportJob.id == job.id).execute()
    for name, value in values.items():
        setattr(job, name, value)


class _Overtaken(Exception):  # noqa: N818 - not an error: someone else did the work
    """The job's ``next_row`` moved while this runner wrote a chunk: another runner has it."""


class _Importer:
    """Writes the rows of one job, a chunk per transaction."""

    def __init__(self, crm, ce, table: Table, columns: dict[int, str], options: Options, actor: Actor, job):
        self.crm, self.ce, self.table, self.columns = crm, ce, table, columns
        self.options, self.actor, self.job = options, actor, job
        self.lookups = rows.Lookups(crm.compiled, crm.tables)
        self.payload = rows.Mapper(ce, columns, self.lookups)
        self.index = _KeyIndex(ce, options.match) if options.match else None

    def chunk(self, start: int, end: int) -> None:
        job = self.job
        counts = dict(created=0, updated=0, skipped=0, failed=0)
        with self.crm.tables.database.atomic():
            pending = []
            for number, cells in self.table.rows[start:end]:
                data, errors = self.payload(cells)
                if errors:
                    counts[self.problem(number, cells, errors)] += 1
                else:
                    pending.append((number, cells, data))
            if self.index:
                self.index.refresh()  # inside the chunk's transaction: what is stored now
            while pending:
                pending = self.write(pending, counts)
            ImportJob = type(job)
            moved = ImportJob.update(
                next_row=end,
                created=ImportJob.created + counts["created"],
                updated=ImportJob.updated + counts["updated"],
                skipped=ImportJob.skipped + counts["skipped"],
                failed=ImportJob.failed + counts["failed"],
            ).where((ImportJob.id == job.id) & (ImportJob.next_row == start))
            if not moved.execute():
                raise _Overtaken(job.id)  # rolls the chunk back: its rows are another runner's
        # Only after the commit: the job object matches what is stored.
        job.next_row = end
        for name, count in counts.items():
            setattr(job, name, getattr(job, name) + count)

    def write(self, pending: list[tuple], counts: dict) -> list[tuple]:
        """Write the ``(number, cells, payload)`` rows, in file order, as far as one batch can.

        Duplicates of stored records are skipped or updated now; new rows are created with one
        ``create_many``. A row repeating the key of a row created in this batch waits (returned):
        the next call finds the record made from the earlier row, or, if that row failed,
        creates it.
        """
        records, entity, rules = self.crm.records, self.ce.name, self.options.rules
        on_duplicate, index = self.options.on_duplicate, self.index
        new, later, keys = [], [], set()
        for number, cells, data in pending:
            key = index.key(data) if index and on_duplicate != "create" else None
            existing = index.ids.get(key) if key is not None else None
            if existing is not None and on_duplicate == "skip":
                counts["skipped"] += 1
            elif existing is not None:
                counts[self.update(number, cells, existing, data)] += 1
            elif key is not None and key in keys:
                later.append((number, cells, data))
            else:
                if key is not None:
                    keys.add(key)
                new.append((number, cells, data, key))
        created = records.create_many(entity, [data for _, _, data, _ in new], self.actor, "import", rules=rules)
        for (number, cells, _, key), result in zip(new, created, strict=True):
            if isinstance(result, ValidationError):
                counts[self.problem(number, cells, result.errors)] += 1
            elif isinstance(result, PermissionDenied):
                counts[self.problem(number, cells, {"": [str(result)]})] += 1
            else:
                counts["created"] += 1
                if index:
                    index.add(key, result.id)
        return later

    def update(self, number: int, cells: list, record_id: int, data: dict) -> str:
        # The match keys found the record: its own spelling of them (Anna@X.com) stays.
        data = {name: value for name, value in data.items() if name not in self.options.match}
        try:
            self.crm.records.update(self.ce.name, record_id, data, self.actor, "import", rules=self.options.rules)
            return "updated"
        except ValidationError as error:
            return self.problem(number, cells, error.errors)
        except (PermissionDenied, NotFound) as error:  # NotFound: deleted by someone during the import
            return self.problem(number, cells, {"": [str(error)]})

    def problem(self, number: int, cells: list, errors: dict) -> str:
        header = self.table.header
        # Pairs, not a dict: the stored JSON keeps the file's column order for the report.
        data = [[header[i], _text(cells[i]) if i < len(cells) else ""] for i in range(len(header))]
        self.crm.tables.ImportProblem.create(job=self.job.id, row_number=number, data=data, errors=errors)
        return "failed"


def _text(cell) -> str:
    return "" if cell is None else str(v.to_json(cell))


def _action(data: dict, options: Options, index: _KeyIndex | None) -> str:
    key = index.key(data) if index else None
    if key is None or key not in index.ids or options.on_duplicate == "create":
        return "create"
    return options.on_duplicate


class _KeyIndex:
    """Match keys of the stored records -> the first record's id, for one run of a job.

    Loaded with one query, then kept current with one query per chunk for the records
    added since (by this job or anyone else), and with the records the job creates.
    Text keys are trimmed and case-folded on both sides. (A ``LOWER(TRIM(email)) IN
    (...)`` query per chunk can use no index: 16 ms per chunk at 100,000 stored leads,
    growing with the table.)
    """

    def __init__(self, ce, keys: list[str]):
        self.ce = ce
        self.fields = [ce.definition.fields[key] for key in keys]
        self.text = tuple(fd.type in rows.TEXT_KINDS for fd in self.fields)
        self.ids: dict[tuple, int] = {}
        self.last_id = 0
        model = ce.model
        columns = [getattr(model, v.storage_name(fd)) for fd in self.fields]
        # Built once: the id after which to look is its only parameter.
        self._sql, params = model.select(model.id, *columns).where(model.id > 0).order_by(model.id).sql()
        if params != [0]:
            raise RuntimeError(f"unexpected parameters {params} in {self._sql}")
        # Raw rows: a text column needs no conversion, the others get their field's python_value.
        self._convert = [None if is_text else c.python_value for c, is_text in zip(columns, self.text, strict=True)]

    def refresh(self) -> None:
        """Add the records stored since the last look."""
        ids, text, convert = self.ids, self.text, self._convert
        for record_id, *values in self.ce.model._meta.database.execute_sql(self._sql, [self.last_id]):
            values = [x if f is None or x is None else f(x) for f, x in zip(convert, values, strict=True)]
            key = _normal(values, text)
            if key is not None and key not in ids:
                ids[key] = record_id
            self.last_id = record_id

    def add(self, key: tuple | None, record_id: int) -> None:
        """A record this job just created (on SQLite the chunk's transaction holds the write lock,
        so every id up to this one is known)."""
        if key is not None and key not in self.ids:
            self.ids[key] = record_id
        self.last_id = max(self.last_id, record_id)  # the next refresh reads only what others add

    def key(self, data: dict) -> tuple | None:
        """The row's key (a payload in JSON form), or None if one of its fields is empty."""
        if self.text == (True,):  # one text field (an email), the usual key: what _normal does, inline
            value = data.get(self.fields[0].name)
            if type(value) is str:
                value = value.strip().casefold()
                return (value,) if value else None
        values = []
        for fd, is_text in zip(self.fields, self.text, strict=True):
            value = data.get(fd.name)
            if value is None:
                return None
            values.append(value if is_text else v.from_json(fd, value))  # as stored: a date, not its text
        return _normal(values, self.text)


def _normal(values: list, text: tuple[bool, ...]) -> tuple | None:
    """A key to compare: text trimmed (and case-folded for text fields); None if a value is empty."""
    key = []
    for value, fold in zip(values, text, strict=True):
        if type(value) is str:
            value = value.strip().casefold() if fold else value.strip()
            if not value:
                return None
        elif value is None or value == []:
            return None
        elif type(value) is list:
            value = tuple(value)
        key.append(value)
    return tuple(key)


def error_report(crm, job_id: int, out: TextIO) -> int:
    """Write the job's problems as CSV: row number, the original cells, then the reasons.

    The ``errors`` column reads ``Field: message; ...``. Every cell a spreadsheet would run
    as a formula (``= + - @`` first) gets a leading apostrophe, as in exports; importing the
    report again removes it. Returns the number of rows written.
    """
    ImportJob, ImportProblem = crm.tables.ImportJob, crm.tables.ImportProblem
    job = ImportJob.get_by_id(job_id)
    ce = crm.records.entity(job.entity)
    first = ImportProblem.select().where(ImportProblem.job == job.id).first()
    header = [column for column, _ in first.data] if first else list(job.mapping)
    writer = csv.writer(out)
    writer.writerow(["row", *[rows.neutralise(column) for column in header], "errors"])
    count = 0
    problems = ImportProblem.select().where(ImportProblem.job == job.id).order_by(ImportProblem.row_number)
    for problem in problems:
        reasons = "; ".join(f"{_label(ce, name)}: {', '.join(messages)}" for name, messages in problem.errors.items())
        given = dict(problem.data)
        cells = [rows.neutralise(given.get(column, "")) for column in header]
        writer.writerow([problem.row_number, *cells, rows.neutralise(reasons)])
        count += 1
    return count


def _label(ce, name: str) -> str:
    if not name:
        return "row"
    fd = ce.definition.fields.get(name)
    return fd.label if fd else name
