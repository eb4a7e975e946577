"""Segments: named, saved filters over contacts or leads (``segments/*.yaml``).

A segment uses the list view's filter syntax, so what an admin writes here
is what a user gets by filtering a list and saving the view::

    segment: dach_smb
    label: DACH small businesses
    entity: contact
    search: ""            # optional: the list's search text
    filters:              # field: value; range fields also field.from / field.to
      segment: smb
      unsubscribed: false

``build_segment`` reads one file; ``check_segments`` (cross-file, run by the
analysis) checks that the entity can receive email and that every filter
names a field of it with a value of the right kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Location
from .diagnostics import Diagnostics, did_you_mean
from .source import PosMap

# Entities a campaign may email: they need an ``email`` field.
SEGMENT_ENTITIES = ("contact", "lead")
# The field types a list view filters on (``compiler.forms.build_list``).
FILTERABLE = ("choice", "state", "team", "user", "boolean", "date", "datetime", "link", "integer", "money",
              "percent", "decimal", "tags", "multi_choice")  # fmt: skip
RANGE_TYPES = ("integer", "decimal", "money", "percent", "date", "datetime")


@dataclass
class SegmentDef:
    """One segment as written: its filters in the list view's syntax."""

    name: str
    label: str
    entity: str
    search: str
    filters: dict[str, str]  # "segment" -> "smb", "score.from" -> "50"
    loc: Location
    filter_locs: dict[str, Location] = field(default_factory=dict)
    entity_loc: Location | None = None

    @property
    def file(self) -> str:
        return self.loc.file


def build_segment(data: PosMap, file: str, diag: Diagnostics) -> SegmentDef:
    """The segment of a structurally valid ``segments/*.yaml`` file."""
    filters, locs = {}, {}
    raw = data.get("filters") or PosMap()
    for key, value in raw.items():
        # As a list URL carries it: booleans as 1/0, everything else as text.
        filters[key] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        locs[key] = raw.key_loc(key) if isinstance(raw, PosMap) else data.loc
    name = data["segment"]
    return SegmentDef(
        name=name,
        label=data.get("label") or name.replace("_", " ").capitalize(),
        entity=data["entity"],
        search=data.get("search") or "",
        filters=filters,
        loc=Location(file, data.loc.line or 1, data.loc.column or 1),
        filter_locs=locs,
        entity_loc=data.value_loc("entity"),
    )


def check_segments(pack, diag: Diagnostics) -> None:
    """Check every segment against the entity it filters."""
    for segment in pack.segments.values():
        where = segment.entity_loc or segment.loc
        if segment.entity not in SEGMENT_ENTITIES:
            diag.fail(
                f"a segment selects contacts or leads, not {segment.entity!r}",
                where,
                "write entity: contact or entity: lead",
            )
            continue
        entity = pack.entities.get(segment.entity)
        if entity is None:
            if segment.entity not in pack.unloaded_entities:
                diag.fail(f"unknown entity {segment.entity!r}", where, "the pack defines no such entity")
            continue
        for key, value in segment.filters.items():
            _check_filter(entity, key, value, segment.filter_locs.get(key, segment.loc), diag)


def _check_filter(entity, key: str, value: str, where: Location, diag: Diagnostics) -> None:
    name, _, bound = key.partition(".")
    spec = entity.fields.get(name)
    if spec is None:
        diag.fail(
            f"{entity.name} has no field {name!r} to filter on",
            where,
            did_you_mean(name, entity.fields) or f"fields: {', '.join(sorted(entity.fields))}",
        )
        return
    if spec.type not in FILTERABLE:
        diag.fail(
            f"a {spec.type} field such as {name!r} cannot be filtered on", where, "list views filter the same fields"
        )
        return
    if bound and (bound not in ("from", "to") or spec.type not in RANGE_TYPES):
        hint = "use NAME.from / NAME.to on number and date fields" if bound in ("from", "to") else None
        diag.fail(f"unknown filter {key!r}", where, hint or "write the field name, or NAME.from / NAME.to")
        return
    options = getattr(spec, "options", None)
    if spec.type in ("choice", "multi_choice") and options and value not in options:
        diag.fail(
            f"{value!r} is not an option of {name!r}",
            where,
            did_you_mean(value, list(options)) or f"options: {', '.join(map(str, options))}",
        )
