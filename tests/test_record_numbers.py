"""Record numbers under concurrent creates (issue 12 §5), on SQLite and PostgreSQL.

Sixteen desks register at the same moment: every record is saved and gets its own number, in
order and without gaps (models/numbering.py: one counter row per prefix and period, incremented
atomically in the creating transaction). Before, only 3–7 of 16 complaints were saved and the
rest were told "a record with the same number exists". Each racer is a real thread with its own
client or request context, hence its own database connection, released together at a barrier.

Rules: CMP-1 (the complaint form, numbered TS<yyyymm>-nnnn; HLP-3 help requests become such
complaints), VIO-3 (numbered coordination sheets XTD-yyyy-nnnn), MOV-4 (numbered release slips
FX-yyyy-nnnnn), REN-3 (the permit ZX<yyyy>-<id>).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import flask_login
import sqlalchemy as sa
from flask import Flask

from models import Staff, db
from models.base import utcnow
from models.complaints import Complaint
from models.moving import ReleaseSlip
from models.numbering import NumberCounter, next_number
from models.renovation import Renovation
from models.violations import Violation
from tests.conftest import csrf_token
from tests.helpers import make_building, make_complaint, make_renovation, make_unit, make_violation
from workflow import engine
from workflow.calendar import app_zone

RACERS = 16


def at_once(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run every job in its own thread, released together; return results (or the exceptions)."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[i] = jobs[i]()
        except BaseException as exc:  # reported to the test thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


def as_user(app: Flask, staff_id: int, work: Callable[[Staff], Any]) -> Callable[[], Any]:
    """A job in its own request context (own session and connection), signed in as the staff."""

    def job() -> Any:
        with app.test_request_context():
            try:
                me = db.session.get(Staff, staff_id)
                flask_login.login_user(me)
                return work(me)
            finally:
                db.session.remove()

    return job


def complaint_form(unit_id: int, i: int) -> dict[str, Any]:
    return {
        "received_at": "2026-11-23 09:00:00",
        "channel": "phone",
        "written": "",
        "unit": unit_id,
        "complainant_name": f"住户{i}",
        "contact_phone": "13800138000",
        "occurred_at": "2026-11-22 20:00:00",
        "location": "A栋地下车库",
        "subject": "保安部夜班",
        "description": f"车库道闸夜间无人值守 {i}",
        "demand": "恢复夜间值守",
        "category": "parking",
        "severity": "minor",
        "about_property": "y",
        "department": "",
        "resident_deadline": "",
        "read_back_confirmed": "y",
    }


def test_cmp_1_sixteen_desks_registering_at_once_all_save_with_distinct_numbers(db_session, login_as):
    """Through the real form POST: every complaint saved, TS202611-0001 … -0016, none refused."""
    unit = make_unit()
    db.session.commit()
    clients = [login_as("cs_clerk" if i % 2 else "cs_supervisor") for i in range(RACERS)]
    posts = [{"csrf_token": csrf_token(c), **complaint_form(unit.id, i)} for i, c in enumerate(clients)]
    jobs = [
        lambda c=c, data=data: c.post("/admin/complaint/new/", data=data)
        for c, data in zip(clients, posts, strict=True)
    ]
    responses = at_once(jobs)
    assert [getattr(r, "status_code", r) for r in responses] == [302] * RACERS
    db.session.expire_all()
    numbers = sorted(db.session.scalars(sa.select(Complaint.number)))
    assert numbers == [f"TS202611-{i:04d}" for i in range(1, RACERS + 1)]


def test_vio_3_sixteen_sheets_registered_at_once_get_distinct_numbers(app, db_session, staff_ids):
    clerk_id, engineer = staff_ids["cs_clerk"], db.session.get(Staff, staff_ids["engineering"])
    ids = []
    for i in range(RACERS):
        v = make_violation(description=f"楼道堆放杂物 {i}")
        db.session.commit()
        engine.fire(v, "persuade", engineer, values={"persuasion_notes": "劝其清理"})
        ids.append(v.id)

    def register(violation_id: int) -> Callable[[Staff], str]:
        def work(me: Staff) -> str:
            v = db.session.get(Violation, violation_id)
            engine.fire(v, "register", me)
            return v.sheet_no

        return work

    results = at_once([as_user(app, clerk_id, register(i)) for i in ids])
    assert all(isinstance(r, str) for r in results), results
    year = utcnow().astimezone(app_zone()).year
    assert sorted(results) == [f"XTD-{year}-{i:04d}" for i in range(1, RACERS + 1)]


def test_mov_4_sixteen_release_slips_issued_at_once_get_distinct_numbers(app, db_session, staff_ids):
    unit = make_unit()
    db.session.commit()
    unit_id = unit.id

    def issue(i: int) -> Callable[[Staff], str]:
        def work(me: Staff) -> str:
            slip = ReleaseSlip(unit_id=unit_id, carrier=f"搬家公司 {i}", goods="旧沙发", goods_checked=True)
            db.session.add(slip)
            db.session.commit()
            return slip.number

        return work

    results = at_once([as_user(app, staff_ids["cs_clerk"], issue(i)) for i in range(RACERS)])
    assert all(isinstance(r, str) for r in results), results
    year = utcnow().astimezone(app_zone()).year
    assert sorted(results) == [f"FX-{year}-{i:05d}" for i in range(1, RACERS + 1)]


def test_ren_3_sixteen_permits_issued_at_once_all_succeed(app, db_session, staff_ids):
    """ZX numbers come from the renovation's id, so concurrent permits never share one."""
    from tests.test_renovation import to_state

    building = make_building()
    ids = []
    for i in range(RACERS):
        ren = make_renovation(unit=make_unit(building, code=f"A-12-12{i:02d}"), pass_deposit_each=Decimal("50"))
        db.session.commit()
        to_state(ren, staff_ids, "approved")
        for name, receipt in (("pay_deposit", "R1"), ("pay_debris", "R2"), ("pay_pass_deposits", "R3")):
            engine.fire(ren, name, db.session.get(Staff, staff_ids["finance"]), values={"receipt_no": receipt})
        ids.append(ren.id)

    def permit(ren_id: int) -> Callable[[Staff], str]:
        def work(me: Staff) -> str:
            ren = db.session.get(Renovation, ren_id)
            engine.fire(ren, "issue_permit", me, values={"neighbours_notified": "1103、1303 书面通知"})
            return ren.permit_no

        return work

    results = at_once([as_user(app, staff_ids["cs_clerk"], permit(i)) for i in ids])
    assert all(isinstance(r, str) and r.startswith("ZX") for r in results), results
    assert len(set(results)) == RACERS


