"""Demo data for the duty desk (DTY): this month's roster (published) and next month's (draft, to be
published by the supervisor before month end), a swap awaiting approval, a few log entries with a
correction, an open night item and an open emergency, a visitor, two patrols and a handover whose open
emergency is handed over by name to the incoming clerk (DTY-4)."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

import sqlalchemy as sa

from models import Staff, Unit, db
from models.base import utcnow
from models.duty import SHANGHAI, DutyRoster, DutyShift, DutySwap, add_entry
from models.duty_desk import DutyHandover
from models.duty_security import PatrolRecord, VisitorLog


def _roster(month: date, people: list[Staff]) -> DutyRoster:
    roster = DutyRoster(month=month, state="draft")
    db.session.add(roster)
    for day in range(1, calendar.monthrange(month.year, month.month)[1] + 1):
        when = month.replace(day=day)
        kind = "holiday" if when.weekday() >= 5 else "night"
        db.session.add(DutyShift(roster=roster, staff=people[day % len(people)], day=when, kind=kind))
    db.session.flush()
    return roster


def seed_duty() -> None:
    if db.session.scalar(sa.select(DutyRoster.id).limit(1)) is not None:
        return
    from workflow import engine

    by_name = {s.username: s for s in db.session.scalars(sa.select(Staff).where(
        Staff.username.in_(["supervisor", "clerk", "guard", "patrol"])))}
    if len(by_name) < 4:
        return
    supervisor, clerk, guard = by_name["supervisor"], by_name["clerk"], by_name["guard"]
    today = utcnow().astimezone(SHANGHAI).date()
    this = today.replace(day=1)
    nxt = (this + timedelta(days=32)).replace(day=1)
    current = _roster(this, [clerk, guard])
    engine.fire(current, "publish", supervisor)
    upcoming = _roster(nxt, [clerk, guard])
    db.session.commit()
    swap = DutySwap(shift=upcoming.shifts[2], to_staff=guard if upcoming.shifts[2].staff_id == clerk.id else clerk,
                    reason="家中有事，与同事调班")
    db.session.add(swap)
    db.session.commit()
    engine.fire(swap, "swap", clerk)
    first = add_entry(guard, "desk_safety", "22:00 巡视大堂，消防通道畅通，灭火器压力正常。")
    add_entry(guard, "help_request", "23:40 3栋1单元业主来电：楼道灯不亮，夜间无法维修。", needs_follow_up=True)
    db.session.flush()
    add_entry(guard, "desk_safety", f"更正 #{first.id}：巡视时间为 22:30。", corrects_id=first.id)
    add_entry(clerk, "enquiry", "业主询问本周停水安排，已告知周四 9:00–12:00。")
    add_entry(guard, "emergency", "01:10 2栋电梯困人，已通知维保，维保人员在途。", important=True)
    unit = db.session.scalar(sa.select(Unit).order_by(Unit.id))
    db.session.add(VisitorLog(name="陈先生", id_shown="110105198001011234", host_unit=unit, plate="粤B12345",
                              logged_by=guard))
    for hour in (9, 15):
        db.session.add(PatrolRecord(area="地下车库", findings="" if hour == 9 else "B2 消防门闭门器损坏",
                                    patroller=by_name["patrol"], patrolled_at=utcnow() - timedelta(hours=hour)))
    handover = DutyHandover(desk="main", outgoing=guard, handed_to=clerk,
                            items_counted="radio,extinguisher,keys,torch,log_book",
                            missing_items="急救箱送补", read_previous_log=True)
    db.session.add(handover)
    db.session.commit()
    engine.fire(handover, "list_open_work", guard)  # DTY-4: the open emergency, handed over to the clerk by name


__all__ = ["seed_duty"]
