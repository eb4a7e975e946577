"""Contacts from Google Contacts CSV, Outlook CSV and vCard 3.0/4.0, with their accounts by company name."""

from __future__ import annotations

import datetime as dt
import io
import shutil
from pathlib import Path

import pytest

from crm_platform.errors import ValidationError
from crm_platform.imports import FileRejected, Options, contacts, error_report, read_table, run_job, start
from crm_platform.imports.mapping import match

from . import runtime_fixtures
from .runtime_fixtures import SYSTEM

crm_app, crm = runtime_fixtures.crm_app, runtime_fixtures.crm  # the fixtures

FIXTURES = Path(__file__).parent / "fixtures" / "contacts"


def fixture(tmp_path: Path, name: str) -> Path:
    """A copy of fixture ``name``: the import writes its accounts file next to it."""
    return Path(shutil.copy(FIXTURES / name, tmp_path / name))


def records(crm, entity: str) -> list:
    model = crm.compiled.entities[entity].model
    return list(model.select().order_by(model.id))


def contact(crm, last_name: str):
    model = crm.compiled.entities["contact"].model
    return model.get(model.last_name == last_name)


def account_names(crm) -> list[str]:
    return [a.name for a in records(crm, "account")]


def import_contacts(crm, path: Path, **options) -> list:
    started = contacts.start_contacts(crm, path, actor=SYSTEM, options=Options(**({"rules": False} | options)))
    return contacts.run_contacts(crm, started)


def add_account(crm, name: str) -> int:
    return crm.records.create("account", {"name": name}, SYSTEM, "form").id


def problems(crm, job) -> dict[int, dict]:
    Problem = crm.tables.ImportProblem
    return {p.row_number: p.errors for p in Problem.select().where(Problem.job == job.id)}


# --- Google --------------------------------------------------------------------------------------


def test_a_google_csv_imports_contacts_and_creates_each_new_account_once(crm, tmp_path):
    initech = add_account(crm, "Initech")
    path = fixture(tmp_path, "google.csv")
    started = contacts.start_contacts(crm, path, actor=SYSTEM, options=Options(rules=False))
    assert contacts.describe(started) == "Google Contacts CSV, 4 contacts, 2 new accounts"
    assert [(job.entity, job.format, job.total_rows) for job in started] == [
        ("account", "csv", 2),
        ("contact", "google", 4),
    ]
    assert started[-1].notes == ["google.csv: a birthday without a year (row 3) is left empty"]
    accounts_job, contacts_job = contacts.run_contacts(crm, started)

    assert (accounts_job.created, accounts_job.failed) == (2, 0)
    assert not Path(accounts_job.path).exists()  # the names file is gone once its job is done
    assert sorted(p.name for p in tmp_path.glob("google*")) == ["google.csv"]
    assert account_names(crm) == ["Initech", "Acme GmbH", "Globex"]  # "ACME GmbH " is Acme GmbH
    acme = records(crm, "account")[1].id
    assert (contacts_job.status, contacts_job.created, contacts_job.failed) == ("done", 3, 1)
    anna = contact(crm, "Schmidt")
    assert (anna.first_name, anna.email, anna.phone, anna.mobile) == (
        "Anna Maria",
        "anna@acme.example",  # the primary ("* Work") of several
        "+49 30 123456",
        "+49 170 1111111",
    )
    assert (anna.job_title, anna.department, anna.account_id, anna.birthday) == (
        "CTO",
        "Engineering",
        acme,
        dt.date(1985, 3, 2),
    )
    assert (anna.mailing_street, anna.mailing_postal_code, anna.mailing_city, anna.mailing_country) == (
        "Hauptstr. 1",
        "10115",
        "Berlin",
        "DE",
    )
    assert anna.linkedin == "https://www.linkedin.com/in/annaschmidt"
    assert anna.description == "Met at CeBIT\nOther email: a.schmidt@acme.example, anna@home.example"
    ben = contact(crm, "Becker")
    assert (ben.account_id, ben.birthday, ben.phone) == (acme, None, "+49 30 654321")  # --07-14: no year
    carla = contact(crm, "Diaz")
    assert (carla.account_id, carla.phone) == (initech, "+1 555 0100")
    assert carla.description == "Other phone: +1 555 0199 (home)"
    assert list(problems(crm, contacts_job)) == [5]  # Dan Wrong: not-an-email
    assert "email" in problems(crm, contacts_job)[5]


