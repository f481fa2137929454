"""Duty desk, part two: the handover between shifts (DTY-4) and the supervisor's daily sign-off of
the log (DTY-6)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import UTCDateTime, db, utcnow
from models.duty import DESK, DESK_ITEMS, SHANGHAI, SUPERVISOR, DutyFollowUp, DutyLog
from models.help_requests import SPECIAL, HelpRequest
from models.staff import Staff
from models.validators import DomainError
from models.workflow import Tracked
from workflow.engine import STAY, Firing, T, Workflow


def counted(handover: DutyHandover) -> set[str]:
    return {k.strip() for k in (handover.items_counted or "").split(",") if k.strip()}


def open_important_work(handover: DutyHandover) -> list[Any]:
    """DTY-4: the outgoing shift's own unfinished important work — its important entries of this desk
    not yet resolved or converted, and the special help requests (medical, crime, disaster) it
    received that are still open. Work that belongs to nobody on the shift is not listed."""
    outgoing = handover.outgoing_id
    follow = list(db.session.scalars(sa.select(DutyFollowUp).join(DutyFollowUp.log).where(
        DutyFollowUp.state == "open", sa.or_(DutyLog.important.is_(True), DutyLog.kind == "emergency"),
        DutyLog.desk == handover.desk,
        DutyLog.author_id == outgoing).order_by(DutyLog.created_at, DutyFollowUp.id)))
    special = list(db.session.scalars(sa.select(HelpRequest).where(
        HelpRequest.category.in_(SPECIAL), HelpRequest.closed_at.is_(None), HelpRequest.deleted_at.is_(None),
        HelpRequest.state.in_(("received", "referred", "replied")),
        HelpRequest.created_by_id == outgoing).order_by(HelpRequest.received_at, HelpRequest.id)))
    return follow + special


def _key(work: Any) -> tuple[str, int]:
    return ("follow_up", work.id) if isinstance(work, DutyFollowUp) else ("help_request", work.id)


def not_acknowledged(handover: DutyHandover) -> list[Any]:
    """The outgoing shift's open important work not yet handed over by name and acknowledged."""
    done = {item.key for item in handover.items if item.acknowledged_at is not None}
    return [w for w in open_important_work(handover) if _key(w) not in done]


def _may_list(handover: DutyHandover, user: Staff) -> object:
    if user.id != handover.outgoing_id:
        return _l("Only the person going off duty hands over their open work.")
    if handover.handed_to_id is None:
        return _l("Name the person coming on duty first (edit the handover).")
    if handover.handed_to_id == handover.outgoing_id:
        return _l("Hand-over and take-over need two different people.")
    listed = {item.key for item in handover.items}
    if all(_key(w) in listed for w in open_important_work(handover)):
        return _l("No open important work of yours is left to hand over.")
    return None


def _list_work(handover: DutyHandover, firing: Firing) -> None:
    """DTY-4: each piece of the outgoing shift's open important work, handed over by name."""
    listed = {item.key for item in handover.items}
    for work in open_important_work(handover):
        kind, ident = _key(work)
        if (kind, ident) in listed:
            continue
        handover.items.append(DutyHandoverItem(
            follow_up_id=ident if kind == "follow_up" else None,
            help_request_id=ident if kind == "help_request" else None,
            description=str(work.log.body if kind == "follow_up" else work.description)[:300],
            to_staff_id=handover.handed_to_id))


def acknowledge(item: DutyHandoverItem, user: Staff | None) -> None:
    """DTY-4: the incoming person named on the item acknowledges it (added, not committed)."""
    if user is None or user.id != item.to_staff_id:
        raise DomainError(_l("Only the person it was handed over to acknowledges it."))
    if item.handover.state != "counting":
        raise DomainError(_l("The handover is already taken over."))
    if item.acknowledged_at is not None:
        raise DomainError(_l("Already acknowledged."))
    item.acknowledged_at, item.acknowledged_by_id = utcnow(), user.id


def _may_take_over(handover: DutyHandover, user: Staff) -> object:
    if user.id == handover.outgoing_id:
        return _l("The incoming person takes over, not the one handing over.")
    if handover.handed_to_id is not None and user.id != handover.handed_to_id:
        return _l("The handover names another person coming on duty.")
    if not handover.read_previous_log:
        return _l("Read the previous shift's log first.")
    unknown = counted(handover) - set(DESK_ITEMS)
    if unknown:
        return _l("Unknown desk item: %(i)s", i=", ".join(sorted(unknown)))
    if set(DESK_ITEMS) - counted(handover) and not (handover.missing_items or "").strip():
        return _l("Some desk items were not counted: record what is missing.")
    if any(item.to_staff_id != user.id for item in handover.items if item.acknowledged_at is None):
        return _l("Acknowledge each item handed over to you first.")
    if not_acknowledged(handover):
        return _l("The outgoing shift left important work open: resolve it, or hand it over by name and "
                  "let the incoming person acknowledge each item (DTY-4).")
    return None


def _take_over(handover: DutyHandover, firing: Firing) -> None:
    handover.incoming_id, handover.taken_at = firing.user.id, firing.at


def _may_hand_over(handover: DutyHandover, user: Staff) -> object:
    if user.id != handover.outgoing_id:
        return _l("Only the person going off duty signs the hand-over.")
    if user.id == handover.incoming_id:
        return _l("Hand-over and take-over need two different people.")
    return None


def _hand_over(handover: DutyHandover, firing: Firing) -> None:
    handover.handed_at = firing.at


