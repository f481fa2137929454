"""Issue 14 in Chromium: each role's home page (screenshots), the search box, the unit's page, the
guard's screens on a 390×844 phone, and the printed release slip's QR code (fixtures:
tests/browser_support.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
import zxingcpp
from flask import Flask
from playwright.sync_api import Browser, Page, expect

from models import db
from models.base import utcnow
from models.duty_security import VisitorLog
from models.moving import ReleaseSlip
from tests.browser_support import ARTIFACTS, TIMEOUT_MS, log_in, shot
from tests.conftest import ROLE_USERS
from tests.helpers import make_complaint, make_help_request, make_occupancy, make_resident, make_unit, valid_id

pytestmark = pytest.mark.browser
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}


def new_page(browser: Browser, live_server: str, viewport: dict[str, int]) -> Page:
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(base_url=live_server, locale="zh-CN", timezone_id="Asia/Shanghai", viewport=viewport)
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


@pytest.fixture()
def desk(browser: Browser, live_server: str, staff_ids: dict[str, int]) -> Iterator[Page]:
    page = new_page(browser, live_server, DESKTOP)
    yield page
    page.context.close()


@pytest.fixture()
def phone(browser: Browser, live_server: str, staff_ids: dict[str, int]) -> Iterator[Page]:
    page = new_page(browser, live_server, PHONE)
    yield page
    page.context.close()


@pytest.fixture()
def estate(app: Flask, staff_ids: dict[str, int]) -> dict[str, object]:
    """A unit with its owner, a tenant who left, today's complaint and help request, and a slip."""
    with app.app_context():
        unit = make_unit(code="A-6-601", floor=6)
        owner = make_resident(name="王业主", phone="13912345678", id_number=valid_id(31))
        former = make_resident(name="李旧租", phone="13700000001", id_number=valid_id(32))
        make_occupancy(unit, owner)
        from datetime import date

        make_occupancy(unit, former, kind="tenant", start_date=date(2024, 2, 1), end_date=date(2025, 1, 31))
        complaint = make_complaint(unit=unit, received_at=utcnow(), occurred_at=utcnow() - timedelta(hours=1))
        make_help_request(unit_id=unit.id)
        slip = ReleaseSlip(unit=unit, carrier="搬家公司", goods="旧沙发\n衣柜", goods_checked=True)
        db.session.add(slip)
        db.session.add(VisitorLog(name="访客赵", id_shown="110105198001011234", host_unit=unit, plate="京A12345"))
        db.session.commit()
        return {"unit": unit.id, "complaint": complaint.number, "slip": slip.id, "slip_no": slip.number}


def sign_in(page: Page, role: str, path: str = "/admin/") -> None:
    page.goto(path)
    log_in(page, role)


# --- home pages -------------------------------------------------------------------------------
@pytest.mark.parametrize("role", list(ROLE_USERS))
def test_browser_home_page_per_role_counts_link_to_lists_of_that_many(desk: Page, estate, role: str) -> None:
    sign_in(desk, role)
    expect(desk.locator(".home-title")).to_be_visible()
    shot(desk, f"home-{role}")
    preset = desk.locator("a.home-card[href*='preset=']")
    if preset.count():
        first = preset.first
        n = int(first.get_attribute("data-count") or "-1")
        first.click()
        expect(desk.locator("#preset-notice")).to_be_visible()
        tab = desk.locator("ul.nav-tabs a.nav-link.active")
        if re.search(r"\(\d+\)", tab.inner_text()):
            expect(tab).to_contain_text(f"({n})")


# --- search -------------------------------------------------------------------------------------
def search(page: Page, term: str) -> None:
    box = page.locator("#top-search-q")
    box.fill(term)
    with page.expect_navigation():
        box.press("Enter")


def test_browser_search_finds_unit_resident_by_phone_and_record_by_number(desk: Page, estate) -> None:
    sign_in(desk, "cs_clerk")
    search(desk, "6-601")
    expect(desk.locator("#search-unit .search-hit")).to_contain_text("A-6-601")
    search(desk, "13912345678")
    expect(desk.locator("#search-resident .search-hit")).to_contain_text("王业主")
    search(desk, str(estate["complaint"]))
    expect(desk.locator("#search-complaint .search-hit")).to_contain_text(str(estate["complaint"]))
    shot(desk, "search-clerk")
    desk.locator("#search-complaint .search-hit a").click()
    expect(desk).to_have_url(re.compile(r"/admin/complaint/details/"))


