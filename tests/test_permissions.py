"""Who may do what: the pack's roles (permissions per entity, the "own
records" scope, read-only fields, roles on stage moves) applied by the write
path, and the user directory (hashed passwords, sign-in, field messages)."""

from __future__ import annotations

import pytest

from crm_platform.errors import PermissionDenied, TransitionNotAllowed, ValidationError

from . import runtime_fixtures
from .runtime_fixtures import SYSTEM, model, stored, user

crm_app, crm = runtime_fixtures.crm_app, runtime_fixtures.crm  # the fixtures

LEAD = {"last_name": "Lovelace", "source": "event"}  # no rule fires on it


@pytest.fixture
def people(crm):
    """Two sales reps, a sales manager, a support agent, a marketer and a superuser."""
    return {
        "anna": user(crm, "anna@example.com", roles=["sales"], teams=["sales-dach"]),
        "ben": user(crm, "ben@example.com", roles=["sales"], teams=["sales-dach"]),
        "maria": user(crm, "maria@example.com", roles=["sales-manager"], teams=["sales-dach"]),
        "gina": user(crm, "gina@example.com", roles=["support"], teams=["support"]),
        "julia": user(crm, "julia@example.com", roles=["marketing"], teams=["marketing"]),
        "root": user(crm, "root@example.com", superuser=True),
    }


# --- the "own records" scope ----------------------------------------------------


def test_sales_rep_creates_a_lead_owned_by_themselves(crm, people):
    anna = people["anna"]
    lead = crm.records.create("lead", LEAD, anna, "form")
    assert stored(crm, "lead", lead.id).owner == anna.user_id
    # Automation names its owner itself: no default from the acting user.
    automated = crm.records.create("lead", LEAD, SYSTEM, "rule")
    assert stored(crm, "lead", automated.id).owner is None


def test_sales_rep_cannot_read_or_update_another_reps_lead(crm, people):
    anna, ben = people["anna"], people["ben"]
    mine = crm.records.create("lead", LEAD, anna, "form")
    theirs = crm.records.create("lead", {**LEAD, "last_name": "Byron"}, ben, "form")

    with pytest.raises(PermissionDenied, match="you may only read your own leads"):
        crm.records.get("lead", theirs.id, anna)
    with pytest.raises(PermissionDenied, match="you may only update your own leads"):
        crm.records.update("lead", theirs.id, {"company": "Stolen"}, anna, "form")
    with pytest.raises(PermissionDenied):
        crm.records.transition("lead", theirs.id, "contacted", anna, "form")
    saved = stored(crm, "lead", theirs.id)
    assert (saved.company, saved.status, saved.version) == (None, "new", 1)

    assert crm.records.get("lead", mine.id, anna).id == mine.id
    crm.records.update("lead", mine.id, {"company": "Analytical"}, anna, "form")
    assert stored(crm, "lead", mine.id).company == "Analytical"


def test_sales_rep_lists_only_their_own_leads(crm, people):
    anna, ben, maria = people["anna"], people["ben"], people["maria"]
    first = crm.records.create("lead", LEAD, anna, "form")
    crm.records.create("lead", LEAD, ben, "form")
    second = crm.records.create("lead", LEAD, anna, "form")
    unowned = crm.records.create("lead", LEAD, SYSTEM, "rule")

    assert sorted(r.id for r in crm.records.select("lead", anna)) == [first.id, second.id]
    assert crm.records.select("lead", maria).count() == 4  # scope all
    assert unowned.id in [r.id for r in crm.records.select("lead", maria)]


def test_sales_rep_cannot_delete_leads_but_a_manager_can(crm, people):
    anna, maria = people["anna"], people["maria"]
    lead = crm.records.create("lead", LEAD, anna, "form")
    with pytest.raises(PermissionDenied, match="you may not delete leads"):
        crm.records.delete("lead", lead.id, anna, "form")
    assert stored(crm, "lead", lead.id) is not None

    crm.records.delete("lead", lead.id, maria, "form")
    assert stored(crm, "lead", lead.id) is None


# --- read-only fields per role ------------------------------------------------------


def test_lead_score_is_read_only_for_a_sales_rep(crm, people):
    anna = people["anna"]
    with pytest.raises(ValidationError) as on_create:
        crm.records.create("lead", {**LEAD, "score": 80}, anna, "form")
    assert on_create.value.errors == {"score": ["is read-only"]}
    lead = crm.records.create("lead", LEAD, anna, "form")
    with pytest.raises(ValidationError) as on_update:
        crm.records.update("lead", lead.id, {"score": 80}, anna, "form")
    assert on_update.value.errors == {"score": ["is read-only"]}
    assert stored(crm, "lead", lead.id).score == 0


def test_lead_score_may_be_set_by_a_sales_manager(crm, people):
    anna, maria = people["anna"], people["maria"]
    lead = crm.records.create("lead", LEAD, anna, "form")
    crm.records.update("lead", lead.id, {"score": 80}, maria, "form")
    assert stored(crm, "lead", lead.id).score == 80


