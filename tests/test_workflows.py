"""Workflow definitions: the state graph is checked on its own (one initial
state, known states, no duplicate or self transitions, every state reachable
and able to move on) and against the pack (entity, state field, required
fields, roles, guards, probability field). Each broken fixture holds one
mistake; the findings are exactly that mistake."""

from __future__ import annotations

import pytest

from crm_platform.compiler import compile_pack
from crm_platform.definitions import load_pack

from .conftest import GOOD, edit, errors_of, findings_of

LEAD_FLOW = "workflows/lead_lifecycle.yaml"
DEAL_FLOW = "workflows/deal_pipeline.yaml"


def test_the_good_pack_workflows_load_without_findings():
    pack = load_pack(GOOD)
    assert pack.findings == []
    assert sorted(pack.workflows) == ["deal_pipeline", "lead_lifecycle"]
    lifecycle = pack.workflows["lead_lifecycle"]
    assert (lifecycle.entity.name, lifecycle.field.name, lifecycle.initial.name) == ("lead", "status", "new")
    assert [(t.label, t.guard_source) for t in lifecycle.transitions] == [
        ("Mark contacted", None),
        ("Qualified", "lead.score >= 50"),
        ("Disqualified", None),
        ("Converted", None),
    ]


def test_a_workflow_gives_its_entity_the_state_field_with_the_states_as_options(pack_dir):
    compiled = compile_pack(load_pack(pack_dir))
    status = compiled.entities["lead"].definition.fields["status"]
    assert (status.type, status.default, status.required, status.read_only) == ("state", "new", True, True)
    assert list(status.options) == ["new", "contacted", "qualified", "converted", "disqualified"]
    assert status.options["new"] == "New"


# --- the graph ------------------------------------------------------------------

GRAPH_CASES = {
    "workflow-no-initial": f"{LEAD_FLOW}:4:1: error: workflow 'lead_lifecycle' has no initial state",
    "workflow-two-initial": f"{LEAD_FLOW}:6:3: error: more than one initial state: 'new' and 'contacted'",
    "workflow-outcome-not-final": f"{DEAL_FLOW}:7:3: error: state 'proposal' has an outcome but is not final",
    "workflow-unknown-state": f"{LEAD_FLOW}:13:29: error: unknown state 'qualifed' in workflow 'lead_lifecycle'",
    "workflow-duplicate-transition": f"{LEAD_FLOW}:15:12: error: duplicate transition new -> contacted",
    "workflow-self-transition": f"{LEAD_FLOW}:15:12: error: transition from 'contacted' to itself",
    "workflow-unreachable-state": (
        f"{LEAD_FLOW}:7:3: error: state 'nurturing' cannot be reached from the initial state 'new'"
    ),
    "workflow-dead-end-state": (
        f"{LEAD_FLOW}:8:3: error: state 'converted' is not final but has no transition out of it"
    ),
}


@pytest.mark.parametrize("case", GRAPH_CASES)
def test_a_graph_mistake_is_the_only_finding(broken_pack, case):
    assert findings_of(broken_pack(case)) == [GRAPH_CASES[case]]


@pytest.mark.parametrize(
    ("case", "hint"),
    [
        ("workflow-no-initial", "mark the state new records start in with initial: true"),
        ("workflow-two-initial", "a workflow has exactly one initial state"),
        ("workflow-unknown-state", "did you mean 'qualified'?"),
        ("workflow-duplicate-transition", "it is already defined at line 11"),
        ("workflow-self-transition", "a transition must change the state"),
        ("workflow-unreachable-state", "add a transition into it, or remove it"),
        ("workflow-dead-end-state", "add a transition from it, or mark it final: true"),
    ],
)
def test_a_graph_mistake_comes_with_a_hint(broken_pack, case, hint):
    (finding,) = errors_of(broken_pack(case))
    assert finding.hint == hint


def test_a_state_both_initial_and_final_is_an_error(pack_dir):
    edit(pack_dir / LEAD_FLOW, "new: {initial: true, label: New}", "new: {initial: true, final: true, label: New}")
    assert f"{LEAD_FLOW}:5:3: error: state 'new' is both initial and final" in findings_of(pack_dir)


def test_a_final_state_with_a_way_out_is_only_a_warning(runner, broken_pack):
    root = broken_pack("workflow-final-state-with-exit")
    result = runner.invoke(args=["check", str(root)])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"{root}/{LEAD_FLOW}:8:3: warning: final state 'converted' has transitions out of it; "
        "a final state is meant to be an end; remove final: true if records may leave it"
    ]


def test_a_final_state_with_a_way_out_still_compiles(broken_pack):
    (warning,) = errors_of(broken_pack("workflow-final-state-with-exit"))
    assert (warning.severity, warning.is_error) == ("warning", False)


# --- against the pack -------------------------------------------------------------

PACK_CASES = {
    "workflow-field-not-state": (
        "schemas/deal.yaml:14:17: error: field 'stage' of deal is driven by workflow 'deal_pipeline', "
        "so it must have type: state"
    ),
    "workflow-state-field-without-workflow": (
        "schemas/lead.yaml:30:17: error: field 'phase' has type state but no workflow drives it"
    ),
    "workflow-require-unknown-field": f"{LEAD_FLOW}:7:32: error: unknown field 'contry' on lead",
    "workflow-unknown-role": f"{LEAD_FLOW}:12:72: error: unknown role 'salse'",
    "workflow-guard-syntax": f"{LEAD_FLOW}:12:56: error: use == to compare; a single = is only for set and create",
    "workflow-guard-not-boolean": (
        f"{LEAD_FLOW}:12:45: error: a guard must be true or false, but this is lead.score (an integer)"
    ),
    "workflow-probability-field-not-numeric": (
        "workflows/deal_pipeline.yaml:4:20: error: probability_field must be a percent field; 'close_date' is a date"
    ),
}


