"""The complaint regulation's vocabulary, guards and effects (REGULATIONS §5, CMP-1..6, CMP-SLA-1..4).

Kept apart from the table (models/complaints.py) so the declaration there reads as the rule book:
which step, who, under which condition. Guards return a translated refusal or None; effects write
the step's own columns in the engine's transaction.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l

from models.base import db
from models.staff import Staff

if TYPE_CHECKING:
    from models.complaints import Complaint
    from workflow.engine import Firing

FRONT_DESK = frozenset({"manager", "cs_supervisor", "cs_clerk"})
SUPERVISORS = frozenset({"manager", "cs_supervisor"})
BUSINESS = frozenset({"manager", "cs_supervisor", "cs_clerk", "engineering", "security", "finance",
                      "management_dept"})

CHANNELS = {"visit": _l("Visit in person"), "phone": _l("Phone"), "letter": _l("Letter"), "online": _l("Online")}
CATEGORIES = {
    "repair": _l("Repair and maintenance"), "security": _l("Security"), "cleaning": _l("Cleaning and greening"),
    "parking": _l("Parking and traffic"), "fees": _l("Fees"), "neighbours": _l("Neighbours and noise"),
    "staff": _l("Staff attitude"), "developer": _l("Developer and construction"), "other": _l("Other"),
}
SEVERITIES = {"major": _l("Major"), "important": _l("Important"), "minor": _l("Minor")}
# CMP-3, shown as the severity field's help text.
SEVERITY_HELP = _l(
    "Major: a promised or contracted service not delivered after repeated requests, serious loss or "
    "injury caused by the firm, a collective complaint by three or more households, or a valid complaint "
    "unresolved for one month. Important: service fell short through the firm's fault. Minor: slight "
    "inconvenience from facility or capacity limits.")
VALIDITY = {"valid": _l("Valid"), "invalid": _l("Invalid")}
COLLECTIVE = 3  # households (CMP-3)

# States in which the complaint is still being worked on (before "handled").
OPEN = ("received", "dispatched", "accepted")
BEFORE_TOLD = (*OPEN, "handled")


# --- guards -------------------------------------------------------------------------------------
def dispatchable(c: Complaint) -> object:
    if c.department_id is None:
        return _l("Choose the responsible department first (edit the complaint).")
    return None


def in_department(c: Complaint, staff: Staff | None) -> object:
    """CMP-4: the responsible department signs receipt and records what it did, nobody else."""
    if staff is None or c.department_id is None or staff.department_id != c.department_id:
        return _l("Only staff of the responsible department may do this.")
    return None


def manager_for_major(c: Complaint, staff: Staff | None) -> object:
    """CMP-5: only the manager closes a major complaint (whichever way it is closed)."""
    if c.severity == "major":
        if staff is None or not staff.has_role("manager"):
            return _l("Only the manager closes a major complaint.")
    return None


def closable_duplicate(c: Complaint, staff: Staff | None) -> object:
    """CMP-6: linked to the complaint about the same problem that stays counted."""
    if c.duplicate_of_id is None:
        return _l("Choose the complaint this one repeats first (edit the complaint).")
    if c.duplicate_of_id == c.id:
        return _l("A complaint cannot repeat itself.")
    original = c.duplicate_of
    if original is None or original.deleted_at is not None:
        return _l("The original complaint was not found.")
    if original.duplicate_of_id is not None:
        return _l("Link to the original complaint, not to another duplicate.")
    return manager_for_major(c, staff)


def visited(c: Complaint) -> object:
    """VIS-1: the follow-up visit (or the reason it was impossible) is recorded."""
    from models.visits import completed_visit_for

    return None if completed_visit_for(c) is not None else _l("Record the follow-up visit first.")


def written_complaint(c: Complaint) -> object:
    """CMP-9: only a written complaint is answered by letter, once, and the letter is filed in its unit's
    archive (so the unit must be known). Checked before the step's fields are typed, so the step is
    offered (buttons, My work) only where it applies."""
    if not c.needs_written_reply:
        return _l("Only a written complaint (a letter, or marked written) is answered by letter.")
    if c.reply_recorded_at is not None:
        return _l("The written reply is already recorded.")
    if c.unit_id is None:
        return _l("Record the unit first (edit the complaint): the reply is filed in its archive.")
    return None


def reply_dated(c: Complaint) -> object:
    """CMP-9: the reply letter is dated between the day the complaint was received and today."""
    from models.base import utcnow
    from workflow.calendar import app_zone

    today = utcnow().astimezone(app_zone()).date()
    received = c.received_at.astimezone(app_zone()).date() if c.received_at else None
    if c.reply_letter_date is not None and (c.reply_letter_date > today
                                            or (received is not None and c.reply_letter_date < received)):
        return _l("The reply letter is dated between the day the complaint was received and today.")
    return None


def written_reply_given(c: Complaint) -> object:
    """CMP-9: a written complaint counts as told only once its written reply is recorded."""
    if c.needs_written_reply and c.reply_recorded_at is None:
        return _l("A written complaint is answered in writing: record the written reply (text, date, signer) "
                  "first (CMP-9).")
    return None


def major_unreported(c: Complaint) -> object:
    if c.severity != "major":
        return _l("Only a major complaint is reported to the manager.")
    if c.reported_to_manager_at is not None:
        return _l("Already reported to the manager.")
    return None


def major_unanswered(c: Complaint) -> object:
    return None if c.severity == "major" and c.answered_at is None else _l(
        "Only a major complaint without a definite answer yet.")


def is_minor(c: Complaint) -> object:
    return None if c.severity == "minor" else _l("Minor complaints only; the manager approves more time "
                                                 "for important and major ones.")


def not_minor(c: Complaint) -> object:
    return None if c.severity in ("important", "major") else _l(
        "Important and major complaints only; the supervisor approves more time for minor ones.")


# --- effects --------------------------------------------------------------------------------------
def _by(firing: Firing) -> int | None:
    return firing.user.id if firing.user else None


def on_dispatch(c: Complaint, firing: Firing) -> None:
    c.dispatched_at = firing.at


def on_accept(c: Complaint, firing: Firing) -> None:
    c.accepted_at, c.accepted_by_id = firing.at, _by(firing)


def on_handle(c: Complaint, firing: Firing) -> None:
    """Handled: the follow-up visit is drafted for the department head at once, so its VIS-1 clock
    (3 days from now) runs and the head finds it in My work."""
    from models.visits import Visit, draft_complaint_follow_up

    c.handled_at, c.handled_by_id = firing.at, _by(firing)
    with db.session.no_autoflush:
        drafted = db.session.scalar(sa.select(Visit.id).where(Visit.complaint_id == c.id, Visit.kind == "complaint",
                                                              Visit.deleted_at.is_(None)).limit(1))
    if drafted is None:
        draft_complaint_follow_up(c, firing.user)


def on_written_reply(c: Complaint, firing: Firing) -> None:
    """CMP-9: the reply is recorded and filed in the unit's archive (correspondence: complaints and
    replies); the archive lists it and prints it as 《投诉答复函》."""
    from models.archives import archive_for_unit

    c.reply_recorded_at = firing.at
    with db.session.no_autoflush:
        c.reply_archive_id = archive_for_unit(c.unit_id).id


def on_tell(c: Complaint, firing: Firing) -> None:
    c.told_at = firing.at


def on_return(c: Complaint, firing: Firing) -> None:
    c.dispatched_at = c.accepted_at = c.accepted_by_id = None


def on_invalid(c: Complaint, firing: Firing) -> None:
    c.validity = "invalid"


def on_answer(c: Complaint, firing: Firing) -> None:
    c.answered_at = firing.at


def on_report(c: Complaint, firing: Firing) -> None:
    """CMP-SLA-1: the manager hears of a major complaint the same day (in-app, and mail if set)."""
    from flask_babel import force_locale
    from flask_babel import gettext as _

    from models.staff import StaffRole
    from workflow.notify import notify

    c.reported_to_manager_at, c.reported_to_manager_by_id = firing.at, _by(firing)
    managers = db.session.scalars(sa.select(Staff).join(StaffRole).where(
        StaffRole.role == "manager", Staff.active.is_(True)).order_by(Staff.id)).all()
    for manager in managers:
        with force_locale(manager.locale or "zh_Hans_CN"):
            notify(manager, _("Major complaint: %(n)s", n=c.number or f"#{c.id}"), c.description[:500])


def on_extend(c: Complaint, firing: Firing) -> None:
    """CMP-SLA-2/3: the approved extra time moves the handling deadline."""
    c.extended_until = c.extension_requested_until


def on_escalate(c: Complaint, firing: Firing) -> None:
    """CMP-SLA-4: unresolved for a month, the complaint becomes major."""
    c.severity = "major"
    c.severity_since = firing.at  # the major clocks (CMP-SLA-1) count from the escalation


# --- parsing a date typed into a step's field ------------------------------------------------------
def parse_day(value: Any, field: str) -> date | None:
    """"2026-11-30" typed into a step's field (or a date from a form) to a date."""
    from models.validators import DomainError

    if value is None or isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    text = str(value).strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10]) if len(text) >= 10 else date.fromisoformat(text)
    except ValueError:
        raise DomainError(_l("Enter a date as 2026-11-30."), field) from None


def parse_local(value: Any, field: str) -> datetime | None:
    """"2026-11-30" (the end of that day) or "2026-11-30 18:00", Beijing time, to aware UTC."""
    from models.validators import DomainError
    from workflow.calendar import app_zone

    if value is None or isinstance(value, datetime):
        return value
    text = str(value).strip().replace("T", " ")
    if not text:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if fmt == "%Y-%m-%d":
            parsed = datetime.combine(parsed.date(), time(23, 59, 59))
        return parsed.replace(tzinfo=app_zone()).astimezone(UTC)
    raise DomainError(_l("Enter a date as 2026-11-30 or 2026-11-30 18:00."), field)
