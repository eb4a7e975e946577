"""How many list pages per second does the web layer serve, next to a bare Flask view of the same rows?

Run from the project root:  .venv/bin/python bench/web.py [--profile]

The company: the default pack on a SQLite file in a temporary directory,
``QUEUE_URL=memory://`` (rule actions run inline), the demo users
(``crm_platform.seed.seed_demo``), 10,000 leads and 2,000 deals. The 1,000
newest leads (the list's first pages, the record page's lead) are made
through the write path (``crm.records.create``, system actor, channel
"import"), as the mix of ``bench/write_path.py`` (``random.Random(42)``):
web leads from DACH and elsewhere (routed to an owner by the pack's rules),
referral and partner leads, event and cold-call leads. The 9,000 older ones
are copies of those rows with their own email and an earlier ``created_at``,
bulk-inserted (see ``fill``: writing all 10,000 through the path took up to
a minute). The deals go through the write path too, with an owner, an
amount and a close date, moved through the pipeline to every stage
(prospecting 30%, qualification 25%, proposal 20%, negotiation 10%, won 8%,
lost 7%).

The candidate: ``GET /r/lead/``, the generated list page (50 of the 10,000
rows, the entity's default sort). The baseline: ``GET /bench/bare``, a plain
view registered on the same app that runs the same peewee query (the same
model, ``ORDER BY created_at DESC, id DESC``, ``LIMIT 50``, plus the count),
looks up the owners' names (one query) and writes a minimal HTML table of
the list's columns with f-strings and ``html.escape``. Both pass through the
same ``before_request`` sign-in check and load the same user from the same
session cookie. Informative rows, each divided by the bare view's rate of
the same round: the record page ``GET /r/lead/<id>`` (a routed DACH web lead:
fields, stage path, related activities, timeline) and the kanban board
``GET /board/deal_pipeline``.

The server: a child process (``bench/web.py --serve DIR``) with werkzeug's
``make_server(..., threaded=True)`` (HTTP/1.1 keep-alive, request logging
off), so the load client does not share a GIL with it. The client: this
process, ``CLIENTS`` threads, each with one persistent ``http.client``
connection, signed in once through ``POST /login`` (CSRF off for the bench)
and sending the same session cookie to every endpoint. Before timing, every
endpoint must answer 200, and the list page and the bare view must show the
same 50 lead ids (so a redirect to the sign-in page cannot be timed by
mistake). Every page then runs ``ROUNDS`` times, each run between two runs
of the bare view (bare, list, bare, record, bare, kanban, bare, ..., the
pages' order reversed every other round); a run is ``WARMUP`` seconds, then
``SECONDS`` seconds counted, and its ratio is its rate over the mean of the
two bare runs around it, so a change of the machine's load between runs
(the machine is shared) moves both sides alike. Each ratio is the median over
the runs. The client's and the server's CPU time are shown per endpoint: the
client must stay well below one core. "x bare per CPU" is the same ratio of
requests per second of the server process's CPU time (``/proc``): where the
server had a core to itself it equals the headline, and it moves less when
other processes take the CPU.

``--profile`` then times ``PROFILE_REQUESTS`` list pages and as many bare
views through the Flask test client in this process (signed in the same
way; this thread's CPU time, best of 5 batches), runs as many of each again
under cProfile (timer: ``time.thread_time``, so other processes on the
machine do not count), and prints the list page's top functions before the
last line.

The last line printed is one JSON object with the list page's requests per
second divided by the bare view's. Compare ratios, not absolute rates.
"""

from __future__ import annotations

