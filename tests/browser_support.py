"""Shared parts of the browser tests: Debian's Chromium driven by Playwright against a live server.

The live server is the session ``app`` itself, served by Werkzeug in a background thread, so
the browser and the assertions share one database. Its ``SERVER_NAME="localhost"`` does not
get in the way: since Flask 3.1 it no longer restricts which host a request may come in on,
the session cookie's domain does not derive from it, and every redirect is a relative path.

Screenshots go to tests/artifacts/ (git-ignored). Without /usr/bin/chromium the tests skip,
unless ``CI`` is set or ``PM_REQUIRE_BROWSER=1``: then they fail. Loaded as a pytest plugin by
tests/conftest.py, so every ``test_browser*.py`` module gets the fixtures.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from werkzeug.serving import make_server

from models import db
from tests.conftest import PASSWORD, ROLE_USERS
from tests.helpers import make_building

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
    # The next page's scripts (static files under the CSP) must have run before a test clicks or
    # draws: an element is actionable as soon as it is parsed, before the script after it.
    page.wait_for_load_state("load")


def list_row(page: Page, text: str) -> Locator:
    return page.locator("table.model-list tbody tr").filter(has_text=text)


def list_tab(page: Page) -> Locator:
    """Flask-Admin's "List (n)" tab; its wording comes from Flask-Admin's own catalog."""
    return page.locator("ul.nav-tabs a.nav-link.active")


def save(page: Page) -> None:
    """Flask-Admin's primary submit button (保存 / Save)."""
    page.locator("form.admin-form input[type=submit].btn-primary").click()
