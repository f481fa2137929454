"""Demo violations (住户违章处理): cases of every kind in every state — being persuaded, registered with
measures under way, a penalty waiting for the manager's signature, a decided water cut, an arrears
ladder half-way, closed ones. Moved through the engine as staff would."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from models import Occupancy, Staff, Unit, db
from models.base import utcnow
from models.violations import Violation
from workflow import engine
from workflow.calendar import app_zone

CASES = [  # kind, sub-kind, what happened, where, major (economic loss / public safety)
    ("hygiene", "clutter", "楼道堆放纸箱杂物，堵塞通道", "12层电梯厅", None),
    ("fire", "exits", "消防通道长期停放电动车并充电", "1层消防通道", "public_safety"),
    ("renovation", "load_bearing", "装修中擅自拆除承重墙", "室内", "public_safety"),
    ("order", "parking", "占用消防车道停车", "地下车库入口", None),
    ("fees", "fees", "拒交物业管理费六个月", "—", None),
    ("hygiene", "throwing", "高空抛物砸坏楼下车辆", "楼下停车位", "economic_loss"),
    ("hygiene", "pets", "宠物狗未拴绳在花园追咬住户", "中心花园", None),
    ("other", "other", "私自改接公共水管导致楼下渗水", "公共管井", "economic_loss"),
]
# How far each case gets.
PLAN = ["reported", "persuaded", "registered", "rectify_pending", "rectified", "compensated", "cut_decided",
        "arrears", "closed_informally", "closed"]


def _staff(username: str) -> Staff | None:
    return db.session.scalar(sa.select(Staff).where(Staff.username == username))


def _local(at: Any) -> str:
    return at.astimezone(app_zone()).strftime("%Y-%m-%d %H:%M")


def seed_violations() -> None:
    """Idempotent: nothing happens once any violation exists."""
    if db.session.scalar(sa.select(Violation.id).limit(1)) is not None:
        return
    people = {name: _staff(name) for name in ("clerk", "supervisor", "manager", "guard", "engineer")}
    if any(p is None for p in people.values()):
        return
    owners = db.session.execute(
        sa.select(Occupancy).join(Occupancy.unit).where(Occupancy.kind == "owner", Occupancy.end_date.is_(None))
        .order_by(Unit.id.desc()).limit(len(PLAN))).scalars().all()
    if len(owners) < len(PLAN):
        return
    now = utcnow()
    for i, goal in enumerate(PLAN):
        kind, sub, what, where, fact = CASES[i % len(CASES)]
        if goal == "arrears":
            kind, sub, what, where, fact = CASES[4]
        if goal in ("compensated", "cut_decided"):
            kind, sub, what, where, fact = CASES[5]
        owner = owners[i]
        v = Violation(unit=owner.unit, resident=owner.resident, kind=kind, sub_kind=sub, description=what,
                      location=f"{owner.unit.code} {where}", occurred_at=now - timedelta(days=20 - i),
                      witness="保安部 陈勇", severity="major" if fact else "general",
                      economic_loss=fact == "economic_loss", public_safety=fact == "public_safety",
                      created_by_id=people["clerk"].id)
        v.check_intake()
        db.session.add(v)
        db.session.commit()
        _advance(v, goal, people, now)


def _advance(v: Violation, goal: str, p: dict[str, Staff], now: Any) -> None:
    if goal == "reported":
        return
    engine.fire(v, "persuade", p["guard"], values={"persuasion_notes": "当场劝阻并讲解管理规约"})
    if goal == "persuaded":
        return
    if goal == "closed_informally":
        engine.fire(v, "resolve", p["clerk"], "住户当场整改")
        return
    engine.fire(v, "register", p["clerk"])
    if goal == "registered":
        return
    if goal == "arrears":
        for note in ("电话提醒缴费", "发出催款函"):
            engine.fire(v, "arrears_step", p["clerk"], values={"arrears_notes": note})
        engine.fire(v, "arrears_late_fee", p["manager"], values={"late_fee_amount": "86.40"})
        engine.decide(v, p["manager"], True)
        return
    decider = p["manager"] if v.severity == "major" else p["supervisor"]
    engine.fire(v, "rectify", decider, values={"rectify_by": _local(now + timedelta(days=7))})
    if goal == "rectify_pending":
        return  # waits for the manager's signature (VIO-7)
    engine.decide(v, p["manager"], True)
    if goal == "rectified":
        return
    if goal == "closed":
        engine.fire(v, "follow_up", p["clerk"], "上门回访，住户已整改并表示理解")
        engine.fire(v, "close", decider, "已按期整改")
        return
    engine.fire(v, "compensate", p["manager"], values={"compensation_amount": "1500.00"})
    engine.decide(v, p["manager"], True)
    if goal == "compensated":
        return
    engine.fire(v, "decide_cut", p["manager"], values={
        "cut_reason": "refused_compensation", "utility": "water", "covenant_clause": "《业主管理规约》第十二条",
        "cut_notice_at": _local(now - timedelta(hours=2)), "cut_planned_at": _local(now + timedelta(days=3))})
