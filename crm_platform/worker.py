"""The queue between the outbox and the workers, on Huey.

``QUEUE_URL`` picks the backend: ``sqlite:///path`` (the embedded default,
``SqliteHuey``), ``redis://...`` (``RedisHuey``, to scale out), or
``memory://`` (immediate mode: tasks run inline, for unit tests only). Each
action kind is its own task, ``crm.<kind>``, whose payload is small and
versioned: the company and the outbox row. A periodic task sweeps the outbox
for stranded rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
from pathlib import Path

from huey import MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.api import Huey
from huey.storage import SqliteStorage

from .actions import EXECUTORS
from .imports import background as imports
from .runtime.due_work import run_due_work
from .runtime.time_triggers import sync_rules

log = logging.getLogger("crm.worker")

TASK_PREFIX = "crm."


class QueueStorage(SqliteStorage):
    """Huey's SQLite storage with ``synchronous=NORMAL``, like the company database.

    Huey's default (FULL) syncs the disk on every enqueue and dequeue, which
    made queueing half the cost of a write. In WAL mode NORMAL loses nothing
    when a process dies; a power cut may lose the last enqueues, and the
    outbox sweep queues those again.
    """

    def _create_connection(self):
        connection = super()._create_connection()
        connection.execute("pragma synchronous=1")
        return connection


def make_huey(queue_url: str, name: str) -> Huey:
    """A Huey instance for ``queue_url``."""
    if queue_url.startswith("memory://"):
        return MemoryHuey(name, immediate=True, results=False)
    if queue_url.startswith("sqlite:///"):
        path = Path(queue_url[len("sqlite:///") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(name, filename=str(path), results=False, timeout=30, storage_class=QueueStorage)
    if queue_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey(name, url=queue_url, results=False)
    raise ValueError(f"QUEUE_URL must be sqlite:///PATH, redis://HOST[:PORT][/DB] or memory://, got {queue_url!r}")


class Queue:
    """The company's Huey instance with the platform's tasks registered on it."""

    def __init__(self, huey: Huey, engine):
        self.huey = huey
        self.engine = engine
        self.tasks = {kind: self._register(kind) for kind in EXECUTORS}

        @huey.periodic_task(crontab(minute="*"), name=TASK_PREFIX + "outbox_sweep")
        def outbox_sweep():
            return engine.outbox.sweep()

        self.sweep_task = outbox_sweep

        @huey.periodic_task(crontab(minute="*"), name=TASK_PREFIX + "due_work")
        def due_work():
            return run_due_work(engine)  # timers due now (follow-up steps, time-triggered rules), ...

        self.due_task = due_work

        @huey.task(name=TASK_PREFIX + "import_job")
        def import_job(company: str, job_id: int, payload_version: int = 1):
            if company != engine.company.slug:
                raise ValueError(f"this worker serves company {engine.company.slug!r}, not {company!r}")
            return imports.run(engine, job_id)

        @huey.periodic_task(crontab(minute="*"), name=TASK_PREFIX + "import_sweep")
        def import_sweep():
            return imports.sweep(engine, self.enqueue_import)

        self.import_task, self.import_sweep_task = import_job, import_sweep

        @huey.task(name=TASK_PREFIX + "campaign_chunk")
        def campaign_chunk(company: str, run_id: int, payload_version: int = 1):
            if company != engine.company.slug:
                raise ValueError(f"this worker serves company {engine.company.slug!r}, not {company!r}")
            return engine.campaigns.process(run_id)  # one chunk of a campaign run; it queues the next

        self.campaign_task = campaign_chunk

    def _register(self, kind: str):
        engine = self.engine

        def run_action(company: str, outbox_id: int, payload_version: int = 1):
            if company != engine.company.slug:
                raise ValueError(f"this worker serves company {engine.company.slug!r}, not {company!r}")
            return engine.runner.run(outbox_id)

        return self.huey.task(name=TASK_PREFIX + kind)(run_action)

    def enqueue(self, kind: str, outbox_id: int, eta: dt.datetime | None = None) -> None:
        """Hand outbox row ``outbox_id`` to the workers, now or at ``eta`` (naive UTC)."""
        task = self.tasks[kind]
        args = (self.engine.company.slug, outbox_id, 1)
        if eta is None:
            task(*args)
        else:
            task.schedule(args=args, eta=eta.replace(tzinfo=dt.UTC))

    def enqueue_import(self, job_id: int) -> None:
        """Hand import job ``job_id`` (stored by ``imports.start``) to the workers."""
        self.import_task(self.engine.company.slug, job_id, 1)

    def enqueue_campaign(self, run_id: int) -> None:
        """Hand the next chunk of campaign run ``run_id`` to the workers."""
        self.campaign_task(self.engine.company.slug, run_id, 1)

    def consumer(self, workers: int = 2, periodic: bool = True):
        """A Huey consumer of this queue with thread workers."""
        return self.huey.create_consumer(workers=workers, worker_type="thread", periodic=periodic)


def start_embedded(engine, workers: int = 2):
    """Start a consumer inside this process (``python app.py``); returns it, running.

    Huey installs its signal handlers when it starts; they are put back so
    that Ctrl-C still stops the web server, which then stops the consumer.
    """
    recovered = engine.outbox.sweep()
    if recovered:
        log.warning("queued %d stranded actions again", recovered)
    imports.sweep(engine, engine.queue.enqueue_import)  # jobs whose worker died
    engine.campaigns.sweep()  # campaign runs whose worker died, scheduled runs due
    seed_timers(engine)
    consumer = engine.queue.consumer(workers=workers)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    consumer.start()
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    return consumer


def run_standalone(engine, workers: int, periodic: bool) -> None:
    """Run a consumer in the foreground until SIGINT/SIGTERM (``flask --app app worker``)."""
    recovered = engine.outbox.sweep()
    if recovered:
        log.warning("queued %d stranded actions again", recovered)
    imports.sweep(engine, engine.queue.enqueue_import)  # jobs whose worker died
    engine.campaigns.sweep()  # campaign runs whose worker died, scheduled runs due
    seed_timers(engine)
    engine.queue.consumer(workers=workers, periodic=periodic).run()


def seed_timers(engine) -> None:
    """At worker start: the time-triggered rules get their timers; those of removed rules are cancelled."""
    seeded, cancelled = sync_rules(engine)
    if seeded or cancelled:
        log.info("timers: %d seeded, %d cancelled for the current definitions", seeded, cancelled)
