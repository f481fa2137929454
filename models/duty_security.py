"""Duty desk, part three: the security desk's visitor and vehicle log (DTY-8) and the
administrator's patrols, whose findings become work orders (DTY-9)."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Timestamped, UTCDateTime, db, utcnow
from models.duty import FRONT_DESK, SHANGHAI
from models.help_requests import HelpRequest
from models.registry import Unit
from models.staff import Staff
from models.validators import DomainError
from models.workflow import Tracked
from security.crypto import EncryptedString
from workflow.engine import Firing, T, Workflow

VISITOR_ROLES = FRONT_DESK | {"security"}
PATROL_ROLES = frozenset({"management_dept", "manager", "cs_supervisor", "security"})
PATROLS_PER_DAY = 2


class VisitorLog(Timestamped, db.Model):
    """DTY-8: a visitor or an unfamiliar vehicle at the gate. The ID number is kept encrypted."""

    __tablename__ = "visitor_log"
    personal_label = True  # str() names a person (ACC-5: a related column shows personal data)
    derived_from = {"id_masked": ("id_shown",)}  # what properties shown on screens read
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), info={"personal": True})
    id_shown: Mapped[str | None] = mapped_column(EncryptedString(), info={"personal": True})
    host_unit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("unit.id"), index=True)
    host_unit: Mapped[Unit | None] = relationship()
    plate: Mapped[str | None] = mapped_column(sa.String(16))
    time_in: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    time_out: Mapped[datetime | None] = mapped_column(UTCDateTime())
    logged_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    logged_by: Mapped[Staff | None] = relationship()

    def __str__(self) -> str:
        return f"{self.name} {self.plate or ''}".strip()

    @property
    def id_masked(self) -> str:
        value = self.id_shown or ""
        return value[:3] + "*" * max(len(value) - 7, 0) + value[-4:] if len(value) > 7 else "*" * len(value)

    def check_visit(self) -> None:
        if not (self.name or "").strip():
            raise DomainError(_l("Write the visitor's name."), "name")
        if not (self.id_shown or "").strip():
            raise DomainError(_l("Record the ID document shown."), "id_shown")
        if self.host_unit is None and not (self.plate or "").strip():
            raise DomainError(_l("Give the unit visited or the vehicle's plate."), "host_unit")
        if self.time_out is not None and self.time_in is not None and self.time_out < self.time_in:
            raise DomainError(_l("The time out cannot be before the time in."), "time_out")


def _finding(patrol: PatrolRecord) -> object:
    return None if (patrol.findings or "").strip() else _l("Only a patrol with findings becomes a work order.")


def _to_work_order(patrol: PatrolRecord, firing: Firing) -> None:
    request = HelpRequest(category="repair", caller=firing.user.full_name if firing.user else "巡查",
                          description=f"[巡查 #{patrol.id} {patrol.area}] {patrol.findings}",
                          received_at=firing.at, state="received")
    db.session.add(request)
    patrol.help_request = request


class PatrolRecord(Tracked, db.Model):
    __tablename__ = "patrol_record"
    id: Mapped[int] = mapped_column(primary_key=True)
    patrolled_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    patroller_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    patroller: Mapped[Staff | None] = relationship(foreign_keys=[patroller_id])
    area: Mapped[str] = mapped_column(sa.String(100))
    findings: Mapped[str | None] = mapped_column(sa.Text)
    help_request_id: Mapped[int | None] = mapped_column(sa.ForeignKey("help_request.id", ondelete="SET NULL"))
    help_request: Mapped[HelpRequest | None] = relationship()

    workflow = Workflow(_l("Patrol"), {"recorded": _l("Recorded"), "converted": _l("Work order opened")},
                        "recorded", [
        T("to_work_order", "recorded", "converted", PATROL_ROLES | FRONT_DESK, label=_l("Open a work order"),
          guard=_finding, effect=_to_work_order),
    ])

    def __str__(self) -> str:
        return f"{self.area}"


def short_patrol_days(since: date, until: date) -> list[tuple[date, int]]:
    """DTY-9: days with fewer than two patrols (Beijing days), with the count."""
    start = datetime(since.year, since.month, since.day, tzinfo=SHANGHAI)
    end = datetime(until.year, until.month, until.day, tzinfo=SHANGHAI) + timedelta(days=1)
    seen = Counter(t.astimezone(SHANGHAI).date() for t in db.session.scalars(
        sa.select(PatrolRecord.patrolled_at).where(PatrolRecord.patrolled_at >= start,
                                                   PatrolRecord.patrolled_at < end,
                                                   PatrolRecord.deleted_at.is_(None))))
    days = [since + timedelta(days=i) for i in range((until - since).days + 1)]
    return [(d, seen[d]) for d in days if seen[d] < PATROLS_PER_DAY]
