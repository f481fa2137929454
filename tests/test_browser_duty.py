"""DTY-4 in Chromium: the outgoing guard's open emergency is handed over by name to the incoming clerk,
who acknowledges it; the handover then completes with the item still open (fixtures:
tests/browser_support.py)."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from flask import Flask
from playwright.sync_api import Page, expect

from models import Staff, db
from models.duty import DutyFollowUp, add_entry
from models.duty_desk import DutyHandover
from tests.browser_support import log_in, shot
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def switch_to(page: Page, role: str, path: str) -> None:
    page.wait_for_load_state("networkidle")
    page.context.clear_cookies()
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    log_in(page, role)


def fire(page: Page, transition: str, **fields: str) -> None:
    form = page.locator(f'form.wf-transition[data-transition="{transition}"]')
    for name, value in fields.items():
        form.locator(f'[name="{name}"]').fill(value)
    form.locator("button[type=submit]").click()


def test_dty_4_browser_handover_completes_with_an_open_item_handed_over_by_name(
    app: Flask, page: Page, staff_ids: dict[str, int]
) -> None:
    with app.app_context():
        guard, clerk = db.session.get(Staff, staff_ids["security"]), db.session.get(Staff, staff_ids["cs_clerk"])
        entry = add_entry(guard, "emergency", "01:10 2栋电梯困人，已通知维保，维保人员在途。", important=True)
        handover = DutyHandover(
            desk="main",
            outgoing=guard,
            handed_to=clerk,
            read_previous_log=True,
            items_counted="radio,extinguisher,keys,torch,log_book,first_aid",
        )
        db.session.add(handover)
        db.session.commit()
        handover_id, entry_id = handover.id, entry.id
    page.set_viewport_size({"width": 1366, "height": 900})
    page.on("dialog", lambda dialog: dialog.accept())
    details = f"/admin/duty_handover/details/?id={handover_id}"

    # The incoming clerk cannot take over while the guard's emergency is open and not handed over.
    switch_to(page, "cs_clerk", details)
    expect(page.locator("#open-work")).to_contain_text("2栋电梯困人")
    expect(page.locator('form.wf-transition[data-transition="take_over"]')).to_have_count(0)

    # The outgoing guard hands it over by name.
    switch_to(page, "security", details)
    fire(page, "list_open_work")
    expect(page.locator("#handover-items")).to_contain_text("2栋电梯困人")

    # The clerk acknowledges the item, then takes over; the guard signs the hand-over.
    switch_to(page, "cs_clerk", details)
    page.locator("#handover-items button[type=submit]").click()
    expect(page.locator("#handover-items")).to_contain_text("已确认")
    fire(page, "take_over", password=PASSWORD)
    expect(page.locator("#wf-status")).to_contain_text("已接班")
    switch_to(page, "security", details)
    fire(page, "hand_over", password=PASSWORD)
    expect(page.locator("#wf-status")).to_contain_text("已交班")
    shot(page, "duty-handover-by-name")
    with app.app_context():
        assert db.session.get(DutyHandover, handover_id).state == "done"
        follow = db.session.scalar(sa.select(DutyFollowUp).where(DutyFollowUp.log_id == entry_id))
        assert follow.state == "open"  # handed over, not resolved
