"""Resident archive screens (REGULATIONS §3). Confidential (ARC-3): every path — list, details,
search, export, attachment download — goes through ``scope_query``, which keeps only the archives
the signed-in user may open; the details page logs each opening."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request
from flask_admin import Admin, expose
from flask_admin.contrib.sqla import filters
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from models import db
from models.archive_records import (
    EVENT_KINDS,
    ArchiveEvent,
    ArrearsCase,
    RentalRegistration,
    SpotCheckItem,
    draw_full_check,
    draw_spot_check,
    full_checks_due,
    record_result,
)
from models.archives import (
    ACCESS_KINDS,
    CUSTOMER_SERVICE,
    DOCUMENT_GROUPS,
    DOCUMENT_TYPES,
    Archive,
    ArchiveAccess,
    checklist_problems,
    file_document,
    log_view,
    may_open,
    ordered,
    scope_archives,
)
from models.attachment import attachments_of, store
from models.base import utcnow
from models.registry import Building, Unit
from models.validators import DomainError
from views.base import IdAjaxLoader, SecureModelView
from views.params import record_id
from views.roles import BUSINESS, FRONT_DESK, NOBODY, SUPERVISORS
from views.templating import localtime
from views.workflow import WorkflowModelView, state_filter

FINANCE_DESK = FRONT_DESK | {"finance"}


def _me() -> Any:
    return current_user._get_current_object() if current_user.is_authenticated else None


class ArchiveLoader(IdAjaxLoader):
    """Pick an archive by its unit's code (what the desk knows), in building, floor, room order.
    ``scoped`` keeps only archives the user may open (ARC-3); an access request must be able to
    name an archive its author cannot open yet, so it is not scoped."""

    def __init__(self, name: str, session: Any, model: Any, **options: Any) -> None:
        self.scoped = bool(options.pop("scoped", False))
        super().__init__(name, session, model, **{**options, "fields": [Unit.code]})

    def get_query(self) -> Any:
        query = db.session.query(Archive).join(Archive.unit).join(Unit.building).filter(
            Archive.deleted_at.is_(None)).order_by(Building.code, Unit.floor, Unit.code)
        return scope_archives(query, _me()) if self.scoped else query

    def get_one(self, pk: Any) -> Any:
        key = record_id(pk)
        return None if key is None else self.get_query().filter(Archive.id == key).one_or_none()


def customer_service_staff() -> Any:
    """ARC-11: who may accompany a reading — active customer-service staff, by name."""
    from models import Staff, StaffRole

    return db.session.query(Staff).filter(Staff.active.is_(True), Staff.id.in_(
        db.select(StaffRole.staff_id).where(StaffRole.role.in_(CUSTOMER_SERVICE)))).order_by(Staff.full_name)


def archive_ref(scoped: bool) -> dict[str, Any]:
    return {"archive": {"loader_class": ArchiveLoader, "fields": ["id"], "page_size": 20, "scoped": scoped}}


def _form_date(name: str) -> Any:
    """An optional yyyy-mm-dd date posted in a form; unreadable → DomainError on that field."""
    from datetime import date

    raw = (request.form.get(name) or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise DomainError(_l("Enter the date as yyyy-mm-dd."), name) from None


class StaleFilter(filters.BaseSQLAFilter):
    """ARC-6: archives not confirmed within the setting's days (default six months)."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        from datetime import timedelta

        from models.archives import _stale_days

        limit = utcnow() - timedelta(days=_stale_days())
        return query.filter(db.or_(Archive.confirmed_at.is_(None), Archive.confirmed_at < limit))

    def operation(self) -> Any:
        return _l("not confirmed for six months")


