"""Moving in and out (搬迁 / 入住, REGULATIONS §4) screens: move-ins, move-outs, release slips (with
the printed slip) and moving damage. Every step is the engine's; the forms only check their input."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from wtforms import FileField, HiddenField
from wtforms.validators import DataRequired

from models import db
from models import moving_rules as r
from models.attachment import attachments_of, store
from models.moving import MOVE_IN_KINDS, MoveDamage, MoveIn, MoveOut, ReleaseSlip
from models.registry import Occupancy
from models.validators import DomainError
from views.printing import printed
from views.roles import BUSINESS, FRONT_DESK, SUPERVISORS
from views.templating import localtime
from views.workflow import WorkflowModelView, state_filter

CATEGORY = _l("Moving")
GATE_ROLES = frozenset({"security"})
AJAX = {"unit": {"fields": ["code"], "page_size": 20}}


def _kind(view: Any, context: Any, model: MoveIn, name: str) -> str:
    return str(MOVE_IN_KINDS.get(model.kind, model.kind))


def _slips(view: Any, context: Any, model: MoveOut, name: str) -> Markup:
    links = [Markup('<a href="{}">{}</a> ({})').format(
        view.get_url("release_slip.details_view", id=s.id), s.number, ReleaseSlip.workflow.state_label(s.state))
        for s in model.slips]
    return Markup(", ").join(links) if links else escape("—")


class ConsentScanForm(FlaskForm):
    """MOV-3: the scan of the owner's signed consent to a tenant's move-out (optional)."""

    id = HiddenField(validators=[DataRequired()])
    file = FileField()


def _current_occupancies() -> Any:
    return db.session.query(Occupancy).filter(Occupancy.end_date.is_(None)).options(
        db.joinedload(Occupancy.unit), db.joinedload(Occupancy.resident)).order_by(Occupancy.id)


class MoveInView(WorkflowModelView):
    permissions = {"view": BUSINESS, "create": FRONT_DESK, "edit": FRONT_DESK, "export": SUPERVISORS}
    column_list = ["unit", "resident", "kind", "move_in_date", "card_numbers", "key_count", "state"]
    column_export_list = ["unit", "resident", "kind", "move_in_date", "card_numbers", "key_count", "state"]
    column_details_list = ["unit", "resident", "kind", "move_in_date", "id_checked", "lease_no", "lease_end",
                           "owner_confirmation", "card_numbers", "key_count", "state", "created_at"]
    form_columns = ["unit", "resident", "kind", "move_in_date", "id_checked", "lease_no", "lease_end",
                    "owner_confirmation"]
    column_sortable_list = ["move_in_date"]
    column_default_sort = ("move_in_date", True)
    column_labels = {
        "unit": _l("Unit"), "resident": _l("Occupant"), "kind": _l("Moves in as"),
        "move_in_date": _l("Move-in date"), "id_checked": _l("ID checked"), "lease_no": _l("Lease number"),
        "lease_end": _l("Lease ends"), "owner_confirmation": _l("Owner present (name)"),
        "card_numbers": _l("Access card numbers"), "key_count": _l("Number of keys"), "state": _l("Status"),
        "created_at": _l("Created"),
    }
    column_formatters = {"kind": _kind}
    form_choices = {"kind": [(k, v) for k, v in MOVE_IN_KINDS.items()]}
    form_ajax_refs = {**AJAX, "resident": {"fields": ["name"], "page_size": 20}}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [state_filter(MoveIn)]
        super().__init__(*args, **kwargs)

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(MoveIn.unit), db.joinedload(MoveIn.resident))

    def check_model(self, model: MoveIn) -> None:
        super().check_model(model)
        model.check_registration()


class MoveOutView(WorkflowModelView):
    details_template = "admin/moving/move_out_details.html"
    permissions = {"view": BUSINESS, "create": FRONT_DESK, "edit": FRONT_DESK, "export": SUPERVISORS}
    column_list = ["unit", "occupancy", "planned_date", "fees_settled_on", "state"]
    column_export_list = ["unit", "occupancy", "planned_date", "fees_settled_on", "state"]
    column_details_list = ["unit", "occupancy", "planned_date", "goods", "fees_settled_on",
                           "finance_confirmed_by", "owner_consent_name", "owner_consented_at", "goods_checked",
                           "moved_out_on", "slips", "state", "created_at"]
    form_columns = ["occupancy", "planned_date", "goods"]
    column_sortable_list = ["planned_date"]
    column_default_sort = ("planned_date", True)
    column_labels = {
        "unit": _l("Unit"), "occupancy": _l("Occupant moving out"), "planned_date": _l("Planned move-out date"),
        "goods": _l("Goods moved out"), "fees_settled_on": _l("Fees settled on"),
        "finance_confirmed_by": _l("Confirmed by (finance)"), "owner_consent_name": _l("Owner's consent signed by"),
        "owner_consented_at": _l("Consent recorded at"), "goods_checked": _l("Goods checked"),
        "goods_checked_by": _l("Goods checked by"), "moved_out_on": _l("Moved out on"),
        "slips": _l("Release slips"), "state": _l("Status"),
        "created_at": _l("Created"),
    }
    column_formatters_detail = {"slips": _slips}
    form_args = {"occupancy": {"query_factory": _current_occupancies}}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [state_filter(MoveOut)]
        super().__init__(*args, **kwargs)

    def get_query(self) -> Any:
        return super().get_query().options(
            db.joinedload(MoveOut.unit), db.joinedload(MoveOut.occupancy).joinedload(Occupancy.resident),
            db.joinedload(MoveOut.occupancy).joinedload(Occupancy.unit))

    def get_details_query(self) -> Any:
        return self.get_query().options(db.selectinload(MoveOut.slips))

    def render(self, template: str, **kwargs: Any) -> Any:
        model = kwargs.get("model")
        if template == self.details_template and model is not None:
            if model.state == "open":
                kwargs["slip_blocker"] = r.slip_issuable(model)  # MOV-3: why no slip yet, in the engine's words
            kwargs["consent_scans"] = attachments_of("move_out", model.id, "scan")
            kwargs["may_upload"] = self.allowed("edit") and model.state == "open" and model.is_tenant
            kwargs["scan_form"] = ConsentScanForm()
        return super().render(template, **kwargs)

    def extra_endpoints(self) -> dict[str, str]:
        return {**super().extra_endpoints(), "consent_scan_view": "edit"}

    @expose("/consent-scan/", methods=["POST"])
    def consent_scan_view(self) -> Any:
        """MOV-3: keep the scan of the owner's signed consent with the move-out."""
        form = ConsentScanForm()
        if not form.validate():
            abort(400)
        move = self.get_one(form.id.data)
        if move is None:
            abort(404)
        try:
            upload = request.files.get("file")
            if move.state != "open" or not move.is_tenant:
                raise DomainError(_l("Only an open tenant's move-out takes the owner's consent."), "file")
            if upload is None or not upload.filename:
                raise DomainError(_l("Choose the scan of the owner's signed consent."), "file")
            store(move, "scan", upload.read(), upload.filename, current_user._get_current_object())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        else:
            flash(_("The scan was saved."), "success")
        return redirect(self.get_url(".details_view", id=move.id))

    def check_model(self, model: MoveOut) -> None:
        super().check_model(model)
        model.check_registration()


