"""Campaign runs: starting, pausing, resuming, stopping and processing them.

A run belongs to one step (``step``) of one campaign record. When a worker
first picks it up it snapshots the segment's member ids; then it sends them
in chunks, one Huey task (``crm.campaign_chunk``) and one SMTP connection
per chunk, each chunk queueing the next. A worker holds a run by a lease
(``lease_token``, ``lease_until``) renewed at every commit, and at least every
half lease however slow the SMTP server; the sweep queues again a run whose
worker died (lease run out).

Exactly once per member and step rests on ``crm_campaign_send`` (unique on
campaign, step, entity, member):

1. the row is committed as ``sending`` (with its Message-ID) before the SMTP
   transaction starts (for all the members of a chunk at once, when the
   chunk starts: one commit per chunk instead of one per message);
2. the SMTP transaction runs (MAIL, RCPT, DATA, the message) up to the
   final line, where the mailer's commit point marks the row ``sent``, alone
   (one UPDATE in its own transaction), and only then sends the final dot
   (``actions.mailer.transmit``, as for every email the platform sends). The
   timeline entries and the run's cursor and counters follow in bulk, every
   ``BULK`` members; after a crash the chunk restarts at the cursor, and a
   member whose row this run already marked ``sent`` is settled (counted,
   noted) without being sent again.

A member whose row is ``sent`` is never emailed again for the step, by this
run or a later one. A ``sending`` row found after a crash was never
finished (the server drops a message whose final line it did not read), so
it is sent again, with the same Message-ID. The only moment a kill could
still cost a message is between that commit and the write of the final dot
(one system call); no moment repeats one.
"""

from __future__ import annotations

import collections
import datetime as dt
import email
import logging
import re
import smtplib
import uuid
from dataclasses import dataclass

import jinja2

from ..actions.email import RecordView, message_id
from ..actions.mailer import MailRejected, transmit
from ..errors import ConflictError, NotFound, ValidationError
from . import segments as seg
from .message import compose
from .statements import Statements
from .unsubscribe import OPT_OUT, make_token, opted_out

log = logging.getLogger("crm.campaigns")

ACTIVE = ("scheduled", "queued", "running", "paused")
COUNTERS = ("sent", "skipped_unsubscribed", "skipped_duplicate", "skipped_invalid", "failed")
# A plain address: local part, "@", a domain with a dot; no spaces, brackets or control characters.
ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
RETRY_SECONDS = 30  # after the SMTP server could not be reached
# Members settled per commit of the timeline entries and the run's counters (each "sent" row commits alone).
BULK = 50


@dataclass(frozen=True)
class CampaignSettings:
    chunk_size: int = 100  # members per task (and per SMTP connection)
    lease_seconds: float = 60  # a worker silent for longer is taken to be dead
    queue_wait_seconds: float = 600  # a queued run not picked up by then is queued again
    base_url: str = "http://127.0.0.1:5000"  # where the unsubscribe links point
    secret: str = ""  # signs the unsubscribe links (SECRET_KEY)


class LeaseLost(Exception):
    """Another worker took the run over (this one was taken to be dead)."""


def normalize(address) -> str:
    return address.strip().lower() if isinstance(address, str) else ""


def valid_address(address: str) -> bool:
    return bool(address) and len(address) <= 254 and ADDRESS.match(address) is not None


