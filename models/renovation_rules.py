"""The renovation regulation's guards and effects (REGULATIONS §7, REN-1..REN-8).

Kept apart from the table (models/renovation.py) so that the declaration there reads as the rule
book. Guards return a translated refusal or None and read only the record and its preloaded rows
(no queries: "My work" evaluates them for every open record). Effects write the step's rows in the
engine's transaction and clear the one-off input fields the step asked for.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from flask_babel import lazy_gettext as _l

from models.renovation_parts import (
    LADDER,
    RenovationCharge,
    RenovationExtension,
    RenovationInspection,
    RenovationNotice,
    RenovationPass,
    RenovationWarning,
)

if TYPE_CHECKING:
    from models.renovation import Renovation
    from workflow.engine import Firing

FRONT_DESK = frozenset({"manager", "cs_supervisor", "cs_clerk"})
ENGINEERING = frozenset({"engineering"})
FINANCE = frozenset({"finance"})
PATROL = frozenset({"engineering", "management_dept", "security"})  # REN-5 inspectors
BUSINESS = frozenset({"manager", "cs_supervisor", "cs_clerk", "engineering", "security", "finance",
                      "management_dept"})
DRAWINGS = {
    "drawing_lighting": _l("Lighting"), "drawing_ceiling": _l("Ceiling"), "drawing_sockets": _l("Sockets"),
    "drawing_ducts": _l("Ducts"), "drawing_smoke_detectors": _l("Smoke detectors"),
    "drawing_partitions": _l("Partitions"),
}
# What the guards read, loaded with the records for "My work" (no query per record).
PRELOAD = ("applicant", "charges", "passes", "warnings", "unit.occupancies")
# REN-10: attachment kind → the renovation's scan counter; what the acceptance application brings
ACCEPTANCE_DOCUMENTS = {"asbuilt": "asbuilt_scans", "invoice": "invoice_scans", "deposit_receipt": "receipt_scans"}
ASBUILT_SETS = 3  # 一式三份竣工图纸
WORKS = ("permitted", "suspended")  # works under way (REN-4..REN-6)
MAX_PASSES = 50
CENT = Decimal("0.01")


# --- parsing the values typed into a step's inputs -----------------------------------------------
def parse_money(value: Any, field: str) -> Decimal | None:
    """"1,000" / "1000.5" → Decimal("1000.50"); never negative, never a float."""
    from models.validators import DomainError

    if value is None or isinstance(value, Decimal):
        return value
    text = str(value).strip().replace(",", "").replace("，", "")
    if not text:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise DomainError(_l("Enter an amount such as 2000 or 1500.50."), field) from None
    if not amount.is_finite() or amount < 0 or amount >= Decimal("10000000000"):
        raise DomainError(_l("Enter an amount such as 2000 or 1500.50."), field)
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def parse_count(value: Any, field: str) -> int | None:
    from models.validators import DomainError

    if value is None or isinstance(value, int):
        return value
    text = str(value).strip()
    if not text:
        return None
    if not text.isdigit() or not 0 <= int(text) <= MAX_PASSES:
        raise DomainError(_l("Number of worker passes: 0 to %(n)s.", n=MAX_PASSES), field)
    return int(text)


def parse_date(value: Any, field: str) -> date | None:
    from models.validators import DomainError

    if value is None or isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    text = str(value).strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise DomainError(_l("Enter a date such as 2026-12-31."), field) from None


# --- REN-1: the application --------------------------------------------------------------------
def application_problems(ren: Renovation, today: date) -> list[Any]:
    """Everything that still stops the desk from taking the application (empty: complete)."""
    problems: list[Any] = []
    occupancy = ren.applicant_occupancy(today)
    if occupancy is None:
        problems.append(_l("The applicant is not a current owner or occupant of the unit."))
    elif occupancy.kind == "tenant" and not ren.tenancy_papers_complete:
        problems.append(_l("The applicant is a tenant: the tenancy papers must be complete."))
    if ren.fees_paid_until is None or not (ren.fees_confirmed_by or "").strip():
        problems.append(_l("Record up to when the management fees are paid and who at finance confirmed it."))
    elif ren.fees_paid_until < today.replace(day=1):
        problems.append(_l("Management fees are only paid up to %(d)s: the arrears must be settled first.",
                           d=ren.fees_paid_until.isoformat()))
    if not ren.pledge_signed:
        problems.append(_l("The pledge (move in only after acceptance) must be signed."))
    if not ren.drawings_ticked():
        problems.append(_l("Tick which drawings the applicant handed in."))
    if not ren.drawing_count:
        problems.append(_l("Upload the drawings (PDF, PNG or JPEG)."))
    if ren.planned_start and ren.planned_end and ren.planned_end < ren.planned_start:
        problems.append(_l("The planned end is before the planned start."))
    return problems


def complete_application(ren: Renovation) -> Any:
    from models.renovation import local_today

    problems = application_problems(ren, local_today())
    return "；".join(str(p) for p in problems) if problems else None


def on_submit(ren: Renovation, firing: Firing) -> None:
    ren.submitted_at = firing.at


# --- REN-2: review ----------------------------------------------------------------------------
def on_return(ren: Renovation, firing: Firing) -> None:
    """Outstanding-defects notices to the owner and to the tenant; the desk is told to hand them out."""
    from models.registry import OCCUPANCY_KINDS
    from workflow.notify import notify

    for kind, name in ren.notice_addressees():
        role = OCCUPANCY_KINDS.get(kind, _l("Applicant"))
        ren.notices.append(RenovationNotice(kind="defects", addressed_to=f"{name} ({role})",
                                            text=ren.defects_found or "", issued_at=firing.at,
                                            issued_by=firing.user))
    if ren.created_by is not None:
        notify(ren.created_by, str(_l("Renovation %(n)s returned: hand out the defects notices",
                                      n=ren.number)), ren.defects_found or "")
    ren.defects_found = None


def fees_set(ren: Renovation) -> Any:
    if ren.pass_count and ren.pass_deposit_each is None:
        return _l("Set the deposit per worker pass.")
    return None


def on_approve(ren: Renovation, firing: Firing) -> None:
    """Engineering's fees become charges for finance to collect (REN-3)."""
    ren.approved_at, ren.approved_by = firing.at, firing.user
    for charge in list(ren.charges):
        if charge.paid_at is None and charge.kind != "power":
            ren.charges.remove(charge)
    each = ren.pass_deposit_each or Decimal("0.00")
    for kind, amount in (("deposit", ren.deposit_amount), ("debris", ren.debris_fee),
                         ("pass_deposit", each * (ren.pass_count or 0))):
        if amount:
            ren.charges.append(RenovationCharge(kind=kind, amount=amount))


