"""A tenant's move-out walked through Chromium (issue 7 item 7, MOV-3/MOV-4): the clerk registers it,
the release slip is refused until the fees are settled and the owner consents, then the slip is
issued and printed. Fixtures: tests/browser_support.py."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from models import db
from models.moving import MoveOut
from models.moving_rules import local_today
from tests.browser_support import log_in, save, shot
from tests.helpers import make_occupancy, make_resident, make_unit, valid_id

pytestmark = pytest.mark.browser


def fire(page: Page, transition: str, **fields: str) -> None:
    form = page.locator(f'form.wf-transition[data-transition="{transition}"]')
    expect(form).to_have_count(1)
    for name, value in fields.items():
        form.locator(f'[name="field_{name}"]').fill(value)
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    expect(page.locator("#wf-status")).to_be_visible()


def test_mov_3_mov_4_browser_tenant_move_out_refused_until_settled_and_consented_then_slip_printed(
        app: Flask, page: Page) -> None:
    with app.app_context():
        unit = make_unit()
        make_occupancy(unit, make_resident(name="房东李", id_number=valid_id(61)))
        tenant = make_occupancy(unit, make_resident(name="租客王", id_number=valid_id(62)), kind="tenant")
        db.session.commit()
        occupancy_id = tenant.id
    page.on("dialog", lambda dialog: dialog.accept())
    planned = local_today() + timedelta(days=5)

    # The clerk registers the move-out (《业主/用户搬出登记表》).
    page.goto("/admin/move_out/new/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    log_in(page, "cs_clerk")
    page.locator("#occupancy").select_option(str(occupancy_id), force=True)
    page.locator("#planned_date").fill(planned.isoformat())
    page.locator("#goods").fill("双人床一张\n衣柜一个")
    page.mouse.click(5, 5)  # close the date picker, which would cover the save button
    save(page)
    page.wait_for_load_state("networkidle")
    with app.app_context():
        move_id = db.session.scalar(sa.select(MoveOut.id))
    assert move_id is not None
    page.goto(f"/admin/move_out/details/?id={move_id}")

    # Refused: no settlement yet (MOV-3); the step is not offered and the page says why.
    slip_button = page.locator('form.wf-transition[data-transition="issue_slip"]')
    expect(slip_button).to_have_count(0)
    expect(page.locator("#slip-blocker")).to_contain_text("MOV-3")
    fire(page, "settle_fees", fees_settled_on=(planned - timedelta(days=4)).isoformat(),
         finance_confirmed_by="财务 陈会计")
    # Still refused: a tenant needs the owner's consent.
    expect(slip_button).to_have_count(0)
    with app.app_context():
        from models.moving_rules import slip_issuable

        reason = str(slip_issuable(db.session.get(MoveOut, move_id)))
    expect(page.locator("#slip-blocker")).to_contain_text(reason)
    fire(page, "owner_consent", owner_consent_name="房东李")
    fire(page, "check_goods")
    fire(page, "issue_slip")
    assert page.locator(".alert-danger").count() == 0
    with app.app_context():
        move = db.session.get(MoveOut, move_id)
        assert move.state == "released"
        slip_id, number = move.slips[0].id, move.slips[0].number
    expect(page.locator("body")).to_contain_text(number)
    shot(page, "moving-1-released")

    # The slip: its details offer the PDF, printed with the number and the goods in Chinese.
    page.goto(f"/admin/release_slip/details/?id={slip_id}")
    link = page.locator("#print-release-slip")
    expect(link).to_have_attribute("href", f"/admin/release_slip/print/{slip_id}.pdf")
    response = page.request.get(f"/admin/release_slip/print/{slip_id}.pdf")
    assert response.status == 200 and response.body().startswith(b"%PDF")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(response.body())).pages).replace(" ", "")
    assert number in text and "放行条" in text and "双人床一张" in text
    shot(page, "moving-2-slip")
