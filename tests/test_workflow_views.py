"""The workflow screens' edges: redirects, lookups, timelines, exports, junk input and stale
lists (findings of the review of the workflow layer, each now a regression test)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import AuditEntry, KeyCustody, Staff, db
from models.base import utcnow
from models.validators import DomainError
from tests.conftest import PASSWORD, csrf_token
from tests.helpers import make_key_custody, make_occupancy, make_resident, make_unit
from workflow import engine, settings


def fresh(keys_id: int) -> KeyCustody:
    db.session.rollback()
    return db.session.get(KeyCustody, keys_id)


def staff(staff_ids: dict[str, int], role: str) -> Staff:
    return db.session.get(Staff, staff_ids[role])


@pytest.mark.parametrize("target", ["//evil.example/x", "/\t/evil.example/x", "/\\evil.example/x",
                                    "https://evil.example/x"])
def test_wf_buttons_never_redirect_off_site(db_session, login_as, target) -> None:
    keys = make_key_custody()
    db.session.commit()
    clerk = login_as("cs_clerk")
    response = clerk.post("/admin/key_custody/transition/", data={
        "csrf_token": csrf_token(clerk), "id": keys.id, "name": "check_in", "version": keys.version,
        "url": target})
    assert response.status_code == 302
    assert "evil.example" not in response.location
    assert response.location.endswith(f"/admin/key_custody/details/?id={keys.id}")


def test_acc_6_lookups_serve_only_those_who_fill_the_form(db_session, login_as) -> None:
    """Engineering may read key custody but not the residents register: no lookup either."""
    make_key_custody()
    db.session.commit()
    url = "/admin/key_custody/ajax/lookup/?name=resident&query=138"
    assert login_as("engineering").get(url).status_code == 403
    assert login_as("cs_clerk").get(url).status_code == 200


def test_arc_5_resident_timeline_is_front_desk_only(db_session, login_as) -> None:
    resident = make_resident(phone="13800000001")
    db.session.commit()
    resident.phone = "13800000002"
    db.session.commit()
    url = f"/admin/resident/details/?id={resident.id}"
    assert "13800000001" in login_as("cs_clerk").get(url).get_data(as_text=True)
    security_page = login_as("security").get(url).get_data(as_text=True)
    assert "13800000002" in security_page and "13800000001" not in security_page


def test_acc_5_key_custody_export_asks_for_the_password(db_session, login_as) -> None:
    make_key_custody()
    db.session.commit()
    response = login_as("cs_supervisor").get("/admin/key_custody/export/csv/")
    assert response.status_code == 302 and "/reauth" in response.location


def test_wf_typed_field_too_long_is_refused_in_the_users_language(db_session, login_as) -> None:
    keys = make_key_custody()
    db.session.commit()
    clerk = login_as("cs_clerk")
    body = clerk.post("/admin/key_custody/transition/", data={
        "csrf_token": csrf_token(clerk), "id": keys.id, "name": "check_out", "version": keys.version,
        "field_current_holder": "王" * 300, "field_current_purpose": "抄表"},
        follow_redirects=True).get_data(as_text=True)
    assert "借用人：最多 64 个字符" in body
    keys = fresh(keys.id)
    assert keys.state == "held" and keys.current_holder is None


def test_wf_comment_too_long_is_a_message_not_a_crash(db_session, login_as) -> None:
    keys = make_key_custody()
    db.session.commit()
    clerk = login_as("cs_clerk")
    response = clerk.post("/admin/key_custody/transition/", data={
        "csrf_token": csrf_token(clerk), "id": keys.id, "name": "report_lost", "version": keys.version,
        "comment": "丢" * 2001}, follow_redirects=True)
    assert response.status_code == 200 and "意见过长" in response.get_data(as_text=True)
    assert fresh(keys.id).pending_transition is None


def test_acc_5_deletion_approver_is_not_a_setting(db_session) -> None:
    """ACC-5 names the approver of a deletion: a manager; no admin setting can change that."""
    assert "key_custody.delete.step1.roles" not in settings.SPECS
    assert "key_custody.report_lost.step1.roles" in settings.SPECS


def test_wf_admins_never_approve_not_even_by_delegation(db_session, staff_ids) -> None:
    manager, admin = staff(staff_ids, "manager"), staff(staff_ids, "admin")
    with pytest.raises(DomainError):
        engine.delegate(manager, admin, utcnow(), utcnow() + timedelta(days=1), "出差")


def test_wf_bulk_action_from_a_stale_list_is_refused(db_session, login_as) -> None:
    keys = make_key_custody()
    db.session.commit()
    clerk = login_as("cs_clerk")
    clerk.post("/admin/key_custody/transition/", data={
        "csrf_token": csrf_token(clerk), "id": keys.id, "name": "check_out", "version": keys.version,
        "field_current_holder": "张三", "field_current_purpose": "维修"})
    listed = fresh(keys.id).version  # the list the clerk is looking at
    supervisor = login_as("cs_supervisor")
    for name, fields in (("check_in", {}), ("check_out", {"field_current_holder": "李四",
                                                           "field_current_purpose": "抄表"})):
        supervisor.post("/admin/key_custody/transition/", data={
            "csrf_token": csrf_token(supervisor), "id": keys.id, "name": name,
            "version": fresh(keys.id).version, **fields})
    body = clerk.post("/admin/key_custody/action/", data={
        "csrf_token": csrf_token(clerk), "action": "wf_check_in", "rowid": [keys.id],
        f"v_{keys.id}": listed}, follow_redirects=True).get_data(as_text=True)
    assert "修改了此记录" in body
    keys = fresh(keys.id)
    assert keys.state == "out" and keys.current_holder == "李四"
    listing = clerk.get("/admin/key_custody/").get_data(as_text=True)
    assert f'form="action_form" name="v_{keys.id}" value="{keys.version}"' in listing


def test_acc_5_a_delegated_sign_off_says_on_whose_behalf_in_the_chain(db_session, staff_ids) -> None:
    unit = make_unit()
    owner = make_resident()
    make_occupancy(unit, owner)
    keys = make_key_custody(unit=unit, resident=owner)
    db.session.commit()
    manager, supervisor = staff(staff_ids, "manager"), staff(staff_ids, "cs_supervisor")
    engine.delegate(manager, supervisor, utcnow() - timedelta(hours=1), utcnow() + timedelta(days=1), "休假")
    db.session.commit()
    engine.fire(keys, "delete", staff(staff_ids, "cs_clerk"), "重复登记", password=PASSWORD)
    engine.decide(keys, supervisor, True, "同意", password=PASSWORD)
    row = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "signoff"))
    assert row.actor_name == "supervisor" and "for manager" in row.comment
