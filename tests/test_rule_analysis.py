"""Static analysis of rules: each broken fixture holds one mistake in a rule,
and the pack's findings are exactly that mistake, at its file:line:col, with
a message that names what is wrong. Rule cycles are found, reported once,
and go away when a trigger is narrowed or a rule disabled."""

from __future__ import annotations

import pytest

from .conftest import edit, errors_of, findings_of


def test_the_good_pack_has_no_findings(pack_dir):
    assert findings_of(pack_dir) == []


# --- names: entities, fields, functions, templates, teams, roles, states, forms --------

NAME_CASES = {
    "rule-unknown-entity": "rules/leads.rules:13:6: error: unknown entity 'leed'",
    "rule-unknown-field": "rules/leads.rules:14:13: error: unknown field 'sorce' on lead",
    "rule-unknown-linked-field": "rules/deals.rules:9:21: error: unknown field 'industy' on account",
    "rule-field-of-non-link": (
        "rules/leads.rules:14:20: error: lead.source (a choice) has no fields; only links lead to other records"
    ),
    "rule-unknown-function": "rules/deals.rules:3:46: error: unknown function 'days_snce'",
    "rule-function-argument-count": "rules/deals.rules:3:46: error: days_since() takes 1 argument(s), got 2",
    "rule-function-argument-type": (
        "rules/deals.rules:3:57: error: days_since() expects a date or a date and time, got deal.name (a string)"
    ),
    "rule-unknown-template": "rules/leads.rules:8:16: error: unknown email template 'welcom'",
    "rule-unknown-team-round-robin": "rules/leads.rules:7:34: error: unknown team 'sales-dah'",
    "rule-unknown-team-mapping": "rules/leads.rules:16:59: error: unknown team 'sales-us'",
    "rule-unknown-team-queue": "rules/leads.rules:7:26: error: unknown team 'sales'",
    "rule-unknown-role-escalate": "rules/deals.rules:5:27: error: unknown role 'manager'",
    "rule-unknown-state-enters": "rules/deals.rules:8:18: error: unknown state 'wonn' of deal",
    "rule-unknown-state-move": "rules/leads.rules:18:18: error: unknown state 'contactd' of lead",
    "rule-unknown-state-condition": "rules/deals.rules:9:22: error: 'wonn' is not an option of deal.stage (a state)",
    "rule-unknown-form": "rules/leads.rules:13:16: error: unknown form 'web_to_leed' of lead",
}


@pytest.mark.parametrize("case", NAME_CASES)
def test_an_unknown_name_is_the_only_finding(broken_pack, case):
    assert findings_of(broken_pack(case)) == [NAME_CASES[case]]


@pytest.mark.parametrize(
    ("case", "hint"),
    [
        ("rule-unknown-entity", "did you mean 'lead'?"),
        ("rule-unknown-field", "did you mean 'source'?"),
        ("rule-unknown-linked-field", "did you mean 'industry'?"),
        ("rule-field-of-non-link", "remove .name"),
        ("rule-unknown-function", "did you mean 'days_since'?"),
        ("rule-unknown-template", "did you mean 'welcome'?"),
        ("rule-unknown-team-round-robin", "did you mean 'sales-dach'?"),
        ("rule-unknown-team-mapping", "did you mean 'sales-intl'?"),
        ("rule-unknown-role-escalate", "declare roles in pack.yaml"),
        ("rule-unknown-state-enters", "did you mean 'won'?"),
        ("rule-unknown-state-move", "did you mean 'contacted'?"),
        ("rule-unknown-state-condition", "did you mean 'won'?"),
        ("rule-unknown-form", "did you mean 'web_to_lead'?"),
    ],
)
def test_an_unknown_name_comes_with_a_hint(broken_pack, case, hint):
    (finding,) = errors_of(broken_pack(case))
    assert finding.hint == hint


def test_a_finding_quotes_its_source_line(broken_pack):
    (finding,) = errors_of(broken_pack("rule-unknown-linked-field"))
    assert finding.source_line == '  when deal.account.industy == "tech"'


# --- types -------------------------------------------------------------------

