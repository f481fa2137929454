"""The statistics dashboard (CMP-7, VIS-5): complaints by severity, department and category,
on-time rates, follow-up and repair-satisfaction rates against their targets, per week (ending
Saturday) or month; exported to XLSX and a printable PDF, and sent weekly to the managers by
``flask statistics weekly --send``.

Supervisors and the manager see it (REGULATIONS §0); every export is an audited event.
"""

from __future__ import annotations

import smtplib

import click
from flask import Response, abort, request, url_for
from flask.cli import AppGroup
from flask_admin import Admin, expose
from flask_babel import lazy_gettext as _l

from models import statistics as stats
from models.base import db
from views import printing
from views import statistics_output as out
from views.base import SecureView
from views.roles import SUPERVISORS
from workflow import audit
from workflow.audit import record_event

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def chosen_period() -> stats.Period:
    """``?period=week|month&day=YYYY-MM-DD`` (any day in it); junk falls back to this week."""
    kind = request.args.get("period", stats.WEEK)
    kind = kind if kind in stats.KINDS else stats.WEEK
    day = printing.parse_day(request.args.get("day")) or stats.local_today()
    return stats.period_of(kind, day)


class StatisticsView(SecureView):
    permissions = {"view": SUPERVISORS, "export": SUPERVISORS}

    def _figures(self) -> out.Figures:
        return out.figures(stats.report(chosen_period()))

    def _exportable(self) -> out.Figures:
        if not self.allowed("export"):
            abort(403)
        return self._figures()

    def _link(self, endpoint: str, period: stats.Period) -> str:
        return url_for(f".{endpoint}", period=period.kind, day=period.first.isoformat())

    @expose("/")
    def index(self):  # type: ignore[no-untyped-def]
        f = self._figures()
        p = f.report.period
        return self.render("admin/statistics/index.html", f=f, charts=out.charts(f), percent=out.percent,
                           period=p, previous=self._link("index", p.previous()), next=self._link("index", p.next()),
                           xlsx=self._link("export_xlsx", p), pdf=self._link("report_pdf", p))

    @expose("/export.xlsx")
    def export_xlsx(self):  # type: ignore[no-untyped-def]
        f = self._exportable()
        data = out.xlsx(f)
        name = out.filename(f, "xlsx")
        record_event("export", record_type="statistics", comment=name)
        db.session.commit()
        response = Response(data, mimetype=XLSX)
        response.headers["Content-Disposition"] = printing.content_disposition(name, inline=False)
        return response

    @expose("/report.pdf")
    def report_pdf(self):  # type: ignore[no-untyped-def]
        f = self._exportable()
        data = out.pdf(f)
        name = out.filename(f, "pdf")
        record_event("print", record_type="statistics", comment=name)
        db.session.commit()
        return printing.pdf_response(data, name)


statistics_cli = AppGroup("statistics", help="Complaint statistics (CMP-7).")


@statistics_cli.command("weekly")
@click.option("--day", help="Any day of the week to report (YYYY-MM-DD); default: the week ending "
                            "on the latest Saturday, today included.")
@click.option("--send", is_flag=True, help="Mail the PDF to the active managers (when SMTP is set).")
@click.option("--output", type=click.Path(dir_okay=False, writable=True), help="Also write the PDF here.")
def weekly_command(day: str | None, send: bool, output: str | None) -> None:
    """Build the weekly report (CMP-7: every Saturday, reported to the manager)."""
    parsed = printing.parse_day(day) if day else None
    if day and parsed is None:
        raise click.BadParameter(str(_l("Enter the day as a date (YYYY-MM-DD).")), param_hint="--day")
    period = stats.week_of(parsed) if parsed else stats.last_week()
    audit.set_actor(db.session(), None, "system")
    f = out.figures(stats.report(period))
    data = out.pdf(f)
    if output:
        with open(output, "wb") as fh:
            fh.write(data)
    addresses = out.notify_managers(f) if send else []
    record_event("export", record_type="statistics",
                 comment=f"{out.filename(f, 'pdf')} sent={int(send)} mailed={len(addresses)}")
    db.session.commit()  # the notices and the audit row stand even if the mail server is down
    if addresses:
        subject, body = out.report_mail_text(f)
        try:
            out.send_report(addresses, subject, body, data, out.filename(f, "pdf"))
        except (OSError, smtplib.SMTPException) as exc:
            raise click.ClickException(f"mail to {', '.join(addresses)} failed: {exc}") from exc
    click.echo(f"{f.title}: complaints={f.report.complaints} mailed={len(addresses)}")


def register(admin: Admin) -> None:
    """Adds this regulation's screens (and the weekly report command)."""
    admin.add_view(StatisticsView(name=_l("Statistics"), endpoint="statistics", url="statistics",
                                  category=_l("Service desk")))
    printing.register(admin)
    admin.app.cli.add_command(statistics_cli)
