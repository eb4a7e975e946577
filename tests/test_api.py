"""The REST API: tokens, listing, reads and writes through the write path, JSON errors,
the token page and command, and the OpenAPI document."""

from __future__ import annotations

import datetime as dt

import pytest
from jsonschema import Draft202012Validator

from crm_platform.web.api.tokens import create_token, list_tokens, revoke_token

from . import web_fixtures
from .runtime_fixtures import build_app
from .web_fixtures import SYSTEM, make_record, user_id

web_app, web_crm, sign_in = web_fixtures.web_app, web_fixtures.web_crm, web_fixtures.sign_in  # the fixtures


@pytest.fixture
def client(web_app):
    return web_app.test_client()


@pytest.fixture
def auth(web_crm):
    """``auth("anna")``: request headers with a new API token of demo user anna."""

    def headers_for(name: str) -> dict:
        token, _ = create_token(web_crm.tables, user_id(web_crm, name), "test", web_crm.clock.utcnow())
        return {"Authorization": f"Bearer {token}"}

    return headers_for


def deal(crm, owner: str, **data):
    return make_record(crm, "deal", owner=user_id(crm, owner), **data)


# --- authentication ------------------------------------------------------------------------


def test_request_without_token_is_401_json_with_bearer_challenge(client):
    response = client.get("/api/deal")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Bearer" in response.get_json()["error"]


