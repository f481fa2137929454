"""The violation regulation's vocabulary, guards and effects (REGULATIONS §8, VIO-1..VIO-11).

Kept apart from the tables (models/violations.py) so the declaration there reads as the rule
book. Guards return a translated refusal or None and read only the record's own columns (the
"My work" badge evaluates them for every open record); effects write the step's columns and its
log row in the engine's transaction.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from flask_babel import lazy_gettext as _l

from models.base import db, utcnow
from models.complaint_rules import parse_local
from models.staff import Staff
from workflow.calendar import app_zone
from workflow.settings import SettingSpec, declare, value

if TYPE_CHECKING:
    from models.violations import Violation
    from workflow.engine import Firing

FRONT_DESK = frozenset({"manager", "cs_supervisor", "cs_clerk"})
SUPERVISORS = frozenset({"manager", "cs_supervisor"})
MANAGER = frozenset({"manager"})
BUSINESS = frozenset({"manager", "cs_supervisor", "cs_clerk", "engineering", "security", "finance",
                      "management_dept"})
CUTTERS = FRONT_DESK | {"engineering"}  # engineering switches water/power off and on

# VIO-1: kinds and their sub-kinds.
KINDS = {"renovation": _l("Renovation"), "fire": _l("Fire safety"), "hygiene": _l("Hygiene and environment"),
         "order": _l("Public order"), "fees": _l("Refusing to pay fees"), "other": _l("Other harm")}
SUB_KINDS = {
    "renovation": {"structure": _l("Altering structure or façade"), "load_bearing": _l("Load-bearing walls"),
                   "utilities": _l("Shared utilities"), "grilles": _l("Window grilles"),
                   "floor_drains": _l("Floor drains")},
    "fire": {"exits": _l("Blocked exits"), "equipment": _l("Damaged fire equipment"),
             "wiring": _l("Overloaded wiring"), "burning": _l("Open burning"),
             "extinguishers": _l("Missing extinguishers")},
    "hygiene": {"litter": _l("Litter"), "damage": _l("Damage to facilities"), "clutter": _l("Clutter"),
                "throwing": _l("Throwing from height"), "noise": _l("Noise"), "plants": _l("Lawns and plants"),
                "pets": _l("Loose pets")},
    "order": {"parking": _l("Illegal parking"), "hazardous": _l("Hazardous goods"), "gambling": _l("Gambling"),
              "fighting": _l("Fighting")},
    "fees": {"fees": _l("Refusing to pay fees")},
    "other": {"other": _l("Other harm to residents or safety")},
}
ALL_SUB_KINDS = {k: v for subs in SUB_KINDS.values() for k, v in subs.items()}
SEVERITIES = {"general": _l("General"), "major": _l("Major")}
SEVERITY_HELP = _l("Major when it caused economic loss to residents or the firm or threatened public safety "
                   "(VIO-2); otherwise general.")
UTILITIES = {"water": _l("Water"), "power": _l("Power"), "both": _l("Water and power")}
CUT_REASONS = {"arrears": _l("Serious arrears"), "refused_compensation": _l("Refused compensation")}

# VIO-5: the measures, in order of escalation (index = rung).
MEASURES = {"persuasion": _l("Persuasion and education"), "rectification": _l("Rectification by a deadline"),
            "compensation": _l("Compensation for economic loss"), "cut": _l("Water/power cut"),
            "criticism": _l("Public criticism"), "lawsuit": _l("Arbitration or lawsuit")}
RUNG = {name: i for i, name in enumerate(MEASURES)}
# VIO-9: the arrears ladder for refused fees, taken in this order, none skipped.
ARREARS = {"reminder": _l("Reminder"), "dunning_letter": _l("Dunning letter"), "late_fee": _l("Late fee"),
           "lawyers_letter": _l("Lawyer's letter"), "announcement": _l("Owners' committee announcement"),
           "cut": _l("Water/power cut"), "stop_service": _l("Service stopped"),
           "lawsuit": _l("Arbitration or lawsuit")}
ARREARS_STEPS = list(ARREARS)
DESK_ARREARS = {"reminder", "dunning_letter", "announcement"}  # written by the desk
PENALTY_ARREARS = {"lawyers_letter", "stop_service"}  # decided by a penaliser, signed by the manager
ACTIONS = {**MEASURES, **{f"arrears_{k}": v for k, v in ARREARS.items()},
           "register": _l("Registered, coordination sheet issued"), "cut_decided": _l("Cut decided"),
           "second_notice": _l("Second notice before the cut"), "restored": _l("Water/power restored"),
           "mediation_failed": _l("Owners' committee mediation failed"), "follow_up": _l("Follow-up"),
           "cut_skipped": _l("Cut skipped: the covenant has no clause"), "close": _l("Closed")}
CHARGE_KINDS = {"compensation": _l("Compensation"), "late_fee": _l("Late fee")}

NOTICE_DAYS = 3  # VIO-6: written notice at least three days before a cut
SECOND_NOTICE_MINUTES = 5  # VIO-6: the second notice five minutes before

SUPERVISOR_MAY_PENALISE = declare(SettingSpec(
    "violation.supervisor_may_penalise_general", _l("Supervisor may impose penalties for general violations "
                                                    "(1 = yes, 0 = no; VIO-7)"), "integer", 1, 0, 1,
    group=_l("Violations")))


def now_local_text() -> str:
    return utcnow().astimezone(app_zone()).strftime("%Y-%m-%d %H:%M")


# --- guards ---------------------------------------------------------------------------------------
def may_penalise(v: Violation, staff: Staff | None) -> bool:
    """VIO-7: the manager always; the supervisor for general violations while the setting allows."""
    if staff is None:
        return False
    if staff.has_role("manager"):
        return True
    return (staff.has_role("cs_supervisor") and v.severity == "general"
            and bool(value(SUPERVISOR_MAY_PENALISE.key)))


def _penaliser(v: Violation, staff: Staff | None) -> object:
    if not may_penalise(v, staff):
        if v.severity == "major":
            return _l("Only the manager imposes penalties for a major violation (VIO-7).")
        return _l("Only the manager (or the supervisor for general violations, when the setting allows) "
                  "imposes penalties; others may only persuade (VIO-7).")
    return None


penaliser = _penaliser  # a "who" guard: the penalty buttons show only to those who may penalise


def persuaded(v: Violation) -> object:
    """VIO-3: staff persuade first; only an ignored persuasion is registered."""
    return None if v.persuaded_at is not None else _l("Record the persuasion first (VIO-3).")


def registrable(v: Violation) -> object:
    refusal = persuaded(v)
    if refusal:
        return refusal
    if v.unit_id is None and v.unit is None:
        return _l("Record the unit first (edit the violation).")
    return None


def routed(v: Violation, staff: Staff | None) -> object:
    """VIO-4: general violations are the supervisor's, major ones the manager's."""
    if staff is None or not staff.has_role(v.responsible_role or "manager"):
        return _l("Major violations are handled by the manager (VIO-4).") if v.severity == "major" else \
            _l("General violations are handled by the supervisor (VIO-4).")
    return None


def _rectified_first(v: Violation) -> object:
    if v.kind != "fees" and (v.measure_level or 0) < RUNG["rectification"]:
        return _l("Order rectification by a deadline first: the measures escalate in order (VIO-5).")
    return None


def rectification(v: Violation, staff: Staff | None) -> object:
    return _penaliser(v, staff)


def compensation(v: Violation, staff: Staff | None) -> object:
    if not v.economic_loss:
        return _l("Compensation is only for an economic loss; record the loss first (VIO-5).")
    return _rectified_first(v) or _penaliser(v, staff)


def criticism(v: Violation, staff: Staff | None) -> object:
    if not (v.committee_support or "").strip():
        return _l("Public criticism needs the owners' committee's support, recorded (VIO-6).")
    return _rectified_first(v) or _penaliser(v, staff)


def lawsuit(v: Violation, staff: Staff | None) -> object:
    if v.mediation_failed_at is None:
        return _l("A lawsuit only after the owners' committee's mediation failed (VIO-6).")
    if v.kind == "fees" and (v.arrears_level or 0) < ARREARS_STEPS.index("lawsuit"):
        return _l("Take the earlier steps of the arrears ladder first (VIO-9).")
    return _rectified_first(v) or _penaliser(v, staff)


def cut_decidable(v: Violation) -> object:
    """VIO-6: serious arrears or refused compensation, a covenant clause, written notice 3 days ahead."""
    if v.cut_decided_at is not None and v.restored_at is None:
        return _l("A cut is already decided.")
    if v.cut_reason == "arrears":
        if v.kind != "fees":
            return _l("Arrears: only for a refused-fees violation.")
        if (v.arrears_level or 0) < ARREARS_STEPS.index("cut"):
            return _l("Take the earlier steps of the arrears ladder first (VIO-9).")
    elif v.cut_reason == "refused_compensation":
        if (v.measure_level or 0) < RUNG["compensation"]:
            return _l("A cut for refused compensation needs an effective compensation decision first.")
    else:
        return _l("A cut is only for serious arrears or refused compensation (VIO-6).")
    if v.utility not in UTILITIES:
        return _l("Choose what is cut: water, power or both.")
    if v.cut_notice_at is None or v.cut_planned_at is None:
        return _l("Record the written notice and the planned cut time.")
    if v.cut_notice_at > utcnow() + timedelta(minutes=1):
        return _l("Record the written notice once it has been given.")
    if v.cut_planned_at - v.cut_notice_at < timedelta(days=NOTICE_DAYS):
        return _l("The written notice must be given at least 3 days before the cut (VIO-6).")
    return None


def second_notice(v: Violation) -> object:
    if v.cut_decided_at is None or v.cut_at is not None:
        return _l("Only for a decided cut not yet carried out.")
    if v.second_notice_at is not None:
        return _l("The second notice is already recorded.")
    return None


def cut_now(v: Violation) -> object:
    """VIO-6: not before the planned time, and five minutes after the second notice."""
    if v.cut_decided_at is None or v.cut_at is not None:
        return _l("Only for a decided cut not yet carried out.")
    now = utcnow()
    if v.cut_planned_at is not None and now < v.cut_planned_at:
        return _l("Not before the time given in the written notice (VIO-6).")
    if v.second_notice_at is None or now - v.second_notice_at < timedelta(minutes=SECOND_NOTICE_MINUTES):
        return _l("Give the second notice 5 minutes before the cut and wait (VIO-6).")
    return None


def restorable(v: Violation) -> object:
    return None if v.cut_at is not None and v.restored_at is None else _l("Nothing is cut.")


def _next_arrears(v: Violation) -> str | None:
    level = v.arrears_level or 0
    return ARREARS_STEPS[level] if level < len(ARREARS_STEPS) else None


def arrears_desk(v: Violation) -> object:
    """VIO-9: the next step of the ladder, when it is the desk's; none skipped."""
    if v.kind != "fees":
        return _l("The arrears ladder is for refused fees only (VIO-9).")
    step = _next_arrears(v)
    if step == "cut" and not (v.covenant_clause or "").strip():
        return None  # the covenant does not allow a cut: recorded as skipped
    if step not in DESK_ARREARS:
        return _l("The next step of the arrears ladder is “%(s)s” (VIO-9).", s=ARREARS.get(step, "—"))
    if step == "announcement" and not (v.committee_support or "").strip():
        return _l("An announcement needs the owners' committee's support, recorded (VIO-6).")
    return None


