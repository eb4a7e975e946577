"""Email received through the inbound-email webhook: matched to a record,
stored, put on the record's timeline and raised as its "email received" event.

The first way that finds a record wins:

1. **the thread**: the message's In-Reply-To, then its References (newest
   first), each looked up among the mail the platform sent (``crm_mail``),
   then among the mail it received and matched before (``crm_inbound_mail``);
2. **a tag** in a recipient address: ``support+ticket-42@example.com`` names
   ticket #42;
3. **the sender's address**: equal, ignoring case, to an email field of a
   record; entities in the pack's order, and within the first entity that has
   one, the most recently updated record.

Mail that matches nothing is stored all the same (entity and record empty)
and listed in the console. Everything happens in one transaction: the stored
mail, the timeline entry and the planned actions of the rules
``on ENTITY email received``; a Message-ID already stored is not received
again (providers redeliver when they miss an answer).
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import peewee as pw

from ..errors import PermissionDenied, ValidationError
from . import values as v
from .events import Change, matching_rules, plan
from .users import Actor

log = logging.getLogger("crm.inbound")

EXCERPT_LENGTH = 280
# The line a mail program puts above the quoted message: "On Mon, 23 Nov 2026, Anna wrote:".
QUOTE_INTRO = re.compile(r"^\s*(On\b.*\bwrote:|Am\b.*\bschrieb\b.*:|-{2,}\s*Original Message\s*-{2,})\s*$", re.I)
TAG = re.compile(r"\+([a-z][a-z0-9_]*)-([0-9]{1,18})@", re.I)


@dataclass(frozen=True)
class InboundEmail:
    """A received email as every provider's payload is read into (see ``web/api/inbound_payloads.py``)."""

    message_id: str  # with its angle brackets: <abc@example.com>
    sender: str  # the address only
    sender_name: str = ""
    recipients: tuple[str, ...] = ()  # To, Cc and the envelope's recipients, addresses only
    subject: str = ""
    text: str | None = None
    html: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()  # oldest first, as in the header
    headers: list = field(default_factory=list)  # [name, value] pairs, as received

    @property
    def from_line(self) -> str:
        """``Anna Berg <anna@example.com>``, or the bare address."""
        return f"{self.sender_name} <{self.sender}>" if self.sender_name else self.sender


@dataclass(frozen=True)
class Match:
    """The record a received email belongs to, and how that was found."""

    entity: str
    record_id: int
    how: str  # thread, tag, address, or created (from pack.yaml's inbound_email:)


@dataclass(frozen=True)
class Received:
    """What ``receive`` did: the stored mail's id, its record, and whether it was a redelivery."""

    id: int
    match: Match | None
    duplicate: bool = False
    automatic: bool = False  # an auto-reply: kept and shown, fires nothing
    refused: str | None = None  # why the record ``inbound_email:`` asks for could not be created


# RFC 3834 and what common mail systems send instead of it (Exchange, Gmail's vacation
# responder, German and English Outlook subjects).
AUTOMATIC_PRECEDENCE = {"auto_reply", "bulk", "junk", "list"}
AUTOMATIC_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(matische antwort)?|out of (the )?office|abwesenheitsnotiz|autoreply)\b", re.I
)


def automatic(mail: InboundEmail) -> str | None:
    """Why ``mail`` was sent by a machine (an out-of-office reply, a bulk mailing), or None.

    Such mail is kept and shown, but it is no reply: it fires no "email received"
    rule and does not stop a follow-up sequence that waits for one.
    """
    headers = {str(name).lower(): str(value).strip().lower() for name, value in mail.headers}
    if headers.get("auto-submitted", "no") != "no":
        return f"Auto-Submitted: {headers['auto-submitted']}"
    for name in ("x-autoreply", "x-autorespond", "x-autoresponse"):
        if name in headers:
            return f"{name} header"
    if headers.get("precedence") in AUTOMATIC_PRECEDENCE:
        return f"Precedence: {headers['precedence']}"
    if AUTOMATIC_SUBJECT.match(mail.subject or ""):
        return "an automatic reply's subject"
    return None


