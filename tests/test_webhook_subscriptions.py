"""Webhook subscriptions against a real HTTP server on 127.0.0.1: every change of a
subscribed entity is posted as signed JSON, retried with the outbox's backoff and
logged per attempt; the console manages subscriptions (admins only, CSRF checked),
sends test events and redelivers from the log."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import json
import re
import shutil
import threading
import time
import zlib

import pytest

from crm_platform.application import create_app
from crm_platform.errors import ValidationError
from crm_platform.runtime.users import Actor
from crm_platform.seed import DEMO_PASSWORD, seed_demo

from . import runtime_fixtures, web_fixtures
from .conftest import GOOD
from .live import Worker, free_port, live_config, wait_for, worker_env
from .runtime_fixtures import build_app
from .web_fixtures import csrf_token

make_crm = runtime_fixtures.make_crm
web_app, web_crm, sign_in = web_fixtures.web_app, web_fixtures.web_crm, web_fixtures.sign_in

SYSTEM = Actor.system()
SECRET = "a-shared-secret-of-the-receiver"
ALL_EVENTS = ["created", "updated", "stage_changed", "deleted"]


def signed_correctly(secret: str, headers: dict, body: bytes) -> bool:
    """What a receiver does: HMAC-SHA256 of "<timestamp>.<body>" with the shared secret."""
    message = headers["x-crm-timestamp"].encode() + b"." + body
    expected = "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["x-crm-signature"])


def deliveries(crm) -> list:
    Delivery = crm.tables.WebhookDelivery
    return list(Delivery.select().order_by(Delivery.id))


def subscribe(crm, url: str, entity: str = "lead", events=ALL_EVENTS, **options):
    row, _ = crm.webhooks.create("ERP", entity, events, url, SECRET, **options)
    return row


def new_lead(crm, **data):
    return crm.records.create("lead", {"last_name": "Adler", "source": "event", **data}, SYSTEM, "api")


# --- what is delivered ---------------------------------------------------------------


def test_created_updated_stage_changed_and_deleted_are_posted_signed_with_the_change(make_crm, receiver):
    server = receiver()
    crm = make_crm()
    subscription = subscribe(crm, server.url)
    lead = new_lead(crm, first_name="Kim", score=10)
    crm.records.update("lead", lead.id, {"score": 40}, SYSTEM, "api")
    crm.records.transition("lead", lead.id, "contacted", SYSTEM, "api")
    crm.records.delete("lead", lead.id, SYSTEM, "api")

    assert [headers["x-crm-event"] for headers, _, _ in server.got] == ALL_EVENTS
    for headers, body, _ in server.got:
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"].startswith("crm-platform-webhook/")
        assert signed_correctly(SECRET, headers, body)
        assert not signed_correctly("another-secret-entirely", headers, body)
        assert headers["x-crm-delivery"] == json.loads(body)["id"]
        assert headers["x-crm-timestamp"] == str(int(dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC).timestamp()))
    created, updated, moved, deleted = server.bodies()
    assert len({body["id"] for body in server.bodies()}) == 4  # one event id per change
    assert (created["event"], created["entity"], created["record_id"]) == ("created", "lead", lead.id)
    assert created["occurred_at"] == "2026-11-23T10:00:00Z"
    assert created["definition_version"] == crm.definition_version
    assert created["actor"] == {"user_id": None, "channel": "api"}
    assert created["data"]["first_name"] == "Kim" and created["data"]["status"] == "new"
    assert created["changes"]["last_name"] == {"old": None, "new": "Adler"}
    assert updated["changes"] == {"score": {"old": 10, "new": 40}}
    assert updated["data"]["score"] == 40 and updated["data"]["version"] == 2
    assert moved["changes"] == {"status": {"old": "new", "new": "contacted"}}
    assert moved["stage"] == {"status": {"from": "new", "to": "contacted"}}
    assert deleted["data"]["last_name"] == "Adler" and deleted["changes"]["last_name"] == {"old": "Adler", "new": None}

    log = deliveries(crm)
    assert [(d.event, d.status, d.http_status, d.attempt, d.subscription_id) for d in log] == [
        (event, "delivered", 200, 1, subscription.id) for event in ALL_EVENTS
    ]
    assert log[0].response == "answer 200" and log[0].event_id == created["id"] and log[0].record_id == lead.id
    Outbox = crm.tables.Outbox
    rows = Outbox.select().where(Outbox.kind == "deliver_webhook")
    assert {row.status for row in rows} == {"done"} and rows.count() == 4


def test_only_the_subscribed_events_of_the_subscribed_entity_of_active_subscriptions_are_sent(make_crm, receiver):
    server, other = receiver(), receiver()
    crm = make_crm()
    subscribe(crm, server.url, events=["stage_changed"])
    subscribe(crm, other.url, events=ALL_EVENTS, active=False)
    subscribe(crm, other.url, entity="contact", events=["created", "updated", "deleted"])

    lead = new_lead(crm)
    crm.records.update("lead", lead.id, {"score": 40}, SYSTEM, "api")
    assert server.got == [] and other.got == []
    crm.records.transition("lead", lead.id, "contacted", SYSTEM, "api")
    assert [body["event"] for body in server.bodies()] == ["stage_changed"]
    assert other.got == []  # the inactive lead subscription and the contact subscription heard nothing
    crm.records.create("contact", {"last_name": "Berg"}, SYSTEM, "api")
    assert [body["entity"] for body in other.bodies()] == ["contact"]


def test_an_import_without_rules_still_notifies_the_subscriptions(make_crm, receiver):
    server = receiver()
    crm = make_crm()
    subscribe(crm, server.url, events=["created"])
    lead = crm.records.create(
        "lead", {"last_name": "Imported", "source": "web", "country": "DE"}, SYSTEM, "import", rules=False
    )
    Outbox = crm.tables.Outbox
    assert [row.kind for row in Outbox.select()] == ["deliver_webhook"]  # no rule action was planned
    (body,) = server.bodies()
    assert (body["record_id"], body["actor"]["channel"]) == (lead.id, "import")


def test_a_batch_create_notifies_once_per_saved_record(make_crm, receiver):
    server = receiver()
    crm = make_crm()
    subscribe(crm, server.url, events=["created"])
    rows = [{"last_name": "One", "source": "event"}, {"last_name": "", "source": "nope"}, {"last_name": "Two"}]
    one, refused, two = crm.records.create_many("lead", rows, SYSTEM, "import", rules=False)
    assert isinstance(refused, ValidationError)
    assert sorted((body["record_id"], body["data"]["last_name"]) for body in server.bodies()) == [
        (one.id, "One"),
        (two.id, "Two"),
    ]
    assert len({body["id"] for body in server.bodies()}) == 2


def test_a_batch_plans_deliveries_only_when_a_subscription_listens_to_its_creates(make_crm, receiver):
    # Asked once per batch: a subscription to another entity or to other events plans nothing.
    server = receiver()
    crm = make_crm()
    subscribe(crm, server.url, entity="account", events=["created"])
    subscribe(crm, server.url, events=["updated", "deleted"])
    assert not crm.webhooks.listens("lead", "create") and crm.webhooks.listens("lead", "update")
    saved = crm.records.create_many("lead", [{"last_name": "One"}, {"last_name": "Two"}], SYSTEM, "import", rules=False)
    assert [lead.last_name for lead in saved] == ["One", "Two"]  # saved, and still nothing planned
    assert crm.tables.Outbox.select().count() == 0 and server.bodies() == []

    subscribe(crm, server.url, events=["created"])
    three, four = crm.records.create_many(
        "lead", [{"last_name": "Three"}, {"last_name": "Four"}], SYSTEM, "import", rules=False
    )
    assert crm.webhooks.listens("lead", "create")
    assert sorted(body["record_id"] for body in server.bodies()) == [three.id, four.id]


def test_a_failed_attempt_is_retried_after_the_backoff_with_the_same_event_and_both_are_logged(
    make_crm, receiver, clock
):
    server = receiver([500])
    crm = make_crm(ACTION_RETRY_BASE_SECONDS=30)
    subscribe(crm, server.url, events=["created"])
    new_lead(crm)

    (failed,) = deliveries(crm)
    assert (failed.status, failed.http_status, failed.attempt) == ("failed", 500, 1)
    assert failed.error == "answered HTTP 500" and failed.response == "answer 500"
    Outbox = crm.tables.Outbox
    row = Outbox.get(Outbox.kind == "deliver_webhook")
    assert row.status == "retrying" and row.due_at == clock.at + dt.timedelta(seconds=30)

    clock.advance(seconds=29)
    assert crm.runner.run(row.id).startswith("not runnable")  # the backoff holds it back
    assert len(server.got) == 1
    clock.advance(seconds=1)
    assert crm.runner.run(row.id).startswith("delivered")

    first, second = server.got
    assert first[1] == second[1]  # the same body, byte for byte
    assert first[0]["x-crm-delivery"] == second[0]["x-crm-delivery"]
    assert int(second[0]["x-crm-timestamp"]) - int(first[0]["x-crm-timestamp"]) == 30
    assert signed_correctly(SECRET, second[0], second[1])
    assert [(d.attempt, d.status, d.http_status) for d in deliveries(crm)] == [
        (1, "failed", 500),
        (2, "delivered", 200),
    ]
    assert Outbox.get_by_id(row.id).status == "done"


def test_a_timeout_and_a_refused_connection_are_failed_attempts_in_the_log(make_crm, receiver):
    slow = receiver(delay=1.0)
    closed = f"http://127.0.0.1:{free_port()}/nobody"
    crm = make_crm(WEBHOOK_TIMEOUT_SECONDS=0.2)
    subscribe(crm, slow.url, events=["created"])
    subscribe(crm, closed, events=["created"])
    new_lead(crm)

    by_url = {d.subscription.url: d for d in deliveries(crm)}
    assert (by_url[slow.url].status, by_url[slow.url].http_status) == ("failed", None)
    assert by_url[slow.url].error == "no answer within 0.2 s"
    assert by_url[closed].status == "failed" and by_url[closed].error.startswith("could not deliver: ")
    Outbox = crm.tables.Outbox
    assert {row.status for row in Outbox.select()} == {"retrying"}


@pytest.mark.parametrize("code", [302, 307])
def test_a_redirect_is_not_followed_and_fails_the_attempt(make_crm, receiver, code):
    target = receiver()  # where the redirect points (an internal address, say): it must hear nothing

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook name
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(code)  # urllib would follow a 302 (as a GET) to the Location
            self.send_header("Location", target.url)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    redirecting = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Redirect)
    threading.Thread(target=redirecting.serve_forever, daemon=True).start()
    try:
        crm = make_crm()
        subscribe(crm, f"http://127.0.0.1:{redirecting.server_address[1]}/hook", events=["created"])
        new_lead(crm)
    finally:
        redirecting.shutdown()
        redirecting.server_close()

    (attempt,) = deliveries(crm)
    assert (attempt.status, attempt.http_status, attempt.error) == ("failed", code, f"answered HTTP {code}")
    assert target.got == []


def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_timeout(make_crm, receiver):
    # A socket timeout counts per read: a byte every 0.1 s would keep the worker for the whole answer.
    class Drip(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook name
            self.rfile.read(int(self.headers["Content-Length"]))
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            try:
                for _ in range(30):  # 3 s of one header byte at a time
                    self.wfile.write(b"X")
                    self.wfile.flush()
                    time.sleep(0.1)
                self.wfile.write(b": y\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass  # the client hung up: what it should do

        def log_message(self, *args):
            pass

    dripping = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Drip)
    threading.Thread(target=dripping.serve_forever, daemon=True).start()
    try:
        crm = make_crm(WEBHOOK_TIMEOUT_SECONDS=0.5)
        subscribe(crm, f"http://127.0.0.1:{dripping.server_address[1]}/hook", events=["created"])
        started = time.monotonic()
        new_lead(crm)
        took = time.monotonic() - started
    finally:
        dripping.shutdown()
        dripping.server_close()

    (attempt,) = deliveries(crm)
    assert attempt.status == "failed" and attempt.error.endswith("did not finish within 0.5 s"), attempt.error
    assert took < 2.0 and attempt.duration_ms < 2000


def test_410_gone_deactivates_the_subscription_and_says_so_on_the_log(make_crm, receiver):
    server = receiver([410])
    crm = make_crm()
    subscription = subscribe(crm, server.url, events=["created", "updated"])
    lead = new_lead(crm)

    (gone,) = deliveries(crm)
    assert gone.http_status == 410
    assert gone.error == "answered HTTP 410; the subscription was deactivated (the receiver says it is gone)"
    assert crm.webhooks.get(subscription.id).active is False
    Outbox = crm.tables.Outbox
    assert Outbox.get(Outbox.kind == "deliver_webhook").status == "failed"  # not retried
    crm.records.update("lead", lead.id, {"score": 5}, SYSTEM, "api")
    assert len(server.got) == 1


def test_a_delivery_planned_before_its_subscription_was_deactivated_is_skipped(make_crm, receiver):
    server = receiver()
    crm = make_crm()
    held = runtime_fixtures.HeldQueue(crm.outbox)
    try:
        subscription = subscribe(crm, server.url, events=["created"])
        new_lead(crm)
        crm.webhooks.update(subscription.id, "ERP", "lead", ["created"], server.url, active=False)
        Outbox = crm.tables.Outbox
        row = Outbox.get(Outbox.kind == "deliver_webhook")
        assert crm.runner.run(row.id) == "skipped: the webhook subscription 'ERP' is inactive"
    finally:
        held.release()
    assert server.got == [] and deliveries(crm) == []


def test_the_active_list_is_cached_on_the_clock_so_writes_ask_nothing_more(make_crm, receiver, clock):
    server = receiver()
    crm = make_crm(WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS=10)
    new_lead(crm)  # the (empty) list is read once and kept
    # Another process adds a subscription: this one sees it when its cached list is 10 s old.
    crm.tables.WebhookSubscription.insert(
        name="Other process", entity="lead", events=["created"], url=server.url, secret=SECRET, active=True,
        created_at=clock.at,
    ).execute()  # fmt: skip
    new_lead(crm)
    assert server.got == []
    clock.advance(seconds=10)
    new_lead(crm)
    assert len(server.got) == 1


def test_subscriptions_are_validated_field_by_field_and_nothing_is_written(make_crm):
    crm = make_crm()
    with pytest.raises(ValidationError) as refused:
        crm.webhooks.create("", "nope", ["created", "exploded"], "ftp://example.com/x", "short")
    assert refused.value.errors == {
        "name": ["is required"],
        "entity": ["there is no entity 'nope'"],
        "events": ["unknown event 'exploded' (choose from created, updated, stage_changed, deleted)"],
        "url": ["must be an http:// or https:// URL with a host"],
        "secret": ["must have 16 to 128 characters (or leave it empty)"],
    }
    with pytest.raises(ValidationError) as no_stages:
        crm.webhooks.create("Accounts", "account", ["stage_changed"], "https://example.com/hook")
    assert no_stages.value.errors == {"events": ["stage_changed: Accounts have no stages"]}
    assert crm.tables.WebhookSubscription.select().count() == 0
    row, secret = crm.webhooks.create("ERP", "lead", ["updated", "created"], "https://example.com/hook")
    assert secret.startswith("whsec_") and len(secret) > 32 and row.secret == secret
    assert row.events == ["created", "updated"]


# --- with a real consumer process -----------------------------------------------------


@pytest.fixture
def live_crm(tmp_path):
    workers = []

    def build(**extra):
        pack = tmp_path / "pack"
        shutil.copytree(GOOD, pack)
        config = live_config(tmp_path, pack, None, **extra)
        crm = create_app({"TESTING": True, **config}).extensions["crm"]
        crm.init_db()
        workers.append(Worker(worker_env(config), tmp_path / "worker.log").start())
        return crm

    yield build
    for worker in workers:
        worker.stop()


def test_a_worker_delivers_retries_with_backoff_and_logs_each_attempt(live_crm, receiver):
    server = receiver([500, 503])
    crm = live_crm(ACTION_RETRY_BASE_SECONDS=0.4, ACTION_MAX_ATTEMPTS=4)
    subscribe(crm, server.url, events=["created"])
    lead = crm.records.create("lead", {"first_name": "Eve", "last_name": "Event", "source": "event"}, SYSTEM, "form")
    Delivery = crm.tables.WebhookDelivery
    wait_for(lambda: Delivery.select().where(Delivery.status == "delivered").exists(), what="the delivery")

    assert [(d.attempt, d.status, d.http_status) for d in deliveries(crm)] == [
        (1, "failed", 500),
        (2, "failed", 503),
        (3, "delivered", 200),
    ]
    times = [at for _, _, at in server.got]
    assert times[1] - times[0] >= 0.4 and times[2] - times[1] >= 0.8  # 0.4 s, then doubled
    assert len({headers["x-crm-delivery"] for headers, _, _ in server.got}) == 1
    assert all(signed_correctly(SECRET, headers, body) for headers, body, _ in server.got)
    assert server.bodies()[-1]["record_id"] == lead.id


# --- the console ----------------------------------------------------------------------


def form_data(**changes) -> dict:
    data = {
        "name": "ERP",
        "entity": "lead",
        "events": ["created", "updated"],
        "url": "https://erp.example.com/hook",
        "active": "y",
    }
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


def field_error(html: str, field: str) -> list[str]:
    """The messages Flask-Admin's Bootstrap 4 form shows under ``field``."""
    match = re.search(rf'id="{field}".*?<div class="invalid-feedback">(.*?)</div>', html, re.S)
    return [] if match is None else [m.strip() for m in re.findall(r"<li>(.*?)</li>", match.group(1), re.S)]