def arrears_penalty(v: Violation, staff: Staff | None) -> object:
    if v.kind != "fees":
        return _l("The arrears ladder is for refused fees only (VIO-9).")
    step = _next_arrears(v)
    if step not in PENALTY_ARREARS:
        return _l("The next step of the arrears ladder is “%(s)s” (VIO-9).", s=ARREARS.get(step, "—"))
    return _penaliser(v, staff)


def late_fee(v: Violation, staff: Staff | None) -> object:
    if v.kind != "fees" or _next_arrears(v) != "late_fee":
        return _l("The next step of the arrears ladder is “%(s)s” (VIO-9).",
                  s=ARREARS.get(_next_arrears(v) or "", "—"))
    return _penaliser(v, staff)


def followable(v: Violation) -> object:
    if v.penalised_at is None:
        return _l("Follow-up comes after a penalty (VIO-10).")
    if v.followed_up_at is not None and v.followed_up_at >= v.penalised_at:
        return _l("The follow-up is already recorded.")
    return None


def closable(v: Violation, staff: Staff | None) -> object:
    if v.cut_at is not None and v.restored_at is None:
        return _l("Restore water/power before closing (VIO-6).")
    if v.cut_decided_at is not None and v.cut_at is None:
        return _l("A decided cut is open: carry it out and restore, or record the restoration.")
    if v.penalised_at is not None and (v.followed_up_at is None or v.followed_up_at < v.penalised_at):
        return _l("Record the follow-up after the penalty first (VIO-10).")
    return routed(v, staff)


