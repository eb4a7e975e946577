"""Reading the inbound-parse webhooks of the common email providers into one
``InboundEmail``.

Accepted shapes:

- JSON, generic: ``from, to, cc, subject, text, html, message_id,
  in_reply_to, references``, and ``headers`` as an object or a list of
  ``{name, value}`` (or ``[name, value]``);
- JSON, Postmark inbound: ``From, To, Cc, Subject, TextBody, HtmlBody,
  MessageID, Headers: [{Name, Value}]``;
- a form (multipart or urlencoded), SendGrid Inbound Parse: ``from, to, cc,
  subject, text, html, headers`` (the raw header block), ``envelope`` (JSON);
- a form, Mailgun routes: ``sender, from, recipient, subject, body-plain,
  body-html, Message-Id, In-Reply-To, References, message-headers`` (a JSON
  list of ``[name, value]``).

A named field wins over the same header. Attachments are not read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from email.header import decode_header, make_header
from email.parser import HeaderParser
from email.utils import getaddresses

from ...errors import ValidationError
from ...runtime.inbound import InboundEmail

MESSAGE_ID = re.compile(r"<[^<>\s]+>")
MAX_MESSAGE_ID = 255


class PayloadError(Exception):
    """The request body cannot be read at all (not JSON, not a form): a 400 or 415."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def from_request(request) -> InboundEmail:
    """The email a webhook request carries.

    Raises ``PayloadError`` for a body that is neither a JSON object nor a
    form, ``ValidationError`` (field -> messages) for a missing or unreadable
    sender or Message-ID.
    """
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise PayloadError(400, "the body is not a JSON object")
        return from_mapping(body)
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return from_mapping(request.form.to_dict())
    raise PayloadError(415, "send JSON, multipart/form-data or a urlencoded form")


def from_mapping(data: Mapping) -> InboundEmail:
    """The email in ``data``, a webhook's fields by name (any of the accepted shapes)."""
    headers = header_pairs(data)
    header = _HeaderLookup(headers)
    errors: dict[str, list[str]] = {}

    raw_from = _text(data, "from", "From") or header("From") or _text(data, "sender")
    envelope = _envelope(data)
    raw_from = raw_from or envelope.get("from")
    senders = _addresses(raw_from)
    if not raw_from:
        errors["from"] = ["is required"]
    elif not senders:
        errors["from"] = ["is not an email address"]

    message_id = (
        _text(data, "message_id", "Message-Id", "Message-ID")
        or header("Message-ID")
        or _postmark_id(data.get("MessageID"))
    )
    ids = parse_message_ids(message_id)
    if not message_id:
        errors["message_id"] = ["is required (the Message-ID header, or message_id)"]
    elif len(ids) != 1 or len(ids[0]) > MAX_MESSAGE_ID:
        errors["message_id"] = [f"is not a Message-ID such as <abc@example.com> of at most {MAX_MESSAGE_ID} characters"]
    if errors:
        raise ValidationError(errors)

    recipients = []
    for raw in (
        _text(data, "to", "To") or header("To"),
        _text(data, "cc", "Cc") or header("Cc"),
        _text(data, "recipient"),  # Mailgun's envelope recipient
        *(envelope.get("to") or []),
    ):
        for _, address in _addresses(raw):
            if address.lower() not in (r.lower() for r in recipients):
                recipients.append(address)
    in_reply_to = parse_message_ids(_text(data, "in_reply_to", "In-Reply-To") or header("In-Reply-To"))
    name, address = senders[0]
    name = name or _text(data, "FromName") or ""  # Postmark sends the name apart
    return InboundEmail(
        message_id=ids[0],
        sender=address,
        sender_name=name,
        recipients=tuple(recipients),
        subject=_decoded(_text(data, "subject", "Subject") or header("Subject") or ""),
        text=_text(data, "text", "TextBody", "body-plain", strip=False),
        html=_text(data, "html", "HtmlBody", "body-html", strip=False),
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=tuple(parse_message_ids(_text(data, "references", "References") or header("References"))),
        headers=[[name, value] for name, value in headers],
    )


def header_pairs(data: Mapping) -> list[tuple[str, str]]:
    """The message's headers as (name, value) pairs, from any provider's form of them."""
    for key in ("headers", "Headers", "message-headers"):
        value = data.get(key)
        if isinstance(value, str) and key == "message-headers":
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if isinstance(value, str) and value.strip():  # SendGrid: the raw header block
            message = HeaderParser().parsestr(value.replace("\r\n", "\n").strip("\n") + "\n\n")
            return [(name, str(item)) for name, item in message.items()]
        if isinstance(value, dict):
            return [(str(k), _as_text(v)) for k, v in value.items()]
        if isinstance(value, list):
            pairs = []
            for item in value:
                if isinstance(item, dict):
                    name = item.get("name", item.get("Name"))
                    content = item.get("value", item.get("Value"))
                elif isinstance(item, list | tuple) and len(item) == 2:
                    name, content = item
                else:
                    continue
                if isinstance(name, str):
                    pairs.append((name, _as_text(content)))
            return pairs
    return []


def parse_message_ids(value: str | None) -> list[str]:
    """The Message-IDs in a header value, each in angle brackets; bare ids get brackets."""
    if not value:
        return []
    found = MESSAGE_ID.findall(value)
    if found:
        return found
    return [f"<{word}>" for word in value.split() if "@" in word or len(value.split()) == 1]


class _HeaderLookup:
    """The first value of a header, by name in any case."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self.values: dict[str, str] = {}
        for name, value in pairs:
            self.values.setdefault(name.lower(), value)

    def __call__(self, name: str) -> str | None:
        value = self.values.get(name.lower())
        return value.strip() if value and value.strip() else None


def _text(data: Mapping, *names: str, strip: bool = True) -> str | None:
    """The first of the fields ``names`` that holds text (lists of addresses are joined)."""
    for name in names:
        value = data.get(name)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            value = ", ".join(value)
        if isinstance(value, str) and value.strip():
            return value.strip() if strip else value
    return None


def _as_text(value) -> str:
    return value if isinstance(value, str) else "" if value is None else json.dumps(value)


def _decoded(value: str) -> str:
    """A header value with its RFC 2047 encoded words (=?UTF-8?Q?...?=) decoded."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError):  # a broken or unknown encoding: keep it as sent
        return value


def _addresses(raw: str | None) -> list[tuple[str, str]]:
    """(display name, address) of each address in a header value; those without an @ are left out."""
    if not raw:
        return []
    pairs = getaddresses([_decoded(raw)])
    return [(name.strip(), address.strip()) for name, address in pairs if _is_address(address.strip())]


def _is_address(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain and "." in domain and not re.search(r"\s", address))


def _envelope(data: Mapping) -> dict:
    """SendGrid's ``envelope``: {"from": ..., "to": [...]} as JSON text."""
    raw = data.get("envelope")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    if not isinstance(raw, dict):
        return {}
    to = raw.get("to")
    return {"from": raw.get("from") if isinstance(raw.get("from"), str) else None,
            "to": [to] if isinstance(to, str) else [t for t in to or [] if isinstance(t, str)]}  # fmt: skip


def _postmark_id(value) -> str | None:
    """Postmark's own id of the message, for when its headers carry no Message-ID."""
    return f"<{value.strip()}@inbound.postmarkapp.com>" if isinstance(value, str) and value.strip() else None
