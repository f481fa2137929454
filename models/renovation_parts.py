"""A renovation's own rows (REGULATIONS §7): charges, worker passes, notices, inspections, the warning
ladder and extensions. Written only by the workflow's effects (models/renovation_rules.py), so each
row says who did what and when; the renovation record itself keeps the current state.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import UTCDateTime, db, utcnow
from models.staff import Staff

CHARGE_KINDS = {
    "deposit": _l("Renovation deposit"), "debris": _l("Debris removal fee"),
    "pass_deposit": _l("Worker-pass deposits"), "power": _l("Temporary power fee"),
}
REFUNDABLE = frozenset({"deposit", "pass_deposit"})  # deposits come back; fees do not
NOTICE_KINDS = {
    "defects": _l("Outstanding-defects notice"), "neighbours": _l("Neighbour notice"),
    "permit": _l("Renovation permit"), "rectification": _l("Rectification notice"),
    "acceptance": _l("Acceptance notice"),
}
WARNING_LEVELS = {
    "verbal": _l("Verbal warning"), "written": _l("Written violation notice"),
    "final": _l("Final warning"), "cut": _l("Power cut / site cleared"),
    "restored": _l("Restored after written commitment"),
}
LADDER = ("verbal", "written", "final", "cut")  # REN-5: in this order, no skipping
INSPECTION_KINDS = {"patrol": _l("Patrol"), "completion": _l("Completion inspection")}


def _staff_fk() -> Mapped[int | None]:
    return mapped_column(sa.ForeignKey("staff.id"))


class RenovationCharge(db.Model):
    """One fee or deposit set by engineering (REN-2), collected by finance (REN-3), refunded (REN-7)."""

    __tablename__ = "renovation_charge"
    id: Mapped[int] = mapped_column(primary_key=True)
    renovation_id: Mapped[int] = mapped_column(sa.ForeignKey("renovation.id", ondelete="CASCADE"), index=True)
    renovation = relationship("Renovation", back_populates="charges")
    kind: Mapped[str] = mapped_column(sa.String(16))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), info={"important": True})  # ACC-8: recorded money
    receipt_no: Mapped[str | None] = mapped_column(sa.String(32))
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    paid_by_id: Mapped[int | None] = _staff_fk()
    paid_by: Mapped[Staff | None] = relationship(foreign_keys=[paid_by_id])
    refunded_amount: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    refund_receipt_no: Mapped[str | None] = mapped_column(sa.String(32))
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    refunded_by_id: Mapped[int | None] = _staff_fk()
    refunded_by: Mapped[Staff | None] = relationship(foreign_keys=[refunded_by_id])

    @property
    def kind_label(self) -> str:
        return str(CHARGE_KINDS.get(self.kind, self.kind))

    @property
    def refundable(self) -> bool:
        return self.kind in REFUNDABLE


class RenovationPass(db.Model):
    """A numbered worker pass (施工人员出入证) with its deposit; issued with the permit (REN-3)."""

    __tablename__ = "renovation_pass"
    __table_args__ = (sa.UniqueConstraint("renovation_id", "number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    renovation_id: Mapped[int] = mapped_column(sa.ForeignKey("renovation.id", ondelete="CASCADE"), index=True)
    renovation = relationship("Renovation", back_populates="passes")
    number: Mapped[str] = mapped_column(sa.String(32))
    deposit: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), info={"important": True})  # ACC-8: recorded money
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RenovationNotice(db.Model):
    """A document handed out: defects notice (to owner and to tenant), neighbour notice, permit,
    rectification notice (with its deadline), acceptance notice. Filed in the unit archive (REN-8)."""

    __tablename__ = "renovation_notice"
    id: Mapped[int] = mapped_column(primary_key=True)
    renovation_id: Mapped[int] = mapped_column(sa.ForeignKey("renovation.id", ondelete="CASCADE"), index=True)
    renovation = relationship("Renovation", back_populates="notices")
    kind: Mapped[str] = mapped_column(sa.String(16))
    addressed_to: Mapped[str] = mapped_column(sa.String(200), info={"personal": True})
    text: Mapped[str] = mapped_column(sa.Text)
    due_on: Mapped[datetime | None] = mapped_column(UTCDateTime())  # rectification deadline
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    issued_by_id: Mapped[int | None] = _staff_fk()
    issued_by: Mapped[Staff | None] = relationship(foreign_keys=[issued_by_id])

    @property
    def kind_label(self) -> str:
        return str(NOTICE_KINDS.get(self.kind, self.kind))


class RenovationInspection(db.Model):
    """A patrol (REN-5) or a completion inspection (REN-7): who, when, what was found."""

    __tablename__ = "renovation_inspection"
    id: Mapped[int] = mapped_column(primary_key=True)
    renovation_id: Mapped[int] = mapped_column(sa.ForeignKey("renovation.id", ondelete="CASCADE"), index=True)
    renovation = relationship("Renovation", back_populates="inspections")
    kind: Mapped[str] = mapped_column(sa.String(16))
    result: Mapped[str] = mapped_column(sa.String(8))  # ok | breach | pass | fail
    findings: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    inspector_id: Mapped[int | None] = _staff_fk()
    inspector: Mapped[Staff | None] = relationship(foreign_keys=[inspector_id])
    department: Mapped[str | None] = mapped_column(sa.String(16))  # the inspector's department key


class RenovationWarning(db.Model):
    """One rung of the REN-5 ladder, signed by the contractor (typed name; a scan may be attached)."""

    __tablename__ = "renovation_warning"
    id: Mapped[int] = mapped_column(primary_key=True)
    renovation_id: Mapped[int] = mapped_column(sa.ForeignKey("renovation.id", ondelete="CASCADE"), index=True)
    renovation = relationship("Renovation", back_populates="warnings")
    level: Mapped[str] = mapped_column(sa.String(16))
    description: Mapped[str] = mapped_column(sa.Text)
    contractor_signature: Mapped[str] = mapped_column(sa.String(64), info={"personal": True})
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    inspector_id: Mapped[int | None] = _staff_fk()
    inspector: Mapped[Staff | None] = relationship(foreign_keys=[inspector_id])
    # The written notice (违约单) as a violation record (VIO), when that regulation made one.
    violation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("violation.id", ondelete="SET NULL"),
                                                     index=True)
    violation = relationship("Violation", foreign_keys=[violation_id])

    @property
    def level_label(self) -> str:
        return str(WARNING_LEVELS.get(self.level, self.level))


class RenovationExtension(db.Model):
    """REN-6: an approved extension of the works (the approval itself is the engine's sign-off row)."""

    __tablename__ = "renovation_extension"
    id: Mapped[int] = mapped_column(primary_key=True)
    renovation_id: Mapped[int] = mapped_column(sa.ForeignKey("renovation.id", ondelete="CASCADE"), index=True)
    renovation = relationship("Renovation", back_populates="extensions")
    old_end: Mapped[date | None] = mapped_column(sa.Date)
    new_end: Mapped[date] = mapped_column(sa.Date)
    reason: Mapped[str] = mapped_column(sa.String(500))
    approved_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    approved_by_id: Mapped[int | None] = _staff_fk()
    approved_by: Mapped[Staff | None] = relationship(foreign_keys=[approved_by_id])
