"""``send_email``: render a template under ``templates/email/`` with the record
and deliver it, once.

Templates are written by admins, so they render in Jinja's sandbox and see
the record only through a view of its declared fields (never the model,
whose methods could change data). The first line of a template is
``Subject: ...``.
"""

from __future__ import annotations

import hashlib
from email.message import EmailMessage
from email.utils import formataddr
from pathlib import Path

from jinja2 import FileSystemLoader
from jinja2.sandbox import SandboxedEnvironment

from .run import ActionRun, Skip


class RecordView:
    """What a template may read of a record: its id, declared fields and linked records."""

    def __init__(self, compiled, entity: str, record):
        self._compiled, self._entity, self._record = compiled, entity, record
        self._fields = compiled.entities[entity].definition.fields

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._fields and name not in ("id", "created_at", "updated_at"):
            raise AttributeError(name)
        field = self._fields.get(name)
        if field is not None and field.type == "link":
            linked = getattr(self._record, name, None)
            if linked is None or not hasattr(linked, "_meta"):
                return None
            return RecordView(self._compiled, field.entity, linked)
        return getattr(self._record, name, None)

    def __str__(self) -> str:
        return self._compiled.entities[self._entity].title_of(self._record)


class Templates:
    """The pack's email templates, rendered in the sandbox."""

    def __init__(self, pack_dir: Path, company: str):
        self.environment = SandboxedEnvironment(
            loader=FileSystemLoader(str(Path(pack_dir) / "templates" / "email")),
            autoescape=False,  # plain-text email
            keep_trailing_newline=True,
        )
        self.company = company

    def render(self, name: str, context: dict) -> tuple[str, str]:
        """(subject, body) of template ``name``."""
        text = self.environment.get_template(f"{name}.txt").render(company=self.company, **context)
        first, _, body = text.partition("\n")
        if first.lower().startswith("subject:"):
            return first.split(":", 1)[1].strip(), body.lstrip("\n")
        return name.replace("_", " ").capitalize(), text


def message_id(key: str, domain: str) -> str:
    """A Message-ID that is the same on every attempt of the same action."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def send_email(run: ActionRun) -> str:
    engine = run.engine
    to = run.value("to")
    if not to:
        raise Skip("there is no address to send to")
    Mail = engine.tables.Mail
    row = run.row
    if Mail.select().where(Mail.key == row.key).exists():  # handed over by an earlier attempt
        with engine.database.atomic():
            engine.outbox.complete(row, "already sent")
        return "already sent"
    view = RecordView(engine.compiled, run.entity.name, run.record)
    subject, body = engine.templates.render(run.node.template, {run.entity.name: view, "record": view})
    message = EmailMessage()
    message["From"] = formataddr((engine.settings.name, engine.mail_from))
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = message_id(row.key, engine.mail_from.split("@")[-1])
    message["X-CRM-Record"] = f"{run.entity.name}/{row.record_id}"
    message.set_content(body)
    mailer = engine.mailer
    summary = f"email {run.node.template!r} sent to {to}: {subject}"

    def commit_point() -> None:
        with engine.database.atomic():
            Mail.insert(
                key=row.key,
                message_id=message["Message-ID"],
                sender=engine.mail_from,
                recipient=to,
                subject=subject,
                body=body,
                entity=run.entity.name,
                record_id=row.record_id,
                status="handed_over" if mailer.delivers else "kept",
                created_at=engine.ctx.now(),
            ).execute()
            engine.history.note(
                run.entity.name, row.record_id, engine.ctx.now(), "email", summary,
                detail={"to": to, "subject": subject, "template": run.node.template,
                        "reason": row.payload.get("reason")},
                rule=row.rule, outbox_id=row.id,
            )  # fmt: skip
            engine.outbox.complete(row, summary)

    reply = mailer.send(message, commit_point)
    if mailer.delivers:
        Mail.update(status="sent", smtp_reply=reply).where(Mail.key == row.key).execute()
    return summary


send_email.settles_itself = True
