"""Campaign runs: segments (YAML and saved views), the counts of a run, pause,
resume, stop, re-runs, unsubscribe links, the run page, and exactly one email
per member when the worker is killed in the middle of 5,000.

Every test sends to a real SMTP server on loopback (aiosmtpd). Unit tests use
a SQLite queue with no consumer and process the run's chunks by calling the
task's function (``crm.campaigns.process``), or Huey's immediate mode; the
live test runs real consumer processes.
"""

from __future__ import annotations

import collections
import re
import shutil
import time

import pytest
from aiosmtpd.controller import Controller

from crm_platform.runtime.due_work import run_due_work
from crm_platform.runtime.users import Actor

from . import runtime_fixtures, web_fixtures
from .conftest import PROJECT, findings_of
from .live import MailSink, SMTPServer, Worker, free_port, live_config, wait_for, worker_env

make_crm = runtime_fixtures.make_crm
web_app, web_crm, sign_in = web_fixtures.web_app, web_fixtures.web_crm, web_fixtures.sign_in
SYSTEM = Actor.system()


@pytest.fixture
def crm(make_crm, smtp, tmp_path):
    """An engine with a SQLite queue nobody consumes: chunks run when the test says so."""
    return make_crm(SMTP_URL=smtp.url, QUEUE_URL=f"sqlite:///{tmp_path / 'queue.sqlite3'}", CAMPAIGN_CHUNK_SIZE=10)


def contact(crm, name: str, email: str | None, **data):
    payload = {"last_name": name, "email": email, **data}
    return crm.records.create("contact", payload, SYSTEM, "import", rules=False)


def campaign(crm, name: str = "Spring"):
    return crm.records.create("campaign", {"name": name}, SYSTEM, "import", rules=False)


def view(crm, entity: str, query: str, name: str = "All") -> str:
    """A saved list view (as the list page saves it) as a segment reference."""
    SavedView = crm.tables.SavedView
    user = crm.directory.create_user(
        f"marketer{SavedView.select().count()}@test.example.com", "Marketer", "secret", roles=["admin"]
    )
    view_id = SavedView.insert(
        user=user, entity=entity, name=name, query=query, shared=False, created_at=crm.clock.utcnow()
    ).execute()
    return f"view:{view_id}"


def run_all(crm, run_id: int) -> dict:
    """Process chunks until the run stops asking for more."""
    while crm.campaigns.process(run_id) == "next":
        pass
    return crm.campaigns.progress(crm.campaigns.get(run_id))


def settle(smtp, n: int) -> list:
    wait_for(lambda: smtp.sink.count() >= n, timeout=10, what=f"{n} messages")
    return smtp.sink.snapshot()


# --- segments --------------------------------------------------------------------


def test_a_yaml_segment_selects_with_list_filters_and_a_saved_view_is_a_segment(crm):
    from crm_platform.campaigns import segments as seg

    smb_de = contact(crm, "Adler", "adler@x.example", segment="smb", mailing_country="DE")
    contact(crm, "Bauer", "bauer@x.example", segment="smb", mailing_country="FR")
    contact(crm, "Conti", "conti@x.example", segment="enterprise", mailing_country="DE")
    assert seg.member_ids(crm, seg.resolve(crm, "yaml:dach_small_business")) == [smb_de.id]

    ref = view(crm, "contact", "f.mailing_country=DE&sort=last_name")
    by_view = seg.resolve(crm, ref)
    assert (by_view.entity, by_view.label) == ("contact", "All")
    assert [crm.compiled.entities["contact"].model.get_by_id(i).last_name for i in seg.member_ids(crm, by_view)] == [
        "Adler",
        "Conti",
    ]
    refs = [s.ref for s in seg.available(crm, None, superuser=True)]
    assert {"yaml:newsletter_contacts", "yaml:dach_small_business", "yaml:consenting_leads", ref} <= set(refs)
    with pytest.raises(Exception, match="no segment 'yaml:nope'"):
        seg.resolve(crm, "yaml:nope")
    deal_view = view(crm, "deal", "", name="Deals")  # a saved view of deals is not a segment
    with pytest.raises(Exception, match="no segment"):
        seg.resolve(crm, deal_view)