def test_unknown_token_is_401(client):
    response = client.get("/api/deal", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401
    assert response.get_json() == {"error": "the API token is unknown or revoked"}


def test_revoked_token_is_401(client, web_crm, auth):
    headers = auth("anna")
    assert client.get("/api/deal", headers=headers).status_code == 200
    (token,) = list_tokens(web_crm.tables, user_id(web_crm, "anna"))
    assert revoke_token(web_crm.tables, token.id, web_crm.clock.utcnow())
    assert client.get("/api/deal", headers=headers).status_code == 401


def test_token_of_deactivated_user_is_401(client, web_crm, auth):
    headers = auth("anna")
    web_crm.directory.set_flags(user_id(web_crm, "anna"), active=False)
    response = client.get("/api/deal", headers=headers)
    assert response.status_code == 401
    assert "deactivated" in response.get_json()["error"]


def test_session_cookie_does_not_authenticate_the_api(sign_in):
    response = sign_in("anna").get("/api/deal")
    assert response.status_code == 401
    assert response.is_json


def test_using_a_token_records_when_it_was_last_used(client, web_crm, auth):
    headers = auth("anna")
    (before,) = list_tokens(web_crm.tables, user_id(web_crm, "anna"))
    assert before.last_used_at is None
    client.get("/api/deal", headers=headers)
    (after,) = list_tokens(web_crm.tables, user_id(web_crm, "anna"))
    assert after.last_used_at == web_crm.clock.utcnow()


def test_only_the_tokens_digest_is_stored(web_crm):
    token, info = create_token(web_crm.tables, user_id(web_crm, "anna"), "sync", web_crm.clock.utcnow())
    row = web_crm.tables.ApiToken.get_by_id(info.id)
    assert token not in (row.digest, row.prefix, row.name)
    assert token.startswith(row.prefix) and len(row.digest) == 64


# --- listing -----------------------------------------------------------------------------------


def test_list_filters_by_equality_range_and_owner(client, web_crm, auth):
    small = deal(web_crm, "anna", name="Small", amount=100)
    big = deal(web_crm, "anna", name="Big", amount=5000, close_date="2026-12-01")
    deal(web_crm, "ben", name="Other", amount=9000)
    headers = auth("admin")

    def names(query: str) -> list[str]:
        response = client.get(f"/api/deal?{query}", headers=headers)
        assert response.status_code == 200, response.get_json()
        return sorted(row["name"] for row in response.get_json()["data"])

    assert names(f"owner={user_id(web_crm, 'anna')}") == ["Big", "Small"]
    assert names("amount__gte=1000&amount__lte=6000") == ["Big"]
    assert names("close_date__gte=2026-12-01&close_date__lte=2026-12-01") == ["Big"]
    assert names(f"id={small.id}") == ["Small"]
    assert names("name=Big") == ["Big"]
    assert names("stage=prospecting") == ["Big", "Other", "Small"]
    assert names("q=Oth") == ["Other"]
    web_crm.records.transition("deal", big.id, "qualification", SYSTEM, "api")
    assert names("stage=qualification") == ["Big"]


def test_list_sorts_pages_and_selects_fields(client, web_crm, auth):
    for amount in (300, 100, 200):
        deal(web_crm, "anna", name=f"Deal {amount}", amount=amount)
    headers = auth("admin")
    first = client.get("/api/deal?sort=-amount&per_page=2&fields=name,amount", headers=headers).get_json()
    assert first["data"] == [
        {"id": first["data"][0]["id"], "name": "Deal 300", "amount": 300},
        {"id": first["data"][1]["id"], "name": "Deal 200", "amount": 200},
    ]
    assert (first["page"], first["per_page"], first["total"]) == (1, 2, 3)
    second = client.get("/api/deal?sort=-amount&per_page=2&page=2&fields=name", headers=headers).get_json()
    assert [row["name"] for row in second["data"]] == ["Deal 100"]
    ascending = client.get("/api/deal?sort=amount&fields=amount", headers=headers).get_json()
    assert [row["amount"] for row in ascending["data"]] == [100, 200, 300]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("colour=red", "'colour' is not a field of deals"),
        ("amount__gte=lots", "amount__gte: 'lots' is not a valid number"),
        ("name__gte=a", "ranges work only on numbers, dates and times"),
        ("stage=nowhere", "stage: 'nowhere' is not one of"),
        ("sort=-colour", "sort: 'colour' is not a sortable field"),
        ("per_page=500", "per_page: must be between 1 and 200"),
        ("fields=name,colour", "fields: not fields of this record: colour"),
    ],
)
def test_list_refuses_a_query_it_cannot_read_with_400(client, auth, query, message):
    response = client.get(f"/api/deal?{query}", headers=auth("admin"))
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_sales_rep_lists_and_reads_only_her_own_deals(client, web_crm, auth):
    mine = deal(web_crm, "anna", name="Anna's deal")
    other = deal(web_crm, "ben", name="Ben's deal")
    headers = auth("anna")
    listed = client.get("/api/deal", headers=headers).get_json()
    assert [row["id"] for row in listed["data"]] == [mine.id]
    assert listed["total"] == 1
    assert client.get(f"/api/deal/{mine.id}", headers=headers).status_code == 200
    # The write path's answer: the record exists, but is not hers (403, as on the web pages).
    response = client.get(f"/api/deal/{other.id}", headers=headers)
    assert response.status_code == 403
    assert response.get_json() == {"error": "you may only read your own deals"}
    assert client.patch(f"/api/deal/{other.id}", json={"name": "Mine now"}, headers=headers).status_code == 403


def test_entity_the_user_may_not_read_is_403(client, auth):
    response = client.get("/api/ticket", headers=auth("anna"))
    assert response.status_code == 403
    assert response.get_json() == {"error": "you may not read tickets"}


# --- reading and writing ------------------------------------------------------------------------


def test_record_json_has_every_field_money_currency_links_and_system_fields(client, web_crm, auth):
    account = make_record(web_crm, "account", name="Alpenblick GmbH")
    record = deal(web_crm, "anna", name="Big", amount=1234.5, account=account.id)
    body = client.get(f"/api/deal/{record.id}", headers=auth("admin")).get_json()
    assert body["amount"] == 1234.5 and body["amount_currency"] == "EUR"
    assert body["account"] == account.id
    assert body["version"] == 1 and body["id"] == record.id
    assert body["created_at"].endswith("Z")
    assert set(web_crm.compiled.entities["deal"].definition.fields) <= set(body)


def test_create_is_201_with_location_and_audited_with_channel_api(client, web_crm, auth):
    response = client.post("/api/deal", json={"name": "From the ERP", "amount": 99}, headers=auth("anna"))
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/api/deal/{body['id']}"
    assert body["owner"] == user_id(web_crm, "anna")  # the creator owns it, as on the form
    Audit = web_crm.tables.Audit
    entry = Audit.get((Audit.entity == "deal") & (Audit.record_id == body["id"]))
    assert (entry.operation, entry.channel, entry.user_id) == ("create", "api", user_id(web_crm, "anna"))


