"""The generated lead form: field errors next to their fields, saving, labels
and the keyboard."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import expect

from .conftest import SALES_REP, fill_form, record_id, save_form


def test_field_errors_show_next_to_their_fields_and_a_corrected_lead_saves(signed_in_page, shot, unique):
    page = signed_in_page()
    page.goto("/r/lead/new")
    shot(page, "empty-form")
    fill_form(page, {"first_name": "Kim", "email": "not-an-email", "company": f"Adler {unique} GmbH"})
    save_form(page)
    shot(page, "field-errors")

    assert urlsplit(page.url).path == "/r/lead/new"
    expect(page.locator("[role=alert]")).to_contain_text("Please correct the fields marked below.")
    last_name_errors = page.locator("#f-last_name-errors")
    expect(last_name_errors).to_have_text("is required")
    expect(last_name_errors).to_have_class("error")
    expect(page.locator("#f-email-errors")).to_have_text("is not a valid email address")
    # Each message sits in its field's box and is what a screen reader announces for the input.
    expect(page.locator(".field.has-error:has(#f-last_name) p.error")).to_have_id("f-last_name-errors")
    expect(page.locator(".field.has-error:has(#f-email) p.error")).to_have_id("f-email-errors")
    expect(page.locator("#f-last_name")).to_have_attribute("aria-describedby", "f-last_name-errors")
    expect(page.locator("#f-email")).to_have_attribute("aria-describedby", "f-email-errors")
    # What was typed is still there.
    expect(page.locator("#f-first_name")).to_have_value("Kim")
    expect(page.locator("#f-email")).to_have_value("not-an-email")

    fill_form(page, {"last_name": f"Adler-{unique}", "email": f"kim.{unique}@lead.example", "country": "AT"})
    save_form(page)
    shot(page, "saved")

    record_id(page, "lead")
    expect(page.locator(".flash")).to_have_text("Lead saved.")
    expect(page.locator("h1")).to_have_text(f"Kim Adler-{unique}")
    fields = page.locator("dl.fields")
    expect(fields.locator("div:has(> dt:text-is('Last name')) dd")).to_have_text(f"Adler-{unique}")
    expect(fields.locator("div:has(> dt:text-is('Email')) dd")).to_have_text(f"kim.{unique}@lead.example")
    expect(fields.locator("div:has(> dt:text-is('Company')) dd")).to_have_text(f"Adler {unique} GmbH")
    expect(fields.locator("div:has(> dt:text-is('Country')) dd")).to_have_text("AT")
    expect(page.locator("section.timeline")).to_contain_text("Created by Ada Admin")


def test_a_sales_rep_can_open_the_lead_they_just_created(signed_in_page, shot, unique):
    # A referral lead: no routing rule reassigns it, so it stays the rep's own.
    page = signed_in_page(SALES_REP)
    page.goto("/r/lead/new")
    fill_form(page, {"last_name": f"Referral-{unique}", "source": "referral"})
    save_form(page)
    shot(page, "after-save")

    record_id(page, "lead")
    expect(page.locator("h1")).to_have_text(f"Referral-{unique}")
    expect(page.locator("dl.fields div:has(> dt:text-is('Owner')) dd")).to_have_text("Anna Schmidt")


VISIBLE_CONTROLS_WITHOUT_LABEL = """
form => [...form.querySelectorAll("input, select, textarea")]
  .filter(el => el.type !== "hidden" && el.checkVisibility())
  .filter(el => !(el.labels && [...el.labels].some(l => l.textContent.trim()))
                && !(el.getAttribute("aria-label") || "").trim()
                && !el.getAttribute("aria-labelledby"))
  .map(el => el.outerHTML)
"""


def test_every_control_of_the_lead_form_has_a_label_and_enter_submits_it(signed_in_page, shot, unique):
    page = signed_in_page()
    page.goto("/r/lead/new")
    shot(page, "form")
    form = page.locator("form.record-form")
    assert form.locator("input:visible, select:visible, textarea:visible").count() > 10
    assert form.evaluate(VISIBLE_CONTROLS_WITHOUT_LABEL) == []

    # The first Tab stop skips the navigation.
    page.keyboard.press("Tab")
    expect(page.locator("a.skip")).to_be_focused()

    page.focus("#f-last_name")
    page.keyboard.type(f"Keyboard-{unique}")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    shot(page, "saved")
    record_id(page, "lead")
    expect(page.locator("h1")).to_have_text(f"Keyboard-{unique}")
