"""Configuration in layers: defaults, the instance file, environment, tests.

Later layers win. Environment variables are read with the ``CRM_`` prefix
(``CRM_PACK_DIR=...`` sets ``PACK_DIR``), plus the conventional
``DATABASE_URL``, ``QUEUE_URL``, ``SMTP_URL`` and ``SECRET_KEY`` without it.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

PROJECT_ROOT = Path(__file__).resolve().parent.parent
UNPREFIXED = ("DATABASE_URL", "QUEUE_URL", "SMTP_URL", "SECRET_KEY")


def defaults(instance_path: str) -> dict:
    """The first layer: a demo company on SQLite files in the instance folder."""
    return {
        "PACK_DIR": str(PROJECT_ROOT),
        "COMPANY": "demo",
        "DATABASE_URL": f"sqlite:///{Path(instance_path) / 'crm.sqlite3'}",
        "QUEUE_URL": f"sqlite:///{Path(instance_path) / 'queue.sqlite3'}",
        "SMTP_URL": None,
        "SECRET_KEY": None,
        "MAIL_FROM": None,  # default crm@COMPANY.example.com
        "WEBHOOK_SECRET": None,
        "RULE_CHAIN_LIMIT": 10,
        "ACTION_LEASE_SECONDS": 300,
        "ACTION_MAX_ATTEMPTS": 5,
        "ACTION_RETRY_BASE_SECONDS": 10,
        "OUTBOX_REQUEUE_SECONDS": 600,
        "WORKERS": 2,
        # The web layer.
        "FORM_RATE_LIMIT": "5 per minute",  # public form submissions per client address
        "LOGIN_RATE_LIMIT": "10 per minute",  # sign-in attempts per client address
        "RATELIMIT_STORAGE_URI": "memory://",  # redis://... to share limits between processes
        "RATELIMIT_HEADERS_ENABLED": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": False,  # set CRM_SESSION_COOKIE_SECURE=true behind HTTPS
        "WTF_CSRF_TIME_LIMIT": None,  # a token lives as long as the session
    }


def load_config(app: Flask, overrides: dict | None = None) -> None:
    """Fill ``app.config`` from every layer, in order."""
    app.config.from_mapping(defaults(app.instance_path))
    app.config.from_pyfile("crm.cfg", silent=True)
    app.config.from_prefixed_env("CRM")
    for name in UNPREFIXED:
        if name in os.environ:
            app.config[name] = os.environ[name]
    if overrides:
        app.config.from_mapping(overrides)
    if not app.config["SECRET_KEY"]:
        # Sessions then last until the next restart: fine for a demo, set SECRET_KEY in production.
        app.config["SECRET_KEY"] = os.urandom(32).hex()
