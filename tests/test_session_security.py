"""Server-side session end, login throttling under concurrency and behind proxies, and the
reset-token race (ACC-3, ACC-4, ACC-5, ACC-7)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from models import SecurityEvent, Staff, UserSession, db
from tests.conftest import CSRF, PASSWORD, ROLE_USERS, csrf_token, login

NEW_PASSWORD = "Brand-New-Secret-77"


def session_name(app: Flask) -> str:
    return app.config["SESSION_COOKIE_NAME"]


def copy_cookie(app: Flask, source: FlaskClient) -> FlaskClient:
    """A second browser holding a copy of ``source``'s session cookie (a stolen cookie)."""
    thief = app.test_client()
    thief.set_cookie(session_name(app), source.get_cookie(session_name(app)).value)
    return thief


def set_session_cookie(app: Flask, response: Any) -> dict | None:
    """The session the response's Set-Cookie carries (decoded), or None if it sets none."""
    name = session_name(app)
    found = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]
    if not found:
        return None
    value = found[-1].split(";", 1)[0].split("=", 1)[1]
    if not value:
        return {}
    serializer = app.session_interface.get_signing_serializer(app)
    return dict(serializer.loads(value))


def refused_to_login_page(app: Flask, client: FlaskClient) -> None:
    """The replayed cookie gets the login page and no re-signed copy of the login."""
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].split("?")[0].endswith("/login")
    carried = set_session_cookie(app, response)
    assert carried is None or ("_user_id" not in carried and "sid" not in carried), carried


def events(app: Flask, kind: str) -> list[SecurityEvent]:
    with app.app_context():
        rows = db.session.scalars(sa.select(SecurityEvent).where(SecurityEvent.kind == kind)
                                  .order_by(SecurityEvent.id)).all()
        db.session.expunge_all()
        return list(rows)


def count(app: Flask, model: type, *where: Any) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0