class ArchiveView(WorkflowModelView):
    """一户一档; closed archives of departed residents are kept apart by the status filter (ARC-4)."""

    details_template = "admin/archives/details.html"
    reauth_endpoints = frozenset({"export"})
    permissions = {"view": BUSINESS, "create": FRONT_DESK, "edit": FRONT_DESK, "export": BUSINESS}
    scoped_roles = BUSINESS - FRONT_DESK  # they see only archives granted to them (ARC-3)
    column_list = ["unit", "state", "confirmed_at", "updated_at"]
    column_details_list = ["unit", "state", "confirmed_at", "note", "created_at"]
    column_export_list = ["unit", "state", "confirmed_at"]
    form_columns = ["unit", "note"]
    column_searchable_list = ["note"]
    column_labels = {"unit": _l("Unit"), "state": _l("Status"), "confirmed_at": _l("Data confirmed"),
                     "note": _l("Note"), "created_at": _l("Created"), "updated_at": _l("Updated")}
    form_ajax_refs = {"unit": {"fields": ["code"], "page_size": 20}}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [state_filter(Archive), StaleFilter(Archive.confirmed_at, _l("Stale"))]
        super().__init__(*args, **kwargs)

    def scope_query(self, query: Any) -> Any:
        kind = "export" if request.endpoint and request.endpoint.endswith(".export") else "view"
        return scope_archives(super().scope_query(query), _me(), kind)

    def get_query(self) -> Any:
        return ordered(super().get_query())

    def check_model(self, model: Archive) -> None:
        super().check_model(model)
        if model.unit is None:
            raise DomainError(_l("Choose the unit."), "unit")
        other = db.session.scalar(db.select(Archive.id).where(Archive.unit_id == model.unit.id))
        if other is not None and other != model.id:
            raise DomainError(_l("This unit already has its archive (one archive per unit)."), "unit")

    def extra_endpoints(self) -> dict[str, str]:
        return {**super().extra_endpoints(), "document_view": "edit"}

    def download_refusal(self, attachment: Any) -> str | None:
        """ARC-3: downloading a document's scan is copying it, which needs the manager's approval
        (a granted "copy" request); a viewing approval only opens the page."""
        if may_open(_me(), attachment.record_id, "copy"):
            return None
        return _("Downloading an archive document makes a copy of it: that needs a copy request "
                 "approved by the manager.")

    @expose("/document/", methods=["POST"])
    def document_view(self) -> Any:
        """ARC-2: tick a checklist entry by uploading its scan; a tick without a scan is refused."""
        archive = self.get_one(request.form.get("id"))
        if archive is None:
            abort(404)
        upload = request.files.get("file")
        try:
            data = upload.read() if upload is not None and upload.filename else None
            file_document(archive, request.form.get("doc_type", ""), data,
                          upload.filename if upload else "", _me(), _form_date("document_date"))
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        else:
            flash(_("The document was filed."), "success")
        return redirect(self.get_url(".details_view", id=archive.id))

    def render(self, template: str, **kwargs: Any) -> Any:
        model = kwargs.get("model")
        if template == self.details_template and model is not None:
            from models.complaints import reply_letters_in
            from models.renovation_works import documents_of_unit

            log_view(model, _me())  # ARC-3: every opening logged
            db.session.commit()
            kwargs.update(groups=DOCUMENT_GROUPS, held={d.doc_type: d for d in model.documents},
                          newest_first=model.documents_newest_first(), doc_labels=DOCUMENT_TYPES,
                          missing=model.missing_documents(), problems=checklist_problems(model),
                          scans=attachments_of("archive", model.id, "scan"), may_file=self.allowed("edit"),
                          may_copy=may_open(_me(), model.id, "copy"),
                          renovation_documents=documents_of_unit(model.unit_id),
                          reply_letters=reply_letters_in(model.id))
        return super().render(template, **kwargs)


class ArchiveAccessView(WorkflowModelView):
    """《业户档案查阅登记表》: anyone files a request; supervisors and managers see all of them."""

    permissions = {"view": BUSINESS, "create": BUSINESS, "edit": NOBODY, "export": SUPERVISORS}
    column_list = ["archive", "kind", "purpose", "outsider", "state", "expires_at", "created_by"]
    column_details_list = ["archive", "kind", "purpose", "documents_wanted", "companion", "reading_confirmed_at",
                           "accompanied_by", "outsider", "outsider_name", "state", "approved_at", "expires_at",
                           "created_by", "created_at"]
    column_export_list = column_list
    form_columns = ["archive", "kind", "purpose", "documents_wanted", "companion", "outsider", "outsider_name"]
    column_labels = {"archive": _l("Archive"), "kind": _l("Access for"), "purpose": _l("Purpose"),
                     "documents_wanted": _l("Documents wanted"), "accompanied_by": _l("Accompanied by (note)"),
                     "companion": _l("Accompanied by (customer service)"),
                     "reading_confirmed_at": _l("Reading confirmed by the companion"),
                     "outsider": _l("From outside the firm"), "outsider_name": _l("Outside person"),
                     "state": _l("Status"), "approved_at": _l("Approved at"), "expires_at": _l("Expires"),
                     "created_by": _l("Requested by"), "created_at": _l("Created")}
    form_choices = {"kind": [(k, v) for k, v in ACCESS_KINDS.items()]}
    column_formatters = {"kind": lambda v, c, m, n: ACCESS_KINDS.get(m.kind, m.kind),
                         "expires_at": lambda v, c, m, n: localtime(m.expires_at) if m.expires_at else "—",
                         "companion": lambda v, c, m, n: m.companion.full_name if m.companion else "—"}
    column_descriptions = {"companion": _l("Required unless you work in customer service: the customer-service "
                                           "staff member who accompanies the reading (ARC-11).")}
    form_args = {"companion": {"query_factory": customer_service_staff, "get_label": "full_name",
                               "allow_blank": True, "blank_text": "—"}}
    form_ajax_refs = archive_ref(scoped=False)
    scoped_roles = BUSINESS - CUSTOMER_SERVICE  # they see their own requests only

    def scope_query(self, query: Any) -> Any:
        """Customer service keeps the register; everyone else sees only their own requests."""
        query = super().scope_query(query)
        me = _me()
        if me is not None and set(me.roles) & CUSTOMER_SERVICE:
            return query
        return query.filter(ArchiveAccess.created_by_id == (me.id if me is not None else None))

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(ArchiveAccess.archive).joinedload(Archive.unit),
                                           db.joinedload(ArchiveAccess.created_by))

    def check_model(self, model: ArchiveAccess) -> None:
        super().check_model(model)
        if model.archive is None:
            raise DomainError(_l("Choose the archive."), "archive")
        model.check_request(model.created_by or _me())

    def extra_endpoints(self) -> dict[str, str]:
        return {**super().extra_endpoints(), "proof_view": "create"}

    @expose("/proof/", methods=["POST"])
    def proof_view(self) -> Any:
        """ARC-3: an outsider's proof document, scanned onto the request."""
        access = self.get_one(request.form.get("id"))
        upload = request.files.get("file")
        if access is None:
            abort(404)
        try:
            if upload is None or not upload.filename:
                raise DomainError(_l("Choose the scan of the proof document."), "file")
            store(access, "scan", upload.read(), upload.filename, _me())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        return redirect(self.get_url(".details_view", id=access.id))


