"""How many actions per second do the workers run, next to huey's own no-op tasks?

Run from the project root:  .venv/bin/python bench/workers.py

The CRM side: a copy of the default pack (``pack.yaml``, ``schemas/``,
``workflows/``, ``templates/``) whose only rule is

    rule "Tell the managers about new leads"
      on lead created
      then
        notify role "sales-manager" "New lead {first_name} {last_name}"

and one user with the role ``sales-manager``. 2,000 leads are created through
the write path with a real ``SqliteHuey`` queue and no consumer running, so
2,000 ``notify`` actions wait in the queue (each one, when run, claims its
outbox row, reads the record and the recipients, writes a notification and a
timeline entry and settles the row). The database and queue files are made
once and copied for every run. A run starts ``flask --app app worker -w N``
(a subprocess in the project root, with ``DATABASE_URL``, ``QUEUE_URL`` and
``CRM_PACK_DIR`` of the copy) and polls ``crm.outbox.counts()`` until every
row is settled, then stops the worker with SIGINT.

The baseline: huey itself, a ``SqliteHuey`` made as the platform makes its
own (``results=False, timeout=30``) with one task that does nothing and takes
the same arguments as the platform's tasks. 2,000 of them are queued, then a
consumer with the same options as ``flask ... worker`` (thread workers,
periodic on) runs in a subprocess (``bench/workers.py --noop-consumer ...``)
until it has seen them all complete.

Throughput is counted from the first completed task to the last one (the
outbox rows' ``finished_at``; for huey, the time of its ``complete`` signal),
so neither side's start-up (imports, compiling the pack) counts; the time
from starting the process until everything is done is shown too. Each of the
four (side, workers) pairs runs twice, interleaved, and keeps its best run.

The last line printed is one JSON object with the CRM actions per second
divided by huey's no-op tasks per second, with 4 workers (and with 1).
Compare ratios, not absolute times.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ACTIONS = 2_000
REPEATS = 2
WORKER_COUNTS = (1, 4)
RUN_TIMEOUT = 180.0  # seconds one run may take before the benchmark gives up
TARGET = "report"
QUEUE_NAME = "bench-noop"
PACK_PARTS = ("pack.yaml", "schemas", "workflows", "templates")
RULES = """\
rule "Tell the managers about new leads"
  on lead created
  then
    notify role "sales-manager" "New lead {first_name} {last_name}"
"""

RUNNING: list[subprocess.Popen] = []  # every child this script started, killed in main()'s finally


def make_noop_huey(filename: Path):
    """A SqliteHuey made like crm_platform.worker.make_huey's, with one no-op task."""
    from huey import SqliteHuey

    huey = SqliteHuey(QUEUE_NAME, filename=str(filename), results=False, timeout=30)

    @huey.task(name="bench.noop")
    def noop(company: str, outbox_id: int, payload_version: int = 1) -> None:
        return None

    return huey, noop


def noop_consumer(filename: str, workers: int, expected: int) -> None:
    """The child process of a huey run: consume ``expected`` no-op tasks, print their completion times."""
    from huey.signals import SIGNAL_COMPLETE

    huey, _ = make_noop_huey(Path(filename))
    done: list[float] = []
    all_done = threading.Event()
    lock = threading.Lock()

    @huey.signal(SIGNAL_COMPLETE)
    def completed(signal_name, task, *args, **kwargs):
        with lock:
            done.append(time.time())
            if len(done) >= expected:
                all_done.set()

    consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=True)
    consumer.start()
    finished = all_done.wait(RUN_TIMEOUT)
    consumer.stop(graceful=True)
    first, last = (min(done), max(done)) if done else (0.0, 0.0)
    print(json.dumps({"finished": finished, "count": len(done), "first": first, "last": last}))


# --- the CRM side -------------------------------------------------------------


def build_pack(directory: Path) -> None:
    directory.mkdir(parents=True)
    for part in PACK_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, directory / part)
        else:
            shutil.copy(source, directory / part)
    (directory / "rules").mkdir()
    (directory / "rules" / "bench.rules").write_text(RULES)


