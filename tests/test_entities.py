"""Entity definitions: the meta-schema findings (shape of the file) and the
semantic findings (options that fit the type, references that exist,
computed fields that make sense), each pinned to its exact file:line:col,
plus the defaults an entity gets when a key is left out."""

from __future__ import annotations

import pytest

from crm_platform.definitions import load_pack

from .conftest import GOOD, compile_dir, errors_of, findings_of

# One mistake per case: `diff -r tests/fixtures/good tests/fixtures/broken/<case>`.
CASES = {
    # --- shape of the file (meta-schema) ---
    "field-unknown-key": ["schemas/lead.yaml:12:62: error: unknown key 'lable' in field 'first_name'"],
    "entity-missing-entity-key": ["schemas/account.yaml:1:1: error: missing key 'entity'"],
    "entity-fields-not-a-mapping": [
        "schemas/activity.yaml:5:3: error: expected a mapping (key: value) for 'fields', got a list"
    ],
    "field-invalid-name": ["schemas/lead.yaml:12:3: error: 'First Name' is not a valid name"],
    "field-unknown-type": ["schemas/lead.yaml:13:21: error: unknown field type 'strng' in field 'last_name'"],
    "field-bad-currency": ["schemas/lead.yaml:21:35: error: 'euro' is not a currency code in field 'budget'"],
    # --- options and values ---
    "field-option-not-for-type": [
        "schemas/lead.yaml:18:26: error: option 'max_length' does not apply to an integer field"
    ],
    "field-choice-without-options": ["schemas/deal.yaml:12:3: error: a choice field needs 'options'"],
    "field-link-without-entity": ["schemas/deal.yaml:6:3: error: a link field needs 'entity'"],
    "field-default-not-an-option": [
        "schemas/lead.yaml:17:68: error: default 'fax' is not one of the options (web, referral, event)"
    ],
    "field-default-above-max": ["schemas/lead.yaml:18:53: error: default 150 is above max 100"],
    "field-invalid-pattern": ["schemas/lead.yaml:26:33: error: invalid pattern: bad character range }-["],
    "field-min-above-max": ["schemas/deal.yaml:8:37: error: min (100) is greater than max (0)"],
    "field-reserved-name": ["schemas/lead.yaml:26:3: error: field name 'id' is reserved"],
    "field-python-keyword": ["schemas/lead.yaml:26:3: error: field name 'class' is a reserved word"],
    "field-money-currency-clash": [
        "schemas/lead.yaml:22:3: error: field budget_currency clashes with the currency of money field 'budget'"
    ],
    # --- links ---
    "field-link-unknown-entity": ["schemas/deal.yaml:6:33: error: unknown entity 'acount' in link deal.account"],
    "field-reverse-clashes-with-field": [
        "schemas/deal.yaml:6:51: error: reverse list 'name' clashes with field account.name"
    ],
    "field-reverse-used-twice": [
        "schemas/deal.yaml:6:51: error: two links into account would both create the reverse list 'leads'",
        "schemas/lead.yaml:30:51: error: two links into account would both create the reverse list 'leads'",
    ],
    # --- computed fields ---
    "field-computed-syntax": [
        "schemas/deal.yaml:9:54: error: unexpected '*'; expected a name, a number, a quoted \"text\", "
        "'(', '-', '[', 'false', 'now', 'today', 'true'"
    ],
    "field-computed-unknown-field": ["schemas/deal.yaml:9:54: error: unknown field 'probabilty' on deal"],
    "field-computed-linked-field": [
        "schemas/lead.yaml:26:35: error: a computed field may only use fields of its own record"
    ],
    "field-computed-circle": [
        "schemas/deal.yaml:9:44: error: computed fields of deal depend on each other in a circle"
    ],
    # --- entity keys that name fields ---
    "entity-unknown-list-field": ["schemas/lead.yaml:5:31: error: unknown field 'contry' on lead"],
    "entity-unknown-search-field": ["schemas/lead.yaml:4:33: error: unknown field 'emial' on lead"],
    "entity-unknown-section-field": ["schemas/lead.yaml:10:31: error: unknown field 'scor' on lead"],
    "entity-unknown-title-placeholder": ["schemas/lead.yaml:3:22: error: unknown field 'lastname' in {...} on lead"],
    "entity-field-in-two-sections": [
        "schemas/lead.yaml:10:31: error: field 'email' is already in an earlier section (line 8)"
    ],
    "entity-form-leaves-out-required": [
        "schemas/lead.yaml:32:3: error: form 'web_to_lead' leaves out required field 'last_name'"
    ],
    "entity-owner-not-a-user-field": [
        "schemas/account.yaml:4:8: error: the owner field must be a user field; 'name' is a string"
    ],
    "entity-defined-twice": ["schemas/account_copy.yaml:1:9: error: entity 'account' is defined twice"],
    "entity-calendar-not-a-date": [
        "schemas/activity.yaml:4:22: error: calendar fields must be date or datetime fields; 'subject' is a string"
    ],
    "entity-done-not-boolean": [
        "schemas/activity.yaml:4:7: error: the done field must be a boolean field; 'kind' is a choice"
    ],
    # --- pack.yaml ---
    "pack-unknown-entity-in-role": ["pack.yaml:18:7: error: unknown entity 'acount' in role 'sales'"],
    "pack-unknown-time-zone": ["pack.yaml:4:11: error: unknown time zone 'Europe/Berlim'"],
}


def test_good_pack_has_no_findings():
    assert findings_of(GOOD) == []


@pytest.mark.parametrize("case", CASES)
def test_broken_definition_gives_exactly_its_finding(broken_pack, case):
    assert findings_of(broken_pack(case)) == CASES[case]


