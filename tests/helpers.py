"""Factories for test data (CTFd style): sensible defaults, override what the test is about."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from models import AuditEntry, Building, Estate, Occupancy, Resident, Unit, db
from models.validators import id_number_checksum

# Logs that a refused request may legitimately write (the refusal, the export, the view).
NOT_SNAPSHOTTED = {"security_event", "audit_head"}
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
