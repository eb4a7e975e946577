"""Property-based tests: whatever text an admin writes, the platform answers
with a compiled app or with findings that point into the files, never with a
crash; and what the rule language compiles means what it says.

Each example builds its pack in its own ``tempfile.TemporaryDirectory``:
hypothesis runs many examples per test call, and pytest's ``tmp_path`` would
be shared between them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crm_platform.compiler import CompiledApp, compile_pack
from crm_platform.definitions import load_pack
from crm_platform.definitions.parser import SyntaxProblem, parse_expression, parse_rules
from crm_platform.definitions.source import YamlProblem, load_yaml
from crm_platform.errors import DefinitionError, Location
from crm_platform.runtime.clock import EvalContext, FixedClock
from tests.conftest import GOOD, compile_dir

# Parsing alone is cheap; a whole load and compile costs some 40 ms, so the
# tests that compile a pack run fewer examples to keep the file fast.
PARSE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _compiles(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


GOOD_FILES = sorted(p.relative_to(GOOD).as_posix() for p in GOOD.rglob("*") if p.is_file())
GOOD_CONTENT = {name: (GOOD / name).read_bytes() for name in GOOD_FILES}
YAML_FILES = [f for f in GOOD_FILES if f.endswith(".yaml")]
LEADS_RULES = (GOOD / "rules" / "leads.rules").read_text()
TOP_DIRECTORIES = ("schemas", "workflows", "rules")

# Pieces of YAML and of the rule language that make interesting mistakes.
TOKENS = [
    ":", ": ", "- ", "-", "&a ", "*a", "&a", "<<: *a", "{", "}", "[", "]", ",", "?", "? ", "|", ">", "#", "'", '"',
    "!!python/object:os.system ", "!!python/name:os.system", "!!binary ", "!!set ", "!!omap ", "!!timestamp ",
    "!!int ", "!!float ", "!!str ", "!!map ", "!custom ", "%YAML 1.1\n", "---\n", "\n...\n", "~", "null", "NO",
    "yes", "2026-13-45", "2026-02-30 25:61:00", "1e400", "0x1F", "0o17", ".inf", "\t", "  ", "\n", "\r", "\x00",
    "\ufeff", "\u2028", "\x85", "@", "`", "%", "\\", "\\\n", "(", ")", "==", "=", "and ", "or ", "not ", " in ",
    "is empty", "rule ", "on ", "when ", "then", "\n  then\n", "lead.", "deal.account.", "today", "now", " + ",
    "3 days", "99999999999999999999999", "1.5", "-", "follow_up after 3 days:", '"x"', "priority 10 ", "stop",
    "every 0 minutes", "entity", "fields", "type", "options", "states", "transitions", "from", "to", "{{", "{%",
    "{#", "Subject:",
]  # fmt: skip


# --- strategies ---------------------------------------------------------------


@st.composite
def mutated(draw, text: str) -> str:
    """``text`` after one to four random edits: deletions, insertions of
    characters and tokens, replacements, swapped lines, changed indentation."""
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "token", "replace", "swap", "indent", "dedent", "tab"]))
        lines = text.split("\n")
        if kind in ("swap", "indent", "dedent", "tab") and lines:
            index = draw(st.integers(0, len(lines) - 1))
            if kind == "swap":
                other = draw(st.integers(0, len(lines) - 1))
                lines[index], lines[other] = lines[other], lines[index]
            elif kind == "indent":
                lines[index] = " " * draw(st.integers(1, 5)) + lines[index]
            elif kind == "dedent":
                lines[index] = lines[index][draw(st.integers(1, 4)) :]
            else:
                lines[index] = "\t" + lines[index].lstrip(" ")
            text = "\n".join(lines)
            continue
        at = draw(st.integers(0, len(text)))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 12)) :]
        elif kind == "insert":
            text = text[:at] + draw(st.text(min_size=1, max_size=4)) + text[at:]
        elif kind == "token":
            text = text[:at] + draw(st.sampled_from(TOKENS)) + text[at:]
        else:
            text = text[:at] + draw(st.text(min_size=1, max_size=3)) + text[at + 1 :]
    return text


@st.composite
def mutated_pack_file(draw) -> tuple[str, str]:
    """One file of the good pack, mutated."""
    name = draw(st.sampled_from(GOOD_FILES))
    return name, draw(mutated((GOOD / name).read_text()))


# --- helpers ------------------------------------------------------------------


def _outcome(files: dict[str, str | bytes]) -> CompiledApp | DefinitionError:
    """Compile the good pack with ``files`` (relative path -> content) written over it.

    Returns the app or the DefinitionError, after checking that every finding
    points somewhere real; any other exception propagates and fails the test.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pack"
        for name, content in {**GOOD_CONTENT, **files}.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        try:
            result = compile_dir(root)
        except DefinitionError as exc:
            assert exc.findings, "a DefinitionError without findings"
            assert any(f.is_error for f in exc.findings)
            _assert_located(exc.findings, root)
            return exc
        assert isinstance(result, CompiledApp)
        _assert_located(result.warnings, root)
        return result


