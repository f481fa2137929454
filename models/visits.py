"""Follow-up visits (回访, REGULATIONS §5: VIS-1..4, VIS-6).

A visit is drafted, recorded (the guard checks everything the regulation asks for: who visited,
how, the opinion or why no visit was possible, the signature of an on-site visit, an agreed reply
time for a new issue) and then signed by the manager. A visit that leaves an issue open drafts
the further visit itself, due at the agreed reply time; the chain ends with a visit that records
the issue resolved. The checks live in ``models.visit_rules``; the dashboard rates in
``models.visit_stats``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models import visit_rules as rules
from models.base import UTCDateTime, db
from models.registry import Unit
from models.staff import Staff
from models.workflow import Tracked
from workflow.deadlines import Deadline
from workflow.engine import Firing, T, Workflow

KINDS = {"complaint": _l("Complaint follow-up"), "survey": _l("Opinion survey"),
         "suggestion": _l("Suggestion"), "repair": _l("Repair visit")}
METHODS = {"on_site": _l("On site"), "phone": _l("By phone")}
# Who records visits: the desk and the department heads of engineering (VIS-1: the head visits).
VISITORS = frozenset({"manager", "cs_supervisor", "cs_clerk", "engineering"})
DONE_STATES = ("recorded", "signed")


def record_blocker(visit: Visit) -> object:
    """The "record" guard: every rule of VIS-1..4 at once, as a translated refusal."""
    from models.validators import DomainError

    try:
        visit.check_ready()
    except DomainError as exc:
        return exc.message
    return None


def _after_record(visit: Visit, firing: Firing) -> None:
    """VIS-4: a resolved further visit settles the chain; an open issue drafts the next visit."""
    if visit.previous_visit is not None and visit.resolved:
        earlier = visit.previous_visit
        while earlier is not None:
            if earlier.issue_resolved_at is None:
                earlier.issue_resolved_at = firing.at
            earlier = earlier.previous_visit
    if visit.leaves_issue_open and not db.session.scalar(
            sa.select(sa.exists().where(Visit.previous_visit_id == visit.id, Visit.deleted_at.is_(None)))):
        db.session.add(Visit(
            kind=visit.kind, complaint_id=visit.complaint_id, repair_order_id=visit.repair_order_id,
            unit_id=visit.unit_id, previous_visit=visit, visitor_id=visit.visitor_id, method=visit.method,
            person_visited=visit.person_visited, reply_due_at=visit.agreed_reply_at,
            created_by_id=firing.user.id if firing.user else None))


class Visit(Tracked, db.Model):
    __tablename__ = "visit"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16), index=True)
    complaint_id: Mapped[int | None] = mapped_column(sa.ForeignKey("complaint.id"), index=True)
    complaint = relationship("Complaint", foreign_keys=[complaint_id])
    repair_order_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("repair_order.id", ondelete="CASCADE"), index=True)
    repair_order = relationship("RepairOrder", foreign_keys=[repair_order_id])
    previous_visit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("visit.id", ondelete="SET NULL"),
                                                          index=True)
    previous_visit: Mapped[Visit | None] = relationship(remote_side="Visit.id", foreign_keys=[previous_visit_id])
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id"), index=True)
    unit: Mapped[Unit | None] = relationship()
    method: Mapped[str] = mapped_column(sa.String(16), default="phone")
    visited_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    visitor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"), index=True)
    visitor: Mapped[Staff | None] = relationship(foreign_keys=[visitor_id])
    person_visited: Mapped[str | None] = mapped_column(sa.String(64), info={"personal": True})
    opinion: Mapped[str | None] = mapped_column(sa.Text, info={"personal": True})
    satisfied: Mapped[bool | None] = mapped_column(sa.Boolean)
    impossible_reason: Mapped[str | None] = mapped_column(sa.Text)
    new_issue: Mapped[str | None] = mapped_column(sa.Text)
    agreed_reply_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    # A further visit is due at the reply time agreed in the previous one (VIS-4).
    reply_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set on every earlier visit of a chain when a further visit records the issue resolved.
    issue_resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)

    workflow = Workflow(_l("Follow-up visit"), {
        "draft": _l("Draft"), "recorded": _l("Recorded"), "signed": _l("Signed by the manager"),
    }, "draft", [
        T("record", "draft", "recorded", VISITORS, label=_l("Record the visit"), guard=record_blocker,
          effect=_after_record),
        T("reopen", "recorded", "draft", {"manager"}, label=_l("Return for correction"),
          comment_required=True, todo=False),
        T("sign", "recorded", "signed", {"manager"}, label=_l("Sign the visit record")),
    ], delete_roles=frozenset({"manager", "cs_supervisor", "cs_clerk"}),
        preload=("visitor.role_rows", "complaint", "previous_visit", "repair_order"), deadlines=[
        Deadline("complaint_follow_up", _l("Follow-up visit within 3 days of handling the complaint"),
                 start="complaint_handled_at", amount=3, unit="days", met_by={"recorded"},
                 when=lambda v: v.kind == "complaint" and not v.is_further, watch=("kind", "complaint_id"),
                 assignee_field="visitor_id"),
        Deadline("further_visit", _l("Further visit by the agreed reply time"), start="created_at",
                 amount=3, unit="days", met_by={"recorded"}, until="reply_due_at",
                 when=lambda v: v.is_further, watch=("previous_visit_id",),
                 assignee_field="visitor_id"),
    ])

    field_labels = {
        "visited_at": _l("Visited at"), "visitor_id": _l("Visitor"), "person_visited": _l("Person visited"),
        "opinion": _l("Resident's opinion"), "impossible_reason": _l("Why no visit was possible"),
        "agreed_reply_at": _l("Agreed reply time"),
    }

    def __str__(self) -> str:
        return f"#{self.id} {KINDS.get(self.kind, self.kind)}"

    @property
    def kind_label(self) -> str:
        return str(KINDS.get(self.kind, self.kind))

    @property
    def method_label(self) -> str:
        return str(METHODS.get(self.method, self.method))

    @property
    def major_repair(self) -> bool:
        return rules.is_major_repair(self.repair_order)

    @property
    def met_resident(self) -> bool:
        """An opinion was taken (as opposed to a visit that was impossible)."""
        return bool((self.opinion or "").strip())

    @property
    def complaint_handled_at(self) -> datetime | None:
        """VIS-1: the follow-up clock of a complaint runs from its handling."""
        if self.kind != "complaint":
            return None
        complaint = self.complaint
        if complaint is None and self.complaint_id is not None:  # a pending row does not lazy-load
            from models.complaints import Complaint

            complaint = db.session.get(Complaint, self.complaint_id)
        return getattr(complaint, "handled_at", None)

    @property
    def is_further(self) -> bool:
        """A further visit (VIS-4); the relationship counts before the flush fills the id."""
        return self.previous_visit_id is not None or self.previous_visit is not None

    @property
    def leaves_issue_open(self) -> bool:
        """A new issue not answered at once, or a further visit that did not resolve it (VIS-4)."""
        return bool((self.new_issue or "").strip()) or (self.is_further and not self.resolved)

    @property
    def has_signature(self) -> bool:
        from models.attachment import has_attachment

        return has_attachment(self.__tablename__, self.id, "signature")

    # --- the rules (DomainError with the field to show it at) ----------------------------------
    def check_draft(self) -> None:
        """What a saved draft must already get right: subject, chain, visitor, method."""
        rules.check_subject(self)
        rules.check_visitor(self)
        rules.check_method(self)
        rules.check_times(self)

    def check_ready(self) -> None:
        """Everything recording needs (VIS-1..4)."""
        self.check_draft()
        rules.check_outcome(self)
        rules.check_issue(self)
        rules.check_signature(self)

    def sync_ids(self) -> None:
        """Copy the chosen related records' ids into the key columns now, not at the flush: the
        deadline hook reads ``visitor_id`` and ``complaint_id`` before the flush fills them."""
        for name in ("complaint", "repair_order", "previous_visit", "unit", "visitor"):
            related = getattr(self, name)
            setattr(self, f"{name}_id", related.id if related is not None else None)

    def check_editable(self) -> None:
        from models.validators import DomainError

        if self.state not in (None, "draft"):
            raise DomainError(_l("A recorded visit cannot be changed; the manager may return it for "
                                 "correction."))


def completed_visit_for(complaint: Any) -> Visit | None:
    """VIS-1: the recorded follow-up of ``complaint`` with an opinion or a reason why no visit was
    possible; an on-site visit counts only with the resident's signature. The complaint's
    told → visited guard asks this. VIS-7: an important or major complaint needs the signed on-site visit."""
    if complaint is None or complaint.id is None:
        return None
    on_site_only = rules.needs_on_site_visit(complaint)
    for visit in complaint.follow_ups:  # newest first; "My work" loads them for many complaints at once
        said = (visit.opinion or "").strip() or (visit.impossible_reason or "").strip()
        if visit.kind != "complaint" or visit.state not in DONE_STATES or not said:
            continue
        if on_site_only:  # VIS-7: on site, the resident met and signing; a phone call does not count
            if visit.method == "on_site" and visit.met_resident and visit.has_signature:
                return visit
        elif visit.method != "on_site" or not visit.met_resident or visit.has_signature:
            return visit
    return None


def draft_complaint_follow_up(complaint: Any, user: Staff | None = None) -> Visit:
    """VIS-1: the follow-up of a just-handled complaint, drafted for the head of the responsible
    department (due 3 days after the handling), on site for an important or major complaint (VIS-7).
    For the complaint's "handle" effect; no commit."""
    head = db.session.scalar(sa.select(Staff).where(
        Staff.department_id == complaint.department_id, Staff.department_head.is_(True),
        Staff.active.is_(True)).order_by(Staff.id).limit(1)) if complaint.department_id else None
    visit = Visit(kind="complaint", complaint=complaint, unit_id=complaint.unit_id, visitor=head,
                  visitor_id=head.id if head is not None else None, complaint_id=complaint.id,
                  method="on_site" if rules.needs_on_site_visit(complaint) else "phone",
                  person_visited=getattr(complaint, "complainant_name", None),
                  created_by_id=user.id if user is not None else None)
    db.session.add(visit)
    return visit


def visits_of(record: Any) -> list[Visit]:
    """The visits of a complaint or a repair order, oldest first (for their details pages)."""
    column = Visit.complaint_id if record.__tablename__ == "complaint" else Visit.repair_order_id
    return list(db.session.scalars(sa.select(Visit).where(column == record.id, Visit.deleted_at.is_(None))
                                   .order_by(Visit.created_at, Visit.id)))
