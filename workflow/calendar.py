"""The working calendar and deadline arithmetic (REGULATIONS §11, last paragraph).

A site's calendar is mainland China's public holidays from the ``holidays`` package (its
``weekend_workdays`` are the make-up working days, 调休), with the administrator's overrides on
top: a site's own override beats an all-sites one, which beats the package. The package knows
the State Council's make-up days only for the years in its static table (``DATA_YEARS``);
later years have fixed-rule holidays and nothing else, so a working-day question about such a
year is refused with ``NoHolidayData`` until an administrator confirms that year's calendar
(``CalendarYear``) — a deadline is never computed from a guess.

Times are stored in UTC; days are local days in ``app.config["TIMEZONE"]`` (Asia/Shanghai).
Building a ``WorkingCalendar`` reads the site's overrides once; reuse one object for many
records (``calendar_for`` keeps one per site for the app context, i.e. the request or the CLI
run, and forgets it when this process writes an override). A long-running caller compares
``calendar.version`` with ``calendar_version(site_id)`` and rebuilds when they differ.
"""

from __future__ import annotations

from calendar import Calendar, monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import sqlalchemy as sa
from flask import current_app, g, has_app_context
from flask_babel import lazy_gettext as _l
from holidays.countries.china import ChinaStaticHolidays
from sqlalchemy import event

from models.base import db
from models.calendar import ALL_SITES, CalendarOverride, CalendarYear, site_key
from models.validators import DomainError

UNITS = ("minutes", "hours", "days", "months", "working_days")
DEFAULT_ZONE = "Asia/Shanghai"
WEEKEND = frozenset({5, 6})  # Saturday, Sunday
MAX_DAYS_OFF = 400  # more consecutive days off than this is a broken calendar, not a holiday
END_OF_DAY = time.max  # 23:59:59.999999: a deadline "on" a day is met until the day ends
CACHE_KEY = "pm_calendars"


def _data_years() -> range:
    """The years of the package's static substituted-days table: official 调休 data exists."""
    table = ChinaStaticHolidays.special_public_holidays
    return range(min(table), max(table) + 1)


DATA_YEARS = _data_years()


class NoHolidayData(DomainError):
    """A working-day question about a year nobody has the make-up days for: refused, not guessed."""

    def __init__(self, year: int) -> None:
        super().__init__(_l(
            "The working calendar for %(year)s is not known: the holiday data has no make-up working "
            "days for that year, so no working-day deadline can be computed. An administrator confirms "
            "the year's calendar on the calendar screen (Staff and security → Working calendar) after "
            "entering that year's days off and make-up working days.", year=year))
        self.year = year


@dataclass(frozen=True)
class PackageYear:
    holidays: dict[date, str]  # days off by law, including substituted ones
    makeup: frozenset[date]  # weekend days worked instead (调休)


@lru_cache(maxsize=128)
def package_year(year: int, language: str | None = None) -> PackageYear:
    """The package's days for one year; cached for the process, the data never changes.

    A make-up day may sit in the year before the holiday it pays for (30 Dec for 2 Jan), so
    the following year's table is read as well.
    """
    this = holidays.China(years=year, language=language)
    following = holidays.China(years=year + 1)
    makeup = {d for d in this.weekend_workdays | following.weekend_workdays if d.year == year}
    return PackageYear(dict(this.items()), frozenset(makeup))


def app_zone() -> ZoneInfo:
    name = current_app.config.get("TIMEZONE") if has_app_context() else None
    return ZoneInfo(name or DEFAULT_ZONE)


def local_today(now: datetime | None = None) -> date:
    """Today in the site's zone (Beijing): the day the desk and the resident see."""
    from models.base import utcnow

    return (now or utcnow()).astimezone(app_zone()).date()


@dataclass(frozen=True)
class DayInfo:
    """What one local day is and why; ``kind`` is working, weekend, holiday, makeup, off or work
    (the last two: an administrator's override, ``label`` holding its reason)."""

    day: date
    working: bool
    kind: str
    label: str = ""
    site_override: bool = False


