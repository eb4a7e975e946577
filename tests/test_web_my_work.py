""" "My work": the SLA section lists my tickets (and my queues' unassigned ones) at risk or breached."""

from __future__ import annotations

from . import web_fixtures
from .web_fixtures import SYSTEM, user_id

web_app, web_crm, sign_in = web_fixtures.web_app, web_fixtures.web_crm, web_fixtures.sign_in


def ticket(crm, subject: str, **data):
    return crm.records.create("ticket", {"subject": subject, "category": "technical", **data}, SYSTEM, "form")


def at_risk_section(html: str) -> str:
    start = html.find('class="card at-risk"')
    return "" if start < 0 else html[start : html.index("</section>", start)]


def test_my_tickets_near_their_sla_are_listed_with_their_due_time(web_crm, sign_in, clock):
    ticket(web_crm, "Gina's printer", owner=user_id(web_crm, "gina"))
    ticket(web_crm, "Hugo's scanner", owner=user_id(web_crm, "hugo"))
    ticket(web_crm, "Nobody's modem")  # routed to the support queue, no owner yet
    gina = sign_in("gina")
    # Normal priority under sla/support.yaml: 4 business hours to respond (Berlin 08-12, 13-18).
    assert at_risk_section(gina.get("/my").get_data(as_text=True)) == ""  # all fresh

    clock.advance(hours=4, minutes=20)  # Monday 11:00 -> 15:20 Berlin: 3 h 20 min of business time
    section = at_risk_section(gina.get("/my").get_data(as_text=True))
    assert "Gina&#39;s printer" in section and "Nobody&#39;s modem" in section
    assert "Hugo" not in section
    assert "At risk (83 %)" in section

    clock.advance(hours=1)
    assert "Breached (108 %)" in at_risk_section(gina.get("/my").get_data(as_text=True))


def test_a_ticket_moved_to_a_state_without_sla_leaves_the_list(web_crm, sign_in, clock):
    record = ticket(web_crm, "Waiting ticket", owner=user_id(web_crm, "gina"))
    web_crm.records.transition("ticket", record.id, "open", SYSTEM, "form")
    web_crm.records.transition("ticket", record.id, "waiting_on_customer", SYSTEM, "form")  # the SLA pauses
    clock.advance(hours=30)
    assert at_risk_section(sign_in("gina").get("/my").get_data(as_text=True)) == ""
