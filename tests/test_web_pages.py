"""Every generated page through the Flask test client: lists, forms, record
pages, stage moves, kanban, bulk actions, export, lookup, calendar, "my work"
and the public forms, for every entity of the default pack where a page is
generated per entity."""

from __future__ import annotations

import html
import re
from decimal import Decimal

import pytest
from markupsafe import escape
from werkzeug.datastructures import MultiDict

from crm_platform.seed import DEMO_PASSWORD, seed_demo
from crm_platform.web import formdata

from . import web_fixtures
from .runtime_fixtures import audit_rows, build_app, stored
from .web_fixtures import (
    SYSTEM,
    count,
    csv_rows,
    field_errors,
    flashes,
    form_controls,
    form_values,
    make_record,
    pack_entities,
    submit_form,
    unlabelled_controls,
    user_id,
)

web_app, web_crm, sign_in = web_fixtures.web_app, web_fixtures.web_crm, web_fixtures.sign_in  # the fixtures

ENTITIES = pack_entities()


@pytest.fixture
def admin(sign_in):
    return sign_in("admin")


def text(response) -> str:
    return response.get_data(as_text=True)


def record_links(page: str, entity: str) -> list[int]:
    """Ids of the records a list page links to, in page order (each row links once)."""
    return [int(i) for i in re.findall(rf'<a href="/r/{entity}/(\d+)">', page)]


def ids_in_list(client, entity: str, query: str = "") -> list[int]:
    response = client.get(f"/r/{entity}/?{query}")
    assert response.status_code == 200
    return record_links(text(response), entity)


def lead(crm, **data):
    """A lead no routing rule touches (source "event")."""
    return make_record(crm, "lead", **data)


# --- every entity ------------------------------------------------------------------------


def test_the_generated_pages_are_checked_for_every_entity_of_the_pack(web_crm):
    assert set(ENTITIES) == set(web_crm.compiled.entities)


@pytest.mark.parametrize("entity", ENTITIES)
def test_list_page_shows_the_column_labels_and_the_records(web_crm, admin, entity):
    record = make_record(web_crm, entity)
    response = admin.get(f"/r/{entity}/")
    assert response.status_code == 200
    page = text(response)
    headers = re.findall(r'<th scope="col"[^>]*>\s*<a href="[^"]*">([^<]*)</a></th>', page)
    assert headers == [escape(spec.label) for spec in web_crm.compiled.entities[entity].list.columns]
    assert record_links(page, entity) == [record.id]


@pytest.mark.parametrize("entity", ENTITIES)
def test_new_form_has_a_labelled_input_for_every_editable_field(web_crm, admin, entity):
    response = admin.get(f"/r/{entity}/new")
    assert response.status_code == 200
    page = text(response)
    assert unlabelled_controls(page) == []
    ce = web_crm.compiled.entities[entity]
    editable = {spec.name for spec in formdata.editable(ce.form.fields)}
    named = {control.get("name") for control in form_controls(page)}
    assert editable <= named
    not_editable = {spec.name for spec in ce.form.fields} - editable
    assert not_editable & named == set(), "computed, read-only and stage fields are not inputs"


@pytest.mark.parametrize("entity", ENTITIES)
def test_record_page_shows_the_title_every_section_and_the_timeline(web_crm, admin, entity):
    record = make_record(web_crm, entity)
    ce = web_crm.compiled.entities[entity]
    response = admin.get(f"/r/{entity}/{record.id}")
    assert response.status_code == 200
    page = text(response)
    assert f"<h1>{escape(ce.title_of(record))}</h1>" in page
    for section in ce.form.sections:
        assert f"<h2>{escape(section.label)}</h2>" in page
    assert '<li class="event event-create">' in page


@pytest.mark.parametrize("entity", ENTITIES)
def test_edit_form_is_labelled_and_carries_the_version(web_crm, admin, entity):
    record = make_record(web_crm, entity)
    response = admin.get(f"/r/{entity}/{record.id}/edit")
    assert response.status_code == 200
    page = text(response)
    assert unlabelled_controls(page) == []
    version = stored(web_crm, entity, record.id).version  # rules may have changed it already
    assert f'<input type="hidden" name="_version" value="{version}">' in page


@pytest.mark.parametrize("entity", ENTITIES)
def test_saving_the_edit_form_as_shown_changes_nothing(web_crm, admin, entity):
    record = make_record(web_crm, entity)
    form = form_values(text(admin.get(f"/r/{entity}/{record.id}/edit")))
    before = dict(stored(web_crm, entity, record.id).__data__)
    response = admin.post(f"/r/{entity}/{record.id}/edit", data=MultiDict(form))
    assert response.status_code == 302, field_errors(text(response))
    assert dict(stored(web_crm, entity, record.id).__data__) == before


@pytest.mark.parametrize("entity", ENTITIES)
def test_export_and_lookup_answer_for_every_entity(web_crm, admin, entity):
    record = make_record(web_crm, entity)
    ce = web_crm.compiled.entities[entity]
    export = admin.get(f"/r/{entity}/export.csv")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = csv_rows(export)
    # Every list column, a money column followed by its currency.
    expected = [["id"]] + [
        [spec.label, f"{spec.label} currency"] if spec.type == "money" else [spec.label] for spec in ce.list.columns
    ]
    assert rows[0] == [label for labels in expected for label in labels]
    assert [row[0] for row in rows[1:]] == [str(record.id)]
    lookup = admin.get(f"/r/{entity}/lookup?q=")
    assert lookup.status_code == 200
    assert lookup.json == [{"id": record.id, "title": ce.title_of(record)}]