def _assert_located(findings, root: Path) -> None:
    """Every finding names a file of the pack (or a missing top directory) and
    a line; findings about a file's content have a line and column from 1, and
    the line is in the file (or just after its end, for "unexpected end")."""
    for finding in findings:
        loc = finding.location
        assert isinstance(loc, Location), finding
        assert loc.file, finding
        assert loc.line >= 0 and loc.column >= 0, finding
        if (root / loc.file).is_file():
            assert loc.line >= 1 and loc.column >= 1, finding
            text = (root / loc.file).read_text(encoding="utf-8", errors="replace")
            assert loc.line <= len(text.splitlines()) + 1, finding
        else:
            assert loc.file in TOP_DIRECTORIES and loc.line == 0, finding


def _rules_with_condition(condition: str) -> str:
    return f'rule "Generated"\n  on lead created\n  when {condition}\n  then\n    webhook "https://example.com/hook"\n'


def _assert_syntax_problem_located(problem: SyntaxProblem, file: str) -> None:
    assert problem.loc.file == file
    assert problem.loc.line >= 1 and problem.loc.column >= 1, problem.loc
    assert problem.message


# --- the YAML loader and load_pack ---------------------------------------------


@PARSE
@given(text=st.text())
def test_load_yaml_returns_data_or_a_located_problem_for_any_text(text):
    try:
        load_yaml(text, "schemas/x.yaml")
    except YamlProblem as problem:
        assert problem.loc.file == "schemas/x.yaml"
        assert problem.loc.line >= 1 and problem.loc.column >= 1
        assert problem.message


@_compiles(100)
@given(name=st.sampled_from(GOOD_FILES), text=st.text())
def test_any_text_in_place_of_a_pack_file_compiles_or_gives_located_findings(name, text):
    _outcome({name: text})


@_compiles(50)
@given(name=st.sampled_from(YAML_FILES), data=st.binary(max_size=200))
def test_any_bytes_in_place_of_a_yaml_file_compile_or_give_located_findings(name, data):
    _outcome({name: data})


@_compiles(150)
@given(file=mutated_pack_file())
@example(
    file=("schemas/lead.yaml", (GOOD / "schemas/lead.yaml").read_text().replace("entity: lead", "entity: &a lead"))
)
@example(file=("pack.yaml", (GOOD / "pack.yaml").read_text() + "extra: !!python/object:os.system {}\n"))
def test_a_mutated_pack_file_compiles_or_gives_located_findings(file):
    name, text = file
    _outcome({name: text})


@_compiles(60)
@given(schema=mutated((GOOD / "schemas/lead.yaml").read_text()), rules=mutated(LEADS_RULES))
def test_mutations_in_two_files_at_once_compile_or_give_located_findings(schema, rules):
    _outcome({"schemas/lead.yaml": schema, "rules/leads.rules": rules})


# --- the rule language ---------------------------------------------------------


@PARSE
@given(text=st.one_of(st.text(), mutated(LEADS_RULES)))
def test_parse_rules_returns_rules_or_a_located_syntax_problem(text):
    try:
        rules = parse_rules(text, "rules/x.rules")
    except SyntaxProblem as problem:
        _assert_syntax_problem_located(problem, "rules/x.rules")
    else:
        assert isinstance(rules, list)


# Deeply nested expressions: each level nests the generated Python code once more.
DEEP = [
    "not " * 300 + "true",
    "-" * 300 + "lead.score > 1",
    "lead.score" + " + 1" * 300 + " > 3",
    "abs(" * 300 + "lead.score" + ")" * 300 + " > 3",
    "(" * 300 + "lead.score > 3" + ")" * 300,
    "not " * 5000 + "true",
    "lead.score" + " + 1" * 5000 + " > 3",
    " and ".join(["lead.score > 3"] * 3000),
]