def test_invalid_record_is_422_with_messages_per_field(client, auth):
    response = client.post("/api/deal", json={"amount": "lots", "colour": "red"}, headers=auth("admin"))
    assert response.status_code == 422
    assert response.get_json() == {
        "error": "the record is not valid",
        "fields": {
            "amount": ["must be a number"],
            "colour": ["is not a field of this record (or cannot be set)"],
            "name": ["is required"],
        },
    }


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", ""])
def test_malformed_body_is_400(client, auth, body):
    response = client.post("/api/deal", data=body, content_type="application/json", headers=auth("admin"))
    assert response.status_code == 400
    assert response.is_json and response.get_json()["error"]


def test_read_only_field_for_the_role_is_refused_with_422(client, web_crm, auth):
    lead = make_record(web_crm, "lead", owner=user_id(web_crm, "anna"))
    response = client.patch(f"/api/lead/{lead.id}", json={"score": 99}, headers=auth("anna"))
    assert response.status_code == 422
    assert response.get_json()["fields"] == {"score": ["is read-only"]}


def test_patch_changes_only_the_fields_sent(client, web_crm, auth):
    record = deal(web_crm, "anna", name="Old", amount=10)
    response = client.patch(f"/api/deal/{record.id}", json={"name": "New", "version": 1}, headers=auth("anna"))
    assert response.status_code == 200
    body = response.get_json()
    assert (body["name"], body["amount"], body["version"]) == ("New", 10, 2)
    assert response.headers["ETag"] == '"2"'


def test_patch_on_a_stale_version_is_409_naming_the_changed_fields(client, web_crm, auth):
    record = deal(web_crm, "anna", name="Old", amount=10)
    web_crm.records.update("deal", record.id, {"amount": 20}, SYSTEM, "api")
    headers = auth("anna")
    response = client.patch(f"/api/deal/{record.id}", json={"name": "Mine", "version": 1}, headers=headers)
    assert response.status_code == 409
    body = response.get_json()
    assert body["fields"] == ["amount", "weighted_amount"] and body["current_version"] == 2
    assert "changed by someone else" in body["error"]
    by_header = client.patch(f"/api/deal/{record.id}", json={"name": "Mine"}, headers={**headers, "If-Match": '"1"'})
    assert by_header.status_code == 409
    fresh = client.patch(f"/api/deal/{record.id}", json={"name": "Mine"}, headers={**headers, "If-Match": '"2"'})
    assert fresh.status_code == 200


def test_transition_moves_the_record_and_fills_required_fields(client, web_crm, auth):
    record = deal(web_crm, "anna", name="Deal")
    headers = auth("anna")
    response = client.post(f"/api/deal/{record.id}/transitions", json={"to": "lost", "data": {"lost_reason": "price"}},
                           headers=headers)  # fmt: skip
    assert response.status_code == 200
    body = response.get_json()
    assert (body["stage"], body["lost_reason"], body["probability"]) == ("lost", "price", 0)
    Audit = web_crm.tables.Audit
    entry = Audit.get((Audit.record_id == record.id) & (Audit.operation == "transition"))
    assert entry.channel == "api"


def test_refused_transition_is_409_with_reasons(client, web_crm, auth):
    record = deal(web_crm, "anna", name="Deal")
    headers = auth("anna")
    skipped = client.post(f"/api/deal/{record.id}/transitions", json={"to": "won"}, headers=headers)
    assert skipped.status_code == 409
    assert skipped.get_json()["reasons"] == [
        "there is no move from Prospecting to Closed won (allowed: Qualification, Closed lost)"
    ]
    missing = client.post(f"/api/deal/{record.id}/transitions", json={"to": "lost"}, headers=headers)
    assert missing.status_code == 409
    assert missing.get_json()["reasons"] == ["Lost reason must be filled in to enter Closed lost"]
    assert client.get(f"/api/deal/{record.id}", headers=headers).get_json()["stage"] == "prospecting"


