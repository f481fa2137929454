"""One complaint walked through Chromium from intake to a manager's close, each step by the role the
regulations give it (CMP-1, CMP-4, CMP-5, VIS-1, VIS-7); a written complaint answered by a printed
reply letter (CMP-9). Fixtures: tests/browser_support.py."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask import Flask
from playwright.sync_api import Page, expect

from models import Department, Staff, db
from models.complaints import Complaint
from models.visits import Visit
from tests.browser_support import log_in, save, shot

pytestmark = pytest.mark.browser


def switch_to(page: Page, role: str, path: str) -> None:
    """Sign out (fresh cookies), open ``path`` and sign in there as ``role``."""
    page.wait_for_load_state("networkidle")  # no response still on its way to set a cookie again
    page.context.clear_cookies()
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    log_in(page, role)


def fire(page: Page, transition: str, **fields: str) -> None:
    """Press a workflow button on the details page, filling the fields its form asks for."""
    form = page.locator(f'form.wf-transition[data-transition="{transition}"]')
    for name, value in fields.items():
        form.locator(f'[name="{name}"]').fill(value)
    form.locator("button[type=submit]").click()


def status(page: Page, text: str) -> None:
    expect(page.locator("#wf-status")).to_contain_text(text)


def sign_on_pad(page: Page) -> None:
    """VIS-3: the resident draws a signature on the visit's pad, then it is saved."""
    pad = page.locator("#signature-pad")
    expect(pad).to_be_visible()
    page.wait_for_load_state()
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 80)
    page.mouse.down()
    for step in range(1, 12):
        page.mouse.move(box["x"] + 20 + step * 25, box["y"] + 80 + (step % 3 - 1) * 30)
    page.mouse.up()
    page.locator("#signature-form button[type=submit]").click()
    expect(page.locator("#attachments")).to_be_visible()


