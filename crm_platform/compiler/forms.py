"""Form and list specifications: what the generated UI shows for an entity.

Plain data, so that the web layer renders any entity without code written
for it: sections of fields with widgets and choices, the record's related
lists (the reverse side of links), list columns, search fields, and the
public forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..definitions.analysis import reverse_name
from ..definitions.model import EntityDef, FieldDef, Pack

WIDGETS = {
    "string": "text", "text": "textarea", "email": "email", "phone": "tel", "url": "url",
    "integer": "number", "decimal": "decimal", "money": "money", "percent": "percent",
    "boolean": "checkbox", "date": "date", "datetime": "datetime-local",
    "choice": "select", "multi_choice": "checkboxes", "tags": "tags",
    "link": "link-picker", "user": "user-picker", "team": "select", "state": "stage",
}  # fmt: skip


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    type: str
    widget: str
    required: bool = False
    read_only: bool = False
    help: str | None = None
    choices: tuple[tuple[str, str], ...] = ()  # (value, label)
    link_entity: str | None = None
    minimum: object = None
    maximum: object = None
    max_length: int | None = None
    pattern: str | None = None
    currency: str | None = None
    step: str | None = None
    multiple: bool = False

    @cached_property
    def choice_labels(self) -> dict[str, str]:
        """Choice value -> label."""
        return dict(self.choices)


@dataclass(frozen=True)
class SectionSpec:
    label: str
    fields: tuple[FieldSpec, ...]


@dataclass(frozen=True)
class RelatedList:
    """Records of another entity that link here (the reverse side of a link)."""

    name: str  # the reverse name, e.g. "deals"
    label: str
    entity: str
    field: str  # the link field on that entity


@dataclass(frozen=True)
class FormSpec:
    entity: str
    label: str
    sections: tuple[SectionSpec, ...]
    related: tuple[RelatedList, ...] = ()
    public: bool = False
    name: str = "default"
    thank_you: str = ""

    @property
    def fields(self) -> list[FieldSpec]:
        return [f for section in self.sections for f in section.fields]


@dataclass(frozen=True)
class ListSpec:
    entity: str
    label: str
    columns: tuple[FieldSpec, ...]
    search: tuple[str, ...]
    default_sort: str = "-created_at"
    filters: tuple[FieldSpec, ...] = ()


def field_spec(field: FieldDef, teams: dict[str, str], currency: str) -> FieldSpec:
    """How one field is shown and edited; ``teams`` maps each team's name to its label."""
    choices: tuple = ()
    if field.type in ("choice", "multi_choice", "state"):
        choices = tuple(field.options.items())
    elif field.type == "team":
        choices = tuple(teams.items())
    step = {"integer": "1", "money": "0.01", "percent": "0.01"}.get(field.type)
    if field.type == "decimal":
        step = str(10**-field.scale) if field.scale else "1"
    return FieldSpec(
        name=field.name,
        label=field.label,
        type=field.type,
        widget=WIDGETS[field.type],
        required=field.required and not field.is_computed,
        read_only=field.read_only or field.is_computed,
        help=field.help,
        choices=choices,
        link_entity=field.entity,
        minimum=field.minimum,
        maximum=field.maximum,
        max_length=field.max_length,
        pattern=field.pattern,
        currency=(field.currency or currency) if field.type == "money" else None,
        step=step,
        multiple=field.type in ("multi_choice", "tags"),
    )


def team_labels(pack: Pack) -> dict[str, str]:
    """Team name -> label, the choices of a team field."""
    return {team.name: team.label for team in pack.teams.values()}


def build_form(entity: EntityDef, pack: Pack) -> FormSpec:
    """The record form: declared sections, then every other field in "Other"."""
    teams = team_labels(pack)
    specs = {f.name: field_spec(f, teams, pack.settings.currency) for f in entity.fields.values()}
    sections, placed = [], set()
    for section in entity.sections:
        names = [ref.name for ref in section.fields if ref.name in specs]
        placed.update(names)
        sections.append(SectionSpec(section.label, tuple(specs[n] for n in names)))
    rest = [spec for name, spec in specs.items() if name not in placed]
    if rest:
        sections.append(SectionSpec("Other" if sections else "Details", tuple(rest)))
    return FormSpec(entity.name, entity.label, tuple(sections), related_lists(entity, pack))


def build_public_forms(entity: EntityDef, pack: Pack) -> dict[str, FormSpec]:
    """The entity's declared forms (web-to-lead and the like)."""
    forms = {}
    for form in entity.forms.values():
        fields = tuple(
            field_spec(entity.fields[r.name], team_labels(pack), pack.settings.currency)
            for r in form.fields
            if r.name in entity.fields
        )
        forms[form.name] = FormSpec(
            entity.name,
            form.label,
            (SectionSpec(form.label, fields),),
            public=form.public,
            name=form.name,
            thank_you=form.thank_you,
        )
    return forms


def related_lists(entity: EntityDef, pack: Pack) -> tuple[RelatedList, ...]:
    """Every link from any entity into ``entity``, as related lists."""
    related = []
    for other in pack.entities.values():
        for field in other.fields.values():
            if field.type == "link" and field.entity == entity.name:
                name = reverse_name(other, field)
                label = _label(name) if field.reverse else other.plural
                related.append(RelatedList(name, label, other.name, field.name))
    return tuple(related)


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def build_list(entity: EntityDef, pack: Pack) -> ListSpec:
    """List view: declared columns (default: title-ish fields), search fields, filters."""
    teams, currency = team_labels(pack), pack.settings.currency
    fields = entity.fields
    names = [r.name for r in entity.list_columns if r.name in fields]
    if not names:
        names = [f.name for f in fields.values() if f.type not in ("text", "multi_choice", "tags")][:6]
    search = [r.name for r in entity.search] or [
        f.name for f in fields.values() if f.type in ("string", "email", "phone")
    ]
    filterable = (
        "choice",
        "state",
        "team",
        "user",
        "boolean",
        "date",
        "datetime",
        "link",
        "integer",
        "money",
        "percent",
        "decimal",
        "tags",
        "multi_choice",
    )
    return ListSpec(
        entity=entity.name,
        label=entity.plural,
        columns=tuple(field_spec(fields[n], teams, currency) for n in names),
        search=tuple(search),
        filters=tuple(field_spec(f, teams, currency) for f in fields.values() if f.type in filterable),
    )
