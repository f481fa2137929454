"""REN-4: hot work (动火) and temporary power during a renovation, each its own record; REN-8: the unit's
renovation documents for the archive (issue 7 plugs ``documents_of_unit`` into the unit archive page).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from models import renovation_rules as r
from models.base import UTCDateTime, db
from models.renovation_parts import RenovationCharge
from models.workflow import Tracked
from security.crypto import EncryptedString
from workflow.engine import STAY, Firing, Step, T, Workflow


def _works_running(rec: Any) -> Any:
    if rec.renovation is None or rec.renovation.state != "permitted":
        return _l("Only a renovation with a permit and works under way can have this.")
    return None


SUPERVISING = frozenset({"engineering", "security"})  # REN-9: they supervise the hot work on site


def _lead_named(rec: Any) -> Any:
    """REN-9: no hot work goes for approval without the contractor's lead named in full."""
    missing = _works_running(rec)
    if missing is None and not all((rec.lead_name or "").strip() and (getattr(rec, f) or "").strip()
                                   for f in ("lead_phone", "lead_id_no")):
        return _l("Name the contractor's hot-work lead (name, phone, ID or certificate number).")
    return missing


def _lead_not_in(rec: Any) -> Any:
    return _l("The hot-work lead is already checked in.") if rec.lead_checked_in_at is not None else None


def _on_check_in(rec: Any, firing: Firing) -> None:
    rec.lead_checked_in_at, rec.lead_checked_in_by = firing.at, firing.user


def _lead_present(rec: Any) -> Any:
    """REN-9: the hot work starts only once engineering or security recorded the lead on site."""
    if rec.lead_checked_in_at is None:
        return _l("The hot work cannot start: the contractor's hot-work lead is not checked in as present.")
    return None


def _on_start(rec: Any, firing: Firing) -> None:
    rec.started_at = firing.at


class HotWork(Tracked, db.Model):
    """A hot-work application (动火申请): approved jointly by engineering and security (REN-4)."""

    __tablename__ = "renovation_hot_work"
    id: Mapped[int] = mapped_column(primary_key=True)
    renovation_id: Mapped[int] = mapped_column(sa.ForeignKey("renovation.id", ondelete="CASCADE"), index=True)
    renovation = relationship("Renovation")
    work: Mapped[str] = mapped_column(sa.String(200))  # welding, cutting…
    location: Mapped[str] = mapped_column(sa.String(200))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    operator: Mapped[str] = mapped_column(sa.String(64), info={"personal": True})  # licensed welder
    fire_watch: Mapped[str] = mapped_column(sa.String(64), info={"personal": True})
    extinguishers_ready: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    # REN-9: the contractor's person in charge of the hot work (动火负责人), on site while it runs
    lead_name: Mapped[str | None] = mapped_column(sa.String(64), info={"personal": True})
    lead_phone: Mapped[str | None] = mapped_column(EncryptedString(), info={"personal": True})
    lead_id_no: Mapped[str | None] = mapped_column(EncryptedString(), info={"personal": True})
    lead_checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lead_checked_in_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    lead_checked_in_by = relationship("Staff", foreign_keys=[lead_checked_in_by_id])
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    workflow = Workflow(_l("Hot-work permit"), {
        "applied": _l("Applied"), "approved": _l("Approved"), "refused": _l("Refused"),
        "running": _l("Hot work under way"), "done": _l("Done"),
    }, "applied", [
        T("approve", "applied", "approved", r.FRONT_DESK, label=_l("Send for joint approval"),
          guard=_lead_named, reject_to="refused",
          approvals=[Step(_l("Engineering and security approve the hot work"),
                          frozenset({"engineering", "security"}), joint=True)]),
        T("check_in_lead", "approved", STAY, SUPERVISING, label=_l("Hot-work lead present: check in"),
          guard=_lead_not_in, effect=_on_check_in),
        T("start", "approved", "running", SUPERVISING, label=_l("Start the hot work"), guard=_lead_present,
          effect=_on_start),
        T("close", "running", "done", r.FRONT_DESK | SUPERVISING, label=_l("Hot work finished")),
    ], delete_roles=r.FRONT_DESK, preload=("renovation",))

    def __str__(self) -> str:
        return f"{self.work} @ {self.location}"

    def check_times(self) -> None:
        from models.validators import DomainError

        if self.renovation is None:
            raise DomainError(_l("Choose the renovation."), "renovation")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise DomainError(_l("The hot work must end after it starts."), "ends_at")
        if not self.extinguishers_ready:
            raise DomainError(_l("Extinguishers must be ready on site before hot work."), "extinguishers_ready")
        for field in ("lead_name", "lead_phone", "lead_id_no"):
            if not (getattr(self, field) or "").strip():
                raise DomainError(_l("Name the contractor's hot-work lead (name, phone, ID or certificate "
                                     "number)."), field)


