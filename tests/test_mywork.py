""""My work" (待办), its menu badge, and approval reminders (``engine.remind``, ``flask workflow remind``).

Key custody is the shipped workflow: "report lost" waits for a supervisor's sign-off, "put back"
is a to-do for the front desk while keys are out.
"""

from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask, g

from models import Notification, Staff, db
from models.base import utcnow
from models.key_custody import KeyCustody
from tests.conftest import PASSWORD
from tests.helpers import make_building, make_key_custody, make_unit
from tests.test_mail import inbox, set_email  # noqa: F401  (the real local SMTP server fixture)
from workflow import engine, settings
from workflow import inbox as work

BADGE = re.compile(r'id="mywork-badge">(\d+)<')
ITEM = re.compile(r'class="mywork-item mywork-(\w+)[^"]*"\s+data-record-type="(\w+)" data-record-id="(\d+)"')


def staff(staff_ids: dict[str, int], role: str) -> Staff:
    return db.session.get(Staff, staff_ids[role])


def keys_in_cabinet(n: int) -> list[KeyCustody]:
    building = make_building()
    return [make_key_custody(unit=make_unit(building, code=f"A-12-{1201 + i}", floor=12)) for i in range(n)]


def report_lost(keys: KeyCustody, clerk: Staff) -> None:
    assert engine.fire(keys, "report_lost", clerk, "不见了") == "requested"


def take_out(keys: KeyCustody, clerk: Staff) -> None:
    engine.fire(keys, "check_out", clerk, values={"current_holder": "王师傅", "current_purpose": "维修"})


def approvals(items: list[work.WorkItem]) -> list[int]:
    return [i.record.id for i in items if i.kind == "approve"]


def listed(html: str) -> list[tuple[str, str, int]]:
    return [(kind, rtype, int(rid)) for kind, rtype, rid in ITEM.findall(html)]


def notices_of(staff_id: int) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Notification)
                             .where(Notification.staff_id == staff_id))


