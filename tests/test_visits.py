"""Follow-up visits (回访, REGULATIONS §5: VIS-1..4, VIS-6), through the engine and the screens."""

from __future__ import annotations

import base64
import re
import zlib
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from models import Department, Staff, db
from models.attachment import Attachment, store
from models.base import utcnow
from models.deadline import DeadlineClock
from models.validators import DomainError
from models.visit_stats import follow_up_processing_rate
from models.visits import Visit, completed_visit_for, draft_complaint_follow_up
from tests.conftest import csrf_token
from tests.helpers import make_complaint, make_repair_order, make_visit
from workflow import engine


def png(width: int = 4, height: int = 2) -> bytes:
    """A real (tiny, white) PNG, as a canvas would produce."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    raw = b"".join(b"\x00" + b"\xff" * (width * 3) for _ in range(height))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


HEAD = ("A complaint follow-up is made by the head of the responsible department, a customer-service "
        "supervisor or the manager.")
MAJOR = "A major repair is visited on site."
SIGNATURE = ("An on-site visit needs the resident's signature: let the resident sign on screen or upload the "
             "signed scan first.")
AGREED = "An issue that cannot be answered at once needs an agreed reply time."


def said(text: str, msgid: str, **values: Any) -> bool:
    """The message as the (Chinese) screen shows it, whether or not its translation is compiled yet."""
    from flask_babel import force_locale, gettext
    from markupsafe import escape

    with force_locale("zh_Hans_CN"):
        message = gettext(msgid, **values)
    return message in text or str(escape(message)) in text


def staff(staff_ids: dict[str, int], role: str) -> Staff:
    return db.session.get(Staff, staff_ids[role])


def department(key: str) -> Department:
    return db.session.scalar(sa.select(Department).where(Department.key == key))


def head_of_engineering(staff_ids: dict[str, int]) -> Staff:
    engineer = staff(staff_ids, "engineering")
    engineer.department, engineer.department_head = department("engineering"), True
    db.session.commit()
    return engineer


def handled_complaint(staff_ids: dict[str, int], **overrides: Any) -> Any:
    """A complaint about the engineering department, dispatched, accepted and handled (engine)."""
    engineer = head_of_engineering(staff_ids)
    complaint = make_complaint(department=department("engineering"), **overrides)
    db.session.commit()
    engine.fire(complaint, "dispatch", staff(staff_ids, "cs_clerk"))
    engine.fire(complaint, "accept", engineer)
    engine.fire(complaint, "handle", engineer, values={"handling_notes": "已修复并清洁"})
    assert complaint.state == "handled" and complaint.handled_at is not None
    return complaint


def fresh(visit_id: int) -> Visit:
    db.session.rollback()
    return db.session.get(Visit, visit_id)


def refusal(visit: Visit, user: Staff, name: str = "record") -> str:
    with pytest.raises(engine.WorkflowError) as caught:
        engine.fire(visit, name, user)
    return str(caught.value)


def fire(client: FlaskClient, visit: Visit, name: str, **fields: Any) -> str:
    data = {"csrf_token": csrf_token(client), "id": visit.id, "name": name, "version": visit.version,
            "comment": "", **fields}
    response = client.post("/admin/visit/transition/", data=data, follow_redirects=True)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def local_now(minutes_ago: int = 0) -> str:
    from zoneinfo import ZoneInfo

    return (utcnow() - timedelta(minutes=minutes_ago)).astimezone(ZoneInfo("Asia/Shanghai")).strftime(
        "%Y-%m-%d %H:%M:%S")


# --- VIS-1 ------------------------------------------------------------------------------------------
def test_vis_1_department_head_phones_after_handling_and_the_complaint_can_be_marked_visited(
        db_session, staff_ids) -> None:
    complaint = handled_complaint(staff_ids)
    engineer = staff(staff_ids, "engineering")
    visit = make_visit(kind="complaint", complaint=complaint, visitor=engineer, visited_at=utcnow(),
                       opinion="已修好，满意")
    db.session.commit()
    assert completed_visit_for(complaint) is None  # a draft proves nothing
    engine.fire(visit, "record", engineer)
    assert fresh(visit.id).state == "recorded"
    assert completed_visit_for(complaint).id == visit.id
    clerk = staff(staff_ids, "cs_clerk")  # the desk tells the resident and closes the loop
    engine.fire(complaint, "tell", clerk, values={"reply_to_resident": "已电话告知处理结果"})
    engine.fire(complaint, "visit", clerk)
    assert complaint.state == "visited"


def test_vis_1_handling_drafts_the_follow_up_due_in_three_days_for_the_head(db_session, staff_ids) -> None:
    complaint = handled_complaint(staff_ids)
    engineer = staff(staff_ids, "engineering")
    [visit] = db.session.scalars(sa.select(Visit).where(Visit.complaint_id == complaint.id))  # drafted by "handle"
    again = draft_complaint_follow_up(complaint, staff(staff_ids, "cs_clerk"))
    db.session.commit()
    assert again.due_at == visit.due_at  # drafting by hand gives the same VIS-1 clock
    assert visit.visitor_id == engineer.id and visit.state == "draft"
    assert visit.due_at == complaint.handled_at + timedelta(days=3)
    clock = db.session.scalar(sa.select(DeadlineClock).where(DeadlineClock.record_type == "visit",
                                                             DeadlineClock.record_id == visit.id))
    assert (clock.name, clock.responsible_id, clock.is_open) == ("complaint_follow_up", engineer.id, True)
    visit.visited_at, visit.opinion = utcnow(), "满意"
    db.session.commit()
    engine.fire(visit, "record", engineer)
    clock = db.session.get(DeadlineClock, clock.id)
    assert not clock.is_open and clock.met_at is not None and clock.breached_at is None


def test_vis_1_only_the_responsible_head_a_supervisor_or_the_manager_follows_up(db_session, staff_ids) -> None:
    complaint = handled_complaint(staff_ids)
    engineer = staff(staff_ids, "engineering")
    engineer.department_head = False
    db.session.commit()
    visit = make_visit(kind="complaint", complaint=complaint, visitor=engineer, visited_at=utcnow())
    db.session.commit()
    assert said(refusal(visit, engineer), HEAD)
    visit = fresh(visit.id)
    visit.visitor = staff(staff_ids, "cs_clerk")  # the desk records it, but a clerk did not visit
    db.session.commit()
    assert said(refusal(visit, staff(staff_ids, "cs_clerk")), HEAD)
    visit = fresh(visit.id)
    visit.visitor = staff(staff_ids, "cs_supervisor")
    db.session.commit()
    engine.fire(visit, "record", staff(staff_ids, "cs_clerk"))
    assert fresh(visit.id).state == "recorded"


def test_vis_1_an_opinion_or_the_reason_the_visit_was_impossible_is_required(db_session, staff_ids) -> None:
    complaint = handled_complaint(staff_ids)
    engineer = staff(staff_ids, "engineering")
    visit = make_visit(kind="complaint", complaint=complaint, visitor=engineer, visited_at=utcnow(),
                       opinion=None, person_visited=None)
    db.session.commit()
    assert said(refusal(visit, engineer), "Record the resident's opinion or, if no visit was possible, the reason.")
    visit = fresh(visit.id)
    visit.impossible_reason = "连续三天电话无人接听，上门无人"
    db.session.commit()
    engine.fire(visit, "record", engineer)
    assert completed_visit_for(complaint).id == visit.id  # the reason counts as the follow-up


def test_vis_1_no_follow_up_before_the_complaint_is_handled(db_session, staff_ids) -> None:
    head_of_engineering(staff_ids)
    complaint = make_complaint(department=department("engineering"))
    visit = make_visit(kind="complaint", complaint=complaint, visitor=staff(staff_ids, "manager"))
    db.session.commit()
    assert said(refusal(visit, staff(staff_ids, "manager")),
                "The complaint has not been handled yet; the follow-up comes after.")


def test_vis_1_form_prefilled_from_the_complaint_then_recorded_over_http(db_session, staff_ids, login_as) -> None:
    complaint = handled_complaint(staff_ids)
    client = login_as("engineering")
    form = client.get(f"/admin/visit/new/?complaint_id={complaint.id}").get_data(as_text=True)
    assert re.search(r'<option[^>]*selected[^>]*value="complaint"|value="complaint"[^>]*selected', form)
    assert f'value="{complaint.id}"' in form
    response = client.post("/admin/visit/new/", data={
        "csrf_token": csrf_token(client), "kind": "complaint", "complaint": complaint.id, "method": "phone",
        "visited_at": local_now(), "visitor": staff_ids["engineering"], "person_visited": "张三",
        "opinion": "满意", "satisfied": "y"})
    assert response.status_code == 302, response.get_data(as_text=True)
    visit = db.session.scalar(sa.select(Visit).order_by(Visit.id.desc()).limit(1))  # not the one "handle" drafted
    assert visit.state == "draft" and visit.complaint_id == complaint.id
    body = fire(client, visit, "record")
    assert fresh(visit.id).state == "recorded", re.findall(r'alert[^>]*>(.*?)</div>', body, re.S)


def test_vis_1_a_complaint_follow_up_without_its_complaint_is_refused_by_the_form(db_session, login_as) -> None:
    client = login_as("cs_clerk")
    body = client.post("/admin/visit/new/", data={
        "csrf_token": csrf_token(client), "kind": "complaint", "method": "phone", "visited_at": local_now(),
        "person_visited": "张三", "opinion": "满意"}).get_data(as_text=True)
    assert said(body, "A complaint follow-up must name the complaint.")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Visit)) == 0


# --- VIS-2 ------------------------------------------------------------------------------------------
def test_vis_2_a_major_repair_is_visited_on_site(db_session, staff_ids, login_as) -> None:
    order = make_repair_order(emergency=True)
    db.session.commit()
    client = login_as("engineering")
    form = client.get(f"/admin/visit/new/?repair_order_id={order.id}").get_data(as_text=True)
    assert re.search(r'value="on_site"[^>]*selected|selected[^>]*value="on_site"', form)  # the advice
    body = client.post("/admin/visit/new/", data={
        "csrf_token": csrf_token(client), "kind": "repair", "repair_order": order.id, "method": "phone",
        "visited_at": local_now(), "visitor": staff_ids["engineering"], "person_visited": "张三",
        "opinion": "满意"}).get_data(as_text=True)
    assert said(body, MAJOR)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Visit)) == 0
    visit = make_visit(kind="repair", repair_order=order, method="phone")
    db.session.commit()
    assert said(refusal(visit, staff(staff_ids, "manager")), MAJOR)


def test_vis_2_ordinary_repairs_by_phone_and_surveys_and_suggestions_need_no_complaint(
        db_session, staff_ids) -> None:
    order = make_repair_order()
    manager = staff(staff_ids, "manager")
    visits = [make_visit(kind="repair", repair_order=order), make_visit(kind="survey"),
              make_visit(kind="suggestion", opinion="建议增设快递柜")]
    db.session.commit()
    for visit in visits:
        engine.fire(visit, "record", manager)
        assert visit.state == "recorded"


def test_vis_2_a_repair_visit_names_its_work_order(db_session, staff_ids) -> None:
    visit = make_visit(kind="repair")
    db.session.commit()
    assert said(refusal(visit, staff(staff_ids, "manager")), "A repair visit must name the repair work order.")


# --- VIS-3 ------------------------------------------------------------------------------------------
def test_vis_3_on_site_visit_needs_signature(db_session, staff_ids) -> None:
    manager = staff(staff_ids, "manager")
    visit = make_visit(method="on_site")
    db.session.commit()
    assert said(refusal(visit, manager), SIGNATURE)
    visit = fresh(visit.id)
    store(visit, "signature", png(), "sig.png", manager)
    db.session.commit()
    engine.fire(visit, "record", manager)
    assert fresh(visit.id).state == "recorded"


def test_vis_3_signature_drawn_on_screen_is_saved_and_then_the_visit_records(db_session, login_as) -> None:
    visit = make_visit(method="on_site")
    db.session.commit()
    client = login_as("cs_clerk")
    page = client.get(f"/admin/visit/details/?id={visit.id}").get_data(as_text=True)
    assert 'id="signature-pad"' in page and "/admin/visit/signature/" in page
    assert 'id="record-blocker"' in page and said(page, SIGNATURE)  # why "record" is not offered yet
    assert said(fire(client, visit, "record"), SIGNATURE) and fresh(visit.id).state == "draft"
    response = client.post("/admin/visit/signature/", data={
        "csrf_token": csrf_token(client), "id": visit.id, "signature": data_url(png())}, follow_redirects=True)
    assert said(response.get_data(as_text=True), "The signature was saved.")
    row = db.session.scalar(sa.select(Attachment))
    assert (row.record_type, row.record_id, row.kind, row.content_type) == ("visit", visit.id, "signature",
                                                                            "image/png")
    fire(client, fresh(visit.id), "record")
    assert fresh(visit.id).state == "recorded"
    details = client.get(f"/admin/visit/details/?id={visit.id}").get_data(as_text=True)
    assert f"/attachments/{row.id}" in details and 'id="signature-pad"' not in details  # recorded: no more pad


def test_vis_3_uploaded_scan_counts_as_the_signature(db_session, login_as) -> None:
    import io

    visit = make_visit(method="on_site")
    db.session.commit()
    client = login_as("cs_clerk")
    client.post("/admin/visit/signature/", data={
        "csrf_token": csrf_token(client), "id": visit.id,
        "file": (io.BytesIO(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"), "签字单.pdf")},
        content_type="multipart/form-data")
    row = db.session.scalar(sa.select(Attachment))
    assert row.content_type == "application/pdf" and row.original_filename == "签字单.pdf"
    fire(client, fresh(visit.id), "record")
    assert fresh(visit.id).state == "recorded"


def test_vis_3_phone_visit_is_marked_as_such(db_session, login_as) -> None:
    visit = make_visit(method="phone")
    db.session.commit()
    client = login_as("cs_clerk")
    details = client.get(f"/admin/visit/details/?id={visit.id}").get_data(as_text=True)
    assert said(details, "Phone visit: no signature needed")
    assert said(client.get("/admin/visit/").get_data(as_text=True), "By phone")
    fire(client, visit, "record")
    assert fresh(visit.id).state == "recorded"  # no signature for a phone visit


# --- VIS-4 ------------------------------------------------------------------------------------------
def test_vis_4_new_issue_needs_an_agreed_reply_time_and_drafts_the_further_visit(db_session, staff_ids) -> None:
    manager = staff(staff_ids, "manager")
    visit = make_visit(new_issue="楼道灯不亮，需要物业答复何时更换")
    db.session.commit()
    assert said(refusal(visit, manager), AGREED)
    agreed = utcnow() + timedelta(days=2)
    visit = fresh(visit.id)
    visit.agreed_reply_at = agreed
    db.session.commit()
    engine.fire(visit, "record", manager)
    further = db.session.scalar(sa.select(Visit).where(Visit.previous_visit_id == visit.id))
    assert further.state == "draft" and further.reply_due_at == agreed and further.due_at == agreed
    clock = db.session.scalar(sa.select(DeadlineClock).where(DeadlineClock.record_type == "visit",
                                                             DeadlineClock.record_id == further.id))
    assert clock.name == "further_visit" and clock.is_open

    # The further visit does not resolve it yet: a new reply time, and another visit is drafted.
    further.visited_at, further.opinion, further.resolved = utcnow(), "灯具缺货，下周到货", False
    db.session.commit()
    assert said(refusal(further, manager), AGREED)
    further = fresh(further.id)
    further.agreed_reply_at = utcnow() + timedelta(days=7)
    db.session.commit()
    engine.fire(further, "record", manager)
    clock = db.session.get(DeadlineClock, clock.id)
    assert not clock.is_open and clock.met_at is not None
    third = db.session.scalar(sa.select(Visit).where(Visit.previous_visit_id == further.id))
    assert third is not None and fresh(visit.id).issue_resolved_at is None

    third = fresh(third.id)
    third.visited_at, third.opinion, third.resolved = utcnow(), "灯已更换，满意", True
    db.session.commit()
    engine.fire(third, "record", manager)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Visit)) == 3  # the chain ends here
    assert fresh(visit.id).issue_resolved_at is not None and fresh(further.id).issue_resolved_at is not None
    day = timedelta(days=1)
    rate = follow_up_processing_rate(utcnow() - day, utcnow() + day)
    assert (rate.done, rate.total, rate.value) == (1, 1, 1.0)


def test_vis_4_resolved_belongs_to_a_further_visit(db_session, staff_ids) -> None:
    visit = make_visit(resolved=True)
    db.session.commit()
    assert said(refusal(visit, staff(staff_ids, "manager")),
                "“Resolved” closes the issue of an earlier visit; choose that visit.")


def test_vis_4_further_visit_link_over_http(db_session, staff_ids, login_as) -> None:
    manager = staff(staff_ids, "manager")
    first = make_visit(new_issue="需要答复停车位", agreed_reply_at=utcnow() + timedelta(days=1))
    db.session.commit()
    engine.fire(first, "record", manager)
    client = login_as("cs_clerk")
    form = client.get(f"/admin/visit/new/?previous_visit_id={first.id}").get_data(as_text=True)
    assert f'value="{first.id}"' in form


# --- VIS-6 ------------------------------------------------------------------------------------------
def test_vis_6_only_the_manager_signs_visit_records(db_session, staff_ids, login_as) -> None:
    visit = make_visit()
    db.session.commit()
    engine.fire(visit, "record", staff(staff_ids, "cs_clerk"))
    assert "您的角色不能" in fire(login_as("cs_supervisor"), fresh(visit.id), "sign")
    assert fresh(visit.id).state == "recorded"
    fire(login_as("manager"), fresh(visit.id), "sign")
    assert fresh(visit.id).state == "signed"


def test_vis_6_manager_signs_many_at_once_through_the_bulk_action(db_session, staff_ids, login_as) -> None:
    visits = [make_visit(person_visited=f"住户{i}") for i in range(3)]
    db.session.commit()
    for visit in visits:
        engine.fire(visit, "record", staff(staff_ids, "cs_clerk"))
    draft = make_visit()
    db.session.commit()
    client = login_as("manager")
    data = {"csrf_token": csrf_token(client), "action": "wf_sign",
            "rowid": [str(v.id) for v in [*visits, draft]]}
    data.update({f"v_{v.id}": str(fresh(v.id).version) for v in [*visits, draft]})
    response = client.post("/admin/visit/action/", data=data, follow_redirects=True)
    assert said(response.get_data(as_text=True), "%(n)s record(s) done.", n=3)
    assert [fresh(v.id).state for v in visits] == ["signed"] * 3
    assert fresh(draft.id).state == "draft"  # the engine refused the draft


def test_vis_6_a_recorded_visit_is_locked_until_the_manager_returns_it(db_session, staff_ids, login_as) -> None:
    visit = make_visit()
    db.session.commit()
    engine.fire(visit, "record", staff(staff_ids, "cs_clerk"))
    client = login_as("cs_clerk")
    visit = fresh(visit.id)
    body = client.post(f"/admin/visit/edit/?id={visit.id}", data={
        "csrf_token": csrf_token(client), "version": visit.version, "kind": "survey", "method": "phone",
        "visited_at": local_now(60), "visitor": staff_ids["manager"], "person_visited": "李四",
        "opinion": "改过的意见"}).get_data(as_text=True)
    assert said(body, "A recorded visit cannot be changed; the manager may return it for correction.")
    assert fresh(visit.id).opinion == "对保洁服务满意"
    fire(login_as("manager"), fresh(visit.id), "reopen", comment="被访人姓名有误")
    assert fresh(visit.id).state == "draft"


# --- VIS-7 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("severity", ["important", "major"])
def test_vis_7_important_and_major_complaints_need_a_signed_on_site_visit(db_session, staff_ids,
                                                                          severity: str) -> None:
    complaint = handled_complaint(staff_ids, severity=severity)
    engineer, clerk = staff(staff_ids, "engineering"), staff(staff_ids, "cs_clerk")
    [visit] = db.session.scalars(sa.select(Visit).where(Visit.complaint_id == complaint.id))
    assert visit.method == "on_site"  # drafted as 上门回访
    visit.method, visit.visited_at, visit.opinion = "phone", utcnow(), "满意"
    with pytest.raises(DomainError, match="VIS-7"):  # a phone follow-up is refused at the method field
        visit.check_draft()
    db.session.commit()
    assert "VIS-7" in refusal(visit, engineer)
    visit = fresh(visit.id)
    visit.method = "on_site"
    db.session.commit()
    assert said(refusal(visit, engineer), SIGNATURE)  # on site without the resident's signature
    store(visit, "signature", png(), "sig.png", engineer)
    db.session.commit()
    engine.fire(visit, "record", engineer)
    engine.fire(complaint, "tell", clerk, values={"reply_to_resident": "已上门告知处理结果"})
    if severity == "major":
        complaint.answered_at = utcnow()
    engine.fire(complaint, "visit", clerk)
    assert complaint.state == "visited"


def test_vis_7_a_phone_follow_up_does_not_satisfy_an_important_complaints_visit_guard(db_session,
                                                                                     staff_ids) -> None:
    complaint = handled_complaint(staff_ids, severity="minor")
    engineer, clerk = staff(staff_ids, "engineering"), staff(staff_ids, "cs_clerk")
    [visit] = db.session.scalars(sa.select(Visit).where(Visit.complaint_id == complaint.id))
    assert visit.method == "phone"  # a minor complaint keeps phone or visit
    visit.visited_at, visit.opinion = utcnow(), "满意"
    db.session.commit()
    engine.fire(visit, "record", engineer)
    engine.fire(complaint, "tell", clerk, values={"reply_to_resident": "电话告知"})
    assert completed_visit_for(complaint) is not None
    complaint.severity = "important"  # regraded after the phone call: the call no longer counts
    db.session.commit()
    assert completed_visit_for(complaint) is None
    with pytest.raises(engine.NotAllowed):
        engine.fire(complaint, "visit", clerk)
    assert db.session.get(type(complaint), complaint.id).state == "told"
