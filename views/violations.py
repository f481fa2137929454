"""Violation screens (住户违章处理, REGULATIONS §8): the desk registers the record sheet
《住户违章事件记录表》 (VIO-3), the engine moves it through the measures; the printed notices
(违章通知书, 最后警告书, 停水停电通知书) and the month-end deduction list for finance (VIO-8).

The printed notices take a Violation: renovation's REN-5 written notice and final warning are
violations of kind "renovation" (models.violations.new_from_renovation) and print from here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import Response, abort, flash, redirect, request
from flask_admin import Admin, expose
from flask_admin.contrib.sqla import filters
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import HiddenField, fields
from wtforms.fields import FileField
from wtforms.validators import DataRequired

from models import db
from models import violation_rules as rules
from models.attachment import attachments_of, store
from models.base import utcnow
from models.validators import DomainError
from models.violations import Violation, ViolationAction, ViolationCharge, deduction_list
from security.cells import workbook_bytes, write_row
from views import attachments
from views.base import SecureView
from views.fields import LocalDateTimeField
from views.params import record_id
from views.printing import printed
from views.roles import BUSINESS, FRONT_DESK, SUPERVISORS
from views.workflow import WorkflowModelView, state_filter
from workflow.audit import record_event
from workflow.calendar import app_zone

FINANCE = frozenset({"finance", "manager"})
NOTICES = {  # endpoint → (template, the form's own name printed on it)
    "notice": ("print/violation_notice.html", "违章通知书"),
    "final_warning": ("print/violation_final_warning.html", "最后警告书"),
    "cut_notice": ("print/violation_cut_notice.html", "停水停电通知书"),
}


def _label(mapping: dict[str, Any]) -> Any:
    return lambda v, c, m, n: mapping.get(getattr(m, n), getattr(m, n) or "")


class EvidenceForm(FlaskForm):
    id = HiddenField(validators=[DataRequired()])
    file = FileField()


class ViolationView(WorkflowModelView):
    permissions = {"view": BUSINESS, "create": FRONT_DESK, "edit": FRONT_DESK, "export": SUPERVISORS}
    column_list = ["sheet_no", "occurred_at", "unit", "kind", "severity", "responsible_role", "state", "due_at"]
    column_details_list = [
        "sheet_no", "sheet_issued_at", "kind", "sub_kind", "severity", "economic_loss", "public_safety",
        "responsible_role", "unit", "resident", "occurred_at", "location", "description", "witness",
        "persuasion_notes", "persuaded_at", "persuaded_by", "renovation", "rectify_by", "compensation_amount",
        "committee_support", "mediation_result", "mediation_failed_at", "cut_reason", "utility", "covenant_clause",
        "cut_notice_at", "cut_planned_at", "cut_decided_at", "second_notice_at", "cut_at", "restored_at",
        "arrears_level", "late_fee_amount", "penalised_at", "follow_up_notes", "followed_up_at", "outcome_notes",
        "state", "due_at", "closed_at"]
    column_export_list = ["sheet_no", "occurred_at", "unit", "resident", "kind", "sub_kind", "severity",
                          "location", "description", "state", "closed_at"]
    form_columns = ["occurred_at", "unit", "resident", "location", "kind", "sub_kind", "description", "witness",
                    "economic_loss", "public_safety", "severity"]
    column_searchable_list = ["sheet_no", "description", "location"]
    column_sortable_list = ["sheet_no", "occurred_at", "due_at", "severity"]
    column_default_sort = ("occurred_at", True)
    column_labels = {
        "sheet_no": _l("Coordination sheet no."), "sheet_issued_at": _l("Sheet issued at"), "kind": _l("Kind"),
        "sub_kind": _l("Sub-kind"), "severity": _l("Severity"), "economic_loss": _l("Caused economic loss"),
        "public_safety": _l("Threatened public safety"), "responsible_role": _l("Handled by"),
        "unit": _l("Unit"), "resident": _l("Resident"), "occurred_at": _l("Happened at"), "location": _l("Where"),
        "description": _l("What happened"), "witness": _l("Witnesses / staff present"),
        "persuasion_notes": _l("How the resident was persuaded"), "persuaded_at": _l("Persuaded at"),
        "persuaded_by": _l("Persuaded by"), "renovation": _l("Renovation"),
        "rectify_by": _l("Rectify by"), "compensation_amount": _l("Compensation (yuan)"),
        "committee_support": _l("Owners' committee support"),
        "mediation_result": _l("Result of the owners' committee mediation"),
        "mediation_failed_at": _l("Mediation failed at"), "cut_reason": _l("Reason for the cut"),
        "utility": _l("What is cut"), "covenant_clause": _l("Clause of the owners' covenant"),
        "cut_notice_at": _l("Written notice given at"), "cut_planned_at": _l("Cut planned at"),
        "cut_decided_at": _l("Cut decided at"), "second_notice_at": _l("Second notice at"), "cut_at": _l("Cut at"),
        "restored_at": _l("Restored at"), "arrears_level": _l("Arrears steps taken"),
        "late_fee_amount": _l("Late fee (yuan)"), "penalised_at": _l("Last penalty effective at"),
        "follow_up_notes": _l("Follow-up with the resident"), "followed_up_at": _l("Followed up at"),
        "outcome_notes": _l("Outcome"), "state": _l("Status"), "due_at": _l("Due"), "closed_at": _l("Closed at"),
        "unit_id": _l("Unit"), "resident_id": _l("Resident"), "renovation_id": _l("Renovation"),
        "persuaded_by_id": _l("Persuaded by"), "measure_level": _l("Measures taken"),
        "arrears_notes": _l("What was sent or done"),
    }
    column_descriptions = {
        "severity": rules.SEVERITY_HELP,
        "sub_kind": _l("Must belong to the kind chosen (VIO-1)."),
    }
    form_overrides = {"kind": fields.SelectField, "sub_kind": fields.SelectField, "severity": fields.SelectField,
                      "occurred_at": LocalDateTimeField}
    form_args = {
        "kind": {"choices": list(rules.KINDS.items())},
        "sub_kind": {"choices": [("", "—"), *rules.ALL_SUB_KINDS.items()]},
        "severity": {"choices": list(rules.SEVERITIES.items()), "default": "general"},
        "occurred_at": {"default": utcnow, "validators": [DataRequired()]},
    }
    form_ajax_refs = {"unit": {"fields": ["code"], "page_size": 20},
                      "resident": {"fields": ["name"], "page_size": 20}}
    details_template = "admin/violations/details.html"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [
            state_filter(Violation),
            filters.FilterEqual(Violation.severity, _l("Severity"), options=list(rules.SEVERITIES.items())),
            filters.FilterEqual(Violation.kind, _l("Kind"), options=list(rules.KINDS.items())),
        ]
        super().__init__(*args, **kwargs)
        roles = {"manager": _l("Manager"), "cs_supervisor": _l("Supervisor")}
        labels = {"kind": _label(rules.KINDS), "sub_kind": _label(rules.ALL_SUB_KINDS),
                  "severity": _label(rules.SEVERITIES), "responsible_role": _label(roles),
                  "cut_reason": _label(rules.CUT_REASONS), "utility": _label(rules.UTILITIES)}
        self.column_formatters = {**self.column_formatters, **labels}
        self.column_formatters_detail = {**self.column_formatters_detail, **labels}
        self.column_formatters_export = {**self.column_formatters_export, **labels}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(Violation.unit), db.joinedload(Violation.resident))

    def get_details_query(self) -> Any:
        return self.get_query().options(db.selectinload(Violation.actions).joinedload(ViolationAction.by),
                                        db.selectinload(Violation.charges))

    def on_model_change(self, form: Any, model: Violation, is_created: bool) -> None:
        if model.sub_kind == "":
            model.sub_kind = None
        super().on_model_change(form, model, is_created)

    def check_model(self, model: Violation) -> None:
        if model.sub_kind == "":
            model.sub_kind = None
        super().check_model(model)
        model.check_intake()

    def extra_endpoints(self) -> dict[str, str]:
        return {**super().extra_endpoints(), "evidence_view": "edit", "print_view": "view"}

    @expose("/evidence/", methods=["POST"])
    def evidence_view(self) -> Any:
        """VIO-3: photos or scans attached to the record sheet as evidence."""
        form = EvidenceForm()
        if not form.validate():
            abort(400)
        record = self.get_one(form.id.data)
        if record is None:
            abort(404)
        upload = request.files.get("file")
        try:
            if record.state == "closed":
                raise DomainError(_l("A closed violation is kept as it was; it can no longer be edited."))
            if upload is None or not upload.filename:
                raise DomainError(_l("Choose the photo or scan to attach."), "file")
            store(record, "scan", upload.read(), upload.filename, current_user._get_current_object())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        else:
            flash(_("The evidence was attached."), "success")
        return redirect(self.get_url(".details_view", id=record.id))

    @expose("/print/<kind>/<int:id>.pdf")
    def print_view(self, kind: str, id: int) -> Any:
        """The printed notices; allowed exactly when the details page is, audited as "print"."""
        if kind not in NOTICES:
            abort(404)
        record = self.get_one(str(id))
        if record is None:
            abort(404)
        if kind == "cut_notice" and (record.cut_decided_at is None or record.cut_planned_at is None):
            flash(_("A water/power-cut notice needs a decided cut with its planned time."), "error")
            return redirect(self.get_url(".details_view", id=record.id))
        template, title = NOTICES[kind]
        return printed(record, template, f"{title}-{record.sheet_no or record.id}.pdf", v=record, title=title,
                       **print_context())

    def render(self, template: str, **kwargs: Any) -> Any:
        model = kwargs.get("model")
        if template == self.details_template and model is not None:
            kwargs["evidence"] = attachments_of("violation", model.id)
            kwargs["may_attach"] = self.allowed("edit") and model.state != "closed"
            kwargs["evidence_form"] = EvidenceForm()
            kwargs["notices"] = NOTICES
        return super().render(template, **kwargs)


def print_context() -> dict[str, Any]:
    return {"kinds": rules.KINDS, "sub_kinds": rules.ALL_SUB_KINDS, "vio_severities": rules.SEVERITIES,
            "utilities": rules.UTILITIES, "cut_reasons": rules.CUT_REASONS, "notice_days": rules.NOTICE_DAYS}


class CollectForm(FlaskForm):
    id = HiddenField(validators=[DataRequired()])
    month = HiddenField()


def _month(raw: str | None) -> str | None:
    text = (raw or "").strip()
    if len(text) == 7 and text[4] == "-" and text[:4].isdigit() and text[5:].isdigit() and 1 <= int(text[5:]) <= 12:
        return text
    return None


class DeductionListView(SecureView):
    """VIO-8: each month's effective charges not yet collected, for finance; collected ones leave the list."""

    permissions = {"view": FINANCE}
    reauth_endpoints = frozenset({"export"})  # ACC-5: the list names residents

    def _month_arg(self) -> str:
        raw = request.values.get("month")
        month = _month(raw) or utcnow().astimezone(app_zone()).strftime("%Y-%m")
        if raw and _month(raw) is None:
            flash(_("Enter the month as 2026-11."), "error")
        return month

    @expose("/")
    def index(self) -> Any:
        month = self._month_arg()
        rows = deduction_list(month)
        total = sum((c.amount for c in rows), start=Decimal("0"))
        return self.render("admin/violations/deductions.html", rows=rows, month=month, total=total,
                           form=CollectForm(), kinds=rules.CHARGE_KINDS)

    @expose("/collect/", methods=["POST"])
    def collect(self) -> Any:
        form = CollectForm()
        if not form.validate():
            abort(400)
        key = record_id(form.id.data)
        charge = db.session.get(ViolationCharge, key) if key else None
        if charge is None or charge.violation.deleted_at is not None:
            abort(404)
        if charge.collected_at is not None:
            flash(_("Already marked collected."), "error")
        else:
            charge.collected_at, charge.collected_by_id = utcnow(), current_user.id
            db.session.commit()
            flash(_("Marked collected."), "success")
        return redirect(self.get_url(".index", month=_month(form.month.data) or None))

    @expose("/export.xlsx")
    def export(self) -> Any:
        from openpyxl import Workbook

        month = self._month_arg()
        rows = deduction_list(month)
        wb = Workbook()
        ws = wb.active
        ws.title = month
        write_row(ws, [_("Coordination sheet no."), _("Unit"), _("Resident"), _("Charge"), _("Amount (yuan)"),
                       _("Effective month")])
        for c in rows:
            v = c.violation
            write_row(ws, [v.sheet_no or f"#{v.id}", str(v.unit or ""), str(v.resident or ""), c.kind_label,
                           c.amount, c.month])
            ws.cell(ws.max_row, 5).number_format = "0.00"
        data = workbook_bytes(wb)
        record_event("export", record_type="violation_charge", comment=f"deductions {month} ({len(rows)})")
        db.session.commit()
        response = Response(data,
                            mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        response.headers["Content-Disposition"] = f'attachment; filename="deductions-{month}.xlsx"'
        response.headers["Cache-Control"] = "no-store"
        return response


def register(admin: Admin) -> None:
    category = _l("Violations")
    admin.add_view(ViolationView(Violation, db, name=_l("Violations"), category=category, endpoint="violation"))
    admin.add_view(DeductionListView(name=_l("Month-end deduction list"), category=category,
                                     endpoint="violation_deductions", url="violation-deductions"))
    attachments.register(admin.app)


__all__ = ["ViolationView", "DeductionListView", "register"]
