"""Key custody (钥匙托管) screens: the shipped worked example of a workflow regulation."""

from __future__ import annotations

from typing import Any

from flask_admin import Admin
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape

from models import db
from models.key_custody import KeyCustody, KeyUse
from views.roles import BUSINESS, FRONT_DESK, SUPERVISORS
from views.templating import localtime
from views.workflow import WorkflowModelView, state_filter


def _uses(view: Any, context: Any, model: KeyCustody, name: str) -> Markup:
    rows = [Markup("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>").format(
        u.holder, u.purpose, localtime(u.out_at), localtime(u.in_at) if u.in_at else "—") for u in model.uses]
    head = Markup("<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>").format(
        _l("Taken by"), _l("Purpose"), _l("Out"), _l("Back"))
    return Markup('<table class="table table-sm mb-0">{}{}</table>').format(head, Markup("").join(rows)) \
        if rows else escape("—")


class KeyCustodyView(WorkflowModelView):
    reauth_endpoints = frozenset({"export"})  # ACC-5: resident names and key holders
    permissions = {"view": BUSINESS, "create": FRONT_DESK, "edit": FRONT_DESK, "export": SUPERVISORS}
    column_list = ["tag_no", "unit", "resident", "description", "key_count", "state", "current_holder"]
    column_details_list = ["tag_no", "unit", "resident", "description", "key_count", "permitted_use",
                           "deposited_at", "state", "current_holder", "current_purpose", "returned_to",
                           "resident_confirmation", "uses", "created_at"]
    column_export_list = ["tag_no", "unit", "resident", "description", "key_count", "state",
                          "current_holder", "deposited_at"]
    form_columns = ["unit", "resident", "tag_no", "description", "key_count", "permitted_use", "deposited_at"]
    column_searchable_list = ["tag_no", "description"]
    column_sortable_list = ["tag_no", "deposited_at"]
    column_default_sort = ("tag_no", False)
    column_labels = {
        "tag_no": _l("Key tag"), "unit": _l("Unit"), "resident": _l("Depositing resident"),
        "description": _l("Keys"), "key_count": _l("Number of keys"), "permitted_use": _l("Permitted use"),
        "deposited_at": _l("Deposited at"), "state": _l("Status"), "current_holder": _l("Taken by"),
        "current_purpose": _l("Purpose"), "returned_to": _l("Returned to"),
        "resident_confirmation": _l("Resident's confirmation (name)"), "uses": _l("Use log"),
        "created_at": _l("Created"),
    }
    column_formatters_detail = {"uses": _uses}
    form_ajax_refs = {"unit": {"fields": ["code"], "page_size": 20},
                      "resident": {"fields": ["name", "phone"], "page_size": 20}}
    form_args = {"key_count": {"default": 1}}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [state_filter(KeyCustody)]
        super().__init__(*args, **kwargs)

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(KeyCustody.unit), db.joinedload(KeyCustody.resident))

    def get_details_query(self) -> Any:
        return self.get_query().options(db.selectinload(KeyCustody.uses))

    def check_model(self, model: KeyCustody) -> None:
        super().check_model(model)
        model.check_depositor()


def register(admin: Admin) -> None:
    admin.add_view(KeyCustodyView(KeyCustody, db, name=_l("Key custody"), category=_l("Service desk"),
                                  endpoint="key_custody"))


__all__ = ["KeyCustodyView", "KeyUse", "register"]
