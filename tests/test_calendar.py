"""The working calendar (REGULATIONS §11, last paragraph) and the deadlines built on it.

Mainland holidays with make-up working days (调休) from the holidays package, overrides per site
and for every site, years without data refused (never guessed), UTC storage against Shanghai
local days, and the admin screens that edit the calendar.
"""

from __future__ import annotations

import html
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from flask_babel import force_locale
from flask_babel.speaklater import LazyString
from hypothesis import given, settings
from hypothesis import strategies as st

from models import Estate, Staff, db
from models.calendar import CalendarOverride, CalendarYear
from tests.conftest import csrf_token
from tests.helpers import make_estate
from tests.test_bad_input import open_form, snapshot, submit
from workflow import calendar as wc
from workflow.calendar import DATA_YEARS, NoHolidayData, WorkingCalendar

SH = ZoneInfo("Asia/Shanghai")
END = time(23, 59, 59, 999999)
NON_ADMINS = ["manager", "cs_supervisor", "cs_clerk", "engineering", "security", "finance", "management_dept"]


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    """A Shanghai wall-clock time, as callers hold it: aware."""
    return datetime(y, m, d, hh, mm, tzinfo=SH)


def end_of(y: int, m: int, d: int) -> datetime:
    return datetime.combine(date(y, m, d), END, tzinfo=SH)


def override(day: date, kind: str, estate: Estate | None = None, reason: str = "测试") -> CalendarOverride:
    row = CalendarOverride(estate=estate, day=day, kind=kind, reason=reason)
    db.session.add(row)
    db.session.flush()
    return row


def confirm(year: int, estate: Estate | None = None) -> CalendarYear:
    row = CalendarYear(estate=estate, year=year, note="国务院办公厅通知")
    db.session.add(row)
    db.session.flush()
    return row


@pytest.fixture()
def cal(db_session) -> WorkingCalendar:
    return WorkingCalendar()


# --- the package's data ------------------------------------------------------------------------
def test_cal_data_years_are_those_of_the_package_static_table():
    """The last year with official make-up days is the table's last; later years have none."""
    assert DATA_YEARS[0] == 2001 and DATA_YEARS[-1] == 2026
    assert 2025 in DATA_YEARS and 2027 not in DATA_YEARS and 2028 not in DATA_YEARS


def test_cal_spring_festival_2026_is_off_with_make_up_saturdays(cal):
    for offset in range(9):  # 2026-02-15 .. 2026-02-23
        assert not cal.is_working_day(date(2026, 2, 15) + timedelta(days=offset))
    assert cal.is_working_day(date(2026, 2, 14)) and cal.is_working_day(date(2026, 2, 28))
    assert cal.info(date(2026, 2, 14)).kind == "makeup"
    assert cal.is_working_day(date(2026, 2, 24))
    assert not cal.is_working_day(date(2026, 2, 21))  # an ordinary Saturday inside the holiday


@pytest.mark.parametrize("day", [date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9),
                                 date(2026, 9, 20), date(2026, 10, 10), date(2025, 1, 26), date(2025, 10, 11)])
def test_cal_make_up_weekend_days_are_working_days(cal, day):
    assert day.weekday() >= 5 and cal.is_working_day(day)


# --- working-day deadlines across boundaries ------------------------------------------------------
def test_ren_2_three_working_days_from_a_saturday_end_on_wednesday(cal):
    """The start day never counts: Saturday 7 March 2026 → Mon, Tue, Wed → end of Wednesday."""
    assert cal.add(at(2026, 3, 7), 3, "working_days") == end_of(2026, 3, 11)


@pytest.mark.parametrize(("start", "due"), [
    # Wed 31 Dec counts; 1–3 Jan off; Sunday 4 Jan is a make-up working day; then Monday 5 Jan.
    (at(2025, 12, 30), end_of(2026, 1, 5)),
    (at(2025, 12, 31), end_of(2026, 1, 6)),
    (at(2025, 12, 31, 23, 59), end_of(2026, 1, 6)),
])
def test_ren_2_working_days_across_new_year(cal, start, due):
    assert cal.add(start, 3, "working_days") == due
    assert cal.working_days_between(start, due) == 3


