"""No N+1 on any admin list page: the SQL statement count of a list (and of a resident's details)
must not grow with the number of rows shown.

Each test fills the registry and the staff tables with 5 "cells" of related rows, counts the
statements one GET of the page executes (after a warm-up GET), grows the data to 40 cells and
counts again; the two counts must be equal for every role that may open the page.

The requests run outside any app context on purpose: a request inside the test's app context
would share its SQLAlchemy session and identity map, and lazy loads would then go unseen.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from models import (
    Building,
    Department,
    Estate,
    KeyCustody,
    Occupancy,
    Resident,
    SecurityEvent,
    Staff,
    Unit,
    VipCommunication,
    VipProfile,
    db,
)
from models.visits import Visit
from security import accounts
from seed.people import make_person
from tests.conftest import PASSWORD, ROLE_USERS, checkpoint, make_staff, restore, signed_in
from tests.databases import Checkpoint
from tests.helpers import make_complaint, make_help_request, make_repair_order, make_violation
from views.base import SecureModelView

SMALL, LARGE = 5, 40
PAGE = "?page_size=100"  # one of Flask-Admin's page_size_options, larger than any table here
ROLE_ORDER = list(ROLE_USERS)

# endpoint -> the test that covers its list page; a new model view without a test fails below.
LIST_TESTS = {
    "estate": "test_reg_1_estate_list_query_count_constant",
    "building": "test_reg_1_building_list_query_count_constant",
    "unit": "test_reg_1_unit_list_query_count_constant",
    "occupancy": "test_reg_2_occupancy_list_query_count_constant",
    "resident": "test_reg_3_resident_list_query_count_constant",
    "vip": "test_reg_4_vip_list_query_count_constant",
    "vip_contact": "test_reg_4_vip_contact_list_query_count_constant",
    "resident_change": "test_arc_5_resident_change_list_query_count_constant",
    "staff": "test_acc_1_staff_list_query_count_constant",
    "role_change": "test_acc_4_role_change_list_query_count_constant",
    "security_event": "test_acc_7_security_event_list_query_count_constant",
    "key_custody": "test_wf_key_custody_list_query_count_constant",
    "visit": "test_vis_visit_list_query_count_constant",
    "audit": "test_acc_7_audit_list_query_count_constant",
    "calendar": "test_cal_override_list_query_count_constant",
    "calendar_year": "test_cal_year_list_query_count_constant",
    "retention_policy": "test_ret_policy_list_query_count_constant",
    "help_request": "test_hlp_1_help_request_list_query_count_constant",
    "repair_order": "test_hlp_7_repair_order_list_query_count_constant",
    "violation": "test_vio_3_violation_list_query_count_constant",
    "complaint": "test_cmp_1_complaint_list_query_count_constant",
    "renovation": "test_ren_1_renovation_list_query_count_constant",
    "renovation_hot_work": "test_ren_4_hot_work_list_query_count_constant",
    "renovation_power": "test_ren_4_temporary_power_list_query_count_constant",
    "renovation_patrol_day": "test_ren_11_patrol_day_list_query_count_constant",
    "move_in": "test_mov_1_move_in_list_query_count_constant",
    "move_out": "test_mov_3_move_out_list_query_count_constant",
    "release_slip": "test_mov_4_release_slip_list_query_count_constant",
    "move_damage": "test_mov_5_move_damage_list_query_count_constant",
    "archive": "test_arc_1_archive_list_query_count_constant",
    **{e: f"test_dty_{e}_list_query_count_constant" for e in (  # DTY: tests/test_duty.py grow_duty
        "duty_roster", "duty_shift", "duty_swap", "duty_log", "duty_followup", "duty_handover", "duty_day_signoff",
        "visitor_log", "patrol_record")},
    "archive_access": "test_arc_3_archive_access_list_query_count_constant",
    "archive_event": "test_arc_9_archive_event_list_query_count_constant",
    "archive_rental": "test_arc_10_archive_rental_list_query_count_constant",
    "archive_arrears": "test_arc_7_archive_arrears_list_query_count_constant",
    "archive_spot_check": "test_arc_8_archive_spot_check_list_query_count_constant",
}


# --- helpers ------------------------------------------------------------------------------------
def model_views(app: Flask) -> dict[str, SecureModelView]:
    """Every Flask-Admin model view of every Admin instance, by endpoint."""
    return {view.endpoint: view for admin in app.extensions["admin"] for view in admin._views
            if isinstance(view, SecureModelView)}


def viewer_roles(view: SecureModelView) -> list[str]:
    roles = [r for r in ROLE_ORDER if r in view.permissions.get("view", frozenset())]
    assert roles, f"nobody may view {view.endpoint}"
    return roles


@contextmanager
def counting(app: Flask) -> Iterator[list[str]]:
    """Collect every SQL statement sent to the database while the block runs."""
    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def _count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", _count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", _count)


def statements_for(app: Flask, client: FlaskClient, url: str) -> tuple[list[str], str]:
    warm = client.get(url)
    assert warm.status_code == 200, (url, warm.status_code)
    with counting(app) as statements:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return statements, response.get_data(as_text=True)


def grow(app: Flask, start: int, stop: int) -> None:
    """Cells ``start..stop-1``: each an estate, building, unit, owner and tenant with occupancies
    (which write resident change rows), every 4th a phone change, a key-resident profile with two contacts,
    a staff account with two roles and a department (account event and role change), and a
    security event. Related rows are distinct per cell so a lazy load would show per row."""
    rng = random.Random(start)
    with app.app_context():
        admin = db.session.scalar(sa.select(Staff).where(Staff.username == ROLE_USERS["admin"]))
        departments = list(db.session.scalars(sa.select(Department).order_by(Department.id)))
        roles = sorted(ROLE_USERS)
        owners, work = [], []
        for i in range(start, stop):
            estate = Estate(code=f"e{i}", name=f"小区{i}", kind="residential", address=f"路 {i} 号")
            building = Building(estate=estate, code="A", name=f"A栋{i}", floors=30)
            floor = i % 30 + 1
            unit = Unit(building=building, floor=floor, code=f"A-{floor}-{floor * 100 + 1}",
                        area=Decimal("89.50"), use="residential")
            owner = Resident(**make_person(rng, 2 * i + 1))
            tenant = Resident(**make_person(rng, 2 * i + 2))
            since = date(2020, 1, 1) + timedelta(days=i)
            db.session.add_all([
                Occupancy(unit=unit, resident=owner, kind="owner", start_date=since),
                Occupancy(unit=unit, resident=tenant, kind="tenant", start_date=since,
                          end_date=since + timedelta(days=365)),
            ])
            profile = VipProfile(resident=owner, birthday=date(1970, 1, 1) + timedelta(days=i),
                                 preferences="安静", special_requirements=f"需求 {i}")
            db.session.add_all([
                VipCommunication(profile=profile, summary=f"回访 {i}", staff_id=admin.id),
                VipCommunication(profile=profile, summary=f"生日问候 {i}", staff_id=admin.id),
            ])
            member = accounts.create_staff(f"user{i}", f"员工 {i}", PASSWORD, {roles[i % len(roles)],
                                                                             roles[(i + 3) % len(roles)]},
                                           department_key=departments[i % len(departments)].key, actor=admin)
            db.session.add(SecurityEvent(kind="login_failed", username=f"user{i}", ip=f"10.0.0.{i}",
                                         detail="wrong password"))
            owners.append(owner)
            db.session.add(KeyCustody(unit=unit, resident=owner, tag_no=f"K{i}", description=f"钥匙 {i}"))
            db.session.add(Visit(kind="survey", unit=unit, visitor=member, person_visited=f"住户{i}", opinion="满意"))
            work.append((make_complaint(unit=unit, department=departments[i % len(departments)],
                                        severity=("minor", "important", "major")[i % 3]),
                          COMPLAINT_STATES[i % len(COMPLAINT_STATES)]))
            request = make_help_request(unit=unit, category=("daily", "enquiry", "medical")[i % 3],
                                        enquiry_mode="oral" if i % 3 == 1 else None)
            work.append((request, ("received", "referred")[i % 2]))
            work.append((make_repair_order(unit=unit, assignee=member if i % 2 else None), ("open", "assigned")[i % 2]))
            work.append((make_violation(unit=unit, resident=owner, severity=("general", "major")[i % 2],
                                        public_safety=bool(i % 2)), ("reported", "registered")[i % 2]))
            work.extend(grow_renovation(unit, owner, since, i))
            work.extend(__import__("tests.test_moving").test_moving.grow_moving(unit, owner, since, i))
            work.extend(__import__("tests.test_archives").test_archives.grow_archives(unit, owner, since, i))
            work.extend(__import__("tests.test_duty").test_duty.grow_duty(unit, owner, since, i))
        db.session.flush()
        for record, state in work:  # open work in every state, as if the engine had moved it there
            table = type(record).__table__
            db.session.execute(sa.update(table).where(table.c.id == record.id).values(state=state))
        for i, owner in enumerate(owners, start):
            if i % 4 == 0:  # every 4th: keeps the change history under one page of 100 at 40 cells
                owner.phone = f"139{i:08d}"  # written to the change history by before_flush
        db.session.commit()


COMPLAINT_STATES = ("received", "dispatched", "accepted", "handled", "told")  # the open ones: in "My work"
RENOVATION_STATES = ("draft", "submitted", "approved", "permitted", "inspecting", "accepted")


def grow_renovation(unit: Unit, owner: Resident, since: date, i: int) -> list[tuple[object, str]]:
    """A renovation per cell (open, in turn in each state), with a hot-work and a temporary-power record."""
    from models.renovation import HotWork, Renovation, TemporaryPower
    from models.renovation_patrol import new_patrol_day

    ren = Renovation(unit=unit, applicant=owner, scope=f"装修 {i}", contractor=f"装饰公司{i}",
                     planned_start=since, planned_end=since + timedelta(days=60), fees_paid_until=since,
                     fees_confirmed_by="王会计", pledge_signed=True, drawing_lighting=True, drawing_count=1)
    start = datetime(2026, 12, 1, 1, 0, tzinfo=UTC) + timedelta(days=i)
    hot = HotWork(renovation=ren, work="焊接", location=f"阳台 {i}", starts_at=start,
                  ends_at=start + timedelta(hours=2), operator="焊工", fire_watch="保安", extinguishers_ready=True)
    power = TemporaryPower(renovation=ren, purpose=f"临时用电 {i}", load_kw="5")
    patrol = new_patrol_day(ren, since + timedelta(days=i))
    db.session.add_all([ren, hot, power, patrol])
    return [(ren, RENOVATION_STATES[i % len(RENOVATION_STATES)]), (hot, ("applied", "approved")[i % 2]),
            (power, ("applied", "priced")[i % 2]), (patrol, "due")]


def rows_shown(page: str, view: SecureModelView) -> int:
    first = view.column_list[0]
    return len(re.findall(rf'<td class="col-{re.escape(first)}">', page))


GROWN_FOR_SECONDS = 300  # built afresh after that


def grown(app: Flask) -> dict[int, Checkpoint]:
    """The accounts plus ``grow``'s cells at SMALL and at LARGE, as checkpoints to restore.

    Grown once per worker (and again after ``GROWN_FOR_SECONDS``) instead of once per list test:
    every list test then reads the very same data.
    """
    cached = app.extensions.get("pm_test_grown")
    if cached is None or time.monotonic() - cached[1] > GROWN_FOR_SECONDS:
        make_staff(app)
        points, done = {}, 0
        for size in (SMALL, LARGE):
            grow(app, done, size)
            done = size
            points[size] = checkpoint(app)
        cached = app.extensions["pm_test_grown"] = (points, time.monotonic())
    return cached[0]


def assert_list_constant(app: Flask, login_as: Callable[[str], FlaskClient], endpoint: str,
                         full_page: bool = False) -> None:
    """``full_page``: the table outgrows one page (the audit trail); the page must then be full."""
    view = model_views(app)[endpoint]
    url = f"/admin/{endpoint}/{PAGE}"
    points = grown(app)
    counts: dict[int, dict[str, int]] = {}
    for size in (SMALL, LARGE):
        restore(app, points[size])
        clients = {role: signed_in(app, role) for role in viewer_roles(view)}
        counts[size] = {}
        for role, client in clients.items():
            statements, page = statements_for(app, client, url)
            with app.app_context():
                total = db.session.scalar(sa.select(sa.func.count()).select_from(view.model))
            assert size <= total and (full_page or total < 100)
            if role not in getattr(view, "scoped_roles", ()):  # ARC-3: confidential lists show what is granted
                assert rows_shown(page, view) == min(total, 100), (endpoint, role)
            counts[size][role] = len(statements)
    assert counts[LARGE] == counts[SMALL], (
        f"{endpoint}: statements per list page grow with the rows (N+1): "
        f"{SMALL} rows {counts[SMALL]}, {LARGE} rows {counts[LARGE]}")


# --- the views are all covered ------------------------------------------------------------------
def test_every_model_view_list_has_a_query_count_test(app: Flask) -> None:
    assert set(model_views(app)) == set(LIST_TESTS)
    for name in LIST_TESTS.values():
        assert callable(globals().get(name)), name


# --- list pages ---------------------------------------------------------------------------------
def test_reg_1_estate_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "estate")


def test_reg_1_building_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "building")


def test_reg_1_unit_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "unit")


def test_reg_2_occupancy_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "occupancy")


def test_reg_3_resident_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "resident")


def test_reg_4_vip_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "vip")


def test_reg_4_vip_contact_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "vip_contact")


def test_arc_5_resident_change_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "resident_change")


def test_acc_1_staff_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "staff")


def test_acc_4_role_change_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "role_change")


def test_acc_7_security_event_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "security_event")


def test_wf_key_custody_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    """Row buttons come from roles and states only (settings cached per request): no N+1."""
    assert_list_constant(app, login_as, "key_custody")


def test_vis_visit_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "visit")


def test_acc_7_audit_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "audit", full_page=True)


def test_cal_override_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    from tests.test_calendar import assert_calendar_list_constant

    assert_calendar_list_constant(app, login_as, "calendar")


def test_cal_year_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    from tests.test_calendar import assert_calendar_list_constant

    assert_calendar_list_constant(app, login_as, "calendar_year")


def test_ret_policy_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    from tests.test_retention import assert_policy_list_constant

    assert_policy_list_constant(app, login_as)


def test_hlp_1_help_request_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    from tests.test_repairs import assert_help_list_constant

    assert_help_list_constant(app, login_as, "help_request")


def test_hlp_7_repair_order_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    from tests.test_repairs import assert_help_list_constant

    assert_help_list_constant(app, login_as, "repair_order")


# --- details page of a resident -----------------------------------------------------------------
def test_reg_3_resident_details_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    """A resident holding 5, then 40 occupancies, each in a unit of its own building and estate."""
    view = model_views(app)["resident"]
    with app.app_context():
        resident = Resident(**make_person(random.Random(7), 999))
        db.session.add(resident)
        db.session.commit()
        resident_id = resident.id
    url = f"/admin/resident/details/?id={resident_id}"
    clients = {role: login_as(role) for role in viewer_roles(view)}
    counts: dict[int, dict[str, int]] = {}
    done = 0
    for size in (SMALL, LARGE):
        with app.app_context():
            resident = db.session.get(Resident, resident_id)
            for i in range(done, size):
                building = Building(estate=Estate(code=f"d{i}", name=f"小区{i}"), code="B", floors=9)
                unit = Unit(building=building, floor=1, code=f"B-1-{100 + i}", use="residential")
                db.session.add(Occupancy(unit=unit, resident=resident, kind="owner",
                                         start_date=date(2020, 1, 1) + timedelta(days=i)))
            db.session.commit()
        done = size
        counts[size] = {}
        for role, client in clients.items():
            statements, page = statements_for(app, client, url)
            assert f"B-1-{100 + size - 1}" in page, role
            counts[size][role] = len(statements)
    assert counts[LARGE] == counts[SMALL], (
        f"resident details: statements grow with the occupancies (N+1): "
        f"{SMALL} {counts[SMALL]}, {LARGE} {counts[LARGE]}")


def test_cmp_1_complaint_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    from tests.test_complaints import assert_complaint_list_constant

    assert_complaint_list_constant(app, login_as)


def test_vio_3_violation_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "violation")


def test_ren_1_renovation_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "renovation")


def test_ren_4_hot_work_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "renovation_hot_work")


def test_ren_4_temporary_power_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "renovation_power")


def test_ren_11_patrol_day_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "renovation_patrol_day")


def test_mov_1_move_in_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "move_in")


def test_mov_3_move_out_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "move_out")


def test_mov_4_release_slip_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "release_slip")


def test_mov_5_move_damage_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "move_damage")


def test_arc_1_archive_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "archive")


def test_arc_3_archive_access_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "archive_access")


def test_arc_9_archive_event_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "archive_event")


def test_arc_10_archive_rental_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "archive_rental")


def test_arc_7_archive_arrears_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "archive_arrears")


def test_arc_8_archive_spot_check_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "archive_spot_check")


def test_dty_duty_roster_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "duty_roster")


def test_dty_duty_shift_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "duty_shift")


def test_dty_duty_swap_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "duty_swap")


def test_dty_duty_log_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "duty_log")


def test_dty_duty_followup_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "duty_followup")


def test_dty_duty_handover_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "duty_handover")


def test_dty_duty_day_signoff_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "duty_day_signoff")


def test_dty_visitor_log_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "visitor_log")


def test_dty_patrol_record_list_query_count_constant(app, login_as):  # type: ignore[no-untyped-def]
    assert_list_constant(app, login_as, "patrol_record")
