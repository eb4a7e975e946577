"""The import wizard: upload a CSV or XLSX file, map its columns, preview, import on a worker.

``/imports/new`` takes the entity and the file (at most ``IMPORT_MAX_BYTES``)
and keeps it under ``IMPORT_DIR/<random>/`` (default ``<instance>/imports``) with an ``upload.json``
naming its user and entity; the random part is the key of the mapping step's
URL, which only that user may open. The mapping step shows each column with
a field select pre-filled from the automatic match, the duplicate settings,
and the preview of the first rows with their errors and planned action.
"Start import" stores the job (``imports.start``) and hands it to the
workers; the job's page follows it (``/imports/ID/status``, JSON) and offers
the error report and, for a job that stopped, "Resume".

The work is done by ``crm_platform/imports``: this module asks and shows.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from ..compiler.compiled import CompiledEntity
from ..errors import NotFound, ValidationError
from ..imports import FileRejected, Options, background, error_report, read_table
from ..imports import mapping as m
from ..imports.contacts import describe, preview_contacts, start_contacts
from ..imports.job import ON_DUPLICATE
from . import present
from .auth import actor
from .state import crm

bp = Blueprint("imports", __name__, url_prefix="/imports")

PREVIEW_ROWS = 20
JOBS_SHOWN = 200
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MULTIPART_SLACK = 64 * 1024  # the form's other fields and the multipart boundaries around the file
UPLOAD_META = background.UPLOAD_META
TOKEN = re.compile(r"[0-9a-f]{32}")
START_LOCK = "starting.lock"  # created by the one "Start import" post that starts the job
SAVE_BLOCK = 1024 * 1024
MAX_STEM = 100  # characters of an upload's name kept on disk (the pages show the name as given)


def max_bytes() -> int:
    return int(current_app.config.get("IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES))


def upload_root() -> Path:
    return Path(current_app.config.get("IMPORT_DIR") or Path(current_app.instance_path) / "imports")


def size_text(size: int) -> str:
    """``50 MB``, ``300 KB``, ``12 bytes``."""
    for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} bytes"


@bp.url_value_preprocessor
def cap_upload(endpoint: str | None, values: dict | None) -> None:
    # Runs before the CSRF check reads the body, so a file over the limit is refused unread (413).
    if endpoint == "imports.new" and request.method == "POST":
        request.max_content_length = max_bytes() + MULTIPART_SLACK


@bp.errorhandler(413)
def too_large(error):
    message = f"The file is larger than the limit of {size_text(max_bytes())}. Split it into smaller files."
    return _upload_page(request.args.get("entity", ""), {"file": [message]}, 413)


# --- the jobs ----------------------------------------------------------------------------------


@bp.get("/")
def index():
    """The user's import jobs, newest first (an administrator sees everyone's)."""
    ImportJob = crm().tables.ImportJob
    query = ImportJob.select().order_by(ImportJob.id.desc())
    if not current_user.is_admin:
        query = query.where(ImportJob.user == actor().user_id)
    jobs = list(query.limit(JOBS_SHOWN))
    return render_template(
        "web/import_list.html",
        jobs=jobs,
        labels=_entity_labels(),
        users=present.user_names(crm().tables) if current_user.is_admin else {},
        may_import=bool(creatable()),
    )


def job_or_404(job_id: int):
    """Import job ``job_id`` if it is the user's (any job for an administrator); else ``NotFound``."""
    ImportJob = crm().tables.ImportJob
    job = ImportJob.get_or_none(ImportJob.id == job_id)
    if job is None or (job.user_id != actor().user_id and not current_user.is_admin):
        raise NotFound(f"there is no import job #{job_id}")
    return job


def state(job) -> dict:
    """What the job's page and its status endpoint show."""
    total = job.total_rows
    finished = job.status in ("done", "failed")
    return {
        "id": job.id,
        "status": job.status,
        "total": total,
        "processed": job.next_row,
        "percent": 100 if not total else round(100 * job.next_row / total),
        "created": job.created,
        "updated": job.updated,
        "skipped": job.skipped,
        "failed": job.failed,
        "error": job.error if job.status == "failed" else None,
        "finished": finished,
        "stopped": background.stopped(crm(), job),
        # A contacts file's contact job runs after its account job (``options.after``).
        "waits_for": (job.options or {}).get("after") if job.status == "queued" else None,
    }


