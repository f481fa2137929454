"""Help register and repair work order screens (住户求助 / 报事报修, HLP-1..7). The rules live in
models/help_requests.py and models/repairs.py; these screens ask them and the engine."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import url_for
from flask_admin import Admin
from flask_admin.contrib.sqla import filters
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup, escape
from wtforms import StringField
from wtforms.validators import Length, Optional

from models import db
from models.base import utcnow
from models.help_requests import (
    ALL_SUB_KINDS,
    CATEGORIES,
    ENQUIRY_MODES,
    MEDICAL_OPTIONS,
    SPECIAL,
    HelpRequest,
)
from models.repairs import SATISFACTION, RepairOrder
from models.staff import Staff
from models.validators import DomainError
from security.crypto import mask
from views.base import has_any_role
from views.roles import BUSINESS, FRONT_DESK, SUPERVISORS
from views.workflow import WorkflowModelView, state_filter


def _choices(labels: dict[str, Any]) -> list[tuple[str, Any]]:
    return list(labels.items())


def _label(labels: dict[str, Any]) -> Any:
    return lambda v, c, m, n: labels.get(getattr(m, n) or "", getattr(m, n) or "")


class SpecialFilter(filters.BaseSQLAFilter):
    """HLP-1: special (medical, crime/accident, disaster) or general."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        special = HelpRequest.category.in_(sorted(SPECIAL))
        return query.filter(special if value == "1" else ~special)

    def operation(self) -> Any:
        return _l("equals")


