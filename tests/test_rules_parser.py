"""The rule language parser: every trigger, action and option becomes the right
node at the right position; syntax errors point at the exact spot with a
message an admin can act on, both from ``parse_rules`` and through a pack."""

from __future__ import annotations

from decimal import Decimal

import pytest

from crm_platform.definitions import nodes as n
from crm_platform.definitions.parser import SyntaxProblem, parse_rules
from crm_platform.errors import Location

from .conftest import findings_of

FILE = "rules/test.rules"


def loc(line: int, column: int) -> Location:
    return Location(FILE, line, column)


def parse_one(text: str) -> n.Rule:
    rules = parse_rules(text, FILE)
    assert len(rules) == 1
    return rules[0]


def trigger_of(line: str) -> n.Trigger:
    """The trigger of a rule whose trigger line (line 2) is ``  on {line}``."""
    return parse_one(f'rule "r"\n  on {line}\n  then\n    webhook "https://example.com/h"\n').trigger


def action_of(line: str) -> n.Action:
    """The only action of a rule whose action line (line 4) is ``    {line}``."""
    (action,) = parse_one(f'rule "r"\n  on lead created\n  then\n    {line}\n').actions
    return action


def problem_of(text: str) -> tuple[Location, str]:
    with pytest.raises(SyntaxProblem) as caught:
        parse_rules(text, FILE)
    return caught.value.loc, caught.value.message


# --- triggers ----------------------------------------------------------------


@pytest.mark.parametrize("event", ["created", "updated", "deleted"])
def test_record_event_triggers_name_entity_and_kind(event):
    trigger = trigger_of(f"lead {event}")
    assert (trigger.entity, trigger.kind, trigger.loc) == ("lead", event, loc(2, 6))
    assert trigger.field is None and trigger.state is None


def test_changed_trigger_without_values():
    trigger = trigger_of("lead country changed")
    assert (trigger.kind, trigger.field, trigger.field_loc) == ("changed", "country", loc(2, 11))
    assert trigger.change_from is None and trigger.change_to is None


def test_changed_trigger_with_from_and_to_keeps_the_literals_and_their_positions():
    trigger = trigger_of('lead status changed from "new" to "contacted"')
    assert trigger.change_from == n.Literal(loc(2, 31), "new")
    assert trigger.change_to == n.Literal(loc(2, 40), "contacted")


def test_changed_trigger_with_only_to():
    trigger = trigger_of("deal amount changed to 100")
    assert trigger.change_from is None
    assert trigger.change_to == n.Literal(loc(2, 29), 100)


def test_changed_trigger_with_only_from():
    trigger = trigger_of("lead opted_in changed from true")
    assert trigger.change_from == n.Literal(loc(2, 33), True)
    assert trigger.change_to is None


def test_a_field_named_email_may_be_watched_for_changes():
    trigger = trigger_of('lead email changed to "x@example.com"')
    assert (trigger.kind, trigger.field, trigger.field_loc) == ("changed", "email", loc(2, 11))
    assert trigger.change_to.value == "x@example.com"


def test_email_received_is_its_own_trigger():
    trigger = trigger_of("lead email received")
    assert (trigger.kind, trigger.field) == ("email", None)


@pytest.mark.parametrize("kind", ["enters", "leaves"])
def test_stage_triggers_name_the_state(kind):
    trigger = trigger_of(f"deal {kind} won")
    assert (trigger.kind, trigger.state, trigger.field_loc) == (kind, "won", loc(2, 18))


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [("15 minutes", 15, "minutes"), ("1 minute", 1, "minutes"), ("12 hours", 12, "hours"), ("1 hour", 1, "hours")],
)
def test_every_trigger_keeps_amount_and_plural_unit(text, amount, unit):
    trigger = trigger_of(f"ticket every {text}")
    assert trigger.kind == "every"
    assert trigger.every == n.Duration(loc(2, 19), amount, unit)


def test_date_trigger_after_a_field():
    trigger = trigger_of("deal 30 days after close_date")
    assert (trigger.kind, trigger.days, trigger.direction, trigger.field) == ("date", 30, "after", "close_date")
    assert trigger.field_loc == loc(2, 25)
    assert trigger.yearly is False


def test_date_trigger_before_a_field_yearly():
    trigger = trigger_of("contact 0 days before birthday yearly")
    assert (trigger.days, trigger.direction, trigger.field, trigger.yearly) == (0, "before", "birthday", True)


def test_date_trigger_accepts_a_singular_day():
    assert trigger_of("deal 1 day after close_date").days == 1


