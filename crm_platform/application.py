"""The application factory."""

from __future__ import annotations

from flask import Flask

from . import cli, web
from .config import PROJECT_ROOT, load_config
from .engine import CRM


def create_app(config: dict | None = None, instance_path: str | None = None) -> Flask:
    """Build the Flask app; ``config`` is the last configuration layer (tests).

    ``instance_path`` holds ``crm.cfg`` and the default SQLite files
    (default: ``instance/`` in the project).
    """
    app = Flask(
        __name__,
        instance_path=instance_path,
        instance_relative_config=True,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    load_config(app, config)
    CRM(app)
    cli.register(app)
    web.init_web(app)
    return app