class Campaigns:
    """The company's campaign runs."""

    def __init__(self, engine, settings: CampaignSettings):
        self.engine, self.settings = engine, settings

    # --- commands ------------------------------------------------------------

    def start(self, campaign_id: int, segment_ref: str, template: str, step: int = 1, *, user_id=None,
              scheduled_at: dt.datetime | None = None):  # fmt: skip
        """Create a run of ``template`` to the members of ``segment_ref``, now or at ``scheduled_at``.

        Raises ``NotFound`` (no such campaign), ``ValidationError`` (segment,
        template, step) and ``ConflictError`` (a run of the step is active).
        """
        e = self.engine
        campaign = self._campaign(campaign_id)
        errors: dict[str, list[str]] = {}
        try:
            segment = seg.resolve(e, segment_ref)
        except NotFound:
            errors["segment"] = ["Choose one of the segments offered."]
        if template not in e.compiled.pack.templates:
            errors["template"] = [f"There is no email template {template!r} in templates/email/."]
        if not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= 1000:
            errors["step"] = ["The step is a whole number from 1 to 1000."]
        now = e.clock.utcnow()
        if scheduled_at is not None and scheduled_at <= now:
            scheduled_at = None  # a time already past means now
        if errors:
            raise ValidationError(errors)
        Run = e.tables.CampaignRun
        with e.database.atomic():
            busy = Run.get_or_none((Run.campaign_id == campaign.id) & (Run.step == step) & Run.status.in_(ACTIVE))
            if busy is not None:
                raise ConflictError(f"run #{busy.id} of step {step} is {busy.status}: stop it or let it finish first")
            run_id = Run.insert(
                campaign_id=campaign.id, segment=segment.ref, segment_label=segment.label, entity=segment.entity,
                template=template, step=step, status="scheduled" if scheduled_at else "queued", created_by=user_id,
                created_at=now, scheduled_at=scheduled_at,
                lease_until=None if scheduled_at else now + dt.timedelta(seconds=self.settings.queue_wait_seconds),
            ).execute()  # fmt: skip
        if not scheduled_at:
            self._enqueue(run_id)
        return Run.get_by_id(run_id)

    def pause(self, run_id: int):
        """Pause a queued or running run; the worker stops after the message it is sending."""
        return self._change(run_id, ("queued", "running", "scheduled"), status="paused")

    def resume(self, run_id: int):
        """Continue a paused run where it stopped."""
        e, Run = self.engine, self.engine.tables.CampaignRun
        now = e.clock.utcnow()
        with e.database.atomic():
            run = self._run(run_id)
            if run.status != "paused":
                raise ConflictError(f"run #{run.id} is {run.status}, not paused")
            if run.scheduled_at and run.members is None and run.scheduled_at > now:
                Run.update(status="scheduled").where(Run.id == run.id).execute()
                return self._run(run_id)
            status = "running" if run.members is not None else "queued"
            # A worker still holding the run (it had not reached the pause yet) just goes on.
            idle = run.lease_token is None or (run.lease_until is not None and run.lease_until < now)
            update = {"status": status}
            if idle:
                update |= {
                    "lease_token": None,
                    "lease_until": now + dt.timedelta(seconds=self.settings.queue_wait_seconds),
                }
            Run.update(update).where(Run.id == run.id).execute()
        if idle:
            self._enqueue(run_id)
        return self._run(run_id)

    def stop(self, run_id: int):
        """Stop a run for good; members not reached yet get nothing from it."""
        return self._change(run_id, ACTIVE, status="stopped", finished_at=self.engine.clock.utcnow())

    def _change(self, run_id: int, allowed: tuple[str, ...], **update):
        e, Run = self.engine, self.engine.tables.CampaignRun
        with e.database.atomic():
            run = self._run(run_id)
            if run.status not in allowed:
                raise ConflictError(f"run #{run.id} is {run.status}")
            Run.update(update).where(Run.id == run.id).execute()
        return self._run(run_id)

    # --- reading -------------------------------------------------------------

    def _run(self, run_id: int):
        Run = self.engine.tables.CampaignRun
        run = Run.get_or_none(Run.id == run_id)
        if run is None:
            raise NotFound(f"there is no campaign run #{run_id}")
        return run

    def get(self, run_id: int):
        """The run ``run_id``; raises ``NotFound``."""
        return self._run(run_id)

    def runs_of(self, campaign_id: int) -> list:
        """The campaign's runs, newest first."""
        Run = self.engine.tables.CampaignRun
        return list(Run.select().where(Run.campaign_id == campaign_id).order_by(Run.id.desc()))

    def _campaign(self, campaign_id: int):
        model = self.engine.compiled.entities["campaign"].model
        campaign = model.get_or_none(model.id == campaign_id)
        if campaign is None:
            raise NotFound(f"there is no campaign #{campaign_id}")
        return campaign

    @staticmethod
    def progress(run) -> dict:
        """What the run page shows: status, processed of total, and each count."""
        counts = {name: getattr(run, name) for name in COUNTERS}
        percent = round(100 * run.processed / run.total) if run.total else (100 if run.status == "done" else 0)
        return {"id": run.id, "status": run.status, "total": run.total, "processed": run.processed,
                "percent": percent, "error": run.error, **counts}  # fmt: skip

    # --- the workers' side -------------------------------------------------------

    def _enqueue(self, run_id: int) -> None:
        try:
            self.engine.queue.enqueue_campaign(run_id)
        except Exception:  # noqa: BLE001 - the queue refused: the sweep queues the run again
            log.exception("campaign run #%s could not be queued; the sweep will queue it", run_id)

    def start_due(self, now: dt.datetime) -> int:
        """Queue the scheduled runs due at ``now``; returns how many."""
        e, Run = self.engine, self.engine.tables.CampaignRun
        due = [r.id for r in Run.select(Run.id).where((Run.status == "scheduled") & (Run.scheduled_at <= now))]
        wait = now + dt.timedelta(seconds=self.settings.queue_wait_seconds)
        started = []
        for run_id in due:
            with e.database.atomic():
                changed = (
                    Run.update(status="queued", lease_token=None, lease_until=wait)
                    .where((Run.id == run_id) & (Run.status == "scheduled"))
                    .execute()
                )
            if changed:
                started.append(run_id)
                self._enqueue(run_id)
        return len(started)

    def sweep(self, now: dt.datetime | None = None) -> int:
        """Start due scheduled runs and queue again runs whose worker died; returns how many."""
        e, Run = self.engine, self.engine.tables.CampaignRun
        now = now or e.clock.utcnow()
        count = self.start_due(now)
        stranded = Run.select(Run.id).where(
            Run.status.in_(("queued", "running")) & Run.lease_until.is_null(False) & (Run.lease_until < now)
        )
        wait = now + dt.timedelta(seconds=self.settings.queue_wait_seconds)
        for (run_id,) in stranded.tuples():
            with e.database.atomic():
                changed = (
                    Run.update(lease_token=None, lease_until=wait)
                    .where((Run.id == run_id) & (Run.lease_until < now))
                    .execute()
                )
            if changed:
                count += 1
                self._enqueue(run_id)
        return count

    def process(self, run_id: int) -> str:
        """Process the next chunk of run ``run_id`` (the task ``crm.campaign_chunk``)."""
        e, Run = self.engine, self.engine.tables.CampaignRun
        token = uuid.uuid4().hex
        now = e.clock.utcnow()
        with e.database.atomic():
            claimed = Run.update(lease_token=token, lease_until=now + self._lease()).where(
                (Run.id == run_id) & Run.status.in_(("queued", "running"))
                & (Run.lease_token.is_null() | (Run.lease_until < now))
            ).execute()  # fmt: skip
            if not claimed:
                return "nothing to do (paused, stopped, done or held by another worker)"
            run = Run.get_by_id(run_id)
            if run.members is None:
                try:
                    members = seg.member_ids(e, seg.resolve(e, run.segment), run.created_by)
                except NotFound as error:
                    Run.update(status="stopped", error=str(error), finished_at=now, lease_token=None,
                               lease_until=None).where(Run.id == run_id).execute()  # fmt: skip
                    return str(error)
                Run.update(members=members, total=len(members), status="running", started_at=now).where(
                    Run.id == run_id
                ).execute()
                run = Run.get_by_id(run_id)
        chunk = ChunkSender(self, run, token)
        try:
            outcome = chunk.send(run.members[run.cursor : run.cursor + self.settings.chunk_size])
        except LeaseLost:
            return "another worker took the run over"
        except (smtplib.SMTPException, OSError) as error:
            # The server could not be reached: try again later, from where the run stopped.
            log.warning("campaign run #%s: %s", run_id, error)
            with e.database.atomic():
                Run.update(error=f"SMTP: {error}", lease_token=None,
                           lease_until=e.clock.utcnow() + dt.timedelta(seconds=RETRY_SECONDS)).where(
                    (Run.id == run_id) & (Run.lease_token == token)).execute()  # fmt: skip
            return f"SMTP server unavailable, retrying: {error}"
        finally:
            chunk.close()
        if outcome == "next":
            self._enqueue(run_id)
        return outcome

    def _lease(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.settings.lease_seconds)


