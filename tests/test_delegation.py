"""Delegation of a manager's approvals (``engine.delegate`` and the Delegations screen).

The case is ACC-5's deletion: a clerk asks to delete a key-custody record (password re-entered),
and only a manager may approve. With a delegation in force the delegate signs on the manager's
behalf, and the sign-off says so; revoked, ended or not yet started, it gives nothing; and the
person who asked never approves their own request, delegation or not.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from models import AuditEntry, Notification, Staff, db
from models.base import utcnow
from models.workflow import Delegation, SignOff
from security import accounts
from tests.conftest import PASSWORD, csrf_token, login
from tests.helpers import make_key_custody
from workflow import engine
from workflow import inbox as work


def staff(staff_ids: dict[str, int], role: str) -> Staff:
    return db.session.get(Staff, staff_ids[role])


def delegation(staff_ids: dict[str, int], to: str = "cs_supervisor", *, start: timedelta = timedelta(hours=-1),
               end: timedelta = timedelta(days=1)) -> Delegation:
    now = utcnow()
    row = engine.delegate(staff(staff_ids, "manager"), staff(staff_ids, to), now + start, now + end, "年假")
    db.session.commit()
    return row


def deletion_request(staff_ids: dict[str, int], by: str = "cs_clerk"):  # type: ignore[no-untyped-def]
    keys = make_key_custody()
    db.session.commit()
    assert engine.fire(keys, "delete", staff(staff_ids, by), "登记重复", password=PASSWORD) == "requested"
    return keys


def rows(app: Flask) -> list[tuple]:
    with app.app_context():
        return [tuple(r) for r in db.session.execute(
            sa.select(Delegation.delegator_id, Delegation.delegate_id, Delegation.starts_at, Delegation.ends_at,
                      Delegation.reason, Delegation.revoked_at).order_by(Delegation.id))]


def form_data(client: FlaskClient, delegate_id: int, start: str = "2030-01-01T08:00",
              end: str = "2030-01-08T18:00", reason: str = "出差") -> dict[str, object]:
    return {"csrf_token": csrf_token(client), "delegate": str(delegate_id), "starts_at": start, "ends_at": end,
            "reason": reason}


# --- signing on someone's behalf --------------------------------------------------------------------
def test_acc_5_delegate_signs_a_managers_deletion_step_on_behalf(app, staff_ids, db_session):
    keys = deletion_request(staff_ids)
    supervisor = staff(staff_ids, "cs_supervisor")
    assert not engine.can_decide(keys, supervisor)  # the step needs a manager
    delegation(staff_ids)

    assert engine.can_decide(keys, supervisor)
    assert keys.id in [i.record.id for i in work.my_work(supervisor) if i.kind == "approve"]
    assert engine.decide(keys, supervisor, True, "代经理批准", password=PASSWORD) == "approved"
    [signoff] = db.session.scalars(sa.select(SignOff).where(SignOff.record_id == keys.id)).all()
    assert (signoff.staff_id, signoff.on_behalf_of_id, signoff.role, signoff.decision) == (
        staff_ids["cs_supervisor"], staff_ids["manager"], "manager", "approve")
    # deleted_by names who decided (the delegate); the sign-off says on whose behalf
    assert keys.deleted_at is not None and keys.deleted_by_id == staff_ids["cs_supervisor"]


def test_acc_5_manager_still_signs_directly_during_a_delegation(app, staff_ids, db_session):
    keys = deletion_request(staff_ids)
    delegation(staff_ids)
    assert engine.decide(keys, staff(staff_ids, "manager"), True, "批准", password=PASSWORD) == "approved"
    [signoff] = db.session.scalars(sa.select(SignOff).where(SignOff.record_id == keys.id)).all()
    assert signoff.on_behalf_of_id is None


def test_acc_5_without_delegation_the_supervisor_cannot_sign(app, staff_ids, db_session):
    keys = deletion_request(staff_ids)
    with pytest.raises(engine.NotAllowed):
        engine.decide(keys, staff(staff_ids, "cs_supervisor"), True, "批准", password=PASSWORD)
    assert keys.deleted_at is None


@pytest.mark.parametrize(("start", "end"), [
    (timedelta(days=-3), timedelta(days=-1)),  # ended
    (timedelta(days=1), timedelta(days=3)),  # not started yet
])
def test_acc_5_delegation_outside_its_period_gives_nothing(app, staff_ids, db_session, start, end):
    keys = deletion_request(staff_ids)
    delegation(staff_ids, start=start, end=end)
    supervisor = staff(staff_ids, "cs_supervisor")
    assert not engine.can_decide(keys, supervisor)
    assert [i for i in work.my_work(supervisor) if i.kind == "approve"] == []
    with pytest.raises(engine.NotAllowed):
        engine.decide(keys, supervisor, True, "批准", password=PASSWORD)


def test_acc_5_revoked_delegation_gives_nothing(app, staff_ids, db_session, login_as):
    keys = deletion_request(staff_ids)
    row = delegation(staff_ids)
    supervisor = staff(staff_ids, "cs_supervisor")
    assert engine.can_decide(keys, supervisor)

    manager = login_as("manager")
    response = manager.post(f"/admin/delegation/{row.id}/revoke", data={"csrf_token": csrf_token(manager)})
    assert response.status_code == 302
    assert row.revoked_at is not None
    assert not engine.can_decide(keys, supervisor)
    with pytest.raises(engine.NotAllowed):
        engine.decide(keys, supervisor, True, "批准", password=PASSWORD)
    audited = db.session.scalar(sa.select(AuditEntry.changes).where(
        AuditEntry.record_type == "delegation", AuditEntry.record_id == row.id, AuditEntry.action == "update"))
    assert audited and "revoked_at" in audited  # the session hook recorded the revocation


def test_acc_5_requester_cannot_approve_own_deletion_through_a_delegation(app, staff_ids, db_session):
    keys = deletion_request(staff_ids, by="cs_clerk")
    delegation(staff_ids, to="cs_clerk")
    clerk = staff(staff_ids, "cs_clerk")
    assert not engine.can_decide(keys, clerk)
    with pytest.raises(engine.NotAllowed):
        engine.decide(keys, clerk, True, "自己批准", password=PASSWORD)
    assert keys.deleted_at is None and db.session.scalar(sa.select(sa.func.count()).select_from(SignOff)) == 0


def test_acc_5_delegate_cannot_approve_the_delegators_own_request(app, staff_ids, db_session):
    """The manager asked; the delegate would sign as that same manager: still self-approval."""
    keys = deletion_request(staff_ids, by="manager")
    delegation(staff_ids)
    supervisor = staff(staff_ids, "cs_supervisor")
    assert not engine.can_decide(keys, supervisor)
    with pytest.raises(engine.NotAllowed):
        engine.decide(keys, supervisor, True, "批准", password=PASSWORD)
    assert keys.deleted_at is None


def test_acc_5_delegation_from_a_deactivated_manager_gives_nothing(app, staff_ids, db_session):
    keys = deletion_request(staff_ids)
    delegation(staff_ids)
    staff(staff_ids, "manager").active = False
    db.session.commit()
    assert not engine.can_decide(keys, staff(staff_ids, "cs_supervisor"))


# --- who may delegate -----------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["cs_supervisor", "admin", "cs_clerk"])
def test_wf_delegation_non_manager_cannot_delegate(app, staff_ids, db_session, login_as, role):
    now = utcnow()
    with pytest.raises(engine.NotAllowed):
        engine.delegate(staff(staff_ids, role), staff(staff_ids, "finance"), now, now + timedelta(days=1), "x")
    db.session.rollback()
    client = login_as(role)
    response = client.post("/admin/delegation/new", data=form_data(client, staff_ids["finance"]))
    assert response.status_code == 403
    assert rows(app) == []


@pytest.mark.parametrize(("delegate", "start", "end", "field"), [
    ("manager", "2030-01-01T08:00", "2030-01-02T08:00", "delegate"),  # oneself: not offered
    ("cs_supervisor", "2030-01-02T08:00", "2030-01-01T08:00", "ends_at"),  # ends before it starts
    ("cs_supervisor", "2030-01-01T08:00", "2031-06-01T08:00", "ends_at"),  # longer than a year
    ("cs_supervisor", "tomorrow", "2030-01-02T08:00", "starts_at"),  # not a time
])
def test_wf_delegation_bad_form_writes_nothing(app, staff_ids, login_as, delegate, start, end, field):
    client = login_as("manager")
    response = client.post("/admin/delegation/new", data=form_data(client, staff_ids[delegate], start, end))
    assert response.status_code == 400
    invalid = re.findall(r'class="[^"]*is-invalid[^"]*" id="(\w+)"', response.get_data(as_text=True))
    assert invalid == [field]  # the message stands next to the field at fault
    assert rows(app) == []


def test_wf_delegation_inactive_staff_cannot_be_chosen(app, staff_ids, db_session, login_as):
    staff(staff_ids, "finance").active = False
    db.session.commit()
    client = login_as("manager")
    page = client.get("/admin/delegation/").get_data(as_text=True)
    assert f'value="{staff_ids["finance"]}"' not in page and f'value="{staff_ids["cs_supervisor"]}"' in page
    assert client.post("/admin/delegation/new", data=form_data(client, staff_ids["finance"])).status_code == 400
    assert rows(app) == []


# --- the screen -----------------------------------------------------------------------------------
def test_wf_delegation_manager_records_one_in_local_time_and_the_delegate_is_told(app, staff_ids, login_as):
    client = login_as("manager")
    response = client.post("/admin/delegation/new", data=form_data(client, staff_ids["cs_supervisor"]))
    assert response.status_code == 302, response.get_data(as_text=True)
    [(delegator, delegate, starts, ends, reason, revoked)] = rows(app)
    assert (delegator, delegate, reason, revoked) == (staff_ids["manager"], staff_ids["cs_supervisor"], "出差", None)
    # entered in the site's zone (Asia/Shanghai, UTC+8), stored in UTC
    assert starts == datetime(2030, 1, 1, 0, 0, tzinfo=UTC) and ends == datetime(2030, 1, 8, 10, 0, tzinfo=UTC)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification).where(
            Notification.staff_id == staff_ids["cs_supervisor"])) == 1
        assert db.session.scalar(sa.select(AuditEntry.action).where(AuditEntry.record_type == "delegation")) == "create"
    page = client.get("/admin/delegation/").get_data(as_text=True)
    assert "2030-01-01 08:00" in page and "delegation-scheduled" in page and "delegation-revoke" in page


@pytest.mark.parametrize("role", ["admin", "cs_supervisor"])
def test_wf_delegation_admin_and_supervisor_see_all_read_only(app, staff_ids, db_session, login_as, role):
    row = delegation(staff_ids, to="finance")
    client = login_as(role)
    page = client.get("/admin/delegation/").get_data(as_text=True)
    assert f'data-id="{row.id}"' in page
    assert "delegation-revoke" not in page and 'id="delegation-form"' not in page
    response = client.post(f"/admin/delegation/{row.id}/revoke", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 403
    db.session.expire_all()
    assert row.revoked_at is None


def test_wf_delegation_manager_sees_only_own(app, staff_ids, db_session):
    other = accounts.create_staff("manager2", "另一位经理", PASSWORD, {"manager"})
    now = utcnow()
    theirs = engine.delegate(other, staff(staff_ids, "finance"), now, now + timedelta(days=1), "培训")
    db.session.commit()
    mine = delegation(staff_ids)
    client = app.test_client()
    assert login(client, "manager").status_code == 302
    page = client.get("/admin/delegation/").get_data(as_text=True)
    assert f'data-id="{mine.id}"' in page and f'data-id="{theirs.id}"' not in page
    response = client.post(f"/admin/delegation/{theirs.id}/revoke", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 404
    db.session.expire_all()
    assert theirs.revoked_at is None


@pytest.mark.parametrize("role", ["cs_clerk", "engineering", "security", "finance", "management_dept"])
def test_acc_4_delegation_screen_refused_to_other_roles(app, staff_ids, login_as, role):
    client = login_as(role)
    assert client.get("/admin/delegation/").status_code == 403
    assert 'href="/admin/delegation/"' not in client.get("/admin/").get_data(as_text=True)


def test_wf_delegation_revoking_twice_changes_nothing(app, staff_ids, db_session, login_as):
    row = delegation(staff_ids)
    client = login_as("manager")
    assert client.post(f"/admin/delegation/{row.id}/revoke", data={"csrf_token": csrf_token(client)}).status_code == 302
    first = row.revoked_at
    assert client.post(f"/admin/delegation/{row.id}/revoke", data={"csrf_token": csrf_token(client)}).status_code == 302
    db.session.expire_all()
    assert row.revoked_at == first