def receive(engine, mail: InboundEmail) -> Received:
    """Store ``mail``, match it to a record and, if it matched, note it on the record's
    timeline and plan the actions of the rules ``on ENTITY email received``.

    ``engine`` is the company's ``CRM``. A Message-ID stored before returns that
    row with ``duplicate=True`` and changes nothing.
    """
    Inbound = engine.tables.InboundMail
    try:
        with engine.database.atomic():
            existing = Inbound.get_or_none(Inbound.message_id == mail.message_id)
            if existing is not None:
                return Received(existing.id, _stored_match(existing), duplicate=True, automatic=existing.automatic)
            found = find_record(engine, mail)
            machine = automatic(mail)
            now = engine.clock.utcnow()
            refused = None
            if found is None and machine is None:
                found, refused = create_record(engine, mail)
            row_id = Inbound.insert(
                message_id=mail.message_id,
                in_reply_to=mail.in_reply_to,
                references=" ".join(mail.references) or None,
                sender=mail.sender[:254],
                recipients=", ".join(mail.recipients),
                subject=mail.subject[:255],
                text=mail.text,
                html=mail.html,
                headers=mail.headers or None,
                entity=found.entity if found else None,
                record_id=found.record_id if found else None,
                matched_by=found.how if found else None,
                automatic=machine is not None,
                received_at=now,
            ).execute()
            if found is not None and found.how == "created":
                _note_created(engine, found, mail, row_id, now)
            elif found is not None:
                _on_record(engine, found, mail, row_id, now, machine)
            return Received(row_id, found, automatic=machine is not None, refused=refused)
    except pw.IntegrityError:
        # Two deliveries of one message at the same moment: the other one stored it.
        existing = Inbound.get_or_none(Inbound.message_id == mail.message_id)
        if existing is None:
            raise
        return Received(existing.id, _stored_match(existing), duplicate=True, automatic=existing.automatic)


def create_record(engine, mail: InboundEmail) -> tuple[Match | None, str | None]:
    """The record ``pack.yaml``'s ``inbound_email:`` makes from an email that matched none (a
    ticket, for a helpdesk), through the write path with its rules; (match, None), or (None, why
    not) when the write path refused it; (None, None) when the pack asks for none.

    Automatic replies never get here: a new record per out-of-office would answer itself.
    """
    spec = engine.compiled.pack.settings.inbound_email
    if spec is None:
        return None, None
    ce = engine.compiled.entities[spec.entity.name]
    parts = {
        "from": mail.sender,
        "from_name": mail.sender_name or None,
        "subject": mail.subject or "(no subject)",
        "text": mail.text if mail.text is not None else (html_to_text(mail.html) if mail.html else None),
    }
    data = dict(spec.values)
    for name, part in spec.fields.items():
        value = parts[part]
        limit = ce.definition.fields[name].max_length
        data[name] = value[:limit] if isinstance(value, str) and limit else value
    who = Actor(user_id=None, superuser=True, name="inbound email")
    try:
        record = engine.records.create(ce.name, data, who, "api")
    except (ValidationError, PermissionDenied) as error:
        log.warning("inbound email %s created no %s: %s", mail.message_id, ce.name, error)
        return None, str(error)
    return Match(ce.name, record.id, "created"), None


def _note_created(engine, found: Match, mail: InboundEmail, row_id: int, now) -> None:
    """The new record's timeline says which email it came from (the create event fired its rules)."""
    engine.history.note(
        found.entity,
        found.record_id,
        now,
        "email_received",
        f"Created from an email from {mail.from_line}: {mail.subject}",
        detail={"inbound_mail_id": row_id, "from": mail.from_line, "subject": mail.subject,
                "excerpt": excerpt(mail), "matched_by": "created"},
    )  # fmt: skip


def find_record(engine, mail: InboundEmail) -> Match | None:
    """The record ``mail`` belongs to: by thread, else by tag, else by the sender's address."""
    return match_thread(engine, mail) or match_tag(engine, mail) or match_address(engine, mail)


def match_thread(engine, mail: InboundEmail) -> Match | None:
    """The record of the message ``mail`` answers: In-Reply-To, then References, newest first."""
    Mail, Inbound = engine.tables.Mail, engine.tables.InboundMail
    candidates = [mail.in_reply_to] if mail.in_reply_to else []
    candidates += [ref for ref in reversed(mail.references) if ref not in candidates]
    for message_id in candidates:
        sent = (
            Mail.select(Mail.entity, Mail.record_id)
            .where((Mail.message_id == message_id) & Mail.entity.is_null(False))
            .order_by(Mail.id.desc())
            .first()
        )
        if sent is not None and _exists(engine, sent.entity, sent.record_id):
            return Match(sent.entity, sent.record_id, "thread")
        earlier = (
            Inbound.select(Inbound.entity, Inbound.record_id)
            .where((Inbound.message_id == message_id) & Inbound.entity.is_null(False))
            .first()
        )
        if earlier is not None and _exists(engine, earlier.entity, earlier.record_id):
            return Match(earlier.entity, earlier.record_id, "thread")
    return None


