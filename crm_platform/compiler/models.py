"""Peewee models, made at run time from entity definitions.

Every compile makes a fresh base class, so rebuilding the models never leaves
stale back-references on old ones (LIBRARIES.md, gotcha 6). Links are added
after every model exists, so entities may link to each other in any order,
in circles, and to themselves.

Columns are nullable apart from the system columns: "required" is enforced by
validation, which can say which field is missing, and adding a required field
to an entity that already has records must not fail.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_EVEN, Decimal

import peewee as pw

from ..definitions.analysis import reverse_name
from ..definitions.diagnostics import Diagnostics
from ..definitions.model import EntityDef, FieldDef, Pack


class ScaledDecimalField(pw.BigIntegerField):
    """An exact decimal stored as an integer of 10**-scale units (cents for money).

    SQLite would store a DecimalField as a float (LIBRARIES.md, gotcha 4).
    """

    def __init__(self, scale: int = 2, **kwargs):
        self.scale = scale
        super().__init__(**kwargs)

    def db_value(self, value):
        if value is None:
            return None
        units = Decimal(str(value)).scaleb(self.scale).to_integral_value(ROUND_HALF_EVEN)
        return int(units)

    def python_value(self, value):
        if value is None:
            return None
        return Decimal(int(value)).scaleb(-self.scale)


class JSONListField(pw.TextField):
    """A list of texts (tags, multi-choice), stored as JSON on every database."""

    def db_value(self, value):
        return None if value is None else json.dumps(list(value))

    def python_value(self, value):
        return None if value is None else json.loads(value)


SYSTEM_COLUMNS = {
    "created_at": lambda: pw.DateTimeField(index=True),
    "updated_at": lambda: pw.DateTimeField(index=True),
    "version": lambda: pw.IntegerField(default=1),
}


def column_for(field: FieldDef) -> pw.Field:
    """The peewee field for a non-link field definition."""
    options = {"null": True, "unique": field.unique, "index": field.indexed and not field.unique}
    if field.has_default and field.default is not None:
        default = field.default
        options["default"] = (lambda value=default: list(value)) if isinstance(default, list) else default
    kind = field.type
    if kind in ("string", "email", "phone", "url"):
        return pw.CharField(max_length=field.max_length or 255, **options)
    if kind == "text":
        return pw.TextField(**options)
    if kind == "integer":
        return pw.BigIntegerField(**options)
    if kind in ("decimal", "money", "percent"):
        return ScaledDecimalField(scale=field.scale if kind == "decimal" else 2, **options)
    if kind == "boolean":
        return pw.BooleanField(**options)
    if kind == "date":
        return pw.DateField(**options)
    if kind == "datetime":
        return pw.DateTimeField(**options)
    if kind in ("choice", "state", "team"):
        longest = max((len(v) for v in field.options), default=0)
        return pw.CharField(max_length=max(64, longest), **options)
    if kind in ("multi_choice", "tags"):
        return JSONListField(**options)
    if kind == "user":
        return pw.IntegerField(**{**options, "index": True})
    raise ValueError(f"no column for field type {kind!r}")  # links are added separately


def currency_column(field: FieldDef, default_currency: str) -> pw.Field:
    """The ``<name>_currency`` column that goes with a money field."""
    return pw.CharField(max_length=3, null=True, default=field.currency or default_currency)


def check_storage_names(pack: Pack, diag: Diagnostics) -> None:
    """Refuse names that would shadow what a peewee model already has
    (``save``, ``select``, ...) or the columns the compiler adds
    (``<link>_id``, ``<money>_currency``)."""
    for entity in pack.entities.values():
        added = {f"{f.name}_id": f for f in entity.fields.values() if f.type == "link"}
        for field in entity.fields.values():
            if hasattr(pw.Model, field.name):
                diag.fail(
                    f"field name {field.name!r} is taken by the storage layer",
                    field.loc,
                    "choose another name, e.g. " + f"{entity.name}_{field.name}",
                )
            elif field.name in added:
                diag.fail(
                    f"field {field.name!r} clashes with the id column of link {added[field.name].name!r}",
                    field.loc,
                    "choose another name",
                )
            if field.type == "link" and hasattr(pw.Model, reverse_name(entity, field)):
                diag.fail(
                    f"reverse list name {reverse_name(entity, field)!r} is taken by the storage layer",
                    field.at("reverse"),
                    "set reverse: to another name",
                )


def model_name(entity: str) -> str:
    return "".join(part.capitalize() for part in entity.split("_"))


def build_models(pack: Pack, database: pw.Database | None = None) -> dict[str, type[pw.Model]]:
    """Make one model class per entity, all on a fresh base class."""

    class Record(pw.Model):
        class Meta:
            pass

    Record._meta.database = database
    models: dict[str, type[pw.Model]] = {}
    for entity in pack.entities.values():
        models[entity.name] = _model(entity, Record, pack.settings.currency)
    for entity in pack.entities.values():
        for field in entity.fields.values():
            if field.type == "link":
                target = models[field.entity]
                column = pw.ForeignKeyField(
                    target,
                    null=True,
                    backref=reverse_name(entity, field),
                    on_delete="SET NULL",
                    column_name=f"{field.name}_id",
                    lazy_load=True,
                )
                models[entity.name]._meta.add_field(field.name, column)
    return models


def _model(entity: EntityDef, base: type[pw.Model], currency: str) -> type[pw.Model]:
    attrs: dict = {"__module__": __name__, "Meta": type("Meta", (), {"table_name": entity.name})}
    for name, make in SYSTEM_COLUMNS.items():
        attrs[name] = make()
    for field in entity.fields.values():
        if field.type == "link":
            continue
        attrs[field.name] = column_for(field)
        if field.type == "money":
            attrs[f"{field.name}_currency"] = currency_column(field, currency)
    return type(model_name(entity.name), (base,), attrs)