class OverdueFilter(filters.BaseSQLAFilter):
    """Records whose soonest open clock has passed (the deadlines layer keeps ``due_at``)."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        column = self.column
        return query.filter(column < utcnow()) if value == "1" else query.filter(
            sa.or_(column.is_(None), column >= utcnow()))

    def operation(self) -> Any:
        return _l("equals")


def _special(view: Any, context: Any, model: HelpRequest, name: str) -> Markup:
    if model.special:
        return Markup('<span class="badge badge-danger">{}</span>').format(_l("Special request"))
    return escape(_l("General request"))


def _sensitive(view: Any, context: Any, model: HelpRequest, name: str) -> str:
    """HLP-5 address and phone: in full for the desk and security who act on them, masked for others."""
    value = getattr(model, name) or ""
    return value if has_any_role(FRONT_DESK | {"security"}) else mask(value, 2, 2)


def _link(endpoint: str, record: Any) -> Markup:
    if record is None:
        return escape("—")
    return Markup('<a href="{}">#{}</a>').format(url_for(f"{endpoint}.details_view", id=record.id), record.id)


def _repair_link(view: Any, context: Any, model: HelpRequest, name: str) -> Markup:
    return _link("repair_order", model.repair_order)


def _complaint_link(view: Any, context: Any, model: HelpRequest, name: str) -> Markup:
    return _link("complaint", getattr(model, "complaint", None))


def _help_link(view: Any, context: Any, model: RepairOrder, name: str) -> Markup:
    return _link("help_request", model.help_request)


HELP_LABELS = {
    "received_at": _l("Received at"), "category": _l("Category"), "sub_kind": _l("Kind"),
    "special": _l("Special or general"),
    "caller": _l("Caller"), "caller_phone": _l("Phone"), "unit": _l("Unit"), "resident": _l("Resident"),
    "description": _l("What is asked"), "urgent": _l("Emergency repair"), "enquiry_mode": _l("Enquiry mode"),
    "needs_manager_reply": _l("Needs the manager's reply"), "reply": _l("Reply"), "replied_at": _l("Replied at"),
    "replied_by": _l("Replied by"), "supervisor_alerted_at": _l("Supervisor alerted at"), "price": _l("Price"),
    "charged_at": _l("Charged at"), "charged_amount": _l("Amount charged"), "medical_address": _l("Address"),
    "medical_option": _l("Option chosen"), "carer_1": _l("Carer 1"), "carer_2": _l("Carer 2"),
    "medical_outcome": _l("Medical outcome"), "outcome": _l("Outcome"), "state": _l("Status"),
    "due_at": _l("Due"), "repair_order": _l("Repair work order"), "complaint": _l("Complaint"),
    "created_at": _l("Created"),
}


def _staff_choices() -> Any:
    return db.session.query(Staff).filter(Staff.active.is_(True)).order_by(Staff.full_name)


class HelpRequestView(WorkflowModelView):
    reauth_endpoints = frozenset({"export"})  # ACC-5: callers' names
    permissions = {"view": BUSINESS, "create": FRONT_DESK | {"security"}, "edit": FRONT_DESK | {"security"},
                   "export": SUPERVISORS}
    column_list = ["received_at", "category", "sub_kind", "special", "caller", "unit", "state", "due_at"]
    column_details_list = ["received_at", "category", "sub_kind", "special", "caller", "caller_phone", "unit",
                           "resident", "description", "urgent", "enquiry_mode", "needs_manager_reply", "reply",
                           "replied_at", "replied_by", "supervisor_alerted_at", "price", "charged_at",
                           "charged_amount", "medical_address", "medical_option", "carer_1", "carer_2",
                           "medical_outcome", "outcome", "state", "due_at", "repair_order", "complaint",
                           "created_at"]
    column_export_list = ["received_at", "category", "sub_kind", "caller", "unit", "description", "reply",
                          "replied_at", "price", "charged_amount", "outcome", "state"]
    form_columns = ["received_at", "category", "sub_kind", "caller", "caller_phone", "unit", "resident",
                    "description", "urgent", "enquiry_mode", "needs_manager_reply", "price", "medical_address",
                    "medical_option", "carer_1", "carer_2", "medical_outcome"]
    column_searchable_list = ["caller", "description"]
    column_sortable_list = ["received_at", "category", "due_at"]
    column_default_sort = ("received_at", True)
    column_labels = HELP_LABELS
    form_choices = {"category": _choices(CATEGORIES), "sub_kind": _choices(ALL_SUB_KINDS),
                    "enquiry_mode": _choices(ENQUIRY_MODES), "medical_option": _choices(MEDICAL_OPTIONS)}
    form_ajax_refs = {"unit": {"fields": ["code"], "page_size": 20},
                      "resident": {"fields": ["name"], "page_size": 20}}
    form_args = {"carer_1": {"query_factory": _staff_choices}, "carer_2": {"query_factory": _staff_choices}}
    # Encrypted columns (HLP-5 sensitive) have no scaffolded field: plain inputs, stored encrypted.
    form_extra_fields = {
        "caller_phone": StringField(_l("Phone"), validators=[Optional(), Length(max=32)]),
        "medical_address": StringField(_l("Address"), validators=[Optional(), Length(max=200)]),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [
            filters.FilterEqual(HelpRequest.category, _l("Category"), options=_choices(CATEGORIES)),
            SpecialFilter(HelpRequest.category, _l("Special or general"),
                          options=[("1", _l("Special request")), ("0", _l("General request"))]),
            state_filter(HelpRequest),
            OverdueFilter(HelpRequest.due_at, _l("Overdue"), options=[("1", _l("Overdue")), ("0", _l("Not overdue"))]),
        ]
        super().__init__(*args, **kwargs)
        self.column_formatters = {**self.column_formatters, "category": _label(CATEGORIES),
                                  "sub_kind": _label(ALL_SUB_KINDS), "special": _special}
        self.column_formatters_detail = {
            "category": _label(CATEGORIES), "sub_kind": _label(ALL_SUB_KINDS), "special": _special,
            "enquiry_mode": _label(ENQUIRY_MODES), "medical_option": _label(MEDICAL_OPTIONS),
            "repair_order": _repair_link, "complaint": _complaint_link, "caller_phone": _sensitive,
            "medical_address": _sensitive,
            "state": lambda v, c, m, n: HelpRequest.workflow.state_label(m.state)}
        self.column_formatters_export = {**self.column_formatters_export, "category": _label(CATEGORIES),
                                         "sub_kind": _label(ALL_SUB_KINDS)}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(HelpRequest.unit))

    def check_model(self, model: HelpRequest) -> None:
        super().check_model(model)
        if model.state in HelpRequest.workflow.final_states:
            raise DomainError(_l("A closed or converted request is no longer edited."))
        history = sa.inspect(model).attrs.needs_manager_reply.history
        if history.deleted and history.deleted[0] and not model.needs_manager_reply \
                and not current_user.has_role("manager"):
            raise DomainError(_l("Only the manager lifts the need for the manager's reply."), "needs_manager_reply")
        model.check_details()


REPAIR_LABELS = {
    "reported_at": _l("Reported at"), "help_request": _l("Help request"), "fault_text": _l("Fault"),
    "fault": _l("Fault"), "unit": _l("Unit"), "location": _l("Location"), "emergency": _l("Emergency repair"),
    "assignee": _l("Engineer"), "responded_at": _l("On site at"), "work_done": _l("Work done"),
    "materials": _l("Materials"), "paid": _l("Paid repair"), "charge": _l("Charge"),
    "completed_at": _l("Completed at"), "satisfaction": _l("Resident's satisfaction"),
    "satisfaction_note": _l("Resident's remarks"), "state": _l("Status"), "due_at": _l("Due"),
    "created_at": _l("Created"),
}


def _engineers() -> Any:
    from models.staff import StaffRole

    return db.session.query(Staff).join(StaffRole).filter(StaffRole.role == "engineering",
                                                          Staff.active.is_(True)).order_by(Staff.full_name)


class RepairOrderView(WorkflowModelView):
    permissions = {"view": BUSINESS, "create": FRONT_DESK, "edit": FRONT_DESK | {"engineering"},
                   "export": SUPERVISORS}
    column_list = ["reported_at", "fault_text", "unit", "emergency", "assignee", "state", "due_at", "satisfaction"]
    column_details_list = ["reported_at", "help_request", "fault_text", "unit", "location", "emergency", "assignee",
                           "responded_at", "work_done", "materials", "paid", "charge", "completed_at",
                           "satisfaction", "satisfaction_note", "state", "due_at", "created_at"]
    column_export_list = ["reported_at", "fault_text", "unit", "location", "emergency", "assignee", "responded_at",
                          "work_done", "materials", "paid", "charge", "completed_at", "satisfaction", "state"]
    form_columns = ["unit", "location", "fault", "emergency", "reported_at", "assignee", "materials", "paid",
                    "charge", "satisfaction", "satisfaction_note"]
    column_sortable_list = ["reported_at", "due_at"]
    column_default_sort = ("reported_at", True)
    column_labels = REPAIR_LABELS
    form_choices = {"satisfaction": _choices(SATISFACTION)}
    form_ajax_refs = {"unit": {"fields": ["code"], "page_size": 20}}
    form_args = {"assignee": {"query_factory": _engineers}}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [
            state_filter(RepairOrder),
            filters.BooleanEqualFilter(RepairOrder.emergency, _l("Emergency repair")),
            OverdueFilter(RepairOrder.due_at, _l("Overdue"), options=[("1", _l("Overdue")), ("0", _l("Not overdue"))]),
            filters.FilterEqual(RepairOrder.satisfaction, _l("Resident's satisfaction"),
                                options=_choices(SATISFACTION)),
        ]
        super().__init__(*args, **kwargs)
        self.column_formatters = {**self.column_formatters, "satisfaction": _label(SATISFACTION)}
        self.column_formatters_detail = {"satisfaction": _label(SATISFACTION), "help_request": _help_link,
                                         "state": lambda v, c, m, n: RepairOrder.workflow.state_label(m.state)}
        self.column_formatters_export = {**self.column_formatters_export, "satisfaction": _label(SATISFACTION)}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(RepairOrder.unit), db.joinedload(RepairOrder.assignee),
                                           db.joinedload(RepairOrder.help_request))

    def check_model(self, model: RepairOrder) -> None:
        super().check_model(model)
        if model.state == "closed":
            raise DomainError(_l("A closed work order is no longer edited."))
        history = sa.inspect(model).attrs.assignee.history
        supervisor = current_user.has_role("manager", "cs_supervisor")
        if history.has_changes() and (model.state or "open") != "open" and not supervisor:
            raise DomainError(_l("Once assigned, only the supervisor changes the engineer."), "assignee")
        model.check_details()


def register(admin: Admin) -> None:
    """Adds the help register and the repair work orders under "Service desk"."""
    admin.add_view(HelpRequestView(HelpRequest, db, name=_l("Help requests"), category=_l("Service desk"),
                                   endpoint="help_request"))
    admin.add_view(RepairOrderView(RepairOrder, db, name=_l("Repair work orders"), category=_l("Service desk"),
                                   endpoint="repair_order"))


__all__ = ["HelpRequestView", "RepairOrderView", "register"]
