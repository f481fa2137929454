"""Forms every screen shares (issue 13): required fields marked before the first save, one error
summary in the user's language after a failed save, a create form posted twice creates one record,
list exports as CSV with a BOM and as XLSX named after the screen."""

from __future__ import annotations

import io
import re
from urllib.parse import unquote

import pytest
import sqlalchemy as sa
from flask import Flask

from models import db
from models.complaints import Complaint
from tests.conftest import ROLE_USERS, csrf_token
from tests.helpers import make_unit
from tests.test_complaints import form as complaint_form
from tests.test_permissions import model_views

TOKEN = re.compile(r'name="form_token" type="hidden" value="([^"]+)"')
SUMMARY_FIELDS = re.compile(r'<a href="#[^"]*" data-field="([^"]+)"')


def label_marked(page: str, field_id: str) -> bool:
    found = re.search(rf'<label for="{re.escape(field_id)}"[^>]*>(.*?)</label>', page, re.S)
    return bool(found and ("&#42;" in found.group(1) or "*" in found.group(1)))


def creators(app: Flask) -> list[tuple[str, str]]:
    """(endpoint, a role that may create there) for every model screen with a create form."""
    found = []
    for view in model_views(app):
        roles = sorted(view.permissions.get("create", ()))
        role = next((r for r in roles if r in ROLE_USERS), None)
        if role:
            found.append((view.endpoint, role))
    return found


def test_reg_ui_every_field_the_server_refuses_empty_is_marked_before_the_first_save(
    app: Flask, db_session, login_as
) -> None:
    """For each create form: post it empty; every field the error summary names must carry * on
    the form as first opened. Flask-Admin's English "Failed to create record." never shows."""
    checked = 0
    for endpoint, role in creators(app):
        client = login_as(role)
        url = f"/admin/{endpoint}/new/"
        first = client.get(url)
        if first.status_code != 200:
            continue
        blank = first.get_data(as_text=True)
        token = TOKEN.search(blank)
        data = {"csrf_token": csrf_token(client), **({"form_token": token.group(1)} if token else {})}
        body = client.post(url, data=data).get_data(as_text=True)
        assert "Failed to create record" not in body and "创建记录失败" not in body, endpoint
        for name in SUMMARY_FIELDS.findall(body):
            assert label_marked(blank, name), f"{endpoint}: {name} is refused when empty but not marked *"
            checked += 1
        db.session.rollback()
    assert checked >= 20  # the complaint form alone has six


def test_cmp_1_a_failed_save_lists_every_missing_field_at_once_linking_to_each(db_session, login_as) -> None:
    unit = make_unit()
    db.session.commit()
    clerk = login_as("cs_clerk")
    blank = {k: "" for k in ("complainant_name", "description", "demand", "location", "occurred_at", "subject")}
    body = clerk.post(
        "/admin/complaint/new/", data={"csrf_token": csrf_token(clerk), **complaint_form(unit.id, **blank)}
    ).get_data(as_text=True)
    summary = body[body.index('id="error-summary"') :]
    assert "有 6 处需要修改" in summary
    named = SUMMARY_FIELDS.findall(summary)
    assert set(named) == set(blank)
    assert 'href="#complainant_name"' in summary and "投诉人" in summary
    assert "Failed to create record" not in body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Complaint)) == 0


def test_cmp_1_the_complaint_form_marks_its_rule_required_fields(login_as, db_session) -> None:
    page = login_as("cs_clerk").get("/admin/complaint/new/").get_data(as_text=True)
    for name in (
        "complainant_name",
        "description",
        "demand",
        "location",
        "occurred_at",
        "subject",
        "read_back_confirmed",
    ):
        assert label_marked(page, name), name


def test_reg_ui_a_create_form_posted_twice_creates_one_record(db_session, login_as) -> None:
    unit = make_unit()
    db.session.commit()
    clerk = login_as("cs_clerk")
    token = TOKEN.search(clerk.get("/admin/complaint/new/").get_data(as_text=True)).group(1)
    data = {"csrf_token": csrf_token(clerk), "form_token": token, **complaint_form(unit.id)}
    assert clerk.post("/admin/complaint/new/", data=data).status_code == 302
    again = clerk.post("/admin/complaint/new/", data=data)
    assert again.status_code == 200
    assert "此表单已提交过" in again.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Complaint)) == 1
    fresh_token = TOKEN.search(clerk.get("/admin/complaint/new/").get_data(as_text=True)).group(1)
    assert clerk.post("/admin/complaint/new/", data={**data, "form_token": fresh_token}).status_code == 302
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Complaint)) == 2


def test_reg_ui_a_forged_or_other_screens_form_token_is_refused(db_session, login_as) -> None:
    unit = make_unit()
    db.session.commit()
    clerk = login_as("cs_clerk")
    other = TOKEN.search(clerk.get("/admin/help_request/new/").get_data(as_text=True)).group(1)
    for token in (other, "not-a-token"):
        body = clerk.post(
            "/admin/complaint/new/",
            data={"csrf_token": csrf_token(clerk), "form_token": token, **complaint_form(unit.id)},
        ).get_data(as_text=True)
        assert "此表单已过期" in body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Complaint)) == 0


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_reg_ui_list_export_is_excel_ready_and_named_after_the_screen(db_session, login_as, kind: str) -> None:
    make_unit()
    db.session.commit()
    response = login_as("manager").get(f"/admin/unit/export/{kind}/")
    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    name = unquote(disposition.split("filename*=UTF-8''")[1])
    assert re.fullmatch(rf"房屋_\d{{8}}-\d{{4}}\.{kind}", name), name
    if kind == "csv":
        assert response.data.startswith("\ufeff".encode())
        assert "房号" in response.data.decode("utf-8-sig").splitlines()[0]
    else:
        from openpyxl import load_workbook

        sheet = load_workbook(io.BytesIO(response.data)).active
        assert sheet.max_row == 2 and any("房号" in str(c.value) for c in sheet[1])


def test_reg_ui_every_exportable_list_offers_csv_and_xlsx(app: Flask) -> None:
    for view in model_views(app):
        if view.permissions.get("export"):
            assert list(view.export_types) == ["csv", "xlsx"], view.endpoint


def test_reg_2_occupancies_are_searchable_by_unit_name_phone_and_filtered_by_unit(db_session, login_as) -> None:
    from tests.helpers import make_occupancy, make_resident

    first = make_unit(code="A-6-601")
    second = make_unit(first.building, code="B-2-201", floor=2)
    make_occupancy(first, make_resident(name="任秀", phone="13900001111"))
    make_occupancy(second, make_resident(name="任秀", phone="13700002222", id_number=None))
    db.session.commit()
    clerk = login_as("cs_clerk")

    def rows(query: str) -> list[str]:
        page = clerk.get(f"/admin/occupancy/?{query}").get_data(as_text=True)
        return sorted(set(re.findall(r"[AB]-\d-\d01", page.split("</thead>")[1])))

    assert rows("search=A-6-601") == ["A-6-601"]
    assert rows("search=%E4%BB%BB%E7%A7%80") == ["A-6-601", "B-2-201"]  # 任秀
    assert rows("search=13700002222") == ["B-2-201"]
    page = clerk.get("/admin/occupancy/").get_data(as_text=True)
    assert '"房号"' in page or "房号" in page  # the unit filter is offered by its label
    assert rows("flt0_0=B-2-201") == ["B-2-201"]
