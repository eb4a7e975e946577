"""The generated pages of every entity: list, record, form, stage moves,
bulk actions, export and the link pickers' search.

URLs are ``/r/ENTITY/...``. Every page checks the signed-in user's
permissions through the write path's ``Permissions``, and every change goes
through ``crm.records`` with channel ``form``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for

from ..compiler.compiled import CompiledEntity
from ..compiler.schemas import LARGEST_INTEGER
from ..errors import ConflictError, NotFound, PermissionDenied, TransitionNotAllowed, ValidationError
from ..runtime import values as v
from . import exports, formdata, listing, present
from .auth import actor, safe_path
from .state import crm, formats

bp = Blueprint("records", __name__, url_prefix="/r")

LOOKUP_LIMIT = 20
PICKER_OPTIONS = 50
RELATED_ROWS = 10
BULK_ACTIONS = ("assign", "move", "delete")


def entity_or_404(name: str) -> CompiledEntity:
    entity = crm().compiled.entities.get(name)
    if entity is None:
        raise NotFound(f"there is no entity {name!r}")
    return entity


# --- list ------------------------------------------------------------------------


@bp.get("/<entity>/")
def list_page(entity: str):
    """The entity's list: search, filters, sort, pagination, saved views, bulk actions."""
    ce = entity_or_404(entity)
    req = listing.ListRequest.from_args(request.args, ce)
    fmt = formats()
    query = listing.apply(crm().records.select(entity, actor()), ce, req, fmt)
    page = listing.fetch(query, req)
    columns = list(ce.list.columns)
    rows = present.rows(crm().compiled, crm().tables, ce, columns, page.rows, fmt)
    return render_template(
        "web/list.html",
        ce=ce,
        req=req,
        page=page,
        rows=rows,
        columns=columns,
        sort=listing.sort_key(ce, req),
        filters=filter_widgets(ce),
        saved_views=saved_views(entity),
        bulk=bulk_choices(ce),
    )


def filter_widgets(ce: CompiledEntity) -> list[dict]:
    """The filter inputs of a list: a select for choices, users and yes/no, a range for numbers and dates."""
    widgets = []
    for spec in ce.list.filters:
        if spec.type == "link":
            continue  # filtered from the linked record's related list instead
        if spec.type == "user":
            options = sorted(present.user_names(crm().tables).items(), key=lambda item: item[1])
            widgets.append({"spec": spec, "kind": "select", "options": [(str(i), n) for i, n in options]})
        elif spec.type == "boolean":
            widgets.append({"spec": spec, "kind": "select", "options": [("1", "Yes"), ("0", "No")]})
        elif spec.choices:
            widgets.append({"spec": spec, "kind": "select", "options": list(spec.choices)})
        elif spec.type in listing.RANGE_TYPES:
            kind = {"date": "date", "datetime": "date"}.get(spec.type, "number")
            widgets.append({"spec": spec, "kind": "range", "input": kind})
    return widgets


def saved_views(entity: str) -> list:
    SavedView = crm().tables.SavedView
    mine = (SavedView.user == actor().user_id) | (SavedView.shared == True)  # noqa: E712
    query = SavedView.select(SavedView.id, SavedView.name, SavedView.query, SavedView.user_id)
    return list(query.where((SavedView.entity == entity) & mine).order_by(SavedView.name).namedtuples())


def bulk_choices(ce: CompiledEntity) -> dict:
    """What the list's bulk bar offers this user: owners, stages, delete."""
    permissions, who = crm().permissions, actor()
    choices = {}
    if permissions.can(who, ce.name, "update"):
        if ce.definition.owner_field:
            choices["assign"] = sorted(present.user_names(crm().tables).items(), key=lambda item: item[1])
        for machine in ce.workflows.values():
            choices["move"] = [(s.name, s.label) for s in machine.states.values()]
            break
    if permissions.can(who, ce.name, "delete"):
        choices["delete"] = True
    return choices


@bp.get("/<entity>/export.<any(csv, xlsx, json):kind>")
def export(entity: str, kind: str):
    """The list with its search, filters and sort as CSV, XLSX or JSON (see ``exports``)."""
    return exports.respond(entity_or_404(entity), kind)


# --- forms -------------------------------------------------------------------------


