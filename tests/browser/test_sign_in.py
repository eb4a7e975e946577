"""Signing in and out through the real form, and what an anonymous visitor gets."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import expect

from .conftest import ADMIN, sign_in, submit_login


def test_a_wrong_password_shows_an_error_and_stays_on_the_login_page(page, shot):
    sign_in(page, ADMIN, "not-the-password")
    shot(page, "wrong-password")
    assert urlsplit(page.url).path == "/login"
    expect(page.locator("#password-errors")).to_have_text("Wrong email or password.")
    expect(page.locator("#password")).to_have_attribute("aria-describedby", "password-errors")
    expect(page.locator("#email")).to_have_value(ADMIN)  # kept, so only the password needs typing again


def test_signing_in_lands_on_my_work_and_signing_out_ends_the_session(page, shot):
    sign_in(page, ADMIN)
    shot(page, "my-work")
    assert urlsplit(page.url).path == "/my"
    expect(page.locator("h1")).to_have_text("My work")
    expect(page.locator("header .who")).to_have_text("Ada Admin")

    with page.expect_navigation():
        page.click("form.signout button[type=submit]")
    shot(page, "signed-out")
    assert urlsplit(page.url).path == "/login"
    expect(page.locator(".flash")).to_have_text("You are signed out.")

    page.goto("/my")
    assert urlsplit(page.url).path == "/login", "the session still opens pages after signing out"


def test_an_anonymous_visit_to_a_list_redirects_to_the_login_page(page, shot):
    page.goto("/r/lead/")
    shot(page, "redirected")
    url = urlsplit(page.url)
    assert url.path == "/login"
    assert url.query == "next=%2Fr%2Flead%2F"
    expect(page.locator(".flash")).to_have_text("Please sign in to open this page.")

    submit_login(page, ADMIN)  # the form posts to /login?next=..., so the visitor gets back to the list
    shot(page, "back-on-the-list")
    assert urlsplit(page.url).path == "/r/lead/"
    expect(page.locator("h1")).to_contain_text("Leads")