class WorkingCalendar:
    """One site's calendar (``site_id`` None: the all-sites calendar), loaded once."""

    def __init__(self, site_id: int | None = None, *, zone: ZoneInfo | str | None = None,
                 session: sa.orm.Session | None = None) -> None:
        self.site_id = site_id
        self.zone = ZoneInfo(zone) if isinstance(zone, str) else zone or app_zone()
        session = session or db.session
        keys = _keys(site_id)
        rows = session.execute(
            sa.select(CalendarOverride.day, CalendarOverride.kind, CalendarOverride.reason,
                      CalendarOverride.site_key, CalendarOverride.updated_at)
            .where(CalendarOverride.site_key.in_(keys))
            .order_by(CalendarOverride.site_key != ALL_SITES)).all()  # the site's own rows last: they win
        self._overrides = {r.day: (r.kind, r.reason, r.site_key != ALL_SITES) for r in rows}
        years = session.execute(sa.select(CalendarYear.year, CalendarYear.updated_at)
                                .where(CalendarYear.site_key.in_(keys))).all()
        self.confirmed = frozenset(y.year for y in years)
        self.version = _version(rows, years)
        self._working: dict[date, bool] = {}

    # --- days --------------------------------------------------------------------------------
    def known(self, year: int) -> bool:
        """The package has the year's make-up days, or an administrator confirmed the year."""
        return year in DATA_YEARS or year in self.confirmed

    def info(self, day: date, language: str | None = None) -> DayInfo:
        day = self.local_date(day)
        if not self.known(day.year):
            raise NoHolidayData(day.year)
        override = self._overrides.get(day)
        if override is not None:
            kind, reason, own = override
            return DayInfo(day, kind == "work", kind, reason, own)
        package = package_year(day.year, language)
        if day in package.makeup:
            return DayInfo(day, True, "makeup")
        if day in package.holidays:
            return DayInfo(day, False, "holiday", package.holidays[day])
        if day.weekday() in WEEKEND:
            return DayInfo(day, False, "weekend")
        return DayInfo(day, True, "working")

    def is_working_day(self, day: date) -> bool:
        day = self.local_date(day)
        working = self._working.get(day)
        if working is None:
            working = self._working[day] = self.info(day).working
        return working

    def month(self, year: int, month: int, language: str | None = None) -> list[list[DayInfo | None]]:
        """Weeks (Monday first) of the month's days; None pads the first and last week."""
        return [[self.info(date(year, month, d), language) if d else None for d in week]
                for week in Calendar().monthdayscalendar(year, month)]

    # --- arithmetic --------------------------------------------------------------------------
    def local_date(self, moment: date) -> date:
        """A datetime's local day in the site's zone; a date is taken as it is."""
        if isinstance(moment, datetime):
            return _aware(moment).astimezone(self.zone).date()
        return moment

    def end_of(self, day: date) -> datetime:
        """The last instant of a local day, in UTC."""
        return datetime.combine(day, END_OF_DAY, tzinfo=self.zone).astimezone(UTC)

    def add(self, start: datetime, amount: int, unit: str) -> datetime:
        """``start`` plus ``amount`` ``unit``; see ``shift`` for every unit but working_days.

        working_days end at 23:59:59.999999 local of the amount-th working day after the
        start's local day (the start day never counts; 0 means the end of the start day).
        """
        if unit != "working_days":
            return shift(start, amount, unit, self.zone)
        _check(start, amount)
        return self.end_of(self.nth_working_day(self.local_date(start), amount))

    def nth_working_day(self, after: date, n: int) -> date:
        """The n-th working day after ``after`` (which never counts); ``after`` itself for 0."""
        if n < 0:
            raise ValueError("working days are counted forwards only")
        day, counted, off = self.local_date(after), 0, 0
        while counted < n:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted, off = counted + 1, 0
            else:
                off += 1
                if off > MAX_DAYS_OFF:
                    raise ValueError(f"no working day in the {MAX_DAYS_OFF} days after {day - timedelta(days=off)}")
        return day

    def working_days_between(self, a: date, b: date) -> int:
        """Working days d with local(a) < d <= local(b); negative when b is before a.

        So ``working_days_between(start, add(start, n, "working_days")) == n``.
        """
        first, last = self.local_date(a), self.local_date(b)
        if last < first:
            return -self.working_days_between(b, a)
        return sum(self.is_working_day(first + timedelta(days=i)) for i in range(1, (last - first).days + 1))


