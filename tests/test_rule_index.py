"""The rule index: compiled rules by (entity, event, detail), in run order
(higher priority first, then file and line); disabled rules are kept by name
but never dispatched; time-driven rules are listed for the scheduler."""

from __future__ import annotations

import datetime as dt
import shutil
from types import SimpleNamespace

import pytest

from crm_platform.compiler.rules import index_key

from .conftest import GOOD, compile_dir

MORE_RULES = """\
rule "Late lead rule" priority -1
  on lead created
  then
    webhook "https://example.com/late"

rule "Same priority, earlier file" priority 5
  on lead created
  then
    webhook "https://example.com/a"

rule "Score changed"
  on lead score changed
  then
    webhook "https://example.com/score"

rule "Switched off" priority 100 disabled
  on lead created
  then
    webhook "https://example.com/off"

rule "Birthday" priority 3
  on lead 0 days before birthday yearly
  then
    send_email "welcome" to lead.email

rule "Switched off timer" disabled
  on lead every 15 minutes
  then
    webhook "https://example.com/timer"

rule "Web form"
  on lead form web_to_lead submitted
  when lead.country == "DE" and lead.source == "web" and lead.account.industry == "tech" and lead.country != "AT"
  then
    notify team "sales-dach" "New request"
"""

LAST_RULES = """\
rule "Same priority, later file" priority 5
  on lead created
  then
    webhook "https://example.com/z"
"""


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """The good pack's rules and two more files, compiled once; tests only read it."""
    root = tmp_path_factory.mktemp("index") / "pack"
    shutil.copytree(GOOD, root)
    (root / "rules" / "a_more.rules").write_text(MORE_RULES)
    (root / "rules" / "z_last.rules").write_text(LAST_RULES)
    return compile_dir(root).rules


def names(rules) -> list[str]:
    return [rule.name for rule in rules]


def test_rules_for_an_event_run_by_priority_then_file_and_line(index):
    assert names(index.for_event("lead", "created")) == [
        "Route DACH web leads",  # priority 10
        "Same priority, earlier file",  # priority 5, rules/a_more.rules
        "Route other web leads",  # priority 5, rules/leads.rules
        "Same priority, later file",  # priority 5, rules/z_last.rules
        "Late lead rule",  # priority -1
    ]


def test_rules_in_one_file_with_equal_priority_keep_file_order(pack_dir):
    rules = pack_dir / "rules" / "leads.rules"
    rules.write_text(rules.read_text().replace(" priority 10 stop", " stop").replace(" priority 5", ""))
    assert names(compile_dir(pack_dir).rules.for_event("lead", "created")) == [
        "Route DACH web leads",
        "Route other web leads",
    ]


def test_the_stop_flag_is_kept(index):
    stops = {rule.name: rule.stop for rule in index.for_event("lead", "created")}
    assert stops["Route DACH web leads"] is True
    assert stops["Route other web leads"] is False


def test_disabled_rules_are_not_dispatched_but_kept_by_name(index):
    assert "Switched off" not in names(index.for_event("lead", "created"))
    assert index.rules["Switched off"].enabled is False
    assert index.rules["Route DACH web leads"].enabled is True


def test_changed_rules_are_keyed_by_the_field(index):
    assert names(index.for_event("lead", "changed", "score")) == ["Score changed"]
    assert index.for_event("lead", "changed", "country") == []
    assert index.for_event("lead", "changed") == []


def test_enters_rules_are_keyed_by_the_state(index):
    assert names(index.for_event("deal", "enters", "won")) == ["Won deal follow-up"]
    assert index.for_event("deal", "enters", "lost") == []
    assert index.for_event("deal", "leaves", "won") == []


def test_form_rules_are_keyed_by_the_form(index):
    assert names(index.for_event("lead", "form", "web_to_lead")) == ["Web form"]


def test_an_event_without_rules_has_none(index):
    assert index.for_event("account", "created") == []
    assert index.for_event("lead", "deleted") == []