def test_an_admin_creates_a_subscription_its_secret_masked_and_revealed_only_by_a_post(sign_in, web_crm):
    admin = sign_in("admin")
    created = admin.post("/admin/webhooks/new/", data=form_data())
    assert created.status_code == 302
    # The flash message waits in the session cookie, which is signed, not encrypted: no secret in it.
    flashed = session_payload(admin.get_cookie("session").value)
    assert "created: copy its signing secret" in flashed
    html = admin.get(created.headers["Location"]).get_data(as_text=True)
    row = web_crm.tables.WebhookSubscription.get()
    assert row.secret not in flashed
    assert (row.name, row.entity, row.events, row.url, row.active) == (
        "ERP", "lead", ["created", "updated"], "https://erp.example.com/hook", True,
    )  # fmt: skip
    assert row.created_by == web_fixtures.user_id(web_crm, "admin")
    assert row.secret.startswith("whsec_") and row.secret not in html
    assert "Subscription &#39;ERP&#39; created: copy its signing secret with &#34;Reveal secret&#34;." in html

    assert admin.get(f"/admin/webhooks/reveal/{row.id}").status_code == 405
    revealed = admin.post(f"/admin/webhooks/reveal/{row.id}")
    assert revealed.status_code == 200 and row.secret in revealed.get_data(as_text=True)
    assert revealed.headers["Cache-Control"] == "no-store"
    assert admin.post("/admin/webhooks/reveal/999").status_code == 404
    assert sign_in("anna").post(f"/admin/webhooks/reveal/{row.id}").status_code == 403

    listing = admin.get("/admin/webhooks/").get_data(as_text=True)
    assert "https://erp.example.com/hook" in listing and "••••" + row.secret[-4:] in listing
    assert row.secret not in listing
    edit = admin.get(f"/admin/webhooks/edit/?id={row.id}").get_data(as_text=True)
    assert row.secret not in edit

    # Saving without a new secret keeps it; the events change.
    saved = admin.post(f"/admin/webhooks/edit/?id={row.id}", data=form_data(events=["deleted"], active="y"))
    assert saved.status_code == 302
    again = web_crm.webhooks.get(row.id)
    assert (again.events, again.secret, again.active) == (["deleted"], row.secret, True)

    assert admin.post("/admin/webhooks/delete/", data={"id": row.id}).status_code == 302
    assert web_crm.tables.WebhookSubscription.select().count() == 0


