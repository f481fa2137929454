"""Help requests (住户求助 / 报事报修, REGULATIONS §6, HLP-1..6): the desk's register of what
residents ask for, with the reply clocks, the supervisor alert for special requests and the
conversions into a complaint (§5) or a repair work order (models/repairs.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import event
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.base import UTCDateTime, db, utcnow
from models.registry import Resident, Unit
from models.staff import Staff, StaffRole
from models.workflow import Tracked
from security.crypto import EncryptedString
from workflow.deadlines import Deadline
from workflow.engine import STAY, Firing, T, Workflow

FRONT_DESK = frozenset({"manager", "cs_supervisor", "cs_clerk"})
DESK = FRONT_DESK | {"security"}  # security handles emergencies at the desk's side

# HLP-1: the eight categories; emergency medical, crime/accident and disaster are special (特别求助).
CATEGORIES: dict[str, Any] = {
    "medical": _l("Emergency medical"), "repair": _l("Repair"), "complaint": _l("Complaint"),
    "enquiry": _l("Enquiry"), "crime": _l("Crime or accident"), "disaster": _l("Disaster"),
    "daily": _l("Everyday help"), "paid": _l("Paid service"),
}
SPECIAL = frozenset({"medical", "crime", "disaster"})
SUB_KINDS: dict[str, dict[str, Any]] = {
    "crime": {"theft": _l("Theft"), "fight": _l("Fight"), "robbery": _l("Robbery"),
              "poisoning": _l("Poisoning"), "traffic": _l("Traffic accident")},
    "disaster": {"typhoon": _l("Typhoon"), "flood": _l("Flood"), "fire": _l("Fire")},
}
ALL_SUB_KINDS: dict[str, Any] = {k: v for kinds in SUB_KINDS.values() for k, v in kinds.items()}
ENQUIRY_MODES: dict[str, Any] = {"oral": _l("Oral (on the spot or phone)"), "written": _l("Written")}
MEDICAL_OPTIONS: dict[str, Any] = {"escort": _l("Escort to hospital"), "call_120": _l("Call 120"),
                                   "short_term_care": _l("Short-term care")}
REPLIED = frozenset({"reply", "manager_reply", "to_complaint", "to_repair"})


def _is_enquiry(mode: str | None) -> Any:
    return lambda r: r.category == "enquiry" and r.enquiry_mode == mode


def _reply_effect(request: HelpRequest, firing: Firing) -> None:
    request.replied_at = firing.at
    request.replied_by_id = firing.user.id if firing.user else None


def _general_reply(request: HelpRequest) -> object:
    if request.needs_manager_reply:
        return _l("This enquiry needs the manager's written reply.")
    return None


def _manager_reply(request: HelpRequest) -> object:
    return None if request.needs_manager_reply else _l("Only enquiries marked for the manager's reply.")


def _to_complaint_guard(request: HelpRequest) -> object:
    if request.category != "complaint":
        return _l("Only a complaint help request becomes a complaint.")
    if request.unit_id is None and request.resident_id is None:
        return _l("Record the unit or the resident first (edit the request).")
    return None


def _to_complaint(request: HelpRequest, firing: Firing) -> None:
    from models.complaints import new_from_help_request  # HLP-3: the complaint holds the link

    _reply_effect(request, firing)
    new_from_help_request(request, firing.user)


def _to_repair_guard(request: HelpRequest) -> object:
    return None if request.category == "repair" else _l("Only a repair request becomes a repair work order.")


def _to_repair(request: HelpRequest, firing: Firing) -> None:
    from models.repairs import RepairOrder

    _reply_effect(request, firing)
    order = RepairOrder(help_request=request, unit_id=request.unit_id, emergency=bool(request.urgent),
                        reported_at=request.received_at or firing.at)
    db.session.add(order)


def _charge_guard(request: HelpRequest) -> object:
    if request.category != "paid":
        return _l("Only a paid service is charged.")
    if request.charged_at is not None:
        return _l("Already charged.")
    return None if request.price and request.price > 0 else _l("Enter the price first (edit the request).")


def _charge(request: HelpRequest, firing: Firing) -> None:
    request.charged_at = firing.at
    request.charged_amount = request.price


def _closable(request: HelpRequest) -> object:
    from models.validators import DomainError

    try:
        request.check_closable()
    except DomainError as exc:  # its translated message refuses the step
        return exc.message
    return None


class HelpRequest(Tracked, db.Model):
    """One entry of the help register (《住户求助登记表》/《报事报修登记表》)."""

    __tablename__ = "help_request"
    personal_label = True  # str() names a person (ACC-5: a related column shows personal data)
    id: Mapped[int] = mapped_column(primary_key=True)
    category: Mapped[str] = mapped_column(sa.String(16), index=True)
    sub_kind: Mapped[str | None] = mapped_column(sa.String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    caller: Mapped[str] = mapped_column(sa.String(64), info={"personal": True})
    caller_phone: Mapped[str | None] = mapped_column(EncryptedString(), info={"personal": True})
    unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id"), index=True)
    unit: Mapped[Unit | None] = relationship()
    resident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("resident.id"), index=True)
    resident: Mapped[Resident | None] = relationship()
    description: Mapped[str] = mapped_column(sa.Text)
    urgent: Mapped[bool] = mapped_column(sa.Boolean, default=False)  # an emergency repair (HLP-7)
    enquiry_mode: Mapped[str | None] = mapped_column(sa.String(8))
    needs_manager_reply: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    reply: Mapped[str | None] = mapped_column(sa.String(500))
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replied_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    replied_by: Mapped[Staff | None] = relationship(foreign_keys=[replied_by_id])
    supervisor_alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    price: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    charged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # ACC-8: recorded money
    charged_amount: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2), info={"important": True})
    # HLP-5 emergency medical
    medical_address: Mapped[str | None] = mapped_column(EncryptedString(), info={"personal": True})
    medical_option: Mapped[str | None] = mapped_column(sa.String(16))
    carer_1_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    carer_1: Mapped[Staff | None] = relationship(foreign_keys=[carer_1_id])
    carer_2_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    carer_2: Mapped[Staff | None] = relationship(foreign_keys=[carer_2_id])
    medical_outcome: Mapped[str | None] = mapped_column(sa.Text, info={"personal": True})
    outcome: Mapped[str | None] = mapped_column(sa.String(500))
    repair_order = relationship("RepairOrder", back_populates="help_request", uselist=False,
                                cascade="all, delete-orphan", passive_deletes=True)

    workflow = Workflow(_l("Help request"), {
        "received": _l("Received"), "referred": _l("Asked the supervisor"), "replied": _l("Replied"),
        "converted": _l("Converted"), "closed": _l("Closed"),
    }, "received", [
        T("refer", "received", "referred", DESK, label=_l("Ask the supervisor"), todo=False),
        T("reply", ["received", "referred"], "replied", DESK, label=_l("Reply"), requires=["reply"],
          guard=_general_reply, effect=_reply_effect),
        T("manager_reply", ["received", "referred"], "replied", {"manager"}, label=_l("Manager's written reply"),
          requires=["reply"], guard=_manager_reply, effect=_reply_effect),
        T("to_complaint", ["received", "referred", "replied"], "converted", FRONT_DESK,
          label=_l("Register as a complaint"), guard=_to_complaint_guard, effect=_to_complaint),
        T("to_repair", ["received", "referred", "replied"], "converted", FRONT_DESK,
          label=_l("Open a repair work order"), guard=_to_repair_guard, effect=_to_repair),
        T("charge", ["received", "referred", "replied"], STAY, FRONT_DESK | {"finance"},
          label=_l("Record the charge"), guard=_charge_guard, effect=_charge, todo=False),
        T("close", "replied", "closed", DESK, label=_l("Close the request"), requires=["outcome"], guard=_closable),
    ], delete_roles=FRONT_DESK, deadlines=[
        # HLP-2: 5 minutes, counted from the call; enquiries have their own limits (HLP-4).
        Deadline("reply", _l("Reply to a help request"), start="received_at", amount=5, unit="minutes",
                 met_by=REPLIED, department="cs", when=lambda r: r.category != "enquiry", watch=("category",)),
        Deadline("written_enquiry", _l("Written reply to a written enquiry"), start="received_at", amount=2,
                 unit="days", met_by=REPLIED, department="cs", when=_is_enquiry("written"),
                 watch=("category", "enquiry_mode")),
        Deadline("oral_enquiry", _l("Reply to an oral enquiry"), start="received_at", amount=2, unit="hours",
                 met_by=REPLIED, department="cs", when=_is_enquiry("oral"), watch=("category", "enquiry_mode")),
    ])

    field_labels = {"reply": _l("Reply"), "outcome": _l("Outcome")}

    @hybrid_property
    def special(self) -> bool:
        return self.category in SPECIAL

    @special.inplace.expression
    @classmethod
    def _special_expression(cls) -> Any:
        return cls.category.in_(sorted(SPECIAL))

    @property
    def category_label(self) -> str:
        return str(CATEGORIES.get(self.category, self.category))

    def __str__(self) -> str:
        return f"#{self.id} {self.category_label} {self.caller}"

    def carer_ids(self) -> tuple[int | None, int | None]:
        """The two carers (HLP-5), from the relationships a form sets or the columns."""
        return (self.carer_1.id if self.carer_1 is not None else self.carer_1_id,
                self.carer_2.id if self.carer_2 is not None else self.carer_2_id)

    def check_details(self) -> None:
        """HLP-1/4/5 input rules, checked before any write (form, import)."""
        from models.validators import DomainError

        for name in ("sub_kind", "enquiry_mode", "medical_option", "caller_phone", "medical_address"):
            value = getattr(self, name)
            if isinstance(value, str) and not value.strip():
                setattr(self, name, None)  # an empty select or input means "not given"
        if self.category not in CATEGORIES:
            raise DomainError(_l("Choose a category."), "category")
        kinds = SUB_KINDS.get(self.category, {})
        if kinds and self.sub_kind not in kinds:
            raise DomainError(_l("Choose the kind of crime/accident or disaster."), "sub_kind")
        if not kinds and self.sub_kind:
            raise DomainError(_l("Only crime/accident and disaster requests have a kind."), "sub_kind")
        if self.category == "enquiry" and self.enquiry_mode not in ENQUIRY_MODES:
            raise DomainError(_l("An enquiry is oral or written."), "enquiry_mode")
        if self.category != "enquiry" and (self.enquiry_mode or self.needs_manager_reply):
            raise DomainError(_l("Only an enquiry has a mode or a manager's reply."), "enquiry_mode")
        if self.price is not None and (self.category != "paid" or self.price <= 0):
            raise DomainError(_l("A price is entered only for a paid service, and above zero."), "price")
        if self.charged_at is not None and self.price != self.charged_amount:
            raise DomainError(_l("The price cannot change after the charge was recorded."), "price")
        if self.urgent and self.category != "repair":
            raise DomainError(_l("Only a repair can be an emergency repair."), "urgent")
        if self.medical_option is not None and self.medical_option not in MEDICAL_OPTIONS:
            raise DomainError(_l("Choose the option taken."), "medical_option")
        first, second = self.carer_ids()
        if first is not None and first == second:
            raise DomainError(_l("Carers never stay alone with the patient: name two different carers."),
                              "carer_2")

    def check_closable(self) -> None:
        """What must be on the register before the request is closed (HLP-3, HLP-5)."""
        from models.validators import DomainError

        if self.category == "medical":
            missing = [label for value, label in (
                (self.medical_address, _l("address")), (self.caller_phone, _l("phone")),
                (self.medical_option, _l("option chosen")), (self.medical_outcome, _l("medical outcome")))
                if not value]
            if missing:
                raise DomainError(_l("Emergency medical: record first the %(f)s.",
                                     f="、".join(str(m) for m in missing)), "medical_option")
            first, second = self.carer_ids()
            if first is None or second is None or first == second:
                raise DomainError(_l("Carers never stay alone with the patient: name two different carers."),
                                  "carer_2")
        if self.category == "paid":
            if not self.price:
                raise DomainError(_l("A paid service is priced before it is completed."), "price")
            if self.charged_at is None:
                raise DomainError(_l("Record the charge before closing a paid service."), "price")
        if self.category in SUB_KINDS and self.sub_kind not in SUB_KINDS[self.category]:
            raise DomainError(_l("Choose the kind of crime/accident or disaster."), "sub_kind")


def active_supervisors(session: Session) -> list[Staff]:
    return list(session.scalars(sa.select(Staff).join(StaffRole).where(
        StaffRole.role == "cs_supervisor", Staff.active.is_(True)).order_by(Staff.id)))


def _alert(session: Session, request: HelpRequest) -> None:
    """HLP-2: a special request alerts every active supervisor at once; in-app now, by email
    after the commit (workflow.notify), and never twice (``supervisor_alerted_at``)."""
    from views.templating import localtime
    from workflow.notify import notify

    request.supervisor_alerted_at = utcnow()
    where = str(request.unit.code) if request.unit is not None else ""
    kind = str(ALL_SUB_KINDS.get(request.sub_kind or "", ""))
    for staff in active_supervisors(session):
        with force_locale(staff.locale or "zh_Hans_CN"):
            notify(staff, _("Special help request: %(c)s %(k)s %(u)s", c=request.category_label, k=kind, u=where),
                   _("Received %(t)s from %(who)s: %(d)s", t=localtime(request.received_at or utcnow()),
                     who=request.caller, d=(request.description or "")[:300]))


@event.listens_for(Session, "before_flush")
def _alert_special(session: Session, flush_context: Any, instances: Any) -> None:
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, HelpRequest) and obj.category in SPECIAL and obj.supervisor_alerted_at is None \
                and obj.deleted_at is None:
            with session.no_autoflush:
                _alert(session, obj)


def _link_complaint() -> None:
    """``HelpRequest.complaint``: the complaint made from it (HLP-3), linked by
    Complaint.help_request_id, never copied. Absent until models.complaints defines Complaint."""
    try:
        from models.complaints import Complaint
    except ImportError:
        return
    HelpRequest.complaint = relationship(
        Complaint, primaryjoin=HelpRequest.id == sa.orm.foreign(Complaint.help_request_id),
        viewonly=True, uselist=False)


_link_complaint()

from models.repairs import RepairOrder  # noqa: E402  (second table of this regulation)

__all__ = ["CATEGORIES", "SPECIAL", "HelpRequest", "RepairOrder"]