import cProfile
import html
import http.client
import io
import json
import os
import pstats
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LEADS = 10_000
WRITTEN_LEADS = 1_000  # the newest, through the write path; the rest are bulk-inserted copies (see fill)
DEALS = 2_000
PER_PAGE = 50
ROUNDS = 5  # runs of each page, each between two runs of the bare view
SECONDS = 1.5  # counted per run
WARMUP = 0.5  # before counting, per run
CLIENTS = 4  # threads of the load client, one keep-alive connection each
PROFILE_REQUESTS = 100
TARGET = ">= 0.6"
HOST = "127.0.0.1"
LOGIN = {"email": "admin@demo.example.com", "password": "demo"}
# The lead list's columns as the bare view writes them by hand (checked against the pack in main()).
LEAD_COLUMNS = (
    ("first_name", "First name"), ("last_name", "Last name"), ("company", "Company"), ("country", "Country"),
    ("source", "Lead source"), ("score", "Lead score"), ("status", "Status"), ("owner", "Owner"),
)  # fmt: skip
# Share of the deals left in each stage, and the moves that get them there.
DEAL_STAGES = {
    "prospecting": (30, []),
    "qualification": (25, ["qualification"]),
    "proposal": (20, ["qualification", "proposal"]),
    "negotiation": (10, ["qualification", "proposal", "negotiation"]),
    "won": (8, ["qualification", "proposal", "negotiation", "won"]),
    "lost": (7, ["lost"]),
}
LEAD_LINK = re.compile(r'href="/r/lead/(\d+)"')

RUNNING: list[subprocess.Popen] = []  # every child this script started, killed in main()'s finally


# --- the app --------------------------------------------------------------------


def make_app(directory: Path):
    """The company's app on ``directory``, with the bare view registered before any request."""
    from crm_platform.application import create_app

    app = create_app(
        {
            "SECRET_KEY": "bench",
            "PACK_DIR": str(ROOT),
            "DATABASE_URL": f"sqlite:///{directory / 'crm.sqlite3'}",
            "QUEUE_URL": "memory://",
            "RATELIMIT_ENABLED": False,
            "WTF_CSRF_ENABLED": False,
        },
        instance_path=str(directory),
    )
    app.add_url_rule("/bench/bare", "bench_bare", bare_list)
    return app


