"""ACC-7 in Chromium: under the Content-Security-Policy (no inline script) the admin screens'
scripts still work — the "with selected" menu, filters, confirm prompts, the signature pad — and
the browser reports no violation (fixtures: tests/browser_support.py)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from models import db
from models.visits import Visit
from tests.browser_support import log_in, shot
from tests.helpers import make_visit

pytestmark = pytest.mark.browser


def watch_csp(page: Page) -> list[str]:
    """Console messages in which the browser reports a refused script, style or frame."""
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    return violations


def test_acc_7_browser_admin_list_actions_and_filters_work_under_csp(app, page: Page, staff_ids) -> None:
    violations = watch_csp(page)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto("/admin/security_event/")
    log_in(page, "admin")
    # Filters: Flask-Admin's own script adds the filter row; the menu link does not navigate.
    page.get_by_text("添加筛选器").click()
    page.locator("a.filter").first.click()
    expect(page.locator("table.filters tr")).to_have_count(1)
    assert page.url.endswith("/admin/security_event/")
    # "With selected" → issue a reset link: the action runs from the static script.
    page.goto("/admin/staff/")
    row = page.locator("table.model-list tbody tr").filter(has_text="clerk")
    row.locator("input.action-checkbox").check()
    page.locator("a.dropdown-toggle").filter(has_text="选中").click()
    page.locator("[data-model-action=issue_reset]").click()
    expect(page.locator(".alert").filter(has_text="/reset/")).to_be_visible()
    shot(page, "csp-staff-actions")
    assert violations == [], violations


def test_acc_7_browser_signature_pad_and_confirm_prompts_work_under_csp(app, page: Page, staff_ids) -> None:
    with app.app_context():
        visit_id = make_visit(method="on_site").id
        db.session.commit()
    violations = watch_csp(page)
    prompts: list[str] = []

    def answer(dialog) -> None:  # type: ignore[no-untyped-def]
        prompts.append(dialog.message)
        dialog.dismiss() if len(prompts) == 1 else dialog.accept()

    page.on("dialog", answer)
    page.goto(f"/admin/visit/details/?id={visit_id}")
    log_in(page, "cs_clerk")
    pad = page.locator("#signature-pad")
    page.wait_for_load_state()
    pad.scroll_into_view_if_needed()  # the mouse draws where the pad is on screen
    box = pad.bounding_box()
    page.mouse.move(box["x"] + 30, box["y"] + 60)
    page.mouse.down()
    for step in range(1, 10):
        page.mouse.move(box["x"] + 30 + step * 30, box["y"] + 60 + (step % 2) * 40)
    page.mouse.up()
    page.locator("#signature-form button[type=submit]").click()
    expect(page.locator("#attachments")).to_be_visible()
    record = page.locator('form.wf-transition[data-transition="record"] button[type=submit]')
    record.click()  # the first prompt is dismissed: nothing is posted
    assert len(prompts) == 1
    page.wait_for_load_state()
    with app.app_context():
        assert db.session.get(Visit, visit_id).state == "draft"
    record.click()
    expect(page.locator("#signature-pad")).to_have_count(0)
    expect(page.locator('form.wf-transition[data-transition="record"]')).to_have_count(0)
    assert len(prompts) == 2
    with app.app_context():
        assert db.session.get(Visit, visit_id).state == "recorded"
    shot(page, "csp-visit-recorded")
    assert violations == [], violations
