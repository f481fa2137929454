"""Key custody (钥匙托管): a resident leaves keys with the service centre; staff log every use;
handing them back needs the resident's confirmation. The worked example of docs/workflow.md."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import UTCDateTime, db, utcnow
from models.registry import Resident, Unit
from models.workflow import Tracked
from workflow.engine import Firing, Step, T, Workflow

FRONT_DESK = {"manager", "cs_supervisor", "cs_clerk"}


def _log_out(keys: KeyCustody, firing: Firing) -> None:
    keys.uses.append(KeyUse(holder=keys.current_holder, purpose=keys.current_purpose,
                            out_at=firing.at, out_by=firing.user))


def _log_in(keys: KeyCustody, firing: Firing) -> None:
    use = next((u for u in keys.uses if u.in_at is None), None)
    if use is not None:
        use.in_at, use.in_by = firing.at, firing.user
    keys.current_holder = keys.current_purpose = None


def _confirmed_by_resident(keys: KeyCustody) -> object:
    names = {keys.resident.name} | {o.resident.name for o in keys.unit.occupancies if o.end_date is None}
    if (keys.resident_confirmation or "").strip() not in names:
        return _l("The confirmation must be signed by the depositing resident or a current "
                  "occupant of the unit.")
    return None


class KeyCustody(Tracked, db.Model):
    __tablename__ = "key_custody"
    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), index=True)
    unit: Mapped[Unit] = relationship()
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("resident.id"), index=True)
    resident: Mapped[Resident] = relationship()
    tag_no: Mapped[str] = mapped_column(sa.String(32), unique=True)
    description: Mapped[str] = mapped_column(sa.String(200))
    key_count: Mapped[int] = mapped_column(sa.Integer, default=1)
    permitted_use: Mapped[str | None] = mapped_column(sa.String(200))
    deposited_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    current_holder: Mapped[str | None] = mapped_column(sa.String(64), info={"personal": True})
    current_purpose: Mapped[str | None] = mapped_column(sa.String(200), info={"personal": True})
    returned_to: Mapped[str | None] = mapped_column(sa.String(64), info={"personal": True})
    resident_confirmation: Mapped[str | None] = mapped_column(sa.String(64), info={"personal": True})
    uses: Mapped[list[KeyUse]] = relationship(back_populates="custody", order_by="KeyUse.out_at",
                                              cascade="all, delete-orphan")

    workflow = Workflow(_l("Key custody"), {
        "held": _l("In the key cabinet"), "out": _l("Taken out"),
        "returned": _l("Returned to resident"), "lost": _l("Lost"),
    }, "held", [
        T("check_out", "held", "out", FRONT_DESK | {"engineering", "security"}, label=_l("Take out"),
          requires=["current_holder", "current_purpose"], effect=_log_out, todo=False),
        T("check_in", "out", "held", FRONT_DESK | {"security"}, label=_l("Put back"), effect=_log_in),
        T("return_keys", "held", "returned", FRONT_DESK, label=_l("Return to resident"),
          requires=["returned_to", "resident_confirmation"], guard=_confirmed_by_resident, todo=False),
        T("report_lost", ["held", "out"], "lost", FRONT_DESK, label=_l("Report lost"),
          comment_required=True, danger=True, todo=False,
          approvals=[Step(_l("Supervisor confirms the loss"), frozenset({"cs_supervisor"}))]),
    ], delete_roles=FRONT_DESK)

    field_labels = {
        "current_holder": _l("Taken by"), "current_purpose": _l("Purpose"),
        "returned_to": _l("Returned to"), "resident_confirmation": _l("Resident's confirmation (name)"),
    }

    def __str__(self) -> str:
        return f"{self.tag_no} {self.description}"

    def check_depositor(self) -> None:
        """Only an owner or current occupant of the unit may leave its keys with the desk."""
        from models.validators import DomainError

        if self.unit is None or self.resident is None:
            raise DomainError(_l("Choose the unit and the resident."), "resident")
        if not any(o.resident_id == self.resident.id and o.end_date is None for o in self.unit.occupancies):
            raise DomainError(_l("This resident is not a current owner or occupant of the unit."), "resident")
        if not 1 <= (self.key_count or 0) <= 50:
            raise DomainError(_l("Number of keys: 1 to 50."), "key_count")


class KeyUse(db.Model):
    """One use of deposited keys: who took them, why, when out and back (written by the engine)."""

    __tablename__ = "key_use"
    id: Mapped[int] = mapped_column(primary_key=True)
    custody_id: Mapped[int] = mapped_column(sa.ForeignKey("key_custody.id", ondelete="CASCADE"), index=True)
    custody: Mapped[KeyCustody] = relationship(back_populates="uses")
    holder: Mapped[str] = mapped_column(sa.String(64), info={"personal": True})
    purpose: Mapped[str] = mapped_column(sa.String(200))
    out_at: Mapped[datetime] = mapped_column(UTCDateTime())
    out_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    out_by = relationship("Staff", foreign_keys=[out_by_id])
    in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    in_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    in_by = relationship("Staff", foreign_keys=[in_by_id])
