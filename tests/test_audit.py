"""The audit trail: one row per write and security event with actor, IP and masked old → new values
(ACC-6, ACC-7), the HMAC chain and what ``flask audit verify`` reports when it is tampered with, the
database guards, concurrent appends, and the admin-only, read-only screen and record timeline."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from models import AuditEntry, AuditHead, Estate, KeyCustody, Resident, Staff, db
from models.audit import guard_statements
from security.crypto import mask
from tests.conftest import PASSWORD, ROLE_USERS, csrf_token, login
from tests.helpers import make_estate, make_key_custody, make_resident, valid_id
from views.audit import ACTION_FILTER, RECORD_ID_FILTER, RECORD_TYPE_FILTER, AuditEntryView
from workflow import engine
from workflow.audit import verify

RESIDENT_FORM = {"name": "王五", "gender": "male", "phone": "13700137000", "native_place": "",
                 "household_place": "", "emergency_contact": "", "emergency_phone": ""}


# --- helpers -----------------------------------------------------------------------------------
def rows(*where: Any) -> list[AuditEntry]:
    """Committed audit rows in chain order, read through a connection of their own."""
    with sa.orm.Session(db.engine) as session:
        return list(session.scalars(sa.select(AuditEntry).where(*where).order_by(AuditEntry.seq)))


def changes(entry: AuditEntry) -> dict[str, list[Any]]:
    return json.loads(entry.changes or "{}")


def problems() -> list[tuple[int | None, str]]:
    return [(p.seq, p.kind) for p in verify(db.engine)[1]]


def is_postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


@contextmanager
def unguarded() -> Iterator[sa.Connection]:
    """A connection that may rewrite ``audit_entry``: the attacker with database access."""
    db.session.rollback()  # PostgreSQL: ALTER TABLE waits for every open transaction on the table
    with db.engine.begin() as conn:
        if is_postgres():
            conn.execute(sa.text("ALTER TABLE audit_entry DISABLE TRIGGER USER"))
        else:
            conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_entry_no_update"))
            conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_entry_no_delete"))
        try:
            yield conn
        finally:
            if is_postgres():
                conn.execute(sa.text("ALTER TABLE audit_entry ENABLE TRIGGER USER"))
            else:
                for statement in guard_statements("sqlite"):
                    conn.exec_driver_sql(statement)


def cli_verify(runner: Any) -> tuple[int, str]:
    result = runner.invoke(args=["audit", "verify"])
    return result.exit_code, result.output


@pytest.fixture()
def english(db_session) -> None:
    """Every account reads English, so pages show the msgids while translations are pending."""
    db.session.execute(sa.update(Staff).values(locale="en"))
    db.session.commit()


@pytest.fixture()
def admin(login_as, english) -> FlaskClient:
    return login_as("admin")


def listed(client: FlaskClient, url: str) -> str:
    """The list table of a page (the filter menu elsewhere on it names every action)."""
    response = client.get(url)
    assert response.status_code == 200, response.status
    body = response.get_data(as_text=True)
    start = body.index('<table class="table table-striped table-bordered table-hover model-list">')
    return body[start:body.index("</table>", start)]


def reauth(client: FlaskClient, target: str) -> None:
    first = client.get(target)
    assert first.status_code == 302 and "/reauth" in first.headers["Location"]
    ok = client.post(first.headers["Location"], data={"csrf_token": csrf_token(client), "password": PASSWORD})
    assert ok.status_code == 302


# --- one row per write, masked ------------------------------------------------------------------
def test_wf_audit_form_create_and_edit_each_write_one_row_with_actor_ip_and_old_new(
        login_as, db_session, staff_ids) -> None:
    supervisor = login_as("cs_supervisor")
    before = len(rows())
    response = supervisor.post("/admin/estate/new/", data={
        "csrf_token": csrf_token(supervisor), "code": "east", "name": "东苑", "kind": "residential",
        "address": "一号路"})
    assert response.status_code == 302, response.get_data(as_text=True)
    estate = db.session.scalar(sa.select(Estate).where(Estate.name == "东苑"))
    assert len(rows()) == before + 1
    [created] = rows(AuditEntry.record_type == "estate")
    assert (created.action, created.record_id) == ("create", estate.id)
    assert (created.actor_id, created.actor_name, created.ip) == (staff_ids["cs_supervisor"], "supervisor",
                                                                    "127.0.0.1")
    assert changes(created)["name"] == [None, "东苑"] and changes(created)["address"] == [None, "一号路"]
    assert "version" not in changes(created) and "created_at" not in changes(created)

    response = supervisor.post(f"/admin/estate/edit/?id={estate.id}", data={
        "csrf_token": csrf_token(supervisor), "code": estate.code, "name": "东苑二期", "kind": "residential",
        "address": "一号路", "version": estate.version})
    assert response.status_code == 302, response.get_data(as_text=True)
    created_again, updated = rows(AuditEntry.record_type == "estate")
    assert (updated.action, updated.record_id, updated.actor_name) == ("update", estate.id, "supervisor")
    assert changes(updated) == {"name": ["东苑", "东苑二期"]}  # only what changed


def test_acc_6_resident_national_id_is_masked_in_the_trail(login_as, db_session) -> None:
    clerk = login_as("cs_clerk")
    number, new_number = valid_id(31), valid_id(32)
    response = clerk.post("/admin/resident/new/", data={
        "csrf_token": csrf_token(clerk), **RESIDENT_FORM, "id_number": number})
    assert response.status_code == 302, response.get_data(as_text=True)
    resident = db.session.scalar(sa.select(Resident).where(Resident.name == "王五"))
    [created] = rows(AuditEntry.record_type == "resident")
    assert changes(created)["id_number"] == [None, mask(number)]
    assert changes(created)["id_number_bidx"] == [None, "***"]
    assert number not in created.changes and resident.id_number_bidx not in created.changes

    response = clerk.post(f"/admin/resident/edit/?id={resident.id}", data={
        "csrf_token": csrf_token(clerk), **RESIDENT_FORM, "id_number": new_number, "version": resident.version,
        "confirm_password": PASSWORD})  # ACC-8: an ID number is important information
    assert response.status_code == 302, response.get_data(as_text=True)
    updated = rows(AuditEntry.record_type == "resident", AuditEntry.action == "update")[-1]
    assert changes(updated)["id_number"] == [mask(number), mask(new_number)]
    assert changes(updated)["id_number_bidx"] == ["***", "***"]
    assert number not in updated.changes and new_number not in updated.changes


def test_acc_6_staff_password_hash_is_never_copied_into_the_trail(login_as, db_session) -> None:
    admin = login_as("admin")
    response = admin.post("/admin/staff/new/", data={
        "csrf_token": csrf_token(admin), "username": "zhao.liu", "full_name": "赵六", "phone": "",
        "email": "", "department": "cs", "roles": ["cs_clerk"], "password": "Mountain-River-7731"})
    assert response.status_code == 302, response.get_data(as_text=True)
    staff = db.session.scalar(sa.select(Staff).where(Staff.username == "zhao.liu"))
    [created] = rows(AuditEntry.record_type == "staff", AuditEntry.action == "create",
                     AuditEntry.record_id == staff.id)
    assert changes(created)["password_hash"] == [None, "***"] and created.actor_name == "admin"
    assert staff.password_hash not in created.changes and "argon2" not in created.changes


def test_acc_6_deleted_row_keeps_its_old_values_masked(db_session) -> None:
    number = valid_id(41)
    resident = make_resident(id_number=number)
    db.session.commit()
    db.session.delete(resident)
    db.session.commit()
    [deleted] = rows(AuditEntry.record_type == "resident", AuditEntry.action == "delete")
    assert changes(deleted)["name"] == ["张三", None]
    assert changes(deleted)["id_number"] == [mask(number), None]
    assert changes(deleted)["id_number_bidx"] == ["***", None] and number not in deleted.changes


# --- security events (ACC-7) ------------------------------------------------------------------------
def test_acc_7_login_failed_login_confidential_view_and_export_write_rows(app, login_as, db_session) -> None:
    client = app.test_client()
    assert login(client, "clerk", "wrong-password-123").status_code == 401
    assert login(client, "nobody.here", "wrong-password-123").status_code == 401
    assert login(client, "clerk").status_code == 302
    failed = rows(AuditEntry.action == "login_failed")
    assert [(f.comment, f.ip) for f in failed] == [("clerk", "127.0.0.1"), ("nobody.here", "127.0.0.1")]
    [signed_in] = rows(AuditEntry.action == "login")
    assert (signed_in.actor_name, signed_in.ip) == ("clerk", "127.0.0.1")

    resident = make_resident()
    db.session.commit()
    assert client.get(f"/admin/resident/details/?id={resident.id}").status_code == 200
    [viewed] = rows(AuditEntry.action == "confidential_view")
    assert (viewed.actor_name, viewed.comment) == ("clerk", f"resident {resident.id}")

    supervisor = login_as("cs_supervisor")
    reauth(supervisor, "/admin/resident/export/csv/")
    assert supervisor.get("/admin/resident/export/csv/").status_code == 200
    [exported] = rows(AuditEntry.action == "export")
    assert exported.actor_name == "supervisor" and "resident" in exported.comment
    assert rows(AuditEntry.action == "reauth")[-1].actor_name == "supervisor"


# --- the chain -----------------------------------------------------------------------------------
def test_wf_audit_chain_verifies_intact_after_many_mixed_writes(app, login_as, db_session, runner,
                                                                 staff_ids) -> None:
    supervisor = login_as("cs_supervisor")
    for n in range(5):
        supervisor.post("/admin/estate/new/", data={"csrf_token": csrf_token(supervisor), "code": f"e{n}",
                                                    "name": f"小区{n}", "kind": "residential", "address": ""})
    login(app.test_client(), "clerk", "wrong-password-123")
    keys = make_key_custody()
    db.session.commit()
    clerk = db.session.get(Staff, staff_ids["cs_clerk"])
    engine.fire(keys, "check_out", clerk, values={"current_holder": "王工", "current_purpose": "修水管"})
    engine.fire(keys, "check_in", clerk)
    make_estate(code="rolled")
    db.session.rollback()
    count = len(rows())
    assert count > 40 and [e.seq for e in rows()] == list(range(1, count + 1))
    assert verify(db.engine) == (count, [])
    assert cli_verify(runner) == (0, f"audit trail: {count} rows, chain intact\n")


@pytest.mark.parametrize(("column", "value"), [
    ("comment", "nothing happened"), ("changes", '{"name": [null, "假的"]}'), ("ip", "10.9.9.9"),
    ("actor_name", "someone.else")])
def test_wf_audit_edited_row_is_reported_at_its_seq(db_session, runner, column, value) -> None:
    target = rows(AuditEntry.changes.is_not(None))[3].seq
    with unguarded() as conn:
        conn.execute(sa.update(AuditEntry).where(AuditEntry.seq == target).values({column: value}))
    assert problems() == [(target, "edited")]
    code, output = cli_verify(runner)
    assert code == 1 and f"seq {target}: edited" in output


def test_wf_audit_deleted_middle_row_is_reported_removed(db_session, runner) -> None:
    target = len(rows()) // 2
    with unguarded() as conn:
        conn.execute(sa.delete(AuditEntry).where(AuditEntry.seq == target))
    assert problems() == [(target, "removed")]
    assert cli_verify(runner)[0] == 1


def test_wf_audit_swapped_rows_are_reported(db_session, runner) -> None:
    first, second = rows()[4], rows()[9]
    kept = {"id", "seq"}
    with unguarded() as conn:
        content = {e.seq: {c.key: getattr(e, c.key) for c in sa.inspect(AuditEntry).column_attrs
                           if c.key not in kept} for e in (first, second)}
        conn.execute(sa.update(AuditEntry).where(AuditEntry.seq == first.seq).values(content[second.seq]))
        conn.execute(sa.update(AuditEntry).where(AuditEntry.seq == second.seq).values(content[first.seq]))
    reported = problems()
    assert (first.seq, "edited") in reported and (second.seq, "edited") in reported
    assert cli_verify(runner)[0] == 1


def test_wf_audit_deleted_last_row_is_reported_against_the_head(db_session, runner) -> None:
    last = rows()[-1].seq
    with unguarded() as conn:
        conn.execute(sa.delete(AuditEntry).where(AuditEntry.seq == last))
    count, found = verify(db.engine)
    assert count == last - 1 and len(found) == 1 and found[0].seq == last
    assert found[0].kind in ("removed", "head") and "tip" in found[0].detail
    code, output = cli_verify(runner)
    assert code == 1 and f"seq {last}: {found[0].kind}" in output


def test_wf_audit_database_refuses_update_delete_and_truncate(db_session) -> None:
    db.session.commit()
    before = [(e.seq, e.hash) for e in rows()]
    statements: list[Any] = [sa.update(AuditEntry).values(comment="rewritten"),
                             sa.update(AuditEntry).where(AuditEntry.seq == 1).values(seq=10**6),
                             sa.delete(AuditEntry), sa.delete(AuditEntry).where(AuditEntry.seq == 2)]
    if is_postgres():
        statements.append(sa.text("TRUNCATE audit_entry"))
    for statement in statements:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(statement)
    assert [(e.seq, e.hash) for e in rows()] == before and problems() == []


def test_wf_audit_rolled_back_transaction_leaves_no_rows(db_session) -> None:
    before = [(e.seq, e.hash) for e in rows()]
    make_estate(code="gone")  # flushed: the row exists inside the transaction
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                             .where(AuditEntry.record_type == "estate")) == 1
    db.session.rollback()
    assert [(e.seq, e.hash) for e in rows()] == before
    assert db.session.get(AuditHead, 1).seq == len(before)
    make_estate(code="kept")
    db.session.commit()
    assert rows()[-1].seq == len(before) + 1 and problems() == []


def test_wf_audit_concurrent_appends_keep_one_contiguous_chain(app: Flask, staff_ids) -> None:
    workers, each = 4, 5
    start, errors = threading.Barrier(workers), []

    def work(n: int) -> None:
        try:
            with app.app_context():
                start.wait()
                for i in range(each):
                    db.session.add(Estate(code=f"t{n}x{i}", name=f"并发{n}-{i}", kind="residential"))
                    db.session.commit()
                db.session.remove()
        except Exception as exc:  # reported below; a thread's exception is otherwise lost
            start.abort()  # the others stop waiting for a worker that will never arrive
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with app.app_context():
        entries = rows()
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))
        assert len([e for e in entries if e.record_type == "estate"]) == workers * each
        assert db.session.get(AuditHead, 1).seq == len(entries)
        assert verify(db.engine) == (len(entries), [])


# --- the workflow's rows and the record timeline ------------------------------------------------------
def test_wf_audit_key_custody_transition_is_one_labelled_row(db_session, staff_ids) -> None:
    keys = make_key_custody()
    db.session.commit()
    clerk = db.session.get(Staff, staff_ids["cs_clerk"])
    engine.fire(keys, "check_out", clerk, "维修借用", values={"current_holder": "王工", "current_purpose": "修水管"})
    about_keys = (AuditEntry.record_type == "key_custody", AuditEntry.record_id == keys.id)
    assert [e.action for e in rows(*about_keys)] == ["create", "transition"]
    row = rows(*about_keys)[-1]
    assert (row.transition, row.comment) == ("check_out", "维修借用")
    assert changes(row)["state"] == ["held", "out"] and changes(row)["current_holder"] == [None, "王工"]


def test_wf_audit_deletion_request_signoff_and_delete_rows_name_each_actor(login_as, english) -> None:
    keys = make_key_custody()
    db.session.commit()
    clerk, manager = login_as("cs_clerk"), login_as("manager")
    clerk.post("/admin/key_custody/transition/", data={
        "csrf_token": csrf_token(clerk), "id": keys.id, "name": "delete", "version": keys.version,
        "comment": "录入重复", "password": PASSWORD})
    keys = db.session.get(KeyCustody, keys.id)
    manager.post("/admin/key_custody/decide/", data={
        "csrf_token": csrf_token(manager), "id": keys.id, "version": keys.version, "decision": "approve",
        "comment": "同意", "password": PASSWORD})
    trail = [(e.action, e.transition, e.actor_name, e.comment)
             for e in rows(AuditEntry.record_type == "key_custody", AuditEntry.record_id == keys.id)][1:]
    assert trail == [("request", "delete", "clerk", "录入重复"), ("signoff", "delete", "manager", "✓ [manager] 同意"),
                     ("delete", "delete", "manager", "录入重复")]
    assert "deleted_at" in changes(rows(AuditEntry.action == "delete")[-1])


def test_wf_audit_record_details_show_the_timeline(login_as, english, staff_ids) -> None:
    keys = make_key_custody()
    db.session.commit()
    engine.fire(keys, "check_out", db.session.get(Staff, staff_ids["cs_clerk"]), "维修借用",
                values={"current_holder": "王工", "current_purpose": "修水管"})
    page = login_as("cs_clerk").get(f"/admin/key_custody/details/?id={keys.id}").get_data(as_text=True)
    timeline = page[page.index('id="audit-timeline"'):]
    assert "Created" in timeline and "Workflow step" in timeline and "Take out" in timeline
    assert "维修借用" in timeline and "In the key cabinet → Taken out" in timeline and "王工" in timeline


# --- the screen ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", [r for r in ROLE_USERS if r != "admin"])
def test_acc_7_audit_trail_is_for_admins_only(login_as, role) -> None:
    client = login_as(role)
    for url in ("/admin/audit/", "/admin/audit/details/?id=1", "/admin/audit/export/csv/"):
        assert client.get(url).status_code == 403


def test_acc_7_anonymous_visitor_is_sent_to_login(app, staff_ids) -> None:
    response = app.test_client().get("/admin/audit/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_acc_7_admin_reviews_the_trail_newest_first(admin) -> None:
    body = listed(admin, "/admin/audit/")
    assert "Account created" in body and "Signed in" in body
    assert body.index("Signed in") < body.index("Account created")  # seq descending
    entry = rows()[0]
    details = admin.get(f"/admin/audit/details/?id={entry.id}").get_data(as_text=True)
    assert entry.hash in details and entry.prev_hash in details


def test_wf_audit_screen_is_read_only_even_for_admins(admin) -> None:
    before = [(e.seq, e.hash, e.comment) for e in rows()]
    token = csrf_token(admin)
    entry_id = rows()[0].id
    assert admin.get("/admin/audit/new/").status_code == 403
    assert admin.post("/admin/audit/new/", data={"csrf_token": token, "comment": "x"}).status_code == 403
    edit = admin.post(f"/admin/audit/edit/?id={entry_id}", data={"csrf_token": token, "comment": "x"})
    assert edit.status_code == 403
    assert admin.post("/admin/audit/delete/", data={"csrf_token": token, "id": entry_id}).status_code == 403
    assert admin.post("/admin/audit/action/", data={"csrf_token": token, "action": "delete",
                                                    "rowid": entry_id}).status_code == 403
    assert admin.post("/admin/audit/ajax/update/", data={"csrf_token": token, "list_form_pk": entry_id,
                                                         "comment": "x"}).status_code == 403
    assert [(e.seq, e.hash, e.comment) for e in rows()] == before


def flt(position: int, flt_obj: Any, value: Any) -> str:
    return f"flt{position}_{AuditEntryView.column_filters.index(flt_obj)}={value}"


def test_wf_audit_filter_by_record_type_record_id_and_action(admin) -> None:
    east = make_estate(code="east", name="东苑")
    make_estate(code="west", name="西苑")
    db.session.commit()
    both = listed(admin, "/admin/audit/")
    assert "东苑" in both and "西苑" in both
    one = listed(admin, f"/admin/audit/?{flt(0, RECORD_TYPE_FILTER, 'estate')}&{flt(1, RECORD_ID_FILTER, east.id)}")
    assert "东苑" in one and "西苑" not in one and "Account created" not in one
    estates = listed(admin, f"/admin/audit/?{flt(0, RECORD_TYPE_FILTER, 'estate')}")
    assert "东苑" in estates and "西苑" in estates and "Account created" not in estates
    logins = listed(admin, f"/admin/audit/?{flt(0, ACTION_FILTER, 'login')}")
    assert "Signed in" in logins and "东苑" not in logins and "Account created" not in logins
    for junk in ("abc", str(10**30), "-1"):  # an invalid filter value is a message, never a 500
        assert "西苑" in listed(admin, f"/admin/audit/?{flt(0, RECORD_ID_FILTER, junk)}")


def test_acc_5_audit_export_needs_the_password_and_is_logged(admin) -> None:
    reauth(admin, "/admin/audit/export/csv/")
    response = admin.get("/admin/audit/export/csv/")
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "Account created" in body and "password_hash: — → ***" in body
    assert "$argon2" not in body
    [exported] = rows(AuditEntry.action == "export")
    assert exported.actor_name == "admin" and "audit" in exported.comment


def test_wf_audit_timeline_shows_times_in_beijing_and_hides_engine_counters(app: Flask, db_session) -> None:
    """A changed time reads as the screens show times (Asia/Shanghai), not as stored UTC text; the
    engine's round counter is bookkeeping, not a change a reader needs."""
    from datetime import UTC, datetime

    from views.audit import change_rows

    keys = make_key_custody(deposited_at=datetime(2026, 11, 20, 1, 0, tzinfo=UTC))
    db.session.commit()
    keys.deposited_at = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
    db.session.commit()
    created, changed = db.session.scalars(sa.select(AuditEntry).where(
        AuditEntry.record_type == "key_custody", AuditEntry.record_id == keys.id).order_by(AuditEntry.seq))
    with app.test_request_context():
        rows = change_rows(changed)
        assert [(old, new) for field, old, new in rows if "2026" in new] == [
            ("2026-11-20 09:00", "2026-11-21 10:30")]
        assert not any("pending_round" in field for field, _, _ in change_rows(created))


