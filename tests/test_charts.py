"""The server-drawn SVG charts: valid XML, escaped text, scaling, empty and odd data."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest
from markupsafe import Markup

from crm_platform.web.charts import NO_DATA, Series, bar_chart, column_chart, plain

SVG = "{http://www.w3.org/2000/svg}"
PAYLOAD = "<script>alert(1)</script>"


def parse(markup: Markup) -> ET.Element:
    """The chart as XML; fails the test if it is not well-formed."""
    assert isinstance(markup, Markup)
    return ET.fromstring(str(markup))


def rects(root: ET.Element) -> list[ET.Element]:
    """The data bars (legend swatches have no tooltip title)."""
    return [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]


def texts(root: ET.Element, cls: str) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text") if t.get("class") == cls]


def visible_texts(root: ET.Element, cls: str) -> list[str]:
    """Text shown on the chart (without the tooltip inside the element)."""
    return [(t.text or "") + "".join(c.tail or "" for c in t) for t in root.iter(f"{SVG}text") if t.get("class") == cls]


CHARTS = [bar_chart, column_chart]


def near(value: float):
    """Geometry is written with one decimal."""
    return pytest.approx(value, abs=0.1)


@pytest.mark.parametrize("chart", CHARTS)
def test_chart_is_an_accessible_svg_image_with_its_title(chart):
    root = parse(chart("Deals per stage", ["A", "B"], [Series("Deals", [1, 2])]))
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Deals per stage"
    assert root.find(f"{SVG}title").text == "Deals per stage"
    assert root.get("viewBox").startswith("0 0 ")
    assert root.get("width") is None and root.get("height") is None  # sized by the page, through the viewBox


@pytest.mark.parametrize("chart", CHARTS)
def test_every_text_is_escaped(chart):
    markup = chart(
        f'{PAYLOAD} "quoted" & more',
        [PAYLOAD, "a & b"],
        [Series(PAYLOAD, [1, 2]), Series('x" onload="alert(2)', [3, 4])],
        value_format=lambda value: f"{value} {PAYLOAD}",
    )
    assert "<script" not in markup
    assert 'onload="' not in markup
    root = parse(markup)
    assert all(element.tag != f"{SVG}script" for element in root.iter())
    assert root.get("aria-label") == f'{PAYLOAD} "quoted" & more'
    assert PAYLOAD in texts(root, "label")[0]
    assert any(PAYLOAD in t for t in texts(root, "value"))
    assert [
        legend.find(f"{SVG}title").text for legend in root.iter(f"{SVG}text") if legend.get("class") == "legend"
    ] == [
        PAYLOAD,
        'x" onload="alert(2)',
    ]


@pytest.mark.parametrize("chart", CHARTS)
def test_characters_xml_forbids_are_dropped(chart):
    root = parse(chart("Title\x00", ["bell\x07 label", "tab\tok"], [Series("s\x1b", [1, 2])]))
    assert "bell label" in texts(root, "label")[0]


@pytest.mark.parametrize("chart", CHARTS)
@pytest.mark.parametrize(
    "labels, series",
    [
        ([], []),
        ([], [Series("Deals", [])]),
        (["A", "B"], []),
        (["A", "B"], [Series("Deals", [None, None])]),
    ],
)
def test_no_data_says_so(chart, labels, series):
    root = parse(chart("Empty", labels, series))
    assert texts(root, "no-data") == [NO_DATA]
    assert rects(root) == []
    assert root.get("aria-label") == "Empty"


def test_bars_scale_to_the_largest_value():
    root = parse(bar_chart("Amounts", ["small", "large", "half"], [Series("Amount", [Decimal("25"), 100, 50.0])]))
    widths = [float(r.get("width")) for r in rects(root)]
    assert widths[1] > 0
    assert widths[0] == near(widths[1] / 4)
    assert widths[2] == near(widths[1] / 2)
    assert len({float(r.get("x")) for r in rects(root)}) == 1  # all start at the zero line


def test_columns_scale_to_the_largest_value_and_stand_on_the_baseline():
    root = parse(column_chart("Won", ["Jan", "Feb"], [Series("Won", [3, 6])]))
    bars = rects(root)
    heights = [float(r.get("height")) for r in bars]
    assert heights[0] == near(heights[1] / 2)
    bottoms = {round(float(r.get("y")) + float(r.get("height")), 1) for r in bars}
    assert len(bottoms) == 1


def test_grouped_bars_show_one_bar_per_series_and_label():
    root = parse(bar_chart("Funnel", ["A", "B", "C"], [Series("Amount", [1, 2, 3]), Series("Forecast", [1, 1, 1])]))
    assert len(rects(root)) == 6
    assert visible_texts(root, "legend") == ["Amount", "Forecast"]
    tips = [r.find(f"{SVG}title").text for r in rects(root)]
    assert tips[:2] == ["A, Amount: 1", "A, Forecast: 1"]


def test_stacked_bars_add_up_and_show_the_total():
    root = parse(
        bar_chart("SLA", ["New", "Open"], [Series("Within", [2, 0]), Series("Breached", [1, 4])], stacked=True)
    )
    bars = rects(root)
    new = [float(r.get("width")) for r in bars[:2]]
    assert new[0] == near(2 * new[1])
    # The second segment starts where the first ends.
    assert float(bars[1].get("x")) == near(float(bars[0].get("x")) + new[0])
    assert visible_texts(root, "value") == ["3", "4"]


def test_stacked_columns_show_the_total_on_top():
    root = parse(
        column_chart("Mix", ["Jan"], [Series("a", [Decimal("1.5")]), Series("b", [Decimal("2.5")])], stacked=True)
    )
    assert visible_texts(root, "value") == ["4"]


def test_negative_values_extend_left_of_the_zero_line():
    root = parse(bar_chart("Margin", ["loss", "profit"], [Series("Margin", [-50, 100])]))
    loss, profit = rects(root)
    zero = float(profit.get("x"))
    assert float(loss.get("x")) + float(loss.get("width")) == near(zero)
    assert float(loss.get("width")) == near(float(profit.get("width")) / 2)
    assert any(line.get("x1") == f"{zero:.1f}" for line in root.iter(f"{SVG}line"))


def test_negative_columns_hang_below_the_baseline():
    root = parse(column_chart("Change", ["a", "b"], [Series("Change", [-2, 4])]))
    down, up = rects(root)
    assert float(down.get("y")) == near(float(up.get("y")) + float(up.get("height")))
    assert visible_texts(root, "tick") == ["-2", "0", "2", "4"]


@pytest.mark.parametrize("chart", CHARTS)
def test_all_zero_values_draw_flat_bars(chart):
    root = parse(chart("Nothing won", ["Jan", "Feb"], [Series("Won", [0, 0])]))
    assert [float(r.get("width" if chart is bar_chart else "height")) for r in rects(root)] == [0.0, 0.0]


def test_a_tiny_value_next_to_a_huge_one_is_still_visible():
    root = parse(bar_chart("Skew", ["tiny", "huge"], [Series("Amount", [Decimal("0.01"), Decimal("1e12")])]))
    assert float(rects(root)[0].get("width")) >= 1


@pytest.mark.parametrize("chart", CHARTS)
def test_huge_and_non_finite_values_do_not_break_the_chart(chart):
    values = [Decimal("1e400"), float("inf"), float("nan"), 10**30, 5]
    root = parse(chart("Odd", ["a", "b", "c", "d", "e"], [Series("s", values)]))
    sizes = [float(r.get("width" if chart is bar_chart else "height")) for r in rects(root)]
    assert sizes[:3] == [0.0, 0.0, 0.0]  # not a number one can draw
    assert sizes[3] > sizes[4] >= 1


@pytest.mark.parametrize("chart", CHARTS)
def test_values_at_the_ends_of_the_float_range_do_not_break_the_chart(chart):
    parse(chart("Extremes", ["low", "high"], [Series("s", [-1.7e308, 1.7e308])]))


def test_value_format_is_used_for_values_and_ticks():
    def euro(value):
        return f"€{float(value):,.0f}"

    root = parse(column_chart("Money", ["Jan", "Feb"], [Series("Amount", [1500, 4000])], value_format=euro))
    assert visible_texts(root, "value") == ["€1,500", "€4,000"]
    assert visible_texts(root, "tick") == ["€0", "€1,000", "€2,000", "€3,000", "€4,000"]


def test_count_axes_have_whole_steps():
    root = parse(column_chart("Won", ["Jan"], [Series("Won", [1])]))
    assert visible_texts(root, "tick") == ["0", "1"]


def test_column_chart_grows_wider_with_more_groups():
    few = parse(column_chart("t", ["a"] * 3, [Series("s", [1] * 3)]))
    many = parse(column_chart("t", ["a"] * 40, [Series("s", [1] * 40)]))
    assert float(many.get("viewBox").split()[2]) > float(few.get("viewBox").split()[2])


def test_long_labels_are_shortened_with_the_full_text_as_tooltip():
    label = "A very long campaign name that goes on and on"
    root = parse(bar_chart("t", [label], [Series("s", [1])]))
    shown = visible_texts(root, "label")[0]
    assert shown.endswith("\u2026") and len(shown) <= 28
    assert [t.text for t in root.iter(f"{SVG}title")][1] == label


def test_missing_values_leave_a_gap():
    root = parse(bar_chart("t", ["a", "b"], [Series("s", [1, None])]))
    assert len(rects(root)) == 1


@pytest.mark.parametrize(
    "value, text",
    [(None, ""), (3, "3"), (Decimal("2.50"), "2.50"), (2.0, "2"), (-7, "-7"), (1e20, "1e+20"), (float("inf"), "inf")],
)
def test_plain_formats_numbers(value, text):
    assert plain(value) == text