@pytest.mark.parametrize("entity", ENTITIES)
def test_delete_asks_first_then_deletes(web_crm, admin, entity):
    record = make_record(web_crm, entity)
    title = web_crm.compiled.entities[entity].title_of(record)
    confirm = admin.get(f"/r/{entity}/{record.id}/delete")
    assert confirm.status_code == 200
    assert f"<h1>Delete {escape(title)}?</h1>" in text(confirm)
    assert stored(web_crm, entity, record.id) is not None
    version = stored(web_crm, entity, record.id).version
    response = admin.post(f"/r/{entity}/{record.id}/delete", data={"_version": str(version)})
    assert response.status_code == 302 and response.location == f"/r/{entity}/"
    assert stored(web_crm, entity, record.id) is None
    assert f"{web_crm.compiled.entities[entity].definition.label} {title!r} deleted." in [
        html.unescape(m) for m in flashes(text(admin.get(response.location)))
    ]


# Records with every field type filled (as the API or a rule writes them), for the form round trip.
FULL_RECORDS = {
    "lead": {
        "salutation": "dr", "first_name": "Ada", "job_title": "CTO", "email": "ada@example.com",
        "phone": "+49 30 1234", "mobile": "0170 1", "company": "Engines", "website": "https://engines.example",
        "country": "DE", "employees": 10, "budget": Decimal("1234.56"), "interests": ["crm", "analytics"],
        "score": 55, "gdpr_consent": True, "lost_reason": "other", "team": "sales-dach", "tags": ["a", "b"],
        "notes": "line 1\nline 2\n  indented",
    },
    "quote_line": {"quantity": Decimal("2.5"), "unit_price": Decimal("19.99"), "discount": Decimal("12.5"),
                   "position": 3},
    "product": {"unit_price": Decimal("1000"), "cost_price": Decimal("0.01"), "tax_rate": Decimal("7"),
                "active": False, "family": "software", "description": "x\r\ny"},
    "campaign": {"start_date": "2026-01-01", "end_date": "2026-12-31", "budget": Decimal("0"),
                 "expected_response": Decimal("33.33"), "target_segments": ["smb", "enterprise"]},
    "activity": {"kind": "meeting", "starts_at": "2026-11-24T09:00:00Z", "ends_at": "2026-11-24T10:30:00Z",
                 "reminder_at": "2026-11-24T08:45:00Z", "due_date": "2026-11-24", "done": True, "priority": "high"},
    "activity with seconds": {"starts_at": "2026-11-24T09:00:30Z"},
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(FULL_RECORDS))
def test_saving_a_filled_in_form_as_shown_changes_nothing(web_crm, admin, case):
    entity = case.split()[0]
    record = make_record(web_crm, entity, **FULL_RECORDS[case])
    before = dict(stored(web_crm, entity, record.id).__data__)
    response = submit_form(admin, f"/r/{entity}/{record.id}/edit")
    assert response.status_code == 302, field_errors(text(response))
    assert dict(stored(web_crm, entity, record.id).__data__) == before
    assert [row.operation for row in audit_rows(web_crm, entity, record.id)] == ["create"]


def test_delete_with_a_stale_version_is_refused(web_crm, admin):
    deal = make_record(web_crm, "deal", name="Changed meanwhile")
    web_crm.records.update("deal", deal.id, {"next_step": "Call"}, SYSTEM, "api")
    response = admin.post(f"/r/deal/{deal.id}/delete", data={"_version": "1"})
    assert response.status_code == 302 and response.location == f"/r/deal/{deal.id}"
    assert stored(web_crm, "deal", deal.id) is not None
    messages = flashes(text(admin.get(response.location)))
    assert messages == [f"Deal #{deal.id} was changed by someone else meanwhile (next_step); reload it and apply "
                        "your change again"]  # fmt: skip


def test_timeline_shows_the_changed_values_formatted_like_the_fields(web_crm, admin):
    deal = make_record(web_crm, "deal", amount=Decimal("1000"), close_date="2026-12-01")
    web_crm.records.update("deal", deal.id, {"amount": Decimal("2500.5"), "close_date": "2026-12-24"}, SYSTEM, "api")
    activity = make_record(web_crm, "activity", starts_at="2026-11-24T09:00:00Z")
    web_crm.records.update("activity", activity.id, {"starts_at": "2026-11-25T13:00:00Z", "done": True}, SYSTEM, "api")
    deal_page, activity_page = text(admin.get(f"/r/deal/{deal.id}")), text(admin.get(f"/r/activity/{activity.id}"))
    assert "<strong>Amount</strong>: 1.000,00\xa0€ → 2.500,50\xa0€" in deal_page
    assert "<strong>Expected close date</strong>: 01.12.2026 → 24.12.2026" in deal_page
    # The company's time, as the field itself is shown.
    assert "<strong>Starts at</strong>: 24.11.2026, 10:00:00 → 25.11.2026, 14:00:00" in activity_page
    assert "<strong>Done</strong>: No → Yes" in activity_page


def test_a_title_made_of_a_link_shows_the_linked_records_name(web_crm, admin):
    campaign = make_record(web_crm, "campaign", name="Spring fair")
    member = make_record(web_crm, "campaign_member", campaign=campaign.id)
    assert "<h1>Spring fair</h1>" in text(admin.get(f"/r/campaign_member/{member.id}"))
    assert admin.get("/r/campaign_member/lookup?q=").json == [{"id": member.id, "title": "Spring fair"}]


