"""Pages across entities: the kanban board of a pipeline, the calendar and "my work".

All three are generated: boards from workflows, the calendar from the
entities' ``calendar`` fields, "my work" from owner fields, final stages and
``done`` fields.
"""

from __future__ import annotations

import calendar as cal
import datetime as dt

from flask import Blueprint, render_template, request, url_for

from ..compiler.compiled import CompiledEntity
from ..errors import NotFound
from . import present, reports
from .auth import actor
from .state import crm, formats

bp = Blueprint("boards", __name__)

CARDS_PER_STAGE = 50
MY_WORK_ROWS = 20


def _machine(name: str):
    for entity in crm().compiled.entities.values():
        for machine in entity.workflows.values():
            if machine.name == name:
                return entity, machine
    raise NotFound(f"there is no pipeline {name!r}")


def amount_field(ce: CompiledEntity):
    """The money field a card and a funnel show: the first one typed in (not computed)."""
    return next((s for s in ce.form.fields if s.type == "money" and not s.read_only), None)


@bp.get("/board/<workflow>")
def kanban(workflow: str):
    """A column per stage; cards move by drag and drop or by the card's own form."""
    ce, machine = _machine(workflow)
    who = actor()
    base = crm().records.select(ce.name, who)
    state = getattr(ce.model, machine.field)
    amount = amount_field(ce)
    owner = ce.definition.owner_field.name if ce.definition.owner_field else None
    users = present.user_names(crm().tables)
    fmt = formats()
    records_url = url_for("records.list_page", entity=ce.name)  # a record is at this + id: one url_for per board
    columns = []
    for stage in machine.states.values():
        query = base.where(state == stage.name)
        rows = list(query.order_by(ce.model.updated_at.desc()).limit(CARDS_PER_STAGE))
        cards = [
            {
                "record": r,
                "href": f"{records_url}{r.id}",
                "title": ce.title_of(r),
                "amount": fmt.money(getattr(r, amount.name), getattr(r, f"{amount.name}_currency"))
                if amount and getattr(r, amount.name) is not None
                else "",
                "owner": users.get(getattr(r, owner)) if owner and getattr(r, owner) else "",
                "moves": machine.transitions_from(stage.name),
            }
            for r in rows
        ]
        total = query.count() if len(rows) == CARDS_PER_STAGE else len(rows)
        columns.append({"stage": stage, "cards": cards, "total": total})
    can_move = crm().permissions.can(who, ce.name, "update")
    return render_template("web/kanban.html", ce=ce, machine=machine, columns=columns, can_move=can_move)


@bp.get("/calendar")
def calendar():
    """A month of the records that have calendar fields (activities: calls, meetings, tasks)."""
    month = _month(request.args.get("month"))
    mine = request.args.get("all") != "1"
    start = dt.date(month.year, month.month, 1)
    end = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    days: dict[dt.date, list[dict]] = {}
    for ce in _calendar_entities():
        for item in _calendar_items(ce, start, end, mine):
            days.setdefault(item["day"], []).append(item)
    for items in days.values():
        items.sort(key=lambda i: (i["time"] or "", i["title"].lower()))
    weeks = cal.Calendar(firstweekday=formats().locale.first_week_day).monthdatescalendar(month.year, month.month)
    previous_month = (start - dt.timedelta(days=1)).replace(day=1)
    return render_template(
        "web/calendar.html",
        month=start,
        weeks=weeks,
        days=days,
        mine=mine,
        previous_month=previous_month,
        next_month=end,
        today=crm().ctx.today(),
        weekday_names=[formats().locale.days["format"]["abbreviated"][d % 7] for d in _weekday_order()],
    )


def _weekday_order() -> list[int]:
    first = formats().locale.first_week_day
    return [(first + i) % 7 for i in range(7)]


def _month(text: str | None) -> dt.date:
    """The month asked for (``YYYY-MM``), else this month; years 2 to 9998 only, so the
    weeks around it and their UTC bounds stay inside the calendar."""
    this_month = crm().ctx.today().replace(day=1)
    try:
        month = dt.date.fromisoformat(f"{text}-01") if text else this_month
    except ValueError:
        return this_month
    return month if 2 <= month.year <= 9998 else this_month


def _calendar_entities() -> list[CompiledEntity]:
    who, permissions = actor(), crm().permissions
    return [
        ce
        for ce in crm().compiled.entities.values()
        if ce.definition.calendar and permissions.can(who, ce.name, "read")
    ]


