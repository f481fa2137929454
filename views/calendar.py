"""Working calendar screens (REGULATIONS §11): the administrator's day overrides, the years they
confirmed by hand, and a month table of what the calendar computes for a site.

Overrides and confirmations are configuration, not regulation records: an admin may delete
them (the audit trail keeps each change). Deadlines already computed keep their value; new
ones use the calendar as it is now.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from flask import flash, request, url_for
from flask_admin import Admin, expose
from flask_admin.actions import action
from flask_admin.babel import lazy_gettext as admin_l
from flask_admin.contrib.sqla import filters
from flask_admin.contrib.sqla.fields import QuerySelectField
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import DateField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import Length, Optional

from models.base import db, utcnow
from models.calendar import FIRST_YEAR, LAST_YEAR, OVERRIDE_KINDS, CalendarOverride, CalendarYear, site_key
from models.registry import Estate
from models.validators import DomainError
from views.base import SecureForm, SecureModelView
from views.params import record_id
from views.roles import ADMIN
from workflow.calendar import DATA_YEARS, NoHolidayData, WorkingCalendar, app_zone

DAY_KINDS = {
    "working": _l("Working day"), "weekend": _l("Weekend"), "holiday": _l("Public holiday"),
    "makeup": _l("Make-up working day"), "off": _l("Day off (override)"), "work": _l("Working day (override)"),
}
WEEKDAYS = (_l("Mon"), _l("Tue"), _l("Wed"), _l("Thu"), _l("Fri"), _l("Sat"), _l("Sun"))
CONFIG = {"view": ADMIN, "create": ADMIN, "edit": ADMIN, "delete": ADMIN, "export": ADMIN}


def estates() -> list[Estate]:
    return list(db.session.scalars(sa.select(Estate).order_by(Estate.name, Estate.id)))


def _site(view: Any, context: Any, model: Any, name: str) -> str:
    return str(model.estate) if model.estate is not None else _("All sites")


def _kind(view: Any, context: Any, model: Any, name: str) -> str:
    return str(OVERRIDE_KINDS.get(model.kind, model.kind))


def _site_id(model: CalendarOverride | CalendarYear) -> int | None:
    return model.estate.id if model.estate is not None else None


class SiteFilter(filters.FilterEqual):
    """Rows configured for one site, or (0) the rows that apply to every site.

    Flask-Admin reads filter options once, at start-up; the view fills in the current sites
    for every page instead (``site_options``).
    """

    @staticmethod
    def site_options() -> list[tuple[str, str]]:
        return [("0", _("All sites")), *((str(e.id), str(e)) for e in estates())]

    def clean(self, value: Any) -> int:
        key = int(value)
        if not 0 <= key < 2**31:
            raise ValueError("no such site")
        return key


class YearFilter(filters.FilterEqual):
    """Overrides whose day falls in one calendar year."""

    def clean(self, value: Any) -> int:
        year = int(value)
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise ValueError("year out of range")
        return year

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        return query.filter(self.get_column(alias).between(date(value, 1, 1), date(value, 12, 31)))


class OverrideForm(SecureForm):
    """Kind and reason are checked by the model, so every path gives the same message."""

    estate = QuerySelectField(_l("Site"), query_factory=estates, allow_blank=True, blank_text=_l("All sites"))
    day = DateField(_l("Day"), validators=[Optional()])
    kind = SelectField(_l("Kind"), choices=list(OVERRIDE_KINDS.items()), validate_choice=False)
    reason = StringField(_l("Reason"), validators=[Length(max=200)],
                         description=_l("e.g. the State Council notice, or the site's own arrangement"))


class YearForm(SecureForm):
    estate = QuerySelectField(_l("Site"), query_factory=estates, allow_blank=True, blank_text=_l("All sites"))
    year = IntegerField(_l("Year"), validators=[Optional()])
    note = TextAreaField(_l("Checked against"), validators=[Length(max=500)],
                         description=_l("Enter the year's days off and make-up working days as overrides "
                                        "first, then confirm the year here."))


class ConfigView(SecureModelView):
    """Configuration screens: deletable, one by one or selected in the list."""

    permissions = CONFIG

    @action("delete", admin_l("Delete"), admin_l("Are you sure you want to delete selected records?"))
    def action_delete(self, ids: Any) -> None:
        """Ids as integers: PostgreSQL refuses ``integer IN (varchar)``; junk ids select nothing."""
        numbers = tuple(n for n in map(record_id, ids) if n is not None)
        super().action_delete(numbers)


class CalendarOverrideView(ConfigView):
    """Days off and working days that differ from the shipped holidays, per site or for all."""

    list_template = "admin/calendar/list.html"
    column_list = ["day", "estate", "kind", "reason", "updated_at"]
    column_details_list = ["day", "estate", "kind", "reason", "created_at", "updated_at"]
    column_export_list = ["day", "estate", "kind", "reason"]
    form_columns = ["estate", "day", "kind", "reason"]
    column_filters = [SiteFilter(CalendarOverride.site_key, _l("Site")),
                      YearFilter(CalendarOverride.day, _l("Year"))]
    column_sortable_list = ["day", "kind"]
    column_default_sort = ("day", True)
    column_labels = {"day": _l("Day"), "estate": _l("Site"), "kind": _l("Kind"), "reason": _l("Reason"),
                     "created_at": _l("Created"), "updated_at": _l("Updated")}
    column_formatters = {"estate": _site, "kind": _kind}
    column_formatters_export = column_formatters
    column_formatters_detail = column_formatters

    def get_query(self) -> Any:
        return super().get_query().options(sa.orm.joinedload(CalendarOverride.estate))

    def _get_filter_groups(self) -> Any:
        groups = super()._get_filter_groups()
        for items in (groups or {}).values():
            for item in items:
                if isinstance(self._filters[item["index"]], SiteFilter):
                    item["options"] = SiteFilter.site_options()
        return groups

    def scaffold_form(self) -> type:
        return type("CalendarOverrideForm", (OverrideForm,), {})  # a class of its own per create/edit

    def check_model(self, model: CalendarOverride) -> None:
        """One override per day and site: a second one would leave the day's kind ambiguous."""
        with db.session.no_autoflush:
            clash = db.session.scalar(sa.select(CalendarOverride.id).where(
                CalendarOverride.site_key == site_key(_site_id(model)), CalendarOverride.day == model.day,
                CalendarOverride.id != (model.id or 0)))
        if clash is not None:
            raise DomainError(_l("This site already has an override for %(day)s; edit that one instead.",
                                 day=model.day.isoformat()), "day")

    def extra_endpoints(self) -> dict[str, str]:
        return {"month_view": "view"}

    @expose("/month/")
    def month_view(self):  # type: ignore[no-untyped-def]
        """The computed calendar of one site and month: why each day is worked or not."""
        sites = estates()
        site = _chosen_site(sites, request.args.get("site", ""))
        year, month = _chosen_month(request.args.get("month", ""))
        calendar = WorkingCalendar(site.id if site else None)
        language = "zh_CN" if str(get_locale() or "").startswith("zh") else "en_US"
        try:
            weeks, missing = calendar.month(year, month, language), None
        except NoHolidayData as exc:
            weeks, missing = None, exc.message
        keys = {0, site_key(site.id if site else None)}
        confirmations = list(db.session.scalars(
            sa.select(CalendarYear).where(CalendarYear.year == year, CalendarYear.site_key.in_(keys))
            .options(sa.orm.joinedload(CalendarYear.estate))))
        prev_month = (year, month - 1) if month > 1 else (year - 1, 12)
        next_month = (year, month + 1) if month < 12 else (year + 1, 1)
        return self.render(
            "admin/calendar/month.html", sites=sites, site=site, year=year, month=month, weeks=weeks,
            missing=missing, kinds=DAY_KINDS, weekdays=WEEKDAYS, confirmations=confirmations,
            packaged=year in DATA_YEARS,
            prev=_month_arg(*prev_month), next=_month_arg(*next_month),
            confirm_url=url_for("calendar_year.create_view"))


