"""Estate registry screens (REG-1..4): estates, buildings, units, residents, occupancies, VIPs."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import flash
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import SelectField, StringField
from wtforms.validators import Length, Optional

from models import (
    Building,
    Estate,
    Occupancy,
    Resident,
    ResidentChange,
    Unit,
    VipCommunication,
    VipProfile,
    db,
)
from models.registry import ESTATE_KINDS, GENDERS, OCCUPANCY_KINDS, UNIT_USES
from models.validators import DomainError
from security.accounts import log_event
from security.crypto import keyring, mask
from security.id_search import allow_lookup, is_id_number, refuse_lookup
from views.base import SecureModelView, has_any_role
from views.roles import BUSINESS, FRONT_DESK, NOBODY, SUPERVISORS


def choices(mapping: dict) -> list[tuple[str, Any]]:
    return list(mapping.items())


def label(mapping: dict):  # type: ignore[no-untyped-def]
    return lambda view, context, model, name: mapping.get(getattr(model, name), getattr(model, name))


class EstateView(SecureModelView):
    permissions = {"view": BUSINESS, "create": SUPERVISORS, "edit": SUPERVISORS,
                   "export": SUPERVISORS, "delete": NOBODY}
    column_list = ["code", "name", "kind", "address"]
    column_details_list = ["code", "name", "kind", "address", "handover_date", "created_at", "updated_at"]
    column_export_list = ["code", "name", "kind", "address", "handover_date"]
    form_columns = ["code", "name", "kind", "address", "handover_date"]
    column_searchable_list = ["code", "name"]
    column_labels = {"code": _l("Code"), "name": _l("Name"), "kind": _l("Kind"),
                     "address": _l("Address"), "handover_date": _l("Handed over on"),
                     "created_at": _l("Created"), "updated_at": _l("Updated")}
    column_formatters = {"kind": label(ESTATE_KINDS)}
    column_formatters_export = {"kind": label(ESTATE_KINDS)}
    form_overrides = {"kind": SelectField}
    form_args = {"kind": {"choices": choices(ESTATE_KINDS)}}


class BuildingView(SecureModelView):
    permissions = EstateView.permissions
    column_list = ["estate", "code", "name", "floors"]
    column_details_list = ["estate", "code", "name", "floors", "created_at"]
    column_export_list = ["estate", "code", "name", "floors"]
    form_columns = ["estate", "code", "name", "floors"]
    column_searchable_list = ["code", "name"]
    column_labels = {"estate": _l("Estate"), "code": _l("Code"), "name": _l("Name"),
                     "floors": _l("Floors"), "created_at": _l("Created")}
    column_default_sort = [("estate_id", False), ("code", False)]

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(Building.estate))


class UnitView(SecureModelView):
    permissions = {"view": BUSINESS, "create": FRONT_DESK, "edit": FRONT_DESK,
                   "export": SUPERVISORS, "delete": NOBODY}
    column_list = ["code", "building", "floor", "area", "use"]
    column_details_list = ["code", "building", "floor", "area", "use", "created_at", "updated_at"]
    column_export_list = ["code", "building", "floor", "area", "use"]
    form_columns = ["building", "code", "floor", "area", "use"]
    column_searchable_list = ["code"]
    column_filters = ["use", "floor"]
    column_sortable_list = ["code", "floor", "area"]
    column_default_sort = [("building_id", False), ("floor", False), ("code", False)]
    column_labels = {"code": _l("Unit code"), "building": _l("Building"), "floor": _l("Floor"),
                     "area": _l("Building area (m²)"), "use": _l("Use"), "created_at": _l("Created"),
                     "updated_at": _l("Updated")}
    column_formatters = {"use": label(UNIT_USES)}
    column_formatters_export = {"use": label(UNIT_USES)}
    form_overrides = {"use": SelectField}
    form_args = {"use": {"choices": choices(UNIT_USES)},
                 "code": {"description": _l("building-floor-room, e.g. A-12-1203")}}

    def get_query(self) -> Any:
        return super().get_query().options(
            db.joinedload(Unit.building).joinedload(Building.estate))

    def check_model(self, model: Unit) -> None:
        model.check_consistent()


class ResidentView(SecureModelView):
    """ID numbers: encrypted at rest, masked in lists and exports, searchable by exact number."""

    reauth_endpoints = frozenset({"export"})  # ACC-5: exporting personal data
    # The timeline shows old phone numbers and tenures (ARC-5): front desk only.
    permissions = {"view": FRONT_DESK | {"security", "finance"}, "create": FRONT_DESK,
                   "edit": FRONT_DESK, "export": SUPERVISORS, "delete": NOBODY, "timeline": FRONT_DESK}
    full_id_roles = SUPERVISORS  # ACC-6: who may see the whole number on the details page
    column_list = ["name", "gender", "phone", "id_number", "native_place"]
    column_details_list = ["name", "gender", "phone", "id_number", "native_place", "household_place",
                           "emergency_contact", "emergency_phone", "occupancies", "created_at"]
    column_export_list = ["name", "gender", "phone", "id_number", "native_place", "household_place"]
    form_columns = ["name", "gender", "phone", "id_number", "native_place", "household_place",
                    "emergency_contact", "emergency_phone"]
    column_searchable_list = ["name", "phone"]
    column_sortable_list = ["name"]
    column_labels = {"name": _l("Full name"), "gender": _l("Gender"), "phone": _l("Phone"),
                     "id_number": _l("National ID number"), "native_place": _l("Native place"),
                     "household_place": _l("Household registration"),
                     "emergency_contact": _l("Emergency contact"),
                     "emergency_phone": _l("Emergency phone"), "occupancies": _l("Units"),
                     "created_at": _l("Created")}
    column_descriptions = {"id_number": _l("Supervisors may search by the full 18-digit number.")}
    column_formatters = {"gender": label(GENDERS),
                         "id_number": lambda v, c, m, n: mask(m.id_number)}
    column_formatters_export = column_formatters
    form_overrides = {"gender": SelectField}
    form_args = {"gender": {"choices": [("", "-"), *choices(GENDERS)]}}
    form_extra_fields = {"id_number": StringField(_l("National ID number"), validators=[Optional(), Length(max=18)])}

    def get_query(self) -> Any:
        return super().get_query().options(db.selectinload(Resident.occupancies).joinedload(Occupancy.unit))

    def _apply_search(self, query, count_query, joins, count_joins, search):  # type: ignore[no-untyped-def]
        """An 18-digit term is looked up through the blind index; plaintext is never compared.

        ACC-6: only roles that see full numbers may look one up (for the others an exact search
        would undo the mask), within the per-minute limit; every attempt is in the security log.
        """
        term = (search or "").strip()
        if not is_id_number(term):
            return super()._apply_search(query, count_query, joins, count_joins, search)
        if not self.allowed_full_id():
            refuse_lookup(current_user._get_current_object(), self.endpoint, term)
            flash(_("Searching by national ID number is only for roles that may see full numbers."), "error")
            digest = None
        elif not allow_lookup(current_user._get_current_object(), self.endpoint, term):
            flash(_("Too many searches by national ID number; try again in a minute."), "error")
            digest = None
        else:
            digest = keyring().blind_index(term)
        found = Resident.id_number_bidx == digest if digest else sa.false()
        query = query.filter(found)
        if count_query is not None:
            count_query = count_query.filter(found)
        return query, count_query, joins, count_joins

    @expose("/details/")
    def details_view(self):  # type: ignore[no-untyped-def]
        """Opening a resident's details is a confidential view (ACC-7); full ID only for ACC-6 roles."""
        from flask import request

        record = self.get_one(request.args.get("id"))
        if record is not None:
            log_event("confidential_view", staff=current_user, detail=f"resident {record.id}")
            db.session.commit()
        return super().details_view()

    @property
    def column_formatters_detail(self) -> dict:  # type: ignore[override]
        if self.allowed_full_id():
            return {"gender": label(GENDERS)}
        return self.column_formatters

    @column_formatters_detail.setter
    def column_formatters_detail(self, value: Any) -> None:
        pass

    def allowed_full_id(self) -> bool:
        return has_any_role(self.full_id_roles)

    def on_form_prefill(self, form: Any, id: Any) -> None:
        super().on_form_prefill(form, id)
        # The edit form never shows the stored number; leaving it blank keeps it.
        form.id_number.data = ""
        form.id_number.description = mask(self.get_one(id).id_number)

    def apply_form(self, form: Any, model: Resident) -> None:
        entered = (form.id_number.data or "").strip()
        # ACC-6: "this number is already on file" answers an exact-number question too, so a typed
        # number counts against the same per-person limit as a search, and is logged (masked).
        if is_id_number(entered) and not allow_lookup(current_user._get_current_object(),
                                                      f"{self.endpoint} form", entered):
            raise DomainError(_l("Too many searches by national ID number; try again in a minute."),
                              "id_number")
        keep = model.id_number if model.id is not None and not form.id_number.data else None
        form.populate_obj(model)
        if keep is not None:
            model.id_number = keep


