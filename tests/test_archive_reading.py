"""ARC-11 accompanied reading, ARC-12 documents newest first with their dates, ARC-13 every unit has
its archive (form, import, seed, migration backfill, `flask archives check`)."""

from __future__ import annotations

import io
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask_babel import force_locale

from models import AuditEntry, Estate, Staff, Unit, db
from models.archive_coverage import coverage
from models.archives import Archive, ArchiveAccess, archive_for_unit, file_document
from models.base import utcnow
from models.validators import DomainError
from tests import databases
from tests.conftest import csrf_token
from tests.helpers import make_building, make_estate, make_unit
from workflow import engine
from workflow.engine import NotAllowed

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def person(staff_ids: dict[str, int], role: str) -> Staff:
    return db.session.get(Staff, staff_ids[role])


def english(exc: Any) -> str:
    with force_locale("en"):
        return str(getattr(exc, "message", exc))


def archive() -> Archive:
    found = archive_for_unit(make_unit().id)
    db.session.commit()
    return found


def units_and_archives() -> tuple[int, int]:
    count = sa.func.count()
    return (
        db.session.scalar(sa.select(count).select_from(Unit)),
        db.session.scalar(sa.select(count).select_from(Archive)),
    )


# --- ARC-11 ----------------------------------------------------------------------------------------
def test_arc_11_request_from_outside_customer_service_needs_a_companion_on_the_form(
    db_session, staff_ids, login_as
) -> None:
    target = archive()
    engineer = login_as("engineering")
    data = {
        "csrf_token": csrf_token(engineer),
        "archive": target.id,
        "kind": "view",
        "purpose": "查管线改造图纸",
        "documents_wanted": "装修图纸",
    }
    refused = engineer.post("/admin/archive_access/new/", data=data).get_data(as_text=True)
    assert "陪同" in refused
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ArchiveAccess)) == 0
    not_service = engineer.post("/admin/archive_access/new/", data=data | {"companion": staff_ids["security"]})
    assert not_service.status_code == 200  # the select offers customer service only
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ArchiveAccess)) == 0
    form = engineer.get("/admin/archive_access/new/").get_data(as_text=True)
    assert person(staff_ids, "cs_clerk").full_name in form and person(staff_ids, "security").full_name not in form
    ok = engineer.post("/admin/archive_access/new/", data=data | {"companion": staff_ids["cs_clerk"]})
    assert ok.status_code == 302
    assert db.session.scalar(sa.select(ArchiveAccess.companion_id)) == staff_ids["cs_clerk"]


def test_arc_11_submitting_without_a_companion_is_refused_customer_service_reads_alone(db_session, staff_ids) -> None:
    target = archive()
    access = ArchiveAccess(archive=target, purpose="核对", documents_wanted="图纸", created_by_id=staff_ids["finance"])
    db.session.add(access)
    db.session.commit()
    with pytest.raises(NotAllowed) as caught:
        engine.fire(access, "approve", person(staff_ids, "finance"))
    assert "accompan" in english(caught.value)
    db.session.rollback()
    access = db.session.get(ArchiveAccess, access.id)
    access.companion_id = staff_ids["security"]  # not customer service
    db.session.commit()
    with pytest.raises(NotAllowed):
        engine.fire(access, "approve", person(staff_ids, "finance"))
    db.session.rollback()
    access = db.session.get(ArchiveAccess, access.id)
    access.companion_id = staff_ids["cs_clerk"]
    db.session.commit()
    engine.fire(access, "approve", person(staff_ids, "finance"))
    db.session.commit()
    assert access.pending_transition == "approve"
    own = ArchiveAccess(archive=target, purpose="核对", documents_wanted="图纸", kind="view")
    own.check_request(person(staff_ids, "cs_clerk"))  # customer service needs no companion


