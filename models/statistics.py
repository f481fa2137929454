"""Complaint and service statistics (CMP-7, VIS-5): pure queries returning dataclasses.

A period is a run of local days (the site's zone, Asia/Shanghai): a week ends on Saturday
(CMP-7 "statistics every Saturday"), a month is a calendar month; its bounds are the local
midnights, so Saturday 23:59 belongs to the week and Sunday 00:00 to the next one.

What counts: a complaint once — a duplicate (CMP-6, ``duplicate_of_id`` set) is folded into the
complaint it repeats — and never when soft-deleted. Counts go by when a complaint was received;
the follow-up rate by when it was handled (VIS-1: visits follow handling); repair satisfaction by
when the order was completed. On-time rates come from the deadline clocks (``models.deadline``) of
the same records.
The VIS-5 targets are settings an admin may tune (percent), shipped with the regulation's values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l

from models.base import db, utcnow
from models.deadline import DeadlineClock, Rate
from models.repairs import SATISFACTION_TARGET
from models.visit_stats import FOLLOW_UP_TARGET, PROCESSING_TARGET
from workflow import settings
from workflow.calendar import app_zone, local_today

WEEK, MONTH = "week", "month"
KINDS = (WEEK, MONTH)
SATURDAY = 5  # date.weekday()

_GROUP = _l("Statistics")
# Defaults: the visit and repair modules' VIS-5 constants, as whole percentages.
TARGET_FOLLOW_UP = settings.declare(settings.SettingSpec(
    "statistics.target_follow_up_percent", _l("Target: complaint follow-up rate (%)"), "integer",
    round(FOLLOW_UP_TARGET * 100), minimum=0, maximum=100, group=_GROUP))
TARGET_PROCESSING = settings.declare(settings.SettingSpec(
    "statistics.target_follow_up_processing_percent", _l("Target: follow-up processing rate (%)"), "integer",
    round(PROCESSING_TARGET * 100), minimum=0, maximum=100, group=_GROUP))
TARGET_SATISFACTION = settings.declare(settings.SettingSpec(
    "statistics.target_repair_satisfaction_percent", _l("Target: repair satisfaction (%)"), "integer",
    round(SATISFACTION_TARGET * 100), minimum=0, maximum=100, group=_GROUP))


@dataclass(frozen=True)
class Period:
    """Local days ``first`` .. ``last`` inclusive."""

    kind: str
    first: date
    last: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time.min, tzinfo=app_zone()).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """Exclusive: the local midnight after the last day."""
        return datetime.combine(self.last + timedelta(days=1), time.min, tzinfo=app_zone()).astimezone(UTC)

    def previous(self) -> Period:
        return period_of(self.kind, self.first - timedelta(days=1))

    def next(self) -> Period:
        return period_of(self.kind, self.last + timedelta(days=1))


def week_of(day: date) -> Period:
    """The Sunday-to-Saturday week holding ``day``."""
    last = day + timedelta(days=(SATURDAY - day.weekday()) % 7)
    return Period(WEEK, last - timedelta(days=6), last)


def month_of(day: date) -> Period:
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return Period(MONTH, first, following - timedelta(days=1))


def period_of(kind: str, day: date) -> Period:
    return month_of(day) if kind == MONTH else week_of(day)


def last_week(now: datetime | None = None) -> Period:
    """The week ending on the latest Saturday up to today: on a Saturday, this week (CMP-7)."""
    today = local_today(now)
    return week_of(today - timedelta(days=(today.weekday() - SATURDAY) % 7))


@dataclass
class Count:
    key: Any
    n: int


@dataclass
class Ratio:
    """done / total against a target percentage (VIS-5); no data is neither red nor green."""

    key: str
    done: int
    total: int
    target: int

    @property
    def rate(self) -> float | None:
        return self.done / self.total if self.total else None

    @property
    def meets_target(self) -> bool | None:
        return None if self.rate is None else self.rate * 100 >= self.target


@dataclass
class OnTime:
    """One time limit: met in the period (on time or late) and passed in it without being met."""

    record_type: str
    name: str
    met: int
    on_time: int
    open_overdue: int

    @property
    def rate(self) -> float | None:
        judged = self.met + self.open_overdue
        return self.on_time / judged if judged else None

    def as_rate(self) -> Rate:
        return Rate(self.record_type, self.name, self.met, self.on_time)


@dataclass
class Report:
    period: Period
    complaints: int
    duplicates: int
    by_severity: list[Count]
    by_department: list[Count]  # key: department id or None
    by_category: list[Count]
    by_validity: list[Count]
    help_by_category: list[Count]
    on_time: list[OnTime]
    targets: list[Ratio] = field(default_factory=list)


# --- the queries ---------------------------------------------------------------------------------
def _complaint_base(start: datetime, end: datetime, column: Any) -> list[Any]:
    """Counted complaints (not deleted, duplicates once: ``Complaint.counted``) in [start, end)."""
    from models.complaints import Complaint

    return [*Complaint.counted(), column >= start, column < end]


def _counts(column: Any, where: Iterable[Any], order: Iterable[Any] = ()) -> list[Count]:
    rows = db.session.execute(sa.select(column, sa.func.count()).where(*where).group_by(column)).all()
    known = list(order)
    rank = {k: i for i, k in enumerate(known)}
    rows.sort(key=lambda r: (rank.get(r[0], len(known)), -r[1], str(r[0])))
    return [Count(k, int(n)) for k, n in rows]


def complaint_counts(period: Period) -> dict[str, list[Count]]:
    """Complaints received in the period by severity, department, category and validity."""
    from models import complaint_rules as rules
    from models.complaints import Complaint as c

    where = _complaint_base(period.start, period.end, c.received_at)
    return {
        "by_severity": _counts(c.severity, where, ("major", "important", "minor", None)),
        "by_department": _counts(c.department_id, where),
        "by_category": _counts(c.category, where, rules.CATEGORIES),
        "by_validity": _counts(c.validity, where, ("valid", "invalid", None)),
    }


def complaint_categories(period: Period) -> list[Count]:
    """Complaints received in the period by category alone (the home page's trend: one query)."""
    from models import complaint_rules as rules
    from models.complaints import Complaint as c

    return _counts(c.category, _complaint_base(period.start, period.end, c.received_at), rules.CATEGORIES)


def duplicate_count(period: Period) -> int:
    from models.complaints import Complaint as C

    return db.session.scalar(sa.select(sa.func.count()).select_from(C).where(
        C.deleted_at.is_(None), C.duplicate_of_id.is_not(None), C.received_at >= period.start,
        C.received_at < period.end)) or 0


def help_counts(period: Period) -> list[Count]:
    from models import help_requests as hm

    h = hm.HelpRequest
    return _counts(h.category, [h.deleted_at.is_(None), h.received_at >= period.start, h.received_at < period.end],
                   hm.CATEGORIES)


def _live_models() -> dict[str, tuple[Any, list[Any]]]:
    """Per reported record type: its model and what makes a record count (not deleted; CMP-6)."""
    from models.complaints import Complaint
    from models.help_requests import HelpRequest, RepairOrder
    from models.visits import Visit

    return {"complaint": (Complaint, Complaint.counted()),
            **{m.__tablename__: (m, [m.deleted_at.is_(None)]) for m in (HelpRequest, RepairOrder, Visit)}}


def on_time(period: Period, now: datetime | None = None) -> list[OnTime]:
    """Per time limit of the §5/§6 records: clocks met in the period (on time: met at or before due,
    as ``models.deadline.on_time_rates`` counts) and clocks that fell due in it and are still open.
    Clocks of deleted records and of duplicates (CMP-6) are left out, like the records."""
    c = DeadlineClock
    cap = min(period.end, now or utcnow())
    met = sa.and_(c.met_at >= period.start, c.met_at < period.end)
    due = sa.and_(c.is_open == sa.true(), c.due_at >= period.start, c.due_at < cap)
    out = []
    for record_type, (model, live) in _live_models().items():
        rows = db.session.execute(
            sa.select(c.name, sa.func.sum(sa.case((met, 1), else_=0)),
                      sa.func.sum(sa.case((sa.and_(met, c.met_at <= c.due_at), 1), else_=0)),
                      sa.func.sum(sa.case((due, 1), else_=0)))
            .join(model, model.id == c.record_id)
            .where(c.record_type == record_type, sa.or_(met, due), *live)
            .group_by(c.name).order_by(c.name)).all()
        out += [OnTime(record_type, name, int(m or 0), int(ok or 0), int(late or 0)) for name, m, ok, late in rows]
    return out


def follow_up_rate(period: Period) -> Ratio:
    """VIS-1/VIS-5: complaints handled in the period that have a completed follow-up visit."""
    from models.visit_stats import complaint_follow_up_rate

    r = complaint_follow_up_rate(period.start, period.end)
    return Ratio("follow_up", r.done, r.total, settings.value(TARGET_FOLLOW_UP.key))


def follow_up_processing_rate(period: Period) -> Ratio:
    """VIS-4/VIS-5: issues raised in the period's visits that a further visit has since resolved."""
    from models.visit_stats import follow_up_processing_rate as processing

    r = processing(period.start, period.end)
    return Ratio("follow_up_processing", r.done, r.total, settings.value(TARGET_PROCESSING.key))


def repair_satisfaction(period: Period) -> Ratio:
    """VIS-5: repair orders completed in the period and rated: the satisfied share."""
    from models.repairs import repair_satisfaction as rated

    happy, total = rated(period.start, period.end)
    return Ratio("repair_satisfaction", happy, total, settings.value(TARGET_SATISFACTION.key))


def report(period: Period, now: datetime | None = None) -> Report:
    counts = complaint_counts(period)
    return Report(
        period=period,
        complaints=sum(c.n for c in counts["by_severity"]),
        duplicates=duplicate_count(period),
        help_by_category=help_counts(period),
        on_time=on_time(period, now),
        targets=[follow_up_rate(period), follow_up_processing_rate(period), repair_satisfaction(period)],
        **counts,
    )