def test_cmp_4_cmp_5_vis_1_browser_complaint_from_intake_to_managers_close(
        app: Flask, page: Page, staff_ids: dict[str, int]) -> None:
    """A clerk registers a major complaint (read back to the resident) and dispatches it to
    engineering; the engineering head signs receipt, records the handling and the on-site follow-up
    with the resident's signature (VIS-7);
    the clerk tells the resident and marks it visited; the supervisor may not close a major
    complaint, the manager does."""
    with app.app_context():
        engineering = db.session.scalar(sa.select(Department).where(Department.key == "engineering"))
        head = db.session.get(Staff, staff_ids["engineering"])
        head.department, head.department_head = engineering, True
        db.session.commit()
        engineering_id = engineering.id
    page.on("dialog", lambda dialog: dialog.accept())

    # 1. The clerk registers the complaint (CMP-1) and dispatches it (CMP-4).
    switch_to(page, "cs_clerk", "/admin/complaint/new/")
    page.locator("#channel").select_option("phone")
    page.locator("#complainant_name").fill("王女士")
    page.locator("#contact_phone").fill("13800138000")
    page.locator("#occurred_at").fill((datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=1))
                                      .strftime("%Y-%m-%d %H:%M"))
    page.locator("#location").fill("3栋电梯")
    page.locator("#subject").fill("工程部")
    page.locator("#description").fill("电梯多次报修仍反复停运, 老人被困二十分钟")
    page.locator("#demand").fill("彻底修复并书面答复")
    page.locator("#category").select_option("repair")
    page.locator("#severity").select_option("major")
    page.locator("#department").select_option(str(engineering_id), force=True)  # a select2 box
    save(page)
    expect(page.locator("form.admin-form")).to_contain_text("请向住户复述")  # CMP-1: not read back yet
    page.locator("#read_back_confirmed").check()
    save(page)
    with app.app_context():
        complaint = db.session.scalar(sa.select(Complaint).where(Complaint.complainant_name == "王女士"))
        assert complaint is not None and complaint.state == "received", "the form did not save"
        complaint_id, number = complaint.id, complaint.number
    details = f"/admin/complaint/details/?id={complaint_id}"
    page.goto(details)
    expect(page.locator("body")).to_contain_text(number)
    fire(page, "dispatch")
    status(page, "已派单")
    shot(page, "complaint-1-dispatched")

    # 2. The engineering head signs receipt and records the handling.
    switch_to(page, "engineering", details)
    fire(page, "accept")
    fire(page, "handle", field_handling_notes="更换电梯主板, 维保单位现场测试正常")
    status(page, "已处理")

    # 3. The follow-up visit drafted at handling (VIS-1), on site for a major complaint (VIS-7): the head
    #    visits the resident, who signs on the pad.
    with app.app_context():
        visit_id = db.session.scalar(sa.select(Visit.id).where(Visit.complaint_id == complaint_id))
        assert db.session.get(Visit, visit_id).method == "on_site"
    page.goto(f"/admin/visit/edit/?id={visit_id}")
    page.locator("#visited_at").fill(datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M"))
    page.locator("#opinion").fill("电梯运行正常, 住户满意")
    save(page)
    page.goto(f"/admin/visit/details/?id={visit_id}")
    sign_on_pad(page)
    fire(page, "record")
    expect(page.locator("#wf-status")).to_contain_text("已记录")

    # 4. The clerk tells the resident and marks the follow-up done.
    switch_to(page, "cs_clerk", details)
    fire(page, "tell", field_reply_to_resident="已电话告知处理结果")
    fire(page, "visit")
    status(page, "已回访")

    # 5. CMP-5: the supervisor sees no close button on a major complaint; the manager closes it.
    switch_to(page, "cs_supervisor", details)
    expect(page.locator('form.wf-transition[data-transition="close"]')).to_have_count(0)
    switch_to(page, "manager", details)
    fire(page, "close")
    status(page, "已办结")
    expect(page.locator("table").filter(has_text="manager").last).to_be_visible()  # the timeline names the manager
    shot(page, "complaint-2-closed")
    with app.app_context():
        done: Any = db.session.get(Complaint, complaint_id)
        assert (done.state, done.severity, done.closed_at is not None) == ("closed", "major", True)


def test_cmp_9_browser_written_complaint_answered_by_a_printed_letter(
        app: Flask, page: Page, staff_ids: dict[str, int]) -> None:
    """A letter is registered (收文登记号), handled; telling the resident is refused until the written
    reply is recorded; the reply prints as 《投诉答复函》 and the unit's archive lists it."""
    import io
    import shutil
    import subprocess

    from pypdf import PdfReader

    from models.archives import Archive
    from tests.browser_support import ARTIFACTS
    from tests.helpers import make_complaint
    from workflow import engine

    with app.app_context():
        engineering = db.session.scalar(sa.select(Department).where(Department.key == "engineering"))
        head = db.session.get(Staff, staff_ids["engineering"])
        head.department, head.department_head = engineering, True
        db.session.commit()
        c = make_complaint(channel="letter", department=engineering, complainant_name="刘先生",
                           description="地下车库照明长期损坏，夜间无法看清车位", subject="工程部")
        db.session.commit()
        engine.fire(c, "dispatch", db.session.get(Staff, staff_ids["cs_clerk"]))
        engine.fire(c, "accept", head)
        engine.fire(c, "handle", head, values={"handling_notes": "已更换车库全部灯管并增加巡检"})
        complaint_id, register_no = c.id, c.letter_register_no
    page.set_viewport_size({"width": 1366, "height": 900})
    page.on("dialog", lambda dialog: dialog.accept())
    details = f"/admin/complaint/details/?id={complaint_id}"
    switch_to(page, "cs_clerk", details)
    expect(page.locator("#written-reply-needed")).to_be_visible()
    expect(page.locator('form.wf-transition[data-transition="tell"]')).to_have_count(0)  # no letter yet
    status(page, "已处理")
    today = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d")
    fire(page, "reply_in_writing",
         field_reply_letter_text="经核查，车库照明已全部修复，并已增加每日巡检。感谢您的来信监督。",
         field_reply_letter_date=today, field_reply_signed_by="王经理（管理处经理）")
    expect(page.locator("#print-reply-letter")).to_be_visible()
    expect(page.locator("body")).to_contain_text(register_no)
    shot(page, "complaint-3-written-reply")
    response = page.request.get(f"/admin/print/complaint/{complaint_id}/reply.pdf")
    assert response.status == 200 and response.body().startswith(b"%PDF")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(response.body())).pages).replace(" ", "")
    assert "投诉答复函" in text and register_no in text and "王经理" in text
    pdf = ARTIFACTS / "complaint-reply-letter.pdf"
    pdf.write_bytes(response.body())
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "80", "-singlefile", str(pdf),
                        str(ARTIFACTS / "complaint-reply-letter")], check=True)
    fire(page, "tell", field_reply_to_resident="书面答复函已寄送住户")
    status(page, "已反馈住户")
    with app.app_context():
        archive_id = db.session.scalar(sa.select(Archive.id).join(Complaint, Complaint.reply_archive_id == Archive.id)
                                       .where(Complaint.id == complaint_id))
    page.goto(f"/admin/archive/details/?id={archive_id}")
    expect(page.locator("#reply-letters")).to_contain_text(register_no)
