"""The shape of each kind of definition file, as JSON Schemas, and the
translation of schema violations into findings an admin can act on.

The meta-schemas check structure only (which keys, which types). Meaning,
such as which options fit which field type, is checked by the builders.
"""

from __future__ import annotations

from jsonschema import Draft202012Validator

from .diagnostics import Diagnostics, did_you_mean, see_docs
from .model import FIELD_TYPES
from .source import PosList, PosMap

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
TEAM_PATTERN = r"^[a-z][a-z0-9_-]*$"
NAME = {"type": "string", "pattern": NAME_PATTERN}
TEAM_NAME = {"type": "string", "pattern": TEAM_PATTERN}
TEXT = {"type": "string"}
FLAG = {"type": "boolean"}
NUMBER = {"type": "number"}
NAMES = {"type": "array", "items": NAME}
CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$"}

FIELD = {
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": list(FIELD_TYPES)},
        "label": TEXT,
        "help": TEXT,
        "required": FLAG,
        "unique": FLAG,
        "indexed": FLAG,
        "read_only": FLAG,
        "default": {},
        "min": NUMBER,
        "max": NUMBER,
        "max_length": {"type": "integer", "minimum": 1, "maximum": 65535},
        "pattern": TEXT,
        "computed": TEXT,
        "options": {"type": ["array", "object"], "minItems": 1, "minProperties": 1},
        "entity": NAME,
        "reverse": NAME,
        "currency": CURRENCY,
        "scale": {"type": "integer", "minimum": 0, "maximum": 8},
    },
}

SECTION = {
    "type": "object",
    "required": ["fields"],
    "additionalProperties": False,
    "properties": {"label": TEXT, "fields": NAMES},
}

FORM = {
    "type": "object",
    "required": ["fields"],
    "additionalProperties": False,
    "properties": {"label": TEXT, "public": FLAG, "fields": NAMES, "thank_you": TEXT},
}

ENTITY_FILE = {
    "type": "object",
    "required": ["entity", "fields"],
    "additionalProperties": False,
    "properties": {
        "entity": NAME,
        "label": TEXT,
        "plural": TEXT,
        "description": TEXT,
        "title": TEXT,
        "search": NAMES,
        "list": NAMES,
        "owner": NAME,
        "team": NAME,
        "calendar": NAMES,
        "done": NAME,
        "sections": {"type": "array", "items": SECTION},
        "fields": {"type": "object", "minProperties": 1, "propertyNames": NAME, "additionalProperties": FIELD},
        "forms": {"type": "object", "propertyNames": NAME, "additionalProperties": FORM},
    },
}

STATE = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "properties": {
        "label": TEXT,
        "initial": FLAG,
        "final": FLAG,
        "require": NAMES,
        "probability": {"type": "integer", "minimum": 0, "maximum": 100},
        "sla_hours": {"type": "number", "exclusiveMinimum": 0},
        "outcome": {"enum": ["won", "lost"]},
    },
}

NAME_OR_NAMES = {"type": ["string", "array"], "pattern": NAME_PATTERN, "items": NAME, "minItems": 1}

TRANSITION = {
    "type": "object",
    "required": ["from", "to"],
    "additionalProperties": False,
    "properties": {
        "from": NAME_OR_NAMES,
        "to": NAME,
        "when": TEXT,
        "roles": {"type": "array", "items": TEAM_NAME},
        "label": TEXT,
    },
}

WORKFLOW_FILE = {
    "type": "object",
    "required": ["workflow", "entity", "field", "states", "transitions"],
    "additionalProperties": False,
    "properties": {
        "workflow": NAME,
        "label": TEXT,
        "entity": NAME,
        "field": NAME,
        "probability_field": NAME,
        "states": {"type": "object", "minProperties": 1, "propertyNames": NAME, "additionalProperties": STATE},
        "transitions": {"type": "array", "items": TRANSITION},
    },
}

