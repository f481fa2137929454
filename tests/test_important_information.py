"""ACC-8 修改重要信息: a change to important information needs the password again, on every path;
the firm may reserve it to supervisors; the old value stays in the record's history."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import sqlalchemy as sa
from flask_babel import force_locale

from models import AuditEntry, Occupancy, Resident, SecurityEvent, Staff, Unit, db
from models.validators import DomainError
from tests.conftest import PASSWORD, csrf_token
from tests.helpers import make_occupancy, make_resident, make_unit, valid_id
from workflow import important, settings


def version_of(client, url: str) -> str:  # type: ignore[no-untyped-def]
    page = client.get(url).get_data(as_text=True)
    return page.split('name="version" type="hidden" value="')[1].split('"')[0]


def post_resident(client, resident: Resident, **extra: str):  # type: ignore[no-untyped-def]
    url = f"/admin/resident/edit/?id={resident.id}"
    data = {
        "csrf_token": csrf_token(client),
        "version": version_of(client, url),
        "name": "张三",
        "phone": "13800138000",
        "gender": "male",
        "id_number": "",
    } | extra
    return client.post(url, data=data)


def test_acc_8_resident_id_number_change_on_the_form_needs_the_password(login_as, db_session) -> None:
    resident = make_resident()
    db.session.commit()
    clerk = login_as("cs_clerk")
    refused = post_resident(clerk, resident, id_number=valid_id(3))
    assert refused.status_code == 200  # the form again, with the error beside the password field
    assert "密码" in refused.get_data(as_text=True)
    wrong = post_resident(clerk, resident, id_number=valid_id(3), confirm_password="not-my-password")
    assert wrong.status_code == 200
    db.session.expire_all()
    assert db.session.get(Resident, resident.id).id_number == valid_id()  # nothing written
    plain = post_resident(clerk, resident, phone="13900000009")  # not important: a plain save
    assert plain.status_code == 302
    allowed = post_resident(clerk, resident, id_number=valid_id(3), confirm_password=PASSWORD)
    assert allowed.status_code == 302
    db.session.expire_all()
    assert db.session.get(Resident, resident.id).id_number == valid_id(3)
    logged = db.session.scalars(sa.select(SecurityEvent).where(SecurityEvent.kind == "important_change")).all()
    assert logged and "id_number" in (logged[-1].detail or "")


def test_acc_8_unit_area_and_code_on_the_form_need_the_password(login_as, db_session) -> None:
    unit = make_unit()
    db.session.commit()
    clerk = login_as("cs_clerk")
    url = f"/admin/unit/edit/?id={unit.id}"

    def post(**extra: str):  # type: ignore[no-untyped-def]
        data = {
            "csrf_token": csrf_token(clerk),
            "version": version_of(clerk, url),
            "building": unit.building_id,
            "code": "A-12-1203",
            "floor": "12",
            "area": "89.50",
            "use": "residential",
        } | extra
        return clerk.post(url, data=data)

    assert post(area="120.00").status_code == 200
    assert post(code="A-12-1204").status_code == 200
    db.session.expire_all()
    assert db.session.get(Unit, unit.id).area == Decimal("89.50")
    assert post(use="office").status_code == 302  # use is not important information
    assert post(area="120.00", code="A-12-1204", confirm_password=PASSWORD).status_code == 302
    db.session.expire_all()
    stored = db.session.get(Unit, unit.id)
    assert (stored.area, stored.code) == (Decimal("120.00"), "A-12-1204")


def test_acc_8_every_path_is_refused_at_the_flush_without_the_confirmation(db_session, staff_ids) -> None:
    """Imports, bulk actions and the CLI write through the same session: the guard refuses them all."""
    clerk = db.session.get(Staff, staff_ids["cs_clerk"])
    unit, resident = make_unit(), make_resident()
    other = make_resident(name="李四", id_number=valid_id(2))
    owner = make_occupancy(unit, resident)
    db.session.commit()
    owner.resident = other  # who owns the unit
    with pytest.raises(DomainError) as caught:
        db.session.commit()
    with force_locale("en"):
        assert "password" in str(caught.value.message)
    db.session.rollback()
    with pytest.raises(DomainError):
        important.confirm(clerk, "wrong password")
    db.session.rollback()
    owner = db.session.get(Occupancy, owner.id)
    owner.resident = db.session.get(Resident, other.id)
    important.confirm(clerk, PASSWORD)
    db.session.commit()
    assert db.session.get(Occupancy, owner.id).resident_id == other.id
    db.session.get(Resident, resident.id).name = "张叁"  # the confirmation ended with that transaction
    with pytest.raises(DomainError):
        db.session.commit()
    db.session.rollback()


def test_acc_8_recorded_money_needs_the_password_first_recording_does_not(db_session, staff_ids) -> None:
    from tests.helpers import make_repair_order

    clerk = db.session.get(Staff, staff_ids["cs_clerk"])
    order = make_repair_order(unit=make_unit())
    db.session.commit()
    order.charge = Decimal("80.00")  # recorded for the first time: not a change
    db.session.commit()
    order.charge = Decimal("60.00")
    with pytest.raises(DomainError):
        db.session.commit()
    db.session.rollback()
    order.charge = Decimal("60.00")
    important.confirm(clerk, PASSWORD)
    db.session.commit()
    assert order.charge == Decimal("60.00")


def test_acc_8_old_value_stays_in_the_history(db_session, staff_ids) -> None:
    resident = make_resident(name="王五")
    supervisor = db.session.get(Staff, staff_ids["cs_supervisor"])
    db.session.commit()
    resident.name = "王武"
    resident.id_number = valid_id(4)
    important.confirm(supervisor, PASSWORD)
    db.session.commit()
    rows = db.session.scalars(
        sa.select(AuditEntry).where(
            AuditEntry.record_type == "resident", AuditEntry.record_id == resident.id, AuditEntry.action == "update"
        )
    ).all()
    changes = json.loads(rows[-1].changes)
    assert changes["name"] == ["王五", "王武"]
    old, new = changes["id_number"]
    assert old and new and old != new and valid_id() not in old  # kept, masked (ACC-6)


def test_acc_8_firm_setting_reserves_important_changes_to_supervisors(login_as, db_session, staff_ids) -> None:
    settings.change(important.SUPERVISOR_ONLY.key, 1, db.session.get(Staff, staff_ids["admin"]))
    resident = make_resident()
    db.session.commit()
    clerk = login_as("cs_clerk")
    refused = post_resident(clerk, resident, name="张叁", confirm_password=PASSWORD)
    assert refused.status_code == 200 and "主管" in refused.get_data(as_text=True)
    supervisor = login_as("cs_supervisor")
    assert post_resident(supervisor, resident, name="张叁", confirm_password=PASSWORD).status_code == 302
    db.session.expire_all()
    assert db.session.get(Resident, resident.id).name == "张叁"
