"""Complaints (投诉处理, REGULATIONS §5): the complaint form (《住户投诉意见表》) and its flow.

received → dispatched (15 min) → accepted (the department signs receipt) → handled → told (same day)
→ visited (VIS-1) → closed; invalid ones are closed with an explanation. The time limits of CMP-4 and
CMP-SLA-1..4 are deadline clocks; CMP-5 and CMP-6 are guards. Guards and effects live in
models/complaint_rules.py. Statistics count ``Complaint.counted_query()`` (duplicates once, CMP-6).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from models import complaint_rules as r
from models.base import UTCDateTime, db, utcnow
from models.numbering import next_number
from models.registry import Resident, Unit
from models.staff import Department, Staff
from models.workflow import Tracked
from security.crypto import EncryptedString
from workflow.deadlines import Deadline
from workflow.engine import STAY, Step, T, Workflow


def _staff(column: Any) -> Any:
    return relationship(Staff, foreign_keys=[column])


class Complaint(Tracked, db.Model):
    __tablename__ = "complaint"
    sparse_indexes = ("duplicate_of_id",)  # statistics count "duplicate_of_id IS NULL" (CMP-6)
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str | None] = mapped_column(sa.String(16), unique=True)  # TS202611-0001, given on insert
    # CMP-1: the complaint form
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    channel: Mapped[str] = mapped_column(sa.String(8))
    written: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id"), index=True)
    unit: Mapped[Unit | None] = relationship()
    resident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("resident.id"), index=True)
    resident: Mapped[Resident | None] = relationship()
    complainant_name: Mapped[str] = mapped_column(sa.String(64), info={"personal": True})
    contact_phone: Mapped[str | None] = mapped_column(EncryptedString(), info={"personal": True})
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    location: Mapped[str | None] = mapped_column(sa.String(200))
    subject: Mapped[str | None] = mapped_column(sa.String(200))  # the person or department complained about
    description: Mapped[str] = mapped_column(sa.Text)
    demand: Mapped[str | None] = mapped_column(sa.Text)  # what the resident asks for
    read_back_confirmed: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    received_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    received_by = _staff(received_by_id)
    category: Mapped[str] = mapped_column(sa.String(16), index=True)
    # CMP-2 / CMP-3
    validity: Mapped[str] = mapped_column(sa.String(8), default="valid", index=True)
    about_property: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    severity: Mapped[str] = mapped_column(sa.String(16), index=True)
    severity_since: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the SLA clocks of the grade start here
    # CMP-4: dispatch, receipt, handling, telling the resident
    department_id: Mapped[int | None] = mapped_column(sa.ForeignKey("department.id"), index=True)
    department: Mapped[Department | None] = relationship()
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    accepted_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    accepted_by = _staff(accepted_by_id)
    handling_notes: Mapped[str | None] = mapped_column(sa.String(1000))
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    handled_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    handled_by = _staff(handled_by_id)
    reply_to_resident: Mapped[str | None] = mapped_column(sa.String(500))
    told_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # CMP-9: a written complaint's incoming-letter register number (收文登记号) and its written reply
    letter_register_no: Mapped[str | None] = mapped_column(sa.String(16), unique=True, index=True)
    reply_letter_text: Mapped[str | None] = mapped_column(sa.Text)
    reply_letter_date: Mapped[date | None] = mapped_column(sa.Date)
    reply_signed_by: Mapped[str | None] = mapped_column(sa.String(64))
    reply_recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reply_archive_id: Mapped[int | None] = mapped_column(sa.ForeignKey("archive.id"), index=True)  # filed there
    invalid_explanation: Mapped[str | None] = mapped_column(sa.String(500))
    # CMP-SLA-1: major complaints
    reported_to_manager_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reported_to_manager_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    answer_notes: Mapped[str | None] = mapped_column(sa.String(500))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # CMP-SLA-2/3: the resident's reasonable deadline and approved extra time
    resident_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime())
    extension_requested_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    extended_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    handling_until: Mapped[datetime | None] = mapped_column(UTCDateTime())  # extended_until or resident_deadline
    # CMP-6 and HLP-3
    duplicate_of_id: Mapped[int | None] = mapped_column(sa.ForeignKey("complaint.id"))  # sparse index
    duplicate_of: Mapped[Complaint | None] = relationship(remote_side=[id])
    help_request_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("help_request.id", ondelete="SET NULL"), unique=True)
    help_request = relationship("HelpRequest", foreign_keys=[help_request_id])
    follow_ups = relationship(  # VIS-1: its follow-up visits, newest first (read by the "visit" guard)
        "Visit", viewonly=True,
        primaryjoin="and_(Visit.complaint_id == Complaint.id, Visit.deleted_at.is_(None))",
        order_by="(Visit.visited_at.desc(), Visit.id.desc())")
    households: Mapped[list[ComplaintHousehold]] = relationship(
        back_populates="complaint", cascade="all, delete-orphan", order_by="ComplaintHousehold.id")

    workflow = Workflow(_l("Complaint"), {
        "received": _l("Received"), "dispatched": _l("Dispatched"), "accepted": _l("Accepted by the department"),
        "handled": _l("Handled"), "told": _l("Resident told"), "visited": _l("Visited"),
        "closed": _l("Closed"), "invalid": _l("Invalid, closed"),
    }, "received", [
        T("dispatch", "received", "dispatched", r.FRONT_DESK, label=_l("Dispatch to the department"),
          guard=r.dispatchable, effect=r.on_dispatch),
        T("accept", "dispatched", "accepted", r.BUSINESS, label=_l("Sign receipt"),
          who=r.in_department, effect=r.on_accept),
        T("return_to_desk", ["dispatched", "accepted"], "received", r.BUSINESS, label=_l("Not ours: back to the desk"),
          comment_required=True, who=r.in_department, effect=r.on_return, todo=False),
        T("handle", "accepted", "handled", r.BUSINESS, label=_l("Record the handling"),
          requires=["handling_notes"], who=r.in_department, effect=r.on_handle),
        T("reply_in_writing", ["accepted", "handled"], STAY, r.FRONT_DESK, label=_l("Record the written reply"),
          requires=["reply_letter_text", "reply_letter_date", "reply_signed_by"], who=r.written_complaint,
          guard=r.reply_dated, effect=r.on_written_reply),
        T("tell", "handled", "told", r.FRONT_DESK, label=_l("Resident told the result"),
          requires=["reply_to_resident"], who=r.written_reply_given, effect=r.on_tell),
        T("visit", "told", "visited", r.FRONT_DESK, label=_l("Follow-up visit done"), guard=r.visited),
        T("close", "visited", "closed", r.SUPERVISORS, label=_l("Close"), who=r.manager_for_major),
        T("mark_invalid", ["received", "dispatched"], "invalid", r.SUPERVISORS, label=_l("Invalid: close with "
          "an explanation"), requires=["invalid_explanation"], who=r.manager_for_major, effect=r.on_invalid,
          danger=True, todo=False),
        T("mark_duplicate", r.OPEN, "closed", r.FRONT_DESK, label=_l("Close as a duplicate"),
          guard=r.closable_duplicate, todo=False),
        T("report_to_manager", [*r.BEFORE_TOLD, "told", "visited"], STAY, r.FRONT_DESK,
          label=_l("Report to the manager"), guard=r.major_unreported, effect=r.on_report),
        T("answer", r.BEFORE_TOLD, STAY, r.FRONT_DESK, label=_l("Definite answer given"),
          requires=["answer_notes"], guard=r.major_unanswered, effect=r.on_answer),
        T("extend_minor", r.OPEN, STAY, r.BUSINESS, label=_l("Ask for more time (supervisor)"),
          requires=["extension_requested_until"], comment_required=True, guard=r.is_minor, effect=r.on_extend,
          todo=False, approvals=[Step(_l("Supervisor approves more time"), frozenset({"cs_supervisor"}))]),
        T("extend", r.OPEN, STAY, r.BUSINESS, label=_l("Ask for more time (manager)"),
          requires=["extension_requested_until"], comment_required=True, guard=r.not_minor, effect=r.on_extend,
          todo=False, approvals=[Step(_l("Manager approves more time"), frozenset({"manager"}))]),
        T("escalate_major", r.OPEN, STAY, system=True, label=_l("Unresolved for a month: major"),
          effect=r.on_escalate),
    ], delete_roles=r.FRONT_DESK, preload=("follow_ups",), deadlines=[
        Deadline("dispatch", _l("Dispatch a complaint"), start="received_at", amount=15, unit="minutes",
                 met_by={"dispatched"}, department="cs"),
        Deadline("important_to_staff", _l("Important complaint to the area staff"), start="severity_since",
                 amount=2, unit="hours", met_by={"accepted"}, watch=("severity",),
                 when=lambda c: c.severity == "important" and c.state in ("received", "dispatched")),
        Deadline("major_to_manager", _l("Major complaint to the manager"), start="severity_since", amount=0,
                 unit="working_days", met_by={"report_to_manager"}, department="cs",
                 watch=("severity", "reported_to_manager_at"),
                 when=lambda c: c.severity == "major" and c.reported_to_manager_at is None),
        Deadline("major_answer", _l("Definite answer on a major complaint"), start="severity_since", amount=2,
                 unit="days", met_by={"answer", "told"}, watch=("severity", "answered_at"),
                 when=lambda c: c.severity == "major" and c.answered_at is None and c.state in r.BEFORE_TOLD),
        Deadline("major_handled", _l("Resolve a major complaint"), start="severity_since", amount=10, unit="days",
                 met_by={"handled"}, until="extended_until", watch=("severity",),
                 when=lambda c: c.severity == "major" and c.state in r.OPEN),
        Deadline("important_handled", _l("Handle an important complaint"), start="severity_since", amount=3,
                 unit="days", met_by={"handled"}, until="extended_until", watch=("severity",),
                 when=lambda c: c.severity == "important" and c.state in r.OPEN),
        Deadline("minor_handled", _l("Handle a minor complaint"), start="severity_since", amount=2, unit="days",
                 met_by={"handled"}, until="handling_until", watch=("severity",),
                 when=lambda c: c.severity == "minor" and c.state in r.OPEN),
        Deadline("tell", _l("Tell the resident the result"), start="state:handled", amount=0,
                 unit="working_days", met_by={"told"}),
        Deadline("unresolved_month", _l("Valid complaint unresolved for a month"), start="received_at",
                 amount=1, unit="months", met_by={"handled"}, escalate="escalate_major",
                 watch=("severity", "validity"),
                 when=lambda c: c.validity == "valid" and c.severity != "major" and c.state in r.OPEN),
    ])

    field_labels = {
        "handling_notes": _l("What the department did"), "reply_to_resident": _l("Result told to the resident"),
        "invalid_explanation": _l("Explanation to the resident"), "answer_notes": _l("Definite answer"),
        "extension_requested_until": _l("More time until (e.g. 2026-11-30 18:00)"),
        "reply_letter_text": _l("Written reply (text of the letter)"),
        "reply_letter_date": _l("Date of the reply letter (e.g. 2026-11-30)"),
        "reply_signed_by": _l("Reply letter signed by"),
    }

    def __str__(self) -> str:
        return self.number or f"#{self.id}"

    # --- derived values ---------------------------------------------------------------------
    @validates("severity")
    def _severity(self, key: str, value: str) -> str:
        if value != self.severity:
            self.severity_since = utcnow()  # a new grade: its clocks start now
        return value

    @validates("resident_deadline", "extended_until", "extension_requested_until")
    def _until(self, key: str, value: Any) -> datetime | None:
        value = r.parse_local(value, key)  # typed into a step's field as text
        if key == "extended_until":
            self.handling_until = value or self.resident_deadline
        elif key == "resident_deadline":
            self.handling_until = self.extended_until or value
        return value

    @validates("reply_letter_date")
    def _reply_date(self, key: str, value: Any) -> date | None:
        return r.parse_day(value, key)

    @property
    def needs_written_reply(self) -> bool:
        """CMP-9: received as a letter, or marked written."""
        return bool(self.written) or self.channel == "letter"

    @validates("contact_phone")
    def _phone(self, key: str, value: str | None) -> str | None:
        from models.validators import check_phone

        return check_phone(value, key)

    def _household_units(self) -> list[int]:
        """Unit ids of the households (a form sets the relation; the id comes only at flush)."""
        units = [h.unit.id if h.unit is not None else h.unit_id for h in self.households]
        return [u for u in units if u is not None]

    @property
    def household_count(self) -> int:
        return len(set(self._household_units()))

    @property
    def collective(self) -> bool:
        return self.household_count >= r.COLLECTIVE

    @property
    def overdue(self) -> bool:
        return self.due_at is not None and self.due_at < utcnow()

    # --- CMP-6: what statistics count ---------------------------------------------------------
    @classmethod
    def counted(cls) -> list[Any]:
        """Where-clauses of the complaints statistics count: not deleted, duplicates once (CMP-6)."""
        return [cls.deleted_at.is_(None), cls.duplicate_of_id.is_(None)]

    @classmethod
    def counted_query(cls) -> sa.Select:
        return sa.select(cls).where(*cls.counted())

    # --- checks the form runs (views call them from check_model) ------------------------------
    def check_intake(self) -> None:
        """CMP-1..3: the form is complete, read back, graded consistently."""
        from models.validators import DomainError

        if self.state in ("closed", "invalid") and self.id is not None:
            raise DomainError(_l("A closed complaint is kept as it was; it can no longer be edited."))
        for field, message in (
                ("complainant_name", _l("Enter the complainant's name.")),
                ("description", _l("Describe what happened.")),
                ("demand", _l("Record what the resident asks for.")),
                ("location", _l("Record where it happened.")),
                ("occurred_at", _l("Record when it happened.")),
                ("subject", _l("Record the person or department complained about."))):
            value = getattr(self, field)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise DomainError(message, field)
        if not self.contact_phone and not (self.resident and self.resident.phone):
            raise DomainError(_l("Record how to reach the complainant (phone)."), "contact_phone")
        for field, allowed in (("channel", r.CHANNELS), ("category", r.CATEGORIES), ("severity", r.SEVERITIES)):
            if getattr(self, field) not in allowed:
                raise DomainError(_l("Choose a value from the list."), field)
        if self.occurred_at and self.received_at and self.occurred_at > self.received_at:
            raise DomainError(_l("It cannot have happened after the complaint was received."), "occurred_at")
        if self.resident_deadline and self.received_at and self.resident_deadline <= self.received_at:
            raise DomainError(_l("The resident's deadline must be after the complaint was received."),
                              "resident_deadline")
        if not self.read_back_confirmed:
            raise DomainError(_l("Read the complaint back to the resident and tick the confirmation (CMP-1)."),
                              "read_back_confirmed")
        self.check_severity()
        self.check_department()
        if self.duplicate_of_id is not None and self.duplicate_of_id == self.id:
            raise DomainError(_l("A complaint cannot repeat itself."), "duplicate_of")

    def check_severity(self) -> None:
        """CMP-3: a collective complaint (three or more households) is major; refused, not silently regraded,
        so the receiver sees why."""
        from models.validators import DomainError

        units = self._household_units()
        if len(units) != len(set(units)):
            raise DomainError(_l("The same household is listed twice."), "households")
        if self.collective and self.severity != "major":
            raise DomainError(_l("A collective complaint (three or more households) is major (CMP-3)."), "severity")

    def check_department(self) -> None:
        """Once dispatched, the department changes only by its sending the complaint back to the desk."""
        from models.validators import DomainError

        with db.session.no_autoflush:  # the stored value, not the one this change would write
            if self.id is None or self.state == "received":
                return
            chosen = self.department.id if self.department is not None else self.department_id
            stored = db.session.scalar(sa.select(Complaint.department_id).where(Complaint.id == self.id))
        if chosen != stored:
            raise DomainError(_l("The department already has it; it must send it back to the desk first."),
                              "department")


class ComplaintHousehold(db.Model):
    """One household joining a complaint; three or more make it collective (CMP-3)."""

    __tablename__ = "complaint_household"
    personal_label = True  # str() names a person (ACC-5: a related column shows personal data)
    __table_args__ = (sa.UniqueConstraint("complaint_id", "unit_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    complaint_id: Mapped[int] = mapped_column(sa.ForeignKey("complaint.id", ondelete="CASCADE"), index=True)
    complaint: Mapped[Complaint] = relationship(back_populates="households")
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"))
    unit: Mapped[Unit] = relationship()
    contact_name: Mapped[str | None] = mapped_column(sa.String(64), info={"personal": True})

    def __str__(self) -> str:
        return f"{self.unit} {self.contact_name or ''}".strip()


@sa.event.listens_for(Complaint, "before_insert")
def _number(mapper: Any, connection: sa.Connection, target: Complaint) -> None:
    """TS<yyyymm>-<serial>, by the Beijing month of receipt, from the month's counter row."""
    from workflow.calendar import app_zone

    if target.received_by_id is None:
        target.received_by_id = target.created_by_id
    _register_letter(connection, target)
    if target.number:
        return
    prefix = f"TS{(target.received_at or utcnow()).astimezone(app_zone()):%Y%m}-"
    target.number = next_number(connection, Complaint.__table__.c.number, prefix, 4)


