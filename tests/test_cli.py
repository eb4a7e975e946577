"""The commands: ``check`` prints every problem in one line each, sorted, and
exits non-zero on errors; ``init-db`` and ``rules`` work on the project."""

from __future__ import annotations

import datetime as dt

import peewee as pw
import pytest

from crm_platform.application import create_app
from crm_platform.runtime.clock import FixedClock
from crm_platform.runtime.users import Actor
from crm_platform.store import add_missing_columns

from .conftest import GOOD, PROJECT


def test_check_good_pack_prints_nothing_and_exits_0(runner):
    result = runner.invoke(args=["check", str(GOOD)])
    assert result.exit_code == 0
    assert result.output == ""


def test_check_reports_every_problem_sorted_one_per_line(runner, broken_pack):
    root = broken_pack("cli-several")
    result = runner.invoke(args=["check", str(root)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{root}/rules/leads.rules:5:38: error: unknown field 'contry' on lead; did you mean 'country'?",
        f"{root}/rules/leads.rules:10:18: error: unknown email template 'nudg'; did you mean 'nudge'?",
        f"{root}/schemas/deal.yaml:11:22: error: unknown field type 'dat' in field 'close_date'; did you mean 'date'?",
    ]


def test_check_does_not_cascade_from_a_file_that_failed_to_load(runner, broken_pack):
    # deal.yaml fails its meta-schema check; rules and workflows about deals
    # must not add "unknown entity 'deal'" on top.
    root = broken_pack("cli-several")
    output = runner.invoke(args=["check", str(root)]).output
    assert "unknown entity" not in output
    assert "no workflow" not in output


def test_check_verbose_shows_the_source_line_and_a_caret(runner, broken_pack):
    root = broken_pack("cli-several")
    lines = runner.invoke(args=["check", "-v", str(root)]).output.splitlines()
    first = lines.index(
        f"{root}/rules/leads.rules:5:38: error: unknown field 'contry' on lead; did you mean 'country'?"
    )
    assert lines[first + 1] == '      when lead.source == "web" and lead.contry in ["DE", "AT", "CH"]'
    assert lines[first + 2] == "    " + " " * 37 + "^"


def test_check_warnings_alone_exit_0(runner, pack_dir):
    workflow = pack_dir / "workflows" / "deal_pipeline.yaml"
    workflow.write_text(workflow.read_text() + "  - {from: won, to: proposal, label: Reopen}\n")
    result = runner.invoke(args=["check", str(pack_dir)])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"{pack_dir}/workflows/deal_pipeline.yaml:8:3: warning: final state 'won' has transitions out of it; "
        "a final state is meant to be an end; remove final: true if records may leave it"
    ]


def test_check_of_a_missing_directory_is_an_error(runner, tmp_path):
    result = runner.invoke(args=["check", str(tmp_path / "nope")])
    assert result.exit_code != 0
    assert "is not a directory" in result.output


def test_check_of_an_empty_directory_warns_about_missing_folders(runner, tmp_path):
    result = runner.invoke(args=["check", str(tmp_path)])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"{tmp_path}/rules: warning: no rules/ directory in {tmp_path}",
        f"{tmp_path}/schemas: warning: no schemas/ directory in {tmp_path}",
        f"{tmp_path}/workflows: warning: no workflows/ directory in {tmp_path}",
    ]


def test_init_db_is_idempotent(runner):
    first = runner.invoke(args=["init-db"])
    second = runner.invoke(args=["init-db"])
    assert first.exit_code == second.exit_code == 0
    assert first.output == second.output == "34 tables ready\n"  # 12 entities, 22 of the platform


def test_init_db_adds_the_columns_an_older_database_lacks(runner, app):
    assert runner.invoke(args=["init-db"]).exit_code == 0
    database = app.extensions["crm"].database
    database.execute_sql("ALTER TABLE crm_import_job DROP COLUMN heartbeat_at")
    database.execute_sql("ALTER TABLE lead DROP COLUMN website")
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == ["added column crm_import_job.heartbeat_at", "added column lead.website"]
    columns = {c.name for c in database.get_columns("lead")}
    assert "website" in columns
    assert runner.invoke(args=["init-db"]).output == "34 tables ready\n"


def test_init_db_adds_a_unique_column_with_its_index(runner, app):
    assert runner.invoke(args=["init-db"]).exit_code == 0
    database = app.extensions["crm"].database
    for index in database.get_indexes("contact"):
        if index.columns == ["email"]:
            database.execute_sql(f'DROP INDEX "{index.name}"')
    database.execute_sql("ALTER TABLE contact DROP COLUMN email")

    result = runner.invoke(args=["init-db"])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "added column contact.email"
    assert [(i.columns, i.unique) for i in database.get_indexes("contact") if i.columns == ["email"]] == [
        (["email"], True)
    ]


def test_a_required_column_is_not_added_to_an_existing_table(tmp_path):
    database = pw.SqliteDatabase(str(tmp_path / "old.sqlite3"))

    class Old(pw.Model):
        name = pw.CharField()

        class Meta:
            table_name = "thing"

    class New(Old):
        size = pw.IntegerField()  # required, no default: existing rows would have no value
        colour = pw.CharField(null=True)

        class Meta:
            table_name = "thing"

    Old._meta.database = New._meta.database = database
    database.create_tables([Old])
    with pytest.raises(RuntimeError, match=r"cannot add required columns to existing tables: thing\.size"):
        add_missing_columns(database, [New])
    assert {c.name for c in database.get_columns("thing")} == {"id", "name"}  # colour was not added either


def test_rules_list_names_every_rule_with_its_trigger(runner, app):
    result = runner.invoke(args=["rules", "list"])
    assert result.exit_code == 0
    names = app.extensions["crm"].compiled.rules.rules
    assert len(result.output.splitlines()) == len(names)
    assert any("Route DACH web leads  [on lead created, priority 10]" in line for line in result.output.splitlines())


def test_rules_source_of_an_unknown_rule_is_an_error(runner):
    result = runner.invoke(args=["rules", "source", "No such rule"])
    assert result.exit_code != 0
    assert "no rule named 'No such rule'" in result.output


def test_mail_list_shows_the_email_kept_without_smtp(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'crm.sqlite3'}",
            "QUEUE_URL": "memory://",
            "PACK_DIR": str(PROJECT),
            "CLOCK": FixedClock(dt.datetime(2026, 11, 23, 10, 0)),
        }
    )
    crm = app.extensions["crm"]
    crm.init_db()
    crm.records.create("lead", {"first_name": "Kim", "last_name": "Adler", "email": "kim@x.de"}, Actor.system(), "form")
    result = app.test_cli_runner().invoke(args=["mail", "list", "--status", "kept"])
    assert result.exit_code == 0
    assert result.output == "#1 2026-11-23 10:00 kept        kim@x.de  Thanks for your interest, Kim  (lead #1)\n"
    assert app.test_cli_runner().invoke(args=["mail", "list", "--status", "sent"]).output == ""
