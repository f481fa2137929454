"""Factories for test data (CTFd style): sensible defaults, override what the test is about."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from models import Building, Estate, Occupancy, Resident, Unit, db
from models.validators import id_number_checksum


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
