"""The web layer. For now one placeholder page; the generated UI comes next."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    """A page that shows the server is up, and nothing of the company's data."""
    return render_template("placeholder.html")


@bp.get("/healthz")
def health():
    """Liveness and the compiled definitions' version, for deploy checks."""
    return {"status": "ok", "definitions": current_app.extensions["crm"].compiled.version}
