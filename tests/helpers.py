"""Factories for test data (CTFd style): sensible defaults, override what the test is about."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from models import AuditEntry, Building, Estate, Occupancy, Resident, Unit, db
from models.validators import id_number_checksum

# Logs that a refused request may legitimately write (the refusal, the export, the view) and
# the server-side session row a login writes.
NOT_SNAPSHOTTED = {"security_event", "audit_head", "user_session"}
DATA_ACTIONS = ("create", "update", "delete", "transition", "request", "signoff", "withdraw", "setting")


def data_rows(table: sa.Table) -> sa.Select:
    """Rows a refused write must leave untouched; for the audit trail, the data-change rows."""
    query = sa.select(table).order_by(*table.primary_key.columns)
    if table.name == AuditEntry.__tablename__:
        query = query.where(table.c.action.in_(DATA_ACTIONS))
    return query


def valid_id(serial: int = 1, born: str = "19800101", region: str = "110105") -> str:
    first17 = f"{region}{born}{serial % 1000:03d}"
    return first17 + id_number_checksum(first17)


def make_estate(**overrides: Any) -> Estate:
    values = {"code": "demo", "name": "测试花园", "kind": "residential"} | overrides
    estate = Estate(**values)
    db.session.add(estate)
    db.session.flush()
    return estate


def make_building(estate: Estate | None = None, **overrides: Any) -> Building:
    building = Building(estate=estate or make_estate(), **({"code": "A", "floors": 20} | overrides))
    db.session.add(building)
    db.session.flush()
    return building


def make_unit(building: Building | None = None, **overrides: Any) -> Unit:
    values = {"code": "A-12-1203", "floor": 12, "area": Decimal("89.50"), "use": "residential"} | overrides
    unit = Unit(building=building or make_building(), **values)
    db.session.add(unit)
    db.session.flush()
    return unit


def make_resident(**overrides: Any) -> Resident:
    values = {"name": "张三", "gender": "male", "phone": "13800138000", "id_number": valid_id()} | overrides
    resident = Resident(**values)
    db.session.add(resident)
    db.session.flush()
    return resident


def make_occupancy(unit: Unit, resident: Resident, **overrides: Any) -> Occupancy:
    values = {"kind": "owner", "start_date": date(2024, 1, 1)} | overrides
    occ = Occupancy(unit=unit, resident=resident, **values)
    db.session.add(occ)
    db.session.flush()
    return occ


def make_key_custody(**overrides: Any) -> Any:
    """Keys of a unit deposited by its owner, in the cabinet (state "held")."""
    from models import KeyCustody

    unit = overrides.pop("unit", None) or make_unit()
    resident = overrides.pop("resident", None)
    if resident is None:
        resident = make_resident(id_number=valid_id(serial=unit.id or 1))
        make_occupancy(unit, resident)
    values = {"tag_no": f"K-{unit.code}", "description": "入户门钥匙", "key_count": 2} | overrides
    keys = KeyCustody(unit=unit, resident=resident, **values)
    db.session.add(keys)
    db.session.flush()
    return keys


def make_help_request(**overrides: Any) -> Any:
    """A general help request (everyday help) just received at the desk (state "received")."""
    from models.help_requests import HelpRequest

    values = {"category": "daily", "caller": "张三", "caller_phone": "13800138000",
              "description": "门禁卡失灵，请帮忙开门"} | overrides
    request = HelpRequest(**values)
    db.session.add(request)
    db.session.flush()
    return request


def make_repair_order(**overrides: Any) -> Any:
    """An ordinary repair work order opened at the desk without a help request (state "open")."""
    from models.repairs import RepairOrder

    order = RepairOrder(**({"fault": "厨房水龙头漏水", "location": "A-12-1203 厨房"} | overrides))
    db.session.add(order)
    db.session.flush()
    return order


def make_complaint(**overrides: Any) -> Any:
    """A complete, read-back complaint form about a unit (state "received", minor, valid)."""
    from datetime import UTC, datetime

    from models.complaints import Complaint

    unit = overrides.pop("unit", None) or make_unit()
    values = {"channel": "phone", "complainant_name": "张三", "contact_phone": "13800138000",
              "occurred_at": datetime(2026, 11, 20, 1, 0, tzinfo=UTC), "location": "A栋大堂",
              "subject": "保洁班组", "description": "大堂地面连续三天未清洁", "demand": "当天清洁并说明原因",
              "category": "cleaning", "severity": "minor", "read_back_confirmed": True} | overrides
    complaint = Complaint(unit=unit, **values)
    db.session.add(complaint)
    db.session.flush()
    return complaint


def make_visit(**overrides: Any) -> Any:
    """A draft opinion-survey visit by phone, made by the manager an hour ago (state "draft")."""
    from datetime import timedelta

    from models.base import utcnow
    from models.staff import Staff
    from models.visits import Visit

    if "visitor" not in overrides and "visitor_id" not in overrides:
        overrides["visitor"] = db.session.scalar(sa.select(Staff).where(Staff.username == "manager"))
    values = {"kind": "survey", "method": "phone", "visited_at": utcnow() - timedelta(hours=1),
              "person_visited": "张三", "opinion": "对保洁服务满意", "satisfied": True} | overrides
    visit = Visit(**values)
    db.session.add(visit)
    db.session.flush()
    return visit


def make_renovation(**overrides: Any) -> Any:
    """A complete renovation application of a unit by its owner, drawings ticked, not yet submitted
    (state "draft"); ``drawing_count`` says one drawing is on file (tests that upload set it to 0)."""
    from datetime import timedelta

    from models.renovation import Renovation

    today = date.today()
    unit = overrides.pop("unit", None) or make_unit()
    applicant = overrides.pop("applicant", None)
    if applicant is None:
        applicant = make_resident(id_number=valid_id(serial=unit.id or 1))
        make_occupancy(unit, applicant)
    values = {"scope": "厨卫改造、吊顶、墙面翻新", "contractor": "安居装饰有限公司", "contractor_contact": "李工",
              "contractor_phone": "13900139000", "planned_start": today + timedelta(days=7),
              "planned_end": today + timedelta(days=60), "fees_paid_until": today + timedelta(days=40),
              "fees_confirmed_by": "财务 王会计", "pledge_signed": True, "drawing_lighting": True,
              "drawing_ceiling": True, "drawing_count": 1} | overrides
    renovation = Renovation(unit=unit, applicant=applicant, **values)
    db.session.add(renovation)
    db.session.flush()
    return renovation


def make_violation(**overrides: Any) -> Any:
    """A general hygiene violation on a unit, witnessed an hour ago, not yet persuaded (state "reported")."""
    from datetime import timedelta

    from models.base import utcnow
    from models.violations import Violation

    unit = overrides.pop("unit", None) or db.session.scalar(sa.select(Unit).limit(1)) or make_unit()
    values = {"kind": "hygiene", "sub_kind": "clutter", "severity": "general", "occurred_at": utcnow() - timedelta(
        hours=1), "location": "A栋12层消防通道", "description": "楼道堆放杂物", "witness": "保安 李四"} | overrides
    violation = Violation(unit=unit, **values)
    db.session.add(violation)
    db.session.flush()
    return violation


def make_hot_work(renovation: Any, **overrides: Any) -> Any:
    """A hot-work application of a renovation, not yet sent for approval (state "applied")."""
    from datetime import UTC, datetime

    from models.renovation import HotWork

    values = {"work": "焊接", "location": "阳台", "starts_at": datetime(2026, 12, 1, 1, 0, tzinfo=UTC),
              "ends_at": datetime(2026, 12, 1, 3, 0, tzinfo=UTC), "operator": "焊工赵", "fire_watch": "保安钱",
              "lead_name": "施工队长 孙", "lead_phone": "13800138000", "lead_id_no": "T441202199001011234",
              "extinguishers_ready": True} | overrides
    hot = HotWork(renovation=renovation, **values)
    db.session.add(hot)
    db.session.flush()
    return hot


def make_temporary_power(renovation: Any, **overrides: Any) -> Any:
    """A temporary-power application of a renovation, not yet priced (state "applied")."""
    from models.renovation import TemporaryPower

    power = TemporaryPower(renovation=renovation, **({"purpose": "切割机临时用电", "load_kw": "5"} | overrides))
    db.session.add(power)
    db.session.flush()
    return power


def make_move_out(**overrides: Any) -> Any:
    """MOV-3: a tenant's move-out registered at the desk (state "open"); the unit has an owner too."""
    from datetime import timedelta

    from models.moving import MoveOut

    occupancy = overrides.pop("occupancy", None)
    if occupancy is None:
        unit = overrides.pop("unit", None) or make_unit()
        owner = make_resident(name="房东李", id_number=valid_id(serial=800 + (unit.id or 1)))
        make_occupancy(unit, owner)
        tenant = make_resident(name="租客王", id_number=valid_id(serial=900 + (unit.id or 1)))
        occupancy = make_occupancy(unit, tenant, kind="tenant")
    values = {"planned_date": date.today() + timedelta(days=5), "goods": "沙发一张\n冰箱一台"} | overrides
    move = MoveOut(occupancy=occupancy, unit=occupancy.unit, **values)
    db.session.add(move)
    db.session.flush()
    return move


def make_duty_log(**overrides: Any) -> Any:
    """A duty log entry (append-only, DTY-3) written by the first staff account."""
    from models import Staff
    from models.duty import add_entry

    author = overrides.pop("author", None) or db.session.scalar(sa.select(Staff).order_by(Staff.id))
    values = {"kind": "enquiry", "body": "业主询问停水时间"} | overrides
    entry = add_entry(author, **values)
    db.session.flush()
    return entry


ACCEPTANCE_SCAN = b"%PDF-1.4\n%scan\n"


def bring_acceptance_documents(renovation: Any, user: Any) -> None:
    """REN-10: one scan of each document the acceptance application brings (not committed)."""
    from models.renovation import add_acceptance_document

    for kind, name in (("asbuilt", "竣工图.pdf"), ("invoice", "材料发票.pdf"), ("deposit_receipt", "押金收据.pdf")):
        add_acceptance_document(renovation, kind, ACCEPTANCE_SCAN, name, user)
