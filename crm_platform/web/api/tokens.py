"""Per-user API tokens: create, verify and revoke, over ``tables.ApiToken``.

A token is ``secrets.token_urlsafe(32)``; only its SHA-256 digest is kept, with
its first characters (``prefix``) so a person can recognise it in a list. The
token itself is shown once, when it is created.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from ...errors import ValidationError
from ...runtime.tables import SystemTables

PREFIX_LENGTH = 8
NAME_LENGTH = 80
# last_used_at is written at most this often per token: one UPDATE per request would serialise every API call.
TOUCH_EVERY = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class TokenInfo:
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


def digest(token: str) -> str:
    """The SHA-256 hex digest under which ``token`` is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(tables: SystemTables, user_id: int, name: str, now: dt.datetime) -> tuple[str, TokenInfo]:
    """Make a token for ``user_id``; returns the token (to show once) and its stored row.

    Raises ``ValidationError`` if ``name`` is empty or longer than 80 characters.
    """
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": ["must not be empty"]})
    if len(name) > NAME_LENGTH:
        raise ValidationError({"name": [f"is longer than {NAME_LENGTH} characters"]})
    token = secrets.token_urlsafe(32)
    token_id = tables.ApiToken.insert(
        user=user_id, name=name, digest=digest(token), prefix=token[:PREFIX_LENGTH], created_at=now
    ).execute()
    return token, _info(tables.ApiToken.get_by_id(token_id))


def verify_token(tables: SystemTables, token: str, now: dt.datetime) -> int | None:
    """The user id of a valid (known, not revoked) token, else None; notes when it was used."""
    if not token:
        return None
    ApiToken = tables.ApiToken
    row = ApiToken.get_or_none((ApiToken.digest == digest(token)) & ApiToken.revoked_at.is_null())
    if row is None:
        return None
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
        ApiToken.update(last_used_at=now).where(ApiToken.id == row.id).execute()
    return row.user_id


def revoke_token(tables: SystemTables, token_id: int, now: dt.datetime, *, user_id: int | None = None) -> bool:
    """Revoke a token (only one of ``user_id``'s, if given); False if there is no such active token."""
    ApiToken = tables.ApiToken
    query = ApiToken.update(revoked_at=now).where((ApiToken.id == token_id) & ApiToken.revoked_at.is_null())
    if user_id is not None:
        query = query.where(ApiToken.user == user_id)
    return bool(query.execute())


def list_tokens(tables: SystemTables, user_id: int | None = None, *, active_only: bool = False) -> list[TokenInfo]:
    """The tokens of ``user_id`` (everyone's if None), newest first."""
    ApiToken = tables.ApiToken
    query = ApiToken.select()
    if user_id is not None:
        query = query.where(ApiToken.user == user_id)
    if active_only:
        query = query.where(ApiToken.revoked_at.is_null())
    return [_info(row) for row in query.order_by(ApiToken.created_at.desc(), ApiToken.id.desc())]


def _info(row) -> TokenInfo:
    return TokenInfo(row.id, row.user_id, row.name, row.prefix, row.created_at, row.last_used_at, row.revoked_at)
