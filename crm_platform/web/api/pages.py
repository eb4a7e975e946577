"""``/account/tokens``: a signed-in user's API tokens; administrators manage everyone's.

This is a page like the others (sign-in and CSRF apply), not part of the API.
A new token is shown once, on the page that answers the POST that made it.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ...errors import ValidationError
from ..state import crm
from .tokens import create_token, list_tokens, revoke_token

bp = Blueprint("api_tokens", __name__, url_prefix="/account")


def _subject() -> int:
    """Whose tokens the page manages: the signed-in user's, or ``?user=ID``'s for an administrator."""
    wanted = request.args.get("user", type=int)
    if wanted is None or wanted == current_user.id:
        return current_user.id
    if not current_user.is_admin:
        abort(403)
    if crm().directory.get(wanted) is None:
        abort(404)
    return wanted


def _page(user_id: int, new_token: str | None = None, errors: list[str] | None = None, status: int = 200):
    engine = crm()
    others = []
    if current_user.is_admin:
        names = {u.id: u.email for u in engine.tables.User.select(engine.tables.User.id, engine.tables.User.email)}
        others = [(t, names.get(t.user_id, "?")) for t in list_tokens(engine.tables, active_only=True)]
        others = [(t, email) for t, email in others if t.user_id != user_id]
    return render_template(
        "web/tokens.html",
        page_title="API tokens",
        subject=engine.directory.get(user_id),
        own=user_id == current_user.id,
        tokens=list_tokens(engine.tables, user_id),
        others=others,
        new_token=new_token,
        errors=errors or [],
    ), status


@bp.get("/tokens")
def tokens_page():
    return _page(_subject())


@bp.post("/tokens")
def create():
    """Make a token for the page's user; the answer shows it once."""
    user_id = _subject()
    engine = crm()
    try:
        token, _ = create_token(engine.tables, user_id, request.form.get("name", ""), engine.clock.utcnow())
    except ValidationError as exc:
        return _page(user_id, errors=[f"Name {m}" for m in exc.errors.get("name", [])], status=400)
    return _page(user_id, new_token=token)


@bp.post("/tokens/<int:token_id>/revoke")
def revoke(token_id: int):
    """Revoke one of the user's tokens (an administrator: anyone's)."""
    engine = crm()
    owner = None if current_user.is_admin else current_user.id
    if not revoke_token(engine.tables, token_id, engine.clock.utcnow(), user_id=owner):
        abort(404)
    flash("The token is revoked: requests with it are refused from now on.", "info")
    back = request.form.get("user", type=int)
    return redirect(url_for("api_tokens.tokens_page", **({"user": back} if back else {})))
