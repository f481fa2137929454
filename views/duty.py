"""Duty desk (值班与交接班) screens: roster and swaps, the append-only duty log and its follow-ups,
handovers, the supervisor's daily sign-off, visitors and patrols. Every rule is the model's."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import abort, flash, redirect, request
from flask_admin import Admin, expose
from flask_admin.actions import action
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import StringField
from wtforms.validators import Length, Optional

from models import db
from models.base import utcnow
from models.duty import (
    DESK_ITEMS,
    LOG_KINDS,
    SHANGHAI,
    SHIFT_KINDS,
    DutyFollowUp,
    DutyLog,
    DutyRoster,
    DutyShift,
    DutySwap,
    unconverted_night_items,
    unpublished_rosters,
)
from models.duty_desk import (
    DutyDaySignoff,
    DutyHandover,
    DutyHandoverItem,
    acknowledge,
    not_acknowledged,
    sign_days,
    unsigned_days,
)
from models.duty_security import PATROL_ROLES, PatrolRecord, VisitorLog, short_patrol_days
from models.validators import DomainError
from views.base import SecureModelView, SecureView
from views.fields import CheckboxesField
from views.params import record_id
from views.roles import BUSINESS, FRONT_DESK, SUPERVISORS
from views.workflow import WorkflowModelView, state_filter

DESK = FRONT_DESK | {"security"}
SUPERVISOR = frozenset({"cs_supervisor"})
CATEGORY = _l("Duty desk")


def _choices(mapping: dict[str, Any]) -> list[tuple[str, Any]]:
    return list(mapping.items())


class DutyRosterView(WorkflowModelView):
    permissions = {"view": BUSINESS, "create": SUPERVISOR, "edit": SUPERVISOR, "export": SUPERVISORS}
    column_list = ["month", "state", "published_at", "published_late"]
    column_details_list = ["month", "state", "published_at", "published_late", "note", "shifts", "created_at"]
    column_export_list = column_list
    form_columns = ["month", "note"]
    column_default_sort = ("month", True)
    column_labels = {"month": _l("Month"), "state": _l("Status"), "published_at": _l("Published at"),
                     "published_late": _l("Published late"), "shifts": _l("Shifts"), "created_at": _l("Created"),
                     "note": _l("Note")}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [state_filter(DutyRoster)]
        super().__init__(*args, **kwargs)

    def get_details_query(self) -> Any:
        return self.get_query().options(db.selectinload(DutyRoster.shifts).joinedload(DutyShift.staff))

    def check_model(self, model: DutyRoster) -> None:
        super().check_model(model)
        model.check_month()


class DutyShiftView(SecureModelView):
    permissions = {"view": BUSINESS, "create": SUPERVISOR, "export": SUPERVISORS}
    column_list = ["roster", "day", "kind", "staff"]
    column_details_list = column_list
    column_export_list = column_list
    form_columns = ["roster", "day", "kind", "staff"]
    column_default_sort = ("day", False)
    column_labels = {"roster": _l("Roster"), "day": _l("Day"), "kind": _l("Kind of duty"), "staff": _l("On duty")}
    column_choices = {"kind": _choices(SHIFT_KINDS)}
    form_choices = {"kind": _choices(SHIFT_KINDS)}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(DutyShift.roster), db.joinedload(DutyShift.staff))

    def check_model(self, model: DutyShift) -> None:
        super().check_model(model)
        model.check_shift()


class DutySwapView(WorkflowModelView):
    permissions = {"view": BUSINESS, "create": DESK, "export": SUPERVISORS}
    column_list = ["shift", "to_staff", "reason", "state"]
    column_details_list = ["shift", "from_staff", "to_staff", "reason", "state", "created_at"]
    column_export_list = column_list
    form_columns = ["shift", "to_staff", "reason"]
    column_labels = {"shift": _l("Shift"), "to_staff": _l("Colleague taking over"), "from_staff": _l("Was on duty"),
                     "reason": _l("Reason"), "state": _l("Status"), "created_at": _l("Created")}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(DutySwap.shift).joinedload(DutyShift.staff),
                                           db.joinedload(DutySwap.to_staff))


class DutyLogView(SecureModelView):
    """DTY-3: create and read only; no edit, no delete endpoint exists for anyone."""

    permissions = {"view": BUSINESS, "create": DESK, "export": SUPERVISORS, "action:sign_days": SUPERVISOR}
    column_list = ["created_at", "desk", "kind", "body", "important", "needs_follow_up", "corrects_id", "author"]
    column_details_list = column_list
    column_export_list = column_list
    form_columns = ["kind", "body", "important", "needs_follow_up", "corrects_id", "desk"]
    column_searchable_list = ["body"]
    column_default_sort = ("created_at", True)
    column_labels = {"created_at": _l("Time"), "desk": _l("Desk"), "kind": _l("Kind of duty work"),
                     "body": _l("Entry"), "important": _l("Important"), "needs_follow_up": _l("Needs follow-up"),
                     "corrects_id": _l("Corrects entry no."), "author": _l("Written by")}
    column_choices = {"kind": _choices(LOG_KINDS)}
    form_choices = {"kind": _choices(LOG_KINDS)}
    form_args = {"desk": {"default": "main"}}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(DutyLog.author))

    def check_model(self, model: DutyLog) -> None:
        super().check_model(model)
        model.author_id, model.created_at = current_user.id, utcnow()
        model.check_entry()

    @action("sign_days", _l("Supervisor signs the days of the selected entries"))
    def sign_days_action(self, ids: list[str]) -> None:
        """DTY-6 bulk sign-off: every day (Beijing) that a selected entry was written on."""
        rows = [r for r in map(self.get_one, ids) if r is not None]
        days = sorted({r.created_at.astimezone(SHANGHAI).date() for r in rows})
        try:
            for desk in sorted({r.desk for r in rows}):
                sign_days(current_user, [d for d in days if any(
                    r.desk == desk and r.created_at.astimezone(SHANGHAI).date() == d for r in rows)], desk)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc), "error")
            return
        flash(_l("Signed %(n)s day(s).", n=len(days)), "success")


class DutyFollowUpView(WorkflowModelView):
    permissions = {"view": BUSINESS, "export": SUPERVISORS}
    column_list = ["log", "state", "help_request", "resolution"]
    column_details_list = column_list
    column_export_list = column_list
    form_columns: list[str] = []
    column_labels = {"log": _l("Duty log entry"), "state": _l("Status"), "help_request": _l("Help request"),
                     "resolution": _l("Resolution")}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [state_filter(DutyFollowUp)]
        super().__init__(*args, **kwargs)

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(DutyFollowUp.log), db.joinedload(DutyFollowUp.help_request))


class DutyHandoverView(WorkflowModelView):
    permissions = {"view": BUSINESS, "create": DESK, "edit": DESK, "export": SUPERVISORS}
    column_list = ["desk", "outgoing", "incoming", "state", "missing_items", "taken_at", "handed_at"]
    column_details_list = ["desk", "outgoing", "handed_to", "incoming", "state", "items_counted", "missing_items",
                           "anomalies", "read_previous_log", "taken_at", "handed_at"]
    column_export_list = column_list
    form_columns = ["desk", "outgoing", "handed_to", "items_counted", "missing_items", "anomalies",
                    "read_previous_log"]
    details_template = "admin/duty/handover_details.html"
    column_descriptions = {"handed_to": _l("The person coming on duty, named: your open important work is handed "
                                           "over to them item by item, and they acknowledge each (DTY-4).")}
    column_labels = {"desk": _l("Desk"), "outgoing": _l("Going off duty"), "incoming": _l("Coming on duty"),
                     "handed_to": _l("Handed over to"), "closed_at": _l("Closed at"),
                     "state": _l("Status"), "items_counted": _l("Desk items counted"),
                     "missing_items": _l("Missing items"), "anomalies": _l("Anomalies"),
                     "read_previous_log": _l("Read the previous log"), "taken_at": _l("Taken over at"),
                     "handed_at": _l("Handed over at")}
    form_overrides = {"items_counted": CheckboxesField}
    form_args = {"desk": {"default": "main"},
                 "items_counted": {"choices": list(DESK_ITEMS.items()), "validate_choice": True}}
    column_formatters = {"items_counted": lambda v, c, m, n: "、".join(
        str(DESK_ITEMS.get(k, k)) for k in (m.items_counted or "").split(",") if k)}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(DutyHandover.outgoing),
                                           db.joinedload(DutyHandover.incoming))

    def extra_endpoints(self) -> dict[str, str]:
        return {**super().extra_endpoints(), "acknowledge_view": "view"}  # the model checks who

    @expose("/acknowledge/", methods=["POST"])
    def acknowledge_view(self) -> Any:
        """DTY-4: the named incoming person acknowledges one item handed over to them."""
        item_id = record_id(request.form.get("id"))
        item = db.session.get(DutyHandoverItem, item_id) if item_id is not None else None
        handover = self.get_one(item.handover_id) if item is not None else None
        if handover is None:
            abort(404)
        try:
            acknowledge(item, current_user)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        else:
            flash(_l("Acknowledged."), "success")
        return redirect(self.get_url(".details_view", id=handover.id))

    def render(self, template: str, **kwargs: Any) -> Any:
        model = kwargs.get("model")
        if template == self.details_template and model is not None:
            kwargs.update(open_work=not_acknowledged(model) if model.state == "counting" else [],
                          me_id=current_user.id, may_acknowledge=model.state == "counting")
        return super().render(template, **kwargs)


class DutyDaySignoffView(SecureModelView):
    permissions = {"view": BUSINESS, "export": SUPERVISORS}
    column_list = ["day", "desk", "entries", "signed_by", "signed_at"]
    column_details_list = column_list
    column_export_list = column_list
    form_columns: list[str] = []
    column_default_sort = ("day", True)
    column_labels = {"day": _l("Day"), "desk": _l("Desk"), "entries": _l("Entries"), "signed_by": _l("Signed by"),
                     "signed_at": _l("Signed at")}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(DutyDaySignoff.signed_by))


class VisitorLogView(SecureModelView):
    reauth_endpoints = frozenset({"export"})  # ACC-5: names and ID documents
    permissions = {"view": DESK, "create": DESK, "edit": DESK, "export": SUPERVISORS}
    column_list = ["time_in", "time_out", "name", "id_masked", "host_unit", "plate"]
    column_details_list = column_list
    column_export_list = column_list
    form_columns = ["name", "id_shown", "host_unit", "plate", "time_in", "time_out"]
    column_default_sort = ("time_in", True)
    column_labels = {"time_in": _l("Time in"), "time_out": _l("Time out"), "name": _l("Visitor"),
                     "id_shown": _l("ID document shown"), "id_masked": _l("ID document shown"),
                     "host_unit": _l("Unit visited"), "plate": _l("Vehicle plate")}
    form_ajax_refs = {"host_unit": {"fields": ["code"], "page_size": 20}}
    # The encrypted column has no scaffolded field: a plain input, stored encrypted, shown masked.
    form_extra_fields = {"id_shown": StringField(_l("ID document shown"), validators=[Optional(), Length(max=32)])}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(VisitorLog.host_unit))

    def check_model(self, model: VisitorLog) -> None:
        super().check_model(model)
        if model.logged_by_id is None:
            model.logged_by_id = current_user.id
        model.check_visit()


class PatrolRecordView(WorkflowModelView):
    permissions = {"view": BUSINESS, "create": PATROL_ROLES, "export": SUPERVISORS}
    column_list = ["patrolled_at", "patroller", "area", "findings", "state", "help_request"]
    column_details_list = column_list
    column_export_list = column_list
    form_columns = ["patrolled_at", "area", "findings"]
    column_default_sort = ("patrolled_at", True)
    column_labels = {"patrolled_at": _l("Patrolled at"), "patroller": _l("Patrolled by"), "area": _l("Area"),
                     "findings": _l("Findings"), "state": _l("Status"), "help_request": _l("Work order")}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(PatrolRecord.patroller),
                                           db.joinedload(PatrolRecord.help_request))

    def check_model(self, model: PatrolRecord) -> None:
        super().check_model(model)
        if model.patroller_id is None:
            model.patroller_id = current_user.id
        if not (model.area or "").strip():
            raise DomainError(_l("Name the area patrolled."), "area")


class DutyChecksView(SecureView):
    """The lists the rules ask for: DTY-1 unpublished rosters, DTY-5 last night's open items,
    DTY-6 unsigned days, DTY-9 days with fewer than two patrols."""

    permissions = {"view": BUSINESS}

    @expose("/")
    def index(self):  # type: ignore[no-untyped-def]
        today = utcnow().astimezone(SHANGHAI).date()
        week = today - timedelta(days=7)
        return self.render("admin/duty/checks.html", unpublished=unpublished_rosters(),
                           night_items=unconverted_night_items(today - timedelta(days=1)),
                           unsigned=unsigned_days(week, today - timedelta(days=1)),
                           short_patrols=short_patrol_days(week, today - timedelta(days=1)))


def register(admin: Admin) -> None:
    """Adds this regulation's screens."""
    for view, model, name, endpoint in [
        (DutyRosterView, DutyRoster, _l("Duty rosters"), "duty_roster"),
        (DutyShiftView, DutyShift, _l("Duty shifts"), "duty_shift"),
        (DutySwapView, DutySwap, _l("Duty swaps"), "duty_swap"),
        (DutyLogView, DutyLog, _l("Duty log"), "duty_log"),
        (DutyFollowUpView, DutyFollowUp, _l("Duty follow-ups"), "duty_followup"),
        (DutyHandoverView, DutyHandover, _l("Handovers"), "duty_handover"),
        (DutyDaySignoffView, DutyDaySignoff, _l("Daily log sign-offs"), "duty_day_signoff"),
        (VisitorLogView, VisitorLog, _l("Visitors and vehicles"), "visitor_log"),
        (PatrolRecordView, PatrolRecord, _l("Patrols"), "patrol_record"),
    ]:
        admin.add_view(view(model, db, name=name, category=CATEGORY, endpoint=endpoint))
    admin.add_view(DutyChecksView(name=_l("Duty desk checks"), category=CATEGORY, endpoint="duty_checks"))


__all__ = ["register"]