def run_due(crm, now: dt.datetime) -> int:
    """The scheduled campaign runs due at ``now`` start (for the timers' due-work list)."""
    return crm.campaigns.start_due(now)


class ChunkSender:
    """Sends one chunk of a run, settling each member in order (the run's ``cursor``)."""

    def __init__(self, campaigns: Campaigns, run, token: str):
        self.campaigns, self.engine, self.run, self.token = campaigns, campaigns.engine, run, token
        e = self.engine
        self.tables = e.tables
        self.model = e.compiled.entities[run.entity].model
        self.sql = Statements(e.tables, self.model, OPT_OUT[run.entity][0])
        self.campaign = campaigns._campaign(run.campaign_id)
        self.campaign_name = e.compiled.entities["campaign"].title_of(self.campaign)
        self.domain = e.mail_from.split("@")[-1]
        self.sender = e.mail_from
        self.sender_name = e.settings.name
        self.template = None  # loaded once per chunk
        self.connection: smtplib.SMTP | None = None
        self.cursor = run.cursor
        self.rows: list[dict] = []  # send rows settled, not yet committed
        self.notes: list[dict] = []  # their timeline entries
        self.counts: collections.Counter = collections.Counter()
        # Each commit renews the lease; with a slow SMTP server it must also come before half of it is gone,
        # or the sweep takes a working run for a dead one (and a second worker could send its next message).
        self.renew_at = e.clock.utcnow() + campaigns._lease() / 2

    # --- the loop ------------------------------------------------------------------

    def send(self, ids: list[int]) -> str:
        """Settle the members ``ids``; "next" if more chunks follow, else how the run ended."""
        Send = self.tables.CampaignSend
        run = self.run
        mine = (Send.campaign_id == run.campaign_id) & (Send.step == run.step) & (Send.entity == run.entity)
        existing = {m: (status, run_id) for m, status, run_id in Send.select(Send.member_id, Send.status, Send.run_id)
                    .where(mine & Send.member_id.in_(ids)).tuples()}  # fmt: skip
        records = {record.id: record for record in self.model.select().where(self.model.id.in_(ids))}
        known = {normalize(r.email) for r in records.values()} - {""}
        taken = self._taken(list(known))
        self._claim(ids, existing, records, taken)
        field = OPT_OUT[run.entity][0]
        for member_id in ids:
            if self._stop_requested():
                return "paused or stopped"
            # The address and opt-out as they are now: an unsubscribe during the run counts.
            now = self.sql.member(member_id)
            record = records.get(member_id)
            if now is not None and record is not None:
                record.email, opted = now[0], now[1]
                setattr(record, field, bool(opted))
            address = normalize(now[0]) if now is not None else ""
            before = existing.get(member_id)
            if before == ("sent", run.id):
                # Sent by this run before a crash cut it off ahead of its next bulk commit: settle it.
                self._sent(member_id, address or "", "sent", None)
            elif before is not None and before[0] == "sent":
                self._skip(member_id, "skipped_duplicate", None, None, "already sent by an earlier run", keep=True)
            elif now is None or record is None:
                self._skip(member_id, "skipped_invalid", None, None, "the record was deleted")
            elif opted_out(run.entity, record):
                reason = "unsubscribed" if run.entity == "contact" else "no marketing consent"
                self._skip(member_id, "skipped_unsubscribed", record, address, reason)
            elif not valid_address(address):
                shown = f"{address!r} is not a valid email address" if address else "no email address"
                self._skip(member_id, "skipped_invalid", record, address or None, shown)
            else:
                # An address changed since the chunk started is looked up on its own.
                owner = taken.get(address) if address in known else self._taken([address]).get(address)
                if owner is not None and owner != member_id:
                    self._skip(member_id, "skipped_duplicate", record, address, f"{address} gets it as #{owner}")
                else:
                    taken[address] = member_id
                    self._deliver(member_id, record, address)
        return self._finish_chunk()

    def _taken(self, addresses: list[str]) -> dict[str, int]:
        """Address -> member of this step that was sent (or is being sent) this email."""
        if not addresses:
            return {}
        Send, run = self.tables.CampaignSend, self.run
        query = Send.select(Send.address, Send.member_id).where(
            (Send.campaign_id == run.campaign_id) & (Send.step == run.step) & Send.address.in_(addresses)
            & Send.status.in_(("sent", "sending"))
        )  # fmt: skip
        return {address: member for address, member in query.tuples()}

    def _claim(self, ids: list[int], existing: dict, records: dict, taken: dict[str, int]) -> None:
        """Step 1 for the whole chunk: the idempotency rows of the members it will email, committed
        before any of its SMTP transactions (a member found opted out at its turn is settled skipped)."""
        for member_id in ids:
            record = records.get(member_id)
            if existing.get(member_id, ("",))[0] == "sent" or record is None or opted_out(self.run.entity, record):
                continue
            address = normalize(record.email)
            if valid_address(address) and taken.setdefault(address, member_id) == member_id:
                self.rows.append(
                    self._row(member_id, "sending", address, message_id(self._key(member_id), self.domain), None)
                )
        self._flush()

    def _stop_requested(self) -> bool:
        """Before each member: True (and the run let go) if it was paused or stopped meanwhile."""
        status, holder = self.sql.run_state(self.run.id)
        if holder != self.token:
            raise LeaseLost()
        if status == "running":
            if len(self.notes) + sum(self.counts.values()) >= BULK or self.engine.clock.utcnow() >= self.renew_at:
                self._flush()
            return False
        self._flush()  # what this worker settled so far, while the run is still its own
        Run = self.tables.CampaignRun
        with self.engine.database.atomic():
            # Only if still not running: a resume in between keeps this worker going.
            released = (
                Run.update(lease_token=None, lease_until=None)
                .where((Run.id == self.run.id) & (Run.lease_token == self.token) & (Run.status != "running"))
                .execute()
            )
        return bool(released)

    # --- one member -------------------------------------------------------------

    def _key(self, member_id: int) -> str:
        run = self.run
        return f"campaign:{run.campaign_id}:{run.step}:{run.entity}:{member_id}"

    def _skip(self, member_id, status, record, address, reason, keep=False) -> None:
        self.cursor += 1
        self.counts[status] += 1
        if keep:
            return  # the row stays "sent"
        self.rows.append(self._row(member_id, status, address, None, reason))
        if record is not None:
            self._note(member_id, "skipped", f"Campaign '{self.campaign_name}' email skipped: {reason}")

    def _deliver(self, member_id: int, record, address: str) -> None:
        mid = message_id(self._key(member_id), self.domain)
        try:
            data = self._message(record, address, mid)
        except jinja2.TemplateError as error:
            self.cursor += 1
            self.counts["failed"] += 1
            self.rows.append(self._row(member_id, "failed", address, mid, f"template: {error}"))
            self._note(member_id, "error", f"Campaign '{self.campaign_name}' email failed: template: {error}")
            return
        # The idempotency row was committed "sending" when the chunk started (``_claim``). The
        # row becomes "sent" at the mailer's commit point: after the message's data, before its
        # final line (actions/mailer.py), so a kill on either side of that commit neither loses
        # the message nor sends it twice.
        sent = self._row(member_id, "sent", address, mid, None)
        status, error = "sent", None
        if self.engine.mailer.delivers:
            try:
                transmit(self._smtp(), self.sender, [address], data, lambda: self.sql.upsert_sends([sent]))
            except MailRejected as rejected:  # refused at the end of its data, after the commit point
                status, error = "failed", str(rejected)
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as refused:
                status, error = "failed", _reply(refused)
            except BaseException:
                self.connection = None  # closed by the mailer, or broken: the next message opens a new one
                raise
            if status == "failed":
                self.sql.upsert_sends([self._row(member_id, status, address, mid, error)])
        else:
            self._keep(member_id, address, mid, data)
            self.sql.upsert_sends([sent])
        self._sent(member_id, address, status, error)

    def _sent(self, member_id: int, address: str, status: str, error: str | None) -> None:
        """Count a message whose row is settled, and note it on the member's timeline."""
        self.cursor += 1
        self.counts[status] += 1
        if status == "sent":
            self._note(member_id, "email", f"Campaign '{self.campaign_name}' email sent to {address}")
        else:
            self._note(member_id, "error", f"Campaign '{self.campaign_name}' email to {address} failed: {error}")

    def _row(self, member_id, status, address, mid, error) -> dict:
        run = self.run
        return {"campaign_id": run.campaign_id, "step": run.step, "entity": run.entity, "member_id": member_id,
                "run_id": run.id, "address": address, "status": status, "message_id": mid, "error": error,
                "at": self.engine.clock.utcnow()}  # fmt: skip

    def _note(self, member_id: int, kind: str, summary: str) -> None:
        detail = {"campaign": self.campaign.id, "step": self.run.step, "run": self.run.id}
        self.notes.append(
            {"entity": self.run.entity, "record_id": member_id, "at": self.engine.ctx.now(), "kind": kind,
             "summary": summary, "detail": detail}
        )  # fmt: skip

    def _message(self, record, address: str, mid: str) -> bytes:
        e, run = self.engine, self.run
        if self.template is None:
            # Once per chunk (Templates.render looks the file up again on every call).
            self.template = e.templates.environment.get_template(f"{run.template}.txt")
        view = RecordView(e.compiled, run.entity, record)
        url = f"{self.campaigns.settings.base_url.rstrip('/')}/unsubscribe/" + make_token(
            self.campaigns.settings.secret, run.entity, record.id
        )
        context = {run.entity: view, "record": view, "unsubscribe_url": url, "campaign": self.campaign_name}
        subject, body = split_subject(self.template.render(company=e.templates.company, **context), run.template)
        if url not in body:  # every campaign email carries its unsubscribe link
            body = body.rstrip("\n") + f"\n\n--\nTo get no more of these emails, unsubscribe:\n{url}\n"
        headers = {
            "List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",  # RFC 8058
            "X-CRM-Record": f"{run.entity}/{record.id}",
            "X-CRM-Campaign": f"{run.campaign_id}/{run.step}",
        }
        return compose(sender=(self.sender_name, self.sender), to=address, subject=subject, message_id=mid,
                       date=e.clock.utcnow(), headers=headers, body=body)  # fmt: skip

    def _keep(self, member_id: int, address: str, mid: str, data: bytes) -> None:
        """No SMTP server configured: the message goes to the local mail outbox."""
        parsed = email.message_from_bytes(data)
        self.tables.Mail.insert(
            key=self._key(member_id), message_id=mid, sender=self.sender, recipient=address,
            subject=str(parsed["Subject"]), body=parsed.get_payload(decode=True).decode(errors="replace"),
            entity=self.run.entity, record_id=member_id, status="kept", created_at=self.engine.ctx.now(),
        ).on_conflict_ignore().execute()  # fmt: skip

    # --- commits -------------------------------------------------------------------

    def _flush(self) -> None:
        """Commit the rows of skipped members, the timeline entries and the run's cursor and counters at once."""
        e = self.engine
        with e.database.atomic():
            self.sql.upsert_sends(self.rows)
            for note in self.notes:
                self.sql.note(**note)
            now = e.clock.utcnow()
            if not self.sql.advance(self.run.id, self.token, self.cursor, now + self.campaigns._lease(), self.counts):
                raise LeaseLost()  # rolls the rows back: the new holder settles them
        self.renew_at = now + self.campaigns._lease() / 2
        self.rows, self.notes = [], []
        self.counts.clear()

    def _finish_chunk(self) -> str:
        self._flush()
        e, Run = self.engine, self.tables.CampaignRun
        now = e.clock.utcnow()
        mine = (Run.id == self.run.id) & (Run.lease_token == self.token)
        with e.database.atomic():
            if self.cursor >= self.run.total:
                Run.update(status="done", finished_at=now, error=None).where(
                    mine & Run.status.in_(("running", "paused"))
                ).execute()
                Run.update(lease_token=None, lease_until=None).where(mine).execute()
                return "done"
            if Run.select(Run.status).where(Run.id == self.run.id).scalar() != "running":
                Run.update(lease_token=None, lease_until=None).where(mine).execute()
                return "paused or stopped"
            wait = now + dt.timedelta(seconds=self.campaigns.settings.queue_wait_seconds)
            Run.update(lease_token=None, lease_until=wait).where(mine).execute()
        return "next"

    # --- SMTP ----------------------------------------------------------------------

    def _smtp(self) -> smtplib.SMTP:
        """The chunk's SMTP connection, opened on first use."""
        if self.connection is None:
            self.connection = self.engine.mailer.connect()
        return self.connection

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                self.connection.close()
            self.connection = None


def split_subject(text: str, name: str) -> tuple[str, str]:
    """(subject, body) of a rendered template, as ``Templates.render`` splits them."""
    first, _, body = text.partition("\n")
    if first.lower().startswith("subject:"):
        return first.split(":", 1)[1].strip(), body.lstrip("\n")
    return name.replace("_", " ").capitalize(), text


def _reply(error: smtplib.SMTPException) -> str:
    """The server's reply in a refusal, as "550 text"."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(error.recipients.values()))
    else:
        code, text = error.smtp_code, error.smtp_error
    return f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