# --- the list -------------------------------------------------------------------------------------
def test_wf_mywork_approval_appears_for_approver_and_disappears_after_deciding(app, staff_ids, db_session,
                                                                               login_as):
    keys = keys_in_cabinet(1)[0]
    clerk, supervisor = staff(staff_ids, "cs_clerk"), staff(staff_ids, "cs_supervisor")
    db.session.commit()
    report_lost(keys, clerk)

    assert approvals(work.my_work(supervisor)) == [keys.id]
    client = login_as("cs_supervisor")
    page = client.get("/admin/mywork/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert ("approve", "key_custody", keys.id) in listed(html)
    assert f'href="/admin/key_custody/details/?id={keys.id}"' in html  # the record links to its details

    assert engine.decide(keys, supervisor, True, "确认遗失") == "approved"
    assert approvals(work.my_work(supervisor)) == []
    assert ("approve", "key_custody", keys.id) not in listed(client.get("/admin/mywork/").get_data(as_text=True))


def test_wf_mywork_rejection_also_clears_the_item(app, staff_ids, db_session):
    keys = keys_in_cabinet(1)[0]
    clerk, supervisor = staff(staff_ids, "cs_clerk"), staff(staff_ids, "cs_supervisor")
    db.session.commit()
    report_lost(keys, clerk)
    assert engine.decide(keys, supervisor, False, "钥匙在柜里") == "rejected"
    assert approvals(work.my_work(supervisor)) == []


def test_wf_mywork_clerk_does_not_see_supervisors_approvals(app, staff_ids, db_session, login_as):
    keys = keys_in_cabinet(1)[0]
    clerk = staff(staff_ids, "cs_clerk")
    db.session.commit()
    report_lost(keys, clerk)

    for role in ("cs_clerk", "manager", "engineering"):  # none of them signs "supervisor confirms the loss"
        assert approvals(work.my_work(staff(staff_ids, role))) == [], role
    html = login_as("cs_clerk").get("/admin/mywork/").get_data(as_text=True)
    assert [item for item in listed(html) if item[0] == "approve"] == []


def test_wf_mywork_sorted_by_due_time_soonest_first_undated_last(app, staff_ids, db_session, login_as):
    clerk = staff(staff_ids, "cs_clerk")
    keys = keys_in_cabinet(4)
    now = utcnow()
    for k in keys:
        take_out(k, clerk)  # "put back" is now a to-do of the front desk
    # due_at is not engine-protected: the regulation's deadline rules set it.
    dues = [now + timedelta(hours=5), None, now - timedelta(hours=1), now + timedelta(hours=2)]
    for k, due in zip(keys, dues, strict=True):
        k.due_at = due
    db.session.commit()

    items = [i for i in work.my_work(clerk) if i.kind == "transition"]
    expected = [keys[2].id, keys[3].id, keys[0].id, keys[1].id]
    assert [i.record.id for i in items] == expected
    assert all("check_in" in [t.name for t in i.transitions] for i in items)

    html = login_as("cs_clerk").get("/admin/mywork/").get_data(as_text=True)
    assert [rid for kind, _t, rid in listed(html) if kind == "transition"] == expected
    overdue = re.findall(r'data-record-id="(\d+)">(?:(?!</tr>).)*mywork-overdue', html, re.S)
    assert overdue == [str(keys[2].id)]  # only the one past its due time is highlighted


def test_wf_mywork_approval_and_todo_interleave_by_due_time(app, staff_ids, db_session):
    clerk, supervisor = staff(staff_ids, "cs_clerk"), staff(staff_ids, "cs_supervisor")
    lost, out = keys_in_cabinet(2)
    now = utcnow()
    take_out(out, supervisor)
    lost.due_at, out.due_at = now + timedelta(hours=3), now + timedelta(hours=1)
    db.session.commit()
    report_lost(lost, clerk)

    items = work.my_work(supervisor)
    assert [(i.kind, i.record.id) for i in items] == [("transition", out.id), ("approve", lost.id)]


def test_wf_mywork_badge_counts_the_items(app, staff_ids, db_session, login_as):
    clerk = staff(staff_ids, "cs_clerk")
    a, b, c = keys_in_cabinet(3)
    take_out(a, clerk)
    take_out(b, clerk)
    db.session.commit()
    report_lost(c, clerk)
    supervisor = staff(staff_ids, "cs_supervisor")
    expected = work.count(supervisor)
    assert expected == 3  # two keys to put back, one loss to confirm

    client = login_as("cs_supervisor")
    for url in ("/admin/", "/admin/mywork/", "/admin/key_custody/"):
        html = client.get(url).get_data(as_text=True)
        assert BADGE.findall(html) == [str(expected)], url
        assert html.index('id="mywork-menu"') < html.index('href="/admin/key_custody/"')  # first in the menu

    html = login_as("finance").get("/admin/").get_data(as_text=True)
    assert 'id="mywork-menu"' in html and BADGE.search(html) is None  # nothing waiting: no number


def test_wf_mywork_every_active_role_opens_the_page(app, staff_ids, login_as):
    for role in staff_ids:
        response = login_as(role).get("/admin/mywork/")
        assert response.status_code == 200, role


def test_wf_mywork_anonymous_gets_the_login_page_and_no_badge(app, staff_ids):
    client = app.test_client()
    response = client.get("/admin/mywork/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert "mywork-badge" not in client.get("/login").get_data(as_text=True)


def test_wf_mywork_inactive_account_gets_no_page(app, staff_ids, login_as):
    client = login_as("cs_supervisor")
    assert client.get("/admin/mywork/").status_code == 200
    with app.app_context():
        db.session.get(Staff, staff_ids["cs_supervisor"]).active = False
        db.session.commit()
    response = client.get("/admin/mywork/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


# --- reminders ------------------------------------------------------------------------------------
def test_wf_remind_notifies_approvers_in_app_and_by_email_once_per_period(app, staff_ids, db_session, inbox):  # noqa: F811
    set_email(app, staff_ids["cs_supervisor"], "supervisor@example.com")
    set_email(app, staff_ids["manager"], "manager@example.com")
    keys = keys_in_cabinet(1)[0]
    clerk = staff(staff_ids, "cs_clerk")
    db.session.commit()
    report_lost(keys, clerk)
    supervisor_id = staff_ids["cs_supervisor"]
    notes, mails = notices_of(supervisor_id), len(inbox.to("supervisor@example.com"))
    assert (notes, mails) == (1, 1)  # the request itself told the approver

    later = utcnow() + timedelta(hours=settings.value("workflow.approval_reminder_hours") + 1)
    assert engine.remind(now=later) == 1
    assert notices_of(supervisor_id) == notes + 1
    reminder = inbox.to("supervisor@example.com")[-1]
    assert len(inbox.to("supervisor@example.com")) == mails + 1
    newest = db.session.scalars(sa.select(Notification).where(Notification.staff_id == supervisor_id)
                                .order_by(Notification.id.desc())).first()
    assert reminder["Subject"] == newest.subject

    assert engine.remind(now=later) == 0  # the same period: nothing again
    assert engine.remind(now=later + timedelta(hours=1)) == 0
    assert notices_of(supervisor_id) == notes + 1 and len(inbox.to("supervisor@example.com")) == mails + 1
    assert inbox.to("manager@example.com") == []  # only those who may sign are reminded

    next_period = later + timedelta(hours=settings.value("workflow.approval_reminder_hours"))
    assert engine.remind(now=next_period) == 1
    assert notices_of(supervisor_id) == notes + 2


def test_wf_remind_not_before_the_setting_time(app, staff_ids, db_session, inbox):  # noqa: F811
    set_email(app, staff_ids["cs_supervisor"], "supervisor@example.com")
    keys = keys_in_cabinet(1)[0]
    db.session.commit()
    report_lost(keys, staff(staff_ids, "cs_clerk"))
    before = notices_of(staff_ids["cs_supervisor"]), len(inbox.messages)
    hours = settings.value("workflow.approval_reminder_hours")

    assert engine.remind(now=utcnow() + timedelta(hours=hours - 1)) == 0
    assert (notices_of(staff_ids["cs_supervisor"]), len(inbox.messages)) == before

    settings.change("workflow.approval_reminder_hours", "2", None)  # the admin shortens the period
    db.session.commit()
    assert engine.remind(now=utcnow() + timedelta(hours=1)) == 0
    assert engine.remind(now=utcnow() + timedelta(hours=3)) == 1
    assert notices_of(staff_ids["cs_supervisor"]) == before[0] + 1


def test_wf_remind_skips_decided_requests(app, staff_ids, db_session):
    keys = keys_in_cabinet(1)[0]
    db.session.commit()
    report_lost(keys, staff(staff_ids, "cs_clerk"))
    engine.decide(keys, staff(staff_ids, "cs_supervisor"), True, "确认")
    assert engine.remind(now=utcnow() + timedelta(days=3)) == 0


def test_wf_remind_cli_sends_once(app: Flask, staff_ids, runner, inbox):  # noqa: F811
    set_email(app, staff_ids["cs_supervisor"], "supervisor@example.com")
    with app.test_request_context():
        keys = keys_in_cabinet(1)[0]
        db.session.commit()
        report_lost(keys, db.session.get(Staff, staff_ids["cs_clerk"]))
        hours = settings.value("workflow.approval_reminder_hours")
        # Move the request back in time instead of waiting (a plain UPDATE: the ORM guard protects it).
        db.session.execute(sa.update(KeyCustody).where(KeyCustody.id == keys.id)
                           .values(pending_since=utcnow() - timedelta(hours=hours + 1)))
        db.session.commit()
        g.pop("pm_settings", None)
    mails = len(inbox.to("supervisor@example.com"))

    first = runner.invoke(args=["workflow", "remind"])
    assert first.exit_code == 0 and "reminders sent: 1" in first.output
    second = runner.invoke(args=["workflow", "remind"])
    assert second.exit_code == 0 and "reminders sent: 0" in second.output
    assert len(inbox.to("supervisor@example.com")) == mails + 1


def test_wf_remind_password_step_reaches_the_manager(app, staff_ids, db_session):
    """ACC-5: a deletion request waits for a manager; the reminder goes to the manager."""
    keys = keys_in_cabinet(1)[0]
    db.session.commit()
    engine.fire(keys, "delete", staff(staff_ids, "cs_clerk"), "登记错误", password=PASSWORD)
    before = notices_of(staff_ids["manager"])
    assert engine.remind(now=utcnow() + timedelta(days=2)) == 1
    assert notices_of(staff_ids["manager"]) == before + 1
