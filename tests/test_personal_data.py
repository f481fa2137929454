"""Personal data (issue 12 §3): ACC-5 exports ask for the password whenever their columns show
personal data; ACC-6 exact-ID search only for roles that see full numbers, throttled and logged
without the number; ARC-3 downloading an archive document is copying it (manager's approval)."""

from __future__ import annotations

import csv
import io
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from models import AuditEntry, Resident, SecurityEvent, Staff, db
from models.archives import file_document
from security.crypto import mask
from security.id_search import allow_lookup
from security.personal import is_personal_column, personal_columns_of
from tests.conftest import PASSWORD, ROLE_USERS
from tests.helpers import make_resident, valid_id
from tests.test_archives import PDF, make_archive, person, request_access
from tests.test_permissions import ENDPOINTS, allowed, find_view, reauthenticate, seed
from workflow import engine, settings

RESIDENTS = "/admin/resident/"


# --- ACC-5: every export of personal data asks for the password -------------------------------
def personal_values() -> set[str]:
    """Every personal value stored anywhere (decrypted), as text: what an export must not leak."""
    found: set[str] = set()
    for mapper in db.Model.registry.mappers:
        attrs = [a for a in mapper.column_attrs if any(is_personal_column(c) for c in a.columns)]
        if not attrs or mapper.class_.__table__ is None:
            continue
        for row in db.session.execute(sa.select(*(getattr(mapper.class_, a.key) for a in attrs))):
            found |= {str(v) for v in row if v is not None and len(str(v)) >= 2}
    return found


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_acc_5_every_export_of_personal_data_asks_for_the_password(app, staff_ids, db_session, login_as,
                                                                 endpoint):
    """Read from the registered views: an export whose columns (direct, related rows' labels,
    properties) show personal data is sent to the password step first, then works and is logged;
    any other export works at once and holds none of the personal values on file."""
    seed(staff_ids)
    view = find_view(app, endpoint)
    role = next((r for r in ROLE_USERS if allowed(view, r, "export")), None)
    if role is None:
        pytest.skip(f"nobody may export {endpoint}")
    personal = personal_columns_of(view.model, view.column_export_list)
    client = login_as(role)
    first = client.get(f"{view.url}/export/csv/")
    if personal or "export" in view.reauth_endpoints:
        assert first.status_code == 302 and "/reauth" in first.location, (endpoint, personal)
        reauthenticate(client)
        response = client.get(f"{view.url}/export/csv/")
        assert response.status_code == 200 and response.mimetype == "text/csv", endpoint
        logged = db.session.scalars(sa.select(SecurityEvent.detail).where(SecurityEvent.kind == "export")).all()
        assert any(view.endpoint in (d or "") for d in logged), endpoint
    else:
        assert first.status_code == 200 and first.mimetype == "text/csv", endpoint
        text = first.get_data(as_text=True)
        assert len(list(csv.reader(io.StringIO(text)))) >= 2, f"{endpoint}: no row exported, nothing proven"
        leaked = sorted(v for v in personal_values() if v in text)
        assert leaked == [], f"{endpoint} exports personal data without the password: {leaked}"


@pytest.mark.parametrize("endpoint", ["vip", "resident_change", "violation", "move_in", "move_out",
                                      "archive_rental", "archive_access"])
def test_acc_5_exports_found_skipping_the_password_now_ask_for_it(app, staff_ids, db_session, login_as,
                                                                 endpoint):
    """The exports issue 12 found without the password: VIP profiles, change history (old and new
    phones), violations, move-in, move-out, rentals and archive access requests."""
    seed(staff_ids)
    response = login_as("cs_supervisor").get(f"{find_view(app, endpoint).url}/export/csv/")
    assert response.status_code == 302 and "/reauth" in response.location


@pytest.mark.parametrize("url", ["/admin/violation-deductions/export.xlsx", "/admin/renovation-deposits/export.xlsx"])
def test_acc_5_file_exports_naming_residents_ask_for_the_password(db_session, login_as, url) -> None:
    """Screens without a column list declare their exports: the deductions list names residents,
    the deposit report names applicants."""
    finance = login_as("finance")
    first = finance.get(url)
    assert first.status_code == 302 and "/reauth" in first.location
    reauthenticate(finance)
    second = finance.get(url)
    assert second.status_code == 200 and second.data[:2] == b"PK"


