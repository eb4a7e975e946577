"""The typed model of a pack: plain data, no database and no Flask.

``load_pack`` builds these from the files; ``compile_pack`` turns them into
the running parts. Every definition keeps where it was written (``loc``) and
where each of its keys was written (``locs``), so later stages can point at
the exact spot of a problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Finding, Location
from .nodes import Expr, Rule

FIELD_TYPES = (
    "string", "text", "email", "phone", "url",
    "integer", "decimal", "money", "percent",
    "boolean", "date", "datetime",
    "choice", "multi_choice", "tags",
    "link", "user", "team", "state",
)  # fmt: skip

# Columns every record has; fields may not use these names.
SYSTEM_FIELDS = ("id", "created_at", "updated_at", "version")


@dataclass(frozen=True)
class Ref:
    """A name written somewhere, e.g. one entry of ``search: [...]``."""

    name: str
    loc: Location


@dataclass
class FieldDef:
    name: str
    type: str
    loc: Location
    label: str
    help: str | None = None
    required: bool = False
    unique: bool = False
    indexed: bool = False
    read_only: bool = False
    default: object = None
    has_default: bool = False
    minimum: object = None
    maximum: object = None
    max_length: int | None = None
    pattern: str | None = None
    options: dict[str, str] = field(default_factory=dict)  # value -> label
    entity: str | None = None  # link target
    reverse: str | None = None  # name of the reverse list on the target
    currency: str | None = None
    scale: int = 2
    computed: Expr | None = None
    computed_source: str | None = None
    locs: dict[str, Location] = field(default_factory=dict)  # key -> where its value is

    def at(self, key: str) -> Location:
        """Where option ``key`` was written (the field itself if not written)."""
        return self.locs.get(key, self.loc)

    @property
    def is_computed(self) -> bool:
        return self.computed is not None


@dataclass
class SectionDef:
    label: str
    fields: list[Ref]
    loc: Location


@dataclass
class FormDef:
    name: str
    label: str
    public: bool
    fields: list[Ref]
    thank_you: str
    loc: Location


@dataclass
class EntityDef:
    name: str
    file: str
    loc: Location
    label: str
    plural: str
    fields: dict[str, FieldDef]
    title: str | None = None
    title_loc: Location | None = None  # where the title's first character stands
    search: list[Ref] = field(default_factory=list)
    list_columns: list[Ref] = field(default_factory=list)
    sections: list[SectionDef] = field(default_factory=list)
    forms: dict[str, FormDef] = field(default_factory=dict)
    owner_field: Ref | None = None
    team_field: Ref | None = None
    calendar: list[Ref] = field(default_factory=list)  # date/datetime fields shown on the calendar
    done_field: Ref | None = None  # boolean field that marks a record finished (tasks)
    description: str | None = None
    locs: dict[str, Location] = field(default_factory=dict)

    def at(self, key: str) -> Location:
        return self.locs.get(key, self.loc)


@dataclass
class StateDef:
    name: str
    loc: Location
    label: str
    initial: bool = False
    final: bool = False
    require: list[Ref] = field(default_factory=list)
    probability: int | None = None
    sla_hours: float | None = None
    outcome: str | None = None  # "won" or "lost": what reaching this final state means for reports


@dataclass
class TransitionDef:
    sources: list[Ref]
    target: Ref
    loc: Location
    label: str
    guard: Expr | None = None
    guard_source: str | None = None
    roles: list[Ref] = field(default_factory=list)


@dataclass
class WorkflowDef:
    name: str
    file: str
    loc: Location
    entity: Ref
    field: Ref
    states: dict[str, StateDef]
    transitions: list[TransitionDef]
    label: str = ""
    probability_field: Ref | None = None

    @property
    def initial(self) -> StateDef | None:
        return next((s for s in self.states.values() if s.initial), None)


@dataclass
class TeamDef:
    name: str
    label: str
    loc: Location


@dataclass
class RoleDef:
    name: str
    label: str
    loc: Location
    permissions: dict[str, set[str]]  # entity or "*" -> {create, read, update, delete}
    permission_locs: dict[str, Location]
    scope: str = "all"  # all | own
    read_only_fields: dict[str, list[Ref]] = field(default_factory=dict)


@dataclass(frozen=True)
class InboundEmailDef:
    """``pack.yaml``'s ``inbound_email:``: the record made from an email that matches none."""

    entity: Ref
    fields: dict[str, str]  # field -> part of the email: from, from_name, subject, text
    values: dict[str, object]  # field -> fixed value
    locs: dict[str, Location]  # field -> where it is named


@dataclass
class Settings:
    name: str = "Company"
    currency: str = "EUR"
    locale: str = "en_US"
    timezone: str = "UTC"
    inbound_email: InboundEmailDef | None = None


@dataclass
class Pack:
    """Everything one company defined, as loaded from a directory."""

    root: Path
    settings: Settings
    entities: dict[str, EntityDef]
    workflows: dict[str, WorkflowDef]
    rules: list[Rule]
    teams: dict[str, TeamDef]
    roles: dict[str, RoleDef]
    templates: dict[str, Location]  # email template name -> its file
    sources: dict[str, str]  # file (relative to root) -> text
    version: str  # content hash of every definition file
    findings: list[Finding] = field(default_factory=list)  # problems found while loading
    # What failed to load (its errors are reported already), so that analysis does
    # not add "unknown entity/field/team" findings that follow from it.
    unloaded_entities: set[str] = field(default_factory=set)
    unloaded_workflows: set[tuple[str, str | None]] = field(default_factory=set)  # (entity, state field)
    settings_failed: bool = False
    segments: dict = field(default_factory=dict)  # name -> SegmentDef (``segments/*.yaml``)
    sla_policies: dict = field(default_factory=dict)  # name -> SlaPolicyDef (``sla/*.yaml``, definitions/sla.py)

    def workflow_failed_for(self, entity: str) -> bool:
        """True if a workflow file about ``entity`` failed to load."""
        return any(name == entity for name, _ in self.unloaded_workflows)
