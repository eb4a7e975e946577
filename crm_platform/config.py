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
        "INBOUND_EMAIL_SECRET": None,  # the shared secret of POST /api/inbound-email; unset: it answers 503
        "RULE_CHAIN_LIMIT": 10,
        "ACTION_LEASE_SECONDS": 300,
        "ACTION_MAX_ATTEMPTS": 5,
        "ACTION_RETRY_BASE_SECONDS": 10,
        "OUTBOX_REQUEUE_SECONDS": 600,
        "DATE_TRIGGER_HOUR": 8,  # "N days before FIELD" rules run at this hour, company time
        "IMPORT_DIR": str(Path(instance_path) / "imports"),  # uploads kept until their import is done
        "IMPORT_MAX_BYTES": 50 * 1024 * 1024,  # largest file the web import takes
        "IMPORT_STALE_SECONDS": 120,  # a running import without a heartbeat this long is queued again
        "WORKERS": 2,
        # The web layer.
        "FORM_RATE_LIMIT": "5 per minute",  # public form submissions per client address
        "LOGIN_RATE_LIMIT": "10 per minute",  # sign-in attempts per client address
        "INBOUND_EMAIL_RATE_LIMIT": "300 per minute",  # inbound-email webhook calls per client address
        "INBOUND_EMAIL_MAX_BYTES": 25 * 1024 * 1024,  # largest inbound-email request (attachments included)
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
        app.config["SECRET_KEY"] = instance_secret(Path(app.instance_path))


def instance_secret(instance: Path) -> str:
    """The instance folder's own secret key, made on first use (readable by its owner only).

    Sessions, CSRF tokens and unsubscribe links must verify in every process of
    the instance (the web server, ``flask worker``) and after a restart, so a
    random key per process is not enough. Set ``SECRET_KEY`` to share one
    between hosts.
    """
    path = instance / "secret_key"
    instance.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written whole to a private file, then linked into place: a process starting at the
        # same time either wins the link or reads the winner's key, never a half-written one.
        draft = instance / f".secret_key.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(os.urandom(32).hex())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()
