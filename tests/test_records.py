"""The one write path (``crm.records``): creates, updates, stage moves and
deletes are validated, checked, saved with their audit in one transaction,
and a refused change writes nothing."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest

from crm_platform.errors import ConflictError, NotFound, TransitionNotAllowed, ValidationError

from . import runtime_fixtures
from .conftest import PROJECT
from .runtime_fixtures import SYSTEM, audit_rows, model, outbox_rows, stored, user

crm_app, crm = runtime_fixtures.crm_app, runtime_fixtures.crm  # the fixtures

# source "event": no rule of the default pack fires on these leads.
LEAD = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "source": "event", "country": "GB"}


def snapshot(crm, entity, record_id) -> tuple:
    """What a refused change must leave alone: the stored record, its audit, the outbox."""
    record = stored(crm, entity, record_id)
    return dict(record.__data__), len(audit_rows(crm)), len(outbox_rows(crm))


# --- create -------------------------------------------------------------------


def test_create_stamps_the_clock_version_1_and_the_initial_stage(crm, clock):
    first = crm.records.create("lead", LEAD, SYSTEM, "api")
    clock.advance(hours=5)
    second = crm.records.create("lead", {**LEAD, "email": "grace@example.com"}, SYSTEM, "api")
    deal = crm.records.create("deal", {"name": "Big deal"}, SYSTEM, "api")

    lead = stored(crm, "lead", first.id)
    assert (lead.created_at, lead.updated_at) == (dt.datetime(2026, 11, 23, 10, 0),) * 2
    assert (lead.version, lead.status) == (1, "new")
    later = stored(crm, "lead", second.id)
    assert later.created_at == later.updated_at == dt.datetime(2026, 11, 23, 15, 0)
    assert stored(crm, "deal", deal.id).stage == "prospecting"


def test_invalid_payload_names_every_wrong_field_and_writes_nothing(crm):
    bad = {"first_name": 5, "country": "XX", "email": "not-an-address", "employees": "many", "source": "web"}
    with pytest.raises(ValidationError) as refused:
        crm.records.create("lead", bad, SYSTEM, "api")
    assert refused.value.errors == {
        "first_name": ["must be a text"],
        "country": ["must be one of: DE, AT, CH, FR, GB, US, other"],
        "email": ["is not a valid email address"],
        "employees": ["must be a whole number"],
        "last_name": ["is required"],
    }
    assert model(crm, "lead").select().count() == 0
    assert audit_rows(crm) == [] and outbox_rows(crm) == []

    good = {"first_name": "Ada", "last_name": "Lovelace", "country": "GB", "email": "ada@example.com", "employees": 3}
    crm.records.create("lead", good, SYSTEM, "api")
    assert model(crm, "lead").select().count() == 1
    assert len(audit_rows(crm)) == 1


def test_required_text_field_cannot_be_left_blank(crm):
    # lead.last_name is required: an empty text is as missing as no text.
    with pytest.raises(ValidationError) as refused:
        crm.records.create("lead", {**LEAD, "last_name": ""}, SYSTEM, "api")
    assert "last_name" in refused.value.errors
    assert model(crm, "lead").select().count() == 0

    lead = crm.records.create("lead", LEAD, SYSTEM, "api")
    with pytest.raises(ValidationError) as emptied:
        crm.records.update("lead", lead.id, {"last_name": ""}, SYSTEM, "api")
    assert "last_name" in emptied.value.errors
    assert stored(crm, "lead", lead.id).last_name == "Lovelace"


def test_unknown_field_is_refused(crm):
    with pytest.raises(ValidationError) as refused:
        crm.records.create("lead", {**LEAD, "nickname": "Ada"}, SYSTEM, "api")
    assert refused.value.errors == {"nickname": ["is not a field of this record (or cannot be set)"]}
    assert model(crm, "lead").select().count() == 0


@pytest.mark.parametrize("channel", ["form", "api", "import"])
def test_read_only_field_is_refused_from_people(crm, channel):
    with pytest.raises(ValidationError) as refused:
        crm.records.create("lead", {**LEAD, "last_contacted_at": "2026-11-20T09:00:00"}, SYSTEM, channel)
    assert refused.value.errors == {"last_contacted_at": ["is read-only"]}

    lead = crm.records.create("lead", LEAD, SYSTEM, channel)
    with pytest.raises(ValidationError):
        crm.records.update("lead", lead.id, {"last_contacted_at": "2026-11-20T09:00:00"}, SYSTEM, channel)
    assert stored(crm, "lead", lead.id).last_contacted_at is None


def test_read_only_field_is_accepted_from_rules(crm):
    lead = crm.records.create("lead", {**LEAD, "last_contacted_at": "2026-11-20T09:00:00"}, SYSTEM, "rule")
    assert stored(crm, "lead", lead.id).last_contacted_at == dt.datetime(2026, 11, 20, 9, 0)
    crm.records.update("lead", lead.id, {"last_contacted_at": "2026-11-22T09:00:00+01:00"}, SYSTEM, "rule")
    assert stored(crm, "lead", lead.id).last_contacted_at == dt.datetime(2026, 11, 22, 8, 0)


@pytest.mark.parametrize("channel", ["form", "rule"])
def test_stage_field_changes_only_through_a_transition(crm, channel):
    lead = crm.records.create("lead", LEAD, SYSTEM, "api")
    with pytest.raises(ValidationError) as refused:
        crm.records.update("lead", lead.id, {"status": "contacted"}, SYSTEM, channel)
    assert refused.value.errors == {"status": ["changes only by moving the record through Lead lifecycle"]}
    assert (stored(crm, "lead", lead.id).status, stored(crm, "lead", lead.id).version) == ("new", 1)

    crm.records.transition("lead", lead.id, "contacted", SYSTEM, channel)
    assert stored(crm, "lead", lead.id).status == "contacted"


def test_create_cannot_start_a_record_in_a_later_stage(crm):
    with pytest.raises(ValidationError) as refused:
        crm.records.create("lead", {**LEAD, "status": "qualified"}, SYSTEM, "rule")
    assert refused.value.errors == {"status": ["changes only by moving the record through Lead lifecycle"]}
    assert model(crm, "lead").select().count() == 0


def test_unique_email_is_refused_naming_the_other_record(crm):
    first = crm.records.create("lead", LEAD, SYSTEM, "api")
    with pytest.raises(ValidationError) as refused:
        crm.records.create("lead", {**LEAD, "last_name": "Byron"}, SYSTEM, "api")
    assert refused.value.errors == {"email": [f"is already used by Lead #{first.id}"]}
    assert model(crm, "lead").select().count() == 1

    second = crm.records.create("lead", {**LEAD, "email": "byron@example.com"}, SYSTEM, "api")
    with pytest.raises(ValidationError) as taken:
        crm.records.update("lead", second.id, {"email": "ada@example.com"}, SYSTEM, "api")
    assert taken.value.errors == {"email": [f"is already used by Lead #{first.id}"]}
    assert stored(crm, "lead", second.id).email == "byron@example.com"
    # A record keeps its own address without clashing with itself.
    crm.records.update("lead", first.id, {"email": "ada@example.com", "company": "Analytical"}, SYSTEM, "api")
    assert stored(crm, "lead", first.id).company == "Analytical"


def test_link_to_a_missing_record_and_a_missing_user_are_refused(crm):
    with pytest.raises(ValidationError) as refused:
        crm.records.create("lead", {**LEAD, "account": 99, "owner": 42}, SYSTEM, "api")
    assert refused.value.errors == {"account": ["there is no Account #99"], "owner": ["there is no user #42"]}
    assert model(crm, "lead").select().count() == 0

    account = crm.records.create("account", {"name": "Analytical Engines"}, SYSTEM, "api")
    owner = user(crm, "anna@example.com", roles=["sales"])
    lead = crm.records.create("lead", {**LEAD, "account": account.id, "owner": owner.user_id}, SYSTEM, "api")
    saved = stored(crm, "lead", lead.id)
    assert (saved.account_id, saved.owner) == (account.id, owner.user_id)


# --- update -------------------------------------------------------------------


def test_update_bumps_the_version_and_audits_old_and_new_per_field(crm, clock):
    manager = user(crm, "maria@example.com", roles=["sales-manager"])
    lead = crm.records.create("lead", {**LEAD, "company": "Babbage & Co"}, manager, "form")
    clock.advance(minutes=30)
    crm.records.update("lead", lead.id, {"company": "Analytical", "employees": 12}, manager, "form")

    saved = stored(crm, "lead", lead.id)
    assert (saved.version, saved.company, saved.employees) == (2, "Analytical", 12)
    assert saved.updated_at == dt.datetime(2026, 11, 23, 10, 30)
    assert saved.created_at == dt.datetime(2026, 11, 23, 10, 0)
    create, update = audit_rows(crm, "lead", lead.id)
    assert (create.operation, create.version) == ("create", 1)
    assert (update.operation, update.version, update.channel, update.user_id) == ("update", 2, "form", manager.user_id)
    assert update.at == dt.datetime(2026, 11, 23, 10, 30)
    assert update.changes == {"company": ["Babbage & Co", "Analytical"], "employees": [None, 12]}


def test_update_without_a_real_change_writes_no_audit(crm, clock):
    lead = crm.records.create(
        "lead", {**LEAD, "budget": 1000, "interests": ["crm", "analytics"], "employees": 5}, SYSTEM, "api"
    )
    clock.advance(hours=1)
    same = {"budget": 1000.0, "interests": ["crm", "analytics"], "employees": 5, "email": "ada@example.com"}
    crm.records.update("lead", lead.id, same, SYSTEM, "api")
    saved = stored(crm, "lead", lead.id)
    assert (saved.version, saved.updated_at) == (1, dt.datetime(2026, 11, 23, 10, 0))
    assert len(audit_rows(crm)) == 1

    crm.records.update("lead", lead.id, {**same, "budget": 1000.5}, SYSTEM, "api")
    saved = stored(crm, "lead", lead.id)
    assert (saved.version, saved.budget) == (2, Decimal("1000.50"))
    assert audit_rows(crm)[-1].changes == {"budget": [1000, 1000.5]}


def test_stale_version_is_refused_naming_the_fields_changed_meanwhile(crm):
    lead = crm.records.create("lead", LEAD, SYSTEM, "api")
    crm.records.update("lead", lead.id, {"company": "Analytical", "phone": "+49 30 123456"}, SYSTEM, "form", version=1)
    before = snapshot(crm, "lead", lead.id)

    with pytest.raises(ConflictError) as conflict:
        crm.records.update("lead", lead.id, {"company": "Difference"}, SYSTEM, "form", version=1)
    assert conflict.value.fields == ["company", "phone"]
    assert conflict.value.current_version == 2
    assert "(company, phone)" in str(conflict.value)
    assert snapshot(crm, "lead", lead.id) == before

    crm.records.update("lead", lead.id, {"company": "Difference"}, SYSTEM, "form", version=2)
    assert (stored(crm, "lead", lead.id).company, stored(crm, "lead", lead.id).version) == ("Difference", 3)


def test_stale_version_refuses_a_stage_move_and_a_delete(crm):
    lead = crm.records.create("lead", LEAD, SYSTEM, "api")
    crm.records.update("lead", lead.id, {"company": "Analytical"}, SYSTEM, "form")
    before = snapshot(crm, "lead", lead.id)
    with pytest.raises(ConflictError) as moved:
        crm.records.transition("lead", lead.id, "contacted", SYSTEM, "form", version=1)
    assert moved.value.fields == ["company"]
    with pytest.raises(ConflictError):
        crm.records.delete("lead", lead.id, SYSTEM, "form", version=1)
    assert snapshot(crm, "lead", lead.id) == before


# --- stage moves --------------------------------------------------------------


def test_move_without_such_a_transition_is_refused_and_changes_nothing(crm):
    lead = crm.records.create("lead", LEAD, SYSTEM, "api")
    before = snapshot(crm, "lead", lead.id)
    with pytest.raises(TransitionNotAllowed) as refused:
        crm.records.transition("lead", lead.id, "converted", SYSTEM, "form")
    assert (refused.value.source, refused.value.target) == ("new", "converted")
    assert refused.value.reasons == ["there is no move from New to Converted (allowed: Contacted, Disqualified)"]
    with pytest.raises(TransitionNotAllowed) as unknown:
        crm.records.transition("lead", lead.id, "won", SYSTEM, "form")
    assert unknown.value.reasons == ["'won' is not a stage of Lead lifecycle"]
    assert snapshot(crm, "lead", lead.id) == before

    crm.records.transition("lead", lead.id, "contacted", SYSTEM, "form")
    assert stored(crm, "lead", lead.id).status == "contacted"


def test_move_missing_a_required_field_is_refused_until_it_is_given(crm):
    lead = crm.records.create("lead", LEAD, SYSTEM, "api")
    before = snapshot(crm, "lead", lead.id)
    with pytest.raises(TransitionNotAllowed) as refused:
        crm.records.transition("lead", lead.id, "disqualified", SYSTEM, "form")
    assert refused.value.reasons == ["Disqualification reason must be filled in to enter Disqualified"]
    assert snapshot(crm, "lead", lead.id) == before

    crm.records.transition("lead", lead.id, "disqualified", SYSTEM, "form", data={"lost_reason": "no_budget"})
    saved = stored(crm, "lead", lead.id)
    assert (saved.status, saved.lost_reason, saved.version) == ("disqualified", "no_budget", 2)
    move = audit_rows(crm, "lead", lead.id)[-1]
    assert (move.operation, move.channel) == ("transition", "form")
    assert move.changes == {"lost_reason": [None, "no_budget"], "status": ["new", "disqualified"]}


def test_refused_move_lists_every_reason_at_once(crm):
    lead = crm.records.create("lead", {"last_name": "Lovelace", "source": "event"}, SYSTEM, "api")
    crm.records.transition("lead", lead.id, "contacted", SYSTEM, "form")
    before = snapshot(crm, "lead", lead.id)
    with pytest.raises(TransitionNotAllowed) as refused:
        crm.records.transition("lead", lead.id, "qualified", SYSTEM, "form")
    assert refused.value.reasons == [
        "the condition is not met: lead.score >= 50",
        "Email, Country must be filled in to enter Qualified",
    ]
    assert snapshot(crm, "lead", lead.id) == before

    data = {"score": 70, "email": "ada@example.com", "country": "GB"}
    crm.records.transition("lead", lead.id, "qualified", SYSTEM, "form", data=data)
    assert stored(crm, "lead", lead.id).status == "qualified"


def test_deal_stage_moves_set_the_probability_of_the_stage(crm):
    deal = crm.records.create("deal", {"name": "Big deal", "amount": 1000}, SYSTEM, "api")
    crm.records.transition("deal", deal.id, "qualification", SYSTEM, "form")
    saved = stored(crm, "deal", deal.id)
    assert (saved.probability, saved.weighted_amount) == (Decimal("20"), Decimal("200"))
    assert audit_rows(crm, "deal", deal.id)[-1].changes["probability"] == [10, 20]  # from prospecting's 10

    crm.records.transition("deal", deal.id, "proposal", SYSTEM, "form", data={"close_date": "2026-12-31"})
    assert stored(crm, "deal", deal.id).probability == Decimal("50")
    crm.records.transition("deal", deal.id, "lost", SYSTEM, "form", data={"lost_reason": "price"})
    saved = stored(crm, "deal", deal.id)
    assert (saved.stage, saved.probability, saved.weighted_amount) == ("lost", Decimal("0"), Decimal("0"))


def test_new_deal_starts_with_the_probability_of_its_initial_stage(crm):
    # deal_pipeline.yaml: prospecting (the initial stage) has probability 10,
    # and a sales rep may not set probability (read-only for role sales).
    rep = user(crm, "anna@example.com", roles=["sales"])
    deal = crm.records.create("deal", {"name": "Big deal", "amount": 1000}, rep, "form")
    saved = stored(crm, "deal", deal.id)
    assert saved.stage == "prospecting"
    assert saved.probability == Decimal("10")
    assert saved.weighted_amount == Decimal("100")


# --- delete -------------------------------------------------------------------


def test_delete_removes_the_record_and_keeps_its_audit(crm):
    lead = crm.records.create("lead", LEAD, SYSTEM, "api")
    other = crm.records.create("lead", {**LEAD, "email": "byron@example.com"}, SYSTEM, "api")
    crm.records.delete("lead", lead.id, SYSTEM, "form", version=1)

    assert stored(crm, "lead", lead.id) is None
    assert stored(crm, "lead", other.id) is not None
    with pytest.raises(NotFound):
        crm.records.get("lead", lead.id, SYSTEM)
    create, delete = audit_rows(crm, "lead", lead.id)
    assert (delete.operation, delete.version, delete.channel) == ("delete", 2, "form")
    assert delete.changes["last_name"] == ["Lovelace", None]
    assert [e.kind for e in crm.history.entries("lead", lead.id)] == ["create", "delete"]
    with pytest.raises(NotFound):
        crm.records.delete("lead", lead.id, SYSTEM, "form")


# --- audit --------------------------------------------------------------------


def test_audit_shows_every_change_with_its_channel_and_user(crm, clock):
    manager = user(crm, "maria@example.com", roles=["sales-manager"])
    lead = crm.records.create("lead", LEAD, manager, "form")
    clock.advance(minutes=1)
    crm.records.update("lead", lead.id, {"company": "Analytical"}, manager, "api")
    clock.advance(minutes=1)
    crm.records.update("lead", lead.id, {"phone": "+44 20 7946 0000"}, manager, "import")
    clock.advance(minutes=1)
    crm.records.update("lead", lead.id, {"last_contacted_at": "2026-11-23T10:03:00"}, SYSTEM, "rule")
    clock.advance(minutes=1)
    crm.records.transition("lead", lead.id, "contacted", manager, "form")

    entries = crm.history.entries("lead", lead.id)
    assert [(e.kind, e.channel, e.user_id) for e in entries] == [
        ("create", "form", manager.user_id),
        ("update", "api", manager.user_id),
        ("update", "import", manager.user_id),
        ("update", "rule", None),
        ("transition", "form", manager.user_id),
    ]
    assert [e.summary for e in entries[1:]] == [
        "changed company: (empty) -> Analytical",
        "changed phone: (empty) -> +44 20 7946 0000",
        "changed last_contacted_at: (empty) -> 2026-11-23T10:03:00",
        "moved; status: new -> contacted",
    ]
    assert [row.version for row in audit_rows(crm, "lead", lead.id)] == [1, 2, 3, 4, 5]


def test_unknown_channel_is_a_programming_error(crm):
    with pytest.raises(ValueError, match="unknown channel 'email'"):
        crm.records.create("lead", LEAD, SYSTEM, "email")
    assert model(crm, "lead").select().count() == 0


# --- nothing bypasses the write path --------------------------------------------


def test_nothing_in_the_platform_saves_records_outside_the_write_path():
    # openpyxl's workbook.save() writes a file, not a record.
    pattern = re.compile(r"(?<!workbook)\.(save|delete_instance)\(")
    offenders = [
        f"{path.relative_to(PROJECT)}:{number}: {line.strip()}"
        for path in sorted((PROJECT / "crm_platform").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line)
    ]
    assert offenders == []
    assert pattern.search("record.save()") and not pattern.search("self._save(ce, record)")