@bp.route("/<entity>/new", methods=["GET", "POST"])
def new(entity: str):
    """Create a record; query arguments prefill fields (``?deal=5`` from a deal's page)."""
    ce = entity_or_404(entity)
    crm().permissions.require(actor(), entity, "create")
    return _form(ce, None)


@bp.route("/<entity>/<int:record_id>/edit", methods=["GET", "POST"])
def edit(entity: str, record_id: int):
    ce = entity_or_404(entity)
    record = crm().records.get(entity, record_id, actor(), "update")
    return _form(ce, record)


def _form(ce: CompiledEntity, record):
    specs = formdata.editable(ce.form.fields, crm().permissions.read_only_fields(actor(), ce.name))
    errors: dict[str, list[str]] = {}
    general = None
    if request.method == "POST":
        payload, errors = formdata.parse(specs, request.form, formats())
        if errors:
            errors = _with_other_errors(ce, record, payload, errors)
        else:
            try:
                saved = _save(ce, record, payload)
            except ValidationError as error:
                errors = error.errors
            except ConflictError as error:
                general = f"{error} Reload the page to see the current values, then make your change again."
            else:
                flash(f"{ce.definition.label} saved.", "success")
                return redirect(url_for("records.record_page", entity=ce.name, record_id=saved.id))
        raw = {spec.name: _submitted(spec, request.form) for spec in specs}
    else:
        raw = {spec.name: _raw(spec, record, ce) for spec in specs}
    editable = {spec.name for spec in specs}
    status = 422 if errors or general else 200
    return render_template(
        "web/form.html",
        ce=ce,
        record=record,
        sections=[(s.label, [f for f in s.fields if f.name in editable]) for s in ce.form.sections],
        raw=raw,
        errors={name: msgs for name, msgs in errors.items()},
        unplaced={name: msgs for name, msgs in errors.items() if name not in editable},
        general=general,
        pickers=pickers(specs, raw, record),
    ), status


def _with_other_errors(ce: CompiledEntity, record, payload: dict, errors: dict) -> dict:
    """Values that could not be read, plus what the schema says of the rest, so one round shows all."""
    readable = {name: value for name, value in payload.items() if name not in errors and not _empty(value)}
    others = ce.validator.errors(v.payload_to_json(readable), partial=record is not None)
    return errors | {name: messages for name, messages in others.items() if name not in errors and name}


def _save(ce: CompiledEntity, record, payload: dict):
    if record is None:
        # Inputs left empty are not given: the entity's defaults (and the owner: the creator) apply.
        given = {name: value for name, value in payload.items() if not _empty(value)}
        return crm().records.create(ce.name, given, actor(), "form")
    changed = _changed(ce, record, payload)
    if not changed:
        return record  # saving the form as shown is not a change: no new version, no rules
    version = request.form.get("_version", type=int)
    return crm().records.update(ce.name, record.id, changed, actor(), "form", version=version)


def _changed(ce: CompiledEntity, record, payload: dict) -> dict:
    """The fields of ``payload`` whose value differs from the record's (an empty list equals no value)."""
    changed = {}
    for name, new in payload.items():
        field = ce.definition.fields[name]
        old = getattr(record, v.storage_name(field))
        new_value = v.from_json(field, v.to_json(new))
        if _empty(old) and _empty(new_value):
            continue
        if old != new_value:
            changed[name] = new
    return changed


def _empty(value) -> bool:
    return value is None or value == "" or value == []


def _submitted(spec, form):
    if spec.multiple:
        return form.getlist(spec.name)
    if spec.type == "boolean":
        return form.getlist(spec.name)[-1:] == ["1"]
    return form.get(spec.name, "")


def _raw(spec, record, ce: CompiledEntity):
    """A field's current (or default, or prefilled) value as its input shows it."""
    if record is not None:
        value = present.value_of(record, spec)
    elif spec.name in request.args:
        value = request.args.getlist(spec.name) if spec.multiple else request.args.get(spec.name)
        return value if spec.type != "boolean" else value == "1"
    else:
        field = ce.definition.fields[spec.name]
        value = field.default if field.has_default else None
    if value is None:
        return [] if spec.multiple else (False if spec.type == "boolean" else "")
    if spec.type == "datetime":
        return formats().input_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral_value() else str(value)
    if spec.multiple:
        return list(value)
    if spec.type == "boolean":
        return bool(value)
    return str(value)