EXPRESSIONS = [
    'lead.source == "web" and lead.country in ["DE", "AT", "CH"]',
    "lead.score >= 50",
    'days_since(lead.birthday) > 3 or not (lead.email is empty) and lead.interests contains "crm"',
    "round(lead.budget * 1.5 / 100, 2) + 3 days - -4",
]


@PARSE
@given(
    text=st.one_of(st.text(), st.sampled_from(EXPRESSIONS).flatmap(mutated)),
    line=st.integers(1, 500),
    column=st.integers(1, 80),
    quoted=st.booleans(),
)
@example(text=DEEP[5], line=1, column=1, quoted=False)
@example(text=DEEP[6], line=1, column=1, quoted=False)
def test_parse_expression_returns_nodes_or_a_syntax_problem_inside_the_text(text, line, column, quoted):
    base = Location("schemas/lead.yaml", line, column)
    try:
        parse_expression(text, base, quoted)
    except SyntaxProblem as problem:
        _assert_syntax_problem_located(problem, "schemas/lead.yaml")
        # The problem lies within the expression's lines in the YAML file.
        assert line <= problem.loc.line <= line + len(("(" + text + ")").splitlines()) - 1


@_compiles(150)
@given(rules=st.one_of(st.text(), mutated(LEADS_RULES)))
@example(rules=_rules_with_condition(DEEP[0]))
@example(rules=_rules_with_condition(DEEP[1]))
@example(rules=_rules_with_condition(DEEP[2]))
@example(rules=_rules_with_condition(DEEP[3]))
@example(rules=_rules_with_condition(DEEP[4]))
@example(rules=_rules_with_condition(DEEP[5]))
@example(rules=_rules_with_condition(DEEP[6]))
@example(rules=_rules_with_condition(DEEP[7]))
def test_any_rules_file_compiles_or_gives_located_findings(rules):
    _outcome({"rules/leads.rules": rules})


@_compiles(80)
@given(
    expression=st.sampled_from(EXPRESSIONS).flatmap(mutated),
    where=st.sampled_from(["guard", "computed"]),
)
def test_any_embedded_expression_compiles_or_gives_located_findings(expression, where):
    if where == "guard":
        name = "workflows/lead_lifecycle.yaml"
        text = (GOOD / name).read_text().replace('"lead.score >= 50"', json.dumps(expression))
    else:
        name = "schemas/lead.yaml"
        text = (GOOD / name).read_text() + f"  weighted: {{type: decimal, computed: {json.dumps(expression)}}}\n"
    _outcome({name: text})


# --- compiled conditions mean what they say -------------------------------------

COUNTRIES = ["DE", "AT", "CH", "NO", "US"]
SOURCES = ["web", "referral", "event"]
INTERESTS = ["crm", "erp"]
ORDERING = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
ARITHMETIC = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: None if b == 0 else a / b,
    "%": lambda a, b: None if b == 0 else a % b,
}

numbers = st.one_of(
    st.integers(-10, 110),
    st.decimals(min_value=-10, max_value=110, places=1, allow_nan=False, allow_infinity=False),
)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=4)


def _field(name: str):
    """A lead field written bare or with the subject: ``score`` or ``lead.score``."""
    return st.sampled_from([name, "lead." + name])


# A generated condition is a tree of tuples; leaves are comparisons.
leaves = st.one_of(
    st.tuples(st.just("order"), _field("score"), st.sampled_from(list(ORDERING)), numbers),
    st.tuples(
        st.just("arith"),
        _field("score"),
        st.sampled_from(list(ARITHMETIC)),
        st.integers(0, 9),
        st.sampled_from(list(ORDERING)),
        numbers,
    ),
    st.tuples(st.just("abs"), _field("score"), st.integers(0, 100), st.sampled_from(list(ORDERING)), numbers),
    st.tuples(st.just("coalesce"), _field("score"), st.integers(0, 100), st.sampled_from(list(ORDERING)), numbers),
    st.tuples(st.just("in"), _field("country"), st.booleans(), st.lists(st.sampled_from(COUNTRIES), max_size=4)),
    st.tuples(st.just("in"), _field("source"), st.booleans(), st.lists(st.sampled_from(SOURCES), max_size=3)),
    st.tuples(st.just("in"), _field("score"), st.booleans(), st.lists(st.integers(0, 100), max_size=3)),
    st.tuples(st.just("eq"), _field("country"), st.sampled_from(["==", "!="]), st.sampled_from(COUNTRIES)),
    st.tuples(st.just("eq"), _field("source"), st.sampled_from(["==", "!="]), st.sampled_from(SOURCES)),
    st.tuples(st.just("eq"), _field("opted_in"), st.sampled_from(["==", "!="]), st.booleans()),
    st.tuples(
        st.just("empty"),
        st.sampled_from(["score", "country", "first_name", "interests", "opted_in", "lead.source"]),
        st.booleans(),
    ),
    st.tuples(st.just("bool"), _field("opted_in")),
    st.tuples(st.just("contains"), _field("interests"), st.sampled_from(INTERESTS)),
    st.tuples(st.just("text"), _field("first_name"), st.sampled_from(["starts_with", "ends_with", "contains"]), texts),
    st.tuples(st.just("length"), _field("first_name"), st.sampled_from(list(ORDERING)), st.integers(0, 5)),
)

