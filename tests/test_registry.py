"""Estate registry rules REG-1..4 and the ARC-5 change history, through models and screens."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from models import Occupancy, Resident, ResidentChange, Unit, VipCommunication, VipProfile, db
from models.validators import DomainError, check_id_number
from tests.conftest import csrf_token
from tests.helpers import make_building, make_occupancy, make_resident, make_unit, valid_id


def test_reg_1_unit_code_reads_building_floor_room(db_session) -> None:
    unit = make_unit(code="a-12-1203", floor=None)
    assert unit.code == "A-12-1203" and unit.floor == 12
    for bad in ("A12-1203", "A-12", "A--1203", "A-12-12 03", "甲-12-1203"):
        with pytest.raises(DomainError):
            Unit(code=bad)


def test_reg_1_unit_code_must_match_building_and_floor(db_session) -> None:
    building = make_building()
    with pytest.raises(DomainError):
        Unit(building=building, code="B-3-301", floor=3).check_consistent()
    with pytest.raises(DomainError):
        Unit(building=building, code="A-3-301", floor=4).check_consistent()
    Unit(building=building, code="A-B1-01", floor=-1).check_consistent()


def test_reg_1_units_listed_by_building_floor_room(login_as, db_session) -> None:
    building = make_building()
    for code in ("A-10-1001", "A-2-201", "A-2-202", "A-1-101"):
        make_unit(building, code=code, floor=None)
    db.session.commit()
    page = login_as("cs_clerk").get("/admin/unit/").get_data(as_text=True)
    positions = [page.index(c) for c in ("A-1-101", "A-2-201", "A-2-202", "A-10-1001")]
    assert positions == sorted(positions)


def test_reg_1_archive_label(db_session) -> None:
    estate = make_building().estate
    assert estate.archive_label(1, "cpm") == "cpm-demo-001"


def test_reg_2_occupancy_history_kept_and_end_not_before_start(db_session) -> None:
    unit, resident = make_unit(), make_resident()
    occ = make_occupancy(unit, resident, kind="tenant", start_date=date(2024, 3, 1))
    db.session.commit()
    with pytest.raises(DomainError):
        occ.end_date = date(2024, 2, 1)
    db.session.rollback()
    occ = db.session.get(Occupancy, occ.id)
    occ.end_date = date(2025, 2, 28)
    make_occupancy(unit, make_resident(id_number=valid_id(2), name="李四"), kind="tenant",
                   start_date=date(2025, 3, 1))
    db.session.commit()
    assert len(db.session.get(Unit, unit.id).occupancies) == 2  # ended, not overwritten


def test_reg_2_database_refuses_end_before_start(db_session) -> None:
    unit, resident = make_unit(), make_resident()
    db.session.commit()
    with pytest.raises(sa.exc.IntegrityError):
        with db.engine.begin() as conn:
            conn.execute(sa.insert(Occupancy).values(
                unit_id=unit.id, resident_id=resident.id, kind="owner", start_date=date(2024, 5, 1),
                end_date=date(2024, 4, 1), version=1, created_at=sa.func.now(), updated_at=sa.func.now()))


def test_reg_3_resident_fields_and_id_checksum(db_session) -> None:
    assert check_id_number("11010519491231002x") == "11010519491231002X"
    for bad in ("110105194912310021", "11010519491331002X", "1101051949123100", "A10105194912310021"):
        with pytest.raises(DomainError):
            check_id_number(bad)
    resident = make_resident(native_place="四川省成都市", household_place="四川省成都市",
                             emergency_contact="张父", emergency_phone="13900000000", gender="female")
    db.session.commit()
    assert db.session.get(Resident, resident.id).emergency_contact == "张父"


def test_arc_5_phone_and_tenure_changes_recorded_with_date(login_as, db_session) -> None:
    unit, resident = make_unit(), make_resident(phone="13800000001")
    make_occupancy(unit, resident)
    db.session.commit()
    client = login_as("cs_clerk")
    page = client.get(f"/admin/resident/edit/?id={resident.id}").get_data(as_text=True)
    version = page.split('name="version" type="hidden" value="')[1].split('"')[0]
    response = client.post(f"/admin/resident/edit/?id={resident.id}", data={
        "csrf_token": csrf_token(client), "version": version, "name": "张三", "phone": "13800000002",
        "gender": "male", "id_number": ""})
    assert response.status_code == 302
    changes = db.session.scalars(sa.select(ResidentChange).where(ResidentChange.resident_id == resident.id)).all()
    phone = [c for c in changes if c.field == "phone"]
    assert phone and phone[0].old_value == "13800000001" and phone[0].new_value == "13800000002"
    assert phone[0].changed_by_id is not None and phone[0].at is not None
    assert any(c.field == "occupancy" for c in changes)
    assert db.session.get(Resident, resident.id).id_number == valid_id()  # blank keeps the number


def test_reg_4_vip_profile_and_communication_log(login_as, db_session, staff_ids) -> None:
    resident = make_resident()
    db.session.commit()
    client = login_as("cs_clerk")
    response = client.post("/admin/vip/new/", data={
        "csrf_token": csrf_token(client), "resident": str(resident.id), "birthday": "1980-01-01",
        "preferences": "喜欢安静", "special_requirements": "行动不便，需协助"})
    assert response.status_code == 302
    profile = db.session.scalar(sa.select(VipProfile))
    assert profile.birthday == date(1980, 1, 1)
    response = client.post("/admin/vip_contact/new/", data={
        "csrf_token": csrf_token(client), "profile": str(profile.id), "summary": "电话问候生日"})
    assert response.status_code == 302
    note = db.session.scalar(sa.select(VipCommunication))
    assert note.staff_id == staff_ids["cs_clerk"] and note.summary == "电话问候生日"
