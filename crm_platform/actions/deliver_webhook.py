"""``deliver_webhook``: post one planned event to a webhook subscription and log the attempt.

The body was fixed when the change was saved (``runtime/subscriptions.py``);
each attempt signs it anew with the subscription's current secret:
``X-CRM-Signature: sha256=<hex HMAC-SHA256 of "<X-CRM-Timestamp>.<body>">``.
``X-CRM-Delivery`` is the event id, the same on every attempt and
redelivery, so a receiver drops repeats by it.

A 2xx answer is delivered. Any other answer, a timeout or a network error
is a failed attempt: logged, then retried by the outbox with backoff
(``ACTION_RETRY_BASE_SECONDS`` doubling, up to ``ACTION_MAX_ATTEMPTS``).
``410 Gone`` means the receiver is gone for good: the subscription is
deactivated and the delivery fails at once. Redirects are not followed.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass

from ..errors import NotFound
from ..runtime.subscriptions import event_body, is_web_url
from .webhook import signature

USER_AGENT = "crm-platform-webhook/1"
EXCERPT_CHARACTERS = 500  # of the receiver's answer, kept in the log


@dataclass(frozen=True)
class Attempt:
    """What one POST got."""

    delivered: bool
    http_status: int | None
    response: str | None  # the start of the answer's body
    error: str | None
    duration_ms: int


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is the receiver's answer, not an instruction: it fails the attempt with its status."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _Deadline:
    """Cuts the connections of one attempt when it outlasts ``seconds`` as a whole.

    A socket timeout counts per read: a receiver sending a byte now and then would
    otherwise hold the worker's thread for as long as it likes.
    """

    def __init__(self, seconds: float):
        self.connections: list[http.client.HTTPConnection] = []
        self.expired = False
        self.timer = threading.Timer(seconds, self.cut)
        self.timer.daemon = True

    def track(self, connection_class):
        """A connection factory for ``do_open`` that remembers what it made."""

        def make(*args, **kwargs):
            connection = connection_class(*args, **kwargs)
            self.connections.append(connection)
            return connection

        return make

    def cut(self) -> None:
        self.expired = True
        for connection in self.connections:
            if connection.sock is not None:
                try:
                    connection.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read, which then fails
                except OSError:
                    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req):
        return self.do_open(self.deadline.track(http.client.HTTPConnection), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def https_open(self, req):
        return self.do_open(self.deadline.track(http.client.HTTPSConnection), req, context=self._context)


def deliver_webhook(engine, row) -> str:
    """Run outbox row ``row`` (claimed): post its event, log the attempt, settle the row."""
    payload = row.payload
    try:
        subscription = engine.webhooks.get(payload["subscription"])
    except NotFound:
        subscription = None
    if subscription is None or not subscription.active:
        why = (
            "its webhook subscription was deleted"
            if subscription is None
            else f"the webhook subscription {subscription.name!r} is inactive"
        )
        with engine.database.atomic():
            engine.outbox.skip(row, why)
        return f"skipped: {why}"
    attempt = send(engine, subscription, payload["event"], payload["event_id"], event_body(payload))
    gone = attempt.http_status == 410
    error = attempt.error
    if gone:
        error = f"{error}; the subscription was deactivated (the receiver says it is gone)"
    with engine.database.atomic():
        log(engine, subscription, row.id, payload["event_id"], payload["event"], row, row.attempts, attempt, error)
        if attempt.delivered:
            result = f"delivered to {subscription.url}: HTTP {attempt.http_status}"
            engine.outbox.complete(row, result)
            return result
        if gone:
            engine.webhooks.deactivate(subscription.id)
        final = engine.outbox.fail(row, error, permanent=gone)
    return f"failed{'' if final else ', will retry'}: {error}"


# The runner hands the claimed row over as it is: a subscription's delivery belongs to no rule.
deliver_webhook.without_rule = True


def send_test(engine, subscription_id: int):
    """Post a ``test`` event to a subscription now (no retries); returns its delivery log row."""
    subscription = engine.webhooks.get(subscription_id)
    event_id = f"evt_{uuid.uuid4().hex}"
    body = {
        "id": event_id,
        "event": "test",
        "entity": subscription.entity,
        "record_id": None,
        "occurred_at": engine.clock.utcnow().isoformat() + "Z",
        "definition_version": engine.definition_version,
        "actor": None,
        "data": {},
        "changes": {},
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    attempt = send(engine, subscription, "test", event_id, text)
    with engine.database.atomic():
        return log(engine, subscription, None, event_id, "test", None, 1, attempt, attempt.error)


def send(engine, subscription, event: str, event_id: str, body: bytes) -> Attempt:
    """POST ``body`` to the subscription's URL, signed; never raises for what the receiver does."""
    timestamp = int(engine.clock.utcnow().replace(tzinfo=dt.UTC).timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-CRM-Event": event,
        "X-CRM-Delivery": event_id,
        "X-CRM-Timestamp": str(timestamp),
        "X-CRM-Signature": signature(subscription.secret, body, timestamp),
    }
    return post(subscription.url, body, headers, engine.webhook_timeout)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Attempt:
    """One POST; the answer, or what went wrong, as an ``Attempt``."""
    if not is_web_url(url):
        return Attempt(False, None, None, f"not delivered to {url!r}: only http and https URLs are", 0)
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    deadline = _Deadline(timeout)
    opener = urllib.request.build_opener(_NoRedirects, _HTTPHandler(deadline), _HTTPSHandler(deadline))
    started = time.monotonic()  # a duration, not a moment in time: the injected clock does not apply
    deadline.timer.start()
    try:
        with opener.open(request, timeout=timeout) as response:  # noqa: S310 - http(s) checked above
            status, answer = response.status, _excerpt(response)
    except urllib.error.HTTPError as exc:
        with exc:
            status, answer = exc.code, _excerpt(exc)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        error = f"no answer within {timeout:g} s" if deadline.expired else _describe(exc, timeout)
        return Attempt(False, None, None, error, _ms(started))
    finally:
        deadline.timer.cancel()
    if deadline.expired:  # cut while the answer was read: not a whole answer (retried; receivers drop repeats)
        return Attempt(
            False, status, answer, f"answered HTTP {status} but did not finish within {timeout:g} s", _ms(started)
        )
    delivered = 200 <= status < 300
    return Attempt(delivered, status, answer, None if delivered else f"answered HTTP {status}", _ms(started))


def log(engine, subscription, outbox_id, event_id, event, row, attempt_number, attempt: Attempt, error):
    """Write one delivery log row (inside the caller's transaction); returns it."""
    Delivery = engine.tables.WebhookDelivery
    delivery_id = Delivery.insert(
        subscription=subscription.id,
        outbox_id=outbox_id,
        event_id=event_id,
        event=event,
        entity=row.entity if row is not None else subscription.entity,
        record_id=row.record_id if row is not None else None,
        attempt=attempt_number,
        status="delivered" if attempt.delivered else "failed",
        http_status=attempt.http_status,
        response=attempt.response,
        error=error,
        duration_ms=attempt.duration_ms,
        at=engine.clock.utcnow(),
    ).execute()
    return Delivery.get_by_id(delivery_id)


def _excerpt(response) -> str | None:
    try:
        raw = response.read(EXCERPT_CHARACTERS * 4)
    except (OSError, http.client.HTTPException):
        return None
    text = raw.decode("utf-8", errors="replace")
    return text if len(text) <= EXCERPT_CHARACTERS else text[: EXCERPT_CHARACTERS - 1] + "…"


def _describe(exc: Exception, timeout: float) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    return f"could not deliver: {reason}"


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