def test_an_older_google_csv_is_recognised_by_its_header(crm, tmp_path):
    accounts_job, contacts_job = import_contacts(crm, fixture(tmp_path, "google_old.csv"))
    assert contacts_job.format == "google"
    assert account_names(crm) == ["Umbrella AG"]  # "umbrella ag" in the second row is the same one
    eva, frank = contact(crm, "Klein"), contact(crm, "Ott")
    assert (eva.first_name, eva.email, eva.mobile, eva.phone, eva.job_title, eva.birthday) == (
        "Eva",
        "eva@umbrella.example",
        "+49 151 2222222",
        "+49 89 777777",
        "Head of Purchasing",
        dt.date(1990, 11, 30),
    )
    assert (frank.email, frank.phone) == ("frank@ott.example", "+49 40 3333")  # a home number, none else
    assert eva.account_id == frank.account_id == records(crm, "account")[0].id


def test_a_reimport_matched_on_email_skips_the_duplicates_and_creates_no_account(crm, tmp_path):
    path = fixture(tmp_path, "google.csv")
    import_contacts(crm, path, match=["email"])
    started = contacts.start_contacts(crm, path, actor=SYSTEM, options=Options(match=["email"], rules=False))
    assert contacts.describe(started) == "Google Contacts CSV, 4 contacts, 0 new accounts"
    (again,) = contacts.run_contacts(crm, started)
    assert (again.created, again.skipped, again.failed) == (0, 3, 1)
    assert len(records(crm, "contact")) == 3
    assert account_names(crm) == ["Acme GmbH", "Initech", "Globex"]


# --- Outlook -------------------------------------------------------------------------------------


def test_an_outlook_csv_in_cp1252_keeps_its_accents(crm, tmp_path):
    started = contacts.start_contacts(crm, fixture(tmp_path, "outlook.csv"), actor=SYSTEM, options=Options(rules=False))
    assert started[-1].notes == ["outlook.csv is not UTF-8; read it as cp1252 (Windows/Excel) - check accented letters"]
    assert contacts.describe(started) == "Outlook CSV, 2 contacts, 1 new account"
    _, contacts_job = contacts.run_contacts(crm, started)
    assert (contacts_job.format, contacts_job.created) == ("outlook", 2)
    assert account_names(crm) == ["Müller & Söhne KG"]
    juergen = contact(crm, "Weiß")
    assert (juergen.first_name, juergen.job_title) == ("Jürgen", "Geschäftsführer")
    assert juergen.birthday == dt.date(1970, 5, 17)
    assert (juergen.email, juergen.phone, juergen.mobile) == (
        "j.weiss@mueller-soehne.example",
        "+49 211 123400",
        "+49 172 4444444",
    )
    assert (juergen.mailing_street, juergen.mailing_city, juergen.mailing_country) == (
        "Königsallee 5, 3. OG",
        "Düsseldorf",
        "DE",
    )
    assert "Other phone: +49 211 123499 (fax)" in juergen.description
    zoe = contact(crm, "Ölund")
    assert (zoe.first_name, zoe.birthday, zoe.mailing_city) == ("Zoë", None, "Köln")  # 0/0/00: none; a home address
    assert zoe.mailing_country == "DE"  # written "Deutschland"
    assert zoe.account_id == juergen.account_id


def test_company_names_match_stored_accounts_whatever_their_spaces_and_case(crm, tmp_path):
    stored = add_account(crm, "Acme  Widgets   GmbH")  # typed with extra spaces once
    path = tmp_path / "google.csv"
    path.write_text(
        "First Name,Last Name,E-mail 1 - Value,Organization Name\n"
        "Ann,One,ann@x.example,ACME WIDGETS GMBH\n"
        "Bob,Two,bob@x.example,  acme widgets  gmbh \n"
        "Cy,Three,cy@x.example,New  Corp\n"
        "Di,Four,di@x.example,new corp\n",
        encoding="utf-8",
    )
    accounts_job, contacts_job = import_contacts(crm, path)
    assert account_names(crm) == ["Acme  Widgets   GmbH", "New Corp"]  # one new account, the first spelling
    assert (contacts_job.created, contacts_job.failed) == (4, 0)
    new_corp = records(crm, "account")[1].id
    linked = {c.last_name: c.account_id for c in records(crm, "contact")}
    assert linked == {"One": stored, "Two": stored, "Three": new_corp, "Four": new_corp}