@bp.get("/<int:job_id>")
def job_page(job_id: int):
    """The job's progress, counts, error report and "Resume"; reloads itself while it runs."""
    job = job_or_404(job_id)
    return render_template(
        "web/import_job.html", job=job, state=state(job), label=_entity_labels().get(job.entity, job.entity)
    )


@bp.get("/<int:job_id>/status")
def status(job_id: int):
    """The job's progress as JSON, polled by the job's page."""
    return jsonify(state(job_or_404(job_id)))


@bp.get("/<int:job_id>/errors.csv")
def errors_csv(job_id: int):
    """The rows not imported, with their original cells and the reasons (formula-like cells neutralised)."""
    job = job_or_404(job_id)
    out = io.StringIO()
    error_report(crm(), job.id, out)  # formula-like cells come neutralised
    name = secure_filename(Path(job.filename).stem) or "import"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}-errors-{job.id}.csv"'},
    )


@bp.post("/<int:job_id>/resume")
def resume(job_id: int):
    """Hand a job that stopped (it failed, or its worker died) to the workers again."""
    job = job_or_404(job_id)
    crm().permissions.require(actor(), job.entity, "create")
    if not background.stopped(crm(), job):
        flash(f"Import #{job.id} is {job.status}; there is nothing to resume.", "error")
    else:
        crm().queue.enqueue_import(job.id)
        flash(f"Import #{job.id} continues from row {job.next_row + 1} of {job.total_rows}.", "success")
    return redirect(url_for("imports.job_page", job_id=job.id))


# --- step 1: the file --------------------------------------------------------------------------


def creatable() -> list[CompiledEntity]:
    """The entities the user may create records of, by label."""
    who, permissions = actor(), crm().permissions
    entities = [ce for ce in crm().compiled.entities.values() if permissions.can(who, ce.name, "create")]
    return sorted(entities, key=lambda ce: ce.definition.label.lower())


def _entity_labels() -> dict[str, str]:
    return {name: ce.definition.plural for name, ce in crm().compiled.entities.items()}


def _upload_page(entity: str, errors: dict | None = None, status: int = 200):
    return render_template(
        "web/import_new.html",
        entities=creatable(),
        entity=entity,
        errors=errors or {},
        limit=size_text(max_bytes()),
    ), status


@bp.route("/new", methods=["GET", "POST"])
def new():
    """Choose the entity and the file; a file the reader refuses is refused here, with its reason."""
    if request.method == "GET":
        return _upload_page(request.args.get("entity", ""))
    entity = request.form.get("entity", "")
    errors: dict[str, list[str]] = {}
    if entity not in crm().compiled.entities:
        errors["entity"] = ["Choose what the file holds."]
    else:
        crm().permissions.require(actor(), entity, "create")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        errors["file"] = ["Choose a CSV or XLSX file."]
    if errors:
        return _upload_page(entity, errors, 422)
    token = secrets.token_hex(16)
    folder = upload_root() / token
    folder.mkdir(parents=True)
    path = folder / safe_name(upload.filename)
    try:
        if not _save(upload, path, max_bytes()):
            raise FileRejected(f"{upload.filename}: the file is larger than the limit of {size_text(max_bytes())}")
        read_table(path)  # refused now, with the reader's reason, rather than at the mapping step
    except FileRejected as error:
        shutil.rmtree(folder, ignore_errors=True)
        return _upload_page(entity, {"file": [str(error)]}, 422)
    except BaseException:  # a dropped connection, a reader bug: no upload.json yet, so the sweep would never prune it
        shutil.rmtree(folder, ignore_errors=True)
        raise
    _write_meta(folder, {"user": actor().user_id, "entity": entity, "file": path.name, "filename": upload.filename})
    return redirect(url_for("imports.mapping", token=token))


def safe_name(filename: str) -> str:
    """A file name safe on disk that keeps the extension (the reader goes by it)."""
    name = Path(filename.replace("\\", "/")).name
    # Short: a file system allows 255 bytes, and a contacts file's account job adds ".accounts-XXXX.csv".
    stem = secure_filename(Path(name).stem)[:MAX_STEM] or "upload"
    suffix = secure_filename(Path(name).suffix.lstrip(".")).lower()[:MAX_STEM]
    return f"{stem}.{suffix}" if suffix else stem


