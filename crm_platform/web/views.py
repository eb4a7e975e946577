"""Saved list views: a name for a list's search, filters and sort."""

from __future__ import annotations

from urllib.parse import parse_qsl

from flask import Blueprint, flash, redirect, request, url_for
from werkzeug.datastructures import MultiDict

from ..errors import NotFound, PermissionDenied
from .auth import actor
from .listing import ListRequest
from .records import entity_or_404
from .state import crm

bp = Blueprint("views", __name__, url_prefix="/views")


@bp.post("/<entity>")
def save(entity: str):
    """Save the list's current query under a name (replacing the user's view of that name)."""
    ce = entity_or_404(entity)
    crm().permissions.require(actor(), entity, "read")
    name = request.form.get("name", "").strip()[:80]
    # Kept only as far as it is a list query: what is stored is rebuilt, never the text as sent.
    sent = MultiDict(parse_qsl(request.form.get("query", "").lstrip("?"), keep_blank_values=False))
    query = ListRequest.from_args(sent, ce).query_string()
    if not name:
        flash("Give the view a name.", "error")
        return redirect(url_for("records.list_page", entity=entity) + ("?" + query if query else ""))
    SavedView = crm().tables.SavedView
    shared = request.form.get("shared") == "1" and actor().superuser
    SavedView.insert(
        user=actor().user_id, entity=entity, name=name, query=query, shared=shared, created_at=crm().clock.utcnow()
    ).on_conflict(
        conflict_target=[SavedView.user, SavedView.entity, SavedView.name],
        update={SavedView.query: query, SavedView.shared: shared},
    ).execute()
    flash(f"View {name!r} saved.", "success")
    return redirect(url_for("records.list_page", entity=entity) + ("?" + query if query else ""))


@bp.post("/<int:view_id>/delete")
def delete(view_id: int):
    """Delete one of the user's own saved views."""
    SavedView = crm().tables.SavedView
    view = SavedView.get_or_none(SavedView.id == view_id)
    if view is None:
        raise NotFound("there is no such saved view")
    if view.user_id != actor().user_id and not actor().superuser:
        raise PermissionDenied("you may only delete your own views")
    SavedView.delete().where(SavedView.id == view.id).execute()
    flash(f"View {view.name!r} deleted.", "success")
    return redirect(url_for("records.list_page", entity=view.entity))