TYPE_CASES = {
    "rule-date-compared-to-text": (
        "rules/deals.rules:9:8: error: cannot compare deal.close_date (a date) with the text '2026-12-31'"
    ),
    "rule-number-compared-to-choice": (
        "rules/leads.rules:14:8: error: cannot compare lead.source (a choice) with a number"
    ),
    "rule-choice-not-an-option": "rules/leads.rules:14:23: error: 'webb' is not an option of lead.source (a choice)",
    "rule-choice-not-an-option-in-list": (
        "rules/leads.rules:5:62: error: 'CHE' is not an option of lead.country (a choice)"
    ),
    "rule-condition-not-boolean": (
        "rules/leads.rules:14:8: error: a condition must be true or false, but this is lead.source (a choice)"
    ),
    "rule-text-plus-number": (
        "rules/leads.rules:17:46: error: cannot use '+' on the text 'Call ' and lead.score (an integer)"
    ),
}


@pytest.mark.parametrize("case", TYPE_CASES)
def test_a_type_mistake_is_the_only_finding(broken_pack, case):
    assert findings_of(broken_pack(case)) == [TYPE_CASES[case]]


def test_a_date_compared_to_a_text_hints_at_dates(broken_pack):
    (finding,) = errors_of(broken_pack("rule-date-compared-to-text"))
    assert finding.hint == "compare with today, now, or a date field; dates are not texts"


def test_a_choice_literal_outside_the_options_suggests_the_closest(broken_pack):
    (finding,) = errors_of(broken_pack("rule-choice-not-an-option-in-list"))
    assert finding.hint == "did you mean 'CH'?"


def test_changed_to_a_value_outside_the_options(pack_dir):
    edit(
        pack_dir / "rules" / "leads.rules",
        '  on lead created\n  when lead.source == "web"\n',
        ('  on lead source changed to "webb"\n  when lead.source == "web"\n'),
    )
    assert findings_of(pack_dir) == [
        "rules/leads.rules:13:29: error: 'webb' is not an option of lead.source (a choice)"
    ]


def test_changed_from_a_value_of_the_wrong_type(pack_dir):
    edit(
        pack_dir / "rules" / "leads.rules",
        '  on lead created\n  when lead.source == "web"\n',
        ('  on lead score changed from "high"\n  when lead.source == "web"\n'),
    )
    assert findings_of(pack_dir) == ["rules/leads.rules:13:30: error: lead.score (an integer) cannot be 'high'"]


# --- actions -------------------------------------------------------------------

ACTION_CASES = {
    "rule-set-computed-field": "rules/deals.rules:11:9: error: deal.weighted_amount is computed and cannot be set",
    "rule-set-state-field": "rules/deals.rules:6:9: error: deal.stage is a stage; use move deal to STATE",
    "rule-create-missing-required": (
        "rules/deals.rules:10:12: error: create activity leaves out required field(s): subject"
    ),
    "rule-create-unknown-field": "rules/deals.rules:10:81: error: unknown field 'ownr' on activity",
    "rule-webhook-not-http": (
        "rules/leads.rules:18:13: error: webhook needs an http(s) URL, got 'example.com/hooks/crm'"
    ),
}


@pytest.mark.parametrize("case", ACTION_CASES)
def test_a_wrong_action_is_the_only_finding(broken_pack, case):
    assert findings_of(broken_pack(case)) == [ACTION_CASES[case]]


def test_create_leaving_out_required_fields_says_how_to_give_them(broken_pack):
    (finding,) = errors_of(broken_pack("rule-create-missing-required"))
    assert finding.hint == "give a value for each, e.g. subject = ..."


def test_setting_a_stage_hints_at_the_workflow(broken_pack):
    (finding,) = errors_of(broken_pack("rule-set-state-field"))
    assert finding.hint == "stage changes go through the workflow's guards"


# --- triggers and rule names ---------------------------------------------------

