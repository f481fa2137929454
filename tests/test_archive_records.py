"""What the archive files besides documents (REGULATIONS §3): arrears follow-ups (ARC-7), spot checks
(ARC-8), important events under the manager's review and legal hold (ARC-9), rental registration (ARC-10)."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import sqlalchemy as sa

from models import db
from models.archive_records import (
    ArchiveEvent,
    ArrearsCase,
    ArrearsFollowUp,
    RentalRegistration,
    SpotCheck,
    SpotCheckItem,
    draw_spot_check,
    full_checks_due,
    overdue_arrears,
    record_result,
    spot_check_due,
)
from models.archives import archive_for_unit, file_document
from models.base import utcnow
from tests.conftest import csrf_token
from tests.helpers import make_building, make_estate, make_occupancy, make_resident, make_unit
from tests.test_archives import PDF, make_archive, person, refusal
from workflow import engine


# --- ARC-7 -----------------------------------------------------------------------------------------
def test_arc_7_arrears_followed_up_every_15_days_and_overdue_listed(db_session, staff_ids, login_as) -> None:
    archive = make_archive()
    case = ArrearsCase(archive=archive, amount=Decimal("1200.00"), owed_since=date.today() - timedelta(days=60))
    case.check_case()
    db.session.add(case)
    db.session.commit()
    assert case in db.session.scalars(overdue_arrears()).all()  # one month past, then 15 days: overdue
    clerk = person(staff_ids, "cs_clerk")
    refusal(lambda: engine.fire(case, "follow_up", clerk))  # what was said must be recorded
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ArrearsFollowUp)) == 0
    engine.fire(case, "follow_up", clerk, comment="电话催缴，业主答应月底缴")
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ArrearsFollowUp)) == 1
    assert case.next_due_at - case.last_follow_up_at == timedelta(days=15)
    assert case not in db.session.scalars(overdue_arrears()).all()
    assert case in db.session.scalars(overdue_arrears(utcnow() + timedelta(days=16))).all()
    page = login_as("finance").get("/admin/archive_arrears/?flt0_1=1").get_data(as_text=True)
    assert "1200.00" not in page  # not overdue now


def test_arc_7_over_one_quarter_followed_up_every_7_days(db_session, staff_ids) -> None:
    archive = make_archive()
    case = ArrearsCase(archive=archive, amount=Decimal("3000.00"), owed_since=date.today() - timedelta(days=120))
    case.check_case()
    db.session.add(case)
    db.session.commit()
    engine.fire(case, "follow_up", person(staff_ids, "finance"), comment="上门催缴")
    db.session.commit()
    assert case.next_due_at - case.last_follow_up_at == timedelta(days=7)


def test_arc_7_arrears_form_refuses_bad_amount(db_session, login_as) -> None:
    archive = make_archive()
    clerk = login_as("cs_clerk")
    body = clerk.post("/admin/archive_arrears/new/", data={
        "csrf_token": csrf_token(clerk), "archive": archive.id, "fee": "water", "amount": "0",
        "owed_since": "2026-01-01"}).get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ArrearsCase)) == 0
    assert "欠费金额" in body or "amount" in body.lower()


# --- ARC-8 -----------------------------------------------------------------------------------------
def test_arc_8_spot_check_draws_at_least_five_percent_and_records_results(db_session, staff_ids) -> None:
    building = make_building()
    archives = [archive_for_unit(make_unit(building, code=f"A-1-{i:03}", floor=1).id) for i in range(41)]
    file_document(archives[0], "covenant", PDF, "公约.pdf", person(staff_ids, "cs_clerk"))
    db.session.commit()
    assert spot_check_due()
    check = draw_spot_check(person(staff_ids, "cs_supervisor"), random.Random(7))
    db.session.commit()
    assert len(check.items) == 3  # ceil(41 * 5%) = 3
    assert len({i.archive_id for i in check.items}) == 3
    assert not spot_check_due() and spot_check_due(utcnow() + timedelta(days=184))
    for item in check.items:
        record_result(item, person(staff_ids, "cs_supervisor"))
    db.session.commit()
    recorded = db.session.scalars(sa.select(SpotCheckItem)).all()
    assert all(i.result == "deficient" and i.missing and i.checked_at for i in recorded)


def test_arc_8_spot_check_of_few_archives_samples_at_least_one_over_http(db_session, login_as) -> None:
    make_archive()
    supervisor = login_as("cs_supervisor")
    supervisor.post("/admin/archive_spot_check/draw/", data={"csrf_token": csrf_token(supervisor)})
    items = db.session.scalars(sa.select(SpotCheckItem)).all()
    assert len(items) == 1
    supervisor.post("/admin/archive_spot_check/record/", data={"csrf_token": csrf_token(supervisor),
                                                               "id": items[0].id})
    db.session.rollback()
    assert db.session.get(SpotCheckItem, items[0].id).result == "deficient"
    engineer = login_as("engineering")
    assert engineer.post("/admin/archive_spot_check/draw/", data={
        "csrf_token": csrf_token(engineer)}).status_code in (302, 403)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SpotCheckItem)) == 1


def test_arc_8_full_check_due_one_year_after_hand_over_lists_every_archive_once(db_session, staff_ids,
                                                                               login_as) -> None:
    today = date(2026, 11, 24)
    estate = make_estate(handover_date=date(2025, 11, 25))
    building = make_building(estate)
    for i in range(3):
        archive_for_unit(make_unit(building, code=f"A-1-{i:03}", floor=1).id)
    db.session.commit()
    assert full_checks_due(today) == []  # one day short of a year
    due = full_checks_due(today + timedelta(days=1))
    assert [e.id for e, _why in due] == [estate.id] and "2025-11-25" in due[0][1]
    estate.handover_date = date(2025, 1, 1)
    db.session.commit()
    engineer = login_as("engineering")
    assert engineer.post("/admin/archive_spot_check/full/", data={
        "csrf_token": csrf_token(engineer), "estate_id": estate.id}).status_code in (302, 403)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SpotCheck)) == 0
    supervisor = login_as("cs_supervisor")
    page = supervisor.get("/admin/archive_spot_check/").get_data(as_text=True)
    assert "full-checks-due" in page and estate.name in page
    form = {"csrf_token": csrf_token(supervisor), "estate_id": estate.id}
    assert supervisor.post("/admin/archive_spot_check/full/", data=form).status_code == 302
    check = db.session.scalars(sa.select(SpotCheck)).one()
    assert check.kind == "full" and check.estate_id == estate.id and len(check.items) == 3
    assert full_checks_due() == [] and not spot_check_due()  # next: the six-monthly sample
    supervisor.post("/admin/archive_spot_check/full/", data=form)  # only once
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SpotCheck)) == 1


def test_arc_8_full_check_due_when_occupancy_reaches_80_percent(db_session) -> None:
    estate = make_estate()  # hand-over date unknown
    building = make_building(estate)
    units = [make_unit(building, code=f"B-2-{i:03}", floor=2) for i in range(5)]
    for unit in units[:3]:
        make_occupancy(unit, make_resident(id_number=None, name=f"住户{unit.code}"))
    db.session.commit()
    assert full_checks_due(date(2026, 11, 24)) == []  # 60%
    make_occupancy(units[3], make_resident(id_number=None, name="住户四"), start_date=date(2026, 11, 1))
    db.session.commit()
    assert full_checks_due(date(2026, 10, 31)) == []  # the fourth moves in later
    assert [e.id for e, why in full_checks_due(date(2026, 11, 24))] == [estate.id]


# --- ARC-9 -----------------------------------------------------------------------------------------
def test_arc_9_important_event_filed_only_after_manager_review_with_legal_hold(db_session, staff_ids) -> None:
    from models.retention import LegalHold

    archive = make_archive()
    event = ArchiveEvent(archive=archive, kind="legal", title="业主起诉漏水赔偿", occurred_on=date.today())
    db.session.add(event)
    db.session.commit()
    engine.fire(event, "file", person(staff_ids, "cs_clerk"))
    db.session.commit()
    assert event.state == "draft" and event.pending_transition == "file"
    refusal(lambda: engine.decide(event, person(staff_ids, "cs_supervisor"), True))  # only the manager reviews
    db.session.rollback()
    assert db.session.get(ArchiveEvent, event.id).state == "draft"
    assert engine.decide(event, person(staff_ids, "manager"), True) == "approved"
    db.session.commit()
    assert event.state == "filed" and event.filed_at is not None
    hold = db.session.scalar(sa.select(LegalHold).where(LegalHold.record_type == "archive_event",
                                                        LegalHold.record_id == event.id))
    assert hold is not None


def test_arc_9_event_form_needs_a_kind(db_session, login_as) -> None:
    archive = make_archive()
    clerk = login_as("cs_clerk")
    clerk.post("/admin/archive_event/new/", data={"csrf_token": csrf_token(clerk), "archive": archive.id,
                                                  "kind": "gossip", "title": "x", "occurred_on": "2026-11-01"})
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ArchiveEvent)) == 0


# --- ARC-10 ----------------------------------------------------------------------------------------
def test_arc_10_rental_registration_checks_the_lease(db_session, login_as) -> None:
    archive = make_archive()
    clerk = login_as("cs_clerk")
    data = {"csrf_token": csrf_token(clerk), "archive": archive.id, "kind": "commercial",
            "tenant_name": "李四", "company": "某某贸易公司", "use": "办公", "lease_from": "2026-12-01",
            "lease_to": "2026-01-01", "contact": "13900139000"}
    clerk.post("/admin/archive_rental/new/", data=data)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RentalRegistration)) == 0
    assert clerk.post("/admin/archive_rental/new/", data=data | {"lease_to": "2027-11-30"}).status_code == 302
    row = db.session.scalar(sa.select(RentalRegistration))
    assert (row.tenant_name, row.use, row.contact) == ("李四", "办公", "13900139000")
