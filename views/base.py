"""The secured base view every Flask-Admin screen stands on: deny by default, on the server.

Closes Flask-Admin's known gaps: ``get_one`` ignores ``get_query`` (IDOR), ``/ajax/update/``
ignores ``can_edit``, export falls back to every column, forms carry no CSRF token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from flask import abort, flash, has_request_context, redirect, request, session, url_for
from flask_admin import BaseView
from flask_admin.babel import gettext as admin_gettext
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.ajax import QueryAjaxModelLoader
from flask_admin.model import typefmt
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from wtforms import HiddenField, PasswordField

from models import db
from models.validators import DomainError
from security.accounts import log_event
from security.auth import recently_reauthenticated
from security.cells import neutralise
from security.personal import personal_columns_of
from views import exports, form_rules, form_tokens, presets
from views.fields import ModelConverter
from views.params import ListParams, record_id
from views.roles import in_menu
from views.templating import localtime
from workflow import important

# Which permission each Flask-Admin endpoint needs. An endpoint not listed is refused.
ENDPOINT_PERMISSION = {
    "index_view": "view",
    "details_view": "view",
    "create_view": "create",
    "edit_view": "edit",
    "delete_view": "delete",
    "export": "export",
    "ajax_lookup": "view",
    "ajax_update": "edit",
    "action_view": "view",  # then each action is checked by is_action_allowed
}


def _local(view: Any, value: datetime, name: str = "") -> str:
    return localtime(value)


LIST_TEXT_MAX = 24  # characters of a text cell in a list; the whole text on hover


def _short(view: Any, value: str, name: str = "") -> Any:
    """Lists show the start of long text (descriptions, notes), the rest in the hover title."""
    if isinstance(value, Markup) or len(value) <= LIST_TEXT_MAX:
        return value
    return Markup('<span class="cell-short" title="{}">{}…</span>').format(value, value[:LIST_TEXT_MAX - 1])


def _yes_no(view: Any, value: bool, name: str = "") -> str:
    """Details pages and exports say 是/否, not Python's True/False."""
    return _("Yes") if value else _("No")


def has_any_role(roles: set[str] | frozenset[str]) -> bool:
    if not has_request_context() or not current_user.is_authenticated:
        return False
    return bool(current_user.is_active and current_user.roles & set(roles))


def attach_error(form: Any, exc: DomainError) -> None:
    """Show a domain error next to its field, or as a message when no field matches."""
    field = getattr(form, exc.field, None) if exc.field else None
    if field is not None and isinstance(getattr(field, "errors", None), list):
        field.errors.append(str(exc.message))
    else:
        flash(str(exc.message), "error")


class IdAjaxLoader(QueryAjaxModelLoader):
    """Ajax relation fields and lookups: junk ids and paging are "nothing found", never a database
    error (PostgreSQL refuses ``integer = 'abc'`` and negative LIMIT/OFFSET)."""

    def get_one(self, pk: Any) -> Any:
        key = record_id(pk)
        return None if key is None else super().get_one(key)

    def get_list(self, term: str, offset: int = 0, limit: int = 10) -> Any:
        return super().get_list(term, max(offset or 0, 0), min(max(limit or 0, 1), 100))


class VersionField(HiddenField):
    """The optimistic-lock version the form was opened at: compared in ``_save``, never written
    back (writing it pins the version, so a second stale form would pass the check)."""

    def populate_obj(self, obj: Any, name: str) -> None:
        pass


class SecureForm(FlaskForm):
    """Flask-WTF form: every admin form and action posts a CSRF token."""

    def __init__(self, *args: Any, obj: Any = None, **kwargs: Any) -> None:
        # Flask-Admin's Unique validator tells "this record" from "another one" by ``form._obj``
        # (set by its own BaseForm); without it every edit of a unique field fails as a duplicate.
        self._obj = obj
        super().__init__(*args, obj=obj, **kwargs)

    def populate_obj(self, obj: Any) -> None:
        """Every field is tried, so the model's validators refuse all bad fields in one save."""
        refused = []
        for name, field in self._fields.items():
            try:
                field.populate_obj(obj, name)
            except DomainError as exc:
                refused.append(exc)
        if len(refused) == 1:
            raise refused[0]
        if refused:
            raise form_rules.DomainErrors(refused)