class ArchiveEventView(WorkflowModelView):
    permissions = {"view": FRONT_DESK, "create": FRONT_DESK, "edit": FRONT_DESK, "export": SUPERVISORS}
    column_list = ["archive", "kind", "title", "occurred_on", "state", "filed_at"]
    column_details_list = ["archive", "kind", "title", "description", "occurred_on", "state", "filed_at"]
    column_export_list = column_list
    form_columns = ["archive", "kind", "title", "description", "occurred_on"]
    form_choices = {"kind": [(k, v) for k, v in EVENT_KINDS.items()]}
    column_formatters = {"kind": lambda v, c, m, n: EVENT_KINDS.get(m.kind, m.kind)}
    column_labels = {"archive": _l("Archive"), "kind": _l("Kind"), "title": _l("Event"),
                     "description": _l("Description"), "occurred_on": _l("Occurred on"), "state": _l("Status"),
                     "filed_at": _l("Filed at")}
    form_ajax_refs = archive_ref(scoped=True)

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(ArchiveEvent.archive).joinedload(Archive.unit))

    def check_model(self, model: ArchiveEvent) -> None:
        super().check_model(model)
        if model.archive is None:
            raise DomainError(_l("Choose the archive."), "archive")
        model.check_event()


class RentalView(SecureModelView):  # registrations have no workflow
    permissions = {"view": FRONT_DESK, "create": FRONT_DESK, "edit": FRONT_DESK, "export": SUPERVISORS}
    column_list = ["archive", "kind", "tenant_name", "company", "use", "lease_from", "lease_to"]
    column_export_list = column_list
    column_details_list = ["archive", "kind", "tenant_name", "company", "use", "lease_from", "lease_to",
                           "contact", "created_at"]
    form_columns = ["archive", "kind", "tenant_name", "company", "use", "lease_from", "lease_to", "contact"]
    form_choices = {"kind": [("rental", _l("Rental")), ("commercial", _l("Commercial use"))]}
    column_choices = form_choices  # list, details and export show 出租/商住, not the key
    column_labels = {"archive": _l("Archive"), "kind": _l("Kind"), "tenant_name": _l("Tenant"),
                     "company": _l("Company"), "use": _l("Use"), "lease_from": _l("Lease from"),
                     "lease_to": _l("Lease to"), "contact": _l("Contact")}
    form_ajax_refs = archive_ref(scoped=True)

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(RentalRegistration.archive).joinedload(Archive.unit))

    def check_model(self, model: RentalRegistration) -> None:
        super().check_model(model)
        if model.archive is None:
            raise DomainError(_l("Choose the archive."), "archive")
        model.check_registration()


class OverdueFilter(filters.BaseSQLAFilter):
    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        return query.filter(ArrearsCase.state == "open", ArrearsCase.next_due_at < utcnow())

    def operation(self) -> Any:
        return _l("follow-up overdue")


