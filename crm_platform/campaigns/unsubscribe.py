"""Unsubscribe links: a signed token per recipient, and the opt-out it records.

The token is ``itsdangerous``-signed with ``SECRET_KEY`` and names the
member (entity and id); it does not expire, since an unsubscribe link must
keep working in an old email. The opt-out is a field of the member, set
through the write path: contacts get ``unsubscribed = true``; leads, whose
campaign email depends on their marketing consent, get ``gdpr_consent =
false`` and, where the entity has the field, ``unsubscribed = true`` too
(which also ends their follow-up sequences; a lead who never gave consent
still gets the replies to their own request). An unsubscribe is for the
address, as people mean it: every contact and lead with the same email
(ignoring case) is opted out with it.
"""

from __future__ import annotations

import functools

import peewee
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
    """Record the opt-out of the member and of every other member with its address, through the
    write path; returns the member's record."""
    record = crm.compiled.entities[entity].model.get_or_none(id=member_id)
    if record is None:
        raise NotFound("this unsubscribe link is for a record that no longer exists")
    who = Actor(user_id=None, superuser=True, name="unsubscribe link")
    address = (getattr(record, "email", None) or "").strip().lower()
    for other_entity, other in [(entity, record), *_same_address(crm, address, (entity, member_id))]:
        change = _opt_out_change(crm, other_entity, other)
        if change:
            updated = crm.records.update(other_entity, other.id, change, who, "form")
            if other is record:
                record = updated
    return record


def _opt_out_change(crm, entity: str, record) -> dict:
    """The fields to set so that ``record`` gets no more campaign (or follow-up) email."""
    field, value = OPT_OUT[entity]
    change = {} if opted_out(entity, record) else {field: value}
    if field != "unsubscribed" and "unsubscribed" in crm.compiled.entities[entity].definition.fields:
        if not getattr(record, "unsubscribed", False):
            change["unsubscribed"] = True
    return change


def _same_address(crm, address: str, this: tuple[str, int]) -> list:
    """(entity, record) of the other members whose email is ``address`` (ignoring case)."""
    if not address:
        return []
    found = []
    for entity in OPT_OUT:
        model = crm.compiled.entities[entity].model
        for record in model.select().where(_lower(model.email) == address):
            if (entity, record.id) != this:
                found.append((entity, record))
    return found


def _lower(column):
    return peewee.fn.LOWER(peewee.fn.TRIM(column))
