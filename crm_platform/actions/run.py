"""Running one planned action: the context an action kind gets, and the runner
that claims an outbox row, runs its action and settles the row.

An action's expressions are evaluated when it runs, against the record as it
is then, so the second action of a rule sees what the first did (the owner
an assignment just set). Every result goes on the record's timeline with the
rule, its definition version and the values that made it fire.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace

from ..compiler.compiled import CompiledEntity
from ..compiler.rules import CompiledAction, CompiledRule
from ..definitions import placeholders
from ..errors import ConflictError, CRMError
from ..runtime.history import Cause
from ..runtime.users import Actor

log = logging.getLogger("crm.actions")


class Skip(Exception):  # noqa: N818 - not an error: the action has nothing to do
    """Raised by an action that decides not to act (no address, condition no longer holds)."""


class PermanentFailure(CRMError):
    """An action that cannot succeed by retrying (no team member, no such user)."""


@dataclass
class ActionRun:
    """One run of one action on one record."""

    engine: object  # the company's engine (crm_platform.engine.CRM)
    row: object  # the outbox row
    rule: CompiledRule
    action: CompiledAction
    entity: CompiledEntity
    record: object  # the live record, or its snapshot if it was deleted

    @property
    def cause(self) -> Cause:
        return Cause(
            rule=self.rule.name,
            definition_version=self.row.definition_version,
            reason=self.row.payload.get("reason", {}),
            depth=self.row.depth,
            outbox_id=self.row.id,
        )

    @property
    def actor(self) -> Actor:
        return Actor.system()

    @property
    def node(self):
        return self.action.node

    def value(self, name: str):
        """The value of the action's expression ``name`` for the record now."""
        return self.action.expressions[name](self.record, self.engine.ctx)

    def fill(self, text: str) -> str:
        """``text`` with each ``{field}`` replaced by the record's value."""
        return placeholders.fill(text, lambda name: getattr(self.record, name, None))

    def user_name(self, user_id: int | None) -> str:
        info = self.engine.directory.get(user_id) if user_id else None
        return info.name if info else f"user #{user_id}"


class ActionRunner:
    """Claims outbox rows and runs their actions."""

    def __init__(self, engine, executors: dict):
        self.engine = engine
        self.executors = executors

    def run(self, outbox_id: int) -> str:
        """Run the action of outbox row ``outbox_id`` unless it is done or taken."""
        outbox = self.engine.outbox
        row = outbox.claim(outbox_id)
        if row is None:
            return "not runnable (done, taken or not due)"
        try:
            executor = self.executors[row.kind]
            if getattr(executor, "without_rule", False):
                # A delivery to a webhook subscription belongs to no rule: it settles its row itself.
                return executor(self.engine, row)
            run = self._prepare(row)
            if run is None:
                return "skipped"
            if getattr(executor, "settles_itself", False):
                # Email and webhooks talk to other servers: no write lock is held meanwhile,
                # and they settle the row themselves at their commit point.
                return executor(run)
            with self.engine.database.atomic():
                result = executor(run)
                self.settle(run, result)
            return result
        except Skip as why:
            with self.engine.database.atomic():
                self._note(row, "skipped", f"{_what(row)} skipped: {why}")
                outbox.skip(row, str(why))
            return f"skipped: {why}"
        except ConflictError as exc:  # another worker changed the record meanwhile: try again
            self._failed(row, exc, permanent=False)
            return f"failed: {exc}"
        except CRMError as exc:  # validation, permission, guard: retrying will not help
            self._failed(row, exc, permanent=True)
            return f"failed: {exc}"
        except Exception as exc:  # noqa: BLE001 - recorded on the row and the timeline, then retried
            log.exception("action %s (%s of rule %r) failed", row.id, row.kind, row.rule)
            self._failed(row, exc, permanent=False)
            return f"failed: {exc}"

    def _prepare(self, row) -> ActionRun | None:
        engine = self.engine
        rule = engine.compiled.rules.rules.get(row.rule)
        action = _find_action(rule, row.path) if rule is not None and rule.enabled else None
        if action is None:
            raise Skip(f"rule {row.rule!r} no longer has this action (definitions changed)")
        entity = engine.compiled.entities[row.entity]
        record = entity.model.get_or_none(entity.model.id == row.record_id)
        if record is None:
            # Messages about a deletion carry the deleted record's snapshot; anything else
            # planned for a record that is gone since has nothing left to act on.
            snapshot = row.payload.get("snapshot")
            if row.kind not in ("send_email", "notify", "webhook") or snapshot is None:
                raise Skip(f"{entity.definition.label} #{row.record_id} was deleted")
            record = SimpleNamespace(**snapshot)
        return ActionRun(engine, row, rule, action, entity, record)

    def settle(self, run: ActionRun, result: str) -> None:
        """Put the result on the timeline and mark the row done (inside the effect's transaction)."""
        self._note(run.row, "action", result, reason=run.row.payload.get("reason"))
        self.engine.outbox.complete(run.row, result)

    def _note(self, row, kind: str, summary: str, reason=None) -> None:
        detail = (
            {"action": row.kind, "path": row.path, "reason": reason} if reason is not None else {"action": row.kind}
        )
        self.engine.history.note(
            row.entity,
            row.record_id,
            self.engine.ctx.now(),
            kind,
            summary,
            detail=detail,
            rule=row.rule,
            outbox_id=row.id,
        )

    def _failed(self, row, exc: Exception, permanent: bool) -> None:
        message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, CRMError) else str(exc)
        with self.engine.database.atomic():
            final = self.engine.outbox.fail(row, message, permanent)
            if final:
                self._note(row, "error", f"{_what(row)} failed: {message}")
            else:
                self._note(row, "retry", f"{_what(row)} failed (attempt {row.attempts}), will retry: {message}")


def _what(row) -> str:
    return f"{row.kind.replace('_', ' ')} (rule {row.rule!r})"


def _find_action(rule: CompiledRule, path: str) -> CompiledAction | None:
    """The action at ``path`` ("2", or "3.1" inside a follow-up) of ``rule``."""
    actions, found = rule.actions, None
    for part in path.split("."):
        index = int(part) - 1
        if not 0 <= index < len(actions):
            return None
        found = actions[index]
        actions = found.children
    return found
