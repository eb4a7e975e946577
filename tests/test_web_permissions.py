"""Every permission rule of the default pack, through the web: what a page
shows, and that the URL behind a hidden button is refused too."""

from __future__ import annotations

import html
import re

import pytest
from markupsafe import escape

from . import web_fixtures
from .runtime_fixtures import stored
from .web_fixtures import SYSTEM, csv_rows, flashes, form_controls, make_record, submit_form, user_id

web_app, web_crm, sign_in = web_fixtures.web_app, web_fixtures.web_crm, web_fixtures.sign_in  # the fixtures

OWNED = ("deal", "lead")  # the entities whose "own records only" scope is checked page by page


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def records(web_crm):
    """For each of OWNED: anna's record and ben's record (both sales reps, scope "own")."""
    anna, ben = user_id(web_crm, "anna"), user_id(web_crm, "ben")
    made = {}
    for entity in OWNED:
        made[entity] = {
            "anna": make_record(web_crm, entity, owner=anna, **title_data(entity, "Anna's")),
            "ben": make_record(web_crm, entity, owner=ben, **title_data(entity, "Ben's")),
        }
    return made


def title_data(entity: str, who: str) -> dict:
    return {"name": f"{who} deal"} if entity == "deal" else {"last_name": f"{who} lead"}


def title(entity: str, who: str) -> str:
    return escape(f"{who.capitalize()}'s {entity}")


def snapshot(crm, entity: str, record_id: int) -> dict:
    return dict(stored(crm, entity, record_id).__data__)


# A change each entity's edit form accepts, and the stage each can move to from its first.
CHANGE = {"deal": {"name": "Changed"}, "lead": {"last_name": "Changed"}}
MOVE = {"deal": ("stage", "qualification"), "lead": ("status", "contacted")}


# --- a sales rep and another rep's records ----------------------------------------------------


@pytest.mark.parametrize("entity", OWNED)
def test_rep_does_not_see_another_reps_records_in_her_list(sign_in, records, entity):
    page = text(sign_in("anna").get(f"/r/{entity}/"))
    assert title(entity, "anna") in page
    assert title(entity, "ben") not in page
    assert f'href="/r/{entity}/{records[entity]["ben"].id}"' not in page


@pytest.mark.parametrize("entity", OWNED)
def test_rep_cannot_open_another_reps_record(sign_in, records, entity):
    response = sign_in("anna").get(f"/r/{entity}/{records[entity]['ben'].id}")
    assert response.status_code == 403
    assert f"you may only read your own {entity}s" in text(response)
    assert title(entity, "ben") not in text(response)


@pytest.mark.parametrize("entity", OWNED)
def test_rep_cannot_edit_another_reps_record(web_crm, sign_in, records, entity):
    anna, record = sign_in("anna"), records[entity]["ben"]
    before = snapshot(web_crm, entity, record.id)
    assert anna.get(f"/r/{entity}/{record.id}/edit").status_code == 403
    posted = anna.post(f"/r/{entity}/{record.id}/edit", data={**CHANGE[entity], "_version": "1"})
    assert posted.status_code == 403
    assert f"you may only update your own {entity}s" in text(posted)
    assert snapshot(web_crm, entity, record.id) == before


@pytest.mark.parametrize("entity", OWNED)
def test_rep_cannot_move_another_reps_record(web_crm, sign_in, records, entity):
    anna, record = sign_in("anna"), records[entity]["ben"]
    field, target = MOVE[entity]
    before = snapshot(web_crm, entity, record.id)
    assert anna.get(f"/r/{entity}/{record.id}/move?to={target}").status_code == 403
    assert anna.post(f"/r/{entity}/{record.id}/move", data={"to": target, "field": field}).status_code == 403
    as_json = anna.post(f"/r/{entity}/{record.id}/move", json={"to": target, "field": field, "version": 1})
    assert as_json.status_code == 403
    assert snapshot(web_crm, entity, record.id) == before


