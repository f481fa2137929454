"""Renovation on site (REGULATIONS §7): REN-9 the contractor's hot-work lead, REN-10 the documents of the
acceptance application, REN-11 the management department's daily patrol of every site under works."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from flask_babel import gettext

from models import Building, Notification, db
from models.base import utcnow
from models.deadline import DeadlineClock
from models.renovation import HotWork, Renovation, RenovationPatrolDay, add_acceptance_document
from models.renovation_patrol import new_patrol_day
from models.validators import DomainError
from tests.conftest import csrf_token
from tests.helpers import ACCEPTANCE_SCAN, make_hot_work, make_renovation, make_unit
from tests.test_printing import pdf_text
from tests.test_renovation import fresh, to_state
from tests.workflow_fixtures import add_staff, staff
from workflow import engine, inbox
from workflow.calendar import local_today
from workflow.engine import MissingFields, NotAllowed
from workflow.sweep import sweep


def tr(msgid: str, **kw: object) -> str:
    return str(gettext(msgid, **kw))


def hot_work(ids: dict[str, int], **overrides: object) -> HotWork:
    ren = to_state(make_renovation(), ids, "permitted")
    hot = make_hot_work(ren, **overrides)
    db.session.commit()
    return hot


def approved(hot: HotWork, ids: dict[str, int]) -> HotWork:
    engine.fire(hot, "approve", staff(ids, "cs_clerk"))
    engine.decide(hot, staff(ids, "engineering"), True)
    engine.decide(hot, staff(ids, "security"), True)
    assert hot.state == "approved"
    return hot


# --- REN-9 -----------------------------------------------------------------------------------
def test_ren_9_hot_work_application_names_the_contractors_lead(db_session, staff_ids) -> None:
    hot = hot_work(staff_ids, lead_name=None, lead_phone=None, lead_id_no=None)
    with pytest.raises(DomainError) as refused:
        hot.check_times()  # every save path of the form
    assert refused.value.field == "lead_name"
    with pytest.raises(
        NotAllowed, match=re.escape(tr("Name the contractor's hot-work lead (name, phone, ID or certificate number)."))
    ):
        engine.fire(hot, "approve", staff(staff_ids, "cs_clerk"))
    hot = db.session.get(HotWork, hot.id)
    assert hot.state == "applied" and hot.pending_transition is None
    hot.lead_name, hot.lead_phone, hot.lead_id_no = "施工队长 孙", "13800138000", "T441202199001011234"
    db.session.commit()
    hot.check_times()
    assert engine.fire(hot, "approve", staff(staff_ids, "cs_clerk")) == "requested"


def test_ren_9_hot_work_starts_only_with_the_lead_checked_in_by_engineering_or_security(db_session, staff_ids) -> None:
    hot = approved(hot_work(staff_ids), staff_ids)
    with pytest.raises(
        NotAllowed,
        match=re.escape(tr("The hot work cannot start: the contractor's hot-work lead is not checked in as present.")),
    ):
        engine.fire(hot, "start", staff(staff_ids, "security"))
    hot = db.session.get(HotWork, hot.id)
    assert hot.state == "approved" and hot.started_at is None
    with pytest.raises(NotAllowed):  # the desk does not supervise the site
        engine.fire(hot, "check_in_lead", staff(staff_ids, "cs_clerk"))
    hot = db.session.get(HotWork, hot.id)
    before = utcnow()
    engine.fire(hot, "check_in_lead", staff(staff_ids, "security"))
    assert hot.lead_checked_in_by_id == staff_ids["security"] and hot.lead_checked_in_at >= before
    engine.fire(hot, "start", staff(staff_ids, "engineering"))
    assert hot.state == "running" and hot.started_at is not None
    engine.fire(hot, "close", staff(staff_ids, "security"))
    assert hot.state == "done"


def test_ren_9_lead_phone_and_id_encrypted_at_rest_and_masked(db_session, staff_ids, login_as) -> None:
    hot = hot_work(staff_ids)
    raw = db.session.execute(
        sa.text("SELECT lead_phone, lead_id_no FROM renovation_hot_work WHERE id = :i"), {"i": hot.id}
    ).one()
    assert "13800138000" not in raw[0] and "T441202199001011234" not in raw[1]
    page = login_as("finance").get(f"/admin/renovation_hot_work/details/?id={hot.id}").get_data(as_text=True)
    assert "施工队长 孙" in page and "138****8000" in page and "13800138000" not in page
    assert "T441202199001011234" not in page
    page = login_as("security").get(f"/admin/renovation_hot_work/details/?id={hot.id}").get_data(as_text=True)
    assert "13800138000" in page  # security calls the lead on site


# --- REN-10 ----------------------------------------------------------------------------------
def test_ren_10_acceptance_refused_without_the_documents(db_session, staff_ids) -> None:
    ren = to_state(make_renovation(), staff_ids, "finished")
    clerk = staff(staff_ids, "cs_clerk")
    with pytest.raises(MissingFields):
        engine.fire(ren, "apply_acceptance", clerk)
    ren = fresh(ren.id)
    with pytest.raises(NotAllowed) as refused:
        engine.fire(ren, "apply_acceptance", clerk, values={"asbuilt_sets": "2"})
    for msgid in (
        "Three sets of as-built drawings must be handed in.",
        "Upload the scan of the as-built drawings.",
        "Upload the copies of the invoices for materials and equipment.",
        "Upload the copy of the deposit receipt.",
    ):
        assert tr(msgid) in str(refused.value)
    ren = fresh(ren.id)
    assert ren.state == "finished"
    add_acceptance_document(ren, "asbuilt", ACCEPTANCE_SCAN, "竣工图.pdf", clerk)
    add_acceptance_document(ren, "invoice", ACCEPTANCE_SCAN, "发票.pdf", clerk)
    db.session.commit()
    with pytest.raises(NotAllowed, match=re.escape(tr("Upload the copy of the deposit receipt."))):
        engine.fire(ren, "apply_acceptance", clerk, values={"asbuilt_sets": "3"})
    ren = fresh(ren.id)
    add_acceptance_document(ren, "deposit_receipt", ACCEPTANCE_SCAN, "押金收据.pdf", clerk)
    db.session.commit()
    engine.fire(ren, "apply_acceptance", clerk, values={"asbuilt_sets": "3"})
    assert ren.state == "inspecting" and ren.asbuilt_sets == 3


def test_ren_10_http_checklist_scans_and_the_acceptance_pdf_lists_them(db_session, staff_ids, login_as) -> None:
    ren = to_state(make_renovation(), staff_ids, "finished")
    clerk = login_as("cs_clerk")
    details = f"/admin/renovation/details/?id={ren.id}"
    page = clerk.get(details).get_data(as_text=True)
    assert 'id="acceptance-checklist"' in page and tr("Upload the copy of the deposit receipt.") in page
    scans = (("asbuilt", "竣工图纸.pdf"), ("invoice", "材料设备发票.pdf"), ("deposit_receipt", "押金收据.pdf"))
    for kind, name in scans:
        reply = clerk.post(
            "/admin/renovation/acceptance-document/",
            data={
                "csrf_token": csrf_token(clerk),
                "id": ren.id,
                "kind": kind,
                "file": (io.BytesIO(ACCEPTANCE_SCAN), name),
            },
            content_type="multipart/form-data",
        )
        assert reply.status_code == 302
    finance = login_as("finance")
    refused = finance.post(
        "/admin/renovation/acceptance-document/",
        data={
            "csrf_token": csrf_token(finance),
            "id": ren.id,
            "kind": "invoice",
            "file": (io.BytesIO(ACCEPTANCE_SCAN), "x.pdf"),
        },
        content_type="multipart/form-data",
    )
    assert refused.status_code == 403
    ren = fresh(ren.id)
    assert (ren.asbuilt_scans, ren.invoice_scans, ren.receipt_scans) == (1, 1, 1)
    engine.fire(ren, "apply_acceptance", staff(staff_ids, "cs_clerk"), values={"asbuilt_sets": "3"})
    engine.fire(ren, "pass_inspection", staff(staff_ids, "engineering"), values={"vents_unsealed_note": "已启封"})
    text = pdf_text(clerk.get(f"/admin/renovation-print/{ren.id}/acceptance.pdf").data)
    for expected in ("竣工图纸.pdf", "材料设备发票.pdf", "押金收据.pdf", tr("Deposit receipt copy")):
        assert expected in text, expected


# --- REN-11 ----------------------------------------------------------------------------------
def site(ids: dict[str, int], code: str = "A-12-1203") -> Renovation:
    building = db.session.scalar(sa.select(Building).limit(1))
    unit = make_unit(building, code=code) if building is not None else make_unit(code=code)
    ren = make_renovation(unit=unit, planned_start=date.today() - timedelta(days=3))
    return to_state(ren, ids, "permitted")


def days_of(ren_id: int) -> list[RenovationPatrolDay]:
    return list(db.session.scalars(sa.select(RenovationPatrolDay).where(RenovationPatrolDay.renovation_id == ren_id)))


def test_ren_11_sweep_opens_each_site_under_works_one_patrol_day_idempotently(db_session, staff_ids) -> None:
    first, second = site(staff_ids), site(staff_ids, "A-12-1204")
    draft = make_renovation(
        unit=make_unit(first.unit.building, code="A-12-1205"), planned_start=date.today() - timedelta(days=3)
    )
    db.session.commit()
    ids = (first.id, second.id, draft.id)
    assert sweep().opened == 2
    assert sweep().opened == 0  # again: nothing new
    assert [len(days_of(i)) for i in ids] == [1, 1, 0]
    day = days_of(ids[0])[0]
    assert day.day == local_today() and day.state == "due"
    clock = db.session.scalar(
        sa.select(DeadlineClock).where(
            DeadlineClock.record_type == "renovation_patrol_day", DeadlineClock.record_id == day.id
        )
    )
    assert clock.is_open and clock.due_at == day.closes_at and clock.department_id is not None


@pytest.mark.parametrize("day", [date(2026, 11, 21), date(2026, 10, 1)], ids=["saturday", "national-day"])
def test_ren_11_weekends_and_holidays_have_their_patrol_too(db_session, staff_ids, day: date) -> None:
    ren = site(staff_ids)
    ren.planned_start = day - timedelta(days=1)
    db.session.commit()
    from models.renovation_patrol import day_bounds

    assert sweep(now=day_bounds(day)[0] + timedelta(hours=9)).opened == 1
    assert [d.day for d in days_of(ren.id)] == [day]


def test_ren_11_patrol_due_in_management_my_work_and_met_by_the_patrol(db_session, staff_ids) -> None:
    ren = site(staff_ids)
    sweep()
    patrol = staff(staff_ids, "management_dept")
    items = [i for i in inbox.my_work(patrol) if isinstance(i.record, RenovationPatrolDay)]
    assert [(i.record.renovation_id, [t.name for t in i.transitions]) for i in items] == [(ren.id, ["record_patrol"])]
    assert not [i for i in inbox.my_work(staff(staff_ids, "engineering")) if isinstance(i.record, RenovationPatrolDay)]
    day = days_of(ren.id)[0]
    with pytest.raises(MissingFields):
        engine.fire(day, "record_patrol", patrol)
    day = db.session.get(RenovationPatrolDay, day.id)
    engine.fire(day, "record_patrol", patrol, values={"findings": "现场整洁，消防器材到位"})
    assert day.state == "patrolled" and day.patrolled_by_id == patrol.id
    assert fresh(ren.id).inspections[-1].findings == "现场整洁，消防器材到位"
    clock = db.session.scalar(
        sa.select(DeadlineClock).where(
            DeadlineClock.record_id == day.id, DeadlineClock.record_type == "renovation_patrol_day"
        )
    )
    assert not clock.is_open and clock.met_at is not None and clock.breached_at is None
    assert not [i for i in inbox.my_work(patrol) if isinstance(i.record, RenovationPatrolDay)]


def test_ren_11_missed_day_is_overdue_and_the_supervisor_told_once(db_session, staff_ids) -> None:
    head = add_staff("patrol_head", {"management_dept"}, department="management", head=True)
    ren = site(staff_ids)
    yesterday = local_today() - timedelta(days=1)
    db.session.add(new_patrol_day(ren, yesterday))
    db.session.commit()
    first = sweep()
    assert first.notices == 1 and first.opened == 1  # yesterday overdue; today's opened
    told = db.session.scalars(sa.select(Notification).where(Notification.staff_id == head.id)).all()
    assert len(told) == 1
    assert sweep().notices == 0  # idempotent: told once
    assert (
        db.session.scalar(sa.select(sa.func.count()).select_from(Notification).where(Notification.staff_id == head.id))
        == 1
    )
    missed = next(d for d in days_of(ren.id) if d.day == yesterday)
    patrol = staff(staff_ids, "management_dept")
    overdue = [i for i in inbox.my_work(patrol) if i.record is missed]
    assert overdue and overdue[0].due_at <= utcnow() and [t.name for t in overdue[0].transitions] == ["explain_missed"]
    with pytest.raises(NotAllowed, match=re.escape(tr("This day is over: record why its patrol was missed."))):
        engine.fire(missed, "record_patrol", patrol, values={"findings": "补记"})
    missed = db.session.get(RenovationPatrolDay, missed.id)
    engine.fire(missed, "explain_missed", patrol, comment="当日人员全部参加消防演练")
    assert missed.state == "missed"


def test_ren_11_site_recorded_idle_owes_no_patrol(db_session, staff_ids) -> None:
    head = add_staff("patrol_head2", {"management_dept"}, department="management", head=True)
    ren = site(staff_ids)
    sweep()
    day = days_of(ren.id)[0]
    with pytest.raises(MissingFields):
        engine.fire(day, "record_idle", staff(staff_ids, "cs_clerk"))
    day = db.session.get(RenovationPatrolDay, day.id)
    engine.fire(day, "record_idle", staff(staff_ids, "cs_clerk"), values={"idle_reason": "业主通知今日停工"})
    assert day.state == "idle"
    from models.renovation_patrol import day_bounds

    report = sweep(now=day_bounds(local_today())[1] + timedelta(hours=1))
    assert report.notices == 0
    assert (
        db.session.scalar(sa.select(sa.func.count()).select_from(Notification).where(Notification.staff_id == head.id))
        == 0
    )
