"""Renovation (装修管理, REGULATIONS §7) screens: applications with their drawings and every step of the
workflow (the engine decides who may do what), hot-work permits, temporary power, and finance's
deposit report (views/renovation_report.py)."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import HiddenField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from models import db
from models.attachment import KINDS, attachments_of
from models.registry import Unit
from models.renovation import (
    HotWork,
    Renovation,
    RenovationPatrolDay,
    TemporaryPower,
    add_acceptance_document,
    add_contractor_signature,
    add_drawing,
    documents_of_unit,
)
from models.renovation_parts import CHARGE_KINDS, INSPECTION_KINDS
from models.renovation_rules import ACCEPTANCE_DOCUMENTS, DRAWINGS, PATROL, acceptance_documents_missing
from models.validators import DomainError
from security.crypto import mask
from views import attachments
from views.base import has_any_role
from views.roles import BUSINESS, FRONT_DESK, SUPERVISORS
from views.templating import localtime
from views.workflow import WorkflowModelView, state_filter

CATEGORY = _l("Renovation")
EXPORT = SUPERVISORS | {"finance"}


class DrawingForm(FlaskForm):
    id = HiddenField(validators=[DataRequired()])
    file = FileField()


class AcceptanceDocumentForm(FlaskForm):
    """REN-10: one scan of a document the acceptance application brings."""

    id = HiddenField(validators=[DataRequired()])
    kind = SelectField(choices=[(k, KINDS[k].label) for k in ACCEPTANCE_DOCUMENTS], validators=[DataRequired()])
    file = FileField()


def _printables(ren: Renovation) -> list[dict[str, Any]]:
    """REN-8: the printable documents (views/renovation_print.py)."""
    from views.renovation_print import printable_documents

    return printable_documents(ren)


class RenovationView(WorkflowModelView):
    details_template = "admin/renovation/details.html"
    reauth_endpoints = frozenset({"export"})  # ACC-5: resident and contractor names
    permissions = {"view": BUSINESS, "create": FRONT_DESK, "edit": FRONT_DESK, "export": EXPORT}
    column_list = ["id", "unit", "applicant", "contractor", "planned_start", "works_until", "state", "permit_no",
                   "due_at"]
    column_details_list = ["id", "unit", "applicant", "scope", "contractor", "contractor_contact",
                           "contractor_phone", "planned_start", "planned_end", "works_until", "fees_paid_until",
                           "fees_confirmed_by", "tenancy_papers_complete", "pledge_signed", "door_lock_request",
                           "door_lock_note", "state", "submitted_at", "deposit_amount", "debris_fee",
                           "pass_deposit_each", "pass_count", "approved_at", "permit_no", "permitted_at",
                           "neighbours_notified", "finished_at", "acceptance_applied_at", "rectify_by",
                           "accepted_at", "vents_unsealed_at", "refunded_at", "created_at"]
    column_export_list = ["id", "unit", "applicant", "contractor", "planned_start", "works_until", "state",
                          "permit_no", "deposit_amount", "debris_fee", "pass_count", "accepted_at", "refunded_at"]
    form_columns = ["unit", "applicant", "scope", "contractor", "contractor_contact", "contractor_phone",
                    "planned_start", "planned_end", "fees_paid_until", "fees_confirmed_by",
                    "tenancy_papers_complete", "pledge_signed", "door_lock_request", "door_lock_note", *DRAWINGS]
    form_overrides = {"contractor_phone": StringField}  # encrypted at rest; Flask-Admin has no converter for it
    form_args = {"contractor_phone": {"validators": [Optional(), Length(max=32)]}}
    column_searchable_list = ["permit_no", "contractor"]
    column_sortable_list = ["id", "planned_start", "works_until", "due_at"]
    column_default_sort = ("id", True)
    column_labels = {
        "id": _l("No."), "unit": _l("Unit"), "applicant": _l("Applicant"), "scope": _l("Works"),
        "contractor": _l("Contractor"), "contractor_contact": _l("Contractor's site manager"),
        "contractor_phone": _l("Contractor's phone"), "planned_start": _l("Planned start"),
        "planned_end": _l("Planned end"), "works_until": _l("Works until"),
        "fees_paid_until": _l("Management fees paid up to"),
        "fees_confirmed_by": _l("Fees confirmed by (finance)"),
        "tenancy_papers_complete": _l("Tenancy papers complete (tenants)"),
        "pledge_signed": _l("Pledge signed: move in only after acceptance"),
        "door_lock_request": _l("Door code lock requested"), "door_lock_note": _l("Door code lock details"),
        "state": _l("Status"), "submitted_at": _l("Application taken"), "deposit_amount": _l("Renovation deposit"),
        "debris_fee": _l("Debris removal fee"), "pass_deposit_each": _l("Deposit per worker pass"),
        "pass_count": _l("Number of worker passes"), "approved_at": _l("Approved"), "permit_no": _l("Permit no."),
        "permitted_at": _l("Permit issued"), "neighbours_notified": _l("Neighbours notified"),
        "finished_at": _l("Works finished"), "acceptance_applied_at": _l("Acceptance applied for"),
        "rectify_by": _l("Rectify by"), "accepted_at": _l("Accepted"), "vents_unsealed_at": _l("Vents unsealed"),
        "refunded_at": _l("Deposits refunded"), "created_at": _l("Created"), "due_at": _l("Due"),
        **{name: _l("Drawing: %(d)s", d=label) for name, label in DRAWINGS.items()},
    }
    column_descriptions = {
        "fees_paid_until": _l("REN-1: there is no fee ledger yet; the desk records up to when finance confirms "
                              "the fees are paid (at least the current month)."),
        "pass_deposit_each": _l("Set by engineering when the passes are priced; the total is this × the number."),
    }
    form_ajax_refs = {"unit": {"fields": ["code"], "page_size": 20},
                      "applicant": {"fields": ["name", "phone"], "page_size": 20}}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [state_filter(Renovation)]
        super().__init__(*args, **kwargs)

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(Renovation.unit), db.joinedload(Renovation.applicant))

    def get_details_query(self) -> Any:
        return self.get_query().options(
            db.selectinload(Renovation.charges), db.selectinload(Renovation.passes),
            db.selectinload(Renovation.notices), db.selectinload(Renovation.inspections),
            db.selectinload(Renovation.warnings), db.selectinload(Renovation.extensions))

    def check_model(self, model: Renovation) -> None:
        super().check_model(model)
        model.check_editable()
        model.check_application()

    # --- REN-1: drawings -----------------------------------------------------------------------
    def extra_endpoints(self) -> dict[str, str]:
        return {**super().extra_endpoints(), "drawing_view": "edit", "signature_view": "view",
                "unit_documents_view": "view", "acceptance_document_view": "edit"}

    @expose("/acceptance-document/", methods=["POST"])
    def acceptance_document_view(self) -> Any:
        """REN-10: keep a scan of the as-built drawings, the invoice copies or the deposit receipt copy."""
        form = AcceptanceDocumentForm()
        if not form.validate():
            abort(400)
        ren = self.get_one(form.id.data)
        if ren is None:
            abort(404)
        try:
            upload = request.files.get("file")
            if upload is None or not upload.filename:
                raise DomainError(_l("Choose the scan."), "file")
            add_acceptance_document(ren, form.kind.data, upload.read(), upload.filename,
                                    current_user._get_current_object())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        else:
            flash(_("The scan was saved."), "success")
        return redirect(self.get_url(".details_view", id=ren.id))

    def may_sign(self, ren: Renovation) -> bool:
        """The inspectors (REN-5) keep the contractor's signed scan of the latest ladder step."""
        return bool(current_user.roles & PATROL) and bool(ren.warnings) and ren.state in ("permitted", "suspended")

    @expose("/signature/", methods=["POST"])
    def signature_view(self) -> Any:
        form = DrawingForm()
        if not form.validate():
            abort(400)
        ren = self.get_one(form.id.data)
        if ren is None:
            abort(404)
        if not self.may_sign(ren):
            abort(403)
        try:
            upload = request.files.get("file")
            if upload is None or not upload.filename:
                raise DomainError(_l("Choose the signed scan."), "file")
            add_contractor_signature(ren, upload.read(), upload.filename, current_user._get_current_object())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        else:
            flash(_("The contractor's signature was saved."), "success")
        return redirect(self.get_url(".details_view", id=ren.id))

    @expose("/unit/<int:unit_id>/")
    def unit_documents_view(self, unit_id: int) -> Any:
        """REN-8: the unit's renovation file (drawings, notices, permits); issue 7's unit archive links here."""
        unit = db.session.get(Unit, unit_id) if 0 < unit_id < 2**31 else None
        if unit is None:
            abort(404)
        return self.render("admin/renovation/unit_documents.html", unit=unit, documents=documents_of_unit(unit_id))

    @expose("/drawing/", methods=["POST"])
    def drawing_view(self) -> Any:
        """Keep one uploaded drawing with an application being prepared (type and size checked)."""
        form = DrawingForm()
        if not form.validate():
            abort(400)
        ren = self.get_one(form.id.data)
        if ren is None:
            abort(404)
        try:
            if ren.pending_transition:
                raise DomainError(_l("This record is waiting for approval and cannot be edited now."))
            upload = request.files.get("file")
            if upload is None or not upload.filename:
                raise DomainError(_l("Choose the drawing file."), "file")
            add_drawing(ren, upload.read(), upload.filename, current_user._get_current_object())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        else:
            flash(_("The drawing was saved."), "success")
        return redirect(self.get_url(".details_view", id=ren.id))

    def render(self, template: str, **kwargs: Any) -> Any:
        model = kwargs.get("model")
        if template == self.details_template and model is not None:
            from models.base import utcnow
            from models.renovation_rules import application_problems
            from workflow.calendar import app_zone

            kwargs.update(
                drawings=attachments_of("renovation", model.id, "drawing"), drawing_labels=DRAWINGS,
                signatures=attachments_of("renovation", model.id, "signature"), may_sign=self.may_sign(model),
                printables=_printables(model),
                may_upload=self.allowed("edit") and model.state in ("draft", "returned")
                and not model.pending_transition,
                drawing_form=DrawingForm(), charge_kinds=CHARGE_KINDS, inspection_kinds=INSPECTION_KINDS,
                acceptance_docs={k: (KINDS[k].label, attachments_of("renovation", model.id, k))
                                 for k in ACCEPTANCE_DOCUMENTS},
                acceptance_missing=acceptance_documents_missing(model)
                if model.state in ("permitted", "finished") else [],
                may_upload_acceptance=self.allowed("edit") and model.state in ("permitted", "finished")
                and not model.pending_transition,
                acceptance_form=AcceptanceDocumentForm(),
                patrol_days=db.session.scalars(db.select(RenovationPatrolDay).where(
                    RenovationPatrolDay.renovation_id == model.id, RenovationPatrolDay.deleted_at.is_(None))
                    .order_by(RenovationPatrolDay.day.desc()).limit(14)).all(),
                blockers=application_problems(model, utcnow().astimezone(app_zone()).date())
                if model.state in ("draft", "returned") else [],
                hot_works=db.session.scalars(db.select(HotWork).where(HotWork.renovation_id == model.id,
                                                                      HotWork.deleted_at.is_(None))).all(),
                powers=db.session.scalars(db.select(TemporaryPower).where(
                    TemporaryPower.renovation_id == model.id, TemporaryPower.deleted_at.is_(None))).all())
        return super().render(template, **kwargs)


