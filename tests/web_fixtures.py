"""Fixtures for the web tests: an app with the default pack and demo users,
and test clients signed in as one of them.

A test module makes the fixtures it uses its own by assignment:
``web_app, sign_in = web_fixtures.web_app, web_fixtures.sign_in``.
CSRF checks are off here (the Flask test client cannot read tokens from
pages conveniently); ``tests/test_web_security.py`` runs with them on.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from werkzeug.datastructures import MultiDict
from werkzeug.security import generate_password_hash

from crm_platform.runtime.users import Actor
from crm_platform.seed import DEMO_PASSWORD, seed_demo

from .conftest import PROJECT, compile_dir
from .runtime_fixtures import build_app

SYSTEM = Actor.system()


def cheap_password_hashes(monkeypatch) -> None:
    """Cheap password hashes for the users a test creates: seeding twelve demo users with
    werkzeug's default (scrypt) takes seconds. Checking reads the method from the hash."""
    monkeypatch.setattr(
        "crm_platform.runtime.users.generate_password_hash",
        functools.partial(generate_password_hash, method="pbkdf2:sha256:1"),
    )


@pytest.fixture
def web_app(tmp_path, clock, monkeypatch):
    """The default pack on its own database, demo users seeded, CSRF and rate limits off."""
    cheap_password_hashes(monkeypatch)
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
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
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


@functools.cache
def pack_entities() -> tuple[str, ...]:
    """The entity names of the default pack, for parametrizing at collection time."""
    return tuple(sorted(compile_dir(PROJECT).entities))


# The fewest values each entity of the default pack needs; ``{n}`` makes unique ones unique.
MINIMAL = {
    "account": {"name": "Account {n}"},
    "activity": {"kind": "task", "subject": "Activity {n}"},
    "campaign": {"name": "Campaign {n}"},
    "campaign_member": {"campaign": ("campaign", {})},
    "contact": {"last_name": "Contact {n}"},
    "deal": {"name": "Deal {n}"},
    "kb_article": {"title": "Article {n}", "body": "Body {n}"},
    "lead": {"last_name": "Lead {n}", "source": "event"},
    "product": {"name": "Product {n}", "code": "P-{n:04d}"},
    "quote": {"name": "Quote {n}"},
    "quote_line": {"quote": ("quote", {}), "description": "Line {n}"},
    "ticket": {"subject": "Ticket {n}"},
}
_serial = iter(range(1, 10**9))


def make_record(crm, entity: str, actor=SYSTEM, **data):
    """Create a valid ``entity`` record (linked records it needs included) with ``data`` on top."""
    assert entity in MINIMAL, f"add the minimal values of the new entity {entity!r} to MINIMAL"
    n = next(_serial)
    payload = {}
    for name, value in MINIMAL[entity].items():
        if isinstance(value, tuple):
            payload[name] = make_record(crm, value[0], **value[1]).id
        else:
            payload[name] = value.format(n=n)
    payload.update(data)
    return crm.records.create(entity, payload, actor, "api")


def count(crm, entity: str) -> int:
    return crm.compiled.entities[entity].model.select().count()


def csv_rows(response) -> list[list[str]]:
    """The rows of a CSV response."""
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def flashes(html: str) -> list[str]:
    """The flash messages a page shows."""
    return re.findall(r'<p class="flash flash-\w+">([^<]*)</p>', html)


class _Controls(HTMLParser):
    """Collects a page's visible form controls and whether each has a label."""

    CONTROLS = ("input", "select", "textarea")
    NOT_LABELLED = ("hidden", "submit", "button", "reset", "image")

    def __init__(self):
        super().__init__()
        self.label_for: set[str] = set()
        self.in_label = 0
        self.fieldsets: list[bool] = []  # per open fieldset: has it a legend yet
        self.controls: list[tuple[dict, bool]] = []  # (attributes, inside a label or a legended fieldset)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "label":
            self.in_label += 1
            if attributes.get("for"):
                self.label_for.add(attributes["for"])
        elif tag == "fieldset":
            self.fieldsets.append(False)
        elif tag == "legend" and self.fieldsets:
            self.fieldsets[-1] = True
        elif tag in self.CONTROLS:
            if tag == "input" and attributes.get("type", "text") in self.NOT_LABELLED:
                return
            if "hidden" in attributes:
                return
            enclosed = self.in_label > 0 or (bool(self.fieldsets) and self.fieldsets[-1])
            self.controls.append(({"tag": tag, **attributes}, enclosed))

    def handle_endtag(self, tag):
        if tag == "label" and self.in_label:
            self.in_label -= 1
        elif tag == "fieldset" and self.fieldsets:
            self.fieldsets.pop()


def form_controls(html: str) -> list[dict]:
    """Every visible input, select and textarea of a page, as its attributes (plus ``tag``)."""
    parser = _Controls()
    parser.feed(html)
    return [attributes for attributes, _ in parser.controls]


def unlabelled_controls(html: str) -> list[dict]:
    """Visible controls with neither a ``<label for>``, nor an enclosing label or legended fieldset."""
    parser = _Controls()
    parser.feed(html)
    return [
        attributes
        for attributes, enclosed in parser.controls
        if not enclosed and attributes.get("id") not in parser.label_for
    ]


class _FormValues(HTMLParser):
    """What a browser would submit from the page's record form (``form.record-form``)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.in_form = False
        self.pairs: list[tuple[str, str]] = []
        self.select: tuple[str, list[tuple[str, bool]]] | None = None  # name, (value, selected) per option
        self.textarea: str | None = None
        self.text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and "record-form" in (a.get("class") or "").split():
            self.in_form = True
        if not self.in_form:
            return
        if tag == "input" and a.get("name"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.pairs.append((a["name"], a.get("value") or ""))
        elif tag == "select":
            self.select = (a.get("name"), [])
        elif tag == "option" and self.select is not None:
            self.select[1].append((a.get("value", ""), "selected" in a))
        elif tag == "textarea":
            self.textarea, self.text = a.get("name"), ""

    def handle_data(self, data):
        if self.textarea is not None:
            self.text += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.in_form = False
        elif tag == "select" and self.select is not None:
            name, options = self.select
            chosen = [value for value, selected in options if selected] or [value for value, _ in options[:1]]
            if name and chosen:
                self.pairs.append((name, chosen[-1]))
            self.select = None
        elif tag == "textarea" and self.textarea is not None:
            # The HTML parser keeps the newline right after <textarea>, which browsers drop.
            self.pairs.append((self.textarea, self.text.removeprefix("\n")))
            self.textarea = None


def form_values(html: str) -> list[tuple[str, str]]:
    """The (name, value) pairs a browser submits from the page's record form as it is shown."""
    parser = _FormValues()
    parser.feed(html)
    return parser.pairs


def submit_form(client, url: str, **changes):
    """Open the record form at ``url`` and post it back as a browser would, with ``changes``
    (a field's new value, a list for several values) in place of what it showed."""
    page = client.get(url)
    assert page.status_code == 200, f"GET {url}: {page.status_code}"
    pairs = [(name, value) for name, value in form_values(page.get_data(as_text=True)) if name not in changes]
    for name, value in changes.items():
        pairs += [(name, v) for v in (value if isinstance(value, list) else [value])]
    return client.post(url, data=MultiDict(pairs))
