"""Renovation screens (REGULATIONS §7): every click goes to the engine; refusals are translated and write
nothing; finance's deposit report reconciles (held = collected − refunded)."""

from __future__ import annotations

import io
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask.testing import FlaskClient
from flask_babel import gettext

from models import db
from models.renovation import HotWork, Renovation, RenovationCharge
from models.renovation_report import deposit_report
from tests.conftest import PASSWORD, csrf_token
from tests.helpers import make_occupancy, make_renovation, make_resident, make_unit, valid_id
from tests.test_renovation import PDF, fresh, to_state
from tests.workflow_fixtures import staff


def fire(client: FlaskClient, ren: Any, name: str, endpoint: str = "renovation", **fields: str) -> str:
    data = {"csrf_token": csrf_token(client), "id": ren.id, "name": name, "version": ren.version, "comment": "",
            **{f"field_{k}": v for k, v in fields.items()}}
    response = client.post(f"/admin/{endpoint}/transition/", data=data, follow_redirects=True)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def decide(client: FlaskClient, rec: Any, endpoint: str) -> str:
    data = {"csrf_token": csrf_token(client), "id": rec.id, "version": rec.version, "decision": "approve",
            "comment": ""}
    return client.post(f"/admin/{endpoint}/decide/", data=data, follow_redirects=True).get_data(as_text=True)


def application_form(client: FlaskClient, unit_id: int, applicant_id: int, **extra: str) -> dict[str, Any]:
    start = date.today() + timedelta(days=7)
    return {"csrf_token": csrf_token(client), "unit": unit_id, "applicant": applicant_id, "scope": "厨卫改造",
            "contractor": "安居装饰", "contractor_contact": "李工", "contractor_phone": "13900139000",
            "planned_start": start.isoformat(), "planned_end": (start + timedelta(days=30)).isoformat(),
            "fees_paid_until": (date.today() + timedelta(days=40)).isoformat(), "fees_confirmed_by": "王会计",
            "pledge_signed": "y", "drawing_lighting": "y", **extra}


def test_ren_1_http_application_upload_and_submit(db_session, login_as) -> None:
    unit = make_unit()
    owner = make_resident()
    make_occupancy(unit, owner)
    stranger = make_resident(name="路人", id_number=valid_id(serial=3))
    db.session.commit()
    clerk = login_as("cs_clerk")
    body = clerk.post("/admin/renovation/new/", data=application_form(clerk, unit.id, stranger.id),
                      follow_redirects=True).get_data(as_text=True)
    assert gettext("The applicant is not a current owner or occupant of the unit.") in body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Renovation)) == 0
    response = clerk.post("/admin/renovation/new/", data=application_form(clerk, unit.id, owner.id))
    assert response.status_code == 302, response.get_data(as_text=True)
    ren = db.session.scalar(sa.select(Renovation))
    assert ren.state == "draft" and ren.created_by.username == "clerk"
    body = fire(clerk, ren, "submit")  # no drawing yet: refused, translated
    assert gettext("Upload the drawings (PDF, PNG or JPEG).") in body
    assert fresh(ren.id).state == "draft"
    bad = clerk.post("/admin/renovation/drawing/", data={"csrf_token": csrf_token(clerk), "id": ren.id,
                                                         "file": (io.BytesIO(b"MZ\x90\x00exe"), "plan.pdf")},
                     content_type="multipart/form-data", follow_redirects=True).get_data(as_text=True)
    assert "PDF" in bad and fresh(ren.id).drawing_count == 0
    clerk.post("/admin/renovation/drawing/", data={"csrf_token": csrf_token(clerk), "id": ren.id,
                                                   "file": (io.BytesIO(PDF), "照明图.pdf")},
               content_type="multipart/form-data")
    ren = fresh(ren.id)
    assert ren.drawing_count == 1
    fire(clerk, ren, "submit")
    ren = fresh(ren.id)
    assert ren.state == "submitted"
    page = clerk.get(f"/admin/renovation/details/?id={ren.id}").get_data(as_text=True)
    assert "照明图.pdf" in page