conditions = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.tuples(st.just("not"), children),
        st.tuples(st.sampled_from(["and", "or"]), st.lists(children, min_size=2, max_size=4)),
        st.tuples(st.just("paren"), children),
    ),
    max_leaves=12,
)


def _number(value) -> str:
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _text(value)
    return _number(value)


_PRECEDENCE = {"or": 1, "and": 2, "not": 3}


def render(tree, needed: int = 0) -> str:
    """The condition as rule-language text, with parentheses only where
    precedence needs them (plus the ones the tree asks for with "paren")."""
    kind = tree[0]
    if kind == "paren":
        return "(" + render(tree[1]) + ")"
    if kind in ("and", "or"):
        text = f" {kind} ".join(render(child, _PRECEDENCE[kind]) for child in tree[1])
        return text if _PRECEDENCE[kind] >= needed else "(" + text + ")"
    if kind == "not":
        return "not " + render(tree[1], _PRECEDENCE["not"])
    if kind == "order":
        return f"{tree[1]} {tree[2]} {_number(tree[3])}"
    if kind == "arith":
        return f"{tree[1]} {tree[2]} {tree[3]} {tree[4]} {_number(tree[5])}"
    if kind == "abs":
        return f"abs({tree[1]} - {tree[2]}) {tree[3]} {_number(tree[4])}"
    if kind == "coalesce":
        return f"coalesce({tree[1]}, {tree[2]}) {tree[3]} {_number(tree[4])}"
    if kind == "in":
        op = "not in" if tree[2] else "in"
        return f"{tree[1]} {op} [{', '.join(_literal(v) for v in tree[3])}]"
    if kind == "eq":
        return f"{tree[1]} {tree[2]} {_literal(tree[3])}"
    if kind == "empty":
        return f"{tree[1]} is {'not ' if tree[2] else ''}empty"
    if kind == "bool":
        return tree[1]
    if kind == "contains":
        return f"{tree[1]} contains {_text(tree[2])}"
    if kind == "text":
        return f"{tree[1]} {tree[2]} {_text(tree[3])}"
    assert kind == "length", kind
    return f"length({tree[1]}) {tree[2]} {tree[3]}"


def reference(tree):
    """The same condition as a plain Python function of a record, written from
    the language's rules: an empty field (None) makes an ordering comparison
    (not == or !=), a text test and 'contains' false, arithmetic on it empty,
    and an empty true/false field counts as false."""
    kind = tree[0]
    if kind == "paren":
        return reference(tree[1])
    if kind in ("and", "or"):
        parts = [reference(child) for child in tree[1]]
        if kind == "and":
            return lambda r: all(part(r) for part in parts)
        return lambda r: any(part(r) for part in parts)
    if kind == "not":
        inner = reference(tree[1])
        return lambda r: not inner(r)

    def get(path):
        name = path.removeprefix("lead.")
        return lambda r: getattr(r, name)

    def ordered(value_of, op, bound):
        def test(r):
            value = value_of(r)
            if op in ("==", "!="):
                return ORDERING[op](value, bound)
            return value is not None and ORDERING[op](value, bound)

        return test

    if kind == "order":
        return ordered(get(tree[1]), tree[2], tree[3])
    if kind == "arith":
        field, op, operand = get(tree[1]), tree[2], tree[3]
        return ordered(lambda r: None if field(r) is None else ARITHMETIC[op](field(r), operand), tree[4], tree[5])
    if kind == "abs":
        field, minus = get(tree[1]), tree[2]
        return ordered(lambda r: None if field(r) is None else abs(field(r) - minus), tree[3], tree[4])
    if kind == "coalesce":
        field, fallback = get(tree[1]), tree[2]
        return ordered(lambda r: fallback if field(r) is None else field(r), tree[3], tree[4])
    if kind == "in":
        field, negated, values = get(tree[1]), tree[2], tree[3]
        return lambda r: (field(r) in values) != negated
    if kind == "eq":
        field, op, value = get(tree[1]), tree[2], tree[3]
        return lambda r: (field(r) == value) if op == "==" else (field(r) != value)
    if kind == "empty":
        field, negated = get(tree[1]), tree[2]
        return lambda r: (field(r) is None or field(r) == "" or field(r) == []) != negated
    if kind == "bool":
        field = get(tree[1])
        return lambda r: field(r) is True
    if kind == "contains":
        field, item = get(tree[1]), tree[2]
        return lambda r: field(r) is not None and item in field(r)
    if kind == "text":
        field, op, text = get(tree[1]), tree[2], tree[3]
        tests = {"starts_with": str.startswith, "ends_with": str.endswith, "contains": lambda a, b: b in a}
        return lambda r: field(r) is not None and tests[op](field(r), text)
    assert kind == "length"
    field, op, bound = get(tree[1]), tree[2], tree[3]
    return ordered(lambda r: None if field(r) is None else len(field(r)), op, bound)