SEGMENT_FILE = {
    "type": "object",
    "required": ["segment", "entity"],
    "additionalProperties": False,
    "properties": {
        "segment": NAME,
        "label": TEXT,
        "entity": NAME,
        "search": TEXT,
        "filters": {
            "type": ["object", "null"],
            "propertyNames": {"type": "string", "pattern": r"^[a-z][a-z0-9_]*(\.(from|to))?$"},
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
    },
}

OPERATIONS = ["create", "read", "update", "delete"]

ROLE = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "properties": {
        "label": TEXT,
        "permissions": {
            "type": "object",
            "propertyNames": {"anyOf": [NAME, {"const": "*"}]},
            "additionalProperties": {"type": "array", "items": {"enum": OPERATIONS}},
        },
        "scope": {"enum": ["all", "own"]},
        "read_only_fields": {"type": "object", "propertyNames": NAME, "additionalProperties": NAMES},
    },
}

PACK_FILE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": TEXT,
        "currency": CURRENCY,
        "locale": {"type": "string", "pattern": "^[a-z]{2}(_[A-Z]{2})?$"},
        "timezone": TEXT,
        "teams": {
            "type": "object",
            "propertyNames": TEAM_NAME,
            "additionalProperties": {
                "type": ["object", "null"],
                "additionalProperties": False,
                "properties": {"label": TEXT},
            },
        },
        "roles": {"type": "object", "propertyNames": TEAM_NAME, "additionalProperties": ROLE},
        "inbound_email": {
            "type": "object",
            "required": ["create"],
            "additionalProperties": False,
            "properties": {
                "create": NAME,
                "fields": {
                    "type": "object",
                    "propertyNames": NAME,
                    "additionalProperties": {"enum": ["from", "from_name", "subject", "text"]},
                },
                "values": {"type": "object", "propertyNames": NAME},
            },
        },
    },
}

DURATION = {"type": ["string", "integer"]}  # "4h", "1h30m", "2d": checked by definitions/sla.py
NAME_OR_NAMES_LIST = {"type": ["string", "array"], "pattern": NAME_PATTERN, "items": NAME}
DAY_HOURS = {"type": ["string", "array"], "items": TEXT, "minItems": 1}  # "closed" or ["08:00-12:00", ...]
ESCALATION_STEP = {
    "type": "object",
    "required": ["at"],
    "additionalProperties": False,
    "properties": {
        "at": {"type": "integer", "minimum": 1, "maximum": 1000},
        "notify": TEXT,
        "reassign": TEXT,
        "set_priority": NAME,
        "message": TEXT,
    },
}

SLA_FILE = {
    "type": "object",
    "required": ["sla", "entity", "targets"],
    "additionalProperties": False,
    "properties": {
        "sla": NAME,
        "label": TEXT,
        "entity": NAME,
        "applies_when": TEXT,
        "timezone": TEXT,
        "priority_field": NAME,
        "state_field": NAME,
        "business_hours": {
            "type": ["string", "object"],
            "additionalProperties": False,
            "properties": {day: DAY_HOURS for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        },
        "holidays": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["date"],
                "additionalProperties": False,
                "properties": {"date": {}, "name": TEXT},
            },
        },
        "targets": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": False,
                "properties": {"first_response": DURATION, "resolution": DURATION},
            },
        },
        "first_response": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"leaves": NAME_OR_NAMES_LIST, "field": NAME},
        },
        "pause_in": NAME_OR_NAMES_LIST,
        "resolved_in": NAME_OR_NAMES_LIST,
        "escalation": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "first_response": {"type": "array", "items": ESCALATION_STEP},
                "resolution": {"type": "array", "items": ESCALATION_STEP},
            },
        },
    },
}