def test_ren_2_http_only_engineering_reviews(db_session, login_as, staff_ids) -> None:
    ren = make_renovation(pass_deposit_each=Decimal("50"))
    db.session.commit()
    to_state(ren, staff_ids, "submitted")
    clerk = login_as("cs_clerk")
    fire(clerk, ren, "approve", deposit_amount="2000", debris_fee="300", pass_count="2")
    assert fresh(ren.id).state == "submitted"
    engineer = login_as("engineering")
    body = fire(engineer, fresh(ren.id), "approve", deposit_amount="-5", debris_fee="300", pass_count="2")
    assert gettext("Enter an amount such as 2000 or 1500.50.") in body
    ren = fresh(ren.id)
    assert ren.state == "submitted" and ren.charges == []
    fire(engineer, ren, "approve", deposit_amount="2000", debris_fee="300", pass_count="2")
    ren = fresh(ren.id)
    assert ren.state == "approved" and ren.charge_total() == Decimal("2400.00")


def test_ren_3_http_finance_pays_desk_issues_permit(db_session, login_as, staff_ids) -> None:
    ren = to_state(make_renovation(), staff_ids, "approved")
    clerk, cashier = login_as("cs_clerk"), login_as("finance")
    body = fire(clerk, ren, "issue_permit", neighbours_notified="1103")
    assert gettext("Finance has not recorded every fee and deposit yet.") in body
    for name in ("pay_deposit", "pay_debris", "pay_pass_deposits"):
        fire(cashier, fresh(ren.id), name, receipt_no=f"R-{name}")
    fire(clerk, fresh(ren.id), "issue_permit", neighbours_notified="1103、1303")
    ren = fresh(ren.id)
    assert ren.state == "permitted" and len(ren.passes) == 2
    page = clerk.get(f"/admin/renovation/details/?id={ren.id}").get_data(as_text=True)
    assert ren.permit_no in page and 'id="passes"' in page


def test_ren_4_http_hot_work_joint_sign_off(db_session, login_as, staff_ids) -> None:
    from models.base import utcnow

    ren = to_state(make_renovation(), staff_ids, "permitted")
    hot = HotWork(renovation=ren, work="焊接", location="阳台", starts_at=utcnow() + timedelta(days=1),
                  ends_at=utcnow() + timedelta(days=1, hours=2), operator="焊工", fire_watch="保安",
                  lead_name="施工队长 孙", lead_phone="13800138000", lead_id_no="T4412021990",
                  extinguishers_ready=True)
    db.session.add(hot)
    db.session.commit()
    fire(login_as("cs_clerk"), hot, "approve", endpoint="renovation_hot_work")
    decide(login_as("engineering"), db.session.get(HotWork, hot.id), "renovation_hot_work")
    db.session.rollback()
    assert db.session.get(HotWork, hot.id).state == "applied"
    decide(login_as("security"), db.session.get(HotWork, hot.id), "renovation_hot_work")
    db.session.rollback()
    assert db.session.get(HotWork, hot.id).state == "approved"


def test_ren_5_http_ladder_refuses_skipping_a_rung(db_session, login_as, staff_ids) -> None:
    ren = to_state(make_renovation(), staff_ids, "permitted")
    guard = login_as("security")
    body = fire(guard, ren, "warn_written", breach_description="拆改承重墙", contractor_signature="李工")
    assert gettext("The warning ladder goes in order: verbal warning, written violation notice, final "
                   "warning, then power cut or clearing the site.") in body
    assert fresh(ren.id).warnings == []
    fire(guard, fresh(ren.id), "warn_verbal", breach_description="拆改承重墙", contractor_signature="李工")
    ren = fresh(ren.id)
    assert [w.level for w in ren.warnings] == ["verbal"] and ren.warnings[0].inspector.username == "guard"


def test_ren_6_http_extension_waits_for_engineering(db_session, login_as, staff_ids) -> None:
    ren = to_state(make_renovation(), staff_ids, "permitted")
    new_end = (ren.works_until + timedelta(days=10)).isoformat()
    fire(login_as("cs_clerk"), ren, "extend", extension_until=new_end, extension_reason="材料延误")
    ren = fresh(ren.id)
    assert ren.pending_transition == "extend"
    decide(login_as("engineering"), ren, "renovation")
    assert fresh(ren.id).works_until.isoformat() == new_end


def test_ren_7_http_refund_by_finance_only(db_session, login_as, staff_ids) -> None:
    ren = to_state(make_renovation(), staff_ids, "accepted")
    engine_user = staff(staff_ids, "cs_clerk")
    from workflow import engine

    engine.fire(ren, "return_passes", engine_user)
    fire(login_as("cs_clerk"), fresh(ren.id), "refund", receipt_no="T1")
    assert fresh(ren.id).state == "accepted"
    fire(login_as("finance"), fresh(ren.id), "refund", receipt_no="T1")
    assert fresh(ren.id).state == "closed"


