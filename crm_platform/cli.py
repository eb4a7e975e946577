"""Commands on the app: ``check``, ``init-db``, ``rules ...``, ``create-admin``,
``seed-demo``, ``worker``, ``explain``, ``outbox ...``.

Each command is a thin shell around a plain function, which the tests call
too.
"""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from .compiler import compile_pack
from .definitions import load_pack
from .errors import DefinitionError, Finding, ValidationError
from .imports.cli import import_command
from .runtime.history import explain_lines
from .seed import seed_demo, seed_demo_records
from .timers_cli import timers_cli
from .worker import run_standalone


def check_pack(directory: Path) -> list[Finding]:
    """Every finding (errors and warnings) for the pack in ``directory``."""
    try:
        compiled = compile_pack(load_pack(directory))
    except DefinitionError as exc:
        return exc.findings
    return compiled.warnings


def format_finding(finding: Finding, prefix: str = "", verbose: bool = False) -> str:
    """``FILE:LINE:COL: error: MESSAGE; HINT``, optionally with the source line."""
    location = str(finding.location)
    line = f"{prefix}{location}: {finding.severity}: {finding.message}"
    if finding.hint:
        line += f"; {finding.hint}"
    if verbose and finding.source_line is not None and finding.location.column:
        line += "\n    " + finding.source_line + "\n    " + " " * (finding.location.column - 1) + "^"
    return line


@click.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="Show the source line and a caret under each finding.")
@with_appcontext
def check_command(directory: Path | None, verbose: bool) -> None:
    """Check a pack (default: the project's) and print every problem."""
    root = directory if directory is not None else current_app.extensions["crm"].company.pack_dir
    if not root.is_dir():
        raise click.ClickException(f"{root} is not a directory")
    prefix = f"{directory.as_posix().rstrip('/')}/" if directory is not None else ""
    findings = check_pack(root)
    for finding in findings:
        click.echo(format_finding(finding, prefix, verbose))
    if any(f.is_error for f in findings):
        raise SystemExit(1)


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create the database tables of the compiled definitions."""
    crm = current_app.extensions["crm"]
    tables = crm.init_db()
    for column in crm.added_columns:
        click.echo(f"added column {column}")
    click.echo(f"{len(tables)} tables ready")


rules_cli = AppGroup("rules", help="Inspect the compiled automation rules.")


@rules_cli.command("list")
def rules_list_command() -> None:
    """List rules with their trigger, priority and file."""
    for rule in current_app.extensions["crm"].compiled.rules.rules.values():
        state = "" if rule.enabled else " (disabled)"
        click.echo(
            f"{rule.file}:{rule.line}  {rule.name}  [on {rule.trigger.entity} {rule.trigger.kind}, "
            f"priority {rule.priority}]{state}"
        )


@rules_cli.command("source")
@click.argument("name")
def rules_source_command(name: str) -> None:
    """Show the Python generated for rule NAME."""
    rules = current_app.extensions["crm"].compiled.rules.rules
    if name not in rules:
        raise click.ClickException(f"no rule named {name!r}")
    click.echo(rules[name].python_source())


@click.command("create-admin")
@click.option("--email", prompt=True)
@click.option("--name", prompt=True)
@click.password_option()
@with_appcontext
def create_admin_command(email: str, name: str, password: str) -> None:
    """Create a user with every permission (the first admin of a company)."""
    crm = current_app.extensions["crm"]
    crm.init_db()
    roles = ["admin"] if "admin" in crm.compiled.pack.roles else []
    try:
        user_id = crm.directory.create_user(email, name, password, roles=roles, superuser=True)
    except ValidationError as exc:
        raise click.ClickException("; ".join(f"{k}: {', '.join(v)}" for k, v in exc.errors.items())) from None
    click.echo(f"admin {email} created (user #{user_id})")


@click.command("seed-demo")
@click.option("--records/--no-records", default=True, show_default=True, help="Also sample accounts, deals, ...")
@with_appcontext
def seed_demo_command(records: bool) -> None:
    """Create the demo company's users (password: demo) and, if it has none, sample records."""
    crm = current_app.extensions["crm"]
    crm.init_db()
    click.echo(f"{seed_demo(crm.directory)} demo users created")
    if records:
        click.echo(f"{seed_demo_records(crm)} demo records created")


