"""Every list screen, as each demo role sees it in Chromium at 1366×900 on the demo estate (issue 13):
no horizontal overflow, and no row with more than one action control besides view/edit (the row's
steps sit in one "操作" menu). One browser, one demo seed and one login per role for the module.
Fixtures: tests/browser_support.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page

from models import db
from tests.browser_support import ARTIFACTS, log_in
from tests.conftest import ROLE_USERS, make_staff
from tests.test_permissions import model_views

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1366, "height": 900}
SHOTS = {
    ("cs_clerk", "complaint"),
    ("manager", "complaint"),
    ("cs_clerk", "occupancy"),
    ("manager", "violation"),
    ("security", "visitor_log"),
    ("manager", "renovation"),
}

# Per page, in one round trip: the document's width against the window's, and per row the
# visible controls of its action cell other than the view (eye) and edit (pencil) links.
MEASURE = """() => {
  const controls = [...document.querySelectorAll('table.model-list tbody tr')].map(tr => {
    const cell = tr.querySelector('td.list-buttons-column');
    if (!cell) return 0;
    return [...cell.querySelectorAll('a, button, select, input:not([type=hidden])')].filter(el =>
      el.offsetParent !== null && !el.closest('.dropdown-menu')
      && !el.querySelector('.fa-eye, .fa-pencil')).length;
  });
  return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
          rows: controls.length, most: Math.max(0, ...controls)};
}"""


@pytest.fixture(scope="module")
def demo_estate(app: Flask) -> Iterator[None]:
    """The demo estate (complaints, violations, renovations… in every state) under the test accounts."""
    make_staff(app)
    with app.test_request_context():
        from seed.demo import seed_demo

        seed_demo()
        db.session.commit()
        db.session.remove()
    yield


def lists_for(app: Flask, role: str) -> list[tuple[str, str]]:
    return sorted((v.endpoint, v.url) for v in model_views(app) if role in v.permissions.get("view", ()))


def walk(browser: Browser, live_server: str, app: Flask, role: str) -> list[str]:
    context = browser.new_context(base_url=live_server, locale="zh-CN", timezone_id="Asia/Shanghai", viewport=VIEWPORT)
    problems = []
    try:
        page: Page = context.new_page()
        page.goto("/login")
        log_in(page, role)
        for endpoint, url in lists_for(app, role):
            response = page.goto(url.rstrip("/") + "/")
            if response is None or response.status != 200:
                problems.append(f"{role} {endpoint}: HTTP {response.status if response else '?'}")
                continue
            found = page.evaluate(MEASURE)
            if found["scroll"] > found["inner"]:
                problems.append(f"{role} {endpoint}: {found['scroll']} px wide on {found['inner']} px")
                page.screenshot(path=str(ARTIFACTS / f"screens-overflow-{role}-{endpoint}.png"), full_page=True)
            if found["most"] > 1:
                problems.append(f"{role} {endpoint}: a row with {found['most']} action controls")
            if (role, endpoint) in SHOTS:
                page.screenshot(path=str(ARTIFACTS / f"screens-{role}-{endpoint}.png"))
    finally:
        context.close()
    return problems


@pytest.mark.parametrize("role", list(ROLE_USERS))
def test_reg_ui_every_list_fits_1366_and_rows_carry_one_menu(
    app: Flask, browser: Browser, live_server: str, demo_estate: None, role: str
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    assert walk(browser, live_server, app, role) == []


def test_cmp_1_row_menu_and_error_summary_in_the_browser(
    app: Flask, browser: Browser, live_server: str, demo_estate: None
) -> None:
    """The complaint list's row menu opens with the steps the clerk may take; the empty complaint
    form, saved, shows the summary at the top whose links lead to the fields."""
    context = browser.new_context(base_url=live_server, locale="zh-CN", timezone_id="Asia/Shanghai", viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto("/login")
        log_in(page, "cs_clerk")
        page.goto("/admin/complaint/?flt0_0=received")
        menu = page.locator("table.model-list .wf-row-menu").first
        menu.locator("button.dropdown-toggle").click()
        items = menu.locator(".dropdown-menu .wf-step, .dropdown-menu .wf-step-refused")
        assert items.count() >= 1
        page.screenshot(path=str(ARTIFACTS / "screens-complaint-row-menu.png"))
        page.goto("/admin/complaint/new/")
        assert page.locator("label[for=complainant_name] strong.text-danger").count() == 1
        # The browser's own check of the HTML-required fields aside: what the server says.
        page.evaluate("document.querySelector('form.admin-form').noValidate = true")
        page.locator("form.admin-form input[type=submit].btn-primary").click()
        summary = page.locator("#error-summary")
        summary.wait_for(state="visible")  # the answer to the submit, however slow the machine
        assert "处需要修改" in summary.inner_text()
        assert "Failed to create record" not in page.content()
        page.screenshot(path=str(ARTIFACTS / "screens-complaint-error-summary.png"), full_page=True)
        summary.locator('a[data-field="description"]').click()
        assert page.evaluate("location.hash") == "#description"
    finally:
        context.close()
