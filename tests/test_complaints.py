"""Complaints (REGULATIONS §5: CMP-1..6, CMP-8) through the engine and the screens.

Clocks and the sweep (CMP-4's 15 minutes, CMP-SLA-1..4) are in tests/test_complaint_sla.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from flask_babel import force_locale

from models import AuditEntry, Department, Staff, db
from models.base import utcnow
from models.complaints import Complaint, ComplaintHousehold, new_from_help_request
from tests.conftest import PASSWORD, csrf_token
from tests.helpers import make_complaint, make_resident, make_unit
from workflow import engine
from workflow.engine import MissingFields, NotAllowed


# --- helpers ------------------------------------------------------------------------------------
@pytest.fixture()
def english(db_session: Any) -> Iterator[None]:
    """Every account reads English: pages show the msgids while the zh catalog is pending."""
    db.session.execute(sa.update(Staff).values(locale="en"))
    db.session.commit()
    with force_locale("en"):
        yield


def person(staff_ids: dict[str, int], role: str) -> Staff:
    return db.session.get(Staff, staff_ids[role])


def department(key: str) -> Department:
    return db.session.scalar(sa.select(Department).where(Department.key == key))


def joins(staff: Staff, key: str, head: bool = False) -> Staff:
    staff.department, staff.department_head = department(key), head
    db.session.commit()
    return staff


def fresh(complaint_id: int) -> Complaint:
    db.session.rollback()
    return db.session.get(Complaint, complaint_id)


def dispatched(staff_ids: dict[str, int], **overrides: Any) -> Complaint:
    """A complaint sent to engineering, whose engineer works there."""
    joins(person(staff_ids, "engineering"), "engineering")
    c = make_complaint(department=department("engineering"), **overrides)
    db.session.commit()
    engine.fire(c, "dispatch", person(staff_ids, "cs_clerk"))
    return c


def handled(staff_ids: dict[str, int], **overrides: Any) -> Complaint:
    c = dispatched(staff_ids, **overrides)
    engineer = person(staff_ids, "engineering")
    engine.fire(c, "accept", engineer)
    engine.fire(c, "handle", engineer, values={"handling_notes": "已安排保洁返工并加派巡查"})
    return c


def record_visit(complaint: Complaint, by: Staff) -> Any:
    """A follow-up with the resident's opinion, recorded through the visits workflow: by phone, or on site
    with the resident's signature for an important or major complaint (VIS-7)."""
    from models.attachment import store
    from models.visits import Visit
    from tests.test_visits import png

    on_site = complaint.severity in ("important", "major")
    visit = Visit(kind="complaint", complaint_id=complaint.id, unit_id=complaint.unit_id,
                  method="on_site" if on_site else "phone", visited_at=utcnow(), visitor_id=by.id,
                  person_visited="张三", opinion="满意", satisfied=True)
    db.session.add(visit)
    db.session.flush()
    if on_site:
        store(visit, "signature", png(), "signature.png", by)
    db.session.commit()
    engine.fire(visit, "record", by)
    return visit


def told(staff_ids: dict[str, int], **overrides: Any) -> Complaint:
    c = handled(staff_ids, **overrides)
    engine.fire(c, "tell", person(staff_ids, "cs_clerk"), values={"reply_to_resident": "电话告知处理结果"})
    return c


def http_fire(client: FlaskClient, c: Complaint, name: str, **fields: Any) -> str:
    data = {"csrf_token": csrf_token(client), "id": c.id, "name": name, "version": c.version, "comment": "",
            **fields}
    response = client.post("/admin/complaint/transition/", data=data, follow_redirects=True)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def http_decide(client: FlaskClient, c: Complaint, decision: str, **fields: Any) -> str:
    data = {"csrf_token": csrf_token(client), "id": c.id, "version": c.version, "decision": decision,
            "comment": "", **fields}
    return client.post("/admin/complaint/decide/", data=data, follow_redirects=True).get_data(as_text=True)


