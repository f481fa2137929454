"""The statistics dashboard, its XLSX and PDF exports and the weekly report (CMP-7, VIS-5).

Figures are checked on crafted data: duplicates counted once, deleted records not at all, the
week's edge at Saturday 23:59 / Sunday 00:00 Beijing time, rates against their targets.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from pypdf import PdfReader

from models import AuditEntry, db
from models import statistics as stats
from models.deadline import DeadlineClock
from models.staff import Department, Notification, Staff
from tests.helpers import make_complaint, make_help_request, make_repair_order, make_unit, make_visit
from tests.test_mail import Inbox, inbox  # noqa: F401  (the real SMTP server fixture)
from workflow import settings

# Week of Sunday 2026-11-15 .. Saturday 2026-11-21 (Beijing); UTC+8 all year.
SAT_2359 = datetime(2026, 11, 21, 15, 59, tzinfo=UTC)  # Saturday 23:59 Beijing
SUN_0000 = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)  # Sunday 00:00 Beijing: the next week
WEEK = stats.week_of(date(2026, 11, 18))
NEXT_WEEK = stats.week_of(date(2026, 11, 22))


def pdf_text(data: bytes) -> str:
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def pdf_fonts(data: bytes) -> set[str]:
    fonts = set()
    for page in PdfReader(io.BytesIO(data)).pages:
        for ref in page["/Resources"]["/Font"].values():
            fonts.add(str(ref.get_object()["/BaseFont"]))
    return fonts


def dept(key: str) -> Department:
    return db.session.scalar(sa.select(Department).where(Department.key == key))


def craft(db_session):  # type: ignore[no-untyped-def]
    """Complaints of the week, one duplicate, one deleted, one of the next week."""
    unit = make_unit()
    eng, cs = dept("engineering"), dept("cs")
    a = make_complaint(unit=unit, received_at=SAT_2359 - timedelta(days=2), severity="major", category="repair",
                       department_id=eng.id)
    make_complaint(unit=unit, received_at=SAT_2359 - timedelta(days=1), severity="minor", category="cleaning",
                   department_id=cs.id)
    make_complaint(unit=unit, received_at=SAT_2359, severity="minor", category="cleaning", department_id=cs.id)
    # CMP-6: the same problem to another department, linked: counted once (through ``a``).
    make_complaint(unit=unit, received_at=SAT_2359 - timedelta(hours=3), severity="major", category="repair",
                   department_id=cs.id, duplicate_of_id=a.id)
    make_complaint(unit=unit, received_at=SAT_2359 - timedelta(hours=5), severity="important",
                   category="fees", deleted_at=SAT_2359)
    make_complaint(unit=unit, received_at=SUN_0000, severity="important", category="fees", department_id=eng.id)
    db_session.commit()
    return a


def counts(rows: list[stats.Count]) -> dict:
    return {c.key: c.n for c in rows}


# --- periods ---------------------------------------------------------------------------------------
def test_cmp_7_week_ends_on_saturday_beijing_time(app):
    with app.app_context():
        assert WEEK.first == date(2026, 11, 15) and WEEK.last == date(2026, 11, 21)
        assert WEEK.first.weekday() == 6 and WEEK.last.weekday() == 5  # Sunday .. Saturday
        assert WEEK.start == datetime(2026, 11, 14, 16, 0, tzinfo=UTC)
        assert WEEK.end == SUN_0000 and WEEK.start <= SAT_2359 < WEEK.end
        assert stats.week_of(date(2026, 11, 21)) == WEEK == stats.week_of(date(2026, 11, 15))
        assert WEEK.next() == NEXT_WEEK and NEXT_WEEK.previous() == WEEK
        # The weekly report: on Saturday this week; from Sunday on, the week that ended on Saturday.
        assert stats.last_week(SAT_2359) == WEEK
        assert stats.last_week(SUN_0000) == WEEK
        assert stats.last_week(SUN_0000 + timedelta(days=5, hours=23)) == WEEK  # Friday 23:00 Beijing
        assert stats.last_week(SUN_0000 + timedelta(days=6)) == NEXT_WEEK  # Saturday 00:00 Beijing
        month = stats.month_of(date(2026, 2, 10))
        assert (month.first, month.last) == (date(2026, 2, 1), date(2026, 2, 28))
        assert stats.month_of(date(2026, 12, 31)).next().first == date(2027, 1, 1)


def test_cmp_7_counts_by_severity_department_category_duplicates_once(app, db_session):
    craft(db_session)
    report = stats.report(WEEK)
    assert report.complaints == 3  # not the duplicate, not the deleted one, not Sunday's
    assert report.duplicates == 1
    assert counts(report.by_severity) == {"major": 1, "minor": 2}
    assert [c.key for c in report.by_severity] == ["major", "minor"]  # the regulation's order
    assert counts(report.by_department) == {dept("engineering").id: 1, dept("cs").id: 2}
    assert counts(report.by_category) == {"repair": 1, "cleaning": 2}
    assert counts(report.by_validity) == {"valid": 3}
    # Saturday 23:59 belongs to this week, Sunday 00:00 to the next.
    following = stats.report(NEXT_WEEK)
    assert following.complaints == 1 and counts(following.by_severity) == {"important": 1}
    assert stats.report(stats.month_of(date(2026, 11, 1))).complaints == 4


def test_cmp_7_on_time_rate_per_rule_from_clocks(app, db_session):
    """Met on time / (met + fell due and still not met); clocks met outside the period, of deleted
    records or of duplicates (CMP-6) do not count."""
    period = stats.week_of(date(2026, 10, 14))  # 2026-10-11 .. 10-17: no other data
    start = period.start
    unit = make_unit()
    original = make_complaint(unit=unit)
    duplicate = make_complaint(unit=unit, duplicate_of_id=original.id)

    def clock(due: timedelta, met: timedelta | None, is_open: bool = False, name: str = "probe",
              record=None) -> None:  # type: ignore[no-untyped-def]
        record = record or make_help_request()
        db.session.add(DeadlineClock(
            record_type=record.__tablename__, record_id=record.id, name=name, unit="minutes", amount=5,
            start_at=start, due_at=start + due, met_at=start + met if met is not None else None, is_open=is_open))

    clock(timedelta(days=1), timedelta(hours=20))  # on time
    clock(timedelta(days=1), timedelta(hours=23, minutes=59))  # on time
    clock(timedelta(days=1), timedelta(days=2))  # late
    clock(timedelta(days=2), None, is_open=True)  # fell due in the period, still not met
    clock(timedelta(days=-3), timedelta(hours=-1))  # met before the period
    clock(timedelta(days=9), timedelta(days=8))  # met after the period
    clock(timedelta(days=1), timedelta(hours=1), record=make_help_request(deleted_at=start))  # deleted
    clock(timedelta(days=1), timedelta(hours=1), name="probe_c", record=original)
    clock(timedelta(days=1), timedelta(days=3), name="probe_c", record=duplicate)  # counted once: not at all
    db.session.commit()
    rows = {(o.record_type, o.name): o for o in stats.on_time(period)}
    reply = rows[("help_request", "probe")]
    assert (reply.met, reply.on_time, reply.open_overdue) == (3, 2, 1)
    assert reply.rate == pytest.approx(2 / 4)
    complaint = rows[("complaint", "probe_c")]
    assert (complaint.met, complaint.on_time, complaint.rate) == (1, 1, 1.0)
    assert set(rows) == {("help_request", "probe"), ("complaint", "probe_c")}


def set_state(record, state: str) -> None:  # type: ignore[no-untyped-def]
    """Crafted history: the figures read columns, not how the record got there (the engine alone
    writes ``state`` through the ORM, so the crafting goes around it with a plain UPDATE)."""
    table = type(record).__table__
    db.session.execute(table.update().where(table.c.id == record.id).values(state=state))


def craft_rates(db_session, unit=None) -> None:  # type: ignore[no-untyped-def]
    """25 complaints handled in the week, 24 followed up (96 %); 3 repairs rated, 2 satisfied (67 %)."""
    unit = unit or make_unit()
    handled = SAT_2359 - timedelta(days=3)
    for i in range(25):
        c = make_complaint(unit=unit, received_at=handled - timedelta(days=1), handled_at=handled)
        if i:
            visit = make_visit(kind="complaint", complaint_id=c.id, visited_at=handled + timedelta(days=1),
                               opinion="满意")
            set_state(visit, "recorded")
    for satisfaction in ("very_satisfied", "satisfied", "dissatisfied"):
        make_repair_order(completed_at=handled, satisfaction=satisfaction)
    db_session.commit()


def test_vis_5_rates_against_targets(app, db_session):
    craft_rates(db_session)
    targets = {t.key: t for t in stats.report(WEEK).targets}
    follow_up = targets["follow_up"]
    assert (follow_up.done, follow_up.total, follow_up.target) == (24, 25, 96)
    assert follow_up.meets_target is True  # 96 % meets "≥ 96 %"
    satisfaction = targets["repair_satisfaction"]
    assert (satisfaction.done, satisfaction.total, satisfaction.target) == (2, 3, 98)
    assert satisfaction.meets_target is False
    processing = targets["follow_up_processing"]
    assert processing.target == 100 and processing.total == 0 and processing.meets_target is None
    # The firm tunes a target in the settings (audited there); the dashboard follows.
    settings.change(stats.TARGET_SATISFACTION.key, "60", None)
    db_session.commit()
    assert {t.key: t for t in stats.report(WEEK).targets}["repair_satisfaction"].meets_target is True


def test_vis_5_dashboard_shows_targets_red_and_green(app, db_session, login_as):
    craft_rates(db_session)
    html = login_as("manager").get("/admin/statistics/?period=week&day=2026-11-18").get_data(as_text=True)
    assert 'id="target-follow_up" data-meets="yes"' in html
    assert 'id="target-repair_satisfaction" data-meets="no"' in html
    assert 'id="target-follow_up_processing" data-meets="none"' in html
    assert "≥ 96%" in html and "≥ 98%" in html and "≥ 100%" in html
    assert "text-danger" in html and "text-success" in html
    assert "96.0%" in html and "66.7%" in html


def test_cmp_7_dashboard_weekly_and_monthly_with_svg_charts(app, db_session, login_as):
    craft(db_session)
    client = login_as("cs_supervisor")
    week = client.get("/admin/statistics/?period=week&day=2026-11-17")
    assert week.status_code == 200
    html = week.get_data(as_text=True)
    assert 'id="complaint-total">3<' in html and 'id="duplicate-total">1<' in html
    assert "2026-11-15" in html and "2026-11-21" in html
    svgs = [p.split("</svg>")[0] for p in html.split("<svg")[1:]]
    assert len(svgs) >= 4
    for svg in svgs:  # server-drawn, no script, nothing fetched (the product runs offline)
        assert "<script" not in svg and "https://" not in svg
        assert "http://" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert sum("<rect" in svg for svg in svgs) == 3  # the targets chart has no data this week
    month = client.get("/admin/statistics/?period=month&day=2026-11-30").get_data(as_text=True)
    assert 'id="complaint-total">4<' in month
    # Junk input falls back to this week rather than failing.
    assert client.get("/admin/statistics/?period=year&day=junk").status_code == 200
    assert client.get("/admin/statistics/?day=99999-01-01").status_code == 200


@pytest.mark.parametrize("role", ["cs_clerk", "engineering", "security", "finance", "management_dept", "admin"])
def test_cmp_7_statistics_only_for_supervisors_and_manager(app, db_session, login_as, role):
    client = login_as(role)
    for url in ("/admin/statistics/", "/admin/statistics/export.xlsx", "/admin/statistics/report.pdf"):
        assert client.get(url).status_code == 403, url
    assert 'href="/admin/statistics/"' not in client.get("/admin/").get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
        AuditEntry.record_type == "statistics")) == 0


def test_cmp_7_statistics_anonymous_goes_to_login(app, staff_ids):
    response = app.test_client().get("/admin/statistics/export.xlsx")
    assert response.status_code == 302 and "/login" in response.location


def test_cmp_7_xlsx_export_has_the_figures_and_is_audited(app, db_session, login_as):
    craft(db_session)
    response = login_as("manager").get("/admin/statistics/export.xlsx?period=week&day=2026-11-21")
    assert response.status_code == 200
    assert response.mimetype.endswith("spreadsheetml.sheet")
    assert "filename*=UTF-8''%E6%8A%95%E8%AF%89%E7%BB%9F%E8%AE%A1-20261115-20261121.xlsx" in \
        response.headers["Content-Disposition"]
    ws = load_workbook(io.BytesIO(response.data)).active
    rows = [[c for c in row] for row in ws.iter_rows(values_only=True)]
    flat = {(r[0], r[1]) for r in rows if r and len(r) > 1}
    assert ("Complaints", 3) in flat or ("投诉", 3) in flat
    values = [r[:2] for r in rows if r and r[0] is not None]
    numbers = [v[1] for v in values if isinstance(v[1], int)]
    assert numbers[:2] == [3, 1]  # complaints, duplicates
    assert any(str(v[0]) in ("Major", "重大") and v[1] == 1 for v in values)
    assert any(str(v[0]) in ("Minor", "轻微") and v[1] == 2 for v in values)
    assert any(str(v[0]) in ("Cleaning and greening", "清洁绿化") and v[1] == 2 for v in values)  # labels, not keys
    event = db.session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "export",
                                                          AuditEntry.record_type == "statistics"))
    assert event is not None and event.actor_name == "manager" and "20261115" in event.comment


def test_cmp_7_chart_labels_are_escaped_and_scriptless(app):
    from views.statistics_output import Row, bar_svg

    with app.test_request_context():
        svg = str(bar_svg("t", [Row("</script><script>alert(1)</script>", 1)]))
    assert "<script" not in svg and "&lt;/script&gt;" in svg


def test_cmp_7_xlsx_text_is_never_a_formula(app, db_session, login_as):
    from security.cells import neutralise

    assert neutralise("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")" and neutralise("-1") == "'-1"
    assert neutralise(5) == 5


def test_cmp_7_pdf_report_chinese_font_embedded_and_audited(app, db_session, login_as):
    craft(db_session)
    response = login_as("cs_supervisor").get("/admin/statistics/report.pdf?period=week&day=2026-11-21")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF")
    assert "filename*=UTF-8''" in response.headers["Content-Disposition"]
    text = pdf_text(response.data)
    assert "2026-11-15" in text and "2026-11-21" in text
    assert any("CJK" in f for f in pdf_fonts(response.data)), pdf_fonts(response.data)
    assert "客服中心" in text and "工程部" in text  # the departments' Chinese names
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
        AuditEntry.action == "print", AuditEntry.record_type == "statistics")) == 1


# --- the weekly report to the manager (CLI) ---------------------------------------------------------
def test_cmp_7_weekly_command_mails_the_pdf_to_active_managers(app, db_session, runner, inbox: Inbox):  # noqa: F811
    craft(db_session)
    manager = db.session.scalar(sa.select(Staff).where(Staff.username == "manager"))
    manager.email = "manager@example.com"
    other = db.session.scalar(sa.select(Staff).where(Staff.username == "supervisor"))
    other.email = "supervisor@example.com"  # not a manager: no report
    db_session.commit()
    result = runner.invoke(args=["statistics", "weekly", "--day", "2026-11-19", "--send"])
    assert result.exit_code == 0, result.output
    assert "complaints=3" in result.output and "mailed=1" in result.output
    mails: list[EmailMessage] = inbox.to("manager@example.com")
    assert len(mails) == 1 and not inbox.to("supervisor@example.com")
    attachment = next(mails[0].iter_attachments())
    data = attachment.get_payload(decode=True)
    assert attachment.get_content_type() == "application/pdf" and data.startswith(b"%PDF")
    assert "2026-11-15" in pdf_text(data)
    assert "20261121" in attachment.get_filename()
    note = db.session.scalar(sa.select(Notification).where(Notification.staff_id == manager.id))
    assert note is not None and "2026-11-15" in note.subject
    assert db.session.scalar(sa.select(AuditEntry).where(AuditEntry.record_type == "statistics",
                                                         AuditEntry.action == "export")) is not None


def test_cmp_7_weekly_command_mail_failure_keeps_the_notice(app, db_session, runner, monkeypatch):
    from tests.test_mail import free_port

    manager = db.session.scalar(sa.select(Staff).where(Staff.username == "manager"))
    manager.email = "manager@example.com"
    db_session.commit()
    monkeypatch.setitem(app.config, "SMTP_HOST", "127.0.0.1")
    monkeypatch.setitem(app.config, "SMTP_PORT", free_port())  # nobody listens there
    result = runner.invoke(args=["statistics", "weekly", "--send"])
    assert result.exit_code == 1 and "failed" in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification).where(
        Notification.staff_id == manager.id)) == 1


def test_cmp_7_weekly_command_without_send_mails_nothing(app, db_session, runner, inbox: Inbox, tmp_path):  # noqa: F811
    manager = db.session.scalar(sa.select(Staff).where(Staff.username == "manager"))
    manager.email = "manager@example.com"
    db_session.commit()
    out = tmp_path / "weekly.pdf"
    result = runner.invoke(args=["statistics", "weekly", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF") and not inbox.messages
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 0
    bad = runner.invoke(args=["statistics", "weekly", "--day", "not-a-day"])
    assert bad.exit_code != 0