def _lead_phone(view: Any, context: Any, model: HotWork, name: str) -> str:
    """REN-9: the lead's phone in full for who calls them on site, masked for everyone else."""
    return model.lead_phone or "" if has_any_role(FRONT_DESK | PATROL) else mask(model.lead_phone, 3, 4)


def _lead_present(view: Any, context: Any, model: HotWork, name: str) -> str:
    if model.lead_checked_in_at is None:
        return _("Not checked in")
    by = model.lead_checked_in_by.full_name if model.lead_checked_in_by else ""
    return f"{localtime(model.lead_checked_in_at)} · {by}".strip(" ·")


class HotWorkView(WorkflowModelView):
    permissions = {"view": BUSINESS, "create": FRONT_DESK, "edit": FRONT_DESK, "export": EXPORT}
    column_list = ["renovation", "work", "location", "starts_at", "ends_at", "lead_name", "state"]
    column_details_list = ["renovation", "work", "location", "starts_at", "ends_at", "operator", "fire_watch",
                           "lead_name", "lead_phone", "lead_id_no", "lead_checked_in_at", "extinguishers_ready",
                           "started_at", "state", "created_at"]
    column_export_list = ["renovation", "work", "location", "starts_at", "ends_at", "state"]
    form_columns = ["renovation", "work", "location", "starts_at", "ends_at", "operator", "fire_watch",
                    "lead_name", "lead_phone", "lead_id_no", "extinguishers_ready"]
    form_overrides = {"lead_phone": StringField, "lead_id_no": StringField}  # encrypted at rest
    form_args = {"lead_name": {"validators": [DataRequired(), Length(max=64)]},
                 "lead_phone": {"validators": [DataRequired(), Length(max=32)]},
                 "lead_id_no": {"validators": [DataRequired(), Length(max=32)]}}
    column_formatters = {"lead_phone": _lead_phone, "lead_id_no": lambda v, c, m, n: mask(m.lead_id_no),
                         "lead_checked_in_at": _lead_present}
    column_labels = {"renovation": _l("Renovation"), "work": _l("Hot work"), "location": _l("Location"),
                     "starts_at": _l("From"), "ends_at": _l("Until"), "operator": _l("Licensed operator"),
                     "fire_watch": _l("Fire watch"), "extinguishers_ready": _l("Extinguishers ready"),
                     "lead_name": _l("Hot-work lead (contractor)"), "lead_phone": _l("Hot-work lead's phone"),
                     "lead_id_no": _l("Hot-work lead's ID or certificate no."),
                     "lead_checked_in_at": _l("Hot-work lead on site"), "started_at": _l("Hot work started"),
                     "lead_checked_in_by": _l("Hot-work lead checked in by"),
                     "state": _l("Status"), "created_at": _l("Created")}
    form_ajax_refs = {"renovation": {"fields": ["permit_no"], "page_size": 20}}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [state_filter(HotWork)]
        super().__init__(*args, **kwargs)

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(HotWork.renovation).joinedload(Renovation.unit),
                                           db.joinedload(HotWork.lead_checked_in_by))

    def check_model(self, model: HotWork) -> None:
        super().check_model(model)
        if model.state not in (None, "applied"):
            raise DomainError(_l("Only an application not yet approved can be edited."))
        model.check_times()