RULE_CASES = {
    "rule-duplicate-name": "rules/leads.rules:12:6: error: duplicate rule name 'Route DACH web leads'",
    "rule-every-days": "rules/deals.rules:2:17: error: 'every' counts minutes or hours, not days",
    "rule-date-trigger-not-a-date": "rules/deals.rules:2:25: error: deal.amount is a money field, not a date",
}


@pytest.mark.parametrize("case", RULE_CASES)
def test_a_wrong_trigger_or_name_is_the_only_finding(broken_pack, case):
    assert findings_of(broken_pack(case)) == [RULE_CASES[case]]


def test_a_duplicate_rule_name_points_at_the_first_use(broken_pack):
    (finding,) = errors_of(broken_pack("rule-duplicate-name"))
    assert finding.hint == "it is also used at rules/leads.rules:3:6"


def test_every_days_suggests_hours_or_a_date_trigger(broken_pack):
    (finding,) = errors_of(broken_pack("rule-every-days"))
    assert finding.hint == "use e.g. every 24 hours, or a date trigger such as 0 days after renewal_date"


def test_date_trigger_on_an_email_field(pack_dir):
    edit(
        pack_dir / "rules" / "leads.rules",
        '  on lead created\n  when lead.source == "web"\n',
        ('  on lead 0 days before email\n  when lead.source == "web"\n'),
    )
    assert findings_of(pack_dir) == ["rules/leads.rules:13:25: error: lead.email is an email field, not a date"]


def test_date_trigger_on_a_date_field_is_fine(pack_dir):
    edit(
        pack_dir / "rules" / "leads.rules",
        '  on lead created\n  when lead.source == "web"\n',
        ('  on lead 0 days before birthday yearly\n  when lead.source == "web"\n'),
    )
    assert findings_of(pack_dir) == []


# --- cycles ----------------------------------------------------------------------

CYCLE_HINT = (
    "narrow a trigger so the chain ends: 'FIELD changed to VALUE' or 'enters STATE' instead of "
    "'updated' (conditions are not taken into account)"
)


def test_a_rule_that_fires_itself_is_a_cycle(broken_pack):
    assert findings_of(broken_pack("rule-cycle-self")) == [
        "rules/leads.rules:19:6: warning: rules can trigger each other in a cycle: "
        "'Score engaged leads' sets lead.score -> 'Score engaged leads'"
    ]


def test_two_rules_firing_each_other_are_one_cycle_reported_at_the_first(broken_pack):
    assert findings_of(broken_pack("rule-cycle-two-rules")) == [
        "rules/leads.rules:19:6: warning: rules can trigger each other in a cycle: "
        "'Score from budget' sets lead.score -> 'Budget from score' sets lead.budget -> 'Score from budget'"
    ]


def test_a_cycle_finding_says_how_to_end_it(broken_pack):
    (finding,) = errors_of(broken_pack("rule-cycle-two-rules"))
    assert finding.hint == CYCLE_HINT


def test_narrowing_the_self_loop_trigger_removes_the_cycle(broken_pack):
    root = broken_pack("rule-cycle-self")
    edit(root / "rules" / "leads.rules", "  on lead updated\n", "  on lead created\n")
    assert findings_of(root) == []


def test_narrowing_one_trigger_of_two_removes_the_cycle(broken_pack):
    root = broken_pack("rule-cycle-two-rules")
    edit(root / "rules" / "leads.rules", "  on lead score changed\n", "  on lead created\n")
    assert findings_of(root) == []


def test_disabled_rules_do_not_count_in_cycles(broken_pack):
    root = broken_pack("rule-cycle-two-rules")
    edit(root / "rules" / "leads.rules", 'rule "Budget from score"\n', 'rule "Budget from score" disabled\n')
    assert findings_of(root) == []


def test_a_disabled_self_loop_is_no_cycle(broken_pack):
    root = broken_pack("rule-cycle-self")
    edit(root / "rules" / "leads.rules", 'rule "Score engaged leads"\n', 'rule "Score engaged leads" disabled\n')
    assert findings_of(root) == []


def test_moving_to_another_stage_on_entering_a_stage_is_no_cycle(pack_dir):
    edit(pack_dir / "rules" / "deals.rules", "owner = deal.owner)\n", "owner = deal.owner)\n    move deal to lost\n")
    assert findings_of(pack_dir) == []


