"""Exports of list views as CSV, XLSX and JSON: the filtered rows, the list's
columns, typed values, formula neutralisation, own-records scope and large
exports, through the Flask test client."""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal
from types import SimpleNamespace

import pytest
from openpyxl import load_workbook

from crm_platform.compiler.forms import FieldSpec
from crm_platform.web import exports

from . import web_fixtures
from .web_fixtures import SYSTEM, csv_rows, make_record, user_id

web_app, web_crm, sign_in = web_fixtures.web_app, web_fixtures.web_crm, web_fixtures.sign_in  # the fixtures

LEAD_HEADER = ["id", "First name", "Last name", "Company", "Country", "Lead source", "Lead score", "Status", "Owner"]
DEAL_HEADER = [
    "id", "Deal name", "Account", "Stage", "Amount", "Amount currency", "Probability", "Weighted amount",
    "Weighted amount currency", "Expected close date", "Owner",
]  # fmt: skip
FORMULAS = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


@pytest.fixture
def admin(sign_in):
    return sign_in("admin")


def lead(crm, **data):
    """A lead no routing rule touches (source "event")."""
    return make_record(crm, "lead", **data)


def deal(crm, owner: str = "admin", **data):
    data = {
        "name": "Deal",
        "amount": Decimal("1200.50"),
        "close_date": "2026-12-24",
        "owner": user_id(crm, owner),
    } | data
    return crm.records.create("deal", data, SYSTEM, "form")


def xlsx_rows(response) -> list[list]:
    sheet = load_workbook(io.BytesIO(response.get_data())).active
    return [[cell.value for cell in row] for row in sheet.iter_rows()]


def xlsx_cells(response) -> list:
    sheet = load_workbook(io.BytesIO(response.get_data())).active
    return [cell for row in sheet.iter_rows() for cell in row]


def json_export(response) -> dict:
    assert response.mimetype == "application/json"
    return json.loads(response.get_data(as_text=True))


# --- the rows and columns of the list ------------------------------------------------------


def test_csv_has_the_filtered_rows_and_the_list_columns(web_crm, admin):
    german = lead(web_crm, first_name="Ada", last_name="Lovelace", country="DE", score=42)
    lead(web_crm, country="FR")
    response = admin.get("/r/lead/export.csv?f.country=DE")
    assert response.is_streamed and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="leads.csv"'
    assert not response.get_data().startswith(b"\xef\xbb\xbf")  # no byte order mark: see docs/exports.md
    assert csv_rows(response) == [LEAD_HEADER, [str(german.id), "Ada", "Lovelace", "", "DE", "event", "42", "new", ""]]


def test_xlsx_has_the_filtered_rows_and_the_list_columns(web_crm, admin):
    german = lead(web_crm, first_name="Ada", last_name="Lovelace", country="DE", score=42)
    lead(web_crm, country="FR")
    response = admin.get("/r/lead/export.xlsx?f.country=DE")
    assert response.mimetype == exports.XLSX_MIMETYPE
    assert response.headers["Content-Disposition"] == 'attachment; filename="leads.xlsx"'
    assert xlsx_rows(response) == [LEAD_HEADER, [german.id, "Ada", "Lovelace", None, "DE", "event", 42, "new", None]]


def test_json_has_the_filtered_rows_and_the_list_columns(web_crm, admin):
    german = lead(web_crm, first_name="Ada", last_name="Lovelace", country="DE", score=42)
    lead(web_crm, country="FR")
    response = admin.get("/r/lead/export.json?f.country=DE")
    assert response.is_streamed
    data = json_export(response)
    assert data["entity"] == "lead"
    assert [c["label"] for c in data["columns"]] == ["ID", *LEAD_HEADER[1:]]
    assert data["records"] == [
        {
            "id": german.id, "first_name": "Ada", "last_name": "Lovelace", "company": None, "country": "DE",
            "source": "event", "score": 42, "status": "new", "owner": None,
        }
    ]  # fmt: skip


