"""State machines compiled from the good pack's workflows: ``check`` returns
the transition for an allowed move and otherwise raises
``TransitionNotAllowed`` with every reason (no such move, role, guard,
fields required to enter), so a person sees all of them at once."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace

import pytest

from crm_platform.compiler.statemachine import StateMachine, Transition
from crm_platform.errors import TransitionNotAllowed

from .conftest import GOOD, compile_dir


@pytest.fixture(scope="module")
def compiled():
    return compile_dir(GOOD)


@pytest.fixture
def lead_flow(compiled) -> StateMachine:
    return compiled.entities["lead"].workflows["status"]


@pytest.fixture
def deal_flow(compiled) -> StateMachine:
    return compiled.entities["deal"].workflows["stage"]


def lead(**fields):
    values = {"status": "contacted", "score": 60, "email": "ann@example.com", "country": "DE", "lost_reason": None}
    values.update(fields)
    return SimpleNamespace(**values)


def refusal(machine, record, target, roles, ctx) -> TransitionNotAllowed:
    with pytest.raises(TransitionNotAllowed) as caught:
        machine.check(record, target, roles, ctx)
    return caught.value


def test_each_workflow_is_attached_to_its_entity_and_state_field(lead_flow, deal_flow):
    assert (lead_flow.name, lead_flow.label, lead_flow.entity, lead_flow.field) == (
        "lead_lifecycle",
        "Lead lifecycle",
        "lead",
        "status",
    )
    assert (deal_flow.name, deal_flow.entity, deal_flow.field) == ("deal_pipeline", "deal", "stage")


def test_initial_states(lead_flow, deal_flow):
    assert lead_flow.initial == "new"
    assert deal_flow.initial == "prospecting"


def test_states_keep_labels_final_flags_and_required_fields(lead_flow):
    qualified, disqualified = lead_flow.states["qualified"], lead_flow.states["disqualified"]
    assert (qualified.label, qualified.final, qualified.require) == ("Qualified", False, ("email", "country"))
    assert (disqualified.final, disqualified.require) == (True, ("lost_reason",))
    assert list(lead_flow.states) == ["new", "contacted", "qualified", "converted", "disqualified"]


def test_probabilities(deal_flow, lead_flow):
    assert deal_flow.probability_field == "probability"
    assert {s.name: s.probability for s in deal_flow.states.values()} == {
        "prospecting": 10,
        "proposal": 50,
        "won": 100,
        "lost": 0,
    }
    assert lead_flow.probability_field is None
    assert {s.probability for s in lead_flow.states.values()} == {None}


def test_transitions_from_a_state(lead_flow):
    assert [(t.target, t.label) for t in lead_flow.transitions_from("new")] == [
        ("contacted", "Mark contacted"),
        ("disqualified", "Disqualified"),
    ]
    assert [t.target for t in lead_flow.transitions_from("contacted")] == ["qualified", "disqualified"]


def test_no_transitions_from_a_final_or_unknown_state(lead_flow):
    assert lead_flow.transitions_from("converted") == []
    assert lead_flow.transitions_from("nowhere") == []


def test_a_transition_from_several_states_is_one_move_from_each(deal_flow):
    sources = [s for s in deal_flow.states if any(t.target == "lost" for t in deal_flow.transitions_from(s))]
    assert sources == ["prospecting", "proposal"]


def test_an_allowed_move_returns_the_transition(lead_flow, ctx):
    transition = lead_flow.check(lead(status="new"), "contacted", ["sales"], ctx)
    assert transition == Transition("new", "contacted", "Mark contacted", frozenset(), None)


def test_a_move_that_is_not_defined_lists_the_allowed_targets(lead_flow, ctx):
    error = refusal(lead_flow, lead(status="new"), "converted", ["sales"], ctx)
    assert (error.source, error.target) == ("new", "converted")
    assert error.reasons == ["there is no move from New to Converted (allowed: Contacted, Disqualified)"]
    assert str(error) == (
        "cannot move from 'new' to 'converted': "
        "there is no move from New to Converted (allowed: Contacted, Disqualified)"
    )


def test_a_move_out_of_a_final_state_allows_none(lead_flow, ctx):
    error = refusal(lead_flow, lead(status="converted"), "new", None, ctx)
    assert error.reasons == ["there is no move from Converted to New (allowed: none)"]


def test_an_unknown_target_is_not_a_stage(lead_flow, ctx):
    error = refusal(lead_flow, lead(status="new"), "won", ["sales"], ctx)
    assert error.reasons == ["'won' is not a stage of Lead lifecycle"]


def test_a_role_without_the_move_is_refused(lead_flow, ctx):
    error = refusal(lead_flow, lead(), "qualified", ["support-lead"], ctx)
    assert error.reasons == ["only sales may make this move"]


def test_a_role_with_the_move_is_allowed(lead_flow, ctx):
    transition = lead_flow.check(lead(), "qualified", ["support-lead", "sales"], ctx)
    assert (transition.source, transition.target, transition.roles) == ("contacted", "qualified", frozenset({"sales"}))


def test_an_automated_move_is_not_bound_by_roles(lead_flow, ctx):
    assert lead_flow.check(lead(), "qualified", None, ctx).target == "qualified"


def test_a_user_without_roles_is_refused_a_role_bound_move(lead_flow, ctx):
    assert refusal(lead_flow, lead(), "qualified", [], ctx).reasons == ["only sales may make this move"]


def test_a_false_guard_names_its_condition(lead_flow, ctx):
    error = refusal(lead_flow, lead(score=49), "qualified", ["sales"], ctx)
    assert error.reasons == ["the condition is not met: lead.score >= 50"]


def test_an_empty_field_in_a_guard_fails_it(lead_flow, ctx):
    error = refusal(lead_flow, lead(score=None), "qualified", ["sales"], ctx)
    assert error.reasons == ["the condition is not met: lead.score >= 50"]


def test_the_guard_is_compiled_from_the_workflow(lead_flow):
    (guarded,) = [t for t in lead_flow.transitions_from("contacted") if t.guard is not None]
    assert guarded.guard.filename == "<guard workflows/lead_lifecycle.yaml:12>"


@pytest.mark.parametrize(
    ("fields", "missing"),
    [({"email": None}, "Email"), ({"country": ""}, "Country"), ({"email": "", "country": None}, "Email, Country")],
)
def test_required_fields_missing_on_entering_are_named(lead_flow, ctx, fields, missing):
    error = refusal(lead_flow, lead(**fields), "qualified", ["sales"], ctx)
    assert error.reasons == [f"{missing} must be filled in to enter Qualified"]


def test_required_fields_of_a_final_state(lead_flow, ctx):
    error = refusal(lead_flow, lead(status="new"), "disqualified", None, ctx)
    assert error.reasons == ["Lost reason must be filled in to enter Disqualified"]
    assert lead_flow.check(lead(status="new", lost_reason="price"), "disqualified", None, ctx).target == "disqualified"


def test_a_zero_amount_counts_as_filled_in(deal_flow, ctx):
    deal = SimpleNamespace(stage="prospecting", amount=Decimal("0"), close_date=dt.date(2026, 12, 1))
    assert deal_flow.check(deal, "proposal", ["sales"], ctx).target == "proposal"


def test_every_reason_is_given_at_once(lead_flow, ctx):
    error = refusal(lead_flow, lead(score=10, country=None), "qualified", ["support-lead"], ctx)
    assert error.reasons == [
        "only sales may make this move",
        "the condition is not met: lead.score >= 50",
        "Country must be filled in to enter Qualified",
    ]