leads = st.builds(
    SimpleNamespace,
    score=st.none() | st.integers(-5, 120),
    country=st.none() | st.just("") | st.sampled_from(COUNTRIES + ["FR"]),
    source=st.none() | st.sampled_from(SOURCES),
    opted_in=st.none() | st.booleans(),
    first_name=st.none() | texts,
    interests=st.none() | st.lists(st.sampled_from(INTERESTS), unique=True),
)

CTX = EvalContext(FixedClock(dt.datetime(2026, 11, 23, 10, 0)), "Europe/Berlin")


@functools.cache
def _good_pack():
    return load_pack(GOOD)


@_compiles(200)
@given(tree=conditions, records=st.lists(leads, min_size=1, max_size=15))
@example(tree=("and", [("bool", "opted_in"), ("order", "score", ">=", 1)]), records=[SimpleNamespace(
    score=5, country=None, source=None, opted_in=None, first_name=None, interests=None)])  # fmt: skip
@example(tree=("bool", "lead.opted_in"), records=[SimpleNamespace(
    score=None, country=None, source=None, opted_in=None, first_name=None, interests=None)])  # fmt: skip
def test_a_generated_condition_compiles_and_agrees_with_python(tree, records):
    source = render(tree)
    # The good pack is loaded once; each example's rules file is parsed and
    # the whole pack compiled (analysis, type checks, code generation).
    good = _good_pack()
    text = _rules_with_condition(source)
    pack = dataclasses.replace(
        good,
        rules=parse_rules(text, "rules/leads.rules") + [r for r in good.rules if r.loc.file != "rules/leads.rules"],
        sources={**good.sources, "rules/leads.rules": text},
    )
    try:
        compiled = compile_pack(pack)
    except DefinitionError as exc:
        raise AssertionError(f"{source}\n{exc}") from None
    condition = compiled.rules.rules["Generated"].condition
    expected = reference(tree)
    for record in records:
        value = condition(record, CTX)
        assert type(value) is bool, (source, condition.python, record, value)
        assert value == expected(record), (source, condition.python, record)


# --- alias bombs ----------------------------------------------------------------


def _billion_laughs(levels: int = 9, width: int = 9) -> str:
    lines = ['lol0: &l0 ["lol"]']
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"lol{level}: &l{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_in_a_schema_is_refused_quickly_at_its_first_anchor():
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pack"
        shutil.copytree(GOOD, root)
        (root / "schemas" / "bomb.yaml").write_text(_billion_laughs())
        started = time.perf_counter()
        pack = load_pack(root)
        elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert [str(f) for f in pack.findings if f.location.file == "schemas/bomb.yaml"] == [
        "schemas/bomb.yaml:1:7: error: YAML anchors (&l0) are not supported in definitions"
    ]


def test_an_alias_bomb_inside_its_own_anchor_is_refused_quickly_at_the_first_alias():
    bomb = "entity: &a [" + ", ".join(["*a"] * 9) + "]\n"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pack"
        shutil.copytree(GOOD, root)
        (root / "schemas" / "bomb.yaml").write_text(bomb)
        started = time.perf_counter()
        pack = load_pack(root)
        elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert [str(f) for f in pack.findings if f.location.file == "schemas/bomb.yaml"] == [
        "schemas/bomb.yaml:1:13: error: YAML aliases (*name) are not supported in definitions"
    ]
