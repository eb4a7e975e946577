"""Entry point: ``flask --app app ...`` finds ``create_app`` here;
``python app.py`` creates the demo company's tables and serves the CRM."""

from __future__ import annotations

import os

from crm_platform.application import create_app

__all__ = ["create_app"]


def main() -> None:
    """Serve on 127.0.0.1 (``CRM_HOST``/``CRM_PORT`` to change)."""
    app = create_app()
    app.extensions["crm"].init_db()
    host = os.environ.get("CRM_HOST", "127.0.0.1")
    port = int(os.environ.get("CRM_PORT", "5000"))
    app.run(host=host, port=port, debug=False, use_reloader=False)


if __name__ == "__main__":
    main()
