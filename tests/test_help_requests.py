"""Help requests (住户求助, REGULATIONS §6 HLP-1..6) through the engine and the screens."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from flask_babel import force_locale, gettext

from models import AuditEntry, Notification, Staff, db
from models.deadline import DeadlineClock
from models.help_requests import HelpRequest
from models.repairs import RepairOrder
from tests.conftest import csrf_token
from tests.helpers import make_help_request, make_occupancy, make_resident, make_unit
from tests.test_mail import inbox, set_email  # noqa: F401  (the real local SMTP server fixture)
from tests.workflow_fixtures import add_staff
from workflow import engine

SHANGHAI = ZoneInfo("Asia/Shanghai")
ALONE = "Carers never stay alone with the patient: name two different carers."


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI).astimezone(UTC)


def fresh(request_id: int) -> HelpRequest:
    db.session.rollback()
    return db.session.get(HelpRequest, request_id)


def clocks(record: Any) -> dict[str, DeadlineClock]:
    db.session.expire_all()
    return {c.name: c for c in db.session.scalars(sa.select(DeadlineClock).where(
        DeadlineClock.record_type == type(record).__tablename__, DeadlineClock.record_id == record.id))}


def fire(client: FlaskClient, record: Any, name: str, endpoint: str = "help_request", **fields: Any) -> str:
    data = {"csrf_token": csrf_token(client), "id": record.id, "name": name, "version": record.version,
            "comment": "", **fields}
    response = client.post(f"/admin/{endpoint}/transition/", data=data, follow_redirects=True)
    assert response.status_code == 200
    return html.unescape(response.get_data(as_text=True))


def form(client: FlaskClient, **fields: Any) -> Any:
    data = {"csrf_token": csrf_token(client), "received_at": "2026-11-20 09:00:00", "caller": "张三",
            "caller_phone": "13800138000", "description": "求助", **fields}
    return client.post("/admin/help_request/new/", data=data)


def edit(client: FlaskClient, record: HelpRequest, **fields: Any) -> Any:
    page = client.get(f"/admin/help_request/edit/?id={record.id}").get_data(as_text=True)
    assert 'name="version"' in page
    data = {"csrf_token": csrf_token(client), "version": record.version, "category": record.category,
            "sub_kind": record.sub_kind or "", "caller": record.caller, "caller_phone": record.caller_phone or "",
            "description": record.description, "enquiry_mode": record.enquiry_mode or "",
            "received_at": record.received_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
            **({"needs_manager_reply": "y"} if record.needs_manager_reply else {}),
            **({"urgent": "y"} if record.urgent else {}), **fields}
    return client.post(f"/admin/help_request/edit/?id={record.id}", data=data)


def zh(msgid: str, **values: Any) -> str:
    """The zh_CN text of a message (the msgid itself until its translation is compiled)."""
    with force_locale("zh_Hans_CN"):
        return gettext(msgid, **values)


def count(model: Any) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


# --- HLP-1 categories, special vs general ------------------------------------------------------------
def test_hlp_1_eight_categories_and_special_ones(db_session) -> None:
    from models.help_requests import CATEGORIES, SPECIAL

    assert set(CATEGORIES) == {"medical", "repair", "complaint", "enquiry", "crime", "disaster", "daily", "paid"}
    assert SPECIAL == {"medical", "crime", "disaster"}
    made = {c: make_help_request(category=c, sub_kind={"crime": "theft", "disaster": "typhoon"}.get(c),
                                 enquiry_mode="oral" if c == "enquiry" else None) for c in CATEGORIES}
    db.session.commit()
    assert {c for c, r in made.items() if r.special} == SPECIAL
    special_ids = set(db.session.scalars(sa.select(HelpRequest.id).where(HelpRequest.special)))
    assert special_ids == {made[c].id for c in SPECIAL}


def test_hlp_1_list_shows_special_and_filters_by_category_special_state_and_overdue(db_session, login_as) -> None:
    fire_ = make_help_request(category="disaster", sub_kind="fire", caller="火警王")
    daily = make_help_request(caller="日常李")
    late = make_help_request(caller="超时赵", received_at=datetime.now(UTC) - timedelta(hours=1))
    db.session.commit()
    clerk = login_as("cs_clerk")
    page = clerk.get("/admin/help_request/").get_data(as_text=True)
    assert all(n in page for n in ("火警王", "日常李", "超时赵")) and zh("Special request") in page
    special = clerk.get("/admin/help_request/?flt0_1=1").get_data(as_text=True)
    assert "火警王" in special and "日常李" not in special
    general = clerk.get("/admin/help_request/?flt0_1=0").get_data(as_text=True)
    assert "火警王" not in general and "日常李" in general
    by_category = clerk.get("/admin/help_request/?flt0_0=disaster").get_data(as_text=True)
    assert "火警王" in by_category and "日常李" not in by_category
    overdue = clerk.get("/admin/help_request/?flt0_3=1").get_data(as_text=True)
    assert "超时赵" in overdue and "日常李" not in overdue
    engine.fire(fresh(daily.id), "reply", staff_of("cs_clerk"), values={"reply": "已开门"})
    replied = clerk.get("/admin/help_request/?flt0_2=replied").get_data(as_text=True)
    assert "日常李" in replied and "火警王" not in replied
    assert fire_.id and late.id


def staff_of(role: str) -> Staff:
    from tests.conftest import ROLE_USERS

    return db.session.scalar(sa.select(Staff).where(Staff.username == ROLE_USERS[role]))


def test_hlp_1_crime_needs_its_kind_through_the_form_nothing_written(db_session, login_as) -> None:
    clerk = login_as("cs_clerk")
    body = form(clerk, category="crime").get_data(as_text=True)
    assert zh("Choose the kind of crime/accident or disaster.") in body
    assert count(HelpRequest) == 0 and count(Notification) == 0
    response = form(clerk, category="crime", sub_kind="robbery", state="closed")
    assert response.status_code == 302, response.get_data(as_text=True)
    request = db.session.scalar(sa.select(HelpRequest))
    assert (request.category, request.sub_kind, request.state, request.special) == ("crime", "robbery",
                                                                                    "received", True)
    assert form(clerk, category="daily", sub_kind="fire").status_code == 200  # a kind only for crime/disaster
    assert count(HelpRequest) == 1


# --- HLP-2 the 5-minute reply clock and the supervisor alert -------------------------------------------
def test_hlp_2_reply_clock_is_five_minutes_and_met_by_the_reply(db_session, login_as) -> None:
    request = make_help_request(received_at=datetime(2026, 11, 20, 1, 0, tzinfo=UTC))
    db.session.commit()
    clock = clocks(request)["reply"]
    assert (clock.unit, clock.amount, clock.due_at, clock.is_open) == (
        "minutes", 5, datetime(2026, 11, 20, 1, 5, tzinfo=UTC), True)
    assert fresh(request.id).due_at == clock.due_at
    clerk = login_as("cs_clerk")
    assert "请先填写" in fire(clerk, request, "reply")
    fire(clerk, fresh(request.id), "reply", field_reply="已联系保安开门")
    request = fresh(request.id)
    assert request.state == "replied" and request.replied_at is not None and request.replied_by.username == "clerk"
    clock = clocks(request)["reply"]
    assert clock.is_open is False and clock.met_at == request.replied_at and clock.breached_at is not None
    assert request.due_at is None


def test_hlp_2_desk_asks_the_supervisor_and_the_clock_keeps_running(db_session) -> None:
    request = make_help_request()
    db.session.commit()
    engine.fire(request, "refer", staff_of("cs_clerk"))
    assert fresh(request.id).state == "referred" and clocks(request)["reply"].is_open
    engine.fire(fresh(request.id), "reply", staff_of("cs_supervisor"), values={"reply": "主管答复：明早处理"})
    assert fresh(request.id).state == "replied" and clocks(request)["reply"].met_at is not None


def test_hlp_2_special_request_alerts_every_active_supervisor_once_after_commit(app, db_session, login_as,
                                                                                staff_ids, inbox) -> None:  # noqa: F811
    second = add_staff("supervisor2", {"cs_supervisor"})
    away = add_staff("supervisor3", {"cs_supervisor"})
    away.active = False
    db.session.commit()
    for sid, mail in ((staff_ids["cs_supervisor"], "sup1@example.com"), (second.id, "sup2@example.com"),
                      (away.id, "sup3@example.com"), (staff_ids["cs_clerk"], "clerk@example.com")):
        set_email(app, sid, mail)
    clerk = login_as("cs_clerk")
    # refused input: nothing written, nobody alerted
    assert form(clerk, category="medical", medical_option="nonsense").status_code == 200
    assert count(Notification) == 0 and inbox.messages == []
    # a rolled-back change alerts nobody either
    make_help_request(category="medical")
    db.session.rollback()
    assert count(Notification) == 0 and inbox.messages == []
    response = form(clerk, category="medical", description="老人摔倒不能起身", medical_address="A栋1203")
    assert response.status_code == 302, response.get_data(as_text=True)
    request = db.session.scalar(sa.select(HelpRequest))
    assert request.supervisor_alerted_at is not None
    assert [len(inbox.to(a)) for a in ("sup1@example.com", "sup2@example.com", "sup3@example.com",
                                       "clerk@example.com")] == [1, 1, 0, 0]
    subject = zh("Special help request: %(c)s %(k)s %(u)s", c="|", k="", u="").split("|")[0]
    assert subject in inbox.to("sup1@example.com")[0]["Subject"]
    notes = db.session.scalars(sa.select(Notification.staff_id)).all()
    assert sorted(notes) == sorted([staff_ids["cs_supervisor"], second.id])
    # later changes never alert again
    edit(clerk, request, medical_option="call_120", medical_address="A栋1203")
    fire(clerk, fresh(request.id), "reply", field_reply="已拨打120")
    assert fresh(request.id).state == "replied"
    assert len(inbox.to("sup1@example.com")) == 1 and count(Notification) == 2


def test_hlp_2_general_request_alerts_nobody(app, db_session, staff_ids, inbox) -> None:  # noqa: F811
    set_email(app, staff_ids["cs_supervisor"], "sup1@example.com")
    make_help_request(category="daily")
    db.session.commit()
    assert count(Notification) == 0 and inbox.messages == []
    request = make_help_request(category="enquiry", enquiry_mode="oral")
    db.session.commit()
    assert request.supervisor_alerted_at is None


# --- HLP-3 conversions ------------------------------------------------------------------------------------
def test_hlp_3_complaint_request_becomes_a_linked_complaint(db_session, login_as) -> None:
    from models import complaints

    unit = make_unit()
    resident = make_resident()
    make_occupancy(unit, resident)
    request = make_help_request(category="complaint", unit=unit, resident=resident,
                                description="楼上装修噪音，晚上十点还在施工")
    other = make_help_request(category="daily", unit=unit)
    db.session.commit()
    clerk = login_as("cs_clerk")
    assert zh("Only a complaint help request becomes a complaint.") in fire(clerk, other, "to_complaint")
    fire(clerk, request, "to_complaint")
    request = fresh(request.id)
    assert request.state == "converted" and request.closed_at is not None
    complaint = db.session.scalar(sa.select(complaints.Complaint).where(
        complaints.Complaint.help_request_id == request.id))
    assert complaint is not None and request.complaint.id == complaint.id
    assert complaint.description == request.description  # the complaint's own record, linked back
    page = clerk.get(f"/admin/help_request/details/?id={request.id}").get_data(as_text=True)
    assert f"/admin/complaint/details/?id={complaint.id}" in page
    assert clocks(request)["reply"].met_at is not None
    assert fire(clerk, request, "to_complaint")  # a second conversion is refused: the state moved on
    assert db.session.scalar(sa.select(sa.func.count()).select_from(complaints.Complaint)) == 1


def test_hlp_3_repair_request_becomes_a_linked_repair_work_order(db_session, login_as) -> None:
    unit = make_unit()
    request = make_help_request(category="repair", unit=unit, urgent=True, description="厨房水管爆裂")
    daily = make_help_request()
    db.session.commit()
    clerk = login_as("cs_clerk")
    assert zh("Only a repair request becomes a repair work order.") in fire(clerk, daily, "to_repair")
    assert "您的角色不能" in fire(login_as("engineering"), request, "to_repair")
    assert count(RepairOrder) == 0
    fire(clerk, request, "to_repair")
    request = fresh(request.id)
    order = request.repair_order
    assert request.state == "converted" and order is not None and order.state == "open"
    assert (order.help_request_id, order.unit_id, order.emergency, order.fault) == (request.id, unit.id, True, None)
    assert order.fault_text == "厨房水管爆裂"  # linked, not copied
    assert order.reported_at == request.received_at
    page = clerk.get(f"/admin/help_request/details/?id={request.id}").get_data(as_text=True)
    assert f"/admin/repair_order/details/?id={order.id}" in page
    actions = db.session.scalars(sa.select(AuditEntry.transition).where(
        AuditEntry.record_type == "help_request", AuditEntry.record_id == request.id,
        AuditEntry.action == "transition")).all()
    assert actions == ["to_repair"]


def test_hlp_3_paid_service_is_priced_and_charged_before_it_is_closed(db_session, login_as) -> None:
    request = make_help_request(category="paid", description="代搬家具")
    db.session.commit()
    clerk, cashier = login_as("cs_clerk"), login_as("finance")
    fire(clerk, request, "reply", field_reply="可以，下午两点上门")
    assert zh("Enter the price first (edit the request).") in fire(cashier, fresh(request.id), "charge")
    body = fire(clerk, fresh(request.id), "close", field_outcome="已搬完")
    assert zh("A paid service is priced before it is completed.") in body
    assert edit(clerk, fresh(request.id), price="-5").status_code == 200
    assert fresh(request.id).price is None
    response = edit(clerk, fresh(request.id), price="120.50")
    assert response.status_code == 302, response.get_data(as_text=True)
    body = fire(clerk, fresh(request.id), "close", field_outcome="已搬完")
    assert zh("Record the charge before closing a paid service.") in body
    fire(cashier, fresh(request.id), "charge")
    request = fresh(request.id)
    assert request.charged_at is not None and request.charged_amount == Decimal("120.50")
    assert request.state == "replied"
    assert zh("Already charged.") in fire(cashier, request, "charge")
    fire(clerk, fresh(request.id), "close", field_outcome="已搬完，住户满意")
    request = fresh(request.id)
    assert request.state == "closed" and request.closed_at is not None
    assert isinstance(request.price, Decimal)


def test_hlp_3_price_only_for_a_paid_service(db_session) -> None:
    from models.validators import DomainError

    request = make_help_request(category="daily", price=Decimal("10"))
    with pytest.raises(DomainError):
        request.check_details()
    db.session.rollback()


# --- HLP-4 enquiries --------------------------------------------------------------------------------------
def test_hlp_4_written_enquiry_two_days_oral_two_hours(db_session) -> None:
    at = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    written = make_help_request(category="enquiry", enquiry_mode="written", received_at=at)
    oral = make_help_request(category="enquiry", enquiry_mode="oral", received_at=at)
    db.session.commit()
    w, o = clocks(written), clocks(oral)
    assert set(w) == {"written_enquiry"} and set(o) == {"oral_enquiry"}  # no 5-minute clock for enquiries
    assert (w["written_enquiry"].unit, w["written_enquiry"].due_at) == ("days", at + timedelta(days=2))
    assert (o["oral_enquiry"].unit, o["oral_enquiry"].due_at) == ("hours", at + timedelta(hours=2))
    oral = fresh(oral.id)
    oral.enquiry_mode = "written"  # the resident puts it in writing: the written limit applies instead
    db.session.commit()
    o = clocks(oral)
    assert o["oral_enquiry"].is_open is False and o["oral_enquiry"].cancelled_at is not None
    assert o["written_enquiry"].is_open and o["written_enquiry"].due_at == at + timedelta(days=2)
    engine.fire(fresh(written.id), "reply", staff_of("cs_clerk"), values={"reply": "书面答复已寄出"})
    assert clocks(written)["written_enquiry"].met_at is not None


def test_hlp_4_enquiry_needing_the_manager_is_answered_by_the_manager_only(db_session, login_as) -> None:
    request = make_help_request(category="enquiry", enquiry_mode="written", needs_manager_reply=True)
    db.session.commit()
    clerk, manager = login_as("cs_clerk"), login_as("manager")
    assert zh("This enquiry needs the manager's written reply.") in fire(clerk, request, "reply", field_reply="答复")
    assert "您的角色不能" in fire(clerk, fresh(request.id), "manager_reply", field_reply="答复")
    assert edit(clerk, fresh(request.id), needs_manager_reply="").status_code == 200  # the clerk cannot lift it
    assert fresh(request.id).needs_manager_reply is True
    fire(manager, fresh(request.id), "manager_reply", field_reply="经理书面答复：已安排")
    request = fresh(request.id)
    assert request.state == "replied" and request.replied_by.username == "manager"
    assert clocks(request)["written_enquiry"].met_at is not None


def test_hlp_4_enquiry_needs_its_mode(db_session, login_as) -> None:
    clerk = login_as("cs_clerk")
    assert zh("An enquiry is oral or written.") in form(clerk, category="enquiry").get_data(as_text=True)
    assert count(HelpRequest) == 0


# --- HLP-5 emergency medical ------------------------------------------------------------------------------
def test_hlp_5_medical_close_needs_address_phone_option_two_carers_and_outcome(db_session, login_as,
                                                                               staff_ids) -> None:
    guard = login_as("security")
    response = form(guard, category="medical", description="住户胸痛", caller_phone="13912345678")
    assert response.status_code == 302, response.get_data(as_text=True)  # security registers emergencies
    request = db.session.scalar(sa.select(HelpRequest))
    fire(guard, request, "reply", field_reply="已派两名保安上门")
    body = fire(guard, fresh(request.id), "close", field_outcome="已送医")
    assert zh("Emergency medical: record first the %(f)s.", f="|").split("|")[0] in body
    assert fresh(request.id).state == "replied"
    body = edit(guard, fresh(request.id), medical_address="B栋801", medical_option="escort",
                carer_1=staff_ids["security"], carer_2=staff_ids["security"], medical_outcome="已送医院").get_data(
        as_text=True)
    assert zh(ALONE) in body and fresh(request.id).carer_1_id is None
    second = add_staff("guard2", {"security"})
    response = edit(guard, fresh(request.id), medical_address="B栋801", medical_option="escort",
                    carer_1=staff_ids["security"], carer_2=second.id, medical_outcome="已送医院，家属已到")
    assert response.status_code == 302, response.get_data(as_text=True)
    body = fire(guard, fresh(request.id), "close", field_outcome="已送医")
    request = fresh(request.id)
    assert request.state == "closed", body
    assert {request.carer_1.username, request.carer_2.username} == {"guard", "guard2"}
    finance = login_as("finance").get(f"/admin/help_request/details/?id={request.id}").get_data(as_text=True)
    assert "13912345678" not in finance and "B栋801" not in finance  # masked outside the desk
    desk = login_as("cs_clerk").get(f"/admin/help_request/details/?id={request.id}").get_data(as_text=True)
    assert "13912345678" in desk and "B栋801" in desk
    raw = db.session.execute(sa.text("SELECT caller_phone, medical_address FROM help_request")).one()
    assert "13912345678" not in raw[0] and "B栋801" not in raw[1]  # sensitive: encrypted at rest
    assert request.medical_address == "B栋801"


def test_hlp_5_carers_never_alone_engine_path(db_session, staff_ids) -> None:
    request = make_help_request(category="medical", medical_address="C栋", medical_option="call_120",
                                medical_outcome="120 已接走", carer_1_id=staff_ids["security"])
    db.session.commit()
    engine.fire(request, "reply", staff_of("security"), values={"reply": "已拨打120"})
    with pytest.raises(engine.NotAllowed, match=zh(ALONE)[:8]):
        engine.fire(fresh(request.id), "close", staff_of("security"), values={"outcome": "完成"})
    assert fresh(request.id).state == "replied"
