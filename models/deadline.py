"""Deadline clocks (REGULATIONS §11): one row per declared time limit of one record.

A clock is derived data: the session hook in ``workflow.deadlines`` writes it in the same
transaction as the record change that starts, moves or meets it, and the sweep claims its
reminder, overdue notice and escalation with conditional UPDATEs. The trail keeps the record's
own rows (its transitions, the sweep's escalations), so clocks are not audited row by row.

``is_open`` leads the list indexes: after a few years nearly every clock is closed, and
"overdue" must read only the open ones. ``next_action_at`` is the sweep's work queue: the
soonest moment the sweep has something to do for the clock (remind, notify, escalate), NULL
when nothing is left, so a sweep over a million open clocks reads only the few that are due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import UTCDateTime, db

OPEN = sa.true()


class DeadlineClock(db.Model):
    __tablename__ = "deadline_clock"
    __audit__ = False  # derived from the record and the declaration; the record's rows are the trail
    __table_args__ = (
        sa.UniqueConstraint("record_type", "record_id", "name"),
        sa.Index("ix_deadline_clock_open_due", "is_open", "due_at"),
        sa.Index("ix_deadline_clock_department_open_due", "department_id", "is_open", "due_at"),
        sa.Index("ix_deadline_clock_responsible_open_due", "responsible_id", "is_open", "due_at"),
        sa.Index("ix_deadline_clock_unit_open", "unit", "is_open", "id"),  # recomputation, in id order
        sa.Index("ix_deadline_clock_next_action", "next_action_at", "id"),  # the sweep's queue, in order
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    record_type: Mapped[str] = mapped_column(sa.String(64))
    record_id: Mapped[int] = mapped_column(sa.BigInteger)
    name: Mapped[str] = mapped_column(sa.String(64))
    unit: Mapped[str] = mapped_column(sa.String(16))
    amount: Mapped[int] = mapped_column(sa.Integer)  # the setting's value when the clock started
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_action_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # NULL whenever closed
    is_open: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    met_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # closed or deleted unmet
    breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    overdue_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When due_at was last computed; NULL: provisional (the year's working calendar was unknown).
    computed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    site_id: Mapped[int | None] = mapped_column(sa.Integer)
    department_id: Mapped[int | None] = mapped_column(sa.ForeignKey("department.id", ondelete="SET NULL"))
    responsible_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))

    @property
    def on_time(self) -> bool | None:
        return None if self.met_at is None else self.met_at <= self.due_at


class DeadlineCalendarMark(db.Model):
    """The working calendar's version the open working-day clocks were last computed against.

    One row (id 1). The sweep compares it with the calendar's current version (row counts catch a
    removed override, the newest ``updated_at`` an added or edited one) and recomputes on change.
    """

    __tablename__ = "deadline_calendar_mark"
    __audit__ = False
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(sa.String(200))
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- indexed queries (the overdue screen, statistics) ---------------------------------------------
def overdue(now: datetime, *, department_id: int | None = None, responsible_id: int | None = None,
            no_department: bool = False, limit: int = 200) -> sa.Select:
    """Open clocks past due, soonest first; by department or responsible person (each indexed)."""
    c = DeadlineClock
    query = sa.select(c).where(c.is_open == OPEN, c.due_at <= now)
    if department_id is not None or no_department:
        query = query.where(c.department_id == department_id if department_id is not None
                            else c.department_id.is_(None))
    if responsible_id is not None:
        query = query.where(c.responsible_id == responsible_id)
    return query.order_by(c.due_at, c.id).limit(limit)


def overdue_counts(now: datetime, department_ids: list[int | None] | None = None) -> dict[int | None, int]:
    """Overdue clocks per department (None: no department), from the (is_open, due_at) index."""
    c = DeadlineClock
    query = sa.select(c.department_id, sa.func.count()).where(c.is_open == OPEN, c.due_at <= now)
    if department_ids is not None:
        query = query.where(c.department_id.in_([d for d in department_ids if d is not None]))
    rows = db.session.execute(query.group_by(c.department_id)).all()
    return {dept: n for dept, n in rows}


@dataclass
class Rate:
    record_type: str
    name: str
    met: int
    on_time: int

    @property
    def rate(self) -> float | None:
        return self.on_time / self.met if self.met else None


def on_time_rates(since: datetime, *, department_id: int | None = None) -> list[Rate]:
    """Per rule: clocks met since ``since`` and how many of them on time (met at or before due)."""
    c = DeadlineClock
    on_time = sa.func.sum(sa.case((c.met_at <= c.due_at, 1), else_=0))
    # SQLite without statistics would rather scan the table for the GROUP BY than range the index.
    query = sa.select(c.record_type, c.name, sa.func.count(), on_time).where(c.met_at >= since) \
        .with_hint(c, "INDEXED BY ix_deadline_clock_met_at", dialect_name="sqlite")
    if department_id is not None:
        query = query.where(c.department_id == department_id)
    rows = db.session.execute(query.group_by(c.record_type, c.name).order_by(c.record_type, c.name)).all()
    return [Rate(t, n, int(met), int(ok or 0)) for t, n, met, ok in rows]