class ArrearsView(WorkflowModelView):
    permissions = {"view": FINANCE_DESK, "create": FINANCE_DESK, "edit": FINANCE_DESK, "export": SUPERVISORS}
    column_list = ["archive", "fee", "amount", "owed_since", "last_follow_up_at", "next_due_at", "state"]
    column_export_list = column_list
    column_details_list = column_list
    form_columns = ["archive", "fee", "amount", "owed_since"]
    form_choices = {"fee": [("management", _l("Management fee")), ("water", _l("Water")),
                            ("electricity", _l("Electricity"))]}
    column_choices = form_choices
    column_labels = {"archive": _l("Archive"), "fee": _l("Fee"), "amount": _l("Amount owed"),
                     "owed_since": _l("Owed since"), "last_follow_up_at": _l("Last follow-up"),
                     "next_due_at": _l("Next follow-up due"), "state": _l("Status")}
    column_default_sort = ("next_due_at", False)
    form_ajax_refs = archive_ref(scoped=False)  # finance records debts without opening archives

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [state_filter(ArrearsCase), OverdueFilter(ArrearsCase.next_due_at, _l("Overdue"))]
        super().__init__(*args, **kwargs)

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(ArrearsCase.archive).joinedload(Archive.unit))

    def check_model(self, model: ArrearsCase) -> None:
        super().check_model(model)
        if model.archive is None:
            raise DomainError(_l("Choose the archive."), "archive")
        model.check_case()


class SpotCheckView(SecureModelView):
    """《质量检查记录》 (ARC-8): sampled archives with their results; supervisors draw and record."""

    permissions = {"view": SUPERVISORS, "create": NOBODY, "edit": NOBODY, "export": SUPERVISORS}
    column_list = ["check", "archive", "result", "missing", "checked_at"]
    column_export_list = column_list
    column_details_list = column_list
    form_columns: list[str] = []
    column_labels = {"check": _l("Spot check"), "archive": _l("Archive"), "result": _l("Result"),
                     "missing": _l("Missing documents"), "checked_at": _l("Checked at")}
    list_template = "admin/archives/spot_check_list.html"

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(SpotCheckItem.check),
                                           db.joinedload(SpotCheckItem.archive).joinedload(Archive.unit))

    def extra_endpoints(self) -> dict[str, str]:
        return {**super().extra_endpoints(), "draw_view": "view", "record_view": "view", "full_view": "view"}

    def render(self, template: str, **kwargs: Any) -> Any:
        if template == self.list_template:
            kwargs["full_due"] = full_checks_due()
        return super().render(template, **kwargs)

    @expose("/full/", methods=["POST"])
    def full_view(self) -> Any:
        """ARC-8: draw an estate's one-off full check, once it is due and only once."""
        due = {estate.id: estate for estate, _why in full_checks_due()}
        estate = due.get(request.form.get("estate_id", type=int) or 0)
        if estate is None:
            flash(_("No full check is due for this estate."), "error")
            return redirect(self.get_url(".index_view"))
        check = draw_full_check(estate, _me())
        db.session.commit()
        flash(_("Full check of %(estate)s: %(n)s archives listed.", estate=estate, n=len(check.items)), "success")
        return redirect(self.get_url(".index_view"))

    @expose("/draw/", methods=["POST"])
    def draw_view(self) -> Any:
        check = draw_spot_check(_me())
        db.session.commit()
        flash(_("%(n)s archives drawn for the spot check.", n=len(check.items)), "success")
        return redirect(self.get_url(".index_view"))

    @expose("/record/", methods=["POST"])
    def record_view(self) -> Any:
        item = self.get_one(request.form.get("id"))
        if item is None:
            abort(404)
        record_result(item, _me(), request.form.get("note", ""))
        db.session.commit()
        return redirect(self.get_url(".index_view"))


def register(admin: Admin) -> None:
    """Adds this regulation's screens."""
    category = _l("Resident archives")
    admin.add_view(ArchiveView(Archive, db, name=_l("Resident archives"), category=category, endpoint="archive"))
    admin.add_view(ArchiveAccessView(ArchiveAccess, db, name=_l("Archive access requests"), category=category,
                                     endpoint="archive_access"))
    admin.add_view(ArchiveEventView(ArchiveEvent, db, name=_l("Important events"), category=category,
                                    endpoint="archive_event"))
    admin.add_view(RentalView(RentalRegistration, db, name=_l("Rental and commercial use"), category=category,
                              endpoint="archive_rental"))
    admin.add_view(ArrearsView(ArrearsCase, db, name=_l("Arrears follow-up"), category=category,
                               endpoint="archive_arrears"))
    admin.add_view(SpotCheckView(SpotCheckItem, db, name=_l("Archive spot checks"), category=category,
                                 endpoint="archive_spot_check"))


__all__ = ["ArchiveView", "register"]
