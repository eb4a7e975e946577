"""The deal pipeline board: drag a card to another stage; the server's
workflow guard (workflows/deal_pipeline.yaml) decides, and a refused card
snaps back with the reason."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from .conftest import create_record


def card(page: Page, deal: int):
    return page.locator(f"li.kanban-card[data-id='{deal}']")


def column(page: Page, stage: str):
    return page.locator(f"section.column[data-stage='{stage}']")


def drag(page: Page, deal: int, stage: str) -> None:
    """Drag the deal's card onto the stage's column and wait until the board has the server's answer.

    playwright's ``drag_to`` moves the mouse from card to column, and Chromium
    turns that into the HTML5 dragstart/dragover/drop events the board listens to.
    """
    page.locator("#board-message").evaluate("box => { box.textContent = ''; }")
    with page.expect_response(lambda r: r.url.endswith(f"/r/deal/{deal}/move") and r.request.method == "POST"):
        card(page, deal).drag_to(column(page, stage))
    expect(page.locator("#board-message")).not_to_be_empty()


def test_dragging_a_card_moves_the_deal_or_snaps_back_with_the_reason(signed_in_page, shot, unique):
    page = signed_in_page()
    first = create_record(page, "deal", {"name": f"Board A {unique}"})
    second = create_record(page, "deal", {"name": f"Board B {unique}"})
    page.goto("/board/deal_pipeline")
    shot(page, "board")
    expect(column(page, "prospecting").locator(f"li.kanban-card[data-id='{first}']")).to_have_count(1)
    expect(card(page, first)).to_have_attribute("draggable", "true")

    # Prospecting -> Qualification is a transition of the pipeline.
    drag(page, first, "qualification")
    shot(page, "qualified")
    expect(page.locator("#board-message")).to_have_text("Moved to Qualification.")
    expect(page.locator("#board-message")).to_have_class("board-message ok")
    page.reload()
    shot(page, "qualified-reloaded")
    expect(column(page, "qualification").locator(f"li.kanban-card[data-id='{first}']")).to_have_count(1)
    expect(column(page, "prospecting").locator(f"li.kanban-card[data-id='{first}']")).to_have_count(0)

    # Qualification -> Proposal is a transition, but Proposal requires an amount and a close date.
    drag(page, first, "proposal")
    shot(page, "proposal-refused")
    message = page.locator("#board-message")
    expect(message).to_contain_text("Not moved")
    expect(message).to_contain_text(re.compile("amount", re.I))
    expect(message).to_contain_text(re.compile("close.date", re.I))
    expect(message).not_to_have_class("board-message ok")
    expect(column(page, "qualification").locator(f"li.kanban-card[data-id='{first}']")).to_have_count(1)

    # Prospecting -> Closed won is no transition at all.
    drag(page, second, "won")
    shot(page, "won-refused")
    expect(message).to_contain_text("Not moved")
    expect(column(page, "prospecting").locator(f"li.kanban-card[data-id='{second}']")).to_have_count(1)

    page.reload()
    shot(page, "refused-reloaded")
    expect(column(page, "qualification").locator(f"li.kanban-card[data-id='{first}']")).to_have_count(1)
    expect(column(page, "prospecting").locator(f"li.kanban-card[data-id='{second}']")).to_have_count(1)
    expect(column(page, "proposal").locator("li.kanban-card", has_text=unique)).to_have_count(0)
    expect(column(page, "won").locator("li.kanban-card", has_text=unique)).to_have_count(0)
