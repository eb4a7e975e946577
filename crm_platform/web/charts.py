"""Charts as inline SVG, drawn on the server: no script, no CDN, no fonts to load.

Two pure functions, ``bar_chart`` (horizontal bars) and ``column_chart``
(vertical bars, e.g. one group per month), each taking labels, one or more
``Series`` of numbers and a formatter for the values shown. They return
``Markup`` ready for a template.

Every text that ends up in the SVG (title, labels, series names, formatted
values) is escaped and stripped of characters XML does not allow: labels come
from admins (stage and option labels) and from users (record titles). The
chart scales through its ``viewBox``; an empty chart says "No data yet".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup, escape

Number = int | float | Decimal | None

PALETTE = ("#1f5fbf", "#e8833a", "#1e7b34", "#b42318", "#7c5cbf", "#3e9fb0", "#c9a227", "#616e7c")
NO_DATA = "No data yet"

# Characters XML 1.0 forbids even as entities: a label containing one would make the page's SVG invalid.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Series:
    """One row of numbers, one per label; ``None`` is drawn as nothing."""

    name: str
    values: Sequence[Number]
    color: str | None = None  # a CSS colour; the palette's next one if not given


def plain(value: Number) -> str:
    """The default value formatter: whole numbers without decimals, others with two."""
    if value is None:
        return ""
    if not _finite(value):
        return str(value)
    number = float(value)
    if abs(number) >= 1e15:
        return f"{number:.4g}"
    return str(int(number)) if number == int(number) else f"{number:.2f}"


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    value_format: Callable[[Number], str] = plain,
    stacked: bool = False,
    width: int = 640,
) -> Markup:
    """Horizontal bars, one row per label: side by side per series, or stacked.

    ``value_format`` turns a value (or a stacked row's total) into the text at
    the bar's end. Negative values extend left of the zero line.
    """
    if _empty(labels, series):
        return _no_data(title, width)
    colors = _colors(series)
    legend, top = _legend(series, colors, width) if len(series) > 1 else ([], 0)
    top += 6
    x0, x1 = min(200, width // 3), width - min(150, width // 4)
    bar, gap = (18, 0) if stacked or len(series) == 1 else (13, 2)
    row = bar if stacked else len(series) * (bar + gap) - gap
    row_gap = 10
    lo, hi = _domain(series, len(labels), stacked)
    scale = _Scale(lo, hi, x0, x1)
    zero = scale(0)
    parts = [*legend]
    for index, label in enumerate(labels):
        y = top + index * (row + row_gap)
        parts.append(
            f'<text class="label" x="{x0 - 8}" y="{y + row / 2 + 4:.1f}" text-anchor="end">'
            f"<title>{_text(label)}</title>{_text(_short(label, 28))}</text>"
        )
        bars = _bars(series, colors, index, stacked)
        for item in bars:
            left, size = _extent(scale(item.start), scale(item.end), item.end != item.start)
            bar_y = y if stacked else y + item.slot * (bar + gap)
            parts.append(
                f'<rect x="{left:.1f}" y="{bar_y:.1f}" width="{size:.1f}" height="{bar}" fill="{_text(item.color)}">'
                f"<title>{_tip(label, item, value_format, len(series) > 1)}</title></rect>"
            )
            if not stacked:
                parts.append(_value_text(max(left + size, zero) + 4, bar_y + bar / 2 + 4, value_format(item.value)))
        if stacked and bars:
            end = max(scale(max(b.end for b in bars)), zero)
            total = _total(b.value for b in bars)
            parts.append(_value_text(end + 4, y + bar / 2 + 4, value_format(total)))
    height = top + len(labels) * (row + row_gap) + 4
    if lo < 0:
        parts.append(f'<line x1="{zero:.1f}" y1="{top - 2}" x2="{zero:.1f}" y2="{height - 4}" stroke="#616e7c"/>')
    return _svg(title, width, height, parts)


def column_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    value_format: Callable[[Number], str] = plain,
    stacked: bool = False,
    height: int = 260,
) -> Markup:
    """Vertical bars, one group per label (months, say): side by side per series, or stacked.

    A light grid with a few round values (formatted by ``value_format``)
    gives the scale; each column (or stack) carries its value on top. A
    label may have several lines (``"Jan\\n2026"``). The chart grows wider
    with the number of groups; the page scales it to fit.
    """
    if _empty(labels, series):
        return _no_data(title, 640)
    colors = _colors(series)
    column = 22 if stacked else 14
    group = (column if stacked else len(series) * column) + 14
    left, right = 70, 10
    width = max(480, left + right + len(labels) * group)
    legend, top = _legend(series, colors, width) if len(series) > 1 else ([], 0)
    top += 16
    lines = max((len(str(label).split("\n")) for label in labels), default=1)
    bottom = height - 10 - 14 * lines
    lo, hi = _domain(series, len(labels), stacked)
    ticks = _ticks(lo, hi)
    scale = _Scale(min(lo, ticks[0]), max(hi, ticks[-1]), bottom, top)  # y grows downwards
    parts = [*legend]
    for tick in ticks:
        y = scale(tick)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#d9e2ec"/>'
            f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_text(value_format(tick))}</text>'
        )
    zero = scale(0)
    for index, label in enumerate(labels):
        x = left + index * group + 7
        bars = _bars(series, colors, index, stacked)
        for item in bars:
            upper, size = _extent(scale(item.start), scale(item.end), item.end != item.start)
            column_x = x if stacked else x + item.slot * column
            parts.append(
                f'<rect x="{column_x:.1f}" y="{upper:.1f}" width="{column - 2}" height="{size:.1f}" '
                f'fill="{_text(item.color)}"><title>{_tip(label, item, value_format, len(series) > 1)}</title></rect>'
            )
            if not stacked and _float(item.value) != 0:  # a row of zeros would only be noise
                middle = column_x + (column - 2) / 2
                parts.append(_value_text(middle, min(upper, zero) - 3, value_format(item.value), "middle"))
        if stacked and any(_float(b.value) != 0 for b in bars):
            upper = min(scale(max(b.end for b in bars)), zero)
            total = _total(b.value for b in bars)
            parts.append(_value_text(x + (column - 2) / 2, upper - 3, value_format(total), "middle"))
        middle = x + (group - 14) / 2
        shown = "".join(
            f'<tspan x="{middle:.1f}" dy="{0 if n == 0 else 14}">{_text(_short(line, 10))}</tspan>'
            for n, line in enumerate(str(label).split("\n"))
        )
        parts.append(
            f'<text class="label" x="{middle:.1f}" y="{bottom + 16:.1f}" text-anchor="middle">'
            f"<title>{_text(label)}</title>{shown}</text>"
        )
    parts.append(f'<line x1="{left}" y1="{zero:.1f}" x2="{width - right}" y2="{zero:.1f}" stroke="#616e7c"/>')
    return _svg(title, width, height, parts)


# --- the parts -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Bar:
    """One drawn bar (or stack segment), in value space."""

    slot: int  # the series' place in its group
    name: str
    color: str
    value: Number
    start: float
    end: float


def _bars(series: Sequence[Series], colors: list[str], index: int, stacked: bool) -> list[_Bar]:
    """The bars of one label: from zero each, or stacked (positive values right/up, negative left/down)."""
    bars, ends = [], {True: 0.0, False: 0.0}
    for slot, (item, color) in enumerate(zip(series, colors, strict=True)):
        value = _value(item.values, index)
        if value is None:
            continue
        amount = _float(value)
        if stacked:
            side = amount >= 0
            start, ends[side] = ends[side], ends[side] + amount
            bars.append(_Bar(slot, item.name, color, value, start, ends[side]))
        else:
            bars.append(_Bar(slot, item.name, color, value, 0.0, amount))
    return bars


def _extent(a: float, b: float, nonzero: bool) -> tuple[float, float]:
    """Where a bar between positions ``a`` and ``b`` starts and how long it is (a tiny value still shows)."""
    low, size = min(a, b), abs(b - a)
    return low, max(size, 1.0) if nonzero else size


def _tip(label: str, bar: _Bar, value_format: Callable[[Number], str], named: bool) -> str:
    what = f"{label}, {bar.name}" if named else label
    return _text(f"{what}: {value_format(bar.value)}")


def _value_text(x: float, y: float, text: str, anchor: str = "start") -> str:
    return f'<text class="value" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{_text(text)}</text>'


class _Scale:
    """Maps values in ``[lo, hi]`` onto ``[start, end]`` (either direction)."""

    def __init__(self, lo: float, hi: float, start: float, end: float):
        self.lo, self.span = lo, (hi - lo) or 1.0
        self.start, self.length = start, end - start

    def __call__(self, value: float) -> float:
        return self.start + (value - self.lo) / self.span * self.length


def _svg(title: str, width: int, height: int, parts: list[str]) -> Markup:
    label = _text(title)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{label}" font-family="system-ui, sans-serif" font-size="12">'
        f"<title>{label}</title>{''.join(parts)}</svg>"
    )


def _no_data(title: str, width: int) -> Markup:
    return _svg(
        title,
        width,
        60,
        [f'<text class="no-data" x="{width / 2:.0f}" y="34" text-anchor="middle" fill="#616e7c">{NO_DATA}</text>'],
    )


def _legend(series: Sequence[Series], colors: list[str], width: int) -> tuple[list[str], int]:
    """A swatch and name per series, in as many lines as it takes; returns the parts and their height."""
    parts, x, y = [], 8.0, 6
    for item, color in zip(series, colors, strict=True):
        name = _short(item.name, 24)
        size = 16 + 7 * len(name) + 16  # roughly: swatch, text at 12px, gap
        if x > 8 and x + size > width:
            x, y = 8.0, y + 18
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="12" height="12" fill="{_text(color)}"/>'
            f'<text class="legend" x="{x + 16:.1f}" y="{y + 10}"><title>{_text(item.name)}</title>{_text(name)}</text>'
        )
        x += size
    return parts, y + 22


def _colors(series: Sequence[Series]) -> list[str]:
    return [item.color or PALETTE[index % len(PALETTE)] for index, item in enumerate(series)]


def _empty(labels: Sequence[str], series: Sequence[Series]) -> bool:
    return not labels or not series or all(_value(s.values, i) is None for s in series for i in range(len(labels)))


def _value(values: Sequence[Number], index: int) -> Number:
    return values[index] if index < len(values) else None


def _float(value: Number) -> float:
    """The value for geometry: what is not a finite number is drawn as zero."""
    return float(value) if _finite(value) else 0.0


def _finite(value: Number) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def _total(values) -> Number:
    """The sum of a stack, exact where the values allow (Decimals stay Decimal)."""
    finite = [v for v in values if _finite(v)]
    try:
        return sum(finite, start=0)
    except TypeError:  # floats and Decimals mixed
        return sum(_float(v) for v in finite)


def _domain(series: Sequence[Series], count: int, stacked: bool) -> tuple[float, float]:
    """The smallest and largest value drawn (always including zero)."""
    lo = hi = 0.0
    for index in range(count):
        values = [_float(v) for s in series if (v := _value(s.values, index)) is not None]
        if stacked:
            lo = min(lo, sum(v for v in values if v < 0))
            hi = max(hi, sum(v for v in values if v > 0))
        elif values:
            lo, hi = min(lo, *values), max(hi, *values)
    return lo, hi


def _ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round grid values covering ``[lo, hi]``: steps of 1, 2 or 5 times a power of ten."""
    span = hi - lo
    if not 0 < span < math.inf:  # nothing to scale, or beyond what floats can span
        return [0.0, 1.0]
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if step < 1 and lo == int(lo) and hi == int(hi):
        step = 1.0  # counts: no half records on the axis
    # Rounded so that 3 * 0.1 is 0.3 on the axis; "+ 0.0" turns -0.0 into 0.0.
    return [round(k * step, 12) + 0.0 for k in range(math.floor(lo / step), math.ceil(hi / step) + 1)]


def _short(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _text(value) -> str:
    """Text content for the SVG: escaped, without characters XML forbids."""
    return str(escape(_NOT_XML.sub("", str(value))))