def test_exports_follow_the_search_and_the_sort_of_the_list(web_crm, admin):
    for name in ("Bravo", "Alpha", "Charlie", "Other"):
        lead(web_crm, last_name=name, company="Acme" if name != "Other" else "Zeta")
    query = "q=Acme&sort=-last_name"
    expected = ["Charlie", "Bravo", "Alpha"]
    assert [row[2] for row in csv_rows(admin.get(f"/r/lead/export.csv?{query}"))[1:]] == expected
    assert [row[2] for row in xlsx_rows(admin.get(f"/r/lead/export.xlsx?{query}"))[1:]] == expected
    assert [r["last_name"] for r in json_export(admin.get(f"/r/lead/export.json?{query}"))["records"]] == expected


def test_money_dates_and_names_in_each_format(web_crm, admin):
    record = deal(web_crm, name="Big deal")
    csv_row = csv_rows(admin.get("/r/deal/export.csv"))
    assert csv_row[0] == DEAL_HEADER
    assert csv_row[1] == [
        str(record.id), "Big deal", "", record.stage, "1200.50", "EUR", "10.00", "120.05", "EUR", "2026-12-24",
        "Ada Admin",
    ]  # fmt: skip
    sheet = xlsx_rows(admin.get("/r/deal/export.xlsx"))
    assert sheet[0] == DEAL_HEADER
    assert sheet[1][4:6] == [1200.5, "EUR"]
    assert sheet[1][9] == dt.datetime(2026, 12, 24)  # a date cell (openpyxl reads dates back as datetimes)
    assert sheet[1][10] == "Ada Admin"
    records = json_export(admin.get("/r/deal/export.json"))["records"]
    assert records[0]["amount"] == 1200.5 and records[0]["amount_currency"] == "EUR"
    assert records[0]["close_date"] == "2026-12-24" and records[0]["owner"] == user_id(web_crm, "admin")


def test_xlsx_datetimes_are_utc_and_say_so(web_crm, admin):
    when = dt.datetime(2026, 11, 24, 9, 30)
    make_record(web_crm, "activity", subject="Call", starts_at=when.isoformat() + "Z")
    sheet = xlsx_rows(admin.get("/r/activity/export.xlsx"))
    column = sheet[0].index("Starts at (UTC)")
    assert sheet[1][column] == when
    assert csv_rows(admin.get("/r/activity/export.csv"))[1][column] == "2026-11-24T09:30:00Z"


# --- formulas -------------------------------------------------------------------------------


@pytest.mark.parametrize("formula", FORMULAS)
def test_csv_neutralises_cells_a_spreadsheet_would_run(web_crm, admin, formula):
    record = lead(web_crm, company=formula, first_name="Safe")
    rows = csv_rows(admin.get("/r/lead/export.csv"))
    assert rows[1][:4] == [str(record.id), "Safe", record.last_name, "'" + formula]


@pytest.mark.parametrize("formula", FORMULAS)
def test_xlsx_has_no_formula_cells_and_keeps_the_text(web_crm, admin, formula):
    lead(web_crm, company=formula, first_name=formula)
    response = admin.get("/r/lead/export.xlsx")
    assert all(cell.data_type != "f" for cell in xlsx_cells(response))
    row = xlsx_rows(response)[1]
    # openpyxl writes a carriage return as it is, and XML readers turn it into a line feed.
    kept = "'" + formula.replace("\r", "\n")
    assert row[1] == kept and row[3] == kept


@pytest.mark.parametrize("formula", FORMULAS)
def test_json_keeps_formula_like_values_unchanged(web_crm, admin, formula):
    lead(web_crm, company=formula)
    assert json_export(admin.get("/r/lead/export.json"))["records"][0]["company"] == formula


# --- who sees what --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "xlsx", "json"])
def test_own_scope_exports_only_the_users_records(web_crm, sign_in, kind):
    hers = [deal(web_crm, owner="anna", name=f"Anna {n}").id for n in range(2)]
    deal(web_crm, owner="ben", name="Ben's")
    response = sign_in("anna").get(f"/r/deal/export.{kind}")
    assert response.status_code == 200
    if kind == "csv":
        ids = [int(row[0]) for row in csv_rows(response)[1:]]
    elif kind == "xlsx":
        ids = [row[0] for row in xlsx_rows(response)[1:]]
    else:
        ids = [record["id"] for record in json_export(response)["records"]]
    assert sorted(ids) == sorted(hers)


