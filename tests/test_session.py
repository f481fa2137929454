"""Login, logout, throttling, session hardening and the language switch (ACC-2, ACC-3, ACC-7)."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from models import SecurityEvent, Staff, db
from tests.conftest import CSRF, PASSWORD, ROLE_USERS, csrf_token, login


def events(app: Flask, kind: str | None = None) -> list[SecurityEvent]:
    with app.app_context():
        query = sa.select(SecurityEvent).order_by(SecurityEvent.id)
        if kind is not None:
            query = query.where(SecurityEvent.kind == kind)
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        return list(rows)


def set_cookie_headers(response) -> list[str]:  # type: ignore[no-untyped-def]
    return response.headers.getlist("Set-Cookie")


def session_cookie(response, app: Flask) -> str:  # type: ignore[no-untyped-def]
    name = app.config["SESSION_COOKIE_NAME"]
    found = [h for h in set_cookie_headers(response) if h.startswith(f"{name}=")]
    assert found, f"no {name} cookie in {set_cookie_headers(response)}"
    return found[-1]


def path_of(response) -> str:  # type: ignore[no-untyped-def]
    location = response.headers["Location"]
    parts = urlsplit(location)
    assert parts.netloc in ("", "localhost"), location
    return parts.path + (f"?{parts.query}" if parts.query else "")


def is_logged_in(client: FlaskClient) -> bool:
    response = client.get("/admin/")
    if response.status_code == 200:
        return True
    assert response.status_code == 302 and path_of(response).startswith("/login"), response.status_code
    return False


# --- login, failure, logout, audit (ACC-7) ------------------------------------------------------------


def test_acc_7_login_success_is_logged_with_ip(app, staff_ids):
    client = app.test_client()
    response = login(client, "clerk")
    assert response.status_code == 302
    assert path_of(response) == "/admin/"
    assert is_logged_in(client)
    rows = events(app, "login")
    assert [(r.username, r.staff_id, r.ip) for r in rows] == [("clerk", staff_ids["cs_clerk"], "127.0.0.1")]


def test_acc_7_failed_login_is_logged_with_ip_and_not_logged_in(app, staff_ids):
    client = app.test_client()
    response = login(client, "clerk", "Wrong-Password-99")
    assert response.status_code == 401
    assert not is_logged_in(client)
    rows = events(app, "login_failed")
    assert [(r.username, r.staff_id, r.ip) for r in rows] == [("clerk", staff_ids["cs_clerk"], "127.0.0.1")]
    assert events(app, "login") == []


def test_acc_7_failed_login_for_unknown_user_is_logged(app, staff_ids):
    client = app.test_client()
    response = login(client, "nobody-here", PASSWORD)
    assert response.status_code == 401
    rows = events(app, "login_failed")
    assert [(r.username, r.staff_id, r.ip) for r in rows] == [("nobody-here", None, "127.0.0.1")]


def test_acc_7_inactive_account_cannot_log_in(app, staff_ids):
    with app.app_context():
        db.session.get(Staff, staff_ids["cs_clerk"]).active = False
        db.session.commit()
    client = app.test_client()
    assert login(client, "clerk").status_code == 401
    assert not is_logged_in(client)


def test_acc_7_logout_is_logged_and_ends_the_session(app, login_as, staff_ids):
    client = login_as("cs_clerk")
    response = client.post("/logout", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 302
    assert path_of(response) == "/login"
    assert not is_logged_in(client)
    rows = events(app, "logout")
    assert [(r.username, r.staff_id, r.ip) for r in rows] == [("clerk", staff_ids["cs_clerk"], "127.0.0.1")]


def test_acc_7_logout_is_post_only_and_needs_csrf(app, login_as):
    client = login_as("cs_clerk")
    assert client.get("/logout").status_code == 405
    assert is_logged_in(client)
    assert client.post("/logout").status_code == 400  # no CSRF token
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 400
    assert is_logged_in(client)
    assert events(app, "logout") == []


def test_acc_7_admin_reviews_security_log_others_refused(app, login_as):
    bad = app.test_client()
    login(bad, "clerk", "Wrong-Password-99")
    admin = login_as("admin")
    page = admin.get("/admin/security_event/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "login_failed" in html and "127.0.0.1" in html
    for role in ("manager", "cs_supervisor", "cs_clerk", "security", "finance"):
        client = login_as(role)
        assert client.get("/admin/security_event/").status_code == 403, role
        assert client.get("/admin/security_event/export/csv/").status_code == 403, role


def test_acc_7_anonymous_security_log_goes_to_login(app, staff_ids):
    response = app.test_client().get("/admin/security_event/")
    assert response.status_code == 302
    assert path_of(response).startswith("/login")


# --- throttling ----------------------------------------------------------------------------------------


def test_acc_7_throttle_account_after_five_failures_even_with_right_password(app, staff_ids):
    limit = app.config["LOGIN_MAX_FAILURES_ACCOUNT"]
    assert limit == 5
    client = app.test_client()
    for _ in range(limit):
        assert login(client, "clerk", "Wrong-Password-99").status_code == 401
    response = login(client, "clerk", PASSWORD)
    assert response.status_code == 429
    assert not is_logged_in(client)
    throttled = events(app, "login_throttled")
    assert [(r.username, r.ip) for r in throttled] == [("clerk", "127.0.0.1")]
    assert events(app, "login") == []
    # Another account from elsewhere is not affected by this account's lock.
    other = app.test_client()
    assert login(other, "manager").status_code == 302


def test_acc_7_throttle_counts_username_case_insensitively(app, staff_ids):
    client = app.test_client()
    for name in ("clerk", "CLERK", "Clerk", " clerk", "cLeRk"):
        assert login(client, name, "Wrong-Password-99").status_code == 401
    assert login(client, "clerk", PASSWORD).status_code == 429


def test_acc_7_throttle_below_limit_still_allows_login(app, staff_ids):
    client = app.test_client()
    for _ in range(app.config["LOGIN_MAX_FAILURES_ACCOUNT"] - 1):
        assert login(client, "clerk", "Wrong-Password-99").status_code == 401
    assert login(client, "clerk", PASSWORD).status_code == 302


def test_acc_7_throttle_window_expires(app, staff_ids, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_FAILURE_WINDOW", timedelta(seconds=1))
    monkeypatch.setitem(app.config, "LOGIN_LIMITS_LONGER", "")
    client = app.test_client()
    for _ in range(app.config["LOGIN_MAX_FAILURES_ACCOUNT"]):
        assert login(client, "clerk", "Wrong-Password-99").status_code == 401
    assert login(client, "clerk", PASSWORD).status_code == 429
    time.sleep(1.2)
    assert login(client, "clerk", PASSWORD).status_code == 302


def test_acc_7_throttle_is_per_account_and_address(app, staff_ids):
    """The locked pair is this account from this address: the same account from another
    address, and other accounts from this address, still log in."""
    client = app.test_client()
    for _ in range(app.config["LOGIN_MAX_FAILURES_ACCOUNT"]):
        assert login(client, "clerk", "Wrong-Password-99").status_code == 401
    assert login(client, "clerk", PASSWORD).status_code == 429
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    assert login(elsewhere, "clerk", PASSWORD).status_code == 302
    assert login(app.test_client(), "cashier", PASSWORD).status_code == 302
    assert [r.ip for r in events(app, "login")] == ["10.1.2.3", "127.0.0.1"]


def test_acc_7_correct_password_clears_the_count(app, staff_ids):
    client = app.test_client()
    limit = app.config["LOGIN_MAX_FAILURES_ACCOUNT"]
    for _ in range(limit - 1):
        assert login(client, "clerk", "Wrong-Password-99").status_code == 401
    assert login(client, "clerk", PASSWORD).status_code == 302
    again = app.test_client()
    for _ in range(limit - 1):
        assert login(again, "clerk", "Wrong-Password-99").status_code == 401
    assert login(again, "clerk", PASSWORD).status_code == 302


# --- session cookie and fixation ------------------------------------------------------------------------


def test_acc_7_session_cookie_flags_httponly_samesite(app, staff_ids):
    client = app.test_client()
    response = login(client, "clerk")
    cookie = session_cookie(response, app)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP in this test


def test_acc_7_session_cookie_secure_over_https(app, staff_ids):
    client = app.test_client()
    page = client.get("/login", base_url="https://localhost")
    token = CSRF.search(page.get_data(as_text=True)).group(1)
    # Over HTTPS Flask-WTF also checks the Referer is this site (WTF_CSRF_SSL_STRICT).
    response = client.post("/login", base_url="https://localhost", headers={"Referer": "https://localhost/login"},
                           data={"csrf_token": token, "username": "clerk", "password": PASSWORD})
    assert response.status_code == 302
    cookie = session_cookie(response, app)
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_acc_7_no_remember_me_cookie(app, staff_ids):
    client = app.test_client()
    response = login(client, "clerk")
    assert response.status_code == 302
    remember = app.config.get("REMEMBER_COOKIE_NAME", "remember_token")
    assert not any(h.startswith(f"{remember}=") for h in set_cookie_headers(response))
    assert client.get_cookie(remember) is None
    with client.session_transaction() as sess:
        assert "_remember" not in sess or sess["_remember"] != "set"


def test_acc_7_session_rotated_at_login(app, staff_ids):
    client = app.test_client()
    token = csrf_token(client)
    with client.session_transaction() as sess:
        sess["planted"] = "attacker-value"
    name = app.config["SESSION_COOKIE_NAME"]
    before = client.get_cookie(name).value
    response = client.post("/login", data={"csrf_token": token, "username": "clerk", "password": PASSWORD})
    assert response.status_code == 302
    after = client.get_cookie(name).value
    assert after != before
    with client.session_transaction() as sess:
        assert "planted" not in sess
        assert sess["_user_id"] == f"{staff_ids['cs_clerk']}:0"
    # The pre-login cookie does not carry the login.
    other = app.test_client()
    other.set_cookie(name, before)
    assert not is_logged_in(other)


def test_acc_7_idle_timeout_logs_out(app, login_as, monkeypatch):
    client = login_as("cs_clerk")
    assert is_logged_in(client)
    with client.session_transaction() as sess:
        sess["seen"] = time.time() - app.config["IDLE_TIMEOUT"].total_seconds() - 60
    response = client.get("/admin/unit/")
    assert response.status_code == 302
    location = urlsplit(path_of(response))
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == ["/admin/unit/"]
    with client.session_transaction() as sess:
        assert "_user_id" not in sess
        assert [cat for cat, _msg in sess.get("_flashes", [])] == ["info"]
    assert not is_logged_in(client)


def test_acc_7_idle_timeout_small_setting(app, login_as, monkeypatch):
    from datetime import timedelta

    client = login_as("cs_clerk")
    monkeypatch.setitem(app.config, "IDLE_TIMEOUT", timedelta(seconds=1))
    assert is_logged_in(client)
    time.sleep(1.2)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert path_of(response).startswith("/login")
    assert not is_logged_in(client)


def test_acc_7_activity_keeps_session_alive(app, login_as):
    client = login_as("cs_clerk")
    with client.session_transaction() as sess:
        sess["seen"] = time.time() - app.config["IDLE_TIMEOUT"].total_seconds() + 60
    assert is_logged_in(client)
    with client.session_transaction() as sess:
        assert time.time() - sess["seen"] < 30  # refreshed by the request


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "//evil.example/admin/",
                                    "/\\evil.example", "http:/evil.example", "javascript:alert(1)"])
def test_acc_7_login_next_refuses_other_sites(app, staff_ids, target):
    client = app.test_client()
    token = csrf_token(client)
    response = client.post("/login", query_string={"next": target},
                           data={"csrf_token": token, "username": "clerk", "password": PASSWORD})
    assert response.status_code == 302
    assert path_of(response) == "/admin/"


def test_acc_7_login_next_honours_local_path(app, staff_ids):
    client = app.test_client()
    token = csrf_token(client)
    response = client.post("/login?next=/admin/unit/",
                           data={"csrf_token": token, "username": "clerk", "password": PASSWORD})
    assert response.status_code == 302
    assert path_of(response) == "/admin/unit/"


def test_acc_7_login_needs_csrf(app, staff_ids):
    client = app.test_client()
    response = client.post("/login", data={"username": "clerk", "password": PASSWORD})
    assert response.status_code == 400
    assert not is_logged_in(client)
    assert events(app, "login") == []


def test_acc_1_anonymous_admin_redirects_to_login_with_next(app, staff_ids):
    response = app.test_client().get("/admin/unit/")
    assert response.status_code == 302
    assert path_of(response).startswith("/login?next=")


def test_acc_3_password_reset_by_admin_ends_open_session(app, login_as, staff_ids):
    """A password set by anyone bumps session_epoch; the cookie issued before stops working."""
    clerk = login_as("cs_clerk")
    assert is_logged_in(clerk)
    with app.app_context():
        from security import accounts

        staff = db.session.get(Staff, staff_ids["cs_clerk"])
        accounts.set_password(staff, "Brand-New-Secret-77")
        db.session.commit()
    assert not is_logged_in(clerk)


# --- language -------------------------------------------------------------------------------------------


def test_acc_1_language_default_is_chinese_for_flask_admin(app, login_as):
    admin = login_as("admin")
    html = admin.get("/admin/staff/").get_data(as_text=True)
    assert "列表" in html
    assert ">List<" not in html


def test_acc_1_language_switch_to_english_persists_on_user(app, login_as, staff_ids):
    admin = login_as("admin")
    response = admin.post("/lang/en", data={"csrf_token": csrf_token(admin), "next": "/admin/staff/"})
    assert response.status_code == 302
    assert path_of(response) == "/admin/staff/"
    html = admin.get("/admin/staff/").get_data(as_text=True)
    assert "List" in html
    assert "列表" not in html
    with app.app_context():
        assert db.session.get(Staff, staff_ids["admin"]).locale == "en"
    # A new login of the same person gets English straight away.
    fresh = app.test_client()
    assert login(fresh, ROLE_USERS["admin"]).status_code == 302
    assert "列表" not in fresh.get("/admin/staff/").get_data(as_text=True)
    # And back to Chinese.
    admin.post("/lang/zh_Hans_CN", data={"csrf_token": csrf_token(admin)})
    assert "列表" in admin.get("/admin/staff/").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Staff, staff_ids["admin"]).locale == "zh_Hans_CN"


def test_acc_1_language_switch_needs_csrf_and_known_locale(app, login_as, staff_ids):
    admin = login_as("admin")
    assert admin.post("/lang/en").status_code == 400
    admin.post("/lang/xx", data={"csrf_token": csrf_token(admin)})
    with app.app_context():
        assert db.session.get(Staff, staff_ids["admin"]).locale == "zh_Hans_CN"
    assert "列表" in admin.get("/admin/staff/").get_data(as_text=True)


def test_acc_1_language_switch_anonymous_login_page(app, staff_ids):
    client = app.test_client()
    token = csrf_token(client)
    response = client.post("/lang/en", data={"csrf_token": token, "next": "https://evil.example/"})
    assert response.status_code == 302
    assert path_of(response) == "/admin/"
    assert 'lang="en"' in client.get("/login").get_data(as_text=True)
