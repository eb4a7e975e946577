"""On a phone (375 px wide) the list and record pages fit the screen: no sideways scrolling."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from .conftest import create_record

PHONE = {"width": 375, "height": 740}

# What sticks out to the right of the screen, for the failure message.
WIDER_THAN_SCREEN = """
() => [...document.querySelectorAll("body *")]
  .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1)
  .filter(el => !el.closest(".table-wrap, .board"))
  .slice(0, 5)
  .map(el => `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${[...el.classList].join(".")}`
             + ` right=${Math.round(el.getBoundingClientRect().right)}`)
"""


def assert_fits_the_screen(page: Page) -> None:
    scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert inner_width == PHONE["width"]
    too_wide = page.evaluate(WIDER_THAN_SCREEN) if scroll_width > inner_width + 1 else []
    assert scroll_width <= inner_width + 1, f"{page.url} is {scroll_width} px wide on {inner_width} px: {too_wide}"


def test_the_lead_list_and_a_lead_fit_a_phone_screen(signed_in_page, shot, unique):
    # A plain 375 px viewport, not Chromium's mobile emulation: that zooms a page out to fit what
    # sticks out, so window.innerWidth grows with the page and the overflow would go unnoticed.
    page = signed_in_page(viewport=PHONE)
    lead = create_record(
        page,
        "lead",
        {
            "first_name": "Maximiliane",
            "last_name": f"Oberhauser-Wittgenstein-{unique}",
            "email": f"maximiliane.oberhauser-wittgenstein.{unique}@a-rather-long-company-domain.example",
            "company": "Oberhauser und Wittgenstein Industrieanlagenbau GmbH & Co. KG",
            "website": "https://www.a-rather-long-company-domain.example/about-us/our-team",
            "country": "DE",
            "notes": "A very long note without spaces: " + "x" * 120,
        },
    )

    page.goto(f"/r/lead/?q={unique}")
    shot(page, "list")
    expect(page.locator("table.records tbody tr:has(a)")).to_have_count(1)
    assert_fits_the_screen(page)

    page.goto(f"/r/lead/{lead}")
    shot(page, "record")
    expect(page.locator("section.timeline")).to_be_visible()
    assert_fits_the_screen(page)
