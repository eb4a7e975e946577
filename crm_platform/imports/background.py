"""Import jobs on the workers: the task's body, heartbeats, and the sweep of stalled jobs.

The web starts a job with ``job.start`` and hands it to the queue (the
``crm.import_job`` task of ``worker.Queue``), whose worker calls ``run``.
Huey runs a task at most once: a job whose worker was killed would stay
``running`` for ever. So a worker *claims* the job by stamping its
``heartbeat_at``, stamps it again after every committed chunk, and ``sweep``
(a periodic task, and at every worker start) queues again the running jobs
whose heartbeat is older than ``IMPORT_STALE_SECONDS`` and the queued jobs no
worker took within that time. ``run_job`` resumes at ``next_row``, so no row
is imported twice; and a claim is refused while another worker's heartbeat
is fresh, so a duplicate task does nothing.

A job run by the CLI has no heartbeat and is never swept: its process is
in charge (``--resume`` finishes it).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from ..errors import NotFound, PermissionDenied, ValidationError
from .job import run_job
from .reader import FileRejected

log = logging.getLogger("crm.imports")

STALE_SECONDS = 120
ABANDONED_AFTER = dt.timedelta(days=1)
UPLOAD_META = "upload.json"  # written by the web's upload step next to the file
# What ``run_job`` records on the job as its reason before raising: the person reads it on the job's page.
EXPECTED = (FileRejected, ValidationError, PermissionDenied, NotFound)


def stale_after(crm) -> dt.timedelta:
    """How long a job may go without a heartbeat before it counts as abandoned."""
    return dt.timedelta(seconds=float(crm.config.get("IMPORT_STALE_SECONDS", STALE_SECONDS)))


def claim(crm, job_id: int) -> bool:
    """Take job ``job_id`` for this worker: False if it is done or another worker keeps it alive."""
    ImportJob = crm.tables.ImportJob
    now = crm.clock.utcnow()
    free = ImportJob.heartbeat_at.is_null() | (ImportJob.heartbeat_at <= now - stale_after(crm))
    taken = ImportJob.update(heartbeat_at=now).where((ImportJob.id == job_id) & (ImportJob.status != "done") & free)
    return taken.execute() == 1


def _beat(crm, job_id: int, at: dt.datetime | None) -> None:
    ImportJob = crm.tables.ImportJob
    ImportJob.update(heartbeat_at=at).where(ImportJob.id == job_id).execute()


def run(crm, job_id: int, *, keep_upload: bool = False) -> str:
    """Claim and run import job ``job_id``; returns its status (``skipped`` if not claimed).

    A job that must wait for another (a contacts file's accounts, ``options["after"]``)
    runs that one first, in this worker. A job the file, mapping or permissions make
    impossible is marked ``failed`` with the reason by ``run_job``; any other error is
    recorded on the job the same way and raised. ``keep_upload`` leaves the upload's
    folder in place when the job is done (the job after it reads the same folder).
    """
    waiting_for = _unfinished_prerequisite(crm, job_id)
    if waiting_for is not None:
        status = run(crm, waiting_for, keep_upload=True)
        if status != "done":
            return _blocked(crm, job_id, waiting_for, status)
    if not claim(crm, job_id):
        log.info("import job %s is done or being run by another worker; nothing to do", job_id)
        return "skipped"
    try:
        job = run_job(crm, job_id, after_chunk=lambda job: _beat(crm, job.id, crm.clock.utcnow()))
    except EXPECTED as error:
        log.warning("import job %s failed: %s", job_id, error)
        _beat(crm, job_id, None)  # released: "Resume" may claim it at once
        return "failed"
    except Exception as error:
        ImportJob = crm.tables.ImportJob
        reason = f"the import stopped: {type(error).__name__}: {error}"
        ImportJob.update(status="failed", error=reason, heartbeat_at=None).where(ImportJob.id == job_id).execute()
        raise
    if job.status == "done" and not keep_upload:
        discard_upload(crm, job)
    return job.status


def _unfinished_prerequisite(crm, job_id: int) -> int | None:
    """The job that must finish before ``job_id`` starts, unless it is done already."""
    ImportJob = crm.tables.ImportJob
    job = ImportJob.get_or_none(ImportJob.id == job_id)
    before = (job.options or {}).get("after") if job is not None else None
    if before is None:
        return None
    done = ImportJob.select().where((ImportJob.id == before) & (ImportJob.status == "done")).exists()
    return None if done else before


def _blocked(crm, job_id: int, before: int, status: str) -> str:
    """``job_id`` cannot start: its prerequisite failed (so does it) or is run elsewhere (retried by the sweep)."""
    if status == "skipped":
        log.info("import job %s waits for job %s, which another worker runs", job_id, before)
        return "skipped"
    ImportJob = crm.tables.ImportJob
    first = ImportJob.get_by_id(before)
    reason = f"import job {before} ({first.entity}), which had to run first, failed: {first.error}"
    ImportJob.update(status="failed", error=reason).where(ImportJob.id == job_id).execute()
    return "failed"


def discard_upload(crm, job) -> None:
    """Delete the folder of a web upload once its job is done (the error report lives in the database).

    Only a folder directly under ``IMPORT_DIR`` is removed: a file imported from elsewhere
    (the CLI) is the person's own. A folder another unfinished job still reads (a contacts
    file's contact job, when its account job was run alone by the sweep or "Resume") stays.
    """
    root = crm.config.get("IMPORT_DIR")
    folder = Path(job.path).parent
    if not root or folder.parent != Path(root).resolve():
        return
    ImportJob = crm.tables.ImportJob
    unfinished = ImportJob.select(ImportJob.path).where((ImportJob.status != "done") & (ImportJob.id != job.id))
    if any(Path(other.path).parent == folder for other in unfinished):
        return
    shutil.rmtree(folder, ignore_errors=True)


def prune_uploads(crm, older_than: dt.timedelta = ABANDONED_AFTER) -> int:
    """Delete upload folders no job took (the mapping step was left) after ``older_than``; returns how many."""
    root = Path(crm.config.get("IMPORT_DIR") or "")
    if not crm.config.get("IMPORT_DIR") or not root.is_dir():
        return 0
    limit = (crm.clock.utcnow() - older_than).replace(tzinfo=dt.UTC).timestamp()
    pruned = 0
    for meta in root.glob(f"*/{UPLOAD_META}"):
        try:
            old = meta.stat().st_mtime < limit
            taken = "job" in json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being written, or not an upload: left alone
        if old and not taken:
            shutil.rmtree(meta.parent, ignore_errors=True)
            pruned += 1
    return pruned


def stopped(crm, job) -> bool:
    """True if ``job`` needs a "Resume": it failed, or its worker is gone (see ``sweep``)."""
    if job.status == "failed":
        return True
    limit = crm.clock.utcnow() - stale_after(crm)
    if job.status == "running":
        return job.heartbeat_at is not None and job.heartbeat_at <= limit
    if job.status != "queued" or (job.heartbeat_at or job.created_at) > limit:
        return False
    # A contacts file's contact job waits while a live worker runs its account job first.
    before = (job.options or {}).get("after")
    ImportJob = crm.tables.ImportJob
    first = ImportJob.get_or_none(ImportJob.id == before) if before is not None else None
    return not (first is not None and first.status == "running" and first.heartbeat_at and first.heartbeat_at > limit)


def sweep(crm, enqueue: Callable[[int], None]) -> int:
    """Queue again the jobs whose worker died and the queued jobs never started; returns how many.

    Also deletes uploads abandoned at the mapping step for a day (``prune_uploads``).
    """
    ImportJob = crm.tables.ImportJob
    limit = crm.clock.utcnow() - stale_after(crm)
    lost = (ImportJob.status == "running") & ImportJob.heartbeat_at.is_null(False) & (ImportJob.heartbeat_at <= limit)
    waiting = (ImportJob.status == "queued") & (
        (ImportJob.heartbeat_at.is_null() & (ImportJob.created_at <= limit)) | (ImportJob.heartbeat_at <= limit)
    )
    ids = [row.id for row in ImportJob.select(ImportJob.id).where(lost | waiting).order_by(ImportJob.id)]
    for job_id in ids:
        log.warning("import job %s has no live worker; queueing it again", job_id)
        enqueue(job_id)
    prune_uploads(crm)
    return len(ids)
