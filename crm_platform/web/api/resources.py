"""The REST API: ``/api/ENTITY`` and ``/api/ENTITY/ID`` for every entity.

Requests authenticate with ``Authorization: Bearer <token>`` (session cookies
do not count), every write goes through ``crm.records`` with channel ``api``,
and every error is JSON: ``{"error": message}``, plus ``fields`` (a message
list per field) for 422 and stale versions, ``reasons`` for refused moves.
"""

from __future__ import annotations

import re

from flask import Blueprint, current_app, g, jsonify, request, url_for
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound

from ...compiler.compiled import CompiledEntity
from ...compiler.schemas import LARGEST_INTEGER
from ...errors import ConflictError, NotFound, PermissionDenied, TransitionNotAllowed, ValidationError
from ...runtime import values as v
from ...runtime.users import Actor
from ..state import crm
from . import query as api_query
from .openapi import build_document
from .tokens import verify_token

bp = Blueprint("api", __name__, url_prefix="/api")

TRANSITION_KEYS = {"to", "field", "data", "version"}
VERSION_TEXT = re.compile(r"[0-9]{1,18}")


class ApiError(Exception):
    """An error answered as ``{"error": message, **extra}`` with ``status``."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


# --- authentication ---------------------------------------------------------------


@bp.before_request
def authenticate():
    """Find the token's user; the OpenAPI document needs none."""
    if request.endpoint == "api.openapi":
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "send an API token: Authorization: Bearer <token>")
    engine = crm()
    user_id = verify_token(engine.tables, token.strip(), engine.clock.utcnow())
    if user_id is None:
        raise ApiError(401, "the API token is unknown or revoked")
    try:
        g.api_actor = engine.directory.actor(user_id)
    except LookupError:
        raise ApiError(401, "the API token's user is deactivated") from None
    return None


def actor() -> Actor:
    return g.api_actor


# --- errors ---------------------------------------------------------------------------


def error_response(status: int, message: str, *, challenge: str = 'Bearer realm="api"', **extra):
    """The API's JSON error: ``{"error": message, ...extra}``; a 401 names how to authenticate."""
    response = jsonify({"error": message, **extra})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = challenge
    return response


@bp.errorhandler(ApiError)
def api_error(error: ApiError):
    return error_response(error.status, error.message, **error.extra)


@bp.errorhandler(ValidationError)
def invalid(error: ValidationError):
    return error_response(422, "the record is not valid", fields=error.errors)


@bp.errorhandler(PermissionDenied)
def forbidden(error: PermissionDenied):
    return error_response(403, str(error))


@bp.errorhandler(NotFound)
def not_found(error: NotFound):
    return error_response(404, str(error))


@bp.errorhandler(ConflictError)
def conflict(error: ConflictError):
    return error_response(409, str(error), fields=error.fields, current_version=error.current_version)


@bp.errorhandler(TransitionNotAllowed)
def refused(error: TransitionNotAllowed):
    return error_response(409, str(error), reasons=error.reasons)


@bp.errorhandler(api_query.QueryError)
def bad_query(error: api_query.QueryError):
    return error_response(400, str(error))


def http_error(error: HTTPException):
    response = error_response(error.code or 500, error.description or error.name)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


# Flask prefers the app's handler for a status code (its HTML 404 page) to a blueprint's
# handler for a class, so the API claims each code it can answer, and the class for the rest.
for _code in (400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500):
    bp.register_error_handler(_code, http_error)
bp.register_error_handler(HTTPException, http_error)


def unrouted():
    """A URL under /api that matches no route (or not with this method): a JSON 404 or 405.

    Runs as the app's first ``before_request``: such a request belongs to no blueprint, so
    neither the blueprint's error handlers nor the token check would see it, and the
    pages' sign-in check would send it to the login page.
    """
    error = request.routing_exception
    if not isinstance(error, RouteNotFound | MethodNotAllowed):
        return None
    if request.path != "/api" and not request.path.startswith("/api/"):
        return None
    if isinstance(error, RouteNotFound):
        error = RouteNotFound("there is no such API URL; see /api/openapi.json")
    return http_error(error)


# --- the document ------------------------------------------------------------------------


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of this company's API (no token needed)."""
    engine = crm()
    cache = current_app.extensions.setdefault("crm_openapi", {})
    version = engine.compiled.version
    if version not in cache:
        cache.clear()
        cache[version] = build_document(engine.compiled, engine.settings.name)
    return jsonify(cache[version])


# --- records ----------------------------------------------------------------------------------


def entity_or_404(name: str) -> CompiledEntity:
    ce = crm().compiled.entities.get(name)
    if ce is None:
        raise NotFound(f"there is no entity {name!r}")
    return ce


