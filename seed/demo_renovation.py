"""Demo renovations (REN-1..REN-8): one application in each state of the workflow, walked there through
the engine by the department that does each step, with a drawing, patrols, a warning ladder, an
extension, a rectification round, a hot-work permit and temporary power."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import sqlalchemy as sa

from models import Occupancy, Staff, Unit, db
from models.base import utcnow
from models.renovation import HotWork, Renovation, TemporaryPower, add_acceptance_document, add_drawing
from models.renovation_patrol import new_patrol_day
from workflow import engine

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
# The state each demo renovation is walked to (along the happy path, with detours where named).
PLAN = ["draft", "submitted", "returned", "approved", "permitted", "suspended", "finished", "rectifying",
        "accepted", "closed"]
PATH = [("submit", "clerk", {}),
        ("approve", "engineer", {"deposit_amount": "3000", "debris_fee": "500", "pass_count": "3"}),
        ("pay_deposit", "cashier", {"receipt_no": "SJ-001"}), ("pay_debris", "cashier", {"receipt_no": "SJ-002"}),
        ("pay_pass_deposits", "cashier", {"receipt_no": "SJ-003"}),
        ("issue_permit", "clerk", {"neighbours_notified": "上下左右四户，书面告知并张贴"}),
        ("finish", "clerk", {}), ("apply_acceptance", "clerk", {"asbuilt_sets": "3"}),
        ("pass_inspection", "engineer", {"vents_unsealed_note": "厨卫排风口已由工程部启封"}),
        ("return_passes", "clerk", {}), ("refund", "cashier", {"receipt_no": "TK-001"})]


def _staff(username: str) -> Staff | None:
    return db.session.scalar(sa.select(Staff).where(Staff.username == username))


def _walk(ren: Renovation, target: str, users: dict[str, Staff]) -> None:
    for name, who, values in PATH:
        if ren.state == target or (target in ("suspended",) and ren.state == "permitted"):
            break
        if target == "returned" and ren.state == "submitted":
            engine.fire(ren, "return_defects", users["engineer"],
                        values={"defects_found": "卫生间防水图缺失；烟感位置未标注"})
            return
        if target == "rectifying" and ren.state == "inspecting":
            due = (date.today() + timedelta(days=7)).isoformat()
            engine.fire(ren, "fail_inspection", users["engineer"],
                        values={"rectification_items": "烟感被吊顶遮挡，需移位", "rectify_by": due})
            return
        if name == "finish":
            values = {"finished_at": (date.today() - timedelta(days=2)).isoformat()}
        if name == "apply_acceptance":  # REN-10: the documents the application brings
            for kind, title in (("asbuilt", "竣工图纸"), ("invoice", "材料设备发票"), ("deposit_receipt", "押金收据")):
                add_acceptance_document(ren, kind, PDF, f"{title}-{ren.unit.code}.pdf", users[who])
        engine.fire(ren, name, users[who], values=values)
    if target == "suspended":
        sign = {"breach_description": "违规拆改墙体", "contractor_signature": "李工"}
        for step in ("warn_verbal", "warn_written", "warn_final", "cut_power"):
            engine.fire(ren, step, users["patrol"], values=sign)
    if ren.state == "permitted":
        engine.fire(ren, "patrol", users["guard"], values={"inspection_findings": "消防器材到位，施工正常"})
        engine.fire(ren, "patrol", users["patrol"], values={"inspection_findings": "垃圾按时清运"})


def seed_renovations() -> int:
    """Idempotent: nothing is added once a renovation exists."""
    if db.session.scalar(sa.select(Renovation.id).limit(1)) is not None:
        return 0
    users = {name: _staff(name) for name in ("clerk", "engineer", "cashier", "guard", "patrol")}
    if any(u is None for u in users.values()):
        return 0
    owners = db.session.execute(
        sa.select(Unit, Occupancy).join(Occupancy, Occupancy.unit_id == Unit.id)
        .where(Occupancy.kind == "owner", Occupancy.end_date.is_(None)).order_by(Unit.id).limit(len(PLAN))).all()
    today = date.today()
    for i, ((unit, occupancy), target) in enumerate(zip(owners, PLAN, strict=False)):
        ren = Renovation(unit=unit, applicant_id=occupancy.resident_id, scope="厨卫改造、吊顶、墙面翻新",
                         contractor=f"安居装饰{i + 1}队", contractor_contact="李工", contractor_phone="13900139000",
                         planned_start=today - timedelta(days=30), planned_end=today + timedelta(days=30),
                         fees_paid_until=today + timedelta(days=60), fees_confirmed_by="财务部 杨芳",
                         pledge_signed=True, drawing_lighting=True, drawing_ceiling=True, drawing_sockets=True,
                         drawing_smoke_detectors=True, pass_deposit_each=Decimal("100.00"),
                         door_lock_request=i % 3 == 0, created_by_id=users["clerk"].id)
        db.session.add(ren)
        db.session.flush()
        add_drawing(ren, PDF, f"平面布置图-{unit.code}.pdf", users["clerk"])
        db.session.commit()
        _walk(ren, target, users)
        if target == "permitted":
            start = utcnow() + timedelta(days=1)
            db.session.add_all([
                HotWork(renovation=ren, work="阳台栏杆焊接", location="阳台", starts_at=start,
                        ends_at=start + timedelta(hours=3), operator="焊工 赵师傅", fire_watch="保安 钱",
                        lead_name="施工队长 孙建", lead_phone="13800138123", lead_id_no="T440300198805061234",
                        extinguishers_ready=True, created_by_id=users["clerk"].id),
                TemporaryPower(renovation=ren, purpose="切割机临时用电", load_kw=Decimal("5"),
                               created_by_id=users["clerk"].id)])
            db.session.commit()
            _patrol_days(ren)
    return len(owners)


def _patrol_days(ren: Renovation) -> None:
    """REN-11: yesterday's patrol of this site was missed (an overdue item in the management department's
    待办; the sweep tells its head) and today's is due (a reminder in the same 待办)."""
    from workflow.calendar import local_today

    today = local_today()
    db.session.add_all([new_patrol_day(ren, today - timedelta(days=1)), new_patrol_day(ren, today)])
    db.session.commit()
