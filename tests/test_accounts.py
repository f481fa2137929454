"""Staff accounts: creation, password policy, reset and role changes (ACC-1..5, ACC-7)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from models import Notification, PasswordResetToken, RoleChange, SecurityEvent, Staff, db
from models.base import utcnow
from models.validators import DomainError
from security import accounts
from security.passwords import check_policy, common_passwords, hash_password, verify_password
from tests.conftest import CSRF, PASSWORD, ROLE_USERS, csrf_token, login

RESET_LINK = re.compile(r"https?://[^/\s]+/reset/([A-Za-z0-9_\-]+)")
NEW_PASSWORD = "Lantern-Orchid-5813"


def fetch(app: Flask, model: type, ident: int) -> Any:
    with app.app_context():
        row = db.session.get(model, ident)
        if row is not None and isinstance(row, Staff):
            _ = row.roles, row.department  # load before detaching
        db.session.expunge_all()
        return row


def roles_of(app: Flask, staff_id: int) -> set[str]:
    with app.app_context():
        return set(db.session.get(Staff, staff_id).roles)


def rows(app: Flask, model: type, *where: Any) -> list[Any]:
    with app.app_context():
        found = list(db.session.scalars(sa.select(model).where(*where).order_by(model.id)))
        db.session.expunge_all()
        return found


def logged_in(client: FlaskClient) -> bool:
    return client.get("/admin/").status_code == 200


def edit_staff(client: FlaskClient, staff_id: int, *, roles: list[str], confirm: str | None = None,
               active: str = "1", **fields: str):  # type: ignore[no-untyped-def]
    data: dict[str, Any] = {"csrf_token": csrf_token(client), "full_name": fields.pop("full_name", "某人"),
                            "phone": "", "email": "", "department": "", "roles": roles, "active": active}
    if confirm is not None:
        data["confirm_password"] = confirm
    data.update(fields)
    return client.post(f"/admin/staff/edit/?id={staff_id}", data=data)


def issue_reset(client: FlaskClient, staff_id: int) -> str:
    response = client.post("/admin/staff/action/", data={
        "csrf_token": csrf_token(client), "action": "issue_reset", "rowid": str(staff_id)},
        follow_redirects=True)
    assert response.status_code == 200
    match = RESET_LINK.search(response.get_data(as_text=True))
    assert match, "no reset link shown to the admin"
    return match.group(1)


def reset_post(client: FlaskClient, token: str, password: str, confirm: str | None = None):  # type: ignore[no-untyped-def]
    page = client.get(f"/reset/{token}")
    assert page.status_code == 200
    csrf = CSRF.search(page.get_data(as_text=True)).group(1)
    return client.post(f"/reset/{token}", data={"csrf_token": csrf, "password": password,
                                                 "confirm": confirm if confirm is not None else password})


# --- ACC-1: accounts are created by an admin --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/register", "/signup", "/sign-up", "/admin/register/", "/auth/register"])
def test_acc_1_no_self_registration_route(app, staff_ids, path):
    client = app.test_client()
    assert client.get(path).status_code == 404
    assert client.post(path, data={"username": "x", "password": "y"}).status_code in (400, 404)


def test_acc_1_no_registration_link_on_login_page(app, staff_ids):
    html = app.test_client().get("/login").get_data(as_text=True).lower()
    assert "register" not in html and "sign up" not in html and "注册" not in html


def test_acc_1_admin_creates_account_through_staff_screen_and_it_logs_in(app, login_as, staff_ids):
    admin = login_as("admin")
    assert admin.get("/admin/staff/new/").status_code == 200
    response = admin.post("/admin/staff/new/", data={
        "csrf_token": csrf_token(admin), "username": "Wang.Wei", "full_name": "王伟", "phone": "13900139000",
        "email": "wang.wei@example.com", "department": "cs", "roles": ["cs_clerk", "finance"],
        "password": "Mountain-River-7731"})
    assert response.status_code == 302, response.get_data(as_text=True)
    [staff] = rows(app, Staff, Staff.username == "wang.wei")
    assert staff.full_name == "王伟" and staff.phone == "13900139000"
    assert staff.email == "wang.wei@example.com"
    assert fetch(app, Staff, staff.id).department.key == "cs"
    assert roles_of(app, staff.id) == {"cs_clerk", "finance"}
    assert staff.password_hash.startswith("$argon2id$")
    [change] = rows(app, RoleChange, RoleChange.staff_id == staff.id)
    assert change.changed_by_id == staff_ids["admin"] and change.new_roles == "cs_clerk,finance"
    [created] = rows(app, SecurityEvent, SecurityEvent.kind == "account_created", SecurityEvent.staff_id == staff.id)
    assert created.detail == "by admin" and created.ip == "127.0.0.1"

    client = app.test_client()
    assert login(client, "wang.wei", "Mountain-River-7731").status_code == 302
    assert logged_in(client)
    assert client.get("/admin/resident/").status_code == 200  # cs_clerk may
    assert client.get("/admin/staff/").status_code == 403  # not an admin


def test_acc_1_admin_create_refuses_duplicate_username(app, login_as, staff_ids):
    admin = login_as("admin")
    response = admin.post("/admin/staff/new/", data={
        "csrf_token": csrf_token(admin), "username": "CLERK", "full_name": "重名", "department": "",
        "roles": ["cs_clerk"], "password": "Mountain-River-7731"})
    assert response.status_code == 200
    assert len(rows(app, Staff, Staff.username == "clerk")) == 1


def test_acc_1_admin_create_refuses_weak_password(app, login_as, staff_ids):
    admin = login_as("admin")
    before = len(rows(app, Staff))
    response = admin.post("/admin/staff/new/", data={
        "csrf_token": csrf_token(admin), "username": "li.na", "full_name": "李娜", "department": "",
        "roles": ["cs_clerk"], "password": "short1A!"})
    assert response.status_code == 200
    assert len(rows(app, Staff)) == before
    assert login(app.test_client(), "li.na", "short1A!").status_code == 401


def test_acc_1_only_admin_may_create_accounts(app, login_as, staff_ids):
    for role in ("manager", "cs_supervisor", "cs_clerk", "engineering"):
        client = login_as(role)
        assert client.get("/admin/staff/").status_code == 403, role
        assert client.get("/admin/staff/new/").status_code == 403, role
        response = client.post("/admin/staff/new/", data={
            "csrf_token": csrf_token(client), "username": f"sneaky{role}", "full_name": "x", "department": "",
            "roles": ["admin"], "password": "Mountain-River-7731"})
        assert response.status_code == 403, role
    assert rows(app, Staff, Staff.username.like("sneaky%")) == []


def test_acc_1_create_admin_cli_creates_admin(app, runner, staff_ids):
    result = runner.invoke(args=["create-admin", "--username", "root.ops", "--full-name", "运维 管理员",
                                 "--password", "Granite-Harbor-2290"])
    assert result.exit_code == 0, result.output
    assert "created admin root.ops" in result.output
    [staff] = rows(app, Staff, Staff.username == "root.ops")
    assert roles_of(app, staff.id) == {"admin"}
    assert staff.password_hash.startswith("$argon2id$")
    client = app.test_client()
    assert login(client, "root.ops", "Granite-Harbor-2290").status_code == 302
    assert client.get("/admin/staff/").status_code == 200


@pytest.mark.parametrize("password", ["short-Pw1", "password1234", "root.ops-Harbor-2290", "aaaaaaaaaaaaaaa"])
def test_acc_1_create_admin_cli_refuses_weak_password(app, runner, staff_ids, password):
    result = runner.invoke(args=["create-admin", "--username", "root.ops", "--full-name", "运维",
                                 "--password", password])
    assert result.exit_code != 0
    assert "Error" in result.output
    assert rows(app, Staff, Staff.username == "root.ops") == []


def test_acc_1_create_admin_cli_refuses_taken_username(app, runner, staff_ids):
    result = runner.invoke(args=["create-admin", "--username", "admin", "--full-name", "x",
                                 "--password", "Granite-Harbor-2290"])
    assert result.exit_code != 0
    assert len(rows(app, Staff, Staff.username == "admin")) == 1


# --- ACC-2: password policy and hashing ----------------------------------------------------------------


def test_acc_2_common_list_has_long_entries(app):
    long_ones = {p for p in common_passwords() if len(p) >= 12}
    assert {"password1234", "qwertyuiop123"} <= long_ones


@pytest.mark.parametrize(("password", "username"), [
    ("Sh0rt-Pass!", "someone"),  # 11 characters
    ("", "someone"),
    ("xx-Zhang.San-2024", "zhang.san"),  # contains the username
    ("ZHANG.SAN-harbor-77", "zhang.san"),  # case-insensitively
    ("password1234", "someone"),  # common
    ("QwertyUiop123", "someone"),  # common, whatever the case
    ("aaaaaaaaaaaaaaaa", "someone"),  # too few distinct characters
    ("abababababab", "someone"),
    ("abcabcabcabc", "someone"),
    ("x" * 129 + "Ab1-", "someone"),  # too long
])
def test_acc_2_policy_refuses(app, password, username):
    with app.app_context(), pytest.raises(DomainError) as info:
        check_policy(password, username)
    assert info.value.field == "password"


@pytest.mark.parametrize("password", ["Correct-Horse-42", "Mountain-River-7731", "abcdabcdabcd", "长城-Great-Wall-88"])
def test_acc_2_policy_accepts(app, password):
    with app.app_context():
        check_policy(password, "someone")


def test_acc_2_min_length_is_a_setting(app, monkeypatch):
    monkeypatch.setitem(app.config, "PASSWORD_MIN_LENGTH", 16)
    with app.app_context():
        with pytest.raises(DomainError):
            check_policy("Mountain-River7", "someone")  # 15 characters
        check_policy("Mountain-River-77", "someone")


def test_acc_2_stored_hash_is_argon2id_never_plaintext(app, staff_ids):
    with app.app_context():
        raw = db.session.execute(sa.text("SELECT username, password_hash FROM staff")).all()
    assert len(raw) == len(ROLE_USERS)
    for username, stored in raw:
        assert stored.startswith("$argon2id$"), username
        assert PASSWORD not in stored
    with app.app_context():
        first, second = hash_password(PASSWORD), hash_password(PASSWORD)
        assert first != second  # salted
        assert verify_password(first, PASSWORD) and not verify_password(first, PASSWORD + "x")
        assert not verify_password("not-a-hash", PASSWORD)


def test_acc_2_argon2_cost_comes_from_settings(app):
    with app.app_context():
        stored = hash_password("Mountain-River-7731")
    assert f"m={app.config['ARGON2_MEMORY_COST']},t={app.config['ARGON2_TIME_COST']}" in stored


def test_acc_2_change_own_password_policy_enforced(app, login_as, staff_ids):
    client = login_as("cs_clerk")
    before = fetch(app, Staff, staff_ids["cs_clerk"]).password_hash
    for bad in ("short-1A", "password1234", "my-clerk-password-9"):
        response = client.post("/password", data={"csrf_token": csrf_token(client), "current": PASSWORD,
                                                   "password": bad, "confirm": bad})
        assert response.status_code == 200, bad
    assert fetch(app, Staff, staff_ids["cs_clerk"]).password_hash == before


# --- ACC-3: reset link and password change -----------------------------------------------------------


def test_acc_3_admin_reset_link_works_once(app, login_as, staff_ids):
    admin = login_as("admin")
    clerk = login_as("cs_clerk")
    token = issue_reset(admin, staff_ids["cs_clerk"])
    [row] = rows(app, PasswordResetToken, PasswordResetToken.staff_id == staff_ids["cs_clerk"])
    assert token not in row.token_hash and len(row.token_hash) == 64  # only the hash is stored
    assert row.created_by_id == staff_ids["admin"]
    assert rows(app, SecurityEvent, SecurityEvent.kind == "reset_token_issued")

    anon = app.test_client()
    response = reset_post(anon, token, NEW_PASSWORD)
    assert response.status_code == 302
    # The old password stops working, the new one works.
    assert login(app.test_client(), "clerk", PASSWORD).status_code == 401
    assert login(app.test_client(), "clerk", NEW_PASSWORD).status_code == 302
    # The clerk's session opened before the reset is over (session_epoch).
    assert not logged_in(clerk)
    assert fetch(app, Staff, staff_ids["cs_clerk"]).session_epoch == 1
    # The link is dead now.
    again = app.test_client().get(f"/reset/{token}")
    assert again.status_code == 302 and "/login" in again.headers["Location"]


def test_acc_3_used_token_refused_on_post(app, login_as, staff_ids):
    admin = login_as("admin")
    token = issue_reset(admin, staff_ids["cs_clerk"])
    anon = app.test_client()
    page = anon.get(f"/reset/{token}")
    csrf = CSRF.search(page.get_data(as_text=True)).group(1)
    assert reset_post(app.test_client(), token, NEW_PASSWORD).status_code == 302
    # A second form opened before the first use cannot set another password.
    response = anon.post(f"/reset/{token}", data={"csrf_token": csrf, "password": "Another-Secret-6060",
                                                  "confirm": "Another-Secret-6060"})
    assert response.status_code == 302
    assert login(app.test_client(), "clerk", "Another-Secret-6060").status_code == 401
    assert login(app.test_client(), "clerk", NEW_PASSWORD).status_code == 302


def test_acc_3_expired_token_refused(app, login_as, staff_ids):
    admin = login_as("admin")
    token = issue_reset(admin, staff_ids["cs_clerk"])
    with app.app_context():
        row = db.session.scalar(sa.select(PasswordResetToken))
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    response = app.test_client().get(f"/reset/{token}")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    with app.app_context(), pytest.raises(DomainError):
        accounts.reset_with_token(token, NEW_PASSWORD)
    assert login(app.test_client(), "clerk", PASSWORD).status_code == 302


def test_acc_3_token_lifetime_is_one_hour(app, login_as, staff_ids):
    admin = login_as("admin")
    start = utcnow()
    issue_reset(admin, staff_ids["cs_clerk"])
    [row] = rows(app, PasswordResetToken)
    assert timedelta(minutes=59) < row.expires_at - start <= timedelta(hours=1, seconds=5)


def test_acc_3_new_token_kills_older_one(app, login_as, staff_ids):
    admin = login_as("admin")
    first = issue_reset(admin, staff_ids["cs_clerk"])
    second = issue_reset(admin, staff_ids["cs_clerk"])
    assert first != second
    assert app.test_client().get(f"/reset/{first}").status_code == 302
    assert app.test_client().get(f"/reset/{second}").status_code == 200


def test_acc_3_unknown_token_refused(app, staff_ids):
    response = app.test_client().get("/reset/not-a-real-token")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_acc_3_reset_form_enforces_policy_and_keeps_token(app, login_as, staff_ids):
    admin = login_as("admin")
    token = issue_reset(admin, staff_ids["cs_clerk"])
    response = reset_post(app.test_client(), token, "password1234")
    assert response.status_code == 200
    response = reset_post(app.test_client(), token, NEW_PASSWORD, "Different-Secret-11")
    assert response.status_code == 200
    assert login(app.test_client(), "clerk", PASSWORD).status_code == 302
    # Still usable with a good password.
    assert reset_post(app.test_client(), token, NEW_PASSWORD).status_code == 302


def test_acc_3_only_admin_issues_reset(app, login_as, staff_ids):
    client = login_as("manager")
    response = client.post("/admin/staff/action/", data={
        "csrf_token": csrf_token(client), "action": "issue_reset", "rowid": str(staff_ids["cs_clerk"])})
    assert response.status_code == 403
    assert rows(app, PasswordResetToken) == []


def test_acc_3_reset_action_needs_csrf(app, login_as, staff_ids):
    admin = login_as("admin")
    response = admin.post("/admin/staff/action/", data={"action": "issue_reset", "rowid": str(staff_ids["cs_clerk"])})
    assert response.status_code == 400
    assert rows(app, PasswordResetToken) == []


def test_acc_3_change_own_password(app, login_as, staff_ids):
    client = login_as("cs_clerk")
    other_session = login_as("cs_clerk")
    wrong = client.post("/password", data={"csrf_token": csrf_token(client), "current": "Not-My-Password-1",
                                           "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert wrong.status_code == 200
    assert login(app.test_client(), "clerk", PASSWORD).status_code == 302

    response = client.post("/password", data={"csrf_token": csrf_token(client), "current": PASSWORD,
                                              "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302
    assert logged_in(client)  # this session continues with a fresh cookie
    assert not logged_in(other_session)  # every other session ends
    assert login(app.test_client(), "clerk", PASSWORD).status_code == 401
    assert login(app.test_client(), "clerk", NEW_PASSWORD).status_code == 302
    staff = fetch(app, Staff, staff_ids["cs_clerk"])
    assert staff.password_hash.startswith("$argon2id$") and NEW_PASSWORD not in staff.password_hash
    assert [e.detail for e in rows(app, SecurityEvent, SecurityEvent.kind == "password_set")] == ["by self"]


def test_acc_3_change_password_needs_login(app, staff_ids):
    response = app.test_client().get("/password")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


# --- ACC-4 / ACC-5: role changes ------------------------------------------------------------------------


def test_acc_4_acc_5_role_change_without_password_refused(app, login_as, staff_ids):
    admin = login_as("admin")
    clerk_id = staff_ids["cs_clerk"]
    response = edit_staff(admin, clerk_id, roles=["cs_clerk", "finance"])
    assert response.status_code == 200  # form shown again with the error
    assert roles_of(app, clerk_id) == {"cs_clerk"}
    response = edit_staff(admin, clerk_id, roles=["cs_clerk", "finance"], confirm="Wrong-Password-12")
    assert response.status_code == 200
    assert roles_of(app, clerk_id) == {"cs_clerk"}
    assert rows(app, RoleChange, RoleChange.changed_by_id == staff_ids["admin"]) == []
    assert rows(app, Notification, Notification.staff_id == clerk_id) == []
    assert rows(app, SecurityEvent, SecurityEvent.kind == "roles_changed") == []
    # ACC-7: both failed confirmations are in the security log although nothing else was saved.
    failed = rows(app, SecurityEvent, SecurityEvent.kind == "reauth_failed")
    assert [(e.staff_id, e.ip) for e in failed] == [(staff_ids["admin"], "127.0.0.1")] * 2


def test_acc_4_role_change_recorded_notified_and_effective(app, login_as, staff_ids):
    admin = login_as("admin")
    engineer_id = staff_ids["engineering"]
    engineer = login_as("engineering")
    assert engineer.get("/admin/resident/").status_code == 403

    response = edit_staff(admin, engineer_id, roles=["engineering", "cs_clerk"], confirm=PASSWORD,
                          full_name="engineer 测试")
    assert response.status_code == 302, response.get_data(as_text=True)
    assert roles_of(app, engineer_id) == {"engineering", "cs_clerk"}

    [change] = rows(app, RoleChange, RoleChange.changed_by_id == staff_ids["admin"])
    assert (change.staff_id, change.old_roles, change.new_roles) == (engineer_id, "engineering",
                                                                       "cs_clerk,engineering")
    [event] = rows(app, SecurityEvent, SecurityEvent.kind == "roles_changed")
    assert event.staff_id == engineer_id and event.ip == "127.0.0.1"
    assert "engineering -> cs_clerk,engineering" in event.detail and "admin" in event.detail
    [note] = rows(app, Notification, Notification.staff_id == engineer_id)
    assert note.subject

    # A role change ends the engineer's open sessions on the server; signed in again, the new
    # permissions apply.
    assert engineer.get("/admin/resident/").status_code == 302
    engineer = login_as("engineering")
    assert engineer.get("/admin/resident/").status_code == 200
    home = engineer.get("/admin/").get_data(as_text=True)
    assert note.subject in home  # the notice is shown in-app

    # Taking the role away is just as immediate: the session ends, the new login lacks the role.
    response = edit_staff(admin, engineer_id, roles=["engineering"], confirm=PASSWORD)
    assert response.status_code == 302
    assert engineer.get("/admin/resident/").status_code == 302
    assert login_as("engineering").get("/admin/resident/").status_code == 403
    assert len(rows(app, RoleChange, RoleChange.staff_id == engineer_id,
                    RoleChange.changed_by_id == staff_ids["admin"])) == 2
    assert len(rows(app, Notification, Notification.staff_id == engineer_id)) == 2


def test_acc_4_role_change_visible_in_role_change_screen(app, login_as, staff_ids):
    admin = login_as("admin")
    edit_staff(admin, staff_ids["cs_clerk"], roles=["cs_supervisor"], confirm=PASSWORD)
    assert admin.get("/admin/role_change/").status_code == 200
    assert login_as("manager").get("/admin/role_change/").status_code == 403


def test_acc_4_edit_without_role_change_needs_no_password(app, login_as, staff_ids):
    admin = login_as("admin")
    response = edit_staff(admin, staff_ids["cs_clerk"], roles=["cs_clerk"], full_name="新名字", phone="13700137000")
    assert response.status_code == 302
    staff = fetch(app, Staff, staff_ids["cs_clerk"])
    assert staff.full_name == "新名字" and staff.phone == "13700137000"
    assert rows(app, Notification) == []
    assert rows(app, SecurityEvent, SecurityEvent.kind == "roles_changed") == []


def test_acc_4_admin_cannot_remove_own_admin_role(app, login_as, staff_ids):
    admin = login_as("admin")
    admin_id = staff_ids["admin"]
    response = edit_staff(admin, admin_id, roles=["manager"], confirm=PASSWORD)
    assert response.status_code == 200
    assert roles_of(app, admin_id) == {"admin"}
    assert rows(app, RoleChange, RoleChange.changed_by_id == admin_id) == []
    assert admin.get("/admin/staff/").status_code == 200
    # Adding a role to oneself is fine.
    assert edit_staff(admin, admin_id, roles=["admin", "manager"], confirm=PASSWORD).status_code == 302
    assert roles_of(app, admin_id) == {"admin", "manager"}


def test_acc_4_unknown_role_refused(app, login_as, staff_ids):
    with app.app_context():
        staff = db.session.get(Staff, staff_ids["cs_clerk"])
        actor = db.session.get(Staff, staff_ids["admin"])
        with pytest.raises(DomainError):
            accounts.set_roles(staff, {"cs_clerk", "superuser"}, actor, PASSWORD)
        db.session.rollback()
    admin = login_as("admin")
    assert edit_staff(admin, staff_ids["cs_clerk"], roles=["superuser"], confirm=PASSWORD).status_code == 200
    assert roles_of(app, staff_ids["cs_clerk"]) == {"cs_clerk"}


def test_acc_5_deactivate_needs_password_and_ends_session(app, login_as, staff_ids):
    admin = login_as("admin")
    clerk = login_as("cs_clerk")
    assert edit_staff(admin, staff_ids["cs_clerk"], roles=["cs_clerk"], active="0").status_code == 200
    assert fetch(app, Staff, staff_ids["cs_clerk"]).active
    assert logged_in(clerk)
    assert edit_staff(admin, staff_ids["cs_clerk"], roles=["cs_clerk"], active="0",
                      confirm=PASSWORD).status_code == 302
    assert not fetch(app, Staff, staff_ids["cs_clerk"]).active
    assert not logged_in(clerk)
    assert login(app.test_client(), "clerk").status_code == 401
    assert rows(app, SecurityEvent, SecurityEvent.kind == "account_deactivated")


def test_acc_5_admin_cannot_deactivate_self(app, login_as, staff_ids):
    admin = login_as("admin")
    assert edit_staff(admin, staff_ids["admin"], roles=["admin"], active="0", confirm=PASSWORD).status_code == 200
    assert fetch(app, Staff, staff_ids["admin"]).active


def test_acc_4_only_admin_edits_staff(app, login_as, staff_ids):
    manager = login_as("manager")
    response = edit_staff(manager, staff_ids["cs_clerk"], roles=["admin"], confirm=PASSWORD)
    assert response.status_code == 403
    assert roles_of(app, staff_ids["cs_clerk"]) == {"cs_clerk"}


def test_acc_4_staff_delete_is_not_offered(app, login_as, staff_ids):
    admin = login_as("admin")
    response = admin.post("/admin/staff/delete/", data={"csrf_token": csrf_token(admin),
                                                        "id": str(staff_ids["cs_clerk"])})
    assert response.status_code == 403
    assert fetch(app, Staff, staff_ids["cs_clerk"]) is not None