class DutyHandover(Tracked, db.Model):
    """DTY-4: both sign with their password — the incoming takes over, then the outgoing hands over."""

    __tablename__ = "duty_handover"
    id: Mapped[int] = mapped_column(primary_key=True)
    desk: Mapped[str] = mapped_column(sa.String(32), default="main")
    outgoing_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    outgoing: Mapped[Staff] = relationship(foreign_keys=[outgoing_id])
    incoming_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    incoming: Mapped[Staff | None] = relationship(foreign_keys=[incoming_id])
    handed_to_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))  # DTY-4: named incoming person
    handed_to: Mapped[Staff | None] = relationship(foreign_keys=[handed_to_id])
    items_counted: Mapped[str | None] = mapped_column(sa.String(300))  # comma-separated DESK_ITEMS keys
    missing_items: Mapped[str | None] = mapped_column(sa.String(500))
    anomalies: Mapped[str | None] = mapped_column(sa.String(500))
    read_previous_log: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    handed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    items: Mapped[list[DutyHandoverItem]] = relationship(back_populates="handover", cascade="all, delete-orphan",
                                                         order_by="DutyHandoverItem.id")

    workflow = Workflow(_l("Duty handover"), {
        "counting": _l("Counting the desk items"), "taken": _l("Taken over"), "done": _l("Handed over"),
    }, "counting", [
        T("list_open_work", "counting", STAY, DESK, label=_l("Hand over my open work by name"),
          guard=_may_list, effect=_list_work, todo=False),
        T("take_over", "counting", "taken", DESK, label=_l("Take over"), password=True, guard=_may_take_over,
          effect=_take_over, todo=False),
        T("hand_over", "taken", "done", DESK, label=_l("Hand over"), password=True, guard=_may_hand_over,
          effect=_hand_over),
    ])

    field_labels = {"items_counted": _l("Desk items counted"), "missing_items": _l("Missing items")}

    def __str__(self) -> str:
        return f"{self.desk} {self.outgoing.full_name if self.outgoing else ''}"


class DutyHandoverItem(db.Model):
    """DTY-4: one piece of the outgoing shift's open important work, handed over by name to the incoming
    person, who acknowledges it. The work itself (follow-up or help request) stays open and linked."""

    __tablename__ = "duty_handover_item"
    id: Mapped[int] = mapped_column(primary_key=True)
    handover_id: Mapped[int] = mapped_column(sa.ForeignKey("duty_handover.id", ondelete="CASCADE"), index=True)
    handover: Mapped[DutyHandover] = relationship(back_populates="items")
    follow_up_id: Mapped[int | None] = mapped_column(sa.ForeignKey("duty_followup.id", ondelete="SET NULL"))
    help_request_id: Mapped[int | None] = mapped_column(sa.ForeignKey("help_request.id", ondelete="SET NULL"))
    description: Mapped[str] = mapped_column(sa.String(300))
    to_staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    to_staff: Mapped[Staff] = relationship(foreign_keys=[to_staff_id])
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))

    @property
    def key(self) -> tuple[str, int | None]:
        return ("follow_up", self.follow_up_id) if self.follow_up_id is not None else \
            ("help_request", self.help_request_id)

    def __str__(self) -> str:
        return self.description


class DutyDaySignoff(db.Model):
    """DTY-6: the supervisor checked and signed one desk's log of one day."""

    __tablename__ = "duty_day_signoff"
    __table_args__ = (sa.UniqueConstraint("desk", "day"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    desk: Mapped[str] = mapped_column(sa.String(32), default="main")
    day: Mapped[date] = mapped_column(sa.Date, index=True)
    entries: Mapped[int] = mapped_column(sa.Integer, default=0)
    signed_by_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    signed_by: Mapped[Staff] = relationship()
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def __str__(self) -> str:
        return f"{self.desk} {self.day}"


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)
    return start, start + timedelta(days=1)


def sign_days(user: Staff, days: list[date], desk: str = "main") -> list[DutyDaySignoff]:
    """DTY-6 bulk sign-off: one row per day not yet signed; only past or current days."""
    if user is None or not user.roles & (SUPERVISOR | {"manager"}):
        raise DomainError(_l("Only the customer-service supervisor signs the duty log."))
    today = utcnow().astimezone(SHANGHAI).date()
    if any(d > today for d in days):
        raise DomainError(_l("A day that has not come cannot be signed."))
    done = set(db.session.scalars(sa.select(DutyDaySignoff.day).where(
        DutyDaySignoff.desk == desk, DutyDaySignoff.day.in_(days))))
    rows = []
    for day in sorted(set(days) - done):
        start, end = _day_bounds(day)
        count = db.session.scalar(sa.select(sa.func.count()).select_from(DutyLog).where(
            DutyLog.desk == desk, DutyLog.created_at >= start, DutyLog.created_at < end)) or 0
        rows.append(DutyDaySignoff(desk=desk, day=day, entries=count, signed_by_id=user.id, signed_at=utcnow()))
    db.session.add_all(rows)
    return rows


def unsigned_days(since: date, until: date, desk: str = "main") -> list[date]:
    signed = set(db.session.scalars(sa.select(DutyDaySignoff.day).where(
        DutyDaySignoff.desk == desk, DutyDaySignoff.day.between(since, until))))
    return [since + timedelta(days=i) for i in range((until - since).days + 1)
            if since + timedelta(days=i) not in signed]
