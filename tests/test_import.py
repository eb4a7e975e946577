"""CSV/XLSX import: reading, mapping, the resumable job, duplicates, the error report and the CLI."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crm_platform.errors import PermissionDenied, ValidationError
from crm_platform.imports import FileRejected, Options, error_report, preview, run_job, start

from . import runtime_fixtures, web_fixtures
from .conftest import PROJECT
from .web_fixtures import SYSTEM, make_record, user_id

web_app, web_crm, sign_in = web_fixtures.web_app, web_fixtures.web_crm, web_fixtures.sign_in  # the fixtures
crm_app, crm = runtime_fixtures.crm_app, runtime_fixtures.crm

HEADER = ["First name", "Last name", "Email", "Company", "Country", "Lead score", "Budget", "Budget currency"]


def write_csv(path: Path, rows: list[list], header=HEADER, encoding="utf-8") -> Path:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(out.getvalue().encode(encoding))
    return path


def lead_row(n: int, **overrides) -> list:
    values = {
        "First name": f"Ann{n}",
        "Last name": f"Lee{n}",
        "Email": f"ann{n}@example.com",
        "Company": f"Firm {n}",
        "Country": "DE",
        "Lead score": str(n % 100),
        "Budget": "1200.50",
        "Budget currency": "EUR",
    } | overrides
    return [values[column] for column in HEADER]


def leads(crm) -> list:
    ce = crm.compiled.entities["lead"]
    return list(ce.model.select().order_by(ce.model.id))


def run(crm, path, actor=SYSTEM, **options):
    job = start(crm, "lead", path, actor=actor, options=Options(**({"rules": False} | options)))
    return run_job(crm, job.id)


# --- round trip -------------------------------------------------------------------------------


@pytest.fixture
def admin(sign_in):
    return sign_in("admin")


LIST_FIELDS = ["first_name", "last_name", "company", "country", "source", "score", "owner"]


def test_a_csv_export_imports_back_to_the_same_records(web_crm, admin, tmp_path):
    owner = user_id(web_crm, "anna")
    made = [
        make_record(web_crm, "lead", first_name="Jörg", last_name="Öz", company="=cmd()", source="event", owner=owner),
        make_record(web_crm, "lead", first_name="Bo", last_name="Li", country="FR", score=70, source="partner"),
    ]
    before = sorted(([getattr(r, f) for f in LIST_FIELDS] for r in leads(web_crm)), key=str)  # after rules
    path = tmp_path / "leads.csv"
    path.write_bytes(admin.get("/r/lead/export.csv").get_data())
    for record in made:
        web_crm.records.delete("lead", record.id, SYSTEM, "system")

    job = run(web_crm, path)

    assert (job.status, job.created, job.failed) == ("done", 2, 0)
    after = sorted(([getattr(r, f) for f in LIST_FIELDS] for r in leads(web_crm)), key=str)
    assert after == before  # "=cmd()" came back without the export's apostrophe, as text


def test_an_xlsx_export_imports_back_to_the_same_records(web_crm, admin, tmp_path):
    made = [make_record(web_crm, "lead", first_name="Eve", last_name="Ng", country="AT", score=55, source="event")]
    before = [[getattr(r, f) for f in LIST_FIELDS] for r in made]
    path = tmp_path / "leads.xlsx"
    path.write_bytes(admin.get("/r/lead/export.xlsx").get_data())
    web_crm.records.delete("lead", made[0].id, SYSTEM, "system")

    job = run(web_crm, path)

    assert (job.status, job.created, job.failed) == ("done", 1, 0)
    assert [[getattr(r, f) for f in LIST_FIELDS] for r in leads(web_crm)] == before


# --- files that cannot be read ------------------------------------------------------------


def test_a_cp1252_file_is_read_and_the_guess_reported(crm, tmp_path):
    path = write_csv(
        tmp_path / "excel.csv", [lead_row(1, **{"Last name": "Müller", "Company": "Café €"})], encoding="cp1252"
    )

    job = start(crm, "lead", path, actor=SYSTEM)
    run_job(crm, job.id)

    assert job.notes == ["excel.csv is not UTF-8; read it as cp1252 (Windows/Excel) - check accented letters"]
    assert [(r.last_name, r.company) for r in leads(crm)] == [("Müller", "Café €")]


def test_a_utf8_file_with_a_byte_order_mark_and_semicolons_is_read(crm, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffLast name;Email\nMüller;m@example.com\n".encode())

    run(crm, path)

    assert [(r.last_name, r.email) for r in leads(crm)] == [("Müller", "m@example.com")]


def test_an_empty_file_is_refused(crm, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(FileRejected, match=r"empty.csv: the file is empty \(0 bytes\)"):
        start(crm, "lead", path, actor=SYSTEM)
    assert crm.tables.ImportJob.select().count() == 0


def test_a_binary_file_named_csv_is_refused(crm, tmp_path):
    path = tmp_path / "photo.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(FileRejected, match="photo.csv: this is not a text file"):
        start(crm, "lead", path, actor=SYSTEM)
    assert leads(crm) == []


def test_a_cell_too_long_for_a_csv_reader_is_refused_with_the_reason(crm, tmp_path):
    path = tmp_path / "huge.csv"
    path.write_text("First name,Last name\nAnn," + "x" * 200_000 + "\n", encoding="utf-8")
    with pytest.raises(FileRejected, match=r"huge.csv: cannot be read as CSV \(field larger than field limit"):
        start(crm, "lead", path, actor=SYSTEM)
    assert crm.tables.ImportJob.select().count() == 0


def test_a_file_without_a_header_is_refused(crm, tmp_path):
    path = write_csv(tmp_path / "data.csv", [lead_row(2)], header=lead_row(1))
    with pytest.raises(ValidationError, match="no column of the first row names a field; is there a header row"):
        start(crm, "lead", path, actor=SYSTEM)


def test_a_missing_required_column_writes_nothing(crm, tmp_path):
    path = write_csv(tmp_path / "no_last.csv", [["Ann", "a@example.com"]], header=["First name", "Email"])
    with pytest.raises(ValidationError) as caught:
        start(crm, "lead", path, actor=SYSTEM)
    assert caught.value.errors == {"last_name": ["is required, but no column holds Last name"]}
    assert leads(crm) == [] and crm.tables.ImportJob.select().count() == 0


# --- mapping --------------------------------------------------------------------------------


def test_columns_match_names_and_labels_and_a_mapping_overrides(crm, tmp_path):
    path = write_csv(
        tmp_path / "m.csv", [["Lee", "x@example.com", "Acme", "7"]], header=["LAST_NAME", "E-Mail", "Firma", "id"]
    )
    result = preview(crm, "lead", path, mapping={"E-Mail": "email", "Firma": "company"})

    assert result.mapping == {"LAST_NAME": "last_name", "E-Mail": "email", "Firma": "company", "id": ""}
    assert result.unmapped == {"id": "the record id is given by the CRM"}
    assert [(r.action, r.payload) for r in result.rows] == [
        ("create", {"last_name": "Lee", "email": "x@example.com", "company": "Acme"})
    ]
    assert leads(crm) == []  # a preview writes nothing


def test_preview_shows_the_errors_of_each_row(crm, tmp_path):
    path = write_csv(tmp_path / "p.csv", [lead_row(1), lead_row(2, **{"Lead score": "lots", "Country": "XX"})])

    rows = preview(crm, "lead", path).rows

    assert rows[0].errors == {}
    assert rows[1].row_number == 3 and rows[1].errors == {"score": ["must be a whole number, not 'lots'"]}
    assert leads(crm) == []


# --- rows that fail ---------------------------------------------------------------------------


def test_bad_rows_are_reported_and_the_rest_imported(crm, tmp_path):
    rows = []
    for n in range(100):
        if n % 10 == 3:
            rows.append(lead_row(n, **{"Lead score": "500"}))  # above the maximum
        elif n % 10 == 7:
            rows.append(lead_row(n, **{"Last name": ""}))  # required
        else:
            rows.append(lead_row(n))
    path = write_csv(tmp_path / "some_bad.csv", rows)

    job = run(crm, path, chunk=30)

    assert (job.created, job.failed, job.status) == (80, 20, "done")
    assert len(leads(crm)) == 80
    out = io.StringIO()
    assert error_report(crm, job.id, out) == 20
    report = list(csv.reader(io.StringIO(out.getvalue())))
    assert report[0] == ["row", *HEADER, "errors"]
    assert report[1][0] == "5" and report[1][1:3] == ["Ann3", "Lee3"]  # data row 3 is line 5 of the file
    assert "Lead score:" in report[1][-1]
    assert report[2][0] == "9" and report[2][-1].startswith("Last name:")


def test_a_formula_cell_is_imported_as_text(crm, tmp_path):
    path = write_csv(tmp_path / "f.csv", [lead_row(1, Company="=cmd()"), lead_row(2, Company="'=cmd()")])

    run(crm, path)

    # The export's neutralising apostrophe is removed: both rows hold the same text.
    assert [r.company for r in leads(crm)] == ["=cmd()", "=cmd()"]


# --- duplicates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_duplicate", "created", "updated", "skipped", "failed"),
    [("skip", 3, 0, 3, 0), ("update", 3, 3, 0, 0), ("create", 3, 0, 0, 3)],
)
def test_duplicates_are_skipped_updated_or_created(crm, tmp_path, on_duplicate, created, updated, skipped, failed):
    crm.records.create("lead", {"last_name": "Old", "email": "ann1@example.com", "source": "event"}, SYSTEM, "form")
    rows = [lead_row(1), lead_row(2), lead_row(2, Company="Second"), lead_row(3), lead_row(3), lead_row(4)]
    path = write_csv(tmp_path / "dups.csv", rows)

    job = run(crm, path, match=["email"], on_duplicate=on_duplicate)

    assert (job.created, job.updated, job.skipped, job.failed) == (created, updated, skipped, failed)
    by_email = {r.email: r for r in leads(crm)}
    assert len(by_email) == 4
    if on_duplicate == "update":
        assert by_email["ann1@example.com"].last_name == "Lee1"
        assert by_email["ann2@example.com"].company == "Second"
    else:
        assert by_email["ann1@example.com"].last_name == "Old"
        assert by_email["ann2@example.com"].company == "Firm 2"


def test_duplicates_can_match_on_several_fields(crm, tmp_path):
    rows = [lead_row(1, Email=""), lead_row(1, Email=""), lead_row(1, Email="", **{"First name": "Other"})]
    path = write_csv(tmp_path / "names.csv", rows)

    job = run(crm, path, match=["first_name", "last_name"])

    assert (job.created, job.skipped) == (2, 1)


@pytest.mark.parametrize("on_duplicate", ["skip", "update"])
def test_text_keys_match_whatever_their_case_and_spaces(crm, tmp_path, on_duplicate):
    anna = crm.records.create("lead", {"last_name": "Old", "email": "Anna@X.com", "source": "event"}, SYSTEM, "form")
    rows = [
        lead_row(1, Email=" anna@x.COM "),  # the stored Anna@X.com
        lead_row(2, Email="bob@y.com"),
        lead_row(3, Email="BOB@Y.com"),  # bob@y.com, created by the row above
        lead_row(4, Email="anna@x.co"),  # another address
    ]
    path = write_csv(tmp_path / "case.csv", rows)

    job = run(crm, path, match=["email"], on_duplicate=on_duplicate, chunk=2)

    by_email = {r.email: r for r in leads(crm)}
    assert sorted(by_email) == ["Anna@X.com", "anna@x.co", "bob@y.com"]
    if on_duplicate == "skip":
        assert (job.created, job.updated, job.skipped, job.failed) == (2, 0, 2, 0)
        assert by_email["Anna@X.com"].last_name == "Old"
    else:
        assert (job.created, job.updated, job.skipped, job.failed) == (2, 2, 0, 0)
        assert by_email["Anna@X.com"].id == anna.id and by_email["Anna@X.com"].last_name == "Lee1"
        assert by_email["bob@y.com"].last_name == "Lee3"


def test_a_preview_finds_duplicates_whatever_their_case(crm, tmp_path):
    crm.records.create("lead", {"last_name": "Old", "email": "Anna@X.com", "source": "event"}, SYSTEM, "form")
    path = write_csv(tmp_path / "preview_case.csv", [lead_row(1, Email="ANNA@x.com"), lead_row(2)])

    shown = preview(crm, "lead", path, options=Options(match=["email"], on_duplicate="update"))

    assert [row.action for row in shown.rows] == ["update", "create"]


# --- crash and resume -----------------------------------------------------------------------------


class Crash(Exception):
    pass


def test_run_job_uses_the_rows_start_read_only_while_the_file_is_unchanged(crm, tmp_path):
    path = write_csv(tmp_path / "leads.csv", [lead_row(1), lead_row(2)])
    job = start(crm, "lead", path, actor=SYSTEM, options=Options(rules=False))
    stat = path.stat()
    # Same size and modification time: what start read is imported, not the file again.
    write_csv(path, [lead_row(3), lead_row(4)])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert run_job(crm, job.id, read=job.read).created == 2
    assert [r.email for r in leads(crm)] == ["ann1@example.com", "ann2@example.com"]

    # A changed file (a row more) is read again.
    path = write_csv(tmp_path / "more.csv", [lead_row(5)])
    job = start(crm, "lead", path, actor=SYSTEM, options=Options(rules=False))
    write_csv(path, [lead_row(5), lead_row(6)])
    done = run_job(crm, job.id, read=job.read)
    assert done.created == 2
    assert [r.email for r in leads(crm)][2:] == ["ann5@example.com", "ann6@example.com"]

    # A read of another file is not used for this job's file.
    job = start(crm, "lead", write_csv(tmp_path / "other.csv", [lead_row(7)]), actor=SYSTEM)
    assert run_job(crm, job.id, read=start(crm, "lead", path, actor=SYSTEM).read).created == 1
    assert leads(crm)[-1].email == "ann7@example.com"


def test_a_job_interrupted_after_a_chunk_resumes_with_every_row_once(crm, tmp_path):
    path = write_csv(tmp_path / "big.csv", [lead_row(n) for n in range(250)])
    job = start(crm, "lead", path, actor=SYSTEM, options=Options(rules=False, chunk=100))

    def crash_after_second_chunk(job):
        if job.next_row == 200:
            raise Crash

    with pytest.raises(Crash):
        run_job(crm, job.id, after_chunk=crash_after_second_chunk)
    assert len(leads(crm)) == 200
    assert crm.tables.ImportJob.get_by_id(job.id).next_row == 200

    finished = run_job(crm, job.id)

    assert (finished.status, finished.created, finished.next_row) == ("done", 250, 250)
    assert sorted(r.email for r in leads(crm)) == sorted(f"ann{n}@example.com" for n in range(250))


def test_a_runner_overtaken_by_another_on_the_same_job_imports_nothing_twice(crm, tmp_path):
    """A worker taking over a job it thought abandoned, or a second --resume: each chunk is
    written by the runner whose starting row is still the job's, the other's rolls back."""
    path = write_csv(tmp_path / "race.csv", [lead_row(n) for n in range(250)])
    job = start(crm, "lead", path, actor=SYSTEM, options=Options(rules=False, chunk=100))
    overtaken = []

    def second_runner_finishes_the_job(job):
        if not overtaken:
            overtaken.append(run_job(crm, job.id))  # while the first still holds chunk 2 in memory

    first = run_job(crm, job.id, after_chunk=second_runner_finishes_the_job)

    assert overtaken[0].status == "done" and first.status == "done"
    assert (first.created, first.next_row) == (250, 250)
    assert sorted(r.email for r in leads(crm)) == sorted(f"ann{n}@example.com" for n in range(250))


def test_a_resumed_job_keeps_the_columns_left_out(crm, tmp_path):
    path = write_csv(tmp_path / "left_out.csv", [lead_row(n) for n in range(4)])
    job = start(crm, "lead", path, actor=SYSTEM, mapping={"Company": ""}, options=Options(rules=False, chunk=2))

    def crash(job):
        raise Crash

    with pytest.raises(Crash):
        run_job(crm, job.id, after_chunk=crash)
    run_job(crm, job.id)

    assert [r.company for r in leads(crm)] == [None] * 4


def test_a_chunk_that_fails_midway_is_rolled_back_with_its_counters(crm, tmp_path, monkeypatch):
    path = write_csv(tmp_path / "mid.csv", [lead_row(n) for n in range(30)])
    job = start(crm, "lead", path, actor=SYSTEM, options=Options(rules=False, chunk=20))
    create_many = crm.records.create_many

    def create_then_crash(entity, rows, *args, **kwargs):
        created = create_many(entity, rows, *args, **kwargs)  # written in the chunk's transaction
        if any(row["email"] == "ann25@example.com" for row in rows):
            raise Crash
        return created

    monkeypatch.setattr(crm.records, "create_many", create_then_crash)
    with pytest.raises(Crash):
        run_job(crm, job.id)
    stored = crm.tables.ImportJob.get_by_id(job.id)
    assert (len(leads(crm)), stored.next_row, stored.created) == (20, 20, 20)

    monkeypatch.setattr(crm.records, "create_many", create_many)
    assert run_job(crm, job.id).created == 30
    assert len(leads(crm)) == 30


def test_an_import_killed_with_sigkill_resumes_with_every_row_once(crm_app, crm, tmp_path):
    total = 3000
    path = write_csv(tmp_path / "kill.csv", [lead_row(n) for n in range(total)])
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'crm.sqlite3'}",  # the database of ``crm``
        "QUEUE_URL": "memory://",
        "SECRET_KEY": "t",
        "CRM_PACK_DIR": str(PROJECT),
    }
    command = [sys.executable, "-m", "flask", "--app", "app", "import", "lead", str(path), "--no-rules"]
    child = subprocess.Popen([*command, "--chunk", "100"], cwd=PROJECT, env=env, stdout=subprocess.DEVNULL)
    ImportJob = crm.tables.ImportJob
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            job = ImportJob.get_or_none(ImportJob.id == 1)
            if job is not None and job.next_row >= 300:
                break
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    killed_at = ImportJob.get_by_id(1)
    assert 300 <= killed_at.next_row < total and killed_at.status == "running"
    assert len(leads(crm)) == killed_at.next_row  # the chunk being written died with the process

    result = crm_app.test_cli_runner().invoke(args=["import", "lead", "--resume", "1"])

    assert result.exit_code == 0, result.output
    assert f"job #1 done: {total} created" in result.output
    emails = [r.email for r in leads(crm)]
    assert len(emails) == len(set(emails)) == total


# --- write path: audit, rules, permissions --------------------------------------------------------


def test_imported_records_are_audited_with_channel_import(crm, tmp_path):
    run(crm, write_csv(tmp_path / "a.csv", [lead_row(1)]))
    Audit = crm.tables.Audit
    assert [(a.entity, a.operation, a.channel) for a in Audit.select()] == [("lead", "create", "import")]


def test_rules_run_unless_switched_off(crm, tmp_path):
    Outbox = crm.tables.Outbox
    run(crm, write_csv(tmp_path / "off.csv", [lead_row(1, Country="DE")]), rules=False)
    assert Outbox.select().count() == 0
    run(crm, write_csv(tmp_path / "on.csv", [lead_row(2, Country="DE")]), rules=True)
    assert Outbox.select().count() > 0


def test_a_job_whose_file_is_gone_fails_with_the_reason(crm, tmp_path):
    path = write_csv(tmp_path / "gone.csv", [lead_row(1)])
    job = start(crm, "lead", path, actor=SYSTEM)
    path.unlink()
    with pytest.raises(FileRejected, match="gone.csv: cannot be read"):
        run_job(crm, job.id)
    stored = crm.tables.ImportJob.get_by_id(job.id)
    assert stored.status == "failed" and stored.error.startswith("gone.csv: cannot be read")


def test_the_write_path_audits_but_fires_no_rules_with_rules_false(crm):
    Outbox, Audit = crm.tables.Outbox, crm.tables.Audit
    data = {"last_name": "Quiet", "source": "web", "country": "DE"}  # a web lead: routing and welcome rules
    record = crm.records.create("lead", data, SYSTEM, "import", rules=False)
    crm.records.update("lead", record.id, {"source": "referral"}, SYSTEM, "import", rules=False)
    assert Outbox.select().count() == 0
    assert [a.operation for a in Audit.select().order_by(Audit.id)] == ["create", "update"]
    crm.records.create("lead", data | {"last_name": "Loud"}, SYSTEM, "import")
    assert Outbox.select().count() > 0


def test_an_actor_who_may_not_create_gets_a_clear_error(web_crm, tmp_path):
    julia = web_crm.directory.actor(user_id(web_crm, "julia"))
    with pytest.raises(PermissionDenied):
        start(web_crm, "lead", write_csv(tmp_path / "j.csv", [lead_row(1)]), actor=julia)
    assert leads(web_crm) == []


# --- the command line ------------------------------------------------------------------------------


def test_the_cli_imports_and_writes_the_error_report(crm_app, tmp_path):
    path = write_csv(tmp_path / "cli.csv", [lead_row(1), lead_row(2, **{"Lead score": "x"}), lead_row(1)])
    report = tmp_path / "errors.csv"
    result = crm_app.test_cli_runner().invoke(
        args=["import", "lead", str(path), "--match", "email", "--no-rules", "--errors", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert "job #1 done: 1 created, 0 updated, 1 skipped, 1 failed of 3 rows" in result.output
    assert "1 rows not imported written to" in result.output
    assert report.read_text().splitlines()[1].startswith("3,Ann2,Lee2")


def test_the_cli_error_report_neutralises_formula_cells(crm_app, tmp_path):
    bad = lead_row(1, **{"First name": '=HYPERLINK("http://evil.example","x")', "Lead score": "-1+2"})
    path = write_csv(tmp_path / "formulas.csv", [bad])
    report = tmp_path / "errors.csv"
    result = crm_app.test_cli_runner().invoke(args=["import", "lead", str(path), "--errors", str(report)])
    assert result.exit_code == 0, result.output
    with report.open(newline="") as out:
        rows = list(csv.reader(out))
    assert rows[1][1] == '\'=HYPERLINK("http://evil.example","x")'
    assert rows[1][6] == "'-1+2"  # the score, as given
    assert rows[1][-1].startswith("Lead score: ")


def test_the_cli_exits_1_for_a_file_it_cannot_read(crm_app, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    result = crm_app.test_cli_runner().invoke(args=["import", "lead", str(path)])
    assert result.exit_code == 1
    assert "error: empty.csv: the file is empty (0 bytes)" in result.output


def test_the_cli_previews_without_writing(crm_app, tmp_path):
    path = write_csv(tmp_path / "pre.csv", [lead_row(1), lead_row(2, **{"Lead score": "x"})])
    result = crm_app.test_cli_runner().invoke(args=["import", "lead", str(path), "--preview", "5"])
    assert result.exit_code == 0, result.output
    assert "row 2: create" in result.output and "row 3: error: score: must be a whole number" in result.output
    assert leads(crm_app.extensions["crm"]) == []
