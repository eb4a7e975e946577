"""The public web-to-lead form (schemas/lead.yaml, forms.web_to_lead): no
sign-in, field errors, the thank-you text, and the honeypot that bots fill."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import Page, expect

from .conftest import fill_form

THANK_YOU = "Thanks, we will be in touch."


def send(page: Page) -> None:
    with page.expect_navigation():
        page.click("main form button[type=submit]")


def leads_found(page: Page, query: str) -> int:
    page.goto(f"/r/lead/?q={query}")
    expect(page.locator("h1")).to_contain_text("Leads")
    return page.locator("table.records tbody tr:has(a)").count()


def test_a_visitor_sends_the_web_to_lead_form_and_the_lead_exists(page, signed_in_page, shot, unique):
    page.goto("/forms/web_to_lead")
    shot(page, "form")
    assert urlsplit(page.url).path == "/forms/web_to_lead", "the public form asked for a sign-in"
    expect(page.locator("h1")).to_have_text("Contact sales")

    fill_form(page, {"first_name": "Vera", "email": f"vera.{unique}@visitor.example", "country": "CH"})
    page.check("input[name=interests][value=helpdesk]")
    send(page)
    shot(page, "missing-last-name")
    expect(page.locator("[role=alert]")).to_contain_text("Please correct the fields marked below.")
    expect(page.locator("#f-last_name-errors")).to_have_text("is required")
    expect(page.locator("#f-first_name")).to_have_value("Vera")
    expect(page.locator("input[name=interests][value=helpdesk]")).to_be_checked()

    fill_form(page, {"last_name": f"Visitor-{unique}"})
    send(page)
    shot(page, "thanks")
    expect(page.locator("p.thanks")).to_have_text(THANK_YOU)

    admin = signed_in_page()
    assert leads_found(admin, unique) == 1
    shot(admin, "found-by-admin")
    row = admin.locator("table.records tbody tr:has(a)")
    expect(row).to_contain_text(f"Visitor-{unique}")
    expect(row).to_contain_text("CH")
    with admin.expect_navigation():
        row.locator("a").first.click()
    shot(admin, "lead")
    expect(admin.locator("section.timeline")).to_contain_text("Created")
    expect(admin.locator("section.timeline")).to_contain_text("through form")
    expect(admin.locator("dl.fields div:has(> dt:text-is('Interested in')) dd")).to_have_text("Helpdesk")


def test_a_filled_honeypot_gets_thanked_but_creates_no_lead(page, signed_in_page, shot, unique):
    page.goto("/forms/web_to_lead")
    expect(page.locator("#website_address")).not_to_be_in_viewport()
    expect(page.locator("#website_address")).to_have_attribute("tabindex", "-1")
    fill_form(page, {"first_name": "Bot", "last_name": f"Honeypot-{unique}", "email": f"bot.{unique}@spam.example"})
    # People never see the field; a bot fills every input it finds.
    page.locator("#website_address").evaluate("input => { input.value = 'http://spam.example'; }")
    send(page)
    shot(page, "thanks")
    expect(page.locator("p.thanks")).to_have_text(THANK_YOU)

    admin = signed_in_page()
    assert leads_found(admin, unique) == 0
    shot(admin, "not-found")
    expect(admin.locator("table.records tbody")).to_have_text("No leads match.")
