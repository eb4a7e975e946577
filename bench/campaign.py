"""Campaign members per second, end to end, next to raw ``smtplib`` sends.

Run from the project root:  .venv/bin/python bench/campaign.py [--members N] [--profile]

The SMTP server is aiosmtpd in a subprocess on loopback (``python -m
aiosmtpd -n -c aiosmtpd.handlers.Sink``: it accepts and drops every
message), so its work does not share this process's interpreter lock. Both
sides talk to that same server in the same run.

The CRM side: the default pack on a fresh SQLite file, N contacts (default
2,000) created through the write path, a campaign record and a saved list
view of all contacts as the segment. One round starts a run of the
``newsletter`` template (a new step each round, so nothing is skipped as
already sent) and calls the chunk task's function, ``crm.campaigns.process``,
until the run is done, in this process: the segment query and snapshot,
each member's fresh read and opt-out check, the duplicate-address check,
the template rendered in the sandbox with its unsubscribe link, the
idempotency row committed before and after each SMTP transaction, the SMTP
send (one connection per chunk of 100), the timeline entry and the run's
counters.

The baseline: the same messages (rendered once by the same code, before
timing) sent with ``smtplib.SMTP.sendmail`` over one connection, nothing
else. Rounds alternate (raw, CRM, raw, CRM, ...), and each side keeps its
best round. The last line printed is one JSON object with the CRM's members
per second divided by the raw sends per second.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROUNDS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("the SMTP server did not start")


def build(tmp: Path, smtp_url: str, members: int):
    from crm_platform.application import create_app
    from crm_platform.runtime.users import Actor

    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp / 'crm.sqlite3'}",
            "QUEUE_URL": f"sqlite:///{tmp / 'queue.sqlite3'}",  # nobody consumes it: chunks run here
            "PACK_DIR": str(ROOT),
            "SECRET_KEY": "bench",
            "SMTP_URL": smtp_url,
        }
    )
    crm = app.extensions["crm"]
    crm.init_db()
    system = Actor.system()
    with crm.database.atomic():
        for i in range(members):
            crm.records.create(
                "contact",
                {"first_name": "Kim", "last_name": f"Member {i}", "email": f"m{i}@bench.example"},
                system,
                "import",
                rules=False,
            )
    campaign = crm.records.create("campaign", {"name": "Bench"}, system, "import", rules=False)
    user = crm.directory.create_user("marketer@bench.example", "Marketer", "secret", roles=["marketing"])
    view = crm.tables.SavedView.insert(
        user=user, entity="contact", name="All", query="", shared=False, created_at=crm.clock.utcnow()
    ).execute()
    return crm, campaign.id, f"view:{view}"


def crm_round(crm, campaign_id: int, segment: str, step: int) -> float:
    run = crm.campaigns.start(campaign_id, segment, "newsletter", step)
    gc.disable()
    started = time.perf_counter()
    while crm.campaigns.process(run.id) == "next":
        pass
    elapsed = time.perf_counter() - started
    gc.enable()
    state = crm.campaigns.progress(crm.campaigns.get(run.id))
    assert state["status"] == "done" and state["sent"] == state["total"], state
    return elapsed


def same_messages(crm, campaign_id: int, segment: str) -> list[tuple[str, bytes]]:
    """The messages the CRM sends, rendered by its own code (outside any timing)."""
    from crm_platform.campaigns import segments as seg
    from crm_platform.campaigns.runs import ChunkSender

    Run = crm.tables.CampaignRun
    run = Run.get(Run.campaign_id == campaign_id)
    sender = ChunkSender(crm.campaigns, run, "bench")
    model = crm.compiled.entities["contact"].model
    ids = seg.member_ids(crm, seg.resolve(crm, segment))
    records = {r.id: r for r in model.select().where(model.id.in_(ids))}
    return [(records[i].email, sender._message(records[i], records[i].email, f"<{i}@bench>")) for i in ids]


def raw_round(port: int, sender: str, messages: list[tuple[str, bytes]]) -> float:
    gc.disable()
    started = time.perf_counter()
    connection = smtplib.SMTP("127.0.0.1", port)
    for address, data in messages:
        connection.sendmail(sender, [address], data)
    connection.quit()
    elapsed = time.perf_counter() - started
    gc.enable()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--profile", action="store_true", help="profile one CRM round and print the top entries")
    parser.add_argument("--sort", default="cumulative", help="the profile's order: cumulative or tottime")
    args = parser.parse_args()
    port = free_port()
    server = start_server(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            crm, campaign_id, segment = build(Path(tmp), f"smtp://127.0.0.1:{port}", args.members)
            step = 1
            crm_round(crm, campaign_id, segment, step)  # warm-up (and the messages to compare with)
            messages = same_messages(crm, campaign_id, segment)
            raw_times, crm_times = [], []
            for _ in range(ROUNDS):
                raw_times.append(raw_round(port, crm.mail_from, messages))
                step += 1
                crm_times.append(crm_round(crm, campaign_id, segment, step))
            if args.profile:
                profile = cProfile.Profile()
                step += 1
                profile.runcall(crm_round, crm, campaign_id, segment, step)
                pstats.Stats(profile).sort_stats(args.sort).print_stats(30)
    finally:
        server.terminate()
        server.wait(timeout=10)
    n = args.members
    raw_rate, crm_rate = n / min(raw_times), n / min(crm_times)
    print(f"{'side':<40} {'best s':>8} {'per s':>10} {'us each':>9}")
    print(f"{'raw smtplib, one connection':<40} {min(raw_times):>8.3f} {raw_rate:>10.0f} {1e6 / raw_rate:>9.0f}")
    print(f"{'campaign run, end to end':<40} {min(crm_times):>8.3f} {crm_rate:>10.0f} {1e6 / crm_rate:>9.0f}")
    print(json.dumps({"metric": "campaign_vs_raw_smtp", "value": round(crm_rate / raw_rate, 3), "target": ">= 0.5"}))


if __name__ == "__main__":
    main()
