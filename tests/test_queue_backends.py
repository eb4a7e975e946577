"""QUEUE_URL picks the queue: SQLite (embedded default), Redis (scale-out), or
memory (immediate mode, unit tests only). The Redis case runs a real
``redis-server`` and a real worker process; ``python app.py`` runs its own
consumer in-process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from huey import MemoryHuey, RedisHuey, SqliteHuey

from crm_platform.application import create_app
from crm_platform.runtime.users import Actor
from crm_platform.worker import make_huey

from .conftest import PROJECT
from .live import Worker, free_port, live_config, wait_for, worker_env

SYSTEM = Actor.system()
DACH_LEAD = {"first_name": "Kim", "last_name": "Adler", "email": "kim@lead.example", "country": "DE"}


def test_queue_url_picks_the_backend(tmp_path):
    assert isinstance(make_huey("memory://", "t"), MemoryHuey)
    assert make_huey("memory://", "t").immediate
    sqlite = make_huey(f"sqlite:///{tmp_path / 'q' / 'queue.sqlite3'}", "t")
    assert isinstance(sqlite, SqliteHuey) and not sqlite.immediate
    assert (tmp_path / "q" / "queue.sqlite3").exists()
    assert isinstance(make_huey("redis://127.0.0.1:1/0", "t"), RedisHuey)


def test_an_unknown_queue_url_is_refused_with_the_forms_that_work():
    with pytest.raises(ValueError, match=r"QUEUE_URL must be sqlite:///PATH, redis://"):
        make_huey("amqp://localhost", "t")


@pytest.fixture
def redis_url(tmp_path):
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (.ci/run installs it with apt-get)"
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp_path],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    wait_for(lambda: _pings(client), timeout=10, what="redis-server")
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(timeout=10)


def _pings(client) -> bool:
    import redis

    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def test_a_worker_on_redis_runs_the_actions_a_change_triggers(tmp_path, smtp, redis_url):
    config = live_config(tmp_path, PROJECT, smtp.url, QUEUE_URL=redis_url)
    crm = create_app({"TESTING": True, **config}).extensions["crm"]
    crm.init_db()
    rep = crm.directory.create_user("anna@test.example.com", "Anna", "secret", roles=["sales"], teams=["sales-dach"])
    worker = Worker(worker_env(config), tmp_path / "worker.log").start()
    try:
        lead = crm.records.create("lead", DACH_LEAD, SYSTEM, "form")
        wait_for(lambda: smtp.sink.count() == 1, what="the welcome email through Redis")
        Lead = crm.compiled.entities["lead"].model
        wait_for(lambda: Lead.get_by_id(lead.id).owner == rep, what="the assignment through Redis")
    finally:
        worker.stop()
    assert smtp.sink.snapshot()[0].recipients == ["kim@lead.example"]


def test_python_app_py_runs_a_worker_in_process(tmp_path, smtp):
    port = free_port()
    config = live_config(tmp_path, PROJECT, smtp.url)
    env = {**os.environ, **worker_env(config), "CRM_PORT": str(port)}
    server = subprocess.Popen(
        [sys.executable, "app.py"], cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), what="the server")
        crm = create_app({"TESTING": True, **config}).extensions["crm"]
        assert crm.directory.find("anna@demo.example.com") is not None  # the demo users were seeded
        crm.records.create("lead", DACH_LEAD, SYSTEM, "form")
        # The demo company's sample records send their own welcome emails; this one is Kim's.
        wait_for(lambda: _mails_to(smtp, "kim@lead.example"), what="the welcome email from the embedded worker")
    finally:
        server.terminate()
        server.wait(timeout=15)
        server.stdout.close()
    assert [m.subject for m in _mails_to(smtp, "kim@lead.example")] == ["Thanks for your interest, Kim"]


def _mails_to(smtp, address: str) -> list:
    return [m for m in smtp.sink.snapshot() if address in m.recipients]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        time.sleep(0.1)
        return False
