"""The SQL of a chunk's hot path, built once per chunk and run with parameters.

Per member a chunk reads the run's state and the member's address and
opt-out, and commits its idempotency row, timeline entry and the run's
counters. Building those statements through peewee's query builder cost
more than running them (bench/campaign.py), so, as ``tables.PreparedInsert``
does for the audit, the SQL text is made once; values still go through each
field's ``db_value`` and are passed as parameters. Identifiers come from the
models, never from input.
"""

from __future__ import annotations

from ..runtime.tables import PreparedInsert

COUNTERS = ("sent", "skipped_unsubscribed", "skipped_duplicate", "skipped_invalid", "failed")
SEND_COLUMNS = ("campaign_id", "step", "entity", "member_id", "run_id", "address", "status", "message_id", "error",
                "at")  # fmt: skip
CONFLICT = ("campaign_id", "step", "entity", "member_id")


def _q(name: str) -> str:
    return f'"{name}"'


class Statements:
    """Prepared statements for one run's chunk: entity ``model`` with opt-out field ``opt_out``."""

    def __init__(self, tables, model, opt_out: str):
        self.database = tables.database
        p = self.database.param
        Run, Send = tables.CampaignRun, tables.CampaignSend
        run_table, send_table = _q(Run._meta.table_name), _q(Send._meta.table_name)
        self.run_state_sql = f"SELECT {_q('status')}, {_q('lease_token')} FROM {run_table} WHERE {_q('id')} = {p}"
        member_table = _q(model._meta.table_name)
        self.member_sql = (
            f"SELECT {_q(model.email.column_name)}, {_q(getattr(model, opt_out).column_name)} "
            f"FROM {member_table} WHERE {_q(model.id.column_name)} = {p}"
        )
        self.send_fields = [getattr(Send, name) for name in SEND_COLUMNS]
        updates = ", ".join(f"{_q(f.column_name)} = excluded.{_q(f.column_name)}" for f in self.send_fields[4:])
        self.upsert_sql = (
            f"INSERT INTO {send_table} ({', '.join(_q(f.column_name) for f in self.send_fields)}) "
            f"VALUES ({', '.join([p] * len(self.send_fields))}) "
            f"ON CONFLICT ({', '.join(_q(name) for name in CONFLICT)}) DO UPDATE SET {updates}"
        )
        sets = ", ".join(f"{_q(name)} = {_q(name)} + {p}" for name in ("processed", *COUNTERS))
        self.lease_until = Run.lease_until
        self.advance_sql = (
            f"UPDATE {run_table} SET {_q('cursor')} = {p}, {_q('lease_until')} = {p}, {sets} "
            f"WHERE {_q('id')} = {p} AND {_q('lease_token')} = {p}"
        )
        self.note = PreparedInsert(tables.Timeline, ("entity", "record_id", "at", "kind", "summary", "detail"))

    def run_state(self, run_id: int) -> tuple[str, str | None]:
        return self.database.execute_sql(self.run_state_sql, (run_id,)).fetchone()

    def member(self, member_id: int) -> tuple | None:
        """(email, opt-out field) of the member as it is now; None if it was deleted."""
        return self.database.execute_sql(self.member_sql, (member_id,)).fetchone()

    def upsert_sends(self, rows: list[dict]) -> None:
        for row in rows:
            self.database.execute_sql(self.upsert_sql, [f.db_value(row[f.name]) for f in self.send_fields])

    def advance(self, run_id: int, token: str, cursor: int, lease_until, counts: dict) -> bool:
        """Move the run's cursor and counters, if the run is still ``token``'s; False if not."""
        params = [cursor, self.lease_until.db_value(lease_until), sum(counts.values())]
        params += [counts.get(name, 0) for name in COUNTERS]
        params += [run_id, token]
        return self.database.execute_sql(self.advance_sql, params).rowcount == 1
