"""Demo follow-up visits (VIS-1..6): visits of handled complaints and completed repairs, surveys and
suggestions, on site with a drawn signature or by phone, some signed by the manager, one new issue
waiting for its further visit, and handled complaints still waiting for their visit (overdue)."""

from __future__ import annotations

import random
import zlib
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from models import Staff, db
from models.attachment import store
from models.base import utcnow
from models.visits import VISITORS, Visit
from workflow import engine

OPINIONS = ["处理及时，满意", "问题已解决，感谢物业", "基本满意，希望以后更快", "维修师傅态度很好",
            "不太满意，等待时间较长"]


def signature_png(seed: int = 0) -> bytes:
    """A small PNG with a scribble, standing in for a signature drawn on the pad."""
    width, height = 120, 40
    rng = random.Random(seed)
    level, line = height // 2, []
    for _ in range(width):
        level = max(4, min(height - 5, level + rng.choice((-2, -1, 0, 1, 2))))
        line.append(level)
    rows = [b"\x00" + bytes(0 if abs(y - line[x]) <= 1 else 255 for x in range(width)) for y in range(height)]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


def _staff(username: str) -> Staff | None:
    return db.session.scalar(sa.select(Staff).where(Staff.username == username))


def _visitor_for(complaint: Any) -> Staff | None:
    """VIS-1: the head of the responsible department, else the customer-service supervisor."""
    head = db.session.scalar(sa.select(Staff).where(Staff.department_id == complaint.department_id,
                                                    Staff.department_head.is_(True), Staff.active.is_(True)))
    return head or _staff("supervisor")


def record_demo_visit(subject: Any, when: datetime, *, kind: str, on_site: bool, recorder: Staff,
                      visitor: Staff | None = None, opinion: str = "处理及时，满意", seed: int = 0) -> Visit:
    """Record one follow-up visit of a complaint or repair order through the engine (committed).
    The complaints demo may call it before firing its own "visit" step."""
    visit = Visit(kind=kind, method="on_site" if on_site else "phone", visited_at=min(when, utcnow()),
                  visitor=visitor or recorder, person_visited=getattr(subject, "complainant_name", None) or "住户",
                  opinion=opinion, satisfied="不" not in opinion, unit_id=getattr(subject, "unit_id", None),
                  created_by_id=recorder.id)
    if kind == "complaint":
        visit.complaint = subject
    else:
        visit.repair_order = subject
    db.session.add(visit)
    db.session.flush()
    if on_site:
        store(visit, "signature", signature_png(seed), "signature.png", recorder)
    db.session.commit()
    engine.fire(visit, "record", recorder)
    return visit


def seed_visits() -> int:
    """Idempotent: nothing is added once a survey exists (the complaints demo records visits of its
    own). Works with no complaints or repairs too."""
    if db.session.scalar(sa.select(Visit.id).where(Visit.kind.in_(("survey", "suggestion"))).limit(1)) is not None:
        return 0
    manager, supervisor, clerk = _staff("manager"), _staff("supervisor"), _staff("clerk")
    if manager is None or supervisor is None or clerk is None:
        return 0
    rng, added = random.Random(20261124), 0
    from models.complaints import Complaint
    from models.repairs import RepairOrder

    told = db.session.scalars(sa.select(Complaint).where(
        Complaint.state == "told", Complaint.deleted_at.is_(None),
        ~sa.exists().where(Visit.complaint_id == Complaint.id)).order_by(Complaint.id)).all()
    for i, complaint in enumerate(told):
        if i % 3 == 2:
            continue  # still waiting for its follow-up: overdue after 3 days
        visitor = _visitor_for(complaint)
        recorder = visitor if visitor is not None and visitor.roles & VISITORS else supervisor
        visit = record_demo_visit(complaint, complaint.handled_at + timedelta(hours=rng.randint(2, 60)),
                                  kind="complaint", on_site=i % 2 == 0, recorder=recorder,
                                  visitor=visitor, opinion=OPINIONS[i % len(OPINIONS)], seed=i)
        added += 1
        if i % 4 == 0:
            engine.fire(visit, "sign", manager)
    visited = sa.exists().where(Visit.repair_order_id == RepairOrder.id)
    done = db.session.scalars(sa.select(RepairOrder).where(RepairOrder.completed_at.is_not(None),
                                                           RepairOrder.deleted_at.is_(None), ~visited)
                              .order_by(RepairOrder.id).limit(20)).all()
    engineer = _staff("engineer") or supervisor
    for i, order in enumerate(done):
        major = bool(order.emergency)  # VIS-2: major repairs on site, ordinary ones by phone
        visit = record_demo_visit(order, order.completed_at + timedelta(days=1), kind="repair", on_site=major,
                                  recorder=engineer if major else clerk, opinion=OPINIONS[i % len(OPINIONS)],
                                  seed=100 + i)
        added += 1
        if i % 3 == 0:
            engine.fire(visit, "sign", manager)
    added += _surveys(clerk, supervisor, manager)
    return added


def _surveys(clerk: Staff, supervisor: Staff, manager: Staff) -> int:
    """Opinion surveys and a suggestion; one raises an issue that waits for its further visit."""
    now = utcnow()
    rows = [
        Visit(kind="survey", method="phone", visited_at=now - timedelta(days=9), visitor=clerk,
              person_visited="李女士", opinion="对绿化养护满意", satisfied=True),
        Visit(kind="suggestion", method="phone", visited_at=now - timedelta(days=5), visitor=supervisor,
              person_visited="陈先生", opinion="建议在北门增设快递柜", satisfied=True),
        Visit(kind="survey", method="phone", visited_at=now - timedelta(days=2), visitor=supervisor,
              person_visited="周先生", opinion="总体满意", satisfied=True, new_issue="地下车库照明不足，何时整改？",
              agreed_reply_at=now + timedelta(days=3)),
        Visit(kind="survey", method="phone", visited_at=now - timedelta(hours=3), visitor=clerk,
              person_visited="吴女士", opinion="电梯噪音仍有，尚可接受", satisfied=False),
    ]
    db.session.add_all(rows)
    db.session.commit()
    for visit in rows[:3]:
        engine.fire(visit, "record", visit.visitor)
    engine.fire(rows[0], "sign", manager)
    return len(rows)