def form(unit_id: int, **overrides: Any) -> dict[str, Any]:
    return {"received_at": "2026-11-23 09:00:00", "channel": "visit", "written": "y", "unit": unit_id,
            "complainant_name": "张三", "contact_phone": "13800138000", "occurred_at": "2026-11-22 20:00:00",
            "location": "A栋地下车库", "subject": "保安部夜班", "description": "车库道闸夜间无人值守",
            "demand": "恢复夜间值守", "category": "parking", "severity": "important", "about_property": "y",
            "department": "", "resident_deadline": "", "read_back_confirmed": "y"} | overrides


def audit(c: Complaint, action: str) -> list[AuditEntry]:
    return list(db.session.scalars(sa.select(AuditEntry).where(
        AuditEntry.record_type == "complaint", AuditEntry.record_id == c.id, AuditEntry.action == action)
        .order_by(AuditEntry.seq)))


def refusal(call: Any) -> str:
    with pytest.raises((NotAllowed, MissingFields)) as caught:
        call()
    with force_locale("en"):
        return str(caught.value)


# --- CMP-1: the form ----------------------------------------------------------------------------
def test_cmp_1_registering_needs_the_read_back_and_every_field(db_session, login_as, english) -> None:
    unit = make_unit()
    db.session.commit()
    clerk = login_as("cs_clerk")
    body = clerk.post("/admin/complaint/new/", data={"csrf_token": csrf_token(clerk),
                                                     **form(unit.id, read_back_confirmed="")}).get_data(as_text=True)
    assert "tick the confirmation (CMP-1)" in body
    body = clerk.post("/admin/complaint/new/", data={"csrf_token": csrf_token(clerk),
                                                     **form(unit.id, demand="")}).get_data(as_text=True)
    assert "Record what the resident asks for." in body
    body = clerk.post("/admin/complaint/new/", data={"csrf_token": csrf_token(clerk),
                                                     **form(unit.id, contact_phone="12")}).get_data(as_text=True)
    assert "Phone number is not valid." in body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Complaint)) == 0
    response = clerk.post("/admin/complaint/new/", data={"csrf_token": csrf_token(clerk), **form(unit.id),
                                                         "state": "closed"})
    assert response.status_code == 302, response.get_data(as_text=True)
    c = db.session.scalar(sa.select(Complaint))
    assert c.state == "received" and c.number == "TS202611-0001"  # a posted status is ignored
    assert (c.channel, c.written, c.subject, c.demand) == ("visit", True, "保安部夜班", "恢复夜间值守")
    assert c.received_by.username == "clerk" and c.read_back_confirmed and c.validity == "valid"
    stored = db.session.execute(sa.text("SELECT contact_phone FROM complaint")).scalar()
    assert stored != "13800138000" and c.contact_phone == "13800138000"  # encrypted at rest (ACC-6)
    listing = clerk.get("/admin/complaint/").get_data(as_text=True)
    assert "138****8000" in listing and "13800138000" not in listing
    assert "13800138000" in clerk.get(f"/admin/complaint/details/?id={c.id}").get_data(as_text=True)


def test_cmp_1_numbers_run_per_month_and_are_unique(db_session) -> None:
    first = make_complaint(received_at=datetime(2026, 11, 30, 16, 30, tzinfo=UTC))  # 1 December in Beijing
    second = make_complaint(unit=first.unit, received_at=datetime(2026, 11, 30, 3, 0, tzinfo=UTC))
    third = make_complaint(unit=first.unit, received_at=datetime(2026, 11, 29, 3, 0, tzinfo=UTC))
    db.session.commit()
    assert (first.number, second.number, third.number) == ("TS202612-0001", "TS202611-0001", "TS202611-0002")


def test_cmp_1_list_search_filters_and_details(db_session, login_as, english, staff_ids) -> None:
    c = dispatched(staff_ids, severity="important")
    other = make_complaint(unit=make_unit(building=c.unit.building, code="A-3-301"), description="电梯异响",
                           category="repair")
    db.session.commit()
    clerk = login_as("cs_clerk")
    found = clerk.get("/admin/complaint/?search=电梯").get_data(as_text=True)
    assert other.number in found and c.number not in found
    assert c.number in clerk.get(f"/admin/complaint/?search={c.number}").get_data(as_text=True)
    by_severity = clerk.get("/admin/complaint/?flt1_1=important").get_data(as_text=True)
    assert c.number in by_severity and other.number not in by_severity
    details = clerk.get(f"/admin/complaint/details/?id={c.id}").get_data(as_text=True)
    assert "Dispatched" in details and 'id="timeline"' in details
    assert "Dispatch to the department" in details.split('id="timeline"')[1]
    assert "Major: a promised or contracted service" in clerk.get("/admin/complaint/new/").get_data(as_text=True)


