"""Building ``EntityDef`` from a structurally valid ``schemas/*.yaml`` file.

Checks what only needs the one file: which options fit which field type,
defaults that fit their field, patterns that compile, computed expressions
that parse, sections that name each field at most once. References across
files (links, fields added by workflows) are checked by ``analysis``.
"""

from __future__ import annotations

import datetime as dt
import keyword
import re
from decimal import Decimal, InvalidOperation

from ..errors import Location
from .diagnostics import Diagnostics, see_docs
from .model import SYSTEM_FIELDS, EntityDef, FieldDef, FormDef, Ref, SectionDef
from .parser import SyntaxProblem, parse_expression
from .source import PosList, PosMap, located
from .typecheck import article

TEXTUAL = {"string", "text", "email", "phone", "url"}
NUMERIC = {"integer", "decimal", "money", "percent"}
ALL = {
    "string", "text", "email", "phone", "url", "integer", "decimal", "money", "percent",
    "boolean", "date", "datetime", "choice", "multi_choice", "tags", "link", "user", "team", "state",
}  # fmt: skip

# Which options each field type accepts (label and help fit every type).
OPTION_TYPES = {
    "required": ALL - {"state", "boolean"},
    "unique": ALL - {"text", "boolean", "multi_choice", "tags", "state", "user", "team", "link"},
    "indexed": ALL - {"text", "multi_choice", "tags"},
    "read_only": ALL,
    "default": ALL - {"link", "user", "state"},
    "min": NUMERIC,
    "max": NUMERIC,
    "max_length": TEXTUAL,
    "pattern": TEXTUAL,
    "computed": {"string", "integer", "decimal", "money", "percent", "boolean", "date", "datetime"},
    "options": {"choice", "multi_choice"},
    "entity": {"link"},
    "reverse": {"link"},
    "currency": {"money"},
    "scale": {"decimal"},
}
REQUIRED_OPTIONS = {"choice": ["options"], "multi_choice": ["options"], "link": ["entity"]}

DEFAULT_MAX_LENGTH = {"string": 255, "email": 254, "phone": 40, "url": 2048}


def humanize(name: str) -> str:
    """``campaign_member`` -> ``Campaign member``; a code such as ``NO`` stays ``NO``."""
    text = name.replace("_", " ")
    return text[:1].upper() + text[1:]