@pytest.mark.parametrize("case", PACK_CASES)
def test_a_mistake_against_the_pack_is_the_only_finding(broken_pack, case):
    assert findings_of(broken_pack(case)) == [PACK_CASES[case]]


@pytest.mark.parametrize(
    ("case", "hint"),
    [
        ("workflow-field-not-state", "declare it as {type: state} (label and help allowed) or leave it out"),
        ("workflow-state-field-without-workflow", "add a workflow with entity: lead and field: phase"),
        ("workflow-require-unknown-field", "did you mean 'country'?"),
        ("workflow-unknown-role", "did you mean 'sales'?"),
        ("workflow-guard-not-boolean", "compare it with something, e.g. lead.score >= 50"),
    ],
)
def test_a_mistake_against_the_pack_comes_with_a_hint(broken_pack, case, hint):
    (finding,) = errors_of(broken_pack(case))
    assert finding.hint == hint


def test_a_workflow_of_an_unknown_entity(broken_pack):
    # The state field the workflow would have added is missing too; the
    # references to it are reported where they stand.
    assert findings_of(broken_pack("workflow-unknown-entity")) == [
        "rules/leads.rules:9:40: error: unknown field 'status' on lead",
        "schemas/lead.yaml:5:40: error: unknown field 'status' on lead",
        "schemas/lead.yaml:10:38: error: unknown field 'status' on lead",
        f"{LEAD_FLOW}:2:9: error: unknown entity 'leed'",
    ]


def test_a_workflow_of_an_unknown_entity_suggests_the_closest(broken_pack):
    finding = errors_of(broken_pack("workflow-unknown-entity"))[-1]
    assert finding.hint == "did you mean 'lead'?"


def test_a_guard_syntax_error_quotes_the_yaml_line(broken_pack):
    (finding,) = errors_of(broken_pack("workflow-guard-syntax"))
    assert finding.source_line == '  - {from: contacted, to: qualified, when: "lead.score = 50", roles: [sales]}'
    assert finding.source_line[finding.location.column - 1] == "="


def test_an_unknown_field_in_a_quoted_guard_points_inside_the_string(pack_dir):
    edit(pack_dir / LEAD_FLOW, 'when: "lead.score >= 50"', 'when: "lead.score >= 50 and lead.scor > 1"')
    assert findings_of(pack_dir) == [f"{LEAD_FLOW}:12:71: error: unknown field 'scor' on lead"]


def test_an_unknown_field_in_a_plain_guard_points_inside_it(pack_dir):
    edit(pack_dir / LEAD_FLOW, 'when: "lead.score >= 50"', "when: lead.score >= 50 and lead.scor > 1")
    assert findings_of(pack_dir) == [f"{LEAD_FLOW}:12:70: error: unknown field 'scor' on lead"]


@pytest.mark.parametrize("style", ["|", ">-"])
def test_an_unknown_field_in_a_block_guard_points_at_its_line(pack_dir, style):
    edit(
        pack_dir / LEAD_FLOW,
        '  - {from: contacted, to: qualified, when: "lead.score >= 50", roles: [sales]}\n',
        f"  - from: contacted\n    to: qualified\n    when: {style}\n      lead.score >= 50 and\n"
        "      lead.scor > 1\n    roles: [sales]\n",
    )
    assert findings_of(pack_dir) == [f"{LEAD_FLOW}:16:12: error: unknown field 'scor' on lead"]


def test_a_guard_that_ends_too_early_points_at_its_end(pack_dir):
    edit(pack_dir / LEAD_FLOW, 'when: "lead.score >= 50"', 'when: "lead.score >="')
    (finding,) = errors_of(pack_dir)
    assert str(finding.location) == f"{LEAD_FLOW}:12:58"
    assert finding.source_line[finding.location.column - 2 :].startswith('=",')
    assert finding.message.startswith("the expression ends too early; expected a name, a number")


def test_an_unknown_field_in_a_plain_guard_over_two_lines_points_at_its_line(pack_dir):
    edit(
        pack_dir / LEAD_FLOW,
        '  - {from: contacted, to: qualified, when: "lead.score >= 50", roles: [sales]}\n',
        "  - from: contacted\n    to: qualified\n    when: lead.score >= 50 and\n      lead.scor > 1\n"
        "    roles: [sales]\n",
    )
    assert findings_of(pack_dir) == [f"{LEAD_FLOW}:15:12: error: unknown field 'scor' on lead"]


def test_a_block_guard_is_shown_as_yaml_reads_it(pack_dir):
    edit(
        pack_dir / LEAD_FLOW,
        '  - {from: contacted, to: qualified, when: "lead.score >= 50", roles: [sales]}\n',
        "  - from: contacted\n    to: qualified\n    when: >-\n      lead.score >= 50 and\n"
        "      lead.score < 90\n    roles: [sales]\n",
    )
    machine = compile_pack(load_pack(pack_dir)).entities["lead"].workflows["status"]
    (guarded,) = [t for t in machine.transitions_from("contacted") if t.guard is not None]
    assert guarded.guard.source == "lead.score >= 50 and lead.score < 90"