# --- CMP-2: validity ----------------------------------------------------------------------------
def test_cmp_2_invalid_complaint_is_closed_with_an_explanation(db_session, login_as, english, staff_ids) -> None:
    c = make_complaint()
    db.session.commit()
    supervisor = person(staff_ids, "cs_supervisor")
    assert "Explanation to the resident" in refusal(lambda: engine.fire(c, "mark_invalid", supervisor))
    assert "may not" in refusal(lambda: engine.fire(fresh(c.id), "mark_invalid", person(staff_ids, "cs_clerk"),
                                                    values={"invalid_explanation": "x"}))
    body = http_fire(login_as("cs_supervisor"), fresh(c.id), "mark_invalid",
                     field_invalid_explanation="要求免除全年物业费不合理，已向住户解释收费依据")
    assert "Done" in body
    c = fresh(c.id)
    assert (c.state, c.validity, c.closed_at is not None) == ("invalid", "invalid", True)
    assert c.invalid_explanation.startswith("要求免除")
    assert "not possible while" in refusal(lambda: engine.fire(c, "dispatch", person(staff_ids, "cs_clerk")))


def test_cmp_2_valid_complaint_not_about_property_is_still_recorded_and_counted(db_session, login_as,
                                                                                english) -> None:
    unit = make_unit()
    db.session.commit()
    clerk = login_as("cs_clerk")
    response = clerk.post("/admin/complaint/new/", data={"csrf_token": csrf_token(clerk), **form(
        unit.id, about_property="", category="developer", description="外墙渗水（开发商保修范围）",
        severity="minor")})
    assert response.status_code == 302
    c = db.session.scalar(sa.select(Complaint))
    assert (c.about_property, c.validity, c.category) == (False, "valid", "developer")
    assert db.session.scalars(Complaint.counted_query()).all() == [c]


# --- CMP-3: severity ----------------------------------------------------------------------------
def test_cmp_3_collective_complaint_of_three_households_must_be_major(db_session, login_as, english) -> None:
    first = make_unit()
    units = [first] + [make_unit(building=first.building, code=f"A-5-50{i}") for i in range(2, 4)]
    db.session.commit()
    clerk = login_as("cs_clerk")
    rows = {}
    for i, u in enumerate(units):
        rows |= {f"households-{i}-unit": u.id, f"households-{i}-contact_name": f"住户{i}"}
    body = clerk.post("/admin/complaint/new/", data={"csrf_token": csrf_token(clerk),
                                                     **form(units[0].id, severity="important"), **rows})
    assert "collective complaint (three or more households) is major" in body.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Complaint)) == 0
    response = clerk.post("/admin/complaint/new/", data={"csrf_token": csrf_token(clerk),
                                                         **form(units[0].id, severity="major"), **rows})
    assert response.status_code == 302, response.get_data(as_text=True)
    c = db.session.scalar(sa.select(Complaint))
    assert c.collective and c.severity == "major" and c.household_count == 3
    # Two households are not collective; engine-level check on the model too.
    c2 = make_complaint(unit=units[0], severity="minor")
    c2.households = [ComplaintHousehold(unit=units[0]), ComplaintHousehold(unit=units[1])]
    c2.check_severity()
    c2.households.append(ComplaintHousehold(unit=units[2]))
    with pytest.raises(Exception, match="major"):
        c2.check_severity()


