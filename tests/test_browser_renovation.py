"""One renovation walked through Chromium from application to refund, each step by the department the
regulations give it (REN-1, REN-2, REN-3, REN-5, REN-7, REN-8; issue 6 part 8). Fixtures:
tests/browser_support.py."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask import Flask
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from models import db
from models.renovation import Renovation
from tests.browser_support import ARTIFACTS, log_in, save, shot
from tests.helpers import make_occupancy, make_resident, make_unit, valid_id

pytestmark = pytest.mark.browser

BEIJING = ZoneInfo("Asia/Shanghai")
# A tiny real PNG header: the store checks the type by content (REN-1 drawings).
SCAN = b"%PDF-1.4\n%scan\n"
DRAWING = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00" + b"\x00" * 64


def switch_to(page: Page, role: str, path: str) -> None:
    """Sign out (fresh cookies), open ``path`` and sign in there as ``role``."""
    page.wait_for_load_state("networkidle")  # no response still on its way to set a cookie again
    page.context.clear_cookies()
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    log_in(page, role)


def fire(page: Page, transition: str, **fields: str) -> None:
    """Press a workflow button on the details page, filling the fields its form asks for, and wait
    for the details page to come back."""
    form = page.locator(f'form.wf-transition[data-transition="{transition}"]')
    expect(form).to_have_count(1)
    for name, value in fields.items():
        box = form.locator(f'[name="field_{name}"]')
        expect(box).to_have_count(1)  # the step asks for this value
        box.fill(value)
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    expect(page.locator("#wf-status")).to_be_visible()
    refused = page.locator(".alert-danger")
    assert refused.count() == 0, f"{transition}: {refused.all_inner_texts()}"


def state_label(app: Flask, state: str) -> str:
    """The status as the screens word it (the site's language, whatever the catalog holds)."""
    with app.test_request_context():
        return str(Renovation.workflow.state_label(state))


def status(page: Page, app: Flask, state: str) -> None:
    expect(page.locator("#wf-status")).to_contain_text(state_label(app, state))


def pdf_text(page: Page, path: str) -> str:
    """Fetch a printed document with the signed-in browser's cookies; its text, spaces removed."""
    response = page.request.get(path)
    assert response.status == 200, (path, response.status)
    assert response.headers["content-type"] == "application/pdf" and response.body().startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(response.body()))
    return "".join(p.extract_text() for p in reader.pages).replace(" ", "").replace("\n", "")


def set_ajax(page: Page, field: str, value: int) -> None:
    """Flask-Admin's ajax relation box keeps the chosen id in a hidden input (select2 shows the name)."""
    page.locator(f"#{field}").evaluate("(el, v) => { el.value = v; }", str(value))


