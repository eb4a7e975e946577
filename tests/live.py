"""Real parts for end-to-end tests: an SMTP server on loopback (aiosmtpd), Huey
consumer processes (``flask --app app worker``), and polling helpers.

Nothing here is mocked: the worker is a separate process reading the same
SQLite database and SQLite queue as the test, and the SMTP server receives
what the worker sends.
"""

from __future__ import annotations

import email
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller

PROJECT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    """One message as the SMTP server received it."""

    sender: str
    recipients: list[str]
    message_id: str
    subject: str
    body: str


@dataclass
class MailSink:
    """Collects every message delivered to the loopback SMTP server."""

    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        parsed = email.message_from_bytes(envelope.content)
        body = parsed.get_payload(decode=True) or b""
        with self.lock:
            self.messages.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    parsed["Message-ID"],
                    parsed["Subject"],
                    body.decode(errors="replace"),
                )
            )
        return "250 Message accepted for delivery"

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.messages)


class SMTPServer:
    """aiosmtpd on 127.0.0.1 and a free port; ``url`` is what SMTP_URL takes."""

    def __init__(self):
        self.sink = MailSink()
        self.port = free_port()
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


class Worker:
    """A ``flask --app app worker`` process with the given environment."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 2):
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.workers = workers
        self.process: subprocess.Popen | None = None

    def start(self) -> Worker:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "worker", "-w", str(self.workers)],
            cwd=PROJECT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no graceful stop, whatever runs is cut off."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # huey's graceful stop
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def live_config(tmp_path: Path, pack_dir: Path, smtp_url: str | None, **extra) -> dict[str, str]:
    """The settings shared by the test (as producer) and its worker processes."""
    config = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'crm.sqlite3'}",
        "QUEUE_URL": f"sqlite:///{tmp_path / 'queue.sqlite3'}",
        "PACK_DIR": str(pack_dir),
        "SECRET_KEY": "test",
        "MAIL_FROM": "crm@test.example.com",
    }
    if smtp_url:
        config["SMTP_URL"] = smtp_url
    config.update({k: str(v) for k, v in extra.items()})
    return config


def worker_env(config: dict[str, str]) -> dict[str, str]:
    """``config`` as the worker process reads it from its environment."""
    unprefixed = ("DATABASE_URL", "QUEUE_URL", "SMTP_URL", "SECRET_KEY")
    return {(k if k in unprefixed else f"CRM_{k}"): v for k, v in config.items()}


class WebhookReceiver(http.server.ThreadingHTTPServer):
    """An HTTP server on loopback that answers each POST with the next of ``answers`` (then 200),
    after ``delay`` seconds, keeping what it got and when: (headers lower-cased, body, monotonic time)."""

    def __init__(self, answers=(), delay: float = 0.0):
        self.answers = list(answers)
        self.delay = delay
        self.got: list[tuple[dict, bytes, float]] = []
        super().__init__(("127.0.0.1", free_port()), _WebhookHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/crm"

    @property
    def deliveries(self) -> list[tuple[dict, bytes]]:
        return [(headers, body) for headers, body, _ in self.got]

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body, _ in self.got]

    def start(self) -> WebhookReceiver:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _WebhookHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's hook name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append(({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()))
        time.sleep(self.server.delay)
        status = self.server.answers.pop(0) if self.server.answers else 200
        answer = f"answer {status}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass
