"""The editable working calendar (REGULATIONS §11): per-day overrides and hand-confirmed years.

The holidays package ships mainland China's public holidays and make-up working days (调休);
these tables hold what an administrator changed on top of it. A null ``estate_id`` means every
site. Both SQLite and PostgreSQL treat NULLs as distinct in a unique constraint, so the
uniqueness key is ``site_key`` (the estate id, or 0 for every site), kept in step with
``estate_id`` before every write; ``estate_id`` stays the real foreign key.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy import event
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from models.base import Timestamped, db
from models.registry import Estate
from models.validators import DomainError, check_length

OVERRIDE_KINDS = {"off": _l("Day off"), "work": _l("Working day")}
ALL_SITES = 0  # site_key of a row that applies to every site
FIRST_YEAR, LAST_YEAR = 2000, 2100  # dates outside are typing mistakes, not calendars


def site_key(estate_id: int | None) -> int:
    return ALL_SITES if estate_id is None else int(estate_id)


class CalendarOverride(Timestamped, db.Model):
    """One day declared off or working, for one site or (estate null) for every site."""

    __tablename__ = "calendar_override"
    __table_args__ = (sa.UniqueConstraint("site_key", "day"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    estate_id: Mapped[int | None] = mapped_column(sa.ForeignKey("estate.id"), index=True)
    estate: Mapped[Estate | None] = relationship()
    site_key: Mapped[int] = mapped_column(sa.Integer, default=ALL_SITES)
    day: Mapped[date] = mapped_column(sa.Date, index=True)
    kind: Mapped[str] = mapped_column(sa.String(8))
    reason: Mapped[str] = mapped_column(sa.String(200))

    @validates("kind")
    def _kind(self, key: str, value: str) -> str:
        if value not in OVERRIDE_KINDS:
            raise DomainError(_l("Choose either a day off or a working day."), "kind")
        return value

    @validates("reason")
    def _reason(self, key: str, value: str | None) -> str:
        value = (value or "").strip()
        if not value:
            raise DomainError(_l("Give the reason for this day, e.g. the notice it comes from."), "reason")
        return check_length(value, 200, "reason") or ""

    @validates("day")
    def _day(self, key: str, value: date | None) -> date:
        if value is None:
            raise DomainError(_l("The day is required."), "day")
        if not FIRST_YEAR <= value.year <= LAST_YEAR:
            raise DomainError(_l("Enter a date between 2000 and 2100."), "day")
        return value

    def __str__(self) -> str:
        return f"{self.day} {OVERRIDE_KINDS.get(self.kind, self.kind)}"


class CalendarYear(Timestamped, db.Model):
    """An administrator's confirmation that a year's calendar is complete for a site (or all).

    Needed only for years the holidays package has no make-up day data for: until someone
    confirms such a year, working-day questions about it are refused rather than guessed.
    """

    __tablename__ = "calendar_year"
    __table_args__ = (sa.UniqueConstraint("site_key", "year"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    estate_id: Mapped[int | None] = mapped_column(sa.ForeignKey("estate.id"), index=True)
    estate: Mapped[Estate | None] = relationship()
    site_key: Mapped[int] = mapped_column(sa.Integer, default=ALL_SITES)
    year: Mapped[int] = mapped_column(sa.Integer)
    note: Mapped[str] = mapped_column(sa.String(500))

    @validates("year")
    def _year(self, key: str, value: int | None) -> int:
        if value is None or not FIRST_YEAR <= int(value) <= LAST_YEAR:
            raise DomainError(_l("Enter a year between 2000 and 2100."), "year")
        return int(value)

    @validates("note")
    def _note(self, key: str, value: str | None) -> str:
        value = (value or "").strip()
        if not value:
            raise DomainError(_l("Say what the year's calendar was checked against, e.g. the State "
                                 "Council notice."), "note")
        return check_length(value, 500, "note") or ""

    def __str__(self) -> str:
        return str(self.year)


@event.listens_for(CalendarOverride, "before_insert")
@event.listens_for(CalendarOverride, "before_update")
@event.listens_for(CalendarYear, "before_insert")
@event.listens_for(CalendarYear, "before_update")
def _sync_site_key(mapper: object, connection: object, target: CalendarOverride | CalendarYear) -> None:
    """The unique key follows the estate, however it was set (the id or the relationship)."""
    loaded = sa.inspect(target).dict
    if "estate" in loaded:  # set or loaded: it wins over a possibly stale estate_id
        estate_id = loaded["estate"].id if loaded["estate"] is not None else None
    else:
        estate_id = target.estate_id
    target.site_key = site_key(estate_id)
