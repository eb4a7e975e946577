"""Who a campaign run emails: the members of a segment.

A segment is either written in the pack (``segments/*.yaml``, reference
``yaml:NAME``) or a saved list view of contacts or leads (``view:ID``). Both
are list queries in the list view's syntax, so ``web.listing`` turns them
into the same peewee query a list page runs. (``web`` is imported where it
is used: the engine imports this module, and the web package imports the
engine.)
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from werkzeug.datastructures import MultiDict

from ..definitions.segments import SEGMENT_ENTITIES
from ..errors import NotFound


@dataclass(frozen=True)
class Segment:
    """A segment ready to query: its reference, label, entity and list query."""

    ref: str  # "yaml:NAME" or "view:ID"
    label: str
    entity: str
    query: str  # the list view's query string


def available(crm, user_id: int | None, superuser: bool = False) -> list[Segment]:
    """The pack's segments, then the saved views of contacts and leads the user can see."""
    segments = [
        Segment(f"yaml:{s.name}", s.label, s.entity, _query_string(crm, s.entity, s.search, s.filters))
        for s in crm.compiled.pack.segments.values()
        if s.entity in crm.compiled.entities
    ]
    SavedView = crm.tables.SavedView
    views = SavedView.select().where(SavedView.entity.in_(SEGMENT_ENTITIES)).order_by(SavedView.name)
    if not superuser:
        views = views.where((SavedView.user == user_id) | (SavedView.shared == True))  # noqa: E712 - SQL
    for view in views:
        if view.entity in crm.compiled.entities:
            label = f"{view.name} (saved view of {crm.compiled.entities[view.entity].definition.plural})"
            segments.append(Segment(f"view:{view.id}", label, view.entity, view.query))
    return segments


def resolve(crm, ref: str) -> Segment:
    """The segment that ``ref`` names; raises ``NotFound``."""
    kind, _, name = ref.partition(":")
    if kind == "yaml":
        definition = crm.compiled.pack.segments.get(name)
        if definition is not None and definition.entity in crm.compiled.entities:
            query = _query_string(crm, definition.entity, definition.search, definition.filters)
            return Segment(ref, definition.label, definition.entity, query)
    elif kind == "view" and name.isdigit():
        SavedView = crm.tables.SavedView
        view = SavedView.get_or_none(SavedView.id == int(name))
        if view is not None and view.entity in SEGMENT_ENTITIES and view.entity in crm.compiled.entities:
            return Segment(ref, view.name, view.entity, view.query)
    raise NotFound(f"there is no segment {ref!r}")


def member_ids(crm, segment: Segment, user_id: int | None = None) -> list[int]:
    """The ids of the segment's records now, in the list's order.

    ``user_id`` is who started the run: a role that reads only its own records
    reaches only its own members, as on the list page. Raises ``NotFound`` when
    that user is no longer active.
    """
    from ..web.formats import Formats
    from ..web.listing import apply

    ce = crm.compiled.entities[segment.entity]
    base = ce.model.select(ce.model.id)
    if user_id is not None:
        try:
            actor = crm.directory.actor(user_id)
        except LookupError:
            raise NotFound(f"user #{user_id}, who started the run, is no longer active") from None
        if crm.permissions.own_only(actor, ce.name, "read"):
            base = base.where(getattr(ce.model, crm.permissions.owner_field(ce.name)) == actor.user_id)
    query = apply(base, ce, _request(ce, segment.query), Formats(crm.settings))
    return [row[0] for row in query.tuples()]


def _request(ce, query: str):
    from ..web.listing import ListRequest

    return ListRequest.from_args(MultiDict(parse_qsl(query, keep_blank_values=False)), ce)


def _query_string(crm, entity: str, search: str, filters: dict[str, str]) -> str:
    from ..web.listing import ListRequest

    args = MultiDict({f"f.{key}": value for key, value in filters.items()})
    if search:
        args["q"] = search
    return ListRequest.from_args(args, crm.compiled.entities[entity]).query_string()
