"""The top bar's search box and the unit's page (issue 14): what each role finds, scoped as the
lists are, personal matches in the security log (ACC-7), and the release slip's signed QR link."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa
from flask import Flask

from models import SecurityEvent, Unit, db
from models.base import utcnow
from models.moving import ReleaseSlip
from tests.conftest import signed_in
from tests.helpers import make_complaint, make_occupancy, make_resident, make_unit, make_violation, valid_id
from tests.test_query_counts import counting


def arrange() -> dict[str, object]:
    unit = make_unit(code="A-6-601", floor=6)
    owner = make_resident(name="王业主", phone="13912345678", id_number=valid_id(41))
    make_occupancy(unit, owner)
    make_occupancy(
        unit,
        make_resident(name="李旧租", phone="13700000001", id_number=valid_id(42)),
        kind="tenant",
        start_date=date(2024, 2, 1),
        end_date=date(2025, 1, 31),
    )
    complaint = make_complaint(unit=unit, received_at=utcnow(), occurred_at=utcnow() - timedelta(hours=1))
    violation = make_violation(unit=unit)
    violation.sheet_no = "XTD-2026-0007"  # given when the sheet is written; set here for the search
    slip = ReleaseSlip(unit=unit, carrier="搬家公司", goods="旧沙发", goods_checked=True)
    db.session.add(slip)
    db.session.commit()
    return {
        "unit": unit.id,
        "owner": owner.id,
        "complaint": complaint.number,
        "sheet": violation.sheet_no,
        "slip": slip.id,
        "slip_no": slip.number,
    }


def found(app: Flask, role: str, term: str) -> str:
    response = signed_in(app, role).get("/admin/search/", query_string={"q": term})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def personal_searches() -> list[str]:
    return list(db.session.scalars(sa.select(SecurityEvent.detail).where(SecurityEvent.kind == "personal_search")))


def test_search_finds_a_unit_by_full_or_short_code(app: Flask, db_session, staff_ids) -> None:
    ids = arrange()
    for term in ("A-6-601", "a-6-601", "6-601"):
        page = found(app, "cs_clerk", term)
        assert 'id="search-unit"' in page and f"/admin/unit-page/{ids['unit']}" in page, term


def test_acc_7_search_by_phone_or_name_finds_the_resident_and_is_logged(app: Flask, db_session, staff_ids) -> None:
    ids = arrange()
    assert "王业主" in found(app, "cs_clerk", "13912345678")
    assert "王业主" in found(app, "cs_clerk", "王")
    logged = personal_searches()
    assert len(logged) == 2 and all(str(ids["owner"]) in d for d in logged)
    assert not any("13912345678" in d for d in logged)  # the term itself is never written


def test_search_finds_records_by_number(app: Flask, db_session, staff_ids) -> None:
    ids = arrange()
    assert 'id="search-complaint"' in found(app, "cs_clerk", str(ids["complaint"]))
    assert 'id="search-violation"' in found(app, "cs_clerk", str(ids["sheet"]))
    assert 'id="search-release_slip"' in found(app, "security", str(ids["slip_no"]))
    assert 'id="search-complaint"' in found(app, "cs_clerk", "TS")  # a prefix lists the latest


def test_search_finds_nothing_the_role_may_not_see(app: Flask, db_session, staff_ids) -> None:
    arrange()
    page = found(app, "engineering", "13912345678")  # engineering may not open residents
    assert 'id="search-resident"' not in page and 'id="search-empty"' in page
    assert personal_searches() == []
    assert signed_in(app, "admin").get("/admin/search/?q=6-601").status_code == 403  # no business role


def test_search_odd_input_is_nothing_found_not_an_error(app: Flask, db_session, staff_ids) -> None:
    arrange()
    for term in ("%", "_", "' or 1=1 --", "x" * 500, "\\", "TS%", "ZXSQ-99999999999999999999"):
        assert 'id="search-empty"' in found(app, "cs_clerk", term), term


def test_unit_page_shows_facts_occupants_and_records_linking_each(app: Flask, db_session, staff_ids) -> None:
    ids = arrange()
    page = signed_in(app, "cs_clerk").get(f"/admin/unit-page/{ids['unit']}").get_data(as_text=True)
    assert "A-6-601" in page and "王业主" in page and "李旧租" in page
    assert 'id="unit-complaint"' in page and "/admin/complaint/details/" in page
    assert 'id="unit-violation"' in page and 'id="unit-release_slip"' in page
    assert (
        db.session.scalar(
            sa.select(sa.func.count()).select_from(SecurityEvent).where(SecurityEvent.kind == "confidential_view")
        )
        == 1
    )  # the occupants are personal data (ACC-7)


def test_unit_page_only_sections_the_role_may_see(app: Flask, db_session, staff_ids) -> None:
    ids = arrange()
    page = signed_in(app, "engineering").get(f"/admin/unit-page/{ids['unit']}").get_data(as_text=True)
    assert "A-6-601" in page and 'id="unit-occupants"' not in page and "王业主" not in page
    assert 'id="unit-archive_rental"' not in page  # front desk only
    assert signed_in(app, "admin").get(f"/admin/unit-page/{ids['unit']}").status_code == 403
    assert signed_in(app, "cs_clerk").get("/admin/unit-page/999999").status_code == 404


def test_unit_page_is_linked_from_records_naming_the_unit(app: Flask, db_session, staff_ids) -> None:
    ids = arrange()
    client = signed_in(app, "cs_clerk")
    link = f'href="/admin/unit-page/{ids["unit"]}"'
    assert link in client.get("/admin/complaint/").get_data(as_text=True)
    assert link in client.get("/admin/violation/").get_data(as_text=True)
    export = signed_in(app, "cs_supervisor").get("/admin/complaint/export/csv/")
    assert "unit-page" not in export.get_data(as_text=True)  # exports keep the plain code


def test_unit_page_statement_count_does_not_grow_with_the_units_history(app: Flask, db_session, staff_ids) -> None:
    ids = arrange()
    client = signed_in(app, "manager")
    url = f"/admin/unit-page/{ids['unit']}"
    client.get(url)
    with counting(app) as small:
        client.get(url)
    unit = db.session.get(Unit, ids["unit"])
    for i in range(8):
        make_complaint(unit=unit, received_at=utcnow(), occurred_at=utcnow() - timedelta(hours=1))
        make_violation(unit=unit)
        make_occupancy(
            unit, make_resident(name=f"住户{i}", phone=f"1360000000{i}", id_number=valid_id(60 + i)), kind="family"
        )
    db.session.commit()
    client.get(url)
    with counting(app) as large:
        client.get(url)
    assert len(large) == len(small)


def test_mov_4_slip_qr_token_opens_the_slip_for_a_guard_only(app: Flask, db_session, staff_ids) -> None:
    ids = arrange()
    from views.slip_qr import slip_of, token_for

    with app.test_request_context():
        token = token_for(int(ids["slip"]))
        assert slip_of(token) == ids["slip"] and slip_of(token[:-2] + "xx") is None
        assert str(ids["slip"]) != token and slip_of("1") is None
    guard = signed_in(app, "security")
    response = guard.get(f"/admin/release_slip/scan/{token}")
    assert response.status_code == 302 and f"details/?id={ids['slip']}" in response.headers["Location"]
    assert guard.get(f"/admin/release_slip/scan/{token[:-2]}xx").status_code == 404
    anonymous = app.test_client().get(f"/admin/release_slip/scan/{token}")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert str(ids["slip_no"]) not in anonymous.get_data(as_text=True)