def test_a_run_reaches_only_the_members_its_starter_may_read(crm):
    from crm_platform.campaigns import segments as seg

    rep = runtime_fixtures.user(crm, "rita@example.com", roles=["sales"])  # contacts: own records only
    manager = runtime_fixtures.user(crm, "mona@example.com", roles=["marketing"])
    mine = contact(crm, "Adler", "adler@x.example", owner=rep.user_id)
    theirs = contact(crm, "Bauer", "bauer@x.example")
    everyone = seg.resolve(crm, "yaml:newsletter_contacts")

    assert seg.member_ids(crm, everyone, rep.user_id) == [mine.id]
    assert sorted(seg.member_ids(crm, everyone, manager.user_id)) == sorted([mine.id, theirs.id])
    crm.directory.update_user(rep.user_id, active=False)
    with pytest.raises(Exception, match=f"user #{rep.user_id}, who started the run, is no longer active"):
        seg.member_ids(crm, everyone, rep.user_id)


def test_segment_files_with_mistakes_are_reported_at_file_line_column(tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(PROJECT, pack, ignore=shutil.ignore_patterns(".venv", "tests", "instance", ".git", "*.pyc"))
    assert [f for f in findings_of(pack) if "error" in f] == []
    (pack / "segments" / "broken.yaml").write_text(
        "segment: broken\nentity: contact\nfilters:\n  segmnt: smb\n  mailing_country: XX\n  segment.from: A\n"
        "  last_name: Kim\n"
    )
    (pack / "segments" / "deals.yaml").write_text("segment: deals\nentity: deal\n")
    (pack / "segments" / "shape.yaml").write_text("segment: shape\nentity: contact\nwhere: 1\n")
    errors = [f for f in findings_of(pack) if ": error: " in f]
    assert "segments/broken.yaml:4:3: error: contact has no field 'segmnt' to filter on" in errors
    assert "segments/broken.yaml:5:3: error: 'XX' is not an option of 'mailing_country'" in errors
    assert "segments/broken.yaml:6:3: error: unknown filter 'segment.from'" in errors
    assert "segments/broken.yaml:7:3: error: a string field such as 'last_name' cannot be filtered on" in errors
    assert "segments/deals.yaml:2:9: error: a segment selects contacts or leads, not 'deal'" in errors
    assert any(f.startswith("segments/shape.yaml:3:1: error:") and "where" in f for f in errors)


# --- a run's counts ------------------------------------------------------------------


def test_a_run_sends_once_per_member_and_counts_unsubscribed_duplicate_and_invalid(crm, smtp):
    people = [contact(crm, f"P{i}", f"p{i}@x.example") for i in range(12)]
    contact(crm, "Gone", "gone@x.example", unsubscribed=True)
    contact(crm, "Shout", "P0@X.example")  # the same mailbox as P0, written differently
    contact(crm, "Nomail", None)
    contact(crm, "Typo", "kim@exa..mple.com")  # passes the field check, but no mail server takes it
    spring = campaign(crm)
    run = crm.campaigns.start(spring.id, view(crm, "contact", "sort=id"), "newsletter", 1)
    assert run.status == "queued"

    state = run_all(crm, run.id)

    assert state == {"id": run.id, "status": "done", "total": 16, "processed": 16, "percent": 100, "error": None,
                     "sent": 12, "skipped_unsubscribed": 1, "skipped_duplicate": 1, "skipped_invalid": 2,
                     "failed": 0}  # fmt: skip
    received = settle(smtp, 12)
    time.sleep(0.2)
    assert sorted(m.recipients[0] for m in smtp.sink.snapshot()) == sorted(f"p{i}@x.example" for i in range(12))
    first = next(m for m in received if m.recipients[0] == "p0@x.example")
    assert first.subject == "News from Demo Company, P0"
    link = re.search(r"http://127\.0\.0\.1:5000/unsubscribe/\S+", first.body)
    assert link, first.body
    Send = crm.tables.CampaignSend
    statuses = collections.Counter(row.status for row in Send.select())
    assert statuses == {"sent": 12, "skipped_unsubscribed": 1, "skipped_duplicate": 1, "skipped_invalid": 2}
    sent = Send.get((Send.member_id == people[0].id) & (Send.status == "sent"))
    assert sent.message_id == first.message_id
    summaries = [e.summary for e in crm.history.entries("contact", people[0].id)]
    assert "Campaign 'Spring' email sent to p0@x.example" in summaries


def test_headers_carry_the_one_click_unsubscribe_and_a_stable_message_id(make_crm):
    import email

    received = []

    class Raw(MailSink):
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            received.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    port = free_port()
    server = Controller(Raw(), hostname="127.0.0.1", port=port)
    server.start()
    try:
        crm = make_crm(SMTP_URL=f"smtp://127.0.0.1:{port}")
        kim = contact(crm, "Kim", "kim@x.example")
        run = crm.campaigns.start(campaign(crm).id, view(crm, "contact", ""), "newsletter", 1)
        run_all(crm, run.id)
        wait_for(lambda: received, timeout=5, what="the message")
    finally:
        server.stop()
    (message,) = received
    url = re.search(r"http://\S+/unsubscribe/\S+", message.get_payload()).group(0)
    assert message["List-Unsubscribe"] == f"<{url}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["X-CRM-Record"] == f"contact/{kim.id}"
    from crm_platform.actions.email import message_id

    assert message["Message-ID"] == message_id(f"campaign:{run.campaign_id}:1:contact:{kim.id}", "demo.example.com")


def test_a_refused_recipient_is_counted_failed_with_the_servers_reply(make_crm, tmp_path):
    class Picky(MailSink):
        async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802
            if address.startswith("nobody@"):
                return "550 5.1.1 mailbox unavailable"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    sink = Picky()
    port = free_port()
    server = Controller(sink, hostname="127.0.0.1", port=port)
    server.start()
    try:
        crm = make_crm(SMTP_URL=f"smtp://127.0.0.1:{port}", QUEUE_URL=f"sqlite:///{tmp_path / 'q.sqlite3'}")
        nobody = contact(crm, "Nobody", "nobody@x.example")
        contact(crm, "Somebody", "somebody@x.example")
        run = crm.campaigns.start(campaign(crm).id, view(crm, "contact", ""), "newsletter", 1)
        state = run_all(crm, run.id)
        wait_for(lambda: sink.count() >= 1, timeout=5, what="the accepted message")
    finally:
        server.stop()
    assert (state["sent"], state["failed"], state["status"]) == (1, 1, "done")
    Send = crm.tables.CampaignSend
    failed = Send.get(Send.member_id == nobody.id)
    assert (failed.status, failed.error) == ("failed", "550 5.1.1 mailbox unavailable")
    assert [m.recipients for m in sink.snapshot()] == [["somebody@x.example"]]
    assert any("failed: 550 5.1.1" in e.summary for e in crm.history.entries("contact", nobody.id))


def test_a_start_with_bad_input_is_refused_and_creates_no_run(crm):
    spring = campaign(crm)
    from crm_platform.errors import ConflictError, NotFound, ValidationError

    with pytest.raises(ValidationError) as refused:
        crm.campaigns.start(spring.id, "yaml:nope", "no_such_template", 0)
    assert set(refused.value.errors) == {"segment", "template", "step"}
    with pytest.raises(NotFound):
        crm.campaigns.start(999, "yaml:newsletter_contacts", "newsletter", 1)
    assert crm.tables.CampaignRun.select().count() == 0
    crm.campaigns.start(spring.id, "yaml:newsletter_contacts", "newsletter", 1)
    with pytest.raises(ConflictError, match="run #1 of step 1 is queued"):
        crm.campaigns.start(spring.id, "yaml:newsletter_contacts", "newsletter", 1)
    assert crm.tables.CampaignRun.select().count() == 1


# --- pause, resume, stop, re-run ------------------------------------------------------------


def test_pause_takes_effect_between_messages_and_resume_continues_where_it_stopped(make_crm, tmp_path):
    holder = {}

    class Pausing(MailSink):
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            result = await super().handle_DATA(server, session, envelope)
            if self.count() == 4:  # a user presses "Pause" while the fourth message goes out
                holder["crm"].campaigns.pause(holder["run"])
            return result

    sink = Pausing()
    port = free_port()
    server = Controller(sink, hostname="127.0.0.1", port=port)
    server.start()
    try:
        crm = make_crm(SMTP_URL=f"smtp://127.0.0.1:{port}", QUEUE_URL=f"sqlite:///{tmp_path / 'q.sqlite3'}",
                       CAMPAIGN_CHUNK_SIZE=10)  # fmt: skip
        for i in range(25):
            contact(crm, f"P{i}", f"p{i}@x.example")
        run = crm.campaigns.start(campaign(crm).id, view(crm, "contact", ""), "newsletter", 1)
        holder.update(crm=crm, run=run.id)

        assert crm.campaigns.process(run.id) == "paused or stopped"
        paused = crm.campaigns.progress(crm.campaigns.get(run.id))
        assert (paused["status"], paused["processed"], paused["sent"]) == ("paused", 4, 4)
        assert crm.campaigns.process(run.id).startswith("nothing to do")  # a queued chunk does nothing

        holder["run"] = None  # no more pausing
        sink.handle_DATA = MailSink.handle_DATA.__get__(sink)
        resumed = crm.campaigns.resume(run.id)
        assert resumed.status == "running" and resumed.lease_token is None
        state = run_all(crm, run.id)
        wait_for(lambda: sink.count() >= 25, timeout=10, what="25 messages")
    finally:
        server.stop()
    assert (state["status"], state["processed"], state["sent"]) == ("done", 25, 25)
    per_address = collections.Counter(m.recipients[0] for m in sink.snapshot())
    assert len(per_address) == 25 and set(per_address.values()) == {1}


def test_stop_ends_a_run_and_leaves_the_rest_unsent(crm, smtp):
    for i in range(25):
        contact(crm, f"P{i}", f"p{i}@x.example")
    run = crm.campaigns.start(campaign(crm).id, view(crm, "contact", ""), "newsletter", 1)
    assert crm.campaigns.process(run.id) == "next"  # the first chunk of 10
    stopped = crm.campaigns.stop(run.id)
    assert stopped.status == "stopped" and stopped.finished_at is not None
    assert crm.campaigns.process(run.id).startswith("nothing to do")
    from crm_platform.errors import ConflictError

    with pytest.raises(ConflictError):
        crm.campaigns.resume(run.id)
    settle(smtp, 10)
    time.sleep(0.2)
    assert smtp.sink.count() == 10
    assert crm.campaigns.progress(crm.campaigns.get(run.id))["processed"] == 10


def test_a_rerun_of_the_same_step_sends_nothing_twice_and_a_new_step_sends_again(crm, smtp):
    for i in range(5):
        contact(crm, f"P{i}", f"p{i}@x.example")
    spring = campaign(crm)
    segment = view(crm, "contact", "")
    first = crm.campaigns.start(spring.id, segment, "newsletter", 1)
    run_all(crm, first.id)
    late = contact(crm, "Late", "late@x.example")  # joins the segment after the first run

    again = crm.campaigns.start(spring.id, segment, "newsletter", 1)
    state = run_all(crm, again.id)

    assert (state["total"], state["sent"], state["skipped_duplicate"]) == (6, 1, 5)
    settle(smtp, 6)
    time.sleep(0.2)
    per_address = collections.Counter(m.recipients[0] for m in smtp.sink.snapshot())
    assert len(per_address) == 6 and set(per_address.values()) == {1}
    assert crm.tables.CampaignSend.get(crm.tables.CampaignSend.member_id == late.id).run_id == again.id

    step2 = crm.campaigns.start(spring.id, segment, "newsletter", 2)
    assert run_all(crm, step2.id)["sent"] == 6


def test_an_unsubscribe_or_a_deletion_during_a_run_counts_for_members_not_yet_sent(crm, smtp):
    from crm_platform.campaigns.unsubscribe import unsubscribe

    people = [contact(crm, f"P{i}", f"p{i}@x.example") for i in range(15)]
    run = crm.campaigns.start(campaign(crm).id, view(crm, "contact", "sort=id"), "newsletter", 1)
    assert crm.campaigns.process(run.id) == "next"  # the first chunk of 10 is sent
    unsubscribe(crm, "contact", people[12].id)  # what the unsubscribe page does, while the run goes on
    crm.records.delete("contact", people[13].id, SYSTEM, "api")
    state = run_all(crm, run.id)
    assert (state["sent"], state["skipped_unsubscribed"], state["skipped_invalid"]) == (13, 1, 1)
    settle(smtp, 13)
    time.sleep(0.2)
    assert "p12@x.example" not in {m.recipients[0] for m in smtp.sink.snapshot()}
    assert "Campaign 'Spring' email skipped: unsubscribed" in [
        e.summary for e in crm.history.entries("contact", people[12].id)
    ]


def test_without_an_smtp_server_campaign_email_is_kept_in_the_local_mail_outbox(make_crm):
    crm = make_crm()  # no SMTP_URL
    kim = contact(crm, "Kim", "kim@x.example")
    run = crm.campaigns.start(campaign(crm).id, view(crm, "contact", ""), "newsletter", 1)
    assert crm.campaigns.get(run.id).status == "done"  # immediate mode: already run
    (kept,) = crm.tables.Mail.select()
    assert (kept.recipient, kept.status, kept.record_id) == ("kim@x.example", "kept", kim.id)
    assert "/unsubscribe/" in kept.body
    assert crm.campaigns.progress(crm.campaigns.get(run.id))["sent"] == 1


def test_a_scheduled_run_starts_when_due(make_crm, smtp, clock):
    import datetime as dt

    crm = make_crm(SMTP_URL=smtp.url)  # immediate mode: a queued chunk runs at once
    contact(crm, "Kim", "kim@x.example")
    spring = campaign(crm)
    at = clock.utcnow() + dt.timedelta(hours=2)
    run = crm.campaigns.start(spring.id, "yaml:newsletter_contacts", "newsletter", 1, scheduled_at=at)
    assert (run.status, run.scheduled_at) == ("scheduled", at)
    run_due_work(crm, clock.utcnow())
    assert crm.campaigns.get(run.id).status == "scheduled"
    clock.advance(hours=2)
    run_due_work(crm, clock.utcnow())
    assert crm.campaigns.get(run.id).status == "done"
    assert [m.recipients for m in settle(smtp, 1)] == [["kim@x.example"]]


# --- unsubscribe -----------------------------------------------------------------


def unsubscribe_path(crm, smtp, member, entity="contact") -> str:
    """The path of the link in the campaign email ``member`` received."""
    run = crm.campaigns.start(campaign(crm, f"C{member.id}").id, view(crm, entity, "", name=f"V{member.id}"),
                              "newsletter", 1)  # fmt: skip
    run_all(crm, run.id)
    message = next(m for m in settle(smtp, 1) if m.recipients[0] == member.email)
    return re.search(r"http://127\.0\.0\.1:5000(/unsubscribe/\S+)", message.body).group(1)


def test_the_unsubscribe_link_confirms_then_unsubscribes_and_later_runs_skip_the_contact(web_app, smtp):
    web_app.config.update(WTF_CSRF_ENABLED=True)
    web_app.config["SMTP_URL"] = smtp.url  # read when the mailer is first built
    crm = web_app.extensions["crm"]
    kim = contact(crm, "Kim", "kim@x.example")
    path = unsubscribe_path(crm, smtp, kim)
    client = web_app.test_client()  # not signed in

    page = client.get(path)
    assert page.status_code == 200 and "kim@x.example" in page.text and ">Unsubscribe</button>" in page.text
    assert crm.compiled.entities["contact"].model.get_by_id(kim.id).unsubscribed is False
    refused = client.post(path, data={})  # the form without its CSRF token
    assert refused.status_code == 400
    assert crm.compiled.entities["contact"].model.get_by_id(kim.id).unsubscribed is False

    done = client.post(path, data={"csrf_token": web_fixtures.csrf_token(page.text)})
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert crm.compiled.entities["contact"].model.get_by_id(kim.id).unsubscribed is True
    audit = [e for e in crm.history.entries("contact", kim.id) if e.kind == "update"]
    assert audit[-1].changes == {"unsubscribed": [False, True]}  # through the write path, audited

    later = crm.campaigns.start(campaign(crm, "Autumn").id, view(crm, "contact", "", name="Later"), "newsletter", 1)
    assert run_all(crm, later.id)["skipped_unsubscribed"] == 1
    time.sleep(0.2)
    assert smtp.sink.count() == 1


def test_an_unsubscribe_is_for_the_address_every_contact_and_lead_with_it_is_opted_out(web_app, smtp):
    web_app.config["SMTP_URL"] = smtp.url
    crm = web_app.extensions["crm"]
    kim = contact(crm, "Kim", "kim@x.example")
    twin = contact(crm, "Kim (old)", "KIM@x.example")
    other = contact(crm, "Kai", "kai@x.example")
    lead = crm.records.create(
        "lead", {"last_name": "Kim", "email": "Kim@X.example", "source": "event", "gdpr_consent": True}, SYSTEM,
        "import", rules=False,
    )  # fmt: skip
    path = unsubscribe_path(crm, smtp, kim)

    assert web_app.test_client().post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200

    contacts = crm.compiled.entities["contact"].model
    assert [contacts.get_by_id(c.id).unsubscribed for c in (kim, twin, other)] == [True, True, False]
    stored = crm.compiled.entities["lead"].model.get_by_id(lead.id)
    assert (stored.gdpr_consent, stored.unsubscribed) == (False, True)
    audit = [e for e in crm.history.entries("lead", lead.id) if e.kind == "update"]
    assert audit[-1].changes == {"gdpr_consent": [True, False], "unsubscribed": [False, True]}


def test_one_click_unsubscribe_works_without_a_csrf_token_and_leads_lose_consent(web_app, smtp):
    web_app.config.update(WTF_CSRF_ENABLED=True)
    web_app.config["SMTP_URL"] = smtp.url  # read when the mailer is first built
    crm = web_app.extensions["crm"]
    lead = crm.records.create(
        "lead", {"last_name": "Lee", "email": "lee@x.example", "source": "event", "gdpr_consent": True}, SYSTEM,
        "import", rules=False,
    )  # fmt: skip
    path = unsubscribe_path(crm, smtp, lead, entity="lead")
    response = web_app.test_client().post(path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    stored = crm.compiled.entities["lead"].model.get_by_id(lead.id)
    assert (stored.gdpr_consent, stored.unsubscribed) == (False, True)  # unsubscribed also ends follow-ups
    again = crm.campaigns.start(campaign(crm, "Again").id, view(crm, "lead", "", name="Again"), "newsletter", 1)
    assert run_all(crm, again.id)["skipped_unsubscribed"] == 1


def test_a_bad_unsubscribe_token_shows_a_clear_page_and_changes_nothing(web_app, smtp):
    web_app.config["SMTP_URL"] = smtp.url  # read when the mailer is first built
    crm = web_app.extensions["crm"]
    kim = contact(crm, "Kim", "kim@x.example")
    path = unsubscribe_path(crm, smtp, kim)
    client = web_app.test_client()
    token = path.rsplit("/", 1)[1]
    payload, signature = token.split(".")
    from crm_platform.campaigns.unsubscribe import make_token

    forged = [
        token[:-3],  # cut off when copied
        "not-a-token",
        payload + "." + ("A" * len(signature)),  # a signature that does not match
        make_token("another secret", "contact", kim.id),  # signed by someone else
    ]
    for bad in [f"/unsubscribe/{t}" for t in forged]:
        for response in (client.get(bad), client.post(bad, data={"List-Unsubscribe": "One-Click"})):
            assert response.status_code == 404
            assert "this unsubscribe link is not valid" in response.text
    assert crm.compiled.entities["contact"].model.get_by_id(kim.id).unsubscribed is False
    assert [e for e in crm.history.entries("contact", kim.id) if e.kind == "update"] == []


# --- the run page --------------------------------------------------------------------


def test_the_run_page_starts_shows_progress_and_pauses_resumes_and_stops(web_app, sign_in, smtp):
    web_app.config["SMTP_URL"] = smtp.url  # read when the mailer is first built
    crm = web_app.extensions["crm"]
    for i in range(3):
        contact(crm, f"P{i}", f"p{i}@x.example")
    spring = campaign(crm)
    julia = sign_in("julia")  # marketing: may update campaigns

    record = julia.get(f"/r/campaign/{spring.id}")
    assert f'href="/campaigns/{spring.id}/runs"' in record.text
    page = julia.get(f"/campaigns/{spring.id}/runs")
    assert page.status_code == 200 and 'value="yaml:newsletter_contacts"' in page.text

    bad = julia.post(f"/campaigns/{spring.id}/runs", data={"segment": "yaml:x", "template": "newsletter", "step": "1"})
    assert bad.status_code == 400 and "Choose one of the segments offered." in bad.text
    assert crm.tables.CampaignRun.select().count() == 0

    later = julia.post(
        f"/campaigns/{spring.id}/runs",
        data={"segment": "yaml:newsletter_contacts", "template": "newsletter", "step": "1", "when": "later",
              "scheduled_at": "2026-11-24T09:00"},
    )  # fmt: skip
    assert later.status_code == 302
    run = crm.tables.CampaignRun.get()
    assert (run.status, str(run.scheduled_at)) == ("scheduled", "2026-11-24 08:00:00")  # Berlin 09:00 in UTC
    for command, status in (("pause", "paused"), ("resume", "scheduled"), ("stop", "stopped")):
        julia.post(f"/campaigns/{spring.id}/runs/{run.id}/{command}")
        assert crm.campaigns.get(run.id).status == status
    assert "Cannot resume" in julia.post(f"/campaigns/{spring.id}/runs/{run.id}/resume", follow_redirects=True).text

    now = julia.post(
        f"/campaigns/{spring.id}/runs",
        data={"segment": "yaml:newsletter_contacts", "template": "newsletter", "step": "1", "when": "now"},
    )
    assert now.status_code == 302  # immediate mode: the run is done by now
    latest = crm.campaigns.runs_of(spring.id)[0]
    progress = julia.get(f"/campaigns/{spring.id}/runs/{latest.id}/progress").get_json()
    assert progress | {"id": 0} == {"id": 0, "status": "done", "total": 3, "processed": 3, "percent": 100,
                                    "sent": 3, "skipped_unsubscribed": 0, "skipped_duplicate": 0,
                                    "skipped_invalid": 0, "failed": 0, "error": None, "finished": True}  # fmt: skip
    shown = julia.get(f"/campaigns/{spring.id}/runs").text
    assert '<dd data-field="sent">3</dd>' in shown and "<progress" in shown

    anna = sign_in("anna")  # sales: may not change campaigns
    assert anna.get(f"/campaigns/{spring.id}/runs").status_code == 403
    assert anna.post(f"/campaigns/{spring.id}/runs/{latest.id}/stop").status_code == 403
    assert f'href="/campaigns/{spring.id}/runs"' not in anna.get(f"/r/campaign/{spring.id}").text


# --- exactly once across a SIGKILL -------------------------------------------------------------


def test_every_member_gets_exactly_one_email_when_the_consumer_is_killed_mid_run(tmp_path):
    smtp = SMTPServer().start()
    workers: list[Worker] = []
    try:
        config = live_config(tmp_path, PROJECT, smtp.url, CAMPAIGN_LEASE_SECONDS=2, CAMPAIGN_CHUNK_SIZE=200)
        from crm_platform.application import create_app

        crm = create_app({"TESTING": True, **config}).extensions["crm"]
        crm.init_db()
        total = 5000
        with crm.database.atomic():  # one transaction: 5,000 commits would take most of the test's time
            for i in range(total):
                crm.records.create("contact", {"last_name": f"P{i}", "email": f"p{i}@x.example"}, SYSTEM, "import",
                                   rules=False)  # fmt: skip
        spring = crm.records.create("campaign", {"name": "Spring"}, SYSTEM, "import", rules=False)

        def worker() -> Worker:
            w = Worker(worker_env(config), tmp_path / f"worker{len(workers)}.log", workers=2).start()
            workers.append(w)
            return w

        first = worker()
        run = crm.campaigns.start(spring.id, "yaml:newsletter_contacts", "newsletter", 1)
        wait_for(lambda: smtp.sink.count() >= 1500, timeout=40, what="the first 1,500 emails")
        first.kill()
        killed_at = smtp.sink.count()
        assert killed_at < total, "the run finished before the worker could be killed"
        time.sleep(2.5)  # the killed worker's lease runs out; the next worker's start-up sweep queues the run again
        worker()
        Run = crm.tables.CampaignRun
        wait_for(lambda: Run.get_by_id(run.id).status == "done", timeout=60, what="the run to finish")
        time.sleep(0.5)  # anything sent twice would have arrived now
    finally:
        for w in workers:
            w.stop()
        smtp.stop()

    received = smtp.sink.snapshot()
    Send = crm.tables.CampaignSend
    # (a) every member ended "sent" exactly once in the database
    statuses = collections.Counter(status for (status,) in Send.select(Send.status).tuples())
    assert statuses == {"sent": total}
    assert Send.select(Send.member_id).distinct().count() == total
    state = crm.campaigns.progress(Run.get_by_id(run.id))
    assert (state["processed"], state["sent"]) == (total, total)
    # (b) the SMTP server received exactly one message for each member, with that member's Message-ID
    per_address = collections.Counter(message.recipients[0] for message in received)
    print(f"killed after {killed_at} of {total} messages")
    assert len(received) == total
    assert set(per_address.values()) == {1} and len(per_address) == total
    assert {m.message_id for m in received} == {mid for (mid,) in Send.select(Send.message_id).tuples()}


def test_the_run_page_refuses_another_users_private_saved_view_as_segment(web_app, sign_in, smtp):
    web_app.config["SMTP_URL"] = smtp.url  # read when the mailer is first built
    crm = web_app.extensions["crm"]
    contact(crm, "P", "p@x.example")
    spring = campaign(crm)
    private = view(crm, "contact", "", name="Someone's private list")  # owned by another user, not shared
    julia = sign_in("julia")  # marketing: may update campaigns, does not own the view
    assert f'value="{private}"' not in julia.get(f"/campaigns/{spring.id}/runs").text

    refused = julia.post(
        f"/campaigns/{spring.id}/runs", data={"segment": private, "template": "newsletter", "step": "1"}
    )
    assert refused.status_code == 400 and "Choose one of the segments offered." in refused.text
    assert crm.tables.CampaignRun.select().count() == 0

    SavedView = crm.tables.SavedView
    SavedView.update(shared=True).where(SavedView.id == int(private.split(":")[1])).execute()
    shared = julia.post(
        f"/campaigns/{spring.id}/runs", data={"segment": private, "template": "newsletter", "step": "1"}
    )
    assert shared.status_code == 302  # once shared, it is one of the segments offered
    assert crm.tables.CampaignRun.select().count() == 1


def test_a_slow_smtp_server_does_not_let_the_lease_of_a_working_run_run_out(crm, smtp, clock, monkeypatch):
    from crm_platform.campaigns import runs

    for i in range(6):
        contact(crm, f"P{i}", f"p{i}@x.example")
    run = crm.campaigns.start(campaign(crm).id, view(crm, "contact", ""), "newsletter", 1)
    deliver, swept = runs.ChunkSender._deliver, []

    def slow(self, *args):
        deliver(self, *args)
        clock.advance(seconds=40)  # each message takes 40 s; the lease is 60 s
        swept.append(crm.campaigns.sweep())  # the periodic sweep, looking for runs whose worker died

    monkeypatch.setattr(runs.ChunkSender, "_deliver", slow)
    assert crm.campaigns.process(run.id) == "done"  # not taken over mid-way
    assert swept == [0] * 6
    settle(smtp, 6)
    time.sleep(0.2)
    assert smtp.sink.count() == 6
    assert crm.campaigns.progress(crm.campaigns.get(run.id))["sent"] == 6