class ReleaseSlipView(WorkflowModelView):
    """MOV-2/MOV-4: slips for goods moved out; the gate (security) checks a slip once."""

    details_template = "admin/moving/slip_details.html"
    # an issued slip is never edited: it is used or voided (a new one is issued instead)
    permissions = {"view": BUSINESS, "create": FRONT_DESK, "export": SUPERVISORS}
    column_list = ["number", "unit", "carrier", "issued_at", "state", "gate_checked_at"]
    column_export_list = ["number", "unit", "carrier", "issued_at", "state", "gate_checked_at"]
    column_details_list = ["number", "unit", "move_out", "carrier", "goods", "goods_checked", "issued_at",
                           "state", "gate_checked_at", "gate_checked_by"]
    form_columns = ["unit", "carrier", "goods", "goods_checked"]
    column_searchable_list = ["number"]
    column_sortable_list = ["number", "issued_at"]
    column_default_sort = ("issued_at", True)
    column_labels = {
        "number": _l("Slip number"), "unit": _l("Unit"), "move_out": _l("Move-out"), "carrier": _l("Carried by"),
        "goods": _l("Goods"), "goods_checked": _l("Goods checked by the service centre"),
        "issued_at": _l("Issued at"), "state": _l("Status"), "gate_checked_at": _l("Checked at the gate"),
        "gate_checked_by": _l("Gate checked by"),
    }
    form_ajax_refs = dict(AJAX)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [state_filter(ReleaseSlip)]
        super().__init__(*args, **kwargs)

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(ReleaseSlip.unit))

    def check_model(self, model: ReleaseSlip) -> None:
        super().check_model(model)
        model.check_slip()

    def extra_endpoints(self) -> dict[str, str]:
        return {**super().extra_endpoints(), "print_view": "view", "scan_view": "view"}

    @expose("/scan/<token>")
    def scan_view(self, token: str):  # type: ignore[no-untyped-def]
        """The printed slip's QR code: a valid token opens the slip's gate-check page."""
        from views.slip_qr import slip_of

        slip_id = slip_of(token)
        slip = self.get_one(str(slip_id)) if slip_id is not None else None
        if slip is None:
            abort(404)
        return redirect(self.get_url(".details_view", id=slip.id))

    @expose("/print/<int:id>.pdf")
    def print_view(self, id: int):  # type: ignore[no-untyped-def]
        """MOV-4: the printed slip; allowed exactly when the slip's details are."""
        slip = self.get_one(str(id))
        if slip is None or slip.deleted_at is not None:
            abort(404)
        from views.slip_qr import qr_data_uri, scan_url

        return printed(slip, "print/release_slip.html", f"release-slip-{slip.number}.pdf", slip=slip,
                       qr=qr_data_uri(scan_url(slip.id)),
                       state=ReleaseSlip.workflow.state_label(slip.state),
                       issued_by=slip.created_by.full_name if slip.created_by else "",
                       resident=slip.move_out.occupancy.resident.name if slip.move_out else slip.carrier,
                       issued_at=localtime(slip.issued_at))


