"""The web layer: sign-in, the generated pages, public forms and the console.

Nothing here is written for one entity: every page is generated from the
compiled definitions, and every write goes through ``crm.records``.
"""

from __future__ import annotations

from flask import Flask, current_app, render_template, request
from flask_login import current_user

from ..errors import NotFound, PermissionDenied
from . import (
    auth,
    boards,
    campaigns,
    console,
    dashboards,
    home,
    ical,
    imports,
    public,
    record_page,  # noqa: F401 - adds its route to the records blueprint
    records,
    views,
)
from .api import init_api
from .extensions import csrf, init_limits, login_manager
from .formats import register_filters

# Endpoints anyone may open; every other page needs a signed-in user.
PUBLIC_ENDPOINTS = {
    "static",
    "auth.login",
    "home.health",
    "ical.feed",
    "inbound.receive",
    "inbound.other_method",
    "unsubscribe.confirm",
}


def init_web(app: Flask) -> None:
    """Register the extensions, blueprints, console and error pages on ``app``."""
    csrf.init_app(app)
    login_manager.init_app(app)
    register_filters(app)
    for blueprint in (home.bp, auth.bp, records.bp, views.bp, boards.bp, dashboards.bp, public.bp, ical.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(imports.bp)  # the import wizard
    app.register_blueprint(campaigns.bp)  # campaign runs
    app.register_blueprint(campaigns.public)  # unsubscribe links (public)
    init_api(app, csrf)  # the REST API (token auth, exempt from CSRF), /account/tokens, `flask api-token`
    # Flask-Limiter keeps only a weak reference to itself on the app.
    app.extensions["crm_limiter"] = init_limits(app)
    console.init_console(app)
    app.before_request(require_login)
    app.register_error_handler(PermissionDenied, forbidden)
    app.register_error_handler(403, forbidden)
    app.register_error_handler(NotFound, not_found)
    app.register_error_handler(404, not_found)
    app.register_error_handler(429, too_many)


def require_login():
    """Send anonymous visitors to the sign-in page (public forms and assets excepted)."""
    endpoint = request.endpoint or ""
    # The REST API ("api.") authenticates by token itself, answering 401 in JSON.
    if endpoint in PUBLIC_ENDPOINTS or endpoint.startswith(("public.", "api.")):
        return None
    if current_user.is_authenticated:
        return None
    return login_manager.unauthorized()


def forbidden(error):
    message = str(error) if isinstance(error, PermissionDenied) else "You may not open this page."
    current_app.logger.info("403 %s %s: %s", request.method, request.path, message)
    return render_template("web/error.html", status=403, title="Not allowed", message=message), 403


def not_found(error):
    message = str(error) if isinstance(error, NotFound) else "There is no such page."
    return render_template("web/error.html", status=404, title="Not found", message=message), 404


def too_many(error):
    message = "Too many requests from your address. Please wait a minute and try again."
    return render_template("web/error.html", status=429, title="Slow down", message=message), 429