@sa.event.listens_for(Complaint, "before_update")
def _register_on_update(mapper: Any, connection: sa.Connection, target: Complaint) -> None:
    _register_letter(connection, target)


def _register_letter(connection: sa.Connection, target: Complaint) -> None:
    """CMP-9: a written complaint is entered in the incoming-letter register (收文登记簿): SW<yyyymm>-<serial>,
    by the Beijing month of receipt, given once and kept."""
    from workflow.calendar import app_zone

    if target.channel == "letter":
        target.written = True  # a letter is a written complaint
    if target.letter_register_no or not target.needs_written_reply:
        return
    prefix = f"SW{(target.received_at or utcnow()).astimezone(app_zone()):%Y%m}-"
    target.letter_register_no = next_number(connection, Complaint.__table__.c.letter_register_no, prefix, 4)


def new_from_help_request(help_request: Any, user: Staff | None) -> Complaint:
    """HLP-3: the help request becomes a complaint linked to it (not copied back); added, not committed.
    The desk grades and reads it back when it completes the form."""
    unit = getattr(help_request, "unit", None)
    resident = getattr(help_request, "resident", None)
    received = getattr(help_request, "received_at", None) or utcnow()
    complaint = Complaint(
        help_request=help_request, unit=unit, resident=resident, received_at=received, occurred_at=received,
        channel="phone", written=False, category="other", severity="minor",
        complainant_name=(getattr(help_request, "caller", None) or (resident.name if resident else "") or "—")[:64],
        contact_phone=getattr(help_request, "caller_phone", None) or (resident.phone if resident else None),
        location=str(unit) if unit is not None else None,
        description=getattr(help_request, "description", None) or "",
        created_by_id=user.id if user else None, received_by_id=user.id if user else None)
    db.session.add(complaint)
    return complaint


def reply_letters_in(archive_id: int) -> list[Complaint]:
    """CMP-9 / ARC-2: the written replies filed in an archive (complaints and replies), newest first."""
    return list(db.session.scalars(sa.select(Complaint).where(
        Complaint.reply_archive_id == archive_id, Complaint.deleted_at.is_(None))
        .order_by(Complaint.reply_letter_date.desc(), Complaint.id.desc())))