def test_cmp_1_numbers_continue_after_rows_numbered_before_the_counter(db_session):
    """Rows imported with their numbers (or numbered before the counter existed) are never repeated:
    the counter never goes below the highest stored number of its prefix."""
    make_complaint(number="TS202611-0007", received_at=utcnow().replace(year=2026, month=11, day=23))
    db.session.commit()
    column = Complaint.__table__.c.number
    assert next_number(db.session, column, "TS202611-", 4) == "TS202611-0008"
    assert next_number(db.session, column, "TS202611-", 4) == "TS202611-0009"
    assert next_number(db.session, column, "TS202612-", 4) == "TS202612-0001"
    db.session.rollback()
    assert db.session.get(NumberCounter, "TS202611-") is None  # the increment went with the rollback


# --- serials past the zero-padded width (issue 16: "…-9999" sorts above "…-10000" as text) --------
def _next_after(column: sa.Column, prefix: str, width: int, stored: list[str], make: Callable[[str], Any]) -> str:
    """Store rows numbered ``stored`` (no counter row: numbered before it, or imported), then ask."""
    for number in stored:
        make(number)
    db.session.commit()
    return next_number(db.session, column, prefix, width)


def test_cmp_1_complaint_numbering_crosses_9999(db_session):
    """CMP-1: the month's 10,000th complaint is TS…-10000, and the next one after a stored 10000 is
    10001 (a text MAX would pick 9999 and hand out the 10000 already taken)."""
    november = utcnow().replace(year=2026, month=11, day=23)
    building = make_building()
    units = iter(make_unit(building, code=f"A-1-{i}") for i in range(101, 110))

    def stored(number: str) -> Any:
        return make_complaint(number=number, received_at=november, unit=next(units))

    column = Complaint.__table__.c.number
    assert _next_after(column, "TS202611-", 4, ["TS202611-9999"], stored) == "TS202611-10000"
    db.session.rollback()
    assert _next_after(column, "TS202611-", 4, ["TS202611-10000"], stored) == "TS202611-10001"
    db.session.rollback()
    make_complaint(number="TS202611-10001", received_at=november, unit=next(units))
    created = make_complaint(received_at=november, unit=next(units))  # numbered by the insert hook
    db.session.commit()
    assert created.number == "TS202611-10002"


def test_vio_3_coordination_sheet_numbering_crosses_9999(db_session):
    """VIO-3: the register's sheet numbers go XTD-yyyy-9999 → XTD-yyyy-10000 → 10001."""
    unit = make_unit()

    def stored(number: str) -> Any:
        return make_violation(unit=unit, sheet_no=number)

    column = Violation.__table__.c.sheet_no
    assert _next_after(column, "XTD-2026-", 4, ["XTD-2026-9998", "XTD-2026-9999"], stored) == "XTD-2026-10000"
    db.session.rollback()
    assert _next_after(column, "XTD-2026-", 4, ["XTD-2026-10000"], stored) == "XTD-2026-10001"


def test_mov_4_release_slip_numbering_crosses_9999_and_99999(db_session):
    """MOV-4: slips are FX-yyyy-nnnnn; past 99,999 the serial grows to six digits and keeps counting."""
    unit = make_unit()

    def stored(number: str) -> Any:
        slip = ReleaseSlip(unit_id=unit.id, carrier="搬家公司", goods="旧沙发", goods_checked=True, number=number)
        db.session.add(slip)
        return slip

    column = ReleaseSlip.__table__.c.number
    assert _next_after(column, "FX-2026-", 5, ["FX-2026-09999"], stored) == "FX-2026-10000"
    db.session.rollback()
    assert _next_after(column, "FX-2026-", 5, ["FX-2026-99999", "FX-2026-100000"], stored) == "FX-2026-100001"


def test_ren_3_permit_and_application_numbering_crosses_9999_and_99999(db_session):
    """REN-1/REN-3: ZXSQ-<id> (the application) and ZX<yyyy>-<id> (the permit) come from the
    record's id, unique by construction; past the padding they simply grow."""
    from datetime import UTC, datetime

    from models.renovation_rules import on_permit
    from workflow.engine import Firing

    building = make_building()
    at = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    numbers = []
    for i, record_id in enumerate((9999, 10000, 99999, 100000)):
        ren = make_renovation(id=record_id, unit=make_unit(building, code=f"A-2-{201 + i}"))
        on_permit(ren, Firing(None, engine.workflow_of(ren).transition("issue_permit"), "", at))
        numbers.append((ren.number, ren.permit_no))
    assert numbers == [
        ("ZXSQ-09999", "ZX2026-09999"),
        ("ZXSQ-10000", "ZX2026-10000"),
        ("ZXSQ-99999", "ZX2026-99999"),
        ("ZXSQ-100000", "ZX2026-100000"),
    ]
    db.session.rollback()
