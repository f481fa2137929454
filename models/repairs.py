"""Repair work orders (维修工作单, REGULATIONS §6 HLP-3, HLP-7): opened from a repair help
request (or at the desk), assigned to engineering, responded to on site (2 hours for an
emergency), completed with the work, materials and any charge, closed once the resident said how
satisfied they are. ``repair_satisfaction_rate`` feeds the dashboard (VIS-5 target 98 %)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import UTCDateTime, db, utcnow
from models.registry import Unit
from models.staff import Staff
from models.workflow import Tracked
from workflow.deadlines import Deadline
from workflow.engine import Firing, T, Workflow

FRONT_DESK = frozenset({"manager", "cs_supervisor", "cs_clerk"})
ASSIGNERS = frozenset({"manager", "cs_supervisor", "engineering"})  # engineering: its head only (guard)
WORKERS = frozenset({"engineering", "cs_supervisor", "manager"})
SATISFACTION: dict[str, Any] = {"very_satisfied": _l("Very satisfied"), "satisfied": _l("Satisfied"),
                                "dissatisfied": _l("Dissatisfied")}
SATISFIED = ("very_satisfied", "satisfied")
SATISFACTION_TARGET = Decimal("0.98")  # VIS-5
ORDINARY_RESPONSE_HOURS = 24  # not in the regulations: a default, setting repair_order.deadline.respond


def _may_assign(order: RepairOrder, user: Staff | None) -> object:
    if order.assignee_id is None:
        return _l("Choose the engineer first (edit the work order).")
    assignee = db.session.get(Staff, order.assignee_id)
    if assignee is None or not assignee.active or not assignee.has_role("engineering"):
        return _l("A repair is assigned to active engineering staff.")
    if user is not None and not user.has_role("manager", "cs_supervisor"):
        head = user.department_head and user.department is not None and user.department.key == "engineering"
        if not head:
            return _l("Only the supervisor or the head of engineering assigns repairs.")
    return None


def _responded(order: RepairOrder, firing: Firing) -> None:
    order.responded_at = firing.at


def _complete_guard(order: RepairOrder) -> object:
    if order.paid and not (order.charge and order.charge > 0):
        return _l("A paid repair needs its charge first (edit the work order).")
    return None


def _completed(order: RepairOrder, firing: Firing) -> None:
    order.completed_at = firing.at


def _repair_visit_satisfaction(order: RepairOrder) -> str | None:
    """The resident's verdict from a repair visit (models.visits, VIS-2), when one was recorded."""
    from models.visits import DONE_STATES, Visit

    if order.id is None:
        return None
    satisfied = db.session.scalar(sa.select(Visit.satisfied).where(
        Visit.repair_order_id == order.id, Visit.satisfied.is_not(None), Visit.state.in_(DONE_STATES),
        Visit.deleted_at.is_(None)).order_by(Visit.id.desc()).limit(1))
    return None if satisfied is None else ("satisfied" if satisfied else "dissatisfied")


def _close_guard(order: RepairOrder) -> object:
    if order.satisfaction in SATISFACTION or _repair_visit_satisfaction(order):
        return None
    return _l("Record the resident's satisfaction first (edit the work order, or a repair visit).")


def _closed(order: RepairOrder, firing: Firing) -> None:
    if order.satisfaction not in SATISFACTION:
        order.satisfaction = _repair_visit_satisfaction(order)


