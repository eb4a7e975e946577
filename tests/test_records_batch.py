"""``crm.records.create_many``: a batch of creates through the one write path.

Each row gets what ``create`` gives it (the same record, messages, audit and
planned actions); a bad row is refused on its own while the others are saved;
the queries are made per batch, not per row."""

from __future__ import annotations

import pytest

from crm_platform.errors import PermissionDenied, ValidationError

from . import runtime_fixtures
from .runtime_fixtures import SYSTEM, audit_rows, model, outbox_rows, stored, user

crm_app, crm, make_crm = runtime_fixtures.crm_app, runtime_fixtures.crm, runtime_fixtures.make_crm  # the fixtures


def lead(n: int, **fields) -> dict:
    # source "event": no rule of the default pack fires on these leads.
    return {"first_name": f"Ann{n}", "last_name": f"Lee{n}", "email": f"ann{n}@example.com", "source": "event"} | fields


# A mix: web leads fire the routing and welcome rules, referral leads the score boost.
MIX = [
    lead(1),
    lead(2, source="web", country="DE", score=20, budget=1200.5, budget_currency="EUR"),
    lead(3, source="referral", score=40, interests=["crm", "analytics"], tags=["fair"]),
    lead(4, source="web", country="US", employees=12, website="https://example.com"),
]


def without_ids(record) -> dict:
    return {k: v for k, v in record.__data__.items() if k != "id"}


def test_a_batch_stores_what_create_stores_row_by_row(make_crm, tmp_path):
    one_by_one = make_crm(DATABASE_URL=f"sqlite:///{tmp_path / 'single.sqlite3'}")
    batched = make_crm(DATABASE_URL=f"sqlite:///{tmp_path / 'batch.sqlite3'}")

    singles = [one_by_one.records.create("lead", row, SYSTEM, "api") for row in MIX]
    results = batched.records.create_many("lead", MIX, SYSTEM, "api")

    assert [r.id for r in results] == [r.id for r in singles]
    for single, result in zip(singles, results, strict=True):
        assert without_ids(stored(batched, "lead", result.id)) == without_ids(stored(one_by_one, "lead", single.id))
        assert without_ids(result) == without_ids(single)  # the returned record is the saved one

    def creates(crm) -> list:
        # The test queue runs the planned actions after each commit: the score boost's
        # update comes after one create there, after the whole batch here.
        rows = [a for a in audit_rows(crm) if a.operation == "create"]
        return [(a.record_id, a.version, a.channel, a.user_id, a.changes, a.at) for a in rows]

    def planned(crm) -> list:
        return sorted((o.record_id, o.rule, o.path, o.kind, o.payload["reason"]) for o in outbox_rows(crm))

    assert creates(batched) == creates(one_by_one)
    # The same rules planned the same actions, each keyed by its own record's audit row.
    assert planned(batched) == planned(one_by_one)
    assert {o.record_id for o in outbox_rows(batched)} == {results[1].id, results[2].id, results[3].id}
    audit_of = {a.record_id: a.id for a in audit_rows(batched) if a.operation == "create"}
    assert all(o.key.startswith(f"{audit_of[o.record_id]}/") for o in outbox_rows(batched))


def test_bad_rows_get_their_field_messages_and_the_good_rows_are_saved(crm):
    rows = [
        lead(1),
        {"first_name": 5, "country": "XX", "email": "not-an-address", "employees": "many"},
        lead(2, score=101),
        lead(3, status="qualified"),
        lead(4),
    ]

    results = crm.records.create_many("lead", rows, SYSTEM, "api")

    assert isinstance(results[0], model(crm, "lead")) and isinstance(results[4], model(crm, "lead"))
    assert results[1].errors == {
        "first_name": ["must be a text"],
        "country": ["must be one of: DE, AT, CH, FR, GB, US, other"],
        "email": ["is not a valid email address"],
        "employees": ["must be a whole number"],
        "last_name": ["is required"],
    }
    assert results[2].errors == {"score": ["must be at most 100"]}
    assert results[3].errors == {"status": ["changes only by moving the record through Lead lifecycle"]}
    # Exactly what create says about the same rows.
    for i in (1, 2, 3):
        with pytest.raises(ValidationError) as single:
            crm.records.create("lead", rows[i], SYSTEM, "api")
        assert single.value.errors == results[i].errors
    assert [r.email for r in model(crm, "lead").select().order_by(model(crm, "lead").id)] == [
        "ann1@example.com",
        "ann4@example.com",
    ]
    assert [(a.record_id, a.operation) for a in audit_rows(crm)] == [
        (results[0].id, "create"),
        (results[4].id, "create"),
    ]
    assert stored(crm, "lead", results[0].id).status == "new"


def test_rules_are_planned_per_record_unless_switched_off(crm):
    web = [lead(1, source="web", country="DE"), lead(2, source="web", country="FR"), lead(3)]

    created = crm.records.create_many("lead", web, SYSTEM, "api")

    rules_by_record = {}
    for row in outbox_rows(crm):
        rules_by_record.setdefault(row.record_id, set()).add(row.rule)
    assert rules_by_record == {
        created[0].id: {"Welcome new web leads", "Route DACH web leads"},
        created[1].id: {"Welcome new web leads", "Route international web leads"},
    }
    before = len(outbox_rows(crm))

    quiet = crm.records.create_many("lead", [lead(4, source="web", country="DE")], SYSTEM, "import", rules=False)

    assert len(outbox_rows(crm)) == before
    assert [a.channel for a in audit_rows(crm, "lead", quiet[0].id)] == ["import"]


