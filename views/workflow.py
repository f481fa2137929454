"""The base screen for regulation records with a declared workflow.

It renders what the engine says this user may do — transitions as POST buttons (CSRF, comment,
confirmation) on the details page, as one "操作" menu per list row and as bulk actions, sign-off and
withdraw forms for approval chains, and the record's timeline — and sends every click back
through the engine, which decides. A hidden button is never the permission.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import sqlalchemy as sa
from flask import abort, flash, redirect, request
from flask_admin import expose
from flask_admin.contrib.sqla import filters
from flask_admin.helpers import is_safe_url
from flask_admin.model.template import BaseListRowAction
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from wtforms import HiddenField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from models import db
from models.validators import DomainError
from models.workflow import Tracked
from views.base import SecureModelView
from workflow import engine

WORKFLOW_COLUMNS = {"state", "due_at", "pending_transition", "pending_since", "pending_round",
                    "pending_reminded_at", "pending_comment", "pending_by", "pending_by_id",
                    "created_by", "created_by_id", "deleted_at", "deleted_by_id", "closed_at"}
BULK_PREFIX = "wf_"


class TransitionForm(FlaskForm):
    """Posted by every transition button; the engine re-checks everything it carries."""

    id = HiddenField(validators=[DataRequired()])
    name = HiddenField(validators=[DataRequired()])
    version = HiddenField(validators=[DataRequired()])
    comment = TextAreaField(validators=[Optional(), Length(max=2000)])
    password = PasswordField(validators=[Optional(), Length(max=256)])


class DecisionForm(FlaskForm):
    id = HiddenField(validators=[DataRequired()])
    version = HiddenField(validators=[DataRequired()])
    decision = HiddenField(validators=[DataRequired()])
    comment = TextAreaField(validators=[Optional(), Length(max=2000)])
    password = PasswordField(validators=[Optional(), Length(max=256)])


def state_filter(model: type[Tracked], label: Any = None) -> filters.FilterEqual:
    wf = engine.workflow_of(model)
    return filters.FilterEqual(model.state, label or _l("Status"),
                               options=[(k, v) for k, v in wf.states.items()])


def _me() -> Any:
    return current_user._get_current_object()


def _quick(t: engine.Transition) -> bool:
    """A transition that one click can fire: nothing to type first."""
    return not (t.requires or t.password or t.comment_required)


def _chain(model: type, names: list[str], first: Any) -> Any:
    option, owner = None, model
    for i, name in enumerate(names):
        attr = getattr(owner, name)
        loader = first if i == 0 else sa.orm.selectinload
        option = loader(attr) if option is None else getattr(option, loader.__name__)(attr)
        owner = attr.property.mapper.class_
    return option


def _with_preload(query: Any, model: type, path: str) -> Any:
    """``query`` also loading ``path`` ("unit.occupancies.resident") in one query per step; where the
    screen's own query already eager-loads the first step, only the steps after it are added."""
    names = path.split(".")
    candidates = [_chain(model, names, sa.orm.selectinload)]
    if len(names) > 1:
        candidates.append(_chain(model, names, sa.orm.defaultload))
    for option in candidates:
        trial = query.options(option)
        try:
            trial.statement.compile(dialect=db.engine.dialect)
        except sa.exc.InvalidRequestError:
            continue  # the screen loads this step its own way already
        return trial
    return query


class StepsMenu(BaseListRowAction):
    """One "操作" menu per row with the steps this user may take on it now: role and state, then
    each step's guard once (the list query preloads what the guards read, see ``get_list``). A
    step its guard refuses is shown disabled with the reason; the engine decides when fired."""

    def __init__(self, view: WorkflowModelView) -> None:
        super().__init__(title="")
        self.view = view

    def _item(self, row_id: str, row: Any, t: engine.Transition, csrf: str) -> Markup:
        label = str(t.label or t.name)
        if not _quick(t):
            url = self.view.get_url(".details_view", id=row_id, url=request.full_path) + "#transitions"
            return Markup('<a class="dropdown-item wf-step" data-transition="{}" href="{}">{}…</a>').format(
                t.name, url, label)
        return Markup(
            '<form method="post" action="{action}" class="wf-row-step" data-confirm="{confirm}">'
            '<input type="hidden" name="csrf_token" value="{csrf}">'
            '<input type="hidden" name="id" value="{id}"><input type="hidden" name="name" value="{name}">'
            '<input type="hidden" name="version" value="{version}">'
            '<input type="hidden" name="url" value="{url}">'
            '<button class="dropdown-item wf-step{danger}" data-transition="{name}" type="submit">{label}'
            '</button></form>').format(
            action=self.view.get_url(".transition_view"), confirm=_("Confirm: %(t)s?", t=label), csrf=csrf,
            id=row_id, name=t.name, version=row.version, url=request.full_path,
            danger=" text-danger" if t.danger else "", label=label)

    def render(self, context: Any, row_id: str, row: Any) -> Markup:
        from flask_wtf.csrf import generate_csrf

        # The version this page shows, posted with the bulk-action form: a stale list is refused.
        head = Markup('<input type="hidden" form="action_form" name="v_{}" value="{}">').format(row_id, row.version)
        me = _me()
        steps = [(t, engine.refusal(row, t, me)) for t in engine.available(row, me, guards=False)]
        if not steps:
            return head
        csrf = generate_csrf()
        items = []
        for t, reason in steps:
            if reason is None:
                items.append(self._item(row_id, row, t, csrf))
            else:
                items.append(Markup(
                    '<span class="dropdown-item disabled wf-step-refused" data-transition="{}" title="{}" '
                    'aria-disabled="true">{}<small class="d-block text-muted">{}</small></span>').format(
                    t.name, str(reason), str(t.label or t.name), str(reason)))
        return head + Markup(
            '<div class="dropdown d-inline-block wf-row-menu">'
            '<button class="btn btn-sm btn-outline-primary dropdown-toggle" type="button" data-toggle="dropdown"'
            ' aria-haspopup="true" aria-expanded="false">{}</button>'
            '<div class="dropdown-menu dropdown-menu-right">{}</div></div>').format(
            _("Actions"), Markup("").join(items))


