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
    # The refused first attempt left nothing behind: the saved rows took the next ids, each audited.
    assert (results[1].id, results[3].id) == (first.id + 1, first.id + 2)
    assert [(a.record_id, a.changes["email"][1]) for a in audit_rows(crm)][1:] == [
        (results[1].id, "ann3@example.com"),
        (results[3].id, "ann5@example.com"),
    ]


def test_unique_values_are_checked_before_the_insert_where_the_table_has_no_unique_index(crm):
    # A table made before the field became unique has no unique index to refuse a value:
    # then the batch looks the values up first, and still refuses the clashes.
    first = crm.records.create("lead", lead(1), SYSTEM, "api")
    crm.database.execute_sql('DROP INDEX "lead_email"')  # the index name peewee gave it
    assert not crm.records._unique_indexed(crm.compiled.entities["lead"])

    rows = [lead(2, email="ann1@example.com"), lead(3), lead(4, email="ann3@example.com")]
    results = crm.records.create_many("lead", rows, SYSTEM, "api")

    assert results[0].errors == {"email": [f"is already used by Lead #{first.id}"]}
    assert results[2].errors == {"email": [f"is already used by Lead #{results[1].id}"]}
    assert sorted(r.email for r in model(crm, "lead").select()) == ["ann1@example.com", "ann3@example.com"]


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
    crm.records.create_many("lead", [lead(999)], SYSTEM, "import")  # the first batch reads the indexes, once
    statements: list[str] = []
    crm.database.connection().set_trace_callback(statements.append)
    try:
        results = crm.records.create_many("lead", rows, SYSTEM, "import")
    finally:
        crm.database.connection().set_trace_callback(None)

    assert all(isinstance(r, model(crm, "lead")) for r in results)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    # One for the account links (the unique emails are checked by the insert's index); then per
    # table the largest id before its executemany and the last one after (no read-back).
    assert len(selects) == 5, selects
    assert sum(s.startswith('SELECT "t1"."id" FROM "account"') for s in selects) == 1
    assert selects.count('SELECT max("id") FROM "lead"') == selects.count('SELECT max("id") FROM "crm_audit"') == 1
    assert selects.count("SELECT last_insert_rowid()") == 2
    # One executemany per table: the trace shows each of its rows.
    assert sum('INTO "lead"' in s for s in inserts) == 200
    assert sum('INTO "crm_audit"' in s for s in inserts) == 200


def raw_rows(crm, table: str) -> list[tuple]:
    """The rows exactly as SQLite holds them (datetimes as their stored text)."""
    return list(crm.database.execute_sql(f'SELECT * FROM "{table}" ORDER BY "id"'))  # a fixed table name


def test_ids_and_audit_rows_of_a_batch_are_those_create_gives_even_after_a_deleted_last_record(make_crm, tmp_path):
    # The batch's ids are not read back: on SQLite they follow the largest rowid. Deleting the
    # last record makes SQLite hand its id out again, to create and to create_many alike.
    one_by_one = make_crm(DATABASE_URL=f"sqlite:///{tmp_path / 'single.sqlite3'}")
    batched = make_crm(DATABASE_URL=f"sqlite:///{tmp_path / 'batch.sqlite3'}")
    for crm in (one_by_one, batched):
        first = [crm.records.create("lead", lead(n), SYSTEM, "api") for n in (1, 2)]
        crm.records.delete("lead", first[1].id, SYSTEM, "api")
    rows = [lead(n, score=n, tags=["fair"] if n % 2 else []) for n in range(3, 9)]

    singles = [one_by_one.records.create("lead", row, SYSTEM, "import", rules=False) for row in rows]
    results = batched.records.create_many("lead", rows, SYSTEM, "import", rules=False)

    assert [r.id for r in results] == [r.id for r in singles] == [2, 3, 4, 5, 6, 7]
    assert raw_rows(batched, "lead") == raw_rows(one_by_one, "lead")
    assert raw_rows(batched, "crm_audit") == raw_rows(one_by_one, "crm_audit")
    # Each new record's create audit is the row with the id the batch handed on (the key of its actions).
    creates = [a for a in audit_rows(batched) if a.operation == "create" and a.record_id in {r.id for r in results}]
    assert [(a.record_id, a.changes["email"]) for a in creates[-6:]] == [(r.id, [None, r.email]) for r in results]


def test_prepared_insert_many_gives_each_row_its_id_in_and_out_of_a_transaction(crm):
    from crm_platform.runtime.tables import PreparedInsert

    Timeline = crm.tables.Timeline
    insert = PreparedInsert(Timeline, ("entity", "record_id", "at", "kind", "summary"))
    at = crm.clock.utcnow()
    common = {"entity": "lead", "at": at, "kind": "action"}
    with crm.database.atomic():  # executemany, the ids after the largest one
        ids = insert.many([{"record_id": n, "summary": f"s{n}"} for n in (1, 2, 3)], common)
    outside = insert.many([{"record_id": n, "summary": f"s{n}"} for n in (4, 5)], common)  # one statement each

    stored_rows = {row.id: (row.record_id, row.summary, row.at) for row in Timeline.select()}
    assert {i: stored_rows[i] for i in ids + outside} == {
        i: (n, f"s{n}", at) for i, n in zip(ids + outside, (1, 2, 3, 4, 5), strict=True)
    }
    assert len(set(ids + outside)) == 5
    # The datetime is stored as the text peewee's own insert stores (the sqlite3 module's adapter).
    by_peewee = Timeline.insert(entity="lead", record_id=6, at=at, kind="action", summary="s6").execute()
    texts = {row[0] for row in crm.database.execute_sql('SELECT "at" FROM "crm_timeline"')}
    assert len(texts) == 1 and by_peewee not in ids + outside
