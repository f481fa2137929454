"""Renovation (装修管理, REGULATIONS §7 REN-1..REN-8): one unit's renovation from application to refund.

draft → submitted (REN-1 checks) → returned (defects notices, REN-2) | approved (fees set) → permitted
(fees paid, passes, neighbours, permit; REN-3) ⇄ suspended (power cut / site cleared, REN-5) → finished
→ inspecting (REN-7) ⇄ rectifying → accepted (acceptance notice, vents unsealed) → closed (deposits
refunded). Hot work and temporary power are their own records (models/renovation_works.py); guards and
effects live in models/renovation_rules.py, the rows they write in models/renovation_parts.py.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from models import renovation_rules as r
from models.base import UTCDateTime, db
from models.registry import Occupancy, Resident, Unit
from models.renovation_parts import (
    LADDER,
    RenovationCharge,
    RenovationExtension,
    RenovationInspection,
    RenovationNotice,
    RenovationPass,
    RenovationWarning,
)
from models.workflow import Tracked
from security.crypto import EncryptedString
from workflow.deadlines import Deadline
from workflow.engine import STAY, Step, T, Workflow

SITE = "unit.building.estate_id"


def local_today() -> date:
    from workflow.calendar import local_today as today

    return today()


def _rows(cls: str, order: str) -> Any:
    return relationship(cls, back_populates="renovation", order_by=order, cascade="all, delete-orphan")


class Renovation(Tracked, db.Model):
    __tablename__ = "renovation"
    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), index=True)
    unit: Mapped[Unit] = relationship()
    applicant_id: Mapped[int] = mapped_column(sa.ForeignKey("resident.id"), index=True)
    applicant: Mapped[Resident] = relationship()
    # REN-1: the application form
    scope: Mapped[str] = mapped_column(sa.Text)
    contractor: Mapped[str] = mapped_column(sa.String(100))
    contractor_contact: Mapped[str | None] = mapped_column(sa.String(64), info={"personal": True})
    contractor_phone: Mapped[str | None] = mapped_column(EncryptedString(), info={"personal": True})
    planned_start: Mapped[date] = mapped_column(sa.Date)
    planned_end: Mapped[date] = mapped_column(sa.Date)
    works_until: Mapped[date | None] = mapped_column(sa.Date)  # planned_end, or the last extension
    fees_paid_until: Mapped[date | None] = mapped_column(sa.Date)
    fees_confirmed_by: Mapped[str | None] = mapped_column(sa.String(64))
    tenancy_papers_complete: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    pledge_signed: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    door_lock_request: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    door_lock_note: Mapped[str | None] = mapped_column(sa.String(200))
    drawing_lighting: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    drawing_ceiling: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    drawing_sockets: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    drawing_ducts: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    drawing_smoke_detectors: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    drawing_partitions: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    drawing_count: Mapped[int] = mapped_column(sa.Integer, default=0)  # kept by add_drawing()
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # REN-2: review and fees
    defects_found: Mapped[str | None] = mapped_column(sa.String(1000))
    deposit_amount: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    debris_fee: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    pass_deposit_each: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    pass_count: Mapped[int | None] = mapped_column(sa.Integer)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    approved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    approved_by = relationship("Staff", foreign_keys=[approved_by_id])
    # REN-3: payments (receipt typed by finance), neighbours, permit
    receipt_no: Mapped[str | None] = mapped_column(sa.String(32))
    neighbours_notified: Mapped[str | None] = mapped_column(sa.String(500))
    permit_no: Mapped[str | None] = mapped_column(sa.String(24), unique=True)
    permitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # REN-5 / REN-6: one-off inputs of the patrol, ladder and extension steps
    inspection_findings: Mapped[str | None] = mapped_column(sa.String(1000))
    breach_description: Mapped[str | None] = mapped_column(sa.String(1000))
    contractor_signature: Mapped[str | None] = mapped_column(sa.String(64), info={"personal": True})
    contractor_commitment: Mapped[str | None] = mapped_column(sa.String(1000))
    extension_until: Mapped[date | None] = mapped_column(sa.Date)
    extension_reason: Mapped[str | None] = mapped_column(sa.String(500))
    # REN-7: completion
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acceptance_applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # REN-10: what the acceptance application brings (scan counts kept by add_acceptance_document())
    asbuilt_sets: Mapped[int | None] = mapped_column(sa.Integer)
    asbuilt_scans: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    invoice_scans: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    receipt_scans: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    rectification_items: Mapped[str | None] = mapped_column(sa.String(1000))
    rectify_by: Mapped[datetime | None] = mapped_column(UTCDateTime())
    vents_unsealed_note: Mapped[str | None] = mapped_column(sa.String(200))
    vents_unsealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    charges: Mapped[list[RenovationCharge]] = _rows("RenovationCharge", "RenovationCharge.id")
    passes: Mapped[list[RenovationPass]] = _rows("RenovationPass", "RenovationPass.id")
    notices: Mapped[list[RenovationNotice]] = _rows("RenovationNotice", "RenovationNotice.id")
    inspections: Mapped[list[RenovationInspection]] = _rows("RenovationInspection", "RenovationInspection.id")
    warnings: Mapped[list[RenovationWarning]] = _rows("RenovationWarning", "RenovationWarning.id")
    extensions: Mapped[list[RenovationExtension]] = _rows("RenovationExtension", "RenovationExtension.id")

    workflow = Workflow(_l("Renovation"), {
        "draft": _l("Application being prepared"), "submitted": _l("Under engineering review"),
        "returned": _l("Returned with defects"), "approved": _l("Approved, fees due"),
        "permitted": _l("Permitted, works under way"), "suspended": _l("Power cut / site cleared"),
        "finished": _l("Works finished"), "inspecting": _l("Completion inspection"),
        "rectifying": _l("Rectification"), "accepted": _l("Accepted, refund due"),
        "closed": _l("Closed, deposits refunded"), "withdrawn": _l("Withdrawn"),
    }, "draft", [
        T("submit", ["draft", "returned"], "submitted", r.FRONT_DESK, label=_l("Take the application"),
          guard=r.complete_application, effect=r.on_submit),
        T("return_defects", "submitted", "returned", r.ENGINEERING, label=_l("Return with defects notices"),
          requires=["defects_found"], effect=r.on_return),
        T("approve", "submitted", "approved", r.ENGINEERING, label=_l("Approve and set the fees"),
          requires=["deposit_amount", "debris_fee", "pass_count", "pass_deposit_each"], guard=r.fees_set,
          effect=r.on_approve),
        T("pay_deposit", "approved", STAY, r.FINANCE, label=_l("Deposit received"), requires=["receipt_no"],
          guard=r.payable("deposit"), effect=r.pay("deposit")),
        T("pay_debris", "approved", STAY, r.FINANCE, label=_l("Debris removal fee received"),
          requires=["receipt_no"], guard=r.payable("debris"), effect=r.pay("debris")),
        T("pay_pass_deposits", "approved", STAY, r.FINANCE, label=_l("Worker-pass deposits received"),
          requires=["receipt_no"], guard=r.payable("pass_deposit"), effect=r.pay("pass_deposit")),
        T("issue_permit", "approved", "permitted", r.FRONT_DESK, label=_l("Issue passes and the permit"),
          requires=["neighbours_notified"], guard=r.all_paid, effect=r.on_permit),
        T("patrol", r.WORKS, STAY, r.PATROL, label=_l("Record a patrol"), requires=["inspection_findings"],
          effect=r.on_patrol, todo=False),
        T("warn_verbal", "permitted", STAY, r.PATROL, label=_l("Verbal warning"),
          requires=["breach_description", "contractor_signature"], guard=r.next_rung("verbal"),
          effect=r.warn("verbal"), todo=False),
        T("warn_written", "permitted", STAY, r.PATROL, label=_l("Written violation notice"),
          requires=["breach_description", "contractor_signature"], guard=r.next_rung("written"),
          effect=r.warn("written"), todo=False),
        T("warn_final", "permitted", STAY, r.PATROL, label=_l("Final warning"),
          requires=["breach_description", "contractor_signature"], guard=r.next_rung("final"),
          effect=r.warn("final"), todo=False, danger=True),
        T("cut_power", "permitted", "suspended", r.PATROL, label=_l("Cut the power / clear the site"),
          requires=["breach_description", "contractor_signature"], guard=r.next_rung("cut"),
          effect=r.warn("cut"), todo=False, danger=True),
        T("restore", "suspended", "permitted", r.PATROL, label=_l("Restore after the written commitment"),
          requires=["contractor_commitment", "contractor_signature"], effect=r.on_restore),
        T("extend", r.WORKS, STAY, r.FRONT_DESK, label=_l("Extension application"),
          requires=["extension_until", "extension_reason"], guard=r.extension_valid, effect=r.on_extend,
          todo=False, approvals=[Step(_l("Engineering approves the extension"), frozenset({"engineering"}))]),
        T("finish", "permitted", "finished", r.FRONT_DESK, label=_l("Works finished (declared)"),
          requires=["finished_at"], guard=r.finished_not_future, effect=r.on_finish),
        T("apply_acceptance", "finished", "inspecting", r.FRONT_DESK, label=_l("Application for acceptance"),
          requires=["asbuilt_sets"], guard=r.acceptance_documents_complete, effect=r.on_apply_acceptance),
        T("fail_inspection", "inspecting", "rectifying", r.ENGINEERING, label=_l("Fail: rectification notice"),
          requires=["rectification_items", "rectify_by"], guard=r.rectify_by_future, effect=r.on_fail),
        T("reinspect", "rectifying", "inspecting", r.FRONT_DESK | r.ENGINEERING,
          label=_l("Rectified: ask for re-inspection")),
        T("pass_inspection", "inspecting", "accepted", r.ENGINEERING, label=_l("Pass: acceptance notice"),
          requires=["vents_unsealed_note"], effect=r.on_pass),
        T("return_passes", "accepted", STAY, r.FRONT_DESK, label=_l("Worker passes returned"),
          guard=r.passes_out, effect=r.on_passes_back),
        T("refund", "accepted", "closed", r.FINANCE, label=_l("Deposits refunded"), requires=["receipt_no"],
          guard=r.passes_back, effect=r.on_refund),
        T("withdraw_application", ["draft", "returned"], "withdrawn", r.FRONT_DESK,
          label=_l("Withdraw the application"), comment_required=True, danger=True, todo=False),
    ], delete_roles=r.FRONT_DESK, preload=r.PRELOAD, deadlines=[
        Deadline("review", _l("Pre-inspect and review a renovation application"), start="state:submitted",
                 amount=3, unit="working_days", met_by={"approved", "returned"}, site=SITE,
                 department="engineering"),
        Deadline("apply_acceptance", _l("Apply for acceptance after finishing"), start="finished_at", amount=7,
                 unit="working_days", met_by={"inspecting"}, site=SITE, department="cs",
                 when=lambda ren: ren.state == "finished"),
        Deadline("inspect", _l("Completion inspection"), start="state:inspecting", amount=3,
                 unit="working_days", met_by={"accepted", "rectifying"}, site=SITE, department="engineering"),
        Deadline("rectify", _l("Rectification deadline"), start="state:rectifying", amount=7, unit="days",
                 until="rectify_by", met_by={"inspecting"}, department="engineering"),
        Deadline("refund", _l("Refund the renovation deposit"), start="state:accepted", amount=2,
                 unit="working_days", met_by={"closed"}, site=SITE, department="finance"),
    ])

    field_labels = {
        "defects_found": _l("Outstanding defects (notice to owner and tenant)"),
        "deposit_amount": _l("Renovation deposit (yuan)"), "debris_fee": _l("Debris removal fee (yuan)"),
        "pass_deposit_each": _l("Deposit per worker pass (yuan)"), "pass_count": _l("Number of worker passes"),
        "receipt_no": _l("Receipt number"), "neighbours_notified": _l("Neighbours notified (units, how)"),
        "inspection_findings": _l("Patrol findings"), "breach_description": _l("Breach"),
        "contractor_signature": _l("Contractor's signature (name)"),
        "contractor_commitment": _l("Contractor's written commitment"),
        "extension_until": _l("Works extended until (e.g. 2026-12-31)"),
        "extension_reason": _l("Reason for the extension"),
        "finished_at": _l("Works finished on (e.g. 2026-12-20)"),
        "rectification_items": _l("Items to rectify"), "rectify_by": _l("Rectify by (e.g. 2026-12-31 18:00)"),
        "vents_unsealed_note": _l("Vents unsealed (what, by whom)"),
        "asbuilt_sets": _l("Sets of as-built drawings received (three required)"),
        "asbuilt_scans": _l("Scans of the as-built drawings"), "invoice_scans": _l("Scans of the invoice copies"),
        "receipt_scans": _l("Scans of the deposit receipt copy"),
    }

    def __str__(self) -> str:
        return f"{self.number} {self.unit.code if self.unit else ''}".strip()

    @property
    def number(self) -> str:
        """The application number (装修申请编号), stable from the first save."""
        return f"ZXSQ-{self.id:05d}" if self.id else "ZXSQ-?"

    # --- values typed into a step's inputs -----------------------------------------------------
    @validates("deposit_amount", "debris_fee", "pass_deposit_each")
    def _money(self, key: str, value: Any) -> Decimal | None:
        return r.parse_money(value, key)

    @validates("pass_count")
    def _count(self, key: str, value: Any) -> int | None:
        return r.parse_count(value, key)

    @validates("asbuilt_sets")
    def _sets(self, key: str, value: Any) -> int | None:
        return r.parse_sets(value, key)

    @validates("extension_until", "planned_end")
    def _date(self, key: str, value: Any) -> date | None:
        value = r.parse_date(value, key)
        if key == "planned_end" and (self.works_until is None or not self.extensions):
            self.works_until = value
        return value

    @validates("finished_at", "rectify_by")
    def _datetime(self, key: str, value: Any) -> datetime | None:
        from models.complaint_rules import parse_local

        return parse_local(value, key)

    # --- reading ---------------------------------------------------------------------------
    def applicant_occupancy(self, today: date) -> Occupancy | None:
        """The applicant's current tenure in the unit (owner, family member or tenant), if any."""
        if self.unit is None or self.applicant is None:
            return None
        return next((o for o in self.unit.occupancies if o.resident_id == self.applicant.id
                     and o.start_date <= today and (o.end_date is None or o.end_date >= today)), None)

    def notice_addressees(self) -> list[tuple[str, str]]:
        """REN-2: the owner(s) and the tenant(s) of the unit, each gets the defects notice."""
        current = [o for o in (self.unit.occupancies if self.unit else []) if o.end_date is None]
        found = [(o.kind, o.resident.name) for o in current if o.kind in ("owner", "tenant")]
        return found or [("applicant", self.applicant.name)]

    def drawings_ticked(self) -> list[str]:
        return [name for name in r.DRAWINGS if getattr(self, name)]

    def ladder(self) -> list[str]:
        """The rungs climbed since the last restoration (REN-5)."""
        rungs: list[str] = []
        for w in self.warnings:
            rungs = [] if w.level == "restored" else [*rungs, w.level]
        return [w for w in rungs if w in LADDER]

    def charge_total(self, kinds: frozenset[str] | None = None) -> Decimal:
        return sum((c.amount for c in self.charges if kinds is None or c.kind in kinds), Decimal("0.00"))

    # --- the desk's checks (views call them from check_model) ------------------------------------
    def check_application(self) -> None:
        """REN-1 basics on every save; the full list is the ``submit`` guard."""
        from models.validators import DomainError

        if self.unit is None or self.applicant is None:
            raise DomainError(_l("Choose the unit and the applicant."), "applicant")
        today = local_today()
        if self.applicant_occupancy(self.planned_start or today) is None and self.applicant_occupancy(today) is None:
            raise DomainError(_l("The applicant is not a current owner or occupant of the unit."), "applicant")
        if self.planned_start and self.planned_end and self.planned_end < self.planned_start:
            raise DomainError(_l("The planned end is before the planned start."), "planned_end")

    def check_editable(self) -> None:
        from models.validators import DomainError

        if self.state not in (None, "draft", "returned"):
            raise DomainError(_l("Only an application being prepared or returned can be edited."))