def test_browser_search_finds_nothing_the_role_may_not_see(desk: Page, estate) -> None:
    sign_in(desk, "engineering")  # may not open residents
    search(desk, "13912345678")
    expect(desk.locator("#search-empty")).to_be_visible()
    expect(desk.locator("#search-resident")).to_have_count(0)


# --- the unit's page ------------------------------------------------------------------------------
def test_browser_unit_page_shows_occupants_and_records_and_is_reached_from_a_record(desk: Page, estate) -> None:
    sign_in(desk, "cs_clerk", "/admin/complaint/")
    desk.locator("a.unit-link", has_text="A-6-601").first.click()
    expect(desk.locator("#unit-title")).to_contain_text("A-6-601")
    expect(desk.locator("#unit-occupants")).to_contain_text("王业主")
    expect(desk.locator("#unit-occupants")).to_contain_text("李旧租")
    expect(desk.locator("#unit-complaint li")).to_have_count(1)
    expect(desk.locator("#unit-release_slip")).to_contain_text(str(estate["slip_no"]))
    shot(desk, "unit-page-clerk")
    desk.locator("#unit-complaint li a").click()
    expect(desk).to_have_url(re.compile(r"/admin/complaint/details/"))


# --- the guard's phone ----------------------------------------------------------------------------
def no_overflow(page: Page, path: str, name: str) -> None:
    page.goto(path)
    page.wait_for_load_state("load")
    width = page.evaluate("document.documentElement.scrollWidth")
    shot(page, name)
    assert width <= PHONE["width"], (path, width)


def test_browser_guard_screens_fit_a_390_phone_without_horizontal_scrolling(phone: Page, estate) -> None:
    sign_in(phone, "security")
    for path, name in [
        ("/admin/", "phone-home"),
        ("/admin/release_slip/", "phone-slips"),
        (f"/admin/release_slip/details/?id={estate['slip']}", "phone-slip-check"),
        ("/admin/visitor_log/", "phone-visitors"),
        ("/admin/visitor_log/new/", "phone-visitor-new"),
        ("/admin/patrol_record/", "phone-patrols"),
        ("/admin/patrol_record/new/", "phone-patrol-new"),
        ("/admin/duty_log/", "phone-duty-log"),
        ("/admin/duty_log/new/", "phone-duty-log-new"),
    ]:
        no_overflow(phone, path, name)


def test_browser_slip_qr_opens_the_slip_for_a_guard_and_nothing_for_an_anonymous_visitor(
    app: Flask, phone: Page, browser: Browser, live_server: str, estate, monkeypatch
) -> None:
    """The printed slip's HTML (what WeasyPrint lays out) is captured, its QR code drawn in Chromium
    and decoded; the URL opens the slip's check page for a guard and the login page for anyone else."""
    import views.printing as printing

    captured: list[str] = []
    real = printing.html_to_pdf
    monkeypatch.setattr(printing, "html_to_pdf", lambda html: captured.append(html) or real(html))
    sign_in(phone, "security", f"/admin/release_slip/details/?id={estate['slip']}")
    response = phone.request.get(f"/admin/release_slip/print/{estate['slip']}.pdf")
    assert response.ok and response.body().startswith(b"%PDF")
    qr_src = re.search(r'id="slip-qr" src="([^"]+)"', captured[-1]).group(1).replace("&amp;", "&")
    viewer = new_page(browser, live_server, DESKTOP)
    viewer.set_content(f'<body style="background:#fff;margin:20px"><img id="q" src="{qr_src}" width="300">')
    png = viewer.locator("#q").screenshot()
    viewer.context.close()
    from io import BytesIO

    from PIL import Image

    found = zxingcpp.read_barcodes(Image.open(BytesIO(png)))
    assert found, "no QR code decoded"
    url = found[0].text
    assert "/admin/release_slip/scan/" in url and f"id={estate['slip']}" not in url
    path = url.split("localhost", 1)[1]
    phone.goto(path)
    expect(phone.locator("body")).to_contain_text(str(estate["slip_no"]))
    expect(phone.locator('form.wf-transition[data-transition="use"]')).to_have_count(1)
    anonymous = new_page(browser, live_server, PHONE)
    anonymous.goto(path)
    expect(anonymous).to_have_url(re.compile(r"/login"))
    assert str(estate["slip_no"]) not in anonymous.content()
    anonymous.context.close()
