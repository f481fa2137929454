"""Staff accounts and the security log (ACC-1..7); admins only, no business data here."""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, request, url_for
from flask_admin.actions import action
from flask_admin.contrib.sqla import filters
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy.exc import IntegrityError
from wtforms import PasswordField, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Email, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from models import Department, RoleChange, SecurityEvent, Staff, db
from models.staff import ROLES
from models.validators import DomainError
from security import accounts
from views.base import SecureForm, SecureModelView, attach_error
from views.roles import ADMIN, NOBODY
from workflow.notify import send_email


class RolesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def role_choices() -> list[tuple[str, str]]:
    return [(key, str(label)) for key, label in ROLES.items()]


class StaffForm(SecureForm):
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=64)])
    full_name = StringField(_l("Full name"), validators=[DataRequired(), Length(max=64)])
    phone = StringField(_l("Phone"), validators=[Optional(), Length(max=32)])
    email = StringField(_l("Email"), validators=[Optional(), Email(), Length(max=254)])
    department = SelectField(_l("Department"), validators=[Optional()])
    roles = RolesField(_l("Roles"))
    password = PasswordField(_l("Initial password"), validators=[DataRequired(), Length(max=128)])


class StaffEditForm(SecureForm):
    full_name = StringField(_l("Full name"), validators=[DataRequired(), Length(max=64)])
    phone = StringField(_l("Phone"), validators=[Optional(), Length(max=32)])
    email = StringField(_l("Email"), validators=[Optional(), Email(), Length(max=254)])
    department = SelectField(_l("Department"), validators=[Optional()])
    roles = RolesField(_l("Roles"))
    active = SelectField(_l("Active"), choices=[("1", _l("Yes")), ("0", _l("No"))])
    confirm_password = PasswordField(_l("Your password (needed to change roles or deactivate)"),
                                     validators=[Optional(), Length(max=128)])


def _fill_choices(form: Any) -> None:
    form.roles.choices = role_choices()
    form.department.choices = [("", "-")] + [
        (d.key, str(d)) for d in db.session.scalars(db.select(Department).order_by(Department.id))]