def add_drawing(ren: Renovation, data: bytes, filename: str, user: Any) -> Any:
    """REN-1: keep one drawing (PDF/PNG/JPEG, size-limited, outside the web root) with the application."""
    from models.attachment import store

    ren.check_editable()
    row = store(ren, "drawing", data, filename, user)
    ren.drawing_count = (ren.drawing_count or 0) + 1
    return row


def add_acceptance_document(ren: Renovation, kind: str, data: bytes, filename: str, user: Any) -> Any:
    """REN-10: keep one scan of a document the acceptance application brings (as-built drawings,
    invoice copies, deposit receipt copy); the count per item is what the guard reads."""
    from models.attachment import store
    from models.validators import DomainError

    counter = r.ACCEPTANCE_DOCUMENTS.get(kind)
    if counter is None:
        raise DomainError(_l("Choose which document the scan is."), "kind")
    if ren.state not in ("permitted", "finished") or ren.pending_transition:
        raise DomainError(_l("Acceptance documents are collected while the works run or once they are "
                             "finished, before the acceptance is applied for."), "file")
    row = store(ren, kind, data, filename, user)
    setattr(ren, counter, (getattr(ren, counter) or 0) + 1)
    return row


def add_contractor_signature(ren: Renovation, data: bytes, filename: str, user: Any) -> Any:
    """REN-5: the contractor's signed scan (or pad drawing) of the latest ladder step, kept with the
    renovation; the file name says which step it signs."""
    from models.attachment import store
    from models.validators import DomainError

    if not ren.warnings:
        raise DomainError(_l("There is no warning to sign yet."), "file")
    warning = ren.warnings[-1]
    return store(ren, "signature", data, f"{warning.level}-{warning.id}-{filename}", user)


from models.renovation_patrol import RenovationPatrolDay  # noqa: E402
from models.renovation_works import HotWork, TemporaryPower, documents_of_unit  # noqa: E402

__all__ = ["HotWork", "Renovation", "RenovationCharge", "RenovationExtension", "RenovationInspection",
           "RenovationNotice", "RenovationPass", "RenovationPatrolDay", "RenovationWarning", "TemporaryPower",
           "add_acceptance_document", "add_contractor_signature", "add_drawing", "documents_of_unit"]