def test_moving_into_the_stage_a_rule_enters_on_is_a_cycle(pack_dir):
    edit(pack_dir / "rules" / "deals.rules", "owner = deal.owner)\n", "owner = deal.owner)\n    move deal to won\n")
    assert findings_of(pack_dir) == [
        "rules/deals.rules:7:6: warning: rules can trigger each other in a cycle: "
        "'Won deal follow-up' moves deal to won -> 'Won deal follow-up'"
    ]


def test_two_rules_moving_a_record_back_and_forth_are_a_cycle(pack_dir):
    rules = pack_dir / "rules" / "deals.rules"
    edit(rules, "owner = deal.owner)\n", "owner = deal.owner)\n    move deal to lost\n")
    rules.write_text(
        rules.read_text() + '\nrule "Reopen lost deals"\n  on deal enters lost\n  then\n    move deal to won\n'
    )
    assert findings_of(pack_dir) == [
        "rules/deals.rules:7:6: warning: rules can trigger each other in a cycle: "
        "'Won deal follow-up' moves deal to lost -> 'Reopen lost deals' moves deal to won -> 'Won deal follow-up'"
    ]


def test_a_rule_creating_what_another_rule_listens_for_is_a_chain_not_a_cycle(pack_dir):
    # "Won deal follow-up" creates an activity; a rule on activity created that
    # notifies ends the chain.
    rules = pack_dir / "rules" / "deals.rules"
    rules.write_text(
        rules.read_text() + '\nrule "New activity"\n  on activity created\n  then\n    notify activity.owner "New"\n'
    )
    assert findings_of(pack_dir) == []


def test_setting_a_literal_fires_changed_to_only_for_that_value(pack_dir):
    rules = pack_dir / "rules" / "leads.rules"
    rules.write_text(
        rules.read_text()
        + '\nrule "Flag qualified"\n  on lead source changed to "event"\n  then\n    set lead.code = "EV-1"\n'
        + '\nrule "Back to web"\n  on lead code changed to "XX-1"\n  then\n    set lead.source = "web"\n'
    )
    assert findings_of(pack_dir) == []


def test_setting_the_value_another_rule_waits_for_closes_the_cycle(pack_dir):
    rules = pack_dir / "rules" / "leads.rules"
    rules.write_text(
        rules.read_text()
        + '\nrule "Flag events"\n  on lead source changed to "event"\n  then\n    set lead.code = "EV-1"\n'
        + '\nrule "Back to events"\n  on lead code changed to "EV-1"\n  then\n    set lead.source = "event"\n'
    )
    assert findings_of(pack_dir) == [
        "rules/leads.rules:19:6: warning: rules can trigger each other in a cycle: "
        "'Flag events' sets lead.code -> 'Back to events' sets lead.source -> 'Flag events'"
    ]


def test_contains_on_a_multi_choice_names_the_field_for_a_value_outside_its_options(pack_dir):
    edit(pack_dir / "rules" / "leads.rules", 'when lead.source == "web"\n', 'when lead.interests contains "hr"\n')
    assert findings_of(pack_dir) == [
        "rules/leads.rules:14:32: error: 'hr' is not an option of an item of lead.interests (a multi-choice)"
    ]


def test_assigning_to_a_queue_needs_a_team_field(pack_dir):
    rules = pack_dir / "rules" / "deals.rules"
    queue_rule = '\nrule "Queue deals"\n  on deal created\n  then\n    assign deal to queue "support"\n'
    rules.write_text(rules.read_text() + queue_rule)
    assert findings_of(pack_dir) == ["rules/deals.rules:15:12: error: deal has no team field to assign"]


def test_an_unknown_placeholder_in_a_notification_is_reported_where_it_stands(pack_dir):
    edit(pack_dir / "rules" / "deals.rules", '"Deal {name} has', '"Deal {nam} has')
    assert findings_of(pack_dir) == ["rules/deals.rules:5:29: error: unknown field 'nam' in {...} on deal"]
