"""Email copies of notices through a real SMTP server on loopback (ACC-3, ACC-4).

Needs the dev dependency ``aiosmtpd``.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
import sqlalchemy as sa
from flask import Flask

from models import Notification, Staff, db
from tests.conftest import CSRF, PASSWORD, csrf_token, login

Controller = pytest.importorskip("aiosmtpd.controller").Controller

RESET_LINK = re.compile(r"https?://[^/\s]+/reset/([A-Za-z0-9_\-]+)")
NEW_PASSWORD = "Lantern-Orchid-5813"


class Inbox:
    """aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for _f, rcpts, m in self.messages if address in rcpts]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def inbox(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    monkeypatch.setitem(app.config, "SMTP_HOST", "127.0.0.1")
    monkeypatch.setitem(app.config, "SMTP_PORT", controller.port)
    monkeypatch.setitem(app.config, "SMTP_STARTTLS", False)
    monkeypatch.setitem(app.config, "SMTP_USER", "")
    monkeypatch.setitem(app.config, "SMTP_SENDER", "backoffice@example.com")
    try:
        yield handler
    finally:
        controller.stop()


def set_email(app: Flask, staff_id: int, email: str | None, locale: str | None = None) -> None:
    with app.app_context():
        staff = db.session.get(Staff, staff_id)
        staff.email = email
        if locale:
            staff.locale = locale
        db.session.commit()


def edit_roles(client, staff_id: int, roles: list[str], confirm: str | None, email: str = ""):  # type: ignore[no-untyped-def]
    data = {"csrf_token": csrf_token(client), "full_name": "engineer 测试", "phone": "", "email": email,
            "department": "", "roles": roles, "active": "1"}
    if confirm is not None:
        data["confirm_password"] = confirm
    return client.post(f"/admin/staff/edit/?id={staff_id}", data=data)


def notices(app: Flask, staff_id: int) -> list[Notification]:
    with app.app_context():
        found = list(db.session.scalars(sa.select(Notification).where(Notification.staff_id == staff_id)))
        db.session.expunge_all()
        return found


def test_acc_4_role_change_sends_email(app, login_as, staff_ids, inbox):
    engineer_id = staff_ids["engineering"]
    set_email(app, engineer_id, "engineer@example.com")
    admin = login_as("admin")
    response = edit_roles(admin, engineer_id, ["engineering", "security"], PASSWORD, email="engineer@example.com")
    assert response.status_code == 302, response.get_data(as_text=True)

    [note] = notices(app, engineer_id)
    [mail] = inbox.to("engineer@example.com")
    assert mail["Subject"] == note.subject
    assert mail["To"] == "engineer@example.com"
    assert mail["From"] == "backoffice@example.com"
    assert mail.get_content().strip() == note.body.strip()
    assert len(inbox.messages) == 1  # nobody else was mailed


def test_acc_4_role_change_email_in_the_persons_language(app, login_as, staff_ids, inbox):
    engineer_id = staff_ids["engineering"]
    set_email(app, engineer_id, "engineer@example.com", locale="en")
    admin = login_as("admin")
    assert edit_roles(admin, engineer_id, ["finance"], PASSWORD, email="engineer@example.com").status_code == 302
    [mail] = inbox.to("engineer@example.com")
    assert mail["Subject"] == "Your roles were changed"
    assert "Finance" in mail.get_content()


def test_acc_4_refused_role_change_sends_nothing(app, login_as, staff_ids, inbox):
    engineer_id = staff_ids["engineering"]
    set_email(app, engineer_id, "engineer@example.com")
    admin = login_as("admin")
    assert edit_roles(admin, engineer_id, ["admin"], None, email="engineer@example.com").status_code == 200
    assert edit_roles(admin, engineer_id, ["admin"], "Wrong-Password-12",
                      email="engineer@example.com").status_code == 200
    assert inbox.messages == []
    assert notices(app, engineer_id) == []


def test_acc_4_no_email_address_in_app_notice_only(app, login_as, staff_ids, inbox):
    engineer_id = staff_ids["engineering"]
    admin = login_as("admin")
    assert edit_roles(admin, engineer_id, ["security"], PASSWORD).status_code == 302
    assert inbox.messages == []
    assert len(notices(app, engineer_id)) == 1


def test_acc_4_no_smtp_configured_in_app_notice_only(app, login_as, staff_ids, inbox, monkeypatch):
    monkeypatch.setitem(app.config, "SMTP_HOST", "")
    engineer_id = staff_ids["engineering"]
    set_email(app, engineer_id, "engineer@example.com")
    admin = login_as("admin")
    assert edit_roles(admin, engineer_id, ["security"], PASSWORD, email="engineer@example.com").status_code == 302
    assert inbox.messages == []
    assert len(notices(app, engineer_id)) == 1


def test_acc_4_mail_server_down_role_change_still_recorded(app, login_as, staff_ids, monkeypatch):
    monkeypatch.setitem(app.config, "SMTP_HOST", "127.0.0.1")
    monkeypatch.setitem(app.config, "SMTP_PORT", free_port())  # nothing listens there
    engineer_id = staff_ids["engineering"]
    set_email(app, engineer_id, "engineer@example.com")
    admin = login_as("admin")
    assert edit_roles(admin, engineer_id, ["security"], PASSWORD, email="engineer@example.com").status_code == 302
    with app.app_context():
        assert db.session.get(Staff, engineer_id).roles == {"security"}
    assert len(notices(app, engineer_id)) == 1


def test_acc_3_reset_link_is_emailed_and_works(app, login_as, staff_ids, inbox):
    clerk_id = staff_ids["cs_clerk"]
    set_email(app, clerk_id, "clerk@example.com")
    admin = login_as("admin")
    response = admin.post("/admin/staff/action/", data={
        "csrf_token": csrf_token(admin), "action": "issue_reset", "rowid": str(clerk_id)}, follow_redirects=True)
    assert response.status_code == 200
    shown = RESET_LINK.search(response.get_data(as_text=True))
    assert shown

    [mail] = inbox.to("clerk@example.com")
    assert mail["Subject"]
    mailed = RESET_LINK.search(mail.get_content())
    assert mailed and mailed.group(0) == shown.group(0)

    anon = app.test_client()
    page = anon.get(f"/reset/{mailed.group(1)}")
    assert page.status_code == 200
    token = CSRF.search(page.get_data(as_text=True)).group(1)
    done = anon.post(f"/reset/{mailed.group(1)}", data={"csrf_token": token, "password": NEW_PASSWORD,
                                                         "confirm": NEW_PASSWORD})
    assert done.status_code == 302
    assert login(app.test_client(), "clerk", NEW_PASSWORD).status_code == 302
    assert login(app.test_client(), "clerk", PASSWORD).status_code == 401


def test_acc_3_reset_link_not_mailed_without_address(app, login_as, staff_ids, inbox):
    admin = login_as("admin")
    response = admin.post("/admin/staff/action/", data={
        "csrf_token": csrf_token(admin), "action": "issue_reset", "rowid": str(staff_ids["cs_clerk"])},
        follow_redirects=True)
    assert RESET_LINK.search(response.get_data(as_text=True))
    assert inbox.messages == []


def test_acc_4_no_mail_when_the_change_is_rolled_back(app, staff_ids, inbox) -> None:
    """Side effects after commit: a role change that is rolled back mails nobody."""
    from security import accounts

    set_email(app, staff_ids["cs_clerk"], "clerk@example.com")
    with app.test_request_context():
        admin = db.session.get(Staff, staff_ids["admin"])
        clerk = db.session.get(Staff, staff_ids["cs_clerk"])
        accounts.set_roles(clerk, {"cs_clerk", "finance"}, admin, PASSWORD)
        db.session.rollback()
        accounts.set_roles(clerk, {"cs_clerk", "security"}, admin, PASSWORD)
        db.session.commit()
    [mail] = inbox.to("clerk@example.com")
    assert "保安部" in mail.get_content() and "财务部" not in mail.get_content()