def session_payload(cookie: str) -> str:
    """What anyone holding the session cookie can read: its payload, unsigned (zlib when it starts with '.')."""
    compressed = cookie.startswith(".")
    payload = cookie.lstrip(".").split(".")[0]
    data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return (zlib.decompress(data) if compressed else data).decode()


def test_every_webhook_page_opens_for_the_admin_with_the_definitions_choices(sign_in, web_crm, receiver):
    server = receiver([500, 503])
    subscription = subscribe(web_crm, server.url, events=["created"])
    new_lead(web_crm)
    delivery = deliveries(web_crm)[0]
    admin = sign_in("admin")
    pages = {
        url: admin.get(url)
        for url in [
            "/admin/webhooks/",
            "/admin/webhooks/new/",
            f"/admin/webhooks/edit/?id={subscription.id}",
            "/admin/webhook-deliveries/",
            f"/admin/webhook-deliveries/details/?id={delivery.id}",
        ]
    }
    assert {url: response.status_code for url, response in pages.items()} == dict.fromkeys(pages, 200)
    new = pages["/admin/webhooks/new/"].get_data(as_text=True)
    assert '<option value="deal">Deal (deal)</option>' in new
    assert all(f'value="{event}"' in new for event in ALL_EVENTS)
    details = pages[f"/admin/webhook-deliveries/details/?id={delivery.id}"].get_data(as_text=True)
    assert "answer 500" in details and delivery.event_id in details and "ERP" in details
    log = pages["/admin/webhook-deliveries/"].get_data(as_text=True)
    assert re.search(r'<td class="col-subscription">\s*ERP\s*</td>', log)

    failed = admin.post(f"/admin/webhooks/test/{subscription.id}", follow_redirects=True).get_data(as_text=True)
    assert "Test event failed: answered HTTP 503." in failed
    missing = admin.post("/admin/webhooks/test/999", follow_redirects=True).get_data(as_text=True)
    assert "Not sent: there is no webhook subscription #999." in missing