@pytest.mark.parametrize("entity", OWNED)
def test_rep_cannot_delete_another_reps_record(web_crm, sign_in, records, entity):
    anna, record = sign_in("anna"), records[entity]["ben"]
    assert anna.get(f"/r/{entity}/{record.id}/delete").status_code == 403
    assert anna.post(f"/r/{entity}/{record.id}/delete", data={"_version": "1"}).status_code == 403
    assert stored(web_crm, entity, record.id) is not None


@pytest.mark.parametrize("entity", OWNED)
@pytest.mark.parametrize("action", ["assign", "move"])
def test_rep_cannot_bulk_change_another_reps_record(web_crm, sign_in, records, entity, action):
    anna, record = sign_in("anna"), records[entity]["ben"]
    value = str(user_id(web_crm, "anna")) if action == "assign" else MOVE[entity][1]
    form = {"action": action, "value": value, "ids": [str(record.id)], "back": f"/r/{entity}/"}
    before = snapshot(web_crm, entity, record.id)
    asked = anna.post(f"/r/{entity}/bulk", data=form)
    assert asked.status_code == 200
    assert title(entity, "ben") not in text(asked), "the confirmation lists only records she may see"
    done = anna.post(f"/r/{entity}/bulk", data={**form, "confirm": "yes"})
    assert done.status_code == 302
    messages = [html.unescape(m) for m in flashes(text(anna.get(done.location)))]
    assert messages == [f"0 of 1 {entity}s changed.", f"#{record.id}: you may only update your own {entity}s"]
    assert snapshot(web_crm, entity, record.id) == before


@pytest.mark.parametrize("entity", OWNED)
def test_rep_cannot_bulk_delete_at_all(web_crm, sign_in, records, entity):
    anna = sign_in("anna")
    ids = [str(records[entity][who].id) for who in ("anna", "ben")]
    response = anna.post(f"/r/{entity}/bulk", data={"action": "delete", "ids": ids, "confirm": "yes"})
    assert response.status_code == 403
    assert all(stored(web_crm, entity, int(i)) is not None for i in ids)


@pytest.mark.parametrize("entity", OWNED)
def test_rep_export_and_lookup_leave_out_another_reps_records(sign_in, records, entity):
    anna = sign_in("anna")
    exported = [row[0] for row in csv_rows(anna.get(f"/r/{entity}/export.csv"))[1:]]
    assert exported == [str(records[entity]["anna"].id)]
    found = anna.get(f"/r/{entity}/lookup?q=").json
    assert [item["id"] for item in found] == [records[entity]["anna"].id]


@pytest.mark.parametrize("entity", OWNED)
def test_rep_can_do_all_of_it_to_her_own_record(web_crm, sign_in, records, entity):
    anna, record = sign_in("anna"), records[entity]["anna"]
    assert anna.get(f"/r/{entity}/{record.id}").status_code == 200
    assert anna.get(f"/r/{entity}/{record.id}/edit").status_code == 200
    edited = submit_form(anna, f"/r/{entity}/{record.id}/edit", **CHANGE[entity])
    assert edited.status_code == 302
    field, target = MOVE[entity]
    moved = anna.post(f"/r/{entity}/{record.id}/move", data={"to": target, "field": field})
    assert moved.status_code == 302
    saved = stored(web_crm, entity, record.id)
    assert (getattr(saved, field), saved.version) == (target, 3)
    assert [row[0] for row in csv_rows(anna.get(f"/r/{entity}/export.csv"))[1:]] == [str(record.id)]
    assert [item["id"] for item in anna.get(f"/r/{entity}/lookup?q=Changed").json] == [record.id]
    ben = str(user_id(web_crm, "ben"))
    handed = anna.post(f"/r/{entity}/bulk", data={"action": "assign", "value": ben, "ids": [str(record.id)],
                                                  "confirm": "yes"})  # fmt: skip
    assert handed.status_code == 302
    assert stored(web_crm, entity, record.id).owner == int(ben)


@pytest.mark.parametrize("entity", OWNED)
def test_sales_role_deletes_nothing_not_even_its_own(web_crm, sign_in, records, entity):
    anna, record = sign_in("anna"), records[entity]["anna"]
    page = text(anna.get(f"/r/{entity}/{record.id}"))
    assert f'href="/r/{entity}/{record.id}/delete"' not in page
    assert anna.post(f"/r/{entity}/{record.id}/delete").status_code == 403
    assert stored(web_crm, entity, record.id) is not None