def test_ren_2_new_year_2026_days(cal):
    assert not cal.is_working_day(date(2026, 1, 1)) and not cal.is_working_day(date(2026, 1, 2))
    assert cal.is_working_day(date(2026, 1, 4))  # Sunday, make-up working day


def test_ren_2_deadline_bridges_national_day_2026(cal):
    """30 Sep → 1–7 Oct off → Thu 8, Fri 9, Saturday 10 Oct (make-up working day) = 3."""
    assert cal.add(at(2026, 9, 30), 3, "working_days") == end_of(2026, 10, 10)
    assert cal.add(at(2026, 9, 30), 4, "working_days") == end_of(2026, 10, 12)  # Sunday 11 Oct off


def test_ren_7_zero_working_days_is_the_end_of_the_start_day(cal):
    assert cal.add(at(2026, 3, 7), 0, "working_days") == end_of(2026, 3, 7)


def test_ren_7_deadlines_are_stored_as_utc(cal):
    due = cal.add(at(2026, 3, 9), 2, "working_days")
    assert due.tzinfo == UTC and due == datetime(2026, 3, 11, 15, 59, 59, 999999, tzinfo=UTC)


# --- UTC against local days ----------------------------------------------------------------------------
def test_cal_utc_afternoon_of_new_years_day_is_already_2_january_in_shanghai(cal):
    start = datetime(2026, 1, 1, 17, 0, tzinfo=UTC)
    assert cal.local_date(start) == date(2026, 1, 2)
    assert not cal.is_working_day(start)  # 2 Jan, a substituted day off
    assert wc.add(start, 1, "days") == datetime(2026, 1, 2, 17, 0, tzinfo=UTC)  # 3 Jan 01:00 local


def test_cal_start_just_before_and_after_local_midnight(cal):
    """23:30 local on Sunday 4 Jan (a working day) starts counting on 5 Jan; 00:30 on 5 Jan on 6 Jan."""
    before = datetime(2026, 1, 4, 15, 30, tzinfo=UTC)
    after = datetime(2026, 1, 4, 16, 30, tzinfo=UTC)
    assert cal.add(before, 1, "working_days") == end_of(2026, 1, 5)
    assert cal.add(after, 1, "working_days") == end_of(2026, 1, 6)
    assert end_of(2026, 1, 5).astimezone(UTC) == datetime(2026, 1, 5, 15, 59, 59, 999999, tzinfo=UTC)


def test_cal_naive_times_are_refused(cal):
    with pytest.raises(ValueError, match="naive"):
        cal.add(datetime(2026, 1, 1, 10), 1, "working_days")
    with pytest.raises(ValueError, match="naive"):
        wc.add(datetime(2026, 1, 1, 10), 1, "hours")


def test_cal_unknown_unit_and_negative_working_days_are_refused(cal):
    with pytest.raises(ValueError, match="unknown unit"):
        cal.add(at(2026, 3, 9), 1, "weeks")
    with pytest.raises(ValueError):
        cal.add(at(2026, 3, 9), -1, "working_days")


# --- clock and calendar units ------------------------------------------------------------------------
def test_hlp_2_cmp_sla_2_clock_units_are_plain_clock_time():
    start = datetime(2026, 2, 16, 15, 58, tzinfo=UTC)  # 23:58 on New Year's Eve, a holiday
    assert wc.add(start, 5, "minutes") == datetime(2026, 2, 16, 16, 3, tzinfo=UTC)
    assert wc.add(start, 2, "hours") == datetime(2026, 2, 16, 17, 58, tzinfo=UTC)


