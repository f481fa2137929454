"""CMP-9: a written complaint (a letter, or marked written) gets an incoming-letter register number and
is answered in writing — reply text, date, signer — before the resident counts as told; the reply
prints as 《投诉答复函》 on the firm's letterhead and is filed in the unit's archive."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from models import Department, Staff, db
from models.archives import Archive
from models.base import utcnow
from models.complaints import Complaint, reply_letters_in
from tests.conftest import csrf_token
from tests.helpers import make_complaint
from workflow import engine
from workflow.calendar import app_zone

REPLY = {"reply_letter_text": "经核查，保洁班组已返工并加强巡查，特此答复。", "reply_signed_by": "王经理"}


def person(staff_ids: dict[str, int], role: str) -> Staff:
    return db.session.get(Staff, staff_ids[role])


def handled(staff_ids: dict[str, int], **overrides: Any) -> Complaint:
    engineer = person(staff_ids, "engineering")
    engineer.department = db.session.scalar(sa.select(Department).where(Department.key == "engineering"))
    db.session.commit()
    c = make_complaint(department=engineer.department, **overrides)
    db.session.commit()
    engine.fire(c, "dispatch", person(staff_ids, "cs_clerk"))
    engine.fire(c, "accept", engineer)
    engine.fire(c, "handle", engineer, values={"handling_notes": "已安排保洁返工"})
    return c


def today() -> str:
    return utcnow().astimezone(app_zone()).strftime("%Y-%m-%d")


def test_cmp_9_letter_gets_an_incoming_letter_register_number(db_session) -> None:
    letter = make_complaint(channel="letter")
    marked = make_complaint(channel="visit", written=True, unit=letter.unit)
    oral = make_complaint(channel="phone", unit=letter.unit)
    db.session.commit()
    assert letter.letter_register_no.startswith("SW") and marked.letter_register_no.startswith("SW")
    assert letter.written  # a letter is a written complaint
    assert letter.letter_register_no != marked.letter_register_no
    assert oral.letter_register_no is None and not oral.needs_written_reply
    oral.written = True  # marked written later: entered in the register then, once
    db.session.commit()
    number = oral.letter_register_no
    assert number and number.startswith("SW")
    oral.description = "补充说明"
    db.session.commit()
    assert oral.letter_register_no == number


def test_cmp_9_written_complaint_needs_reply_before_resident_told(db_session, staff_ids) -> None:
    c = handled(staff_ids, channel="letter")
    clerk = person(staff_ids, "cs_clerk")
    with pytest.raises(engine.NotAllowed, match="书面回复|written reply"):
        engine.fire(c, "tell", clerk, values={"reply_to_resident": "电话告知"})
    assert db.session.get(Complaint, c.id).state == "handled"
    with pytest.raises(engine.MissingFields):  # text, date and signer all required
        engine.fire(c, "reply_in_writing", clerk, values={"reply_letter_text": REPLY["reply_letter_text"]})
    c = db.session.get(Complaint, c.id)
    with pytest.raises(engine.NotAllowed):  # dated in the future
        engine.fire(c, "reply_in_writing", clerk, values={**REPLY, "reply_letter_date": "2999-01-01"})
    c = db.session.get(Complaint, c.id)
    assert c.reply_recorded_at is None
    engine.fire(c, "reply_in_writing", clerk, values={**REPLY, "reply_letter_date": today()})
    assert c.reply_recorded_at is not None and c.reply_signed_by == "王经理" and c.state == "handled"
    engine.fire(c, "tell", clerk, values={"reply_to_resident": "已寄送书面答复函"})
    assert c.state == "told"


def test_cmp_9_oral_complaint_is_told_without_a_letter(db_session, staff_ids) -> None:
    c = handled(staff_ids, channel="phone")
    clerk = person(staff_ids, "cs_clerk")
    with pytest.raises(engine.NotAllowed):
        engine.fire(c, "reply_in_writing", clerk, values={**REPLY, "reply_letter_date": today()})
    c = db.session.get(Complaint, c.id)
    engine.fire(c, "tell", clerk, values={"reply_to_resident": "电话告知"})
    assert c.state == "told"


def test_cmp_9_reply_is_filed_in_the_units_archive_and_listed_there(db_session, staff_ids, login_as) -> None:
    c = handled(staff_ids, channel="letter")
    engine.fire(c, "reply_in_writing", person(staff_ids, "cs_clerk"), values={**REPLY, "reply_letter_date": today()})
    archive = db.session.scalar(sa.select(Archive).where(Archive.unit_id == c.unit_id))
    assert archive is not None and c.reply_archive_id == archive.id
    assert [x.id for x in reply_letters_in(archive.id)] == [c.id]
    page = login_as("cs_clerk").get(f"/admin/archive/details/?id={archive.id}").get_data(as_text=True)
    assert 'id="reply-letters"' in page and "投诉答复函" in page and c.letter_register_no in page


def test_cmp_9_reply_prints_as_a_letter_on_the_firms_letterhead(app, db_session, staff_ids, login_as) -> None:
    c = handled(staff_ids, channel="letter")
    client = login_as("cs_clerk")
    assert client.get(f"/admin/print/complaint/{c.id}/reply.pdf").status_code == 404  # nothing recorded yet
    engine.fire(c, "reply_in_writing", person(staff_ids, "cs_clerk"), values={**REPLY, "reply_letter_date": today()})
    response = client.get(f"/admin/print/complaint/{c.id}/reply.pdf")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(response.data)).pages).replace(" ", "")
    for expected in ("投诉答复函", app.config["FIRM_NAME"], "王经理", c.letter_register_no, today(), "保洁班组已返工"):
        assert expected in text, expected


def test_cmp_9_reply_recorded_over_http_then_told(db_session, staff_ids, login_as) -> None:
    c = handled(staff_ids, channel="letter")
    client = login_as("cs_clerk")
    page = client.get(f"/admin/complaint/details/?id={c.id}").get_data(as_text=True)
    assert 'id="written-reply-needed"' in page and "记录书面回复" in page
    data = {
        "csrf_token": csrf_token(client),
        "id": c.id,
        "name": "tell",
        "version": c.version,
        "comment": "",
        "field_reply_to_resident": "电话告知",
    }
    page = client.post("/admin/complaint/transition/", data=data, follow_redirects=True).get_data(as_text=True)
    assert "书面投诉须书面回复" in page
    db.session.rollback()
    c = db.session.get(Complaint, c.id)
    assert c.state == "handled"
    data = {
        "csrf_token": csrf_token(client),
        "id": c.id,
        "name": "reply_in_writing",
        "version": c.version,
        "comment": "",
        "field_reply_letter_text": REPLY["reply_letter_text"],
        "field_reply_letter_date": today(),
        "field_reply_signed_by": "王经理",
    }
    client.post("/admin/complaint/transition/", data=data, follow_redirects=True)
    db.session.rollback()
    c = db.session.get(Complaint, c.id)
    assert c.reply_recorded_at is not None
    page = client.get(f"/admin/complaint/details/?id={c.id}").get_data(as_text=True)
    assert 'id="print-reply-letter"' in page and "收文登记号" in page


def test_cmp_9_reply_date_cannot_precede_the_letter(db_session, staff_ids) -> None:
    c = handled(staff_ids, channel="letter")
    received = c.received_at.astimezone(app_zone()).date()
    with pytest.raises(engine.NotAllowed):
        engine.fire(
            c,
            "reply_in_writing",
            person(staff_ids, "cs_clerk"),
            values={**REPLY, "reply_letter_date": str(received - timedelta(days=1))},
        )


def test_cmp_9_vis_7_demo_seed_has_a_letter_answered_in_writing_and_signed_on_site_visits(runner, db_session) -> None:
    from models.visits import Visit, completed_visit_for

    for username, key in (("engineer", "engineering"), ("guard", "security"), ("clerk", "cs")):  # as `make run`
        account = db.session.scalar(sa.select(Staff).where(Staff.username == username))
        account.department = db.session.scalar(sa.select(Department).where(Department.key == key))
    db.session.commit()
    result = runner.invoke(args=["seed", "--demo"])
    assert result.exit_code == 0, result.output
    answered = db.session.scalars(
        sa.select(Complaint).where(Complaint.reply_recorded_at.is_not(None), Complaint.channel == "letter")
    ).all()
    assert answered and all(c.letter_register_no and c.reply_archive_id for c in answered)
    assert any(c.state in ("told", "visited", "closed") for c in answered)
    weighty = db.session.scalars(
        sa.select(Complaint).where(
            Complaint.severity.in_(("important", "major")), Complaint.state.in_(("visited", "closed"))
        )
    ).all()
    assert weighty
    for c in weighty:
        visit = completed_visit_for(c)
        assert isinstance(visit, Visit) and visit.method == "on_site" and visit.has_signature


def test_cmp_9_my_work_offers_the_written_reply_not_the_telling(db_session, staff_ids) -> None:
    from workflow.inbox import my_work

    letter = handled(staff_ids, channel="letter")
    oral = handled(staff_ids, channel="phone", unit=letter.unit)
    clerk = person(staff_ids, "cs_clerk")
    steps = {(i.record.id, t.name) for i in my_work(clerk) if i.kind == "transition" for t in i.transitions}
    assert (letter.id, "reply_in_writing") in steps and (letter.id, "tell") not in steps
    assert (oral.id, "tell") in steps and (oral.id, "reply_in_writing") not in steps
    engine.fire(letter, "reply_in_writing", clerk, values={**REPLY, "reply_letter_date": today()})
    steps = {(i.record.id, t.name) for i in my_work(clerk) if i.kind == "transition" for t in i.transitions}
    assert (letter.id, "tell") in steps and (letter.id, "reply_in_writing") not in steps