def _unpaid(ren: Renovation, kind: str) -> RenovationCharge | None:
    return next((c for c in ren.charges if c.kind == kind and c.paid_at is None), None)


def payable(kind: str) -> Any:
    def guard(ren: Renovation) -> Any:
        return None if _unpaid(ren, kind) is not None else _l("Nothing of this kind is due.")
    return guard


def pay(kind: str) -> Any:
    def effect(ren: Renovation, firing: Firing) -> None:
        charge = _unpaid(ren, kind)
        if charge is not None:
            charge.paid_at, charge.paid_by, charge.receipt_no = firing.at, firing.user, ren.receipt_no
        ren.receipt_no = None
    return effect


def all_paid(ren: Renovation) -> Any:
    if any(c.paid_at is None for c in ren.charges if c.kind != "power"):
        return _l("Finance has not recorded every fee and deposit yet.")
    return None


def on_permit(ren: Renovation, firing: Firing) -> None:
    """REN-3: numbered worker passes with their deposits, the neighbour notice, the permit number."""
    local = firing.at
    ren.permit_no = f"ZX{local:%Y}-{ren.id:05d}"
    ren.permitted_at = firing.at
    for i in range(1, (ren.pass_count or 0) + 1):
        ren.passes.append(RenovationPass(number=f"{ren.permit_no}-{i:02d}", issued_at=firing.at,
                                         deposit=ren.pass_deposit_each or Decimal("0.00")))
    ren.notices.append(RenovationNotice(kind="neighbours", addressed_to=ren.neighbours_notified or "",
                                        text=str(_l("Renovation of %(u)s from %(a)s to %(b)s.", u=ren.unit.code,
                                                    a=ren.planned_start, b=ren.works_until)),
                                        issued_at=firing.at, issued_by=firing.user))
    ren.notices.append(RenovationNotice(kind="permit", addressed_to=ren.applicant.name, text=ren.permit_no,
                                        issued_at=firing.at, issued_by=firing.user))


