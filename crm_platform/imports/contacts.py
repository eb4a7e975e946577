"""Contacts from other tools: vCard 3.0/4.0, Google Contacts CSV and Outlook CSV.

Each is converted into the same ``Table`` with the columns ``COLUMNS`` (first
name, last name, email, phone, mobile, company, ...), so the import engine
takes it like any CSV; ``Table.format`` says ``vcard``, ``google`` or
``outlook`` and ends up on the job. Converting (rather than only presetting a
column -> field mapping over the tool's own 80 columns) is needed because
their values do not sit one per column: Google keeps a phone's kind in a
separate label column and several values in one cell (``a ::: b``), a vCard
has any number of typed EMAIL/TEL lines, and birthdays come as ``5/17/1980``
or ``--05-17``. The preset (``preset``) maps the two columns no field label
matches, ``Company`` -> the account link and ``Notes`` -> the description;
``mapping.match`` applies it, and a mapping given by the user still wins.

What a contact has more of than the CRM has fields for (a second email, a
home phone, a fax, a website) is kept in the notes, never dropped silently.

``start_contacts`` turns such a file into two jobs: the company names that
match no stored account become accounts first (their own resumable job,
matched on the name), then the contacts, linked to their account by name.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import re
import tempfile
from pathlib import Path

from ..errors import ValidationError
from ..runtime.users import Actor
from . import job as jobs
from . import mapping as m
from . import rows
from .reader import FileRejected, Table, decode, read_table

COLUMNS = [
    "First name", "Last name", "Email", "Phone", "Mobile", "Company", "Job title", "Department",
    "Street", "Postal code", "City", "State / region", "Country", "Birthday", "LinkedIn profile", "Notes",
]  # fmt: skip
PRESET = {"Company": "account", "Notes": "description"}
FORMATS = {"vcard": "vCard", "google": "Google Contacts CSV", "outlook": "Outlook CSV"}
MULTI = ":::"  # Google's separator of several values in one cell
COUNTRY_LOCALES = ("en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv", "da")


def preset(header: list[str]) -> dict[str, str]:
    """The preset column -> field mapping for a converted contacts table, else ``{}``."""
    return dict(PRESET) if list(header) == COLUMNS else {}


def is_vcard(data: bytes) -> bool:
    """Whether ``data`` starts (after a byte order mark and blank lines) with ``BEGIN:VCARD``."""
    head = data[:200].lstrip(b"\xef\xbb\xbf \t\r\n").upper()
    return head.startswith(b"BEGIN:VCARD")


# --- one contact -> one row -------------------------------------------------------------------


class _Person:
    """What one contact says, collected before it becomes a row of ``COLUMNS``."""

    def __init__(self):
        self.values: dict[str, str] = {}
        self.extra: list[str] = []  # kept in the notes: what has no field of its own
        self.no_year = False

    def set(self, column: str, value) -> None:
        value = _clean(value)
        if value and not self.values.get(column):
            self.values[column] = value

    def email(self, addresses: list[str]) -> None:
        addresses = [a for a in dict.fromkeys(_clean(a) for a in addresses) if a]
        if addresses:
            self.set("Email", addresses[0])
        if addresses[1:]:
            self.extra.append("Other email: " + ", ".join(addresses[1:]))

    def phones(self, numbers: list[tuple[str, str]]) -> None:
        """(kind, number) pairs, kind ``cell``, ``work``, ``home``, ``fax`` or ``""``: the first mobile
        -> Mobile; the first work number -> Phone, else an unlabelled one, else a home number."""
        numbers = [(kind, _clean(number)) for kind, number in numbers if _clean(number)]
        used = set()
        for column, kinds in (("Mobile", ("cell",)), ("Phone", ("work",)), ("Phone", ("",)), ("Phone", ("home",))):
            for i, (kind, number) in enumerate(numbers):
                if kind in kinds and not self.values.get(column):
                    self.set(column, number)
                    used.add(i)
        others = [f"{number} ({kind})" if kind else number for i, (kind, number) in enumerate(numbers) if i not in used]
        if others:
            self.extra.append("Other phone: " + ", ".join(others))

    def website(self, urls: list[str]) -> None:
        for url in filter(None, (_clean(u) for u in urls)):
            if "linkedin.com/" in url.lower() and not self.values.get("LinkedIn profile"):
                self.set("LinkedIn profile", url)
            else:
                self.extra.append(f"Website: {url}")

    def birthday(self, text) -> None:
        value, no_year = _birthday(_clean(text))
        self.set("Birthday", value)
        self.no_year = self.no_year or no_year

    def row(self) -> list[str]:
        notes = "\n".join(filter(None, [self.values.get("Notes", ""), *self.extra]))
        country = self.values.get("Country", "")
        values = self.values | {"Notes": notes, "Country": country_code(country) or country}
        return [values.get(column, "") for column in COLUMNS]


def country_code(name: str) -> str | None:
    """The ISO 3166 code of a country named in one of ``COUNTRY_LOCALES`` (``Deutschland`` ->
    ``DE``) or given as a code; ``None`` if unknown. Address books write names, country fields
    hold codes."""
    text = name.strip()
    if not text:
        return None
    if len(text) == 2 and text.isalpha():
        return {"UK": "GB"}.get(text.upper(), text.upper())
    return _country_names().get(text.lower())


@functools.cache  # a constant built from Babel's data on first use (about 0.1 s), never changed
def _country_names() -> dict[str, str]:
    from babel import Locale

    names = {"usa": "US", "uk": "GB"}
    for locale in COUNTRY_LOCALES:
        for code, name in Locale(locale).territories.items():
            if len(code) == 2 and code.isalpha():
                names.setdefault(name.lower(), code)
    return names


def _clean(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        value = " ".join(str(v) for v in value if v)
    return str(value).strip()


def _birthday(text: str) -> tuple[str, bool]:
    """(ISO date or the text as it came, whether it was a date without a year -> left empty)."""
    if not text or text in ("0/0/00", "00.00.00", "0.0.00"):  # Outlook writes 0/0/00 for none
        return "", False
    if text.startswith("--"):  # vCard 4 and Google: --MMDD / --MM-DD, a birthday without a year
        return "", True
    found = (
        re.fullmatch(r"(\d{4})-?(\d{2})-?(\d{2})(?:T.*)?", text)
        or re.fullmatch(r"(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})", text)  # Outlook, US
        or re.fullmatch(r"(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4})", text)  # Outlook, German
    )
    if found is None:
        return text, False  # the import reports it: "must be a date (YYYY-MM-DD)"
    parts = found.groupdict() or dict(zip("ymd", found.groups(), strict=False))
    try:
        return dt.date(int(parts["y"]), int(parts["m"]), int(parts["d"])).isoformat(), False
    except ValueError:
        return text, False


def _no_year_note(name: str, numbers: list[int], what: str) -> list[str]:
    if not numbers:
        return []
    shown = ", ".join(str(n) for n in numbers[:10]) + (", ..." if len(numbers) > 10 else "")
    if len(numbers) == 1:
        return [f"{name}: a birthday without a year ({what[:-1]} {shown}) is left empty"]
    return [f"{name}: {len(numbers)} birthdays without a year ({what} {shown}) are left empty"]


# --- vCard ------------------------------------------------------------------------------------


def read_vcard(data: bytes, name: str) -> Table:
    """The cards of a vCard file (3.0 or 4.0; 2.1 as far as vobject reads it) as a ``Table``.

    Row numbers are the cards' positions (1 = the first card). A card that cannot be read is
    not a row: it is in ``Table.rejected`` with the reason. Raises ``FileRejected`` when the
    file holds no card at all.
    """
    import vobject  # imported here: only vCard imports pay for it

    text, encoding, notes = decode(data, name)
    blocks = _cards(text)  # (first line, text)
    if not blocks:
        raise FileRejected(f"{name}: no vCard in this file (no BEGIN:VCARD ... END:VCARD)")
    table = Table(list(COLUMNS), [], "vcard", encoding, notes)
    no_year = []
    for number, (first_line, block) in enumerate(blocks, start=1):
        try:
            card = vobject.readOne(block)
            person = _from_card(card)
        except (vobject.base.ParseError, ValueError) as error:  # binascii.Error is a ValueError
            reason = f"card {number} (line {_line_of(error, block, first_line)}) cannot be read: {_reason(error)}"
            table.rejected.append((number, _salvage(block), reason))
            continue
        if person.no_year:
            no_year.append(number)
        table.rows.append((number, person.row()))
    table.notes.extend(_no_year_note(name, no_year, "cards"))
    return table


def _cards(text: str) -> list[tuple[int, str]]:
    """(its first line's number, its text) of each ``BEGIN:VCARD`` ... ``END:VCARD`` block; an
    unclosed one runs to the end of the file. Cut apart first so that a broken card costs only
    itself: vobject stops reading a stream at the first error."""
    blocks, current, depth, start = [], None, 0, 0
    for number, line in enumerate(text.splitlines(), start=1):
        key = line.strip().upper()
        if key == "BEGIN:VCARD":
            depth += 1
            if depth == 1:
                current, start = [], number
        if current is not None:
            current.append(line)
        if key == "END:VCARD" and depth:
            depth -= 1
            if depth == 0:
                blocks.append((start, "\r\n".join(current) + "\r\n"))
                current = None
    if current is not None:
        blocks.append((start, "\r\n".join(current) + "\r\n"))  # vobject says "never closed"
    return blocks


def _reason(error: Exception) -> str:
    """vobject's message without its "At line N: " (it counts the lines of its own buffer)."""
    return re.sub(r"^At line \d+: ", "", str(error))


def _line_of(error: Exception, block: str, first_line: int) -> int:
    """The file's line that ``error`` is about: the line vobject quotes, else the card's first."""
    found = re.search(r"Failed to parse line: (.*)$", str(error))
    if found:
        for offset, line in enumerate(block.splitlines()):
            if line.strip() == found.group(1).strip():
                return first_line + offset
    return first_line


def _salvage(block: str) -> list[str]:
    """The cells of a card that cannot be read, for the error report: its FN, as far as readable."""
    found = re.search(r"^FN[^:\r\n]*:(.*)$", block, re.MULTILINE | re.IGNORECASE)
    person = _Person()
    if found:
        first, _, last = found.group(1).strip().rpartition(" ")
        person.set("First name", first)
        person.set("Last name", last)
    return person.row()


def _types(line) -> set[str]:
    """A line's TYPE values, lower case: ``TYPE=work,voice``, ``TYPE="work,voice"``, v2.1 ``;WORK``."""
    types = set()
    for value in [*line.params.get("TYPE", []), *line.singletonparams]:
        types.update(t.strip().strip('"').lower() for t in str(value).split(","))
    return types


def _preferred(lines) -> list:
    """Lines with the preferred one first (v3 ``TYPE=pref``, v4 ``PREF=1``; lowest PREF wins)."""

    def rank(line):
        pref = line.params.get("PREF")
        if pref:
            try:
                return int(pref[0])
            except ValueError:
                return 1
        return 1 if "pref" in _types(line) else 101

    return sorted(lines, key=rank)  # stable: otherwise in the file's order


def _from_card(card) -> _Person:
    person = _Person()
    lines = card.contents
    if "n" in lines:
        n = lines["n"][0].value
        person.set("First name", " ".join(filter(None, [_clean(n.given), _clean(n.additional)])))
        person.set("Last name", n.family)
    if not person.values.get("Last name") and "fn" in lines:
        first, _, last = _clean(lines["fn"][0].value).rpartition(" ")
        person.set("First name", first)
        person.set("Last name", last)
    person.email([line.value for line in _preferred(lines.get("email", []))])
    numbers = []
    for line in _preferred(lines.get("tel", [])):
        types = _types(line)
        kind = next((k for k in ("fax", "cell", "work", "home") if k in types), "")
        number = re.sub(r"^tel:", "", _clean(line.value), flags=re.IGNORECASE)  # v4 VALUE=uri
        numbers.append(("cell" if "mobile" in types else kind, number))
    person.phones(numbers)
    if "org" in lines:
        org = lines["org"][0].value
        org = org if isinstance(org, list) else [org]
        person.set("Company", org[0] if org else "")
        person.set("Department", ", ".join(_clean(unit) for unit in org[1:] if _clean(unit)))
    if "title" in lines:
        person.set("Job title", lines["title"][0].value)
    addresses = lines.get("adr", [])
    work = [a for a in addresses if "work" in _types(a)] or addresses
    if work:
        adr = work[0].value
        person.set("Street", ", ".join(part.strip() for part in _clean(adr.street).splitlines() if part.strip()))
        person.set("Postal code", adr.code)
        person.set("City", adr.city)
        person.set("State / region", adr.region)
        person.set("Country", adr.country)
    if "bday" in lines:
        person.birthday(lines["bday"][0].value)
    person.set("Notes", "\n".join(_clean(line.value) for line in lines.get("note", [])))
    person.website([line.value for line in lines.get("url", [])])
    return person


# --- Google and Outlook CSV -------------------------------------------------------------------


def recognise(header: list[str]) -> str | None:
    """``google`` or ``outlook`` if ``header`` is such an export's, else ``None``."""
    names = set(header)
    if {"Given Name", "Family Name"} <= names and ("E-mail 1 - Value" in names or "Organization 1 - Name" in names):
        return "google"  # the older export
    if {"First Name", "Last Name"} <= names:
        if "E-mail 1 - Value" in names or "Phone 1 - Value" in names or "Organization Name" in names:
            return "google"
        if "E-mail Address" in names or "Business Phone" in names or "Mobile Phone" in names:
            return "outlook"
    return None


def convert_csv(table: Table, name: str) -> Table:
    """A CSV ``table`` from Google Contacts or Outlook as a contacts table; others unchanged."""
    header = tuple(str(column).strip() for column in table.header)
    kind = recognise(list(header))
    if kind is None:
        return table
    convert = _from_google if kind == "google" else _from_outlook
    rows, no_year = [], []
    for number, cells in table.rows:
        cell = dict(zip(header, cells, strict=False))
        person = convert(lambda column, cell=cell: cell.get(column) or "", header)
        if person.no_year:
            no_year.append(number)
        rows.append((number, person.row()))
    notes = table.notes + _no_year_note(name, no_year, "rows")
    return Table(list(COLUMNS), rows, kind, table.encoding, notes)


@functools.lru_cache(maxsize=64)  # asked for every row of a file, always with its one header
def _numbered(header: tuple[str, ...], kind: str, part: str) -> tuple[int, ...]:
    """The N of Google's ``<kind> N - <part>`` columns, in order."""
    pattern = re.compile(rf"{re.escape(kind)} (\d+) - {re.escape(part)}")
    return tuple(int(found.group(1)) for column in header if (found := pattern.fullmatch(column)))


def _values(text: str) -> list[str]:
    return [value.strip() for value in text.split(MULTI) if value.strip()]


def _label(text: str) -> str:
    """Google's label: ``* Work`` (the star marks the primary one) -> ``work``."""
    return text.replace("*", "").strip().lower()


def _from_google(get, header: tuple[str, ...]) -> _Person:
    person = _Person()
    old = "Given Name" in header
    given = get("Given Name") if old else get("First Name")
    middle = get("Additional Name") if old else get("Middle Name")
    person.set("First name", " ".join(filter(None, [given.strip(), middle.strip()])))
    person.set("Last name", get("Family Name") if old else get("Last Name"))
    label = "Type" if old else "Label"
    emails = []
    for n in _numbered(header, "E-mail", "Value"):
        primary = get(f"E-mail {n} - {label}").startswith("*")
        values = _values(get(f"E-mail {n} - Value"))
        emails = values + emails if primary else emails + values
    person.email(emails)
    numbers = []
    for n in _numbered(header, "Phone", "Value"):
        kind = _label(get(f"Phone {n} - {label}"))
        kind = {"mobile": "cell", "work": "work", "home": "home", "main": ""}.get(kind, "fax" if "fax" in kind else "")
        numbers += [(kind, number) for number in _values(get(f"Phone {n} - Value"))]
    person.phones(numbers)
    prefix = "Organization 1 - " if old else "Organization "
    person.set("Company", get(prefix + "Name"))
    person.set("Job title", get(prefix + "Title"))
    person.set("Department", get(prefix + "Department"))
    addresses = _numbered(header, "Address", "Street")
    work = [n for n in addresses if _label(get(f"Address {n} - {label}")) == "work"] + list(addresses)
    for n in work:
        if any(get(f"Address {n} - {p}") for p in ("Street", "City", "Postal Code", "Country")):
            person.set("Street", _values(get(f"Address {n} - Street"))[:1])
            person.set("Postal code", _values(get(f"Address {n} - Postal Code"))[:1])
            person.set("City", _values(get(f"Address {n} - City"))[:1])
            person.set("State / region", _values(get(f"Address {n} - Region"))[:1])
            person.set("Country", _values(get(f"Address {n} - Country"))[:1])
            break
    person.birthday(get("Birthday"))
    person.set("Notes", get("Notes"))
    person.website([url for n in _numbered(header, "Website", "Value") for url in _values(get(f"Website {n} - Value"))])
    return person


def _from_outlook(get, header: tuple[str, ...]) -> _Person:
    person = _Person()
    person.set("First name", " ".join(filter(None, [get("First Name").strip(), get("Middle Name").strip()])))
    person.set("Last name", get("Last Name"))
    person.email([get("E-mail Address"), get("E-mail 2 Address"), get("E-mail 3 Address")])
    numbers = [("cell", get("Mobile Phone")), ("work", get("Business Phone")), ("work", get("Business Phone 2"))]
    numbers += [("", get("Primary Phone")), ("", get("Company Main Phone")), ("home", get("Home Phone"))]
    numbers += [("home", get("Home Phone 2")), ("fax", get("Business Fax")), ("", get("Other Phone"))]
    person.phones(numbers)
    person.set("Company", get("Company"))
    person.set("Job title", get("Job Title"))
    person.set("Department", get("Department"))
    place = "Business" if any(get(f"Business {p}") for p in ("Street", "City", "Postal Code")) else "Home"
    street = ", ".join(filter(None, (get(f"{place} Street{n}").strip() for n in ("", " 2", " 3"))))
    person.set("Street", street)
    person.set("Postal code", get(f"{place} Postal Code"))
    person.set("City", get(f"{place} City"))
    person.set("State / region", get(f"{place} State"))
    person.set("Country", get(f"{place} Country/Region") or get(f"{place} Country"))
    person.birthday(get("Birthday"))
    person.set("Notes", get("Notes"))
    person.website([get("Web Page")])
    return person


# --- accounts first, then the contacts --------------------------------------------------------


def start_contacts(crm, path: Path, *, actor: Actor, entity: str = "contact", mapping=None, options=None) -> list:
    """Store the jobs that import the contacts file at ``path``; return them in the order to run.

    For a vCard, Google or Outlook file whose company column maps to a link to accounts, the
    distinct company names (trimmed, compared ignoring case) that no stored account is titled
    with become an account job first (a CSV of the names next to the file, matched on the
    name: a re-run or a resume skips what exists); then the contact job, which links each
    contact to its account by name. Cards that cannot be read are stored as the contact job's
    failed rows. Any other file gets the one job ``job.start`` makes.

    Raises like ``job.start`` (``FileRejected``, ``ValidationError``, ``PermissionDenied``);
    nothing is stored then.
    """
    options = options or jobs.Options()
    path = Path(path).resolve()
    table = read_table(path)
    if table.format not in FORMATS:
        return [jobs.start(crm, entity, path, actor=actor, mapping=mapping, options=options)]
    ce = crm.records.entity(entity)
    mapped = m.match(ce, table.header, mapping)
    names, account = _new_accounts(crm, ce, table, mapped)
    crm.permissions.require(actor, entity, "create")  # before a file is written or a job stored
    created_file = None
    try:
        with crm.tables.database.atomic():
            started = []
            if names:
                created_file, column, field = _accounts_file(crm, account, names, path)
                matched = jobs.Options([field], "skip", options.rules, options.chunk)
                given = {column: field}
                started.append(jobs.start(crm, account, created_file, actor=actor, mapping=given, options=matched))
            contact_job = jobs.start(crm, entity, path, actor=actor, mapping=mapping, options=options)
            _reject(crm, contact_job, table)
            if started:
                # A worker given the contact job runs the account job first (imports/background.py).
                _set_options(contact_job, contact_job.options | {"after": started[0].id})
            started.append(contact_job)
    except BaseException:
        if created_file is not None:
            created_file.unlink(missing_ok=True)
        raise
    return started


def _set_options(job, options: dict) -> None:
    ImportJob = type(job)
    ImportJob.update(options=options).where(ImportJob.id == job.id).execute()
    job.options = options


def preview_contacts(crm, path: Path, *, entity: str = "contact", mapping=None, options=None, limit: int = 20):
    """``job.preview`` of a contacts file as ``start_contacts`` would import it; writes nothing.

    The accounts the import would create do not exist yet, so the rows are checked with the
    company column left out (a stored or a new account is found either way), and a note names
    the new accounts. Raises like ``job.preview``.
    """
    table = read_table(Path(path))
    names = []
    if table.format in FORMATS:
        ce = crm.records.entity(entity)
        mapped = m.match(ce, table.header, mapping)
        names, _ = _new_accounts(crm, ce, table, mapped)
    if not names:
        return jobs.preview(crm, entity, path, mapping=mapping, options=options, limit=limit)
    result = jobs.preview(crm, entity, path, mapping=(mapping or {}) | {"Company": ""}, options=options, limit=limit)
    result.mapping["Company"] = mapped.as_json(table.header)["Company"]
    result.unmapped.pop("Company", None)
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    result.notes.append(f"{_count(len(names), 'new account')} will be created first: {shown}")
    return result


def run_contacts(crm, started: list, *, progress=None) -> list:
    """Run the jobs of ``start_contacts`` in order (accounts before the contacts linked to them)."""
    finished = []
    for job in started:
        finished.append(jobs.run_job(crm, job.id, progress=progress))
        if job is not started[-1]:
            discard(finished[-1])
    return finished


def discard(accounts_job) -> None:
    """Delete the names file ``start_contacts`` wrote for ``accounts_job`` once that job is done."""
    if accounts_job.status == "done":
        Path(accounts_job.path).unlink(missing_ok=True)


def describe(started: list) -> str:
    """``Google Contacts CSV, 240 contacts, 31 new accounts`` for the jobs of ``start_contacts``."""
    contact_job = started[-1]
    what = FORMATS.get(contact_job.format, contact_job.format.upper())
    accounts = started[0].total_rows if len(started) > 1 else 0
    return f"{what}, {_count(contact_job.total_rows, 'contact')}, {_count(accounts, 'new account')}"


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _new_accounts(crm, ce, table: Table, mapped) -> tuple[list[str], str | None]:
    """(company names no stored account is titled with, in file order, the account entity)."""
    for index, target in mapped.columns.items():
        fd = ce.definition.fields.get(target)
        if fd is not None and fd.type == "link" and table.header[index] == "Company":
            break
    else:
        return [], None
    account = crm.compiled.entities[fd.entity]
    stored = {rows.name_key(account.title_of(record)) for record in account.model.select()}
    names = {}
    for _number, cells in table.rows:
        name = " ".join(str(cells[index]).split()) if index < len(cells) else ""
        if name and not name.isdigit() and rows.name_key(name) not in stored:
            names.setdefault(rows.name_key(name), name)  # the first spelling in the file wins
    return list(names.values()), fd.entity


def _accounts_file(crm, entity: str, names: list[str], path: Path) -> tuple[Path, str, str]:
    """Write the names as a CSV next to ``path``, under the label of the field that titles the
    account (``{name}``); return (file, column, field)."""
    ace = crm.compiled.entities[entity]
    found = re.fullmatch(r"\{(\w+)\}", ace.definition.title.strip())
    if found is None or found.group(1) not in ace.definition.fields:
        raise ValidationError(
            {"account": [f"{ace.definition.label} titles are {ace.definition.title!r}; cannot create one from a name"]}
        )
    field = found.group(1)
    column = ace.definition.fields[field].label
    handle = tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f"{path.stem}.accounts-", suffix=".csv", delete=False, encoding="utf-8", newline=""
    )
    with handle as out:
        writer = csv.writer(out)
        writer.writerow([column])
        writer.writerows([name] for name in names)
    return Path(handle.name), column, field


def _reject(crm, job, table: Table) -> None:
    """Store the cards the reader could not read as failed rows of ``job``."""
    if not table.rejected:
        return
    Problem, ImportJob = crm.tables.ImportProblem, type(job)
    for number, cells, reason in table.rejected:
        data = [[column, cells[i] if i < len(cells) else ""] for i, column in enumerate(table.header)]
        Problem.create(job=job.id, row_number=number, data=data, errors={"": [reason]})
    count = len(table.rejected)
    ImportJob.update(total_rows=ImportJob.total_rows + count, failed=ImportJob.failed + count).where(
        ImportJob.id == job.id
    ).execute()
    job.total_rows += count
    job.failed += count