def _on_priced(rec: TemporaryPower, firing: Firing) -> None:
    rec.priced_by, rec.priced_at = firing.user, firing.at


def _on_paid(rec: TemporaryPower, firing: Firing) -> None:
    """The fee is also a charge of the renovation, so the finance report sees it."""
    rec.paid_at = firing.at
    rec.renovation.charges.append(RenovationCharge(kind="power", amount=rec.price, receipt_no=rec.receipt_no,
                                                   paid_at=firing.at, paid_by=firing.user))


class TemporaryPower(Tracked, db.Model):
    """Temporary power (临时用电): engineering prices it, finance records the payment, then it is granted."""

    __tablename__ = "renovation_power"
    id: Mapped[int] = mapped_column(primary_key=True)
    renovation_id: Mapped[int] = mapped_column(sa.ForeignKey("renovation.id", ondelete="CASCADE"), index=True)
    renovation = relationship("Renovation")
    purpose: Mapped[str] = mapped_column(sa.String(200))
    load_kw: Mapped[Decimal | None] = mapped_column(sa.Numeric(8, 2))
    price: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    priced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    priced_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    priced_by = relationship("Staff", foreign_keys=[priced_by_id])
    receipt_no: Mapped[str | None] = mapped_column(sa.String(32))
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    workflow = Workflow(_l("Temporary power"), {
        "applied": _l("Applied"), "priced": _l("Priced, payment due"), "granted": _l("Granted"),
        "ended": _l("Ended"),
    }, "applied", [
        T("price_it", "applied", "priced", r.ENGINEERING, label=_l("Set the price"), requires=["price"],
          guard=_works_running, effect=_on_priced),
        T("pay", "priced", "granted", r.FINANCE, label=_l("Payment received: grant"), requires=["receipt_no"],
          effect=_on_paid),
        T("end", "granted", "ended", r.ENGINEERING | r.FRONT_DESK, label=_l("Temporary power ended")),
    ], delete_roles=r.FRONT_DESK, preload=("renovation",))

    def __str__(self) -> str:
        return self.purpose

    @validates("price", "load_kw")
    def _money(self, key: str, value: Any) -> Decimal | None:
        return r.parse_money(value, key)


# --- REN-8: the unit's renovation documents ---------------------------------------------------
@dataclass(frozen=True)
class UnitDocument:
    """One document of a unit's renovation file: an uploaded attachment or an issued notice."""

    renovation_id: int
    renovation_number: str
    kind: str  # drawing | signature | scan | defects | neighbours | permit | rectification | acceptance
    title: str
    at: datetime
    attachment_id: int | None = None
    notice_id: int | None = None


def documents_of_unit(unit_id: int) -> list[UnitDocument]:
    """Every renovation document of the unit, oldest first: drawings and scans (attachments of the
    renovation and its warnings) and the notices and permits issued. Two queries, whatever the count."""
    from models.attachment import Attachment
    from models.renovation import Renovation
    from models.renovation_parts import RenovationNotice

    renovations = {ren.id: ren for ren in db.session.scalars(
        sa.select(Renovation).where(Renovation.unit_id == unit_id, Renovation.deleted_at.is_(None)))}
    if not renovations:
        return []
    docs = [UnitDocument(a.record_id, renovations[a.record_id].number, a.kind,
                         f"{a.kind_label} · {a.original_filename}", a.uploaded_at, attachment_id=a.id)
            for a in db.session.scalars(sa.select(Attachment).where(
                Attachment.record_type == Renovation.__tablename__, Attachment.record_id.in_(renovations)))]
    for n in db.session.scalars(sa.select(RenovationNotice).where(RenovationNotice.renovation_id.in_(renovations))):
        docs.append(UnitDocument(n.renovation_id, renovations[n.renovation_id].number, n.kind,
                                 f"{n.kind_label} · {n.addressed_to}", n.issued_at, notice_id=n.id))
    return sorted(docs, key=lambda d: (d.at, d.title))
