"""The OpenAPI 3.1 document of the REST API, generated from the compiled definitions.

OpenAPI 3.1 schemas are JSON Schema Draft 2020-12, so each entity's payload
schema (``CompiledEntity.schema``) is used as it is for ``<Entity>Input``;
its ``x-field-type`` keys stay as specification extensions.
"""

from __future__ import annotations

import copy

from ...compiler.compiled import CompiledApp, CompiledEntity
from ...compiler.schemas import DECIMAL_LIMIT, LARGEST_INTEGER, field_schema
from . import query as api_query

JSON = "application/json"
SYSTEM_PROPERTIES = {
    "id": {"type": "integer", "minimum": 1, "readOnly": True},
    "version": {"type": "integer", "minimum": 1, "readOnly": True, "description": "Raised by every change"},
    "created_at": {"type": "string", "format": "date-time", "readOnly": True},
    "updated_at": {"type": "string", "format": "date-time", "readOnly": True},
}
ERRORS = {
    "400": ("BadRequest", "The body is not a JSON object, or the query cannot be understood", "Error"),
    "401": ("Unauthorized", "No API token, or one that is unknown, revoked, or of a deactivated user", "Error"),
    "403": ("Forbidden", "The token's user may not do this (the message says why)", "Error"),
    "404": ("NotFound", "There is no such record", "Error"),
    "409": ("Conflict", "The version is stale (fields changed meanwhile), or the stage move is refused", "Conflict"),
    "422": ("Unprocessable", "The record is not valid: messages per field", "ValidationProblem"),
}


def build_document(compiled: CompiledApp, title: str) -> dict:
    """The whole OpenAPI 3.1.0 document: paths and schemas per entity, errors, security."""
    teams = sorted(compiled.pack.teams)
    schemas = _common_schemas()
    paths = {}
    for name in sorted(compiled.entities):
        ce = compiled.entities[name]
        schemas.update(_entity_schemas(ce, teams))
        paths.update(_entity_paths(ce, teams))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{title} CRM API",
            "version": str(compiled.version),
            "description": "Records of every entity, read and written through the platform's write path "
            "(validation, permissions, workflow guards, rules, audit with channel 'api').",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                key: {
                    "description": text,
                    "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
                    **({"headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}} if code == "401" else {}),
                }
                for code, (key, text, schema) in ERRORS.items()
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal API token from /account/tokens or `flask api-token create`",
                }
            },
        },
    }


def _common_schemas() -> dict:
    messages = {"type": "array", "items": {"type": "string"}}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "ValidationProblem": {
            "type": "object",
            "required": ["error", "fields"],
            "properties": {
                "error": {"type": "string"},
                "fields": {
                    "type": "object",
                    "additionalProperties": messages,
                    "description": 'Messages per field; "" for the payload as a whole',
                },
            },
        },
        "Conflict": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "fields": {**messages, "description": "Stale version: the fields changed since that version"},
                "current_version": {"type": ["integer", "null"]},
                "reasons": {**messages, "description": "Refused stage move: why"},
            },
        },
    }


def _nullable(schema: dict) -> dict:
    if "enum" in schema:
        return {**schema, "enum": [*(o for o in schema["enum"] if o is not None), None]}
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**schema, "type": [*(k for k in kinds if k != "null"), "null"]}


def _entity_schemas(ce: CompiledEntity, teams: list[str]) -> dict:
    title = _title(ce)
    record = {name: dict(schema) for name, schema in SYSTEM_PROPERTIES.items()}
    for name, field in ce.definition.fields.items():
        schema = _nullable(field_schema(field, teams))
        if field.is_computed:
            schema["readOnly"] = True
        record[name] = schema
        if field.type == "money":
            record[f"{name}_currency"] = {"type": ["string", "null"], "title": f"{field.label} currency"}
    payload = copy.deepcopy(ce.schema)
    payload.pop("$schema", None)
    payload.pop("$id", None)
    changes = {**payload, "required": [], "title": f"{ce.definition.label} changes"}
    update = copy.deepcopy(changes)
    update["properties"]["version"] = {
        "type": "integer",
        "minimum": 1,
        "maximum": LARGEST_INTEGER,
        "description": "The version the change is based on; a stale one gives 409",
    }
    schemas = {
        title: {
            "type": "object",
            "title": ce.definition.label,
            "required": list(SYSTEM_PROPERTIES),
            "properties": record,
        },
        f"{title}Input": payload,
        f"{title}Changes": changes,
        f"{title}Update": update,
        f"{title}Page": {
            "type": "object",
            "required": ["data", "page", "per_page", "total"],
            "properties": {
                "data": {"type": "array", "items": {"$ref": f"#/components/schemas/{title}"}},
                "page": {"type": "integer", "minimum": 1},
                "per_page": {"type": "integer", "minimum": 1, "maximum": api_query.MAX_PER_PAGE},
                "total": {"type": "integer", "minimum": 0},
            },
        },
    }
    if ce.workflows:
        stages = sorted({state for machine in ce.workflows.values() for state in machine.states})
        schemas[f"{title}Transition"] = {
            "type": "object",
            "required": ["to"],
            "additionalProperties": False,
            "properties": {
                "to": {"enum": stages, "description": "The target stage"},
                "field": {"enum": sorted(ce.workflows), "description": "The workflow's field, if there are several"},
                "data": {"$ref": f"#/components/schemas/{title}Changes"},
                "version": update["properties"]["version"],
            },
        }
    return schemas


