"""What the resident archive files besides documents (REGULATIONS §3): important events reviewed by
the manager (ARC-9), rental/commercial registrations (ARC-10), arrears follow-ups (ARC-7) and the
quality checks of ARC-8: one full check per estate, then a six-monthly random sample."""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.archives import CUSTOMER_SERVICE, Archive
from models.base import Timestamped, UTCDateTime, db, utcnow
from models.registry import Building, Estate, Occupancy, Unit
from models.staff import Staff
from models.workflow import Tracked
from workflow.engine import STAY, Firing, Step, T, Workflow
from workflow.settings import SettingSpec, declare

FOLLOW_UP_DAYS = declare(SettingSpec(
    "archive.arrears.follow_up_days", _l("Arrears over one month: follow up at least every (days)"),
    "days", 15, 1, 90, _l("Resident archives")))
FOLLOW_UP_DAYS_QUARTER = declare(SettingSpec(
    "archive.arrears.follow_up_days_quarter", _l("Arrears over one quarter: follow up at least every (days)"),
    "days", 7, 1, 90, _l("Resident archives")))
SAMPLE_PERCENT = declare(SettingSpec(
    "archive.spot_check.percent", _l("Spot check sample in percent of archives (at least 5)"), "integer",
    5, 5, 100,
    _l("Resident archives")))

EVENT_KINDS = {"major_complaint": _l("Major complaint"), "major_accident": _l("Major accident"),
               "legal": _l("Legal exposure"), "quality": _l("Major building-quality problem"),
               "contract": _l("Important contract with the owner")}


def _hold_if_legal(event: ArchiveEvent, firing: Firing) -> None:
    """ARC-9: an event with legal exposure is filed under legal hold."""
    event.filed_at = firing.at
    if event.kind == "legal":
        from workflow.retention import place_hold

        db.session.flush()
        place_hold("archive_event", event.id, f"ARC-9 {event.title}"[:200], firing.approved_by or firing.user)


class ArchiveEvent(Tracked, db.Model):
    """重要事件: filed into the archive only after the manager's review (ARC-9)."""

    __tablename__ = "archive_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    archive_id: Mapped[int] = mapped_column(sa.ForeignKey("archive.id"), index=True)
    archive: Mapped[Archive] = relationship()
    kind: Mapped[str] = mapped_column(sa.String(24))
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str | None] = mapped_column(sa.Text)
    occurred_on: Mapped[date] = mapped_column(sa.Date)
    filed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    workflow = Workflow(_l("Important event"), {"draft": _l("Awaiting review"), "filed": _l("Filed")}, "draft", [
        T("file", "draft", "filed", CUSTOMER_SERVICE, label=_l("File after the manager's review"),
          effect=_hold_if_legal,
          approvals=[Step(_l("Manager reviews the event"), frozenset({"manager"}), allow_self=True)]),
    ])

    def __str__(self) -> str:
        return self.title

    def check_event(self) -> None:
        from models.validators import DomainError

        if self.kind not in EVENT_KINDS:
            raise DomainError(_l("Choose the kind of event."), "kind")


class RentalRegistration(Timestamped, db.Model):
    """《租户/商住情况登记表》 (ARC-10): who rents or uses the unit commercially, for what, how long."""

    __tablename__ = "archive_rental"
    personal_label = True  # str() names a person (ACC-5: a related column shows personal data)
    id: Mapped[int] = mapped_column(primary_key=True)
    archive_id: Mapped[int] = mapped_column(sa.ForeignKey("archive.id"), index=True)
    archive: Mapped[Archive] = relationship()
    kind: Mapped[str] = mapped_column(sa.String(16), default="rental")
    tenant_name: Mapped[str] = mapped_column(sa.String(64), info={"personal": True})
    company: Mapped[str | None] = mapped_column(sa.String(120))
    use: Mapped[str] = mapped_column(sa.String(120))
    lease_from: Mapped[date] = mapped_column(sa.Date)
    lease_to: Mapped[date] = mapped_column(sa.Date)
    contact: Mapped[str | None] = mapped_column(sa.String(64), info={"personal": True})

    def __str__(self) -> str:
        return f"{self.tenant_name} {self.use}"

    def check_registration(self) -> None:
        from models.validators import DomainError

        if self.kind not in ("rental", "commercial"):
            raise DomainError(_l("Choose rental or commercial use."), "kind")
        if self.lease_from and self.lease_to and self.lease_to < self.lease_from:
            raise DomainError(_l("The lease cannot end before it starts."), "lease_to")


