"""REN-11: the management department's daily patrol of every renovation site under works (每天巡检).

One row per site and calendar day (weekends and holidays included), made by the sweep's daily pass
(``open_patrol_days``, idempotent: a unique key per site and day). Each row is a workflow record with
one clock, due at the end of its day, so the shared layer does the rest: the row is in the management
department's 待办 during the day; a day that ends unpatrolled is an overdue item and the sweep tells
the department head once. A site recorded as idle that day owes no patrol.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models import renovation_rules as r
from models.base import UTCDateTime, db
from models.renovation_parts import RenovationInspection
from models.workflow import Tracked, sparse_index
from workflow.deadlines import Deadline
from workflow.engine import Firing, T, Workflow

PATROLLERS = frozenset({"management_dept"})
SITE = "renovation.unit.building.estate_id"


def _today() -> date:
    from workflow.calendar import local_today

    return local_today()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The local day as stored UTC moments: its first instant and its last."""
    from workflow.calendar import app_zone

    zone = app_zone()
    return (
        datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC),
        datetime.combine(day, time.max, tzinfo=zone).astimezone(UTC),
    )


def _on_the_day(rec: RenovationPatrolDay) -> Any:
    if rec.day < _today():
        return _l("This day is over: record why its patrol was missed.")
    if rec.day > _today():
        return _l("This day has not come yet.")
    return None


def _not_before_the_day(rec: RenovationPatrolDay) -> Any:
    return _l("This day is over: record why its patrol was missed.") if rec.day < _today() else None


def _day_over(rec: RenovationPatrolDay) -> Any:
    return None if rec.day < _today() else _l("The day is not over yet: record the patrol instead.")


def _on_patrol(rec: RenovationPatrolDay, firing: Firing) -> None:
    """The patrol also goes into the renovation's inspection log (《装修巡检记录表》)."""
    rec.patrolled_at, rec.patrolled_by = firing.at, firing.user
    dept = getattr(getattr(firing.user, "department", None), "key", None)
    rec.renovation.inspections.append(
        RenovationInspection(
            kind="patrol",
            result="ok",
            findings=rec.findings or "",
            at=firing.at,
            inspector=firing.user,
            department=dept,
        )
    )


class RenovationPatrolDay(Tracked, db.Model):
    """One site's patrol duty for one calendar day (REN-11)."""

    __tablename__ = "renovation_patrol_day"
    __table_args__ = (
        sa.UniqueConstraint("renovation_id", "day"),
        sparse_index("renovation_patrol_day", "deleted_at"),
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    renovation_id: Mapped[int] = mapped_column(sa.ForeignKey("renovation.id", ondelete="CASCADE"), index=True)
    renovation = relationship("Renovation")
    day: Mapped[date] = mapped_column(sa.Date, index=True)
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the day's first instant (clock start)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime())  # its last: the patrol is due by then
    findings: Mapped[str | None] = mapped_column(sa.Text)
    idle_reason: Mapped[str | None] = mapped_column(sa.String(500))
    patrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    patrolled_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    patrolled_by = relationship("Staff", foreign_keys=[patrolled_by_id])

    workflow = Workflow(
        _l("Daily renovation patrol"),
        {
            "due": _l("Patrol due"),
            "patrolled": _l("Patrolled"),
            "idle": _l("Site idle that day"),
            "missed": _l("Missed, reason recorded"),
        },
        "due",
        [
            # The day checks read no typed field, so they go in ``who`` (checked always): 待办 offers the
            # patrol only on its day, and the missed-day explanation only after it.
            T(
                "record_patrol",
                "due",
                "patrolled",
                PATROLLERS,
                label=_l("Record the daily patrol"),
                requires=["findings"],
                who=lambda rec, user: _on_the_day(rec),
                effect=_on_patrol,
            ),
            T(
                "record_idle",
                "due",
                "idle",
                PATROLLERS | r.FRONT_DESK,
                label=_l("Site idle that day"),
                requires=["idle_reason"],
                who=lambda rec, user: _not_before_the_day(rec),
                todo=False,
            ),
            T(
                "explain_missed",
                "due",
                "missed",
                PATROLLERS,
                label=_l("Record why the patrol was missed"),
                comment_required=True,
                guard=_day_over,
            ),
        ],
        preload=("renovation.unit",),
        deadlines=[
            Deadline(
                "patrol",
                _l("Daily patrol of a renovation site"),
                start="opens_at",
                amount=1,
                unit="days",
                until="closes_at",
                met_by={"patrolled"},
                site=SITE,
                department="management",
            ),
        ],
    )

    field_labels = {"findings": _l("Patrol findings"), "idle_reason": _l("Why the site is idle that day")}

    def __str__(self) -> str:
        ren = self.renovation
        where = f"{ren.number} {ren.unit.code if ren.unit else ''}".strip() if ren else ""
        return f"{where} · {self.day.isoformat()}"


def open_patrol_days(now: datetime) -> int:
    """The sweep's daily pass: today's patrol row for every site under works (works begun, not
    deleted) that has none yet. Safe to repeat and to run concurrently (the unique key decides)."""
    from models.renovation import Renovation
    from workflow.calendar import local_today

    today = local_today(now)
    have = sa.select(RenovationPatrolDay.renovation_id).where(RenovationPatrolDay.day == today)
    sites = list(
        db.session.scalars(
            sa.select(Renovation)
            .where(
                Renovation.state.in_(r.WORKS),
                Renovation.deleted_at.is_(None),
                Renovation.planned_start <= today,
                Renovation.id.not_in(have),
            )
            .options(sa.orm.joinedload(Renovation.unit))
            .order_by(Renovation.id)
        )
    )
    made = 0
    for ren in sites:
        try:
            with db.session.begin_nested():
                db.session.add(new_patrol_day(ren, today))
            made += 1
        except sa.exc.IntegrityError:
            continue  # another sweep made it first
    db.session.commit()
    return made


def new_patrol_day(ren: Any, day: date) -> RenovationPatrolDay:
    opens, closes = day_bounds(day)
    return RenovationPatrolDay(renovation=ren, day=day, opens_at=opens, closes_at=closes)


def _register() -> None:
    from workflow.sweep import register_daily

    register_daily("renovation_patrol_days", open_patrol_days)


_register()
