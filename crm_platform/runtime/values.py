"""Field values between their three forms: JSON (what clients send and the
schema validates), Python (what the models hold) and the record itself.

Every channel's payload is first brought to the JSON form, so that one
validator judges forms, the API, imports and rule actions alike.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from ..definitions.model import EntityDef, FieldDef

DECIMAL_TYPES = ("decimal", "money", "percent")
# The types whose JSON value from_json changes; it returns the others as they are.
CONVERTED_TYPES = frozenset({*DECIMAL_TYPES, "date", "datetime", "multi_choice", "tags"})


def to_json(value):
    """A Python value (date, Decimal, a linked record, ...) as the schema expects it."""
    if type(value) in _AS_IS:  # most values: one look-up instead of five checks (bench/import.py)
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return float(value)  # NaN or infinity: the validator refuses it with a message
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if hasattr(value, "_meta") and hasattr(value, "id"):  # a linked record
        return value.id
    return value


_AS_IS = frozenset({str, int, float, bool, type(None), list, dict})
AS_IS = _AS_IS  # the types to_json returns as they are (a check callers can inline)


def payload_to_json(payload: dict) -> dict:
    """Every value of ``payload`` in its JSON form."""
    return {name: value if type(value) in _AS_IS else to_json(value) for name, value in payload.items()}


def from_json(field: FieldDef, value):
    """A validated JSON value as the model stores it."""
    if value is None:
        return None
    kind = field.type
    if kind in DECIMAL_TYPES:
        return Decimal(str(value))
    if kind == "date":
        return dt.date.fromisoformat(value) if isinstance(value, str) else value
    if kind == "datetime":
        return _utc(dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value)
    if kind in ("multi_choice", "tags"):
        return list(value)
    return value


def _utc(value: dt.datetime) -> dt.datetime:
    """Naive UTC, the way datetimes are stored."""
    if value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def storage_name(field: FieldDef) -> str:
    """The model attribute that holds the field's raw value (links hold an id)."""
    return f"{field.name}_id" if field.type == "link" else field.name


def read(entity: EntityDef, record, name: str):
    """The stored value of field ``name`` (a link as its id)."""
    field = entity.fields.get(name)
    if field is not None:
        return getattr(record, storage_name(field))
    return getattr(record, name)


def snapshot(entity: EntityDef, record) -> dict:
    """All field values of a record in JSON form, system fields included."""
    values = {"id": record.id, "version": record.version}
    for name in ("created_at", "updated_at"):
        values[name] = to_json(getattr(record, name))
    for field in entity.fields.values():
        values[field.name] = to_json(read(entity, record, field.name))
        if field.type == "money":
            values[f"{field.name}_currency"] = getattr(record, f"{field.name}_currency")
    return values