class RepairOrder(Tracked, db.Model):
    """A repair work order; linked to the help request it came from, never a copy of it."""

    __tablename__ = "repair_order"
    derived_from = {"fault_text": ("help_request.description", "fault")}  # what properties read
    id: Mapped[int] = mapped_column(primary_key=True)
    help_request_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("help_request.id", ondelete="CASCADE"), unique=True, index=True)
    help_request = relationship("HelpRequest", back_populates="repair_order")
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id"), index=True)
    unit: Mapped[Unit | None] = relationship()
    location: Mapped[str | None] = mapped_column(sa.String(200))
    fault: Mapped[str | None] = mapped_column(sa.Text)  # only for orders opened without a help request
    emergency: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    assignee_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"), index=True)
    assignee: Mapped[Staff | None] = relationship(foreign_keys=[assignee_id])
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    work_done: Mapped[str | None] = mapped_column(sa.String(500))
    materials: Mapped[str | None] = mapped_column(sa.String(500))
    paid: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    charge: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2), info={"important": True})  # ACC-8: recorded money
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    satisfaction: Mapped[str | None] = mapped_column(sa.String(16), index=True)
    satisfaction_note: Mapped[str | None] = mapped_column(sa.String(500))

    workflow = Workflow(_l("Repair work order"), {
        "open": _l("Waiting to be assigned"), "assigned": _l("Assigned"), "responded": _l("On site"),
        "completed": _l("Completed"), "closed": _l("Closed"),
    }, "open", [
        T("assign", "open", "assigned", ASSIGNERS, label=_l("Assign"), guard=_may_assign),
        T("respond", "assigned", "responded", WORKERS, label=_l("Arrived on site"), effect=_responded),
        T("complete", "responded", "completed", WORKERS, label=_l("Work done"), requires=["work_done"],
          guard=_complete_guard, effect=_completed),
        T("close", "completed", "closed", FRONT_DESK, label=_l("Close the work order"), guard=_close_guard,
          effect=_closed),
    ], delete_roles=FRONT_DESK, deadlines=[
        Deadline("respond_emergency", _l("Emergency repair: response on site"), start="reported_at", amount=2,
                 unit="hours", met_by={"respond"}, department="engineering", when=lambda o: bool(o.emergency),
                 watch=("emergency",)),
        Deadline("respond", _l("Ordinary repair: response on site"), start="reported_at",
                 amount=ORDINARY_RESPONSE_HOURS, unit="hours", met_by={"respond"}, department="engineering",
                 when=lambda o: not o.emergency, watch=("emergency",)),
    ])

    field_labels = {"work_done": _l("Work done")}

    @property
    def fault_text(self) -> str:
        return self.help_request.description if self.help_request is not None else (self.fault or "")

    def __str__(self) -> str:
        return f"#{self.id} {self.fault_text[:30]}"

    def check_details(self) -> None:
        """Input rules checked before any write (form, import)."""
        from models.validators import DomainError

        if not (self.satisfaction or "").strip():
            self.satisfaction = None  # the empty choice of the form
        if self.help_request is None and self.help_request_id is None and not (self.fault or "").strip():
            raise DomainError(_l("Describe the fault (or open the order from a repair help request)."), "fault")
        if self.charge is not None and (not self.paid or self.charge <= 0):
            raise DomainError(_l("A charge is entered only for a paid repair, and above zero."), "charge")
        if self.satisfaction is not None and self.satisfaction not in SATISFACTION:
            raise DomainError(_l("Choose the resident's satisfaction."), "satisfaction")
        if self.satisfaction is not None and self.state not in ("completed", "closed"):
            raise DomainError(_l("Satisfaction is recorded after the work is done."), "satisfaction")


def repair_satisfaction(start: datetime, end: datetime) -> tuple[int, int]:
    """(satisfied or very satisfied, rated) among orders completed in [start, end)."""
    o = RepairOrder
    rated, happy = db.session.execute(sa.select(
        sa.func.count(o.id), sa.func.count(o.id).filter(o.satisfaction.in_(SATISFIED))).where(
        o.completed_at >= start, o.completed_at < end, o.satisfaction.is_not(None),
        o.deleted_at.is_(None))).one()
    return int(happy or 0), int(rated or 0)


def repair_satisfaction_rate(start: datetime, end: datetime) -> Decimal | None:
    """VIS-5: satisfied + very satisfied over rated repairs completed in [start, end); None when
    none was rated (no rate rather than 0 % or 100 %). Compare with ``SATISFACTION_TARGET``."""
    happy, rated = repair_satisfaction(start, end)
    return (Decimal(happy) / Decimal(rated)).quantize(Decimal("0.0001")) if rated else None


__all__ = ["SATISFACTION", "SATISFACTION_TARGET", "RepairOrder", "repair_satisfaction",
           "repair_satisfaction_rate"]