def test_ren_1_ren_2_ren_3_ren_7_browser_renovation_from_application_to_refund(
        app: Flask, page: Page, staff_ids: dict[str, int]) -> None:
    """The clerk takes the application with its drawing; engineering returns it with a defects notice
    to owner and tenant (printed), then approves and sets the fees; finance collects them; the clerk
    issues passes and the permit (printed); the management department and security patrol; the works
    finish and acceptance is applied for; engineering fails the first inspection (rectification notice
    printed), then accepts (acceptance notice printed); the passes come back and finance refunds the
    deposits."""
    with app.app_context():
        unit = make_unit()
        owner = make_resident(name="周业主")
        make_occupancy(unit, owner)
        make_occupancy(unit, make_resident(name="吴租户", phone="13700137000", id_number=valid_id(2)),
                       kind="tenant")
        db.session.commit()
        unit_id, owner_id = unit.id, owner.id
    page.on("dialog", lambda dialog: dialog.accept())
    today = datetime.now(BEIJING).date()

    # 1. REN-1: the clerk takes the application and uploads a drawing.
    switch_to(page, "cs_clerk", "/admin/renovation/new/")
    expect(page.locator("form.admin-form")).to_be_visible()
    set_ajax(page, "unit", unit_id)
    set_ajax(page, "applicant", owner_id)
    page.locator("#scope").fill("客厅吊顶, 卫生间防水重做")
    page.locator("#contractor").fill("安居装饰工程有限公司")
    page.locator("#contractor_contact").fill("陈工")
    page.locator("#contractor_phone").fill("13900139000")
    page.locator("#planned_start").fill((today + timedelta(days=3)).isoformat())
    page.locator("#planned_end").fill((today + timedelta(days=45)).isoformat())
    page.locator("#fees_paid_until").fill(today.isoformat())
    page.locator("#fees_confirmed_by").fill("财务部 赵")
    page.keyboard.press("Escape")  # close a date picker left open
    page.locator("#pledge_signed").check()
    page.locator("#drawing_lighting").check()
    page.locator("#drawing_ceiling").check()
    with page.expect_navigation():
        save(page)
    with app.app_context():
        ren = db.session.scalar(sa.select(Renovation).where(Renovation.contractor == "安居装饰工程有限公司"))
        assert ren is not None and ren.state == "draft", "the application form did not save"
        ren_id = ren.id
    details = f"/admin/renovation/details/?id={ren_id}"
    page.goto(details)
    page.locator("#drawing-file").set_input_files(files=[{"name": "客厅吊顶平面图.png", "mimeType": "image/png",
                                                          "buffer": DRAWING}])
    with page.expect_navigation():
        page.locator("#drawing-form button[type=submit]").click()
    expect(page.locator("#drawing-files")).to_contain_text("客厅吊顶平面图.png")
    fire(page, "submit")
    status(page, app, "submitted")
    shot(page, "renovation-1-submitted")

    # 2. REN-2: engineering's pre-inspection finds a defect: notices to owner and tenant, back to the desk.
    switch_to(page, "engineering", details)
    fire(page, "return_defects", defects_found="卫生间烟感被遮挡, 需恢复")
    status(page, app, "returned")
    text = pdf_text(page, f"/admin/renovation-print/{ren_id}/defects.pdf")
    assert "装修预检遗留问题通知书" in text and "周业主" in text and "吴租户" in text and "烟感被遮挡" in text
    switch_to(page, "cs_clerk", details)
    fire(page, "submit")
    status(page, app, "submitted")

    # 3. REN-2: engineering reviews again, approves and sets the fees.
    switch_to(page, "engineering", details)
    fire(page, "approve", deposit_amount="2000", debris_fee="300", pass_count="2", pass_deposit_each="50")
    status(page, app, "approved")

    # 4. REN-3: finance records each payment with its receipt.
    switch_to(page, "finance", details)
    fire(page, "pay_deposit", receipt_no="SJ-20001")
    fire(page, "pay_debris", receipt_no="SJ-20002")
    fire(page, "pay_pass_deposits", receipt_no="SJ-20003")
    with app.app_context():
        charges = db.session.get(Renovation, ren_id).charges
        assert charges and all(c.paid_at is not None and c.receipt_no for c in charges)

    # 5. REN-3: the clerk notifies the neighbours, issues the passes and the permit, and prints it.
    switch_to(page, "cs_clerk", details)
    fire(page, "issue_permit", neighbours_notified="A-12-1202, A-13-1203 张贴告示")
    status(page, app, "permitted")
    with app.app_context():
        permit_no = db.session.get(Renovation, ren_id).permit_no
    assert permit_no
    expect(page.locator("body")).to_contain_text(permit_no)
    link = page.locator("#printables a").filter(has_text="装修许可证")  # REN-8: printed from the renovation
    expect(link).to_have_attribute("href", f"/admin/renovation-print/{ren_id}/permit.pdf")
    text = pdf_text(page, link.get_attribute("href") or "")
    for expected in ("装修许可证", permit_no, "周业主", "安居装饰工程有限公司", "2,000.00", "SJ-20003",
                     f"{permit_no}-02"):
        assert expected in text, expected
    shot(page, "renovation-2-permitted")

    # 6. REN-5: the management department and security patrol the site.
    for role, finding in (("management_dept", "现场整洁, 出入证佩戴齐全"), ("security", "灭火器到位, 无动火作业")):
        switch_to(page, role, details)
        fire(page, "patrol", inspection_findings=finding)

    # 7. REN-7 / REN-10: the works finish; the clerk files the scans the acceptance application brings
    # (as-built drawings, invoice copies, deposit receipt copy) and takes the application.
    switch_to(page, "cs_clerk", details)
    fire(page, "finish", finished_at=today.isoformat())
    expect(page.locator("#acceptance-missing")).to_be_visible()
    scans = (("asbuilt", "竣工图纸.pdf"), ("invoice", "材料设备发票.pdf"), ("deposit_receipt", "押金收据.pdf"))
    for kind, name in scans:
        page.locator("#acceptance-kind").select_option(kind)
        page.locator("#acceptance-file").set_input_files(files=[{"name": name, "mimeType": "application/pdf",
                                                                 "buffer": SCAN}])
        with page.expect_navigation():
            page.locator("#acceptance-form button[type=submit]").click()
        expect(page.locator("#acceptance-checklist")).to_contain_text(name)
    expect(page.locator("#acceptance-missing")).to_contain_text("须交竣工图纸一式三份")
    page.set_viewport_size({"width": 1366, "height": 900})
    page.locator("#acceptance-documents").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "renovation-ren10-acceptance-checklist.png"))  # the 1366x900 view
    fire(page, "apply_acceptance", asbuilt_sets="3")
    status(page, app, "inspecting")

    # 8. REN-7: engineering fails the first inspection, then accepts after the rectification.
    switch_to(page, "engineering", details)
    deadline = (datetime.now(BEIJING) + timedelta(days=7)).strftime("%Y-%m-%d 18:00")
    fire(page, "fail_inspection", rectification_items="阳台地漏被水泥封堵", rectify_by=deadline)
    status(page, app, "rectifying")
    text = pdf_text(page, f"/admin/renovation-print/{ren_id}/rectification.pdf")
    assert "整改通知书" in text and "阳台地漏被水泥封堵" in text and deadline.replace(" ", "") in text
    fire(page, "reinspect")
    status(page, app, "inspecting")
    fire(page, "pass_inspection", vents_unsealed_note="排风口已解封, 工程部 陈")
    status(page, app, "accepted")
    text = pdf_text(page, f"/admin/renovation-print/{ren_id}/acceptance.pdf")
    assert "装修验收合格通知书" in text and "排风口已解封" in text
    for listed in ("竣工图纸", "材料设备发票.pdf", "押金收据.pdf"):  # REN-10: the form lists the documents
        assert listed in text, listed
    shot(page, "renovation-3-accepted")

    # 9. REN-7: the passes come back to the desk; finance refunds the deposits.
    switch_to(page, "cs_clerk", details)
    fire(page, "return_passes")
    switch_to(page, "finance", details)
    fire(page, "refund", receipt_no="TK-20001")
    status(page, app, "closed")
    shot(page, "renovation-4-refunded")

    with app.app_context():
        done: Any = db.session.get(Renovation, ren_id)
        assert done.state == "closed" and done.refunded_at is not None and done.drawing_count == 1
        refunds = {c.kind: c.refunded_amount for c in done.charges}
        assert refunds["deposit"] == Decimal("2000.00") and refunds["debris"] is None
        assert all(c.paid_at is not None and c.receipt_no for c in done.charges)
        patrols = [i.inspector_id for i in done.inspections if i.kind == "patrol"]
        assert patrols == [staff_ids["management_dept"], staff_ids["security"]]
        assert [i.result for i in done.inspections if i.kind == "completion"] == ["fail", "pass"]
        kinds = [n.kind for n in done.notices]
        assert kinds.count("defects") == 2  # REN-2: one to the owner, one to the tenant
        assert {"permit", "neighbours", "rectification", "acceptance"} <= set(kinds)