def test_rep_does_not_see_another_reps_deals_on_her_accounts_page(web_crm, sign_in):
    anna, ben = user_id(web_crm, "anna"), user_id(web_crm, "ben")
    account = make_record(web_crm, "account", name="Shared customer", owner=anna)
    make_record(web_crm, "deal", name="Anna on it", account=account.id, owner=anna)
    make_record(web_crm, "deal", name="Ben on it", account=account.id, owner=ben)
    page = text(sign_in("anna").get(f"/r/account/{account.id}"))
    assert "Anna on it" in page and "Ben on it" not in page


def test_rep_does_not_learn_the_title_of_a_record_she_may_not_read_from_a_prefilled_form(web_crm, sign_in):
    secret = make_record(web_crm, "deal", name="Ben's secret deal", owner=user_id(web_crm, "ben"))
    response = sign_in("anna").get(f"/r/activity/new?deal={secret.id}")
    assert response.status_code == 200
    assert "secret deal" not in text(response)


def test_rep_cannot_link_her_record_to_one_she_may_not_read(web_crm, sign_in):
    secret = make_record(web_crm, "account", name="Ben's secret account", owner=user_id(web_crm, "ben"))
    anna = sign_in("anna")
    response = anna.post("/r/deal/new", data={"name": "Mine", "account": str(secret.id)})
    assert response.status_code == 422
    assert web_crm.compiled.entities["deal"].model.select().count() == 0


def test_link_pickers_offer_only_records_the_user_may_read(web_crm, sign_in):
    mine = make_record(web_crm, "account", name="Anna's account", owner=user_id(web_crm, "anna"))
    make_record(web_crm, "account", name="Ben's account", owner=user_id(web_crm, "ben"))
    page = text(sign_in("anna").get("/r/deal/new"))
    assert f'<option value="{mine.id}">Anna&#39;s account</option>' in page
    assert "Ben&#39;s account" not in page


# --- read-only fields ---------------------------------------------------------------------------

READ_ONLY = {"lead": ("score", "99", 0), "deal": ("probability", "99", 10)}


@pytest.mark.parametrize("entity", sorted(READ_ONLY))
def test_read_only_field_is_not_on_the_reps_form(web_crm, sign_in, records, entity):
    field = READ_ONLY[entity][0]
    anna = sign_in("anna")
    for url in (f"/r/{entity}/new", f"/r/{entity}/{records[entity]['anna'].id}/edit"):
        names = {control.get("name") for control in form_controls(text(anna.get(url)))}
        assert field not in names
    assert field in {c.get("name") for c in form_controls(text(sign_in("maria").get(f"/r/{entity}/new")))}


@pytest.mark.parametrize("entity", sorted(READ_ONLY))
def test_crafted_post_does_not_change_a_read_only_field(web_crm, sign_in, records, entity):
    field, value, unchanged = READ_ONLY[entity]
    anna, record = sign_in("anna"), records[entity]["anna"]
    before = getattr(stored(web_crm, entity, record.id), field)
    edited = submit_form(anna, f"/r/{entity}/{record.id}/edit", **CHANGE[entity], **{field: value})
    assert edited.status_code == 302
    saved = stored(web_crm, entity, record.id)
    assert getattr(saved, field) == before and saved.version == 2
    created = submit_form(anna, f"/r/{entity}/new", **CHANGE[entity], **{field: value})
    assert created.status_code == 302
    new = stored(web_crm, entity, int(created.location.rsplit("/", 1)[1]))
    assert getattr(new, field) == unchanged


def test_read_only_field_is_still_shown_on_the_record_page(web_crm, sign_in, records):
    record = records["lead"]["anna"]
    web_crm.records.update("lead", record.id, {"score": 73}, SYSTEM, "api")
    page = text(sign_in("anna").get(f"/r/lead/{record.id}"))
    assert "<dt>Lead score</dt><dd>73</dd>" in page


