"""The transactional outbox between the database and the queue.

Actions are written as rows in the same transaction as the change that
triggered them, and handed to the queue only after that transaction
commits. Huey delivers a task at most once (a task running when its worker
is killed is gone), so the rows, not the queue, are the truth: a worker
claims a row with a lease before running it, and a periodic sweep hands
back to the queue whatever is stranded (never handed over, or claimed by a
worker whose lease ran out). Each row's key is its idempotency key.

Row states: ``waiting`` (for the rule's previous action), ``queued`` (set
in the change's own transaction; the task is handed to Huey after commit),
``pending`` (the queue refused the hand-off: the sweep queues it),
``running``, ``retrying`` (queued again after a failure, at ``due_at``),
``done``, ``failed``, ``skipped``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

import peewee as pw

from ..definitions import nodes as n
from .events import Change, PlannedAction
from .tables import PreparedInsert, SystemTables

log = logging.getLogger("crm.outbox")

RUNNABLE = ("pending", "queued", "retrying")


@dataclass(frozen=True)
class OutboxSettings:
    lease_seconds: float = 300.0  # how long a worker may run one action before others may take it over
    requeue_after_seconds: float = 600.0  # a queued row not started by then is queued again
    handoff_grace_seconds: float = 5.0  # a committed row not queued by then was missed by its handoff
    max_attempts: int = 5
    retry_base_seconds: float = 10.0  # 10 s, 20 s, 40 s, ... between attempts
    retry_max_seconds: float = 3600.0


class Outbox:
    """Plans, hands over, claims and settles action rows."""

    def __init__(
        self,
        tables: SystemTables,
        clock,
        enqueue: Callable,
        settings: OutboxSettings,
        follow_ups: Callable | None = None,
    ):
        self.tables = tables
        self.clock = clock
        self.enqueue = enqueue  # enqueue(kind, outbox_id, eta) -> None
        self.settings = settings
        # follow_ups(key=, entity=, record_id=, rule=, path=, delay=, payload=): a follow-up
        # becomes a timer (runtime/timers.py) instead of a row the queue keeps until its time.
        self.follow_ups = follow_ups
        self._insert = PreparedInsert(
            tables.Outbox,
            ("key", "kind", "entity", "record_id", "rule", "path", "definition_version", "payload", "depth", "after",
             "status", "due_at", "created_at", "attempts", "enqueued_at"),
        )  # fmt: skip

    # --- inside the change's transaction ---------------------------------

    def plan(self, change: Change, planned: list[PlannedAction], definition_version: int, snapshot=None) -> list[int]:
        """Write the rows of ``planned`` and hand them over once the transaction commits.

        ``snapshot`` (the record's values) is kept only for a deleted record,
        whose actions cannot read it any more.
        """
        now = self.clock.utcnow()
        payload = {"v": 1, "reason": None}
        if snapshot is not None:
            payload["snapshot"] = snapshot
        ids, ready, previous = [], [], None
        for item in planned:
            node = item.action.node
            if isinstance(node, n.FollowUp) and self.follow_ups is not None:
                self.follow_ups(
                    key=f"{change.key}/{item.rule.name}/{item.path}",
                    entity=change.entity,
                    record_id=change.record.id,
                    rule=item.rule.name,
                    path=item.path,
                    delay=_delay(node.delay),
                    payload={**payload, "reason": item.reason, "definition_version": definition_version,
                             "depth": change.depth + 1},
                )  # fmt: skip
                continue
            due_at = now + _delay(node.delay) if isinstance(node, n.FollowUp) else None
            after = previous if item.chained else None
            row_id = self._insert(
                key=f"{change.key}/{item.rule.name}/{item.path}",
                kind=kind_of(node),
                entity=change.entity,
                record_id=change.record.id,
                rule=item.rule.name,
                path=item.path,
                definition_version=definition_version,
                payload={**payload, "reason": item.reason},
                depth=change.depth + 1,
                after=after,
                # Marked queued in this transaction: after commit the hand-off only
                # enqueues (one write less per change); a failed hand-off sets it back.
                status="waiting" if after else "queued",
                due_at=due_at,
                created_at=now,
                attempts=0,
                enqueued_at=None if after else now,
            )
            ids.append(row_id)
            if after is None:
                ready.append((row_id, kind_of(node), due_at))
            if not isinstance(node, n.FollowUp):
                previous = row_id
        self.after_commit(ready)
        return ids

    def plan_children(self, parent, actions, definition_version: int) -> list[int]:
        """Rows for the actions inside a follow-up whose time has come, chained in order."""
        Outbox = self.tables.Outbox
        now = self.clock.utcnow()
        ids, previous = [], None
        ready = []
        for index, action in enumerate(actions, start=1):
            if isinstance(action.node, n.FollowUp) and self.follow_ups is not None:
                # The sequence's next step: a timer relative to now; it waits for nothing planned here.
                self.follow_ups(
                    key=f"{parent.key}.{index}",
                    entity=parent.entity,
                    record_id=parent.record_id,
                    rule=parent.rule,
                    path=f"{parent.path}.{index}",
                    delay=_delay(action.node.delay),
                    payload={**parent.payload, "definition_version": definition_version, "depth": parent.depth},
                )
                continue
            row_id = Outbox.insert(
                key=f"{parent.key}.{index}",
                kind=kind_of(action.node),
                entity=parent.entity,
                record_id=parent.record_id,
                rule=parent.rule,
                path=f"{parent.path}.{index}",
                definition_version=definition_version,
                payload=parent.payload,
                depth=parent.depth,
                after=previous,
                status="waiting" if previous else "queued",
                enqueued_at=None if previous else now,
                created_at=now,
            ).execute()
            ids.append(row_id)
            if previous is None:
                ready.append((row_id, kind_of(action.node), None))
            previous = row_id
        self.after_commit(ready)
        return ids

    def after_commit(self, ready: list[tuple[int, str, dt.datetime | None]]) -> None:
        """Hand ``ready`` rows (id, kind, due_at) to the queue once the transaction commits."""
        if ready:
            self.tables.database.after_commit(lambda: self.hand_off(ready))

    # --- between the database and the queue ------------------------------

    def hand_off(self, ready: list[tuple[int, str, dt.datetime | None]], marked: bool = True) -> None:
        """Queue ``ready`` rows (id, kind, due_at). ``marked``: the rows were already
        set "queued" in the transaction that made them; otherwise mark them now.

        This runs after the change committed, so it must not fail the change: a
        row the queue does not take is set back to pending, and the sweep queues
        it later.
        """
        now = self.clock.utcnow()
        queued, refused = [], []
        for row_id, kind, due_at in ready:
            try:
                self.enqueue(kind, row_id, due_at if due_at and due_at > now else None)
            except Exception:  # noqa: BLE001 - the queue is down or locked: logged, left to the sweep
                log.warning("could not queue action %s; the sweep will", row_id, exc_info=True)
                refused.append(row_id)
                continue
            queued.append(row_id)
        Outbox = self.tables.Outbox
        if refused:
            try:
                Outbox.update(status="pending").where(Outbox.id.in_(refused) & (Outbox.status == "queued")).execute()
            except pw.OperationalError:  # still "queued": the sweep takes it after OUTBOX_REQUEUE_SECONDS
                log.warning("could not mark actions %s pending", refused, exc_info=True)
        if marked or not queued:
            return
        try:
            # In immediate mode (unit tests) the actions have run by now: only rows
            # still waiting for a worker become "queued".
            # A row that ran and failed meanwhile stays "retrying".
            status = pw.Case(None, [(Outbox.status == "pending", "queued")], Outbox.status)
            Outbox.update(status=status, enqueued_at=now).where(
                Outbox.id.in_(queued) & Outbox.status.in_(RUNNABLE)
            ).execute()
        except pw.OperationalError:  # still pending: the sweep queues them again, the claim stops a double run
            log.warning("could not mark actions %s queued", queued, exc_info=True)

    def claim(self, outbox_id: int):
        """Take a row for running; None if it is not runnable (done, taken, not due)."""
        Outbox = self.tables.Outbox
        now = self.clock.utcnow()
        lease = now + dt.timedelta(seconds=self.settings.lease_seconds)
        with self.tables.database.atomic():
            claimed = (
                Outbox.update(status="running", lease_until=lease, attempts=Outbox.attempts + 1)
                .where(
                    (Outbox.id == outbox_id)
                    & (
                        (Outbox.status.in_(RUNNABLE) & (Outbox.due_at.is_null() | (Outbox.due_at <= now)))
                        | ((Outbox.status == "running") & (Outbox.lease_until < now))
                    )
                )
                .execute()
            )
        return Outbox.get_by_id(outbox_id) if claimed else None

    def complete(self, row, result: str | None) -> None:
        """Mark a row done and release the action that waits for it (call inside the effect's transaction)."""
        Outbox = self.tables.Outbox
        Outbox.update(status="done", result=result, error=None, finished_at=self.clock.utcnow()).where(
            Outbox.id == row.id
        ).execute()
        self._release_next(row.id)

    def skip(self, row, why: str) -> None:
        """Mark a row skipped (its rule is gone, its record deleted, its condition no longer holds)."""
        Outbox = self.tables.Outbox
        Outbox.update(status="skipped", result=why, finished_at=self.clock.utcnow()).where(
            Outbox.id == row.id
        ).execute()
        self._release_next(row.id)

    def _release_next(self, row_id: int) -> None:
        Outbox = self.tables.Outbox
        successors = list(
            Outbox.select(Outbox.id, Outbox.kind, Outbox.due_at).where(
                (Outbox.after == row_id) & (Outbox.status == "waiting")
            )
        )
        if successors:
            Outbox.update(status="queued", enqueued_at=self.clock.utcnow()).where(
                Outbox.id.in_([r.id for r in successors])
            ).execute()
            self.after_commit([(r.id, r.kind, r.due_at) for r in successors])

    def fail(self, row, error: str, permanent: bool) -> bool:
        """Record a failed attempt; queue a retry with backoff unless the error is
        permanent or the attempts are used up. Returns True if it failed for good."""
        Outbox = self.tables.Outbox
        now = self.clock.utcnow()
        final = permanent or row.attempts >= self.settings.max_attempts
        if final:
            Outbox.update(status="failed", error=error, finished_at=now, lease_until=None).where(
                Outbox.id == row.id
            ).execute()
            return True
        delay = min(self.settings.retry_base_seconds * 2 ** (row.attempts - 1), self.settings.retry_max_seconds)
        due = now + dt.timedelta(seconds=delay)
        Outbox.update(status="retrying", error=error, due_at=due, lease_until=None, enqueued_at=now).where(
            Outbox.id == row.id
        ).execute()
        self.enqueue(row.kind, row.id, due)
        return False

    def retry(self, outbox_id: int) -> None:
        """An admin's retry of a failed action: it runs again, with fresh attempts."""
        Outbox = self.tables.Outbox
        with self.tables.database.atomic():
            changed = (
                Outbox.update(
                    status="queued",
                    attempts=0,
                    due_at=None,
                    error=None,
                    finished_at=None,
                    enqueued_at=self.clock.utcnow(),
                )
                .where((Outbox.id == outbox_id) & (Outbox.status == "failed"))
                .execute()
            )
            if not changed:
                raise LookupError(f"action {outbox_id} is not a failed action")
            row = Outbox.get_by_id(outbox_id)
            self.after_commit([(row.id, row.kind, None)])

    # --- the safety net ----------------------------------------------------

    def sweep(self) -> int:
        """Queue again what is stranded; returns how many rows were queued."""
        Outbox = self.tables.Outbox
        now = self.clock.utcnow()
        s = self.settings
        missed = (Outbox.status == "pending") & (
            Outbox.created_at <= now - dt.timedelta(seconds=s.handoff_grace_seconds)
        )
        stuck = (
            Outbox.status.in_(("queued", "retrying"))
            & (Outbox.due_at.is_null() | (Outbox.due_at <= now))
            & (Outbox.enqueued_at <= now - dt.timedelta(seconds=s.requeue_after_seconds))
        )
        abandoned = (Outbox.status == "running") & (Outbox.lease_until < now)
        fields = (Outbox.id, Outbox.kind, Outbox.due_at, Outbox.status)
        rows = list(Outbox.select(*fields).where(missed | stuck | abandoned).order_by(Outbox.id))
        for row in rows:
            if row.status == "running":
                log.warning("action %s was abandoned by its worker; queueing it again", row.id)
                Outbox.update(status="queued").where(
                    (Outbox.id == row.id) & (Outbox.status == "running") & (Outbox.lease_until < now)
                ).execute()
        self.hand_off([(row.id, row.kind, row.due_at) for row in rows], marked=False)
        return len(rows)

    def counts(self) -> dict[str, int]:
        """Rows per state, for the console and the tests."""
        Outbox = self.tables.Outbox
        query = Outbox.select(Outbox.status, pw.fn.COUNT(Outbox.id).alias("n")).group_by(Outbox.status)
        return {row.status: row.n for row in query}


def kind_of(node: n.Action) -> str:
    """The action kind (and Huey task) that runs ``node``."""
    return {
        n.Assign: "assign",
        n.SetField: "set_field",
        n.Create: "create",
        n.SendEmail: "send_email",
        n.FollowUp: "follow_up",
        n.Escalate: "escalate",
        n.Notify: "notify",
        n.Webhook: "webhook",
        n.Move: "move",
        n.AddToCampaign: "add_to_campaign",
    }[type(node)]


def _delay(duration: n.Duration) -> dt.timedelta:
    return dt.timedelta(**{duration.unit: duration.amount})
