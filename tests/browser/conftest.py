"""A real CRM in a real browser: ``python app.py`` (web server plus its embedded
Huey consumer) on a free port, a temporary SQLite database and SQLite queue,
driven by Debian's headless Chromium through playwright.

One server serves the whole session (starting it costs a couple of seconds);
each test gets fresh browser contexts, so no cookie or session leaks from one
test to the next, and each test creates the records it needs under unique
names. Every page a test looks at is saved as
``screenshots/<test name>-<step>.png`` (git-ignored) for a person to check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Response, sync_playwright

from ..live import PROJECT, free_port, wait_for

SCREENSHOTS = Path(__file__).parent / "screenshots"

# The browser CI installs with apt-get (.ci/run); playwright's own download is not reachable.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Demo users from crm_platform/seed.py.
PASSWORD = "demo"
ADMIN = "admin@demo.example.com"
SALES_REP = "anna@demo.example.com"
DACH_TEAM = ("Maria Manager", "Anna Schmidt", "Ben Huber", "Clara Meier")

# Milliseconds a page action or expectation may take before the test fails.
ACTION_TIMEOUT_MS = 10_000


@dataclass
class LiveServer:
    """The CRM process the browser talks to."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def chromium_path() -> str:
    """Where Chromium is; fails the session (never skips it) when it is missing."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(
            "chromium is not installed: the browser tests drive Debian's chromium "
            "(apt-get install chromium; .ci/run installs it)",
            pytrace=False,
        )
    return path


def server_env(tmp: Path, port: int) -> dict[str, str]:
    """The process environment of the server: this one without CRM settings, plus the test's."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CRM_") and k not in ("DATABASE_URL", "QUEUE_URL", "SMTP_URL", "SECRET_KEY")
    }
    return {
        **inherited,
        "DATABASE_URL": f"sqlite:///{tmp / 'crm.sqlite3'}",
        "QUEUE_URL": f"sqlite:///{tmp / 'queue.sqlite3'}",
        "SECRET_KEY": "browser-tests",
        "CRM_HOST": "127.0.0.1",
        "CRM_PORT": str(port),
        "CRM_PACK_DIR": str(PROJECT),
        "CRM_IMPORT_DIR": str(tmp / "uploads"),  # uploaded import files, not in the project's instance folder
        # Every test signs in and some post the public form, all from 127.0.0.1.
        "CRM_FORM_RATE_LIMIT": "1000 per minute",
        "CRM_LOGIN_RATE_LIMIT": "1000 per minute",
        "PYTHONUNBUFFERED": "1",
    }


def _healthy(server: LiveServer) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"the CRM server exited with {server.process.returncode}:\n{server.log_tail()}")
    try:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    """``python app.py`` on 127.0.0.1 and a free port: demo users seeded, a Huey consumer running."""
    tmp = tmp_path_factory.mktemp("crm")
    port = free_port()
    log_path = tmp / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=PROJECT, env=server_env(tmp, port), stdout=log, stderr=subprocess.STDOUT
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_for(lambda: _healthy(server), timeout=60, what=f"the CRM server on port {port}")
        yield server
    finally:
        # SIGTERM ends app.py at once, its consumer too; nothing of the throwaway database needs saving.
        # (Not SIGINT: a shell that starts pytest in the background makes its children ignore SIGINT.)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    driver = sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class PageProblems:
    """What went wrong in the pages of one test without failing a step: script errors, server errors."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda error: self.errors.append(f"script error on {page.url}: {error}"))
        page.on("response", self._server_error)

    def _server_error(self, response: Response) -> None:
        if response.status >= 500:
            self.errors.append(f"{response.status} from {response.request.method} {response.url}")


CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Note on the test item whether its body failed, for ``new_page`` to keep the pages as they were."""
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


def screenshot_stem(request) -> str:
    """The test's name as the start of its screenshot files."""
    return re.sub(r"[^\w.-]+", "_", request.node.name)


@pytest.fixture
def new_page(request, browser: Browser, live_server: LiveServer) -> Iterator[Callable[..., Page]]:
    """``new_page(**context_options)``: a page in a fresh browser context (its own cookies).

    The test fails if any page it opened had an uncaught script error or got a 5xx answer.
    When it fails, each of its pages is saved as ``screenshots/<test name>-failed-<n>.png``.
    """
    contexts: list[BrowserContext] = []
    problems = PageProblems()

    def make(**options) -> Page:
        context = browser.new_context(base_url=live_server.url, **options)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        problems.watch(page)
        return page

    yield make
    if request.node.stash.get(CALL_FAILED, False):
        SCREENSHOTS.mkdir(exist_ok=True)
        for number, context in enumerate(contexts, 1):
            for page in context.pages:
                page.screenshot(path=SCREENSHOTS / f"{screenshot_stem(request)}-failed-{number}.png", full_page=True)
    for context in contexts:
        context.close()
    assert not problems.errors, "\n".join(problems.errors)


@pytest.fixture
def page(new_page) -> Page:
    """An anonymous visitor's page."""
    return new_page()


def sign_in(page: Page, email: str, password: str = PASSWORD) -> Page:
    """Open /login and sign in through the real form."""
    page.goto("/login")
    return submit_login(page, email, password)


def submit_login(page: Page, email: str, password: str = PASSWORD) -> Page:
    """Fill and send the sign-in form the page shows."""
    page.fill("#email", email)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("form button[type=submit]")
    return page


@pytest.fixture
def signed_in_page(new_page) -> Callable[..., Page]:
    """``signed_in_page(email, **context_options)``: a fresh context signed in as a demo user."""

    def make(email: str = ADMIN, **options) -> Page:
        page = sign_in(new_page(**options), email)
        assert "/login" not in page.url, f"signing in as {email} failed: still on {page.url}"
        return page

    return make


@pytest.fixture
def shot(request) -> Callable[[Page, str], Path]:
    """``shot(page, step)``: save the whole page as ``screenshots/<test name>-<nn>-<step>.png``."""
    test_name = screenshot_stem(request)
    SCREENSHOTS.mkdir(exist_ok=True)
    for stale in SCREENSHOTS.glob(f"{test_name}-*.png"):
        stale.unlink()
    taken = 0

    def take(page: Page, step: str) -> Path:
        nonlocal taken
        taken += 1
        path = SCREENSHOTS / f"{test_name}-{taken:02d}-{step}.png"
        page.screenshot(path=path, full_page=True)
        return path

    return take


@pytest.fixture
def unique() -> str:
    """A short suffix that makes this test's record names its own."""
    return uuid.uuid4().hex[:8]


def record_id(page: Page, entity: str) -> int:
    """The id of the record whose page ``page`` shows."""
    match = re.search(rf"/r/{entity}/(\d+)$", page.url)
    assert match, f"not on a {entity} record page: {page.url}"
    return int(match.group(1))


def fill_form(page: Page, values: dict[str, str]) -> None:
    """Fill generated form fields by name (``#f-NAME``): selects by option value, the rest by typing."""
    for name, value in values.items():
        control = page.locator(f"#f-{name}")
        if control.evaluate("el => el.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(value)


def save_form(page: Page) -> None:
    """Press the record form's Save button and wait for the answer page."""
    with page.expect_navigation():
        page.click("form.record-form button[type=submit]")


def create_record(page: Page, entity: str, values: dict[str, str]) -> int:
    """Create a record through /r/ENTITY/new as the page's user; returns its id."""
    page.goto(f"/r/{entity}/new")
    fill_form(page, values)
    save_form(page)
    return record_id(page, entity)
