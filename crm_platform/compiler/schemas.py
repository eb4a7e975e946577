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
        self._accepts = _compile_accepts(schema)

    def accepts(self, payload, partial: bool = False) -> bool:
        """True only if ``payload`` is surely valid (checked in compiled Python; False when unsure)."""
        return self._accepts(payload, partial)

    def errors(self, payload: dict, partial: bool = False) -> dict[str, list[str]]:
        """Messages per field (``""`` for the payload as a whole); empty if valid."""
        # Most payloads are valid: a compiled check says so in a few microseconds
        # (jsonschema takes ~45, bench/import.py); anything else gets jsonschema's verdict.
        if self._accepts(payload, partial):
            return {}
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


def _compile_accepts(schema: dict):
    """A function ``(payload, partial) -> bool`` that is True only for payloads jsonschema accepts.

    It decides nothing else: when it is not sure (a keyword it does not know, a float where an
    integer is expected, an enum of non-text values, ...) it says False and jsonschema judges.
    So it may never accept what jsonschema refuses (tests/test_payload_fast_path.py checks both
    on the payload validation tests' cases and on generated payloads).
    """
    checks = {name: _compile_value(prop) for name, prop in schema.get("properties", {}).items()}
    if schema.get("additionalProperties") is not False or set(schema) - _OBJECT_KEYWORDS:
        return lambda payload, partial: False
    required = tuple(schema.get("required", ()))

    def accepts(payload, partial: bool) -> bool:
        if type(payload) is not dict:
            return False
        if not partial:
            for name in required:
                if name not in payload:
                    return False
        for name, value in payload.items():
            check = checks.get(name)
            if check is None or not check(value):
                return False
        return True

    return accepts


_OBJECT_KEYWORDS = {"$schema", "$id", "title", "type", "properties", "required", "additionalProperties"}
_ANNOTATIONS = {"title", "description", "readOnly", "x-field-type"}
# A value of these Python types is sure to be of this JSON type (bool is not an integer).
_SURE_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "array": (list,)}


def _compile_value(schema: dict):
    """A check of one value against the keywords field_schema writes; never True when unsure."""
    known = _ANNOTATIONS | {
        "type", "enum", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "items", "uniqueItems",
    }  # fmt: skip
    if set(schema) - known or ("format" in schema and schema["format"] not in FORMATS.checkers):
        return lambda value: False
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if kinds is not None and any(kind not in _SURE_TYPES and kind != "null" for kind in kinds):
        return lambda value: False
    types = None if kinds is None else tuple(t for kind in kinds for t in _SURE_TYPES.get(kind, ()))
    nullable = kinds is None or "null" in kinds
    enum = schema.get("enum")
    if enum is not None and not all(isinstance(item, str) or item is None for item in enum):
        return lambda value: False
    options = None if enum is None else {item for item in enum if item is not None}
    null_option = enum is None or None in enum
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
    fmt = schema.get("format")
    bounds = [schema.get(k) for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")]
    items = _compile_value(schema["items"]) if "items" in schema else None
    unique = schema.get("uniqueItems", False)
    accept_null = nullable and null_option
    minimum, maximum, above, below = bounds

    # The usual fields, a text (or a choice) and a whole number: what check() below does for
    # them, without its tests for the other kinds (bench/import.py runs one per cell).
    if types == (str,) and fmt is None and pattern is None:

        def check_text(value) -> bool:
            if type(value) is not str:
                return value is None and accept_null
            if options is not None and value not in options:
                return False
            return low <= len(value) and (high is None or len(value) <= high)

        return check_text
    if types == (int,) and options is None and fmt is None:

        def check_integer(value) -> bool:
            if type(value) is not int:
                return value is None and accept_null
            if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
                return False
            return not ((above is not None and value <= above) or (below is not None and value >= below))

        return check_integer

    def check(value) -> bool:
        if value is None:
            return nullable and null_option
        kind = type(value)
        if types is not None and kind not in types:
            return False  # also bool, and subclasses: jsonschema judges those
        if options is not None and (kind is not str or value not in options):
            return False
        if kind is str:
            if len(value) < low or (high is not None and len(value) > high):
                return False
            if pattern is not None and not pattern.search(value):
                return False
        elif kind is int or kind is float:
            if kind is float and not math.isfinite(value):
                return False
            if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
                return False
            if (above is not None and value <= above) or (below is not None and value >= below):
                return False
        elif kind is list:
            if items is not None and not all(items(item) for item in value):
                return False
            if unique and (not all(type(item) is str for item in value) or len(set(value)) != len(value)):
                return False
        elif types is None:
            return False  # no type keyword and a value of another kind: not sure
        return fmt is None or FORMATS.conforms(value, fmt)

    return check


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
