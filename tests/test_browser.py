"""Browser tests: Debian's Chromium driven by Playwright against a live server (REG-1, REG-3, ACC-4, ACC-6).

The live server is the session ``app`` itself, served by Werkzeug in a background thread, so
the browser and the assertions share one database. Its ``SERVER_NAME="localhost"`` does not
get in the way: since Flask 3.1 it no longer restricts which host a request may come in on,
the session cookie's domain does not derive from it, and every redirect is a relative path.

Screenshots go to tests/artifacts/ (git-ignored). Without /usr/bin/chromium the tests skip,
unless ``CI`` is set or ``PM_REQUIRE_BROWSER=1``: then they fail.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from werkzeug.serving import make_server

from models import Building, Resident, Unit, db
from security.crypto import mask
from tests.conftest import PASSWORD, ROLE_USERS
from tests.helpers import make_building, make_unit, valid_id

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TIMEOUT_MS = 15_000


def browser_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("PM_REQUIRE_BROWSER") == "1"


# --- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def live_server(app: Flask) -> Iterator[str]:
    """The session app on 127.0.0.1 and a free port (the OS picks it), threaded; base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser(live_server: str) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if browser_required():
            pytest.fail(message + "; CI or PM_REQUIRE_BROWSER=1 requires the browser tests", pytrace=False)
        pytest.skip(message)
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def page(browser: Browser, live_server: str, staff_ids: dict[str, int]) -> Iterator[Page]:
    """A fresh browser context (no cookies) on fresh tables with one account per role."""
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(base_url=live_server, locale="zh-CN", timezone_id="Asia/Shanghai",
                                  viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture()
def building_id(app: Flask, staff_ids: dict[str, int]) -> int:
    """An estate (测试花园) with building A, committed before the test opens a page."""
    with app.app_context():
        building = make_building()
        db.session.commit()
        return building.id


# --- helpers -------------------------------------------------------------------------------
def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Page, role: str = "cs_clerk") -> None:
    """Fill the login form on the current page and submit it."""
    page.locator("#username").fill(ROLE_USERS[role])
    page.locator("#password").fill(PASSWORD)
    page.locator("#login-submit").click()


def list_row(page: Page, text: str) -> Locator:
    return page.locator("table.model-list tbody tr").filter(has_text=text)


def list_tab(page: Page) -> Locator:
    """Flask-Admin's "List (n)" tab; its wording comes from Flask-Admin's own catalog."""
    return page.locator("ul.nav-tabs a.nav-link.active")


def save(page: Page) -> None:
    """Flask-Admin's primary submit button (保存 / Save)."""
    page.locator("form.admin-form input[type=submit].btn-primary").click()


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
