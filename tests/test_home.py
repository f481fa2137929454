"""Home page per role (issue 14): each count equals the list it links to, each role sees only its
work's cards, the statements run do not grow with the records, and the menus per role."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from models import Estate, db
from models.base import utcnow
from models.moving import ReleaseSlip
from models.renovation import Renovation
from models.renovation_parts import RenovationInspection
from tests.conftest import ROLE_USERS, signed_in
from tests.helpers import make_building, make_complaint, make_estate, make_help_request, make_renovation, make_unit
from tests.test_query_counts import counting

CARD = re.compile(r'<a class="home-card[^"]*" id="home-card-([\w-]+)"\s+href="([^"]+)" data-count="(\d+)"')
LIST_COUNT = re.compile(r'class="nav-link active"[^>]*>[^<(]*\((\d+)\)')
ROLES = list(ROLE_USERS)


def cards(client: FlaskClient) -> dict[str, tuple[str, int]]:
    response = client.get("/admin/")
    assert response.status_code == 200
    return {key: (unescape(href), int(n)) for key, href, n in CARD.findall(response.get_data(as_text=True))}


def list_count(client: FlaskClient, url: str) -> int:
    page = client.get(url).get_data(as_text=True)
    found = LIST_COUNT.search(page)
    if found:
        return int(found.group(1))
    # a list without the "(n)" tab (the security log): its rows, one buttons cell each
    return page.split("model-list")[1].split("</thead>")[1].split("</table>")[0].count("list-buttons-column")


def arrange(n: int, building_code: str = "A") -> None:
    """``n`` of each counted kind today, plus one of each that must not be counted."""
    now = utcnow()
    estate = db.session.scalar(sa.select(Estate).limit(1)) or make_estate()
    building = make_building(estate, code=building_code)
    units = [make_unit(building, code=f"{building_code}-{3 + i % 9}-{300 + i}", floor=3 + i % 9) for i in range(n + 1)]
    for i, unit in enumerate(units):
        at = now if i < n else now - timedelta(days=3)
        make_complaint(unit=unit, received_at=at, occurred_at=at - timedelta(hours=1))
        make_help_request(unit_id=unit.id, received_at=at)
        db.session.add(ReleaseSlip(unit=unit, carrier="搬家公司", goods="旧沙发", goods_checked=True, issued_at=at))
    db.session.flush()
    rens = [make_renovation(unit=unit) for unit in units]
    db.session.flush()
    ids = [r.id for r in rens]
    # Arranged in SQL: the engine's walk is proven in tests/test_renovation.py.
    db.session.execute(sa.update(Renovation).where(Renovation.id.in_(ids[:n])).values(state="permitted"))
    db.session.execute(sa.update(Renovation).where(Renovation.id == ids[n]).values(state="approved"))
    db.session.add(RenovationInspection(renovation_id=ids[0], kind="patrol", result="ok", findings="正常", at=now))
    db.session.commit()


def test_home_counts_equal_the_lists_they_link_to_for_every_role(app: Flask, db_session, staff_ids) -> None:
    arrange(3)
    for role in ROLES:
        client = signed_in(app, role)
        shown = cards(client)
        for key, (url, n) in shown.items():
            if "preset=" in url:
                assert list_count(client, url) == n, (role, key, url)
            elif "/overdue/" in url:
                anchor = url.split("#")[1]
                page = client.get(url.split("#")[0]).get_data(as_text=True)
                assert re.search(rf'id="{anchor}">{n}<', page), (role, key)


def test_home_counts_are_todays_records_within_the_role(app: Flask, db_session, staff_ids) -> None:
    arrange(3)
    clerk = cards(signed_in(app, "cs_clerk"))
    assert clerk["complaint-today"][1] == 3 and clerk["help_request-today"][1] == 3
    assert "release_slip-today" not in clerk and "renovation-fees_due" not in clerk
    guard = cards(signed_in(app, "security"))
    assert guard["release_slip-today"][1] == 3
    assert guard["renovation-unpatrolled"][1] == 2  # 3 under works, one patrolled today
    assert "complaint-today" not in guard
    finance = cards(signed_in(app, "finance"))
    assert finance["renovation-fees_due"][1] == 1
    assert set(finance) - {"approvals", "due-today"} == {"renovation-fees_due"} | {
        k for k in finance if k.startswith("overdue-")
    }
    engineer = cards(signed_in(app, "engineering"))
    assert "renovation-unpatrolled" in engineer and "renovation-fees_due" not in engineer


def test_home_admin_sees_accounts_security_log_and_audit_checkpoint(app: Flask, db_session, staff_ids) -> None:
    client = signed_in(app, "admin")
    shown = cards(client)
    assert shown["accounts"][1] == len(ROLE_USERS)
    assert "security_event-failed_today" in shown and "checkpoint" in shown
    assert not any(k.startswith(("complaint", "overdue", "release_slip")) for k in shown)
    page = client.get("/admin/").get_data(as_text=True)
    assert 'id="home-admin-note"' in page
    manager = cards(signed_in(app, "manager"))
    assert "accounts" not in manager and "checkpoint" not in manager


def test_home_trend_for_the_front_desk_only(app: Flask, db_session, staff_ids) -> None:
    arrange(2)
    page = signed_in(app, "cs_supervisor").get("/admin/").get_data(as_text=True)
    assert 'id="home-trend"' in page and "<svg" in page
    assert 'id="home-trend"' not in signed_in(app, "security").get("/admin/").get_data(as_text=True)


@pytest.mark.parametrize("role", ["manager", "cs_clerk", "security", "finance", "engineering", "admin"])
def test_home_statement_count_does_not_grow_with_records(app: Flask, db_session, staff_ids, role: str) -> None:
    arrange(2, "A")
    client = signed_in(app, role)
    client.get("/admin/")
    with counting(app) as small:
        assert client.get("/admin/").status_code == 200
    with app.test_request_context():
        arrange(25, "B")
    client.get("/admin/")
    with counting(app) as large:
        assert client.get("/admin/").status_code == 200
    assert len(large) == len(small), (role, len(small), len(large))


def menu_entries(client: FlaskClient) -> list[str]:
    page = client.get("/admin/").get_data(as_text=True)
    nav = page.split('id="admin-navbar-collapse"')[1].split("</nav>")[0]
    return re.findall(r'class="(?:dropdown-item|nav-link)[^"]*" href="(/admin/[^"#]*)"', nav)


def test_menus_per_role_guard_engineer_cashier_patrol_see_far_fewer(app: Flask, staff_ids) -> None:
    clerk = menu_entries(signed_in(app, "cs_clerk"))
    for role in ("security", "engineering", "finance", "management_dept"):
        entries = menu_entries(signed_in(app, role))
        assert len(entries) * 2 <= len(clerk), (role, len(entries), len(clerk))
    guard = menu_entries(signed_in(app, "security"))
    assert "/admin/release_slip/" in guard and "/admin/complaint/" not in guard


def test_menus_hide_but_the_permission_matrix_still_decides(app: Flask, staff_ids) -> None:
    guard = signed_in(app, "security")
    assert guard.get("/admin/complaint/").status_code == 200  # hidden from the menu, still readable
    assert guard.get("/admin/staff/").status_code == 403  # never was
