"""Printable forms as PDF (issue 5 part 5): the complaint record sheet 《住户投诉意见表》, the
written reply to a written complaint 《投诉答复函》 (CMP-9), the help register 《住户求助登记表》,
plus the PDF machinery the statistics report uses.

WeasyPrint lays out an HTML template (templates/print/) on A4 with the Noto CJK fonts of the
system (``scripts/system-deps.sh`` installs fonts-noto-cjk); it may fetch nothing but ``data:``
URLs, so no record text can make it read a file or call the network. Printing shows a record
as its details page does, so it is allowed exactly when that screen would show it (the record's
own view decides, scope included) and it is audited like an export (action "print").
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote

from flask import (
    Response,
    abort,
    current_app,
    flash,
    has_request_context,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_admin import Admin, expose
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from models.base import db, utcnow
from models.visits import visits_of
from security.auth import recently_reauthenticated
from views.base import SecureView
from views.roles import BUSINESS
from workflow.audit import record_event
from workflow.calendar import app_zone

PDF = "application/pdf"
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)
REGISTER_MAX_DAYS = 366  # one register sheet covers at most a year (HLP-6 archives it yearly)


def render_pdf(template_name: str, **context: Any) -> bytes:
    """The template rendered as an A4 PDF with embedded (subset) CJK fonts."""
    return html_to_pdf(render_template(template_name, printed_at=utcnow(), **print_helpers(), **context))


def html_to_pdf(html: str) -> bytes:
    """Lay out ``html``; only ``data:`` URLs are read (inline SVG charts), never a file or the network."""
    from weasyprint import HTML, URLFetcher

    fetcher = URLFetcher(allowed_protocols={"data"})  # anything else is skipped (and logged)
    return HTML(string=html, url_fetcher=fetcher, base_url="data:,").write_pdf()


def content_disposition(filename: str, inline: bool = True) -> str:
    """RFC 6266/5987: an ASCII fallback name plus the UTF-8 (Chinese) name in ``filename*``."""
    fallback = filename.encode("ascii", "ignore").decode().strip() or "document.pdf"
    fallback = "".join(c if c.isalnum() or c in "._-" else "_" for c in fallback)
    if "." not in fallback.strip("._-"):
        fallback = "document" + filename[filename.rfind("."):] if "." in filename else "document"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def pdf_response(data: bytes, filename: str, inline: bool = True) -> Response:
    response = Response(data, mimetype=PDF)
    response.headers["Content-Disposition"] = content_disposition(filename, inline)
    response.headers["Cache-Control"] = "no-store"  # personal data: not kept by browsers or proxies
    return response


def printed(record: Any, template_name: str, filename: str, **context: Any) -> Response:
    """A record's printed form: rendered, audited like an export (action "print"), sent. The caller
    has fetched ``record`` through its screen's ``get_one``, so the screen's scope decides."""
    data = render_pdf(template_name, **context)
    record_event("print", record=record, comment=filename)
    db.session.commit()
    return pdf_response(data, filename)


def admin_view(endpoint: str) -> Any:
    """The registered screen of a record type: its permissions and scope decide who may print."""
    for admin in current_app.extensions.get("admin", []):
        for view in admin._views:
            if getattr(view, "endpoint", None) == endpoint:
                return view
    return None


def local_day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=app_zone())


def parse_day(value: str | None) -> date | None:
    """A typed ISO date within the years the product can mean (no overflow at the edges of ``date``)."""
    try:
        day = date.fromisoformat((value or "").strip())
    except ValueError:
        return None
    return day if FIRST_DAY <= day <= LAST_DAY else None


def complaint_steps(record: Any) -> list[dict[str, Any]]:
    """Who fired which step when, from the audit trail (the one place that knows it for sure)."""
    from views.audit import timeline_for, transition_label

    return [{"label": transition_label(e), "at": e.at, "by": e.actor_name or "", "comment": e.comment or ""}
            for e in timeline_for(record) if e.action == "transition"]


class PrintView(SecureView):
    """/admin/print/: a page with the help register's date range, and the PDF endpoints."""

    permissions = {"view": BUSINESS}

    def is_visible(self) -> bool:
        target = admin_view("help_request")
        return bool(target is not None and target.is_accessible() and target.allowed("view"))

    def _target(self, endpoint: str) -> Any:
        target = admin_view(endpoint)
        if target is None or not target.is_accessible() or not target.allowed("view"):
            abort(403)
        return target

    @expose("/")
    def index(self):  # type: ignore[no-untyped-def]
        self._target("help_request")
        today = utcnow().astimezone(app_zone()).date()
        return self.render("admin/statistics/print_index.html", start=today.replace(day=1), end=today)

    @expose("/complaint/<int:id>.pdf")
    def complaint(self, id: int):  # type: ignore[no-untyped-def]
        record = self._target("complaint").get_one(id)
        if record is None:
            abort(404)
        return printed(record, "print/complaint.html", f"住户投诉意见表-{record.number or record.id}.pdf",
                       c=record, steps=complaint_steps(record), visits=visits_of(record))

    @expose("/complaint/<int:id>/reply.pdf")
    def complaint_reply(self, id: int):  # type: ignore[no-untyped-def]
        """CMP-9: the written reply 《投诉答复函》 on the firm's letterhead."""
        record = self._target("complaint").get_one(id)
        if record is None or record.reply_recorded_at is None:
            abort(404)
        return printed(record, "print/complaint_reply.html", f"投诉答复函-{record.number or record.id}.pdf",
                       c=record, firm=current_app.config.get("FIRM_NAME", ""), estate=_estate_of(record))

    @expose("/help-register.pdf")
    def help_register(self):  # type: ignore[no-untyped-def]
        target = self._target("help_request")
        start, end = parse_day(request.args.get("start")), parse_day(request.args.get("end"))
        error = None
        if start is None or end is None:
            error = _l("Enter the first and the last day as dates (YYYY-MM-DD).")
        elif end < start:
            error = _l("The last day is before the first day.")
        elif (end - start).days >= REGISTER_MAX_DAYS:
            error = _l("A register covers at most %(n)s days.", n=REGISTER_MAX_DAYS)
        if error is not None:
            flash(str(error), "error")
            return self.render("admin/statistics/print_index.html", start=start, end=end), 400
        if not recently_reauthenticated():  # ACC-5: a register of names is an export of personal data
            return redirect(url_for("auth.reauth", next=request.full_path.rstrip("?")))
        rows = _help_requests(target, start, end)
        filename = f"住户求助登记表-{start:%Y%m%d}-{end:%Y%m%d}.pdf"
        data = render_pdf("print/help_register.html", rows=rows, start=start, end=end)
        record_event("print", record_type="help_request", comment=f"{filename} ({len(rows)})")
        db.session.commit()
        return pdf_response(data, filename)