def pluralize(label: str) -> str:
    """A plain English plural, good enough for a default the admin can override."""
    if re.search(r"[^aeiou]y$", label):
        return label[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", label):
        return label + "es"
    return label + "s"


def check_name(name: str, loc: Location, what: str, diag: Diagnostics) -> None:
    """Names become Python identifiers in compiled code: refuse keywords."""
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        diag.fail(f"{what} name {name!r} is a reserved word", loc, f"rename the {what}")


def build_entity(data: PosMap, file: str, diag: Diagnostics) -> EntityDef:
    """Build an entity from a file that passed the meta-schema."""
    name = data["entity"]
    check_name(name, data.value_loc("entity"), "entity", diag)
    label = data.get("label") or humanize(name)
    fields = {}
    for field_name, spec in data["fields"].items():
        loc = data["fields"].key_loc(field_name)
        fields[field_name] = build_field(field_name, spec, loc, diag)
    entity = EntityDef(
        name=name,
        file=file,
        loc=data.value_loc("entity"),
        label=label,
        plural=data.get("plural") or pluralize(label),
        fields=fields,
        title=data.get("title"),
        title_loc=located(data, "title").at(0) if "title" in data else None,
        search=_refs(data, "search"),
        list_columns=_refs(data, "list"),
        sections=[_section(s, i) for i, s in enumerate(data.get("sections", []))],
        forms={k: _form(k, v, data["forms"].key_loc(k)) for k, v in data.get("forms", {}).items()},
        owner_field=_ref(data, "owner") or _default_ref(fields, "owner", "user"),
        team_field=_ref(data, "team") or _default_ref(fields, "team", "team"),
        calendar=_refs(data, "calendar"),
        done_field=_ref(data, "done"),
        description=data.get("description"),
        locs=dict(data.value_locs),
    )
    _check_sections(entity, diag)
    return entity


def build_field(name: str, spec: PosMap, loc: Location, diag: Diagnostics) -> FieldDef:
    """Build one field, reporting options that do not fit its type."""
    kind = spec["type"]
    if name in SYSTEM_FIELDS:
        diag.fail(
            f"field name {name!r} is reserved",
            loc,
            f"every record already has {', '.join(SYSTEM_FIELDS)}; choose another name",
        )
    check_name(name, loc, "field", diag)
    field = FieldDef(
        name=name,
        type=kind,
        loc=loc,
        label=spec.get("label") or humanize(name),
        help=spec.get("help"),
        required=spec.get("required", False),
        unique=spec.get("unique", False),
        indexed=spec.get("indexed", False) or spec.get("unique", False),
        read_only=spec.get("read_only", False),
        minimum=spec.get("min"),
        maximum=spec.get("max"),
        max_length=spec.get("max_length", DEFAULT_MAX_LENGTH.get(kind)),
        pattern=spec.get("pattern"),
        entity=spec.get("entity"),
        reverse=spec.get("reverse"),
        currency=spec.get("currency"),
        scale=spec.get("scale", 2),
        locs=dict(spec.value_locs),
    )
    for option in spec:
        if option in OPTION_TYPES and kind not in OPTION_TYPES[option]:
            fitting = ", ".join(sorted(OPTION_TYPES[option]))
            diag.fail(
                f"option {option!r} does not apply to {article(kind)} field",
                spec.key_loc(option),
                f"{option!r} fits: {fitting}",
            )
    for option in REQUIRED_OPTIONS.get(kind, []):
        if option not in spec:
            diag.fail(f"a {kind} field needs {option!r}", loc, see_docs(f"type-{kind}"))
    if "options" in spec and kind in OPTION_TYPES["options"]:
        field.options = _options(spec, diag)
    if field.pattern is not None:
        try:
            re.compile(field.pattern)
        except re.error as exc:
            diag.fail(f"invalid pattern: {exc.msg}", field.at("pattern"), "write a Python regular expression")
    if field.minimum is not None and field.maximum is not None and field.minimum > field.maximum:
        diag.fail(f"min ({field.minimum}) is greater than max ({field.maximum})", field.at("min"))
    if "computed" in spec:
        _computed(field, spec, diag)
    if "default" in spec and kind in OPTION_TYPES["default"]:
        field.has_default = True
        field.default = _default(field, spec["default"], diag)
    return field


def _computed(field: FieldDef, spec: PosMap, diag: Diagnostics) -> None:
    for clash in ("required", "default", "unique"):
        if clash in spec:
            diag.fail(
                f"a computed field cannot be {clash}", spec.key_loc(clash), "its value always comes from the expression"
            )
    source = located(spec, "computed")
    field.computed_source = source.text
    field.read_only = True
    try:
        field.computed = parse_expression(source.expression, source.loc, source.quoted)
    except SyntaxProblem as problem:
        diag.fail(problem.message, problem.loc, problem.hint)


def _options(spec: PosMap, diag: Diagnostics) -> dict[str, str]:
    raw = spec["options"]
    if isinstance(raw, PosMap):
        pairs = [(k, raw[k], raw.key_loc(k)) for k in raw]
    else:
        pairs = [(item, None, raw.item_loc(i)) for i, item in enumerate(raw)]
    options: dict[str, str] = {}
    for value, label, loc in pairs:
        if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
            diag.fail(f"an option must be a text or a number, got {value!r}", loc, 'quote it: options: ["yes", "no"]')
            continue
        value = str(value)
        if value in options:
            diag.fail(f"duplicate option {value!r}", loc)
        options[value] = str(label) if label is not None else humanize(value)
    return options


def _default(field: FieldDef, value, diag: Diagnostics):
    """Return the default in its canonical Python type, or report why it does not fit."""
    problem, canonical = coerce_value(field, value)
    if problem:
        diag.fail(f"default {value!r} {problem}", field.at("default"))
    return canonical


def coerce_value(field: FieldDef, value) -> tuple[str | None, object]:
    """Check a YAML-written value against a field; return (problem, canonical value)."""
    kind = field.type
    if value is None:
        return None, None
    if kind in TEXTUAL or kind == "team":
        if not isinstance(value, str):
            return "is not a text", value
        if field.max_length and len(value) > field.max_length:
            return f"is longer than max_length {field.max_length}", value
        if field.pattern and _compiles(field.pattern) and not re.search(field.pattern, value):
            return f"does not match the pattern {field.pattern}", value
        return None, value
    if kind in NUMERIC:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "is not a number", value
        if kind == "integer" and not isinstance(value, int):
            return "is not a whole number", value
        number = value if kind == "integer" else _decimal(value)
        if field.minimum is not None and number < field.minimum:
            return f"is below min {field.minimum}", number
        if field.maximum is not None and number > field.maximum:
            return f"is above max {field.maximum}", number
        return None, number
    if kind == "boolean":
        return (None, value) if isinstance(value, bool) else ("is not true or false", value)
    if kind == "date":
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return None, value
        return "is not a date (write YYYY-MM-DD)", value
    if kind == "datetime":
        if isinstance(value, dt.datetime):
            return None, value
        return "is not a date and time (write YYYY-MM-DDTHH:MM:SS)", value
    if kind == "choice":
        if str(value) not in field.options:
            return f"is not one of the options ({', '.join(field.options)})", value
        return None, str(value)
    if kind in ("multi_choice", "tags"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "is not a list of texts", value
        outside = [v for v in value if kind == "multi_choice" and v not in field.options]
        if outside:
            return f"has values that are not options: {', '.join(outside)}", value
        return None, list(value)
    return f"cannot be a default of a {kind} field", value


def _decimal(value) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:  # pragma: no cover - YAML numbers always convert
        return Decimal(0)


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _refs(data: PosMap, key: str) -> list[Ref]:
    items = data.get(key) or PosList()
    return [Ref(name, items.item_loc(i)) for i, name in enumerate(items)]


def _ref(data: PosMap, key: str) -> Ref | None:
    return Ref(data[key], data.value_loc(key)) if key in data else None


def _default_ref(fields: dict[str, FieldDef], name: str, kind: str) -> Ref | None:
    field = fields.get(name)
    return Ref(name, field.loc) if field and field.type == kind else None


def _section(data: PosMap, index: int) -> SectionDef:
    return SectionDef(data.get("label") or f"Section {index + 1}", _refs(data, "fields"), data.loc)


def _form(name: str, data: PosMap, loc: Location) -> FormDef:
    return FormDef(
        name=name,
        label=data.get("label") or humanize(name),
        public=data.get("public", False),
        fields=_refs(data, "fields"),
        thank_you=data.get("thank_you") or "Thank you.",
        loc=loc,
    )


def _check_sections(entity: EntityDef, diag: Diagnostics) -> None:
    seen: dict[str, Location] = {}
    for section in entity.sections:
        for ref in section.fields:
            if ref.name in seen:
                diag.fail(
                    f"field {ref.name!r} is already in an earlier section (line {seen[ref.name].line})",
                    ref.loc,
                    "list each field in one section",
                )
            seen.setdefault(ref.name, ref.loc)