def run_together(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in n threads released at once; return results (exceptions re-raised)."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def body(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


# --- 1. server-side session end ----------------------------------------------------------------------


def test_acc_7_cookie_copied_before_logout_is_dead_after_logout(app, login_as):
    clerk = login_as("cs_clerk")
    thief = copy_cookie(app, clerk)
    assert thief.get("/admin/").status_code == 200  # the copy works while the session lives
    response = clerk.post("/logout", data={"csrf_token": csrf_token(clerk)})
    assert response.status_code == 302
    refused_to_login_page(app, thief)
    refused_to_login_page(app, thief)  # and stays dead
    assert count(app, UserSession, UserSession.revoked_at.is_not(None)) == 1


def test_acc_7_login_creates_a_server_side_session_with_ip_and_agent(app, login_as, staff_ids):
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = "TestBrowser/1.0"
    assert login(client, "clerk").status_code == 302
    with app.app_context():
        row = db.session.scalar(sa.select(UserSession))
        assert (row.staff_id, row.ip, row.user_agent, row.revoked_at) == (
            staff_ids["cs_clerk"], "127.0.0.1", "TestBrowser/1.0", None)
        token = client.get_cookie(session_name(app)).value
        assert row.token_hash not in token  # only a hash is stored, the id is in the signed cookie


def test_acc_3_password_change_ends_other_sessions_keeps_this_one(app, login_as):
    clerk = login_as("cs_clerk")
    other = login_as("cs_clerk")  # the same person on another browser
    thief = copy_cookie(app, clerk)
    response = clerk.post("/password", data={"csrf_token": csrf_token(clerk), "current": PASSWORD,
                                             "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302
    assert clerk.get("/admin/").status_code == 200
    refused_to_login_page(app, other)
    refused_to_login_page(app, thief)


def test_acc_3_admin_reset_ends_sessions_server_side(app, login_as, staff_ids):
    clerk = login_as("cs_clerk")
    thief = copy_cookie(app, clerk)
    with app.app_context():
        from security import accounts

        accounts.set_password(db.session.get(Staff, staff_ids["cs_clerk"]), NEW_PASSWORD)
        db.session.commit()
    refused_to_login_page(app, clerk)
    refused_to_login_page(app, thief)
    assert count(app, UserSession, UserSession.revoked_at.is_(None),
                 UserSession.staff_id == staff_ids["cs_clerk"]) == 0


def _edit_staff(admin: FlaskClient, staff_id: int, **changes: Any) -> Any:
    page = admin.get(f"/admin/staff/edit/?id={staff_id}").get_data(as_text=True)
    data = {"csrf_token": CSRF.search(page).group(1), "full_name": "clerk 测试", "phone": "", "email": "",
            "department": "", "roles": ["cs_clerk"], "active": "1", "confirm_password": PASSWORD}
    data.update(changes)
    return admin.post(f"/admin/staff/edit/?id={staff_id}", data=data)


def test_acc_4_role_change_ends_the_persons_sessions(app, login_as, staff_ids):
    clerk = login_as("cs_clerk")
    admin = login_as("admin")
    response = _edit_staff(admin, staff_ids["cs_clerk"], roles=["cs_clerk", "finance"])
    assert response.status_code == 302, response.get_data(as_text=True)
    refused_to_login_page(app, clerk)
    assert admin.get("/admin/").status_code == 200


def test_acc_4_admin_changing_own_roles_keeps_own_browser(app, login_as, staff_ids):
    admin = login_as("admin")
    elsewhere = login_as("admin")
    page = admin.get(f"/admin/staff/edit/?id={staff_ids['admin']}").get_data(as_text=True)
    response = admin.post(f"/admin/staff/edit/?id={staff_ids['admin']}", data={
        "csrf_token": CSRF.search(page).group(1), "full_name": "admin 测试", "phone": "", "email": "",
        "department": "", "roles": ["admin", "finance"], "active": "1", "confirm_password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert admin.get("/admin/").status_code == 200
    refused_to_login_page(app, elsewhere)


def test_acc_5_deactivation_ends_sessions_server_side(app, login_as, staff_ids):
    clerk = login_as("cs_clerk")
    admin = login_as("admin")
    assert _edit_staff(admin, staff_ids["cs_clerk"], active="0").status_code == 302
    refused_to_login_page(app, clerk)
    assert count(app, UserSession, UserSession.revoked_at.is_(None),
                 UserSession.staff_id == staff_ids["cs_clerk"]) == 0


def test_acc_7_forged_session_without_server_row_is_refused(app, login_as, staff_ids):
    clerk = login_as("cs_clerk")
    with clerk.session_transaction() as sess:
        sess["sid"] = "made-up-session-id"
    refused_to_login_page(app, clerk)


def test_acc_7_two_logins_are_two_sessions_logout_ends_one(app, login_as):
    first = login_as("cs_clerk")
    second = login_as("cs_clerk")
    first.post("/logout", data={"csrf_token": csrf_token(first)})
    assert second.get("/admin/").status_code == 200
    refused_to_login_page(app, first)


# --- 3. one reset link, many concurrent uses ---------------------------------------------------------


def test_acc_3_concurrent_uses_of_one_reset_token_one_wins_others_told(app, staff_ids):
    """12 browsers post the same reset link at once: one password is set, eleven get the ordinary
    'invalid or expired' page, none an HTTP 500 (each request has its own connection)."""
    from models import PasswordResetToken
    from security import accounts

    with app.app_context():
        token = accounts.issue_reset_token(db.session.get(Staff, staff_ids["cs_clerk"]), None)
        db.session.commit()
    n = 12
    clients = [app.test_client() for _ in range(n)]
    tokens = [CSRF.search(c.get(f"/reset/{token}").get_data(as_text=True)).group(1) for c in clients]

    def use(i: int) -> tuple[int, str]:
        response = clients[i].post(f"/reset/{token}", data={
            "csrf_token": tokens[i], "password": f"{NEW_PASSWORD}-{i}", "confirm": f"{NEW_PASSWORD}-{i}"})
        return response.status_code, clients[i].get("/login").get_data(as_text=True)

    results = run_together(n, use)
    assert [code for code, _page in results] == [302] * n
    pages = [page for _code, page in results]
    assert sum("密码已修改" in p for p in pages) == 1, pages
    assert sum("该重置链接无效或已过期" in p for p in pages) == n - 1
    assert count(app, SecurityEvent, SecurityEvent.kind == "password_set") == 1
    assert count(app, PasswordResetToken, PasswordResetToken.used_at.is_(None)) == 0
    # Exactly the winner's password works.
    winners = [i for i, p in enumerate(pages) if "密码已修改" in p]
    assert login(app.test_client(), "clerk", f"{NEW_PASSWORD}-{winners[0]}").status_code == 302


# --- 2. login throttling ---------------------------------------------------------------------------------


def test_acc_7_parallel_wrong_passwords_check_at_most_the_limit(app, staff_ids):
    """16 wrong passwords for one account at once (own client and connection each): only the
    limit's worth are checked and logged as failures, the rest are refused unchecked."""
    n = 16
    limit = app.config["LOGIN_MAX_FAILURES_ACCOUNT"]
    clients = [app.test_client() for _ in range(n)]
    tokens = [csrf_token(c) for c in clients]

    def guess(i: int) -> int:
        return clients[i].post("/login", data={"csrf_token": tokens[i], "username": "clerk",
                                               "password": f"Wrong-Password-{i:02d}"}).status_code

    codes = run_together(n, guess)
    assert sorted(codes) == [401] * limit + [429] * (n - limit)
    assert count(app, SecurityEvent, SecurityEvent.kind == "login_failed") == limit
    assert count(app, SecurityEvent, SecurityEvent.kind == "login_throttled") == n - limit
    refused = login(app.test_client(), "clerk")
    assert refused.status_code == 429
    assert "失败次数过多，请 15 分钟后再试" in refused.get_data(as_text=True)  # when a slot frees


def test_acc_7_failures_from_one_address_do_not_lock_out_others(app, staff_ids):
    """An attacker behind the firm's shared address fails 25 times over several accounts; the
    admin from the same address still logs in with the right password."""
    attacker = app.test_client()
    for i in range(25):
        name = ("clerk", "manager", "guard", "ghost", "nobody")[i % 5]
        assert login(attacker, name, "Wrong-Password-99").status_code in (401, 429)
    admin = app.test_client()
    assert login(admin, ROLE_USERS["admin"]).status_code == 302
    assert admin.get("/admin/").status_code == 200
    # The attacked pairs stay limited.
    assert login(app.test_client(), "clerk").status_code == 429


def test_acc_7_longer_tiers_limit_further_attempts(app, staff_ids, monkeypatch):
    """Progressive limits: once the short window has passed, the hourly tier still counts."""
    import time
    from datetime import timedelta

    monkeypatch.setitem(app.config, "LOGIN_FAILURE_WINDOW", timedelta(seconds=1))
    monkeypatch.setitem(app.config, "LOGIN_LIMITS_LONGER", "7 per hour")
    client = app.test_client()
    for _ in range(5):
        assert login(client, "clerk", "Wrong-Password-99").status_code == 401
    assert login(client, "clerk", "Wrong-Password-99").status_code == 429
    time.sleep(1.2)
    for _ in range(2):
        assert login(client, "clerk", "Wrong-Password-99").status_code == 401
    assert login(client, "clerk", PASSWORD).status_code == 429  # the hour's 7 are used up


def test_acc_7_x_forwarded_for_ignored_without_trusted_proxies(app, staff_ids):
    """Without TRUSTED_PROXIES a client cannot pick its own address to dodge the limit."""
    assert app.config["TRUSTED_PROXIES"] == 0
    client = app.test_client()
    for i in range(app.config["LOGIN_MAX_FAILURES_ACCOUNT"]):
        client.environ_base["HTTP_X_FORWARDED_FOR"] = f"203.0.113.{i}"
        assert login(client, "clerk", "Wrong-Password-99").status_code == 401
    client.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.99"
    assert login(client, "clerk", PASSWORD).status_code == 429
    assert {r.ip for r in events(app, "login_failed")} == {"127.0.0.1"}


def test_acc_7_x_forwarded_for_honoured_from_trusted_proxy(app, staff_ids, monkeypatch):
    """TRUSTED_PROXIES=1: the proxy's X-Forwarded-For is the client address for the log and the
    limit; one client's failures do not lock the same account for another client."""
    monkeypatch.setitem(app.config, "TRUSTED_PROXIES", 1)
    attacker = app.test_client()
    attacker.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.7"
    for _ in range(app.config["LOGIN_MAX_FAILURES_ACCOUNT"]):
        assert login(attacker, "clerk", "Wrong-Password-99").status_code == 401
    assert login(attacker, "clerk", PASSWORD).status_code == 429
    clerk = app.test_client()
    clerk.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.8"
    assert login(clerk, "clerk", PASSWORD).status_code == 302
    assert {r.ip for r in events(app, "login_failed")} == {"198.51.100.7"}
    assert [r.ip for r in events(app, "login")] == ["198.51.100.8"]
    # Only the last hop counts: a client-supplied earlier entry is not believed.
    spoof = app.test_client()
    spoof.environ_base["HTTP_X_FORWARDED_FOR"] = "192.0.2.1, 198.51.100.7"
    assert login(spoof, "clerk", PASSWORD).status_code == 429