def test_acc_5_personal_data_is_read_from_the_columns(app) -> None:
    """Columns marked personal, related rows that name a person, dotted paths and traced properties."""
    from models import Occupancy, ResidentChange, Unit
    from models.duty_security import VisitorLog
    from models.repairs import RepairOrder

    assert personal_columns_of(ResidentChange, ["at", "field", "old_value"]) == ["old_value"]
    assert personal_columns_of(Occupancy, ["unit", "kind", "resident", "resident.gender"]) == \
        ["resident", "resident.gender"]
    assert personal_columns_of(Unit, ["code", "building", "area"]) == []
    assert personal_columns_of(VisitorLog, ["id_masked", "plate"]) == ["id_masked"]
    assert personal_columns_of(RepairOrder, ["fault_text"]) == []
    assert personal_columns_of(Resident, ["current_units"]) == ["current_units"]  # untraced: assumed personal


# --- ACC-6: exact-number search --------------------------------------------------------------
def id_events() -> list[tuple[str, str]]:
    return [tuple(r) for r in db.session.execute(sa.select(SecurityEvent.kind, SecurityEvent.detail).where(
        SecurityEvent.kind.like("id_search%")).order_by(SecurityEvent.id))]


def no_number_logged(number: str) -> None:
    """Neither the security log nor the audit trail holds the number in clear."""
    details = db.session.scalars(sa.select(SecurityEvent.detail)).all()
    trail = db.session.execute(sa.select(AuditEntry.comment, AuditEntry.changes)).all()
    assert not [d for d in details if d and number in d]
    assert not [t for t in trail if number in f"{t[0]} {t[1]}"]


def test_acc_6_masked_only_role_cannot_find_a_resident_by_full_id(db_session, login_as) -> None:
    number = valid_id(21)
    make_resident(name="周五", phone="13700137021", id_number=number)
    db.session.commit()
    clerk_page = login_as("cs_clerk").get(RESIDENTS, query_string={"search": number}).get_data(as_text=True)
    assert "周五" not in clerk_page  # the clerk sees only the mask: no exact-number oracle
    assert "只有可查看完整身份证号码的角色才能按身份证号码搜索" in clerk_page
    assert "周五" in login_as("cs_clerk").get(RESIDENTS, query_string={"search": "周五"}).get_data(as_text=True)
    supervisor_page = login_as("cs_supervisor").get(RESIDENTS, query_string={"search": number}).get_data(
        as_text=True)
    assert "周五" in supervisor_page and mask(number) in supervisor_page
    assert id_events() == [("id_search_refused", f"resident: {mask(number)} (role)"),
                           ("id_search", f"resident: {mask(number)}")]
    no_number_logged(number)


def test_acc_6_id_search_is_throttled_per_person_and_logged_without_the_number(
        db_session, staff_ids, login_as) -> None:
    number = valid_id(22)
    make_resident(name="吴六", phone="13700137022", id_number=number)
    settings.change("security.id_search_per_minute", "2", person(staff_ids, "admin"))
    db.session.commit()
    supervisor = login_as("cs_supervisor")
    pages = [supervisor.get(RESIDENTS, query_string={"search": number}).get_data(as_text=True) for _ in range(3)]
    assert ["吴六" in page for page in pages] == [True, True, False]
    assert "按身份证号码搜索的次数过多" in pages[2]
    # the limit is per person: the manager still searches
    assert "吴六" in login_as("manager").get(RESIDENTS, query_string={"search": number}).get_data(as_text=True)
    assert [kind for kind, _detail in id_events()] == ["id_search", "id_search", "id_search_refused", "id_search"]
    users = db.session.scalars(sa.select(SecurityEvent.username).where(SecurityEvent.kind.like("id_search%"))
                               .order_by(SecurityEvent.id)).all()
    assert users == ["supervisor", "supervisor", "supervisor", "manager"]
    no_number_logged(number)


def test_acc_6_typing_id_numbers_into_the_form_is_throttled_too(db_session, staff_ids, login_as) -> None:
    """"Already on file" answers the exact-number question: a clerk retyping another resident's ID
    number counts against the limit even though each refused save rolls back."""
    from tests.test_bad_input import open_form, submit

    wanted = valid_id(25)
    make_resident(name="王八", id_number=wanted)
    mine = make_resident(name="冯九", phone="13700137026", id_number=valid_id(26))
    settings.change("security.id_search_per_minute", "2", person(staff_ids, "admin"))
    db.session.commit()
    clerk = login_as("cs_clerk")
    url = f"/admin/resident/edit/?id={mine.id}"
    pages = [submit(clerk, url, open_form(clerk, url), id_number=wanted, confirm_password=PASSWORD)  # ACC-8
             .get_data(as_text=True) for _ in range(3)]
    assert ["已存在相同编号的记录" in page for page in pages] == [True, True, False]
    assert "按身份证号码搜索的次数过多" in pages[2]
    assert [kind for kind, _ in id_events()] == ["id_search", "id_search", "id_search_refused"]
    assert {detail for _, detail in id_events()} == {f"resident form: {mask(wanted)}"}
    no_number_logged(wanted)
    db.session.rollback()
    assert db.session.get(Resident, mine.id).id_number == valid_id(26)