def test_form_submitted_trigger_names_the_form():
    trigger = trigger_of("lead form web_to_lead submitted")
    assert (trigger.kind, trigger.form, trigger.field_loc) == ("form", "web_to_lead", loc(2, 16))


# --- actions -----------------------------------------------------------------


def test_assign_round_robin_to_a_named_team():
    action = action_of('assign lead round_robin(team "sales-dach")')
    assert isinstance(action, n.Assign)
    assert (action.strategy, action.target, action.loc) == ("round_robin", n.Name(loc(4, 12), ("lead",)), loc(4, 12))
    assert action.team == n.TeamRef(loc(4, 34), name="sales-dach")


def test_assign_load_balanced_to_a_named_team():
    action = action_of('assign lead load_balanced(team "support")')
    assert (action.strategy, action.team.name) == ("load_balanced", "support")


def test_assign_team_by_a_field_keeps_mapping_and_else_with_positions():
    action = action_of(
        'assign lead round_robin(team by lead.country {"DE": "sales-dach", "AT": "sales-dach", else: "x"})'
    )
    team = action.team
    assert team.name is None
    assert team.by == n.Name(loc(4, 37), ("lead", "country"))
    assert team.mapping == (("DE", "sales-dach", loc(4, 57)), ("AT", "sales-dach", loc(4, 77)))
    assert (team.otherwise, team.otherwise_loc) == ("x", loc(4, 97))


def test_assign_team_by_without_else_and_with_a_trailing_comma():
    team = action_of('assign lead load_balanced(team by lead.country {"US": "sales-intl",})').team
    assert team.mapping == (("US", "sales-intl", loc(4, 59)),)
    assert team.otherwise is None and team.otherwise_loc is None


def test_assign_to_a_user_by_email():
    action = action_of('assign lead to user "maria@example.com"')
    assert action.strategy == "user"
    assert action.user == n.Literal(loc(4, 25), "maria@example.com")


def test_assign_to_a_user_by_path():
    action = action_of("assign deal to user deal.account.owner")
    assert action.user == n.Name(loc(4, 25), ("deal", "account", "owner"))


def test_assign_to_a_queue_keeps_the_team_and_its_position():
    action = action_of('assign ticket to queue "support"')
    assert (action.strategy, action.queue, action.queue_loc) == ("queue", "support", loc(4, 28))
    assert action.team is None and action.user is None


def test_set_a_field_to_an_expression():
    action = action_of("set lead.score = lead.score + 10")
    assert action == n.SetField(
        loc(4, 9),
        n.Name(loc(4, 9), ("lead", "score")),
        n.Binary(loc(4, 22), "+", n.Name(loc(4, 22), ("lead", "score")), n.Literal(loc(4, 35), 10)),
    )


def test_create_keeps_each_value_with_the_position_of_its_name():
    action = action_of('create activity(kind = "task", due_date = today + 2 days, lead = lead,)')
    assert isinstance(action, n.Create)
    assert (action.entity, action.loc) == ("activity", loc(4, 12))
    assert [(name, where) for name, _, where in action.values] == [
        ("kind", loc(4, 21)),
        ("due_date", loc(4, 36)),
        ("lead", loc(4, 63)),
    ]
    assert action.values[1][1] == n.Binary(
        loc(4, 47), "+", n.Now(loc(4, 47), "today"), n.Duration(loc(4, 55), 2, "days")
    )


def test_create_with_no_values():
    assert action_of("create activity()").values == ()


def test_send_email_names_template_and_recipient_expression():
    action = action_of('send_email "welcome" to lead.email')
    assert action == n.SendEmail(loc(4, 16), "welcome", n.Name(loc(4, 29), ("lead", "email")))


def test_follow_up_with_unless_holds_its_nested_actions():
    rule = parse_one(
        'rule "r"\n  on lead created\n  then\n'
        '    follow_up after 3 days unless lead.status != "new":\n'
        '      send_email "nudge" to lead.email\n'
        "      follow_up after 2 weeks:\n"
        '        notify lead.owner "still new"\n'
        '    webhook "https://example.com/h"\n'
    )
    first, second = rule.actions
    assert isinstance(first, n.FollowUp) and isinstance(second, n.Webhook)
    assert first.delay == n.Duration(loc(4, 21), 3, "days")
    assert first.unless == n.Compare(
        loc(4, 35), "!=", n.Name(loc(4, 35), ("lead", "status")), n.Literal(loc(4, 50), "new")
    )
    email, inner = first.actions
    assert isinstance(email, n.SendEmail) and email.loc == loc(5, 18)
    assert inner.delay == n.Duration(loc(6, 23), 2, "weeks") and inner.unless is None
    assert [type(a) for a in inner.actions] == [n.Notify]


