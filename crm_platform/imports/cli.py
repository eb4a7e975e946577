"""``flask --app app import ENTITY FILE ...``: a thin shell around ``job.start`` and ``job.run_job``."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from ..errors import PermissionDenied, ValidationError
from ..runtime.users import Actor
from . import contacts
from . import job as jobs
from .reader import FileRejected


def _mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        column, sep, target = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: write COLUMN=FIELD (or COLUMN= to leave it out)", param_hint="--map")
        mapping[column.strip()] = target.strip()
    return mapping


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


@click.command("import")
@click.argument("entity")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option("--map", "pairs", multiple=True, metavar="COLUMN=FIELD", help="Map a column to a field.")
@click.option("--match", multiple=True, metavar="FIELD", help="Fields that identify a duplicate (repeatable).")
@click.option("--on-duplicate", type=click.Choice(jobs.ON_DUPLICATE), default="skip", show_default=True)
@click.option("--no-rules", is_flag=True, help="Create and update records without firing rules.")
@click.option("--preview", "preview_rows", type=int, metavar="N", help="Check the first N rows; write nothing.")
@click.option("--resume", "resume_id", type=int, metavar="JOB_ID", help="Finish an interrupted import.")
@click.option("--errors", "report", type=click.Path(dir_okay=False, path_type=Path), help="Write rows not imported.")
@click.option("--as", "as_email", metavar="EMAIL", help="Import as this user (default: the system).")
@click.option("--chunk", type=int, default=jobs.CHUNK, show_default=True, help="Rows per transaction.")
@with_appcontext
def import_command(
    entity, file, pairs, match, on_duplicate, no_rules, preview_rows, resume_id, report, as_email, chunk
):
    """Import a CSV, XLSX or vCard FILE into ENTITY (or --resume an interrupted import).

    A Google Contacts or Outlook CSV or a vCard file imported into ``contact`` first creates
    the accounts its company names name and no account has yet, as a job of its own.
    """
    crm = current_app.extensions["crm"]
    options = jobs.Options(list(match), on_duplicate, not no_rules, chunk)
    try:
        if resume_id is not None:
            job = crm.tables.ImportJob.get_or_none(crm.tables.ImportJob.id == resume_id)
            if job is None:
                _fail(f"there is no import job #{resume_id}")
        elif entity == "contact" and file is not None and preview_rows is None:
            started = contacts.start_contacts(
                crm, file, actor=_actor(crm, as_email), mapping=_mapping(pairs), options=options
            )
            for note in started[-1].notes:
                click.echo(f"note: {note}")
            if started[-1].format in contacts.FORMATS:
                click.echo(contacts.describe(started))
            for job in started[:-1]:  # the accounts, before the contacts linked to them
                done = _run(crm, job)
                _summary(done)
                contacts.discard(done)
            job = started[-1]
        else:
            if file is None:
                raise click.UsageError("FILE is required (or --resume JOB_ID)")
            if preview_rows is not None:
                given = dict(mapping=_mapping(pairs), options=options, limit=preview_rows)
                if entity == "contact":  # names the accounts it would create
                    _print_preview(contacts.preview_contacts(crm, file, **given))
                else:
                    _print_preview(jobs.preview(crm, entity, file, **given))
                return
            job = jobs.start(crm, entity, file, actor=_actor(crm, as_email), mapping=_mapping(pairs), options=options)
            for note in job.notes:
                click.echo(f"note: {note}")
        job = _run(crm, job)
    except FileRejected as error:
        _fail(str(error))
    except ValidationError as error:
        _fail("; ".join(f"{k or 'file'}: {', '.join(v)}" for k, v in error.errors.items()))
    except PermissionDenied as error:
        _fail(str(error))
    _summary(job)
    if report is not None:
        with report.open("w", newline="", encoding="utf-8") as out:
            count = jobs.error_report(crm, job.id, out)
        click.echo(f"{count} rows not imported written to {report}")


def _run(crm, job):
    click.echo(f"import job #{job.id}: {job.filename} -> {job.entity}, {job.total_rows} rows")
    with click.progressbar(length=job.total_rows - job.next_row, label="importing") as bar:
        # A job started here hands over the rows start read (unless the file changed since).
        return jobs.run_job(crm, job.id, progress=bar.update, read=getattr(job, "read", None))


def _summary(job) -> None:
    click.echo(
        f"job #{job.id} {job.status}: {job.created} created, {job.updated} updated, "
        f"{job.skipped} skipped, {job.failed} failed of {job.total_rows} rows"
    )


def _actor(crm, email: str | None) -> Actor:
    if not email:
        return Actor.system()
    user = crm.directory.find(email)
    if user is None:
        _fail(f"there is no user {email!r}")
    return crm.directory.actor(user.id)


def _print_preview(preview: jobs.Preview) -> None:
    for note in preview.notes:
        click.echo(f"note: {note}")
    click.echo("mapping: " + ", ".join(f"{c} -> {f}" for c, f in preview.mapping.items() if f))
    for column, why in preview.unmapped.items():
        click.echo(f"not imported: {column} ({why})")
    for row in preview.rows:
        if row.errors:
            reasons = "; ".join(f"{k}: {', '.join(v)}" for k, v in row.errors.items())
            click.echo(f"row {row.row_number}: error: {reasons}")
        else:
            click.echo(f"row {row.row_number}: {row.action}")
    bad = sum(1 for row in preview.rows if row.errors)
    click.echo(f"{len(preview.rows)} of {preview.total_rows} rows checked, {bad} with errors; nothing written")
