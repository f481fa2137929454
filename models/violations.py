"""Violations (住户违章处理, REGULATIONS §8): the record sheet 《住户违章事件记录表》 and its flow.

reported (staff persuade first, VIO-3) → registered (coordination sheet 协调单 XTD-yyyy-nnnn, routed to
the supervisor or the manager by severity, VIO-4) → measures of VIO-5/6 and the arrears ladder of
VIO-9 as steps on the registered record, penalties signed by the manager (VIO-7) → follow-up
(VIO-10) → closed; kept 1 / 5 years from closing (VIO-11, seeded retention policies). Guards and
effects live in models/violation_rules.py; every measure writes a ``ViolationAction`` row and every
money decision a ``ViolationCharge`` row, which the month-end deduction list reads (VIO-8).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from models import violation_rules as r
from models.base import UTCDateTime, current_actor_id, db, utcnow
from models.numbering import next_number
from models.registry import Resident, Unit
from models.staff import Staff
from models.workflow import Tracked
from workflow.deadlines import Deadline
from workflow.engine import STAY, Step, T, Workflow

SIGN = [Step(_l("Manager signs the decision"), r.MANAGER, allow_self=True)]  # VIO-7: effective when signed


def _staff(column: Any) -> Any:
    return relationship(Staff, foreign_keys=[column])


class Violation(Tracked, db.Model):
    __tablename__ = "violation"
    id: Mapped[int] = mapped_column(primary_key=True)
    sheet_no: Mapped[str | None] = mapped_column(sa.String(16), unique=True)  # XTD-2026-0001 (VIO-3 register)
    sheet_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # VIO-1 / VIO-2
    kind: Mapped[str] = mapped_column(sa.String(16), index=True)
    sub_kind: Mapped[str | None] = mapped_column(sa.String(16))
    severity: Mapped[str] = mapped_column(sa.String(8), default="general", index=True)
    economic_loss: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    public_safety: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    responsible_role: Mapped[str] = mapped_column(sa.String(32), default="cs_supervisor")  # VIO-4
    # VIO-3: the record sheet
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id"), index=True)
    unit: Mapped[Unit | None] = relationship()
    resident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("resident.id"), index=True)
    resident: Mapped[Resident | None] = relationship()
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    location: Mapped[str] = mapped_column(sa.String(200), default="")
    description: Mapped[str] = mapped_column(sa.Text, default="")
    witness: Mapped[str | None] = mapped_column(sa.String(200), info={"personal": True})  # witnesses
    persuasion_notes: Mapped[str | None] = mapped_column(sa.String(500))
    persuaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    persuaded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    persuaded_by = _staff(persuaded_by_id)
    renovation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("renovation.id", ondelete="SET NULL"),
                                                      index=True)
    renovation = relationship("Renovation", foreign_keys=[renovation_id])
    # VIO-5 / VIO-6 measures
    measure_level: Mapped[int] = mapped_column(sa.Integer, default=0)  # highest rung taken (r.MEASURES)
    rectify_by: Mapped[datetime | None] = mapped_column(UTCDateTime())
    compensation_amount: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    committee_support: Mapped[str | None] = mapped_column(sa.String(300))
    mediation_result: Mapped[str | None] = mapped_column(sa.String(300))
    mediation_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cut_reason: Mapped[str | None] = mapped_column(sa.String(24))
    utility: Mapped[str | None] = mapped_column(sa.String(8))
    covenant_clause: Mapped[str | None] = mapped_column(sa.String(300))
    cut_notice_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cut_planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cut_decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    second_notice_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cut_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    restore_notes: Mapped[str | None] = mapped_column(sa.String(300))
    restored_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # VIO-9 arrears ladder
    arrears_level: Mapped[int] = mapped_column(sa.Integer, default=0)  # steps of r.ARREARS taken
    arrears_notes: Mapped[str | None] = mapped_column(sa.String(300))
    late_fee_amount: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    # VIO-10 / closing
    penalised_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    follow_up_notes: Mapped[str | None] = mapped_column(sa.String(500))
    followed_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome_notes: Mapped[str | None] = mapped_column(sa.String(500))
    actions: Mapped[list[ViolationAction]] = relationship(
        back_populates="violation", cascade="all, delete-orphan", order_by="(ViolationAction.at, ViolationAction.id)")
    charges: Mapped[list[ViolationCharge]] = relationship(
        back_populates="violation", cascade="all, delete-orphan", order_by="ViolationCharge.id")

    workflow = Workflow(_l("Violation"), {
        "reported": _l("Reported, being persuaded"), "registered": _l("Registered"), "closed": _l("Closed"),
    }, "reported", [
        T("persuade", ["reported", "registered"], STAY, r.BUSINESS, label=_l("Record persuasion"),
          requires=["persuasion_notes"], effect=r.on_persuade, todo=False),
        T("resolve", "reported", "closed", r.FRONT_DESK, label=_l("Stopped after persuasion: close"),
          comment_required=True, guard=r.persuaded, effect=r.on_close, todo=False),
        T("register", "reported", "registered", r.FRONT_DESK, label=_l("Persuasion ignored: register and "
          "issue a coordination sheet"), guard=r.registrable, effect=r.on_register),
        T("rectify", "registered", STAY, r.SUPERVISORS, label=_l("Order rectification by a deadline"),
          requires=["rectify_by"], guard=r.rectification, who=r.penaliser, effect=r.on_rectify, approvals=SIGN,
          todo=False),
        T("compensate", "registered", STAY, r.SUPERVISORS, label=_l("Decide compensation"),
          requires=["compensation_amount"], guard=r.compensation, who=r.penaliser, effect=r.on_compensate,
          approvals=SIGN, todo=False),
        T("decide_cut", "registered", STAY, r.MANAGER, label=_l("Decide a water/power cut"),
          requires=["cut_reason", "utility", "covenant_clause", "cut_notice_at", "cut_planned_at"],
          guard=r.cut_decidable, effect=r.on_decide_cut, danger=True, todo=False),
        T("second_notice", "registered", STAY, r.CUTTERS, label=_l("Give the second notice (5 minutes before)"),
          guard=r.second_notice, effect=r.on_second_notice),
        T("cut", "registered", STAY, r.CUTTERS, label=_l("Cut water/power"), guard=r.cut_now, effect=r.on_cut,
          danger=True),
        T("restore", "registered", STAY, r.CUTTERS, label=_l("Restore water/power"), comment_required=True,
          guard=r.restorable, effect=r.on_restore),
        T("criticise", "registered", STAY, r.SUPERVISORS, label=_l("Public criticism"),
          requires=["committee_support"], guard=r.criticism, who=r.penaliser, effect=r.on_criticise,
          approvals=SIGN, todo=False),
        T("mediation_failed", "registered", STAY, r.SUPERVISORS, label=_l("Owners' committee mediation failed"),
          requires=["mediation_result"], effect=r.on_mediation, todo=False),
        T("sue", "registered", STAY, r.SUPERVISORS, label=_l("Arbitration or lawsuit"), guard=r.lawsuit,
          who=r.penaliser, effect=r.on_sue, approvals=SIGN, comment_required=True, todo=False),
        T("arrears_step", "registered", STAY, r.FRONT_DESK, label=_l("Next arrears step (desk)"),
          requires=["arrears_notes"], guard=r.arrears_desk, effect=r.on_arrears_desk, todo=False),
        T("arrears_late_fee", "registered", STAY, r.SUPERVISORS, label=_l("Charge a late fee"),
          requires=["late_fee_amount"], guard=r.late_fee, who=r.penaliser, effect=r.on_late_fee, approvals=SIGN,
          todo=False),
        T("arrears_penalty", "registered", STAY, r.SUPERVISORS, label=_l("Next arrears step (penalty)"),
          requires=["arrears_notes"], guard=r.arrears_penalty, who=r.penaliser, effect=r.on_arrears_penalty,
          approvals=SIGN, todo=False),
        T("follow_up", "registered", STAY, r.FRONT_DESK, label=_l("Record the follow-up"),
          comment_required=True, guard=r.followable, effect=r.on_follow_up),
        T("close", "registered", "closed", r.SUPERVISORS, label=_l("Close"), comment_required=True,
          guard=r.closable, effect=r.on_close),
    # Steps listed in "My work" take their text as the comment, not a required field: the engine
    # offers a step whose required fields are empty without asking its guard (VIO-4 routing).
    ], delete_roles=r.FRONT_DESK, deadlines=[
        Deadline("follow_up", _l("Follow up after a penalty"), start="penalised_at", amount=7, unit="days",
                 met_by={"follow_up"}, department="cs", watch=("penalised_at", "followed_up_at"),
                 when=lambda v: v.penalised_at is not None and (
                     v.followed_up_at is None or v.followed_up_at < v.penalised_at)),
        Deadline("second_notice", _l("Second notice before a water/power cut"), start="cut_decided_at",
                 amount=3, unit="days", until="cut_planned_at", met_by={"second_notice", "restore"},
                 department="cs", watch=("cut_decided_at", "second_notice_at", "cut_planned_at"),
                 when=lambda v: v.cut_decided_at is not None and v.second_notice_at is None and v.cut_at is None),
        Deadline("restore", _l("Restore water/power once resolved"), start="cut_at", amount=1, unit="days",
                 met_by={"restore"}, department="cs", watch=("cut_at", "restored_at"),
                 when=lambda v: v.cut_at is not None and v.restored_at is None),
    ])

    field_labels = {
        "persuasion_notes": _l("How the resident was persuaded"), "outcome_notes": _l("Outcome"),
        "rectify_by": _l("Rectify by (e.g. 2026-11-30 18:00)"), "compensation_amount": _l("Compensation (yuan)"),
        "cut_reason": _l("Reason for the cut (arrears / refused_compensation)"),
        "utility": _l("What is cut (water / power / both)"),
        "covenant_clause": _l("Clause of the owners' covenant"),
        "cut_notice_at": _l("Written notice given at (e.g. 2026-11-30 09:00)"),
        "cut_planned_at": _l("Cut planned at (at least 3 days after the notice)"),
        "restore_notes": _l("How it was resolved"), "committee_support": _l("Owners' committee support"),
        "mediation_result": _l("Result of the owners' committee mediation"),
        "arrears_notes": _l("What was sent or done"), "late_fee_amount": _l("Late fee (yuan)"),
        "follow_up_notes": _l("Follow-up with the resident"),
    }

    def __str__(self) -> str:
        return self.sheet_no or f"#{self.id}"

    @property
    def kind_label(self) -> str:
        return str(r.KINDS.get(self.kind, self.kind or ""))

    @property
    def severity_label(self) -> str:
        return str(r.SEVERITIES.get(self.severity, self.severity or ""))

    @validates("severity")
    def _route(self, key: str, value: str) -> str:
        self.responsible_role = "manager" if value == "major" else "cs_supervisor"  # VIO-4
        return value

    @validates("rectify_by", "cut_notice_at", "cut_planned_at")
    def _when(self, key: str, value: Any) -> datetime | None:
        return r.parse_local(value, key)  # typed into a step's field as text

    @validates("compensation_amount", "late_fee_amount")
    def _money(self, key: str, value: Any) -> Decimal | None:
        return r.parse_money(value, key)

    @validates("cut_reason", "utility")
    def _choice(self, key: str, value: Any) -> str | None:
        from models.validators import DomainError

        allowed = r.CUT_REASONS if key == "cut_reason" else r.UTILITIES
        if value in (None, ""):
            return None
        if value not in allowed:
            raise DomainError(_l("Choose one of: %(v)s.", v=", ".join(allowed)), key)
        return value

    # --- checks the form runs (views call them from check_model) ------------------------------
    def check_intake(self) -> None:
        """VIO-1..3: the record sheet is complete, the kind known, the severity follows the facts."""
        from models.validators import DomainError

        if self.state == "closed" and self.id is not None:
            raise DomainError(_l("A closed violation is kept as it was; it can no longer be edited."))
        if self.kind not in r.KINDS:
            raise DomainError(_l("Choose a value from the list."), "kind")
        if self.sub_kind and self.sub_kind not in r.SUB_KINDS[self.kind]:
            raise DomainError(_l("This sub-kind belongs to another kind of violation (VIO-1)."), "sub_kind")
        for field, message in (("description", _l("Describe what happened.")),
                               ("location", _l("Record where it happened.")),
                               ("occurred_at", _l("Record when it happened."))):
            value = getattr(self, field)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise DomainError(message, field)
        if self.occurred_at and self.occurred_at > utcnow() + timedelta(minutes=5):
            raise DomainError(_l("It cannot have happened in the future."), "occurred_at")
        self.check_severity()

    def check_severity(self) -> None:
        """VIO-2: economic loss or a threat to public safety makes it major; refused, not regraded."""
        from models.validators import DomainError

        if self.severity not in r.SEVERITIES:
            raise DomainError(_l("Choose a value from the list."), "severity")
        if (self.economic_loss or self.public_safety) and self.severity != "major":
            raise DomainError(_l("Economic loss or a threat to public safety makes it major (VIO-2)."), "severity")
        was = sa.inspect(self).attrs.severity.history.deleted
        if self.id is not None and self.severity != "major" and "major" in was:
            # VIO-4: a major violation is the manager's; the desk may not hand it back to the supervisor
            actor = db.session.get(Staff, current_actor_id() or 0)
            if actor is None or "manager" not in set(actor.roles):
                raise DomainError(_l("Only the manager may regrade a major violation as general (VIO-4)."),
                                  "severity")


class ViolationAction(db.Model):
    """One step taken on a violation (persuasion, a measure, a ladder step), with who and who signed."""

    __tablename__ = "violation_action"
    id: Mapped[int] = mapped_column(primary_key=True)
    violation_id: Mapped[int] = mapped_column(sa.ForeignKey("violation.id", ondelete="CASCADE"), index=True)
    violation: Mapped[Violation] = relationship(back_populates="actions")
    code: Mapped[str] = mapped_column(sa.String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    by = _staff(by_id)
    signed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    signed_by = _staff(signed_by_id)
    notes: Mapped[str | None] = mapped_column(sa.Text)

    @property
    def label(self) -> str:
        return str(r.ACTIONS.get(self.code, self.code))


class ViolationCharge(db.Model):
    """An effective (signed) charge to the resident; finance collects it from the month-end list (VIO-8)."""

    __tablename__ = "violation_charge"
    id: Mapped[int] = mapped_column(primary_key=True)
    violation_id: Mapped[int] = mapped_column(sa.ForeignKey("violation.id", ondelete="CASCADE"), index=True)
    violation: Mapped[Violation] = relationship(back_populates="charges")
    kind: Mapped[str] = mapped_column(sa.String(16))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), info={"important": True})  # ACC-8: recorded money
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    month: Mapped[str] = mapped_column(sa.String(7), index=True)  # Beijing yyyy-mm it became effective
    signed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    signed_by = _staff(signed_by_id)
    collected_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    collected_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    collected_by = _staff(collected_by_id)

    @property
    def kind_label(self) -> str:
        return str(r.CHARGE_KINDS.get(self.kind, self.kind))


def issue_sheet(v: Violation, at: datetime) -> str:
    """VIO-3: the next coordination sheet number of the Beijing year, from the year's counter row
    (concurrent sheets all get distinct numbers)."""
    from workflow.calendar import app_zone

    prefix = f"XTD-{at.astimezone(app_zone()):%Y}-"
    v.sheet_no = next_number(db.session, Violation.__table__.c.sheet_no, prefix, 4)
    v.sheet_issued_at = at
    return v.sheet_no


def new_from_renovation(renovation: Any, user: Staff | None, description: str) -> Violation:
    """REN-5: a written violation notice (违约单) on a renovation becomes a violation of kind renovation,
    linked to it; added, not committed. The inspector already warned verbally, which is the persuasion."""
    now = utcnow()
    unit = getattr(renovation, "unit", None)
    resident = getattr(renovation, "resident", None) or getattr(renovation, "applicant", None)
    violation = Violation(
        renovation=renovation, unit=unit, resident=resident if isinstance(resident, Resident) else None,
        kind="renovation", sub_kind=None, severity="general", occurred_at=now,
        location=str(unit) if unit is not None else "", description=description,
        persuasion_notes=str(_l("Verbal warning during the renovation inspection (REN-5).")),
        persuaded_at=now, persuaded_by_id=user.id if user else None, created_by_id=user.id if user else None)
    db.session.add(violation)
    return violation


def deduction_list(month: str) -> list[ViolationCharge]:
    """VIO-8: effective charges up to the end of ``month`` (yyyy-mm) that finance has not collected."""
    return list(db.session.scalars(
        sa.select(ViolationCharge).join(Violation)
        .where(ViolationCharge.month <= month, ViolationCharge.collected_at.is_(None), Violation.deleted_at.is_(None))
        .options(sa.orm.joinedload(ViolationCharge.violation).joinedload(Violation.unit),
                 sa.orm.joinedload(ViolationCharge.violation).joinedload(Violation.resident))
        .order_by(ViolationCharge.month, ViolationCharge.id)).unique())