class TemporaryPowerView(WorkflowModelView):
    permissions = {"view": BUSINESS, "create": FRONT_DESK, "edit": FRONT_DESK, "export": EXPORT}
    column_list = ["renovation", "purpose", "load_kw", "price", "state"]
    column_details_list = ["renovation", "purpose", "load_kw", "price", "priced_at", "receipt_no", "paid_at",
                           "state", "created_at"]
    column_export_list = column_list
    form_columns = ["renovation", "purpose", "load_kw"]
    column_labels = {"renovation": _l("Renovation"), "purpose": _l("Purpose"), "load_kw": _l("Load (kW)"),
                     "price": _l("Price (yuan)"), "priced_at": _l("Priced"), "receipt_no": _l("Receipt number"),
                     "paid_at": _l("Paid"), "state": _l("Status"), "created_at": _l("Created")}
    form_ajax_refs = {"renovation": {"fields": ["permit_no"], "page_size": 20}}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [state_filter(TemporaryPower)]
        super().__init__(*args, **kwargs)

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(TemporaryPower.renovation).joinedload(Renovation.unit))

    def check_model(self, model: TemporaryPower) -> None:
        super().check_model(model)
        if model.renovation is None:
            raise DomainError(_l("Choose the renovation."), "renovation")
        if model.state not in (None, "applied"):
            raise DomainError(_l("Only an application not yet priced can be edited."))


def register(admin: Admin) -> None:
    from views import renovation_patrol, renovation_print, renovation_report

    admin.add_view(RenovationView(Renovation, db, name=_l("Renovations"), category=CATEGORY,
                                  endpoint="renovation"))
    admin.add_view(HotWorkView(HotWork, db, name=_l("Hot-work permits"), category=CATEGORY,
                               endpoint="renovation_hot_work"))
    admin.add_view(TemporaryPowerView(TemporaryPower, db, name=_l("Temporary power"), category=CATEGORY,
                                      endpoint="renovation_power"))
    renovation_patrol.register(admin, CATEGORY)
    renovation_report.register(admin, CATEGORY)
    attachments.register(admin.app)
    renovation_print.register(admin)


__all__ = ["HotWorkView", "RenovationView", "TemporaryPowerView", "register"]
