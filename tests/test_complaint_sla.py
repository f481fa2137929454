"""The complaint flow (CMP-4, CMP-5) and its time limits (REGULATIONS §11: CMP-4 15 minutes and same day,
CMP-SLA-1..4) as deadline clocks, the overtime approvals, and the sweep's one-month escalation."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

from models import AuditEntry, Notification, db
from models.base import utcnow
from models.complaints import Complaint
from models.deadline import DeadlineClock
from tests.conftest import csrf_token
from tests.helpers import make_complaint
from tests.test_complaints import (  # noqa: F401  (fixtures)
    audit,
    department,
    dispatched,
    english,
    form,
    fresh,
    handled,
    http_decide,
    http_fire,
    joins,
    person,
    record_visit,
    refusal,
    told,
)
from tests.test_sweep import run_sweep
from workflow import engine
from workflow.calendar import app_zone
from workflow.engine import NotAllowed


def clock(c: Complaint, name: str) -> DeadlineClock | None:
    return db.session.scalar(sa.select(DeadlineClock).where(
        DeadlineClock.record_type == "complaint", DeadlineClock.record_id == c.id, DeadlineClock.name == name))


def open_clocks(c: Complaint) -> set[str]:
    return set(db.session.scalars(sa.select(DeadlineClock.name).where(
        DeadlineClock.record_type == "complaint", DeadlineClock.record_id == c.id, DeadlineClock.is_open.is_(True))))


def end_of_local_day(moment: datetime) -> datetime:
    day = moment.astimezone(app_zone()).date()
    return datetime.combine(day, time.max, tzinfo=app_zone()).astimezone(UTC)


def close_to(a: datetime, b: datetime) -> bool:
    return abs(a - b) < timedelta(seconds=1)


# --- CMP-4: the flow ----------------------------------------------------------------------------
@pytest.mark.usefixtures("english")
def test_cmp_4_flow_received_dispatched_accepted_handled_told_visited_closed(db_session, staff_ids) -> None:
    clerk, supervisor = person(staff_ids, "cs_clerk"), person(staff_ids, "cs_supervisor")
    engineer = joins(person(staff_ids, "engineering"), "engineering")
    c = make_complaint()
    db.session.commit()
    assert "responsible department first" in refusal(lambda: engine.fire(c, "dispatch", clerk))
    c.department = department("engineering")
    db.session.commit()
    engine.fire(c, "dispatch", clerk)
    assert c.state == "dispatched" and c.dispatched_at is not None
    guard = person(staff_ids, "security")
    assert "responsible department" in refusal(lambda: engine.fire(fresh(c.id), "accept", guard))
    engine.fire(fresh(c.id), "accept", engineer)  # the department signs receipt
    c = fresh(c.id)
    assert c.state == "accepted" and c.accepted_by_id == engineer.id
    assert "What the department did" in refusal(lambda: engine.fire(c, "handle", engineer))
    engine.fire(fresh(c.id), "handle", engineer, values={"handling_notes": "更换道闸控制板"})
    assert "not possible while" in refusal(lambda: engine.fire(fresh(c.id), "close", supervisor))
    engine.fire(fresh(c.id), "tell", clerk, values={"reply_to_resident": "已电话告知"})
    assert "follow-up visit" in refusal(lambda: engine.fire(fresh(c.id), "visit", clerk))
    record_visit(fresh(c.id), supervisor)
    engine.fire(fresh(c.id), "visit", clerk)
    engine.fire(fresh(c.id), "close", supervisor)
    c = fresh(c.id)
    assert c.state == "closed" and c.closed_at is not None and c.handled_by_id == engineer.id
    assert [e.transition for e in audit(c, "transition")] == ["dispatch", "accept", "handle", "tell", "visit",
                                                              "close"]


def test_cmp_4_handling_is_offered_only_to_the_responsible_department_before_notes_are_typed(
        db_session, staff_ids) -> None:
    """The department check is about who acts (a "who" guard), so the buttons and My work leave the
    step out for other departments even while the handling notes are still empty."""
    engineer = joins(person(staff_ids, "engineering"), "engineering")
    guard = joins(person(staff_ids, "security"), "security")
    c = make_complaint(department=department("engineering"))
    db.session.commit()
    engine.fire(c, "dispatch", person(staff_ids, "cs_clerk"))
    engine.fire(fresh(c.id), "accept", engineer)
    c = fresh(c.id)
    handle = Complaint.workflow.transition("handle")
    assert c.handling_notes is None
    assert engine.may_fire(c, handle, engineer) and not engine.may_fire(c, handle, guard)
    assert "handle" not in {t.name for t in engine.available(c, guard)}
    assert "responsible department" in refusal(
        lambda: engine.fire(c, "handle", guard, values={"handling_notes": "看过了"}))
    assert fresh(c.id).handling_notes is None


@pytest.mark.usefixtures("english")
def test_cmp_4_department_signs_receipt_over_http_and_others_are_refused(db_session, login_as, staff_ids) -> None:
    c = dispatched(staff_ids)
    body = http_fire(login_as("security"), fresh(c.id), "accept")
    assert "Only staff of the responsible department" in body and fresh(c.id).state == "dispatched"
    engineer = login_as("engineering")
    details = engineer.get(f"/admin/complaint/details/?id={c.id}").get_data(as_text=True)
    assert 'data-transition="accept"' in details
    assert "Done" in http_fire(engineer, fresh(c.id), "accept")
    assert "Fill in first" in http_fire(engineer, fresh(c.id), "handle")
    http_fire(engineer, fresh(c.id), "handle", field_handling_notes="已修复")
    assert fresh(c.id).state == "handled"
    body = http_fire(engineer, fresh(c.id), "return_to_desk", comment="x")
    assert fresh(c.id).state == "handled" and "not possible" in body


@pytest.mark.usefixtures("english")
def test_cmp_4_not_ours_goes_back_to_the_desk_and_the_department_can_then_change(db_session, staff_ids) -> None:
    c = dispatched(staff_ids)
    engineer = person(staff_ids, "engineering")
    c.department = department("security")
    with pytest.raises(Exception, match="send it back"):
        c.check_department()
    db.session.rollback()
    engine.fire(fresh(c.id), "return_to_desk", engineer, "属于保安部")
    c = fresh(c.id)
    assert c.state == "received" and c.dispatched_at is None
    c.department = department("security")
    c.check_department()


# --- CMP-5: only the manager closes a major complaint ------------------------------------------
@pytest.mark.usefixtures("english")
def test_cmp_5_only_the_manager_closes_a_major_complaint(db_session, login_as, staff_ids) -> None:
    c = told(staff_ids, severity="major")
    record_visit(fresh(c.id), person(staff_ids, "cs_supervisor"))
    engine.fire(fresh(c.id), "visit", person(staff_ids, "cs_clerk"))
    assert "Only the manager closes a major complaint" in refusal(
        lambda: engine.fire(fresh(c.id), "close", person(staff_ids, "cs_supervisor")))
    supervisor = login_as("cs_supervisor")
    assert 'data-transition="close"' not in supervisor.get(f"/admin/complaint/details/?id={c.id}").get_data(
        as_text=True)
    assert "Only the manager closes a major complaint" in http_fire(supervisor, fresh(c.id), "close")
    assert fresh(c.id).state == "visited"
    assert "Done" in http_fire(login_as("manager"), fresh(c.id), "close")
    assert fresh(c.id).state == "closed"


@pytest.mark.usefixtures("english")
def test_cmp_5_a_major_complaint_is_not_closed_as_invalid_or_duplicate_by_the_supervisor(db_session, staff_ids) -> None:
    original = make_complaint()
    c = make_complaint(unit=original.unit, severity="major")
    db.session.commit()
    supervisor, manager = person(staff_ids, "cs_supervisor"), person(staff_ids, "manager")
    assert "Only the manager" in refusal(lambda: engine.fire(c, "mark_invalid", supervisor,
                                                             values={"invalid_explanation": "不合理"}))
    c = fresh(c.id)
    c.duplicate_of = original
    db.session.commit()
    assert "Only the manager" in refusal(lambda: engine.fire(c, "mark_duplicate", supervisor))
    engine.fire(fresh(c.id), "mark_duplicate", manager)
    assert fresh(c.id).state == "closed"


def test_cmp_5_minor_complaint_is_closed_by_the_supervisor(db_session, staff_ids) -> None:
    c = told(staff_ids)
    record_visit(fresh(c.id), person(staff_ids, "cs_supervisor"))
    engine.fire(fresh(c.id), "visit", person(staff_ids, "cs_clerk"))
    engine.fire(fresh(c.id), "close", person(staff_ids, "cs_supervisor"))
    assert fresh(c.id).state == "closed"



def test_cmp_sla_1_reporting_a_major_complaint_tells_the_managers(db_session, staff_ids) -> None:
    c = make_complaint(severity="major")
    db.session.commit()
    engine.fire(c, "report_to_manager", person(staff_ids, "cs_clerk"))
    c = fresh(c.id)
    assert c.reported_to_manager_at is not None
    notes = db.session.scalars(sa.select(Notification).where(Notification.staff_id == staff_ids["manager"])).all()
    assert any(c.number in n.subject for n in notes)
    with pytest.raises(NotAllowed):
        engine.fire(c, "report_to_manager", person(staff_ids, "cs_clerk"))


# --- CMP-4 ---------------------------------------------------------------------------------------
def test_cmp_4_dispatch_within_15_minutes_is_a_clock_met_by_dispatching(db_session, staff_ids) -> None:
    received = utcnow() - timedelta(minutes=5)
    c = make_complaint(received_at=received, department=department("engineering"))
    db.session.commit()
    dispatch = clock(c, "dispatch")
    assert dispatch.is_open and close_to(dispatch.due_at, received + timedelta(minutes=15))
    assert c.due_at == dispatch.due_at  # the soonest clock
    engine.fire(c, "dispatch", person(staff_ids, "cs_clerk"))
    dispatch = clock(fresh(c.id), "dispatch")
    assert not dispatch.is_open and dispatch.met_at is not None and dispatch.breached_at is None


def test_cmp_4_resident_told_the_same_day_as_handled(db_session, staff_ids) -> None:
    c = handled(staff_ids)
    c = fresh(c.id)
    tell = clock(c, "tell")
    assert tell.is_open and tell.due_at == end_of_local_day(c.handled_at).replace(microsecond=tell.due_at.microsecond)
    assert tell.due_at.astimezone(app_zone()).date() == c.handled_at.astimezone(app_zone()).date()
    engine.fire(c, "tell", person(staff_ids, "cs_clerk"), values={"reply_to_resident": "当面告知"})
    assert clock(fresh(c.id), "tell").met_at is not None


# --- CMP-SLA-1 -------------------------------------------------------------------------------------
@pytest.mark.usefixtures("english")
def test_cmp_sla_1_major_to_manager_same_day_answer_in_two_days_resolved_in_ten(db_session, staff_ids,
                                                                               login_as) -> None:
    c = make_complaint(severity="major", department=department("engineering"))
    db.session.commit()
    c = fresh(c.id)
    since = c.severity_since
    assert {"dispatch", "major_to_manager", "major_answer", "major_handled", "unresolved_month"} - open_clocks(c) \
        == {"unresolved_month"}  # already major: nothing to escalate
    assert not {"minor_handled", "important_handled", "important_to_staff"} & open_clocks(c)
    assert clock(c, "major_to_manager").due_at.astimezone(app_zone()).date() == since.astimezone(app_zone()).date()
    assert close_to(clock(c, "major_answer").due_at, since + timedelta(days=2))
    assert close_to(clock(c, "major_handled").due_at, since + timedelta(days=10))
    clerk = login_as("cs_clerk")
    assert "Done" in http_fire(clerk, c, "report_to_manager")
    assert clock(fresh(c.id), "major_to_manager").met_at is not None
    assert "Fill in first" in http_fire(clerk, fresh(c.id), "answer")
    http_fire(clerk, fresh(c.id), "answer", field_answer_notes="承诺三日内更换全部道闸并书面答复")
    c = fresh(c.id)
    assert c.answered_at is not None and clock(c, "major_answer").met_at is not None
    engine.fire(c, "dispatch", person(staff_ids, "cs_clerk"))
    engineer = joins(person(staff_ids, "engineering"), "engineering")
    engine.fire(fresh(c.id), "accept", engineer)
    engine.fire(fresh(c.id), "handle", engineer, values={"handling_notes": "已更换"})
    assert clock(fresh(c.id), "major_handled").met_at is not None


# --- CMP-SLA-2 -------------------------------------------------------------------------------------
def test_cmp_sla_2_important_to_area_staff_in_two_hours_handled_in_three_days(db_session, staff_ids) -> None:
    c = dispatched(staff_ids, severity="important")
    c = fresh(c.id)
    assert close_to(clock(c, "important_to_staff").due_at, c.severity_since + timedelta(hours=2))
    assert close_to(clock(c, "important_handled").due_at, c.severity_since + timedelta(days=3))
    assert "minor_handled" not in open_clocks(c) and "major_to_manager" not in open_clocks(c)
    engine.fire(c, "accept", person(staff_ids, "engineering"))
    assert clock(fresh(c.id), "important_to_staff").met_at is not None
    assert clock(fresh(c.id), "important_handled").is_open


@pytest.mark.usefixtures("english")
def test_cmp_sla_2_going_over_needs_the_managers_approval(db_session, staff_ids, login_as) -> None:
    c = dispatched(staff_ids, severity="important")
    engineer = login_as("engineering")
    body = http_fire(engineer, fresh(c.id), "extend_minor", field_extension_requested_until="2030-01-01", comment="x")
    assert "Minor complaints only" in body and fresh(c.id).pending_transition is None
    body = http_fire(engineer, fresh(c.id), "extend", field_extension_requested_until="明天", comment="缺配件")
    assert "Enter a date as 2026-11-30" in body and fresh(c.id).pending_transition is None
    until = (utcnow() + timedelta(days=9)).astimezone(app_zone()).replace(second=0, microsecond=0)
    http_fire(engineer, fresh(c.id), "extend", field_extension_requested_until=until.strftime("%Y-%m-%d %H:%M"),
              comment="需厂家配件，预计一周")
    assert fresh(c.id).pending_transition == "extend"
    assert "You may not sign this step" in http_decide(login_as("cs_supervisor"), fresh(c.id), "approve")
    assert fresh(c.id).extended_until is None
    http_decide(login_as("manager"), fresh(c.id), "approve", comment="同意")
    c = fresh(c.id)
    assert c.pending_transition is None and c.extended_until == until.astimezone(UTC)
    assert clock(c, "important_handled").due_at == until.astimezone(UTC)


# --- CMP-SLA-3 -------------------------------------------------------------------------------------
@pytest.mark.usefixtures("english")
def test_cmp_sla_3_minor_handled_within_two_days_or_the_residents_deadline(db_session, staff_ids, login_as) -> None:
    c = make_complaint()
    db.session.commit()
    c = fresh(c.id)
    assert close_to(clock(c, "minor_handled").due_at, c.severity_since + timedelta(days=2))
    deadline = (utcnow() + timedelta(days=5)).replace(microsecond=0)
    clerk = login_as("cs_clerk")
    local = deadline.astimezone(app_zone()).strftime("%Y-%m-%d %H:%M:%S")
    response = clerk.post(f"/admin/complaint/edit/?id={c.id}", data={
        "csrf_token": csrf_token(clerk), "version": c.version,
        **form(c.unit_id, severity="minor", category="cleaning", resident_deadline=local,
               received_at=c.received_at.astimezone(app_zone()).strftime("%Y-%m-%d %H:%M:%S"))})
    assert response.status_code == 302, response.get_data(as_text=True)
    c = fresh(c.id)
    assert c.resident_deadline == deadline and clock(c, "minor_handled").due_at == deadline


@pytest.mark.usefixtures("english")
def test_cmp_sla_3_going_over_needs_the_supervisors_approval(db_session, staff_ids) -> None:
    c = dispatched(staff_ids)
    engineer = person(staff_ids, "engineering")
    assert "Important and major complaints only" in refusal(lambda: engine.fire(
        fresh(c.id), "extend", engineer, "x", values={"extension_requested_until": "2030-01-01"}))
    engine.fire(fresh(c.id), "extend_minor", engineer, "等物业公司采购",
                values={"extension_requested_until": "2030-01-01"})
    c = fresh(c.id)
    assert c.pending_transition == "extend_minor"
    assert "may not sign" in refusal(lambda: engine.decide(c, person(staff_ids, "manager"), True))
    engine.decide(fresh(c.id), person(staff_ids, "cs_supervisor"), True, "同意")
    c = fresh(c.id)
    expected = datetime(2030, 1, 1, 23, 59, 59, tzinfo=app_zone()).astimezone(UTC)
    assert c.extended_until == expected and c.handling_until == expected
    assert clock(c, "minor_handled").due_at == expected


def test_cmp_sla_3_regrading_swaps_the_handling_clock(db_session, staff_ids) -> None:
    c = make_complaint()
    db.session.commit()
    c = fresh(c.id)
    c.severity = "important"
    db.session.commit()
    c = fresh(c.id)
    assert clock(c, "minor_handled").cancelled_at is not None
    assert {"important_handled", "important_to_staff"} <= open_clocks(c)


# --- CMP-SLA-4 -------------------------------------------------------------------------------------
def test_cmp_sla_4_valid_complaint_unresolved_for_a_month_becomes_major(app: Flask, db_session, staff_ids,
                                                                        login_as) -> None:
    stuck = dispatched(staff_ids)
    done = handled(staff_ids, unit=fresh(stuck.id).unit)
    invalid = make_complaint(unit=fresh(stuck.id).unit)
    db.session.commit()
    engine.fire(invalid, "mark_invalid", person(staff_ids, "cs_supervisor"),
                values={"invalid_explanation": "不属于物业服务范围且要求不合理"})
    stuck = fresh(stuck.id)
    due = clock(stuck, "unresolved_month").due_at
    received = stuck.received_at.astimezone(app_zone())
    assert due.astimezone(app_zone()).day == received.day or due > received + timedelta(days=27)
    early = run_sweep(app, due - timedelta(minutes=1))
    assert early.escalations == 0 and fresh(stuck.id).severity == "minor"
    report = run_sweep(app, due + timedelta(minutes=1))
    assert report.escalations == 1, report
    stuck = fresh(stuck.id)
    assert stuck.severity == "major" and stuck.severity_since > stuck.received_at  # the major clocks start anew
    rows = db.session.scalars(sa.select(AuditEntry).where(
        AuditEntry.record_type == "complaint", AuditEntry.record_id == stuck.id,
        AuditEntry.transition == "escalate_major")).all()
    assert rows and rows[-1].actor_name == "sweep"
    assert {"major_to_manager", "major_answer", "major_handled"} <= open_clocks(stuck)
    assert "unresolved_month" not in open_clocks(stuck)
    assert fresh(done.id).severity == "minor" and fresh(invalid.id).severity == "minor"
    again = run_sweep(app, due + timedelta(days=1))
    assert again.escalations == 0
    majors = login_as("manager").get("/admin/complaint/?flt1_1=major").get_data(as_text=True)
    assert stuck.number in majors and fresh(done.id).number not in majors