def test_acc_6_concurrent_id_searches_never_pass_the_limit(app, db_session, staff_ids) -> None:
    """Eight lookups by one person at once, limit three: exactly three pass (real threads)."""
    settings.change("security.id_search_per_minute", "3", person(staff_ids, "admin"))
    db.session.commit()
    barrier, results, errors = threading.Barrier(8), [], []

    def search() -> None:
        try:
            with app.test_request_context():
                user = db.session.get(Staff, staff_ids["manager"])
                barrier.wait(timeout=30)
                results.append(allow_lookup(user, "resident", valid_id(23)))
                db.session.remove()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=search) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [False] * 5 + [True] * 3
    db.session.rollback()
    assert sorted(kind for kind, _ in id_events()) == ["id_search"] * 3 + ["id_search_refused"] * 5


def test_acc_6_exporting_a_search_by_id_logs_no_number(db_session, login_as) -> None:
    """The export of an ID search is logged by its URL, and the reauth step by its target: masked."""
    number = valid_id(24)
    make_resident(name="郑七", id_number=number)
    db.session.commit()
    supervisor = login_as("cs_supervisor")
    first = supervisor.get("/admin/resident/export/csv/", query_string={"search": number})
    assert first.status_code == 302 and "/reauth" in first.location
    reauthenticate(supervisor)
    response = supervisor.get("/admin/resident/export/csv/", query_string={"search": number})
    assert response.status_code == 200 and "郑七" in response.get_data(as_text=True)
    assert {kind for kind, _ in id_events()} == {"id_search"}
    no_number_logged(number)


# --- ARC-3: copying an archive document needs the manager's approval --------------------------
def approve(access: Any, staff_ids: dict[str, int], transition: str, approver: str) -> None:
    engine.fire(access, transition, db.session.get(Staff, access.created_by_id))
    db.session.commit()
    assert engine.decide(access, person(staff_ids, approver), True) == "approved"
    db.session.commit()


def test_arc_3_viewing_approval_does_not_download_a_scan_copy_approval_does(db_session, staff_ids,
                                                                            login_as) -> None:
    archive = make_archive()
    document = file_document(archive, "owner_id_copy", PDF, "业主身份证复印件.pdf", person(staff_ids, "cs_clerk"))
    db.session.commit()
    url = f"/attachments/{document.attachment_id}"
    approve(request_access(staff_ids, archive), staff_ids, "approve", "cs_supervisor")  # a viewing grant
    engineer = login_as("engineering")
    page = engineer.get(f"/admin/archive/details/?id={archive.id}").get_data(as_text=True)
    assert url not in page and 'id="copy-needs-approval"' in page  # the page opens, the file is not offered
    refused = engineer.get(url)
    body = refused.get_data(as_text=True)
    assert refused.status_code == 403 and "%PDF" not in body
    assert "下载档案文件即复印档案：须提交复印申请并经管理处经理批准。" in body
    clerk = login_as("cs_clerk")  # customer service opens archives, but copies need the manager too
    assert clerk.get(url).status_code == 403
    assert db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "download")).all() == []

    approve(request_access(staff_ids, archive, kind="copy"), staff_ids, "approve_manager", "manager")
    copied = engineer.get(url)
    assert copied.status_code == 200 and copied.data == PDF
    assert url in engineer.get(f"/admin/archive/details/?id={archive.id}").get_data(as_text=True)
    assert login_as("manager").get(url).status_code == 200  # the manager approves, so may copy
    downloads = db.session.execute(sa.select(AuditEntry.actor_id, AuditEntry.record_type, AuditEntry.record_id)
                                   .where(AuditEntry.action == "download").order_by(AuditEntry.seq)).all()
    assert [tuple(d) for d in downloads] == [(staff_ids["engineering"], "archive", archive.id),
                                             (staff_ids["manager"], "archive", archive.id)]


def test_arc_3_copy_request_cannot_be_approved_by_the_supervisor(db_session, staff_ids) -> None:
    archive = make_archive()
    access = request_access(staff_ids, archive, kind="copy")
    with pytest.raises(engine.NotAllowed):
        engine.fire(access, "approve", person(staff_ids, "engineering"))  # supervisor route: refused