# --- REN-5: patrols and the warning ladder ------------------------------------------------------
def _department(firing: Firing) -> str | None:
    dept = getattr(firing.user, "department", None)
    return getattr(dept, "key", None)


def on_patrol(ren: Renovation, firing: Firing) -> None:
    ren.inspections.append(RenovationInspection(kind="patrol", result="ok", findings=ren.inspection_findings,
                                                at=firing.at, inspector=firing.user,
                                                department=_department(firing)))
    ren.inspection_findings = None


def next_rung(level: str) -> Any:
    """The ladder is climbed in order: each rung needs the one before it (since the last restoration)."""
    def guard(ren: Renovation) -> Any:
        expected = LADDER[len(ren.ladder())] if len(ren.ladder()) < len(LADDER) else None
        if expected != level:
            return _l("The warning ladder goes in order: verbal warning, written violation notice, final "
                      "warning, then power cut or clearing the site.")
        return None
    return guard


def warn(level: str) -> Any:
    def effect(ren: Renovation, firing: Firing) -> None:
        warning = RenovationWarning(level=level, description=ren.breach_description,
                                    contractor_signature=ren.contractor_signature, at=firing.at,
                                    inspector=firing.user)
        ren.warnings.append(warning)
        ren.inspections.append(RenovationInspection(kind="patrol", result="breach", at=firing.at,
                                                    findings=ren.breach_description, inspector=firing.user,
                                                    department=_department(firing)))
        if level == "written":
            warning.violation = _violation(ren, firing)
        ren.breach_description = ren.contractor_signature = None
    return effect


def _violation(ren: Renovation, firing: Firing) -> Any:
    """The written notice (违约单) is also a Violation (VIO): one penalty ladder."""
    from models.violations import new_from_renovation

    return new_from_renovation(ren, firing.user, ren.breach_description or "")


def on_restore(ren: Renovation, firing: Firing) -> None:
    ren.warnings.append(RenovationWarning(level="restored", description=ren.contractor_commitment,
                                          contractor_signature=ren.contractor_signature, at=firing.at,
                                          inspector=firing.user))
    ren.contractor_commitment = ren.contractor_signature = None


# --- REN-6: extension ---------------------------------------------------------------------------
def extension_valid(ren: Renovation) -> Any:
    if ren.extension_until is None or ren.extension_until <= (ren.works_until or date.min):
        return _l("The new end date must be after the current end of the works.")
    return None


def on_extend(ren: Renovation, firing: Firing) -> None:
    ren.extensions.append(RenovationExtension(old_end=ren.works_until, new_end=ren.extension_until,
                                              reason=ren.extension_reason or "", approved_at=firing.at,
                                              approved_by=firing.approved_by or firing.user))
    ren.works_until = ren.extension_until
    ren.extension_until = ren.extension_reason = None


# --- REN-7: completion --------------------------------------------------------------------------
def finished_not_future(ren: Renovation) -> Any:
    from models.renovation import local_today
    from workflow.calendar import app_zone

    if ren.finished_at is not None and ren.finished_at.astimezone(app_zone()).date() > local_today():
        return _l("The works cannot have finished in the future.")
    return None