@click.command("worker")
@click.option("--workers", "-w", default=2, show_default=True, help="Worker threads.")
@click.option("--no-periodic", is_flag=True, help="Leave the periodic sweep to another worker.")
@with_appcontext
def worker_command(workers: int, no_periodic: bool) -> None:
    """Run a Huey consumer for the company's queue (QUEUE_URL) until stopped."""
    crm = current_app.extensions["crm"]
    crm.init_db()
    run_standalone(crm, workers, periodic=not no_periodic)


@click.command("explain")
@click.argument("entity")
@click.argument("record_id", type=int)
@with_appcontext
def explain_command(entity: str, record_id: int) -> None:
    """Print the automated history of a record: each change with its rule and reason."""
    crm = current_app.extensions["crm"]
    if entity not in crm.compiled.entities:
        raise click.ClickException(f"there is no entity {entity!r}")
    compiled = crm.compiled.entities[entity]
    record = compiled.model.get_or_none(compiled.model.id == record_id)
    title = f"{compiled.definition.label} #{record_id}"
    if record is not None:
        title += f" {compiled.title_of(record)!r}"
    entries = crm.history.entries(entity, record_id, automated_only=True)
    if record is None and not entries:
        raise click.ClickException(f"there is no {compiled.definition.label} #{record_id}")
    for line in explain_lines(entries, title):
        click.echo(line)


outbox_cli = AppGroup("outbox", help="The actions planned by rules: list, retry, sweep.")


@outbox_cli.command("list")
@click.option("--status", help="Only rows in this state (e.g. failed).")
def outbox_list_command(status: str | None) -> None:
    """List actions, newest first."""
    Outbox = current_app.extensions["crm"].tables.Outbox
    query = Outbox.select().order_by(Outbox.id.desc()).limit(200)
    if status:
        query = query.where(Outbox.status == status)
    for row in query:
        line = f"#{row.id} {row.status:<8} {row.kind:<15} {row.entity} #{row.record_id}  rule {row.rule!r}"
        if row.error:
            line += f"  error: {row.error}"
        click.echo(line)


@outbox_cli.command("retry")
@click.argument("outbox_id", type=int)
def outbox_retry_command(outbox_id: int) -> None:
    """Run a failed action again."""
    try:
        current_app.extensions["crm"].outbox.retry(outbox_id)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"action #{outbox_id} queued again")


@outbox_cli.command("sweep")
def outbox_sweep_command() -> None:
    """Queue again the actions that are stranded."""
    click.echo(f"{current_app.extensions['crm'].outbox.sweep()} actions queued again")


mail_cli = AppGroup("mail", help="The email the platform sent or kept.")


@mail_cli.command("list")
@click.option("--status", help="Only messages in this state: kept, handed_over, sent.")
def mail_list_command(status: str | None) -> None:
    """List email, newest first (without SMTP_URL, messages are kept here instead of sent)."""
    Mail = current_app.extensions["crm"].tables.Mail
    query = Mail.select().order_by(Mail.id.desc()).limit(200)
    if status:
        query = query.where(Mail.status == status)
    for row in query:
        record = f"{row.entity} #{row.record_id}" if row.entity else "-"
        when = f"{row.created_at:%Y-%m-%d %H:%M}"
        click.echo(f"#{row.id} {when} {row.status:<11} {row.recipient}  {row.subject}  ({record})")


def register(app: Flask) -> None:
    """Attach the commands to ``app``."""
    for command in (
        check_command, init_db_command, rules_cli, create_admin_command, seed_demo_command, worker_command,
        explain_command, outbox_cli, mail_cli,
    ):  # fmt: skip
        app.cli.add_command(command)
    app.cli.add_command(import_command)
    app.cli.add_command(timers_cli)