def _save(upload: FileStorage, path: Path, limit: int) -> bool:
    """Copy the upload to ``path``; False (and nothing kept) if it is over ``limit`` bytes."""
    written = 0
    with path.open("wb") as out:
        while block := upload.stream.read(SAVE_BLOCK):
            written += len(block)
            if written > limit:
                break
            out.write(block)
    if written > limit:
        path.unlink()
        return False
    return True


def _write_meta(folder: Path, meta: dict) -> None:
    (folder / UPLOAD_META).write_text(json.dumps(meta), encoding="utf-8")


@dataclass
class Upload:
    """A file uploaded for import, waiting for its mapping."""

    folder: Path
    path: Path
    entity: str
    filename: str
    job: int | None
    meta: dict


def upload_or_404(token: str) -> Upload:
    """The signed-in user's upload ``token``; ``NotFound`` for anyone else's or a missing one."""
    missing = NotFound("there is no such upload; upload the file again")
    if not TOKEN.fullmatch(token):
        raise missing
    folder = upload_root() / token
    try:
        meta = json.loads((folder / UPLOAD_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise missing from None
    if meta.get("user") != actor().user_id:
        raise missing
    return Upload(folder, folder / meta["file"], meta["entity"], meta["filename"], meta.get("job"), meta)


# --- step 2: the mapping, the preview, the start ---------------------------------------------------


def locked(ce: CompiledEntity) -> set[str]:
    """Fields the user may not set: read-only for everyone or for their roles (the write path refuses them)."""
    mine = crm().permissions.read_only_fields(actor(), ce.name)
    return {fd.name for fd in ce.definition.fields.values() if fd.read_only or fd.name in mine}


def field_of(target: str) -> str:
    """The field a target fills (a money field for its currency)."""
    return target.removesuffix("_currency")


def targets(ce: CompiledEntity, closed: set[str]) -> list[tuple[str, str]]:
    """What a column can fill, as (target, label): the importable fields and money currencies
    the user may set."""
    found, _ = m.targets(ce)
    keys = set(found.values())
    choices = []
    for fd in ce.definition.fields.values():
        if fd.name in closed:
            continue
        if fd.name in keys:
            required = fd.required and not fd.has_default
            choices.append((fd.name, f"{fd.label} (required)" if required else fd.label))
        if f"{fd.name}_currency" in keys:
            choices.append((f"{fd.name}_currency", f"{fd.label} currency"))
    return choices


def _default_match(ce: CompiledEntity, chosen: dict[str, str]) -> list[str]:
    """Unique fields the file fills: what identifies a duplicate unless the user says otherwise."""
    filled = set(chosen.values())
    return [fd.name for fd in ce.definition.fields.values() if fd.unique and fd.name in filled]


@bp.route("/new/<token>", methods=["GET", "POST"])
def mapping(token: str):
    """Map the columns, set the duplicate handling, preview the first rows; "Start import" queues the job."""
    upload = upload_or_404(token)
    if upload.job is not None:
        return redirect(url_for("imports.job_page", job_id=upload.job))
    ce = crm().compiled.entities.get(upload.entity)
    if ce is None:
        raise NotFound(f"there is no entity {upload.entity!r}")
    crm().permissions.require(actor(), ce.name, "create")
    try:
        table = read_table(upload.path)
    except FileRejected as error:  # the upload was removed or changed on disk since
        flash(str(error), "error")
        return redirect(url_for("imports.new", entity=ce.name))
    header = table.header
    errors: dict[str, list[str]] = {}
    closed = locked(ce)
    automatic = _automatic(ce, header)
    # Columns the automatic match would put into a field the user may not set: left out, and said so.
    held_back = {
        i: f"{ce.definition.fields[field_of(target)].label} is read-only for you: not imported"
        for i, (name, target) in enumerate(automatic.items())
        if target and field_of(target) in closed
    }
    if request.method == "GET":
        chosen = {name: "" if field_of(target) in closed else target for name, target in automatic.items()}
        options = Options(match=_default_match(ce, chosen))
    else:
        chosen = {name: request.form.get(f"map-{i}", "") for i, name in enumerate(header)}
        for name, target in chosen.items():
            if target and field_of(target) in closed:
                errors.setdefault(name, []).append('is read-only for you; choose "do not import"')
        options = Options(
            match=request.form.getlist("match"),
            on_duplicate=request.form.get("on_duplicate", "skip"),
            rules=request.form.get("rules") == "1",
        )
        if options.on_duplicate == "update" and not crm().permissions.can(actor(), ce.name, "update"):
            errors["on_duplicate"] = [f"you may not update {ce.definition.plural.lower()}; choose skip or create"]
    result = None
    if not errors:
        try:
            result = preview_contacts(
                crm(), upload.path, entity=ce.name, mapping=chosen, options=options, limit=PREVIEW_ROWS
            )
        except ValidationError as error:
            errors = error.errors
        except FileRejected as error:
            errors = {"": [str(error)]}
    if request.method == "POST" and request.form.get("action") == "start" and not errors:
        return _start(upload, ce, chosen, options)
    first = table.rows[0][1] if table.rows else []
    choices = targets(ce, closed)
    return render_template(
        "web/import_mapping.html",
        ce=ce,
        upload=upload,
        token=token,
        header=header,
        samples=["" if i >= len(first) or first[i] is None else str(first[i]) for i in range(len(header))],
        # What the reader guessed (an encoding), and what the preview adds (accounts made first).
        notes=list(dict.fromkeys(table.notes + (result.notes if result else []))),
        held_back=held_back,
        chosen=chosen,
        options=options,
        targets=choices,
        labels={key: label.removesuffix(" (required)") for key, label in choices},
        # Only fields a column fills can identify a duplicate (the list follows the mapping on each preview).
        match_fields=[
            (key, label.removesuffix(" (required)"))
            for key, label in choices
            if key in ce.definition.fields and (key in chosen.values() or key in options.match)
        ],
        on_duplicate=ON_DUPLICATE,
        result=result,
        **_placed(errors, header),
    ), (422 if errors and request.method == "POST" else 200)


def _automatic(ce: CompiledEntity, header: list[str]) -> dict[str, str]:
    """The automatic match of each column, also when the mapping as a whole has errors."""
    try:
        return m.match(ce, header).as_json(header)
    except ValidationError:
        pass
    found, _ = m.targets(ce)
    chosen, used = {}, set()
    for name in header:
        target = found.get(m.normal(name), "")
        chosen[name] = "" if target in used else target
        used.add(target)
    return chosen


def _placed(errors: dict[str, list[str]], header: list[str]) -> dict:
    """Errors next to what they are about: a column's select, the duplicate settings, else at the top."""
    columns = {i: errors[name] for i, name in enumerate(header) if name in errors}
    settings = {key: errors[key] for key in ("match", "on_duplicate") if key in errors and key not in header}
    general = [(key, messages) for key, messages in errors.items() if key not in header and key not in settings]
    return {"column_errors": columns, "setting_errors": settings, "general_errors": general, "has_errors": bool(errors)}


def _start(upload: Upload, ce: CompiledEntity, chosen: dict[str, str], options: Options):
    # Two "Start import" posts at once (a double click) both find no job in upload.json:
    # only the one that creates the lock file starts; the other is led to the stored job,
    # or, while it is being stored, back to the mapping step, which leads to it then.
    lock = upload.folder / START_LOCK
    try:
        lock.touch(exist_ok=False)
    except FileExistsError:
        # Stored already (by the other post, or by a process that died before writing upload.json): that job.
        ImportJob = crm().tables.ImportJob
        mine = (ImportJob.path == str(upload.path.resolve())) & (ImportJob.user == actor().user_id)
        stored = ImportJob.select(ImportJob.id).where(mine).order_by(ImportJob.id.desc()).first()
        if stored is not None:
            return redirect(url_for("imports.job_page", job_id=stored.id))
        flash("This import is being started already.", "info")
        return redirect(url_for("imports.mapping", token=upload.folder.name))
    try:
        # A contacts file (vCard, Google, Outlook) may first need an account job for its new
        # companies; the worker runs that one before the contact job it is handed.
        started = start_contacts(crm(), upload.path, actor=actor(), entity=ce.name, mapping=chosen, options=options)
    except BaseException:
        lock.unlink(missing_ok=True)  # nothing was stored: the person may correct and start again
        raise
    job = started[-1]
    # The upload now belongs to the job: the mapping step's URL leads to it from here on.
    _write_meta(upload.folder, upload.meta | {"job": job.id})
    if len(started) > 1:
        flash(describe(started), "info")
    for note in job.notes:
        flash(note, "info")
    crm().queue.enqueue_import(job.id)
    return redirect(url_for("imports.job_page", job_id=job.id))
