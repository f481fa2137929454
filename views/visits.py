"""Follow-up visit screens (回访, VIS-1..6): the list, the form (prefilled from a complaint or a
repair order), the signature pad / scan upload on a draft's details page, and the manager's
sign-off through the workflow buttons and bulk action."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request
from flask_admin import Admin, expose
from flask_admin.contrib.sqla import filters
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import HiddenField
from wtforms.validators import DataRequired

from models import db
from models.attachment import attachments_of, decode_data_url, store
from models.validators import DomainError
from models.visit_rules import is_major_repair
from models.visits import KINDS, METHODS, Visit, record_blocker
from views import attachments
from views.fields import LocalDateTimeField
from views.params import record_id
from views.roles import BUSINESS, FRONT_DESK, SUPERVISORS
from views.workflow import WorkflowModelView, state_filter

EDITORS = FRONT_DESK | {"engineering"}


class SignatureForm(FlaskForm):
    """The resident's signature: drawn on the pad (PNG data URL) or a signed scan."""

    id = HiddenField(validators=[DataRequired()])
    signature = HiddenField()
    file = FileField()


def _label(mapping: dict) -> Any:
    return lambda view, context, model, name: mapping.get(getattr(model, name), getattr(model, name))


def _yes_no(view: Any, context: Any, model: Visit, name: str) -> str:
    value = getattr(model, name)
    return "—" if value is None else (_("Yes") if value else _("No"))


