"""A record's history: the audit of its changes and the timeline of what
automation did to it (actions, emails, errors), merged for display and for
``flask --app app explain``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from .tables import PreparedInsert, SystemTables

log = logging.getLogger("crm.history")


@dataclass(frozen=True)
class Cause:
    """Why an automated change happens: the rule, the definition version it was
    compiled from, the field values that made its condition true, and how many
    rule-triggered changes led to it (for the loop guard)."""

    rule: str
    definition_version: int
    reason: dict = field(default_factory=dict)
    depth: int = 1
    outbox_id: int | None = None


@dataclass(frozen=True)
class Entry:
    """One line of a record's history, as shown on its timeline."""

    at: dt.datetime
    kind: str  # create, update, transition, delete, action, email, notification, error, skipped
    summary: str
    channel: str | None = None
    user_id: int | None = None
    rule: str | None = None
    definition_version: int | None = None
    reason: dict | None = None
    changes: dict | None = None
    detail: dict | None = None


class History:
    """Writes and reads audit rows and timeline entries."""

    def __init__(self, tables: SystemTables):
        self.tables = tables
        self._insert_audit = PreparedInsert(
            tables.Audit,
            ("entity", "record_id", "operation", "version", "at", "user_id", "channel", "changes", "rule",
             "definition_version", "reason", "depth"),
        )  # fmt: skip

    def audit(self, entity, record_id, operation, version, at, user_id, channel, changes, cause: Cause | None):
        """Write one audit row; returns its id (part of the idempotency keys of the actions it triggers)."""
        return self._insert_audit(
            entity=entity,
            record_id=record_id,
            operation=operation,
            version=version,
            at=at,
            user_id=user_id,
            channel=channel,
            changes=changes,
            rule=cause.rule if cause else None,
            definition_version=cause.definition_version if cause else None,
            reason=cause.reason if cause else None,
            depth=cause.depth if cause else 0,
        )

    def audit_created(self, entity, created: list[tuple[int, dict]], at, user_id, channel, cause: Cause | None):
        """Audit a batch of new records, ``(record id, changes)`` each, with one ``executemany``.

        Returns the audit ids in the order of ``created`` (``PreparedInsert.many``: on SQLite
        the consecutive rowids after the largest, else one statement per row).
        """
        if not created:
            return []
        rule, version, reason, depth = (
            (cause.rule, cause.definition_version, cause.reason, cause.depth) if cause else (None, None, None, 0)
        )
        common = dict(entity=entity, operation="create", version=1, at=at, user_id=user_id, channel=channel, rule=rule,
                      definition_version=version, reason=reason, depth=depth)  # fmt: skip
        return self._insert_audit.many([{"record_id": rid, "changes": changes} for rid, changes in created], common)

    def note(self, entity, record_id, at, kind, summary, *, detail=None, rule=None, outbox_id=None) -> None:
        """Add a timeline entry (an action's result, an email, an error)."""
        if kind == "error":
            log.error("%s #%s: %s", entity, record_id, summary)
        self.tables.Timeline.insert(
            entity=entity,
            record_id=record_id,
            at=at,
            kind=kind,
            summary=summary,
            detail=detail,
            rule=rule,
            outbox_id=outbox_id,
        ).execute()

    def fields_changed_since(self, entity: str, record_id: int, version: int) -> list[str]:
        """Fields changed by every write after ``version``, for a conflict message."""
        Audit = self.tables.Audit
        rows = Audit.select(Audit.changes).where(
            (Audit.entity == entity) & (Audit.record_id == record_id) & (Audit.version > version)
        )
        names: list[str] = []
        for row in rows:
            names.extend(name for name in row.changes if name not in names)
        return sorted(names)

    def entries(self, entity: str, record_id: int, *, automated_only: bool = False) -> list[Entry]:
        """The record's history, oldest first: changes from the audit and the timeline's entries."""
        Audit, Timeline = self.tables.Audit, self.tables.Timeline
        audits = Audit.select().where((Audit.entity == entity) & (Audit.record_id == record_id))
        if automated_only:
            audits = audits.where(Audit.rule.is_null(False))
        result = [
            Entry(
                at=row.at,
                kind=row.operation,
                summary=_describe(row.operation, row.changes),
                channel=row.channel,
                user_id=row.user_id,
                rule=row.rule,
                definition_version=row.definition_version,
                reason=row.reason,
                changes=row.changes,
            )
            for row in audits.order_by(Audit.id)
        ]
        notes = Timeline.select().where((Timeline.entity == entity) & (Timeline.record_id == record_id))
        if automated_only:
            notes = notes.where(Timeline.rule.is_null(False))
        definition_versions = self._versions_of_notes(notes)
        result += [
            Entry(
                at=row.at,
                kind=row.kind,
                summary=row.summary,
                rule=row.rule,
                definition_version=definition_versions.get(row.outbox_id),
                reason=(row.detail or {}).get("reason"),
                detail=row.detail,
            )
            for row in notes.order_by(Timeline.id)
        ]
        # Stable: at equal times, changes come before what automation did about them.
        return sorted(result, key=lambda e: e.at)

    def _versions_of_notes(self, notes) -> dict[int, int]:
        Outbox = self.tables.Outbox
        ids = [row.outbox_id for row in notes if row.outbox_id is not None]
        if not ids:
            return {}
        query = Outbox.select(Outbox.id, Outbox.definition_version).where(Outbox.id.in_(ids))
        return {row.id: row.definition_version for row in query}


def _describe(operation: str, changes: dict) -> str:
    if operation == "create":
        return "created"
    if operation == "delete":
        return "deleted"
    parts = [f"{name}: {_show(old)} -> {_show(new)}" for name, (old, new) in changes.items()]
    return ("moved; " if operation == "transition" else "changed ") + ", ".join(parts)


def _show(value) -> str:
    return "(empty)" if value is None or value == "" or value == [] else str(value)


def explain_lines(entries: list[Entry], title: str) -> list[str]:
    """The automated history of a record as text, each change with its reason."""
    lines = [f"Automated history of {title}"]
    if not entries:
        lines.append("  (no automated changes)")
    for entry in entries:
        version = f" (v{entry.definition_version})" if entry.definition_version else ""
        lines.append(f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.summary}")
        if entry.rule:
            line = f"    by rule {entry.rule!r}{version}"
            if entry.reason:
                line += ", because " + " and ".join(f"{k} = {_show(v)}" for k, v in entry.reason.items())
            lines.append(line)
    return lines
