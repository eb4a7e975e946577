"""Shared fixtures, in the Flask style: ``app``, ``client``, ``runner``, plus
helpers to build packs from the good fixture and its broken variants.

``tests/fixtures/good/`` is a small complete pack. Each directory under
``tests/fixtures/broken/`` holds one or more files at the same relative paths
as in the good pack, each differing from the good file in one mistake;
``broken_pack(case)`` copies the good pack and lays the case's files over it.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

from crm_platform.application import create_app
from crm_platform.compiler import compile_pack
from crm_platform.definitions import load_pack
from crm_platform.errors import DefinitionError, Finding
from crm_platform.runtime.clock import EvalContext, FixedClock

# In CI the property tests replay the same examples each run, so that a red build
# always means the change; locally they explore new examples every run.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

FIXTURES = Path(__file__).parent / "fixtures"
GOOD = FIXTURES / "good"
BROKEN = FIXTURES / "broken"
PROJECT = Path(__file__).parent.parent


@pytest.fixture
def app(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'crm.sqlite3'}",
            "QUEUE_URL": f"sqlite:///{tmp_path / 'queue.sqlite3'}",
            "PACK_DIR": str(PROJECT),
            "SECRET_KEY": "test",
        }
    )
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def smtp():
    """A real SMTP server on loopback (aiosmtpd); ``smtp.url`` for SMTP_URL, ``smtp.sink`` what it received."""
    from .live import SMTPServer

    server = SMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def receiver():
    """Starts webhook receivers on loopback: ``receiver(answers, delay)`` (see ``live.WebhookReceiver``)."""
    from .live import WebhookReceiver

    servers = []

    def start(answers=(), delay: float = 0.0) -> WebhookReceiver:
        servers.append(WebhookReceiver(answers, delay).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def clock():
    """A clock fixed at Monday 2026-11-23 10:00 UTC."""
    return FixedClock(dt.datetime(2026, 11, 23, 10, 0))


@pytest.fixture
def ctx(clock):
    return EvalContext(clock, "Europe/Berlin")


@pytest.fixture
def pack_dir(tmp_path):
    """A writable copy of the good pack; tests change files in it."""
    target = tmp_path / "pack"
    shutil.copytree(GOOD, target)
    return target


@pytest.fixture
def broken_pack(tmp_path):
    """``broken_pack("case")``: the good pack with ``fixtures/broken/case`` laid over it."""

    def build(case: str) -> Path:
        source = BROKEN / case
        assert source.is_dir(), f"no broken fixture {case!r}"
        target = tmp_path / case
        shutil.copytree(GOOD, target)
        shutil.copytree(source, target, dirs_exist_ok=True)
        return target

    return build


def compile_dir(path) -> object:
    """Load and compile a pack directory."""
    return compile_pack(load_pack(path))


def findings_of(path) -> list[str]:
    """The one-line form of every finding of the pack at ``path``, sorted."""
    try:
        compiled = compile_dir(path)
    except DefinitionError as exc:
        return [f"{f.location}: {f.severity}: {f.message}" for f in exc.findings]
    return [f"{f.location}: {f.severity}: {f.message}" for f in compiled.warnings]


def errors_of(path) -> list[Finding]:
    """The findings (objects) of the pack at ``path``; empty if it compiles cleanly."""
    try:
        compiled = compile_dir(path)
    except DefinitionError as exc:
        return exc.findings
    return compiled.warnings


def edit(path, old: str, new: str) -> None:
    """Replace the one occurrence of ``old`` in the file at ``path`` by ``new``."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} in {path}"
    path.write_text(text.replace(old, new))