def test_a_bad_url_or_an_unknown_event_is_refused_next_to_its_field(sign_in, web_crm):
    admin = sign_in("admin")
    bad_url = admin.post("/admin/webhooks/new/", data=form_data(url="javascript:alert(1)"))
    assert bad_url.status_code == 200
    assert field_error(bad_url.get_data(as_text=True), "url") == ["must be an http:// or https:// URL with a host"]
    unknown = admin.post("/admin/webhooks/new/", data=form_data(events=["created", "exploded"]))
    assert unknown.status_code == 200
    assert field_error(unknown.get_data(as_text=True), "events") == [
        "&#39;exploded&#39; is not a valid choice for this field."
    ]
    assert web_crm.tables.WebhookSubscription.select().count() == 0


def test_send_test_event_posts_now_and_the_log_filters_and_redelivers(sign_in, web_crm, receiver):
    server = receiver()
    admin = sign_in("admin")
    subscription = subscribe(web_crm, server.url, events=["created"])
    other = subscribe(web_crm, server.url, events=["created"], entity="contact")

    listing = admin.get("/admin/webhooks/").get_data(as_text=True)
    assert f'action="/admin/webhooks/test/{subscription.id}"' in listing
    tested = admin.post(f"/admin/webhooks/test/{subscription.id}", follow_redirects=True)
    assert "Test event delivered: HTTP 200" in tested.get_data(as_text=True)
    headers, body, _ = server.got[0]
    assert headers["x-crm-event"] == "test" and json.loads(body)["event"] == "test"
    assert signed_correctly(SECRET, headers, body)

    web_crm.clock.advance(minutes=1)
    new_lead(web_crm)
    web_crm.clock.advance(minutes=1)
    web_crm.records.create("contact", {"last_name": "Berg"}, SYSTEM, "api")
    log = admin.get("/admin/webhook-deliveries/").get_data(as_text=True)
    events = re.findall(r'<td class="col-event">\s*(\w+)\s*</td>', log)
    assert events == ["created", "created", "test"]  # newest first
    mine = admin.get(f"/admin/webhook-deliveries/?flt0_0={subscription.id}").get_data(as_text=True)
    assert re.findall(r'<td class="col-event">\s*(\w+)\s*</td>', mine) == ["created", "test"]
    assert f"/admin/webhook-deliveries/?flt0_0={other.id}" in admin.get("/admin/webhooks/").get_data(as_text=True)
    failed_only = admin.get("/admin/webhook-deliveries/?flt1_1=failed").get_data(as_text=True)
    assert re.findall(r'<td class="col-event">', failed_only) == []

    lead_delivery = web_crm.tables.WebhookDelivery.get(
        (web_crm.tables.WebhookDelivery.subscription == subscription.id)
        & (web_crm.tables.WebhookDelivery.event == "created")
    )
    assert f"/admin/webhook-deliveries/redeliver/{lead_delivery.id}" in mine
    redelivered = admin.post(f"/admin/webhook-deliveries/redeliver/{lead_delivery.id}", follow_redirects=True)
    assert "Delivery queued again" in redelivered.get_data(as_text=True)
    first, again = [
        (h, b) for h, b, _ in server.got if json.loads(b)["entity"] == "lead" and h["x-crm-event"] == "created"
    ]
    assert first[1] == again[1] and first[0]["x-crm-delivery"] == again[0]["x-crm-delivery"]
    test_delivery = web_crm.tables.WebhookDelivery.get(web_crm.tables.WebhookDelivery.event == "test")
    refused = admin.post(f"/admin/webhook-deliveries/redeliver/{test_delivery.id}", follow_redirects=True)
    assert "Not redelivered: a test event is not redelivered" in refused.get_data(as_text=True)