# --- vCard ---------------------------------------------------------------------------------------


def test_a_vcard_3_file_imports_each_card_and_reports_the_broken_one(crm, tmp_path):
    acme = add_account(crm, "ACME GmbH")
    started = contacts.start_contacts(crm, fixture(tmp_path, "contacts_v3.vcf"), actor=SYSTEM, options=Options())
    assert contacts.describe(started) == "vCard, 4 contacts, 1 new account"
    accounts_job, contacts_job = contacts.run_contacts(crm, started)
    assert account_names(crm) == ["ACME GmbH", "Nowak Consulting"]
    assert (contacts_job.format, contacts_job.total_rows) == ("vcard", 4)
    assert (contacts_job.created, contacts_job.failed) == (3, 1)
    greta = contact(crm, "Hoffmann")
    assert (greta.first_name, greta.job_title, greta.department) == (
        "Greta Luise",
        "Head of Research and Development",  # a folded line
        "Research",
    )
    assert greta.email == "greta.hoffmann@mail.example"  # TYPE=PREF, though listed second
    assert (greta.phone, greta.mobile) == ("+49 30 123457", "+49 160 5555555")  # work, cell; not the home one
    assert (greta.mailing_street, greta.mailing_city, greta.mailing_state, greta.birthday) == (
        "Hauptstr. 1",  # the work address, not the home one listed first
        "Berlin",
        "Berlin",
        dt.date(1979, 12, 24),
    )
    assert greta.description.startswith("Speaks at our user conference every year, please invite her again next")
    assert "Other email: greta@acme.example" in greta.description
    assert greta.account_id == contact(crm, "Adams").account_id == acme  # "acme gmbh" too
    nowak = contact(crm, "Nowak")
    assert (nowak.first_name, nowak.email) == ("Paweł", None)  # a card without email
    assert problems(crm, contacts_job) == {
        3: {"": ["card 3 (line 31) cannot be read: Failed to parse line: this line is not a property"]}
    }
    out = io.StringIO()
    assert error_report(crm, contacts_job.id, out) == 1
    assert out.getvalue().splitlines()[1].startswith("3,Bert,Broken,")
    assert "row: card 3 (line 31) cannot be read" in out.getvalue()


def test_a_vcard_4_file_reads_preferences_uris_and_birthdays_without_a_year(crm, tmp_path):
    started = contacts.start_contacts(crm, fixture(tmp_path, "contacts_v4.vcf"), actor=SYSTEM, options=Options())
    assert started[-1].notes == ["contacts_v4.vcf: a birthday without a year (card 1) is left empty"]
    contacts.run_contacts(crm, started)
    assert account_names(crm) == ["Initech", "Nakatomi Trading"]
    joerg = contact(crm, "Müller")
    assert (joerg.first_name, joerg.email, joerg.phone, joerg.mobile, joerg.birthday) == (
        "Jörg",
        "joerg@initech.example",  # PREF=1, though listed second
        "+49-30-1234",  # tel: URI
        "+49-171-7777777",
        None,  # --0517
    )
    assert joerg.description == "Other email: joerg@home.example\nWebsite: https://initech.example/team/joerg"
    wei = contact(crm, "Li")
    assert (wei.birthday, wei.mailing_city, wei.mailing_state, wei.mailing_country) == (
        dt.date(1988, 2, 3),
        "Los Angeles",
        "CA",
        "US",
    )


def test_a_vcard_is_recognised_by_its_content(tmp_path):
    path = tmp_path / "export.txt"
    path.write_bytes((FIXTURES / "contacts_v4.vcf").read_bytes())
    table = read_table(path)
    assert (table.format, len(table.rows), table.header) == ("vcard", 2, contacts.COLUMNS)