def crm_app(directory: Path, pack: Path):
    from crm_platform.application import create_app

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "bench",
            "PACK_DIR": str(pack),
            "DATABASE_URL": f"sqlite:///{directory / 'crm.sqlite3'}",
            "QUEUE_URL": f"sqlite:///{directory / 'queue.sqlite3'}",
        },
        instance_path=str(directory),
    )
    return app.extensions["crm"]


def close(crm) -> None:
    crm.database.close()
    if "queue" in crm.__dict__:
        crm.queue.huey.storage.close()


def fill_crm_queue(directory: Path, pack: Path) -> float:
    """The company whose queue holds ACTIONS notify actions; returns the seconds the creates took."""
    from crm_platform.runtime.users import Actor

    directory.mkdir(parents=True)
    crm = crm_app(directory, pack)
    crm.init_db()
    crm.directory.create_user("manager@example.com", "Mia Manager", "bench-password", roles=["sales-manager"])
    actor = Actor.system()
    started = time.perf_counter()
    for i in range(ACTIONS):
        data = {"first_name": "Lead", "last_name": f"Number {i}", "email": f"lead{i}@example.com", "source": "web"}
        crm.records.create("lead", data, actor, "api")
    seconds = time.perf_counter() - started
    counts = crm.outbox.counts()
    assert counts == {"queued": ACTIONS}, counts
    assert len(crm.queue.huey) == ACTIONS, len(crm.queue.huey)
    close(crm)
    return seconds


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite file (WAL included), through SQLite's backup API."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def start(command: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """Start a child in the project root, its output to ``log``; remembered until stopped."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    RUNNING.append(process)
    return process


def stop(process: subprocess.Popen, graceful: bool = True) -> None:
    """Stop a child this script started: SIGINT (huey's graceful stop), then SIGKILL."""
    if process.poll() is None:
        if graceful:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                pass
        if process.poll() is None:
            process.kill()
            process.wait()
    if process in RUNNING:
        RUNNING.remove(process)


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def run_crm(template: Path, pack: Path, run_dir: Path, workers: int) -> dict:
    run_dir.mkdir(parents=True)
    for name in ("crm.sqlite3", "queue.sqlite3"):
        copy_database(template / name, run_dir / name)
    crm = crm_app(run_dir, pack)
    assert crm.outbox.counts() == {"queued": ACTIONS}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_") and k not in ("DATABASE_URL", "QUEUE_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{run_dir / 'crm.sqlite3'}",
        QUEUE_URL=f"sqlite:///{run_dir / 'queue.sqlite3'}",
        CRM_PACK_DIR=str(pack),
        SECRET_KEY="bench",
    )
    log = run_dir / "worker.log"
    started = time.perf_counter()
    process = start([sys.executable, "-m", "flask", "--app", "app", "worker", "-w", str(workers)], log, env)
    try:
        while True:
            counts = crm.outbox.counts()
            settled = sum(counts.get(s, 0) for s in ("done", "failed", "skipped"))
            if settled >= ACTIONS:
                wall = time.perf_counter() - started
                break
            if process.poll() is not None:
                raise RuntimeError(f"the worker exited with {process.returncode}:\n{tail(log)}")
            if time.perf_counter() - started > RUN_TIMEOUT:
                raise RuntimeError(f"not done after {RUN_TIMEOUT:.0f} s: {counts}\n{tail(log)}")
            time.sleep(0.05)
    finally:
        stop(process)
    if counts.get("done", 0) != ACTIONS:
        raise RuntimeError(f"not every action succeeded: {counts}\n{tail(log)}")
    Outbox = crm.tables.Outbox
    first = Outbox.select(Outbox.finished_at).order_by(Outbox.finished_at).first().finished_at
    last = Outbox.select(Outbox.finished_at).order_by(Outbox.finished_at.desc()).first().finished_at
    notifications = crm.tables.Notification.select().count()
    assert notifications == ACTIONS, notifications
    close(crm)
    return {"span": (last - first).total_seconds(), "wall": wall}