def test_scheduled_returns_the_enabled_time_driven_rules(index):
    assert sorted(names(index.scheduled())) == ["Birthday", "Stale deal reminder"]


def test_index_keys(index):
    assert index_key(index.rules["Score changed"].trigger) == ("lead", "changed", "score")
    assert index_key(index.rules["Won deal follow-up"].trigger) == ("deal", "enters", "won")
    assert index_key(index.rules["Birthday"].trigger) == ("lead", "date", "birthday")
    assert index_key(index.rules["Web form"].trigger) == ("lead", "form", "web_to_lead")
    assert index_key(index.rules["Stale deal reminder"].trigger) == ("deal", "every", None)
    assert index_key(index.rules["Late lead rule"].trigger) == ("lead", "created", None)


def test_a_compiled_rule_knows_where_it_was_written(index):
    rule = index.rules["Route DACH web leads"]
    assert (rule.file, rule.line, rule.priority) == ("rules/leads.rules", 3, 10)
    assert rule.source.splitlines()[0] == 'rule "Route DACH web leads" priority 10 stop'


def test_matches_evaluates_the_condition(index, ctx):
    rule = index.rules["Route DACH web leads"]
    assert rule.matches(SimpleNamespace(source="web", country="AT"), ctx) is True
    assert rule.matches(SimpleNamespace(source="web", country="US"), ctx) is False
    assert rule.matches(SimpleNamespace(source="event", country="DE"), ctx) is False
    assert rule.matches(SimpleNamespace(source="web", country=None), ctx) is False


def test_a_rule_without_condition_always_matches(index, ctx):
    assert index.rules["Won deal follow-up"].condition is None
    assert index.rules["Won deal follow-up"].matches(SimpleNamespace(), ctx) is True


def test_matches_follows_links(index, ctx):
    rule = index.rules["Web form"]
    tech = SimpleNamespace(industry="tech")
    assert rule.matches(SimpleNamespace(country="DE", source="web", account=tech), ctx) is True
    assert rule.matches(SimpleNamespace(country="DE", source="web", account=None), ctx) is False


def test_fields_read_lists_each_path_once_in_order(index):
    assert index.rules["Web form"].fields_read == ("country", "source", "account.industry")
    assert index.rules["Route DACH web leads"].fields_read == ("source", "country")
    assert index.rules["Won deal follow-up"].fields_read == ()


def test_fields_read_of_a_function_argument(index):
    assert index.rules["Stale deal reminder"].fields_read == ("stage", "updated_at")


def test_action_expressions_are_compiled(index, ctx):
    send, follow_up = index.rules["Route DACH web leads"].actions[1:]
    record = SimpleNamespace(email="ann@example.com", status="new")
    assert send.kind == "SendEmail"
    assert send.expressions["to"](record, ctx) == "ann@example.com"
    assert follow_up.expressions["unless"](record, ctx) is False
    (nudge,) = follow_up.children
    assert nudge.node.template == "nudge"


def test_create_values_are_compiled_per_field(index, ctx):
    create = index.rules["Route other web leads"].actions[1]
    record = SimpleNamespace(first_name="Ann")
    assert create.expressions["subject"](record, ctx) == "Call Ann"
    assert create.expressions["due_date"](record, ctx) == dt.date(2026, 11, 25)
    assert create.expressions["lead"](record, ctx) is record


def test_team_by_is_compiled(index, ctx):
    assign = index.rules["Route other web leads"].actions[0]
    assert assign.expressions["team_by"](SimpleNamespace(country="US"), ctx) == "US"


def test_python_source_shows_condition_and_actions(index):
    source = index.rules["Route DACH web leads"].python_source()
    assert source.startswith("def condition(record, ctx):\n")
    assert "return record.email" in source


def test_python_source_of_a_rule_without_expressions(index):
    assert index.rules["Late lead rule"].python_source() == "# this rule has no expressions\n"
