"""``python app.py`` (what ``make run`` runs) starts a real server that creates
the demo company's tables and answers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

from .conftest import PROJECT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_python_app_py_serves_the_crm_and_creates_the_tables(tmp_path):
    port = _free_port()
    database = tmp_path / "crm.sqlite3"
    env = {**os.environ, "CRM_PORT": str(port), "DATABASE_URL": f"sqlite:///{database}", "SECRET_KEY": "test"}
    server = subprocess.Popen(
        [sys.executable, "app.py"], cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        health = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    health = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.2)
        assert health is not None, server.stdout.read().decode() if server.poll() is not None else "no answer"
        assert health["status"] == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            assert response.status == 200
        with sqlite3.connect(database) as db:
            tables = {row[0] for row in db.execute("select name from sqlite_master where type = 'table'")}
        assert {"lead", "contact", "account", "deal", "ticket"} <= tables
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()