def test_arc_11_reading_recorded_with_the_companion_who_confirms_on_their_own_account(
    db_session, staff_ids, login_as
) -> None:
    from workflow.inbox import my_work

    target = archive()
    access = ArchiveAccess(
        archive=target,
        purpose="查图纸",
        documents_wanted="图纸",
        created_by_id=staff_ids["engineering"],
        companion_id=staff_ids["cs_clerk"],
    )
    db.session.add(access)
    db.session.commit()
    engine.fire(access, "approve", person(staff_ids, "engineering"))
    engine.decide(access, person(staff_ids, "cs_supervisor"), True)
    db.session.commit()
    assert login_as("engineering").get(f"/admin/archive/details/?id={target.id}").status_code == 200
    logged = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "confidential_view")).all()
    assert person(staff_ids, "cs_clerk").full_name in (logged[-1].comment or "")
    for other in ("cs_supervisor", "engineering"):  # nobody confirms for the companion
        with pytest.raises(NotAllowed):
            engine.fire(access, "confirm_reading", person(staff_ids, other))
        db.session.rollback()
    access = db.session.get(ArchiveAccess, access.id)
    assert any(
        i.record.id == access.id for i in my_work(person(staff_ids, "cs_clerk")) if isinstance(i.record, ArchiveAccess)
    )
    assert not any(isinstance(i.record, ArchiveAccess) for i in my_work(person(staff_ids, "cs_supervisor")))
    engine.fire(access, "confirm_reading", person(staff_ids, "cs_clerk"))
    db.session.commit()
    assert access.reading_confirmed_at is not None
    with pytest.raises(NotAllowed):
        engine.fire(access, "confirm_reading", person(staff_ids, "cs_clerk"))
    db.session.rollback()


# --- ARC-12 ----------------------------------------------------------------------------------------
def test_arc_12_documents_listed_newest_first_each_with_its_date(db_session, staff_ids, login_as) -> None:
    target = archive()
    clerk = person(staff_ids, "cs_clerk")
    today = utcnow().date()
    file_document(target, "covenant", PDF, "公约.pdf", clerk, date(2019, 5, 1))
    file_document(target, "key_receipt", PDF, "钥匙.pdf", clerk)  # no date of its own: the filing day
    file_document(target, "move_in_notice", PDF, "通知.pdf", clerk, date(2021, 3, 8))
    db.session.commit()
    assert [d.doc_type for d in target.documents_newest_first()] == ["key_receipt", "move_in_notice", "covenant"]
    with pytest.raises(DomainError):
        file_document(target, "fire_letter", PDF, "消防.pdf", clerk, today + timedelta(days=30))
    db.session.rollback()
    page = login_as("cs_clerk").get(f"/admin/archive/details/?id={target.id}").get_data(as_text=True)
    section = page.split('id="documents-newest-first"')[1].split("</table>")[0]
    assert section.index("2021-03-08") < section.index("2019-05-01")
    positions = [section.index(f'data-doc="{d}"') for d in ("key_receipt", "move_in_notice", "covenant")]
    assert positions == sorted(positions)


def test_arc_12_filing_over_http_takes_the_documents_own_date(db_session, login_as) -> None:
    target = archive()
    clerk = login_as("cs_clerk")
    for doc, when in (("covenant", "2018-01-02"), ("key_receipt", "2020-06-30"), ("fire_letter", "bad")):
        clerk.post(
            "/admin/archive/document/",
            data={
                "csrf_token": csrf_token(clerk),
                "id": target.id,
                "doc_type": doc,
                "document_date": when,
                "file": (io.BytesIO(PDF), f"{doc}.pdf"),
            },
            content_type="multipart/form-data",
        )
    db.session.expire_all()
    stored = db.session.get(Archive, target.id).documents_newest_first()
    assert [(d.doc_type, d.document_date) for d in stored] == [
        ("key_receipt", date(2020, 6, 30)),
        ("covenant", date(2018, 1, 2)),
    ]  # an unreadable date: refused