def match_tag(engine, mail: InboundEmail) -> Match | None:
    """The record a recipient's ``+ENTITY-ID`` tag names (``support+ticket-42@...``), if it exists."""
    for address in mail.recipients:
        found = TAG.search(address)
        if found is None:
            continue
        entity, record_id = found.group(1).lower(), int(found.group(2))
        if _exists(engine, entity, record_id):
            return Match(entity, record_id, "tag")
    return None


def match_address(engine, mail: InboundEmail) -> Match | None:
    """The most recently updated record with the sender's address in an email field,
    of the first entity (in the pack's order) that has one."""
    sender = mail.sender.lower()
    for ce in engine.compiled.entities.values():
        columns = [getattr(ce.model, v.storage_name(f)) for f in ce.definition.fields.values() if f.type == "email"]
        if not columns:
            continue
        condition = pw.fn.LOWER(columns[0]) == sender
        for column in columns[1:]:
            condition |= pw.fn.LOWER(column) == sender
        model = ce.model
        record = model.select(model.id).where(condition).order_by(model.updated_at.desc(), model.id.desc()).first()
        if record is not None:
            return Match(ce.name, record.id, "address")
    return None


def timeline_summary(mail: InboundEmail) -> str:
    """The timeline's line for a received email: "Email received from Anna <anna@x>: Re: your quote"."""
    return f"Email received from {mail.from_line}: {mail.subject or '(no subject)'}"


def excerpt(mail: InboundEmail, limit: int = EXCERPT_LENGTH) -> str:
    """The start of what the sender wrote: the text (or the html's text), without the quoted message."""
    body = mail.text if mail.text and mail.text.strip() else html_to_text(mail.html or "")
    lines = []
    for line in body.splitlines():
        if QUOTE_INTRO.match(line):
            break
        if not line.lstrip().startswith(">"):
            lines.append(line.strip())
    words = " ".join(" ".join(lines).split())
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"


def html_to_text(markup: str) -> str:
    """The text of an html body, for an excerpt (never shown as html)."""
    parser = _TextOf()
    parser.feed(markup)
    parser.close()
    return html.unescape("".join(parser.parts))


class _TextOf(HTMLParser):
    SKIP = {"script", "style", "head", "title"}
    BREAKS = {"br", "p", "div", "li", "tr", "blockquote", "h1", "h2", "h3", "h4"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.quoting = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        if tag == "blockquote":  # the quoted message of a reply
            self.quoting += 1
        if tag in self.BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        if tag == "blockquote" and self.quoting:
            self.quoting -= 1
        if tag in self.BREAKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skipping and not self.quoting:
            self.parts.append(data)


def _on_record(engine, found: Match, mail: InboundEmail, row_id: int, now, machine: str | None) -> None:
    """The timeline entry and the "email received" event of a matched email (inside its transaction).

    An automatic reply (``machine`` says why it is one) is noted but fires no rule.
    """
    summary = timeline_summary(mail)
    if machine is not None:
        summary = f"Automatic reply ({machine}): {summary}"
    engine.history.note(
        found.entity,
        found.record_id,
        now,
        "email_received",
        summary,
        detail={
            "inbound_mail_id": row_id,
            "from": mail.from_line,
            "subject": mail.subject,
            "excerpt": excerpt(mail),
            "matched_by": found.how,
            "automatic": machine,
        },
    )
    if machine is not None:
        return
    ce = engine.compiled.entities[found.entity]
    record = ce.model.get_by_id(found.record_id)
    # No field changed, so there is no audit row: the stored mail's id keys the actions.
    change = Change(
        entity=found.entity,
        operation="email_received",
        record=record,
        audit_id=None,
        state_fields=tuple(ce.workflows),
        event_key=f"mail-{row_id}",
    )
    fired = matching_rules(engine.compiled.rules, change, engine.ctx)
    if fired:
        engine.outbox.plan(change, plan(fired), engine.definition_version)


def _exists(engine, entity: str | None, record_id: int | None) -> bool:
    ce = engine.compiled.entities.get(entity or "")
    return ce is not None and record_id is not None and ce.model.select().where(ce.model.id == record_id).exists()


def _stored_match(row) -> Match | None:
    return Match(row.entity, row.record_id, row.matched_by or "") if row.entity else None