@pytest.mark.parametrize("kind", ["csv", "xlsx", "json"])
def test_export_of_an_entity_the_user_may_not_read_is_refused(web_crm, sign_in, kind):
    make_record(web_crm, "ticket")
    response = sign_in("anna").get(f"/r/ticket/export.{kind}")
    assert response.status_code == 403


def test_export_needs_a_signed_in_user(web_app):
    response = web_app.test_client().get("/r/lead/export.json")
    assert response.status_code == 302 and "/login" in response.location


def test_unknown_entity_and_format_are_not_found(admin):
    assert admin.get("/r/nothing/export.csv").status_code == 404
    assert admin.get("/r/lead/export.xml").status_code == 404


def test_list_page_links_the_three_exports_with_its_query(web_crm, admin):
    page = admin.get("/r/lead/?f.country=DE").get_data(as_text=True)
    for kind, label in (("csv", "Export CSV"), ("xlsx", "Export Excel"), ("json", "Export JSON")):
        assert f'href="/r/lead/export.{kind}?f.country=DE" download>{label}</a>' in page


# --- large exports --------------------------------------------------------------------------


def test_an_export_of_five_thousand_rows_has_them_all(web_crm, admin):
    model, now = web_crm.compiled.entities["lead"].model, web_crm.clock.utcnow()
    rows = [
        {"last_name": f"Bulk {n:04d}", "source": "event", "status": "new", "created_at": now, "updated_at": now}
        for n in range(5000)
    ]
    with web_crm.database.atomic():
        for start in range(0, len(rows), 500):
            model.insert_many(rows[start : start + 500]).execute()
    query = "sort=last_name"
    names = [f"Bulk {n:04d}" for n in range(5000)]
    assert [row[2] for row in csv_rows(admin.get(f"/r/lead/export.csv?{query}"))[1:]] == names
    assert [r["last_name"] for r in json_export(admin.get(f"/r/lead/export.json?{query}"))["records"]] == names
    assert [row[2] for row in xlsx_rows(admin.get(f"/r/lead/export.xlsx?{query}"))[1:]] == names


def test_csv_and_json_are_streamed_a_chunk_at_a_time(web_crm, admin, monkeypatch):
    monkeypatch.setattr(exports, "CHUNK", 2)
    for n in range(5):
        lead(web_crm, last_name=f"Chunk {n}")
    body = list(admin.get("/r/lead/export.csv?sort=last_name").response)
    assert len(body) == 4  # header and two rows, two rows, one row, the (empty) tail
    assert "".join(part if isinstance(part, str) else part.decode() for part in body).count("Chunk") == 5
    records = json_export(admin.get("/r/lead/export.json"))["records"]
    assert len(records) == 5 and len({r["id"] for r in records}) == 5


def test_money_value_in_xlsx_is_a_number(web_crm, admin):
    deal(web_crm, amount=Decimal("99.99"))
    cells = xlsx_cells(admin.get("/r/deal/export.xlsx"))
    amount = [c for c in cells if c.row == 2][4]
    assert amount.data_type == "n" and Decimal(str(amount.value)) == Decimal("99.99")


@pytest.mark.parametrize(
    ("kind", "value", "cell"),
    [
        ("integer", 10**15 - 1, 10**15 - 1),
        ("integer", 10**16, "10000000000000000"),
        ("decimal", Decimal("1234567890.12345"), Decimal("1234567890.12345")),
        ("decimal", Decimal("12345678901234.567"), "12345678901234.567"),
        ("boolean", True, True),
    ],
)
def test_xlsx_types_only_the_numbers_a_spreadsheet_holds_exactly(kind, value, cell):
    spec = FieldSpec("value", "Value", kind, "text")
    assert exports.cell_value(SimpleNamespace(value=value), exports.Column("value", "Value", spec), {}) == cell
