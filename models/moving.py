"""Moving in and out (搬迁 / 入住, REGULATIONS §4 MOV-1..MOV-5).

A move-in registers the new occupant (the registry's Resident; ID checked, lease if tenant, the
owner present for a tenant) and hands over cards and keys; completing it opens the Occupancy.
A move-out for good waits for the fee settlement (3–7 days before, a setting) and, for a tenant,
the owner's consent and the clerk's goods check; only then is the numbered release slip (放行条,
FX-yyyy-nnnnn) issued. The slip is checked at the gate once (issued → used / void: the version
column makes exactly one gate check win). Completing the move-out ends the Occupancy through the
registry (ARC-5 history) and files it in the unit's archive. Damage is charged and restored by a
deadline (MOV-5). Guards and effects live in models/moving_rules.py.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from models import moving_rules as r
from models.base import UTCDateTime, db, utcnow
from models.registry import Occupancy, Resident, Unit
from models.staff import Staff
from models.workflow import Tracked
from workflow.deadlines import Deadline
from workflow.engine import STAY, T, Workflow

MOVE_IN_KINDS = {"owner": _l("Owner"), "tenant": _l("Tenant"), "family": _l("Family member")}


class MoveIn(Tracked, db.Model):
    """MOV-1: one occupant moving in; the Occupancy is created when the keys are handed over."""

    __tablename__ = "move_in"
    personal_label = True  # str() names a person (ACC-5: a related column shows personal data)
    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), index=True)
    unit: Mapped[Unit] = relationship()
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("resident.id"), index=True)
    resident: Mapped[Resident] = relationship()
    kind: Mapped[str] = mapped_column(sa.String(16), default="owner")
    move_in_date: Mapped[date] = mapped_column(sa.Date, default=date.today, index=True)
    id_checked: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    lease_no: Mapped[str | None] = mapped_column(sa.String(64))
    lease_end: Mapped[date | None] = mapped_column(sa.Date)
    owner_confirmation: Mapped[str | None] = mapped_column(sa.String(64), info={"personal": True})
    card_numbers: Mapped[str | None] = mapped_column(sa.String(200))
    key_count: Mapped[int | None] = mapped_column(sa.Integer)
    occupancy_id: Mapped[int | None] = mapped_column(sa.ForeignKey("occupancy.id", ondelete="SET NULL"))
    occupancy: Mapped[Occupancy | None] = relationship()

    workflow = Workflow(_l("Move-in"), {
        "registered": _l("Registered"), "moved_in": _l("Moved in"), "cancelled": _l("Cancelled"),
    }, "registered", [
        T("hand_over", "registered", "moved_in", r.FRONT_DESK, label=_l("Hand over cards and keys"),
          requires=["card_numbers", "key_count"], guard=r.move_in_ready, effect=r.on_moved_in),
        T("cancel", "registered", "cancelled", r.FRONT_DESK, label=_l("Cancel"), comment_required=True,
          danger=True, todo=False),
    ], delete_roles=r.FRONT_DESK, preload=("unit.occupancies.resident",))

    field_labels = {"card_numbers": _l("Access card numbers"), "key_count": _l("Number of keys")}

    @validates("key_count")
    def _keys(self, key: str, value: Any) -> int | None:
        return r.parse_count(value, key)  # typed into the hand-over step's field as text

    def __str__(self) -> str:
        return f"{self.unit} {self.resident}"

    def check_registration(self) -> None:
        r.check_move_in(self)


class MoveOut(Tracked, db.Model):
    """MOV-3: the move-out registration 《业主/用户搬出登记表》."""

    __tablename__ = "move_out"
    personal_label = True  # str() names a person (ACC-5: a related column shows personal data)
    id: Mapped[int] = mapped_column(primary_key=True)
    occupancy_id: Mapped[int] = mapped_column(sa.ForeignKey("occupancy.id"), index=True)
    occupancy: Mapped[Occupancy] = relationship()
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), index=True)
    unit: Mapped[Unit] = relationship()
    planned_date: Mapped[date] = mapped_column(sa.Date, index=True)
    goods: Mapped[str] = mapped_column(sa.Text, default="")
    fees_settled_on: Mapped[date | None] = mapped_column(sa.Date)
    finance_confirmed_by: Mapped[str | None] = mapped_column(sa.String(64))
    owner_consent_name: Mapped[str | None] = mapped_column(sa.String(64), info={"personal": True})
    owner_consented_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    goods_checked: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    goods_checked_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    goods_checked_by = relationship(Staff, foreign_keys=[goods_checked_by_id])
    moved_out_on: Mapped[date | None] = mapped_column(sa.Date)
    slips: Mapped[list[ReleaseSlip]] = relationship(back_populates="move_out", order_by="ReleaseSlip.id")

    workflow = Workflow(_l("Move-out"), {
        "open": _l("Registered, waiting for settlement"), "released": _l("Release slip issued"),
        "completed": _l("Moved out"), "cancelled": _l("Cancelled"),
    }, "open", [
        T("settle_fees", "open", STAY, r.FRONT_DESK | {"finance"}, label=_l("Record the fee settlement"),
          requires=["fees_settled_on", "finance_confirmed_by"], guard=r.settlement_in_window, todo=False),
        T("owner_consent", "open", STAY, r.FRONT_DESK, label=_l("Record the owner's signed consent"),
          requires=["owner_consent_name"], guard=r.consent_by_owner, effect=r.on_consent, todo=False),
        T("check_goods", "open", STAY, r.FRONT_DESK, label=_l("Goods checked against the list"),
          effect=r.on_goods_checked, todo=False),
        T("issue_slip", "open", "released", r.FRONT_DESK, label=_l("Issue the release slip"),
          guard=r.slip_issuable, effect=r.on_issue_slip),
        T("complete", "released", "completed", r.FRONT_DESK, label=_l("Complete the move-out registration"),
          guard=r.goods_left, effect=r.on_moved_out),
        T("cancel", "open", "cancelled", r.FRONT_DESK, label=_l("Cancel"), comment_required=True, danger=True,
          todo=False),
    ], delete_roles=r.FRONT_DESK, preload=("occupancy", "slips"))

    field_labels = {"fees_settled_on": _l("Fees settled on"), "finance_confirmed_by": _l("Confirmed by (finance)"),
                    "owner_consent_name": _l("Owner's consent signed by")}

    @validates("fees_settled_on", "planned_date")
    def _day(self, key: str, value: Any) -> date | None:
        return r.parse_day(value, key)  # typed into the settlement step's field as text

    @property
    def is_tenant(self) -> bool:
        return self.occupancy is not None and self.occupancy.kind == "tenant"

    def __str__(self) -> str:
        return f"{self.unit} {self.occupancy.resident if self.occupancy else ''}".strip()

    def check_registration(self) -> None:
        r.check_move_out(self)


class ReleaseSlip(Tracked, db.Model):
    """MOV-2 / MOV-4: the release slip (放行条); checked at the gate exactly once."""

    __tablename__ = "release_slip"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str | None] = mapped_column(sa.String(16), unique=True)
    move_out_id: Mapped[int | None] = mapped_column(sa.ForeignKey("move_out.id", ondelete="SET NULL"), index=True)
    move_out: Mapped[MoveOut | None] = relationship(back_populates="slips")
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), index=True)
    unit: Mapped[Unit] = relationship()
    carrier: Mapped[str] = mapped_column(sa.String(64), default="", info={"personal": True})
    goods: Mapped[str] = mapped_column(sa.Text, default="")
    goods_checked: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    gate_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    gate_checked_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    gate_checked_by = relationship(Staff, foreign_keys=[gate_checked_by_id])

    workflow = Workflow(_l("Release slip"), {
        "issued": _l("Issued"), "used": _l("Used at the gate"), "void": _l("Void"),
    }, "issued", [
        T("use", "issued", "used", r.GATE, label=_l("Checked at the gate: let out"), effect=r.on_gate_check),
        T("void", "issued", "void", r.FRONT_DESK | r.GATE, label=_l("Void"), comment_required=True, danger=True,
          effect=r.on_gate_check, todo=False),
    ])

    def __str__(self) -> str:
        return self.number or ""

    def check_slip(self) -> None:
        r.check_slip(self)


class MoveDamage(Tracked, db.Model):
    """MOV-5: damage to common property during a move, charged to the mover, restored by a deadline."""

    __tablename__ = "move_damage"
    personal_label = True  # str() names a person (ACC-5: a related column shows personal data)
    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), index=True)
    unit: Mapped[Unit] = relationship()
    move_out_id: Mapped[int | None] = mapped_column(sa.ForeignKey("move_out.id", ondelete="SET NULL"), index=True)
    move_out: Mapped[MoveOut | None] = relationship()
    move_in_id: Mapped[int | None] = mapped_column(sa.ForeignKey("move_in.id", ondelete="SET NULL"), index=True)
    move_in: Mapped[MoveIn | None] = relationship()
    mover: Mapped[str] = mapped_column(sa.String(64), info={"personal": True})
    description: Mapped[str] = mapped_column(sa.String(500))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), info={"important": True})  # ACC-8: recorded money
    restore_by: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    restored_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    workflow = Workflow(_l("Moving damage"), {
        "charged": _l("Charged, to be restored"), "restored": _l("Restored"),
    }, "charged", [
        T("restored", "charged", "restored", r.FRONT_DESK | {"engineering"}, label=_l("Restored"),
          effect=r.on_restored),
    ], delete_roles=r.FRONT_DESK, deadlines=[
        Deadline("restore", _l("Restore the damaged common property"), start="created_at", amount=7,
                 unit="days", until="restore_by", met_by={"restored"}, department="cs"),
    ])

    def __str__(self) -> str:
        return f"{self.unit} {self.mover} ¥{self.amount}"

    def check_damage(self) -> None:
        r.check_damage(self)


__all__ = ["MOVE_IN_KINDS", "MoveDamage", "MoveIn", "MoveOut", "ReleaseSlip"]
