"""``webhook``: POST the record as JSON to a URL, signed with HMAC-SHA256.

The receiver checks ``X-CRM-Signature: sha256=<hex of HMAC(secret, body)>``
and can drop repeats by ``X-CRM-Delivery`` (the action's idempotency key):
a delivery whose answer was lost is sent again. Server errors and network
failures are retried with backoff; a 4xx answer (other than 408 and 429)
fails at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request

from ..runtime.values import snapshot
from .run import ActionRun, PermanentFailure


def signature(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The value of the ``X-CRM-Signature`` header for ``body``.

    With ``timestamp`` (webhook subscriptions) the signed message is
    ``"<timestamp>.<body>"``, so a receiver can refuse old replays; the rule
    action signs the body alone.
    """
    message = body if timestamp is None else f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def webhook(run: ActionRun) -> str:
    engine = run.engine
    url = run.node.url
    body = json.dumps(
        {
            "entity": run.entity.name,
            "id": run.row.record_id,
            "rule": run.rule.name,
            "delivery": run.row.key,
            "record": snapshot(run.entity.definition, run.record)
            if hasattr(run.record, "_meta")
            else run.row.payload.get("snapshot"),
        },
        sort_keys=True,
        default=str,
    ).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "crm-platform-webhook/1")
    request.add_header("X-CRM-Delivery", run.row.key)
    request.add_header("X-CRM-Signature", signature(engine.webhook_secret, body))
    try:
        with urllib.request.urlopen(request, timeout=engine.webhook_timeout) as response:  # noqa: S310 - http(s) checked at compile time
            status = response.status
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500 and exc.code not in (408, 429):
            raise PermanentFailure(f"webhook {url} answered {exc.code} {exc.reason}") from None
        raise
    result = f"webhook {url} answered {status}"
    with engine.database.atomic():
        engine.runner.settle(run, result)
    return result


# The HTTP call runs outside a transaction, so no database write lock is held while it waits.
webhook.settles_itself = True