def follow_up_interval(owed_since: date, today: date) -> int:
    """ARC-7: every 15 days past one month, every 7 past one quarter (both settings)."""
    from workflow import settings

    if (today - owed_since).days > 90:
        return int(settings.value(FOLLOW_UP_DAYS_QUARTER.key))
    return int(settings.value(FOLLOW_UP_DAYS.key))


def _followed(case: ArrearsCase, firing: Firing) -> None:
    case.follow_ups.append(ArrearsFollowUp(at=firing.at, by=firing.user, note=firing.comment))
    case.last_follow_up_at = firing.at
    case.next_due_at = firing.at + timedelta(days=follow_up_interval(case.owed_since, firing.at.date()))


class ArrearsCase(Tracked, db.Model):
    """A resident owing fees (ARC-7); ``next_due_at`` is when the next follow-up is due at the latest."""

    __tablename__ = "archive_arrears"
    personal_label = True  # str() names the household's archive (ACC-5)
    id: Mapped[int] = mapped_column(primary_key=True)
    archive_id: Mapped[int] = mapped_column(sa.ForeignKey("archive.id"), index=True)
    archive: Mapped[Archive] = relationship()
    fee: Mapped[str] = mapped_column(sa.String(16), default="management")
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), info={"important": True})  # ACC-8: recorded money
    owed_since: Mapped[date] = mapped_column(sa.Date)
    last_follow_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    follow_ups: Mapped[list[ArrearsFollowUp]] = relationship(back_populates="case", order_by="ArrearsFollowUp.at",
                                                             cascade="all, delete-orphan")

    workflow = Workflow(_l("Arrears follow-up"), {"open": _l("Owing"), "settled": _l("Settled")}, "open", [
        T("follow_up", "open", STAY, CUSTOMER_SERVICE | {"finance"}, label=_l("Record a follow-up"),
          comment_required=True, effect=_followed),
        T("settle", "open", "settled", CUSTOMER_SERVICE | {"finance"}, label=_l("Settled"), todo=False),
    ])

    def __str__(self) -> str:
        return f"{self.archive} {self.amount}"

    def check_case(self) -> None:
        from models.validators import DomainError

        if self.amount is None or self.amount <= 0:
            raise DomainError(_l("Enter the amount owed."), "amount")
        if self.owed_since and self.owed_since > date.today():
            raise DomainError(_l("The arrears cannot start in the future."), "owed_since")
        if self.next_due_at is None and self.owed_since:
            from datetime import UTC

            first = datetime.combine(self.owed_since + timedelta(days=30), datetime.min.time(), tzinfo=UTC)
            self.next_due_at = first + timedelta(days=follow_up_interval(self.owed_since, first.date()))


class ArrearsFollowUp(db.Model):
    __tablename__ = "archive_arrears_follow_up"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("archive_arrears.id", ondelete="CASCADE"), index=True)
    case: Mapped[ArrearsCase] = relationship(back_populates="follow_ups")
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    by = relationship(Staff)
    note: Mapped[str] = mapped_column(sa.Text)


def overdue_arrears(now: datetime | None = None) -> sa.Select:
    return sa.select(ArrearsCase).where(ArrearsCase.state == "open", ArrearsCase.deleted_at.is_(None),
                                        ArrearsCase.next_due_at < (now or utcnow()))


CHECK_KINDS = {"sample": _l("Six-monthly sample"), "full": _l("Full check")}
FULL_CHECK_OCCUPANCY = Decimal("0.8")


class SpotCheck(db.Model):
    """《质量检查记录》 (ARC-8): a six-monthly random sample of archives, or an estate's one-off full
    check of every archive (one year after hand-over or at 80% occupancy)."""

    __tablename__ = "archive_spot_check"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(8), default="sample", server_default="sample")
    estate_id: Mapped[int | None] = mapped_column(sa.ForeignKey("estate.id"), index=True)
    estate: Mapped[Estate | None] = relationship()
    drawn_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    drawn_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    population: Mapped[int] = mapped_column(sa.Integer)
    percent: Mapped[int] = mapped_column(sa.Integer)
    items: Mapped[list[SpotCheckItem]] = relationship(back_populates="check", cascade="all, delete-orphan")

    def __str__(self) -> str:
        where = f" {self.estate}" if self.estate_id else ""
        return f"#{self.id} {CHECK_KINDS.get(self.kind, self.kind)}{where} {self.drawn_at:%Y-%m-%d}"

    def next_due(self) -> datetime:
        return self.drawn_at + timedelta(days=183)


