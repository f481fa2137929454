"""Looking a person up by the full national ID number (ACC-6, ACC-7).

An exact-number search is an oracle: with the masked number (first 3 and last 4 digits), the
household registration and a birth year, a few dozen guesses recover the whole number. So only
roles that may see full numbers search by them (the screen decides who), each of their lookups
is counted against a per-user limit (a setting), and every attempt — allowed or refused — is
written to the security log with the number masked, never in clear.

The limit is counted over that log, in the database, not with Flask-Limiter: every lookup must be
logged anyway, and the count then holds across app hosts without a shared cache (Flask-Limiter's
default storage is per process), atomically on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from models import SecurityEvent, Staff, db
from models.base import utcnow
from security.accounts import client_ip
from security.crypto import mask
from workflow.settings import SettingSpec, declare, value

ID_NUMBER = re.compile(r"^\d{17}[\dXx]$")
SEARCH = "id_search"
REFUSED = "id_search_refused"
WINDOW = timedelta(minutes=1)
_LOCK_SPACE = 0x1D5E  # PostgreSQL advisory-lock namespace of these lookups

PER_MINUTE = declare(SettingSpec(
    "security.id_search_per_minute", _l("Searches by national ID number per person per minute"),
    "integer", 5, 1, 100, _l("Security and personal data")))


def is_id_number(term: str | None) -> bool:
    return bool(ID_NUMBER.fullmatch((term or "").strip()))


def refuse_lookup(user: Staff, where: str, term: str) -> None:
    """Log a lookup the user's roles do not allow (someone trying to undo the mask). Commits."""
    from security.accounts import log_event

    log_event(REFUSED, staff=user, detail=f"{where}: {mask(term.strip().upper())} (role)")
    db.session.commit()


def allow_lookup(user: Staff, where: str, term: str) -> bool:
    """Count and log one lookup by ``user``; False when over the limit.

    Written in its own transaction, so the attempt stays logged and counted whatever becomes of
    the caller's (a form refused as a duplicate rolls back, yet asked its question). The attempt
    is written before it is counted, so concurrent lookups by one person are counted one after
    another: SQLite's write lock is taken by that insert, PostgreSQL's per-user advisory lock
    before it.
    """
    from workflow.audit import record_event

    limit = int(value(PER_MINUTE.key))
    with Session(db.engine) as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_SPACE, user.id)))
        attempt = SecurityEvent(kind=SEARCH, staff_id=user.id, username=user.username, ip=client_ip(),
                                detail=f"{where}: {mask(term.strip().upper())}")
        session.add(attempt)
        session.flush()
        used = session.scalar(sa.select(sa.func.count()).select_from(SecurityEvent).where(
            SecurityEvent.kind == SEARCH, SecurityEvent.username == user.username,
            SecurityEvent.at > utcnow() - WINDOW))
        allowed = (used or 0) <= limit
        if not allowed:
            attempt.kind = REFUSED
        record_event(attempt.kind, record_type="staff", record_id=user.id, comment=attempt.detail,
                     session=session)
        session.commit()
    return allowed