# --- support, marketing, admin ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("/r/deal/", "you may not read deals"),
        ("/r/deal/new", "you may not create deals"),
        ("/r/deal/export.csv", "you may not read deals"),
        ("/r/deal/lookup?q=", "you may not read deals"),
        ("/board/deal_pipeline", "you may not read deals"),
    ],
)
def test_support_agent_gets_403_on_deal_pages(sign_in, url, reason):
    response = sign_in("gina").get(url)
    assert response.status_code == 403
    assert reason in text(response)


def test_support_agent_cannot_open_or_post_to_a_deal(web_crm, sign_in):
    deal = make_record(web_crm, "deal", name="Not for support")
    gina = sign_in("gina")
    assert gina.get(f"/r/deal/{deal.id}").status_code == 403
    assert gina.post("/r/deal/new", data={"name": "Sneaky"}).status_code == 403
    assert gina.post(f"/r/deal/{deal.id}/edit", data={"name": "Sneaky"}).status_code == 403
    assert web_crm.compiled.entities["deal"].model.select().count() == 1
    assert stored(web_crm, "deal", deal.id).name == "Not for support"


def test_support_agent_sees_no_deal_entries_in_the_navigation(sign_in):
    page = text(sign_in("gina").get("/my"))
    nav = re.search(r'<nav[^>]* aria-label="Main"[^>]*>(.*?)</nav>', page, re.S).group(1)
    assert "/r/ticket/" in nav and "/board/ticket_lifecycle" in nav
    for hidden in ("/r/deal/", "/board/deal_pipeline", "/r/lead/", "/r/quote/", "Deals", "Deal pipeline"):
        assert hidden not in nav


def test_marketing_reads_leads_but_cannot_delete_them(web_crm, sign_in):
    record = make_record(web_crm, "lead", last_name="Kept")
    julia = sign_in("julia")
    assert julia.get("/r/lead/").status_code == 200
    page = text(julia.get(f"/r/lead/{record.id}"))
    assert "<h1>Kept</h1>" in page
    assert f'href="/r/lead/{record.id}/delete"' not in page
    assert '<option value="delete">' not in text(julia.get("/r/lead/")), "no bulk delete either"
    assert julia.get(f"/r/lead/{record.id}/delete").status_code == 403
    refused = julia.post(f"/r/lead/{record.id}/delete", data={"_version": "1"})
    assert refused.status_code == 403
    assert "you may not delete leads" in text(refused)
    bulk = julia.post("/r/lead/bulk", data={"action": "delete", "ids": [str(record.id)], "confirm": "yes"})
    assert bulk.status_code == 403
    assert stored(web_crm, "lead", record.id) is not None


def test_a_move_limited_to_roles_refuses_other_roles_with_the_reason(web_crm, sign_in):
    record = make_record(web_crm, "lead", score=80, email="hot@example.com", country="DE")
    web_crm.records.transition("lead", record.id, "contacted", SYSTEM, "api")
    response = sign_in("julia").post(f"/r/lead/{record.id}/move", data={"to": "qualified", "field": "status"})
    assert response.status_code == 409
    assert "only sales, sales-manager may make this move" in text(response)
    assert stored(web_crm, "lead", record.id).status == "contacted"


@pytest.mark.parametrize("name", ["anna", "maria", "gina", "julia"])
def test_non_admins_get_403_on_the_admin_console(sign_in, name):
    response = sign_in(name).get("/admin/")
    assert response.status_code == 403


def test_admin_opens_the_admin_console_and_sees_it_in_the_menu(sign_in):
    admin = sign_in("admin")
    assert admin.get("/admin/").status_code == 200
    assert 'href="/admin/"' in text(admin.get("/my"))
    assert 'href="/admin/"' not in text(sign_in("maria").get("/my"))


def test_users_delete_only_their_own_saved_views(web_crm, sign_in):
    maria = sign_in("maria")
    maria.post("/views/lead", data={"name": "Maria's view", "query": "f.country=DE"})
    view = web_crm.tables.SavedView.get()
    assert sign_in("anna").post(f"/views/{view.id}/delete").status_code == 403
    assert web_crm.tables.SavedView.select().count() == 1


