"""Server-side session records: a signed cookie alone never proves a live login (ACC-3, ACC-7).

The cookie carries a random session id; its SHA-256 is a ``user_session`` row. Every request
checks the row is live, so logout, a password change or reset, deactivation and a role change
end the session on the server: a cookie copied before then gets the login page.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app, has_request_context, request, session

from models import Staff, UserSession, db
from models.base import utcnow

SESSION_KEY = "sid"
# last_seen_at is written at most this often, not on every request.
TOUCH_EVERY = timedelta(seconds=60)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(staff: Staff) -> None:
    """A new session row for this login; its id goes into the (already cleared) Flask session."""
    token = secrets.token_urlsafe(32)
    ip = request.remote_addr if has_request_context() else None
    agent = request.user_agent.string[:255] if has_request_context() else None
    db.session.add(UserSession(token_hash=_hash(token), staff_id=staff.id, ip=ip, user_agent=agent or None))
    session[SESSION_KEY] = token


def _current_hash() -> str | None:
    token = session.get(SESSION_KEY) if has_request_context() else None
    return _hash(token) if isinstance(token, str) and token else None


def revoke_current() -> None:
    """Logout: this browser's session ends on the server (the caller commits)."""
    token_hash = _current_hash()
    if token_hash:
        db.session.execute(sa.update(UserSession).where(
            UserSession.token_hash == token_hash, UserSession.revoked_at.is_(None)).values(revoked_at=utcnow()))


def revoke_all(staff: Staff, *, keep_current: bool = False) -> None:
    """End every session of this account (password, deactivation, roles); the caller commits.

    ``keep_current`` spares the browser making the request, e.g. an admin changing their own roles.
    """
    query = sa.update(UserSession).where(UserSession.staff_id == staff.id, UserSession.revoked_at.is_(None))
    current = _current_hash() if keep_current else None
    if current:
        query = query.where(UserSession.token_hash != current)
    db.session.execute(query.values(revoked_at=utcnow()))


def is_live(staff_id: int) -> bool:
    """True when the request's session row exists, belongs to this account, is not revoked and
    not older than PERMANENT_SESSION_LIFETIME; touches last_seen_at now and then."""
    token_hash = _current_hash()
    if token_hash is None:
        return False
    row = db.session.scalar(sa.select(UserSession).where(UserSession.token_hash == token_hash))
    now = utcnow()
    if (row is None or row.staff_id != staff_id or row.revoked_at is not None
            or row.created_at + current_app.config["PERMANENT_SESSION_LIFETIME"] <= now):
        return False
    if now - row.last_seen_at >= TOUCH_EVERY:
        db.session.execute(sa.update(UserSession).where(UserSession.id == row.id).values(last_seen_at=now))
        db.session.commit()
    return True


def check_request() -> None:
    """before_request: a cookie whose server-side session has ended is emptied, not refreshed."""
    user_id = session.get("_user_id")
    if user_id is None:
        return
    staff_id = str(user_id).partition(":")[0]
    if not staff_id.isdigit() or not is_live(int(staff_id)):
        session.clear()
