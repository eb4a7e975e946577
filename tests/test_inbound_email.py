"""``POST /api/inbound-email``: the providers' payload shapes, the secret,
matching by thread, tag and address, redeliveries, the timeline entry and the
"email received" event firing rules (with the default pack's ticket rules)."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from crm_platform.runtime.users import Actor
from crm_platform.seed import DEMO_PASSWORD, seed_demo

from .conftest import PROJECT, edit, findings_of
from .runtime_fixtures import build_app
from .web_fixtures import cheap_password_hashes

SECRET = "inbound-s3cret"
SYSTEM = Actor.system()
URL = "/api/inbound-email"
AUTH = {"X-CRM-Secret": SECRET}


@pytest.fixture
def app(tmp_path, clock):
    # CSRF off for the sign-in of the console test; the webhook needs none either way (see below).
    app = build_app(tmp_path, clock, INBOUND_EMAIL_SECRET=SECRET, RATELIMIT_ENABLED=False, WTF_CSRF_ENABLED=False)
    app.extensions["crm"].init_db()
    yield app
    app.extensions["crm"].database.close()


@pytest.fixture
def crm(app):
    return app.extensions["crm"]


@pytest.fixture
def client(app):
    return app.test_client()


def stored(crm) -> list:
    Inbound = crm.tables.InboundMail
    return list(Inbound.select().order_by(Inbound.id))


def timeline_entries(crm, entity: str, record_id: int) -> list:
    return [e for e in crm.history.entries(entity, record_id) if e.kind == "email_received"]


def signed_in_admin(app, monkeypatch):
    """A test client signed in as the demo pack's administrator."""
    cheap_password_hashes(monkeypatch)
    seed_demo(app.extensions["crm"].directory)
    client = app.test_client()
    response = client.post("/login", data={"email": "admin@demo.example.com", "password": DEMO_PASSWORD})
    assert response.status_code == 302
    return client


def timeline_of(html: str) -> str:
    start = html.index('class="card timeline"')
    return html[start : html.index("</section>", start)]


def contact(crm, email: str = "anna@example.com"):
    return crm.records.create("contact", {"first_name": "Anna", "last_name": "Berg", "email": email}, SYSTEM, "form")


def ticket(crm, requester_email: str = "kim@example.org", **data):
    return crm.records.create(
        "ticket", {"subject": "Printer on fire", "requester_email": requester_email, **data}, SYSTEM, "form"
    )


# --- the shapes providers send -------------------------------------------------------------


def test_generic_json_lands_and_matches_the_senders_contact(crm, client):
    anna = contact(crm)
    response = client.post(
        URL,
        headers=AUTH,
        json={
            "from": "Anna Berg <ANNA@example.com>",
            "to": ["Support <support@demo.example.com>", "sales@demo.example.com"],
            "cc": "Boss <boss@example.com>",
            "subject": "Re: your quote",
            "text": "Looks good, let's talk on Monday.",
            "html": "<p>Looks good</p>",
            "headers": {"Message-ID": "<m1@mail.example.com>", "X-Mailer": "Thunderbird"},
        },
    )
    assert response.status_code == 200, response.get_json()
    [row] = stored(crm)
    assert response.get_json() == {
        "id": row.id,
        "message_id": "<m1@mail.example.com>",
        "matched": {"entity": "contact", "id": anna.id, "by": "address"},
        "duplicate": False,
        "automatic": False,
    }
    assert (row.sender, row.subject, row.entity, row.record_id) == (
        "ANNA@example.com",
        "Re: your quote",
        "contact",
        anna.id,
    )
    assert row.recipients == "support@demo.example.com, sales@demo.example.com, boss@example.com"
    assert row.text == "Looks good, let's talk on Monday." and row.html == "<p>Looks good</p>"
    assert ["X-Mailer", "Thunderbird"] in row.headers
    assert row.received_at == crm.clock.utcnow()
    [entry] = timeline_entries(crm, "contact", anna.id)
    assert entry.summary == "Email received from Anna Berg <ANNA@example.com>: Re: your quote"
    assert entry.detail["excerpt"] == "Looks good, let's talk on Monday."