def _entity_paths(ce: CompiledEntity, teams: list[str]) -> dict:
    name, title, label = ce.name, _title(ce), ce.definition.label
    record = {"$ref": f"#/components/schemas/{title}"}
    record_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": LARGEST_INTEGER},
    }
    if_match = {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "description": 'The version the change is based on, e.g. "3" (or `version` in the body)',
        "schema": {"type": "string", "pattern": '^"[0-9]{1,18}"$'},
    }
    etag = {"ETag": {"schema": {"type": "string"}, "description": "The record's version in quotes"}}
    one = {"description": f"The {label.lower()}", "headers": etag, "content": {JSON: {"schema": record}}}
    paths = {
        f"/api/{name}": {
            "get": {
                "operationId": f"list_{name}",
                "summary": f"List {ce.definition.plural.lower()}",
                "tags": [name],
                "parameters": _list_parameters(ce, teams),
                "responses": {
                    "200": {
                        "description": "One page of records",
                        "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{title}Page"}}},
                    },
                    **_errors("400", "401", "403"),
                },
            },
            "post": {
                "operationId": f"create_{name}",
                "summary": f"Create a {label.lower()}",
                "tags": [name],
                "requestBody": _body(f"{title}Input"),
                "responses": {
                    "201": {
                        **one,
                        "headers": {**etag, "Location": {"schema": {"type": "string"}}},
                    },
                    **_errors("400", "401", "403", "422"),
                },
            },
        },
        f"/api/{name}/{{id}}": {
            "parameters": [record_id],
            "get": {
                "operationId": f"get_{name}",
                "summary": f"Read a {label.lower()}",
                "tags": [name],
                "responses": {"200": one, **_errors("401", "403", "404")},
            },
            "patch": {
                "operationId": f"update_{name}",
                "summary": f"Change fields of a {label.lower()}",
                "tags": [name],
                "parameters": [if_match],
                "requestBody": _body(f"{title}Update"),
                "responses": {"200": one, **_errors("400", "401", "403", "404", "409", "422")},
            },
            "delete": {
                "operationId": f"delete_{name}",
                "summary": f"Delete a {label.lower()}",
                "tags": [name],
                "parameters": [if_match],
                "responses": {"204": {"description": "Deleted"}, **_errors("400", "401", "403", "404", "409")},
            },
        },
    }
    if ce.workflows:
        paths[f"/api/{name}/{{id}}/transitions"] = {
            "parameters": [record_id],
            "post": {
                "operationId": f"transition_{name}",
                "summary": f"Move a {label.lower()} to another stage",
                "tags": [name],
                "parameters": [if_match],
                "requestBody": _body(f"{title}Transition"),
                "responses": {"200": one, **_errors("400", "401", "403", "404", "409", "422")},
            },
        }
    return paths


def _list_parameters(ce: CompiledEntity, teams: list[str]) -> list[dict]:
    sorts = api_query.sortable(ce)
    parameters = [
        _query("q", {"type": "string"}, "Search in " + ", ".join(ce.list.search) if ce.list.search else "Search"),
        _query("sort", {"enum": [*sorts, *(f"-{s}" for s in sorts)]}, "A field, descending with a leading -"),
        _query("page", {"type": "integer", "minimum": 1, "maximum": LARGEST_INTEGER}, "From 1"),
        _query("per_page", {"type": "integer", "minimum": 1, "maximum": api_query.MAX_PER_PAGE}, "At most 200"),
        _query("fields", {"type": "string"}, "Only these fields (comma-separated); id is always included"),
    ]
    for name, kind in api_query.field_types(ce).items():
        definition = ce.definition.fields.get(name)
        schema = _filter_schema(kind, definition, teams)
        parameters.append(_query(name, schema, "Equal to (an empty value: the field is empty)"))
        if kind in api_query.RANGE_TYPES:
            parameters.append(_query(f"{name}__gte", schema, "At least"))
            parameters.append(_query(f"{name}__lte", schema, "At most (a date: the whole day)"))
    return parameters


def _filter_schema(kind: str, definition, teams: list[str]) -> dict:
    if kind in ("integer", "link", "user"):
        return {"type": "integer", "minimum": -LARGEST_INTEGER + 1, "maximum": LARGEST_INTEGER - 1}
    if kind in ("decimal", "money", "percent"):
        return {"type": "number", "exclusiveMinimum": -DECIMAL_LIMIT, "exclusiveMaximum": DECIMAL_LIMIT}
    if kind == "boolean":
        return {"enum": ["true", "false"]}
    if kind == "date":
        return {"type": "string", "format": "date"}
    if kind == "datetime":
        return {"type": "string", "format": "date-time"}
    if kind in ("choice", "state", "multi_choice") and definition is not None and definition.options:
        return {"enum": list(definition.options)}
    if kind == "team":
        return {"enum": teams}
    return {"type": "string"}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _body(schema: str) -> dict:
    return {"required": True, "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _errors(*codes: str) -> dict:
    return {code: {"$ref": f"#/components/responses/{ERRORS[code][0]}"} for code in codes}


def _title(ce: CompiledEntity) -> str:
    """``quote_line`` -> ``QuoteLine``: the schema names of an entity."""
    return "".join(part.capitalize() for part in ce.name.split("_"))