def test_timeline_names_a_foreign_key_by_its_relation_label(app) -> None:
    """A changed ``unit_id`` reads as the screen's 单元, not as a column name."""
    from types import SimpleNamespace

    from views.audit import _field_label

    view = SimpleNamespace(column_labels={"unit": "单元", "goods": "物品"})
    assert _field_label("unit_id", view, None) == "单元"
    assert _field_label("goods", view, None) == "物品"
    assert _field_label("other_id", view, None) == "other_id"


def test_acc_7_audit_key_rotation_starts_a_segment_and_the_old_one_still_verifies(app, db_session, monkeypatch):
    """Issue 18 §6: a new AUDIT_KEY continues the chain; the retired key verifies only the rows
    before the first row under the new key."""
    old, new = app.config["AUDIT_KEY"], "a-new-audit-key-after-rotation-2026"

    def add(code: str) -> None:
        make_estate(code=code, name=f"小区{code}")
        db.session.commit()

    add("r1")
    add("r2")
    monkeypatch.setitem(app.config, "AUDIT_KEY", new)
    assert any(p.kind == "edited" for p in verify(db.engine)[1])  # the old segment needs the old key
    monkeypatch.setitem(app.config, "AUDIT_KEYS_RETIRED", old)
    assert verify(db.engine)[1] == []
    add("r3")
    count, problems = verify(db.engine)
    assert problems == [] and count >= 3
    monkeypatch.setitem(app.config, "AUDIT_KEY", old)  # someone holding the retired key writes after the rotation
    monkeypatch.setitem(app.config, "AUDIT_KEYS_RETIRED", "")
    add("r4")
    monkeypatch.setitem(app.config, "AUDIT_KEY", new)
    monkeypatch.setitem(app.config, "AUDIT_KEYS_RETIRED", old)
    problems = verify(db.engine)[1]
    assert [p.kind for p in problems if p.kind == "edited"] and problems[0].seq == count + 1