def test_headers_as_a_list_of_name_value_pairs_give_the_message_id_and_thread(crm, client):
    response = client.post(
        URL,
        headers=AUTH,
        json={
            "from": "nobody@example.net",
            "subject": "Hello",
            "headers": [
                {"name": "Message-ID", "value": "<m2@example.net>"},
                {"name": "In-Reply-To", "value": "<unknown@example.net>"},
                {"name": "References", "value": "<a@example.net> <unknown@example.net>"},
            ],
        },
    )
    assert response.status_code == 200
    [row] = stored(crm)
    assert (row.message_id, row.in_reply_to, row.references) == (
        "<m2@example.net>", "<unknown@example.net>", "<a@example.net> <unknown@example.net>",
    )  # fmt: skip


def test_sendgrid_inbound_parse_multipart_lands(crm, client):
    kim = ticket(crm)
    header_block = (
        "Received: by mx.sendgrid.net with SMTP id abc\r\n"
        "From: =?UTF-8?Q?Kim_M=C3=BCller?= <kim@example.org>\r\n"
        "To: support@demo.example.com\r\n"
        "Subject: =?UTF-8?Q?Drucker_br=C3=A4nnt?=\r\n"
        "Message-ID: <sg-1@example.org>\r\n"
    )
    response = client.post(
        URL,
        headers=AUTH,
        data={
            "headers": header_block,
            "from": "=?UTF-8?Q?Kim_M=C3=BCller?= <kim@example.org>",
            "to": "support@demo.example.com",
            "subject": "Drucker brännt",
            "text": "Still burning.\n\nOn Mon, 23 Nov 2026, Support wrote:\n> Please try turning it off",
            "html": "<p>Still burning.</p>",
            "envelope": json.dumps({"to": ["support+x@demo.example.com"], "from": "kim@example.org"}),
            "charsets": json.dumps({"to": "UTF-8", "subject": "UTF-8"}),
            "SPF": "pass",
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["matched"] == {"entity": "ticket", "id": kim.id, "by": "address"}
    [row] = stored(crm)
    assert (row.message_id, row.sender, row.subject) == ("<sg-1@example.org>", "kim@example.org", "Drucker brännt")
    assert row.recipients == "support@demo.example.com, support+x@demo.example.com"
    [entry] = timeline_entries(crm, "ticket", kim.id)
    assert entry.summary == "Email received from Kim Müller <kim@example.org>: Drucker brännt"
    assert entry.detail["excerpt"] == "Still burning."  # the quoted message is left out


def multipart(form: dict) -> dict:
    """A multipart body built in memory, as a provider sends it (the test client would spool it to a file)."""
    boundary, body = encode_multipart(form)
    return {"data": body, "content_type": f"multipart/form-data; boundary={boundary}"}


def test_a_large_html_body_and_an_attachment_are_taken_and_too_large_a_request_is_413(tmp_path, clock):
    app = build_app(tmp_path, clock, INBOUND_EMAIL_SECRET=SECRET, INBOUND_EMAIL_MAX_BYTES=2_000_000)
    crm = app.extensions["crm"]
    crm.init_db()
    client = app.test_client()
    newsletter = "<p>" + "news " * 150_000 + "</p>"  # 750 kB, past Flask's default for a form field
    form = {"from": "news@example.com", "subject": "News", "html": newsletter, "headers": "Message-ID: <n1@x.com>\n"}
    attachment = {"attachment1": FileStorage(io.BytesIO(b"%PDF-1.4 ..."), "invoice.pdf")}
    response = client.post(URL, headers=AUTH, **multipart({**form, **attachment}))
    assert response.status_code == 200, response.get_json()
    assert stored(crm)[0].html == newsletter
    form = {**form, "html": newsletter * 3, "headers": "Message-ID: <n2@x.com>\n"}
    response = client.post(URL, headers=AUTH, **multipart(form))
    assert response.status_code == 413 and "error" in response.get_json()
    assert len(stored(crm)) == 1
    crm.database.close()


def test_mailgun_route_multipart_lands(crm, client):
    kim = ticket(crm)
    response = client.post(
        URL,
        headers=AUTH,
        data={
            "recipient": "support@demo.example.com",
            "sender": "bounce+kim@example.org",
            "from": "Kim <kim@example.org>",
            "subject": "Re: Printer on fire",
            "body-plain": "Thanks, fixed.",
            "body-html": "<div>Thanks, fixed.</div>",
            "Message-Id": "<mg-1@example.org>",
            "In-Reply-To": "<not-ours@example.org>",
            "References": "<not-ours@example.org>",
            "message-headers": json.dumps([["Message-Id", "<mg-1@example.org>"], ["X-Mailgun-Spf", "Pass"]]),
            "timestamp": "1700000000",
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["matched"] == {"entity": "ticket", "id": kim.id, "by": "address"}
    [row] = stored(crm)
    assert (row.message_id, row.sender, row.in_reply_to, row.text) == (
        "<mg-1@example.org>", "kim@example.org", "<not-ours@example.org>", "Thanks, fixed.",
    )  # fmt: skip
    assert ["X-Mailgun-Spf", "Pass"] in row.headers


def test_postmark_json_lands(crm, client):
    anna = contact(crm)
    response = client.post(
        URL,
        headers=AUTH,
        json={
            "From": "anna@example.com",
            "FromName": "Anna Berg",
            "FromFull": {"Email": "anna@example.com", "Name": "Anna Berg"},
            "To": "support@demo.example.com",
            "Subject": "Invoice question",
            "TextBody": "",
            "HtmlBody": "<html><body><p>Why is the <b>total</b> &amp; tax so high?</p>"
            "<blockquote>earlier message</blockquote></body></html>",
            "MessageID": "22c74902-a0c1-4511-804f-341342852c90",
            "Headers": [
                {"Name": "Message-ID", "Value": "<pm-1@example.com>"},
                {"Name": "X-Spam-Status", "Value": "No"},
            ],
        },
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["matched"] == {"entity": "contact", "id": anna.id, "by": "address"}
    [row] = stored(crm)
    assert row.message_id == "<pm-1@example.com>"  # the message's own id, not Postmark's
    [entry] = timeline_entries(crm, "contact", anna.id)
    assert entry.summary == "Email received from Anna Berg <anna@example.com>: Invoice question"
    assert entry.detail["excerpt"] == "Why is the total & tax so high?"  # the html's text, quote left out


def test_postmark_message_without_a_message_id_header_is_keyed_by_postmarks_id(crm, client):
    body = {"From": "x@example.com", "Subject": "Hi", "MessageID": "22c74902-a0c1"}
    assert client.post(URL, headers=AUTH, json=body).status_code == 200
    assert client.post(URL, headers=AUTH, json=body).get_json()["duplicate"] is True
    [row] = stored(crm)
    assert row.message_id == "<22c74902-a0c1@inbound.postmarkapp.com>"


# --- matching ------------------------------------------------------------------------------------


def test_a_reply_to_mail_the_platform_sent_matches_its_record_by_thread(crm, client):
    """The send_email action acknowledges the request (kept in crm_mail, no SMTP server
    configured); the customer's reply names that message's Message-ID."""
    contact(crm, "kim@example.org")  # the address alone would match this contact
    request = crm.records.create(
        "ticket",
        {"subject": "Printer on fire", "requester_email": "kim@example.org", "requester_name": "Kim"},
        SYSTEM, "form", form="support_request",
    )  # fmt: skip
    [ack] = crm.tables.Mail.select()
    assert (ack.recipient, ack.entity, ack.record_id) == ("kim@example.org", "ticket", request.id)
    response = client.post(
        URL,
        headers=AUTH,
        json={
            "from": "Kim <kim@example.org>",
            "subject": f"Re: {ack.subject}",
            "text": "It is still on fire.",
            "message_id": "<reply-1@example.org>",
            "in_reply_to": ack.message_id,
            "references": f"<older@example.org> {ack.message_id}",
        },
    )
    assert response.get_json()["matched"] == {"entity": "ticket", "id": request.id, "by": "thread"}
    # A reply to that reply (References only) follows the thread through the stored inbound mail.
    response = client.post(
        URL,
        headers=AUTH,
        json={"from": "boss@example.org", "message_id": "<reply-2@example.org>", "references": "<reply-1@example.org>"},
    )
    assert response.get_json()["matched"] == {"entity": "ticket", "id": request.id, "by": "thread"}
    assert len(timeline_entries(crm, "ticket", request.id)) == 2


def test_a_thread_whose_record_was_deleted_falls_back_to_the_address(crm, client):
    gone = ticket(crm, "kim@example.org")
    crm.tables.Mail.insert(
        key="x/1", message_id="<sent-1@demo.example.com>", sender="crm@demo.example.com", recipient="kim@example.org",
        subject="Ack", body="", entity="ticket", record_id=gone.id, status="kept", created_at=crm.clock.utcnow(),
    ).execute()  # fmt: skip
    crm.records.delete("ticket", gone.id, SYSTEM, "form")
    kim = contact(crm, "kim@example.org")
    response = client.post(
        URL,
        headers=AUTH,
        json={"from": "kim@example.org", "message_id": "<r@x.org>", "in_reply_to": "<sent-1@demo.example.com>"},
    )
    assert response.get_json()["matched"] == {"entity": "contact", "id": kim.id, "by": "address"}


def test_the_address_matches_the_most_recently_updated_record_of_the_first_entity(crm, client, clock):
    older = ticket(crm, "kim@example.org")
    clock.advance(minutes=5)
    newer = ticket(crm, "Kim@Example.org")
    clock.advance(minutes=5)
    crm.records.update("ticket", older.id, {"description": "touched last"}, SYSTEM, "form")
    response = client.post(URL, headers=AUTH, json={"from": "kim@example.org", "message_id": "<a@x.org>"})
    assert response.get_json()["matched"] == {"entity": "ticket", "id": older.id, "by": "address"}
    # A contact comes before tickets in the pack's order.
    kim = contact(crm, "kim@example.org")
    response = client.post(URL, headers=AUTH, json={"from": "kim@example.org", "message_id": "<b@x.org>"})
    assert response.get_json()["matched"] == {"entity": "contact", "id": kim.id, "by": "address"}
    assert newer.id != older.id


def test_a_tag_in_the_recipient_names_the_record(crm, client):
    contact(crm, "kim@example.org")
    target = ticket(crm, "someone.else@example.org")
    response = client.post(
        URL,
        headers=AUTH,
        json={
            "from": "kim@example.org",
            "to": f"support+ticket-{target.id}@demo.example.com",
            "message_id": "<t@x.org>",
        },
    )
    assert response.get_json()["matched"] == {"entity": "ticket", "id": target.id, "by": "tag"}
    # A tag naming no record is no match: the address decides.
    response = client.post(
        URL,
        headers=AUTH,
        json={"from": "kim@example.org", "to": "support+ticket-999@demo.example.com", "message_id": "<u@x.org>"},
    )
    assert response.get_json()["matched"]["by"] == "address"


def test_an_email_from_an_unknown_sender_becomes_a_ticket_routed_by_its_rules(crm, client):
    """The default pack's ``inbound_email:`` (pack.yaml): what matches no record becomes a ticket."""
    body = {
        "from": "Sam Stranger <sam@example.net>",
        "subject": "Printer " + "very " * 60 + "broken",
        "text": "It prints nothing since Monday.\n\nOn Mon, Ann wrote:\n> old",
        "message_id": "<new-1@example.net>",
    }
    answer = client.post(URL, headers=AUTH, json=body).get_json()

    Ticket = crm.compiled.entities["ticket"].model
    [ticket] = Ticket.select()
    assert answer["matched"] == {"entity": "ticket", "id": ticket.id, "by": "created"}
    assert (ticket.requester_email, ticket.requester_name, ticket.channel, ticket.status) == (
        "sam@example.net", "Sam Stranger", "email", "new",
    )  # fmt: skip
    assert ticket.subject == body["subject"][:200] and ticket.description == body["text"]
    assert ticket.team == "support"  # routed by "Route feature requests and other tickets"
    [row] = stored(crm)
    assert (row.entity, row.record_id, row.matched_by) == ("ticket", ticket.id, "created")
    [created] = [e for e in crm.history.entries("ticket", ticket.id) if e.kind == "create"]
    assert created.channel == "api"
    assert timeline_entries(crm, "ticket", ticket.id)[0].summary.startswith(
        "Created from an email from Sam Stranger <sam@example.net>: Printer very"
    )
    # A redelivery makes no second ticket; the sender's next email joins their ticket by address.
    assert client.post(URL, headers=AUTH, json=body).get_json()["duplicate"] is True
    more = client.post(URL, headers=AUTH, json={**body, "message_id": "<new-2@example.net>"}).get_json()
    assert more["matched"] == {"entity": "ticket", "id": ticket.id, "by": "address"}
    assert Ticket.select().count() == 1


def test_an_inbound_email_setting_naming_unknown_fields_is_a_located_error(tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(PROJECT, pack, ignore=shutil.ignore_patterns(".*", "tests", "instance", "bench", "docs", "static"))
    edit(pack / "pack.yaml", "requester_name: from_name}", "requester: from_name}")
    edit(pack / "pack.yaml", "values: {channel: email}", "values: {channel: email, subject: Hi}")
    assert findings_of(pack) == [
        "pack.yaml:11:72: error: Ticket has no field 'requester'",
        "pack.yaml:12:28: error: field 'subject' is set twice (in fields and in values)",
    ]
    edit(pack / "pack.yaml", "create: ticket", "create: tiket")
    assert findings_of(pack) == ["pack.yaml:10:11: error: unknown entity 'tiket' in inbound_email"]


def test_unmatched_mail_is_stored_without_a_record_and_listed_in_the_console(app, crm, client, monkeypatch):
    # An out-of-office from a stranger: matches nothing and, being automatic, makes no ticket.
    stranger = {
        "from": "stranger@example.net",
        "subject": "Who are you?",
        "html": "<script>alert('html')</script>",
        "message_id": "<s@x.net>",
        "headers": {"Auto-Submitted": "auto-replied"},
    }
    response = client.post(URL, headers=AUTH, json=stranger)
    assert response.status_code == 200
    assert response.get_json()["matched"] is None
    [row] = stored(crm)
    assert (row.entity, row.record_id, row.matched_by) == (None, None, None)
    assert crm.tables.Timeline.select().count() == 0
    console = signed_in_admin(app, monkeypatch)
    page = console.get("/admin/inbound-mail/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "stranger@example.net" in html and "Who are you?" in html and "unmatched" in html
    details = console.get(f"/admin/inbound-mail/details/?id={row.id}").get_data(as_text=True)
    assert "&lt;script&gt;alert(&#39;html&#39;)&lt;/script&gt;" in details  # shown as its source, not run
    assert "<script>alert(" not in details
    # Read-only: no form to create or edit received mail.
    assert console.get("/admin/inbound-mail/new/").status_code == 404
    assert console.get("/admin/inbound-mail/").status_code == 200
    assert app.test_client().get("/admin/inbound-mail/").status_code in (302, 403)  # not without signing in


# --- authentication and bad requests ------------------------------------------------------------


GOOD = {"from": "anna@example.com", "subject": "Hi", "message_id": "<ok@example.com>"}


@pytest.mark.parametrize(
    "headers, query",
    [
        ({}, ""),
        ({"X-CRM-Secret": "wrong"}, ""),
        ({"Authorization": "Bearer wrong"}, ""),
        ({}, "?secret=wrong"),
        ({"X-CRM-Secret": ""}, "?secret="),
    ],
)
def test_a_missing_or_wrong_secret_is_401_and_stores_nothing(crm, client, headers, query):
    response = client.post(URL + query, headers=headers, json=GOOD)
    assert response.status_code == 401
    assert "secret" in response.get_json()["error"]
    assert stored(crm) == []


@pytest.mark.parametrize(
    "headers, query",
    [
        ({"X-CRM-Secret": SECRET}, ""),
        ({"Authorization": f"Bearer {SECRET}"}, ""),
        ({"Authorization": "Basic " + __import__("base64").b64encode(f"inbound:{SECRET}".encode()).decode()}, ""),
        ({}, f"?secret={SECRET}"),
    ],
)
def test_the_secret_is_taken_from_a_header_bearer_or_basic_auth_or_the_url(crm, client, headers, query):
    response = client.post(URL + query, headers=headers, json=GOOD)
    assert response.status_code == 200, response.get_json()
    assert len(stored(crm)) == 1


def test_without_a_configured_secret_the_endpoint_answers_503(tmp_path, clock):
    app = build_app(tmp_path, clock)
    app.extensions["crm"].init_db()
    response = app.test_client().post(URL, headers={"X-CRM-Secret": ""}, json=GOOD)
    assert response.status_code == 503
    assert "INBOUND_EMAIL_SECRET" in response.get_json()["error"]
    assert app.extensions["crm"].tables.InboundMail.select().count() == 0
    app.extensions["crm"].database.close()


@pytest.mark.parametrize(
    "body, errors",
    [
        ({"subject": "Hi", "message_id": "<a@b.c>"}, {"from": ["is required"]}),
        ({"from": "not an address", "message_id": "<a@b.c>"}, {"from": ["is not an email address"]}),
        ({"from": "anna@example.com", "subject": "Hi"},
         {"message_id": ["is required (the Message-ID header, or message_id)"]}),
        ({"from": "anna@example.com", "message_id": "<a@b.c> <d@e.f>"},
         {"message_id": ["is not a Message-ID such as <abc@example.com> of at most 255 characters"]}),
        ({}, {"from": ["is required"], "message_id": ["is required (the Message-ID header, or message_id)"]}),
    ],
)  # fmt: skip
def test_missing_or_unreadable_fields_are_422_and_store_nothing(crm, client, body, errors):
    response = client.post(URL, headers=AUTH, json=body)
    assert response.status_code == 422
    assert response.get_json() == {"error": "the email cannot be read", "fields": errors}
    assert stored(crm) == []


def test_a_body_that_is_not_json_nor_a_form_is_refused(crm, client):
    assert client.post(URL, headers=AUTH, data="hello", content_type="text/plain").status_code == 415
    response = client.post(URL, headers=AUTH, data="[1, 2]", content_type="application/json")
    assert response.status_code == 400 and response.get_json() == {"error": "the body is not a JSON object"}
    assert stored(crm) == []


def test_other_methods_are_told_to_post_not_asked_for_an_api_token(crm, client):
    for method in ("get", "put", "delete"):
        response = getattr(client, method)(URL)
        assert response.status_code == 405, method
        assert response.headers["Allow"] == "POST"
        assert response.get_json() == {"error": "POST the email here; this address takes nothing else"}
    assert stored(crm) == []


def test_the_webhook_needs_no_sign_in_nor_csrf_token_and_is_rate_limited(tmp_path, clock):
    app = build_app(tmp_path, clock, INBOUND_EMAIL_SECRET=SECRET, INBOUND_EMAIL_RATE_LIMIT="2 per minute")
    assert app.config["WTF_CSRF_ENABLED"] is not False
    app.extensions["crm"].init_db()
    client = app.test_client()
    for number in (1, 2):
        response = client.post(URL, headers=AUTH, json={**GOOD, "message_id": f"<{number}@example.com>"})
        assert response.status_code == 200
    response = client.post(URL, headers=AUTH, json={**GOOD, "message_id": "<3@example.com>"})
    assert response.status_code == 429 and "error" in response.get_json()
    assert app.extensions["crm"].tables.InboundMail.select().count() == 2
    app.extensions["crm"].database.close()


# --- redelivery, the event, the timeline -----------------------------------------------------------


def test_the_same_message_id_twice_is_stored_once_with_one_timeline_entry(crm, client):
    kim = ticket(crm)
    body = {"from": "kim@example.org", "subject": "Hello", "message_id": "<dup@example.org>"}
    first = client.post(URL, headers=AUTH, json=body).get_json()
    again = client.post(URL, headers=AUTH, json={**body, "subject": "Hello again"}).get_json()
    assert first["duplicate"] is False and again["duplicate"] is True
    assert again["id"] == first["id"] and again["matched"] == first["matched"]
    assert len(stored(crm)) == 1 and stored(crm)[0].subject == "Hello"
    assert len(timeline_entries(crm, "ticket", kim.id)) == 1


def test_a_customer_reply_reopens_a_ticket_waiting_on_them(crm, client):
    """The default pack's rule "Reopen tickets when the customer replies" (on ticket email received)."""
    waiting = ticket(crm)
    for stage in ("open", "waiting_on_customer"):
        crm.records.transition("ticket", waiting.id, stage, SYSTEM, "form")
    working = ticket(crm, "other@example.org")
    crm.records.transition("ticket", working.id, "open", SYSTEM, "form")
    working_version = crm.records.get("ticket", working.id, SYSTEM).version

    reply = {"from": "kim@example.org", "message_id": "<k1@example.org>", "text": "Done"}
    client.post(URL, headers=AUTH, json=reply)
    assert client.post(URL, headers=AUTH, json=reply).get_json()["duplicate"] is True  # a redelivery fires nothing
    client.post(URL, headers=AUTH, json={"from": "other@example.org", "message_id": "<o1@example.org>"})

    assert crm.records.get("ticket", waiting.id, SYSTEM).status == "open"
    Outbox = crm.tables.Outbox
    [row] = Outbox.select().where(Outbox.rule == "Reopen tickets when the customer replies")
    assert (row.key, row.kind, row.record_id, row.status) == (
        f"mail-{stored(crm)[0].id}/Reopen tickets when the customer replies/1", "move", waiting.id, "done",
    )  # fmt: skip
    history = crm.history.entries("ticket", waiting.id)
    moved = [e for e in history if e.kind == "transition" and e.rule]
    assert moved[-1].changes["status"] == ["waiting_on_customer", "open"]
    # The rule's condition does not hold for an open ticket: nothing planned, nothing changed.
    assert crm.records.get("ticket", working.id, SYSTEM).version == working_version


@pytest.mark.parametrize(
    "headers, subject, why",
    [
        ({"Auto-Submitted": "auto-replied"}, "Re: your ticket", "Auto-Submitted: auto-replied"),
        ({"X-Autoreply": "yes"}, "Re: your ticket", "x-autoreply header"),
        ({"Precedence": "auto_reply"}, "Re: your ticket", "Precedence: auto_reply"),
        ({}, "Automatic reply: your ticket", "an automatic reply's subject"),
        ({}, "Abwesenheitsnotiz: Ihr Ticket", "an automatic reply's subject"),
    ],
)
def test_an_automatic_reply_is_kept_and_shown_but_reopens_nothing(crm, client, headers, subject, why):
    waiting = ticket(crm)
    for stage in ("open", "waiting_on_customer"):
        crm.records.transition("ticket", waiting.id, stage, SYSTEM, "form")
    body = {
        "from": "kim@example.org",
        "subject": subject,
        "text": "Away",
        "headers": {"Message-ID": "<a@x>", **headers},
    }

    answer = client.post(URL, headers=AUTH, json=body)

    assert answer.status_code == 200
    assert answer.get_json()["matched"] == {"entity": "ticket", "id": waiting.id, "by": "address"}
    assert answer.get_json()["automatic"] is True
    [row] = stored(crm)
    assert row.automatic is True
    assert crm.records.get("ticket", waiting.id, SYSTEM).status == "waiting_on_customer"
    assert not crm.tables.Outbox.select().where(crm.tables.Outbox.rule == "Reopen tickets when the customer replies")
    [entry] = timeline_entries(crm, "ticket", waiting.id)
    assert entry.summary.startswith(f"Automatic reply ({why}): ")


def test_a_reply_that_only_mentions_an_absence_is_a_reply(crm, client):
    waiting = ticket(crm)
    for stage in ("open", "waiting_on_customer"):
        crm.records.transition("ticket", waiting.id, stage, SYSTEM, "form")
    body = {"from": "kim@example.org", "subject": "Re: I was out of office, here is the log", "message_id": "<b@x>"}
    client.post(URL, headers=AUTH, json=body)
    assert stored(crm)[0].automatic is False
    assert crm.records.get("ticket", waiting.id, SYSTEM).status == "open"


def test_the_timeline_shows_the_email_escaped(app, crm, monkeypatch):
    kim = ticket(crm)
    client = signed_in_admin(app, monkeypatch)
    response = client.post(
        URL,
        headers=AUTH,
        json={
            "from": '"<img src=x onerror=alert(1)>" <kim@example.org>',
            "subject": "<script>alert('subject')</script>",
            "text": "<b>bold</b> <script>alert('text')</script>",
            "html": "<script>alert('html')</script>",
            "message_id": "<xss@example.org>",
        },
    )
    assert response.status_code == 200
    timeline = timeline_of(client.get(f"/r/ticket/{kim.id}").get_data(as_text=True))
    assert "&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt;" in timeline
    excerpt = "&lt;b&gt;bold&lt;/b&gt; &lt;script&gt;alert(&#39;text&#39;)&lt;/script&gt;"
    assert f'<blockquote class="excerpt">{excerpt}</blockquote>' in timeline
    assert "&lt;img src=x onerror=alert(1)&gt;" in timeline
    assert "<script>" not in timeline and "<img" not in timeline and "alert('html')" not in timeline