# --- the huey side ------------------------------------------------------------


def run_noop(run_dir: Path, workers: int) -> dict:
    run_dir.mkdir(parents=True)
    filename = run_dir / "noop.sqlite3"
    huey, noop = make_noop_huey(filename)
    for i in range(ACTIONS):
        noop("demo", i, 1)
    assert len(huey) == ACTIONS
    huey.storage.close()
    log = run_dir / "consumer.log"
    started = time.perf_counter()
    command = [sys.executable, str(Path(__file__).resolve()), "--noop-consumer", str(filename), str(workers)]
    process = start(command, log)
    # The child stops by itself once every task is done; its last line of output is one JSON object.
    try:
        process.wait(RUN_TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        stop(process, graceful=False)
        raise RuntimeError(f"the no-op consumer did not finish:\n{tail(log)}") from None
    wall = time.perf_counter() - started
    stop(process)
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the no-op consumer printed no result:\n{tail(log)}")
    result = json.loads(lines[-1])
    if not result["finished"] or result["count"] != ACTIONS:
        raise RuntimeError(f"the no-op consumer ran {result['count']} of {ACTIONS} tasks")
    return {"span": result["last"] - result["first"], "wall": wall}


# --- the benchmark ------------------------------------------------------------


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    try:
        pack = work / "pack"
        build_pack(pack)
        template = work / "template"
        create_seconds = fill_crm_queue(template, pack)

        best: dict[tuple[str, int], dict] = {}
        for repeat in range(REPEATS):
            for workers in WORKER_COUNTS:
                for side, run in (("huey no-op", run_noop), ("CRM notify", None)):
                    run_dir = work / f"{side.split()[0].lower()}-w{workers}-{repeat}"
                    if run is None:
                        result = run_crm(template, pack, run_dir, workers)
                    else:
                        result = run(run_dir, workers)
                    key = (side, workers)
                    if key not in best or result["span"] < best[key]["span"]:
                        best[key] = result
                    shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        for process in list(RUNNING):
            stop(process, graceful=False)
        shutil.rmtree(work, ignore_errors=True)

    print(f'actions: {ACTIONS:,} per run; rule: on lead created -> notify role "sales-manager" (one manager)')
    rate = ACTIONS / create_seconds
    print(f"queued through the write path in {create_seconds:.1f} s ({rate:.0f} leads/s), no consumer running")
    print("CRM: flask --app app worker -w N (SqliteHuey, thread workers); baseline: a SqliteHuey no-op task,")
    print("same consumer options, in a subprocess. Rate = tasks from first to last completion / that span.")
    print(f"runs: {REPEATS} per row, interleaved, best kept")
    print()
    header = f"{'side':<12} {'workers':>7} {'span s':>8} {'tasks/s':>9} {'wall s':>8} {'x huey':>7}"
    print(header)
    print("-" * len(header))
    ratios = {}
    for workers in WORKER_COUNTS:
        noop_rate = (ACTIONS - 1) / best[("huey no-op", workers)]["span"]
        for side in ("huey no-op", "CRM notify"):
            result = best[(side, workers)]
            rate = (ACTIONS - 1) / result["span"]
            ratio = rate / noop_rate
            if side == "CRM notify":
                ratios[workers] = ratio
            print(f"{side:<12} {workers:>7} {result['span']:>8.2f} {rate:>9.0f} {result['wall']:>8.2f} {ratio:>7.3f}")
    print(json.dumps({
        "metric": "worker_actions_vs_huey_noop",
        "value": round(ratios[4], 3),
        "target": TARGET,
        "ratio_1_worker": round(ratios[1], 3),
        "ratio_4_workers": round(ratios[4], 3),
    }))  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--noop-consumer":
        noop_consumer(sys.argv[2], int(sys.argv[3]), ACTIONS)
    else:
        main()