def test_cmp_3_severity_change_is_audited_and_restarts_the_grade_clock(db_session, login_as, english) -> None:
    unit = make_unit()
    db.session.commit()
    clerk = login_as("cs_clerk")
    clerk.post("/admin/complaint/new/", data={"csrf_token": csrf_token(clerk), **form(unit.id, severity="minor")})
    c = db.session.scalar(sa.select(Complaint))
    since = c.severity_since
    response = clerk.post(f"/admin/complaint/edit/?id={c.id}", data={
        "csrf_token": csrf_token(clerk), "version": c.version, **form(unit.id, severity="important")})
    assert response.status_code == 302, response.get_data(as_text=True)
    c = fresh(c.id)
    assert c.severity == "important" and c.severity_since >= since
    change = [e for e in audit(c, "update") if "severity" in (e.changes or "")]
    assert change and "minor" in change[-1].changes and "important" in change[-1].changes


# --- CMP-6: duplicates --------------------------------------------------------------------------
def test_cmp_6_duplicate_is_linked_closed_and_counted_once(db_session, login_as, staff_ids, english) -> None:
    original = make_complaint(department=department("engineering"))
    repeat = make_complaint(unit=original.unit, department=department("security"), description="同一道闸问题")
    db.session.commit()
    clerk = login_as("cs_clerk")
    assert "Choose the complaint this one repeats" in refusal(
        lambda: engine.fire(repeat, "mark_duplicate", person(staff_ids, "cs_clerk")))
    response = clerk.post(f"/admin/complaint/edit/?id={repeat.id}", data={
        "csrf_token": csrf_token(clerk), "version": fresh(repeat.id).version,
        **form(original.unit_id, severity="minor", category="cleaning", duplicate_of=original.id,
               department=department("security").id)})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert "Done" in http_fire(clerk, fresh(repeat.id), "mark_duplicate")
    repeat = fresh(repeat.id)
    assert repeat.state == "closed" and repeat.duplicate_of_id == original.id
    counted = db.session.scalars(Complaint.counted_query()).all()
    assert counted == [fresh(original.id)]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Complaint).where(*Complaint.counted())) == 1
    chained = make_complaint(unit=original.unit, duplicate_of=repeat)
    db.session.commit()
    assert "not to another duplicate" in refusal(
        lambda: engine.fire(chained, "mark_duplicate", person(staff_ids, "cs_clerk")))
    assert "Duplicate" in clerk.get("/admin/complaint/").get_data(as_text=True)


# --- CMP-8: kept permanently ----------------------------------------------------------------------
def test_cmp_8_complaint_forms_are_never_due_for_retention(db_session, staff_ids, runner) -> None:
    from models.retention import RetentionPolicy
    from workflow import retention

    retention.seed_policies()
    c = told(staff_ids)
    record_visit(fresh(c.id), person(staff_ids, "cs_supervisor"))
    engine.fire(fresh(c.id), "visit", person(staff_ids, "cs_clerk"))
    engine.fire(fresh(c.id), "close", person(staff_ids, "cs_supervisor"))
    policies = db.session.scalars(sa.select(RetentionPolicy).where(RetentionPolicy.record_type == "complaint")).all()
    assert policies and all(p.keep_forever for p in policies)
    far = datetime(2226, 1, 1, tzinfo=UTC)
    assert all(retention.due(p, far).count() == 0 for p in policies)
    result = runner.invoke(args=["retention", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert not re.search(r"\(complaint\): [1-9]", result.output)
    assert db.session.get(Complaint, c.id) is not None


# --- HLP-3 contract: a help request becomes a complaint --------------------------------------------
def test_cmp_1_new_from_help_request_creates_a_linked_complaint(db_session, staff_ids) -> None:
    from models.help_requests import HelpRequest

    unit, resident = make_unit(), make_resident()
    request = HelpRequest(category="complaint", caller="张三", caller_phone="13800138000", unit=unit,
                          resident=resident, description="楼道灯坏了一周无人修")
    db.session.add(request)
    db.session.commit()
    clerk = person(staff_ids, "cs_clerk")
    c = new_from_help_request(request, clerk)
    db.session.commit()
    c = fresh(c.id)
    assert (c.help_request_id, c.unit_id, c.resident_id) == (request.id, unit.id, resident.id)
    assert (c.complainant_name, c.contact_phone, c.description) == ("张三", "13800138000", "楼道灯坏了一周无人修")
    assert c.state == "received" and c.number.startswith("TS") and c.received_by_id == clerk.id
    request2 = HelpRequest(category="complaint", caller="李四", unit=unit, description="噪音")
    db.session.add(request2)
    db.session.commit()
    engine.fire(request2, "to_complaint", clerk)  # the help desk's own step calls it
    linked = db.session.scalar(sa.select(Complaint).where(Complaint.help_request_id == request2.id))
    assert linked is not None and linked.description == "噪音"


# --- permissions and deletion ---------------------------------------------------------------------
def test_cmp_4_roles_outside_the_desk_cannot_register_or_edit(db_session, login_as) -> None:
    unit = make_unit()
    c = make_complaint(unit=unit)
    db.session.commit()
    engineer = login_as("engineering")
    assert engineer.get("/admin/complaint/").status_code == 200
    assert engineer.post("/admin/complaint/new/", data={"csrf_token": csrf_token(engineer),
                                                        **form(unit.id)}).status_code == 403
    assert engineer.post(f"/admin/complaint/edit/?id={c.id}", data={"csrf_token": csrf_token(engineer),
                                                                     **form(unit.id)}).status_code == 403
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Complaint)) == 1
    clerk = login_as("cs_clerk")
    assert clerk.get("/admin/complaint/export/csv/").status_code == 403  # export: supervisors


