"""ACC-8 修改重要信息: a change to important information needs the password again (二次确认), or,
when the firm sets it, a supervisor's own confirmation instead of the clerk's.

A column is important when its model marks it ``info={"important": True}`` (a national ID number,
a resident's name, who owns a unit, a unit's code or area, money already recorded). The check is a
flush-time guard, so every path — form, import, bulk action, CLI — is held to it: the path calls
``confirm()`` with the re-entered password in the same transaction, or the flush is refused. Setting
a value for the first time (a new record, or money not recorded yet) is not a change. The old value
stays in the record's audit trail (workflow/audit.py writes old → new, ID numbers masked).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session
from sqlalchemy.orm.base import NO_VALUE

from models.staff import Staff
from models.validators import DomainError
from workflow.settings import SettingSpec, declare

CONFIRMED = "pm_important_confirmed"
SUPERVISOR_ROLES = frozenset({"manager", "cs_supervisor"})

SUPERVISOR_ONLY = declare(
    SettingSpec(
        "important.supervisor_only",
        _l(
            "Changing important information: 0 = the clerk re-enters the password; "
            "1 = only a supervisor may change it (with the password)"
        ),
        "integer",
        0,
        0,
        1,
        _l("Important information"),
    )
)


@cache
def important_keys(model: type) -> frozenset[str]:
    """The attribute names of ``model``'s columns marked important."""
    mapper = sa.inspect(model, raiseerr=False)
    if mapper is None:
        return frozenset()
    return frozenset(a.key for a in mapper.column_attrs if a.columns[0].info.get("important"))


def _old_value(session: Session, obj: Any, key: str, hist: Any) -> Any:
    if hist.deleted:
        return hist.deleted[0]
    state = sa.inspect(obj)
    if state.committed_state.get(key) is NO_VALUE and state.key is not None:  # assigned while expired
        where = [c == v for c, v in zip(state.mapper.primary_key, state.key[1], strict=True)]
        column = state.mapper.column_attrs[key].columns[0]
        return session.connection().execute(sa.select(column).where(*where)).scalar_one_or_none()
    return None


def important_changes(obj: Any, session: Session | None = None) -> list[str]:
    """The important columns of a stored record whose recorded value this flush would change."""
    keys = important_keys(type(obj))
    state = sa.inspect(obj)
    if not keys or state.key is None:
        return []
    from models.base import db

    session = session or db.session()
    changed = []
    for key in sorted(keys):
        hist = state.attrs[key].history
        if not hist.added:
            continue
        old = _old_value(session, obj, key, hist)
        if old is not None and old != hist.added[0]:
            changed.append(key)
    for rel in state.mapper.relationships:  # ``occupancy.resident = other``: the key moves at the flush
        local = [c.key for c in rel.local_columns]
        if rel.direction is not sa.orm.MANYTOONE or not set(local) & keys or set(local) & set(changed):
            continue
        added = state.attrs[rel.key].history.added
        if not added or added[0] is None:
            continue
        target = sa.inspect(added[0])
        new = target.identity[0] if target.identity else None
        old = getattr(obj, local[0])
        if old is not None and new != old:
            changed.append(local[0])
    return changed


def confirm(user: Staff | None, password: str | None, session: Session | None = None) -> None:
    """Re-authenticate ``user`` for the important changes of this transaction (ACC-5's check)."""
    from models.base import db
    from security.accounts import require_reauth

    session = session or db.session()
    if user is None:
        raise DomainError(_l("Changing important information needs a signed-in person's password."), "confirm_password")
    with session.no_autoflush:  # the pending change flushes only once confirmed
        if supervisor_only() and not set(user.roles) & SUPERVISOR_ROLES:
            raise DomainError(
                _l(
                    "The firm requires a supervisor to change important information: ask your "
                    "supervisor to make this change."
                ),
                "confirm_password",
            )
        require_reauth(user, password)
    session.info[CONFIRMED] = user.id


def supervisor_only() -> bool:
    from workflow import settings

    return bool(settings.value(SUPERVISOR_ONLY.key))


def pending_important(session: Session) -> list[tuple[Any, list[str]]]:
    return [(obj, keys) for obj in session.dirty if (keys := important_changes(obj, session))]


@sa.event.listens_for(Session, "before_flush")
def _guard_important(session: Session, flush_context: Any, instances: Any) -> None:
    """Refuse a flush that changes important information without this transaction's confirmation."""
    changes = pending_important(session)
    if not changes:
        return
    if session.info.get(CONFIRMED) is None:
        raise DomainError(
            _l(
                "Changing important information (ID number, name, owner, unit code or area, "
                "recorded money) needs your password again."
            ),
            "confirm_password",
        )
    from security.accounts import log_event

    staff = session.get(Staff, session.info[CONFIRMED])
    for obj, keys in changes:
        log_event(
            "important_change", staff=staff, detail=f"{type(obj).__tablename__} {obj.id}: {', '.join(keys)}"[:500]
        )


@sa.event.listens_for(Session, "after_commit")
@sa.event.listens_for(Session, "after_rollback")
def _end_confirmation(session: Session) -> None:
    session.info.pop(CONFIRMED, None)