_WHAT = {
    "fields": "field",
    "targets": "target",
    "holidays": "holiday",
    "forms": "form",
    "states": "state",
    "transitions": "transition",
    "sections": "section",
    "teams": "team",
    "roles": "role",
}
_TYPE_WORDS = {
    "object": "a mapping (key: value)",
    "array": "a list",
    "string": "a text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}
_SECTION = {"ENTITY_FILE": "entities", "WORKFLOW_FILE": "workflows", "PACK_FILE": "pack-settings"}


def check_structure(data, schema: dict, file: str, diag: Diagnostics, docs: str) -> bool:
    """Validate ``data`` against a meta-schema; report findings; True if clean."""
    if not isinstance(data, PosMap):
        from ..errors import Location

        diag.fail(
            "expected a mapping of keys to values at the top of the file",
            getattr(data, "loc", Location(file, 1, 1)),
            see_docs(docs),
        )
        return False
    validator = Draft202012Validator(schema)
    clean = True
    required_at = set()
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        clean = False
        if error.validator == "required":
            # jsonschema gives one error per missing key; the first reports them all.
            if tuple(error.absolute_path) in required_at:
                continue
            required_at.add(tuple(error.absolute_path))
        _report(error, data, diag, docs)
    return clean


def _report(error, data, diag: Diagnostics, docs: str) -> None:
    path = list(error.absolute_path)
    container, loc = _locate(data, path)
    where = _where(path)
    kind = error.validator
    if "propertyNames" in error.absolute_schema_path:
        key = error.instance
        loc = container.key_loc(key) if isinstance(container, PosMap) else loc
        diag.fail(f"{key!r} is not a valid name{where}", loc, _name_hint())
    elif kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        for key in [k for k in error.instance if k not in allowed]:
            hint = did_you_mean(key, allowed) or f"expected one of: {', '.join(allowed)}"
            diag.fail(f"unknown key {key!r}{where}", error.instance.key_loc(key), hint)
    elif kind == "required":
        for key in [k for k in error.validator_value if k not in error.instance]:
            diag.fail(f"missing key {key!r}{where}", getattr(error.instance, "loc", loc), see_docs(docs))
    elif kind == "type":
        expected = error.validator_value
        expected = [expected] if isinstance(expected, str) else expected
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in expected)
        key = _last_key(path)
        subject = f" for {key!r}" if key else ""
        diag.fail(f"expected {words}{subject}{where}, got {_describe_value(error.instance)}", loc)
    elif kind == "enum":
        options = [str(o) for o in error.validator_value]
        if path and path[-1] == "type":
            hint = did_you_mean(error.instance, options) or f"field types: {', '.join(options)}"
            diag.fail(f"unknown field type {error.instance!r}{where}", loc, hint)
        else:
            hint = did_you_mean(error.instance, options)
            diag.fail(f"{error.instance!r} is not one of {', '.join(options)}{where}", loc, hint)
    elif kind == "pattern":
        if error.validator_value in (NAME_PATTERN, TEAM_PATTERN):
            diag.fail(f"{error.instance!r} is not a valid name{where}", loc, _name_hint())
        elif error.validator_value == CURRENCY["pattern"]:
            diag.fail(
                f"{error.instance!r} is not a currency code{where}",
                loc,
                "use a three-letter ISO 4217 code such as EUR or USD",
            )
        else:
            diag.fail(
                f"{error.instance!r} does not look right{where}", loc, f"expected text matching {error.validator_value}"
            )
    elif kind in ("minProperties", "minItems"):
        diag.fail(f"expected at least one entry{where}", loc)
    elif kind in _BOUNDS:
        key = _last_key(path)
        subject = f"{key!r}" if key else "the value"
        diag.fail(f"{subject} must be {_BOUNDS[kind]} {error.validator_value}{where}, got {error.instance}", loc)
    else:
        diag.fail(f"{error.message}{where}", loc)


_BOUNDS = {
    "minimum": "at least",
    "maximum": "at most",
    "exclusiveMinimum": "more than",
    "exclusiveMaximum": "less than",
}


def _name_hint() -> str:
    return "names use lowercase letters, digits and _, and start with a letter (teams and roles may use -)"


def _locate(data, path):
    """Return (the value at path, where it was written)."""
    node, loc = data, data.loc
    for key in path:
        if isinstance(node, PosMap) and key in node:
            loc = node.value_loc(key)
            node = node[key]
        elif isinstance(node, PosList) and isinstance(key, int) and key < len(node):
            loc = node.item_loc(key)
            node = node[key]
        else:
            break
    return node, loc


def _where(path) -> str:
    """ "in field 'email'", "in transition 2", ... for the named items along ``path``."""
    parts = []
    for i, key in enumerate(path[:-1]):
        if key in _WHAT and (i == 0 or path[i - 1] not in _WHAT):
            item = path[i + 1]
            parts.append(f"{_WHAT[key]} {item + 1 if isinstance(item, int) else repr(item)}")
    return (" in " + ", ".join(parts)) if parts else ""


def _last_key(path) -> str | None:
    """The key whose value is wrong, unless it is an item of a named collection."""
    if not path or isinstance(path[-1], int) or (len(path) > 1 and path[-2] in _WHAT):
        return None
    return str(path[-1])


def _describe_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"the text {value!r}"
    return repr(value)
