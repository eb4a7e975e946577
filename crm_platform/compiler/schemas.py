"""A JSON Schema (Draft 2020-12) per entity, and payload validation with it.

The schema describes what a client may send for a record: computed and
system fields are not part of it, so sending them is refused. Formats are
checked (jsonschema ignores ``format`` unless given a checker, LIBRARIES.md
gotcha 12), and errors come back as one message per field.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker

from ..definitions.model import EntityDef, FieldDef
from ..errors import ValidationError

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE = r"^\+?[0-9][0-9 ()./-]{1,38}[0-9]$"
# What the database's 64-bit integer columns hold; decimals are stored scaled (cents), so far less.
LARGEST_INTEGER = 2**63 - 1
DECIMAL_LIMIT = 10**15


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())

    @checker.checks("email")
    def is_email(value) -> bool:
        return not isinstance(value, str) or bool(EMAIL.match(value))

    @checker.checks("date", raises=ValueError)
    def is_date(value) -> bool:
        return not isinstance(value, str) or bool(dt.date.fromisoformat(value)) and len(value) == 10

    @checker.checks("date-time", raises=ValueError)
    def is_datetime(value) -> bool:
        if not isinstance(value, str):
            return True
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        try:  # stored as UTC: a time at the very ends of the calendar may not have a UTC equivalent
            moment.astimezone(dt.UTC)
        except OverflowError:
            return False
        return True

    @checker.checks("uri")
    def is_web_address(value) -> bool:
        if not isinstance(value, str):
            return True
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.netloc)

    return checker


FORMATS = _format_checker()


def field_schema(field: FieldDef, teams: list[str]) -> dict:
    """The JSON Schema of one field's value."""
    kind = field.type
    schema: dict = {"title": field.label}
    if field.help:
        schema["description"] = field.help
    if kind in ("string", "text", "email", "phone", "url"):
        schema["type"] = "string"
        if field.required:
            schema["minLength"] = 1  # a required text may not be left blank
        if field.max_length:
            schema["maxLength"] = field.max_length
        if field.pattern:
            schema["pattern"] = field.pattern
        if kind == "email":
            schema["format"] = "email"
        elif kind == "url":
            schema["format"] = "uri"
        elif kind == "phone" and not field.pattern:
            schema["pattern"] = PHONE
    elif kind == "integer":
        schema["type"] = "integer"
    elif kind in ("decimal", "money", "percent"):
        schema["type"] = "number"
    elif kind == "boolean":
        schema["type"] = "boolean"
    elif kind == "date":
        schema.update(type="string", format="date")
    elif kind == "datetime":
        schema.update(type="string", format="date-time")
    elif kind in ("choice", "state"):
        schema["enum"] = list(field.options)
    elif kind == "team":
        schema["enum"] = list(teams)
    elif kind == "multi_choice":
        schema.update(type="array", items={"enum": list(field.options)}, uniqueItems=True)
    elif kind == "tags":
        schema.update(type="array", items={"type": "string", "minLength": 1, "maxLength": 50}, uniqueItems=True)
    elif kind in ("link", "user"):
        schema.update(type="integer", minimum=1)
    if field.minimum is not None:
        schema["minimum"] = field.minimum
    if field.maximum is not None:
        schema["maximum"] = field.maximum
    _storable(schema, kind)
    if field.read_only:
        schema["readOnly"] = True
    schema["x-field-type"] = kind
    return schema


def _storable(schema: dict, kind: str) -> None:
    """Bounds the columns can hold, where the field sets none of its own."""
    if kind in ("integer", "link", "user"):
        schema.setdefault("minimum", -LARGEST_INTEGER)
        schema.setdefault("maximum", LARGEST_INTEGER)
    elif kind in ("decimal", "money", "percent"):
        if "minimum" not in schema:
            schema["exclusiveMinimum"] = -DECIMAL_LIMIT
        if "maximum" not in schema:
            schema["exclusiveMaximum"] = DECIMAL_LIMIT


def _nullable(schema: dict) -> dict:
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], None]}
    return {**schema, "type": [schema["type"], "null"]}


