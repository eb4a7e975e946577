"""Fixtures for the web tests: an app with the default pack and demo users,
and test clients signed in as one of them.

A test module makes the fixtures it uses its own by assignment:
``web_app, sign_in = web_fixtures.web_app, web_fixtures.sign_in``.
CSRF checks are off here (the Flask test client cannot read tokens from
pages conveniently); ``tests/test_web_security.py`` runs with them on.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from crm_platform.runtime.users import Actor
from crm_platform.seed import DEMO_PASSWORD, seed_demo

from .runtime_fixtures import build_app

SYSTEM = Actor.system()


@pytest.fixture
def web_app(tmp_path, clock):
    """The default pack on its own database, demo users seeded, CSRF and rate limits off."""
    app = build_app(tmp_path, clock, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)
    crm = app.extensions["crm"]
    crm.init_db()
    seed_demo(crm.directory)
    yield app
    crm.database.close()


@pytest.fixture
def web_crm(web_app):
    return web_app.extensions["crm"]


@pytest.fixture
def sign_in(web_app) -> Callable:
    """``sign_in("anna")``: a test client signed in as the demo user anna@demo.example.com."""

    def client_for(name: str):
        client = web_app.test_client()
        response = client.post("/login", data={"email": f"{name}@demo.example.com", "password": DEMO_PASSWORD})
        assert response.status_code == 302, f"sign-in as {name} failed"
        return client

    return client_for


def user_id(crm, name: str) -> int:
    """The id of demo user ``name``."""
    return crm.directory.find(f"{name}@demo.example.com").id


def csrf_token(html: str) -> str:
    """The CSRF token a page carries."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert match, "the page has no CSRF token"
    return match.group(1)


def field_errors(html: str) -> dict[str, list[str]]:
    """Error messages shown next to fields: input id (without ``f-``) -> messages."""
    errors: dict[str, list[str]] = {}
    for field, message in re.findall(r'<p class="error" id="f-([\w]+)-errors">([^<]*)</p>', html):
        errors.setdefault(field, []).append(message)
    return errors