def test_a_non_admin_gets_403_and_changes_nothing(sign_in, web_crm, receiver):
    server = receiver()
    subscription = subscribe(web_crm, server.url, events=["created"])
    new_lead(web_crm)
    delivery = deliveries(web_crm)[0]
    anna = sign_in("anna")
    for url in [
        "/admin/webhooks/",
        "/admin/webhooks/new/",
        f"/admin/webhooks/edit/?id={subscription.id}",
        "/admin/webhook-deliveries/",
        f"/admin/webhook-deliveries/details/?id={delivery.id}",
    ]:
        assert anna.get(url).status_code == 403, url
    assert anna.post("/admin/webhooks/new/", data=form_data(url=server.url)).status_code == 403
    assert anna.post("/admin/webhooks/delete/", data={"id": subscription.id}).status_code == 403
    assert anna.post(f"/admin/webhooks/test/{subscription.id}").status_code == 403
    assert anna.post(f"/admin/webhook-deliveries/redeliver/{delivery.id}").status_code == 403
    assert web_crm.tables.WebhookSubscription.select().count() == 1
    assert len(server.got) == 1 and len(deliveries(web_crm)) == 1


@pytest.fixture
def guarded(tmp_path, clock, monkeypatch):
    """A client signed in as the demo admin on an app with CSRF checks on."""
    web_fixtures.cheap_password_hashes(monkeypatch)
    app = build_app(tmp_path, clock, RATELIMIT_ENABLED=False)
    crm = app.extensions["crm"]
    crm.init_db()
    seed_demo(crm.directory)
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    data = {"email": "admin@demo.example.com", "password": DEMO_PASSWORD, "csrf_token": token}
    assert client.post("/login", data=data).status_code == 302
    client.crm = crm
    yield client
    crm.database.close()