def _calendar_items(ce: CompiledEntity, start: dt.date, end: dt.date, mine: bool) -> list[dict]:
    """Records of ``ce`` on the calendar between ``start`` and ``end``, each on its first filled calendar field."""
    fields = [ce.definition.fields[ref.name] for ref in ce.definition.calendar]
    query = crm().records.select(ce.name, actor())
    owner = ce.definition.owner_field
    if mine and owner:
        query = query.where(getattr(ce.model, owner.name) == actor().user_id)
    items = []
    for index, field in enumerate(fields):
        column = getattr(ce.model, field.name)
        lower, upper = (start, end) if field.type == "date" else _utc_bounds(start, end)
        q = query.where((column >= lower) & (column < upper))
        for earlier in fields[:index]:
            q = q.where(getattr(ce.model, earlier.name).is_null())
        for record in q.limit(500):
            value = getattr(record, field.name)
            if field.type == "datetime":
                local = formats().local(value)
                day, time = local.date(), local.strftime("%H:%M")
            else:
                day, time = value, None
            items.append(
                {
                    "day": day,
                    "time": time,
                    "title": ce.title_of(record),
                    "entity": ce,
                    "record": record,
                    "done": bool(getattr(record, ce.definition.done_field.name)) if ce.definition.done_field else False,
                }
            )
    return items


def _utc_bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    tz = formats().tz

    def utc(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), tz).astimezone(dt.UTC).replace(tzinfo=None)

    return utc(start), utc(end)


@bp.get("/my")
def my_work():
    """What is on the signed-in user's plate: open records they own, per entity."""
    who = actor()
    sections = []
    for ce in crm().compiled.entities.values():
        owner = ce.definition.owner_field
        if owner is None or not crm().permissions.can(who, ce.name, "read") or who.user_id is None:
            continue
        query = _open(ce, crm().records.select(ce.name, who).where(getattr(ce.model, owner.name) == who.user_id))
        rows = list(query.order_by(*_work_order(ce)).limit(MY_WORK_ROWS))
        if not rows:
            continue
        columns = [s for s in ce.list.columns if s.name != owner.name and not present.is_title(ce, s)][:4]
        sections.append(
            {
                "entity": ce,
                "columns": columns,
                "rows": present.rows(crm().compiled, crm().tables, ce, columns, rows, formats()),
                "total": query.count() if len(rows) == MY_WORK_ROWS else len(rows),
            }
        )
    return render_template("web/my_work.html", sections=sections, at_risk=at_risk(who))


AT_RISK_ROWS = 50


def at_risk(who) -> list[dict]:
    """Records of mine (or unassigned in my teams' queues) at risk of breaching their SLA, or breached."""
    items, now = [], crm().clock.utcnow()
    for ce in crm().compiled.entities.values():
        if not crm().permissions.can(who, ce.name, "read") or who.user_id is None:
            continue
        owner, team = ce.definition.owner_field, ce.definition.team_field
        for machine in ce.workflows.values():
            states = reports.sla_tracked_states(crm(), ce, machine)
            if not states or owner is None:
                continue
            mine = getattr(ce.model, owner.name) == who.user_id
            if team is not None and who.teams:
                queued = getattr(ce.model, owner.name).is_null() & getattr(ce.model, team.name).in_(list(who.teams))
                mine = mine | queued
            query = crm().records.select(ce.name, who).where(mine & getattr(ce.model, machine.field).in_(states))
            records = list(query.limit(1000))
            statuses = reports.sla_status(crm(), ce, machine, records, now)
            for record in records:
                status = statuses.get(record.id)
                if status is not None and status.bucket in (reports.AT_RISK, reports.BREACHED):
                    items.append({"entity": ce, "record": record, "title": ce.title_of(record), "status": status,
                                  "stage": machine.states[status.state].label})  # fmt: skip
    items.sort(key=lambda item: item["status"].due_at)
    return items[:AT_RISK_ROWS]


def _open(ce: CompiledEntity, query):
    """Not in a final stage of any workflow, and not marked done."""
    for field, machine in ce.workflows.items():
        finals = [s.name for s in machine.states.values() if s.final]
        if finals:
            query = query.where(getattr(ce.model, field).not_in(finals))
    done = ce.definition.done_field
    if done:
        column = getattr(ce.model, done.name)
        query = query.where((column == False) | column.is_null())  # noqa: E712
    return query


def _work_order(ce: CompiledEntity) -> list:
    """Soonest due first (records without a date last), then the most recently changed."""
    order = []
    for ref in ce.definition.calendar:
        column = getattr(ce.model, ref.name)
        order += [column.is_null(), column.asc()]
    return [*order, ce.model.updated_at.desc()]