# --- ARC-13 ----------------------------------------------------------------------------------------
def test_arc_13_a_unit_created_anywhere_brings_its_archive_in_the_same_transaction(db_session, login_as) -> None:
    building = make_building()
    db.session.commit()
    make_unit(building, code="A-1-101", floor=1)
    db.session.rollback()  # the unit goes, and so does its archive
    assert units_and_archives() == (0, 0)
    make_unit(building, code="A-1-101", floor=1)
    db.session.commit()
    clerk = login_as("cs_clerk")
    response = clerk.post(
        "/admin/unit/new/",
        data={
            "csrf_token": csrf_token(clerk),
            "building": building.id,
            "code": "A-2-201",
            "floor": "2",
            "area": "80",
            "use": "residential",
        },
    )
    assert response.status_code == 302
    assert units_and_archives() == (2, 2)
    unit = db.session.scalar(sa.select(Unit).where(Unit.code == "A-2-201"))
    assert db.session.scalar(sa.select(Archive.state).where(Archive.unit_id == unit.id)) == "open"


def test_arc_13_imported_units_each_get_their_archive(db_session) -> None:
    from seed.importer import run_import

    make_building(make_estate())
    db.session.commit()
    text = "小区编码,房号,建筑面积,用途\n" + "".join(f"demo,A-3-30{i},88,住宅\n" for i in range(1, 6))
    dry = run_import(db_session, text.encode("utf-8"), "u.csv", "units", "dry_run")
    assert dry.valid == 5 and units_and_archives() == (0, 0)
    report = run_import(db_session, text.encode("utf-8"), "u.csv", "units", "all_or_nothing")
    assert report.written
    assert units_and_archives() == (5, 5)
    assert all(c.ok for c in coverage())


def test_arc_13_check_command_finds_a_unit_without_archive_and_repairs_it(app, db_session) -> None:
    building = make_building()
    make_unit(building, code="A-1-101", floor=1)
    db.session.commit()
    db.session.execute(
        sa.text(  # a unit written around the ORM (as before this rule): no archive
            "INSERT INTO unit (building_id, code, floor, use, created_at, updated_at, version) "
            "VALUES (:b, 'A-1-102', 1, 'residential', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"
        ),
        {"b": building.id},
    )
    db.session.commit()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["archives", "check"])
    assert result.exit_code == 1 and "units 2, archives 1" in result.output
    result = runner.invoke(args=["archives", "check", "--repair"])
    assert result.exit_code == 0 and "archives created: 1" in result.output
    db.session.expire_all()
    assert units_and_archives() == (2, 2)


def test_arc_13_the_demo_seed_gives_every_unit_its_archive(runner, db_session) -> None:
    assert runner.invoke(args=["seed", "--demo"]).exit_code == 0
    assert runner.invoke(args=["archives", "check"]).exit_code == 0
    units, archives = units_and_archives()
    assert units > 0 and units == archives
    estates = db.session.scalar(sa.select(sa.func.count()).select_from(Estate))
    assert len(coverage()) == estates and all(c.ok for c in coverage())
    filed = db.session.scalar(sa.select(sa.func.count()).select_from(Archive.documents.property.mapper))
    assert filed > 0  # the demo archives still get their scans (the seed no longer stops at "any archive")


def test_arc_13_migration_backfills_archives_of_existing_units(empty_database) -> None:
    from flask_migrate import upgrade

    from app import create_app

    url = empty_database("arc13")
    app = create_app({**databases.TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(directory=str(databases.ROOT / "migrations"), revision="e12f00000006")
        stamp = "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1"
        db.session.execute(
            sa.text(
                "INSERT INTO estate (code, name, kind, created_at, updated_at, version) "
                f"VALUES ('old', '老小区', 'residential', {stamp})"
            )
        )
        db.session.execute(
            sa.text(
                "INSERT INTO building (estate_id, code, created_at, updated_at, version) "
                f"SELECT id, 'A', {stamp} FROM estate"
            )
        )
        for n in range(1, 4):
            db.session.execute(
                sa.text(
                    "INSERT INTO unit (building_id, code, floor, use, created_at, updated_at, "
                    f"version) SELECT id, 'A-1-10{n}', 1, 'residential', {stamp} FROM building"
                )
            )
        db.session.commit()
        db.session.remove()
        upgrade(directory=str(databases.ROOT / "migrations"))
        assert units_and_archives() == (3, 3)
        assert set(db.session.scalars(sa.select(Archive.state))) == {"open"}
        db.session.remove()
        db.engine.dispose()