def test_a_unique_value_taken_by_a_stored_record_or_an_earlier_row_is_refused(crm):
    first = crm.records.create("lead", lead(1), SYSTEM, "api")
    rows = [lead(2, email="ann1@example.com"), lead(3), lead(4, email="ann3@example.com"), lead(5)]

    results = crm.records.create_many("lead", rows, SYSTEM, "api")

    assert results[0].errors == {"email": [f"is already used by Lead #{first.id}"]}
    assert results[2].errors == {"email": [f"is already used by Lead #{results[1].id}"]}
    assert stored(crm, "lead", results[1].id).first_name == "Ann3"
    assert stored(crm, "lead", results[3].id).first_name == "Ann5"
    assert model(crm, "lead").select().count() == 3
    assert len(audit_rows(crm)) == 3


def test_an_earlier_row_that_fails_keeps_no_value_from_a_later_one(crm):
    rows = [lead(1, score=500), lead(2, email="ann1@example.com")]

    results = crm.records.create_many("lead", rows, SYSTEM, "api")

    assert isinstance(results[0], ValidationError)
    assert stored(crm, "lead", results[1].id).email == "ann1@example.com"


def test_links_and_users_must_exist(crm):
    account = crm.records.create("account", {"name": "Acme"}, SYSTEM, "api")
    owner = user(crm, "maria@example.com", roles=["sales-manager"])
    rows = [
        lead(1, account=account.id, owner=owner.user_id),
        lead(2, account=9999),
        lead(3, owner=8888),
        lead(4, account=account.id),
    ]

    results = crm.records.create_many("lead", rows, SYSTEM, "api")

    assert results[1].errors == {"account": ["there is no Account #9999"]}
    assert results[2].errors == {"owner": ["there is no user #8888"]}
    assert (stored(crm, "lead", results[0].id).account_id, stored(crm, "lead", results[0].id).owner) == (
        account.id,
        owner.user_id,
    )
    assert stored(crm, "lead", results[3].id).account_id == account.id


def test_a_person_may_link_only_records_they_may_read(crm):
    rep = user(crm, "anna@example.com", roles=["sales"])
    other = user(crm, "bob@example.com", roles=["sales"])
    theirs = crm.records.create("account", {"name": "Bob's", "owner": other.user_id}, SYSTEM, "api")
    mine = crm.records.create("account", {"name": "Anna's", "owner": rep.user_id}, SYSTEM, "api")

    results = crm.records.create_many("lead", [lead(1, account=theirs.id), lead(2, account=mine.id)], rep, "form")

    assert results[0].errors == {"account": [f"there is no Account #{theirs.id}"]}  # hidden, so reported missing
    assert stored(crm, "lead", results[1].id).owner == rep.user_id  # a person's new record is theirs


def test_read_only_fields_are_refused_from_people_only(crm):
    rep = user(crm, "anna@example.com", roles=["sales"])

    from_person = crm.records.create_many("lead", [lead(1, score=50), lead(2)], rep, "import")
    from_system = crm.records.create_many("lead", [lead(3, score=50)], SYSTEM, "import")

    assert from_person[0].errors == {"score": ["is read-only"]}
    assert stored(crm, "lead", from_person[1].id).owner == rep.user_id
    assert stored(crm, "lead", from_system[0].id).score == 50


def test_an_actor_who_may_not_create_gets_permission_denied_per_row(crm):
    agent = user(crm, "sam@example.com", roles=["support"])

    results = crm.records.create_many("lead", [lead(1), {"first_name": "No last name"}], agent, "api")

    assert isinstance(results[0], PermissionDenied) and str(results[0]) == "you may not create leads"
    assert results[1].errors == {"last_name": ["is required"]}  # validation first, as create does
    assert model(crm, "lead").select().count() == 0 and audit_rows(crm) == []


def test_a_batch_runs_inside_the_callers_transaction(crm):
    class Stop(Exception):
        pass

    with pytest.raises(Stop), crm.database.atomic():
        crm.records.create_many("lead", [lead(1), lead(2)], SYSTEM, "import")
        raise Stop

    assert model(crm, "lead").select().count() == 0 and audit_rows(crm) == []


def test_the_queries_are_made_per_batch_not_per_row(crm):
    account = crm.records.create("account", {"name": "Acme"}, SYSTEM, "api")
    rows = [lead(n, account=account.id) for n in range(200)]
    statements: list[str] = []
    crm.database.connection().set_trace_callback(statements.append)
    try:
        results = crm.records.create_many("lead", rows, SYSTEM, "import")
    finally:
        crm.database.connection().set_trace_callback(None)

    assert all(isinstance(r, model(crm, "lead")) for r in results)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    # One for the account links, one for the unique emails, one for the audit ids.
    assert len(selects) == 3, selects
    assert sum('INTO "lead"' in s for s in inserts) == 200
    assert 1 <= sum('INTO "crm_audit"' in s for s in inserts) <= 3  # multi-row statements