HINTS = {
    "field-unknown-key": "did you mean 'label'?",
    "field-unknown-type": "did you mean 'string'?",
    "field-link-unknown-entity": "did you mean 'account'?",
    "field-computed-unknown-field": "did you mean 'probability'?",
    "entity-unknown-list-field": "did you mean 'country'?",
    "entity-unknown-title-placeholder": "did you mean 'last_name'?",
    "pack-unknown-entity-in-role": "did you mean 'account'?",
    "field-bad-currency": "use a three-letter ISO 4217 code such as EUR or USD",
    "field-option-not-for-type": "'max_length' fits: email, phone, string, text, url",
    "field-reverse-clashes-with-field": "set reverse: to another name for deal.account",
    "entity-defined-twice": "it is also defined in schemas/account.yaml:1:9",
    "field-computed-circle": "break the circle: weighted_amount, ratio",
}


@pytest.mark.parametrize("case", HINTS)
def test_finding_carries_a_hint_to_fix_it(broken_pack, case):
    [finding] = errors_of(broken_pack(case))
    assert finding.hint == HINTS[case]


def test_computed_syntax_error_points_inside_the_yaml_string(broken_pack):
    root = broken_pack("field-computed-syntax")
    [finding] = errors_of(root)
    line = (root / "schemas/deal.yaml").read_text().splitlines()[finding.location.line - 1]
    assert line[finding.location.column - 1 :] == '* probability / 100"}'
    assert finding.render().splitlines()[1:3] == ["    " + line, "    " + " " * 53 + "^"]


def test_unknown_field_type_lists_the_types_when_nothing_is_close(pack_dir):
    path = pack_dir / "schemas" / "lead.yaml"
    path.write_text(path.read_text().replace("phone: {type: phone}", "phone: {type: zzz}"))
    [finding] = errors_of(pack_dir)
    assert finding.hint.startswith("field types: string, text, email, phone, url, integer")


def test_computed_field_cannot_also_be_required(pack_dir):
    path = pack_dir / "schemas" / "deal.yaml"
    path.write_text(path.read_text().replace('computed: "amount', 'required: true, computed: "amount'))
    assert findings_of(pack_dir) == ["schemas/deal.yaml:9:34: error: a computed field cannot be required"]


def test_option_values_may_not_repeat(pack_dir):
    path = pack_dir / "schemas" / "account.yaml"
    path.write_text(path.read_text().replace("[tech, retail, finance]", "[tech, retail, tech]"))
    assert findings_of(pack_dir) == ["schemas/account.yaml:7:52: error: duplicate option 'tech'"]


# --- defaults of entity keys -------------------------------------------------


def test_label_defaults_to_the_name_and_plural_to_its_english_plural(pack_dir):
    path = pack_dir / "schemas" / "activity.yaml"
    path.write_text(path.read_text().replace("label: Activity\nplural: Activities\n", ""))
    entity = load_pack(pack_dir).entities["activity"]
    assert (entity.label, entity.plural) == ("Activity", "Activities")


def test_label_of_a_two_word_name_is_humanized(pack_dir):
    (pack_dir / "schemas" / "key_account.yaml").write_text("entity: key_account\nfields:\n  name: {type: string}\n")
    entity = compile_dir(pack_dir).entities["key_account"].definition
    assert (entity.label, entity.plural) == ("Key account", "Key accounts")


def test_declared_label_and_plural_are_kept():
    entity = load_pack(GOOD).entities["activity"]
    assert (entity.label, entity.plural) == ("Activity", "Activities")


def test_field_label_defaults_to_the_humanized_name_and_can_be_set():
    fields = load_pack(GOOD).entities["lead"].fields
    assert fields["last_name"].label == "Last name"
    assert fields["first_name"].label == "First name"


def test_option_labels_default_to_the_value_without_lowering_codes():
    fields = load_pack(GOOD).entities["lead"].fields
    assert fields["country"].options == {"DE": "DE", "AT": "AT", "CH": "CH", "NO": "NO", "US": "US"}
    assert fields["source"].options == {"web": "Web", "referral": "Referral", "event": "Event"}


def test_option_labels_can_be_given_as_a_mapping():
    kind = load_pack(GOOD).entities["account"].fields["kind"]
    assert kind.options == {"customer": "Customer", "partner": "Partner", "competitor": "Competitor"}


def test_owner_defaults_to_a_user_field_named_owner():
    entity = load_pack(GOOD).entities["lead"]
    assert entity.owner_field.name == "owner"
    assert entity.team_field.name == "team"


def test_team_field_is_absent_when_no_team_field_exists():
    assert load_pack(GOOD).entities["account"].team_field is None


def test_workflow_adds_its_state_field_to_the_entity():
    status = compile_dir(GOOD).entities["lead"].definition.fields["status"]
    assert status.type == "state"
    assert list(status.options) == ["new", "contacted", "qualified", "converted", "disqualified"]
    assert (status.default, status.read_only) == ("new", True)


def test_title_fills_placeholders_from_the_record():
    compiled = compile_dir(GOOD)
    lead = compiled.entities["lead"].model(first_name="Ada", last_name="Lovelace")
    assert compiled.entities["lead"].title_of(lead) == "Ada Lovelace"


def test_title_of_an_empty_placeholder_is_left_out():
    compiled = compile_dir(GOOD)
    lead = compiled.entities["lead"].model(first_name="Ada")
    assert compiled.entities["lead"].title_of(lead) == "Ada"


def test_title_defaults_to_label_and_id():
    compiled = compile_dir(GOOD)
    activity = compiled.entities["activity"].model(id=7, subject="Call")
    assert compiled.entities["activity"].title_of(activity) == "Activity #7"
