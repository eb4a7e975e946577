"""What the platform did: the action outbox (with retry), pending timers
(with stop), the audit log, the mail outbox and saved list views. All
read-only, except that a failed action may be run again and a pending timer
stopped."""

from __future__ import annotations

import json

from flask import flash, redirect
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.peewee.filters import FilterEqual
from flask_admin.helpers import get_redirect_target
from flask_admin.model.template import macro
from flask_login import current_user
from markupsafe import Markup, escape

from ...actions import EXECUTORS
from ...runtime.due_work import TIMER_KINDS
from ..state import crm
from .pages import ReadOnlyModelView

# The values the platform writes (see runtime/tables.py and runtime/outbox.py).
OUTBOX_STATES = ("waiting", "pending", "queued", "running", "retrying", "done", "failed", "skipped")
AUDIT_OPERATIONS = ("create", "update", "transition", "delete")
AUDIT_CHANNELS = ("form", "api", "import", "rule", "worker", "system")
MAIL_STATES = ("kept", "handed_over", "sent", "rejected")

OUTBOX_COLUMNS = [
    "id", "kind", "entity", "record_id", "rule", "status", "attempts", "due_at", "error", "created_at", "finished_at",
]  # fmt: skip


def options(values) -> list[tuple[str, str]]:
    """A filter's choices, each shown as it is stored."""
    return [(value, value) for value in values]


def _changes(view, context, model, name) -> Markup:
    """``field: old → new`` per changed field."""
    changes = getattr(model, name) or {}
    lines = []
    for field, change in sorted(changes.items()):
        if isinstance(change, list) and len(change) == 2:
            lines.append(f"{field}: {_short(change[0])} → {_short(change[1])}")
        else:
            lines.append(f"{field}: {_short(change)}")
    return Markup("<br>").join(escape(line) for line in lines)


def _short(value, limit: int = 80) -> str:
    text = "∅" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(view, context, model, name) -> Markup:
    value = getattr(model, name)
    if value is None:
        return Markup("")
    return Markup("<pre>{}</pre>").format(json.dumps(value, indent=2, sort_keys=True, default=str))


def _pre(view, context, model, name) -> Markup:
    return Markup('<pre style="white-space: pre-wrap">{}</pre>').format(getattr(model, name) or "")


def _user_name(view, context, model, name) -> str:
    user_id = getattr(model, "user_id", None)
    return getattr(model, "console_user_name", None) or ("" if user_id is None else f"user #{user_id}")


def user_names(tables, user_ids) -> dict[int, str]:
    """The names of the users with these ids, in one query."""
    ids = {user_id for user_id in user_ids if user_id is not None}
    if not ids:
        return {}
    User = tables.User
    return {user.id: user.name for user in User.select(User.id, User.name).where(User.id.in_(ids))}


def pending_timers(platform):
    """Timers waiting for their time (``crm_timer``): follow-up steps, time-triggered rules."""
    Timer = platform.tables.Timer
    return Timer.select().where(Timer.status == "pending")


class WithUserNames:
    """Lists whose rows name a user: the names of a page's users in one query."""

    def get_list(self, *args, **kwargs):
        count, rows = super().get_list(*args, **kwargs)
        if isinstance(rows, list):
            names = user_names(crm().tables, (row.user_id for row in rows))
            for row in rows:
                row.console_user_name = names.get(row.user_id)
        return count, rows


class OutboxView(ReadOnlyModelView):
    """Every action a change planned; failed ones can be run again."""

    list_template = "admin/console/outbox_list.html"
    column_list = OUTBOX_COLUMNS
    column_labels = {"record_id": "Record", "due_at": "Due", "created_at": "Created", "finished_at": "Finished"}
    column_default_sort = [("created_at", True), ("id", True)]
    column_formatters = {"status": macro("status_with_retry"), "error": lambda v, c, m, n: _short(m.error or "", 200)}
    column_searchable_list = ["rule", "error"]
    can_view_details = True
    column_details_list = [*OUTBOX_COLUMNS, "path", "key", "depth", "definition_version", "payload", "result"]
    column_formatters_detail = {"payload": _json, "error": _pre, "result": _pre}

    def get_filters(self):
        Outbox = self.model
        return [
            FilterEqual(Outbox.status, "Status", options=options(OUTBOX_STATES)),
            FilterEqual(Outbox.kind, "Kind", options=options(sorted(EXECUTORS))),
            FilterEqual(Outbox.entity, "Entity"),
        ]

    def status_counts(self) -> list[tuple[str, int, str]]:
        """(status, rows, URL of the list filtered to it), in the order a row moves through them."""
        counts = crm().outbox.counts()
        arg = f"flt0_{self.get_filter_arg(0, self._filters[0])}"
        ordered = [s for s in OUTBOX_STATES if s in counts] + sorted(set(counts) - set(OUTBOX_STATES))
        return [(status, counts[status], self.get_url(".index_view", **{arg: status})) for status in ordered]

    @expose("/retry/<int:outbox_id>", methods=["POST"])
    def retry_view(self, outbox_id: int):
        """Run one failed action again (the POST carries the CSRF token like every form)."""
        try:
            crm().outbox.retry(outbox_id)
        except LookupError as error:
            flash(f"Not retried: {error}.", "error")
        else:
            flash(f"Action {outbox_id} is queued to run again.", "success")
        return redirect(get_redirect_target() or self.get_url(".index_view"))

    @action("retry", "Retry", "Run the selected failed actions again?")
    def action_retry(self, ids) -> None:
        retried, refused = [], []
        for raw in ids:
            try:
                crm().outbox.retry(int(raw))
            except (LookupError, ValueError):
                refused.append(raw)
            else:
                retried.append(raw)
        if retried:
            flash(f"{len(retried)} action(s) queued to run again.", "success")
        if refused:
            flash(f"Not retried (not failed actions): {', '.join(refused)}.", "error")


