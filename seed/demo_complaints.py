"""Demo complaints (投诉处理): four weeks of forms in every state and grade, some overdue, one collective,
one duplicate, one extension waiting for the supervisor. Moved through the engine as staff would."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from models import Department, Occupancy, Staff, Unit, db
from models.base import utcnow
from models.complaints import Complaint, ComplaintHousehold
from workflow import engine
from workflow.calendar import app_zone

CASES = [  # category, what happened, what the resident asks for, complained about
    ("repair", "卫生间顶棚渗水，报修三次未修好", "一周内彻底修好并赔偿损失", "工程部维修班"),
    ("security", "夜间陌生人尾随进入单元门", "加强门岗登记", "保安部夜班"),
    ("cleaning", "垃圾桶满溢两天无人清运", "每天按时清运", "环境部保洁班"),
    ("parking", "固定车位被外来车辆占用", "清理占位车辆并加装地锁", "保安部车场岗"),
    ("fees", "物业费账单多收了一个月", "核对并退还多收费用", "财务部收费处"),
    ("neighbours", "楼上装修噪音超时施工", "限制施工时间", "装修管理"),
    ("staff", "前台接待态度冷淡", "当事人道歉", "客服中心前台"),
    ("developer", "外墙瓷砖脱落（开发商保修期内）", "通知开发商维修", "开发商"),
]
# The department that takes each case, and who in it signs receipt and handles it.
HANDLERS = [("engineer", "engineering"), ("guard", "security"), ("clerk", "cs")]
# How far each demo complaint gets: (state to reach, severity).
PLAN = [
    ("received", "minor"), ("received", "important"), ("dispatched", "minor"), ("dispatched", "major"),
    ("accepted", "important"), ("accepted", "minor"), ("handled", "minor"), ("handled", "important"),
    ("told", "minor"), ("told", "major"), ("visited", "important"), ("visited", "minor"),
    ("closed", "minor"), ("closed", "important"), ("closed", "major"), ("invalid", "minor"),
    ("duplicate", "minor"), ("extension", "minor"), ("received", "major"), ("accepted", "minor"),
]
STEPS = ["dispatched", "accepted", "handled", "told", "visited", "closed"]


def _staff(username: str) -> Staff | None:
    return db.session.scalar(sa.select(Staff).where(Staff.username == username))


def seed_complaints() -> None:
    """Idempotent: nothing happens once any complaint exists."""
    if db.session.scalar(sa.select(Complaint.id).limit(1)) is not None:
        return
    people = {name: _staff(name) for name in ("clerk", "supervisor", "manager", "engineer", "guard")}
    if any(p is None for p in people.values()):
        return
    owners = db.session.execute(
        sa.select(Occupancy).join(Occupancy.unit).where(Occupancy.kind == "owner", Occupancy.end_date.is_(None))
        .order_by(Unit.id).limit(len(PLAN) + 3)).scalars().all()
    if len(owners) < len(PLAN) + 3:
        return
    now = utcnow()
    made: list[Complaint] = []
    for i, (goal, severity) in enumerate(PLAN):
        category, what, demand, subject = CASES[i % len(CASES)]
        username, key = HANDLERS[i % len(HANDLERS)]
        handler = people[username]
        department = db.session.scalar(sa.select(Department).where(Department.key == key))
        if handler.department_id != department.id and goal not in ("received", "invalid", "duplicate"):
            goal = "dispatched"  # accounts made elsewhere without the department: only the desk's steps
        occ = owners[i]
        received = now - timedelta(days=27 - i * 27 // len(PLAN), hours=i % 5)
        c = Complaint(unit=occ.unit, resident=occ.resident, complainant_name=occ.resident.name,
                      contact_phone=occ.resident.phone, channel=("visit", "phone", "letter", "online")[i % 4],
                      written=i % 3 == 0, received_at=received, occurred_at=received - timedelta(hours=6),
                      location=f"{occ.unit.code} 附近", subject=subject, description=what, demand=demand,
                      category=category, severity=severity, about_property=category != "developer",
                      read_back_confirmed=True, department=department, created_by=people["clerk"])
        if goal == "closed" and severity == "major":  # a collective complaint: three households
            c.households = [ComplaintHousehold(unit=o.unit, contact_name=o.resident.name) for o in owners[-3:]]
        db.session.add(c)
        db.session.commit()
        made.append(c)
        _advance(c, goal, handler, people, made)
    db.session.commit()


def _advance(c: Complaint, goal: str, handler: Staff, people: dict[str, Staff | None],
             made: list[Complaint]) -> None:
    clerk, supervisor, manager = people["clerk"], people["supervisor"], people["manager"]
    if c.severity == "major":
        engine.fire(c, "report_to_manager", clerk)
    if goal == "invalid":
        engine.fire(c, "mark_invalid", supervisor,
                    values={"invalid_explanation": "要求超出物业服务合同范围，已当面解释"})
        return
    if goal == "duplicate":
        c.duplicate_of = made[0]
        db.session.commit()
        engine.fire(c, "mark_duplicate", clerk)
        return
    if goal == "extension":
        engine.fire(c, "dispatch", clerk)
        engine.fire(c, "accept", handler)
        engine.fire(c, "extend_minor", handler, "需等待厂家配件",
                    values={"extension_requested_until": (utcnow() + timedelta(days=7)).strftime("%Y-%m-%d")})
        return
    if goal == "received":
        return
    reached = STEPS[:STEPS.index(goal) + 1]
    engine.fire(c, "dispatch", clerk)
    if "accepted" in reached:
        engine.fire(c, "accept", handler)
    if "handled" in reached:
        engine.fire(c, "handle", handler, values={"handling_notes": "已现场处理并拍照留存"})
    if "told" in reached and c.needs_written_reply:  # CMP-9: a written complaint is answered by letter
        engine.fire(c, "reply_in_writing", supervisor, values={
            "reply_letter_text": f"经核查，您反映的“{c.description}”情况属实。{c.handling_notes}。"
                                 "今后我处将加强巡查，如仍有问题请随时与管理处联系。",
            "reply_letter_date": utcnow().astimezone(app_zone()).strftime("%Y-%m-%d"),
            "reply_signed_by": f"{supervisor.full_name}（客服主管）"})
    if "told" in reached:
        engine.fire(c, "tell", clerk, values={"reply_to_resident": "电话告知处理结果，住户表示认可"})
    if "visited" in reached:
        _visit(c, supervisor)
        engine.fire(c, "visit", supervisor)
    if "closed" in reached:
        engine.fire(c, "close", manager if c.severity == "major" else supervisor)


def _visit(c: Complaint, visitor: Staff | None) -> None:
    from models.attachment import store
    from models.visit_rules import needs_on_site_visit
    from models.visits import Visit
    from seed.demo_visits import signature_png

    visit = db.session.scalar(sa.select(Visit).where(Visit.complaint_id == c.id, Visit.state == "draft"))
    if visit is None:
        visit = Visit(kind="complaint", complaint_id=c.id, unit_id=c.unit_id)
        db.session.add(visit)
    on_site = needs_on_site_visit(c)  # VIS-7: important and major complaints on site, with the signature
    visit.method, visit.visited_at, visit.visitor = ("on_site" if on_site else "phone"), utcnow(), visitor
    visit.person_visited, visit.opinion, visit.satisfied = c.complainant_name, "对处理结果满意", True
    db.session.flush()
    if on_site:
        store(visit, "signature", signature_png(c.id), "signature.png", visitor)
    db.session.commit()
    engine.fire(visit, "record", visitor)


__all__ = ["seed_complaints"]