# --- effects --------------------------------------------------------------------------------------
def _log(v: Violation, firing: Firing, code: str, notes: str | None = None) -> Any:
    from models.violations import ViolationAction

    signer = firing.approved_by
    row = ViolationAction(violation=v, code=code, at=firing.at, by_id=firing.user.id if firing.user else None,
                          signed_by_id=signer.id if signer else None, notes=notes or firing.comment or None)
    db.session.add(row)
    return row


def _charge(v: Violation, firing: Firing, kind: str, amount: Decimal) -> None:
    from models.violations import ViolationCharge

    month = firing.at.astimezone(app_zone()).strftime("%Y-%m")
    signer = firing.approved_by or firing.user
    db.session.add(ViolationCharge(violation=v, kind=kind, amount=amount, effective_at=firing.at, month=month,
                                   signed_by_id=signer.id if signer else None))


def _penalty(v: Violation, firing: Firing, code: str) -> None:
    """A signed penalty: logged, effective now, and the follow-up clock starts (VIO-10)."""
    _log(v, firing, code)
    if code in RUNG:
        v.measure_level = max(v.measure_level or 0, RUNG[code])
    v.penalised_at = firing.at


def on_persuade(v: Violation, firing: Firing) -> None:
    v.persuaded_at = firing.at
    v.persuaded_by_id = firing.user.id if firing.user else None
    _log(v, firing, "persuasion", v.persuasion_notes)


