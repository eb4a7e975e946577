"""Rules triggered by time: ``on ENTITY every N minutes|hours`` and
``on ENTITY N days before|after FIELD [yearly]``.

Each such rule has one rule-wide timer (``crm_timer`` with no record). When
it fires, the rule's condition is evaluated for the entity's records (in
batches); for each record it holds for, the rule's actions are planned
through the outbox like an event rule's, with the values that made it fire
("because ...") and a key unique per firing and record, so a firing never
plans twice. Then the next timer is scheduled:

- ``every``: on a fixed grid (every 15 minutes: :00, :15, ...), at the first
  point after now, so a worker that was down for hours fires once, not once
  per missed period;
- dates: daily at ``DATE_TRIGGER_HOUR`` (default 8) in the company's time
  zone. A firing covers each day since the last one (a backfill after
  downtime), once per record per date.

``sync_rules`` seeds these timers and cancels the timers of rules and steps
that are gone: at worker start, before the due work runs in a process, and
whenever the definitions differ from those last synced.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import peewee as pw

from ..compiler.rules import CompiledRule
from ..definitions import nodes as n
from .events import Change, plan, reason_of
from .timers import describe

BATCH = 500  # records read at a time
GRID_ORIGIN = dt.datetime(2000, 1, 3)  # a Monday, midnight UTC: every-N timers fall on multiples from here
MAX_CATCH_UP_DAYS = 366  # a date trigger's backfill covers at most a year
RULE_WIDE = ("every", "date")


# --- seeding and cancelling ------------------------------------------------------------


def sync_rules(crm, once: bool = False) -> tuple[int, int]:
    """Bring the timers in line with the definitions; returns (seeded, cancelled).

    A time-triggered rule without a pending timer gets one; the pending
    timers of a removed or disabled rule, of a follow-up step that no longer
    exists, or of a trigger that changed are cancelled with a note on the
    record's timeline. ``once``: skip if this engine already synced this
    definition version. A process on older definitions than the newest
    registered cancels nothing.
    """
    version = crm.definition_version
    if once and crm.timers.synced_version == version:
        return 0, 0
    rules = crm.compiled.rules.rules
    Timer, Version = crm.tables.Timer, crm.tables.DefinitionVersion
    now = crm.clock.utcnow()
    seeded = cancelled = 0
    with crm.database.atomic():
        # A process on older definitions than another one registered (a worker not yet
        # redeployed) must not cancel what the newer ones scheduled: it only seeds (the
        # timer keys stop a second timer), and what no longer fits is skipped when it fires.
        older = (Version.select(pw.fn.MAX(Version.id)).scalar() or 0) > version
        mine = Timer.kind.in_(("follow_up", *RULE_WIDE))
        pending = list(Timer.select().where((Timer.status == "pending") & mine))
        kept = set()
        for timer in pending:
            why = obsolete(timer, rules)
            if why is None or older:
                kept.add((timer.kind, timer.rule))
                continue
            if crm.timers.cancel(timer, why, note_on_record=f"{describe(timer)} cancelled: {why}"):
                cancelled += 1
        for rule in crm.compiled.rules.scheduled():
            kind = rule.trigger.kind
            if (kind, rule.name) in kept:
                continue
            due = first_due(crm, rule.trigger, now)
            if crm.timers.schedule(
                kind, f"{kind}/{rule.name}", due, entity=rule.trigger.entity, rule=rule.name,
                payload={"trigger": trigger_spec(rule.trigger)}, repeat=True,
            ) is not None:  # fmt: skip
                seeded += 1
    crm.timers.synced_version = version
    return seeded, cancelled


def obsolete(timer, rules: dict[str, CompiledRule]) -> str | None:
    """Why a pending timer no longer fits the definitions (None if it does)."""
    rule = rules.get(timer.rule)
    if rule is None:
        return f"rule {timer.rule!r} was removed"
    if not rule.enabled:
        return f"rule {timer.rule!r} was disabled"
    if timer.kind == "follow_up":
        action = find_action(rule, timer.step or "")
        if action is None or not isinstance(action.node, n.FollowUp):
            return f"rule {timer.rule!r} no longer has this follow-up step"
        return None
    if rule.trigger.kind != timer.kind or (timer.payload or {}).get("trigger") != trigger_spec(rule.trigger):
        return f"the trigger of rule {timer.rule!r} changed"
    return None


def find_action(rule: CompiledRule, path: str):
    """The compiled action at ``path`` ("2", "2.2") of ``rule``, or None."""
    actions, found = rule.actions, None
    for part in path.split("."):
        if not part.isdigit() or not 0 < int(part) <= len(actions):
            return None
        found = actions[int(part) - 1]
        actions = found.children
    return found


def trigger_spec(trigger: n.Trigger) -> str:
    """The trigger as text, to notice when a rule's schedule changed."""
    if trigger.kind == "every":
        return f"every {trigger.every.amount} {trigger.every.unit}"
    return f"{trigger.days} days {trigger.direction} {trigger.field}" + (" yearly" if trigger.yearly else "")


