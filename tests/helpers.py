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