def record_json(ce: CompiledEntity, record, fields: tuple[str, ...] = ()) -> dict:
    """A record in its JSON form: every field, money with ``<field>_currency``, links as ids,
    times as UTC with ``Z``; only ``id`` and ``fields`` if fields are given."""
    data = v.snapshot(ce.definition, record)
    for name in ("created_at", "updated_at", *(n for n, f in ce.definition.fields.items() if f.type == "datetime")):
        if isinstance(data.get(name), str):
            data[name] += "Z"
    if fields:
        return {name: data[name] for name in ("id", *fields) if name in data}
    return data


def record_response(ce: CompiledEntity, record, status: int = 200):
    response = jsonify(record_json(ce, record))
    response.status_code = status
    response.headers["ETag"] = f'"{record.version}"'
    return response


def record_id_or_404(ce: CompiledEntity, record_id: int) -> int:
    if record_id > LARGEST_INTEGER:
        raise NotFound(f"there is no {ce.definition.label} #{record_id}")
    return record_id


def json_body() -> dict:
    """The request's JSON object; 400 if the body is not JSON or not an object."""
    try:
        body = request.get_json(force=True, silent=False)
    except HTTPException:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def version_of(body: dict | None = None):
    """The version a change is based on: ``version`` in the body, else the ``If-Match`` header."""
    if body is not None and "version" in body:
        version = body.pop("version")
        if version is None:
            return None
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValidationError({"version": ["must be a whole number"]})
        return version
    header = request.headers.get("If-Match", "").strip()
    if not header or header == "*":
        return None
    text = header.removeprefix("W/").strip('"')
    if not VERSION_TEXT.fullmatch(text):
        raise ApiError(400, 'If-Match: expected the record\'s version in quotes, e.g. "3"')
    return int(text)


@bp.get("/<entity>")
def list_records(entity: str):
    """A page of the records the token's user may read, filtered, searched and sorted."""
    ce = entity_or_404(entity)
    req = api_query.parse(request.args, ce)
    query = api_query.apply(crm().records.select(entity, actor()), ce, req)
    total = query.count()
    offset = (req.page - 1) * req.per_page
    rows = list(query.offset(offset).limit(req.per_page)) if offset < total else []
    return jsonify(
        {
            "data": [record_json(ce, record, req.fields) for record in rows],
            "page": req.page,
            "per_page": req.per_page,
            "total": total,
        }
    )


@bp.post("/<entity>")
def create_record(entity: str):
    ce = entity_or_404(entity)
    record = crm().records.create(entity, json_body(), actor(), "api")
    response = record_response(ce, record, 201)
    response.headers["Location"] = url_for("api.get_record", entity=entity, record_id=record.id)
    return response


@bp.get("/<entity>/<int:record_id>")
def get_record(entity: str, record_id: int):
    ce = entity_or_404(entity)
    record = crm().records.get(entity, record_id_or_404(ce, record_id), actor())
    return record_response(ce, record)


@bp.patch("/<entity>/<int:record_id>")
def update_record(entity: str, record_id: int):
    ce = entity_or_404(entity)
    body = json_body()
    version = version_of(body)
    record_id = record_id_or_404(ce, record_id)
    record = crm().records.update(entity, record_id, body, actor(), "api", version=version)
    return record_response(ce, record)


@bp.delete("/<entity>/<int:record_id>")
def delete_record(entity: str, record_id: int):
    ce = entity_or_404(entity)
    version = version_of()
    crm().records.delete(entity, record_id_or_404(ce, record_id), actor(), "api", version=version)
    return "", 204


@bp.post("/<entity>/<int:record_id>/transitions")
def transition_record(entity: str, record_id: int):
    """Move a record to another stage: ``{"to": stage, "field"?, "data"?, "version"?}``."""
    ce = entity_or_404(entity)
    body = json_body()
    unknown_keys = sorted(set(body) - TRANSITION_KEYS)
    if unknown_keys:
        raise ApiError(400, "unknown keys: " + ", ".join(unknown_keys) + " (expected to, field, data, version)")
    target, field, data = body.get("to"), body.get("field"), body.get("data") or {}
    if not isinstance(target, str) or not target:
        raise ApiError(400, '"to" must name the target stage')
    if field is not None and not isinstance(field, str):
        raise ApiError(400, '"field" must name the workflow\'s field')
    if not isinstance(data, dict):
        raise ApiError(400, '"data" must be an object of field values')
    version = version_of(body)
    record_id = record_id_or_404(ce, record_id)
    record = crm().records.transition(
        entity, record_id, target, actor(), "api", data=data, field=field, version=version
    )
    return record_response(ce, record)
