"""The demo estate: a residential compound of three buildings and an office tower, plus staff."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import sqlalchemy as sa

from models import Building, Department, Estate, Occupancy, Resident, Staff, Unit, db
from models.staff import DEPARTMENTS
from security import accounts
from seed.people import make_person

DEMO_PASSWORD = "Wuye#Demo2026"
DEMO_STAFF = [
    ("admin", "系统管理员 周", "cs", {"admin"}),
    ("manager", "经理 王建国", "cs", {"manager"}),
    ("supervisor", "客服主管 李娜", "cs", {"cs_supervisor"}),
    ("clerk", "客服助理 张敏", "cs", {"cs_clerk"}),
    ("engineer", "工程部 刘强", "engineering", {"engineering"}),
    ("guard", "保安部 陈勇", "security", {"security"}),
    ("cashier", "财务部 杨芳", "finance", {"finance"}),
    ("patrol", "管理部 赵磊", "management", {"management_dept"}),
]
COMPOUND = ("avic", "中航华庭", "residential", "深圳市福田区华庭路 8 号", [("A", 20), ("B", 18), ("C", 15)], 4)
TOWER = ("twr", "国贸大厦", "office", "深圳市罗湖区人民南路 1 号", [("T", 30)], 6)


def ensure_departments() -> None:
    have = set(db.session.scalars(sa.select(Department.key)))
    for key, label in DEPARTMENTS.items():
        if key not in have:
            db.session.add(Department(key=key, name=str(label)))
    db.session.flush()


def seed_staff() -> list[tuple[str, str]]:
    created = []
    for username, name, dept, roles in DEMO_STAFF:
        if db.session.scalar(sa.select(Staff.id).where(Staff.username == username)) is None:
            accounts.create_staff(username, name, DEMO_PASSWORD, roles, department_key=dept)
        created.append((username, ",".join(sorted(roles))))
    return created


def seed_estate(spec: tuple, rng: random.Random, serial_start: int) -> int:
    code, name, kind, address, buildings, per_floor = spec
    if db.session.scalar(sa.select(Estate.id).where(Estate.code == code)) is not None:
        return serial_start
    today = date.today()
    # handed over some years back, so the demo shows its ARC-8 full check as due
    estate = Estate(code=code, name=name, kind=kind, address=address,
                    handover_date=today.replace(year=today.year - 3, day=1))
    db.session.add(estate)
    serial = serial_start
    for bcode, floors in buildings:
        building = Building(estate=estate, code=bcode, name=f"{bcode}栋", floors=floors)
        db.session.add(building)
        for floor in range(1, floors + 1):
            for room in range(1, per_floor + 1):
                unit = Unit(building=building, floor=floor, code=f"{bcode}-{floor}-{floor * 100 + room}",
                            area=Decimal(rng.choice(("68.50", "89.20", "105.00", "128.75", "143.60"))),
                            use="office" if kind == "office" else "residential")
                db.session.add(unit)
                since = today - timedelta(days=rng.randrange(60, 3000))
                serial += 1
                owner = Resident(**make_person(rng, serial))
                db.session.add(Occupancy(unit=unit, resident=owner, kind="owner", start_date=since))
                if kind == "residential" and rng.random() < 0.55:
                    serial += 1
                    db.session.add(Occupancy(unit=unit, resident=Resident(**make_person(rng, serial)),
                                             kind="family", start_date=since))
                if rng.random() < 0.3:
                    serial += 1
                    start = today - timedelta(days=rng.randrange(10, 700))
                    db.session.add(Occupancy(unit=unit, resident=Resident(**make_person(rng, serial)),
                                             kind="tenant", start_date=start,
                                             end_date=start + timedelta(days=365) if rng.random() < 0.2 else None))
        db.session.flush()
    return serial


def seed_keys(count: int = 12) -> None:
    """A few deposited keys, some out and one loss waiting for the supervisor (the example workflow)."""
    from models import KeyCustody
    from workflow import engine

    if db.session.scalar(sa.select(KeyCustody.id).limit(1)) is not None:
        return
    clerk = db.session.scalar(sa.select(Staff).where(Staff.username == "clerk"))
    owners = db.session.execute(
        sa.select(Occupancy).join(Occupancy.unit).where(Occupancy.kind == "owner", Occupancy.end_date.is_(None))
        .order_by(Unit.id).limit(count)).scalars().all()
    for i, occ in enumerate(owners):
        keys = KeyCustody(unit=occ.unit, resident=occ.resident, tag_no=f"K-{occ.unit.code}",
                          description="入户门钥匙", key_count=2, permitted_use="紧急维修、抄表", created_by=clerk)
        db.session.add(keys)
        db.session.flush()
        if i % 4 == 1:
            engine.fire(keys, "check_out", clerk, values={"current_holder": "工程部 刘强",
                                                          "current_purpose": "抄水表"})
        elif i % 4 == 3 and i < 4:
            engine.fire(keys, "report_lost", clerk, "钥匙柜中未找到")
    db.session.commit()


def seed_demo() -> list[tuple[str, str]]:
    """Idempotent: what exists already is left alone."""
    ensure_departments()
    staff = seed_staff()
    rng = random.Random(20261123)
    serial = seed_estate(COMPOUND, rng, 0)
    seed_estate(TOWER, rng, max(serial, 10000))
    db.session.commit()
    seed_keys()
    for username in ("manager", "engineer", "guard"):  # department heads sign "head of" steps
        head = db.session.scalar(sa.select(Staff).where(Staff.username == username))
        if head is not None and not head.department_head:
            head.department_head = True
    db.session.commit()
    __import__("seed.demo_complaints").demo_complaints.seed_complaints()  # CMP: four weeks of complaints
    __import__("seed.demo_help_requests").demo_help_requests.seed_help_requests()  # HLP: help register, repairs
    __import__("seed.demo_visits").demo_visits.seed_visits()  # VIS: follow-ups (after complaints and repairs)
    __import__("seed.demo_violations").demo_violations.seed_violations()  # VIO: violations in every state
    __import__("seed.demo_renovation").demo_renovation.seed_renovations()  # REN: renovations in every state
    __import__("seed.demo_moving").demo_moving.seed_moving()  # MOV: move-ins/outs, slips, damage in every state
    __import__("seed.demo_archives").demo_archives.seed_archives()  # ARC: one archive per unit, scans ticked
    __import__("seed.demo_duty").demo_duty.seed_duty()  # DTY: rosters, swap, log, visitor, patrols, handover
    return staff
