"""What runs on the clock: the timer handlers per kind, and the kinds of due work.

``TIMER_KINDS`` maps a timer's kind to its handler, ``handler(crm, timer,
now) -> (status, note)``, called in the transaction that claims the timer
(or, marked ``in_steps``, one that works in several transactions: see
``runtime/timers.py``).
``DUE_WORK`` is what the periodic task and ``flask --app app timers run``
do, in order, as of one moment: each ``f(crm, now) -> int`` (how much it
did). A new kind of timer or of due work is one line here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from ..actions.follow_up import fire_follow_up
from . import sla
from .time_triggers import fire_date, fire_every, sync_rules

TIMER_KINDS: dict[str, Callable] = {
    "follow_up": fire_follow_up,
    "every": fire_every,
    "date": fire_date,
}


def fire_timers(crm, now: dt.datetime) -> int:
    """Fire the timers due at ``now``."""
    return crm.timers.fire_due(now)


def campaign_runs(crm, now: dt.datetime) -> int:
    """Scheduled campaign runs due now start; runs whose worker died are queued again."""
    return crm.campaigns.sweep(now)


def sla_escalations(crm, now: dt.datetime) -> int:
    """SLA escalation steps whose threshold has been crossed fire, each once."""
    return sla.run_due(crm, now)


DUE_WORK: tuple[Callable, ...] = (fire_timers, campaign_runs, sla_escalations)


def run_due_work(crm, now: dt.datetime | None = None) -> dict[str, int]:
    """Run each kind of due work as of ``now`` (default: the clock's now); how much each did, by name.

    The rule-wide timers are first brought in line with the definitions, once
    per process and definition version.
    """
    now = now or crm.clock.utcnow()
    sync_rules(crm, once=True)
    return {work.__name__: work(crm, now) for work in DUE_WORK}
