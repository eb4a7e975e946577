"""Dashboards. Built out next."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("dashboards", __name__, url_prefix="/dashboards")


@bp.get("/")
def index():
    return "dashboards"