@pytest.mark.parametrize("content", [b"", b"\r\n\r\n", b"VERSION:3.0\r\nN:Doe;John\r\n"])
def test_a_vcf_without_a_card_is_refused_and_nothing_is_stored(crm, tmp_path, content):
    path = tmp_path / "empty.vcf"
    path.write_bytes(content)
    with pytest.raises(FileRejected) as caught:
        contacts.start_contacts(crm, path, actor=SYSTEM)
    reason = "the file is empty (0 bytes)" if not content else "no vCard in this file (no BEGIN:VCARD ... END:VCARD)"
    assert str(caught.value) == f"empty.vcf: {reason}"
    assert crm.tables.ImportJob.select().count() == 0
    assert list(tmp_path.glob("*.accounts-*")) == []


def test_the_fixture_empty_vcf_is_refused(tmp_path):
    with pytest.raises(FileRejected, match="no vCard in this file"):
        read_table(FIXTURES / "empty.vcf")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Germany", "DE"),
        ("deutschland", "DE"),
        ("Schweiz", "CH"),
        ("USA", "US"),
        ("gb", "GB"),
        ("UK", "GB"),
        ("Atlantis", None),
        ("", None),
    ],
)
def test_country_names_become_codes(text, code):
    assert contacts.country_code(text) == code


def test_a_country_that_is_no_option_fails_only_its_row(crm, tmp_path):
    path = tmp_path / "atlantis.vcf"
    card = "BEGIN:VCARD\r\nVERSION:3.0\r\nN:{0};Al;;;\r\nADR:;;;;;;{1}\r\nEND:VCARD\r\n"
    path.write_text(card.format("Deep", "Atlantis") + card.format("Shallow", "France"), encoding="utf-8")
    (job,) = import_contacts(crm, path)
    assert (job.created, job.failed) == (1, 1)
    assert contact(crm, "Shallow").mailing_country == "FR"
    assert problems(crm, job) == {1: {"mailing_country": ["must be one of: DE, AT, CH, FR, GB, US, other"]}}


# --- mapping ----------------------------------------------------------------------------------------


def test_the_preset_maps_company_to_the_account_and_the_person_may_change_it(crm, tmp_path):
    ce = crm.records.entity("contact")
    mapped = match(ce, contacts.COLUMNS).as_json(contacts.COLUMNS)
    assert mapped["Company"] == "account" and mapped["Notes"] == "description"
    assert mapped["Email"] == "email" and mapped["State / region"] == "mailing_state"
    path = fixture(tmp_path, "contacts_v4.vcf")
    started = contacts.start_contacts(crm, path, actor=SYSTEM, mapping={"Company": ""}, options=Options())
    assert [job.entity for job in started] == ["contact"]  # no company column: no accounts
    contacts.run_contacts(crm, started)
    assert account_names(crm) == [] and contact(crm, "Li").account_id is None


def test_a_vcard_imports_into_leads_with_the_company_as_text(crm, tmp_path):
    path = fixture(tmp_path, "contacts_v4.vcf")
    job = run_job(crm, start(crm, "lead", path, actor=SYSTEM, options=Options(rules=False)).id)
    assert (job.format, job.created) == ("vcard", 2), problems(crm, job)
    assert [lead.company for lead in records(crm, "lead")] == ["Initech", "Nakatomi Trading"]


def test_a_wrong_mapping_stores_no_job_and_no_accounts_file(crm, tmp_path):
    path = fixture(tmp_path, "google.csv")
    with pytest.raises(ValidationError) as caught:
        contacts.start_contacts(crm, path, actor=SYSTEM, mapping={"Email": "nope"})
    assert caught.value.errors == {"Email": ["there is no importable field 'nope'"]}
    assert crm.tables.ImportJob.select().count() == 0
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("crm.sqlite3")) == ["google.csv"]
    assert account_names(crm) == []


# --- the command line --------------------------------------------------------------------------------


