"""Shared helpers of the workflow-engine tests.

The key custody model is the only regulation record the tests may use (no test-only tables:
tests/test_migrations.py compares models with migrations), so engine features key custody
does not declare are tested by binding a throwaway ``Workflow`` to ``KeyCustody`` for one test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import flask_login
import pytest
import sqlalchemy as sa

from models import AuditEntry, Building, KeyCustody, KeyUse, Notification, SecurityEvent, SignOff, Staff, db
from security import accounts
from tests.conftest import PASSWORD
from tests.helpers import DATA_ACTIONS, make_building, make_key_custody, make_unit
from workflow import engine, settings


def staff(ids: dict[str, int], role: str) -> Staff:
    """The account holding ``role`` (conftest creates one per role)."""
    return db.session.get(Staff, ids[role])


def add_staff(username: str, roles: set[str], *, department: str | None = None, head: bool = False) -> Staff:
    """A further account, e.g. a second security guard or a department head."""
    person = accounts.create_staff(username, f"{username} 测试", PASSWORD, roles, department_key=department)
    person.department_head = head
    db.session.commit()
    return person


_units = iter(range(1, 100_000))


def new_keys(building: Building | None = None, **overrides: Any) -> KeyCustody:
    """A committed key custody record of a fresh unit (state "held")."""
    if building is None:
        building = db.session.scalar(sa.select(Building).limit(1)) or make_building()
    n = next(_units)
    unit = make_unit(building, code=f"A-12-{n:05d}", floor=12)
    keys = make_key_custody(unit=unit, tag_no=f"K-{n}", **overrides)
    db.session.commit()
    return keys


def audit_rows(record: Any, *actions: str) -> list[AuditEntry]:
    query = sa.select(AuditEntry).where(AuditEntry.record_type == type(record).__tablename__,
                                        AuditEntry.record_id == record.id)
    if actions:
        query = query.where(AuditEntry.action.in_(actions))
    return list(db.session.scalars(query.order_by(AuditEntry.seq)))


def written() -> dict[str, Any]:
    """What a refused call must leave as it was: data rows of the trail, sign-offs, notices,
    key uses, and every key custody record's workflow columns."""
    count = sa.func.count()
    records = db.session.execute(sa.select(
        KeyCustody.id, KeyCustody.state, KeyCustody.version, KeyCustody.pending_transition,
        KeyCustody.pending_round, KeyCustody.deleted_at, KeyCustody.current_holder,
        KeyCustody.returned_to).order_by(KeyCustody.id)).all()
    return {
        "audit": db.session.scalar(sa.select(count).select_from(AuditEntry)
                                   .where(AuditEntry.action.in_(DATA_ACTIONS))),
        "sign_off": db.session.scalar(sa.select(count).select_from(SignOff)),
        "notification": db.session.scalar(sa.select(count).select_from(Notification)),
        "key_use": db.session.scalar(sa.select(count).select_from(KeyUse)),
        "records": [tuple(r) for r in records],
    }


def security_events(kind: str) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(SecurityEvent)
                             .where(SecurityEvent.kind == kind)) or 0


def notices(person: Staff) -> list[Notification]:
    return list(db.session.scalars(sa.select(Notification).where(Notification.staff_id == person.id)
                                   .order_by(Notification.id)))


@contextmanager
def signed_in(person: Staff) -> Iterator[Staff]:
    """``person`` is the request's current user, so audit rows carry their name."""
    flask_login.login_user(person)
    try:
        yield person
    finally:
        flask_login.logout_user()


@contextmanager
def workflow_binder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[engine.Workflow], engine.Workflow]]:
    """Yields ``bind``: ``bind(Workflow(...))`` makes it KeyCustody's workflow until the block ends,
    then the shipped workflow and its declared settings come back."""
    saved_workflow = engine.WORKFLOWS.get(KeyCustody.__tablename__)
    saved_specs = dict(settings.SPECS)

    def bind(wf: engine.Workflow) -> engine.Workflow:
        wf.__set_name__(KeyCustody, "workflow")
        monkeypatch.setattr(KeyCustody, "workflow", wf)
        return wf

    try:
        yield bind
    finally:
        if saved_workflow is not None:
            engine.WORKFLOWS[KeyCustody.__tablename__] = saved_workflow
        settings.SPECS.clear()
        settings.SPECS.update(saved_specs)