class OccupancyView(SecureModelView):
    """REG-2 ownership and occupancy over time; ending one sets its end date, history stays."""

    reauth_endpoints = frozenset({"export"})  # ACC-5: exporting personal data
    # The timeline shows old phone numbers and tenures (ARC-5): front desk only.
    permissions = {"view": FRONT_DESK | {"security", "finance"}, "create": FRONT_DESK,
                   "edit": FRONT_DESK, "export": SUPERVISORS, "delete": NOBODY, "timeline": FRONT_DESK}
    column_list = ["unit", "resident", "kind", "start_date", "end_date"]
    column_details_list = ["unit", "resident", "kind", "start_date", "end_date", "note", "created_at"]
    column_export_list = ["unit", "resident", "kind", "start_date", "end_date"]
    form_columns = ["unit", "resident", "kind", "start_date", "end_date", "note"]
    # What a clerk knows: the unit code, the person's name or phone.
    column_searchable_list = ["unit.code", "resident.name", "resident.phone"]
    column_filters = ["unit.code", "kind", "start_date", "end_date"]
    column_sortable_list = ["start_date", "end_date"]
    column_labels = {"unit": _l("Unit"), "unit.code": _l("Unit"), "resident.name": _l("Full name"),
                     "resident.phone": _l("Phone"), "resident": _l("Resident"), "kind": _l("Relation"),
                     "start_date": _l("Start date"), "end_date": _l("End date"), "note": _l("Note"),
                     "created_at": _l("Created")}
    column_formatters = {"kind": label(OCCUPANCY_KINDS)}
    column_formatters_export = column_formatters
    form_overrides = {"kind": SelectField}
    form_args = {"kind": {"choices": choices(OCCUPANCY_KINDS)}}
    form_ajax_refs = {"unit": {"fields": ["code"], "page_size": 20},
                      "resident": {"fields": ["name", "phone"], "page_size": 20}}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(Occupancy.unit), db.joinedload(Occupancy.resident))