def bare_list():
    """The baseline: the list page's query and a minimal table, written by hand."""
    from flask import current_app

    crm = current_app.extensions["crm"]
    lead, user = crm.compiled.entities["lead"].model, crm.tables.User
    query = lead.select().order_by(lead.created_at.desc(), lead.id.desc())
    total = query.count()
    rows = list(query.limit(PER_PAGE))
    owners = {r.owner for r in rows if r.owner is not None}
    names = {u.id: u.name for u in user.select(user.id, user.name).where(user.id.in_(owners))} if owners else {}
    out = [f"<!doctype html><title>Leads</title><h1>Leads ({total})</h1><table><thead><tr>"]
    out += [f"<th>{label}</th>" for _, label in LEAD_COLUMNS]
    out.append("</tr></thead><tbody>")
    for r in rows:
        cells = [
            "" if value is None else html.escape(str(value))
            for value in (r.first_name, r.last_name, r.company, r.country, r.source, r.score, r.status)
        ]
        owner = html.escape(names.get(r.owner, "")) if r.owner is not None else ""
        out.append(f'<tr><td><a href="/r/lead/{r.id}">{cells[0]}</a></td><td>')
        out.append("</td><td>".join(cells[1:]))
        out.append(f"</td><td>{owner}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


# --- the data -------------------------------------------------------------------


def make_leads(count: int) -> list[dict]:
    """Lead payloads, the mix of bench/write_path.py; deterministic (seed 42), every email unique."""
    rng = random.Random(42)
    first = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ida", "Jonas"]
    last = ["Meier", "Schmidt", "Novak", "Rossi", "Dubois", "Smith", "Keller", "Brown", "Weber", "Lang"]
    leads = []
    for i in range(count):
        group = rng.choices(["dach", "web", "referral", "other"], [40, 25, 20, 15])[0]
        if group == "dach":
            source, country = "web", rng.choice(["DE", "DE", "AT", "CH"])
        elif group == "web":
            source, country = "web", rng.choice(["US", "GB", "FR", "other"])
        elif group == "referral":
            source, country = rng.choice(["referral", "partner"]), rng.choice(["DE", "US", "GB"])
        else:
            source, country = rng.choice(["event", "cold_call"]), rng.choice(["DE", "FR", "US"])
        payload = {
            "first_name": rng.choice(first),
            "last_name": rng.choice(last),
            "email": f"lead{i}@example{i % 97}.com",
            "company": f"Company {rng.randint(1, 500)}",
            "job_title": rng.choice(["CEO", "CTO", "Head of Sales", "IT Manager", None]),
            "phone": f"+49 30 {rng.randint(1000000, 9999999)}",
            "country": country,
            "source": source,
            "employees": rng.randint(1, 5000),
            "interests": rng.sample(["crm", "helpdesk", "marketing", "analytics"], rng.randint(0, 2)),
            "score": rng.randint(0, 60),
        }
        leads.append({k: v for k, v in payload.items() if v is not None})
    return leads


def fill(crm) -> dict:
    """Demo users, LEADS leads and DEALS deals; seconds each took.

    The WRITTEN_LEADS newest leads (the list's first page, the record page's
    lead) and every deal go through the write path. The older leads only make
    the table as big as a company's: writing all 10,000 through the path
    (its rules run inline with memory://) took 35-65 s on two shared cores, so
    they are copies of the written rows, valid by construction, each with its
    own email and an earlier created_at, bulk-inserted with insert_many (this
    fixture only; nothing the pages read depends on their audit rows).
    """
    import datetime as dt

    from peewee import chunked

    from crm_platform.runtime.users import Actor
    from crm_platform.seed import seed_demo

    crm.init_db()
    seed_demo(crm.directory)
    actor = Actor.system()
    lead = crm.compiled.entities["lead"].model
    started = time.perf_counter()
    for payload in make_leads(WRITTEN_LEADS):
        crm.records.create("lead", payload, actor, "import")
    written = list(lead.select().order_by(lead.id).dicts())
    oldest = written[0]["created_at"]
    copies = []
    for i in range(LEADS - WRITTEN_LEADS):
        row = {name: value for name, value in written[i % len(written)].items() if name != "id"}
        row.update(email=f"older{i}@example{i % 97}.com", version=1)
        row["created_at"] = row["updated_at"] = oldest - dt.timedelta(minutes=i + 1)
        copies.append(row)
    with crm.database.atomic():
        for chunk in chunked(copies, 200):
            lead.insert_many(chunk).execute()
    leads_seconds = time.perf_counter() - started

    rng = random.Random(7)
    sales = [u.id for u in crm.tables.User.select() if u.email.split("@")[0] in ("anna", "ben", "clara", "diego")]
    stages = list(DEAL_STAGES)
    weights = [share for share, _ in DEAL_STAGES.values()]
    today = dt.date(2025, 6, 1)
    started = time.perf_counter()
    for i in range(DEALS):
        data = {
            "name": f"Deal {i} with Company {rng.randint(1, 500)}",
            "amount": rng.randint(1, 200) * 500,
            "close_date": (today + dt.timedelta(days=rng.randint(0, 180))).isoformat(),
            "owner": rng.choice(sales),
            "source": rng.choice(["web", "referral", "event", "partner"]),
        }
        deal = crm.records.create("deal", data, actor, "import")
        for target in DEAL_STAGES[rng.choices(stages, weights)[0]][1]:
            extra = {"data": {"lost_reason": "price"}} if target == "lost" else {}
            crm.records.transition("deal", deal.id, target, actor, "import", **extra)
    deals_seconds = time.perf_counter() - started
    return {"leads": leads_seconds, "deals": deals_seconds}


# --- the server (a child process) -------------------------------------------------


def serve(directory: Path) -> None:
    """The child: serve the app on a free port, print it, run until terminated."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, code="-", size="-") -> None:
            pass  # one stderr line per request would be timed as well

    app = make_app(directory)
    app.extensions["crm"].compiled  # noqa: B018 - compile the pack before the first request
    server = make_server(HOST, 0, app, threaded=True, request_handler=QuietHandler)
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


def start_server(directory: Path) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(directory)]
    with (directory / "server.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
    RUNNING.append(process)
    line = process.stdout.readline().decode()
    if not line.startswith("PORT "):
        stop(process)
        raise RuntimeError(f"the server did not start:\n{(directory / 'server.log').read_text()[-3000:]}")
    return process, int(line.split()[1])


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process in RUNNING:
        RUNNING.remove(process)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (Linux ``/proc``), 0 where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the client ---------------------------------------------------------------------


def sign_in(port: int) -> str:
    """The session cookie of the admin, signed in through the form."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    body = urlencode(LOGIN)
    conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    response.read()
    location, cookie = response.getheader("Location", ""), response.getheader("Set-Cookie", "")
    conn.close()
    if response.status != 302 or "/login" in location or not cookie.startswith("session="):
        raise RuntimeError(f"sign-in failed: {response.status} {location!r}")
    return cookie.split(";", 1)[0]


def get(conn: http.client.HTTPConnection, path: str, cookie: str) -> tuple[int, bytes]:
    conn.request("GET", path, headers={"Cookie": cookie})
    response = conn.getresponse()
    return response.status, response.read()


def load(port: int, pid: int, path: str, cookie: str) -> dict:
    """Requests per second of ``path`` from CLIENTS keep-alive connections: those that end
    within SECONDS, after WARMUP."""
    start = time.perf_counter() + 0.2  # every thread connected first
    counted_from, until = start + WARMUP, start + WARMUP + SECONDS
    counts, errors = [0] * CLIENTS, []

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        conn.connect()
        time.sleep(max(start - time.perf_counter(), 0))
        try:
            while True:
                status, _ = get(conn, path, cookie)
                done = time.perf_counter()
                if status != 200:
                    errors.append(status)
                    return
                if done >= until:
                    return
                if done >= counted_from:
                    counts[index] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(max(counted_from - time.perf_counter(), 0))
    client_cpu, server_cpu = time.process_time(), cpu_seconds(pid)
    time.sleep(max(until - time.perf_counter(), 0))
    client_cpu, server_cpu = time.process_time() - client_cpu, cpu_seconds(pid) - server_cpu
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{path} answered {errors[0]} under load")
    return {
        "rps": sum(counts) / SECONDS,
        "per_cpu_second": sum(counts) / server_cpu if server_cpu else 0.0,
        "client_cpu": client_cpu / SECONDS,
        "server_cpu": server_cpu / SECONDS,
    }


def verify(port: int, cookie: str, paths: dict[str, str], cards: int) -> None:
    """Every endpoint answers 200 with its content; list and bare show the same 50 leads."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    bodies = {}
    for name, path in paths.items():
        status, body = get(conn, path, cookie)
        if status != 200:
            raise RuntimeError(f"{name} ({path}) answered {status}")
        bodies[name] = body.decode()
    conn.close()
    list_ids, bare_ids = LEAD_LINK.findall(bodies["list page"]), LEAD_LINK.findall(bodies["bare"])
    assert len(bare_ids) == PER_PAGE, len(bare_ids)
    assert list_ids == bare_ids, (list_ids[:5], bare_ids[:5])
    assert bodies["list page"].count('name="ids"') == PER_PAGE
    assert f"<h1>Leads ({LEADS})</h1>" in bodies["bare"]
    assert '<section class="card timeline"' in bodies["record page"]
    assert bodies["kanban"].count('class="card kanban-card"') == cards, bodies["kanban"].count("kanban-card")


def measure(port: int, pid: int, cookie: str, paths: dict[str, str]) -> dict[str, list[dict]]:
    """Each candidate ROUNDS times, every run between two runs of the bare view.

    The sequence is bare, A, bare, B, bare, C, bare, ... with the candidates'
    order reversed every other round; a run's ratio is its rate over the mean
    of the bare runs right before and after it, so a change in the machine's
    load between runs (this machine is shared) moves both sides alike.
    Returns every run of every endpoint, each with its ratios ("x bare": of
    the rates, "x bare per CPU": of the requests per second of server CPU).
    """
    candidates = [name for name in paths if name != "bare"]
    runs: dict[str, list[dict]] = {name: [] for name in paths}
    before = load(port, pid, paths["bare"], cookie)
    runs["bare"].append(before | {"x bare": 1.0, "x bare per CPU": 1.0})
    for round_number in range(ROUNDS):
        for name in candidates if round_number % 2 == 0 else reversed(candidates):
            result = load(port, pid, paths[name], cookie)
            after = load(port, pid, paths["bare"], cookie)
            ratios = {
                f"x bare{suffix}": result[key] / ((before[key] + after[key]) / 2)
                for key, suffix in (("rps", ""), ("per_cpu_second", " per CPU"))
            }
            runs[name].append(result | ratios)
            runs["bare"].append(after | {"x bare": 1.0, "x bare per CPU": 1.0})
            before = after
    return runs


# --- the profile ----------------------------------------------------------------------


def profile(app) -> str:
    """PROFILE_REQUESTS list pages through the test client under cProfile, and bare views for comparison."""
    client = app.test_client()
    response = client.post("/login", data=LOGIN)
    assert response.status_code == 302 and "/login" not in response.location, response.status_code
    timings, plain = {}, {}
    for path in ("/r/lead/", "/bench/bare"):
        for _ in range(20):
            assert client.get(path).status_code == 200
        # This thread's CPU time, so that other processes on the machine do not count.
        batches = []
        for _ in range(5):
            started = time.thread_time()
            for _ in range(PROFILE_REQUESTS // 5):
                client.get(path)
            batches.append((time.thread_time() - started) / (PROFILE_REQUESTS // 5))
        plain[path] = min(batches)
        profiler = cProfile.Profile(time.thread_time)
        started = time.thread_time()
        profiler.enable()
        for _ in range(PROFILE_REQUESTS):
            client.get(path)
        profiler.disable()
        timings[path] = (time.thread_time() - started, profiler)
    out = io.StringIO()
    out.write(f"profile: {PROFILE_REQUESTS} requests each through the test client, CPU time of this thread\n")
    for path, (took, _) in timings.items():
        out.write(
            f"  GET {path:<12} {plain[path] * 1000:6.2f} ms per request without the profiler (best of 5 batches),"
            f" {took / PROFILE_REQUESTS * 1000:6.2f} ms under it\n"
        )
    out.write(f"  list page / bare: {plain['/bench/bare'] / plain['/r/lead/']:.3f} (in-process, no HTTP server)\n")
    stats = pstats.Stats(timings["/r/lead/"][1], stream=out)
    out.write("--- GET /r/lead/: top 30 by cumulative time ---\n")
    stats.sort_stats("cumulative").print_stats(30)
    out.write("--- GET /r/lead/: only crm_platform functions and templates, by cumulative time ---\n")
    stats.sort_stats("cumulative").print_stats(r"crm_platform|templates", 30)
    out.write("--- GET /r/lead/: top 20 by own time ---\n")
    stats.sort_stats("tottime").print_stats(20)
    out.write("--- GET /bench/bare (what both pay): top 15 by cumulative time ---\n")
    pstats.Stats(timings["/bench/bare"][1], stream=out).sort_stats("cumulative").print_stats(15)
    text = out.getvalue()
    # Paths relative to the project or site-packages (the longest prefix first).
    for prefix in sorted({str(ROOT), *(p for p in sys.path if "site-packages" in p)}, key=len, reverse=True):
        text = text.replace(prefix.rstrip("/") + "/", "")
    return text


# --- the benchmark ----------------------------------------------------------------------


def main() -> None:
    with_profile = "--profile" in sys.argv[1:]
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    try:
        app = make_app(work)
        crm = app.extensions["crm"]
        columns = tuple((spec.name, spec.label) for spec in crm.compiled.entities["lead"].list.columns)
        assert columns == LEAD_COLUMNS, f"the lead list's columns changed: {columns}"
        assert crm.compiled.entities["lead"].list.default_sort == "-created_at"
        took = fill(crm)
        lead, deal = crm.compiled.entities["lead"].model, crm.compiled.entities["deal"].model
        assert lead.select().count() == LEADS and deal.select().count() == DEALS
        dach = (lead.source == "web") & (lead.country == "DE")
        record = lead.select().where(dach).order_by(lead.created_at.desc()).get()  # a written lead, not a copy
        cards = sum(min(deal.select().where(deal.stage == stage).count(), 50) for stage in DEAL_STAGES)
        crm.database.close()

        paths = {
            "bare": "/bench/bare",
            "list page": "/r/lead/",
            "record page": f"/r/lead/{record.id}",
            "kanban": "/board/deal_pipeline",
        }
        server, port = start_server(work)
        try:
            cookie = sign_in(port)
            verify(port, cookie, paths, cards)
            runs = measure(port, server.pid, cookie, paths)
        finally:
            stop(server)
        profile_text = profile(app) if with_profile else ""
        crm.database.close()
    finally:
        for process in list(RUNNING):
            stop(process)
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"data: {LEADS:,} leads ({WRITTEN_LEADS:,} through the write path, the older ones bulk-inserted copies;"
        f" {took['leads']:.1f} s), {DEALS:,} deals through the write path ({took['deals']:.1f} s)"
    )
    print(f"server: werkzeug make_server(threaded=True) in a child process; client: {CLIENTS} keep-alive connections")
    print(
        f"runs: each page {ROUNDS} times between two runs of the bare view (bare, list, bare, record, bare, kanban,"
        f" bare, ...,\norder reversed every other round); a run: {WARMUP} s warm-up, then {SECONDS} s counted;"
        " ratio: the run's req/s over\nthe mean of the bare runs around it; shown: medians over the runs"
    )
    print()
    header = (
        f"{'endpoint':<12} {'path':<22} {'req/s':>7} {'x bare':>7}  {'runs x bare':<30}"
        f" {'x bare per CPU':>14} {'client CPU':>10} {'server CPU':>10}"
    )
    print(header)
    print("-" * len(header))
    ratios = {}
    for name, path in paths.items():
        ratios[name] = statistics.median(run["x bare"] for run in runs[name])
        per_cpu = statistics.median(run["x bare per CPU"] for run in runs[name])
        rps = statistics.median(run["rps"] for run in runs[name])
        client = statistics.median(run["client_cpu"] for run in runs[name])
        server_cpu = statistics.median(run["server_cpu"] for run in runs[name])
        each = "(reference)" if name == "bare" else " ".join(f"{run['x bare']:.2f}" for run in runs[name])
        print(
            f"{name:<12} {path:<22} {rps:>7.1f} {ratios[name]:>7.3f}  {each:<30} {per_cpu:>14.3f}"
            f" {client:>10.0%} {server_cpu:>10.0%}"
        )
    print("x bare per CPU: the same ratio of requests per second of the server's CPU time, less moved by")
    print("other load on the machine; client and server CPU: share of one core while counting (medians)")
    print(f"bench run time: {time.perf_counter() - began:.0f} s")
    if profile_text:
        print()
        print(profile_text)
    print(json.dumps({"metric": "list_page_vs_bare", "value": round(ratios["list page"], 3), "target": TARGET}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]))
    else:
        main()