def test_deal_probability_is_read_only_for_a_sales_rep_but_follows_their_stage_moves(crm, people):
    anna = people["anna"]
    with pytest.raises(ValidationError) as refused:
        crm.records.create("deal", {"name": "Big deal", "probability": 90}, anna, "form")
    assert refused.value.errors == {"probability": ["is read-only"]}
    deal = crm.records.create("deal", {"name": "Big deal", "amount": 1000}, anna, "form")
    with pytest.raises(ValidationError):
        crm.records.transition("deal", deal.id, "qualification", anna, "form", data={"probability": 90})
    crm.records.transition("deal", deal.id, "qualification", anna, "form")
    assert stored(crm, "deal", deal.id).probability == 20


# --- entity permissions -----------------------------------------------------------


def test_support_agent_cannot_create_a_deal(crm, people):
    gina = people["gina"]
    with pytest.raises(PermissionDenied, match="you may not create deals"):
        crm.records.create("deal", {"name": "Side business"}, gina, "form")
    assert model(crm, "deal").select().count() == 0
    activity = crm.records.create("activity", {"subject": "Call back the customer"}, gina, "form")
    assert stored(crm, "activity", activity.id).owner == gina.user_id


def test_superuser_may_do_everything(crm, people):
    root, ben = people["root"], people["ben"]
    deal = crm.records.create("deal", {"name": "Big deal", "probability": 35}, root, "form")
    assert stored(crm, "deal", deal.id).probability == 35
    lead = crm.records.create("lead", {**LEAD, "email": "ada@example.com", "country": "GB"}, ben, "form")
    assert crm.records.get("lead", lead.id, root).id == lead.id
    crm.records.update("lead", lead.id, {"score": 90}, root, "form")
    crm.records.transition("lead", lead.id, "contacted", root, "form")
    # Qualifying is a move for sales roles; a superuser holds no role but may make it.
    crm.records.transition("lead", lead.id, "qualified", root, "form")
    assert stored(crm, "lead", lead.id).status == "qualified"
    crm.records.delete("lead", lead.id, root, "form")
    assert stored(crm, "lead", lead.id) is None


def test_move_restricted_to_roles_is_refused_for_other_roles(crm, people):
    julia, maria = people["julia"], people["maria"]  # marketing may update leads, but not qualify them
    lead = crm.records.create(
        "lead", {**LEAD, "email": "ada@example.com", "country": "GB", "score": 70}, SYSTEM, "rule"
    )
    crm.records.transition("lead", lead.id, "contacted", julia, "form")
    with pytest.raises(TransitionNotAllowed) as refused:
        crm.records.transition("lead", lead.id, "qualified", julia, "form")
    assert refused.value.reasons == ["only sales, sales-manager may make this move"]
    assert (stored(crm, "lead", lead.id).status, stored(crm, "lead", lead.id).version) == ("contacted", 2)

    crm.records.transition("lead", lead.id, "qualified", maria, "form")
    assert stored(crm, "lead", lead.id).status == "qualified"


# --- users ----------------------------------------------------------------------------


def test_passwords_are_stored_hashed_and_checked(crm):
    user_id = crm.directory.create_user("ada@example.com", "Ada", "s3cret-pass")
    stored_hash = crm.tables.User.get_by_id(user_id).password_hash
    assert "s3cret-pass" not in stored_hash
    assert stored_hash.startswith(("scrypt:", "pbkdf2:"))
    assert crm.directory.check_password("ada@example.com", "s3cret-pass") == user_id
    assert crm.directory.check_password(" ADA@example.com", "s3cret-pass") == user_id
    assert crm.directory.check_password("ada@example.com", "s3cret-Pass") is None
    assert crm.directory.check_password("nobody@example.com", "s3cret-pass") is None


def test_two_users_with_the_same_password_get_different_hashes(crm):
    first = crm.directory.create_user("ada@example.com", "Ada", "same-pass")
    second = crm.directory.create_user("bob@example.com", "Bob", "same-pass")
    User = crm.tables.User
    assert User.get_by_id(first).password_hash != User.get_by_id(second).password_hash


def test_inactive_user_cannot_sign_in(crm):
    user_id = crm.directory.create_user("ada@example.com", "Ada", "s3cret-pass")
    crm.directory.set_flags(user_id, active=False)
    assert crm.directory.check_password("ada@example.com", "s3cret-pass") is None
    with pytest.raises(LookupError):
        crm.directory.actor(user_id)

    crm.directory.set_flags(user_id, active=True)
    assert crm.directory.check_password("ada@example.com", "s3cret-pass") == user_id
    assert crm.directory.actor(user_id).user_id == user_id


def test_duplicate_email_is_refused_with_a_field_message(crm):
    crm.directory.create_user("ada@example.com", "Ada", "s3cret-pass")
    with pytest.raises(ValidationError) as refused:
        crm.directory.create_user(" Ada@Example.com ", "Ada again", "other-pass")
    assert refused.value.errors == {"email": ["is already used by another user"]}
    assert crm.directory.count() == 1


def test_unknown_role_and_team_are_refused(crm):
    with pytest.raises(ValidationError) as refused:
        crm.directory.create_user("ada@example.com", "Ada", "s3cret-pass", roles=["wizard"], teams=["sales-mars"])
    assert refused.value.errors == {"roles": ["unknown role 'wizard'"], "teams": ["unknown team 'sales-mars'"]}
    assert crm.directory.count() == 0

    user_id = crm.directory.create_user("ada@example.com", "Ada", "s3cret-pass", roles=["sales"], teams=["sales-us"])
    info = crm.directory.get(user_id)
    assert (info.roles, info.teams) == (["sales"], ["sales-us"])
