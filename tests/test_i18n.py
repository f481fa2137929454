"""Simplified Chinese by default, English on switch; every label of ours is translated."""

from __future__ import annotations

from pathlib import Path

from babel.messages.pofile import read_po

from app import ROOT
from tests.conftest import csrf_token

CATALOG = ROOT / "translations" / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po"


def test_every_message_has_a_chinese_translation() -> None:
    catalog = read_po(Path(CATALOG).open("rb"), locale="zh_Hans_CN")
    untranslated = [m.id for m in catalog if m.id and not m.string]
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert untranslated == [] and fuzzy == []


def test_reg_1_interface_is_chinese_by_default_with_regulation_terms(login_as) -> None:
    page = login_as("cs_clerk").get("/admin/unit/").get_data(as_text=True)
    assert "房号" in page and "建筑面积" in page  # our labels, REGULATIONS terms
    assert "列表" in page  # Flask-Admin's own zh_Hans_CN catalog


def test_language_switch_is_per_user_and_persists(login_as, app) -> None:
    client = login_as("cs_clerk")
    response = client.post("/lang/en", data={"csrf_token": csrf_token(client), "next": "/admin/unit/"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/unit/")
    page = client.get("/admin/unit/").get_data(as_text=True)
    assert "Unit code" in page and "List" in page and "房号" not in page
    other = login_as("cs_supervisor").get("/admin/unit/").get_data(as_text=True)
    assert "房号" in other  # another user keeps Chinese
    again = login_as("cs_clerk").get("/admin/unit/").get_data(as_text=True)
    assert "Unit code" in again  # remembered on the account


def test_reg_3_form_errors_in_users_language(login_as) -> None:
    client = login_as("cs_clerk")
    page = client.post("/admin/resident/new/", data={
        "csrf_token": csrf_token(client), "name": "王五", "id_number": "110105198001010011"})
    assert "身份证号校验位错误" in page.get_data(as_text=True)


def test_acc_7_times_stored_utc_shown_in_shanghai(login_as, db_session) -> None:
    from datetime import UTC, datetime

    from models import SecurityEvent, db

    db.session.add(SecurityEvent(kind="login", username="someone", at=datetime(2026, 1, 1, 0, 0, tzinfo=UTC)))
    db.session.commit()
    page = login_as("admin").get("/admin/security_event/?search=someone").get_data(as_text=True)
    assert "2026-01-01 08:00" in page
    stored = db.session.scalar(db.select(SecurityEvent.at).where(SecurityEvent.username == "someone"))
    assert stored.utcoffset().total_seconds() == 0 and stored.hour == 0
