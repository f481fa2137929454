"""Complaint screens (投诉处理, REGULATIONS §5): the desk registers the form (CMP-1), the engine moves it.

The list filters what a front desk asks every morning: open, overdue, by grade, department and
category. Phone numbers are masked in the list and the export (ACC-6); the export needs the
password again (ACC-5).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import request
from flask_admin import Admin
from flask_admin.contrib.sqla import filters
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape
from wtforms import fields
from wtforms.validators import DataRequired, Length, Optional

from models import complaint_rules as rules
from models import db
from models.base import utcnow
from models.complaints import Complaint, ComplaintHousehold
from models.staff import DEPARTMENTS, Department
from security.crypto import mask
from views.fields import LocalDateTimeField
from views.roles import BUSINESS, FRONT_DESK, SUPERVISORS
from views.workflow import WorkflowModelView, state_filter


def _choices(mapping: dict[str, Any]) -> list[tuple[str, Any]]:
    return list(mapping.items())


def _label(mapping: dict[str, Any]) -> Any:
    return lambda v, c, m, n: mapping.get(getattr(m, n), getattr(m, n) or "")


def _masked(v: Any, c: Any, m: Complaint, n: str) -> str:
    return mask(m.contact_phone, 3, 4)


def _households(view: Any, context: Any, model: Complaint, name: str) -> Markup:
    if not model.households:
        return escape("—")
    items = Markup("").join(Markup("<li>{}</li>").format(str(h)) for h in model.households)
    note = Markup(' <span class="badge badge-danger">{}</span>').format(_l("Collective")) if model.collective else ""
    return Markup("<ul class=\"mb-0\">{}</ul>{}").format(items, note)


def _number(view: Any, context: Any, model: Complaint, name: str) -> Markup:
    text = escape(model.number or f"#{model.id}")
    if model.duplicate_of_id is not None:
        text += Markup(' <span class="badge badge-secondary">{}</span>').format(_l("Duplicate"))
    if model.overdue:
        text += Markup(' <span class="badge badge-danger">{}</span>').format(_l("Overdue"))
    return text


class OverdueFilter(filters.BaseSQLAFilter):
    """Open clocks past their due time (the record's ``due_at`` is its soonest open clock)."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        now = utcnow()
        if value == "1":
            return query.filter(Complaint.due_at.is_not(None), Complaint.due_at < now)
        return query.filter(sa.or_(Complaint.due_at.is_(None), Complaint.due_at >= now))

    def operation(self) -> Any:
        return _l("equals")


class DepartmentFilter(filters.BaseSQLAFilter):
    """By department key: the choices are the fixed departments, no query when the page is built."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        return query.filter(Complaint.department_id.in_(sa.select(Department.id).where(Department.key == value)))

    def operation(self) -> Any:
        return _l("equals")


class ComplaintView(WorkflowModelView):
    reauth_endpoints = frozenset({"export"})  # ACC-5: names and phone numbers of complainants
    permissions = {"view": BUSINESS, "create": FRONT_DESK, "edit": FRONT_DESK, "export": SUPERVISORS}
    column_list = ["number", "received_at", "unit", "complainant_name", "contact_phone", "category", "severity",
                   "department", "state", "due_at"]
    column_details_list = [
        "number", "received_at", "channel", "written", "unit", "resident", "complainant_name", "contact_phone",
        "occurred_at", "location", "subject", "description", "demand", "category", "validity", "about_property",
        "severity", "severity_since", "households", "read_back_confirmed", "received_by", "department",
        "dispatched_at", "accepted_at", "accepted_by", "handling_notes", "handled_at", "handled_by",
        "letter_register_no", "reply_letter_text", "reply_letter_date", "reply_signed_by", "reply_recorded_at",
        "reply_to_resident", "told_at", "invalid_explanation", "reported_to_manager_at", "answer_notes",
        "answered_at", "resident_deadline", "extended_until", "duplicate_of", "help_request", "state", "due_at",
        "closed_at"]
    column_export_list = ["number", "received_at", "channel", "unit", "complainant_name", "contact_phone",
                          "subject", "description", "demand", "category", "validity", "about_property", "severity",
                          "department", "state", "handled_at", "told_at", "closed_at", "duplicate_of"]
    form_columns = ["received_at", "channel", "written", "unit", "resident", "complainant_name", "contact_phone",
                    "occurred_at", "location", "subject", "description", "demand", "category", "severity",
                    "about_property", "households", "department", "resident_deadline", "duplicate_of",
                    "read_back_confirmed"]
    column_searchable_list = ["number", "description", "complainant_name"]
    column_sortable_list = ["number", "received_at", "due_at", "severity"]
    column_default_sort = ("received_at", True)
    column_labels = {
        "number": _l("Complaint no."), "received_at": _l("Received at"), "channel": _l("Channel"),
        "written": _l("Written complaint"), "unit": _l("Unit"), "resident": _l("Resident"),
        "complainant_name": _l("Complainant"), "contact_phone": _l("Contact phone"),
        "occurred_at": _l("Happened at"), "location": _l("Where"),
        "subject": _l("Person or department complained about"), "description": _l("What happened"),
        "demand": _l("What the resident asks for"), "category": _l("Category"), "validity": _l("Validity"),
        "about_property": _l("About property service"), "severity": _l("Severity"),
        "severity_since": _l("Graded at"), "households": _l("Households joining"),
        "read_back_confirmed": _l("Read back and confirmed by the resident"), "received_by": _l("Received by"),
        "department": _l("Responsible department"), "dispatched_at": _l("Dispatched at"),
        "accepted_at": _l("Receipt signed at"), "accepted_by": _l("Receipt signed by"),
        "handling_notes": _l("What the department did"), "handled_at": _l("Handled at"),
        "handled_by": _l("Handled by"), "reply_to_resident": _l("Result told to the resident"),
        "told_at": _l("Resident told at"), "invalid_explanation": _l("Explanation to the resident"),
        "reported_to_manager_at": _l("Reported to the manager at"), "answer_notes": _l("Definite answer"),
        "answered_at": _l("Answered at"), "resident_deadline": _l("Resident's reasonable deadline"),
        "extended_until": _l("Extended until"), "duplicate_of": _l("Duplicate of"),
        "help_request": _l("From help request"), "state": _l("Status"), "due_at": _l("Due"),
        "closed_at": _l("Closed at"),
        "letter_register_no": _l("Incoming-letter register no."),
        "reply_letter_text": _l("Written reply"), "reply_letter_date": _l("Reply letter dated"),
        "reply_signed_by": _l("Reply letter signed by"), "reply_recorded_at": _l("Written reply recorded at"),
        "reply_archive_id": _l("Filed in archive"),
        # the timeline names changed columns by these too
        "unit_id": _l("Unit"), "resident_id": _l("Resident"), "department_id": _l("Responsible department"),
        "duplicate_of_id": _l("Duplicate of"), "received_by_id": _l("Received by"),
        "accepted_by_id": _l("Receipt signed by"), "handled_by_id": _l("Handled by"),
        "help_request_id": _l("From help request"), "handling_until": _l("Due"),
        "extension_requested_until": _l("More time until (e.g. 2026-11-30 18:00)"),
    }
    column_descriptions = {
        "severity": rules.SEVERITY_HELP,
        "written": _l("A letter is always written: it gets an incoming-letter register number and is answered "
                      "by a reply letter before the resident counts as told (CMP-9)."),
        "households": _l("Add each household joining the complaint; three or more make it collective, "
                         "which is always major."),
        "about_property": _l("Untick for valid complaints about others, e.g. developer defects or sales "
                             "promises; they are still recorded."),
        "resident_deadline": _l("Minor complaints: the resident's reasonable deadline replaces the two days."),
        "duplicate_of": _l("The same problem already registered (e.g. with another department): link it, then "
                           "close this one as a duplicate; statistics count it once."),
    }
    form_overrides = {"channel": fields.SelectField, "category": fields.SelectField,
                      "severity": fields.SelectField, "contact_phone": fields.StringField,
                      "received_at": LocalDateTimeField, "occurred_at": LocalDateTimeField,
                      "resident_deadline": LocalDateTimeField}
    form_args = {
        "channel": {"choices": _choices(rules.CHANNELS)},
        "category": {"choices": _choices(rules.CATEGORIES)},
        "severity": {"choices": _choices(rules.SEVERITIES), "default": "minor"},
        "about_property": {"default": True},
        "received_at": {"default": utcnow, "validators": [DataRequired()]},
        "contact_phone": {"validators": [Optional(), Length(max=32)]},
    }
    form_ajax_refs = {"unit": {"fields": ["code"], "page_size": 20},
                      "resident": {"fields": ["name"], "page_size": 20},
                      "duplicate_of": {"fields": ["number"], "page_size": 20}}
    inline_models = [(ComplaintHousehold, {"form_columns": ["id", "unit", "contact_name"],
                                           "form_label": _l("Household"),
                                           "column_labels": {"unit": _l("Unit"), "contact_name": _l("Contact")},
                                           "form_ajax_refs": {"unit": {"fields": ["code"], "page_size": 20}}})]
    column_formatters_detail = {"households": _households}
    details_template = "admin/complaints/details.html"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [
            state_filter(Complaint),
            filters.FilterEqual(Complaint.severity, _l("Severity"), options=_choices(rules.SEVERITIES)),
            DepartmentFilter(Complaint.department_id, _l("Responsible department"), options=_choices(DEPARTMENTS)),
            filters.FilterEqual(Complaint.category, _l("Category"), options=_choices(rules.CATEGORIES)),
            OverdueFilter(Complaint.due_at, _l("Overdue"), options=[("1", _l("Yes")), ("0", _l("No"))]),
        ]
        super().__init__(*args, **kwargs)
        labels = {"channel": _label(rules.CHANNELS), "category": _label(rules.CATEGORIES),
                  "severity": _label(rules.SEVERITIES), "validity": _label(rules.VALIDITY),
                  "contact_phone": _masked}
        self.column_formatters = {**self.column_formatters, **labels, "number": _number}
        self.column_formatters_detail = {**self.column_formatters_detail, **labels,
                                         "contact_phone": lambda v, c, m, n: m.contact_phone or ""}
        self.column_formatters_export = {**self.column_formatters_export, **labels}

    def get_query(self) -> Any:
        query = super().get_query().options(db.joinedload(Complaint.unit), db.joinedload(Complaint.department))
        if request.endpoint == f"{self.endpoint}.export":  # the list shows no duplicate_of: no join there
            query = query.options(db.selectinload(Complaint.duplicate_of))
        return query

    def get_details_query(self) -> Any:
        return self.get_query().options(db.joinedload(Complaint.duplicate_of),
                                        db.selectinload(Complaint.households).joinedload(ComplaintHousehold.unit))

    def check_model(self, model: Complaint) -> None:
        super().check_model(model)
        model.check_intake()

    def render(self, template: str, **kwargs: Any) -> Any:
        model = kwargs.get("model")
        if template == self.details_template and model is not None:
            from models.visits import visits_of

            kwargs["visits"] = visits_of(model)  # VIS-1: the follow-up, linked from the form
        return super().render(template, **kwargs)


def register(admin: Admin) -> None:
    admin.add_view(ComplaintView(Complaint, db, name=_l("Complaints"), category=_l("Service desk"),
                                 endpoint="complaint"))


__all__ = ["ComplaintView", "register"]