def test_stage_cannot_be_patched_directly(client, web_crm, auth):
    record = deal(web_crm, "anna", name="Deal")
    response = client.patch(f"/api/deal/{record.id}", json={"stage": "won"}, headers=auth("anna"))
    assert response.status_code == 422
    assert "moving the record" in response.get_json()["fields"]["stage"][0]


def test_delete_is_204_then_404(client, web_crm, auth):
    record = deal(web_crm, "anna", name="Deal")
    headers = auth("admin")
    assert client.delete(f"/api/deal/{record.id}", headers=headers).status_code == 204
    response = client.get(f"/api/deal/{record.id}", headers=headers)
    assert response.status_code == 404
    assert response.get_json() == {"error": f"there is no Deal #{record.id}"}
    Audit = web_crm.tables.Audit
    assert Audit.get((Audit.record_id == record.id) & (Audit.operation == "delete")).channel == "api"


def test_sales_rep_may_not_delete_deals(client, web_crm, auth):
    record = deal(web_crm, "anna", name="Deal")
    response = client.delete(f"/api/deal/{record.id}", headers=auth("anna"))
    assert response.status_code == 403
    assert response.get_json() == {"error": "you may not delete deals"}


def test_unknown_entity_and_url_are_404_and_wrong_method_405_all_json(client, auth):
    headers = auth("admin")
    entity = client.get("/api/spaceship", headers=headers)
    assert entity.status_code == 404 and entity.get_json() == {"error": "there is no entity 'spaceship'"}
    url = client.get("/api/deal/1/nothing/here")
    assert url.status_code == 404 and url.is_json
    method = client.put("/api/deal", json={}, headers=headers)
    assert method.status_code == 405 and method.is_json
    assert {"GET", "POST"} <= set(method.headers["Allow"].split(", "))
    assert "PUT" not in method.headers["Allow"]
    odd = client.delete("/api/contact/%C2%A2%0A", headers=headers)  # no route matches a newline
    assert odd.status_code == 404 and odd.is_json


