"""Record payloads checked against the entity's JSON Schema: one message per
field a person can act on; updates (partial=True) need no required fields
but may not empty one."""

from __future__ import annotations

import pytest

from crm_platform.errors import ValidationError

from .conftest import GOOD, compile_dir

VALID_LEAD = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.com",
    "phone": "+49 30 1234567",
    "country": "NO",
    "source": "referral",
    "score": 100,
    "interests": ["crm", "erp"],
    "labels": ["vip"],
    "budget": 1000.05,
    "budget_currency": "CHF",
    "opted_in": True,
    "birthday": "1990-05-17",
    "last_seen": "2026-11-20T08:30:00",
    "notes": "Met at the fair",
    "code": "AB-12",
    "owner": 3,
    "team": "support",
    "account": 1,
    "status": "new",
}


@pytest.fixture(scope="module")
def compiled():
    return compile_dir(GOOD)


@pytest.fixture
def lead(compiled):
    return compiled.entities["lead"].validator


def test_full_valid_payload_has_no_errors(lead):
    assert lead.errors(VALID_LEAD) == {}


def test_payload_with_only_the_required_fields_is_valid(lead):
    assert lead.errors({"first_name": "Ada", "last_name": "Lovelace"}) == {}


def test_optional_fields_may_be_empty(lead):
    assert lead.errors({"first_name": "Ada", "last_name": "Lovelace", "email": None, "country": None}) == {}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("first_name", 5, "must be a text"),
        ("score", "ten", "must be a whole number"),
        ("score", 1.5, "must be a whole number"),
        ("budget", "1000", "must be a number"),
        ("opted_in", "yes", "must be true or false"),
        ("interests", "crm", "must be a list"),
        ("email", "ada.example.com", "is not a valid email address"),
        ("phone", "call me", "has the wrong format"),
        ("birthday", "17.05.1990", "is not a date (YYYY-MM-DD)"),
        ("birthday", "2026-02-30", "is not a date (YYYY-MM-DD)"),
        ("last_seen", "yesterday", "is not a date and time (YYYY-MM-DDTHH:MM)"),
        ("country", "FR", "must be one of: DE, AT, CH, NO, US"),
        ("interests", ["crm", "hr"], "must be one of: crm, erp"),
        ("interests", ["crm", "crm"], "lists a value twice"),
        ("team", "marketing", "must be one of: sales-dach, sales-intl, support"),
        ("status", "won", "must be one of: new, contacted, qualified, converted, disqualified"),
        ("score", 101, "must be at most 100"),
        ("score", -1, "must be at least 0"),
        ("budget", -0.01, "must be at least 0"),
        ("first_name", "A" * 81, "is longer than 80 characters"),
        ("labels", [""], "must not be empty"),
        ("code", "ab-12", "has the wrong format"),
        ("budget_currency", "eur", "has the wrong format"),
        ("account", 0, "must be at least 1"),
    ],
)
def test_wrong_value_gets_a_message_on_its_field(lead, field, value, message):
    assert lead.errors({**VALID_LEAD, field: value}) == {field: [message]}


@pytest.mark.parametrize("url", ["example.com", "ftp://example.com", "javascript:alert(1)"])
def test_url_must_be_a_web_address(compiled, url):
    account = compiled.entities["account"].validator
    assert account.errors({"name": "Acme", "website": url}) == {
        "website": ["is not a web address (http:// or https://)"]
    }


def test_http_and_https_urls_are_web_addresses(compiled):
    account = compiled.entities["account"].validator
    assert account.errors({"name": "Acme", "website": "https://example.com/about"}) == {}
    assert account.errors({"name": "Acme", "website": "http://example.com"}) == {}


def test_unknown_field_is_refused(lead):
    assert lead.errors({**VALID_LEAD, "fax": "123"}) == {"fax": ["is not a field of this record (or cannot be set)"]}


def test_computed_field_cannot_be_sent(compiled):
    deal = compiled.entities["deal"].validator
    assert deal.errors({"name": "D", "weighted_amount": 5}) == {
        "weighted_amount": ["is not a field of this record (or cannot be set)"]
    }


def test_system_fields_cannot_be_sent(lead):
    errors = lead.errors({**VALID_LEAD, "id": 1, "created_at": "2026-01-01T00:00:00"})
    assert errors == {
        "id": ["is not a field of this record (or cannot be set)"],
        "created_at": ["is not a field of this record (or cannot be set)"],
    }


def test_missing_required_fields_are_each_named(lead):
    assert lead.errors({"email": "ada@example.com"}) == {"first_name": ["is required"], "last_name": ["is required"]}


def test_required_field_with_a_default_may_be_left_out(compiled):
    activity = compiled.entities["activity"].validator
    assert activity.errors({"subject": "Call"}) == {"kind": ["is required"]}
    assert "status" not in compiled.entities["lead"].schema["required"]


def test_several_wrong_fields_are_all_reported(lead):
    errors = lead.errors({"first_name": "Ada", "last_name": "L", "score": 500, "country": "FR", "fax": 1})
    assert sorted(errors) == ["country", "fax", "score"]


def test_payload_that_is_not_an_object_is_refused_as_a_whole(lead):
    assert lead.errors(["Ada"]) == {"": ["expected an object of field values"]}


def test_update_does_not_require_the_required_fields(lead):
    assert lead.errors({"score": 50}, partial=True) == {}


def test_update_still_checks_the_values_it_sends(lead):
    assert lead.errors({"score": 500}, partial=True) == {"score": ["must be at most 100"]}


def test_update_cannot_empty_a_required_field(lead):
    assert lead.errors({"last_name": None}, partial=True) == {"last_name": ["is required"]}


def test_a_required_field_sent_empty_is_reported_as_required(lead):
    # What a form sends for an input left blank.
    assert lead.errors({**VALID_LEAD, "last_name": None}) == {"last_name": ["is required"]}


def test_update_can_empty_an_optional_field(lead):
    assert lead.errors({"email": None}, partial=True) == {}


def test_validate_passes_a_valid_payload(lead):
    assert lead.validate(VALID_LEAD) is None


def test_validate_raises_validation_error_carrying_the_messages(lead):
    with pytest.raises(ValidationError) as info:
        lead.validate({"first_name": "Ada", "score": 500})
    assert info.value.errors == {"last_name": ["is required"], "score": ["must be at most 100"]}
    assert str(info.value) == "last_name: is required; score: must be at most 100"


def test_validate_with_partial_does_not_require_fields(lead):
    lead.validate({"score": 5}, partial=True)
    with pytest.raises(ValidationError) as info:
        lead.validate({"score": 5})
    assert set(info.value.errors) == {"first_name", "last_name"}
