"""Key custody (钥匙托管), the worked example of docs/workflow.md, driven through its screens:
the base workflow view renders the engine's answers and sends every click back to it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask.testing import FlaskClient

from models import AuditEntry, KeyCustody, KeyUse, Notification, SignOff, db
from tests.conftest import PASSWORD, csrf_token
from tests.helpers import make_key_custody, make_occupancy, make_resident, make_unit, valid_id
from tests.test_mail import inbox, set_email  # noqa: F401  (the real local SMTP server fixture)


def fresh(keys_id: int) -> KeyCustody:
    db.session.rollback()
    return db.session.get(KeyCustody, keys_id)


def page(client: FlaskClient, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def fire(client: FlaskClient, keys: KeyCustody, name: str, **fields: Any) -> str:
    data = {"csrf_token": csrf_token(client), "id": keys.id, "name": name, "version": keys.version,
            "comment": "", **fields}
    response = client.post("/admin/key_custody/transition/", data=data, follow_redirects=True)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def decide(client: FlaskClient, keys: KeyCustody, decision: str, **fields: Any) -> str:
    data = {"csrf_token": csrf_token(client), "id": keys.id, "version": keys.version,
            "decision": decision, "comment": "", **fields}
    return client.post("/admin/key_custody/decide/", data=data, follow_redirects=True).get_data(as_text=True)


def audit_actions(keys_id: int) -> list[tuple[str, str | None]]:
    return [(a, t) for a, t in db.session.execute(
        sa.select(AuditEntry.action, AuditEntry.transition).where(
            AuditEntry.record_type == "key_custody", AuditEntry.record_id == keys_id).order_by(AuditEntry.seq))]


def test_wf_key_custody_deposit_through_the_form_starts_held(db_session, login_as) -> None:
    unit = make_unit()
    owner = make_resident()
    make_occupancy(unit, owner)
    db.session.commit()
    clerk = login_as("cs_clerk")
    response = clerk.post("/admin/key_custody/new/", data={
        "csrf_token": csrf_token(clerk), "unit": unit.id, "resident": owner.id, "tag_no": "K-001",
        "description": "入户门钥匙", "key_count": "2", "permitted_use": "紧急维修",
        "deposited_at": "2026-11-20 09:00:00", "state": "returned"})
    assert response.status_code == 302, response.get_data(as_text=True)
    keys = db.session.scalar(sa.select(KeyCustody).where(KeyCustody.tag_no == "K-001"))
    assert keys.state == "held"  # a posted status is ignored: the status is the engine's
    assert keys.created_by.username == "clerk"
    # typed in Beijing time, kept in UTC
    assert keys.deposited_at == datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    assert audit_actions(keys.id) == [("create", None)]


def test_wf_key_custody_only_an_occupant_deposits_keys(db_session, login_as) -> None:
    unit = make_unit()
    stranger = make_resident()
    db.session.commit()
    clerk = login_as("cs_clerk")
    body = clerk.post("/admin/key_custody/new/", data={
        "csrf_token": csrf_token(clerk), "unit": unit.id, "resident": stranger.id, "tag_no": "K-002",
        "description": "钥匙", "key_count": "1", "deposited_at": "2026-11-20 09:00:00"}).get_data(as_text=True)
    assert "不是该房屋的现业主或住户" in body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(KeyCustody)) == 0


def test_wf_key_custody_details_offer_post_buttons_the_role_may_use(db_session, login_as) -> None:
    keys = make_key_custody()
    db.session.commit()
    body = page(login_as("cs_clerk"), f"/admin/key_custody/details/?id={keys.id}")
    forms = re.findall(r'<form method="post" action="/admin/key_custody/transition/"[^>]*data-transition="(\w+)"', body)
    assert forms == ["check_out", "return_keys", "report_lost", "delete"]
    assert 'name="csrf_token"' in body and "data-confirm=" in body  # asked by static/js/app.js (CSP)
    finance = page(login_as("finance"), f"/admin/key_custody/details/?id={keys.id}")
    assert "data-transition=" not in finance  # may read, may not act


def test_wf_key_custody_check_out_needs_holder_and_purpose_and_logs_the_use(db_session, login_as) -> None:
    keys = make_key_custody()
    db.session.commit()
    clerk = login_as("cs_clerk")
    body = fire(clerk, keys, "check_out")
    assert "请先填写" in body and fresh(keys.id).state == "held"
    body = fire(clerk, fresh(keys.id), "check_out", field_current_holder="王工", field_current_purpose="抄水表")
    keys = fresh(keys.id)
    assert keys.state == "out" and keys.current_holder == "王工"
    use = db.session.scalar(sa.select(KeyUse))
    assert (use.holder, use.purpose, use.in_at) == ("王工", "抄水表", None)
    fire(clerk, keys, "check_in")
    keys = fresh(keys.id)
    assert keys.state == "held" and keys.current_holder is None
    assert db.session.scalar(sa.select(KeyUse)).in_at is not None
    assert audit_actions(keys.id)[-2:] == [("transition", "check_out"), ("transition", "check_in")]


def test_wf_key_custody_a_role_outside_the_transition_is_refused_on_the_server(db_session, login_as) -> None:
    keys = make_key_custody()
    db.session.commit()
    before = audit_actions(keys.id)
    body = fire(login_as("finance"), keys, "check_out", field_current_holder="x", field_current_purpose="y")
    assert "您的角色不能" in body
    assert fresh(keys.id).state == "held" and audit_actions(keys.id) == before


def test_wf_key_custody_transition_is_post_only_and_needs_csrf(db_session, login_as) -> None:
    keys = make_key_custody()
    db.session.commit()
    clerk = login_as("cs_clerk")
    assert clerk.get(f"/admin/key_custody/transition/?id={keys.id}&name=check_in").status_code == 405
    response = clerk.post("/admin/key_custody/transition/", data={
        "id": keys.id, "name": "report_lost", "version": keys.version, "comment": "x"})
    assert response.status_code == 400
    assert fresh(keys.id).pending_transition is None


def test_wf_key_custody_return_needs_the_residents_confirmation(db_session, login_as) -> None:
    keys = make_key_custody()
    db.session.commit()
    clerk = login_as("cs_clerk")
    body = fire(clerk, keys, "return_keys", field_returned_to="张三", field_resident_confirmation="路人甲")
    assert "确认须由交存钥匙的住户" in body and fresh(keys.id).state == "held"
    fire(clerk, fresh(keys.id), "return_keys", field_returned_to="张三", field_resident_confirmation="张三")
    assert fresh(keys.id).state == "returned"


def test_wf_key_custody_loss_needs_a_supervisor_sign_off_and_the_requester_is_told(db_session, login_as) -> None:
    keys = make_key_custody()
    db.session.commit()
    clerk, supervisor = login_as("cs_clerk"), login_as("cs_supervisor")
    fire(clerk, keys, "report_lost", comment="柜子里找不到")
    keys = fresh(keys.id)
    assert keys.state == "held" and keys.pending_transition == "report_lost"
    assert "等待审批" in page(clerk, "/admin/key_custody/")
    assert "/admin/key_custody/decide/" not in page(clerk, f"/admin/key_custody/details/?id={keys.id}")
    assert "您不能签署此步骤" in decide(clerk, keys, "approve")
    decide(supervisor, keys, "approve", comment="已核实")
    keys = fresh(keys.id)
    assert keys.state == "lost" and keys.pending_transition is None
    sign = db.session.scalar(sa.select(SignOff))
    assert (sign.staff.username, sign.decision, sign.role) == ("supervisor", "approve", "cs_supervisor")
    told = db.session.scalars(sa.select(Notification.subject).where(Notification.staff_id == keys.created_by_id
                                                                     if keys.created_by_id else sa.false()))
    clerk_notes = db.session.scalars(sa.select(Notification.subject).join(Notification.staff)
                                     .where(Notification.staff.has(username="clerk"))).all()
    assert any("已批准" in s for s in clerk_notes), (list(told), clerk_notes)
    assert [a for a in audit_actions(keys.id) if a[0] != "create"] == [
        ("request", "report_lost"), ("signoff", "report_lost"), ("transition", "report_lost")]


def test_acc_5_deleting_keys_is_a_request_a_manager_approves_then_a_soft_delete(db_session, login_as) -> None:
    keys = make_key_custody()
    db.session.commit()
    clerk, supervisor, manager = login_as("cs_clerk"), login_as("cs_supervisor"), login_as("manager")
    assert "密码不正确" in fire(clerk, keys, "delete", comment="录入重复", password="wrong")
    assert fresh(keys.id).pending_transition is None
    fire(clerk, fresh(keys.id), "delete", comment="录入重复", password=PASSWORD)
    keys = fresh(keys.id)
    assert keys.pending_transition == "delete" and keys.deleted_at is None
    assert "您不能签署此步骤" in decide(supervisor, keys, "approve", password=PASSWORD)
    assert "密码不正确" in decide(manager, keys, "approve")
    decide(manager, fresh(keys.id), "approve", password=PASSWORD)
    keys = fresh(keys.id)
    assert keys.deleted_at is not None and keys.state == "held"
    assert clerk.get(f"/admin/key_custody/details/?id={keys.id}").status_code == 302  # gone from the screens
    assert "K-A-12-1203" not in page(manager, "/admin/key_custody/")
    assert ("delete", "delete") in audit_actions(keys.id)


def test_wf_key_custody_a_stale_button_is_refused_and_names_who_changed_it(db_session, login_as) -> None:
    keys = make_key_custody()
    db.session.commit()
    seen = keys.version  # the clerk's page was rendered at this version
    clerk, supervisor = login_as("cs_clerk"), login_as("cs_supervisor")
    fire(supervisor, keys, "check_out", field_current_holder="王工", field_current_purpose="维修")
    body = fire(clerk, fresh(keys.id), "report_lost", comment="丢了", version=seen)
    assert "supervisor" in body and "在您打开之后修改了此记录" in body
    keys = fresh(keys.id)
    assert keys.state == "out" and keys.pending_transition is None


def test_wf_key_custody_bulk_action_fires_each_selected_record(db_session, login_as) -> None:
    first = make_key_custody()
    second = make_key_custody(unit=make_unit(building=first.unit.building, code="A-12-1205"),
                              resident=make_resident(name="李四", id_number=valid_id(7)))
    make_occupancy(second.unit, second.resident)
    db.session.commit()
    clerk = login_as("cs_clerk")
    for keys in (first, second):
        fire(clerk, fresh(keys.id), "check_out", field_current_holder="保洁", field_current_purpose="清洁")
    assert "wf_check_in" in page(clerk, "/admin/key_custody/")
    clerk.post("/admin/key_custody/action/", data={
        "csrf_token": csrf_token(clerk), "action": "wf_check_in", "rowid": [first.id, second.id],
        f"v_{first.id}": fresh(first.id).version, f"v_{second.id}": fresh(second.id).version})
    assert {fresh(first.id).state, fresh(second.id).state} == {"held"}
    finance = login_as("finance")
    response = finance.post("/admin/key_custody/action/", data={
        "csrf_token": csrf_token(finance), "action": "wf_check_in", "rowid": [first.id]})
    assert response.status_code == 403


def test_wf_key_custody_cannot_be_edited_while_waiting_for_approval(db_session, login_as) -> None:
    keys = make_key_custody()
    db.session.commit()
    clerk = login_as("cs_clerk")
    fire(clerk, keys, "report_lost", comment="找不到")
    keys = fresh(keys.id)
    body = clerk.post(f"/admin/key_custody/edit/?id={keys.id}", data={
        "csrf_token": csrf_token(clerk), "version": keys.version, "unit": keys.unit_id,
        "resident": keys.resident_id, "tag_no": keys.tag_no, "description": "改了", "key_count": "2",
        "deposited_at": "2026-11-20 09:00:00"}, follow_redirects=True).get_data(as_text=True)
    assert "正在等待审批" in body
    assert fresh(keys.id).description == "入户门钥匙"


def test_wf_key_custody_requester_is_emailed_the_decision(app, staff_ids, db_session, login_as, inbox) -> None:  # noqa: F811
    """The person who started a request is told of its decision in-app and through real SMTP."""
    set_email(app, staff_ids["cs_clerk"], "clerk@example.com")
    set_email(app, staff_ids["cs_supervisor"], "supervisor@example.com")
    keys = make_key_custody()
    db.session.commit()
    clerk, supervisor = login_as("cs_clerk"), login_as("cs_supervisor")
    fire(clerk, keys, "report_lost", comment="柜中未找到")
    asked = inbox.to("supervisor@example.com")
    assert asked and "等待您审批" in asked[-1]["Subject"]
    assert "请先填写：意见" in decide(supervisor, fresh(keys.id), "reject")  # a rejection needs a reason
    decide(supervisor, fresh(keys.id), "reject", comment="在抽屉里找到了")
    told = inbox.to("clerk@example.com")
    assert len(told) == 1 and "被驳回" in told[0]["Subject"]
    assert "在抽屉里找到了" in told[0].get_content()
    assert fresh(keys.id).state == "held"
