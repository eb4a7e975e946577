"""Timers: things due at a time, stored in the database (``crm_timer``).

A follow-up step, the next run of an ``every N minutes`` rule, the daily run
of a ``N days before FIELD`` rule: each is a row with its company's record,
rule, step and due time, so it survives restarts, worker crashes and
definition reloads (Huey's own schedule lives in the queue and dies with
it). A periodic task (and ``flask --app app timers run``) calls
``due_work.run_due_work``, which fires what is due as of one moment.

Exactly once: a timer is claimed by a conditional UPDATE (``pending`` ->
``fired``) and its handler's writes (outbox rows, timeline lines, the next
timer) are made in the same transaction. Two workers never both fire it; a
crash before the commit leaves it pending, and the next run fires it.

A handler is ``handler(crm, timer, now) -> (status, note)``; the handlers
per kind are one registry (``runtime/due_work.py``), like the action
executors. A handler marked ``in_steps`` (a rule run over a whole table)
instead works in several transactions, so it never holds the write lock for
long: the timer is claimed as ``running`` with a lease, and
``handler(crm, timer, now, resumed=...)`` plans each batch of records in a
transaction of its own with keys that make a repeat harmless, then settles
the timer (``settle``) in its last transaction, with the next timer. A
worker that dies mid-way leaves it running; once the lease is over, the
next run resumes it. A firing given up after its attempts calls the
handler's ``reschedule`` (if it has one), so a recurring job goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

import peewee as pw

log = logging.getLogger("crm.timers")

STATES = ("pending", "running", "fired", "skipped", "cancelled", "failed")


@dataclass(frozen=True)
class TimerSettings:
    batch: int = 200  # due timers read at a time
    max_attempts: int = 5  # failed firings (each rolled back) before a timer is given up
    retry_base_seconds: float = 60.0  # 1, 2, 4, ... minutes between failed firings
    lease_seconds: float = 600.0  # a firing in steps not settled by then is taken over


class Timers:
    """Schedules, lists, cancels and fires the company's timers."""

    def __init__(self, engine, handlers: dict[str, Callable], settings: TimerSettings | None = None):
        self.engine = engine
        self.handlers = handlers
        self.settings = settings or TimerSettings()
        self.synced_version: int | None = None  # definitions the rule-wide timers were last synced with

    @property
    def model(self):
        return self.engine.tables.Timer

    # --- scheduling (inside the caller's transaction) ------------------------

    def schedule(
        self,
        kind: str,
        key: str,
        due_at: dt.datetime,
        *,
        entity: str | None = None,
        record_id: int | None = None,
        rule: str | None = None,
        step: str | None = None,
        payload: dict | None = None,
        repeat: bool = False,
    ) -> int | None:
        """Add a pending timer; None if one with ``key`` exists already (scheduling is idempotent).

        ``repeat``: the timer stands for a recurring job (a rule-wide timer);
        when it is settled or cancelled its key gets its id appended, so the next one
        can take the same key and there is never more than one pending.
        """
        payload = {**(payload or {}), "repeat": True} if repeat else payload
        Timer = self.model
        query = Timer.insert(
            key=key,
            kind=kind,
            entity=entity,
            record_id=record_id,
            rule=rule,
            step=step,
            due_at=due_at,
            status="pending",
            attempts=0,
            payload=payload,
            created_at=self.engine.clock.utcnow(),
        ).on_conflict_ignore()
        before = Timer.select(Timer.id).where(Timer.key == key).first()
        if before is not None:
            return None
        return query.execute()

    def follow_up(self, *, key, entity, record_id, rule, path, delay: dt.timedelta, payload: dict) -> int | None:
        """A follow-up step due ``delay`` from now (called by the outbox while it plans)."""
        now = self.engine.clock.utcnow()
        payload = {**payload, "started_at": payload.get("started_at") or now.isoformat()}
        return self.schedule(
            "follow_up", key, now + delay, entity=entity, record_id=record_id, rule=rule, step=path, payload=payload
        )

    # --- reading --------------------------------------------------------------

    def pending(self, include_done: bool = False, limit: int | None = None) -> list:
        """Pending timers, soonest first (``include_done``: every timer, newest due last)."""
        Timer = self.model
        query = Timer.select().order_by(Timer.due_at, Timer.id)
        if not include_done:
            query = query.where(Timer.status == "pending")
        if limit:
            query = query.limit(limit)
        return list(query)

    def counts(self) -> dict[str, int]:
        """Timers per state."""
        Timer = self.model
        query = Timer.select(Timer.status, pw.fn.COUNT(Timer.id).alias("n")).group_by(Timer.status)
        return {row.status: row.n for row in query}

    # --- cancelling -------------------------------------------------------------

    def cancel(self, timer, why: str, *, status: str = "cancelled", note_on_record: str | None = None) -> bool:
        """Cancel a pending timer (inside the caller's transaction); False if it was not pending.

        ``note_on_record``: the line for the record's timeline (default: ``why``).
        """
        Timer = self.model
        now = self.engine.clock.utcnow()
        changed = (
            Timer.update(status=status, note=why, fired_at=now, key=_leaving_key(timer))
            .where((Timer.id == timer.id) & (Timer.status == "pending"))
            .execute()
        )
        if changed and timer.record_id is not None and timer.entity:
            self.engine.history.note(
                timer.entity, timer.record_id, self.engine.ctx.now(), "skipped", note_on_record or why, rule=timer.rule,
                detail={"timer": timer.id, "kind": timer.kind, "step": timer.step},
            )  # fmt: skip
        return bool(changed)

    def stop(self, timer_id: int, by: str) -> str:
        """An admin stops a pending timer (a follow-up: the rest of its sequence too).

        Returns what the timeline says; raises LookupError if the timer is not
        pending, or is a time-triggered rule's schedule (disable the rule instead).
        """
        with self.engine.database.atomic():
            timer = self.model.get_or_none(self.model.id == timer_id)
            if timer is None or timer.status != "pending":
                raise LookupError(f"timer {timer_id} is not pending")
            if timer.record_id is None and (timer.payload or {}).get("repeat"):
                # Stopping it would pause the rule until the next worker start: say what works.
                schedule = f"timer {timer_id} is the schedule of rule {timer.rule!r}"
                raise LookupError(f"{schedule}; disable the rule to stop it")
            what = describe(timer)
            line = f"{what} stopped by {by}"
            self.cancel(timer, f"stopped by {by}", note_on_record=line)
        return line

    # --- firing -----------------------------------------------------------------

    def fire_due(self, now: dt.datetime | None = None) -> int:
        """Fire every timer due at ``now`` (default: the clock's now); returns how many fired.

        Safe to call from several workers at once: each timer is fired by one.
        """
        now = now or self.engine.clock.utcnow()
        Timer = self.model
        fired = 0
        while True:
            due = list(
                Timer.select().where(_due(Timer, now)).order_by(Timer.due_at, Timer.id).limit(self.settings.batch)
            )
            for timer in due:
                if self._fire_one(timer, now):
                    fired += 1
            if len(due) < self.settings.batch:
                return fired

    def _fire_one(self, timer, now: dt.datetime) -> bool:
        """Claim and fire ``timer`` (as read before the claim: only its status changes meanwhile)."""
        Timer = self.model
        timer_id = timer.id
        handler = self.handlers.get(timer.kind)
        if getattr(handler, "in_steps", False):
            return self._fire_in_steps(timer, handler, now)
        if timer.status != "pending":
            return False
        try:
            with self.engine.database.atomic():
                claimed = (
                    Timer.update(status="fired", fired_at=now, key=_leaving_key(timer))
                    .where((Timer.id == timer_id) & (Timer.status == "pending") & (Timer.due_at <= now))
                    .execute()
                )
                if not claimed:  # another worker fired it meanwhile
                    return False
                if handler is None:
                    status, note = "failed", f"no handler for timers of kind {timer.kind!r}"
                else:
                    status, note = handler(self.engine, timer, now)
                Timer.update(status=status, note=note).where(Timer.id == timer_id).execute()
            return True
        except Exception as exc:  # noqa: BLE001 - rolled back (still pending), then recorded and retried
            log.exception("timer %s failed", timer_id)
            self._failed(timer_id, exc, now)
            return False

    def _fire_in_steps(self, timer, handler, now: dt.datetime) -> bool:
        """Claim ``timer`` as running with a lease, then let ``handler`` work and settle it."""
        Timer = self.model
        lease = now + dt.timedelta(seconds=self.settings.lease_seconds)
        with self.engine.database.atomic():
            claimed = (
                Timer.update(status="running", lease_until=lease)
                .where((Timer.id == timer.id) & _due(Timer, now))
                .execute()
            )
        if not claimed:
            return False
        # Taken over from a worker that died, or retried after a failure: some batches may be planned already.
        resumed = timer.status == "running" or timer.attempts > 0
        try:
            handler(self.engine, timer, now, resumed=resumed)
            return True
        except Exception as exc:  # noqa: BLE001 - the batches done stay done (their keys stop a repeat)
            log.exception("timer %s failed", timer.id)
            error = f"{type(exc).__name__}: {exc}"
            attempts = timer.attempts + 1
            running = (Timer.id == timer.id) & (Timer.status == "running")
            with self.engine.database.atomic():
                if attempts >= self.settings.max_attempts:
                    given_up = Timer.update(
                        status="failed", attempts=attempts, note=error, fired_at=now, lease_until=None,
                        key=_leaving_key(timer),
                    ).where(running).execute()  # fmt: skip
                    if given_up and hasattr(handler, "reschedule"):  # a recurring job: its next run still comes
                        handler.reschedule(self.engine, timer, now)
                else:
                    retry_at = now + dt.timedelta(seconds=self.settings.retry_base_seconds * 2 ** (attempts - 1))
                    Timer.update(attempts=attempts, note=error, lease_until=retry_at).where(running).execute()
            return False

    def settle(self, timer, now: dt.datetime, status: str, note: str) -> None:
        """End a firing in steps (inside the handler's last transaction, with the next timer).

        Raises ``RuntimeError`` if another worker took the timer over meanwhile,
        so that the transaction (and its next timer) is rolled back.
        """
        Timer = self.model
        settled = (
            Timer.update(status=status, note=note, fired_at=now, lease_until=None, key=_leaving_key(timer))
            .where((Timer.id == timer.id) & (Timer.status == "running"))
            .execute()
        )
        if not settled:
            raise RuntimeError(f"timer {timer.id} was taken over by another worker (its lease ran out)")

    def _failed(self, timer_id: int, exc: Exception, now: dt.datetime) -> None:
        """A firing that raised was rolled back: count it, retry later with backoff, or give up."""
        Timer = self.model
        error = f"{type(exc).__name__}: {exc}"
        with self.engine.database.atomic():
            timer = Timer.get_or_none((Timer.id == timer_id) & (Timer.status == "pending"))
            if timer is None:
                return
            attempts = timer.attempts + 1
            if attempts >= self.settings.max_attempts:
                Timer.update(
                    status="failed", attempts=attempts, note=error, fired_at=now, key=_leaving_key(timer)
                ).where(Timer.id == timer_id).execute()
                if timer.record_id is not None and timer.entity:
                    self.engine.history.note(
                        timer.entity, timer.record_id, self.engine.ctx.now(), "error",
                        f"{describe(timer)} failed {attempts} times, given up: {error}", rule=timer.rule,
                    )  # fmt: skip
                return
            retry_at = now + dt.timedelta(seconds=self.settings.retry_base_seconds * 2 ** (attempts - 1))
            Timer.update(attempts=attempts, note=error, due_at=retry_at).where(Timer.id == timer_id).execute()


def describe(timer) -> str:
    """What a timer stands for, as the timeline and the CLI say it."""
    if timer.kind == "follow_up":
        return f"Follow-up step {step_number(timer.step)} of rule {timer.rule!r}"
    if timer.rule:
        return f"{timer.kind} timer of rule {timer.rule!r}"
    return f"{timer.kind} timer"


def step_number(path: str | None) -> int:
    """A follow-up's place in its sequence: the rule's own actions are step 1,
    a follow-up ("2") step 2, one nested in it ("2.2") step 3, ..."""
    return (path or "").count(".") + 2


def _due(Timer, now: dt.datetime):  # noqa: N803 - the model class
    """Due: pending and its time has come, or running with a lease that ran out."""
    return ((Timer.status == "pending") & (Timer.due_at <= now)) | (
        (Timer.status == "running") & (Timer.lease_until < now)
    )


def _leaving_key(timer) -> str:
    """The key of a timer leaving "pending": a recurring one frees its key for the next."""
    repeat = isinstance(timer.payload, dict) and timer.payload.get("repeat")
    return f"{timer.key}#{timer.id}" if repeat else timer.key