class StaffView(SecureModelView):
    reauth_endpoints = frozenset({"export"})  # ACC-5: exporting personal data
    permissions = {"view": ADMIN, "create": ADMIN, "edit": ADMIN, "export": ADMIN, "delete": NOBODY,
                   "action:issue_reset": ADMIN}
    column_list = ["username", "full_name", "department", "roles", "active"]
    column_details_list = ["username", "full_name", "phone", "email", "department", "roles", "active",
                           "password_changed_at", "created_at"]
    column_export_list = ["username", "full_name", "department", "roles", "active"]
    form_columns: list[str] = []
    column_searchable_list = ["username", "full_name"]
    column_labels = {"username": _l("Username"), "full_name": _l("Full name"), "phone": _l("Phone"),
                     "email": _l("Email"), "department": _l("Department"), "roles": _l("Roles"),
                     "active": _l("Active"), "password_changed_at": _l("Password changed"),
                     "created_at": _l("Created")}
    column_formatters = {"roles": lambda v, c, m, n: "、".join(str(ROLES[r]) for r in sorted(m.roles))}
    column_formatters_export = column_formatters

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(Staff.department))

    def scaffold_form(self) -> type:
        return StaffForm

    def get_create_form(self) -> type:
        return StaffForm

    def get_edit_form(self) -> type:
        return StaffEditForm

    def create_form(self, obj: Any = None) -> Any:
        form = super().create_form(obj)
        _fill_choices(form)
        return form

    def edit_form(self, obj: Any = None) -> Any:
        form = super().edit_form(obj)
        _fill_choices(form)
        if request.method == "GET" and obj is not None:
            form.roles.data = sorted(obj.roles)
            form.department.data = obj.department.key if obj.department else ""
            form.active.data = "1" if obj.active else "0"
        return form

    def create_model(self, form: Any) -> Any:
        try:
            staff = accounts.create_staff(
                form.username.data, form.full_name.data, form.password.data, set(form.roles.data or []),
                department_key=form.department.data or None, phone=form.phone.data or None,
                email=form.email.data or None, actor=current_user)
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
            return False
        except IntegrityError:  # the username was taken between the check and the insert
            db.session.rollback()
            form.username.errors.append(_("This username is taken."))
            return False
        return staff

    def update_model(self, form: Any, model: Staff) -> bool:
        try:
            model.full_name = form.full_name.data.strip()
            model.phone = form.phone.data or None
            model.email = form.email.data or None
            model.department = db.session.scalar(
                db.select(Department).where(Department.key == form.department.data)) if form.department.data else None
            accounts.set_roles(model, set(form.roles.data or []), current_user, form.confirm_password.data)
            active = form.active.data == "1"
            if active != model.active:
                accounts.require_reauth(current_user, form.confirm_password.data)
                if model.id == current_user.id:
                    raise DomainError(_l("You cannot deactivate your own account."), "active")
                model.active = active
                accounts.end_sessions(model)
                accounts.log_event("account_deactivated" if not active else "account_activated",
                                   staff=model, detail=f"by {current_user.username}")
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            if exc.field == "confirm_password":  # the rollback dropped require_reauth's ACC-7 record
                accounts.log_event("reauth_failed", staff=current_user)
                db.session.commit()
            attach_error(form, exc)
            return False
        return True

    @action("issue_reset", _l("Issue password reset link"))
    def issue_reset(self, ids: list[str]) -> None:
        """ACC-3: show a one-time reset link for each selected account (and mail it if set up)."""
        for staff in [s for s in map(self.get_one, ids) if s is not None]:  # junk ids: skipped, not a 500
            token = accounts.issue_reset_token(staff, current_user)
            link = url_for("auth.reset", token=token, _external=True)
            db.session.commit()
            if staff.email and current_app.config.get("SMTP_HOST"):
                send_email(staff.email, _("Password reset"), link)
            flash(_("Reset link for %(user)s (valid 1 hour): %(link)s", user=staff.username, link=link),
                  "info")



class SecurityEventView(SecureModelView):
    """ACC-7: the admin reviews logins, failures and permission changes."""

    permissions = {"view": ADMIN, "export": ADMIN}
    can_view_details = False
    column_list = ["at", "kind", "username", "ip", "detail"]
    column_details_list = column_list
    column_export_list = column_list
    form_columns: list[str] = []
    column_searchable_list = ["username", "ip", "kind"]
    column_filters = ["kind", "username", "ip",
                      filters.DateTimeGreaterFilter(SecurityEvent.at, _l("Time")),
                      filters.DateTimeSmallerFilter(SecurityEvent.at, _l("Time"))]
    column_default_sort = ("at", True)
    column_labels = {"at": _l("Time"), "kind": _l("Event"), "username": _l("Username"),
                     "ip": _l("IP address"), "detail": _l("Detail")}


class RoleChangeView(SecureModelView):
    permissions = {"view": ADMIN, "export": ADMIN}
    column_list = ["at", "staff", "old_roles", "new_roles", "changed_by"]
    column_details_list = column_list
    column_export_list = column_list
    form_columns: list[str] = []
    column_default_sort = ("at", True)
    column_labels = {"at": _l("Time"), "staff": _l("Staff"), "old_roles": _l("Old roles"),
                     "new_roles": _l("New roles"), "changed_by": _l("Changed by")}

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(RoleChange.staff), db.joinedload(RoleChange.changed_by))


def register(admin: Any) -> None:
    cat = _l("Staff and security")
    s = db
    admin.add_view(StaffView(Staff, s, name=_l("Staff accounts"), category=cat, endpoint="staff"))
    admin.add_view(RoleChangeView(RoleChange, s, name=_l("Role changes"), category=cat, endpoint="role_change"))
    admin.add_view(SecurityEventView(SecurityEvent, s, name=_l("Security log"), category=cat,
                                     endpoint="security_event"))
