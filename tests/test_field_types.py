"""Every field type and every field option, compiled: the peewee column, the
JSON Schema fragment, the form widget, and records stored in and read back
from a real (in-memory) SQLite database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import peewee as pw
import pytest

from crm_platform.compiler.forms import WIDGETS
from crm_platform.compiler.models import JSONListField, ScaledDecimalField
from crm_platform.compiler.schemas import PHONE
from crm_platform.definitions.model import FIELD_TYPES

from .conftest import GOOD, compile_dir

NOW = dt.datetime(2026, 11, 23, 10, 0)
STAMPS = {"created_at": NOW, "updated_at": NOW}


@pytest.fixture(scope="module")
def compiled():
    return compile_dir(GOOD)


@pytest.fixture
def db(compiled):
    database = pw.SqliteDatabase(":memory:")
    compiled.bind(database)
    compiled.create_tables()
    yield database
    database.close()


def _models(compiled) -> dict[str, type[pw.Model]]:
    return {name: entity.model for name, entity in compiled.entities.items()}


def _spec(compiled, entity: str, field: str):
    return next(f for f in compiled.entities[entity].form.fields if f.name == field)


# One field of the good pack per type: (entity, field, column class, JSON Schema fragment).
TYPES = {
    "string": (
        "lead",
        "last_name",
        pw.CharField,
        {"title": "Last name", "type": "string", "minLength": 1, "maxLength": 255, "x-field-type": "string"},
    ),
    "text": ("lead", "notes", pw.TextField, {"title": "Notes", "type": ["string", "null"], "x-field-type": "text"}),
    "email": (
        "lead",
        "email",
        pw.CharField,
        {"title": "Email", "type": ["string", "null"], "maxLength": 254, "format": "email", "x-field-type": "email"},
    ),
    "phone": (
        "lead",
        "phone",
        pw.CharField,
        {"title": "Phone", "type": ["string", "null"], "maxLength": 40, "pattern": PHONE, "x-field-type": "phone"},
    ),
    "url": (
        "account",
        "website",
        pw.CharField,
        {"title": "Website", "type": ["string", "null"], "maxLength": 2048, "format": "uri", "x-field-type": "url"},
    ),
    "integer": (
        "lead",
        "score",
        pw.BigIntegerField,
        {
            "title": "Score",
            "description": "0 to 100",
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": 100,
            "x-field-type": "integer",
        },
    ),
    "decimal": (
        "deal",
        "ratio",
        ScaledDecimalField,
        {
            "title": "Ratio",
            "type": ["number", "null"],
            "exclusiveMinimum": -(10**15),
            "exclusiveMaximum": 10**15,
            "x-field-type": "decimal",
        },
    ),
    "money": (
        "lead",
        "budget",
        ScaledDecimalField,
        {
            "title": "Budget",
            "type": ["number", "null"],
            "minimum": 0,
            "exclusiveMaximum": 10**15,
            "x-field-type": "money",
        },
    ),
    "percent": (
        "deal",
        "probability",
        ScaledDecimalField,
        {"title": "Probability", "type": ["number", "null"], "minimum": 0, "maximum": 100, "x-field-type": "percent"},
    ),
    "boolean": (
        "lead",
        "opted_in",
        pw.BooleanField,
        {"title": "Opted in", "type": ["boolean", "null"], "x-field-type": "boolean"},
    ),
    "date": (
        "lead",
        "birthday",
        pw.DateField,
        {"title": "Birthday", "type": ["string", "null"], "format": "date", "x-field-type": "date"},
    ),
    "datetime": (
        "lead",
        "last_seen",
        pw.DateTimeField,
        {
            "title": "Last seen",
            "type": ["string", "null"],
            "format": "date-time",
            "readOnly": True,
            "x-field-type": "datetime",
        },
    ),
    "choice": (
        "lead",
        "country",
        pw.CharField,
        {"title": "Country", "enum": ["DE", "AT", "CH", "NO", "US", None], "x-field-type": "choice"},
    ),
    "multi_choice": (
        "lead",
        "interests",
        JSONListField,
        {
            "title": "Interests",
            "type": ["array", "null"],
            "items": {"enum": ["crm", "erp"]},
            "uniqueItems": True,
            "x-field-type": "multi_choice",
        },
    ),
    "tags": (
        "lead",
        "labels",
        JSONListField,
        {
            "title": "Labels",
            "type": ["array", "null"],
            "items": {"type": "string", "minLength": 1, "maxLength": 50},
            "uniqueItems": True,
            "x-field-type": "tags",
        },
    ),
    "link": (
        "lead",
        "account",
        pw.ForeignKeyField,
        {"title": "Account", "type": ["integer", "null"], "minimum": 1, "maximum": 2**63 - 1, "x-field-type": "link"},
    ),
    "user": (
        "lead",
        "owner",
        pw.IntegerField,
        {"title": "Owner", "type": ["integer", "null"], "minimum": 1, "maximum": 2**63 - 1, "x-field-type": "user"},
    ),
    "team": (
        "lead",
        "team",
        pw.CharField,
        {"title": "Team", "enum": ["sales-dach", "sales-intl", "support", None], "x-field-type": "team"},
    ),
    "state": (
        "lead",
        "status",
        pw.CharField,
        {
            "title": "Status",
            "enum": ["new", "contacted", "qualified", "converted", "disqualified"],
            "readOnly": True,
            "x-field-type": "state",
        },
    ),
}


def test_the_type_table_covers_every_field_type():
    assert sorted(TYPES) == sorted(FIELD_TYPES)


@pytest.mark.parametrize("kind", TYPES)
def test_field_type_compiles_to_its_column_class(compiled, kind):
    entity, field, column, _ = TYPES[kind]
    assert type(compiled.entities[entity].model._meta.fields[field]) is column


@pytest.mark.parametrize("kind", TYPES)
def test_field_type_has_its_json_schema_fragment(compiled, kind):
    entity, field, _, fragment = TYPES[kind]
    assert compiled.entities[entity].schema["properties"][field] == fragment


@pytest.mark.parametrize("kind", TYPES)
def test_field_type_is_edited_with_its_widget(compiled, kind):
    entity, field, _, _ = TYPES[kind]
    spec = _spec(compiled, entity, field)
    assert (spec.type, spec.widget) == (kind, WIDGETS[kind])


def test_money_adds_a_currency_column_defaulting_to_the_field_currency(compiled):
    fields = compiled.entities["lead"].model._meta.fields
    assert type(fields["budget_currency"]) is pw.CharField
    assert (fields["budget_currency"].max_length, fields["budget_currency"].default) == (3, "EUR")


def test_money_currency_column_is_part_of_the_payload_schema(compiled):
    assert compiled.entities["lead"].schema["properties"]["budget_currency"] == {
        "type": ["string", "null"],
        "pattern": "^[A-Z]{3}$",
        "title": "Budget currency",
    }


def test_money_without_currency_takes_the_pack_currency(pack_dir):
    pack = pack_dir / "pack.yaml"
    pack.write_text(pack.read_text().replace("currency: EUR", "currency: CHF"))
    compiled = compile_dir(pack_dir)
    assert compiled.entities["deal"].model._meta.fields["amount_currency"].default == "CHF"
    assert _spec(compiled, "deal", "amount").currency == "CHF"
    assert _spec(compiled, "lead", "budget").currency == "EUR"


def test_scale_of_money_percent_and_decimal_columns(compiled):
    deal = compiled.entities["deal"].model._meta.fields
    assert (deal["amount"].scale, deal["probability"].scale, deal["ratio"].scale) == (2, 2, 4)


def test_number_fields_get_a_step_matching_their_scale(compiled):
    steps = {name: _spec(compiled, "deal", name).step for name in ("amount", "probability", "ratio")}
    assert steps == {"amount": "0.01", "probability": "0.01", "ratio": "0.0001"}
    assert _spec(compiled, "lead", "score").step == "1"


def test_choice_like_fields_offer_their_choices(compiled):
    assert _spec(compiled, "account", "kind").choices == (
        ("customer", "Customer"),
        ("partner", "Partner"),
        ("competitor", "Competitor"),
    )
    assert _spec(compiled, "lead", "interests").choices == (("crm", "Crm"), ("erp", "Erp"))
    assert _spec(compiled, "lead", "status").choices[0] == ("new", "New")


def test_team_field_offers_the_teams_with_their_labels(compiled):
    assert _spec(compiled, "lead", "team").choices == (
        ("sales-dach", "Sales DACH"),
        ("sales-intl", "Sales international"),
        ("support", "Support"),
    )


def test_multi_choice_and_tags_are_multiple_and_others_are_not(compiled):
    multiple = {f.name for f in compiled.entities["lead"].form.fields if f.multiple}
    assert multiple == {"interests", "labels"}


def test_link_field_names_its_target_entity(compiled):
    assert _spec(compiled, "lead", "account").link_entity == "account"
    assert compiled.entities["lead"].model._meta.fields["account"].rel_model is compiled.entities["account"].model
    assert compiled.entities["lead"].model._meta.fields["account"].column_name == "account_id"


# --- stored and read back --------------------------------------------------


def test_money_round_trips_exactly_with_its_currency(compiled, db):
    lead = _models(compiled)["lead"]
    created = lead.create(first_name="A", last_name="B", budget=Decimal("1000.05"), **STAMPS)
    stored = lead.get_by_id(created.id)
    assert (stored.budget, stored.budget_currency) == (Decimal("1000.05"), "EUR")


def test_money_is_stored_as_integer_cents(compiled, db):
    lead = _models(compiled)["lead"]
    lead.create(first_name="A", last_name="B", budget=Decimal("1000.05"), **STAMPS)
    assert db.execute_sql("SELECT budget FROM lead").fetchall() == [(100005,)]


def test_money_rounds_half_to_even_at_the_cent(compiled, db):
    lead = _models(compiled)["lead"]
    first = lead.create(first_name="A", last_name="B", budget=Decimal("0.125"), **STAMPS)
    second = lead.create(first_name="A", last_name="B", budget=Decimal("0.135"), **STAMPS)
    assert (lead.get_by_id(first.id).budget, lead.get_by_id(second.id).budget) == (Decimal("0.12"), Decimal("0.14"))


def test_decimal_and_percent_keep_their_digits(compiled, db):
    deal = _models(compiled)["deal"]
    created = deal.create(name="D", ratio=Decimal("0.1234"), probability=Decimal("12.5"), **STAMPS)
    stored = deal.get_by_id(created.id)
    assert (stored.ratio, stored.probability) == (Decimal("0.1234"), Decimal("12.50"))


def test_lists_dates_and_scalars_round_trip(compiled, db):
    lead = _models(compiled)["lead"]
    values = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "phone": "+49 30 1234567",
        "notes": "line one\nline two",
        "country": "NO",
        "interests": ["crm", "erp"],
        "labels": ["vip", "berlin"],
        "birthday": dt.date(1990, 5, 17),
        "last_seen": dt.datetime(2026, 11, 20, 8, 30, 15),
        "opted_in": True,
        "score": 42,
        "owner": 7,
        "team": "sales-dach",
        "code": "AB-12",
    }
    created = lead.create(**values, **STAMPS)
    stored = lead.get_by_id(created.id)
    assert {name: getattr(stored, name) for name in values} == values


def test_link_reads_the_target_and_the_target_reads_the_reverse_list(compiled, db):
    models = _models(compiled)
    account = models["account"].create(name="Acme", **STAMPS)
    lead = models["lead"].create(first_name="A", last_name="B", account=account, **STAMPS)
    deal = models["deal"].create(name="D", account=account, **STAMPS)
    assert models["lead"].get_by_id(lead.id).account.name == "Acme"
    assert [r.id for r in account.leads] == [lead.id]
    assert [r.id for r in account.deals] == [deal.id]


def test_reverse_list_defaults_to_the_plural_of_the_linking_entity(compiled, db):
    models = _models(compiled)
    deal = models["deal"].create(name="D", **STAMPS)
    call = models["activity"].create(kind="call", subject="Call", deal=deal, **STAMPS)
    assert [r.id for r in deal.activities] == [call.id]


# --- options ---------------------------------------------------------------


def test_label_and_help_reach_the_schema_and_the_form(compiled):
    spec = _spec(compiled, "lead", "score")
    assert (spec.label, spec.help) == ("Score", "0 to 100")
    assert _spec(compiled, "lead", "first_name").label == "First name"


def test_required_fields_without_default_are_required_in_the_schema_and_form(compiled):
    assert compiled.entities["lead"].schema["required"] == ["first_name", "last_name"]
    assert [f.name for f in compiled.entities["lead"].form.fields if f.required] == [
        "first_name",
        "last_name",
        "status",
    ]


def test_unique_field_has_a_unique_index(compiled, db):
    unique = {tuple(i.columns) for i in db.get_indexes("account") if i.unique}
    assert unique == {("name",)}


def test_unique_field_refuses_a_duplicate(compiled, db):
    account = _models(compiled)["account"]
    account.create(name="Acme", **STAMPS)
    account.create(name="Other", **STAMPS)
    with pytest.raises(pw.IntegrityError):
        account.create(name="Acme", **STAMPS)


def test_defaults_are_applied_by_the_model(compiled, db):
    models = _models(compiled)
    lead = models["lead"].get_by_id(models["lead"].create(first_name="A", last_name="B", **STAMPS).id)
    account = models["account"].get_by_id(models["account"].create(name="Acme", **STAMPS).id)
    defaults = (lead.score, lead.source, lead.opted_in, lead.status, lead.budget_currency)
    assert defaults == (0, "web", False, "new", "EUR")
    assert account.kind == "customer"


def test_list_default_is_a_fresh_list_for_each_record(pack_dir):
    path = pack_dir / "schemas" / "lead.yaml"
    path.write_text(path.read_text().replace("options: [crm, erp]}", "options: [crm, erp], default: [crm]}"))
    lead = compile_dir(pack_dir).entities["lead"].model
    first, second = lead(), lead()
    first.interests.append("erp")
    assert (first.interests, second.interests) == (["crm", "erp"], ["crm"])


def test_min_max_and_max_length_reach_the_form(compiled):
    score, first_name = _spec(compiled, "lead", "score"), _spec(compiled, "lead", "first_name")
    assert (score.minimum, score.maximum, first_name.max_length) == (0, 100, 80)


def test_max_length_sizes_the_column_and_the_schema(compiled):
    assert compiled.entities["lead"].model._meta.fields["first_name"].max_length == 80
    assert compiled.entities["lead"].schema["properties"]["first_name"]["maxLength"] == 80


def test_pattern_reaches_the_schema_and_the_form(compiled):
    assert compiled.entities["lead"].schema["properties"]["code"]["pattern"] == "^[A-Z]{2}-[0-9]+$"
    assert _spec(compiled, "lead", "code").pattern == "^[A-Z]{2}-[0-9]+$"


def test_read_only_field_is_read_only_in_the_form(compiled):
    assert _spec(compiled, "lead", "last_seen").read_only is True
    assert _spec(compiled, "lead", "birthday").read_only is False


def test_computed_field_is_read_only_not_required_and_not_in_the_payload_schema(compiled):
    spec = _spec(compiled, "deal", "weighted_amount")
    assert (spec.read_only, spec.required) == (True, False)
    assert "weighted_amount" not in compiled.entities["deal"].schema["properties"]


def test_computed_field_computes_amount_times_probability_exactly(compiled, db):
    deal = _models(compiled)["deal"]
    created = deal.create(name="D", amount=Decimal("1000.05"), probability=Decimal("12.5"), **STAMPS)
    [(name, compute)] = compiled.entities["deal"].computed
    value = compute(deal.get_by_id(created.id), None)
    assert name == "weighted_amount"
    assert (type(value), value) == (Decimal, Decimal("125.00625"))


def test_computed_field_of_an_empty_input_is_empty(compiled):
    deal = compiled.entities["deal"].model(name="D", amount=Decimal("10"))
    [(_, compute)] = compiled.entities["deal"].computed
    assert compute(deal, None) is None


def test_indexed_field_gets_an_index(pack_dir):
    path = pack_dir / "schemas" / "lead.yaml"
    path.write_text(path.read_text().replace("phone: {type: phone}", "phone: {type: phone, indexed: true}"))
    compiled = compile_dir(pack_dir)
    database = pw.SqliteDatabase(":memory:")
    compiled.bind(database)
    compiled.create_tables()
    indexes = {tuple(i.columns): i.unique for i in database.get_indexes("lead")}
    database.close()
    assert indexes[("phone",)] is False


def test_field_without_indexed_has_no_index(compiled, db):
    indexed = {column for i in db.get_indexes("lead") for column in i.columns}
    assert "phone" not in indexed
    assert {"email", "owner", "status", "account_id"} <= indexed
