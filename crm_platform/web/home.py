"""The start page, the health check, and what every page's navigation needs."""

from __future__ import annotations

from flask import Blueprint, redirect, url_for

from .auth import actor
from .state import crm

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    """Signed-in users start on their work list."""
    return redirect(url_for("boards.my_work"))


@bp.get("/healthz")
def health():
    """Liveness and the compiled definitions' version, for deploy checks."""
    return {"status": "ok", "definitions": crm().compiled.version}


@bp.app_context_processor
def navigation():
    """The entities and boards the signed-in user may read, for the menu."""

    def nav_entities():
        who, permissions = actor(), crm().permissions
        return [e for e in crm().compiled.entities.values() if permissions.can(who, e.name, "read")]

    def nav_boards():
        who, permissions = actor(), crm().permissions
        return [
            machine
            for e in crm().compiled.entities.values()
            if permissions.can(who, e.name, "read")
            for machine in e.workflows.values()
        ]

    def crm_can(entity: str, operation: str) -> bool:
        return crm().permissions.can(actor(), entity, operation)

    return {
        "nav_entities": nav_entities,
        "nav_boards": nav_boards,
        "crm_can": crm_can,
        "company_name": lambda: crm().settings.name,
    }