def entity_schema(entity: EntityDef, teams: list[str]) -> dict:
    """The schema of a whole record payload (for create; updates drop ``required``)."""
    properties, required = {}, []
    for field in entity.fields.values():
        if field.is_computed:
            continue
        schema = field_schema(field, teams)
        must = field.required and not field.has_default
        properties[field.name] = schema if field.required else _nullable(schema)
        if must:
            required.append(field.name)
        if field.type == "money":
            properties[f"{field.name}_currency"] = {
                "type": ["string", "null"],
                "pattern": "^[A-Z]{3}$",
                "title": f"{field.label} currency",
            }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:crm:entity:{entity.name}",
        "title": entity.label,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


class PayloadValidator:
    """Validates record payloads against an entity's schema, per field."""

    def __init__(self, schema: dict):
        self.schema = schema
        self._create = Draft202012Validator(schema, format_checker=FORMATS)
        self._update = Draft202012Validator({**schema, "required": []}, format_checker=FORMATS)

    def errors(self, payload: dict, partial: bool = False) -> dict[str, list[str]]:
        """Messages per field (``""`` for the payload as a whole); empty if valid."""
        validator = self._update if partial else self._create
        result: dict[str, list[str]] = {}
        if isinstance(payload, dict):
            for name, value in payload.items():
                # NaN passes every comparison jsonschema makes, so it is refused here.
                if isinstance(value, float) and not math.isfinite(value):
                    result[name] = ["must be a number"]
            payload = {name: value for name, value in payload.items() if name not in result} if result else payload
        for error in validator.iter_errors(payload):
            for field, message in _messages(error, self.schema):
                messages = result.setdefault(field, [])
                # jsonschema reports each missing required field in an error of
                # its own that lists them all, so the same message comes again.
                if message not in messages:
                    messages.append(message)
        return result

    def validate(self, payload: dict, partial: bool = False) -> None:
        """Raise ``ValidationError`` with a message per field if ``payload`` is invalid."""
        errors = self.errors(payload, partial)
        if errors:
            raise ValidationError(errors)


def _messages(error, schema: dict):
    path = list(error.absolute_path)
    field = str(path[0]) if path else ""
    kind = error.validator
    if kind == "required":
        for name in error.validator_value:
            if name not in error.instance:
                yield name, "is required"
        return
    if kind == "additionalProperties":
        for name in error.instance:
            if name not in schema["properties"]:
                yield name, "is not a field of this record (or cannot be set)"
        return
    if kind == "type" and not path:
        yield "", "expected an object of field values"
        return
    if kind == "type" and error.instance is None and field in schema.get("required", ()):
        yield field, "is required"  # a required field sent empty, e.g. cleared on a form
        return
    yield field, _message(error)


def _message(error) -> str:
    kind, value = error.validator, error.validator_value
    if kind == "type":
        wanted = [value] if isinstance(value, str) else value
        words = {
            "string": "a text",
            "integer": "a whole number",
            "number": "a number",
            "boolean": "true or false",
            "array": "a list",
            "null": "empty",
        }
        return "must be " + " or ".join(words.get(w, w) for w in wanted if w != "null")
    if kind == "enum":
        return "must be one of: " + ", ".join(str(v) for v in value if v is not None)
    if kind == "format":
        return {
            "email": "is not a valid email address",
            "date": "is not a date (YYYY-MM-DD)",
            "date-time": "is not a date and time (YYYY-MM-DDTHH:MM)",
            "uri": "is not a web address (http:// or https://)",
        }.get(value, f"is not a valid {value}")
    if kind == "maxLength":
        return f"is longer than {value} character{'s' if value != 1 else ''}"
    if kind == "minLength":
        return "must not be empty" if value == 1 else f"is shorter than {value} characters"
    if kind == "minimum":
        return f"must be at least {value}"
    if kind == "maximum":
        return f"must be at most {value}"
    if kind == "exclusiveMinimum":
        return f"must be more than {value}"
    if kind == "exclusiveMaximum":
        return f"must be less than {value}"
    if kind == "pattern":
        return "has the wrong format"
    if kind == "uniqueItems":
        return "lists a value twice"
    return error.message
