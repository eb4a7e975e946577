"""The console's "Inbound mail": every email the inbound-email webhook received,
the record it was matched to (or none), read-only. An email's html is shown
as its source text, never rendered."""

from __future__ import annotations

from flask import url_for
from flask_admin.contrib.peewee.filters import FilterEmpty, FilterEqual
from markupsafe import Markup

from .activity import _json, _pre, options
from .pages import ReadOnlyModelView

MATCHED_BY = ("thread", "tag", "address")


def _record(view, context, model, name) -> Markup | str:
    """A link to the matched record's page, or "unmatched"."""
    if not model.entity:
        return "unmatched"
    href = url_for("records.record_page", entity=model.entity, record_id=model.record_id)
    return Markup('<a href="{}">{} #{}</a>').format(href, model.entity, model.record_id)


class InboundMailView(ReadOnlyModelView):
    """Received email, newest first; filter "Entity empty: yes" lists the unmatched."""

    column_list = ["received_at", "sender", "subject", "entity", "record_id", "matched_by"]
    column_labels = {"received_at": "Received", "record_id": "Record", "matched_by": "Matched by"}
    column_default_sort = [("received_at", True), ("id", True)]
    column_searchable_list = ["sender", "subject", "message_id"]
    column_formatters = {"record_id": _record}
    can_view_details = True
    column_details_list = [
        "received_at", "sender", "recipients", "subject", "entity", "record_id", "matched_by", "message_id",
        "in_reply_to", "references", "text", "html", "headers",
    ]  # fmt: skip
    column_formatters_detail = {"record_id": _record, "text": _pre, "html": _pre, "headers": _json}

    def get_filters(self):
        Inbound = self.model
        return [
            FilterEmpty(Inbound.entity, "Entity"),
            FilterEqual(Inbound.entity, "Entity"),
            FilterEqual(Inbound.matched_by, "Matched by", options=options(MATCHED_BY)),
        ]
