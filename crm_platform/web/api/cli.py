"""``flask api-token create EMAIL NAME`` (prints the token once), ``list`` and ``revoke``."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from ...errors import ValidationError
from .tokens import create_token, list_tokens, revoke_token

api_token_cli = AppGroup("api-token", help="Create, list and revoke users' REST API tokens.")


def _user(crm, email: str):
    info = crm.directory.find(email)
    if info is None:
        raise click.ClickException(f"there is no user {email!r}")
    return info


@api_token_cli.command("create")
@click.argument("email")
@click.argument("name")
def create_command(email: str, name: str) -> None:
    """Make an API token for the user with EMAIL, called NAME; prints the token (shown only now)."""
    crm = current_app.extensions["crm"]
    user = _user(crm, email)
    try:
        token, _ = create_token(crm.tables, user.id, name, crm.clock.utcnow())
    except ValidationError as exc:
        raise click.ClickException("; ".join(f"{k}: {', '.join(v)}" for k, v in exc.errors.items())) from None
    click.echo(token)


@api_token_cli.command("list")
@click.argument("email")
def list_command(email: str) -> None:
    """The tokens of the user with EMAIL: id, prefix, name, created, last used, revoked."""
    crm = current_app.extensions["crm"]
    for token in list_tokens(crm.tables, _user(crm, email).id):
        used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
        revoked = f" revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else ""
        created = f"{token.created_at:%Y-%m-%d}"
        click.echo(f"#{token.id} {token.prefix}… {token.name}  created {created} used {used}{revoked}")


@api_token_cli.command("revoke")
@click.argument("token_id", type=int)
def revoke_command(token_id: int) -> None:
    """Revoke the token with TOKEN_ID (see ``list``)."""
    crm = current_app.extensions["crm"]
    if not revoke_token(crm.tables, token_id, crm.clock.utcnow()):
        raise click.ClickException(f"there is no active token #{token_id}")
    click.echo(f"token #{token_id} revoked")
