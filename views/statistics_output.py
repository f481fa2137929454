"""The statistics report's outputs (CMP-7, VIS-5): labelled rows, SVG bar charts, the XLSX
workbook, the PDF report and its mail to the managers. The figures come from
``models.statistics``; nothing here counts anything.

Charts are server-side SVG with no script: the product runs offline, and the same SVG goes
into the PDF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import sqlalchemy as sa
from flask import current_app
from flask_babel import format_date
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from models.base import db
from models.staff import Department, Notification, Staff, StaffRole
from models.statistics import MONTH, Count, Period, Report
from security.cells import workbook_bytes, write_row
from views.deadlines import rate_rows

TARGET_LABELS = {"follow_up": _l("Complaint follow-up rate"),
                 "follow_up_processing": _l("Follow-up processing rate"),
                 "repair_satisfaction": _l("Repair satisfaction")}
NONE = _l("Not set")
FONT = "'Noto Sans CJK SC', 'Noto Sans CJK', sans-serif"


@dataclass
class Row:
    label: str
    n: int


def _labelled(counts: list[Count], labels: dict[Any, Any]) -> list[Row]:
    return [Row(str(labels.get(c.key, c.key)) if c.key is not None else str(NONE), c.n) for c in counts]


def period_title(period: Period) -> str:
    if period.kind == MONTH:
        return _("Month %(month)s", month=format_date(period.first, "yyyy-MM"))
    return _("Week %(first)s – %(last)s (Saturday)", first=format_date(period.first, "yyyy-MM-dd"),
             last=format_date(period.last, "yyyy-MM-dd"))


@dataclass
class Figures:
    """The report with every key turned into the words shown on screen, in the XLSX and the PDF."""

    report: Report
    title: str
    by_severity: list[Row]
    by_department: list[Row]
    by_category: list[Row]
    by_validity: list[Row]
    help_by_category: list[Row]
    on_time: list[dict[str, Any]]
    targets: list[dict[str, Any]]


def figures(report: Report) -> Figures:
    from models import complaint_rules as rules
    from models.help_requests import CATEGORIES as HELP_CATEGORIES

    departments = {d.id: str(d) for d in db.session.scalars(sa.select(Department))}
    on_time = []
    for row, ot in zip(rate_rows([o.as_rate() for o in report.on_time]), report.on_time, strict=True):
        on_time.append({"workflow": row.workflow, "rule": row.rule, "met": ot.met, "on_time": ot.on_time,
                        "open_overdue": ot.open_overdue, "rate": ot.rate})
    targets = [{"key": t.key, "label": str(TARGET_LABELS[t.key]), "done": t.done, "total": t.total,
                "rate": t.rate, "target": t.target, "meets": t.meets_target} for t in report.targets]
    return Figures(
        report=report, title=period_title(report.period),
        by_severity=_labelled(report.by_severity, rules.SEVERITIES),
        by_department=_labelled(report.by_department, departments),
        by_category=_labelled(report.by_category, rules.CATEGORIES),
        by_validity=_labelled(report.by_validity, rules.VALIDITY),
        help_by_category=_labelled(report.help_by_category, HELP_CATEGORIES),
        on_time=on_time, targets=targets)


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


# --- charts ------------------------------------------------------------------------------------------
def bar_svg(title: str, rows: list[Row], *, percent_axis: bool = False) -> Markup:
    """A bar chart as inline SVG, drawn here: no script, nothing fetched, labels escaped by
    ElementTree (they may be free text). pygal was tried: it hooks ``sys.meta_path`` globally and
    embeds a script with the labels in it."""
    width, height, left, top, bottom = 560, 280, 40, 36, 56
    plot_w, plot_h = width - left - 16, height - top - bottom
    top_value = 100 if percent_axis else max([r.n for r in rows] + [1])
    svg = ElementTree.Element("svg", {"xmlns": "http://www.w3.org/2000/svg", "viewBox": f"0 0 {width} {height}",
                                      "width": str(width), "height": str(height), "class": "stat-chart",
                                      "style": "max-width: 100%; height: auto",
                                      "role": "img", "font-family": FONT, "font-size": "14"})
    ElementTree.SubElement(svg, "title").text = title
    head = ElementTree.SubElement(svg, "text", {"x": str(width // 2), "y": "20", "text-anchor": "middle",
                                                "font-size": "17", "font-weight": "bold"})
    head.text = title
    base = top + plot_h
    ElementTree.SubElement(svg, "line", {"x1": str(left), "y1": str(base), "x2": str(left + plot_w),
                                         "y2": str(base), "stroke": "#333"})
    if not rows:
        empty = ElementTree.SubElement(svg, "text", {"x": str(width // 2), "y": str(top + plot_h // 2),
                                                     "text-anchor": "middle", "fill": "#888"})
        empty.text = _("No data")
    slot = plot_w / max(len(rows), 1)
    for i, r in enumerate(rows):
        h = plot_h * min(r.n, top_value) / top_value
        x = left + i * slot + slot * 0.15
        ElementTree.SubElement(svg, "rect", {"x": f"{x:.1f}", "y": f"{base - h:.1f}", "width": f"{slot * 0.7:.1f}",
                                             "height": f"{h:.1f}", "fill": "#2a6ebb"})
        value = ElementTree.SubElement(svg, "text", {"x": f"{x + slot * 0.35:.1f}", "y": f"{base - h - 4:.1f}",
                                                     "text-anchor": "middle"})
        value.text = f"{r.n}%" if percent_axis else str(r.n)
        label = ElementTree.SubElement(svg, "text", {"x": f"{x + slot * 0.35:.1f}", "y": str(base + 18),
                                                     "text-anchor": "middle"})
        label.text = r.label if len(r.label) <= 12 else r.label[:11] + "…"
    return Markup(ElementTree.tostring(svg, encoding="unicode"))


def charts(f: Figures) -> dict[str, Markup]:
    rates = [Row(t["label"], round(t["rate"] * 100)) for t in f.targets if t["rate"] is not None]
    return {
        "severity": bar_svg(_("Complaints by severity"), f.by_severity),
        "department": bar_svg(_("Complaints by department"), f.by_department),
        "category": bar_svg(_("Complaints by category"), f.by_category),
        "targets": bar_svg(_("Follow-up and satisfaction"), rates, percent_axis=True),
    }


# --- XLSX --------------------------------------------------------------------------------------------
def xlsx(f: Figures) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = _("Statistics")[:31]
    bold = Font(bold=True)

    def block(title: str, header: list[str], rows: list[list[Any]]) -> None:
        ws.append([])
        write_row(ws, [title])
        ws.cell(ws.max_row, 1).font = bold
        write_row(ws, header)
        for row in rows:
            write_row(ws, row)

    write_row(ws, [f.title])
    ws.cell(1, 1).font = Font(bold=True, size=14)
    write_row(ws, [_("Complaints"), f.report.complaints])
    write_row(ws, [_("Duplicates (counted once)"), f.report.duplicates])
    for title, rows in ((_("By severity"), f.by_severity), (_("By department"), f.by_department),
                        (_("By category"), f.by_category), (_("By validity"), f.by_validity),
                        (_("Help requests by category"), f.help_by_category)):
        block(title, [_("Item"), _("Count")], [[r.label, r.n] for r in rows])
    block(_("Targets"), [_("Item"), _("Done"), _("Total"), _("Rate"), _("Target")],
          [[t["label"], t["done"], t["total"], round(t["rate"], 4) if t["rate"] is not None else None,
            t["target"] / 100] for t in f.targets])
    block(_("On-time rate"), [_("Workflow"), _("Time limit"), _("Met"), _("On time"), _("Overdue, not met"),
                              _("On-time rate")],
          [[o["workflow"], o["rule"], o["met"], o["on_time"], o["open_overdue"],
            round(o["rate"], 4) if o["rate"] is not None else None] for o in f.on_time])
    for row in ws.iter_rows():
        for cell in row:
            if isinstance(cell.value, float):
                cell.number_format = "0.0%"
    ws.column_dimensions["A"].width = 36
    return workbook_bytes(wb)


# --- the PDF and the weekly mail ----------------------------------------------------------------------
def pdf(f: Figures) -> bytes:
    from views.printing import render_pdf

    return render_pdf("print/statistics.html", f=f, charts=charts(f), percent=percent)


def filename(f: Figures, ext: str) -> str:
    p = f.report.period
    return f"投诉统计-{p.first:%Y%m%d}-{p.last:%Y%m%d}.{ext}"


def managers() -> list[Staff]:
    return list(db.session.scalars(sa.select(Staff).join(StaffRole).where(
        Staff.active.is_(True), StaffRole.role == "manager").order_by(Staff.id)))


def send_report(to: list[str], subject: str, body: str, data: bytes, name: str) -> None:
    """One mail to the managers with the PDF attached; raises when the mail server fails."""
    from workflow.notify import deliver

    deliver(", ".join(to), subject, body, ((data, "application/pdf", name),), timeout=30)


def notify_managers(f: Figures) -> list[str]:
    """In-app notice to every active manager (CMP-7: reported to the manager), added to the session;
    returns the addresses to mail the PDF to once that is committed (none without SMTP)."""
    people = managers()
    subject, body = report_mail_text(f)
    for person in people:
        db.session.add(Notification(staff=person, subject=subject[:200], body=body))
    if not current_app.config.get("SMTP_HOST"):
        return []
    return [p.email for p in people if p.email]


def report_mail_text(f: Figures) -> tuple[str, str]:
    return (_("Complaint statistics: %(period)s", period=f.title),
            _("Complaints: %(n)s. The report is attached; the dashboard shows the details.", n=f.report.complaints))
