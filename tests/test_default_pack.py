"""The default CRM pack compiles, checks clean and covers what a CRM needs."""

from __future__ import annotations

from crm_platform.definitions.model import FIELD_TYPES

from .conftest import PROJECT, compile_dir


def test_default_pack_compiles_without_findings():
    compiled = compile_dir(PROJECT)
    assert compiled.warnings == []


def test_check_on_default_pack_prints_nothing_and_exits_0(runner):
    result = runner.invoke(args=["check"])
    assert result.exit_code == 0
    assert result.output == ""


def test_default_pack_has_the_crm_entities():
    compiled = compile_dir(PROJECT)
    expected = {
        "lead",
        "contact",
        "account",
        "deal",
        "activity",
        "ticket",
        "kb_article",
        "campaign",
        "campaign_member",
        "product",
        "quote",
        "quote_line",
    }
    assert expected <= set(compiled.entities)


def test_default_pack_uses_every_field_type():
    compiled = compile_dir(PROJECT)
    used = {f.type for e in compiled.entities.values() for f in e.definition.fields.values()}
    assert used == set(FIELD_TYPES)


def test_default_pack_pipelines_guard_their_state_fields():
    compiled = compile_dir(PROJECT)
    assert set(compiled.entities["lead"].workflows) == {"status"}
    assert set(compiled.entities["deal"].workflows) == {"stage"}
    assert set(compiled.entities["ticket"].workflows) == {"status"}
    deal_pipeline = compiled.entities["deal"].workflows["stage"]
    assert all(s.probability is not None for s in deal_pipeline.states.values())


def test_default_pack_has_the_automation_the_issue_names():
    compiled = compile_dir(PROJECT)
    triggers = {(r.trigger.entity, r.trigger.kind) for r in compiled.rules.rules.values()}
    assert ("lead", "created") in triggers  # web-lead assignment, welcome, follow-up
    assert ("ticket", "every") in triggers  # escalation
    assert ("deal", "every") in triggers  # stale-deal reminders
    assert ("contact", "date") in triggers  # birthday greetings
    kinds = {a.kind for r in compiled.rules.rules.values() for a in r.actions}
    assert {"Assign", "SendEmail", "FollowUp", "Escalate", "Notify", "Create"} <= kinds


def test_init_db_creates_a_table_per_entity(runner, app):
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    crm = app.extensions["crm"]
    with crm.database.connection_context():
        tables = set(crm.database.get_tables())
    assert set(crm.compiled.entities) <= tables