class ResidentChangeView(SecureModelView):
    """ARC-5: read-only history of phone and tenure changes."""

    permissions = {"view": FRONT_DESK, "export": SUPERVISORS}
    column_list = ["at", "resident", "field", "old_value", "new_value"]
    column_details_list = column_list
    column_export_list = column_list
    form_columns: list[str] = []
    column_default_sort = ("at", True)
    column_labels = {"at": _l("Time"), "resident": _l("Resident"), "field": _l("Field"),
                     "old_value": _l("Old value"), "new_value": _l("New value")}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(ResidentChange.resident))


class VipProfileView(SecureModelView):
    """REG-4 key residents."""

    permissions = {"view": FRONT_DESK, "create": FRONT_DESK, "edit": FRONT_DESK,
                   "export": SUPERVISORS, "delete": NOBODY}
    column_list = ["resident", "birthday", "special_requirements"]
    column_details_list = ["resident", "birthday", "preferences", "special_requirements", "communications"]
    column_export_list = ["resident", "birthday", "preferences", "special_requirements"]
    form_columns = ["resident", "birthday", "preferences", "special_requirements"]
    column_labels = {"resident": _l("Resident"), "birthday": _l("Birthday"),
                     "preferences": _l("Preferences"), "special_requirements": _l("Special requirements"),
                     "communications": _l("Communications")}
    form_ajax_refs = {"resident": {"fields": ["name", "phone"], "page_size": 20}}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(VipProfile.resident))


class VipCommunicationView(SecureModelView):
    permissions = {"view": FRONT_DESK, "create": FRONT_DESK, "export": SUPERVISORS}
    column_list = ["at", "profile", "summary"]
    column_details_list = column_list
    column_export_list = column_list
    form_columns = ["profile", "summary"]
    column_default_sort = ("at", True)
    column_labels = {"at": _l("Time"), "profile": _l("Key resident"), "summary": _l("Summary")}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(VipCommunication.profile).joinedload(VipProfile.resident))

    def apply_form(self, form: Any, model: VipCommunication) -> None:
        form.populate_obj(model)
        model.staff_id = current_user.id


def register(admin: Any) -> None:
    cat = _l("Estate registry")
    s = db
    admin.add_view(EstateView(Estate, s, name=_l("Estates"), category=cat, endpoint="estate"))
    admin.add_view(BuildingView(Building, s, name=_l("Buildings"), category=cat, endpoint="building"))
    admin.add_view(UnitView(Unit, s, name=_l("Units"), category=cat, endpoint="unit"))
    admin.add_view(ResidentView(Resident, s, name=_l("Residents"), category=cat, endpoint="resident"))
    admin.add_view(OccupancyView(Occupancy, s, name=_l("Owners and occupants"), category=cat,
                                 endpoint="occupancy"))
    admin.add_view(ResidentChangeView(ResidentChange, s, name=_l("Change history"), category=cat,
                                      endpoint="resident_change"))
    admin.add_view(VipProfileView(VipProfile, s, name=_l("Key residents"), category=cat, endpoint="vip"))
    admin.add_view(VipCommunicationView(VipCommunication, s, name=_l("Key resident contacts"),
                                        category=cat, endpoint="vip_contact"))
