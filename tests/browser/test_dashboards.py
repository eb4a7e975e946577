"""The dashboards page draws its charts as SVG on the server."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import create_record


def test_the_dashboards_page_shows_svg_charts(signed_in_page, shot, unique):
    page = signed_in_page()
    create_record(page, "deal", {"name": f"Chart {unique}", "amount": "12000"})
    page.goto("/dashboards/")
    shot(page, "dashboards")
    expect(page.locator("h1")).to_have_text("Dashboards")
    charts = page.locator("svg.chart")
    assert charts.count() >= 1, "no svg.chart on /dashboards/"
    first = charts.first
    expect(first).to_be_visible()
    expect(first).to_have_attribute("role", "img")
    assert first.get_attribute("aria-label"), "a chart without a text alternative"
    box = first.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 20, f"the chart is not drawn at a readable size: {box}"