class MoveDamageView(WorkflowModelView):
    permissions = {"view": BUSINESS, "create": FRONT_DESK, "edit": FRONT_DESK, "export": SUPERVISORS}
    column_list = ["unit", "mover", "description", "amount", "restore_by", "state"]
    column_export_list = ["unit", "mover", "description", "amount", "restore_by", "state"]
    column_details_list = ["unit", "move_in", "move_out", "mover", "description", "amount", "restore_by",
                           "restored_at", "state", "created_at"]
    form_columns = ["unit", "move_in", "move_out", "mover", "description", "amount", "restore_by"]
    column_sortable_list = ["restore_by"]
    column_default_sort = ("restore_by", False)
    column_labels = {
        "unit": _l("Unit"), "move_in": _l("Move-in"), "move_out": _l("Move-out"), "mover": _l("Mover"),
        "description": _l("Damage to common property"), "amount": _l("Charged (yuan)"),
        "restore_by": _l("Restore by"), "restored_at": _l("Restored at"), "state": _l("Status"),
        "created_at": _l("Created"),
    }
    form_ajax_refs = dict(AJAX)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [state_filter(MoveDamage)]
        super().__init__(*args, **kwargs)

    def get_query(self) -> Any:
        return super().get_query().options(db.joinedload(MoveDamage.unit))

    def check_model(self, model: MoveDamage) -> None:
        super().check_model(model)
        model.check_damage()


def register(admin: Admin) -> None:
    for view, model, name, endpoint in (
        (MoveInView, MoveIn, _l("Move-ins"), "move_in"), (MoveOutView, MoveOut, _l("Move-outs"), "move_out"),
        (ReleaseSlipView, ReleaseSlip, _l("Release slips"), "release_slip"),
        (MoveDamageView, MoveDamage, _l("Moving damage"), "move_damage"),
    ):
        admin.add_view(view(model, db, name=name, category=CATEGORY, endpoint=endpoint))


__all__ = ["GATE_ROLES", "MoveDamageView", "MoveInView", "MoveOutView", "ReleaseSlipView", "register"]