def test_console_posts_without_the_csrf_token_are_refused(guarded, receiver):
    server = receiver()
    crm = guarded.crm
    assert guarded.post("/admin/webhooks/new/", data=form_data(url=server.url)).status_code == 400
    assert crm.tables.WebhookSubscription.select().count() == 0

    token = csrf_token(guarded.get("/admin/webhooks/new/").get_data(as_text=True))
    created = guarded.post("/admin/webhooks/new/", data={**form_data(url=server.url), "csrf_token": token})
    assert created.status_code == 302
    subscription = crm.tables.WebhookSubscription.get()
    assert guarded.post(f"/admin/webhooks/test/{subscription.id}").status_code == 400
    assert server.got == []
    listing = guarded.get("/admin/webhooks/").get_data(as_text=True)
    form = re.search(r'<form class="d-inline send-test" method="post" action="([^"]+)">(.*?)</form>', listing, re.S)
    assert guarded.post(form.group(1), data={"csrf_token": csrf_token(form.group(2))}).status_code == 302
    assert len(server.got) == 1


def test_redeliver_without_the_csrf_token_is_refused(guarded, receiver):
    server = receiver()
    crm = guarded.crm
    subscribe(crm, server.url, events=["created"])
    new_lead(crm)
    (delivery,) = deliveries(crm)
    Outbox = crm.tables.Outbox
    planned = Outbox.select().count()

    assert guarded.post(f"/admin/webhook-deliveries/redeliver/{delivery.id}").status_code == 400
    assert Outbox.select().count() == planned and len(server.got) == 1  # nothing sent again

    log = guarded.get("/admin/webhook-deliveries/").get_data(as_text=True)
    form = re.search(r'<form class="d-inline redeliver" method="post" action="([^"]+)">(.*?)</form>', log, re.S)
    assert guarded.post(form.group(1), data={"csrf_token": csrf_token(form.group(2))}).status_code == 302
    assert len(server.got) == 2