@pytest.mark.parametrize(("unit", "expected"), [("minutes", "minutes"), ("hour", "hours"), ("weeks", "weeks")])
def test_follow_up_delay_units(unit, expected):
    rule = parse_one(f'rule "r"\n  on lead created\n  then\n    follow_up after 2 {unit}:\n      webhook "u"\n')
    assert rule.actions[0].delay.unit == expected


def test_escalate_to_a_role():
    action = action_of('escalate ticket to role "support-lead"')
    assert action == n.Escalate(
        loc(4, 14), n.Name(loc(4, 14), ("ticket",)), n.Recipient(loc(4, 29), "role", name="support-lead")
    )


def test_escalate_to_a_user_by_email_and_by_path():
    assert action_of('escalate lead to user "boss@example.com"').to == n.Recipient(
        loc(4, 27), "user", name="boss@example.com"
    )
    path = action_of("escalate lead to user lead.account.owner").to
    assert path == n.Recipient(loc(4, 27), "path", path=n.Name(loc(4, 27), ("lead", "account", "owner")))


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        ('role "sales"', n.Recipient(loc(4, 17), "role", name="sales")),
        ('team "support"', n.Recipient(loc(4, 17), "team", name="support")),
        ('user "a@example.com"', n.Recipient(loc(4, 17), "user", name="a@example.com")),
        ("lead.owner", n.Recipient(loc(4, 12), "path", path=n.Name(loc(4, 12), ("lead", "owner")))),
        ("user lead.owner", n.Recipient(loc(4, 17), "path", path=n.Name(loc(4, 17), ("lead", "owner")))),
    ],
)
def test_notify_recipients_and_message(recipient, expected):
    action = action_of(f'notify {recipient} "Lead {{first_name}} needs you"')
    assert isinstance(action, n.Notify)
    assert action.to == expected
    assert action.message == "Lead {first_name} needs you"


def test_webhook_keeps_the_url():
    assert action_of('webhook "https://example.com/hooks/crm"') == n.Webhook(
        loc(4, 13), "https://example.com/hooks/crm"
    )


def test_move_names_the_state_and_its_position():
    action = action_of("move lead to qualified")
    assert action == n.Move(loc(4, 10), n.Name(loc(4, 10), ("lead",)), "qualified", loc(4, 18))


def test_add_to_campaign_keeps_the_campaign_name():
    action = action_of('add lead to campaign "Spring launch"')
    assert action == n.AddToCampaign(loc(4, 9), n.Name(loc(4, 9), ("lead",)), "Spring launch")


def test_text_escapes_are_decoded():
    assert action_of(r'notify role "sales" "say \"hi\""').message == 'say "hi"'


# --- rule header and layout --------------------------------------------------


def test_rule_defaults_without_options():
    rule = parse_one('rule "Plain"\n  on lead created\n  then\n    webhook "u"\n')
    assert (rule.name, rule.loc, rule.priority, rule.stop, rule.enabled) == ("Plain", loc(1, 6), 0, False, True)
    assert rule.condition is None


def test_rule_options_priority_stop_disabled():
    rule = parse_one('rule "Opts" priority 10 stop disabled\n  on lead created\n  then\n    webhook "u"\n')
    assert (rule.priority, rule.stop, rule.enabled) == (10, True, False)


def test_rule_priority_may_be_negative():
    rule = parse_one('rule "Late" priority -5\n  on lead created\n  then\n    webhook "u"\n')
    assert rule.priority == -5


def test_condition_is_parsed_at_its_position():
    rule = parse_one('rule "r"\n  on lead created\n  when lead.score >= 50\n  then\n    webhook "u"\n')
    assert rule.condition == n.Compare(loc(3, 8), ">=", n.Name(loc(3, 8), ("lead", "score")), n.Literal(loc(3, 22), 50))


TWO_RULES = """\
# Leading comment.

rule "First" priority 2   # a comment after the header
  # a comment before the trigger
  on lead created

  when lead.source == "web"   # why
  then
    # a comment before the first action
    set lead.score = 1

      # a comment indented oddly
    webhook "https://example.com/a"
# a comment between rules, not indented


rule "Second"
  on lead updated
  then
    webhook "https://example.com/b"
  # a trailing comment of the file"""


