"""Demo help register and repair work orders (HLP-1..7): six weeks of calls in every category
and state, some overdue, repairs rated for the satisfaction rate. Driven through the engine;
times of the past steps are then set back to when they would have happened."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from models import Occupancy, Staff, Unit, db
from models.base import utcnow
from models.deadline import DeadlineClock
from models.help_requests import HelpRequest
from models.repairs import RepairOrder
from workflow import engine

WEEKS = 6
CALLS: list[tuple[str, str | None, str]] = [
    ("repair", None, "厨房水龙头漏水，请派人维修"), ("repair", None, "卫生间下水道堵塞"),
    ("repair", None, "客厅灯不亮，疑似线路问题"), ("repair", None, "入户门锁芯损坏打不开"),
    ("complaint", None, "楼上深夜装修噪音扰民"), ("complaint", None, "地下车库照明长期不亮"),
    ("enquiry", None, "询问物业费缴纳方式"), ("enquiry", None, "咨询装修申请需要的材料"),
    ("daily", None, "钥匙锁在家里，请帮忙联系开锁"), ("daily", None, "快递代收"),
    ("paid", None, "代为搬运家具到楼下"), ("paid", None, "清洗空调"),
    ("medical", None, "老人在家摔倒无法起身"), ("crime", "theft", "电动车在车棚被盗"),
    ("crime", "fight", "楼下两名住户发生争执"), ("disaster", "flood", "暴雨后地下室进水"),
    ("disaster", "typhoon", "台风过后阳台玻璃松动"), ("crime", "traffic", "小区内车辆剐蹭"),
]
SATISFACTION = ["very_satisfied"] * 6 + ["satisfied"] * 5 + ["dissatisfied"]


def _staff(username: str) -> Staff | None:
    return db.session.scalar(sa.select(Staff).where(Staff.username == username))


def _backdate(record: Any, when: datetime, **columns: datetime | None) -> None:
    """Set a past step's time on the record and its met clocks (core UPDATEs: history, not a change)."""
    model = type(record)
    if columns:
        db.session.execute(sa.update(model).where(model.id == record.id).values(**columns))
    clocks = DeadlineClock.__table__
    for clock in db.session.execute(sa.select(clocks).where(
            clocks.c.record_type == model.__tablename__, clocks.c.record_id == record.id,
            clocks.c.met_at.is_not(None))):
        db.session.execute(sa.update(clocks).where(clocks.c.id == clock.id).values(
            met_at=when, breached_at=when if when > clock.due_at else None))


def seed_help_requests(weeks: int = WEEKS) -> int:
    """Idempotent: nothing is added once a help request exists. Returns how many were added."""
    if db.session.scalar(sa.select(HelpRequest.id).limit(1)) is not None:
        return 0
    clerk, supervisor, engineer, guard = (_staff(u) for u in ("clerk", "supervisor", "engineer", "guard"))
    manager, cashier = _staff("manager"), _staff("cashier")
    if None in (clerk, supervisor, engineer, guard, manager, cashier):
        return 0
    rng = random.Random(20261124)
    occupancies = db.session.scalars(sa.select(Occupancy).join(Occupancy.unit).where(
        Occupancy.end_date.is_(None)).order_by(Unit.id).limit(200)).all()
    now, total = utcnow(), weeks * 7 * 2
    added = 0
    for i in range(total):
        category, sub_kind, text = CALLS[i % len(CALLS)]
        age = timedelta(days=weeks * 7 * (total - i) / total, minutes=rng.randint(0, 600))
        received = now - age
        occ = occupancies[rng.randrange(len(occupancies))] if occupancies else None
        request = HelpRequest(
            category=category, sub_kind=sub_kind, description=text, received_at=received, created_at=received,
            caller=occ.resident.name if occ else "住户", caller_phone=occ.resident.phone if occ else None,
            unit=occ.unit if occ else None, resident=occ.resident if occ else None, created_by=clerk,
            supervisor_alerted_at=received if category in ("medical", "crime", "disaster") else None,
            urgent=category == "repair" and i % 5 == 0,
            enquiry_mode=("written" if i % 2 else "oral") if category == "enquiry" else None,
            needs_manager_reply=category == "enquiry" and i % 4 == 1)
        db.session.add(request)
        db.session.flush()
        added += 1
        _progress(request, i, age, rng, clerk=clerk, supervisor=supervisor, engineer=engineer, guard=guard,
                  manager=manager, cashier=cashier)
        db.session.commit()
    return added


