"""The expression compiler: expressions become Python functions of
``(record, ctx)`` with the documented semantics (empty is ``None``; ordering
with empty is false, arithmetic with empty is empty; money stays exact; time
comes from the injected clock in the company's time zone), and the generated
code can reach nothing but the record, the context and the function library."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace

import pytest

from crm_platform.compiler.expressions import ExpressionCompiler
from crm_platform.definitions.functions import FUNCTIONS
from crm_platform.definitions.parser import parse_expression
from crm_platform.errors import DefinitionError, Location
from crm_platform.runtime.clock import EvalContext, FixedClock

from .conftest import compile_dir


def compile_expression(text: str, kind: str = "value", subject: str = "lead"):
    expr = parse_expression(text, Location("test", 1, 1))
    return ExpressionCompiler(subject).compile(expr, kind, "test", text)


def value(text: str, ctx, subject: str = "lead", **fields):
    """The value of ``text`` for a record with ``fields``."""
    return compile_expression(text, "value", subject)(SimpleNamespace(**fields), ctx)


def holds(text: str, ctx, subject: str = "lead", **fields) -> bool:
    """The outcome of ``text`` compiled as a condition."""
    result = compile_expression(text, "condition", subject)(SimpleNamespace(**fields), ctx)
    assert type(result) is bool
    return result


# --- comparisons -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "score", "expected"),
    [
        ("lead.score == 50", 50, True),
        ("lead.score == 50", 49, False),
        ("lead.score != 50", 49, True),
        ("lead.score != 50", 50, False),
        ("lead.score < 50", 49, True),
        ("lead.score < 50", 50, False),
        ("lead.score <= 50", 50, True),
        ("lead.score <= 50", 51, False),
        ("lead.score > 50", 51, True),
        ("lead.score > 50", 50, False),
        ("lead.score >= 50", 50, True),
        ("lead.score >= 50", 49, False),
        ("score >= 50", 50, True),
    ],
)
def test_comparisons(ctx, text, score, expected):
    assert holds(text, ctx, score=score) is expected


def test_comparing_texts_and_dates(ctx):
    assert holds('lead.source == "web"', ctx, source="web")
    assert holds("lead.birthday < today", ctx, birthday=dt.date(2026, 11, 22))
    assert not holds("lead.birthday < today", ctx, birthday=dt.date(2026, 11, 23))


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_ordering_with_an_empty_side_is_false(ctx, op):
    assert holds(f"lead.score {op} 1", ctx, score=None) is False
    assert holds(f"1 {op} lead.score", ctx, score=None) is False
    assert holds(f"lead.score {op} lead.budget", ctx, score=1, budget=None) is False


def test_equality_with_empty(ctx):
    assert holds("lead.score == 5", ctx, score=None) is False
    assert holds("lead.score != 5", ctx, score=None) is True


def test_in_and_not_in_a_literal_list(ctx):
    assert holds('lead.country in ["DE", "AT"]', ctx, country="AT")
    assert not holds('lead.country in ["DE", "AT"]', ctx, country="US")
    assert not holds('lead.country in ["DE", "AT"]', ctx, country=None)
    assert holds('lead.country not in ["DE", "AT"]', ctx, country="US")
    assert not holds('lead.country not in ["DE", "AT"]', ctx, country="DE")


def test_in_a_list_of_expressions(ctx):
    assert holds("lead.score in [lead.budget, 7]", ctx, score=7, budget=None)
    assert not holds("lead.score not in [lead.budget, 7]", ctx, score=3, budget=3)


def test_in_and_not_in_a_list_field(ctx):
    assert holds('"crm" in lead.interests', ctx, interests=["crm", "erp"])
    assert not holds('"hr" in lead.interests', ctx, interests=["crm"])
    assert holds('"hr" not in lead.interests', ctx, interests=["crm"])
    assert not holds('"crm" not in lead.interests', ctx, interests=["crm"])


@pytest.mark.parametrize("empty", [None, []])
def test_an_empty_list_field_holds_nothing(ctx, empty):
    assert holds('"crm" in lead.interests', ctx, interests=empty) is False
    assert holds('"crm" not in lead.interests', ctx, interests=empty) is True


def test_contains_on_text_and_on_lists(ctx):
    assert holds('lead.notes contains "call"', ctx, notes="please call back")
    assert not holds('lead.notes contains "mail"', ctx, notes="please call back")
    assert holds('lead.labels contains "vip"', ctx, labels=["new", "vip"])
    assert not holds('lead.labels contains "vip"', ctx, labels=["new"])
    assert not holds('lead.labels contains "vip"', ctx, labels=None)
    assert not holds('lead.notes contains "call"', ctx, notes=None)


def test_starts_with_and_ends_with(ctx):
    assert holds('lead.email ends_with "@example.com"', ctx, email="ann@example.com")
    assert not holds('lead.email ends_with "@example.com"', ctx, email="ann@example.org")
    assert holds('lead.code starts_with "DE-"', ctx, code="DE-17")
    assert not holds('lead.code starts_with "DE-"', ctx, code="AT-17")
    assert not holds('lead.code starts_with "DE-"', ctx, code=None)


@pytest.mark.parametrize(("notes", "empty"), [(None, True), ("", True), ([], True), ("x", False), (["x"], False)])
def test_is_empty_and_is_not_empty(ctx, notes, empty):
    assert holds("lead.notes is empty", ctx, notes=notes) is empty
    assert holds("lead.notes is not empty", ctx, notes=notes) is not empty


def test_zero_and_false_are_not_empty(ctx):
    assert not holds("lead.score is empty", ctx, score=0)
    assert not holds("lead.opted_in is empty", ctx, opted_in=False)


@pytest.mark.parametrize(
    ("score", "source", "expected"),
    [(60, "web", True), (60, "event", False), (10, "web", False)],
)
def test_and(ctx, score, source, expected):
    assert holds('lead.score >= 50 and lead.source == "web"', ctx, score=score, source=source) is expected


@pytest.mark.parametrize(
    ("score", "source", "expected"),
    [(60, "event", True), (10, "web", True), (10, "event", False)],
)
def test_or(ctx, score, source, expected):
    assert holds('lead.score >= 50 or lead.source == "web"', ctx, score=score, source=source) is expected


def test_not_and_parentheses(ctx):
    assert holds("not (lead.score > 5)", ctx, score=1)
    assert not holds("not (lead.score > 5)", ctx, score=9)
    assert holds('not (lead.score > 5 or lead.source == "web")', ctx, score=1, source="event")
    assert holds('lead.score > 5 and (lead.source == "web" or lead.source == "event")', ctx, score=9, source="event")


# --- arithmetic ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lead.score + 10", 17),
        ("lead.score - 10", -3),
        ("lead.score * 3", 21),
        ("lead.score / 2", 3.5),
        ("lead.score % 4", 3),
        ("-lead.score", -7),
        ("2 + lead.score * 3", 23),
        ("(2 + lead.score) * 3", 27),
    ],
)
def test_arithmetic(ctx, text, expected):
    assert value(text, ctx, score=7) == expected


def test_money_arithmetic_stays_decimal_and_exact(ctx):
    result = value("deal.amount * deal.probability / 100", ctx, "deal", amount=Decimal("1000.10"), probability=25)
    assert type(result) is Decimal
    assert result == Decimal("250.025")


def test_a_decimal_literal_with_a_decimal_field_is_exact(ctx):
    result = value("deal.amount * 0.1", ctx, "deal", amount=Decimal("3.3"))
    assert (type(result), result) == (Decimal, Decimal("0.33"))


def test_a_decimal_field_with_a_float_field_is_exact(ctx):
    result = value("deal.amount + deal.ratio", ctx, "deal", amount=Decimal("0.1"), ratio=0.2)
    assert (type(result), result) == (Decimal, Decimal("0.3"))


@pytest.mark.parametrize("text", ["lead.score / 0", "lead.score % 0", "lead.score / lead.budget"])
def test_division_by_zero_is_empty(ctx, text):
    assert value(text, ctx, score=5, budget=0) is None


@pytest.mark.parametrize(
    "text", ["lead.score + 1", "1 - lead.score", "lead.score * 2", "lead.score / 2", "lead.score % 2", "-lead.score"]
)
def test_arithmetic_with_empty_is_empty(ctx, text):
    assert value(text, ctx, score=None) is None


def test_text_concatenation(ctx):
    assert value('"Call " + lead.first_name', ctx, first_name="Ann") == "Call Ann"


# --- names and links ------------------------------------------------------------------


def test_the_subject_name_alone_is_the_record(ctx):
    record = SimpleNamespace(score=1)
    assert compile_expression("lead")(record, ctx) is record


def test_a_linked_field_is_read_through_the_link(ctx):
    account = SimpleNamespace(industry="tech", owner=SimpleNamespace(email="o@example.com"))
    assert value("deal.account.industry", ctx, "deal", account=account) == "tech"
    assert value("deal.account.owner.email", ctx, "deal", account=account) == "o@example.com"


def test_a_linked_field_through_an_empty_link_is_empty(ctx):
    assert value("deal.account.industry", ctx, "deal", account=None) is None
    assert value("deal.account.owner.email", ctx, "deal", account=SimpleNamespace(owner=None)) is None
    assert holds('deal.account.industry == "tech"', ctx, "deal", account=None) is False
    assert holds("deal.account.industry is empty", ctx, "deal", account=None) is True


# --- time ----------------------------------------------------------------------------


def test_today_and_now_come_from_the_clock(ctx):
    assert value("today", ctx) == dt.date(2026, 11, 23)
    assert value("now", ctx) == dt.datetime(2026, 11, 23, 10, 0)


def test_today_is_the_date_in_the_company_time_zone():
    late = EvalContext(FixedClock(dt.datetime(2026, 11, 23, 23, 30)), "Europe/Berlin")
    assert value("today", late) == dt.date(2026, 11, 24)
    assert value("now", late) == dt.datetime(2026, 11, 23, 23, 30)
    utc = EvalContext(FixedClock(dt.datetime(2026, 11, 23, 23, 30)), "UTC")
    assert value("today", utc) == dt.date(2026, 11, 23)


def test_days_since_a_date_counts_in_the_company_time_zone():
    late = EvalContext(FixedClock(dt.datetime(2026, 11, 23, 23, 30)), "Europe/Berlin")
    assert value("days_since(lead.birthday)", late, birthday=dt.date(2026, 11, 23)) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("today + 2 days", dt.date(2026, 11, 25)),
        ("today - 1 weeks", dt.date(2026, 11, 16)),
        ("now - 4 hours", dt.datetime(2026, 11, 23, 6, 0)),
        ("now + 15 minutes", dt.datetime(2026, 11, 23, 10, 15)),
        ("lead.birthday + 2 weeks", dt.date(2000, 1, 15)),
    ],
)
def test_durations(ctx, text, expected):
    assert value(text, ctx, birthday=dt.date(2000, 1, 1)) == expected


def test_a_duration_on_an_empty_date_is_empty(ctx):
    assert value("lead.birthday + 3 days", ctx, birthday=None) is None


def test_a_date_older_than_a_duration(ctx):
    assert holds("lead.last_seen < now - 4 hours", ctx, last_seen=dt.datetime(2026, 11, 23, 5, 59))
    assert not holds("lead.last_seen < now - 4 hours", ctx, last_seen=dt.datetime(2026, 11, 23, 6, 0))


# --- functions -------------------------------------------------------------------------

SEEN = dt.datetime(2026, 11, 21, 4, 0)  # two days and six hours before the clock
FUNCTION_CASES = [
    ("days_since", "days_since(lead.birthday)", {"birthday": dt.date(2026, 11, 13)}, 10),
    ("days_since", "days_since(lead.last_seen)", {"last_seen": SEEN}, 2),
    ("days_until", "days_until(lead.birthday)", {"birthday": dt.date(2026, 12, 1)}, 8),
    ("hours_since", "hours_since(lead.last_seen)", {"last_seen": SEEN}, 54.0),
    ("hours_since", "hours_since(lead.last_seen)", {"last_seen": dt.datetime(2026, 11, 23, 9, 45)}, 0.25),
    ("lower", "lower(lead.email)", {"email": "Ann@Example.COM"}, "ann@example.com"),
    ("upper", "upper(lead.country)", {"country": "de"}, "DE"),
    ("trim", "trim(lead.first_name)", {"first_name": "  Ann "}, "Ann"),
    ("length", "length(lead.first_name)", {"first_name": "Ann"}, 3),
    ("length", "length(lead.labels)", {"labels": ["a", "b"]}, 2),
    ("round", "round(lead.budget)", {"budget": Decimal("2.5")}, Decimal("3")),
    ("round", "round(lead.budget, 1)", {"budget": Decimal("2.25")}, Decimal("2.3")),
    ("round", "round(lead.score / 4)", {"score": 10}, 3),
    ("round", "round(lead.score / 8, 2)", {"score": 1}, 0.13),
    ("round", "round(lead.score)", {"score": 7}, 7),
    ("abs", "abs(lead.score)", {"score": -4}, 4),
    ("coalesce", 'coalesce(lead.phone, "none")', {"phone": "123"}, "123"),
    ("coalesce", 'coalesce(lead.phone, "none")', {"phone": None}, "none"),
    ("coalesce", 'coalesce(lead.phone, "none")', {"phone": ""}, "none"),
    ("coalesce", 'coalesce(lead.labels, ["x"])', {"labels": []}, ("x",)),
    ("year", "year(lead.birthday)", {"birthday": dt.date(1990, 5, 17)}, 1990),
    ("month", "month(lead.last_seen)", {"last_seen": SEEN}, 11),
    ("date", "date(lead.last_seen)", {"last_seen": SEEN}, dt.date(2026, 11, 21)),
]


@pytest.mark.parametrize(("function", "text", "fields", "expected"), FUNCTION_CASES)
def test_function(ctx, function, text, fields, expected):
    result = value(text, ctx, **fields)
    assert (type(result), result) == (type(expected), expected)


def test_every_library_function_is_tested():
    assert {case[0] for case in FUNCTION_CASES} == set(FUNCTIONS)


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_function_passes_empty_through(ctx, function):
    args = ", ".join(["lead.x"] + ['"y"'] * (len(FUNCTIONS[function].params) - FUNCTIONS[function].optional - 1))
    expected = "y" if function == "coalesce" else None
    assert value(f"{function}({args})", ctx, x=None) == expected


def test_a_function_in_a_condition(ctx):
    assert holds("days_since(lead.birthday) > 14", ctx, birthday=dt.date(2026, 11, 1))
    assert not holds("days_since(lead.birthday) > 14", ctx, birthday=None)


# --- the generated code and the sandbox ----------------------------------------------------


def test_generated_code_is_a_named_function_with_the_source_as_comment():
    compiled = compile_expression("lead.score >= 50", "condition")
    assert compiled.python.startswith("def condition(record, ctx):\n    # test: lead.score >= 50\n")
    assert (compiled.filename, compiled.source) == ("<condition test>", "lead.score >= 50")


def test_the_generated_function_has_no_builtins():
    compiled = compile_expression('lead.score > 1 and lower(lead.email) == "a"', "condition")
    namespace = compiled.function.__globals__
    assert namespace["__builtins" + "__"] == {}
    assert not {"open", "eval", "exec", "getattr", "__import__"} & set(namespace)


def test_the_compiler_refuses_a_dunder_attribute_even_without_the_checker():
    expr = parse_expression("lead.__class__", Location("test", 1, 1))
    with pytest.raises(ValueError, match="refusing to compile attribute '__class__'"):
        ExpressionCompiler("lead").compile(expr, "condition", "test")


def test_the_compiler_refuses_a_dunder_attribute_behind_a_field():
    expr = parse_expression("lead.score.__class__", Location("test", 1, 1))
    with pytest.raises(ValueError, match="refusing to compile attribute '__class__'"):
        ExpressionCompiler("lead").compile(expr, "condition", "test")


@pytest.mark.parametrize(
    ("condition", "finding"),
    [
        ('lead.__class__ == "x"', "rules/leads.rules:14:13: error: unknown field '__class__' on lead"),
        ('__import__("os") == "x"', "rules/leads.rules:14:8: error: unknown function '__import__'"),
        (
            'lead.score.__class__ == "x"',
            "rules/leads.rules:14:19: error: lead.score (an integer) has no fields; only links lead to other records",
        ),
    ],
)
def test_the_checker_stops_escapes_before_code_is_generated(pack_dir, condition, finding):
    rules = pack_dir / "rules" / "leads.rules"
    rules.write_text(rules.read_text().replace('  when lead.source == "web"\n', f"  when {condition}\n"))
    with pytest.raises(DefinitionError) as caught:
        compile_dir(pack_dir)
    assert [str(f) for f in caught.value.findings] == [finding]


def test_rules_source_shows_the_generated_condition(runner):
    result = runner.invoke(args=["rules", "source", "Route DACH web leads"])
    assert result.exit_code == 0
    assert "def condition(record, ctx):" in result.output
    assert "record.country in _c" in result.output


def test_rules_source_of_an_unknown_rule_fails(runner):
    result = runner.invoke(args=["rules", "source", "No such rule"])
    assert result.exit_code == 1
    assert "no rule named 'No such rule'" in result.output


def test_date_of_a_datetime_is_the_companys_local_date():
    # 23:30 UTC on the 23rd is already the 24th in Berlin.
    late = EvalContext(FixedClock(dt.datetime(2026, 11, 23, 23, 30)), "Europe/Berlin")
    seen = dt.datetime(2026, 11, 23, 23, 30)
    assert value("date(lead.last_seen)", late, last_seen=seen) == dt.date(2026, 11, 24)
    assert holds("date(lead.last_seen) == today", late, last_seen=seen)
    assert value("year(lead.last_seen)", late, last_seen=dt.datetime(2026, 12, 31, 23, 30)) == 2027
    assert value("month(lead.last_seen)", late, last_seen=dt.datetime(2026, 11, 30, 23, 30)) == 12


def test_date_of_a_date_is_that_date(ctx):
    assert value("date(lead.birthday)", ctx, birthday=dt.date(2000, 2, 29)) == dt.date(2000, 2, 29)
    assert value("year(lead.birthday)", ctx, birthday=dt.date(2000, 2, 29)) == 2000