def test_comments_and_blank_lines_anywhere_do_not_change_the_rules():
    first, second = parse_rules(TWO_RULES, FILE)
    assert (first.name, first.loc, first.priority) == ("First", loc(3, 6), 2)
    assert first.trigger.loc == loc(5, 6)
    assert first.condition.loc == loc(7, 8)
    assert [(type(a), a.loc) for a in first.actions] == [(n.SetField, loc(10, 9)), (n.Webhook, loc(13, 13))]
    assert (second.name, second.loc, second.trigger.kind) == ("Second", loc(17, 6), "updated")
    assert second.actions == (n.Webhook(loc(20, 13), "https://example.com/b"),)


def test_rule_source_holds_exactly_the_rules_lines():
    first, second = parse_rules(TWO_RULES, FILE)
    lines = TWO_RULES.splitlines()
    assert first.source == "\n".join(lines[2:13])
    assert second.source == "\n".join(lines[16:20])


def test_rule_source_of_the_fixture_pack(pack_dir):
    text = (pack_dir / "rules" / "leads.rules").read_text()
    first, second = parse_rules(text, "rules/leads.rules")
    lines = text.splitlines()
    assert first.source == "\n".join(lines[2:10])
    assert second.source == "\n".join(lines[11:17])


def test_a_file_without_rules_parses_to_nothing():
    assert parse_rules("# only a comment\n\n", FILE) == []
    assert parse_rules("", FILE) == []


def test_a_file_without_a_final_line_break_parses():
    rule = parse_one('rule "r"\n  on lead created\n  then\n    webhook "u"')
    assert rule.actions == (n.Webhook(loc(4, 13), "u"),)


def test_keywords_may_be_field_names_in_expressions():
    rule = parse_one(
        'rule "r"\n  on deal created\n  when deal.stage == "won" and deal.team == "x"\n  then\n    webhook "u"\n'
    )
    assert [o.left.parts for o in rule.condition.operands] == [("deal", "stage"), ("deal", "team")]


def test_decimal_literals_are_exact():
    rule = parse_one('rule "r"\n  on deal created\n  when deal.ratio > 0.1\n  then\n    webhook "u"\n')
    assert rule.condition.right.value == Decimal("0.1")


# --- syntax errors -------------------------------------------------------------


def test_unquoted_rule_name_is_an_error_at_the_name():
    assert problem_of('rule Route web leads\n  on lead created\n  then\n    webhook "u"\n') == (
        loc(1, 6),
        'a rule needs a quoted name: rule "Route web leads"',
    )


def test_unquoted_rule_name_after_another_rule_gets_the_same_message():
    text = 'rule "a"\n  on lead created\n  then\n    webhook "u"\n\nrule Second\n  on lead created\n'
    assert problem_of(text) == (loc(6, 6), 'a rule needs a quoted name: rule "Route web leads"')


def test_unindented_rule_body_is_an_error_at_the_trigger():
    assert problem_of('rule "x" priority 1\non lead created\nthen\n  webhook "u"\n') == (
        loc(2, 1),
        "a rule's body must be indented under its header",
    )


def test_missing_then_is_reported_at_the_first_action():
    text = 'rule "x"\n  on lead created\n  when lead.score > 1\n    webhook "u"\n'
    assert problem_of(text) == (loc(4, 5), "expected 'then' followed by indented actions")


def test_missing_then_with_actions_at_the_same_indentation():
    text = 'rule "x"\n  on lead created\n  set lead.score = 1\n'
    assert problem_of(text) == (loc(3, 3), "expected 'then' followed by indented actions")


def test_actions_on_the_then_line_are_an_error():
    text = 'rule "x"\n  on lead created\n  then webhook "u"\n'
    assert problem_of(text) == (loc(3, 8), "'then' must be followed by actions on the next lines, indented")


def test_trigger_must_come_first():
    text = 'rule "x"\n  when lead.score > 1\n  on lead created\n'
    assert problem_of(text) == (loc(2, 3), "the first line of a rule body is its trigger: on ENTITY EVENT")


@pytest.mark.parametrize(
    ("condition", "column"),
    [("lead.score = 1", 19), ("score = 1", 14), ("days_since(lead.birthday) = 1", 34), ("x and lead.a.b = 1", 23)],
)
def test_single_equals_in_a_condition_says_use_double_equals(condition, column):
    text = f'rule "x"\n  on lead created\n  when {condition}\n  then\n    webhook "u"\n'
    assert problem_of(text) == (loc(3, column), "use == to compare; a single = is only for set and create")


def test_single_equals_in_unless_says_use_double_equals():
    text = 'rule "x"\n  on lead created\n  then\n    follow_up after 1 days unless lead.score = 1:\n      webhook "u"\n'
    assert problem_of(text) == (loc(4, 46), "use == to compare; a single = is only for set and create")


