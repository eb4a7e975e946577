"""The import wizard in a browser: a changed column choice previews again by
itself, and the job's page follows the import on the embedded worker until it
is done, without a reload by hand."""

from __future__ import annotations

import re

from playwright.sync_api import expect


def test_the_mapping_previews_on_change_and_the_job_page_follows_the_import(signed_in_page, shot, unique):
    page = signed_in_page("maria@demo.example.com")  # a sales manager: sets lead scores
    rows = [f"Ann{n},Lee{n}-{unique},ann{n}-{unique}@example.com,Firm {n},{n}" for n in range(40)]
    rows[5] = f"Bad,Row-{unique},bad-{unique}@example.com,Firm,lots"
    data = ("First name,Last name,Email,Company,Lead score\n" + "\n".join(rows) + "\n").encode()
    page.goto("/")
    page.get_by_role("link", name="Imports").click()
    page.get_by_role("link", name="Import a file").click()
    page.select_option("#import-entity", "lead")
    page.set_input_files("#import-file", {"name": "web-leads.csv", "mimeType": "text/csv", "buffer": data})
    with page.expect_navigation():
        page.click("form.import-upload button[type=submit]")
    shot(page, "mapping")
    preview = page.locator("table.preview")
    expect(preview.locator("thead")).to_contain_text("Company")
    expect(preview).to_contain_text("must be a whole number, not 'lots'")

    with page.expect_navigation():
        page.select_option("#map-3", "")  # "Company": do not import; the page previews again by itself
    shot(page, "company-left-out")
    expect(preview.locator("thead")).not_to_contain_text("Company")
    expect(page.locator("#map-3")).to_be_focused()

    with page.expect_navigation():
        page.get_by_role("button", name="Start import").click()
    assert re.search(r"/imports/\d+$", page.url), page.url
    expect(page.locator("[data-field=status]")).to_have_text("done", timeout=30_000)
    shot(page, "done")
    expect(page.locator(".import-counts")).to_contain_text("39")
    expect(page.get_by_role("link", name=re.compile(r"Download the error report \(1 row not imported"))).to_be_visible()
