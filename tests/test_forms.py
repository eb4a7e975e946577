"""What the generated UI shows for an entity: form sections (with "Other"
for unlisted fields), public forms, related lists from the reverse side of
links, and list views with their columns and search fields."""

from __future__ import annotations

import pytest

from crm_platform.compiler.forms import RelatedList

from .conftest import GOOD, compile_dir


@pytest.fixture(scope="module")
def compiled():
    return compile_dir(GOOD)


def _sections(form) -> list[tuple[str, list[str]]]:
    return [(section.label, [f.name for f in section.fields]) for section in form.sections]


def test_declared_sections_come_first_and_the_rest_goes_into_other(compiled):
    assert _sections(compiled.entities["lead"].form) == [
        ("Person", ["first_name", "last_name", "email", "phone"]),
        ("Qualification", ["source", "country", "score", "status"]),
        (
            "Other",
            [
                "interests",
                "labels",
                "budget",
                "opted_in",
                "birthday",
                "last_seen",
                "notes",
                "code",
                "owner",
                "team",
                "lost_reason",
                "account",
            ],
        ),
    ]


def test_entity_without_sections_has_one_details_section_in_field_order(compiled):
    assert _sections(compiled.entities["account"].form) == [
        ("Details", ["name", "kind", "industry", "website", "owner"])
    ]


def test_no_other_section_when_sections_list_every_field(pack_dir):
    path = pack_dir / "schemas" / "account.yaml"
    sections = "sections:\n  - {label: Main, fields: [name, kind, industry]}\n  - {fields: [website, owner]}\n"
    path.write_text(path.read_text().replace("fields:\n", sections + "fields:\n"))
    form = compile_dir(pack_dir).entities["account"].form
    assert _sections(form) == [("Main", ["name", "kind", "industry"]), ("Section 2", ["website", "owner"])]


def test_form_is_labelled_with_the_entity_label(compiled):
    form = compiled.entities["activity"].form
    assert (form.entity, form.label, form.public, form.name) == ("activity", "Activity", False, "default")


def test_public_form_lists_its_fields_in_order(compiled):
    form = compiled.entities["lead"].public_forms["web_to_lead"]
    assert [f.name for f in form.fields] == ["first_name", "last_name", "email", "country"]
    assert (form.name, form.label, form.public, form.thank_you) == (
        "web_to_lead",
        "Contact sales",
        True,
        "Thanks, we will be in touch.",
    )


def test_public_form_fields_keep_their_field_settings(compiled):
    form = compiled.entities["lead"].public_forms["web_to_lead"]
    by_name = {f.name: f for f in form.fields}
    assert (by_name["first_name"].required, by_name["first_name"].max_length) == (True, 80)
    assert by_name["country"].choices[3] == ("NO", "NO")


def test_form_defaults_label_from_its_name_and_thank_you_text(pack_dir):
    path = pack_dir / "schemas" / "lead.yaml"
    text = (
        path.read_text()
        .replace("    label: Contact sales\n", "")
        .replace('    thank_you: "Thanks, we will be in touch."\n', "")
    )
    path.write_text(text)
    form = compile_dir(pack_dir).entities["lead"].public_forms["web_to_lead"]
    assert (form.label, form.thank_you) == ("Web to lead", "Thank you.")


def test_entities_without_forms_have_no_public_forms(compiled):
    assert compiled.entities["account"].public_forms == {}


def test_related_lists_show_every_link_into_the_entity(compiled):
    assert compiled.entities["account"].form.related == (
        RelatedList(name="deals", label="Deals", entity="deal", field="account"),
        RelatedList(name="leads", label="Leads", entity="lead", field="account"),
    )


def test_related_list_without_reverse_is_named_and_labelled_by_the_linking_entity(compiled):
    assert compiled.entities["deal"].form.related == (
        RelatedList(name="activities", label="Activities", entity="activity", field="deal"),
    )


def test_entity_nothing_links_to_has_no_related_lists(compiled):
    assert compiled.entities["activity"].form.related == ()


def test_list_columns_and_search_are_the_declared_ones(compiled):
    listing = compiled.entities["lead"].list
    assert [c.name for c in listing.columns] == ["first_name", "last_name", "country", "status", "owner"]
    assert listing.search == ("first_name", "last_name", "email")
    assert (listing.label, listing.default_sort) == ("Leads", "-created_at")


def test_list_columns_default_to_the_first_six_short_fields(compiled):
    assert [c.name for c in compiled.entities["deal"].list.columns] == [
        "name",
        "account",
        "amount",
        "probability",
        "weighted_amount",
        "ratio",
    ]


def test_list_columns_default_leaves_out_long_and_list_fields(pack_dir):
    path = pack_dir / "schemas" / "lead.yaml"
    path.write_text(path.read_text().replace("list: [first_name, last_name, country, status, owner]\n", ""))
    columns = [c.name for c in compile_dir(pack_dir).entities["lead"].list.columns]
    assert columns == ["first_name", "last_name", "email", "phone", "country", "source"]


def test_search_defaults_to_the_text_like_fields(compiled):
    assert compiled.entities["account"].list.search == ("name",)
    assert compiled.entities["activity"].list.search == ("subject",)


def test_list_filters_are_the_fields_one_can_filter_by(compiled):
    filters = [f.name for f in compiled.entities["account"].list.filters]
    assert filters == ["kind", "industry", "owner"]