def test_a_missing_operator_is_not_explained_as_a_single_equals():
    text = 'rule "x"\n  on lead created\n  when lead.score 5\n  then\n    webhook "u"\n'
    where, message = problem_of(text)
    assert where == loc(3, 19)
    assert message.startswith("unexpected '5'; expected a comparison (==, !=, <, <=, >, >=), the end of the line")


def test_unknown_action_keyword_lists_every_action():
    text = 'rule "x"\n  on lead created\n  then\n    send_mail "welcome" to lead.email\n'
    assert problem_of(text) == (
        loc(4, 5),
        "unexpected 'send_mail'; expected 'add', 'assign', 'create', 'escalate', 'follow_up', 'move', "
        "'notify', 'send_email', 'set', 'webhook'",
    )


@pytest.mark.parametrize(("line", "column"), [("on lead create", 17), ("on lead", 10), ("on lead status", 17)])
def test_unknown_or_missing_event_lists_the_events(line, column):
    assert problem_of(f'rule "x"\n  {line}\n  then\n    webhook "u"\n') == (
        loc(2, column),
        "expected an event: created, updated, deleted, FIELD changed, enters STATE, leaves STATE, "
        "every N minutes, N days after FIELD, form NAME submitted or email received",
    )


def test_unterminated_string_points_at_its_opening_quote():
    text = 'rule "x"\n  on lead created\n  then\n    webhook "https://example.com\n'
    assert problem_of(text) == (loc(4, 13), 'unterminated text: a quoted text must end with " on the same line')


def test_single_quoted_text_asks_for_double_quotes():
    text = 'rule "x"\n  on lead created\n  when lead.source == \'web\'\n  then\n    webhook "u"\n'
    assert problem_of(text) == (loc(3, 23), 'a text value needs double quotes: "like this"')


def test_bad_dedent_points_at_the_line():
    text = 'rule "x"\n  on lead created\n  then\n    webhook "a"\n   webhook "b"\n'
    with pytest.raises(SyntaxProblem) as caught:
        parse_rules(text, FILE)
    problem = caught.value
    assert (problem.loc, problem.message) == (loc(5, 4), "this line's indentation matches no enclosing block")
    assert problem.hint == "indent it exactly like the line it belongs with"


def test_every_needs_a_whole_number():
    text = 'rule "x"\n  on ticket every 1.5 hours\n  then\n    webhook "u"\n'
    assert problem_of(text) == (loc(2, 19), "expected a whole number, got 1.5")


def test_priority_needs_a_whole_number():
    assert problem_of('rule "x" priority 2.5\n  on lead created\n  then\n    webhook "u"\n') == (
        loc(1, 19),
        "expected a whole number, got 2.5",
    )


def test_invalid_escape_in_text_is_an_error():
    text = 'rule "x"\n  on lead created\n  then\n    webhook "bad \\N escape"\n'
    assert problem_of(text) == (loc(4, 13), "invalid escape in text")


# --- syntax errors through a pack ----------------------------------------------


@pytest.mark.parametrize(
    ("case", "finding"),
    [
        (
            "rule-syntax-unquoted-name",
            'rules/leads.rules:3:6: error: a rule needs a quoted name: rule "Route web leads"',
        ),
        (
            "rule-syntax-unindented-body",
            "rules/leads.rules:4:1: error: a rule's body must be indented under its header",
        ),
        ("rule-syntax-missing-then", "rules/leads.rules:15:5: error: expected 'then' followed by indented actions"),
        (
            "rule-syntax-single-equals",
            "rules/leads.rules:14:20: error: use == to compare; a single = is only for set and create",
        ),
        (
            "rule-syntax-unknown-action",
            "rules/leads.rules:8:5: error: unexpected 'send_mail'; expected less indentation, 'add', 'assign', "
            "'create', 'escalate', 'follow_up', 'move', 'notify', 'send_email', 'set', 'webhook'",
        ),
        (
            "rule-syntax-unterminated-string",
            'rules/leads.rules:8:16: error: unterminated text: a quoted text must end with " on the same line',
        ),
        ("rule-syntax-single-quotes", 'rules/leads.rules:14:23: error: a text value needs double quotes: "like this"'),
        (
            "rule-syntax-bad-dedent",
            "rules/leads.rules:17:4: error: this line's indentation matches no enclosing block",
        ),
        ("rule-syntax-fractional-every", "rules/deals.rules:2:17: error: expected a whole number, got 1.5"),
    ],
)
def test_syntax_error_in_a_pack_is_its_only_finding(broken_pack, case, finding):
    assert findings_of(broken_pack(case)) == [finding]


def test_the_good_pack_has_no_findings(pack_dir):
    assert findings_of(pack_dir) == []