def _chosen_site(sites: list[Estate], raw: str) -> Estate | None:
    if not raw:
        return None
    site = next((e for e in sites if str(e.id) == raw.strip()), None)
    if site is None:
        flash(_("No such site; showing the calendar every site shares."), "error")
    return site


def _chosen_month(raw: str) -> tuple[int, int]:
    """``YYYY-MM`` from the form; this local month when blank or unreadable."""
    if raw:
        try:
            year, month = (int(part) for part in raw.strip().split("-"))
            if FIRST_YEAR <= year <= LAST_YEAR and 1 <= month <= 12:
                return year, month
        except ValueError:
            pass
        flash(_("Enter a month as year-month between 2000 and 2100, e.g. 2026-02."), "error")
    today = utcnow().astimezone(app_zone())
    return today.year, today.month


def _month_arg(year: int, month: int) -> str | None:
    return f"{year:04d}-{month:02d}" if FIRST_YEAR <= year <= LAST_YEAR else None


class CalendarYearView(ConfigView):
    """Confirming a year the holiday data does not cover, once its days are entered by hand."""

    list_template = "admin/calendar/years.html"
    last_data_year = DATA_YEARS[-1]
    column_list = ["year", "estate", "note", "updated_at"]
    column_details_list = ["year", "estate", "note", "created_at", "updated_at"]
    column_export_list = ["year", "estate", "note"]
    form_columns = ["estate", "year", "note"]
    column_sortable_list = ["year"]
    column_default_sort = ("year", True)
    column_labels = {"year": _l("Year"), "estate": _l("Site"), "note": _l("Checked against"),
                     "created_at": _l("Created"), "updated_at": _l("Updated")}
    column_formatters = {"estate": _site}
    column_formatters_export = column_formatters
    column_formatters_detail = column_formatters

    def get_query(self) -> Any:
        return super().get_query().options(sa.orm.joinedload(CalendarYear.estate))

    def scaffold_form(self) -> type:
        return type("CalendarYearForm", (YearForm,), {})

    def check_model(self, model: CalendarYear) -> None:
        if model.year in DATA_YEARS:
            raise DomainError(_l("The holiday data already holds the make-up working days of %(year)s; "
                                 "there is nothing to confirm.", year=model.year), "year")
        with db.session.no_autoflush:
            clash = db.session.scalar(sa.select(CalendarYear.id).where(
                CalendarYear.site_key == site_key(_site_id(model)), CalendarYear.year == model.year,
                CalendarYear.id != (model.id or 0)))
        if clash is not None:
            raise DomainError(_l("%(year)s is already confirmed for this site.", year=model.year), "year")


def register(admin: Admin) -> None:
    cat = _l("Staff and security")
    admin.add_view(CalendarOverrideView(CalendarOverride, db, name=_l("Working calendar"), category=cat,
                                        endpoint="calendar", url="calendar"))
    admin.add_view(CalendarYearView(CalendarYear, db, name=_l("Confirmed calendar years"), category=cat,
                                    endpoint="calendar_year"))