def on_finish(ren: Renovation, firing: Firing) -> None:
    ren.finished_at = ren.finished_at or firing.at


def parse_sets(value: Any, field: str) -> int | None:
    from models.validators import DomainError

    if value is None or isinstance(value, int):
        return value
    text = str(value).strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > MAX_PASSES:
        raise DomainError(_l("Enter the number of sets, e.g. 3."), field)
    return int(text)


def acceptance_documents_missing(ren: Renovation) -> list[Any]:
    """REN-10: what the acceptance application still lacks (empty: complete)."""
    missing: list[Any] = []
    if (ren.asbuilt_sets or 0) < ASBUILT_SETS:
        missing.append(_l("Three sets of as-built drawings must be handed in."))
    if not ren.asbuilt_scans:
        missing.append(_l("Upload the scan of the as-built drawings."))
    if not ren.invoice_scans:
        missing.append(_l("Upload the copies of the invoices for materials and equipment."))
    if not ren.receipt_scans:
        missing.append(_l("Upload the copy of the deposit receipt."))
    return missing


def acceptance_documents_complete(ren: Renovation) -> Any:
    missing = acceptance_documents_missing(ren)
    return "；".join(str(m) for m in missing) if missing else None


def on_apply_acceptance(ren: Renovation, firing: Firing) -> None:
    ren.acceptance_applied_at = firing.at


def on_fail(ren: Renovation, firing: Firing) -> None:
    ren.inspections.append(RenovationInspection(kind="completion", result="fail", at=firing.at,
                                                findings=ren.rectification_items, inspector=firing.user,
                                                department=_department(firing)))
    ren.notices.append(RenovationNotice(kind="rectification", addressed_to=ren.applicant.name,
                                        text=ren.rectification_items or "", due_on=ren.rectify_by,
                                        issued_at=firing.at, issued_by=firing.user))
    ren.rectification_items = None


def rectify_by_future(ren: Renovation) -> Any:
    from models.base import utcnow

    if ren.rectify_by is not None and ren.rectify_by <= utcnow():
        return _l("The rectification deadline must be in the future.")
    return None


def on_pass(ren: Renovation, firing: Firing) -> None:
    ren.inspections.append(RenovationInspection(kind="completion", result="pass", at=firing.at,
                                                findings=ren.vents_unsealed_note or "", inspector=firing.user,
                                                department=_department(firing)))
    ren.accepted_at, ren.vents_unsealed_at = firing.at, firing.at
    ren.notices.append(RenovationNotice(kind="acceptance", addressed_to=ren.applicant.name,
                                        text=ren.vents_unsealed_note or "", issued_at=firing.at,
                                        issued_by=firing.user))
    ren.rectify_by = None


def passes_out(ren: Renovation) -> Any:
    return None if any(p.returned_at is None for p in ren.passes) else _l("Every worker pass is back.")


def on_passes_back(ren: Renovation, firing: Firing) -> None:
    for p in ren.passes:
        p.returned_at = p.returned_at or firing.at


def passes_back(ren: Renovation) -> Any:
    if any(p.returned_at is None for p in ren.passes):
        return _l("Every worker pass must be returned before the deposits are refunded.")
    return None


def on_refund(ren: Renovation, firing: Firing) -> None:
    """REN-7: the deposit and the pass deposits go back (what is refunded is recorded per charge)."""
    for charge in ren.charges:
        if charge.refundable and charge.paid_at is not None and charge.refunded_at is None:
            charge.refunded_amount, charge.refunded_at = charge.amount, firing.at
            charge.refunded_by, charge.refund_receipt_no = firing.user, ren.receipt_no
    for p in ren.passes:
        p.refunded_at = p.refunded_at or firing.at
    ren.refunded_at = firing.at
    ren.receipt_no = None
