"""The renovation's printed documents (issue 6 part 6): the permit (REN-3), the outstanding-defects
notice to owner and tenant (REN-2), the rectification notice with its deadline and the acceptance
notice (REN-7), all filed with the renovation (REN-8). Printed only once the workflow wrote them, only
for who may view the renovation, every print audited.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from models import Staff, db
from models.base import utcnow
from models.renovation import Renovation, add_drawing
from tests.helpers import bring_acceptance_documents, make_occupancy, make_resident, make_unit, valid_id
from tests.test_printing import cjk_fonts, pdf_text, prints
from workflow.calendar import app_zone
from workflow.engine import fire

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 40
# The order a renovation takes its steps in, with the role and the values each step asks for.
WALK: list[tuple[str, str, dict[str, str]]] = [
    ("submit", "cs_clerk", {}),
    ("return_defects", "engineering", {"defects_found": "卫生间防水层破损; 烟感被遮挡"}),
    ("submit", "cs_clerk", {}),
    ("approve", "engineering", {"deposit_amount": "2000", "debris_fee": "300", "pass_count": "2"}),
    ("pay_deposit", "finance", {"receipt_no": "SJ-0001"}),
    ("pay_debris", "finance", {"receipt_no": "SJ-0002"}),
    ("pay_pass_deposits", "finance", {"receipt_no": "SJ-0003"}),
    ("issue_permit", "cs_clerk", {"neighbours_notified": "A-12-1202, A-11-1203 张贴通知"}),
    ("finish", "cs_clerk", {}),
    ("apply_acceptance", "cs_clerk", {"asbuilt_sets": "3"}),
    ("fail_inspection", "engineering", {"rectification_items": "阳台地漏未恢复"}),
    ("reinspect", "cs_clerk", {}),
    ("pass_inspection", "engineering", {"vents_unsealed_note": "排风口已解封, 工程部 王"}),
]


def renovation(staff_ids: dict[str, int], until: str, *, times: int = 1) -> Renovation:
    """A renovation of A-12-1203 (owner 张三 applies, tenant 李四) walked through WALK up to and
    including the ``times``-th step named ``until``."""
    unit = make_unit()
    owner = make_resident(name="张三")
    make_occupancy(unit, owner)
    make_occupancy(unit, make_resident(name="李四", phone="13700137000", id_number=valid_id(2)), kind="tenant")
    today = utcnow().astimezone(app_zone()).date()
    ren = Renovation(unit=unit, applicant=owner, scope="厨房卫生间翻新, 更换地砖", contractor="美家装饰有限公司",
                     contractor_contact="王工", contractor_phone="13900139000",
                     planned_start=today + timedelta(days=3), planned_end=today + timedelta(days=40),
                     fees_paid_until=today, fees_confirmed_by="财务 赵", pledge_signed=True,
                     drawing_lighting=True, created_by_id=staff_ids["cs_clerk"])
    db.session.add(ren)
    db.session.flush()
    add_drawing(ren, PNG, "平面图.png", db.session.get(Staff, staff_ids["cs_clerk"]))
    db.session.commit()
    seen = 0
    for name, role, values in WALK:
        values = dict(values)
        if name == "approve":
            ren.pass_deposit_each = "50"
        if name == "finish":
            ren.finished_at = utcnow()
        if name == "apply_acceptance":
            bring_acceptance_documents(ren, db.session.get(Staff, staff_ids[role]))  # REN-10
        if name == "fail_inspection":
            ren.rectify_by = (utcnow() + timedelta(days=10)).astimezone(app_zone()).replace(
                hour=18, minute=0, second=0, microsecond=0)
        assert fire(ren, name, db.session.get(Staff, staff_ids[role]), values=values) == "done", name
        seen += name == until
        if name == until and seen == times:
            break
    db.session.commit()
    return ren


def flat(data: bytes) -> str:
    return pdf_text(data).replace(" ", "").replace("\n", "")


def get_pdf(client: Any, ren: Renovation, kind: str) -> Any:
    return client.get(f"/admin/renovation-print/{ren.id}/{kind}.pdf")


def test_ren_3_permit_pdf_has_number_unit_fees_passes_and_signatures(app, db_session, staff_ids, login_as):
    ren = renovation(staff_ids, "issue_permit")
    permit_no, number = ren.permit_no, ren.number
    response = get_pdf(login_as("cs_clerk"), ren, "permit")
    assert response.status_code == 200, response.status
    assert response.mimetype == "application/pdf" and response.data.startswith(b"%PDF")
    assert response.headers["Cache-Control"] == "no-store"
    assert "filename*=UTF-8''%E8%A3%85%E4%BF%AE%E8%AE%B8%E5%8F%AF%E8%AF%81" in response.headers[
        "Content-Disposition"]  # 装修许可证
    text = flat(response.data)
    for expected in ("装修许可证", "装修批准书", permit_no, number, "A-12-1203", "张三", "美家装饰有限公司", "王工",
                     "厨房卫生间翻新", "2,000.00", "300.00", "100.00", "2,400.00", "SJ-0001", "SJ-0003",
                     f"{permit_no}-01", f"{permit_no}-02", "A-12-1202", ren.planned_start.isoformat()):
        assert expected in text, expected
    assert cjk_fonts(response.data), "the Noto CJK font must be embedded"
    (event,) = prints("renovation")
    assert event.record_id == ren.id and event.actor_name == "clerk" and permit_no in event.comment


@pytest.mark.parametrize("role", ["engineering", "finance", "security", "management_dept", "manager"])
def test_ren_3_permit_printable_by_every_department_that_views_renovations(app, db_session, staff_ids,
                                                                          login_as, role):
    ren = renovation(staff_ids, "issue_permit")
    response = get_pdf(login_as(role), ren, "permit")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")


def test_ren_3_no_permit_before_every_fee_is_paid(app, db_session, staff_ids, login_as):
    ren = renovation(staff_ids, "pay_deposit")  # the debris fee and pass deposits are still due
    response = get_pdf(login_as("cs_clerk"), ren, "permit")
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "finance has recorded every fee" in response.get_data(as_text=True) or \
        "财务" in response.get_data(as_text=True)
    assert prints("renovation") == []


def test_ren_2_defects_notice_one_copy_to_owner_and_one_to_tenant(app, db_session, staff_ids, login_as):
    ren = renovation(staff_ids, "return_defects")
    assert ren.state == "returned"
    response = get_pdf(login_as("cs_clerk"), ren, "defects")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    text = flat(response.data)
    assert text.count("装修预检遗留问题通知书") >= 2  # one copy each, in the title of each page
    for expected in ("张三", "李四", "卫生间防水层破损", "烟感被遮挡", "A-12-1203", "engineer", f"{ren.number}-YL1"):
        assert expected in text, expected
    assert cjk_fonts(response.data)
    (event,) = prints("renovation")
    assert "装修预检遗留问题通知书" in event.comment


def test_ren_2_no_defects_notice_when_engineering_returned_nothing(app, db_session, staff_ids, login_as):
    ren = renovation(staff_ids, "submit")
    response = get_pdf(login_as("engineering"), ren, "defects")
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert prints("renovation") == []


def test_ren_7_rectification_notice_carries_items_and_deadline(app, db_session, staff_ids, login_as):
    ren = renovation(staff_ids, "fail_inspection")
    assert ren.state == "rectifying"
    deadline = ren.notices[-1].due_on.astimezone(app_zone()).strftime("%Y-%m-%d%H:%M")
    response = get_pdf(login_as("engineering"), ren, "rectification")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    text = flat(response.data)
    for expected in ("整改通知书", "阳台地漏未恢复", deadline, "张三", "美家装饰有限公司"):
        assert expected in text, expected
    assert cjk_fonts(response.data)
    assert len(prints("renovation")) == 1


def test_ren_7_no_rectification_or_acceptance_notice_before_inspection(app, db_session, staff_ids, login_as):
    ren = renovation(staff_ids, "apply_acceptance")
    client = login_as("engineering")
    assert get_pdf(client, ren, "rectification").status_code == 404
    assert get_pdf(client, ren, "acceptance").status_code == 404
    assert get_pdf(client, ren, "permit").status_code == 200  # the permit stays printable
    assert len(prints("renovation")) == 1


def test_ren_7_acceptance_notice_lists_the_deposits_to_refund(app, db_session, staff_ids, login_as):
    ren = renovation(staff_ids, "pass_inspection")
    assert ren.state == "accepted"
    response = get_pdf(login_as("finance"), ren, "acceptance")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    text = flat(response.data)
    for expected in ("装修验收合格通知书", "排风口已解封", "2,000.00", "100.00", "张三", "A-12-1203"):
        assert expected in text, expected
    assert "300.00" not in text  # the debris fee is not refunded
    assert cjk_fonts(response.data)


def test_ren_8_every_document_of_the_renovation_is_listed_for_the_archive(app, db_session, staff_ids):
    from views.renovation_print import printable_documents

    ren = renovation(staff_ids, "pass_inspection")
    documents = printable_documents(ren)
    assert [d["kind"] for d in documents] == ["permit", "defects", "rectification", "acceptance"]
    assert documents[0]["url"] == f"/admin/renovation-print/{ren.id}/permit.pdf"
    assert documents[3]["title"] == "装修验收合格通知书"
    ren.notices.clear()
    ren.permit_no, ren.accepted_at = None, None
    assert printable_documents(ren) == []  # nothing printed before its step


def test_ren_print_refused_to_who_may_not_view_renovations(app, db_session, staff_ids, login_as):
    ren = renovation(staff_ids, "issue_permit")
    assert get_pdf(login_as("admin"), ren, "permit").status_code == 403
    anonymous = app.test_client().get(f"/admin/renovation-print/{ren.id}/permit.pdf")
    assert anonymous.status_code == 302 and "/login" in anonymous.location
    assert prints("renovation") == []


def test_ren_print_missing_deleted_or_unknown_is_404(app, db_session, staff_ids, login_as):
    ren = renovation(staff_ids, "issue_permit")
    client = login_as("manager")
    assert client.get("/admin/renovation-print/999999/permit.pdf").status_code == 404
    assert client.get(f"/admin/renovation-print/{ren.id}/invoice.pdf").status_code == 404
    assert client.get("/admin/renovation-print/abc/permit.pdf").status_code == 404
    db.session.execute(sa.update(Renovation).where(Renovation.id == ren.id).values(deleted_at=utcnow()))
    db.session.commit()
    assert client.get(f"/admin/renovation-print/{ren.id}/permit.pdf").status_code == 404
    assert prints("renovation") == []


def test_ren_print_dates_are_local(app, db_session, staff_ids, login_as):
    """The permit's period prints as the local calendar dates typed at the desk."""
    ren = renovation(staff_ids, "issue_permit")
    text = flat(get_pdf(login_as("cs_clerk"), ren, "permit").data)
    assert ren.works_until.isoformat() in text and isinstance(ren.works_until, date)
