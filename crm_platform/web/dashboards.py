"""The dashboards page: charts drawn on the server from the reports.

Each chart is a ``Panel``: a heading, a sentence saying what is counted, the
SVG, and the same numbers as a table (for screen readers, and for anyone who
wants the exact figures). Which panels there are follows from the
definitions and from what the signed-in user may read; see ``reports``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from babel.dates import format_date
from flask import Blueprint, render_template, url_for
from markupsafe import Markup

from ..runtime import sla
from . import reports
from .auth import actor
from .charts import Series, bar_chart, column_chart
from .formats import Formats
from .state import crm, formats

bp = Blueprint("dashboards", __name__, url_prefix="/dashboards")

GOOD, WARN, BAD = "#1e7b34", "#c9a227", "#b42318"
SLA_COLORS = {reports.WITHIN: GOOD, reports.AT_RISK: WARN, reports.BREACHED: BAD, reports.PAUSED: "#6b7280"}


@dataclass(frozen=True)
class Panel:
    """One card of the dashboard."""

    title: str
    note: str
    chart: Markup
    columns: list[str]  # the table's headings; the first one heads the row labels
    rows: list[list[str]]
    link: tuple[str, str] | None = None  # (url, text) to the records behind the numbers


@bp.get("/")
def index():
    """Every dashboard the signed-in user may see."""
    c, who, f = crm(), actor(), formats()
    funnels = reports.funnels(c, who)
    per_workflow = Counter(funnel.workflow for funnel in funnels)
    panels = [
        *[funnel_panel(funnel, f, per_workflow[funnel.workflow] > 1) for funnel in funnels],
        *[outcome_panel(trend, f) for trend in reports.outcome_trends(c, who)],
        *[source_panel(conversion, f) for conversion in reports.source_conversions(c, who)],
        *[sla_panel(overview, f) for overview in reports.sla_overviews(c, who, c.ctx.now())],
        *[membership_panel(result, f) for result in reports.membership_results(c, who)],
    ]
    return render_template("web/dashboard.html", panels=panels)


def _plural(entity: str) -> str:
    return crm().compiled.entities[entity].definition.plural


def _list_link(entity: str) -> tuple[str, str]:
    return url_for("records.list_page", entity=entity), f"All {_plural(entity).lower()}"


def funnel_panel(funnel: reports.Funnel, f: Formats, name_currency: bool = False) -> Panel:
    """Amount and forecast per stage (or the number of records, without a money field)."""
    title = f"{funnel.label}: funnel" + (f" ({funnel.currency})" if name_currency else "")
    labels = [f"{s.label} ({f.number(s.count)})" for s in funnel.stages]
    plural = _plural(funnel.entity).lower()
    link = (url_for("boards.kanban", workflow=funnel.workflow), f"{funnel.label} board")
    if funnel.amount_label is None:
        chart = bar_chart(title, labels, [Series("Records", [s.count for s in funnel.stages])], value_format=f.number)
        rows = [[s.label, f.number(s.count)] for s in funnel.stages]
        return Panel(title, f"Open {plural} per stage, and those won.", chart, ["Stage", "Records"], rows, link)

    def money(value) -> str:
        return f.money(value, funnel.currency)

    series = [
        Series(funnel.amount_label, [s.amount for s in funnel.stages]),
        Series("Forecast", [s.forecast for s in funnel.stages]),
    ]
    chart = bar_chart(title, labels, series, value_format=money)
    rows = [[s.label, f.number(s.count), money(s.amount), money(s.forecast)] for s in funnel.stages]
    note = f"Open {plural} per stage, and those won. Forecast: {funnel.amount_label.lower()} × probability."
    return Panel(title, note, chart, ["Stage", "Records", funnel.amount_label, "Forecast"], rows, link)


def outcome_panel(trend: reports.OutcomeTrend, f: Formats) -> Panel:
    """Records won and lost per month, as pairs of columns."""
    title = f"{trend.label}: won and lost per month"
    labels = month_labels([m.month for m in trend.months], f)
    series = [
        Series("Won", [m.won for m in trend.months], GOOD),
        Series("Lost", [m.lost for m in trend.months], BAD),
    ]
    chart = column_chart(title, labels, series, value_format=f.number)
    rows = [
        [format_date(m.month, "MMMM yyyy", locale=f.locale), f.number(m.won), f.number(m.lost)] for m in trend.months
    ]
    plural = _plural(trend.entity).lower()
    won, lost = ", ".join(trend.won_states) or "–", ", ".join(trend.lost_states) or "–"
    note = f"{plural.capitalize()} moved to {won} (won) or {lost} (lost), per month."
    return Panel(title, note, chart, ["Month", "Won", "Lost"], rows, _list_link(trend.entity))


def month_labels(months: list, f: Formats) -> list[str]:
    """Short month names, with the year under the first month and under each January."""
    return [
        format_date(m, "LLL", locale=f.locale) + (f"\n{m.year}" if i == 0 or m.month == 1 else "")
        for i, m in enumerate(months)
    ]


def source_panel(conversion: reports.SourceConversion, f: Formats) -> Panel:
    """The share of records per source that were won."""
    plural = _plural(conversion.entity)
    title = f"{plural}: conversion by {conversion.field_label.lower()}"
    labels = [row.label for row in conversion.rows]
    chart = bar_chart(
        title, labels, [Series("Conversion rate", [row.rate for row in conversion.rows])], value_format=f.percent
    )
    rows = [[row.label, f.number(row.total), f.number(row.won), f.percent(row.rate) or "–"] for row in conversion.rows]
    won = ", ".join(conversion.won_states)
    note = f"{plural} per {conversion.field_label.lower()}, and the share of them now in {won}."
    return Panel(
        title,
        note,
        chart,
        [conversion.field_label, plural, won, "Conversion rate"],
        rows,
        _list_link(conversion.entity),
    )


def sla_panel(overview: reports.SlaOverview, f: Formats) -> Panel:
    """Open records per SLA state, stacked by within / at risk / breached."""
    title = f"{overview.label}: SLA status"
    if overview.policies:  # targets per priority in business time: no hours per stage
        return _policy_sla_panel(overview, f, title)
    labels = [f"{s.label} ({f.number(s.sla_hours)} h)" for s in overview.states]
    series = [
        Series(label, [s.counts[bucket] for s in overview.states], SLA_COLORS[bucket])
        for bucket, label in reports.SLA_LABELS.items()
    ]
    chart = bar_chart(title, labels, series, value_format=f.number, stacked=True)
    rows = [
        [s.label, f.number(s.sla_hours), *[f.number(s.counts[b]) for b in reports.SLA_LABELS], f.number(s.total)]
        for s in overview.states
    ]
    rows.append(
        [
            "Total",
            "",
            *[f.number(overview.count(b)) for b in reports.SLA_LABELS],
            f.number(sum(s.total for s in overview.states)),
        ]
    )
    plural = _plural(overview.entity).lower()
    note = (
        f"Open {plural} by the time spent in their stage against its SLA: "
        f"at risk from {f.number(int(reports.AT_RISK_FROM * 100))} %, breached past 100 %."
    )
    columns = ["Stage", "SLA (hours)", *reports.SLA_LABELS.values(), "Total"]
    return Panel(title, note, chart, columns, rows, _list_link(overview.entity))


def _policy_sla_panel(overview: reports.SlaOverview, f: Formats, title: str) -> Panel:
    """Open records per stage by where they stand against their SLA policy."""
    buckets = overview.buckets
    labels = [s.label for s in overview.states]
    series = [
        Series(label, [s.counts[bucket] for s in overview.states], SLA_COLORS[bucket])
        for bucket, label in buckets.items()
    ]
    chart = bar_chart(title, labels, series, value_format=f.number, stacked=True)
    rows = [[s.label, *[f.number(s.counts[b]) for b in buckets], f.number(s.total)] for s in overview.states]
    rows.append(
        ["Total", *[f.number(overview.count(b)) for b in buckets], f.number(sum(s.total for s in overview.states))]
    )
    plural = _plural(overview.entity).lower()
    note = (
        f"Open {plural} against {', '.join(overview.policies)} (business hours; paused while waiting on the "
        f"customer): at risk from {f.number(sla.AT_RISK_PERCENT)} % of the running target, breached past 100 %."
    )
    columns = ["Stage", *buckets.values(), "Total"]
    return Panel(title, note, chart, columns, rows, _list_link(overview.entity))


def membership_panel(result: reports.MembershipResult, f: Formats) -> Panel:
    """Members per status for the largest groups (campaign members per campaign)."""
    members, targets = _plural(result.entity), _plural(result.target)
    status_label = crm().compiled.entities[result.entity].definition.fields[reports.STATUS_FIELD].label
    title = f"{targets}: {members.lower()} by {status_label.lower()}"
    labels = [group.title for group in result.groups]
    series = [Series(label, [g.counts.get(value, 0) for g in result.groups]) for value, label in result.statuses]
    chart = bar_chart(title, labels, series, value_format=f.number, stacked=True)
    rows = [
        [g.title, *[f.number(g.counts.get(value, 0)) for value, _ in result.statuses], f.number(g.total)]
        for g in result.groups
    ]
    note = (
        f"The {f.number(reports.MEMBERSHIP_TOP)} {targets.lower()} with the most {members.lower()}, "
        f"by {status_label.lower()}."
    )
    columns = [
        crm().compiled.entities[result.target].definition.label,
        *[label for _, label in result.statuses],
        "Total",
    ]
    return Panel(title, note, chart, columns, rows, _list_link(result.entity))