class WorkflowModelView(SecureModelView):
    """Model screens of ``Tracked`` records: the workflow's steps instead of free status edits."""

    details_template = "admin/workflow/details.html"
    column_extra_row_actions: Any = None  # set per instance (needs the view)

    def __init__(self, model: type, session: Any, **kwargs: Any) -> None:
        engine.workflow_of(model)
        protected = WORKFLOW_COLUMNS & set(self.form_columns or [])
        if protected:
            raise TypeError(f"{type(self).__name__}: workflow columns are never form fields: {protected}")
        super().__init__(model, session, **kwargs)
        self.column_extra_row_actions = [StepsMenu(self)]
        formatters = dict(self.column_formatters or {})
        formatters.setdefault("state", self._state_formatter)
        self.column_formatters = formatters
        if self.column_formatters_detail is not None:  # else details fall back to the list's formatters
            detail = dict(self.column_formatters_detail)
            detail.setdefault("state", self._state_formatter)
            self.column_formatters_detail = detail
        exported = dict(self.column_formatters_export or {})  # the label (已关闭), never the key (closed)
        exported.setdefault("state", lambda v, c, m, n: engine.workflow_of(m).state_label(m.state))
        self.column_formatters_export = exported

    @staticmethod
    def _state_formatter(view: Any, context: Any, model: Any, name: str) -> Markup:
        wf = engine.workflow_of(model)
        text = escape(wf.state_label(model.state))
        if model.pending_transition:
            t = wf.transition(model.pending_transition)
            waiting = escape(_("waiting for approval: %(t)s", t=str(t.label if t else model.pending_transition)))
            return Markup('{} <span class="badge badge-warning">{}</span>').format(text, waiting)
        return text

    # --- endpoints ------------------------------------------------------------------------
    def extra_endpoints(self) -> dict[str, str]:
        # Reading the record is the only precondition here; the engine checks the step itself.
        return {"transition_view": "view", "decide_view": "view", "withdraw_view": "view"}

    def scope_query(self, query: Any) -> Any:
        return super().scope_query(query).filter(self.model.deleted_at.is_(None))

    def get_list(self, *args: Any, execute: bool = True, **kwargs: Any) -> Any:
        """The page's rows with what the row menus' guards read (the workflow's ``preload``)
        loaded in one query per path, not one per row."""
        count, query = super().get_list(*args, execute=False, **kwargs)
        for path in engine.workflow_of(self.model).preload:
            query = _with_preload(query, self.model, path)
        return count, (query.all() if execute else query)

    def _back(self, record_id: Any) -> Any:
        target = request.form.get("url") or ""
        if target and is_safe_url(target):
            return redirect(target)
        return redirect(self.get_url(".details_view", id=record_id))

    def _record(self, form: FlaskForm) -> Any:
        if not form.validate():
            if form.errors.keys() - {"comment", "password"}:
                abort(400)  # a tampered or CSRF-less post
            flash(_("The comment is too long (at most 2000 characters). Nothing was saved."), "error")
            return None
        record = self.get_one(form.id.data)
        if record is None:
            abort(404)
        return record

    @expose("/transition/", methods=["POST"])
    def transition_view(self) -> Any:
        form = TransitionForm(request.form)
        record = self._record(form)
        if record is None:
            return self._back(form.id.data)
        t = engine.workflow_of(record).transition(form.name.data)
        values = {f: request.form.get(f"field_{f}", "") for f in (t.requires if t else ())}
        try:
            outcome = engine.fire(record, form.name.data, _me(), form.comment.data or "",
                                  version=form.version.data, password=form.password.data or None,
                                  values={k: v for k, v in values.items() if v.strip()})
        except (engine.WorkflowError, DomainError) as exc:
            flash(str(getattr(exc, "message", exc)), "error")
        else:
            label = str(t.label or t.name)
            flash(_("Sent for approval: %(t)s", t=label) if outcome == "requested"
                  else _("Done: %(t)s", t=label), "success")
        return self._back(form.id.data)

    @expose("/decide/", methods=["POST"])
    def decide_view(self) -> Any:
        form = DecisionForm(request.form)
        record = self._record(form)
        if record is None:
            return self._back(form.id.data)
        if form.decision.data not in ("approve", "reject"):
            abort(400)
        try:
            outcome = engine.decide(record, _me(), form.decision.data == "approve", form.comment.data or "",
                                    version=form.version.data, password=form.password.data or None)
        except engine.WorkflowError as exc:
            flash(str(exc), "error")
        else:
            flash({"approved": _("Approved; the step is done."), "signed": _("Signed; waiting for the "
                   "other approvers."), "rejected": _("Rejected; the requester was told.")}[outcome], "success")
        return self._back(form.id.data)

    @expose("/withdraw/", methods=["POST"])
    def withdraw_view(self) -> Any:
        form = DecisionForm(request.form, decision="withdraw")
        form.decision.data = "withdraw"
        record = self._record(form)
        if record is None:
            return self._back(form.id.data)
        try:
            engine.withdraw(record, _me(), form.comment.data or "", version=form.version.data)
        except engine.WorkflowError as exc:
            flash(str(exc), "error")
        else:
            flash(_("The request was withdrawn."), "success")
        return self._back(form.id.data)

    # --- bulk actions: one per transition that needs nothing typed ----------------------------
    def init_actions(self) -> None:
        super().init_actions()
        for t in engine.workflow_of(self.model).transitions:
            if not t.system and _quick(t):
                name = BULK_PREFIX + t.name
                self._actions.append((name, t.label or t.name))
                self._actions_data[name] = (partial(self._bulk, t.name), t.label or t.name,
                                            _l("Apply this step to every selected record?"))

    def is_action_allowed(self, name: str) -> bool:
        if name.startswith(BULK_PREFIX):
            if not current_user.is_authenticated:
                return False
            t = engine.workflow_of(self.model).transition(name[len(BULK_PREFIX):])
            return t is not None and bool(_me().roles & engine.roles_for(engine.workflow_of(self.model), t))
        return super().is_action_allowed(name)

    def _bulk(self, name: str, ids: list[str]) -> None:
        done, refused = 0, []
        for record_id in ids:
            record = self.get_one(record_id)
            if record is None:
                continue
            try:
                version = request.form.get(f"v_{record_id}")
                if not version:
                    raise engine.NotAllowed(_l("Reload the list and try again."))
                engine.fire(record, name, _me(), version=version)
                done += 1
            except engine.WorkflowError as exc:
                refused.append(f"#{record_id}: {exc}")
        if done:
            flash(_("%(n)s record(s) done.", n=done), "success")
        for line in refused[:10]:
            flash(line, "error")
        if len(refused) > 10:
            flash(_("…and %(n)s more refused.", n=len(refused) - 10), "error")

    # --- edits and details -------------------------------------------------------------------
    def check_model(self, model: Any) -> None:
        if model.pending_transition:
            raise DomainError(_l("This record is waiting for approval and cannot be edited now."))
        super().check_model(model)

    def render(self, template: str, **kwargs: Any) -> Any:
        if template == self.details_template and kwargs.get("model") is not None:
            kwargs.update(self.workflow_context(kwargs["model"]))
        return super().render(template, **kwargs)

    def workflow_context(self, record: Any) -> dict[str, Any]:
        me = _me()
        wf = engine.workflow_of(record)
        pending = wf.transition(record.pending_transition) if record.pending_transition else None
        step = engine.current_step(record) if pending else None
        return {
            "wf": wf, "wf_transitions": engine.available(record, me), "wf_pending": pending,
            "wf_step": step[1] if step else None, "wf_signoffs": engine.signoffs(record, all_rounds=True),
            "wf_can_decide": engine.can_decide(record, me),
            "wf_can_withdraw": bool(pending and record.pending_by_id == me.id),
            "wf_field_label": lambda name: engine.field_label(record, name),
            "wf_field_max": lambda name: getattr(self.model.__table__.c[name].type, "length", None) or 200,
            "transition_form": TransitionForm(), "decision_form": DecisionForm(),
            "wf_field_input": StringField,
        }
