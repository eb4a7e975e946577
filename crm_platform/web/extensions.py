"""The Flask extensions of the web layer, bound to an app by ``init_web``.

CSRF and sign-in keep no app state of their own (the Flask extension
pattern). Flask-Limiter does (its storage), so each app gets its own limiter.
"""

from __future__ import annotations

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

# One CSRF mechanism for the whole app, the console included.
csrf = CSRFProtect()

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to open this page."
login_manager.session_protection = "strong"

# Endpoints whose POSTs are limited per client address, and the config key of each limit.
RATE_LIMITED = {
    "public.submit": "FORM_RATE_LIMIT",
    "auth.login": "LOGIN_RATE_LIMIT",
    "inbound.receive": "INBOUND_EMAIL_RATE_LIMIT",
}


def init_limits(app: Flask) -> Limiter:
    """Limit the endpoints of ``RATE_LIMITED`` per address; storage from ``RATELIMIT_STORAGE_URI``."""
    limiter = Limiter(key_func=get_remote_address, app=app, default_limits=[])
    for endpoint, key in RATE_LIMITED.items():
        limit = limiter.limit(lambda key=key: current_app.config[key], methods=["POST"])
        app.view_functions[endpoint] = limit(app.view_functions[endpoint])
    return limiter