def _progress(request: HelpRequest, i: int, age: timedelta, rng: random.Random, **who: Staff) -> None:
    """Move one request as far as its age suggests; the newest stay open (some overdue)."""
    if age < timedelta(hours=3) or i % 9 == 4:
        if i % 2:
            engine.fire(request, "refer", who["guard"] if request.special else who["clerk"])
        return  # still waiting: overdue once its limit passed
    replied = request.received_at + timedelta(minutes=rng.randint(1, 4))
    if request.category == "repair":
        engine.fire(request, "to_repair", who["clerk"])
        _backdate(request, replied, replied_at=replied, closed_at=replied)
        _repair(request.repair_order, i, age, rng, **who)
        return
    if request.category == "complaint" and i % 3:
        engine.fire(request, "to_complaint", who["clerk"])
        _backdate(request, replied, replied_at=replied, closed_at=replied)
        return
    if request.category == "enquiry" and request.enquiry_mode == "written":
        replied = request.received_at + timedelta(hours=rng.randint(3, 40))
    by = who["manager"] if request.needs_manager_reply else (who["guard"] if request.special else who["clerk"])
    engine.fire(request, "manager_reply" if request.needs_manager_reply else "reply", by,
                values={"reply": "已答复住户：" + request.description[:20]})
    _backdate(request, replied, replied_at=replied)
    if age < timedelta(days=1) or i % 7 == 3:
        return  # replied, not yet closed
    if request.category == "medical":
        request.medical_address = f"{request.unit.code if request.unit else '小区'} 室内"
        request.medical_option = ("escort", "call_120", "short_term_care")[i % 3]
        request.carer_1, request.carer_2 = who["guard"], who["clerk"]
        request.medical_outcome = "已送医，家属已到场"
        db.session.commit()
    if request.category == "paid":
        request.price = Decimal(rng.choice(["50.00", "80.00", "120.00"]))
        db.session.commit()
        engine.fire(request, "charge", who["cashier"])
    engine.fire(request, "close", by, values={"outcome": "已处理完毕，住户确认"})
    closed = replied + timedelta(hours=rng.randint(1, 20))
    db.session.execute(sa.update(HelpRequest).where(HelpRequest.id == request.id).values(closed_at=closed))


def _repair(order: RepairOrder, i: int, age: timedelta, rng: random.Random, **who: Staff) -> None:
    if age < timedelta(hours=6) or i % 11 == 0:
        return  # open: waiting for the supervisor to assign (overdue when old)
    order.assignee = who["engineer"]
    db.session.commit()
    engine.fire(order, "assign", who["supervisor"])
    if i % 13 == 2:
        return  # assigned, the engineer has not been on site: overdue
    limit = timedelta(hours=2 if order.emergency else 24)
    responded = order.reported_at + min(limit, timedelta(minutes=rng.randint(20, 300)))
    engine.fire(order, "respond", who["engineer"])
    _backdate(order, responded, responded_at=responded)
    if age < timedelta(days=1) or i % 10 == 7:
        return  # on site, work going on
    order.materials = rng.choice(["生料带、阀芯", "灯管 1 支", "锁芯 1 个", "疏通剂"])
    if i % 6 == 0:
        order.paid, order.charge = True, Decimal("60.00")
    db.session.commit()
    engine.fire(order, "complete", who["engineer"], values={"work_done": "已修复，现场测试正常"})
    completed = responded + timedelta(hours=rng.randint(1, 6))
    db.session.execute(sa.update(RepairOrder).where(RepairOrder.id == order.id).values(completed_at=completed))
    if age < timedelta(days=3) or i % 8 == 5:
        return  # done, waiting for the resident's verdict
    db.session.expire(order)
    order.satisfaction = rng.choice(SATISFACTION)
    db.session.commit()
    engine.fire(order, "close", who["clerk"])
    db.session.execute(sa.update(RepairOrder).where(RepairOrder.id == order.id).values(
        closed_at=completed + timedelta(days=1)))