def on_register(v: Violation, firing: Firing) -> None:
    from models.violations import issue_sheet

    issue_sheet(v, firing.at)
    _log(v, firing, "register", v.sheet_no)


def on_rectify(v: Violation, firing: Firing) -> None:
    _penalty(v, firing, "rectification")


def on_compensate(v: Violation, firing: Firing) -> None:
    _penalty(v, firing, "compensation")
    _charge(v, firing, "compensation", v.compensation_amount)


def on_criticise(v: Violation, firing: Firing) -> None:
    _penalty(v, firing, "criticism")


def on_sue(v: Violation, firing: Firing) -> None:
    _penalty(v, firing, "lawsuit")
    if v.kind == "fees":
        v.arrears_level = len(ARREARS_STEPS)


def on_decide_cut(v: Violation, firing: Firing) -> None:
    v.cut_decided_at, v.second_notice_at, v.cut_at, v.restored_at = firing.at, None, None, None
    _log(v, firing, "cut_decided", v.covenant_clause)


def on_second_notice(v: Violation, firing: Firing) -> None:
    v.second_notice_at = firing.at
    _log(v, firing, "second_notice")


def on_cut(v: Violation, firing: Firing) -> None:
    v.cut_at = firing.at
    _penalty(v, firing, "cut")
    if v.kind == "fees" and _next_arrears(v) == "cut":
        v.arrears_level = ARREARS_STEPS.index("cut") + 1


def on_restore(v: Violation, firing: Firing) -> None:
    v.restored_at, v.restore_notes = firing.at, firing.comment[:300]
    _log(v, firing, "restored")


def on_mediation(v: Violation, firing: Firing) -> None:
    v.mediation_failed_at = firing.at
    _log(v, firing, "mediation_failed", v.mediation_result)


def on_arrears_desk(v: Violation, firing: Firing) -> None:
    step = _next_arrears(v) or ""
    _log(v, firing, "cut_skipped" if step == "cut" else f"arrears_{step}", v.arrears_notes)
    v.arrears_level = (v.arrears_level or 0) + 1


def on_arrears_penalty(v: Violation, firing: Firing) -> None:
    step = _next_arrears(v) or ""
    _penalty(v, firing, f"arrears_{step}")
    v.arrears_level = (v.arrears_level or 0) + 1


def on_late_fee(v: Violation, firing: Firing) -> None:
    _penalty(v, firing, "arrears_late_fee")
    _charge(v, firing, "late_fee", v.late_fee_amount)
    v.arrears_level = (v.arrears_level or 0) + 1


def on_follow_up(v: Violation, firing: Firing) -> None:
    v.followed_up_at, v.follow_up_notes = firing.at, firing.comment[:500]
    _log(v, firing, "follow_up")


def on_close(v: Violation, firing: Firing) -> None:
    v.outcome_notes = firing.comment[:500]
    _log(v, firing, "close")


def parse_money(raw: Any, field: str) -> Decimal | None:
    """A typed amount (yuan, two decimals, positive) as Decimal, or DomainError."""
    from models.validators import DomainError

    if raw is None or isinstance(raw, Decimal):
        amount = raw
    else:
        text = str(raw).strip().replace(",", "").replace("，", "")
        if not text:
            return None
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise DomainError(_l("Enter an amount such as 1200.00."), field) from None
    if amount is not None and (not amount.is_finite() or amount <= 0 or amount >= Decimal("10000000000")
                               or amount != amount.quantize(Decimal("0.01"))):
        raise DomainError(_l("Enter an amount such as 1200.00."), field)
    return amount


__all__ = ["parse_local", "parse_money"]