def test_cmp_sla_4_one_month_from_31_january_2028_is_29_february(app):
    with app.app_context():
        assert wc.add(at(2028, 1, 31, 9), 1, "months") == at(2028, 2, 29, 9)
        assert wc.add(at(2027, 1, 31, 9), 1, "months") == at(2027, 2, 28, 9)
        assert wc.add(at(2028, 3, 31, 9), -1, "months") == at(2028, 2, 29, 9)
        assert wc.add(at(2028, 2, 29, 9), 12, "months") == at(2029, 2, 28, 9)
        assert wc.add(at(2026, 8, 31, 9), 6, "months") == at(2027, 2, 28, 9)  # ARC-6: every 6 months


def test_cmp_sla_1_calendar_days_across_28_and_29_february_2028(app):
    """Calendar days need no holiday data: 2028 works without a confirmation."""
    with app.app_context():
        assert wc.add(at(2028, 2, 28, 9), 1, "days") == at(2028, 2, 29, 9)
        assert wc.add(at(2028, 2, 28, 9), 2, "days") == at(2028, 3, 1, 9)
        assert wc.add(at(2027, 2, 28, 9), 1, "days") == at(2027, 3, 1, 9)


def test_ren_2_working_days_across_29_february_2028_once_the_year_is_confirmed(db_session):
    with pytest.raises(NoHolidayData):
        WorkingCalendar().add(at(2028, 2, 28), 1, "working_days")
    confirm(2028)
    cal = WorkingCalendar()
    assert cal.add(at(2028, 2, 28), 1, "working_days") == end_of(2028, 2, 29)  # Monday → leap Tuesday
    assert cal.add(at(2028, 2, 25), 2, "working_days") == end_of(2028, 2, 29)  # Fri → Mon 28, Tue 29


# --- years without data ------------------------------------------------------------------------------
def test_cal_year_without_data_raises_no_holiday_data_with_a_translated_message(cal):
    with pytest.raises(NoHolidayData) as caught:
        cal.is_working_day(date(2027, 3, 1))
    assert caught.value.year == 2027
    assert isinstance(caught.value.message, LazyString)  # translated when shown, in the reader's language
    with force_locale("en"):
        text = str(caught.value.message)
    assert "2027" in text and "An administrator confirms the year's calendar on the calendar screen" in text


def test_ren_2_deadline_running_into_a_year_without_data_is_refused(cal):
    """A deadline from late December 2026 that needs days of 2027 is not guessed."""
    with pytest.raises(NoHolidayData) as caught:
        cal.add(at(2026, 12, 28), 5, "working_days")
    assert caught.value.year == 2027


def test_cal_confirmation_for_one_site_does_not_confirm_others(db_session):
    east, west = make_estate(code="east"), make_estate(code="west", name="西区")
    confirm(2027, east)
    assert WorkingCalendar(east.id).is_working_day(date(2027, 3, 1))
    with pytest.raises(NoHolidayData):
        WorkingCalendar(west.id).is_working_day(date(2027, 3, 1))
    confirm(2027)  # every site
    assert WorkingCalendar(west.id).is_working_day(date(2027, 3, 1))


# --- overrides ---------------------------------------------------------------------------------------------
def test_cal_site_override_beats_the_package(db_session):
    east, west = make_estate(code="east"), make_estate(code="west", name="西区")
    override(date(2026, 2, 14), "off", east, "园区春节统一放假")
    override(date(2026, 2, 21), "work", east, "春节值守")
    assert not WorkingCalendar(east.id).is_working_day(date(2026, 2, 14))
    assert WorkingCalendar(east.id).is_working_day(date(2026, 2, 21))
    assert WorkingCalendar(west.id).is_working_day(date(2026, 2, 14))  # other sites keep the package
    assert WorkingCalendar().is_working_day(date(2026, 2, 14))
    info = WorkingCalendar(east.id).info(date(2026, 2, 14))
    assert (info.kind, info.label, info.site_override) == ("off", "园区春节统一放假", True)


