"""The webhook action against a real HTTP server on loopback: signed, retried
with backoff after server errors, failed at once on a client error, and run
again by an admin's retry."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil

import pytest

from crm_platform.application import create_app
from crm_platform.runtime.users import Actor

from .conftest import GOOD
from .live import Worker, live_config, wait_for, worker_env

SECRET = "hook-secret"


@pytest.fixture
def hooked(tmp_path):
    """An engine whose pack posts every event lead to ``url``, and its worker."""
    workers = []

    def build(url: str):
        pack = tmp_path / "pack"
        shutil.copytree(GOOD, pack)
        with open(pack / "rules" / "leads.rules", "a") as rules:
            rules.write(
                f'\nrule "Tell the ERP"\n  on lead created\n  when lead.source == "event"\n'
                f'  then\n    webhook "{url}"\n'
            )
        config = live_config(
            tmp_path, pack, None, WEBHOOK_SECRET=SECRET, ACTION_RETRY_BASE_SECONDS=0.2, ACTION_MAX_ATTEMPTS=4
        )
        crm = create_app({"TESTING": True, **config}).extensions["crm"]
        crm.init_db()
        workers.append(Worker(worker_env(config), tmp_path / "worker.log").start())
        return crm

    yield build
    for worker in workers:
        worker.stop()


def create_event_lead(crm):
    return crm.records.create(
        "lead", {"first_name": "Eve", "last_name": "Event", "source": "event"}, Actor.system(), "form"
    )


def test_a_webhook_is_signed_and_retried_with_backoff_until_it_is_accepted(receiver, hooked):
    server = receiver([503, 500])
    crm = hooked(server.url)
    lead = create_event_lead(crm)
    Outbox = crm.tables.Outbox
    wait_for(lambda: Outbox.select().where(Outbox.status == "done").exists(), what="the third delivery")

    assert len(server.deliveries) == 3
    keys = {headers["x-crm-delivery"] for headers, _ in server.deliveries}
    assert len(keys) == 1  # the same delivery each time, so the receiver can drop repeats
    headers, body = server.deliveries[-1]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-crm-signature"], expected)
    payload = json.loads(body)
    assert (payload["entity"], payload["id"], payload["rule"]) == ("lead", lead.id, "Tell the ERP")
    assert payload["record"]["last_name"] == "Event"
    row = Outbox.get(Outbox.kind == "webhook")
    assert row.attempts == 3
    kinds = [e.kind for e in crm.history.entries("lead", lead.id) if e.rule == "Tell the ERP"]
    assert kinds == ["retry", "retry", "action"]


def test_a_refused_webhook_fails_at_once_and_runs_again_when_an_admin_retries(receiver, hooked):
    server = receiver([404])
    crm = hooked(server.url)
    lead = create_event_lead(crm)
    Outbox = crm.tables.Outbox
    wait_for(lambda: Outbox.select().where(Outbox.status == "failed").exists(), what="the failure")

    row = Outbox.get(Outbox.kind == "webhook")
    assert row.attempts == 1
    assert "answered 404" in row.error
    errors = [e.summary for e in crm.history.entries("lead", lead.id) if e.kind == "error"]
    assert errors == [f"webhook (rule 'Tell the ERP') failed: webhook {server.url} answered 404 Not Found"]

    crm.outbox.retry(row.id)
    wait_for(lambda: Outbox.get_by_id(row.id).status == "done", what="the retried delivery")
    assert len(server.deliveries) == 2
