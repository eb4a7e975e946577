"""Webhook subscriptions: outside systems told of every change to an entity's records.

An admin subscribes a URL to some events of one entity (``created``,
``updated``, ``stage_changed``, ``deleted``). Each change of such a record
plans one outbox row (kind ``deliver_webhook``) per matching subscription in
the change's own transaction, whether or not the change fires rules (an
import with ``rules=False`` still tells integrations). The event id and the
body are fixed then, so every attempt sends the same bytes; the worker posts
them (``actions/deliver_webhook.py``), the outbox retries with backoff, and
every attempt is logged in ``crm_webhook_delivery``.

Which subscriptions are active is read once and kept for
``WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS`` (default 10) of the injected clock,
so a write asks the database nothing extra. A change made through this class
is seen at once by the process that made it; other processes (workers,
other web servers) see it within that time, and the changes they write
meanwhile are delivered by the list they had.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import NotFound, ValidationError
from . import values as v
from .tables import PreparedInsert

KIND = "deliver_webhook"  # the outbox kind, and the Huey task crm.deliver_webhook
EVENTS = ("created", "updated", "stage_changed", "deleted")
EVENT_OF = {"create": "created", "update": "updated", "transition": "stage_changed", "delete": "deleted"}
SECRET_MIN_LENGTH = 16


@dataclass(frozen=True)
class Active:
    """An active subscription as the write path needs it."""

    id: int
    name: str
    events: frozenset[str]


def generate_secret() -> str:
    """A new signing secret (shown to the admin once)."""
    return "whsec_" + secrets.token_urlsafe(32)


def mask(secret: str) -> str:
    """A secret as lists show it after creation: its last four characters only."""
    return "••••" + secret[-4:]


def event_body(payload: dict) -> bytes:
    """The body of a delivery as planned (the same bytes on every attempt)."""
    return payload["body"].encode()


class Subscriptions:
    """Manages a company's webhook subscriptions and plans their deliveries."""

    def __init__(self, engine, cache_seconds: float = 10.0):
        self.engine = engine  # the company's engine (crm_platform.engine.CRM)
        self.cache_seconds = cache_seconds
        self._cache: tuple[dt.datetime, dt.datetime, dict[str, list[Active]]] | None = None  # loaded, expires
        self._insert: PreparedInsert | None = None

    @property
    def tables(self):
        return self.engine.tables

    # --- the write path's view ------------------------------------------------

    def active_for(self, entity: str, event: str) -> list[Active]:
        """The active subscriptions to ``event`` of ``entity`` (from the per-process cache)."""
        now = self.engine.clock.utcnow()
        cache = self._cache
        if cache is None or not (cache[0] <= now < cache[1]):
            cache = (now, now + dt.timedelta(seconds=self.cache_seconds), self._load())
            self._cache = cache  # one assignment: threads see the old or the new list, whole
        subscribers = cache[2].get(entity)
        return [sub for sub in subscribers if event in sub.events] if subscribers else []

    def listens(self, entity: str, operation: str) -> bool:
        """True if an active subscription wants to hear of ``operation`` (create, update, ...) on ``entity``
        (asked once for a batch of changes, which then plans deliveries per change only if so)."""
        event = EVENT_OF.get(operation)
        return bool(event and self.active_for(entity, event))

    def _load(self) -> dict[str, list[Active]]:
        Sub = self.tables.WebhookSubscription
        by_entity: dict[str, list[Active]] = {}
        query = Sub.select(Sub.id, Sub.name, Sub.entity, Sub.events).where(Sub.active == True)  # noqa: E712
        for row in query.order_by(Sub.id):
            by_entity.setdefault(row.entity, []).append(Active(row.id, row.name, frozenset(row.events)))
        return by_entity

    def invalidate(self) -> None:
        """Forget the cached list (after a change to the subscriptions in this process)."""
        self._cache = None

    def plan(self, ce, record, operation: str, changes: dict, audit_id: int, actor, channel: str) -> list[int]:
        """Plan a delivery per active subscription to this change (inside its transaction).

        ``changes`` is field -> [old, new] in JSON form, as audited.
        """
        event = EVENT_OF.get(operation)
        subscribers = self.active_for(ce.name, event) if event else []
        if not subscribers:
            return []
        engine = self.engine
        now = engine.clock.utcnow()
        event_id = f"evt_{uuid.uuid4().hex}"
        body = {
            "id": event_id,
            "event": event,
            "entity": ce.name,
            "record_id": record.id,
            "occurred_at": now.isoformat() + "Z",
            "definition_version": engine.definition_version,
            "actor": {"user_id": actor.user_id, "channel": channel},
            "data": v.snapshot(ce.definition, record),
            "changes": {name: {"old": old, "new": new} for name, (old, new) in changes.items()},
        }
        if event == "stage_changed":
            body["stage"] = {
                name: {"from": changes[name][0], "to": changes[name][1]} for name in ce.workflows if name in changes
            }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        ready = []
        for sub in subscribers:
            row_id = self._planner()(
                key=f"webhook/{audit_id}/{sub.id}",
                kind=KIND,
                entity=ce.name,
                record_id=record.id,
                rule=f"webhook {sub.name}"[:200],
                path=str(sub.id),
                definition_version=engine.definition_version,
                payload={"v": 1, "subscription": sub.id, "event_id": event_id, "event": event, "body": text},
                depth=1,
                status="queued",
                created_at=now,
                attempts=0,
                enqueued_at=now,
            )
            ready.append((row_id, KIND, None))
        engine.outbox.after_commit(ready)
        return [row_id for row_id, _, _ in ready]

    def _planner(self) -> PreparedInsert:
        if self._insert is None:
            self._insert = PreparedInsert(
                self.tables.Outbox,
                ("key", "kind", "entity", "record_id", "rule", "path", "definition_version", "payload", "depth",
                 "status", "created_at", "attempts", "enqueued_at"),
            )  # fmt: skip
        return self._insert

    # --- managing subscriptions ---------------------------------------------

    def get(self, subscription_id: int):
        """The subscription row; raises ``NotFound``."""
        Sub = self.tables.WebhookSubscription
        row = Sub.get_or_none(Sub.id == subscription_id)
        if row is None:
            raise NotFound(f"there is no webhook subscription #{subscription_id}")
        return row

    def create(self, name: str, entity: str, events, url: str, secret: str | None = None, *, active=True, user_id=None):
        """Add a subscription; returns (its row, its secret). An empty ``secret`` is generated.

        Raises ``ValidationError`` (field -> messages) and writes nothing then.
        """
        data = self._clean(name, entity, events, url, secret)
        data["secret"] = data["secret"] or generate_secret()
        Sub = self.tables.WebhookSubscription
        row_id = Sub.insert(
            **data, active=bool(active), created_at=self.engine.clock.utcnow(), created_by=user_id
        ).execute()
        self.invalidate()
        return self.get(row_id), data["secret"]

    def update(self, subscription_id: int, name: str, entity: str, events, url: str, secret=None, *, active=True):
        """Change a subscription; an empty ``secret`` keeps the current one. Raises ``ValidationError``."""
        self.get(subscription_id)
        data = self._clean(name, entity, events, url, secret)
        if not data["secret"]:
            del data["secret"]
        Sub = self.tables.WebhookSubscription
        Sub.update(**data, active=bool(active)).where(Sub.id == subscription_id).execute()
        self.invalidate()
        return self.get(subscription_id)

    def delete(self, subscription_id: int) -> None:
        """Remove a subscription and its delivery log; deliveries still planned are skipped."""
        Sub = self.tables.WebhookSubscription
        Sub.delete().where(Sub.id == subscription_id).execute()
        self.invalidate()

    def deactivate(self, subscription_id: int) -> None:
        Sub = self.tables.WebhookSubscription
        Sub.update(active=False).where(Sub.id == subscription_id).execute()
        self.invalidate()

    def _clean(self, name, entity, events, url, secret) -> dict:
        errors: dict[str, list[str]] = {}
        name = (name or "").strip()
        if not name:
            errors["name"] = ["is required"]
        elif len(name) > 120:
            errors["name"] = ["is longer than 120 characters"]
        entities = self.engine.compiled.entities
        if not entity:
            errors["entity"] = ["is required"]
        elif entity not in entities:
            errors["entity"] = [f"there is no entity {entity!r}"]
        events = list(events or [])
        unknown = [event for event in events if event not in EVENTS]
        if not events:
            errors["events"] = ["choose at least one event"]
        elif unknown:
            errors["events"] = [f"unknown event {e!r} (choose from {', '.join(EVENTS)})" for e in unknown]
        elif "stage_changed" in events and entity in entities and not entities[entity].workflows:
            errors["events"] = [f"stage_changed: {entities[entity].definition.plural} have no stages"]
        url = (url or "").strip()
        if not url:
            errors["url"] = ["is required"]
        elif not is_web_url(url):
            errors["url"] = ["must be an http:// or https:// URL with a host"]
        elif len(url) > 2000:
            errors["url"] = ["is longer than 2000 characters"]
        secret = (secret or "").strip()
        if secret and not SECRET_MIN_LENGTH <= len(secret) <= 128:
            errors["secret"] = [f"must have {SECRET_MIN_LENGTH} to 128 characters (or leave it empty)"]
        if errors:
            raise ValidationError(errors)
        ordered = [event for event in EVENTS if event in events]
        return {"name": name, "entity": entity, "events": ordered, "url": url, "secret": secret}

    # --- the delivery log ---------------------------------------------------

    def redeliver(self, delivery_id: int) -> int:
        """Send the event of a logged delivery again, with the same id and body; returns the outbox row.

        A failed delivery runs again with fresh attempts; a finished one gets a
        new outbox row. Raises ``LookupError`` when that makes no sense (a test
        event, a delivery still in progress, an inactive subscription).
        """
        tables = self.tables
        Delivery, Outbox = tables.WebhookDelivery, tables.Outbox
        delivery = Delivery.get_or_none(Delivery.id == delivery_id)
        if delivery is None:
            raise LookupError(f"there is no delivery #{delivery_id}")
        if delivery.outbox_id is None:
            raise LookupError("a test event is not redelivered: send a new one")
        if not delivery.subscription.active:
            raise LookupError(f"the subscription {delivery.subscription.name!r} is inactive: activate it first")
        row = Outbox.get_or_none(Outbox.id == delivery.outbox_id)
        if row is None:
            raise LookupError(f"the planned delivery #{delivery.outbox_id} is gone")
        if row.status == "failed":
            self.engine.outbox.retry(row.id)
            return row.id
        if row.status not in ("done", "skipped"):
            raise LookupError(f"delivery #{row.id} is still in progress ({row.status})")
        now = self.engine.clock.utcnow()
        with tables.database.atomic():
            again = self._planner()(
                key=f"{row.key.split('/again/')[0]}/again/{uuid.uuid4().hex[:12]}",
                kind=KIND,
                entity=row.entity,
                record_id=row.record_id,
                rule=row.rule,
                path=row.path,
                definition_version=row.definition_version,
                payload=row.payload,
                depth=row.depth,
                status="queued",
                created_at=now,
                attempts=0,
                enqueued_at=now,
            )
            self.engine.outbox.after_commit([(again, KIND, None)])
        return again


def is_web_url(url: str) -> bool:
    """True for an http or https URL with a host (the only ones delivered to)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in url)
