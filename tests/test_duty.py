"""Duty desk (REGULATIONS §9, DTY-1..DTY-9) through the engine and the screens, plus DTY-3's
append-only log enforced by the ORM and the database, and its 3-year retention purge."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from models import db
from models.base import utcnow
from models.duty import (
    SHANGHAI,
    DutyFollowUp,
    DutyLog,
    DutyRoster,
    DutyShift,
    DutySwap,
    add_entry,
    shift_times,
    unconverted_night_items,
    unpublished_rosters,
)
from models.duty_desk import (
    DutyDaySignoff,
    DutyHandover,
    DutyHandoverItem,
    acknowledge,
    open_important_work,
    sign_days,
)
from models.duty_security import PatrolRecord, VisitorLog, short_patrol_days
from models.help_requests import HelpRequest
from models.validators import DomainError
from tests.conftest import PASSWORD, csrf_token
from tests.helpers import make_duty_log, make_help_request, make_unit
from tests.workflow_fixtures import staff
from workflow import engine


def next_month() -> date:
    today = utcnow().astimezone(SHANGHAI).date()
    return (today.replace(day=1) + timedelta(days=32)).replace(day=1)


def roster(month: date, ids: dict[str, int], role: str = "cs_clerk", day: int = 3, kind: str = "night") -> DutyRoster:
    r = DutyRoster(month=month, state="draft")
    db.session.add(r)
    db.session.flush()
    shift = DutyShift(roster=r, staff_id=ids[role], day=month.replace(day=day), kind=kind)
    db.session.add(shift)
    db.session.commit()
    return r


def post(client: FlaskClient, url: str, **data: Any) -> str:
    response = client.post(url, data={"csrf_token": csrf_token(client), **data}, follow_redirects=True)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def fire_http(client: FlaskClient, endpoint: str, record: Any, name: str, **fields: Any) -> str:
    return post(client, f"/admin/{endpoint}/transition/", id=record.id, name=name, version=record.version,
                comment="", **fields)


# --- DTY-1 -----------------------------------------------------------------------------------------
def test_dty_1_shift_times_come_from_settings(db_session) -> None:
    start, end = shift_times(date(2026, 12, 3), "night")
    assert (start.hour, start.minute, end.day, end.hour, end.minute) == (17, 30, 4, 8, 30)
    start, end = shift_times(date(2026, 12, 3), "day")
    assert (start.hour, start.minute, end.hour, end.minute) == (8, 30, 18, 30)
    start, end = shift_times(date(2026, 12, 25), "holiday")
    assert end - start == timedelta(hours=24)


def test_dty_1_supervisor_publishes_next_month_in_time(db_session, staff_ids) -> None:
    r = roster(next_month(), staff_ids)
    assert next_month() in unpublished_rosters()
    with pytest.raises(engine.NotAllowed):
        engine.fire(r, "publish", staff(staff_ids, "cs_clerk"))
    engine.fire(r, "publish", staff(staff_ids, "cs_supervisor"))
    assert (r.state, r.published_late) == ("published", False)
    assert next_month() not in unpublished_rosters()


def test_dty_1_publishing_after_the_month_began_is_flagged_late(db_session, staff_ids) -> None:
    this = utcnow().astimezone(SHANGHAI).date().replace(day=1)
    r = roster(this, staff_ids)
    engine.fire(r, "publish", staff(staff_ids, "cs_supervisor"))
    assert r.published_late is True


def test_dty_1_empty_roster_is_refused_and_published_shifts_are_frozen(db_session, staff_ids) -> None:
    empty = DutyRoster(month=next_month() + timedelta(days=40), state="draft")
    db.session.add(empty)
    db.session.commit()
    with pytest.raises(engine.NotAllowed):
        engine.fire(empty, "publish", staff(staff_ids, "cs_supervisor"))
    r = roster(next_month(), staff_ids)
    engine.fire(r, "publish", staff(staff_ids, "cs_supervisor"))
    extra = DutyShift(roster=r, staff_id=staff_ids["security"], day=next_month(), kind="day")
    with pytest.raises(DomainError):
        extra.check_shift()


def test_dty_1_roster_screen_publish_by_supervisor_only(db_session, staff_ids, login_as) -> None:
    r = roster(next_month(), staff_ids)
    fire_http(login_as("cs_clerk"), "duty_roster", r, "publish")
    db.session.rollback()
    assert db.session.get(DutyRoster, r.id).state == "draft"
    fire_http(login_as("cs_supervisor"), "duty_roster", r, "publish")
    db.session.rollback()
    assert db.session.get(DutyRoster, r.id).state == "published"


# --- DTY-2 / DTY-3 ---------------------------------------------------------------------------------
def test_dty_2_entries_have_a_duty_work_kind(db_session, staff_ids) -> None:
    with pytest.raises(DomainError):
        add_entry(staff(staff_ids, "cs_clerk"), "gossip", "闲聊")
    entry = add_entry(staff(staff_ids, "cs_clerk"), "emergency", "3栋水管爆裂，通知工程部")
    db.session.commit()
    assert entry.kind == "emergency"


def test_dty_3_orm_refuses_edit_and_delete_corrections_are_new_entries(db_session, staff_ids) -> None:
    entry = make_duty_log()
    db.session.commit()
    entry.body = "改过"
    with pytest.raises(DomainError):
        db.session.flush()
    db.session.rollback()
    db.session.delete(db.session.get(DutyLog, entry.id))
    with pytest.raises(DomainError):
        db.session.flush()
    db.session.rollback()
    fix = add_entry(staff(staff_ids, "cs_clerk"), "enquiry", "更正：停水时间为明天", corrects_id=entry.id)
    db.session.commit()
    assert fix.corrects_id == entry.id and db.session.get(DutyLog, entry.id).body == "业主询问停水时间"


def test_dty_3_database_refuses_update_and_delete(db_session, staff_ids) -> None:
    entry_id = make_duty_log().id
    db.session.commit()
    for statement in ("UPDATE duty_log SET body = 'x' WHERE id = :i", "DELETE FROM duty_log WHERE id = :i"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            db.session.execute(sa.text(statement), {"i": entry_id})
        db.session.rollback()
    assert db.session.get(DutyLog, entry_id).body == "业主询问停水时间"


def test_dty_3_screen_has_no_edit_or_delete(db_session, staff_ids, login_as) -> None:
    entry_id = make_duty_log().id
    db.session.commit()
    clerk = login_as("cs_clerk")
    assert clerk.get(f"/admin/duty_log/edit/?id={entry_id}").status_code == 403
    assert clerk.post("/admin/duty_log/delete/", data={"csrf_token": csrf_token(clerk), "id": entry_id}
                      ).status_code == 403
    body = post(clerk, "/admin/duty_log/new/", kind="enquiry", body="更正上一条", corrects_id=str(entry_id),
                desk="main")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(DutyLog)) == 2, body
    new = db.session.scalar(sa.select(DutyLog).where(DutyLog.corrects_id == entry_id))
    assert new.author_id == staff_ids["cs_clerk"]
    cashier = login_as("finance")
    assert cashier.post("/admin/duty_log/new/", data={"csrf_token": csrf_token(cashier), "kind": "enquiry",
                                                      "body": "不该写入", "desk": "main"}).status_code == 403
    assert db.session.scalar(sa.select(sa.func.count()).select_from(DutyLog)) == 2


def test_dty_3_retention_purges_expired_entries_through_the_trigger(db_session, staff_ids) -> None:
    from models.retention import RetentionPolicy
    from tests.test_retention import purge
    from workflow.retention import seed_policies

    seed_policies()
    db.session.commit()
    old = make_duty_log(important=True)
    kept = make_duty_log()
    db.session.commit()
    old_id, kept_id = old.id, kept.id
    db.session.rollback()  # no open transaction may hold duty_log while its trigger is replaced (PostgreSQL)
    # created_at written around the guard (the attacker's path is what the trigger refuses)
    with db.engine.begin() as conn:
        from models.duty import duty_log_guard_statements, duty_log_unguard_statements

        for ddl in duty_log_unguard_statements(conn.dialect.name):
            conn.exec_driver_sql(ddl)
        conn.execute(sa.update(DutyLog.__table__).where(DutyLog.id == old_id)
                     .values(created_at=datetime(2022, 3, 10, tzinfo=UTC)))
        for ddl in duty_log_guard_statements(conn.dialect.name):
            conn.exec_driver_sql(ddl)
    policy = db.session.scalar(sa.select(RetentionPolicy).where(RetentionPolicy.code == "dty3_duty_log"))
    batch = purge(policy, staff_ids, now=datetime(2026, 11, 1, tzinfo=UTC))
    assert batch.state == "done" and batch.done_count == 1
    assert set(db.session.scalars(sa.select(DutyLog.id))) == {kept_id}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(DutyFollowUp)) == 0  # went with it
    with pytest.raises(sa.exc.DBAPIError):  # the batch is done: the marker no longer opens the door
        db.session.execute(sa.text("DELETE FROM duty_log WHERE id = :i"), {"i": kept_id})
    db.session.rollback()


# --- DTY-4 -----------------------------------------------------------------------------------------
def handover(ids: dict[str, int], **values: Any) -> DutyHandover:
    h = DutyHandover(desk="main", outgoing_id=ids["cs_clerk"], state="counting",
                     **({"items_counted": "radio,extinguisher,keys,torch,log_book,first_aid",
                         "read_previous_log": True} | values))
    db.session.add(h)
    db.session.commit()
    return h


def test_dty_4_two_different_people_sign_with_passwords(db_session, staff_ids) -> None:
    h = handover(staff_ids)
    clerk, guard = staff(staff_ids, "cs_clerk"), staff(staff_ids, "security")
    with pytest.raises(engine.NotAllowed):
        engine.fire(h, "take_over", clerk, password=PASSWORD)  # the outgoing cannot take over
    with pytest.raises(engine.WorkflowError):
        engine.fire(h, "take_over", guard, password="wrong")
    engine.fire(h, "take_over", guard, password=PASSWORD)
    with pytest.raises(engine.NotAllowed):
        engine.fire(h, "hand_over", guard, password=PASSWORD)  # the incoming cannot sign for the outgoing
    engine.fire(h, "hand_over", clerk, password=PASSWORD)
    assert (h.state, h.incoming_id, h.outgoing_id) == ("done", staff_ids["security"], staff_ids["cs_clerk"])


def test_dty_4_items_counted_missing_recorded_and_log_read(db_session, staff_ids) -> None:
    guard = staff(staff_ids, "security")
    h = handover(staff_ids, items_counted="radio,keys", read_previous_log=False)
    with pytest.raises(engine.NotAllowed):
        engine.fire(h, "take_over", guard, password=PASSWORD)
    h.read_previous_log = True
    db.session.commit()
    with pytest.raises(engine.NotAllowed, match="missing|缺"):
        engine.fire(h, "take_over", guard, password=PASSWORD)
    h.missing_items = "灭火器送检"
    db.session.commit()
    engine.fire(h, "take_over", guard, password=PASSWORD)
    assert h.state == "taken"


def test_dty_4_desk_items_are_ticked_by_name_on_the_form(db_session, staff_ids, login_as) -> None:
    clerk = login_as("cs_clerk")
    page = clerk.get("/admin/duty_handover/new/").get_data(as_text=True)
    assert 'type="checkbox"' in page and "对讲机" in page and "灭火器" in page  # names, not keys to type
    form = {"csrf_token": csrf_token(clerk), "desk": "main", "outgoing": staff_ids["cs_clerk"],
            "missing_items": "", "anomalies": ""}
    bogus = clerk.post("/admin/duty_handover/new/", data={**form, "items_counted": ["radio", "crowbar"]})
    assert bogus.status_code == 200 and db.session.scalar(sa.select(sa.func.count()).select_from(DutyHandover)) == 0
    response = clerk.post("/admin/duty_handover/new/", data={**form, "items_counted": ["radio", "keys"]})
    assert response.status_code == 302, response.get_data(as_text=True)
    h = db.session.scalar(sa.select(DutyHandover))
    assert h.items_counted == "radio,keys"
    details = clerk.get(f"/admin/duty_handover/details/?id={h.id}").get_data(as_text=True)
    assert "对讲机、钥匙柜钥匙" in details


def test_dty_4_outgoing_shifts_own_open_work_blocks_until_handed_over_by_name_and_acknowledged(
        db_session, staff_ids) -> None:
    clerk, guard = staff(staff_ids, "cs_clerk"), staff(staff_ids, "security")
    entry = make_duty_log(author=clerk, important=True, body="电梯困人，已通知维保")
    special = make_help_request(category="medical", description="老人摔倒", created_by_id=clerk.id)
    db.session.commit()
    h = handover(staff_ids)
    assert {type(w).__name__ for w in open_important_work(h)} == {"DutyFollowUp", "HelpRequest"}
    with pytest.raises(engine.NotAllowed, match="DTY-4"):
        engine.fire(h, "take_over", guard, password=PASSWORD)  # the outgoing's own work is open
    with pytest.raises(engine.NotAllowed):
        engine.fire(h, "list_open_work", clerk)  # handed over by name: the incoming person is named first
    h.handed_to_id = guard.id
    db.session.commit()
    with pytest.raises(engine.NotAllowed):
        engine.fire(h, "list_open_work", guard)  # only the outgoing hands over their work
    engine.fire(h, "list_open_work", clerk)
    items = db.session.scalars(sa.select(DutyHandoverItem).where(DutyHandoverItem.handover_id == h.id)).all()
    assert sorted(i.key for i in items) == sorted([("follow_up", db.session.scalar(sa.select(DutyFollowUp.id).where(
        DutyFollowUp.log_id == entry.id))), ("help_request", special.id)])
    assert all(i.to_staff_id == guard.id and i.acknowledged_at is None for i in items)
    with pytest.raises(engine.NotAllowed):
        engine.fire(h, "take_over", guard, password=PASSWORD)  # not acknowledged yet
    with pytest.raises(DomainError):
        acknowledge(items[0], clerk)  # only the named person acknowledges
    acknowledge(items[0], guard)
    db.session.commit()
    with pytest.raises(engine.NotAllowed):
        engine.fire(h, "take_over", guard, password=PASSWORD)  # each item, not just one
    acknowledge(items[1], guard)
    db.session.commit()
    engine.fire(h, "take_over", guard, password=PASSWORD)
    assert h.state == "taken" and h.incoming_id == guard.id
    assert db.session.get(HelpRequest, special.id).closed_at is None  # handed over, still open


def test_dty_4_work_belonging_to_nobody_on_the_shift_does_not_block(db_session, staff_ids) -> None:
    guard = staff(staff_ids, "security")
    make_duty_log(author=staff(staff_ids, "manager"), important=True, body="昨日白班：水管爆裂，待维修")
    make_help_request(category="crime", description="三个月前的失窃报案，尚未结案")  # nobody's
    make_help_request(category="disaster", description="台风预警", created_by_id=staff_ids["manager"])
    db.session.commit()
    h = handover(staff_ids)
    assert open_important_work(h) == []
    engine.fire(h, "take_over", guard, password=PASSWORD)
    assert h.state == "taken"


def test_dty_4_resolved_own_work_no_longer_blocks(db_session, staff_ids) -> None:
    clerk, guard = staff(staff_ids, "cs_clerk"), staff(staff_ids, "security")
    entry = make_duty_log(author=clerk, kind="emergency", needs_follow_up=True, body="地下车库进水")
    make_duty_log(author=clerk, important=True, body="消防报警误报，待复位", desk="side")  # another desk
    special = make_help_request(category="medical", description="住户突发不适", created_by_id=clerk.id)
    db.session.commit()
    h = handover(staff_ids)
    assert len(open_important_work(h)) == 2  # the emergency and the special request; not the other desk
    with pytest.raises(engine.NotAllowed):
        engine.fire(h, "take_over", guard, password=PASSWORD)
    follow = db.session.scalar(sa.select(DutyFollowUp).where(DutyFollowUp.log_id == entry.id))
    engine.fire(follow, "resolve", guard, values={"resolution": "已抽水，无财产损失"})
    db.session.execute(sa.update(HelpRequest).where(HelpRequest.id == special.id).values(state="closed",
                                                                                       closed_at=utcnow()))
    db.session.commit()
    engine.fire(h, "take_over", guard, password=PASSWORD)
    assert h.state == "taken"


def test_dty_4_handover_items_acknowledged_on_the_screen_by_the_named_person(db_session, staff_ids,
                                                                             login_as) -> None:
    clerk, guard = staff(staff_ids, "cs_clerk"), staff(staff_ids, "security")
    make_duty_log(author=clerk, important=True, body="3栋漏水，维修在途")
    db.session.commit()
    h = handover(staff_ids, handed_to_id=guard.id)
    fire_http(login_as("cs_clerk"), "duty_handover", h, "list_open_work")
    db.session.rollback()
    [item] = db.session.scalars(sa.select(DutyHandoverItem)).all()
    guard_client = login_as("security")
    page = guard_client.get(f"/admin/duty_handover/details/?id={h.id}").get_data(as_text=True)
    assert 'id="handover-items"' in page and "3栋漏水" in page and "确认接收" in page
    fire_http(guard_client, "duty_handover", db.session.get(DutyHandover, h.id), "take_over", password=PASSWORD)
    db.session.rollback()
    assert db.session.get(DutyHandover, h.id).state == "counting"
    page = post(login_as("cs_clerk"), "/admin/duty_handover/acknowledge/", id=item.id)
    assert "只有被点名的接班人才能确认" in page
    guard_client = login_as("security")
    post(guard_client, "/admin/duty_handover/acknowledge/", id=item.id)
    db.session.rollback()
    assert db.session.get(DutyHandoverItem, item.id).acknowledged_by_id == guard.id
    fire_http(guard_client, "duty_handover", db.session.get(DutyHandover, h.id), "take_over", password=PASSWORD)
    db.session.rollback()
    assert db.session.get(DutyHandover, h.id).state == "taken"


def test_dty_4_handover_screen_take_over_and_hand_over(db_session, staff_ids, login_as) -> None:
    h = handover(staff_ids)
    fire_http(login_as("security"), "duty_handover", h, "take_over", password=PASSWORD)
    db.session.rollback()
    h = db.session.get(DutyHandover, h.id)
    assert h.state == "taken"
    fire_http(login_as("cs_clerk"), "duty_handover", h, "hand_over", password=PASSWORD)
    db.session.rollback()
    assert db.session.get(DutyHandover, h.id).state == "done"


# --- DTY-5 -----------------------------------------------------------------------------------------
def test_dty_5_night_item_becomes_a_linked_work_order_next_morning(db_session, staff_ids) -> None:
    yesterday = utcnow().astimezone(SHANGHAI).date() - timedelta(days=1)
    night_start, _ = shift_times(yesterday, "night")
    entry = make_duty_log(needs_follow_up=True, body="地下车库灯不亮")
    other = make_duty_log(needs_follow_up=True, body="业主投诉噪音")
    db.session.commit()
    entry_id, other_id = entry.id, other.id
    db.session.rollback()  # no open transaction may hold duty_log while its trigger is replaced (PostgreSQL)
    with db.engine.begin() as conn:  # written last night
        from models.duty import duty_log_guard_statements, duty_log_unguard_statements

        for ddl in duty_log_unguard_statements(conn.dialect.name):
            conn.exec_driver_sql(ddl)
        conn.execute(sa.update(DutyLog.__table__).where(DutyLog.id.in_([entry_id, other_id]))
                     .values(created_at=(night_start + timedelta(hours=3)).astimezone(UTC)))
        for ddl in duty_log_guard_statements(conn.dialect.name):
            conn.exec_driver_sql(ddl)
    db.session.expire_all()
    assert {f.log_id for f in unconverted_night_items(yesterday)} == {entry_id, other_id}
    clerk = staff(staff_ids, "cs_clerk")
    repair = db.session.scalar(sa.select(DutyFollowUp).where(DutyFollowUp.log_id == entry_id))
    engine.fire(repair, "to_repair", clerk)
    complaint = db.session.scalar(sa.select(DutyFollowUp).where(DutyFollowUp.log_id == other_id))
    engine.fire(complaint, "to_complaint", clerk)
    assert repair.help_request.category == "repair" and complaint.help_request.category == "complaint"
    assert f"#{entry_id}" in repair.help_request.description
    assert unconverted_night_items(yesterday) == []
    assert db.session.get(DutyLog, entry_id).body == "地下车库灯不亮"  # linked, the entry untouched


def test_dty_5_followup_screen_converts(db_session, staff_ids, login_as) -> None:
    entry = make_duty_log(needs_follow_up=True, body="地下车库灯不亮")
    db.session.commit()
    follow = db.session.scalar(sa.select(DutyFollowUp).where(DutyFollowUp.log_id == entry.id))
    fire_http(login_as("security"), "duty_followup", follow, "to_repair")  # not the desk's clerk: refused
    db.session.rollback()
    assert db.session.get(DutyFollowUp, follow.id).state == "open"
    fire_http(login_as("cs_clerk"), "duty_followup", follow, "to_repair")
    db.session.rollback()
    assert db.session.get(DutyFollowUp, follow.id).help_request_id is not None


# --- DTY-6 -----------------------------------------------------------------------------------------
def test_dty_6_supervisor_signs_days_in_bulk(db_session, staff_ids) -> None:
    today = utcnow().astimezone(SHANGHAI).date()
    days = [today - timedelta(days=i) for i in (1, 2, 3)]
    with pytest.raises(DomainError):
        sign_days(staff(staff_ids, "cs_clerk"), days)
    with pytest.raises(DomainError):
        sign_days(staff(staff_ids, "cs_supervisor"), [today + timedelta(days=1)])
    assert len(sign_days(staff(staff_ids, "cs_supervisor"), days)) == 3
    db.session.commit()
    assert sign_days(staff(staff_ids, "cs_supervisor"), days) == []  # once per desk and day


def test_dty_6_bulk_sign_off_action_on_the_log_list(db_session, staff_ids, login_as) -> None:
    ids = [make_duty_log().id, make_duty_log(body="第二条").id]
    db.session.commit()
    data = {"action": "sign_days", "rowid": [str(i) for i in ids]}
    clerk = login_as("cs_clerk")
    assert clerk.post("/admin/duty_log/action/", data={"csrf_token": csrf_token(clerk), **data}).status_code == 403
    post(login_as("cs_supervisor"), "/admin/duty_log/action/", **data)
    [row] = db.session.scalars(sa.select(DutyDaySignoff)).all()
    assert (row.entries, row.signed_by_id) == (2, staff_ids["cs_supervisor"])


# --- DTY-7 -----------------------------------------------------------------------------------------
def test_dty_7_swap_needs_supervisor_approval_beforehand(db_session, staff_ids) -> None:
    r = roster(next_month(), staff_ids)
    shift = r.shifts[0]
    swap = DutySwap(shift=shift, to_staff_id=staff_ids["security"], reason="家中有事", state="requested")
    db.session.add(swap)
    db.session.commit()
    assert engine.fire(swap, "swap", staff(staff_ids, "cs_clerk")) == "requested"
    assert shift.staff_id == staff_ids["cs_clerk"]  # nothing changes before the approval
    with pytest.raises(engine.WorkflowError):
        engine.decide(swap, staff(staff_ids, "cs_clerk"), True)
    assert engine.decide(swap, staff(staff_ids, "cs_supervisor"), True) == "approved"
    assert (shift.staff_id, swap.from_staff_id, swap.state) == (staff_ids["security"], staff_ids["cs_clerk"],
                                                                "swapped")


def test_dty_7_swap_refused_once_the_shift_started(db_session, staff_ids, login_as) -> None:
    this = utcnow().astimezone(SHANGHAI).date() - timedelta(days=2)
    r = roster(this.replace(day=1), staff_ids, day=this.day)
    swap = DutySwap(shift=r.shifts[0], to_staff_id=staff_ids["security"], reason="补", state="requested")
    db.session.add(swap)
    db.session.commit()
    with pytest.raises(engine.NotAllowed):
        engine.fire(swap, "swap", staff(staff_ids, "cs_clerk"))
    body = fire_http(login_as("cs_clerk"), "duty_swap", swap, "swap")
    db.session.rollback()
    assert db.session.get(DutySwap, swap.id).pending_transition is None, body


# --- DTY-8 -----------------------------------------------------------------------------------------
def test_dty_8_visitor_log_keeps_the_id_encrypted_and_masked(db_session, staff_ids, login_as) -> None:
    unit = make_unit()
    db.session.commit()
    guard = login_as("security")
    body = post(guard, "/admin/visitor_log/new/", name="李四", id_shown="110105198001011234", host_unit=unit.id,
                plate="沪A12345", time_in="2026-11-20 09:00:00")
    visit = db.session.scalar(sa.select(VisitorLog))
    assert visit is not None, body
    assert visit.id_shown == "110105198001011234" and visit.id_masked == "110***********1234"
    raw = db.session.execute(sa.text("SELECT id_shown FROM visitor_log")).scalar()
    assert "110105198001011234" not in raw
    page = guard.get("/admin/visitor_log/").get_data(as_text=True)
    assert "110105198001011234" not in page and "1234" in page
    post(guard, "/admin/visitor_log/new/", name="王五", id_shown="", plate="", time_in="2026-11-20 09:00:00")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(VisitorLog)) == 1
    assert login_as("finance").get("/admin/visitor_log/").status_code == 403


# --- DTY-9 -----------------------------------------------------------------------------------------
def test_dty_9_days_with_fewer_than_two_patrols_are_listed(db_session, staff_ids) -> None:
    day = date(2026, 11, 10)
    for hour in (9, 15):
        db.session.add(PatrolRecord(area="1栋", state="recorded",
                                    patrolled_at=datetime(2026, 11, 10, hour, tzinfo=SHANGHAI)))
    db.session.add(PatrolRecord(area="2栋", state="recorded", patrolled_at=datetime(2026, 11, 11, 9, tzinfo=SHANGHAI)))
    db.session.commit()
    assert short_patrol_days(day, day + timedelta(days=2)) == [(date(2026, 11, 11), 1), (date(2026, 11, 12), 0)]


def test_dty_9_finding_becomes_a_work_order(db_session, staff_ids, login_as) -> None:
    patrol = login_as("management_dept")
    post(patrol, "/admin/patrol_record/new/", patrolled_at="2026-11-20 09:00:00", area="地下车库",
         findings="消防通道被占用")
    record = db.session.scalar(sa.select(PatrolRecord))
    assert record.patroller_id == staff_ids["management_dept"]
    fire_http(patrol, "patrol_record", record, "to_work_order")
    db.session.rollback()
    record = db.session.get(PatrolRecord, record.id)
    assert record.state == "converted" and record.help_request.category == "repair"
    nothing = PatrolRecord(area="1栋", state="recorded")
    db.session.add(nothing)
    db.session.commit()
    with pytest.raises(engine.NotAllowed):
        engine.fire(nothing, "to_work_order", staff(staff_ids, "management_dept"))


# --- the permission matrix's rows and recipes (tests/test_permissions.py) ----------------------------
def permission_rows(unit: Any, staff_ids: dict[str, int]) -> dict[str, int]:
    """One row per duty screen; the roster is a draft of January 2027 so shifts can still be added."""
    r = DutyRoster(month=date(2027, 1, 1), state="draft")
    shift = DutyShift(roster=r, staff_id=staff_ids["cs_clerk"], day=date(2027, 1, 5), kind="night")
    swap = DutySwap(shift=shift, to_staff_id=staff_ids["security"], reason="调休", state="requested")
    entry = DutyLog(kind="enquiry", body="业主询问停水", author_id=staff_ids["cs_clerk"], needs_follow_up=True,
                    created_at=utcnow())
    hand = DutyHandover(desk="main", outgoing_id=staff_ids["cs_clerk"], state="counting")
    day = DutyDaySignoff(desk="side", day=date(2026, 1, 1), signed_by_id=staff_ids["cs_supervisor"])
    visit = VisitorLog(name="访客甲", id_shown="110105198001011234", host_unit=unit, time_in=utcnow())
    patrol = PatrolRecord(area="1栋", findings="", state="recorded")
    db.session.add_all([r, shift, swap, entry, hand, day, visit, patrol])
    db.session.flush()
    follow = db.session.scalar(sa.select(DutyFollowUp).where(DutyFollowUp.log_id == entry.id))
    return {"duty_roster": r.id, "duty_shift": shift.id, "duty_swap": swap.id, "duty_log": entry.id,
            "duty_followup": follow.id, "duty_handover": hand.id, "duty_day_signoff": day.id,
            "visitor_log": visit.id, "patrol_record": patrol.id}


PERMISSION_CREATE = {
    "duty_roster": lambda ids: {"month": "2027-02-01", "note": ""},
    "duty_shift": lambda ids: {"roster": ids["duty_roster"], "day": "2027-01-06", "kind": "day",
                               "staff": ids["staff"]},
    "duty_swap": lambda ids: {"shift": ids["duty_shift"], "to_staff": ids["staff"], "reason": "家中有事"},
    "duty_log": lambda ids: {"kind": "desk_safety", "body": "灭火器压力正常", "desk": "main", "corrects_id": ""},
    "duty_handover": lambda ids: {"desk": "main", "outgoing": ids["staff"], "items_counted": ["radio", "keys"],
                                  "missing_items": "", "anomalies": ""},
    "visitor_log": lambda ids: {"name": "访客乙", "id_shown": "110105198001011234", "host_unit": ids["unit"],
                                "plate": "", "time_in": "2026-11-20 09:00:00", "time_out": ""},
    "patrol_record": lambda ids: {"patrolled_at": "2026-11-20 09:00:00", "area": "地下车库", "findings": ""},
}
PERMISSION_EDIT = {
    "duty_roster": lambda ids: {"month": "2027-01-01", "note": "春节前后加派夜班"},
    "duty_handover": lambda ids: {"desk": "main", "outgoing": ids["staff"], "items_counted": ["radio", "keys", "torch"],
                                  "missing_items": "灭火器送检", "anomalies": ""},
    "visitor_log": lambda ids: {"name": "访客甲", "id_shown": "110105198001011234", "host_unit": ids["unit"],
                                "plate": "沪A12345", "time_in": "2026-11-20 09:00:00",
                                "time_out": "2026-11-20 10:00:00"},
}


def grow_duty(unit: Any, owner: Any, since: date, i: int) -> list[tuple[object, str]]:
    """tests/test_query_counts.py grow(): one row per duty screen per cell, relations distinct per cell."""
    from models import Staff

    member = db.session.scalar(sa.select(Staff).where(Staff.username == f"user{i}"))
    month = date(2000 + i // 12, i % 12 + 1, 1)
    r = DutyRoster(month=month)
    shift = DutyShift(roster=r, staff=member, day=month, kind="night")
    swap = DutySwap(shift=shift, to_staff=member, reason=f"调班 {i}")
    entry = DutyLog(kind="enquiry", body=f"记录 {i}", author=member, needs_follow_up=True, desk=f"d{i}",
                    created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=i))
    hand = DutyHandover(desk=f"d{i}", outgoing=member, incoming=member)
    day = DutyDaySignoff(desk=f"d{i}", day=since, signed_by=member, entries=1)
    visit = VisitorLog(name=f"访客{i}", id_shown=f"1101051980010{i:05d}", host_unit=unit, plate=f"沪A{i:05d}")
    help_request = make_help_request(unit=unit, category="repair", description=f"巡查发现 {i}")
    patrol = PatrolRecord(area=f"{i}栋", findings="灯坏", patroller=member, help_request=help_request)
    db.session.add_all([r, shift, swap, entry, hand, day, visit, patrol])
    return [(r, ("draft", "published")[i % 2]), (swap, "requested"), (hand, ("counting", "taken")[i % 2]),
            (patrol, "recorded")]


def test_dty_1_demo_seed_has_rosters_for_this_and_next_month(runner, db_session) -> None:
    result = runner.invoke(args=["seed", "--demo"])
    assert result.exit_code == 0, result.output
    months = set(db.session.scalars(sa.select(DutyRoster.month)))
    assert next_month() in months and len(months) == 2
    assert db.session.scalar(sa.select(sa.func.count()).select_from(DutyLog)) == 5
    assert db.session.scalar(sa.select(DutySwap.pending_transition)) == "swap"
    # DTY-4: the outgoing guard's open emergency is handed over by name to the incoming clerk
    [item] = db.session.scalars(sa.select(DutyHandoverItem)).all()
    assert item.to_staff.username == "clerk" and item.acknowledged_at is None and item.handover.state == "counting"


def test_dty_9_checks_page_lists_short_patrol_days_and_open_night_items(db_session, staff_ids, login_as) -> None:
    page = login_as("cs_supervisor").get("/admin/duty_checks/")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    yesterday = utcnow().astimezone(SHANGHAI).date() - timedelta(days=1)
    assert f"{yesterday}: 0" in body and next_month().strftime("%Y-%m") in body
    assert login_as("cs_clerk").get("/admin/duty_checks/").status_code == 200
