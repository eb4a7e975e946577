"""``flask --app app timers list|run|stop``: the timers (follow-up steps,
time-triggered rules) and the due work, as of now or as of a given moment.

``timers run --at 2026-12-01T10:00`` runs what is due at that moment with a
fixed clock: for tests, backfills and dry runs.
"""

from __future__ import annotations

import datetime as dt

import click
from flask import current_app
from flask.cli import AppGroup

from .runtime.clock import FixedClock
from .runtime.due_work import run_due_work
from .runtime.timers import describe

timers_cli = AppGroup("timers", help="Follow-up steps and time-triggered rules waiting for their time.")


def parse_moment(value: str) -> dt.datetime:
    """``2026-12-01T10:00`` (UTC) or with an offset (``+01:00``), as naive UTC."""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date and time like 2026-12-01T10:00", param_hint="--at") from None
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def timer_line(timer) -> str:
    """One timer as ``timers list`` shows it."""
    record = f"{timer.entity} #{timer.record_id}" if timer.record_id is not None else f"every {timer.entity or '-'}"
    step = f"  step {timer.step}" if timer.step else ""
    due = f"{timer.due_at:%Y-%m-%d %H:%M}"
    line = f"#{timer.id}  {due}  {timer.status:<9} {timer.kind:<10} {record}  rule {timer.rule!r}{step}"
    return line if timer.status == "pending" or not timer.note else f"{line}  ({timer.note})"


@timers_cli.command("list")
@click.option("--all", "everything", is_flag=True, help="Also timers that fired or were cancelled.")
def timers_list_command(everything: bool) -> None:
    """List pending timers, soonest first: due (UTC), kind, record, rule, step."""
    timers = current_app.extensions["crm"].timers.pending(include_done=everything)
    for timer in timers:
        click.echo(timer_line(timer))
    if not timers:
        click.echo("no timers" if everything else "no pending timers")


@timers_cli.command("run")
@click.option("--at", "at", help="Run what is due at this moment (UTC, e.g. 2026-12-01T10:00) instead of now.")
def timers_run_command(at: str | None) -> None:
    """Fire every timer due now (or --at a moment) and print what fired."""
    crm = current_app.extensions["crm"]
    if at is not None:
        moment = parse_moment(at)
        if "clock" in crm.__dict__:  # the engine's parts already read the clock: too late to set it
            raise click.ClickException("--at must be given before the engine starts")
        crm.config["CLOCK"] = FixedClock(moment)
    crm.init_db()
    now = crm.clock.utcnow()
    done = run_due_work(crm, now)
    Timer = crm.tables.Timer
    for timer in Timer.select().where((Timer.fired_at == now) & (Timer.status != "pending")).order_by(Timer.id):
        click.echo(f"#{timer.id} {timer.status:<9} {describe(timer)}: {timer.note or ''}")
    counts = ", ".join(f"{name}: {n}" for name, n in done.items())
    click.echo(f"as of {now:%Y-%m-%d %H:%M} UTC: {counts}")


@timers_cli.command("stop")
@click.argument("timer_id", type=int)
def timers_stop_command(timer_id: int) -> None:
    """Stop a pending timer (a follow-up: the rest of its sequence too)."""
    try:
        line = current_app.extensions["crm"].timers.stop(timer_id, by="an admin (command line)")
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(line)
