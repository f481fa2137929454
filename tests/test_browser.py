"""Browser tests: Debian's Chromium driven by Playwright against a live server (REG-1, REG-3, ACC-4, ACC-6).

Fixtures and helpers (live server, browser, page, log_in, ...) are in tests/browser_support.py.
"""

from __future__ import annotations

import re
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from playwright.sync_api import Page, expect

from models import Building, Resident, Unit, db
from security.crypto import mask
from tests.browser_support import list_row, list_tab, log_in, save, shot
from tests.helpers import make_unit, valid_id

pytestmark = pytest.mark.browser


# --- tests ---------------------------------------------------------------------------------
def test_reg_1_browser_clerk_creates_unit(building_id: int, app: Flask, page: Page) -> None:
    """REG-1: a clerk logs in and registers unit A-3-302 (building-floor-room) in building A."""
    page.goto("/login")
    expect(page.locator("#login-submit")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    shot(page, "01_login")

    log_in(page)
    expect(page).to_have_url(re.compile(r"/admin/$"))
    expect(page.locator("#user-menu")).to_have_text("clerk 测试")
    expect(page.locator("#lang-button")).to_have_text("English")
    shot(page, "02_home")

    page.goto("/admin/unit/")
    expect(list_tab(page)).to_have_text("列表")
    page.locator("ul.nav-tabs a.nav-link", has_text="创建").click()
    expect(page).to_have_url(re.compile(r"/admin/unit/new/"))
    page.locator("select#building").select_option(str(building_id), force=True)  # select2 hides it
    page.locator("#code").fill("A-3-302")
    page.locator("#floor").fill("3")
    page.locator("#area").fill("96.40")
    page.locator("select#use").select_option("residential")
    shot(page, "03_unit_form")
    save(page)

    expect(page).to_have_url(re.compile(r"/admin/unit/(\?.*)?$"))
    expect(page.locator(".alert-success")).to_be_visible()
    row = list_row(page, "A-3-302")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("测试花园 A")
    expect(list_tab(page)).to_have_text("列表 (1)")
    shot(page, "04_unit_list")

    with app.app_context():
        unit = db.session.scalars(db.select(Unit)).one()
        assert (unit.code, unit.floor, unit.area, unit.use) == ("A-3-302", 3, Decimal("96.40"), "residential")
        assert unit.building_id == building_id


def test_reg_3_acc_6_browser_id_masked_in_list_encrypted_at_rest(page: Page, app: Flask) -> None:
    """REG-3 fields through the form; ACC-6: the list shows a masked ID, the table holds ciphertext."""
    id_number = valid_id(302)
    page.goto("/login")
    log_in(page)
    expect(page).to_have_url(re.compile(r"/admin/$"))

    page.goto("/admin/resident/new/")
    page.locator("#name").fill("李四")
    page.locator("select#gender").select_option("female", force=True)
    page.locator("#phone").fill("13900139000")
    page.locator("#id_number").fill(id_number)
    page.locator("#native_place").fill("湖南长沙")
    page.locator("#household_place").fill("北京市朝阳区")
    page.locator("#emergency_contact").fill("李父")
    page.locator("#emergency_phone").fill("13700137000")
    shot(page, "05_resident_form")
    save(page)

    expect(page).to_have_url(re.compile(r"/admin/resident/(\?.*)?$"))
    expect(page.locator(".alert-success")).to_be_visible()
    row = list_row(page, "李四")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(mask(id_number))
    expect(row).to_contain_text("13900139000")
    assert id_number not in page.content()
    shot(page, "06_resident_list")

    with app.app_context():
        resident = db.session.scalars(db.select(Resident)).one()
        assert resident.id_number == id_number
        assert (resident.name, resident.gender, resident.phone) == ("李四", "female", "13900139000")
        raw = db.session.execute(sa.text("SELECT * FROM resident")).mappings().one()
        assert not any(id_number in str(value) for value in raw.values())
        assert raw["id_number"].startswith("t1:")


def test_browser_language_switch_translates_admin_ui(building_id: int, app: Flask, page: Page) -> None:
    """Chinese by default, English on the header button; Flask-Admin's own strings change."""
    with app.app_context():
        make_unit(db.session.get(Building, building_id), code="A-3-302", floor=3)
        db.session.commit()
    page.goto("/login")
    log_in(page)
    page.goto("/admin/unit/")
    expect(list_tab(page)).to_have_text("列表 (1)")
    expect(page.locator("ul.nav-tabs")).to_contain_text("创建")
    expect(page.locator("#lang-button")).to_have_text("English")
    shot(page, "07_unit_list_chinese")

    page.locator("#lang-button").click()
    expect(page.locator("#lang-button")).to_have_text("中文")
    expect(page).to_have_url(re.compile(r"/admin/unit/$"))
    expect(list_tab(page)).to_have_text("List (1)")
    expect(page.locator("ul.nav-tabs")).to_contain_text("Create")
    expect(page.locator("ul.nav-tabs")).not_to_contain_text("创建")
    expect(list_row(page, "A-3-302")).to_have_count(1)
    shot(page, "08_unit_list_english")

    page.reload()  # the choice is kept (on the account and in the session)
    expect(list_tab(page)).to_have_text("List (1)")
    page.locator("#lang-button").click()
    expect(list_tab(page)).to_have_text("列表 (1)")


def test_acc_4_browser_clerk_forbidden_staff_and_anonymous_sent_to_login(page: Page) -> None:
    """ACC-4: a clerk gets the 403 page on staff accounts; anonymous visitors go to the login page."""
    response = page.goto("/admin/unit/")
    assert response is not None
    parts = urlsplit(page.url)
    assert parts.path == "/login"
    assert parse_qs(parts.query)["next"] == ["/admin/unit/"]
    expect(page.locator("#login-submit")).to_be_visible()
    shot(page, "09_anonymous_to_login")

    log_in(page)
    expect(page).to_have_url(re.compile(r"/admin/unit/$"))  # back where the visitor wanted to go

    response = page.goto("/admin/staff/")
    assert response is not None and response.status == 403
    expect(page).to_have_title(re.compile(r"^403 - "))
    expect(page.locator("a[href='/admin/']")).to_be_visible()
    expect(page.locator("table.model-list")).to_have_count(0)
    shot(page, "10_clerk_forbidden_staff")


# --- workflow buttons (the shared layer) ---------------------------------------------------------
def test_wf_transition_buttons_are_confirmed_posts_and_approval_shows_in_my_work(
        app: Flask, page: Page, staff_ids: dict[str, int]) -> None:
    """A clerk takes keys out from the details page (confirm dialog, CSRF'd POST); a loss report
    waits for the supervisor, who finds it in My work (待办) and approves it."""
    from models import KeyCustody
    from tests.helpers import make_key_custody

    with app.app_context():
        keys_id = make_key_custody().id
        db.session.commit()
    page.goto(f"/admin/key_custody/details/?id={keys_id}")
    log_in(page, "cs_clerk")
    dialogs: list[str] = []

    def accept(dialog) -> None:  # type: ignore[no-untyped-def]
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    form = page.locator('form.wf-transition[data-transition="check_out"]')
    form.locator('input[name="field_current_holder"]').fill("工程部 刘强")
    form.locator('input[name="field_current_purpose"]').fill("抄水表")
    form.locator("button[type=submit]").click()
    expect(page.locator("#wf-status")).to_contain_text("已借出")
    assert dialogs and "借出" in dialogs[0]
    put_back = page.locator('form.wf-transition[data-transition="check_in"]')
    put_back.locator("button[type=submit]").click()
    expect(page.locator("#wf-status")).to_contain_text("在钥匙柜")
    lost = page.locator('form.wf-transition[data-transition="report_lost"]')
    lost.locator('textarea[name="comment"]').fill("柜中未找到")
    lost.locator("button[type=submit]").click()
    expect(page.locator("#approval")).to_contain_text("客服主管确认遗失")
    expect(page.locator("#timeline")).to_be_visible()
    shot(page, "workflow-requested")

    page.context.clear_cookies()
    page.goto("/admin/mywork/")
    log_in(page, "cs_supervisor")
    row = page.locator("table tbody tr").filter(has_text="钥匙托管")
    expect(row).to_have_count(1)
    row.locator("a").first.click()
    page.locator('form.wf-decide textarea[name="comment"]').fill("已核实")
    page.locator('form.wf-decide button[value="approve"]').click()
    expect(page.locator("#wf-status")).to_contain_text("已遗失")
    shot(page, "workflow-approved")
    with app.app_context():
        assert db.session.get(KeyCustody, keys_id).state == "lost"
