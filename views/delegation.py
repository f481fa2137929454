"""Delegations: a manager lets another active staff member approve in their place for a period
(holiday, sick leave). Recorded through ``engine.delegate``, revocable, audited by the session hook.

Managers record and revoke their own; admins and supervisors see every delegation, read-only,
so nobody approves "on behalf of" someone without a trace anyone can check.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import abort, flash, redirect, url_for
from flask_admin import Admin, expose
from flask_babel import force_locale, get_timezone
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import DateTimeLocalField, SelectField, StringField
from wtforms.validators import DataRequired, Length

from models.base import db, utcnow
from models.staff import Staff
from models.validators import DomainError
from models.workflow import Delegation
from views.base import SecureForm, SecureView, attach_error, has_any_role
from views.roles import ADMIN, SUPERVISORS
from views.templating import localtime
from workflow import engine
from workflow.notify import notify

MANAGER = frozenset({"manager"})
SEE_ALL = ADMIN | frozenset({"cs_supervisor"})
SHOWN = 200  # newest first; older delegations stay in the audit trail
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"


class DelegationForm(SecureForm):
    delegate = SelectField(_l("Approves in my place"), coerce=int, validators=[DataRequired()])
    starts_at = DateTimeLocalField(_l("From"), format=LOCAL_FORMAT, validators=[DataRequired()])
    ends_at = DateTimeLocalField(_l("Until"), format=LOCAL_FORMAT, validators=[DataRequired()])
    reason = StringField(_l("Reason"), validators=[DataRequired(), Length(max=200)])


class RevokeForm(SecureForm):
    """CSRF only."""


def _zone() -> ZoneInfo:
    """The zone the screen shows times in; form input is read in the same zone."""
    return ZoneInfo(str(get_timezone()))


def to_utc(local: datetime) -> datetime:
    return local.replace(tzinfo=_zone()).astimezone(UTC)


def to_local(moment: datetime) -> datetime:
    return moment.astimezone(_zone()).replace(tzinfo=None, second=0, microsecond=0)


def status(row: Delegation, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.ends_at <= now:
        return "ended"
    return "scheduled" if row.starts_at > now else "active"


STATUS_LABELS = {"revoked": _l("Revoked"), "ended": _l("Ended"), "scheduled": _l("Scheduled"),
                 "active": _l("In force")}


def candidates(me: Staff) -> list[tuple[int, str]]:
    people = db.session.scalars(sa.select(Staff).where(Staff.active.is_(True), Staff.id != me.id)
                                .order_by(Staff.full_name, Staff.id))
    return [(s.id, str(s)) for s in people if not s.has_role("admin")]  # admins approve nothing


class DelegationView(SecureView):
    permissions = {"view": SUPERVISORS | ADMIN, "create": MANAGER}

    def can_create(self) -> bool:
        return has_any_role(self.permissions["create"])

    def visible(self) -> sa.Select:
        """Admins and supervisors see all; a manager sees what they gave or were given."""
        query = sa.select(Delegation).options(sa.orm.joinedload(Delegation.delegator),
                                              sa.orm.joinedload(Delegation.delegate))
        if not has_any_role(SEE_ALL):
            query = query.where(sa.or_(Delegation.delegator_id == current_user.id,
                                       Delegation.delegate_id == current_user.id))
        return query

    def new_form(self) -> DelegationForm:
        form = DelegationForm()
        form.delegate.choices = candidates(current_user)
        if not form.is_submitted():
            now = utcnow()
            form.starts_at.data = to_local(now)
            form.ends_at.data = to_local(now + timedelta(days=7))
        return form

    def page(self, form: DelegationForm | None, status_code: int = 200) -> Any:
        now = utcnow()
        rows = db.session.scalars(self.visible().order_by(Delegation.starts_at.desc(), Delegation.id.desc())
                                  .limit(SHOWN)).all()
        listed = [{"row": r, "status": status(r, now), "label": STATUS_LABELS[status(r, now)],
                   "revocable": r.delegator_id == current_user.id and status(r, now) in ("active", "scheduled")}
                  for r in rows]
        return self.render("admin/delegation/index.html", rows=listed, form=form), status_code

    @expose("/")
    def index(self):  # type: ignore[no-untyped-def]
        return self.page(self.new_form() if self.can_create() else None)

    @expose("/new", methods=("POST",))
    def create(self):  # type: ignore[no-untyped-def]
        if not self.can_create():
            abort(403)
        form = self.new_form()
        if not form.validate_on_submit():
            return self.page(form, 400)
        delegate = db.session.get(Staff, form.delegate.data)
        try:
            try:
                starts, ends = to_utc(form.starts_at.data), to_utc(form.ends_at.data)
            except (OverflowError, ValueError):
                raise DomainError(_l("Enter a date between 2000 and 2100."), "starts_at") from None
            row = engine.delegate(current_user, delegate, starts, ends, form.reason.data)
            tell_delegate(row, revoked=False)
            db.session.commit()
        except engine.NotAllowed:
            db.session.rollback()
            abort(403)
        except DomainError as exc:
            db.session.rollback()
            attach_error(form, exc)
            return self.page(form, 400)
        flash(_("Delegation recorded."), "success")
        return redirect(url_for(".index"))

    @expose("/<int:delegation_id>/revoke", methods=("POST",))
    def revoke(self, delegation_id: int):  # type: ignore[no-untyped-def]
        if not RevokeForm().validate_on_submit():
            abort(400)
        row = db.session.scalar(self.visible().where(Delegation.id == delegation_id))
        if row is None:
            abort(404)
        if row.delegator_id != current_user.id:
            abort(403)  # read-only for everyone but the person who delegated
        if status(row, utcnow()) not in ("active", "scheduled"):
            flash(_("This delegation is no longer in force."), "info")
            return redirect(url_for(".index"))
        row.revoked_at = utcnow()
        tell_delegate(row, revoked=True)
        db.session.commit()
        flash(_("Delegation revoked."), "success")
        return redirect(url_for(".index"))


def tell_delegate(row: Delegation, *, revoked: bool) -> None:
    """The delegate learns, in their own language, that they may (or no longer may) sign."""
    with force_locale(row.delegate.locale or "zh_Hans_CN"):
        if revoked:
            notify(row.delegate, _("Delegation revoked: you no longer approve in place of %(who)s",
                                   who=row.delegator.full_name))
        else:
            notify(row.delegate, _("You may approve in place of %(who)s", who=row.delegator.full_name),
                   _("From %(a)s until %(b)s. Reason: %(r)s", a=localtime(row.starts_at),
                     b=localtime(row.ends_at), r=row.reason))


def register(admin: Admin) -> None:
    admin.add_view(DelegationView(name=_l("Delegations"), endpoint="delegation", url="delegation"))