class SpotCheckItem(db.Model):
    __tablename__ = "archive_spot_check_item"
    id: Mapped[int] = mapped_column(primary_key=True)
    check_id: Mapped[int] = mapped_column(sa.ForeignKey("archive_spot_check.id", ondelete="CASCADE"), index=True)
    check: Mapped[SpotCheck] = relationship(back_populates="items")
    archive_id: Mapped[int] = mapped_column(sa.ForeignKey("archive.id"), index=True)
    archive: Mapped[Archive] = relationship()
    result: Mapped[str | None] = mapped_column(sa.String(16))  # "complete" / "deficient"
    missing: Mapped[str | None] = mapped_column(sa.Text)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    checked_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))


def occupancy_rates(today: date) -> dict[int, Decimal]:
    """Each estate's share of units with a current occupant (two grouped queries)."""
    units = sa.select(Building.estate_id, sa.func.count(Unit.id)).join(Unit.building).group_by(Building.estate_id)
    current = sa.or_(Occupancy.end_date.is_(None), Occupancy.end_date >= today)
    occupied = sa.select(Building.estate_id, sa.func.count(sa.distinct(Occupancy.unit_id))).select_from(
        Occupancy).join(Unit, Unit.id == Occupancy.unit_id).join(Unit.building).where(
        Occupancy.start_date <= today, current).group_by(Building.estate_id)
    filled = dict(db.session.execute(occupied).all())
    return {estate_id: Decimal(filled.get(estate_id, 0)) / total
            for estate_id, total in db.session.execute(units).all() if total}


def full_checks_due(today: date | None = None) -> list[tuple[Estate, str]]:
    """ARC-8: estates owing their one-off full check, with why — one year after hand-over, or
    occupancy at 80% — until a full check of the estate has been drawn."""
    from workflow.calendar import local_today

    today = today or local_today()
    done = sa.select(SpotCheck.estate_id).where(SpotCheck.kind == "full", SpotCheck.estate_id.is_not(None))
    rates = occupancy_rates(today)
    due: list[tuple[Estate, str]] = []
    for estate in db.session.scalars(sa.select(Estate).where(Estate.id.not_in(done)).order_by(Estate.code)):
        handed = estate.handover_date
        if handed is not None and _year_after(handed) <= today:
            due.append((estate, str(_l("one year since hand-over (%(day)s)", day=handed.isoformat()))))
        elif rates.get(estate.id, Decimal(0)) >= FULL_CHECK_OCCUPANCY:
            percent = int(FULL_CHECK_OCCUPANCY * 100)
            due.append((estate, str(_l("occupancy has reached %(percent)s%%", percent=percent))))
    return due


def _year_after(day: date) -> date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28)


def draw_full_check(estate: Estate, user: Staff | None) -> SpotCheck:
    """ARC-8: the one-off full check lists every open archive of the estate (their move-in and
    renovation documents are on each archive's checklist)."""
    ids = list(db.session.scalars(sa.select(Archive.id).join(Archive.unit).join(Unit.building).where(
        Building.estate_id == estate.id, Archive.state == "open", Archive.deleted_at.is_(None)).order_by(
        Building.code, Unit.floor, Unit.code)))
    check = SpotCheck(kind="full", estate_id=estate.id, drawn_by_id=user.id if user else None,
                      population=len(ids), percent=100)
    check.items.extend(SpotCheckItem(archive_id=archive_id) for archive_id in ids)
    db.session.add(check)
    db.session.flush()
    return check


def spot_check_due(now: datetime | None = None) -> bool:
    """Every six months: due when no check (sample or full) was drawn in the last 183 days."""
    last = db.session.scalar(sa.select(sa.func.max(SpotCheck.drawn_at)))
    if last is None:
        return True
    return last + timedelta(days=183) <= (now or utcnow())


def draw_spot_check(user: Staff | None, rng: random.Random | None = None) -> SpotCheck:
    """ARC-8: a random sample of at least 5% (and at least one) of the open archives."""
    from workflow import settings

    ids = list(db.session.scalars(sa.select(Archive.id).where(Archive.state == "open",
                                                             Archive.deleted_at.is_(None))))
    percent = int(settings.value(SAMPLE_PERCENT.key))
    size = min(len(ids), max(1, math.ceil(len(ids) * percent / 100)))
    check = SpotCheck(drawn_by_id=user.id if user else None, population=len(ids), percent=percent)
    for archive_id in sorted((rng or random.SystemRandom()).sample(ids, size)):
        check.items.append(SpotCheckItem(archive_id=archive_id))
    db.session.add(check)
    db.session.flush()
    return check


def record_result(item: SpotCheckItem, user: Staff | None, note: str = "") -> SpotCheckItem:
    """Record one sampled archive's result with its missing documents to chase."""
    missing = item.archive.missing_documents()
    item.result = "deficient" if missing else "complete"
    item.missing = "、".join(missing) + (f"\n{note}" if note else "")
    item.checked_at = utcnow()
    item.checked_by_id = user.id if user else None
    return item