def shift(start: datetime, amount: int, unit: str, zone: ZoneInfo | None = None) -> datetime:
    """Arithmetic no day's kind matters to, as an aware UTC datetime.

    minutes/hours are clock time; days keep the local time of day; months keep the local day
    of the month, clamped to the month's end (31 Jan + 1 month = 28/29 Feb).
    """
    _check(start, amount)
    if unit == "minutes":
        return (start + timedelta(minutes=amount)).astimezone(UTC)
    if unit == "hours":
        return (start + timedelta(hours=amount)).astimezone(UTC)
    zone = zone or app_zone()
    local = start.astimezone(zone)
    try:
        if unit == "days":
            day = local.date() + timedelta(days=amount)
        elif unit == "months":
            years, month0 = divmod(local.month - 1 + amount, 12)
            year, month = local.year + years, month0 + 1
            day = date(year, month, min(local.day, monthrange(year, month)[1]))
        else:
            raise ValueError(f"unknown unit {unit!r}; use one of {', '.join(UNITS)}")
    except OverflowError:
        raise ValueError("date out of range") from None
    return datetime.combine(day, local.time(), tzinfo=zone).astimezone(UTC)


def _check(start: datetime, amount: int) -> None:
    _aware(start)
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("amount must be an int")


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime refused; use an aware datetime")
    return moment


def _keys(site_id: int | None) -> tuple[int, ...]:
    return (ALL_SITES,) if site_id is None else (ALL_SITES, site_key(site_id))


def _version(overrides: Any, years: Any) -> tuple[int, datetime | None, int, datetime | None]:
    """Row counts (a delete) and the newest change (an insert or edit) of what the calendar read."""
    def newest(rows: Any) -> datetime | None:
        return max((r.updated_at for r in rows if r.updated_at is not None), default=None)

    return len(overrides), newest(overrides), len(years), newest(years)


def calendar_version(site_id: int | None = None, session: sa.orm.Session | None = None) -> tuple:
    """Cheap check whether a site's overrides or confirmations changed since a calendar was built:
    compare with ``WorkingCalendar.version``."""
    session = session or db.session
    keys = _keys(site_id)
    parts = []
    for model in (CalendarOverride, CalendarYear):
        count, newest = session.execute(sa.select(sa.func.count(), sa.func.max(model.updated_at))
                                        .where(model.site_key.in_(keys))).one()
        parts += [count, newest]
    return tuple(parts)


def calendar_for(site_id: int | None = None) -> WorkingCalendar:
    """The site's calendar, built once per app context (request, CLI run) and then reused."""
    if not has_app_context():
        return WorkingCalendar(site_id)
    cache: dict[int | None, WorkingCalendar] = g.setdefault(CACHE_KEY, {})
    if site_id not in cache:
        cache[site_id] = WorkingCalendar(site_id)
    return cache[site_id]


def add(start: datetime, amount: int, unit: str, site_id: int | None = None) -> datetime:
    """``start`` plus ``amount`` ``unit``; only working days read the site's calendar."""
    if unit != "working_days":
        return shift(start, amount, unit)
    return calendar_for(site_id).add(start, amount, unit)


def is_working_day(day: date, site_id: int | None = None) -> bool:
    return calendar_for(site_id).is_working_day(day)


def working_days_between(a: date, b: date, site_id: int | None = None) -> int:
    return calendar_for(site_id).working_days_between(a, b)


@event.listens_for(CalendarOverride, "after_insert")
@event.listens_for(CalendarOverride, "after_update")
@event.listens_for(CalendarOverride, "after_delete")
@event.listens_for(CalendarYear, "after_insert")
@event.listens_for(CalendarYear, "after_update")
@event.listens_for(CalendarYear, "after_delete")
def _forget(mapper: object, connection: object, target: object) -> None:
    """A written override or confirmation: this app context's calendars are rebuilt on next use."""
    if has_app_context():
        g.pop(CACHE_KEY, None)
