"""Commands on the app: ``flask --app app check``, ``init-db``, ``rules ...``.

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
from .errors import DefinitionError, Finding


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
    tables = current_app.extensions["crm"].init_db()
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


def register(app: Flask) -> None:
    """Attach the commands to ``app``."""
    for command in (check_command, init_db_command, rules_cli):
        app.cli.add_command(command)
