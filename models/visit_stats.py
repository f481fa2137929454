"""VIS-5 dashboard rates of follow-up visits, for the statistics screen.

A period is ``[start, end)`` in UTC. Each function returns a ``Rate`` (done / total, with the
regulation's target); an empty period has no value rather than 0 % or 100 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from models.attachment import Attachment
from models.base import db
from models.visits import DONE_STATES, Visit

FOLLOW_UP_TARGET = 0.96  # VIS-5: complaint follow-up rate >= 96 %
PROCESSING_TARGET = 1.0  # VIS-5: follow-up processing rate 100 %


@dataclass(frozen=True)
class Rate:
    done: int
    total: int
    target: float

    @property
    def value(self) -> float | None:
        return self.done / self.total if self.total else None

    @property
    def met(self) -> bool | None:
        return None if self.value is None else self.value >= self.target


def completed_visit_exists(complaint_id: sa.ColumnElement) -> sa.Exists:
    """SQL form of ``models.visits.completed_visit_for``: a recorded visit with an opinion or a
    reason; an on-site visit with an opinion needs a signature."""
    opinion = sa.func.length(sa.func.trim(sa.func.coalesce(Visit.opinion, ""))) > 0
    reason = sa.func.length(sa.func.trim(sa.func.coalesce(Visit.impossible_reason, ""))) > 0
    signed = sa.exists().where(Attachment.record_type == "visit", Attachment.record_id == Visit.id,
                               Attachment.kind == "signature")
    return sa.exists().where(
        Visit.kind == "complaint", Visit.complaint_id == complaint_id, Visit.state.in_(DONE_STATES),
        Visit.deleted_at.is_(None), sa.or_(opinion, reason),
        sa.or_(Visit.method != "on_site", sa.not_(opinion), signed))


def complaint_follow_up_rate(start: datetime, end: datetime) -> Rate:
    """Complaints handled in the period that have a completed follow-up visit / complaints handled
    (duplicates linked to another complaint count once, through that one: CMP-6)."""
    from models.complaints import Complaint

    handled = sa.and_(Complaint.handled_at >= start, Complaint.handled_at < end,
                      Complaint.deleted_at.is_(None), Complaint.duplicate_of_id.is_(None))
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Complaint).where(handled)) or 0
    done = db.session.scalar(sa.select(sa.func.count()).select_from(Complaint).where(
        handled, completed_visit_exists(Complaint.id))) or 0
    return Rate(done, total, FOLLOW_UP_TARGET)


def follow_up_processing_rate(start: datetime, end: datetime) -> Rate:
    """Recorded visits of the period that raised a new issue, and how many of those issues a
    further visit has since recorded as resolved (VIS-4)."""
    raised = sa.and_(Visit.state.in_(DONE_STATES), Visit.deleted_at.is_(None), Visit.visited_at >= start,
                     Visit.visited_at < end, sa.func.length(sa.func.trim(sa.func.coalesce(Visit.new_issue, ""))) > 0)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Visit).where(raised)) or 0
    done = db.session.scalar(sa.select(sa.func.count()).select_from(Visit).where(
        raised, Visit.issue_resolved_at.is_not(None))) or 0
    return Rate(done, total, PROCESSING_TARGET)


def major_repairs_without_on_site_visit(start: datetime, end: datetime) -> list[int]:
    """VIS-2: major repairs completed in the period (the month) that no recorded on-site visit
    followed yet; the desk's monthly round of on-site visits works through this list."""
    from models.repairs import RepairOrder

    major = RepairOrder.major.is_(True) if hasattr(RepairOrder, "major") else RepairOrder.emergency.is_(True)
    visited = sa.exists().where(Visit.repair_order_id == RepairOrder.id, Visit.kind == "repair",
                                Visit.method == "on_site", Visit.state.in_(DONE_STATES), Visit.deleted_at.is_(None))
    return list(db.session.scalars(sa.select(RepairOrder.id).where(
        major, RepairOrder.completed_at >= start, RepairOrder.completed_at < end,
        RepairOrder.deleted_at.is_(None), ~visited).order_by(RepairOrder.completed_at)))
