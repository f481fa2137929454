"""The 待办 badge: exactly what 待办 lists, from indexed candidate queries, reused until a write.

``inbox.my_work`` first asks one EXISTS statement which workflows hold rows in a state the user
acts on or waiting for a sign-off they could give, then reads only those workflows; the badge
keeps each user's number while the audit chain's head has not moved (views/mywork.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from flask import Flask

from models import Estate, Staff, Unit, db
from tests.conftest import PASSWORD
from tests.helpers import (
    make_building,
    make_complaint,
    make_estate,
    make_help_request,
    make_key_custody,
    make_move_out,
    make_repair_order,
    make_unit,
    make_violation,
)
from views import mywork
from workflow import engine
from workflow import inbox as work

BADGE = re.compile(r'id="mywork-badge">(\d+)<')
ITEM = re.compile(r'class="mywork-item mywork-\w+[^"]*"\s+data-record-type="\w+" data-record-id="\d+"')
ROLES = ("manager", "cs_supervisor", "cs_clerk", "engineering", "security", "finance", "management_dept")


@contextmanager
def counted(app: Flask) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        seen.append(statement)

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", note)
        try:
            yield seen
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", note)


def person(staff_ids: dict[str, int], role: str) -> Staff:
    return db.session.get(Staff, staff_ids[role])


def add_work(staff_ids: dict[str, int], n: int, start: int = 0) -> None:
    """``n`` records of each kind waiting for someone: complaints, help requests, repair orders,
    violations, move-outs, keys out of the cabinet and keys reported lost (a sign-off)."""
    clerk = person(staff_ids, "cs_clerk")
    estate = db.session.scalar(sa.select(Estate)) or make_estate()
    building = make_building(estate, code=f"B{start}")

    def unit(floor: int, i: int) -> Unit:
        return make_unit(building, code=f"B{start}-{floor}-{floor}{i:02d}", floor=floor)

    for i in range(start, start + n):
        make_complaint(unit=unit(1, i))
        make_help_request()
        make_repair_order()
        make_violation(unit=unit(2, i))
        make_move_out(unit=unit(3, i))
        out = make_key_custody(unit=unit(4, i))
        lost = make_key_custody(unit=unit(5, i))
        db.session.commit()
        engine.fire(out, "check_out", clerk, values={"current_holder": "王师傅", "current_purpose": "维修"})
        assert engine.fire(lost, "report_lost", clerk, "不见了") == "requested"


def test_wf_mywork_badge_equals_the_listed_rows_for_every_role(app, staff_ids, db_session, login_as):
    add_work(staff_ids, 2)
    for role in ROLES:
        client = login_as(role)
        html = client.get("/admin/mywork/").get_data(as_text=True)
        rows = len(ITEM.findall(html))
        assert rows == work.count(person(staff_ids, role)), role
        home = client.get("/admin/").get_data(as_text=True)
        assert BADGE.findall(home) == ([str(rows)] if rows else []), role
    assert work.count(person(staff_ids, "cs_supervisor")) > 0  # the data gives the desk work


def test_wf_mywork_candidate_statements_do_not_grow_with_records(app, staff_ids, db_session):
    """The count's statements depend on which workflows hold work, never on how many rows."""
    add_work(staff_ids, 1)
    before = {}
    for role in ROLES:
        db.session.remove()
        with counted(app) as seen:
            n = work.count(db.session.get(Staff, staff_ids[role]))
        before[role] = (len(seen), n)
    add_work(staff_ids, 6, start=1)
    for role in ROLES:
        db.session.remove()
        with counted(app) as seen:
            n = work.count(db.session.get(Staff, staff_ids[role]))
        assert len(seen) == before[role][0], (role, seen)
        assert n >= before[role][1]


def test_wf_mywork_nothing_waiting_costs_one_candidate_statement(app, staff_ids, db_session):
    db.session.remove()
    with counted(app) as seen:
        assert work.count(db.session.get(Staff, staff_ids["cs_supervisor"])) == 0
    # the user, their roles, the settings, the delegations, then one EXISTS for every workflow
    assert sum("EXISTS" in s.upper() for s in seen) == 1 and len(seen) <= 5, seen


def test_wf_mywork_badge_is_reused_until_a_write_then_recounted(app, staff_ids, db_session):
    add_work(staff_ids, 1)
    supervisor, clerk = person(staff_ids, "cs_supervisor"), person(staff_ids, "cs_clerk")
    first = mywork.badge_count(supervisor)
    assert first == work.count(supervisor)
    with counted(app) as seen:
        assert mywork.badge_count(supervisor) == first
    assert len(seen) == 1 and "audit_head" in seen[0]  # reused: only the chain's head was read

    keys = make_key_custody(
        unit=make_unit(make_building(db.session.scalar(sa.select(Estate)), code="C"), code="C-1-101", floor=1)
    )
    db.session.commit()
    engine.fire(keys, "report_lost", clerk, "不见了")  # someone else's write: one more to sign
    assert mywork.badge_count(supervisor) == first + 1 == work.count(supervisor)
    engine.decide(keys, supervisor, True, "确认遗失", password=PASSWORD)  # the user's own write
    assert mywork.badge_count(supervisor) == first == work.count(supervisor)
