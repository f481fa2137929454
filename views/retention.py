"""Retention screens (REGULATIONS §10): policies (admins edit), the purge queue (managers list what
is due, approve with the password re-entered, run) and legal holds (managers place and release,
supervisors look). Every decision is made by ``workflow/retention*.py``, which re-checks it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import abort, flash, redirect, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup
from wtforms import HiddenField, IntegerField, PasswordField, SelectField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from models.base import db, utcnow
from models.retention import (
    ACTIONS,
    ANCHOR_FIELDS,
    ANCHORS,
    BATCH_STATES,
    OUTCOMES,
    UNITS,
    LegalHold,
    RetentionBatch,
    RetentionPolicy,
    Tombstone,
)
from models.validators import DomainError
from views.base import SecureForm, SecureModelView, SecureView, attach_error, has_any_role
from views.params import record_id
from views.roles import ADMIN, SUPERVISORS
from workflow import retention, retention_batch

MANAGER = frozenset({"manager"})
RUN_CHUNKS_PER_REQUEST = 20  # 10,000 records per click at most; the CLI runs a batch to the end
SHOWN = 200
# Tables a hold makes no sense on: the machinery itself, not records.
NOT_HOLDABLE = {"audit_entry", "audit_head", "audit_redaction_permit", "tombstone", "legal_hold", "retention_batch",
                "retention_policy", "security_event", "password_reset_token", "notification", "workflow_setting",
                "staff_role"}


def _choices(labels: dict[str, Any]) -> list[tuple[str, str]]:
    return [(key, str(label)) for key, label in labels.items()]


def _label(labels: dict[str, Any]) -> Any:
    return lambda view, context, model, name: labels.get(getattr(model, name), getattr(model, name))


class RetentionPolicyView(SecureModelView):
    """Admins edit policies; every change is an audited row (session hook)."""

    permissions = {"view": ADMIN | SUPERVISORS, "create": ADMIN, "edit": ADMIN}
    column_list = ["name", "record_type", "condition", "amount", "unit", "anchor", "action", "keep_forever",
                   "active"]
    column_details_list = ["code", "name", "record_type", "condition", "amount", "unit", "anchor", "anchor_field",
                           "require_closed", "action", "columns", "keep_forever", "active", "note", "updated_at"]
    column_export_list = column_list
    form_columns = ["name", "record_type", "condition", "amount", "unit", "anchor", "anchor_field", "require_closed",
                    "action", "columns", "keep_forever", "active", "note"]
    column_default_sort = ("id", False)
    column_labels = {
        "code": _l("Code"), "name": _l("Name"), "record_type": _l("Record type (table)"),
        "condition": _l("Condition"), "amount": _l("Kept for"), "unit": _l("Unit"), "anchor": _l("Counted from"),
        "anchor_field": _l("Date used"), "require_closed": _l("Only closed records"), "action": _l("Then"),
        "columns": _l("Further personal columns"), "keep_forever": _l("Keep forever"), "active": _l("Active"),
        "note": _l("Note"), "updated_at": _l("Changed"),
    }
    column_descriptions = {
        "condition": _l('Optional JSON: {"severity": "major"} or {"state": ["returned", "lost"]}.'),
        "columns": _l("Anonymise only: comma-separated text columns to blank besides those marked personal."),
    }
    form_choices = {"unit": _choices(UNITS), "anchor": _choices(ANCHORS), "anchor_field": _choices(ANCHOR_FIELDS),
                    "action": _choices(ACTIONS)}
    form_args = {"amount": {"validators": [Optional(), NumberRange(min=1, max=36600)]}}
    column_formatters = {"unit": _label(UNITS), "anchor": _label(ANCHORS), "action": _label(ACTIONS)}

    def check_model(self, model: RetentionPolicy) -> None:
        model.check()
        table = db.metadata.tables.get(model.record_type)
        if table is None:
            return  # a regulation still to come; the queue shows the policy as waiting for its table
        if retention.condition_clauses(table, model) is None:
            raise DomainError(_l("The condition names a column %(t)s does not have.", t=table.name), "condition")
        unknown = [c for c in model.column_names if c not in table.c]
        if unknown:
            raise DomainError(_l("Unknown columns: %(c)s", c=", ".join(unknown)), "columns")


class BatchForm(SecureForm):
    batch_id = HiddenField(validators=[DataRequired()])
    password = PasswordField(_l("Your password"), validators=[Optional(), Length(max=256)])


class ListForm(SecureForm):
    policy_id = HiddenField(validators=[DataRequired()])


class RetentionQueueView(SecureView):
    """Managers: what is due per policy → a listed batch → approval with password → run."""

    permissions = {"view": MANAGER}

    @expose("/")
    def index(self):  # type: ignore[no-untyped-def]
        now = utcnow()
        rows = []
        for policy in db.session.scalars(sa.select(RetentionPolicy).order_by(RetentionPolicy.id)):
            found = retention.due(policy, now)
            rows.append({"policy": policy, "note": found.note, "count": found.count(), "ids": found.ids(10)})
        batches = db.session.scalars(sa.select(RetentionBatch).order_by(RetentionBatch.id.desc()).limit(50)).all()
        return self.render("admin/retention/queue.html", rows=rows, batches=batches, states=BATCH_STATES)

    @expose("/list", methods=("POST",))
    def list_due(self):  # type: ignore[no-untyped-def]
        form = ListForm()
        if not form.validate_on_submit():
            abort(400)
        key = record_id(form.policy_id.data)
        policy = db.session.get(RetentionPolicy, key) if key else None
        if policy is None:
            abort(404)
        try:
            batch = retention_batch.list_batch(policy, current_user._get_current_object())
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
            return redirect(url_for(".index"))
        flash(_("Batch %(id)s lists %(n)s records. Review it, then approve with your password.",
                id=batch.id, n=batch.listed_count), "success")
        return redirect(url_for(".batch", batch_id=batch.id))

    @expose("/batch/<int:batch_id>")
    def batch(self, batch_id: int):  # type: ignore[no-untyped-def]
        batch = db.session.get(RetentionBatch, batch_id)
        if batch is None:
            abort(404)
        tally = dict(db.session.execute(sa.select(Tombstone.outcome, sa.func.count()).where(
            Tombstone.batch_id == batch_id).group_by(Tombstone.outcome)).all())
        stones = db.session.scalars(sa.select(Tombstone).where(Tombstone.batch_id == batch_id)
                                    .order_by(Tombstone.purged_at.is_(None), Tombstone.record_id).limit(SHOWN)).all()
        return self.render("admin/retention/batch.html", batch=batch, tally=tally, stones=stones,
                           states=BATCH_STATES, outcomes=OUTCOMES, form=BatchForm(batch_id=batch.id),
                           shown=SHOWN)

    def _posted(self) -> tuple[BatchForm, RetentionBatch]:
        form = BatchForm()
        if not form.validate_on_submit():
            abort(400)
        key = record_id(form.batch_id.data)
        batch = db.session.get(RetentionBatch, key) if key else None
        if batch is None:
            abort(404)
        return form, batch

    @expose("/approve", methods=("POST",))
    def approve(self):  # type: ignore[no-untyped-def]
        form, batch = self._posted()
        try:
            retention_batch.approve(batch, current_user._get_current_object(), form.password.data)
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        else:
            flash(_("Batch %(id)s approved. Run it here or with “flask retention --run %(id)s”.", id=batch.id),
                  "success")
        return redirect(url_for(".batch", batch_id=batch.id))

    @expose("/run", methods=("POST",))
    def run(self):  # type: ignore[no-untyped-def]
        _form, batch = self._posted()
        batch_id = batch.id
        try:
            batch = retention_batch.run_batch(batch_id, max_chunks=RUN_CHUNKS_PER_REQUEST)
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        else:
            if batch.state == "done":
                flash(_("Batch %(id)s done.", id=batch_id), "success")
            else:
                flash(_("Batch %(id)s: %(n)s of %(t)s handled so far; continue to run the rest.", id=batch_id,
                        n=batch.done_count + batch.skipped_count, t=batch.listed_count), "info")
        return redirect(url_for(".batch", batch_id=batch_id))

    @expose("/cancel", methods=("POST",))
    def cancel(self):  # type: ignore[no-untyped-def]
        _form, batch = self._posted()
        try:
            retention_batch.cancel(batch, current_user._get_current_object())
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        else:
            flash(_("Batch %(id)s cancelled.", id=batch.id), "success")
        return redirect(url_for(".batch", batch_id=batch.id))


class HoldForm(SecureForm):
    record_type = SelectField(_l("Record type"), validators=[DataRequired()])
    record_id = IntegerField(_l("Record id"), validators=[DataRequired(), NumberRange(min=1, max=2**63 - 1)])
    reason = TextAreaField(_l("Reason"), validators=[Optional(), Length(max=2000)])


class ReleaseForm(SecureForm):
    """CSRF only."""


def holdable() -> list[tuple[str, str]]:
    names = {t.name for t in db.metadata.sorted_tables} - NOT_HOLDABLE
    names |= set(db.session.scalars(sa.select(RetentionPolicy.record_type).distinct()))
    return [(n, n) for n in sorted(names)]


def hold_target(hold: LegalHold) -> Markup:
    return Markup("<code>{}</code> #{}").format(hold.record_type, hold.record_id)


class LegalHoldView(SecureView):
    """Supervisors see the holds; only managers place (with a reason) and release them."""

    permissions = {"view": SUPERVISORS}

    def may_change(self) -> bool:
        return has_any_role(MANAGER)

    def page(self, form: HoldForm | None, status_code: int = 200) -> Any:
        active = db.session.scalars(sa.select(LegalHold).where(LegalHold.released_at.is_(None))
                                    .order_by(LegalHold.placed_at.desc())).all()
        released = db.session.scalars(sa.select(LegalHold).where(LegalHold.released_at.is_not(None))
                                      .order_by(LegalHold.released_at.desc()).limit(50)).all()
        return self.render("admin/retention/holds.html", form=form, active=active, released=released,
                           target=hold_target, may_change=self.may_change()), status_code

    def new_form(self) -> HoldForm:
        form = HoldForm()
        form.record_type.choices = holdable()
        return form

    @expose("/")
    def index(self):  # type: ignore[no-untyped-def]
        return self.page(self.new_form() if self.may_change() else None)

    @expose("/place", methods=("POST",))
    def place(self):  # type: ignore[no-untyped-def]
        if not self.may_change():
            abort(403)
        form = self.new_form()
        if not form.validate_on_submit():
            return self.page(form, 400)
        try:
            retention.place_hold(form.record_type.data, form.record_id.data, form.reason.data or "",
                                 current_user._get_current_object())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
            return self.page(form, 400)
        flash(_("Legal hold placed on %(t)s #%(id)s.", t=form.record_type.data, id=form.record_id.data), "success")
        return redirect(url_for(".index"))

    @expose("/<int:hold_id>/release", methods=("POST",))
    def release(self, hold_id: int):  # type: ignore[no-untyped-def]
        if not self.may_change():
            abort(403)
        if not ReleaseForm().validate_on_submit():
            abort(400)
        hold = db.session.get(LegalHold, hold_id)
        if hold is None:
            abort(404)
        try:
            retention.release_hold(hold, current_user._get_current_object())
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        else:
            flash(_("Legal hold released."), "success")
        return redirect(url_for(".index"))


def register(admin: Admin) -> None:
    cat = _l("Retention")
    admin.add_view(RetentionPolicyView(RetentionPolicy, db, name=_l("Retention policies"), category=cat,
                                       endpoint="retention_policy", url="retention-policy"))
    admin.add_view(RetentionQueueView(name=_l("Retention queue"), category=cat, endpoint="retention_queue",
                                      url="retention-queue"))
    admin.add_view(LegalHoldView(name=_l("Legal holds"), category=cat, endpoint="legal_hold", url="legal-hold"))
