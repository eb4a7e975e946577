"""The REST API against its own OpenAPI document, with schemathesis.

The real app serves HTTP on loopback (werkzeug's server in a thread) on a
temporary SQLite database with the demo users; schemathesis reads
``/api/openapi.json`` from it, generates requests for every operation of every
entity, sends them with an administrator's token, and checks each answer: no
server error, a documented status code and content type, a body that matches
the documented schema.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.serving import make_server

from crm_platform.runtime.clock import FixedClock
from crm_platform.seed import seed_demo
from crm_platform.web.api.tokens import create_token

from .runtime_fixtures import build_app
from .web_fixtures import cheap_password_hashes

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live_api(tmp_path_factory):
    """(base URL, admin token) of the app serving HTTP on 127.0.0.1 and a free port."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        cheap_password_hashes(monkeypatch)
        app = build_app(tmp_path_factory.mktemp("api"), FixedClock(dt.datetime(2026, 11, 23, 10, 0)))
        crm = app.extensions["crm"]
        crm.init_db()
        seed_demo(crm.directory)
    admin = crm.directory.find("admin@demo.example.com").id
    token, _ = create_token(crm.tables, admin, "schemathesis", crm.clock.utcnow())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", token
    server.shutdown()
    thread.join()
    server.server_close()
    crm.database.close()


# schemathesis' own pytest integration (``schemathesis.pytest.from_fixture`` with
# ``@schema.parametrize()``) fails on pytest 9 (it reads ``request.node._nodeid``, which
# pytest 9 no longer has), so each operation's strategy is driven by Hypothesis here.
EXAMPLES = 10  # per operation and mode: about 1,000 requests, well under a minute


def test_api_conforms_to_its_openapi_document(live_api):
    base_url, token = live_api
    api = schemathesis.openapi.from_url(f"{base_url}/api/openapi.json", timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 12 * 5
    failures = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def conforms(case):
                case.call_and_validate(headers=headers, checks=CHECKS, timeout=10)

            try:
                conforms()
            except Exception as error:  # collected: one report for every operation that fails
                failures.append(f"{operation.label} ({mode.value}): {error}")
    assert not failures, "\n\n".join(failures)