def test_ren_9_browser_hot_work_starts_once_its_lead_is_checked_in(app: Flask, page: Page,
                                                                   staff_ids: dict[str, int]) -> None:
    """An approved hot-work permit names the contractor's lead; security checks the lead in on site
    (time and name recorded), and only then can the hot work start."""
    from models.renovation import HotWork
    from tests.helpers import make_hot_work, make_renovation
    from tests.test_renovation import to_state
    from tests.workflow_fixtures import staff
    from workflow import engine

    with app.app_context():
        ren = to_state(make_renovation(), staff_ids, "permitted")
        hot = make_hot_work(ren, starts_at=datetime.now(BEIJING) + timedelta(hours=1),
                            ends_at=datetime.now(BEIJING) + timedelta(hours=3))
        db.session.commit()
        engine.fire(hot, "approve", staff(staff_ids, "cs_clerk"))
        engine.decide(hot, staff(staff_ids, "engineering"), True)
        engine.decide(hot, staff(staff_ids, "security"), True)
        hot_id = hot.id
    details = f"/admin/renovation_hot_work/details/?id={hot_id}"
    page.on("dialog", lambda dialog: dialog.accept())
    switch_to(page, "security", details)
    page.set_viewport_size({"width": 1366, "height": 900})
    expect(page.locator("body")).to_contain_text("施工队长 孙")
    expect(page.locator("body")).to_contain_text("未登记到场")
    fire(page, "check_in_lead")
    expect(page.locator("body")).not_to_contain_text("未登记到场")
    shot(page, "renovation-ren9-hot-work-lead-checked-in")
    fire(page, "start")
    with app.app_context():
        done = db.session.get(HotWork, hot_id)
        assert done.state == "running" and done.lead_checked_in_by_id == staff_ids["security"]