def test_cal_all_sites_override_applies_everywhere_and_a_site_override_beats_it(db_session):
    east, west = make_estate(code="east"), make_estate(code="west", name="西区")
    override(date(2026, 3, 9), "off", None, "公司年会")
    override(date(2026, 3, 9), "work", east, "东区照常")
    assert not WorkingCalendar().is_working_day(date(2026, 3, 9))
    assert not WorkingCalendar(west.id).is_working_day(date(2026, 3, 9))
    assert WorkingCalendar(east.id).is_working_day(date(2026, 3, 9))
    assert WorkingCalendar(west.id).add(at(2026, 3, 6), 1, "working_days") == end_of(2026, 3, 10)


def test_cal_module_functions_see_an_override_written_in_the_same_request(db_session):
    """The per-request calendar is forgotten when an override is written, never served stale."""
    assert wc.is_working_day(date(2026, 3, 9))
    override(date(2026, 3, 9), "off")
    assert not wc.is_working_day(date(2026, 3, 9))
    assert wc.working_days_between(date(2026, 3, 6), date(2026, 3, 10)) == 1


def test_cal_version_changes_with_every_override_change(db_session):
    east = make_estate(code="east")
    built = WorkingCalendar(east.id)
    assert built.version == wc.calendar_version(east.id)
    row = override(date(2026, 3, 9), "off", east)
    assert wc.calendar_version(east.id) != built.version
    rebuilt = WorkingCalendar(east.id)
    assert rebuilt.version == wc.calendar_version(east.id)
    db.session.delete(row)
    db.session.flush()
    assert wc.calendar_version(east.id) != rebuilt.version


def test_cal_duplicate_all_sites_day_is_refused_by_the_database(db_session):
    """NULL estate ids are distinct in a unique constraint; the site key is not."""
    override(date(2026, 3, 9), "off")
    with pytest.raises(sa.exc.IntegrityError):
        override(date(2026, 3, 9), "work")
    db.session.rollback()


def test_cal_moving_an_override_between_sites_moves_its_unique_key(db_session):
    east = make_estate(code="east")
    row = override(date(2026, 3, 9), "off", east)
    assert row.site_key == east.id
    row.estate = None
    db.session.flush()
    assert row.site_key == 0 and not WorkingCalendar().is_working_day(date(2026, 3, 9))
    with pytest.raises(sa.exc.IntegrityError):
        override(date(2026, 3, 9), "work")
    db.session.rollback()


# --- properties --------------------------------------------------------------------------------------------
moments = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 11, 30),
                       timezones=st.just(UTC))


def test_ren_2_property_working_day_deadlines(cal):
    """add(x, n) ends a working day, counts exactly n, and no earlier day would do."""

    @settings(max_examples=300, deadline=None)
    @given(start=moments, n=st.integers(0, 20))
    def check(start: datetime, n: int) -> None:
        due = cal.add(start, n, "working_days")
        local = due.astimezone(SH)
        assert local.time() == END and due > start
        assert cal.working_days_between(start, due) == n
        if n:
            assert cal.is_working_day(local.date())
            assert cal.working_days_between(start, local.date() - timedelta(days=1)) == n - 1

    check()


def test_cmp_sla_1_property_calendar_days_keep_the_local_time_of_day(app):
    @settings(max_examples=300, deadline=None)
    @given(start=moments, n=st.integers(-400, 400))
    def check(start: datetime, n: int) -> None:
        result = wc.add(start, n, "days").astimezone(SH)
        local = start.astimezone(SH)
        assert result.time() == local.time()
        assert (result.date() - local.date()).days == n

    with app.app_context():
        check()


def test_cmp_sla_4_property_months_keep_the_day_clamped_to_the_month_end(app):
    @settings(max_examples=300, deadline=None)
    @given(start=moments, n=st.integers(-36, 36))
    def check(start: datetime, n: int) -> None:
        result = wc.add(start, n, "months").astimezone(SH)
        local = start.astimezone(SH)
        assert result.time() == local.time()
        assert (result.year * 12 + result.month) - (local.year * 12 + local.month) == n
        assert result.day == local.day or (result.day < local.day and (result + timedelta(days=1)).day == 1)

    with app.app_context():
        check()