class RoleGuard:
    """Shared access logic for model and plain views: permissions name roles, nothing else."""

    permissions: ClassVar[dict[str, frozenset[str]]] = {}

    def allowed(self, permission: str) -> bool:
        return has_any_role(self.permissions.get(permission, frozenset()))

    def is_accessible(self) -> bool:
        return self.allowed("view")

    def is_visible(self) -> bool:
        """Menus per role (views/roles.py ``MENUS``); hiding is not refusing: permissions decide."""
        return not has_request_context() or not current_user.is_authenticated or \
            in_menu(current_user.roles, getattr(self, "endpoint", ""))

    def inaccessible_callback(self, name: str, **kwargs: Any):  # type: ignore[no-untyped-def]
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(403)


class SecureModelView(ListParams, RoleGuard, ModelView):
    """Model screens with explicit column allow-lists and role checks on every endpoint; request
    numbers (page, filters) range-checked by ``ListParams``."""

    form_base_class = SecureForm
    model_form_converter = ModelConverter  # UTC times typed and shown in the site's zone
    column_editable_list: ClassVar[list[str]] = []  # status-like columns are never inline-edited
    can_view_details = True
    details_template = "admin/record/details.html"
    page_size = 50
    can_set_page_size = True
    list_template = "admin/model/data_list.html"  # data first, the row's controls last, one menu
    create_template = "admin/model/form_create.html"  # the error summary above the form
    edit_template = "admin/model/form_edit.html"
    export_types = ["csv", "xlsx"]
    column_type_formatters = {str: _short, datetime: _local, **typefmt.BASE_FORMATTERS}
    column_type_formatters_export = {datetime: _local, bool: _yes_no, **typefmt.EXPORT_FORMATTERS}
    column_type_formatters_detail = {datetime: _local, bool: _yes_no, **typefmt.DETAIL_FORMATTERS}
    reauth_endpoints: ClassVar[frozenset[str]] = frozenset()  # ACC-5: e.g. export of personal data
    required_lists = ("column_list", "column_details_list", "form_columns", "column_export_list")

    def __init__(self, model: type, session: Any, **kwargs: Any) -> None:
        for name in self.required_lists:
            if getattr(self, name, None) is None:
                raise TypeError(f"{type(self).__name__} must declare {name} explicitly")
        if self.column_editable_list:
            raise TypeError("inline editing bypasses the workflow layer; not allowed")
        super().__init__(model, session, **kwargs)
        self._link_units()

    def _link_units(self) -> None:
        """A record's unit links to the unit's page (issue 14); exports keep the plain code."""
        rel = sa.inspect(self.model).relationships.get("unit")
        if rel is None or rel.mapper.class_.__name__ != "Unit":
            return
        from views.unit_page import unit_link

        if "unit" not in self.column_formatters:
            self.column_formatters = {**self.column_formatters, "unit": unit_link}
        if self.column_formatters_detail is not None and "unit" not in self.column_formatters_detail:
            self.column_formatters_detail = {**self.column_formatters_detail, "unit": unit_link}

    # can_* are read by Flask-Admin's templates and views; derive them from roles every time.
    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return self.allowed("create")

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        return self.allowed("edit")

    @property
    def can_delete(self) -> bool:  # type: ignore[override]
        return self.allowed("delete")

    @property
    def can_export(self) -> bool:  # type: ignore[override]
        return self.allowed("export")

    # Flask-Admin assigns these in its constructor; ignore the writes, roles decide.
    @can_create.setter
    def can_create(self, value: bool) -> None:
        pass

    @can_edit.setter
    def can_edit(self, value: bool) -> None:
        pass

    @can_delete.setter
    def can_delete(self, value: bool) -> None:
        pass

    @can_export.setter
    def can_export(self, value: bool) -> None:
        pass

    def _handle_view(self, name: str, **kwargs: Any):  # type: ignore[no-untyped-def]
        if not self.is_accessible():
            return self.inaccessible_callback(name, **kwargs)
        permission = ENDPOINT_PERMISSION.get(name) or self.extra_endpoints().get(name)
        if permission is None or not self.allowed(permission):
            abort(403)
        if name == "ajax_lookup" and not (self.allowed("create") or self.allowed("edit")):
            abort(403)  # lookups serve form fields; they would otherwise list related records
        if name == "action_view" and not self.is_action_allowed(request.form.get("action", "")):
            abort(403)  # Flask-Admin would silently redirect a refused or unknown action
        if self.needs_reauth(name):
            if not recently_reauthenticated():
                return redirect(url_for("auth.reauth", next=request.full_path.rstrip("?")))
            log_event(f"{name}", staff=current_user, detail=f"{self.endpoint} {request.full_path}"[:500])
            db.session.commit()
        return None

    def needs_reauth(self, name: str) -> bool:
        """ACC-5: the view's declared endpoints, and every export that shows personal data."""
        if name in self.reauth_endpoints:
            return True
        return name == "export" and bool(personal_columns_of(self.model, self.column_export_list or ()))

    def download_refusal(self, attachment: Any) -> str | None:
        """Why the user may see this record yet not take a copy of its file (None: they may)."""
        return None

    def extra_endpoints(self) -> dict[str, str]:
        """Permissions for a subclass's own ``@expose`` endpoints; unlisted ones are refused."""
        return {}

    def get_export_value(self, model: Any, name: Any) -> Any:
        """SEC-1: every exported cell (CSV and tablib formats) passes one formula-injection guard."""
        return neutralise(super().get_export_value(model, name))

    def _export_rows(self) -> tuple[list[str], Any]:
        _count, data = self._export_data()
        titles = [str(c[1]) for c in self._export_columns]
        return titles, ([self.get_export_value(row, c[0]) for c in self._export_columns] for row in data)

    def _export_csv(self, return_url: Any) -> Any:
        """CSV with a UTF-8 BOM, named after the screen in local time."""
        titles, rows = self._export_rows()
        return exports.csv_response(exports.file_name(str(self.name), "csv"), titles, rows)

    def _export_tablib(self, export_type: str, return_url: str) -> Any:
        """XLSX (the only other format offered), every cell a value, never a formula."""
        if export_type != "xlsx":
            abort(404)
        titles, rows = self._export_rows()
        return exports.xlsx_response(exports.file_name(str(self.name), "xlsx"), str(self.name), titles, rows)

    def render(self, template: str, **kwargs: Any) -> Any:
        """Details pages get the record's timeline from the audit trail; forms their error summary
        (instead of Flask-Admin's English "Failed to create record.")."""
        if template in (self.create_template, self.edit_template) and session.get("_flashes"):
            failed = {"Failed to create record.", str(admin_gettext("Failed to create record."))}
            session["_flashes"] = [(c, m) for c, m in session["_flashes"] if str(m) not in failed]
        may_see = self.allowed("timeline" if "timeline" in self.permissions else "view")
        if template == self.details_template and kwargs.get("model") is not None and may_see:
            from views.audit import timeline_for

            kwargs.setdefault("timeline", timeline_for(kwargs["model"]))
        return super().render(template, **kwargs)

    def is_action_allowed(self, name: str) -> bool:
        if name == "delete":
            return self.allowed("delete")
        return self.allowed(f"action:{name}")

    def scope_query(self, query: Any) -> Any:
        """Narrow what this user may see; list, details, edit, delete and export all use it."""
        return query

    # The home page's counts link here with ?preset=<key> (views/presets.py): same scope, same clause.
    def get_query(self) -> Any:
        return presets.narrow(self, self.scope_query(super().get_query()))

    def get_count_query(self) -> Any:
        return presets.narrow(self, self.scope_query(super().get_count_query()))

    def get_one(self, id: Any) -> Any:
        """Only a record the list would show: closes the IDOR gap of ``session.get``."""
        pk = record_id(id)
        if pk is None:
            return None  # junk, or a number no row can have (it would crash the driver)
        return self.get_query().filter(self.model.id == pk).one_or_none()

    def _create_ajax_loader(self, name: str, options: dict[str, Any]) -> Any:
        options = dict(options)
        loader = options.pop("loader_class", IdAjaxLoader)
        model = super()._create_ajax_loader(name, options).model
        return loader(name, self.session, model, **options)

    # --- forms: required marks, one-time token, every error at once, nothing written --------
    def get_edit_form(self) -> type:
        form = super().get_edit_form()
        form.version = VersionField()
        if important.important_keys(self.model):  # ACC-8: asked for only when such a field changes
            form.confirm_password = PasswordField(_l("Your password (only when changing important information)"))
        return form

    def get_create_form(self) -> type:
        form = super().get_create_form()
        form.form_token = form_tokens.FormTokenField()
        return form

    def create_form(self, obj: Any = None) -> Any:
        form = super().create_form(obj)
        if hasattr(form, "form_token") and request.method == "GET":
            form.form_token.data = form_tokens.issue(self.endpoint)
        return self.mark_required(form)

    def edit_form(self, obj: Any = None) -> Any:
        return self.mark_required(super().edit_form(obj))

    def rule_required(self) -> set[str]:
        """Fields ``check_model`` refuses when empty, found once per screen on a blank record."""
        cached = self.__dict__.get("_rule_required")
        if cached is None:
            form = self._create_form_class() if self.allowed("create") else None
            try:
                found = form_rules.refused_empty(self.build_new_instance(), form)
                found |= form_rules.rule_required(self.build_new_instance(), self.check_model, form)
            finally:
                if db.session.new or db.session.dirty:  # a rule that wrote: drop it (else keep
                    db.session.rollback()  # the loaded user and rows unexpired)
            if form is None:
                return found  # choices unknown: the probe may stop early, do not keep it
            cached = self.__dict__["_rule_required"] = found
        return cached

    def mark_required(self, form: Any) -> Any:
        """Every field the model or its rules require carries Flask-Admin's ``*``."""
        for name in self.rule_required():
            field = getattr(form, name, None)
            if field is not None and not form_rules.is_required(field):
                field.validators = [*field.validators, form_rules.RuleRequired()]
        return form

    def on_form_prefill(self, form: Any, id: Any) -> None:
        if hasattr(form, "version") and request.method == "GET":
            form.version.data = str(self.get_one(id).version)

    def check_model(self, model: Any) -> None:
        """Cross-field checks of a populated model before it is written; raise DomainError."""

    def apply_form(self, form: Any, model: Any) -> None:
        form.populate_obj(model)

    def validate_form(self, form: Any) -> bool:
        """A form its own validators refuse also hears from the model's rules, so one failed save
        lists every problem (not the empty fields first, then the rules one save at a time)."""
        if super().validate_form(form):
            return True
        view = (request.endpoint or "").rsplit(".", 1)[-1]
        if request.method == "POST" and view in ("create_view", "edit_view"):
            model = self.build_new_instance() if view == "create_view" else self.get_one(request.args.get("id"))
            if model is not None:
                try:
                    self._rule_refusals(form, model)
                finally:
                    db.session.rollback()  # the probe's values are never written
        return False

    def _rule_refusals(self, form: Any, model: Any) -> None:
        with db.session.no_autoflush:
            for name, field in form._fields.items():
                if field.errors or name in ("csrf_token", "form_token", "version"):
                    continue
                try:
                    field.populate_obj(model, name)
                except DomainError as exc:
                    attach_error(form, exc)
                except Exception:  # noqa: BLE001, S112 - a field that cannot be tried alone
                    continue
            try:
                self.check_model(model)
                return
            except DomainError as exc:
                found = form_rules.refusals(model, self.check_model, exc, form)
            except Exception:  # noqa: BLE001 - rules that need the refused fields to run
                return
        for refusal in found:
            field = getattr(form, refusal.field, None) if refusal.field else None
            if field is not None and not field.errors:
                attach_error(form, refusal)

    def _form_nonce(self, form: Any) -> str | bool | None:
        """A create form's one-time token: its nonce, False when refused (flashed), None when the
        post carries none (a script's; not checked)."""
        token = getattr(getattr(form, "form_token", None), "data", None)
        if not token:
            return None
        nonce = form_tokens.nonce_of(token, self.endpoint)
        if nonce is None:
            flash(_("This form has expired. Open the create page again; nothing was saved."), "error")
            return False
        if form_tokens.used(nonce):
            flash(_("This form was already submitted and its record was created once; it was not "
                    "created again. To add another record, open the create page again."), "error")
            return False
        return nonce

    def _save(self, form: Any, model: Any, is_created: bool) -> bool:
        checked = False
        try:
            if not is_created and hasattr(form, "version"):
                if str(form.version.data or "") != str(model.version):
                    raise StaleDataError("stale form")
            nonce = self._form_nonce(form) if is_created else None
            if nonce is False:
                return False
            self.apply_form(form, model)
            checked = True
            with db.session.no_autoflush:  # a rule's query must not flush the change before ACC-8's check
                self.check_model(model)
            if not is_created and important.important_changes(model):  # ACC-8: the password again
                important.confirm(current_user._get_current_object(), getattr(form, "confirm_password", None)
                                  and form.confirm_password.data)
            if is_created:
                db.session.add(model)
            self._on_model_change(form, model, is_created)
            if nonce:
                form_tokens.spend(nonce)  # last: the write lock is taken only now
            db.session.commit()
        except DomainError as exc:
            # A rule about an empty field: the rules after it run too, so one save lists them all.
            if isinstance(exc, form_rules.DomainErrors):
                found = exc.errors
            else:
                found = form_rules.refusals(model, self.check_model, exc, form) if checked else [exc]
            db.session.rollback()
            for refusal in found:
                attach_error(form, refusal)
            return False
        except StaleDataError:
            db.session.rollback()
            flash(_("Someone else changed this record after you opened it. Reload and try again; "
                    "your input was not saved."), "error")
            return False
        except IntegrityError:
            db.session.rollback()
            if nonce and form_tokens.used(nonce):
                flash(_("This form was already submitted and its record was created once; it was not "
                        "created again. To add another record, open the create page again."), "error")
                return False
            flash(_("A record with the same key already exists, or a related record is missing. "
                    "Nothing was saved."), "error")
            return False
        except DataError:  # e.g. a number too large for its column (PostgreSQL)
            db.session.rollback()
            flash(_("A value is out of range for the database. Nothing was saved."), "error")
            return False
        self.after_model_change(form, model, is_created)
        return True

    def create_model(self, form: Any) -> Any:
        model = self.build_new_instance()
        return model if self._save(form, model, True) else False

    def update_model(self, form: Any, model: Any) -> bool:
        return self._save(form, model, False)

    def delete_model(self, model: Any) -> bool:
        try:
            db.session.delete(model)
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            flash(_("This record is still referred to by others and cannot be deleted."), "error")
            return False
        return True


class SecureView(RoleGuard, BaseView):
    """A plain (non-model) screen guarded by the same role permissions."""

    # ACC-5: its own file exports that name residents (no column list to read them from)
    reauth_endpoints: ClassVar[frozenset[str]] = frozenset()

    def _handle_view(self, name: str, **kwargs: Any):  # type: ignore[no-untyped-def]
        if not self.is_accessible():
            return self.inaccessible_callback(name, **kwargs)
        if name in self.reauth_endpoints and not recently_reauthenticated():
            return redirect(url_for("auth.reauth", next=request.full_path.rstrip("?")))
        return None
