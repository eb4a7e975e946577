"""``POST /api/inbound-email``: the webhook email providers call with each
email they receive for the company (SendGrid Inbound Parse, Mailgun routes,
Postmark inbound, or any JSON sender).

No sign-in and no CSRF token (it is called by a provider's servers): the
request carries the shared secret ``INBOUND_EMAIL_SECRET`` as
``X-CRM-Secret: ...``, ``Authorization: Bearer ...``, the password of HTTP
basic auth (``https://inbound:SECRET@crm.example.com/...``) or
``?secret=...`` for providers that only take a URL. Requests are limited per
address (``INBOUND_EMAIL_RATE_LIMIT``). Every answer is JSON.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ...errors import ValidationError
from ...runtime import inbound
from ..state import crm
from . import inbound_payloads as payloads
from .resources import error_response as api_error_response

bp = Blueprint("inbound", __name__, url_prefix="/api")


class InboundError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@bp.route("/inbound-email", methods=["GET", "PUT", "PATCH", "DELETE"])
def other_method():
    """Only POST is taken; without this the path would fall to ``/api/<entity>`` and ask for a token."""
    response = error_response(405, "POST the email here; this address takes nothing else")
    response.headers["Allow"] = "POST"
    return response


@bp.post("/inbound-email")
def receive():
    """Store the email, match it to a record and fire "email received" (200 also for a redelivery)."""
    check_secret()
    # A newsletter's html alone can pass Flask's 500 kB limit of a form field; the request as
    # a whole (attachments included, which are not kept) is limited instead.
    limit = int(current_app.config.get("INBOUND_EMAIL_MAX_BYTES") or 25 * 1024 * 1024)
    request.max_content_length = request.max_form_memory_size = limit
    try:
        mail = payloads.from_request(request)
    except payloads.PayloadError as error:
        raise InboundError(error.status, str(error)) from None
    received = inbound.receive(crm(), mail)
    match = received.match
    return jsonify(
        {
            "id": received.id,
            "message_id": mail.message_id,
            "matched": {"entity": match.entity, "id": match.record_id, "by": match.how} if match else None,
            "duplicate": received.duplicate,
            "automatic": received.automatic,
            **({"not_created": received.refused} if received.refused else {}),
        }
    )


def check_secret() -> None:
    """Refuse the request unless it carries ``INBOUND_EMAIL_SECRET`` (compared in constant time)."""
    secret = current_app.config.get("INBOUND_EMAIL_SECRET")
    if not secret:
        raise InboundError(503, "inbound email is not set up: set INBOUND_EMAIL_SECRET")
    expected = secret.encode()
    if not any(hmac.compare_digest(sent.encode(), expected) for sent in secrets_sent() if sent):
        raise InboundError(401, "send the inbound-email secret: X-CRM-Secret, Authorization or ?secret=")


def secrets_sent() -> list[str]:
    """Every place a provider can put the secret: a header, bearer or basic auth, the query string."""
    sent = [request.headers.get("X-CRM-Secret", "")]
    auth = request.authorization
    if auth is not None:
        sent.append((auth.token if auth.type == "bearer" else auth.password) or "")
    sent.append(request.args.get("secret", ""))
    return sent


# --- errors: JSON, like the rest of the API ------------------------------------------


def error_response(status: int, message: str, **extra):
    """The API's JSON error; a 401 asks for the shared secret (basic auth's password, as Postmark sends it)."""
    return api_error_response(status, message, challenge='Basic realm="inbound-email"', **extra)


@bp.errorhandler(InboundError)
def inbound_error(error: InboundError):
    return error_response(error.status, error.message)


@bp.errorhandler(ValidationError)
def invalid(error: ValidationError):
    return error_response(422, "the email cannot be read", fields=error.errors)


def http_error(error: HTTPException):
    return error_response(error.code or 500, error.description or error.name)


# The app's own handlers for these codes answer HTML pages; a blueprint's handler for the code wins.
for _code in (400, 405, 413, 415, 429, 500):
    bp.register_error_handler(_code, http_error)
bp.register_error_handler(HTTPException, http_error)
