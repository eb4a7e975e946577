"""The compiled fast path of payload validation (``PayloadValidator.accepts``) never
accepts what jsonschema refuses, and accepts the ordinary valid payloads (so it is
used): checked on the payload validation tests' cases and on generated payloads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from crm_platform.compiler.schemas import FORMATS

from . import test_payload_validation as cases
from .conftest import GOOD, PROJECT, compile_dir


@pytest.fixture(scope="module")
def good():
    return compile_dir(GOOD)


@pytest.fixture(scope="module")
def default_pack():
    return compile_dir(PROJECT)


def jsonschema_valid(validator, payload, partial: bool) -> bool:
    schema = {**validator.schema, "required": []} if partial else validator.schema
    return not any(Draft202012Validator(schema, format_checker=FORMATS).iter_errors(payload))


def wrong_values() -> list[tuple[str, object]]:
    """(field, value) of the payload validation tests' wrong values, from their parameters."""
    test = cases.test_wrong_value_gets_a_message_on_its_field
    (mark,) = [m for m in test.pytestmark if m.name == "parametrize"]
    return [(field, value) for field, value, _ in mark.args[1]]


@pytest.mark.parametrize(("field", "value"), wrong_values())
def test_a_wrong_value_is_never_accepted(good, field, value):
    lead = good.entities["lead"].validator
    for payload, partial in (({**cases.VALID_LEAD, field: value}, False), ({field: value}, True)):
        assert not jsonschema_valid(lead, payload, partial)
        assert not lead.accepts(payload, partial)
        assert lead.errors(payload, partial)  # and the full validator names the field


@pytest.mark.parametrize(
    "payload",
    [
        {**cases.VALID_LEAD, "fax": "123"},
        {**cases.VALID_LEAD, "id": 1},
        {"email": "ada@example.com"},
        {**cases.VALID_LEAD, "last_name": None},
        {**cases.VALID_LEAD, "score": True},
        {**cases.VALID_LEAD, "budget": float("nan")},
        {**cases.VALID_LEAD, "budget": float("inf")},
        {**cases.VALID_LEAD, "interests": ["crm", 1]},
        ["not", "an", "object"],
        "text",
    ],
)
def test_unknown_system_missing_and_odd_values_are_left_to_jsonschema(good, payload):
    lead = good.entities["lead"].validator
    assert not lead.accepts(payload)
    assert lead.errors(payload)


def test_valid_payloads_take_the_fast_path(good):
    lead = good.entities["lead"].validator
    assert lead.accepts(cases.VALID_LEAD)
    assert lead.accepts({"first_name": "Ada", "last_name": "Lovelace", "email": None, "country": None})
    assert lead.accepts({"score": 5}, partial=True)
    assert not lead.accepts({"score": 5})  # required fields missing


def test_a_value_jsonschema_accepts_but_the_fast_path_is_unsure_of_is_still_valid(good):
    lead = good.entities["lead"].validator
    payload = {**cases.VALID_LEAD, "score": 50.0}  # an integer to JSON Schema, a float to Python
    assert not lead.accepts(payload)
    assert lead.errors(payload) == {}


def value_for(schema: dict):
    """Values around what a field's schema allows: fitting ones, near misses, other types."""
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    choices = [
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**64), max_value=2**64),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=5),
        st.sampled_from(["", " ", "ada@example.com", "a@b", "2026-02-30", "2026-11-23", "2026-11-23T08:30:00",
                         "https://example.com", "ftp://x", "+49 30 1234567", "AB-12", "EUR", "eur"]),
        st.lists(st.sampled_from(["crm", "erp", "hr", "", "vip", 1]), max_size=3),
    ]  # fmt: skip
    if "enum" in schema:
        choices.append(st.sampled_from(schema["enum"]))
    if "string" in kinds and "maxLength" in schema:
        choices.append(st.text(min_size=schema["maxLength"], max_size=schema["maxLength"] + 1))
    if "integer" in kinds or "number" in kinds:
        low, high = schema.get("minimum", -100), schema.get("maximum", 100)
        choices.append(st.integers(min_value=int(low) - 1, max_value=int(high) + 1))
    return st.one_of(*choices)


def payloads(validator):
    properties = validator.schema["properties"]
    names = sorted(properties) + ["fax"]
    return st.lists(st.sampled_from(names), unique=True, max_size=len(names)).flatmap(
        lambda chosen: st.fixed_dictionaries({name: value_for(properties.get(name, {})) for name in chosen})
    )


@pytest.mark.parametrize("entity", ["lead", "account", "deal", "ticket", "activity"])
def test_generated_payloads_are_never_accepted_against_jsonschema(default_pack, good, entity):
    compiled = good if entity == "lead" else default_pack
    validator = compiled.entities[entity].validator

    accepted = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(payload=payloads(validator), partial=st.booleans())
    def check(payload, partial):
        if validator.accepts(payload, partial):
            assert jsonschema_valid(validator, payload, partial), payload
            accepted.append(payload)

    check()
    assert accepted  # the generated payloads did take the fast path