def _estate_of(record: Any) -> Any:
    unit = getattr(record, "unit", None)
    building = getattr(unit, "building", None)
    return getattr(building, "estate", None)


def _help_requests(target: Any, start: date, end: date) -> list[Any]:
    """The register's rows: what the help-request list would show this user, received in the days."""
    from models.help_requests import HelpRequest

    begin, finish = local_day_start(start), local_day_start(end + timedelta(days=1))
    query = target.get_query().filter(HelpRequest.received_at >= begin, HelpRequest.received_at < finish,
                                      HelpRequest.deleted_at.is_(None))
    return list(query.order_by(HelpRequest.received_at, HelpRequest.id))


def printed_by() -> str:
    """Who printed: the signed-in user; nobody for a command (no request, ``current_user`` is None)."""
    user = current_user if has_request_context() else None
    return user.full_name if user is not None and user.is_authenticated else ""


def state_label(record: Any) -> str:
    return record.workflow.state_label(record.state)


def label(mapping: dict[str, Any], key: Any) -> str:
    return str(mapping.get(key, key)) if key is not None else ""


def yes_no(value: bool | None) -> str:
    return "" if value is None else str(_l("Yes") if value else _l("No"))


def print_helpers() -> dict[str, Any]:
    """What the print templates use to turn keys into words (the regulation modules' own labels)."""
    from models import complaint_rules
    from security.crypto import mask

    return {"channels": complaint_rules.CHANNELS, "categories": complaint_rules.CATEGORIES,
            "severities": complaint_rules.SEVERITIES, "validity": complaint_rules.VALIDITY,
            "state_label": state_label, "label": label, "yes_no": yes_no, "masked": lambda v: mask(v, 3, 4)}


def register(admin: Admin) -> None:
    admin.add_view(PrintView(name=_l("Print forms"), endpoint="print", url="print", category=_l("Service desk")))
    admin.app.jinja_env.globals.update(printed_by=printed_by)
