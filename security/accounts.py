"""Account operations (ACC-1..4, ACC-7) used by the admin screens, the login page and the CLI."""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa
from flask import current_app, has_request_context, request
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from models import (
    Department,
    PasswordResetToken,
    RoleChange,
    SecurityEvent,
    Staff,
    StaffRole,
    db,
)
from models.base import utcnow
from models.staff import ROLES
from models.validators import DomainError, check_length, check_phone
from security import sessions, throttle
from security.passwords import check_policy, hash_password, verify_password
from workflow.notify import notify


def client_ip() -> str | None:
    return request.remote_addr if has_request_context() else None


def log_event(kind: str, *, staff: Staff | None = None, username: str | None = None,
              detail: str | None = None) -> None:
    """ACC-7 security log row plus its audit-trail row, both in the current transaction."""
    from flask_login import current_user

    from security.crypto import redact_id_numbers
    from workflow.audit import record_event

    detail = redact_id_numbers(detail)  # ACC-6: a logged URL may carry a searched ID number
    # The actor is whoever is signed in (an admin changing a clerk's roles); before sign-in,
    # the account the event is about (a login). The record is that account.
    signed_in = has_request_context() and getattr(current_user, "is_authenticated", False)
    record_event(kind, record_type="staff" if staff is not None else None,
                 record_id=staff.id if staff is not None else None,
                 comment=(detail or username or "")[:500] or None, actor=None if signed_in else staff)
    db.session.add(SecurityEvent(
        kind=kind, staff_id=staff.id if staff else None,
        username=(username or (staff.username if staff else None) or "")[:64],
        ip=client_ip(), detail=(detail or "")[:500] or None,
    ))


def create_staff(username: str, full_name: str, password: str, roles: set[str], *,
                 department_key: str | None = None, phone: str | None = None,
                 email: str | None = None, actor: Staff | None = None) -> Staff:
    """ACC-1: an admin creates the account for one real person."""
    username = (username or "").strip().lower()
    if not username or not username.replace(".", "").replace("_", "").isalnum():
        raise DomainError(_l("Username: letters, digits, dot or underscore."), "username")
    check_length(username, 64, "username")
    if not (full_name or "").strip():
        raise DomainError(_l("Full name is required."), "full_name")
    if db.session.scalar(sa.select(Staff.id).where(Staff.username == username)):
        raise DomainError(_l("This username is taken."), "username")
    check_policy(password, username)
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise DomainError(_l("Unknown role: %(r)s", r=", ".join(sorted(unknown))), "roles")
    dept = None
    if department_key:
        dept = db.session.scalar(sa.select(Department).where(Department.key == department_key))
    staff = Staff(username=username, full_name=full_name.strip(), phone=check_phone(phone),
                  email=email or None, department=dept, password_hash=hash_password(password))
    staff.role_rows = [StaffRole(role=r) for r in sorted(roles)]
    db.session.add(staff)
    db.session.flush()
    log_event("account_created", staff=staff, detail=f"by {actor.username if actor else 'cli'}")
    if roles:
        db.session.add(RoleChange(staff=staff, changed_by=actor, old_roles="", new_roles=",".join(sorted(roles))))
    return staff


def require_reauth(actor: Staff, password: str | None) -> None:
    """ACC-5: sensitive operations need the actor's password typed again."""
    if not password or not verify_password(actor.password_hash, password):
        log_event("reauth_failed", staff=actor)
        raise DomainError(_l("Re-enter your own password correctly to confirm."), "confirm_password")


def set_roles(staff: Staff, roles: set[str], actor: Staff, actor_password: str | None) -> bool:
    """ACC-4: change roles with re-entered password; record it and tell the person."""
    roles = set(roles)
    unknown = roles - set(ROLES)
    if unknown:
        raise DomainError(_l("Unknown role: %(r)s", r=", ".join(sorted(unknown))), "roles")
    old = staff.roles
    if old == roles:
        return False
    require_reauth(actor, actor_password)
    if staff.id == actor.id and "admin" in old and "admin" not in roles:
        raise DomainError(_l("You cannot remove your own admin role."), "roles")
    staff.role_rows = [r for r in staff.role_rows if r.role in roles] + [
        StaffRole(role=r) for r in sorted(roles - old)]
    db.session.add(RoleChange(staff=staff, changed_by=actor, old_roles=",".join(sorted(old)),
                              new_roles=",".join(sorted(roles))))
    # Open sessions end: the person signs in again under the new roles (an admin editing
    # their own account keeps the browser they are using).
    sessions.revoke_all(staff, keep_current=staff.id == actor.id)
    log_event("roles_changed", staff=staff,
              detail=f"{','.join(sorted(old))} -> {','.join(sorted(roles))} by {actor.username}")
    with force_locale(staff.locale or "zh_Hans_CN"):
        names = "、".join(str(ROLES[r]) for r in sorted(roles)) or "-"
        notify(staff, _("Your roles were changed"), _("Your roles are now: %(roles)s", roles=names))
    return True


