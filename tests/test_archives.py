"""Resident archives (REGULATIONS §3, ARC-1..4, ARC-6): one archive per unit, the checklist backed by
scans, confidential access denied by default on every path, closing and the census."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask_babel import force_locale

from models import AuditEntry, Staff, db
from models.archives import (
    Archive,
    ArchiveAccess,
    archive_for_unit,
    checklist_problems,
    file_document,
    may_open,
    ordered,
)
from models.attachment import store
from models.base import utcnow
from models.validators import DomainError
from tests.conftest import csrf_token
from tests.helpers import make_building, make_estate, make_unit
from workflow import engine
from workflow.engine import MissingFields, NotAllowed

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def person(staff_ids: dict[str, int], role: str) -> Staff:
    return db.session.get(Staff, staff_ids[role])


def refusal(call: Any) -> str:
    with pytest.raises((NotAllowed, MissingFields, DomainError)) as caught:
        call()
    with force_locale("en"):
        return str(getattr(caught.value, "message", caught.value))


def make_archive(**unit: Any) -> Archive:
    archive = archive_for_unit(make_unit(**unit).id)
    db.session.commit()
    return archive


def request_access(staff_ids: dict[str, int], archive: Archive, role: str = "engineering",
                   **values: Any) -> ArchiveAccess:
    values.setdefault("companion_id", staff_ids["cs_clerk"])  # ARC-11: accompanied by customer service
    access = ArchiveAccess(archive=archive, purpose="查管线改造图纸", documents_wanted="装修图纸",
                           accompanied_by="客服 李四", created_by_id=staff_ids[role], **values)
    db.session.add(access)
    db.session.commit()
    return access


# --- ARC-1 -----------------------------------------------------------------------------------------
def test_arc_1_one_archive_per_unit(db_session) -> None:
    unit = make_unit()
    first = archive_for_unit(unit.id)
    assert archive_for_unit(unit.id) is first  # get or create
    db.session.commit()
    db.session.add(Archive(unit_id=unit.id))
    with pytest.raises(sa.exc.IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_arc_1_archives_ordered_by_building_floor_room(db_session) -> None:
    estate = make_estate()
    b2, b1 = make_building(estate, code="B"), make_building(estate, code="A")
    for building, floor, code in [(b2, 1, "B-1-101"), (b1, 3, "A-3-301"), (b1, 1, "A-1-102"), (b1, 1, "A-1-101")]:
        archive_for_unit(make_unit(building=building, floor=floor, code=code).id)
    db.session.commit()
    codes = [a.unit.code for a in ordered(db.session.query(Archive))]
    assert codes == ["A-1-101", "A-1-102", "A-3-301", "B-1-101"]


def test_arc_1_second_archive_for_a_unit_refused_on_the_form(db_session, login_as) -> None:
    archive = make_archive()
    clerk = login_as("cs_clerk")
    body = clerk.post("/admin/archive/new/", data={"csrf_token": csrf_token(clerk), "unit": archive.unit_id},
                      follow_redirects=True).get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Archive)) == 1
    assert "一户一档" in body or "already has its archive" in body


# --- ARC-2 -----------------------------------------------------------------------------------------
def test_arc_2_tick_needs_a_scan_and_missing_documents_are_listed(db_session, staff_ids) -> None:
    archive = make_archive()
    clerk = person(staff_ids, "cs_clerk")
    assert "scan" in refusal(lambda: file_document(archive, "covenant", None, "", clerk))
    file_document(archive, "covenant", PDF, "公约.pdf", clerk)
    db.session.commit()
    assert "Owners' covenant" not in [str(m) for m in archive.missing_documents()]
    with force_locale("en"):
        assert "Key receipt" in archive.missing_documents()
    assert checklist_problems(archive) == []


def test_arc_2_a_scan_without_its_tick_is_flagged(db_session, staff_ids) -> None:
    archive = make_archive()
    store(archive, "scan", PDF, "未登记.pdf", person(staff_ids, "cs_clerk"))
    db.session.commit()
    with force_locale("en"):
        assert any("Scan without a tick" in p for p in checklist_problems(archive))


def test_arc_2_http_tick_without_upload_refused_with_upload_filed(db_session, login_as) -> None:
    archive = make_archive()
    clerk = login_as("cs_clerk")
    body = clerk.post("/admin/archive/document/", data={"csrf_token": csrf_token(clerk), "id": archive.id,
                                                         "doc_type": "key_receipt"},
                      follow_redirects=True).get_data(as_text=True)
    assert "扫描件" in body or "scan" in body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Archive.documents.property.mapper)) == 0
    clerk.post("/admin/archive/document/", data={"csrf_token": csrf_token(clerk), "id": archive.id,
                                                  "doc_type": "key_receipt",
                                                  "file": (io.BytesIO(PDF), "钥匙签收.pdf")},
               content_type="multipart/form-data")
    db.session.rollback()
    assert db.session.get(Archive, archive.id).held_types() == {"key_receipt"}
    page = clerk.get(f"/admin/archive/details/?id={archive.id}").get_data(as_text=True)
    assert 'id="missing-documents"' in page and 'id="renovation-documents"' in page


# --- ARC-3 -----------------------------------------------------------------------------------------
def test_arc_3_customer_service_opens_others_are_denied_by_default(db_session, staff_ids, login_as) -> None:
    archive = make_archive()
    assert may_open(person(staff_ids, "cs_clerk"), archive.id)
    assert not may_open(person(staff_ids, "engineering"), archive.id)
    engineer = login_as("engineering")
    assert engineer.get(f"/admin/archive/details/?id={archive.id}").status_code in (302, 404)
    assert f"?id={archive.id}" not in engineer.get("/admin/archive/").get_data(as_text=True)
    assert f"?id={archive.id}" not in engineer.get(f"/admin/archive/?search={archive.unit.code}").get_data(
        as_text=True)
    assert archive.unit.code not in engineer.get("/admin/archive/export/csv/").get_data(as_text=True)
    clerk_page = login_as("cs_clerk").get(f"/admin/archive/details/?id={archive.id}")
    assert clerk_page.status_code == 200


def test_arc_3_supervisor_approval_opens_until_end_of_day_and_views_are_logged(db_session, staff_ids,
                                                                              login_as) -> None:
    archive = make_archive()
    access = request_access(staff_ids, archive)
    engineer = person(staff_ids, "engineering")
    assert "supervisor" in refusal(lambda: engine.fire(access, "approve_manager", engineer))
    engine.fire(access, "approve", engineer)
    db.session.commit()
    assert not may_open(engineer, archive.id)  # waiting for the supervisor
    assert engine.decide(access, person(staff_ids, "cs_supervisor"), True) == "approved"
    db.session.commit()
    assert access.state == "granted" and access.expires_at > utcnow()
    assert access.expires_at - utcnow() < timedelta(days=1)
    assert may_open(engineer, archive.id)
    client = login_as("engineering")
    assert client.get(f"/admin/archive/details/?id={archive.id}").status_code == 200
    logged = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "confidential_view",
                                                           AuditEntry.record_type == "archive")).all()
    assert logged and person(staff_ids, "cs_clerk").full_name in (logged[-1].comment or "")  # ARC-11
    # expired: the approval no longer opens the archive
    access.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert not may_open(engineer, archive.id)
    assert client.get(f"/admin/archive/details/?id={archive.id}").status_code in (302, 404)


def test_arc_3_outsider_needs_manager_and_proof_document(db_session, staff_ids) -> None:
    archive = make_archive()
    access = request_access(staff_ids, archive, role="cs_clerk", outsider=True, outsider_name="派出所 王警官")
    clerk = person(staff_ids, "cs_clerk")
    assert "manager" in refusal(lambda: engine.fire(access, "approve", clerk))
    assert "proof" in refusal(lambda: engine.fire(access, "approve_manager", clerk))
    store(access, "scan", PDF, "证明.pdf", clerk)
    db.session.commit()
    engine.fire(access, "approve_manager", clerk)
    db.session.commit()
    with pytest.raises(NotAllowed):
        engine.decide(access, person(staff_ids, "cs_supervisor"), True)
    db.session.rollback()
    assert engine.decide(access, person(staff_ids, "manager"), True) == "approved"


def test_arc_3_export_needs_a_manager_approval_even_for_customer_service(db_session, staff_ids, login_as) -> None:
    archive = make_archive()
    assert may_open(person(staff_ids, "cs_clerk"), archive.id, "view")
    assert not may_open(person(staff_ids, "cs_clerk"), archive.id, "export")
    access = request_access(staff_ids, archive, role="cs_clerk", kind="export")
    assert "manager" in refusal(lambda: engine.fire(access, "approve", person(staff_ids, "cs_clerk")))
    engine.fire(access, "approve_manager", person(staff_ids, "cs_clerk"))
    db.session.commit()
    engine.decide(access, person(staff_ids, "manager"), True)
    db.session.commit()
    assert may_open(person(staff_ids, "cs_clerk"), archive.id, "export")


def test_arc_3_engineer_may_not_approve_or_use_another_persons_approval(db_session, staff_ids) -> None:
    archive = make_archive()
    access = request_access(staff_ids, archive, role="engineering")
    engine.fire(access, "approve", person(staff_ids, "engineering"))
    db.session.commit()
    with pytest.raises(NotAllowed):
        engine.decide(access, person(staff_ids, "engineering"), True)
    db.session.rollback()
    engine.decide(access, person(staff_ids, "cs_supervisor"), True)
    db.session.commit()
    assert not may_open(person(staff_ids, "security"), archive.id)  # the approval is personal


def test_arc_3_archives_are_picked_by_unit_code_and_the_register_shows_requesters_their_own(
        db_session, staff_ids, login_as) -> None:
    archive = make_archive(code="A-03-0301", floor=3)
    other = archive_for_unit(make_unit(building=archive.unit.building, code="A-05-0502", floor=5).id)
    db.session.commit()
    engineer = login_as("engineering")
    found = engineer.get("/admin/archive_access/ajax/lookup/?name=archive&query=0301").get_json()
    assert [row[1] for row in found] == ["A-03-0301"]  # named by what the desk knows, not by id
    assert engineer.get("/admin/archive_event/ajax/lookup/?name=archive&query=A").status_code == 403
    mine = request_access(staff_ids, archive, role="engineering")
    theirs = request_access(staff_ids, other, role="security")
    page = engineer.get("/admin/archive_access/").get_data(as_text=True)
    assert f"id={mine.id}" in page and f"id={theirs.id}" not in page
    assert engineer.get(f"/admin/archive_access/details/?id={theirs.id}").status_code in (302, 404)
    register = login_as("cs_supervisor").get("/admin/archive_access/").get_data(as_text=True)
    assert f"id={mine.id}" in register and f"id={theirs.id}" in register
    clerk = login_as("cs_clerk")
    events = clerk.get("/admin/archive_event/ajax/lookup/?name=archive&query=A-0").get_json()
    assert [row[1] for row in events] == ["A-03-0301", "A-05-0502"]  # building, floor, room order


# --- ARC-4 -----------------------------------------------------------------------------------------
def test_arc_4_closed_archives_kept_apart_never_deleted(db_session, staff_ids, login_as) -> None:
    archive = make_archive()
    engine.fire(archive, "close", person(staff_ids, "cs_clerk"), comment="业主已迁出")
    db.session.commit()
    assert archive.state == "closed"
    clerk = login_as("cs_clerk")
    closed = clerk.get("/admin/archive/?flt0_0=closed").get_data(as_text=True)
    assert archive.unit.code in closed
    assert clerk.post("/admin/archive/delete/", data={"csrf_token": csrf_token(clerk), "id": archive.id}
                      ).status_code in (302, 403)
    assert db.session.get(Archive, archive.id) is not None


# --- ARC-6 -----------------------------------------------------------------------------------------
def test_arc_6_archives_not_confirmed_for_six_months_are_stale(db_session, staff_ids, login_as) -> None:
    building = make_building()
    fresh_one, old = make_archive(code="A-1-101", building=building), make_archive(code="A-1-102", building=building)
    engine.fire(fresh_one, "confirm_data", person(staff_ids, "cs_clerk"))
    db.session.commit()
    assert not fresh_one.is_stale() and old.is_stale()
    assert fresh_one.is_stale(utcnow() + timedelta(days=200))
    page = login_as("cs_clerk").get("/admin/archive/?flt0_1=1").get_data(as_text=True)
    assert "A-1-102" in page and "A-1-101" not in page


def permission_rows(unit: Any, staff_ids: dict[str, int]) -> dict[str, int]:
    """One row per archive screen for the permission matrix (tests/test_permissions.py seed); every
    role outside customer service holds an approved viewing request, so the matrix may open it (ARC-3)."""
    from datetime import date
    from decimal import Decimal

    from models.archive_records import ArchiveEvent, ArrearsCase, RentalRegistration, draw_spot_check

    archive = archive_for_unit(unit.id)
    db.session.flush()
    first, own = None, {}
    for role in ("engineering", "security", "finance", "management_dept"):
        access = request_access(staff_ids, archive, role=role)
        engine.fire(access, "approve", person(staff_ids, role))
        engine.decide(access, person(staff_ids, "cs_supervisor"), True)
        first = first or access.id
        own[f"archive_access@{role}"] = access.id  # outside customer service one sees one's own requests
    event = ArchiveEvent(archive=archive, kind="contract", title="车位租赁合同", occurred_on=date(2026, 11, 1))
    rental = RentalRegistration(archive=archive, kind="rental", tenant_name="李四", use="居住",
                                lease_from=date(2026, 1, 1), lease_to=date(2026, 12, 31), contact="13900139000")
    arrears = ArrearsCase(archive=archive, amount=Decimal("300.00"), owed_since=date(2026, 9, 1))
    db.session.add_all([event, rental, arrears])
    check = draw_spot_check(person(staff_ids, "cs_supervisor"))
    db.session.flush()
    return {"archive": archive.id, "archive_access": first, "archive_event": event.id, **own,
            "archive_rental": rental.id, "archive_arrears": arrears.id, "archive_spot_check": check.items[0].id}


PERMISSION_CREATE = {
    "archive": lambda ids: {"unit": ids["spare_unit"], "note": "新建档案"},
    "archive_access": lambda ids: {"archive": ids["archive"], "kind": "view", "purpose": "核对图纸",
                                   "documents_wanted": "装修图纸", "companion": ids["staff"]},  # ARC-11
    "archive_event": lambda ids: {"archive": ids["archive"], "kind": "major_accident", "title": "水管爆裂",
                                  "description": "", "occurred_on": "2026-11-01"},
    "archive_rental": lambda ids: {"archive": ids["archive"], "kind": "commercial", "tenant_name": "王五",
                                   "company": "某公司", "use": "办公", "lease_from": "2026-01-01",
                                   "lease_to": "2026-12-31", "contact": "13700137000"},
    "archive_arrears": lambda ids: {"archive": ids["archive"], "fee": "water", "amount": "88.00",
                                    "owed_since": "2026-10-01"},
}
PERMISSION_EDIT = {
    "archive": lambda ids: {"unit": ids["unit"], "note": "已核对"},
    "archive_event": lambda ids: {"archive": ids["archive"], "kind": "contract", "title": "车位租赁合同（续签）",
                                  "description": "", "occurred_on": "2026-11-01"},
    "archive_rental": lambda ids: {"archive": ids["archive"], "kind": "rental", "tenant_name": "李四",
                                   "company": "", "use": "居住", "lease_from": "2026-01-01",
                                   "lease_to": "2027-06-30", "contact": "13900139000"},
    "archive_arrears": lambda ids: {"archive": ids["archive"], "fee": "management", "amount": "350.00",
                                    "owed_since": "2026-09-01"},
}


def grow_archives(unit: Any, owner: Any, since: Any, i: int) -> list[tuple[object, str]]:
    """Query-count growth (tests/test_query_counts.py): per cell an archive with a document row, an
    access request, an event, a rental, an arrears case with a follow-up and a sampled spot-check item."""
    from decimal import Decimal

    from models.archive_records import (
        ArchiveEvent,
        ArrearsCase,
        ArrearsFollowUp,
        RentalRegistration,
        SpotCheck,
        SpotCheckItem,
    )

    archive = db.session.scalar(sa.select(Archive).where(Archive.unit == unit))  # ARC-13: came with the unit
    archive.confirmed_at = None
    access = ArchiveAccess(archive=archive, purpose=f"查阅 {i}", documents_wanted="图纸", accompanied_by=f"客服{i}")
    event = ArchiveEvent(archive=archive, kind="contract", title=f"合同 {i}", occurred_on=since)
    rental = RentalRegistration(archive=archive, kind="rental", tenant_name=f"租户{i}", use="居住",
                                lease_from=since, lease_to=since + timedelta(days=365), contact=f"139{i:08d}")
    case = ArrearsCase(archive=archive, amount=Decimal("100.00") + i, owed_since=since)
    case.follow_ups.append(ArrearsFollowUp(at=utcnow(), note=f"催缴 {i}"))
    check = SpotCheck(population=i + 1, percent=5)
    check.items.append(SpotCheckItem(archive=archive))
    db.session.add_all([archive, access, event, rental, case, check])
    return [(archive, ("open", "closed")[i % 2]), (access, ("requested", "granted")[i % 2]),
            (event, ("draft", "filed")[i % 2]), (case, ("open", "settled")[i % 2])]


QUERY_COUNT_ENDPOINTS = ("archive", "archive_access", "archive_event", "archive_rental", "archive_arrears",
                         "archive_spot_check")
