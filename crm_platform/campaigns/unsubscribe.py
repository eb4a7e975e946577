"""Unsubscribe links: a signed token per recipient, and the opt-out it records.

The token is ``itsdangerous``-signed with ``SECRET_KEY`` and names the
member (entity and id); it does not expire, since an unsubscribe link must
keep working in an old email. The opt-out is a field of the member, set
through the write path: contacts get ``unsubscribed = true``; leads, which
have a marketing consent field instead, get ``gdpr_consent = false`` (a
lead without consent gets no campaign email, so both mean "no marketing").
"""

from __future__ import annotations

import functools

from itsdangerous import BadSignature, URLSafeSerializer

from ..errors import NotFound
from ..runtime.users import Actor

SALT = "crm-unsubscribe"
# entity -> (field, value that means "no campaign email")
OPT_OUT = {"contact": ("unsubscribed", True), "lead": ("gdpr_consent", False)}


@functools.lru_cache(maxsize=4)
def _serializer(secret: str) -> URLSafeSerializer:
    # Made once per key: building one derives the signing key, a third of signing (bench/campaign.py).
    return URLSafeSerializer(secret, salt=SALT)


def make_token(secret: str, entity: str, member_id: int) -> str:
    """The token of the unsubscribe link of one member."""
    return _serializer(secret).dumps([entity, member_id])


def read_token(secret: str, token: str) -> tuple[str, int]:
    """(entity, member id) of a token; raises ``NotFound`` for a forged or damaged one."""
    try:
        entity, member_id = _serializer(secret).loads(token)
    except (BadSignature, ValueError, TypeError) as error:
        raise NotFound("this unsubscribe link is not valid (it may have been cut off when it was copied)") from error
    if entity not in OPT_OUT or not isinstance(member_id, int):
        raise NotFound("this unsubscribe link is not valid")
    return entity, member_id


def opted_out(entity: str, record) -> bool:
    """True if the member may not get campaign email."""
    field, value = OPT_OUT[entity]
    current = getattr(record, field, None)
    return bool(current) if value is True else not current


def unsubscribe(crm, entity: str, member_id: int):
    """Record the member's opt-out through the write path; returns the record."""
    record = crm.compiled.entities[entity].model.get_or_none(id=member_id)
    if record is None:
        raise NotFound("this unsubscribe link is for a record that no longer exists")
    if opted_out(entity, record):
        return record
    field, value = OPT_OUT[entity]
    who = Actor(user_id=None, superuser=True, name="unsubscribe link")
    return crm.records.update(entity, member_id, {field: value}, who, "form")
