"""The positioned YAML loader: every key and value knows its 1-based line and
column, and YAML's traps (duplicate keys, anchors and aliases, yes/no/on as
booleans, alias bombs, runaway nesting) are refused with a location."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from crm_platform.definitions import load_pack
from crm_platform.definitions.source import Located, PosList, PosMap, YamlProblem, load_yaml, located
from crm_platform.errors import Location

from .conftest import GOOD, findings_of

DOC = """\
entity: lead
fields:
  score: {type: integer, min: 0}
  country:
    type: choice
    options: [DE, AT]
"""


def _problem(text: str) -> YamlProblem:
    with pytest.raises(YamlProblem) as info:
        load_yaml(text, "f.yaml")
    return info.value


def test_good_document_loads_into_positioned_mappings_and_lists():
    data = load_yaml(DOC, "f.yaml")
    assert isinstance(data, PosMap)
    assert isinstance(data["fields"]["country"]["options"], PosList)
    assert data == {
        "entity": "lead",
        "fields": {"score": {"type": "integer", "min": 0}, "country": {"type": "choice", "options": ["DE", "AT"]}},
    }


def test_keys_and_values_know_their_1_based_line_and_column():
    data = load_yaml(DOC, "f.yaml")
    fields = data["fields"]
    assert data.loc == Location("f.yaml", 1, 1)
    assert data.key_loc("entity") == Location("f.yaml", 1, 1)
    assert data.value_loc("entity") == Location("f.yaml", 1, 9)
    assert fields.key_loc("score") == Location("f.yaml", 3, 3)
    assert fields["score"].value_loc("min") == Location("f.yaml", 3, 31)
    assert fields["country"].key_loc("options") == Location("f.yaml", 6, 5)


def test_list_items_know_their_position():
    options = load_yaml(DOC, "f.yaml")["fields"]["country"]["options"]
    assert options.loc == Location("f.yaml", 6, 14)
    assert options.item_loc(0) == Location("f.yaml", 6, 15)
    assert options.item_loc(1) == Location("f.yaml", 6, 19)


def test_located_gives_a_value_with_its_position_and_quoting():
    data = load_yaml('a: "x + 1"\nb: y + 1\n', "f.yaml")
    assert located(data, "a") == Located("x + 1", Location("f.yaml", 1, 4), quoted=True)
    assert located(data, "b") == Located("y + 1", Location("f.yaml", 2, 4), quoted=False)


def test_duplicate_key_is_refused_at_the_second_key():
    problem = _problem("entity: lead\nfields:\n  score: {type: integer}\n  score: {type: text}\n")
    assert (str(problem.loc), problem.message) == ("f.yaml:4:3", "duplicate key 'score'")
    assert problem.hint == "'score' is already set at line 3; keep one"


def test_alias_is_refused_at_the_alias():
    problem = _problem("a: [1]\nb: *x\n")
    assert str(problem.loc) == "f.yaml:2:4"
    assert problem.message == "YAML aliases (*name) are not supported in definitions"


def test_anchor_is_refused_at_the_anchor_even_without_an_alias():
    problem = _problem("a: 1\nb: &shared {type: integer}\n")
    assert str(problem.loc) == "f.yaml:2:4"
    assert problem.message == "YAML anchors (&shared) are not supported in definitions"


@pytest.mark.parametrize("word", ["NO", "no", "yes", "Yes", "on", "off", "y", "n"])
def test_yaml_1_1_boolean_words_stay_strings(word):
    assert load_yaml(f"country: {word}\n", "f.yaml") == {"country": word}


@pytest.mark.parametrize(("word", "value"), [("true", True), ("false", False), ("True", True), ("FALSE", False)])
def test_true_and_false_are_booleans(word, value):
    assert load_yaml(f"flag: {word}\n", "f.yaml")["flag"] is value


def test_invalid_yaml_gives_the_location_of_the_problem():
    problem = _problem("fields:\n  score: {type: integer\n  name: {type: string}\n")
    assert str(problem.loc) == "f.yaml:3:7"
    assert problem.message.startswith("invalid YAML: ")


def test_impossible_date_is_refused_at_the_value():
    problem = _problem("a: 1\nbirthday: 2026-13-45\n")
    assert (str(problem.loc), problem.message) == ("f.yaml:2:11", "invalid date '2026-13-45': month must be in 1..12")


def test_real_date_loads_as_a_date():
    assert load_yaml("birthday: 2026-02-28\n", "f.yaml") == {"birthday": dt.date(2026, 2, 28)}


def test_nesting_of_50_levels_loads():
    assert load_yaml("[" * 50 + "]" * 50, "f.yaml") is not None


def test_nesting_deeper_than_50_levels_is_refused_where_it_goes_too_deep():
    problem = _problem("[" * 5000 + "]" * 5000)
    assert (str(problem.loc), problem.message) == ("f.yaml:1:51", "nesting deeper than 50 levels")


def _billion_laughs(levels: int = 9, width: int = 9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_in_well_under_a_second():
    started = time.perf_counter()
    with pytest.raises(YamlProblem):
        load_yaml(_billion_laughs(), "bomb.yaml")
    assert time.perf_counter() - started < 1.0


def test_empty_text_is_no_document():
    assert load_yaml("", "f.yaml") is None


def test_top_level_scalar_loads_as_a_scalar():
    assert load_yaml("just text\n", "f.yaml") == "just text"


# --- in a pack: problems become findings, never exceptions, and the entity of a
# file that failed to load causes no "unknown entity" elsewhere -------------


def test_zero_byte_schema_file_reports_each_missing_key_once(pack_dir):
    (pack_dir / "schemas" / "account.yaml").write_bytes(b"")
    assert findings_of(pack_dir) == [
        "schemas/account.yaml:1:1: error: missing key 'entity'",
        "schemas/account.yaml:1:1: error: missing key 'fields'",
    ]


def test_list_at_the_top_of_a_schema_file_is_a_finding(pack_dir):
    (pack_dir / "schemas" / "account.yaml").write_text("- entity: account\n")
    assert findings_of(pack_dir) == [
        "schemas/account.yaml:1:1: error: expected a mapping of keys to values at the top of the file"
    ]


def test_non_utf8_bytes_in_a_schema_file_are_a_finding_not_an_exception(pack_dir):
    path = pack_dir / "schemas" / "account.yaml"
    path.write_bytes(path.read_bytes().replace(b"label: Account", b"label: Acc\xf6unt"))
    assert findings_of(pack_dir) == ["schemas/account.yaml:2:11: error: file is not UTF-8 text (byte 26)"]


def test_alias_bomb_in_a_schema_file_is_one_finding(pack_dir):
    (pack_dir / "schemas" / "bomb.yaml").write_text(_billion_laughs())
    assert findings_of(pack_dir) == [
        "schemas/bomb.yaml:1:5: error: YAML anchors (&l0) are not supported in definitions"
    ]


def test_good_pack_loads_without_findings():
    assert load_pack(GOOD).findings == []


# Broken fixtures: the one finding of each, and nothing cascading from the file
# that failed to load (links, roles and rules that name its entity stay quiet).
YAML_CASES = {
    "yaml-duplicate-key": ["schemas/account.yaml:9:3: error: duplicate key 'website'"],
    "yaml-invalid-syntax": ["schemas/account.yaml:9:8: error: invalid YAML: expected ',' or '}', but got ':'"],
    "yaml-anchor": ["schemas/account.yaml:8:12: error: YAML anchors (&web) are not supported in definitions"],
    "yaml-no-is-not-a-boolean": ["schemas/lead.yaml:22:38: error: default 'no' is not true or false"],
}


@pytest.mark.parametrize("case", YAML_CASES)
def test_broken_yaml_gives_exactly_its_finding(broken_pack, case):
    assert findings_of(broken_pack(case)) == YAML_CASES[case]
