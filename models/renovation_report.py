"""Item 7 / REN-3, REN-7: renovation deposits held, refunds due and overdue, in Decimal that reconciles:
for every renovation and in total, held = collected − refunded (fees such as debris removal and
temporary power are income, not deposits, and are listed apart)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa

from models.base import db, utcnow
from models.renovation_parts import REFUNDABLE, RenovationCharge

ZERO = Decimal("0.00")


@dataclass
class DepositRow:
    renovation_id: int
    number: str
    unit: str
    applicant: str
    state: str
    collected: Decimal
    refunded: Decimal
    fees: Decimal  # non-refundable fees paid (debris removal, temporary power)
    refund_due_at: datetime | None
    overdue: bool

    @property
    def held(self) -> Decimal:
        return self.collected - self.refunded

    @property
    def refund_due(self) -> bool:
        return self.state == "accepted" and self.held > 0


@dataclass
class DepositReport:
    at: datetime
    rows: list[DepositRow] = field(default_factory=list)

    def total(self, name: str) -> Decimal:
        return sum((getattr(r, name) for r in self.rows), ZERO)

    @property
    def due(self) -> list[DepositRow]:
        return [r for r in self.rows if r.refund_due]

    @property
    def overdue(self) -> list[DepositRow]:
        return [r for r in self.rows if r.overdue]

    @property
    def due_total(self) -> Decimal:
        return sum((r.held for r in self.due), ZERO)

    @property
    def overdue_total(self) -> Decimal:
        return sum((r.held for r in self.overdue), ZERO)


def deposit_report(now: datetime | None = None) -> DepositReport:
    """Every renovation with money paid, in one query (plus the charges, loaded together)."""
    from models.renovation import Renovation

    now = now or utcnow()
    report = DepositReport(at=now)
    renovations = db.session.scalars(
        sa.select(Renovation).where(Renovation.deleted_at.is_(None),
                                    Renovation.charges.any(RenovationCharge.paid_at.is_not(None)))
        .options(sa.orm.selectinload(Renovation.charges), sa.orm.joinedload(Renovation.unit),
                 sa.orm.joinedload(Renovation.applicant))
        .order_by(Renovation.id)).unique()
    for ren in renovations:
        paid = [c for c in ren.charges if c.paid_at is not None]
        collected = sum((c.amount for c in paid if c.kind in REFUNDABLE), ZERO)
        refunded = sum((c.refunded_amount or ZERO for c in paid if c.kind in REFUNDABLE), ZERO)
        fees = sum((c.amount for c in paid if c.kind not in REFUNDABLE), ZERO)
        due_at = ren.due_at if ren.state == "accepted" else None
        report.rows.append(DepositRow(
            renovation_id=ren.id, number=ren.permit_no or ren.number, unit=ren.unit.code,
            applicant=ren.applicant.name, state=ren.state, collected=collected, refunded=refunded, fees=fees,
            refund_due_at=due_at, overdue=bool(due_at and due_at < now and collected > refunded)))
    return report