def pickers(specs, raw: dict, record=None) -> dict[str, list[tuple[str, str]]]:
    """Options of user and link pickers: the current value plus the first records the user may see."""
    options = {}
    users = present.user_names(crm().tables)
    for spec in specs:
        if spec.type == "user":
            options[spec.name] = sorted(((str(i), n) for i, n in users.items()), key=lambda o: o[1])
        elif spec.type == "link":
            current = _current_option(spec, raw.get(spec.name), record)
            if not crm().permissions.can(actor(), spec.link_entity, "read"):
                options[spec.name] = current
                continue
            target = crm().compiled.entities[spec.link_entity]
            rows = crm().records.select(spec.link_entity, actor()).order_by(target.model.id.desc())
            found = {str(r.id): target.title_of(r) for r in rows.limit(PICKER_OPTIONS)}
            found.pop(current[0][0] if current else None, None)
            options[spec.name] = current + sorted(found.items(), key=lambda o: o[1].lower())
    return options


def _current_option(spec, current, record) -> list[tuple[str, str]]:
    """The picker's selected option, titled only if the user may read that record.

    A value prefilled from the URL that the user may not read is dropped (so ids
    cannot be probed for titles); the record's own stored link stays selected
    without its title, so saving the form does not clear it.
    """
    try:
        record_id = int(current) if current else None
    except ValueError:
        return []
    if record_id is None or not 0 < record_id <= LARGEST_INTEGER:
        return []
    target = crm().compiled.entities[spec.link_entity]
    if crm().permissions.can(actor(), spec.link_entity, "read"):
        found = crm().records.select(spec.link_entity, actor()).where(target.model.id == record_id).first()
        if found is not None:
            return [(str(record_id), target.title_of(found))]
    if record is not None and getattr(record, f"{spec.name}_id") == record_id:
        return [(str(record_id), f"{target.definition.label} #{record_id} (not visible to you)")]
    return []


@bp.get("/<entity>/lookup")
def lookup(entity: str):
    """Records matching ``q`` for a link picker: ``[{id, title}]``."""
    ce = entity_or_404(entity)
    req = listing.ListRequest(q=request.args.get("q", "").strip(), per_page=LOOKUP_LIMIT)
    query = listing.apply(crm().records.select(entity, actor()), ce, req, formats())
    return jsonify([{"id": r.id, "title": ce.title_of(r)} for r in query.limit(LOOKUP_LIMIT)])


# --- stage moves and deletes --------------------------------------------------------


@bp.route("/<entity>/<int:record_id>/move", methods=["GET", "POST"])
def move(entity: str, record_id: int):
    """Move a record to another stage; a refused move says why.

    JSON requests (the kanban board) get ``{ok}`` or ``{error, reasons}`` with
    409; a form post that the target's required fields block shows those
    fields to fill in, in the same step.
    """
    ce = entity_or_404(entity)
    record = crm().records.get(entity, record_id, actor(), "update")
    values = (request.get_json(silent=True) or {}) if request.is_json else request.values
    field = values.get("field") or next(iter(ce.workflows), None)
    machine = ce.workflows.get(field)
    target = values.get("to", "")
    if machine is None or target not in machine.states:
        abort(404)
    required = [s for s in ce.form.fields if s.name in machine.states[target].require]
    wants_json = request.is_json or request.accept_mimetypes.best == "application/json"
    reasons: list[str] = []
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        data, errors = ({}, {}) if request.is_json else formdata.parse(required, request.form, formats())
        data = {k: val for k, val in data.items() if not _empty(val)}
        version = values.get("version") or values.get("_version")
        try:
            if errors:
                raise ValidationError(errors)
            crm().records.transition(
                entity,
                record_id,
                target,
                actor(),
                "form",
                data=data,
                field=field,
                version=int(version) if version else None,
            )
        except TransitionNotAllowed as error:
            reasons = error.reasons
        except ValidationError as error:
            errors = error.errors
            reasons = [f"{name}: {'; '.join(msgs)}" for name, msgs in errors.items()]
        except ConflictError as error:
            reasons = [str(error)]
        else:
            label = machine.states[target].label
            if wants_json:
                return jsonify({"ok": True, "stage": target, "label": label})
            flash(f"Moved to {label}.", "success")
            return redirect(url_for("records.record_page", entity=entity, record_id=record_id))
        if wants_json:
            return jsonify({"ok": False, "error": "This move is not allowed.", "reasons": reasons}), 409
    raw = {
        spec.name: _submitted(spec, request.form) if request.method == "POST" else _raw(spec, record, ce)
        for spec in required
    }
    return render_template(
        "web/move.html",
        ce=ce,
        record=record,
        title=ce.title_of(record),
        machine=machine,
        target=machine.states[target],
        fields=required,
        raw=raw,
        errors=errors,
        reasons=reasons,
        pickers=pickers(required, raw, record),
    ), (409 if reasons else 200)