class VisitView(WorkflowModelView):
    reauth_endpoints = frozenset({"export"})  # ACC-5: residents' names and opinions
    permissions = {"view": BUSINESS, "create": EDITORS, "edit": EDITORS, "export": SUPERVISORS}
    details_template = "admin/visits/details.html"
    column_list = ["id", "kind", "complaint", "repair_order", "unit", "method", "visited_at", "visitor",
                   "person_visited", "satisfied", "state", "due_at"]
    column_details_list = ["id", "kind", "complaint", "repair_order", "previous_visit", "unit", "method",
                           "visited_at", "visitor", "person_visited", "opinion", "satisfied",
                           "impossible_reason", "new_issue", "agreed_reply_at", "resolved", "reply_due_at",
                           "issue_resolved_at", "state", "created_at"]
    column_export_list = ["id", "kind", "complaint", "repair_order", "method", "visited_at", "visitor",
                          "person_visited", "opinion", "satisfied", "impossible_reason", "new_issue",
                          "agreed_reply_at", "resolved", "state"]
    form_columns = ["kind", "complaint", "repair_order", "previous_visit", "unit", "method", "visited_at",
                    "visitor", "person_visited", "opinion", "satisfied", "impossible_reason", "new_issue",
                    "agreed_reply_at", "resolved"]
    column_sortable_list = ["id", "visited_at", "due_at"]
    column_default_sort = ("id", True)
    column_searchable_list = ["person_visited"]
    column_labels = {
        "id": _l("No."), "kind": _l("Kind of visit"), "complaint": _l("Complaint"),
        "repair_order": _l("Repair work order"), "previous_visit": _l("Further visit of"), "unit": _l("Unit"),
        "method": _l("Method"), "visited_at": _l("Visited at"), "visitor": _l("Visitor"),
        "person_visited": _l("Person visited"), "opinion": _l("Resident's opinion"), "satisfied": _l("Satisfied"),
        "impossible_reason": _l("Why no visit was possible"), "new_issue": _l("New issue raised"),
        "agreed_reply_at": _l("Agreed reply time"), "resolved": _l("Earlier issue resolved"),
        "reply_due_at": _l("Further visit due"), "issue_resolved_at": _l("Issue resolved at"),
        "state": _l("Status"), "due_at": _l("Due"), "created_at": _l("Created"),
    }
    column_descriptions = {
        "method": _l("Major repairs are visited on site; an on-site visit needs the resident's signature."),
        "impossible_reason": _l("Only if no visit or call was possible; otherwise record the opinion."),
        "new_issue": _l("An issue that cannot be answered at once; a further visit is drafted for the "
                        "agreed reply time."),
        "resolved": _l("For a further visit: the earlier issue is now resolved."),
    }
    column_formatters = {"kind": _label(KINDS), "method": _label(METHODS), "satisfied": _yes_no}
    column_formatters_detail = {"kind": _label(KINDS), "method": _label(METHODS), "satisfied": _yes_no,
                                "resolved": _yes_no,
                                "state": lambda v, c, m, n: Visit.workflow.state_label(m.state)}
    form_overrides = {"visited_at": LocalDateTimeField, "agreed_reply_at": LocalDateTimeField}
    form_choices = {"kind": list(KINDS.items()), "method": list(METHODS.items())}
    form_ajax_refs = {
        "complaint": {"fields": ["id"], "page_size": 20},
        "repair_order": {"fields": ["id"], "page_size": 20},
        "previous_visit": {"fields": ["id", "person_visited"], "page_size": 20},
        "unit": {"fields": ["code"], "page_size": 20},
        "visitor": {"fields": ["full_name", "username"], "page_size": 20},
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [
            state_filter(Visit),
            filters.FilterEqual(Visit.kind, _l("Kind of visit"), options=list(KINDS.items())),
            filters.FilterEqual(Visit.method, _l("Method"), options=list(METHODS.items())),
        ]
        super().__init__(*args, **kwargs)
        self.column_formatters_export = {
            **self.column_formatters_export,
            "kind": lambda v, c, m, n: m.kind_label, "method": lambda v, c, m, n: m.method_label,
        }

    def get_query(self) -> Any:
        return super().get_query().options(
            db.joinedload(Visit.complaint), db.joinedload(Visit.repair_order), db.joinedload(Visit.unit),
            db.joinedload(Visit.visitor))

    def get_details_query(self) -> Any:
        return self.get_query().options(db.joinedload(Visit.previous_visit))

    # --- the form ----------------------------------------------------------------------------------
    def create_form(self, obj: Any = None) -> Any:
        """Prefilled from the record the visit is about: ?complaint_id=, ?repair_order_id=,
        ?previous_visit_id=; the visitor defaults to the signed-in user."""
        form = super().create_form(obj)
        if request.method != "GET":
            return form
        form.visitor.data = form.visitor.data or current_user._get_current_object()
        for arg, field, kind in (("complaint_id", "complaint", "complaint"),
                                 ("repair_order_id", "repair_order", "repair"),
                                 ("previous_visit_id", "previous_visit", None)):
            value = record_id(request.args.get(arg))
            if value is None:
                continue
            related = getattr(form, field).loader.get_one(value)
            if related is None:
                continue
            getattr(form, field).data = related
            form.kind.data = kind or related.kind
            if field == "repair_order":
                form.method.data = "on_site" if is_major_repair(related) else "phone"  # VIS-2 advice
                form.unit.data = getattr(related, "unit", None)
            elif field == "complaint":
                form.unit.data = getattr(related, "unit", None)
            else:
                form.complaint.data, form.repair_order.data = related.complaint, related.repair_order
                form.unit.data, form.method.data = related.unit, related.method
        return form

    def apply_form(self, form: Any, model: Visit) -> None:
        super().apply_form(form, model)
        model.sync_ids()

    def check_model(self, model: Visit) -> None:
        super().check_model(model)
        model.check_editable()
        model.check_draft()

    # --- the signature -----------------------------------------------------------------------------
    def extra_endpoints(self) -> dict[str, str]:
        return {**super().extra_endpoints(), "signature_view": "edit"}

    @expose("/signature/", methods=["POST"])
    def signature_view(self) -> Any:
        """VIS-3: keep the signature drawn on screen or the uploaded scan of a draft visit."""
        form = SignatureForm()
        if not form.validate():
            abort(400)
        visit = self.get_one(form.id.data)
        if visit is None:
            abort(404)
        try:
            visit.check_editable()
            if visit.pending_transition:
                raise DomainError(_l("This record is waiting for approval and cannot be edited now."))
            upload = request.files.get("file")
            if form.signature.data:
                data, name = decode_data_url(form.signature.data), "signature.png"
            elif upload is not None and upload.filename:
                data, name = upload.read(), upload.filename
            else:
                raise DomainError(_l("Let the resident sign on the pad or choose the signed scan."), "signature")
            store(visit, "signature", data, name, current_user._get_current_object())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        else:
            flash(_("The signature was saved."), "success")
        return redirect(self.get_url(".details_view", id=visit.id))

    def render(self, template: str, **kwargs: Any) -> Any:
        model = kwargs.get("model")
        if template == self.details_template and model is not None:
            kwargs["attachments"] = attachments_of("visit", model.id)
            kwargs["may_sign"] = self.allowed("edit") and model.state == "draft" and not model.pending_transition
            kwargs["signature_form"] = SignatureForm()
            # Why "Record the visit" is not offered yet (the engine hides a step its guard refuses).
            kwargs["record_blocker"] = record_blocker(model) if model.state == "draft" else None
        return super().render(template, **kwargs)


def register(admin: Admin) -> None:
    """Adds this regulation's screens, and the attachment download they link to."""
    admin.add_view(VisitView(Visit, db, name=_l("Follow-up visits"), category=_l("Service desk"),
                             endpoint="visit"))
    attachments.register(admin.app)


__all__ = ["VisitView", "register"]