def test_ren_8_details_page_lists_the_unit_documents(db_session, login_as, staff_ids) -> None:
    ren = to_state(make_renovation(), staff_ids, "closed")
    page = login_as("cs_clerk").get(f"/admin/renovation/details/?id={ren.id}").get_data(as_text=True)
    for kind in ("permit", "neighbours", "acceptance"):
        assert f"notice-{kind}" in page


def test_ren_7_deposit_report_reconciles(db_session, login_as, staff_ids) -> None:
    closed = to_state(make_renovation(), staff_ids, "closed")
    accepted = to_state(make_renovation(unit=make_unit(closed.unit.building, code="A-12-1204")), staff_ids, "accepted")
    held = to_state(make_renovation(unit=make_unit(closed.unit.building, code="A-12-1205")), staff_ids, "permitted")
    report = deposit_report()
    rows = {r.renovation_id: r for r in report.rows}
    assert set(rows) == {closed.id, accepted.id, held.id}
    collected = db.session.scalar(sa.select(sa.func.sum(RenovationCharge.amount)).where(
        RenovationCharge.kind.in_(("deposit", "pass_deposit")), RenovationCharge.paid_at.is_not(None)))
    refunded = db.session.scalar(sa.select(sa.func.sum(RenovationCharge.refunded_amount)))
    assert report.total("collected") == collected == Decimal("6300.00")
    assert report.total("refunded") == refunded == Decimal("2100.00")
    assert report.total("held") == collected - refunded
    assert [r.renovation_id for r in report.due] == [accepted.id] and report.due_total == Decimal("2100.00")
    assert report.overdue == []
    later = deposit_report(accepted.due_at + timedelta(minutes=1))
    assert [r.renovation_id for r in later.overdue] == [accepted.id]
    assert login_as("cs_clerk").get("/admin/renovation-deposits/").status_code == 403
    cashier = login_as("finance")
    page = cashier.get("/admin/renovation-deposits/").get_data(as_text=True)
    assert 'id="total-held">4200.00' in page
    assert "/reauth" in cashier.get("/admin/renovation-deposits/export.xlsx").location  # ACC-5: applicants
    cashier.post("/reauth", data={"csrf_token": csrf_token(cashier), "password": PASSWORD})
    response = cashier.get("/admin/renovation-deposits/export.xlsx")
    assert response.status_code == 200
    from openpyxl import load_workbook

    ws = load_workbook(io.BytesIO(response.data)).active
    total = [row for row in ws.iter_rows(values_only=True) if row[0] == gettext("Total")][0]
    assert Decimal(str(total[4])) - Decimal(str(total[5])) == Decimal(str(total[6])) == Decimal("4200.00")


def test_ren_5_http_contractor_signature_scan_by_the_inspector(db_session, login_as, staff_ids) -> None:
    from models.attachment import attachments_of
    from workflow import engine

    ren = to_state(make_renovation(), staff_ids, "permitted")
    clerk, guard = login_as("cs_clerk"), login_as("security")

    def upload(client: FlaskClient) -> Any:
        return client.post("/admin/renovation/signature/", data={
            "csrf_token": csrf_token(client), "id": ren.id, "file": (io.BytesIO(PDF), "签字.pdf")},
            content_type="multipart/form-data")

    assert upload(guard).status_code == 403  # nothing to sign yet
    engine.fire(ren, "warn_verbal", staff(staff_ids, "security"),
                values={"breach_description": "噪音超时", "contractor_signature": "李工"})
    assert upload(clerk).status_code == 403  # the desk does not patrol
    assert upload(guard).status_code == 302
    names = [a.original_filename for a in attachments_of("renovation", ren.id, "signature")]
    assert len(names) == 1 and names[0].startswith("verbal-")


def test_ren_8_unit_documents_page(db_session, login_as, staff_ids) -> None:
    ren = to_state(make_renovation(drawing_count=0), staff_ids, "draft")
    from models.renovation import add_drawing

    add_drawing(ren, PDF, "平面图.pdf", None)
    db.session.commit()
    to_state(ren, staff_ids, "permitted")
    client = login_as("management_dept")
    page = client.get(f"/admin/renovation/unit/{ren.unit_id}/").get_data(as_text=True)
    assert "平面图.pdf" in page and "document-permit" in page and "document-neighbours" in page
    assert client.get("/admin/renovation/unit/999999/").status_code == 404
    assert app_anonymous_redirect(ren.unit_id)


def app_anonymous_redirect(unit_id: int) -> bool:
    from flask import current_app

    response = current_app.test_client().get(f"/admin/renovation/unit/{unit_id}/")
    return response.status_code == 302
