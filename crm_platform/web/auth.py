"""Sign-in and sign-out, and who the signed-in user is as an ``Actor``."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

from ..runtime.users import Actor, UserInfo
from .extensions import login_manager
from .state import crm

bp = Blueprint("auth", __name__)


class WebUser:
    """The signed-in user, as Flask-Login wants it, with the actor the write path needs."""

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __init__(self, info: UserInfo):
        self.info = info
        self.actor = info.as_actor()

    def get_id(self) -> str:
        return str(self.info.id)

    @property
    def id(self) -> int:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def is_admin(self) -> bool:
        """May open the admin console: superusers and the pack's ``admin`` role."""
        return self.info.superuser or "admin" in self.info.roles


@login_manager.user_loader
def load_user(user_id: str) -> WebUser | None:
    try:
        info = crm().directory.get(int(user_id))
    except ValueError:
        return None
    return WebUser(info) if info is not None and info.active else None


def actor() -> Actor:
    """The signed-in user as the actor of a change."""
    return current_user.actor


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


def safe_path(target: str | None, default: str) -> str:
    """``target`` if it is a path on this site, else ``default``.

    An absolute URL in ``next`` or ``back`` would be an open redirect, and a
    ``javascript:`` one a script in a link.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    # Browsers read "\\" as "/" ("/\\evil.example" is another site); control characters
    # and spaces have no place in a path and would break the Location header.
    if "\\" in target or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return default
    parts = urlsplit(target)
    return default if parts.scheme or parts.netloc else target


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in form; a wrong email or password gets one message for both."""
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    form = LoginForm()
    if form.validate_on_submit():
        user_id = crm().directory.check_password(form.email.data, form.password.data)
        if user_id is not None:
            login_user(WebUser(crm().directory.get(user_id)))
            return redirect(safe_path(request.args.get("next"), url_for("home.index")))
        form.password.errors.append("Wrong email or password.")
    status = 400 if request.method == "POST" else 200
    return render_template("web/login.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