def test_a_record_whose_title_fields_are_empty_still_has_a_title(web_crm, admin):
    line = make_record(web_crm, "quote_line", description=None)
    page = text(admin.get(f"/r/quote_line/{line.id}"))
    assert re.search(r"<h1>\S[^<]*</h1>", page)
    assert not re.search(r"<title> ·", page)


def test_unknown_entity_and_record_are_404_pages(web_crm, admin):
    assert admin.get("/r/nothing/").status_code == 404
    missing = admin.get("/r/lead/999")
    assert missing.status_code == 404
    assert "there is no Lead #999" in text(missing)


# --- creating through the form ------------------------------------------------------------

CREATE_CASES = {
    "lead": (
        {
            "first_name": "Grace",
            "last_name": "Hopper",
            "email": "grace@example.com",
            "source": "event",
            "country": "DE",
            "employees": "1500",
            "budget": "1234.5",
            "interests": ["crm", "analytics"],
            "tags": "vip, fair",
            "gdpr_consent": ["0", "1"],
        },
        ["Grace", "Hopper", "1.500", "1.234,50\xa0€", "CRM, Analytics", '<span class="tag">vip</span>',
         '<a href="mailto:grace@example.com">', "<dd>Yes</dd>", "<dd>Event</dd>"],
    ),
    "account": (
        {
            "name": "Hopper GmbH",
            "country": "DE",
            "industry": "software",
            "annual_revenue": "2500000",
            "website": "https://hopper.example",
            "employees": "42",
        },
        ["Hopper GmbH", "<dd>Germany</dd>", "Software &amp; IT", "2.500.000,00\xa0€",
         '<a href="https://hopper.example" rel="noopener noreferrer">', "<dd>42</dd>"],
    ),
    "deal": (
        {"name": "Fleet renewal", "amount": "1234.5", "close_date": "2026-12-24", "deal_type": "upsell"},
        ["Fleet renewal", "1.234,50\xa0€", "24.12.2026", "<dd>Upsell</dd>", "<dd>Prospecting</dd>"],
    ),
    "activity": (
        {
            "kind": "meeting",
            "subject": "Workshop",
            "due_date": "2026-11-30",
            "starts_at": "2026-11-24T09:30",
            "duration_minutes": "90",
            "done": ["0"],
        },
        ["Workshop", "<dd>Meeting</dd>", "30.11.2026", "24.11.2026, 09:30:00", "<dd>90</dd>", "<dd>No</dd>"],
    ),
    "ticket": (
        {"subject": "Printer on fire", "priority": "high", "category": "technical", "satisfaction": "5"},
        ["Printer on fire", "<dd>High</dd>", "<dd>Technical problem</dd>", "<dd>5</dd>", "<dd>New</dd>"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("entity", sorted(CREATE_CASES))
def test_create_through_the_form_shows_the_values_formatted(web_crm, admin, entity):
    data, shown = CREATE_CASES[entity]
    response = admin.post(f"/r/{entity}/new", data=data)  # a list is several values of one name
    assert response.status_code == 302, field_errors(text(response))
    assert count(web_crm, entity) == 1
    record_id = int(response.location.rsplit("/", 1)[1])
    assert response.location == f"/r/{entity}/{record_id}"
    created = [row for row in audit_rows(web_crm, entity, record_id) if row.operation == "create"]
    assert [(row.channel, row.user_id) for row in created] == [("form", user_id(web_crm, "admin"))]
    page = text(admin.get(response.location))
    for value in shown:
        assert value in page


def test_a_record_a_rep_creates_through_the_form_is_hers(web_crm, sign_in):
    anna = sign_in("anna")
    response = anna.post("/r/deal/new", data={"name": "Anna's deal"})
    assert response.status_code == 302
    record_id = int(response.location.rsplit("/", 1)[1])
    assert stored(web_crm, "deal", record_id).owner == user_id(web_crm, "anna")
    assert anna.get(response.location).status_code == 200


def test_a_deal_created_through_the_form_has_the_probability_of_its_first_stage(web_crm, sign_in):
    response = sign_in("maria").post("/r/deal/new", data={"name": "Maria's deal", "amount": "1000"})
    assert response.status_code == 302
    deal = stored(web_crm, "deal", int(response.location.rsplit("/", 1)[1]))
    assert (deal.stage, deal.probability) == ("prospecting", 10)
    assert deal.weighted_amount == 100


def test_new_form_prefills_defaults_and_query_arguments(web_crm, admin):
    account = make_record(web_crm, "account", name="Prefilled AG")
    page = text(admin.get(f"/r/deal/new?account={account.id}"))
    assert f'<option value="{account.id}" selected>Prefilled AG</option>' in page
    assert '<option value="new_business" selected>New business</option>' in page


# --- refused form posts ---------------------------------------------------------------------

INVALID_CASES = {
    "lead": (
        {"first_name": "Ada", "employees": "abc", "email": "not-an-address", "source": "event"},
        {"last_name": ["is required"], "employees": ["must be a whole number"],
         "email": ["is not a valid email address"]},
    ),
    "deal": (
        {"name": "", "amount": "abc", "close_date": "24.12.2026"},
        {"name": ["is required"], "amount": ["must be a number"], "close_date": ["must be a date (YYYY-MM-DD)"]},
    ),
    "account": (
        {"name": "Numbers Ltd", "email": "nope", "account_number": "12", "employees": "-3"},
        {"email": ["is not a valid email address"], "account_number": ["has the wrong format"],
         "employees": ["must be at least 0"]},
    ),
    "activity": (
        {"kind": "call", "subject": "Call back", "due_date": "tomorrow", "starts_at": "2026-11-31T10:00"},
        {"due_date": ["must be a date (YYYY-MM-DD)"], "starts_at": ["must be a date and time (YYYY-MM-DDTHH:MM)"]},
    ),
}  # fmt: skip


@pytest.mark.parametrize("entity", sorted(INVALID_CASES))
def test_invalid_form_post_is_422_with_every_message_next_to_its_field(web_crm, admin, entity):
    data, expected = INVALID_CASES[entity]
    response = admin.post(f"/r/{entity}/new", data=data)
    assert response.status_code == 422
    page = text(response)
    assert field_errors(page) == expected
    for name in expected:
        # The message is tied to its input, and what was typed is shown again to correct it.
        assert re.search(rf'id="f-{name}"[^>]*aria-describedby="[^"]*f-{name}-errors', page), name
        if data.get(name):
            assert f'value="{escape(data[name])}"' in page
    assert count(web_crm, entity) == 0


def test_edit_with_a_stale_version_shows_the_conflict_and_changes_nothing(web_crm, admin):
    deal = make_record(web_crm, "deal", name="Original")
    shown = [(k, "Mine" if k == "name" else v) for k, v in form_values(text(admin.get(f"/r/deal/{deal.id}/edit")))]
    web_crm.records.update("deal", deal.id, {"next_step": "Call the CFO"}, SYSTEM, "api")
    response = admin.post(f"/r/deal/{deal.id}/edit", data=MultiDict(shown))
    assert response.status_code == 422
    page = html.unescape(text(response))
    assert "was changed by someone else meanwhile (next_step)" in page
    assert "Reload the page to see the current values" in page
    saved = stored(web_crm, "deal", deal.id)
    assert (saved.name, saved.next_step, saved.version) == ("Original", "Call the CFO", 2)


def test_edit_with_the_current_version_saves_the_change(web_crm, admin):
    deal = make_record(web_crm, "deal", name="Original", next_step="Call")
    response = submit_form(admin, f"/r/deal/{deal.id}/edit", name="Renamed")
    assert response.status_code == 302 and response.location == f"/r/deal/{deal.id}"
    saved = stored(web_crm, "deal", deal.id)
    assert (saved.name, saved.next_step, saved.version) == ("Renamed", "Call", 2)
    assert "Deal saved." in flashes(text(admin.get(response.location)))


OUT_OF_RANGE = {
    "money NaN": ("deal", {"name": "NaN", "amount": "NaN"}, "amount"),
    "money Infinity": ("deal", {"name": "Infinite", "amount": "Infinity"}, "amount"),
    "money 1e400": ("deal", {"name": "Huge exponent", "amount": "1e400"}, "amount"),
    "money past 64 bits": ("deal", {"name": "Huge", "amount": "12345678901234567890123"}, "amount"),
    "integer past 64 bits": ("lead", {"last_name": "Huge", "source": "event", "employees": "1" + "0" * 30},
                             "employees"),
    "user id past 64 bits": ("deal", {"name": "Nobody", "owner": "99999999999999999999999"}, "owner"),
    "link id past 64 bits": ("deal", {"name": "No account", "account": "99999999999999999999999"}, "account"),
    "datetime in year one": ("activity", {"kind": "task", "subject": "Year 1", "starts_at": "0001-01-01T00:30"},
                             "starts_at"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(OUT_OF_RANGE))
def test_values_out_of_range_are_refused_next_to_the_field(web_crm, admin, case):
    entity, data, field = OUT_OF_RANGE[case]
    response = admin.post(f"/r/{entity}/new", data=data)
    assert response.status_code == 422
    assert list(field_errors(text(response))) == [field]
    assert count(web_crm, entity) == 0


# --- the list: search, filters, sort, pages, saved views ---------------------------------------


def test_list_search_finds_records_by_their_search_fields(web_crm, admin):
    ada = lead(web_crm, first_name="Ada", last_name="Lovelace", company="Analytical Engines")
    grace = lead(web_crm, first_name="Grace", last_name="Hopper", company="Navy")
    assert ids_in_list(admin, "lead", "q=hopper") == [grace.id]
    assert ids_in_list(admin, "lead", "q=Analytical") == [ada.id]
    assert 'value="hopper"' in text(admin.get("/r/lead/?q=hopper"))


def test_list_filters_by_a_choice(web_crm, admin):
    german = lead(web_crm, country="DE")
    lead(web_crm, country="FR")
    assert ids_in_list(admin, "lead", "f.country=DE") == [german.id]
    assert '<option value="DE" selected>DE</option>' in text(admin.get("/r/lead/?f.country=DE"))


@pytest.mark.parametrize(
    ("entity", "field", "values", "query", "expected"),
    [
        ("deal", "amount", [100, 500, 1000, 1000.01], "f.amount.from=200&f.amount.to=1000", [500, 1000]),
        ("lead", "employees", [5, 50, 500], "f.employees.from=50&f.employees.to=500", [50, 500]),
        ("lead", "employees", [5, 50, 500], "f.employees.to=49", [5]),
    ],
)
def test_list_filters_by_a_range_of_numbers(web_crm, admin, entity, field, values, query, expected):
    made = {value: make_record(web_crm, entity, **{field: value}).id for value in values}
    assert sorted(ids_in_list(admin, entity, query)) == sorted(made[value] for value in expected)


@pytest.mark.parametrize(
    ("entity", "query"),
    [
        ("deal", "f.amount.from=NaN"),
        ("deal", "f.amount.to=Infinity"),
        ("deal", "f.amount.from=1e999999"),
        ("deal", "f.owner=99999999999999999999999"),
        ("lead", "f.employees.from=99999999999999999999999"),
        ("deal", "f.close_date.from=9999-12-31&f.close_date.to=9999-12-31"),
        ("activity", "f.starts_at.to=9999-12-31"),
        ("deal", "f.close_date.from=someday&sort=nothing&page=-3&per_page=0"),
    ],
)
def test_list_filters_that_cannot_be_used_still_answer_the_list(web_crm, admin, entity, query):
    make_record(web_crm, entity)
    assert admin.get(f"/r/{entity}/?{query}").status_code == 200
    assert admin.get(f"/r/{entity}/export.csv?{query}").status_code == 200


def test_list_sorts_by_a_column_both_ways(web_crm, admin):
    for name in ("Bravo", "Alpha", "Charlie"):
        make_record(web_crm, "deal", name=name)
    up = text(admin.get("/r/deal/?sort=name"))
    titles = re.findall(r'<a href="/r/deal/\d+">([^<]*)</a>', up)
    assert titles == ["Alpha", "Bravo", "Charlie"]
    assert re.search(r'<th scope="col" aria-sort="ascending">\s*<a href="\?sort=-name">Deal name</a>', up)
    down = text(admin.get("/r/deal/?sort=-name"))
    assert re.findall(r'<a href="/r/deal/\d+">([^<]*)</a>', down) == ["Charlie", "Bravo", "Alpha"]
    assert re.search(r'<th scope="col" aria-sort="descending">\s*<a href="\?sort=name">Deal name</a>', down)


def test_list_pages_hold_fifty_records(web_crm, admin):
    for n in range(60):
        lead(web_crm, last_name=f"Page {n:02d}")
    first, second = text(admin.get("/r/lead/")), text(admin.get("/r/lead/?page=2"))
    assert len(record_links(first, "lead")) == 50
    assert len(record_links(second, "lead")) == 10
    assert set(record_links(first, "lead")).isdisjoint(record_links(second, "lead"))
    assert "Page 2 of 2" in second and '<a href="?" rel="prev">' in second
    assert 'href="?page=2" rel="next"' in first


def test_saved_view_is_saved_listed_and_deleted(web_crm, admin, sign_in):
    german = lead(web_crm, country="DE")
    lead(web_crm, country="FR")
    saved = admin.post("/views/lead", data={"name": "German leads", "query": "f.country=DE"})
    assert saved.status_code == 302 and saved.location == "/r/lead/?f.country=DE"
    page = text(admin.get("/r/lead/"))
    assert '<a href="/r/lead/?f.country=DE">German leads</a>' in page
    assert ids_in_list(admin, "lead", "f.country=DE") == [german.id]
    assert "German leads" not in text(sign_in("maria").get("/r/lead/")), "a view is its owner's"
    view_id = web_crm.tables.SavedView.get().id
    deleted = admin.post(f"/views/{view_id}/delete")
    assert deleted.status_code == 302 and deleted.location == "/r/lead/"
    assert '<nav class="views"' not in text(admin.get("/r/lead/"))
    assert web_crm.tables.SavedView.select().count() == 0


def test_saving_a_view_without_a_name_saves_nothing(web_crm, admin):
    response = admin.post("/views/lead", data={"name": "  ", "query": "f.country=DE"})
    assert response.status_code == 302
    assert "Give the view a name." in flashes(text(admin.get(response.location)))
    assert web_crm.tables.SavedView.select().count() == 0


# --- export ------------------------------------------------------------------------------------


def test_export_has_the_rows_of_the_filtered_list(web_crm, admin):
    german = lead(web_crm, first_name="Ada", last_name="Lovelace", country="DE", score=42)
    lead(web_crm, country="FR")
    response = admin.get("/r/lead/export.csv?f.country=DE")
    assert response.headers["Content-Disposition"] == 'attachment; filename="leads.csv"'
    assert csv_rows(response) == [
        ["id", "First name", "Last name", "Company", "Country", "Lead source", "Lead score", "Status", "Owner"],
        [str(german.id), "Ada", "Lovelace", "", "DE", "event", "42", "new", ""],
    ]


@pytest.mark.parametrize("formula", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"])
def test_export_neutralises_cells_a_spreadsheet_would_run(web_crm, admin, formula):
    record = lead(web_crm, company=formula, first_name="Safe")
    rows = csv_rows(admin.get("/r/lead/export.csv"))
    assert rows[1][:4] == [str(record.id), "Safe", record.last_name, "'" + formula]


# --- stage moves ---------------------------------------------------------------------------------


def contacted_lead(crm, score: int):
    record = lead(crm, score=score, email=f"score{score}@example.com", country="DE")
    return crm.records.transition("lead", record.id, "contacted", SYSTEM, "api")


def test_move_by_form_moves_the_record(web_crm, admin):
    deal = make_record(web_crm, "deal")
    response = admin.post(f"/r/deal/{deal.id}/move", data={"to": "qualification", "field": "stage", "_version": "1"})
    assert response.status_code == 302 and response.location == f"/r/deal/{deal.id}"
    assert stored(web_crm, "deal", deal.id).stage == "qualification"
    assert "Moved to Qualification." in flashes(text(admin.get(response.location)))


def test_refused_move_by_form_is_409_with_the_reason(web_crm, admin):
    record = contacted_lead(web_crm, score=10)
    response = admin.post(f"/r/lead/{record.id}/move", data={"to": "qualified", "field": "status"})
    assert response.status_code == 409
    page = html.unescape(text(response))
    assert "This move is not allowed yet:" in page
    assert "<li>the condition is not met: lead.score >= 50</li>" in page
    assert stored(web_crm, "lead", record.id).status == "contacted"


def test_move_to_a_stage_not_reachable_from_here_is_refused(web_crm, admin):
    deal = make_record(web_crm, "deal")
    response = admin.post(f"/r/deal/{deal.id}/move", data={"to": "won", "field": "stage"})
    assert response.status_code == 409
    assert stored(web_crm, "deal", deal.id).stage == "prospecting"


def test_move_to_a_stage_that_requires_fields_asks_for_them_then_moves(web_crm, admin):
    deal = make_record(web_crm, "deal")
    web_crm.records.transition("deal", deal.id, "qualification", SYSTEM, "api")
    asked = admin.get(f"/r/deal/{deal.id}/move?to=proposal")
    assert asked.status_code == 200
    page = text(asked)
    assert "Proposal needs these fields:" in page
    assert [control["name"] for control in form_controls(page)] == ["amount", "close_date"]
    assert unlabelled_controls(page) == []
    missing = admin.post(f"/r/deal/{deal.id}/move", data={"to": "proposal", "field": "stage"})
    assert missing.status_code == 409
    assert "Amount, Expected close date must be filled in to enter Proposal" in text(missing)
    assert stored(web_crm, "deal", deal.id).stage == "qualification"
    filled = {"to": "proposal", "field": "stage", "amount": "25000", "close_date": "2027-01-15"}
    moved = admin.post(f"/r/deal/{deal.id}/move", data=filled)
    assert moved.status_code == 302
    saved = stored(web_crm, "deal", deal.id)
    assert (saved.stage, saved.amount, str(saved.close_date), saved.probability) == (
        "proposal",
        25000,
        "2027-01-15",
        50,
    )


def test_move_with_a_value_that_cannot_be_read_shows_it_next_to_the_field(web_crm, admin):
    deal = make_record(web_crm, "deal")
    web_crm.records.transition("deal", deal.id, "qualification", SYSTEM, "api")
    response = admin.post(
        f"/r/deal/{deal.id}/move", data={"to": "proposal", "field": "stage", "amount": "lots", "close_date": ""}
    )
    assert response.status_code == 409
    assert field_errors(text(response))["amount"] == ["must be a number"]
    assert stored(web_crm, "deal", deal.id).stage == "qualification"


def test_kanban_json_move_allowed_answers_200(web_crm, admin):
    deal = make_record(web_crm, "deal")
    response = admin.post(f"/r/deal/{deal.id}/move", json={"to": "qualification", "field": "stage", "version": 1})
    assert response.status_code == 200
    assert response.json == {"ok": True, "stage": "qualification", "label": "Qualification"}
    assert stored(web_crm, "deal", deal.id).stage == "qualification"


def test_kanban_json_move_refused_answers_409_with_the_reasons(web_crm, admin):
    deal = make_record(web_crm, "deal")
    web_crm.records.transition("deal", deal.id, "qualification", SYSTEM, "api")
    response = admin.post(f"/r/deal/{deal.id}/move", json={"to": "proposal", "field": "stage", "version": 2})
    assert response.status_code == 409
    assert response.json["ok"] is False
    assert response.json["reasons"] == ["Amount, Expected close date must be filled in to enter Proposal"]
    saved = stored(web_crm, "deal", deal.id)
    assert (saved.stage, saved.version) == ("qualification", 2)


def test_kanban_json_move_with_a_stale_version_is_409(web_crm, admin):
    deal = make_record(web_crm, "deal")
    web_crm.records.update("deal", deal.id, {"next_step": "Call"}, SYSTEM, "api")
    response = admin.post(f"/r/deal/{deal.id}/move", json={"to": "qualification", "field": "stage", "version": 1})
    assert response.status_code == 409
    assert "changed by someone else" in response.json["reasons"][0]
    assert stored(web_crm, "deal", deal.id).stage == "prospecting"


def test_kanban_board_shows_each_card_in_its_stage_with_amount_and_owner(web_crm, admin):
    anna = user_id(web_crm, "anna")
    early = make_record(web_crm, "deal", name="Early deal", amount=Decimal("1234.50"), owner=anna)
    later = make_record(web_crm, "deal", name="Later deal")
    web_crm.records.transition("deal", later.id, "qualification", SYSTEM, "api")
    response = admin.get("/board/deal_pipeline")
    assert response.status_code == 200
    page = text(response)
    columns = dict(re.findall(r'<section class="column" data-stage="(\w+)"(.*?)</section>', page, re.S))
    assert list(columns) == ["prospecting", "qualification", "proposal", "negotiation", "won", "lost"]
    assert f'data-id="{early.id}"' in columns["prospecting"] and f'data-id="{later.id}"' in columns["qualification"]
    assert '<p class="amount">1.234,50\xa0€</p>' in columns["prospecting"]
    assert '<p class="owner">Anna Schmidt</p>' in columns["prospecting"]
    assert f'data-move="/r/deal/{early.id}/move"' in columns["prospecting"]


# --- bulk actions ------------------------------------------------------------------------------


def test_bulk_assign_asks_then_assigns(web_crm, admin):
    first, second = lead(web_crm, last_name="First"), lead(web_crm, last_name="Second")
    ben = user_id(web_crm, "ben")
    form = {"action": "assign", "value": str(ben), "ids": [str(first.id), str(second.id)], "back": "/r/lead/"}
    asked = admin.post("/r/lead/bulk", data=form)
    assert asked.status_code == 200
    page = text(asked)
    assert "<h1>Assign 2 leads to Ben Huber?</h1>" in page
    assert "<li>First</li><li>Second</li>" in page
    assert stored(web_crm, "lead", first.id).owner is None
    done = admin.post("/r/lead/bulk", data={**form, "confirm": "yes"})
    assert done.status_code == 302 and done.location == "/r/lead/"
    assert [stored(web_crm, "lead", r.id).owner for r in (first, second)] == [ben, ben]
    assert "2 of 2 leads changed." in flashes(text(admin.get("/r/lead/")))


def test_bulk_move_reports_each_refused_record(web_crm, sign_in):
    maria = sign_in("maria")
    good, poor = contacted_lead(web_crm, score=60), contacted_lead(web_crm, score=10)
    form = {"action": "move", "value": "qualified", "ids": [str(good.id), str(poor.id)], "back": "/r/lead/"}
    asked = maria.post("/r/lead/bulk", data=form)
    assert "<h1>Move 2 leads to Qualified?</h1>" in text(asked)
    done = maria.post("/r/lead/bulk", data={**form, "confirm": "yes"})
    assert done.status_code == 302
    messages = [html.unescape(m) for m in flashes(text(maria.get(done.location)))]
    assert messages == [
        "1 of 2 leads changed.",
        f"#{poor.id}: cannot move from 'contacted' to 'qualified': the condition is not met: lead.score >= 50",
    ]
    assert (stored(web_crm, "lead", good.id).status, stored(web_crm, "lead", poor.id).status) == (
        "qualified",
        "contacted",
    )


def test_bulk_delete_asks_then_deletes(web_crm, admin):
    doomed, kept = make_record(web_crm, "deal", name="Doomed"), make_record(web_crm, "deal", name="Kept")
    form = {"action": "delete", "ids": [str(doomed.id)], "back": "/r/deal/"}
    asked = admin.post("/r/deal/bulk", data=form)
    assert "<h1>Delete 1 deal?</h1>" in text(asked) and "<li>Doomed</li>" in text(asked)
    assert stored(web_crm, "deal", doomed.id) is not None
    admin.post("/r/deal/bulk", data={**form, "confirm": "yes"})
    assert stored(web_crm, "deal", doomed.id) is None and stored(web_crm, "deal", kept.id) is not None


def test_bulk_without_ticked_records_changes_nothing(web_crm, admin):
    record = lead(web_crm)
    response = admin.post("/r/lead/bulk", data={"action": "delete", "confirm": "yes", "back": "/r/lead/"})
    assert response.status_code == 302
    assert "Tick at least one record and choose what to do." in flashes(text(admin.get("/r/lead/")))
    assert stored(web_crm, "lead", record.id) is not None


def test_bulk_assign_to_something_that_is_not_a_user_is_refused_per_record(web_crm, admin):
    record = lead(web_crm)
    response = admin.post(
        "/r/lead/bulk", data={"action": "assign", "value": "nobody", "ids": [str(record.id)], "confirm": "yes"}
    )
    assert response.status_code == 302
    assert stored(web_crm, "lead", record.id).owner is None


# --- lookup ------------------------------------------------------------------------------------


def test_lookup_returns_matching_records_as_json(web_crm, admin):
    hopper = make_record(web_crm, "account", name="Hopper Industries")
    make_record(web_crm, "account", name="Lovelace Ltd")
    response = admin.get("/r/account/lookup?q=hopper")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.json == [{"id": hopper.id, "title": "Hopper Industries"}]


# --- calendar and my work ------------------------------------------------------------------------


def test_calendar_shows_the_users_activities_of_this_month_and_navigates(web_crm, sign_in):
    anna = user_id(web_crm, "anna")
    make_record(web_crm, "activity", subject="Kick-off", starts_at="2026-11-25T13:30:00Z", owner=anna)
    make_record(web_crm, "activity", subject="Advent call", due_date="2026-12-03", owner=anna)
    make_record(web_crm, "activity", subject="Ben's meeting", starts_at="2026-11-25T09:00:00Z",
                owner=user_id(web_crm, "ben"))  # fmt: skip
    client = sign_in("anna")
    november = text(client.get("/calendar"))
    assert "<h1>November 2026</h1>" in november
    assert ">14:30 Kick-off</a>" in november, "in the company's time zone"
    assert "Advent call" not in november and "Ben's meeting" not in november.replace("&#39;", "'")
    assert 'href="?month=2026-10"' in november and 'href="?month=2026-12"' in november
    assert re.search(r'<td class=" today">\s*<span class="day">23</span>', november)
    december = text(client.get("/calendar?month=2026-12"))
    assert "<h1>Dezember 2026</h1>" in december
    assert ">Advent call</a>" in december and "Kick-off" not in december
    assert "Ben&#39;s meeting" not in text(client.get("/calendar?all=1")), "anna reads her own activities only"
    everyone = text(sign_in("maria").get("/calendar?all=1"))
    assert "Ben&#39;s meeting" in everyone and "Kick-off" in everyone
    assert "Kick-off" not in text(sign_in("maria").get("/calendar")), "maria's own calendar is empty"


def test_calendar_with_a_month_it_cannot_read_shows_this_month(web_crm, admin):
    response = admin.get("/calendar?month=soon")
    assert response.status_code == 200
    assert "<h1>November 2026</h1>" in text(response)


@pytest.mark.parametrize("month", ["9999-12", "0001-01", "2026-13", "2026-00"])
def test_calendar_at_the_ends_of_time_answers_the_page(web_crm, admin, month):
    assert admin.get(f"/calendar?month={month}").status_code == 200


def test_my_work_shows_the_users_open_records_only(web_crm, sign_in):
    anna, ben = user_id(web_crm, "anna"), user_id(web_crm, "ben")
    open_lead = lead(web_crm, last_name="Open lead", owner=anna)
    converted = lead(web_crm, last_name="Converted lead", owner=anna, email="c@example.com", country="DE", score=80)
    for stage in ("contacted", "qualified", "converted"):
        web_crm.records.transition("lead", converted.id, stage, SYSTEM, "api")
    lead(web_crm, last_name="Ben lead", owner=ben)
    todo = make_record(web_crm, "activity", subject="Open task", owner=anna)
    make_record(web_crm, "activity", subject="Done task", owner=anna, done=True)
    lost = make_record(web_crm, "deal", name="Lost deal", owner=anna, lost_reason="price")
    web_crm.records.transition("deal", lost.id, "lost", SYSTEM, "api")
    page = text(sign_in("anna").get("/my"))
    assert f'<a href="/r/lead/{open_lead.id}">Open lead</a>' in page
    assert f'<a href="/r/activity/{todo.id}">Open task</a>' in page
    for absent in ("Converted lead", "Ben lead", "Done task", "Lost deal", "My open deals"):
        assert absent not in page


def test_my_work_says_so_when_nothing_is_open(sign_in):
    assert "Nothing open is assigned to you." in text(sign_in("clara").get("/my"))


# --- public forms ------------------------------------------------------------------------------

WEB_LEAD = {"first_name": "Eve", "last_name": "Web", "email": "eve@example.com", "country": "DE", "interests": "crm"}


@pytest.mark.parametrize("name", ["web_to_lead", "contact_us", "support_request"])
def test_public_form_opens_without_sign_in_with_labelled_inputs(web_app, name):
    response = web_app.test_client().get(f"/forms/{name}")
    assert response.status_code == 200
    assert unlabelled_controls(text(response)) == []


def test_public_form_post_creates_the_lead_through_the_form_channel(web_app, web_crm):
    response = web_app.test_client().post("/forms/web_to_lead", data=WEB_LEAD)
    assert response.status_code == 200
    assert "Thanks, we will be in touch." in text(response)
    model = web_crm.compiled.entities["lead"].model
    created = model.get()
    assert (created.first_name, created.last_name, created.email, created.interests) == (
        "Eve",
        "Web",
        "eve@example.com",
        ["crm"],
    )
    assert [(r.operation, r.channel) for r in audit_rows(web_crm, "lead", created.id)][0] == ("create", "form")


def test_public_form_post_with_bad_values_is_422_and_creates_nothing(web_app, web_crm):
    response = web_app.test_client().post("/forms/web_to_lead", data={"first_name": "Eve", "email": "nope"})
    assert response.status_code == 422
    assert field_errors(text(response)) == {
        "last_name": ["is required"],
        "email": ["is not a valid email address"],
    }
    assert 'value="Eve"' in text(response)
    assert count(web_crm, "lead") == 0


def test_public_form_with_the_honeypot_filled_thanks_but_creates_nothing(web_app, web_crm):
    response = web_app.test_client().post("/forms/web_to_lead", data={**WEB_LEAD, "website_address": "spam.example"})
    assert response.status_code == 200
    assert "Thanks, we will be in touch." in text(response)
    assert count(web_crm, "lead") == 0


def test_public_form_reads_only_its_own_fields(web_app, web_crm):
    data = {**WEB_LEAD, "score": "100", "owner": str(user_id(web_crm, "admin")), "notes": "injected"}
    web_app.test_client().post("/forms/web_to_lead", data=data)
    created = web_crm.compiled.entities["lead"].model.get()
    assert (created.score, created.notes) == (0, None)


def test_public_form_refuses_the_third_post_a_minute_from_one_address(tmp_path, clock):
    app = build_app(tmp_path, clock, WTF_CSRF_ENABLED=False, FORM_RATE_LIMIT="2 per minute")
    crm = app.extensions["crm"]
    crm.init_db()
    try:
        client = app.test_client()
        statuses = [
            client.post("/forms/web_to_lead", data={**WEB_LEAD, "email": f"eve{n}@example.com"}).status_code
            for n in range(3)
        ]
        assert statuses == [200, 200, 429]
        assert count(crm, "lead") == 2
        refused = client.post("/forms/web_to_lead", data=WEB_LEAD)
        assert "Too many requests from your address" in text(refused)
        assert client.get("/forms/web_to_lead").status_code == 200, "only posts are limited"
    finally:
        crm.database.close()


def test_sign_in_and_public_forms_work_with_rate_limits_switched_off(tmp_path, clock):
    app = build_app(tmp_path, clock, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)
    crm = app.extensions["crm"]
    crm.init_db()
    seed_demo(crm.directory)
    try:
        client = app.test_client()
        signed_in = client.post("/login", data={"email": "anna@demo.example.com", "password": DEMO_PASSWORD})
        assert signed_in.status_code == 302
        assert app.test_client().post("/forms/web_to_lead", data=WEB_LEAD).status_code == 200
    finally:
        crm.database.close()