def test_the_cli_imports_a_google_csv_with_its_accounts(crm_app, tmp_path):
    path = fixture(tmp_path, "google.csv")
    report = tmp_path / "errors.csv"
    result = crm_app.test_cli_runner().invoke(
        args=["import", "contact", str(path), "--match", "email", "--no-rules", "--errors", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert "Google Contacts CSV, 4 contacts, 3 new accounts" in result.output
    assert "job #1 done: 3 created, 0 updated, 0 skipped, 0 failed of 3 rows" in result.output
    assert "job #2 done: 3 created, 0 updated, 0 skipped, 1 failed of 4 rows" in result.output
    assert report.read_text().splitlines()[1].startswith("5,Dan,Wrong,not-an-email")
    assert sorted(p.name for p in tmp_path.glob("google*")) == ["google.csv"]
    assert account_names(crm_app.extensions["crm"]) == ["Acme GmbH", "Initech", "Globex"]


def test_the_cli_refuses_an_empty_vcf(crm_app, tmp_path):
    result = crm_app.test_cli_runner().invoke(args=["import", "contact", str(FIXTURES / "empty.vcf")])
    assert result.exit_code == 1
    assert "error: empty.vcf: no vCard in this file" in result.output


def test_the_cli_previews_a_vcard_with_the_accounts_it_would_create(crm_app, tmp_path):
    crm = crm_app.extensions["crm"]
    add_account(crm, "Initech")
    path = fixture(tmp_path, "contacts_v4.vcf")
    result = crm_app.test_cli_runner().invoke(args=["import", "contact", str(path), "--preview", "5"])
    assert result.exit_code == 0, result.output
    assert "note: 1 new account will be created first: Nakatomi Trading" in result.output
    assert "Company -> account" in result.output
    assert "row 1: create" in result.output and "row 2: create" in result.output
    assert account_names(crm) == ["Initech"] and records(crm, "contact") == []
    assert crm.tables.ImportJob.select().count() == 0


def test_a_vcard_2_1_card_with_a_charset_and_quoted_printable_is_read(tmp_path):
    path = tmp_path / "old.vcf"
    path.write_bytes(
        b"BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=ISO-8859-1;ENCODING=QUOTED-PRINTABLE:M=FCller;J=F6rg\r\n"
        b"TEL;CELL;VOICE:+49 170 1\r\nEND:VCARD\r\n"
    )
    ((number, cells),) = read_table(path).rows
    row = dict(zip(contacts.COLUMNS, cells, strict=True))
    assert (number, row["First name"], row["Last name"], row["Mobile"]) == (1, "Jörg", "Müller", "+49 170 1")


class Crash(Exception):
    pass


def crash(job):
    raise Crash


def test_the_account_job_skips_an_account_stored_after_it_started_and_resumes(crm, tmp_path):
    path = fixture(tmp_path, "google.csv")
    started = contacts.start_contacts(crm, path, actor=SYSTEM, options=Options(rules=False, chunk=1))
    assert (started[0].entity, started[0].status, started[0].total_rows) == ("account", "queued", 3)
    with pytest.raises(Crash):  # the process dies after the first account's chunk
        run_job(crm, started[0].id, after_chunk=crash)
    assert account_names(crm) == ["Acme GmbH"]
    add_account(crm, "Initech")  # meanwhile, by someone else
    accounts_job, contacts_job = contacts.run_contacts(crm, started)
    assert (accounts_job.status, accounts_job.created, accounts_job.skipped) == ("done", 2, 1)
    assert account_names(crm) == ["Acme GmbH", "Initech", "Globex"]
    assert contact(crm, "Diaz").account_id == records(crm, "account")[1].id
    assert (contacts_job.created, contacts_job.failed) == (3, 1)


def test_a_contact_job_refused_after_its_account_job_was_stored_leaves_neither(crm, tmp_path):
    # The account job and its names file are made first; the contact job's options are refused after.
    path = fixture(tmp_path, "google.csv")
    with pytest.raises(ValidationError) as caught:
        contacts.start_contacts(crm, path, actor=SYSTEM, options=Options(match=["nope"]))
    assert caught.value.errors == {"match": ["there is no field 'nope'"]}
    assert crm.tables.ImportJob.select().count() == 0
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("crm.sqlite3")) == ["google.csv"]