def end_sessions(staff: Staff) -> None:
    """Every open session of the account ends on the server (its rows revoked, its epoch bumped)."""
    staff.session_epoch = (staff.session_epoch or 0) + 1
    sessions.revoke_all(staff)


def set_password(staff: Staff, password: str, *, actor: Staff | None = None) -> None:
    """ACC-3: a new password ends every existing session of that account."""
    check_policy(password, staff.username)
    staff.password_hash = hash_password(password)
    staff.password_changed_at = utcnow()
    end_sessions(staff)
    log_event("password_set", staff=staff, detail=f"by {actor.username if actor else 'self'}")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_reset_token(staff: Staff, actor: Staff | None) -> str:
    """ACC-3: a one-time token; only its hash is kept; older open tokens die."""
    now = utcnow()
    for old in db.session.scalars(sa.select(PasswordResetToken).where(
            PasswordResetToken.staff_id == staff.id, PasswordResetToken.used_at.is_(None))):
        old.used_at = now
    token = secrets.token_urlsafe(32)
    db.session.add(PasswordResetToken(
        staff=staff, token_hash=_token_hash(token),
        expires_at=now + current_app.config["RESET_TOKEN_LIFETIME"],
        created_by_id=actor.id if actor else None))
    log_event("reset_token_issued", staff=staff, detail=f"by {actor.username if actor else 'cli'}")
    return token


def find_reset_token(token: str) -> PasswordResetToken | None:
    row = db.session.scalar(sa.select(PasswordResetToken).where(
        PasswordResetToken.token_hash == _token_hash(token or "")))
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        return None
    return row


class ResetLinkUsed(DomainError):
    """The link was used (perhaps a moment ago, by a concurrent request) or has expired."""


def reset_with_token(token: str, password: str) -> Staff:
    """ACC-3: check the policy, then claim the token with one conditional UPDATE so that of
    concurrent uses exactly one wins; the others get ``ResetLinkUsed``, never a stale-row error."""
    row = find_reset_token(token)
    if row is None:
        raise ResetLinkUsed(_l("This reset link is invalid or has expired."), "password")
    staff = row.staff
    check_policy(password, staff.username)  # a refused password keeps the link usable
    now = utcnow()
    claimed = db.session.execute(sa.update(PasswordResetToken).where(
        PasswordResetToken.id == row.id, PasswordResetToken.used_at.is_(None),
        PasswordResetToken.expires_at > now).values(used_at=now).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:
        raise ResetLinkUsed(_l("This reset link is invalid or has expired."), "password")
    set_password(staff, password)
    return staff


def authenticate(username: str, password: str) -> Staff | None:
    """Check credentials with throttling (an attempt's slot is taken before the password is
    checked, see security/throttle.py); every outcome is logged (ACC-7)."""
    from security.passwords import verify_unknown_user

    username = (username or "").strip().lower()[:64]
    wait_minutes = throttle.take_login_slot(username)
    if wait_minutes is not None:
        log_event("login_throttled", username=username)
        db.session.commit()
        raise DomainError(_l("Too many failed attempts. Try again in %(minutes)s minutes.",
                             minutes=wait_minutes), "username")
    staff = db.session.scalar(sa.select(Staff).where(Staff.username == username))
    if staff is None:
        verify_unknown_user(password or "")
    ok = staff is not None and staff.active and verify_password(staff.password_hash, password or "")
    if not ok:
        log_event("login_failed", staff=staff, username=username)
        db.session.commit()
        return None
    throttle.clear_login_slots(username)
    log_event("login", staff=staff)
    db.session.commit()
    return staff