# --- the screens ---------------------------------------------------------------------------------------------
def english(app, staff_ids) -> None:  # type: ignore[no-untyped-def]
    with app.app_context():
        db.session.execute(sa.update(Staff).values(locale="en"))
        db.session.commit()


@pytest.fixture()
def admin(app, staff_ids, login_as) -> FlaskClient:
    english(app, staff_ids)
    return login_as("admin")


@pytest.fixture()
def east(app, staff_ids) -> int:
    with app.app_context():
        estate = make_estate(code="east", name="东区")
        db.session.commit()
        return estate.id


def page(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def overrides(app) -> list[tuple]:  # type: ignore[no-untyped-def]
    with app.app_context():
        return [tuple(r) for r in db.session.execute(
            sa.select(CalendarOverride.estate_id, CalendarOverride.day, CalendarOverride.kind)
            .order_by(CalendarOverride.id))]


@pytest.mark.parametrize("role", NON_ADMINS)
def test_acc_1_calendar_screens_are_for_admins_only(app, staff_ids, login_as, east, role):
    client = login_as(role)
    for url in ("/admin/calendar/", "/admin/calendar/month/", "/admin/calendar/new/",
                "/admin/calendar_year/", "/admin/calendar_year/new/"):
        assert client.get(url).status_code == 403, url
    data = {"day": "2026-03-09", "kind": "off", "reason": "x", "estate": "__None", "csrf_token": csrf_token(client)}
    assert client.post("/admin/calendar/new/", data=data).status_code == 403
    assert client.post("/admin/calendar_year/new/", data={**data, "year": "2027"}).status_code == 403
    assert overrides(app) == []


def test_acc_1_admin_reaches_every_calendar_screen(admin, east):
    for url in ("/admin/calendar/", "/admin/calendar/month/", "/admin/calendar/new/",
                "/admin/calendar_year/", "/admin/calendar_year/new/"):
        assert admin.get(url).status_code == 200, url


def test_cal_admin_adds_a_site_override_and_the_month_table_shows_it(app, admin, east):
    form = open_form(admin, "/admin/calendar/new/")
    response = submit(admin, "/admin/calendar/new/", form, estate=east, day="2026-02-14", kind="off",
                      reason="园区春节统一放假")
    assert response.status_code == 302
    assert overrides(app) == [(east, date(2026, 2, 14), "off")]
    body = page(admin.get(f"/admin/calendar/month/?site={east}&month=2026-02"))
    cell = body[body.index('data-day="2026-02-14"') - 60:body.index('data-day="2026-02-14"') + 300]
    assert "cal-off" in cell and 'data-working="0"' in cell and "园区春节统一放假" in cell
    listed = page(admin.get(f"/admin/calendar/?flt0_0={east}&flt1_1=2026"))
    assert "2026-02-14" in listed and "园区春节统一放假" in listed
    assert "园区春节统一放假" not in page(admin.get("/admin/calendar/?flt0_0=0"))
    assert "园区春节统一放假" not in page(admin.get(f"/admin/calendar/?flt0_0={east}&flt1_1=2025"))


def test_cal_month_table_shows_the_make_up_saturday_as_a_working_day(admin):
    body = page(admin.get("/admin/calendar/month/?month=2026-02"))
    start = body.index('data-day="2026-02-14"')
    cell = body[body.rindex("<td", 0, start):body.index("</td>", start)]
    assert "cal-makeup" in cell and 'data-working="1"' in cell and "Make-up working day" in cell
    start = body.index('data-day="2026-02-17"')
    cell = body[body.rindex("<td", 0, start):body.index("</td>", start)]
    assert "cal-holiday" in cell and 'data-working="0"' in cell


def test_cal_month_table_of_a_year_without_data_says_what_to_do(admin):
    body = page(admin.get("/admin/calendar/month/?month=2027-03"))
    assert "The working calendar for 2027 is not known" in body
    assert "An administrator confirms the year's calendar on the calendar screen" in body
    assert 'id="calendar-month-table"' not in body


@pytest.mark.parametrize("query", ["month=abc", "month=1999-12", "month=2026-13", "site=999999", "site=abc",
                                   "month=2026-02-01", "site=%00"])
def test_cal_month_table_with_junk_arguments_is_never_a_500(admin, query):
    response = admin.get(f"/admin/calendar/month/?{query}")
    assert response.status_code == 200 and 'id="calendar-month-form"' in page(response)


@pytest.mark.parametrize(("changes", "message"), [
    ({"kind": "holiday"}, "Choose either a day off or a working day."),
    ({"reason": "   "}, "Give the reason for this day"),
    ({"day": ""}, "The day is required."),
    ({"day": "2026-13-01"}, "Not a valid date value."),
    ({"day": "1999-12-31"}, "Enter a date between 2000 and 2100."),
    ({"reason": "x" * 201}, "Field cannot be longer than 200 characters."),
])
def test_cal_bad_override_is_refused_and_nothing_is_written(app, admin, east, changes, message):
    form = open_form(admin, "/admin/calendar/new/")
    with app.app_context():
        before = snapshot()
        values = {"estate": east, "day": "2026-03-09", "kind": "off", "reason": "年会"} | changes
        response = submit(admin, "/admin/calendar/new/", form, **values)
        assert response.status_code == 200 and message in page(response)
        assert snapshot() == before


@pytest.mark.parametrize("site", ["east", "all"])
def test_cal_second_override_for_the_same_day_and_site_is_a_field_error(app, admin, east, site):
    estate = east if site == "east" else "__None"
    form = open_form(admin, "/admin/calendar/new/")
    assert submit(admin, "/admin/calendar/new/", form, estate=estate, day="2026-03-09", kind="off",
                  reason="年会").status_code == 302
    with app.app_context():
        before = snapshot()
        form = open_form(admin, "/admin/calendar/new/")
        response = submit(admin, "/admin/calendar/new/", form, estate=estate, day="2026-03-09", kind="work",
                          reason="照常")
        assert response.status_code == 200
        assert "This site already has an override for 2026-03-09" in page(response)
        assert snapshot() == before


def test_cal_the_same_day_for_a_site_and_for_all_sites_may_coexist(app, admin, east):
    for estate in (east, "__None"):
        form = open_form(admin, "/admin/calendar/new/")
        assert submit(admin, "/admin/calendar/new/", form, estate=estate, day="2026-03-09", kind="off",
                      reason="年会").status_code == 302
    assert sorted(overrides(app), key=str) == sorted([(east, date(2026, 3, 9), "off"),
                                                      (None, date(2026, 3, 9), "off")], key=str)


def test_cal_admin_edits_and_deletes_an_override(app, admin, east):
    with app.app_context():
        row = override(date(2026, 3, 9), "off", db.session.get(Estate, east), "年会")
        db.session.commit()
        row_id = row.id
    form = open_form(admin, f"/admin/calendar/edit/?id={row_id}")
    assert submit(admin, f"/admin/calendar/edit/?id={row_id}", form, kind="work",
                  reason="改为上班").status_code == 302
    assert overrides(app) == [(east, date(2026, 3, 9), "work")]
    token = open_form(admin, "/admin/calendar/new/")["csrf_token"]
    assert admin.post("/admin/calendar/delete/", data={"id": row_id, "csrf_token": token}).status_code == 302
    assert overrides(app) == []


def test_cal_admin_deletes_selected_overrides_in_the_list(app, admin, east):
    """The list's bulk delete works on PostgreSQL too (ids arrive as text); junk ids select nothing."""
    with app.app_context():
        rows = [override(date(2026, 3, d), "off", None, "年会") for d in (9, 10, 11)]
        db.session.commit()
        ids = [r.id for r in rows]
    token = open_form(admin, "/admin/calendar/new/")["csrf_token"]
    response = admin.post("/admin/calendar/action/", data={"action": "delete", "rowid": [ids[0], ids[1], "x", "-3"],
                                                           "csrf_token": token})
    assert response.status_code == 302
    assert overrides(app) == [(None, date(2026, 3, 11), "off")]


def test_cal_admin_confirms_a_year_without_data(app, admin, east):
    form = open_form(admin, "/admin/calendar_year/new/")
    assert submit(admin, "/admin/calendar_year/new/", form, estate="__None", year=2027,
                  note="国务院办公厅关于2027年部分节假日安排的通知").status_code == 302
    body = page(admin.get("/admin/calendar/month/?month=2027-03"))
    assert 'id="calendar-month-table"' in body and "国务院办公厅关于2027年" in body
    with app.app_context():
        assert WorkingCalendar(east).is_working_day(date(2027, 3, 1))


@pytest.mark.parametrize(("year", "message"), [
    ("2026", "The holiday data already holds the make-up working days of 2026"),
    ("1999", "Enter a year between 2000 and 2100."),
    ("", "Enter a year between 2000 and 2100."),
    ("20x7", "Not a valid integer value."),
])
def test_cal_bad_year_confirmation_is_refused_and_nothing_is_written(app, admin, year, message):
    form = open_form(admin, "/admin/calendar_year/new/")
    with app.app_context():
        before = snapshot()
        response = submit(admin, "/admin/calendar_year/new/", form, estate="__None", year=year, note="通知")
        assert response.status_code == 200 and message in page(response)
        assert snapshot() == before


def test_cal_year_confirmed_twice_for_the_same_site_is_refused(app, admin):
    form = open_form(admin, "/admin/calendar_year/new/")
    assert submit(admin, "/admin/calendar_year/new/", form, estate="__None", year=2027,
                  note="通知").status_code == 302
    with app.app_context():
        before = snapshot()
        form = open_form(admin, "/admin/calendar_year/new/")
        response = submit(admin, "/admin/calendar_year/new/", form, estate="__None", year=2027, note="通知")
        assert response.status_code == 200 and "2027 is already confirmed for this site." in page(response)
        assert snapshot() == before


# --- no N+1 on the lists ---------------------------------------------------------------------------------
def grow_calendar(app, start: int, stop: int) -> None:  # type: ignore[no-untyped-def]
    """Rows ``start..stop-1``: a site each, with an override and a confirmed year of its own."""
    with app.app_context():
        for i in range(start, stop):
            estate = Estate(code=f"cal{i}", name=f"小区{i}", kind="residential")
            db.session.add_all([
                CalendarOverride(estate=estate, day=date(2026, 1, 1) + timedelta(days=i), kind="off",
                                 reason=f"原因 {i}"),
                CalendarYear(estate=estate, year=2030, note=f"通知 {i}")])
        db.session.commit()


def assert_calendar_list_constant(app, login_as, endpoint: str) -> None:  # type: ignore[no-untyped-def]
    """The statements one list page runs do not grow with its rows (shared with test_query_counts)."""
    from tests.test_query_counts import statements_for

    client = login_as("admin")
    counts, done = [], 0
    for size in (5, 40):
        grow_calendar(app, done, size)
        done = size
        statements, body = statements_for(app, client, f"/admin/{endpoint}/?page_size=100")
        assert body.count('<td class="col-estate">') == size
        counts.append(len(statements))
    assert counts[0] == counts[1], f"{endpoint}: statements per list page grow with the rows (N+1): {counts}"


@pytest.mark.parametrize("endpoint", ["calendar", "calendar_year"])
def test_cal_list_query_count_constant(app, login_as, endpoint):
    assert_calendar_list_constant(app, login_as, endpoint)
