"""What users type never runs as script (XSS), other sites cannot post for a
signed-in user (CSRF), redirects stay on the site, and the session cookie
is out of reach of scripts and of other sites' requests."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest
from markupsafe import escape

from crm_platform.seed import DEMO_PASSWORD, seed_demo

from . import web_fixtures
from .runtime_fixtures import build_app, stored
from .web_fixtures import (
    cheap_password_hashes,
    count,
    csrf_token,
    field_errors,
    make_record,
    user_id,
)

web_app, web_crm, sign_in = web_fixtures.web_app, web_fixtures.web_crm, web_fixtures.sign_in  # the fixtures

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"><img src=x onerror=alert(1)>'
JS_URL = "javascript:alert(1)"
# What must never reach a page unescaped: the payloads' working parts.
DANGEROUS = ("<script>alert", "<img src=x", "<img/src=x", "onerror=alert(1)>")


def text(response) -> str:
    return response.get_data(as_text=True)


def assert_inert(page: str) -> None:
    """No payload made it into the page as markup, and no link runs script."""
    for raw in DANGEROUS:
        assert raw not in page, raw
    assert not re.search(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", page, re.I)


# --- XSS: each text-like field type, through the form ----------------------------------------

# (field of a lead, what is typed, what the page must show instead)
TEXT_FIELDS = [
    ("first_name", SCRIPT, escape(SCRIPT)),  # string
    ("company", ATTRIBUTE, escape(ATTRIBUTE)),  # string
    ("job_title", JS_URL, JS_URL),  # string: shown as text, never a link
    ("notes", f"{SCRIPT}\n{ATTRIBUTE}", f"{escape(SCRIPT)}<br>{escape(ATTRIBUTE)}"),  # text
    ("email", f"{SCRIPT}@evil.example", escape(f"{SCRIPT}@evil.example")),  # email (no spaces allowed)
    ("email", '"><img/src=x/onerror=alert(1)>@evil.example', "&#34;&gt;&lt;img/src=x/onerror=alert(1)&gt;"),
    ("website", f"https://evil.example/{ATTRIBUTE}", escape(f"https://evil.example/{ATTRIBUTE}")),  # url
    ("tags", f"{SCRIPT}, {ATTRIBUTE}", f'<span class="tag">{escape(SCRIPT)}</span>'),  # tags
]


@pytest.mark.parametrize(
    ("field", "typed", "shown"),
    TEXT_FIELDS,
    ids=[
        "string-script",
        "string-attribute",
        "string-js-url",
        "text",
        "email-script",
        "email-attribute",
        "url",
        "tags",
    ],
)
def test_markup_typed_into_a_field_is_shown_as_text_on_every_page(web_crm, sign_in, field, typed, shown):
    admin = sign_in("admin")
    data = {"last_name": "Payload", "source": "event", "country": "DE", field: typed}
    created = admin.post("/r/lead/new", data=data)
    assert created.status_code == 302, field_errors(text(created))
    record_id = int(created.location.rsplit("/", 1)[1])
    admin.post(f"/r/lead/{record_id}/move", data={"to": "contacted", "field": "status"})
    for url in (f"/r/lead/{record_id}", "/r/lead/", f"/r/lead/{record_id}/edit", "/board/lead_lifecycle"):
        page = text(admin.get(url))
        assert_inert(page)
    assert str(shown) in text(admin.get(f"/r/lead/{record_id}"))


@pytest.mark.parametrize(
    ("field", "typed", "message"),
    [
        pytest.param("phone", SCRIPT, "has the wrong format", id="phone-script"),
        pytest.param("mobile", ATTRIBUTE, "has the wrong format", id="phone-attribute"),
        pytest.param("website", JS_URL, "is not a web address (http:// or https://)", id="url-javascript"),
        pytest.param(
            "website",
            "JavaScript://evil.example/%0aalert(1)",
            "is not a web address (http:// or https://)",
            id="url-javascript-with-host",
        ),
        pytest.param(
            "website",
            "data:text/html,<script>alert(1)</script>",
            "is not a web address (http:// or https://)",
            id="url-data",
        ),
    ],
)
def test_fields_that_cannot_hold_markup_or_scripts_refuse_it(web_crm, sign_in, field, typed, message):
    response = sign_in("admin").post("/r/lead/new", data={"last_name": "Payload", "source": "event", field: typed})
    assert response.status_code == 422
    assert field_errors(text(response)) == {field: [str(escape(message))]}
    assert_inert(text(response))
    assert count(web_crm, "lead") == 0


# --- XSS: titles of linked records, user names, timelines, boards, calendar ----------------------


@pytest.fixture
def planted(web_crm):
    """Records and a user whose names carry payloads, and the changes that put them on timelines."""
    mallory = web_crm.directory.create_user(
        "mallory@demo.example.com", SCRIPT, DEMO_PASSWORD, roles=["sales"], teams=["sales-dach"]
    )
    actor = web_crm.directory.actor(mallory)
    account = make_record(web_crm, "account", name=ATTRIBUTE, owner=mallory, website=f"https://x.example/{SCRIPT}")
    deal = web_crm.records.create(
        "deal",
        {"name": SCRIPT, "account": account.id, "next_step": JS_URL, "amount": 100, "owner": mallory},
        actor,
        "form",
    )
    web_crm.records.update("deal", deal.id, {"next_step": ATTRIBUTE, "description": SCRIPT}, actor, "form")
    lead = web_crm.records.create(
        "lead", {"first_name": SCRIPT, "last_name": ATTRIBUTE, "source": "event", "tags": [SCRIPT]}, actor, "form"
    )
    activity = web_crm.records.create(
        "activity",
        {"kind": "call", "subject": SCRIPT, "starts_at": "2026-11-24T09:00:00Z", "deal": deal.id, "lead": lead.id},
        actor,
        "form",
    )
    return {"deal": deal.id, "account": account.id, "lead": lead.id, "activity": activity.id, "mallory": mallory}


PAGES = [
    ("admin", "/r/deal/"),
    ("admin", "/r/deal/{deal}"),
    ("admin", "/r/deal/{deal}/edit"),
    ("admin", "/r/deal/{deal}/move?to=proposal"),
    ("admin", "/r/deal/{deal}/delete"),
    ("admin", "/r/account/{account}"),
    ("admin", "/r/account/{account}/edit"),
    ("admin", "/r/lead/"),
    ("admin", "/r/lead/{lead}"),
    ("admin", "/r/activity/"),
    ("admin", "/r/activity/{activity}"),
    ("admin", "/r/activity/new?deal={deal}&lead={lead}"),
    ("admin", "/board/deal_pipeline"),
    ("admin", "/board/lead_lifecycle"),
    ("admin", "/calendar?all=1"),
    ("mallory", "/my"),
    ("mallory", "/calendar"),
    ("mallory", "/r/deal/{deal}"),
    ("mallory", "/board/deal_pipeline"),
]


@pytest.mark.parametrize(("who", "url"), PAGES)
def test_planted_payloads_are_escaped_on_every_page(web_crm, sign_in, planted, who, url):
    response = sign_in(who).get(url.format(**planted))
    assert response.status_code == 200
    page = text(response)
    assert_inert(page)
    assert escape(SCRIPT) in page


def test_linked_records_title_and_owners_name_are_escaped_in_the_deal_list(web_crm, sign_in, planted):
    page = text(sign_in("admin").get("/r/deal/"))
    assert f'<td data-label="Account">{escape(ATTRIBUTE)}</td>' in page
    assert f'<td data-label="Owner">{escape(SCRIPT)}</td>' in page
    assert f'<a href="/r/deal/{planted["deal"]}">{escape(SCRIPT)}</a>' in page


def test_timeline_shows_the_changed_values_and_who_changed_them_escaped(web_crm, sign_in, planted):
    page = text(sign_in("admin").get(f"/r/deal/{planted['deal']}"))
    timeline = page[page.index('<section class="card timeline"') :]
    assert f"by {escape(SCRIPT)}" in timeline
    assert f"<strong>Next step</strong>: {JS_URL} → {escape(ATTRIBUTE)}" in timeline
    assert_inert(timeline)


def test_bulk_confirmation_lists_titles_escaped(web_crm, sign_in, planted):
    response = sign_in("admin").post("/r/deal/bulk", data={"action": "delete", "ids": [str(planted["deal"])]})
    assert f"<li>{escape(SCRIPT)}</li>" in text(response)
    assert_inert(text(response))


@pytest.mark.parametrize(
    "url",
    [
        f"/r/lead/?q={SCRIPT}",
        f"/r/lead/?sort={ATTRIBUTE}",
        f"/r/lead/?f.country={ATTRIBUTE}",
        f"/r/lead/?f.employees.from={ATTRIBUTE}",
        f"/calendar?month={SCRIPT}",
        f"/r/{SCRIPT}/",
        f"/board/{SCRIPT}",
    ],
)
def test_values_from_the_url_are_escaped(web_crm, sign_in, url):
    response = sign_in("admin").get(url)
    assert response.status_code in (200, 404)
    assert_inert(text(response))


def test_saved_view_name_and_query_are_escaped(web_crm, sign_in):
    admin = sign_in("admin")
    admin.post("/views/lead", data={"name": SCRIPT, "query": f'x="{ATTRIBUTE}'})
    page = text(admin.get("/r/lead/"))
    assert escape(SCRIPT) in page
    assert_inert(page)


# --- CSRF ----------------------------------------------------------------------------------------


@pytest.fixture
def csrf_app(tmp_path, clock, monkeypatch):
    """The default pack with CSRF protection on (the production setting)."""
    cheap_password_hashes(monkeypatch)
    app = build_app(tmp_path, clock, RATELIMIT_ENABLED=False)
    crm = app.extensions["crm"]
    crm.init_db()
    seed_demo(crm.directory)
    yield app
    crm.database.close()


def signed_in(app, name: str):
    """A client signed in as demo user ``name`` the way a browser does it, and its page's CSRF token."""
    client = app.test_client()
    token = csrf_token(text(client.get("/login")))
    response = client.post(
        "/login", data={"email": f"{name}@demo.example.com", "password": DEMO_PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    return client, csrf_token(text(client.get("/my")))


def test_sign_in_without_the_token_is_refused(csrf_app):
    client = csrf_app.test_client()
    response = client.post("/login", data={"email": "maria@demo.example.com", "password": DEMO_PASSWORD})
    assert response.status_code == 400
    assert client.get("/my").status_code == 302, "not signed in"


def lead_field(name: str):
    """What a post changes: a field of the target lead."""
    return lambda crm, lead: getattr(stored(crm, "lead", lead.id), name)


# name -> (URL, the form, what the post changes: (crm, lead) -> value)
CSRF_CASES = {
    "create": ("/r/lead/new", {"last_name": "Created", "source": "event"}, lambda crm, _: count(crm, "lead")),
    "edit": ("/r/lead/{id}/edit", {"last_name": "Changed", "source": "event"}, lead_field("last_name")),
    "move": ("/r/lead/{id}/move", {"to": "contacted", "field": "status"}, lead_field("status")),
    "delete": ("/r/lead/{id}/delete", {}, lambda crm, lead: stored(crm, "lead", lead.id) is None),
    "bulk": (
        "/r/lead/bulk",
        {"action": "move", "value": "contacted", "ids": "{id}", "confirm": "yes"},
        lead_field("status"),
    ),
    "save view": ("/views/lead", {"name": "Mine", "query": ""}, lambda crm, _: crm.tables.SavedView.select().count()),
}


@pytest.mark.parametrize("case", sorted(CSRF_CASES))
def test_post_without_the_csrf_token_is_refused_and_with_it_works(csrf_app, case):
    crm = csrf_app.extensions["crm"]
    url, form, effect = CSRF_CASES[case]
    lead = make_record(crm, "lead", last_name="Target", owner=user_id(crm, "maria"))
    url = url.format(id=lead.id)
    form = {k: v.format(id=lead.id) for k, v in form.items()}
    client, token = signed_in(csrf_app, "maria")
    before = effect(crm, lead)
    refused = client.post(url, data=form)
    assert refused.status_code == 400
    assert "The CSRF token is missing." in text(refused)
    assert effect(crm, lead) == before
    forged = client.post(url, data={**form, "csrf_token": "forged"})
    assert forged.status_code == 400 and effect(crm, lead) == before
    accepted = client.post(url, data={**form, "csrf_token": token})
    assert accepted.status_code == 302
    assert effect(crm, lead) != before


def test_sign_out_needs_the_csrf_token(csrf_app):
    client, token = signed_in(csrf_app, "maria")
    assert client.post("/logout").status_code == 400
    assert client.get("/my").status_code == 200, "still signed in"
    assert client.get("/logout").status_code == 405, "no sign-out by a link"
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/my").status_code == 302


def test_public_form_post_needs_the_token_of_the_form(csrf_app):
    crm = csrf_app.extensions["crm"]
    visitor = csrf_app.test_client()
    token = csrf_token(text(visitor.get("/forms/web_to_lead")))
    data = {"first_name": "Eve", "last_name": "Web", "email": "eve@example.com", "country": "DE"}
    assert visitor.post("/forms/web_to_lead", data=data).status_code == 400
    assert count(crm, "lead") == 0
    assert visitor.post("/forms/web_to_lead", data={**data, "csrf_token": token}).status_code == 200
    assert count(crm, "lead") == 1


def test_kanban_json_move_needs_the_csrf_header(csrf_app):
    crm = csrf_app.extensions["crm"]
    deal = make_record(crm, "deal", owner=user_id(crm, "maria"))
    client, token = signed_in(csrf_app, "maria")
    move = {"to": "qualification", "field": "stage", "version": 1}
    refused = client.post(f"/r/deal/{deal.id}/move", json=move, headers={"Accept": "application/json"})
    assert refused.status_code == 400
    assert stored(crm, "deal", deal.id).stage == "prospecting"
    accepted = client.post(
        f"/r/deal/{deal.id}/move", json=move, headers={"Accept": "application/json", "X-CSRFToken": token}
    )
    assert accepted.status_code == 200 and accepted.json["ok"] is True
    assert stored(crm, "deal", deal.id).stage == "qualification"


def test_every_page_with_a_form_carries_the_token(csrf_app):
    crm = csrf_app.extensions["crm"]
    deal = make_record(crm, "deal", owner=user_id(crm, "maria"))
    client, _ = signed_in(csrf_app, "maria")
    for url in ("/r/deal/", f"/r/deal/{deal.id}", f"/r/deal/{deal.id}/edit", "/r/deal/new", "/board/deal_pipeline"):
        page = text(client.get(url))
        forms = re.findall(r'<form[^>]*method="post".*?</form>', page, re.S)
        assert forms, url
        for form in forms:
            assert re.search(r'<input type="hidden" name="csrf_token" value="[^"]+">', form), (url, form[:80])


# --- redirects stay on the site ------------------------------------------------------------------

OFF_SITE = [
    "https://evil.example/",
    "//evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "https:evil.example",
    "javascript:alert(1)",
    "/\t/evil.example",
    " //evil.example",
    "/r/lead/\r\nSet-Cookie: evil=1",
]


def lands_on_site(location: str) -> bool:
    """Where a browser goes from ``location`` (it reads ``\\`` as ``/`` and drops tabs) is this site."""
    cleaned = location.replace("\\", "/").replace("\t", "").replace("\n", "").strip()
    target = urlsplit(urljoin("http://localhost/login", cleaned))
    return target.scheme == "http" and target.netloc == "localhost"


@pytest.mark.parametrize("target", OFF_SITE)
def test_sign_in_does_not_redirect_off_the_site(web_app, target):
    response = web_app.test_client().post(
        "/login", query_string={"next": target}, data={"email": "anna@demo.example.com", "password": DEMO_PASSWORD}
    )
    assert response.status_code == 302
    assert lands_on_site(response.location), response.location
    assert "evil=1" not in "".join(response.headers.getlist("Set-Cookie"))


def test_sign_in_follows_next_on_the_site(web_app):
    response = web_app.test_client().post(
        "/login",
        query_string={"next": "/r/lead/?q=x"},
        data={"email": "anna@demo.example.com", "password": DEMO_PASSWORD},
    )
    assert response.location == "/r/lead/?q=x"


@pytest.mark.parametrize("back", OFF_SITE)
def test_bulk_back_off_the_site_is_not_used(web_crm, sign_in, back):
    record = make_record(web_crm, "lead")
    maria = sign_in("maria")
    form = {"action": "move", "value": "contacted", "ids": [str(record.id)], "back": back}
    asked = text(maria.post("/r/lead/bulk", data=form))
    cancel = re.search(r'<a href="([^"]*)">Cancel</a>', asked).group(1)
    assert cancel == "/r/lead/"
    assert_inert(asked)
    done = maria.post("/r/lead/bulk", data={**form, "confirm": "yes"})
    assert done.status_code == 302 and done.location == "/r/lead/"
    assert stored(web_crm, "lead", record.id).status == "contacted"


def test_bulk_back_on_the_site_is_used(web_crm, sign_in):
    record = make_record(web_crm, "lead")
    form = {"action": "move", "value": "contacted", "ids": [str(record.id)], "back": "/r/lead/?f.country=DE"}
    done = sign_in("maria").post("/r/lead/bulk", data={**form, "confirm": "yes"})
    assert done.location == "/r/lead/?f.country=DE"


def test_saved_view_with_a_line_break_in_its_query_redirects_to_the_list(web_crm, sign_in):
    response = sign_in("admin").post("/views/lead", data={"name": "Split", "query": "q=a\r\nSet-Cookie: evil=1"})
    assert response.status_code == 302
    assert response.location.startswith("/r/lead/")
    assert "evil=1" not in "".join(response.headers.getlist("Set-Cookie"))


# --- the session cookie ----------------------------------------------------------------------------


def test_session_cookie_is_http_only_and_same_site_lax(web_app):
    response = web_app.test_client().post("/login", data={"email": "anna@demo.example.com", "password": DEMO_PASSWORD})
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert len(cookies) == 1
    attributes = [part.strip() for part in cookies[0].split(";")]
    assert "HttpOnly" in attributes and "SameSite=Lax" in attributes


def test_sign_in_attempts_are_limited_per_address(tmp_path, clock, monkeypatch):
    cheap_password_hashes(monkeypatch)
    app = build_app(tmp_path, clock, WTF_CSRF_ENABLED=False, LOGIN_RATE_LIMIT="3 per minute")
    crm = app.extensions["crm"]
    crm.init_db()
    seed_demo(crm.directory)
    try:
        client = app.test_client()
        guesses = [
            client.post("/login", data={"email": "anna@demo.example.com", "password": f"guess {n}"}).status_code
            for n in range(3)
        ]
        assert guesses == [400, 400, 400]
        right = client.post("/login", data={"email": "anna@demo.example.com", "password": DEMO_PASSWORD})
        assert right.status_code == 429, "the fourth try is refused, even with the right password"
        assert client.get("/my").status_code == 302
        assert client.get("/login").status_code == 200, "only attempts are limited"
    finally:
        crm.database.close()


def test_a_failed_sign_in_says_the_same_for_an_unknown_email_and_a_wrong_password(web_app):
    unknown = web_app.test_client().post("/login", data={"email": "nobody@demo.example.com", "password": "x"})
    wrong = web_app.test_client().post("/login", data={"email": "anna@demo.example.com", "password": "x"})
    assert unknown.status_code == wrong.status_code == 400
    messages = [re.findall(r'<p class="error"[^>]*>([^<]*)</p>', text(r)) for r in (unknown, wrong)]
    assert messages == [["Wrong email or password."]] * 2
