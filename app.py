"""Entry point: ``flask --app app ...`` finds ``create_app`` here;
``python app.py`` creates the demo company's tables, users and sample records, starts a Huey
consumer in this process and serves the CRM."""

from __future__ import annotations

import os

from crm_platform.application import create_app
from crm_platform.seed import seed_demo, seed_demo_records
from crm_platform.worker import start_embedded

__all__ = ["create_app"]


def main() -> None:
    """Serve on 127.0.0.1 (``CRM_HOST``/``CRM_PORT`` to change) with an embedded worker."""
    app = create_app()
    crm = app.extensions["crm"]
    crm.init_db()
    if crm.company.slug == "demo" and crm.directory.count() == 0:
        seed_demo(crm.directory)
        seed_demo_records(crm)
    consumer = start_embedded(crm, workers=int(app.config["WORKERS"]))
    host = os.environ.get("CRM_HOST", "127.0.0.1")
    port = int(os.environ.get("CRM_PORT", "5000"))
    try:
        app.run(host=host, port=port, debug=False, use_reloader=False, threaded=True)
    finally:
        consumer.stop(graceful=True)


if __name__ == "__main__":
    main()