class TimersView(ReadOnlyModelView):
    """Timers waiting for their time, soonest first; each can be stopped (a follow-up: its sequence)."""

    list_template = "admin/console/timers_list.html"
    column_list = ["id", "due_at", "kind", "entity", "record_id", "rule", "step", "created_at", "status"]
    column_labels = {"record_id": "Record", "due_at": "Due", "created_at": "Created", "status": ""}
    column_default_sort = [("due_at", False), ("id", False)]
    column_formatters = {"status": macro("stop_button")}
    column_display_actions = False  # nothing to open or change

    def get_query(self):
        return pending_timers(crm())

    def get_filters(self):
        return [FilterEqual(self.model.kind, "Kind", options=options(sorted(TIMER_KINDS)))]

    @expose("/stop/<int:timer_id>", methods=["POST"])
    def stop_view(self, timer_id: int):
        """Stop one pending timer (the POST carries the CSRF token like every form)."""
        who = getattr(current_user, "name", None) or "an admin"
        try:
            line = crm().timers.stop(timer_id, by=f"{who} (console)")
        except LookupError as error:
            flash(f"Not stopped: {error}.", "error")
        else:
            flash(f"{line}.", "success")
        return redirect(get_redirect_target() or self.get_url(".index_view"))


class AuditView(WithUserNames, ReadOnlyModelView):
    """Who changed what, when, through which channel; for automated changes, which rule."""

    column_list = ["at", "entity", "record_id", "operation", "user", "channel", "rule", "changes"]
    column_labels = {"record_id": "Record"}
    column_default_sort = [("at", True), ("id", True)]
    column_formatters = {"user": _user_name, "changes": _changes}
    column_searchable_list = ["rule"]
    can_view_details = True
    column_details_list = [
        "at", "entity", "record_id", "version", "operation", "user", "channel", "rule", "definition_version",
        "depth", "changes", "reason",
    ]  # fmt: skip
    column_formatters_detail = {"user": _user_name, "changes": _json, "reason": _json}

    def get_filters(self):
        Audit = self.model
        return [
            FilterEqual(Audit.entity, "Entity"),
            FilterEqual(Audit.operation, "Operation", options=options(AUDIT_OPERATIONS)),
            FilterEqual(Audit.channel, "Channel", options=options(AUDIT_CHANNELS)),
        ]

    def get_one(self, id):
        row = super().get_one(id)
        if row is not None:
            row.console_user_name = user_names(crm().tables, [row.user_id]).get(row.user_id)
        return row


class MailView(ReadOnlyModelView):
    """Every email sent, or kept when no mail server is configured; the body on the details page."""

    column_list = ["created_at", "recipient", "subject", "status", "entity", "record_id"]
    column_labels = {"record_id": "Record", "created_at": "Created"}
    column_default_sort = [("created_at", True), ("id", True)]
    column_searchable_list = ["recipient", "subject"]
    can_view_details = True
    column_details_list = [
        "created_at", "sender", "recipient", "subject", "status", "entity", "record_id", "message_id", "smtp_reply",
        "body",
    ]  # fmt: skip
    column_formatters_detail = {"body": _pre, "smtp_reply": _pre}

    def get_filters(self):
        return [FilterEqual(self.model.status, "Status", options=options(MAIL_STATES))]


class SavedViewsView(WithUserNames, ReadOnlyModelView):
    """The list views users saved (their search, filters and sort)."""

    column_list = ["user", "entity", "name", "query", "shared", "created_at"]
    column_labels = {"created_at": "Created"}
    column_default_sort = [("created_at", True), ("id", True)]
    column_formatters = {"user": _user_name}
    column_filters = ["entity", "shared"]
    column_display_actions = False