@bp.route("/<entity>/<int:record_id>/delete", methods=["GET", "POST"])
def delete(entity: str, record_id: int):
    """Ask, then delete; the record's history stays."""
    ce = entity_or_404(entity)
    record = crm().records.get(entity, record_id, actor(), "delete")
    if request.method == "POST":
        try:
            crm().records.delete(entity, record_id, actor(), "form", version=request.form.get("_version", type=int))
        except ConflictError as error:
            flash(str(error), "error")
            return redirect(url_for("records.record_page", entity=entity, record_id=record_id))
        flash(f"{ce.definition.label} {ce.title_of(record)!r} deleted.", "success")
        return redirect(url_for("records.list_page", entity=entity))
    return render_template("web/confirm_delete.html", ce=ce, record=record, title=ce.title_of(record))


# --- bulk actions --------------------------------------------------------------------


@bp.post("/<entity>/bulk")
def bulk(entity: str):
    """Assign, move or delete the ticked records, after a confirmation page.

    Each record goes through the write path on its own; those it refuses are
    listed with the reason, the others are changed.
    """
    ce = entity_or_404(entity)
    back = safe_path(request.form.get("back"), url_for("records.list_page", entity=entity))
    action = request.form.get("action", "")
    ids = [int(i) for i in request.form.getlist("ids") if i.isdigit()]
    if action not in BULK_ACTIONS or not ids:
        flash("Tick at least one record and choose what to do.", "error")
        return redirect(back)
    value = request.form.get("value", "")
    choices = bulk_choices(ce)
    if action not in choices:
        raise PermissionDenied(f"you may not {action} {ce.definition.plural.lower()}")
    valid = {str(key) for key, _ in choices.get(action, [])} if action != "delete" else {value}
    if value not in valid:
        flash("Choose whom to assign to or which stage to move to.", "error")
        return redirect(back)
    if request.form.get("confirm") != "yes":
        query = crm().records.select(entity, actor()).where(ce.model.id.in_(ids))
        return render_template(
            "web/confirm_bulk.html",
            ce=ce,
            action=action,
            value=value,
            value_label=_bulk_value_label(choices, action, value),
            records=[(r.id, ce.title_of(r)) for r in query],
            back=back,
        )
    done, failed = 0, []
    for record_id in ids:
        try:
            _bulk_one(ce, action, record_id, value)
            done += 1
        except (ValidationError, TransitionNotAllowed, ConflictError, PermissionDenied, NotFound) as error:
            failed.append(f"#{record_id}: {error}")
    flash(f"{done} of {len(ids)} {ce.definition.plural.lower()} changed.", "success" if not failed else "info")
    for message in failed:
        flash(message, "error")
    return redirect(back)


def _bulk_value_label(choices: dict, action: str, value: str) -> str:
    for key, label in choices.get(action, []) if action != "delete" else []:
        if str(key) == value:
            return label
    return value


def _bulk_one(ce: CompiledEntity, action: str, record_id: int, value: str) -> None:
    who = actor()
    if action == "assign":
        owner = ce.definition.owner_field.name
        crm().records.update(ce.name, record_id, {owner: int(value)}, who, "form")
    elif action == "move":
        crm().records.transition(ce.name, record_id, value, who, "form")
    else:
        crm().records.delete(ce.name, record_id, who, "form")