def test_cmp_8_deleting_a_complaint_is_a_managers_soft_delete(db_session, login_as, staff_ids) -> None:
    c = make_complaint()
    db.session.commit()
    http_fire(login_as("cs_clerk"), c, "delete", comment="重复录入", password=PASSWORD)
    http_decide(login_as("manager"), fresh(c.id), "approve", password=PASSWORD)
    c = fresh(c.id)
    assert c.deleted_at is not None  # the row stays (CMP-8): only hidden
    assert db.session.scalars(Complaint.counted_query()).all() == []


# --- list page cost (shared with tests/test_query_counts.py) --------------------------------------
def grow_complaints(app: Any, start: int, stop: int) -> None:
    """Complaints ``start..stop-1``, each on its own estate/unit and department, every grade, half of
    them dispatched, every fifth a duplicate of the one before: a lazy load would show per row."""
    from decimal import Decimal

    from models import Building, Estate, Unit

    with app.app_context():
        clerk = db.session.scalar(sa.select(Staff).where(Staff.username == "clerk"))
        departments = list(db.session.scalars(sa.select(Department).order_by(Department.id)))
        made = []
        for i in range(start, stop):
            estate = Estate(code=f"ce{i}", name=f"投诉小区{i}", kind="residential")
            unit = Unit(building=Building(estate=estate, code="A", floors=30), floor=1, code=f"A-1-{100 + i}",
                        area=Decimal("80.00"), use="residential")
            c = Complaint(unit=unit, channel="phone", complainant_name=f"住户{i}", contact_phone=f"139{i:08d}",
                          occurred_at=datetime(2026, 11, 20, tzinfo=UTC), location="大堂", subject="保洁",
                          description=f"问题 {i}", demand="处理", category="cleaning", read_back_confirmed=True,
                          severity=("minor", "important", "major")[i % 3], department=departments[i % len(departments)],
                          duplicate_of=made[-1] if made and i % 5 == 4 else None, created_by=clerk)
            db.session.add(c)
            made.append(c)
        db.session.commit()
        for c in made[::2]:
            engine.fire(c, "dispatch", clerk)


def assert_complaint_list_constant(app: Any, login_as: Any) -> None:
    from tests.test_query_counts import statements_for

    clients = [login_as(role) for role in ("cs_clerk", "engineering", "manager")]
    counts, rows, done = [], [], 0
    for size in (6, 45):
        grow_complaints(app, done, size)
        done = size
        pages = [statements_for(app, client, "/admin/complaint/?page_size=100") for client in clients]
        counts.append([len(statements) for statements, _page in pages])
        rows.append(pages[0][1].count('<td class="col-number">'))
    assert rows == [6, 45]
    assert counts[0] == counts[1], f"complaint: statements per list page grow with the rows (N+1): {counts}"