def first_due(crm, trigger: n.Trigger, now: dt.datetime) -> dt.datetime:
    """When a newly seeded rule-wide timer is first due."""
    if trigger.kind == "every":
        return next_on_grid(now, period(trigger))
    # Today's run, even if its hour has passed: a date firing is idempotent per record and day.
    return local_hour(crm, crm.ctx.local_date(now))


def period(trigger: n.Trigger) -> dt.timedelta:
    return dt.timedelta(**{trigger.every.unit: trigger.every.amount})


def next_on_grid(now: dt.datetime, step: dt.timedelta) -> dt.datetime:
    """The first multiple of ``step`` (from ``GRID_ORIGIN``) strictly after ``now``."""
    return GRID_ORIGIN + ((now - GRID_ORIGIN) // step + 1) * step


def local_hour(crm, day: dt.date) -> dt.datetime:
    """``DATE_TRIGGER_HOUR`` o'clock on ``day`` in the company's time zone, as naive UTC."""
    hour = int(crm.config.get("DATE_TRIGGER_HOUR", 8))
    zone = zoneinfo.ZoneInfo(crm.settings.timezone)
    local = dt.datetime.combine(day, dt.time(hour), tzinfo=zone)
    return local.astimezone(dt.UTC).replace(tzinfo=None)


# --- firing ----------------------------------------------------------------------------


def fire_every(crm, timer, now: dt.datetime, resumed: bool = False) -> None:
    """Run an ``every N`` rule over its entity's records, then schedule its next run (in steps)."""
    rule = _live_rule(crm, timer)
    if rule is None:
        return _settle(crm, timer, now, None, None, "skipped", f"rule {timer.rule!r} is gone or changed")
    ce = crm.compiled.entities[rule.trigger.entity]
    firing = f"every@{timer.due_at.isoformat(timespec='minutes')}"
    matched = 0
    for page in _pages(ce.model.select(), ce.model):
        with crm.database.atomic():
            matched += sum(_plan(crm, rule, record, firing, resumed) for record in page)
    nxt = next_on_grid(now, period(rule.trigger))
    note = f"{matched} {ce.definition.label.lower()} record(s) matched; next run {nxt:%Y-%m-%d %H:%M} UTC"
    _settle(crm, timer, now, rule, nxt, "fired", note)


def fire_date(crm, timer, now: dt.datetime, resumed: bool = False) -> None:
    """Run a ``N days before|after FIELD`` rule for each day since its last run, then schedule the next."""
    rule = _live_rule(crm, timer)
    if rule is None:
        return _settle(crm, timer, now, None, None, "skipped", f"rule {timer.rule!r} is gone or changed")
    trigger = rule.trigger
    first = crm.ctx.local_date(timer.due_at)
    last = crm.ctx.local_date(now)
    if now < local_hour(crm, last):
        last -= dt.timedelta(days=1)  # today's hour has not come yet
    last = max(last, first)
    first = max(first, last - dt.timedelta(days=MAX_CATCH_UP_DAYS - 1))
    ce = crm.compiled.entities[trigger.entity]
    matched, day = 0, first
    while day <= last:
        offset = dt.timedelta(days=trigger.days)
        target = day + offset if trigger.direction == "before" else day - offset
        for page in _records_on(crm, ce, trigger, target):
            with crm.database.atomic():
                matched += sum(_plan(crm, rule, record, f"date@{day.isoformat()}", resumed) for record in page)
        day += dt.timedelta(days=1)
    nxt = local_hour(crm, last + dt.timedelta(days=1))
    days = f"{first}" if first == last else f"{first} to {last}"
    label = ce.definition.label.lower()
    note = f"{matched} {label} record(s) matched on {days}; next run {nxt:%Y-%m-%d %H:%M} UTC"
    _settle(crm, timer, now, rule, nxt, "fired", note)


def reschedule(crm, timer, now: dt.datetime) -> None:
    """After a firing given up (``runtime/timers.py``, in its transaction): the rule's next regular
    run, so that one failing firing does not end the rule's schedule until the next worker start."""
    rule = _live_rule(crm, timer)
    if rule is None:
        return
    if rule.trigger.kind == "every":
        nxt = next_on_grid(now, period(rule.trigger))
    else:
        nxt = local_hour(crm, crm.ctx.local_date(now) + dt.timedelta(days=1))
    _schedule_next(crm, timer, rule, nxt)


# Both work in steps: a transaction per page of records, then one that settles (runtime/timers.py).
fire_every.in_steps = fire_date.in_steps = True
fire_every.reschedule = fire_date.reschedule = reschedule


def _settle(crm, timer, now, rule: CompiledRule | None, nxt: dt.datetime | None, status: str, note: str) -> None:
    """Mark the firing done and schedule the next one, together."""
    with crm.database.atomic():
        crm.timers.settle(timer, now, status, note)  # frees the rule's timer key for the next one
        if rule is not None:
            _schedule_next(crm, timer, rule, nxt)


def _schedule_next(crm, timer, rule: CompiledRule, nxt: dt.datetime) -> None:
    crm.timers.schedule(
        timer.kind, f"{timer.kind}/{rule.name}", nxt, entity=rule.trigger.entity, rule=rule.name,
        payload={"trigger": trigger_spec(rule.trigger)}, repeat=True,
    )  # fmt: skip


def _live_rule(crm, timer) -> CompiledRule | None:
    rule = crm.compiled.rules.rules.get(timer.rule)
    if rule is None or obsolete(timer, crm.compiled.rules.rules) is not None:
        return None
    return rule


def _plan(crm, rule: CompiledRule, record, firing: str, resumed: bool) -> int:
    """Plan the rule's actions for ``record`` if its condition holds; 1 if it holds.

    ``resumed``: this firing ran before and stopped mid-way, so the record's
    actions may be planned already (their keys say so).
    """
    if not rule.matches(record, crm.ctx):
        return 0
    event_key = f"{firing}/{rule.trigger.entity}#{record.id}"
    if resumed and _planned(crm, f"{event_key}/{rule.name}/1"):
        return 1
    change = Change(entity=rule.trigger.entity, operation="time", record=record, audit_id=None, event_key=event_key)
    crm.outbox.plan(change, plan([(rule, reason_of(rule, record))]), crm.definition_version)
    return 1


def _planned(crm, key: str) -> bool:
    """Whether the first action with this key was planned (an outbox row, or a timer for a follow-up)."""
    Outbox, Timer = crm.tables.Outbox, crm.tables.Timer
    return Outbox.select().where(Outbox.key == key).exists() or Timer.select().where(Timer.key == key).exists()


def _pages(query, model, keep=None):
    """The records of ``query`` by id, ``BATCH`` at a time (``keep``: a filter in Python)."""
    last = 0
    while True:
        rows = list(query.where(model.id > last).order_by(model.id).limit(BATCH))
        if rows:
            page = [row for row in rows if keep is None or keep(row)]
            if page:
                yield page
        if len(rows) < BATCH:
            return
        last = rows[-1].id


def _records_on(crm, ce, trigger: n.Trigger, target: dt.date):
    """Pages of the records whose date field falls on ``target`` (yearly: on its month and day;
    a 29 February on 28 February in other years)."""
    model = ce.model
    column = getattr(model, trigger.field)
    leap_day = target.month == 2 and target.day == 28 and not _is_leap(target.year)
    days = {target.strftime("%m-%d")} | ({"02-29"} if leap_day else set())
    if ce.definition.fields[trigger.field].type == "datetime":
        # Stored as UTC: the company's local date decides.
        def fits(record) -> bool:
            local = crm.ctx.local_date(getattr(record, trigger.field))
            return local.strftime("%m-%d") in days if trigger.yearly else local == target

        return _pages(model.select().where(column.is_null(False)), model, fits)
    if not trigger.yearly:
        return _pages(model.select().where(column == target), model)
    # "YYYY-MM-DD" -> "MM-DD", on SQLite and PostgreSQL alike.
    month_day = pw.fn.SUBSTR(column.cast("TEXT"), 6, 5)
    return _pages(model.select().where(column.is_null(False) & month_day.in_(sorted(days)) & (column <= target)), model)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
