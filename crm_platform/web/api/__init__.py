"""The REST API (``/api/...``), its OpenAPI document, and API tokens.

``init_api(app)`` registers the API blueprint (token auth, JSON errors, no
CSRF: a token in a header cannot be sent by another site), the
``/account/tokens`` page and the ``flask api-token`` commands.
"""

from __future__ import annotations

from flask import Flask

from . import inbound, pages, resources
from .cli import api_token_cli

bp = resources.bp


def init_api(app: Flask, csrf) -> None:
    """Register the API on ``app``; ``csrf`` is the app's ``CSRFProtect``, which must skip the API."""
    app.register_blueprint(resources.bp)
    # First of the app's before_request functions: ahead of the pages' sign-in redirect.
    app.before_request_funcs.setdefault(None, []).insert(0, resources.unrouted)
    app.register_blueprint(pages.bp)
    csrf.exempt(resources.bp)
    # POST /api/inbound-email: a provider's webhook, authenticated by a shared secret.
    app.register_blueprint(inbound.bp)
    csrf.exempt(inbound.bp)
    app.cli.add_command(api_token_cli)
