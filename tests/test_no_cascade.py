"""A file that fails to load is reported once, by its own findings: what other
files say about it (its entity, its state field, its teams and roles) does not
add findings that would vanish with the one fix."""

from __future__ import annotations

from .conftest import edit, findings_of


def test_a_broken_entity_file_is_reported_alone(pack_dir):
    edit(pack_dir / "schemas" / "deal.yaml", "  ratio: {type: decimal, scale: 4}", "  ratio: {type: decimal, scale: 9}")
    assert findings_of(pack_dir) == [
        "schemas/deal.yaml:10:33: error: 'scale' must be at most 8 in field 'ratio', got 9",
    ]


def test_a_broken_workflow_file_is_reported_alone(pack_dir):
    # The lead's state field comes from this workflow; rules, forms and lists use it.
    edit(pack_dir / "workflows" / "lead_lifecycle.yaml", "  contacted: {}", "  contacted: {sla_hours: 0}")
    assert findings_of(pack_dir) == [
        "workflows/lead_lifecycle.yaml:6:26: error: 'sla_hours' must be more than 0 in state 'contacted', got 0",
    ]


def test_a_broken_pack_file_is_reported_alone(pack_dir):
    # Rules name teams and roles from pack.yaml.
    edit(pack_dir / "pack.yaml", "    scope: own", "    scope: mine")
    assert findings_of(pack_dir) == ["pack.yaml:19:12: error: 'mine' is not one of all, own in role 'sales'"]


def test_an_unknown_team_is_still_reported_when_pack_file_is_fine(pack_dir):
    edit(pack_dir / "rules" / "leads.rules", 'round_robin(team "sales-dach")', 'round_robin(team "sales-dack")')
    assert findings_of(pack_dir) == ["rules/leads.rules:7:34: error: unknown team 'sales-dack'"]


def test_a_value_outside_a_state_field_is_still_reported_when_the_workflow_is_fine(pack_dir):
    edit(pack_dir / "rules" / "leads.rules", 'unless lead.status != "new"', 'unless lead.status != "neu"')
    assert findings_of(pack_dir) == [
        "rules/leads.rules:9:50: error: 'neu' is not an option of lead.status (a state)",
    ]
