"""Low-code settings screen: an admin changes the declared defaults (who may do a step, how long
a limit is) without a release. Every value is validated by its declaration before it is stored.

Who may fire a transition or sign a step is a permission: changing it needs the password
re-entered (ACC-5) and lands in the security log (ACC-7); the audit trail gets a "setting" row
from the session hook for every change.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

import sqlalchemy as sa
from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import HiddenField
from wtforms.validators import DataRequired

from models.base import db
from models.staff import ROLES
from models.validators import DomainError
from models.workflow import WorkflowSetting
from security.accounts import log_event
from security.auth import recently_reauthenticated
from views.base import SecureForm, SecureView
from views.roles import ADMIN
from workflow import settings

KIND_LABELS = {
    "roles": _l("Roles"), "minutes": _l("Minutes"), "hours": _l("Hours"), "days": _l("Days"),
    "working_days": _l("Working days"), "integer": _l("Number"),
}


class SettingForm(SecureForm):
    """CSRF and the setting's key; the value is read raw so its declaration does the checking."""

    key = HiddenField(validators=[DataRequired()])
    action = HiddenField(default="change")


def setting_rows() -> list[tuple[str, list[dict[str, Any]]]]:
    """Every declared setting, grouped by its group label, with the effective and default values."""
    overridden = set(db.session.scalars(sa.select(WorkflowSetting.key)))
    rows = []
    for spec in sorted(settings.SPECS.values(), key=lambda s: (str(s.group), s.key)):
        value = settings.value(spec.key)
        rows.append({"spec": spec, "value": value, "shown": spec.shown(value),
                     "default": spec.shown(spec.default), "overridden": spec.key in overridden,
                     "kind": KIND_LABELS.get(spec.kind, spec.kind)})
    return [(group, list(items)) for group, items in groupby(rows, key=lambda r: str(r["spec"].group))]


class SettingsView(SecureView):
    """Admin only; a POST per setting either stores a new value or goes back to the default."""

    permissions = {"view": ADMIN}  # GET and POST alike: SecureView checks "view" on every endpoint

    @expose("/")
    def index(self):  # type: ignore[no-untyped-def]
        return self.render("admin/settings/index.html", groups=setting_rows(),
                           roles=[(key, str(label)) for key, label in ROLES.items()])

    @expose("/change", methods=("POST",))
    def change(self):  # type: ignore[no-untyped-def]
        form = SettingForm()
        if not form.validate_on_submit():
            abort(400)
        key, action = form.key.data, form.action.data
        spec = settings.SPECS.get(key)
        if spec is None or action not in ("change", "reset"):
            abort(404)
        anchor = url_for(".index", _anchor=f"setting-{key}")
        if spec.kind == "roles" and not recently_reauthenticated():
            flash(_("Changing who may do a step needs your password. Confirm it, then submit the "
                    "change again."), "info")
            return redirect(url_for("auth.reauth", next=url_for(".index")))
        old = settings.value(key)
        try:
            if action == "reset":
                settings.reset(key)
                new = spec.default
            else:
                raw = request.form.getlist("value") if spec.kind == "roles" else request.form.get("value", "")
                new = settings.change(key, raw, current_user)
            if spec.kind == "roles" and new != old:
                log_event("setting_changed", staff=current_user,
                          detail=f"{key}: {','.join(old)} -> {','.join(new)}")
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(_("“%(label)s” was not changed: %(error)s", label=spec.label, error=exc.message), "error")
            return redirect(anchor)
        flash(_("“%(label)s” is now: %(value)s", label=spec.label, value=spec.shown(new)), "success")
        return redirect(anchor)


def register(admin: Admin) -> None:
    admin.add_view(SettingsView(name=_l("Workflow settings"), category=_l("Staff and security"),
                                endpoint="settings", url="settings"))
