"""Item 7: finance's renovation deposit report (deposits held, refunds due and overdue), on screen and as
XLSX. Finance and the manager see it; every export is an audited event."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from models.base import db
from models.renovation import Renovation
from models.renovation_report import DepositReport, deposit_report
from security.cells import workbook_bytes, write_row
from views import printing
from views.base import SecureView
from views.templating import localtime
from workflow.audit import record_event

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MONEY = "#,##0.00"
READERS = frozenset({"finance", "manager"})


def xlsx(report: DepositReport) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = _("Renovation deposits")[:31]
    header = [_("No."), _("Unit"), _("Applicant"), _("Status"), _("Collected"), _("Refunded"), _("Held"),
              _("Fees (not refundable)"), _("Refund due by"), _("Overdue")]
    write_row(ws, [_("Renovation deposits"), localtime(report.at)])
    write_row(ws, header)
    for cell in ws[2]:
        cell.font = Font(bold=True)
    for r in report.rows:
        write_row(ws, [r.number, r.unit, r.applicant, Renovation.workflow.state_label(r.state),
                       r.collected, r.refunded, r.held, r.fees,
                       localtime(r.refund_due_at) if r.refund_due_at else "", _("Yes") if r.overdue else ""])
    write_row(ws, [_("Total"), "", "", "", report.total("collected"), report.total("refunded"),
                   report.total("held"), report.total("fees")])
    for row in ws.iter_rows(min_row=3, min_col=5, max_col=8):
        for cell in row:
            cell.number_format = MONEY
    return workbook_bytes(wb)


class DepositReportView(SecureView):
    permissions = {"view": READERS, "export": READERS}
    reauth_endpoints = frozenset({"export_xlsx"})  # ACC-5: the report names applicants

    @expose("/")
    def index(self) -> Any:
        return self.render("admin/renovation/deposits.html", report=deposit_report(),
                           state_label=Renovation.workflow.state_label)

    @expose("/export.xlsx")
    def export_xlsx(self) -> Any:
        report = deposit_report()
        name = f"renovation-deposits-{report.at:%Y%m%d}.xlsx"
        data = xlsx(report)
        record_event("export", record_type="renovation_deposits", comment=name)
        db.session.commit()
        response = Response(data, mimetype=XLSX)
        response.headers["Content-Disposition"] = printing.content_disposition(name, inline=False)
        return response


def register(admin: Admin, category: Any) -> None:
    admin.add_view(DepositReportView(name=_l("Renovation deposits"), endpoint="renovation_deposits",
                                     url="renovation-deposits", category=category))