def test_only_a_superuser_shares_a_view(web_crm, sign_in):
    sign_in("maria").post("/views/lead", data={"name": "Maria's", "query": "", "shared": "1"})
    sign_in("admin").post("/views/lead", data={"name": "Everyone's", "query": "", "shared": "1"})
    shared = {v.name: v.shared for v in web_crm.tables.SavedView.select()}
    assert shared == {"Maria's": False, "Everyone's": True}
    page = html.unescape(text(sign_in("anna").get("/r/lead/")))
    assert "Everyone's" in page and "Maria's" not in page


def test_saving_a_view_of_an_entity_one_may_not_read_is_403(web_crm, sign_in):
    assert sign_in("gina").post("/views/deal", data={"name": "Deals", "query": ""}).status_code == 403
    assert web_crm.tables.SavedView.select().count() == 0


# --- signed out -------------------------------------------------------------------------------------

SIGNED_IN_PAGES = [
    ("GET", "/"),
    ("GET", "/my"),
    ("GET", "/calendar"),
    ("GET", "/dashboards/"),
    ("GET", "/board/deal_pipeline"),
    ("GET", "/r/lead/"),
    ("GET", "/r/lead/new"),
    ("GET", "/r/lead/1"),
    ("GET", "/r/lead/1/edit"),
    ("GET", "/r/lead/1/move?to=contacted"),
    ("GET", "/r/lead/1/delete"),
    ("GET", "/r/lead/export.csv"),
    ("GET", "/r/lead/lookup?q=a"),
    ("GET", "/r/nothing/"),
    ("GET", "/admin/"),
    ("POST", "/r/lead/new"),
    ("POST", "/r/lead/1/edit"),
    ("POST", "/r/lead/1/move"),
    ("POST", "/r/lead/1/delete"),
    ("POST", "/r/lead/bulk"),
    ("POST", "/views/lead"),
    ("POST", "/views/1/delete"),
    ("POST", "/logout"),
]


@pytest.mark.parametrize(("method", "url"), SIGNED_IN_PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(web_app, web_crm, method, url):
    record = make_record(web_crm, "lead", last_name="Private")
    assert record.id == 1, "the URLs name it"
    response = web_app.test_client().open(url, method=method, data={"to": "contacted"})
    assert response.status_code == 302
    assert response.location.startswith("/login?next=")
    assert stored(web_crm, "lead", 1).last_name == "Private"


@pytest.mark.parametrize("url", ["/login", "/healthz", "/static/crm.css", "/forms/web_to_lead", "/forms/contact_us"])
def test_anonymous_visitors_may_open_the_public_pages(web_app, url):
    with web_app.test_client().get(url) as response:
        assert response.status_code == 200


def test_a_form_that_is_not_public_is_not_served(web_app):
    assert web_app.test_client().get("/forms/quick_create").status_code == 404
    assert web_app.test_client().post("/forms/quick_create", data={"name": "x"}).status_code == 404


def test_a_deactivated_user_is_signed_out_and_cannot_sign_in(web_app, web_crm, sign_in):
    anna = sign_in("anna")
    web_crm.directory.set_flags(user_id(web_crm, "anna"), active=False)
    response = anna.get("/my")
    assert response.status_code == 302 and response.location.startswith("/login")
    again = web_app.test_client().post("/login", data={"email": "anna@demo.example.com", "password": "demo"})
    assert again.status_code == 400 and "Wrong email or password." in text(again)


def test_the_403_page_is_a_proper_page_with_the_reason(web_crm, sign_in, records):
    response = sign_in("anna").get(f"/r/deal/{records['deal']['ben'].id}")
    assert response.status_code == 403 and response.mimetype == "text/html"
    page = text(response)
    assert "<title>Not allowed · Demo Company</title>" in page
    assert "<h1>Not allowed</h1>" in page
    assert '<p class="error-message">you may only read your own deals</p>' in page
    assert re.search(r'<nav[^>]* aria-label="Main"', page) and '<a href="/">Back to the start page</a>' in page