def test_cmp_1_overdue_and_department_filters(db_session, login_as, english, staff_ids) -> None:
    from datetime import timedelta

    late = make_complaint(received_at=utcnow() - timedelta(hours=3))  # the 15-minute dispatch has passed
    prompt = make_complaint(unit=make_unit(building=late.unit.building, code="A-3-302"),
                            department=department("security"))
    db.session.commit()
    clerk = login_as("cs_clerk")
    overdue = clerk.get("/admin/complaint/?flt1_4=1").get_data(as_text=True)
    assert late.number in overdue and prompt.number not in overdue and "Overdue" in overdue
    in_time = clerk.get("/admin/complaint/?flt1_4=0").get_data(as_text=True)
    assert prompt.number in in_time and late.number not in in_time
    security = clerk.get("/admin/complaint/?flt1_2=security").get_data(as_text=True)
    assert prompt.number in security and late.number not in security


def test_cmp_1_bad_dates_are_refused_with_a_message_and_nothing_is_written(db_session, login_as, english) -> None:
    unit = make_unit()
    db.session.commit()
    clerk = login_as("cs_clerk")
    body = clerk.post("/admin/complaint/new/", data={"csrf_token": csrf_token(clerk),
                                                     **form(unit.id, occurred_at="昨天晚上")}).get_data(as_text=True)
    assert "Enter a date as 2026-11-30" in body
    body = clerk.post("/admin/complaint/new/", data={"csrf_token": csrf_token(clerk), **form(
        unit.id, occurred_at="2026-11-24 09:00:00")}).get_data(as_text=True)
    assert "cannot have happened after the complaint was received" in body
    body = clerk.post("/admin/complaint/new/", data={"csrf_token": csrf_token(clerk), **form(
        unit.id, resident_deadline="2026-11-01 09:00")}).get_data(as_text=True)
    assert "deadline must be after the complaint was received" in body
    body = clerk.post("/admin/complaint/new/", data={"csrf_token": csrf_token(clerk), **form(
        unit.id, severity="catastrophic")}).get_data(as_text=True)
    assert "Not a valid choice" in body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Complaint)) == 0


def test_cmp_1_complaints_registered_in_one_flush_get_consecutive_numbers(db_session) -> None:
    unit = make_unit()
    batch = [Complaint(unit=unit, channel="phone", complainant_name=f"住户{i}", description="噪音",
                       category="neighbours", severity="minor", received_at=datetime(2026, 11, 2, 3, tzinfo=UTC))
             for i in range(3)]
    db.session.add_all(batch)
    db.session.commit()
    assert sorted(c.number for c in batch) == ["TS202611-0001", "TS202611-0002", "TS202611-0003"]


def test_cmp_8_a_closed_complaint_form_is_kept_as_it_was(db_session, login_as, english, staff_ids) -> None:
    c = make_complaint()
    db.session.commit()
    engine.fire(c, "mark_invalid", person(staff_ids, "cs_supervisor"), values={"invalid_explanation": "不合理"})
    c = fresh(c.id)
    clerk = login_as("cs_clerk")
    body = clerk.post(f"/admin/complaint/edit/?id={c.id}", data={
        "csrf_token": csrf_token(clerk), "version": c.version, **form(c.unit_id, description="改写")},
        follow_redirects=True).get_data(as_text=True)
    assert "can no longer be edited" in body
    assert fresh(c.id).description == "大堂地面连续三天未清洁"


def test_cmp_1_vis_1_details_link_the_printable_form_and_the_follow_up(db_session, staff_ids, login_as) -> None:
    """The complaint's page links its printable form (《住户投诉意见表》) and, once handled, its follow-up."""
    complaint = make_complaint()
    db.session.commit()
    page = login_as("cs_clerk").get(f"/admin/complaint/details/?id={complaint.id}").get_data(as_text=True)
    assert f'href="/admin/print/complaint/{complaint.id}.pdf"' in page
    assert "/admin/visit/new/" not in page and "/admin/visit/details/" not in page  # nothing handled yet
