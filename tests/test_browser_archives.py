"""An engineer's request to view a resident archive, walked through Chromium (ARC-3, ARC-11, ARC-12): it
names the customer-service companion, is refused until the customer-service supervisor approves it, then
the archive opens with its documents newest first, the opening is logged with the companion, and the
companion confirms the reading on their own account. Fixtures: tests/browser_support.py."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from flask import Flask
from playwright.sync_api import Page, expect

from models import AuditEntry, db
from models.archives import Archive, ArchiveAccess, archive_for_unit
from tests.browser_support import log_in, save, shot
from tests.helpers import make_unit
from tests.test_archives import PDF

pytestmark = pytest.mark.browser


def switch_to(page: Page, role: str, path: str) -> None:
    page.wait_for_load_state("networkidle")
    page.context.clear_cookies()
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    log_in(page, role)


def test_arc_3_arc_11_arc_12_browser_accompanied_request_refused_until_supervisor_approves(
        app: Flask, page: Page, staff_ids: dict[str, int]) -> None:
    from datetime import date

    from models import Staff
    from models.archives import file_document

    with app.app_context():
        archive = archive_for_unit(make_unit().id)
        clerk = db.session.get(Staff, staff_ids["cs_clerk"])
        for doc, when in (("covenant", date(2019, 5, 1)), ("key_receipt", None), ("move_in_notice", date(2021, 3, 8))):
            file_document(archive, doc, PDF, f"{doc}.pdf", clerk, when)
        db.session.commit()
        archive_id = archive.id
    page.on("dialog", lambda dialog: dialog.accept())
    details = f"/admin/archive/details/?id={archive_id}"

    # 1. Without an approval the engineer cannot open the archive (denied by default).
    switch_to(page, "engineering", details)
    expect(page.locator("#checklist")).to_have_count(0)

    # 2. The engineer files the access request (purpose, what, accompanied by) and submits it.
    page.goto("/admin/archive_access/new/")
    page.locator("#archive").evaluate("(el, v) => { el.value = v; }", str(archive_id))  # an ajax select2 box
    page.locator("#purpose").fill("核对管线改造图纸")
    page.locator("#documents_wanted").fill("装修图纸")
    expect(page.locator("#companion")).to_contain_text(clerk_name(app, staff_ids))  # customer service only
    page.locator("#companion").evaluate("(el, v) => { window.jQuery(el).val(v).trigger('change'); }",
                                        str(staff_ids["cs_clerk"]))  # a select2 box
    shot(page, "archive-0-request-with-companion")
    save(page)
    with app.app_context():
        access_id = db.session.scalar(sa.select(ArchiveAccess.id).where(ArchiveAccess.archive_id == archive_id))
        assert access_id is not None, "the request did not save"
    page.goto(f"/admin/archive_access/details/?id={access_id}")
    page.locator('form.wf-transition[data-transition="approve"] button[type=submit]').click()
    expect(page.locator("#approval")).to_be_visible()
    page.goto(details)
    expect(page.locator("#checklist")).to_have_count(0)  # still refused while waiting
    shot(page, "archive-1-refused")

    # 3. The customer-service supervisor approves.
    switch_to(page, "cs_supervisor", f"/admin/archive_access/details/?id={access_id}")
    page.locator('form.wf-decide button[value="approve"]').click()
    expect(page.locator("#wf-status")).to_contain_text("已批准")

    # 4. Now the engineer opens the archive; the opening is logged with who accompanied.
    switch_to(page, "engineering", details)
    expect(page.locator("#checklist")).to_be_visible()
    rows = page.locator("#documents-newest-first tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(1)).to_contain_text("2021-03-08")  # ARC-12: the filing day first, then by the documents' dates
    expect(rows.nth(2)).to_contain_text("2019-05-01")
    shot(page, "archive-2-opened")
    with app.app_context():
        assert db.session.get(Archive, archive_id) is not None
        comments = db.session.scalars(sa.select(AuditEntry.comment).where(
            AuditEntry.action == "confidential_view", AuditEntry.record_id == archive_id)).all()
        assert any(clerk_name(app, staff_ids) in (c or "") for c in comments)

    # 5. ARC-11: the companion confirms the accompanied reading on their own account.
    switch_to(page, "cs_clerk", f"/admin/archive_access/details/?id={access_id}")
    page.locator('form.wf-transition[data-transition="confirm_reading"] button[type=submit]').click()
    page.wait_for_load_state("networkidle")
    with app.app_context():
        assert db.session.get(ArchiveAccess, access_id).reading_confirmed_at is not None
    shot(page, "archive-3-reading-confirmed")


def clerk_name(app: Flask, staff_ids: dict[str, int]) -> str:
    from models import Staff

    with app.app_context():
        return db.session.get(Staff, staff_ids["cs_clerk"]).full_name