def test_api_needs_no_csrf_token_where_the_pages_do(tmp_path, clock, monkeypatch):
    web_fixtures.cheap_password_hashes(monkeypatch)
    app = build_app(tmp_path, clock, RATELIMIT_ENABLED=False)  # CSRF on
    crm = app.extensions["crm"]
    crm.init_db()
    web_fixtures.seed_demo(crm.directory)
    token, _ = create_token(crm.tables, user_id(crm, "admin"), "t", clock.utcnow())
    response = app.test_client().post("/api/deal", json={"name": "Deal"}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201
    crm.database.close()


# --- the token page and command -------------------------------------------------------------------


def test_token_page_creates_a_token_shown_once_that_works(web_crm, sign_in):
    browser = sign_in("anna")
    created = browser.post("/account/tokens", data={"name": "ERP sync"})
    assert created.status_code == 200
    page = created.get_data(as_text=True)
    (token,) = list_tokens(web_crm.tables, user_id(web_crm, "anna"))
    start = page.index('id="new-token"')
    value = page[start:].split('value="', 1)[1].split('"', 1)[0]
    assert value.startswith(token.prefix)
    assert browser.get("/api/deal", headers={"Authorization": f"Bearer {value}"}).status_code == 200
    listing = browser.get("/account/tokens").get_data(as_text=True)
    assert "ERP sync" in listing and token.prefix in listing and value not in listing


def test_token_page_refuses_an_empty_name(web_crm, sign_in):
    response = sign_in("anna").post("/account/tokens", data={"name": "  "})
    assert response.status_code == 400
    assert "Name must not be empty" in response.get_data(as_text=True)
    assert list_tokens(web_crm.tables, user_id(web_crm, "anna")) == []


def test_token_page_revokes_own_token_but_not_another_users(client, web_crm, sign_in, auth):
    headers = auth("anna")
    (token,) = list_tokens(web_crm.tables, user_id(web_crm, "anna"))
    assert sign_in("ben").post(f"/account/tokens/{token.id}/revoke").status_code == 404
    assert client.get("/api/deal", headers=headers).status_code == 200
    revoked = sign_in("anna").post(f"/account/tokens/{token.id}/revoke")
    assert revoked.status_code == 302
    assert client.get("/api/deal", headers=headers).status_code == 401


def test_admin_sees_and_revokes_another_users_tokens(client, web_crm, sign_in, auth):
    headers = auth("anna")
    (token,) = list_tokens(web_crm.tables, user_id(web_crm, "anna"))
    admin = sign_in("admin")
    page = admin.get(f"/account/tokens?user={user_id(web_crm, 'anna')}")
    assert page.status_code == 200 and token.prefix in page.get_data(as_text=True)
    assert admin.post(f"/account/tokens/{token.id}/revoke").status_code == 302
    assert client.get("/api/deal", headers=headers).status_code == 401


def test_non_admin_may_not_open_another_users_tokens(web_crm, sign_in):
    assert sign_in("ben").get(f"/account/tokens?user={user_id(web_crm, 'anna')}").status_code == 403


def test_token_page_needs_sign_in(client):
    response = client.get("/account/tokens")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_cli_creates_a_token_that_works(web_app, web_crm, client):
    result = web_app.test_cli_runner().invoke(args=["api-token", "create", "anna@demo.example.com", "ERP"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert client.get("/api/deal", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    (info,) = list_tokens(web_crm.tables, user_id(web_crm, "anna"))
    assert info.name == "ERP"


def test_cli_lists_and_revokes_tokens(web_app, web_crm):
    runner = web_app.test_cli_runner()
    _, info = create_token(web_crm.tables, user_id(web_crm, "anna"), "ERP", web_crm.clock.utcnow())
    assert f"#{info.id} {info.prefix}" in runner.invoke(args=["api-token", "list", "anna@demo.example.com"]).output
    assert runner.invoke(args=["api-token", "revoke", str(info.id)]).exit_code == 0
    assert list_tokens(web_crm.tables, user_id(web_crm, "anna"), active_only=True) == []
    again = runner.invoke(args=["api-token", "revoke", str(info.id)])
    assert again.exit_code != 0 and "no active token" in again.output


def test_cli_names_an_unknown_user(web_app):
    result = web_app.test_cli_runner().invoke(args=["api-token", "create", "nobody@example.com", "ERP"])
    assert result.exit_code != 0
    assert "there is no user 'nobody@example.com'" in result.output


# --- the OpenAPI document ---------------------------------------------------------------------------


def test_openapi_document_is_3_1_with_paths_per_entity_and_needs_no_token(client, web_crm):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    for name, ce in web_crm.compiled.entities.items():
        assert {"get", "post"} <= set(document["paths"][f"/api/{name}"])
        assert {"get", "patch", "delete"} <= set(document["paths"][f"/api/{name}/{{id}}"])
        assert (f"/api/{name}/{{id}}/transitions" in document["paths"]) == bool(ce.workflows)
    assert document["components"]["securitySchemes"]["bearer"] == {
        **document["components"]["securitySchemes"]["bearer"],
        "type": "http",
        "scheme": "bearer",
    }


def test_openapi_schemas_are_valid_json_schema_and_mark_system_fields_read_only(client):
    schemas = client.get("/api/openapi.json").get_json()["components"]["schemas"]
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)
    assert schemas["Deal"]["properties"]["version"]["readOnly"] is True
    assert schemas["Deal"]["properties"]["weighted_amount"]["readOnly"] is True
    assert "version" not in schemas["DealInput"]["properties"]
    assert schemas["DealInput"]["required"] == ["name"]


def test_record_matches_its_documented_schema(client, web_crm, auth):
    record = deal(web_crm, "anna", name="Deal", amount=10, close_date="2026-12-01")
    document = client.get("/api/openapi.json").get_json()
    body = client.get(f"/api/deal/{record.id}", headers=auth("admin")).get_json()
    schema = document["components"]["schemas"]["Deal"]
    errors = list(Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).iter_errors(body))
    assert errors == []
    assert dt.datetime.fromisoformat(body["updated_at"].replace("Z", "+00:00")).tzinfo is not None
