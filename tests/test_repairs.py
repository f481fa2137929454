"""Repair work orders (维修工作单, HLP-3, HLP-7), the repair satisfaction rate (VIS-5), the
register's retention with its repair orders (HLP-6) and the list query counts of both screens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from models import db
from models.help_requests import HelpRequest
from models.repairs import SATISFACTION_TARGET, RepairOrder, repair_satisfaction, repair_satisfaction_rate
from models.retention import RetentionPolicy
from models.validators import DomainError
from tests.conftest import PASSWORD, csrf_token
from tests.helpers import make_help_request, make_repair_order, make_unit
from tests.test_help_requests import clocks, fire, local, staff_of, zh
from tests.test_help_requests import fresh as fresh_request
from tests.workflow_fixtures import add_staff, staff
from workflow import engine, settings


def fresh(order_id: int) -> RepairOrder:
    db.session.rollback()
    return db.session.get(RepairOrder, order_id)


def act(client: FlaskClient, order: RepairOrder, name: str, **fields: Any) -> str:
    return fire(client, order, name, endpoint="repair_order", **fields)


def edit(client: FlaskClient, order: RepairOrder, **fields: Any) -> Any:
    assert client.get(f"/admin/repair_order/edit/?id={order.id}").status_code == 200
    data = {"csrf_token": csrf_token(client), "version": order.version, "fault": order.fault or "",
            "location": order.location or "", "reported_at": order.reported_at.strftime("%Y-%m-%d %H:%M:%S"),
            "assignee": order.assignee_id or "", "materials": order.materials or "",
            "charge": order.charge if order.charge is not None else "", "satisfaction": order.satisfaction or "",
            **({"emergency": "y"} if order.emergency else {}), **({"paid": "y"} if order.paid else {}), **fields}
    return client.post(f"/admin/repair_order/edit/?id={order.id}", data={k: v for k, v in data.items()
                                                                          if v is not None})


def test_hlp_7_emergency_repair_response_clock_is_two_hours(db_session) -> None:
    at = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
    order = make_repair_order(emergency=True, reported_at=at)
    db.session.commit()
    clock = clocks(order)
    assert set(clock) == {"respond_emergency"}
    assert (clock["respond_emergency"].unit, clock["respond_emergency"].due_at) == ("hours", at + timedelta(hours=2))
    assert fresh(order.id).due_at == at + timedelta(hours=2)


def test_hlp_7_ordinary_repair_response_is_a_setting_of_24_hours(db_session) -> None:
    assert settings.value("repair_order.deadline.respond") == 24
    at = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
    order = make_repair_order(reported_at=at)
    db.session.commit()
    assert clocks(order)["respond"].due_at == at + timedelta(hours=24)
    order = fresh(order.id)
    order.emergency = True  # found to be an emergency: the 2-hour limit applies instead
    db.session.commit()
    clock = clocks(order)
    assert clock["respond"].is_open is False and clock["respond"].cancelled_at is not None
    assert clock["respond_emergency"].is_open and clock["respond_emergency"].due_at == at + timedelta(hours=2)


def test_hlp_7_work_order_flow_assign_respond_complete_close_over_http(db_session, login_as, staff_ids) -> None:
    unit = make_unit()
    request = make_help_request(category="repair", unit=unit, urgent=True, description="电梯困人")
    db.session.commit()
    clerk, supervisor, engineer = login_as("cs_clerk"), login_as("cs_supervisor"), login_as("engineering")
    fire(clerk, request, "to_repair")
    order = db.session.scalar(sa.select(RepairOrder))
    assert order.emergency and "respond_emergency" in clocks(order)
    assert zh("Choose the engineer first (edit the work order).") in act(supervisor, order, "assign")
    response = edit(supervisor, fresh(order.id), assignee=staff_ids["engineering"])
    assert response.status_code == 302, response.get_data(as_text=True)
    assert "您的角色不能" in act(clerk, fresh(order.id), "assign")
    act(supervisor, fresh(order.id), "assign")
    assert fresh(order.id).state == "assigned"
    act(engineer, fresh(order.id), "respond")
    order = fresh(order.id)
    assert order.state == "responded" and order.responded_at is not None
    assert clocks(order)["respond_emergency"].met_at == order.responded_at
    assert "请先填写" in act(engineer, order, "complete")
    response = edit(engineer, fresh(order.id), materials="钢丝绳 2 米")
    assert response.status_code == 302, response.get_data(as_text=True)
    act(engineer, fresh(order.id), "complete", field_work_done="更换钢丝绳，电梯恢复运行")
    order = fresh(order.id)
    assert (order.state, order.materials, order.completed_at is not None) == ("completed", "钢丝绳 2 米", True)
    assert "您的角色不能" in act(engineer, order, "close")
    assert zh("Record the resident's satisfaction first (edit the work order, or a repair visit).") in \
        act(clerk, fresh(order.id), "close")
    response = edit(clerk, fresh(order.id), satisfaction="very_satisfied")
    assert response.status_code == 302, response.get_data(as_text=True)
    act(clerk, fresh(order.id), "close")
    order = fresh(order.id)
    assert order.state == "closed" and order.closed_at is not None and order.satisfaction == "very_satisfied"
    page = clerk.get(f"/admin/repair_order/details/?id={order.id}").get_data(as_text=True)
    assert f"/admin/help_request/details/?id={request.id}" in page and "电梯困人" in page


def test_hlp_7_only_the_supervisor_or_the_engineering_head_assigns(db_session, staff_ids) -> None:
    worker = staff_of("engineering")
    head = add_staff("enghead", {"engineering"}, department="engineering", head=True)
    order = make_repair_order(assignee_id=worker.id)
    db.session.commit()
    with pytest.raises(engine.NotAllowed, match=zh("Only the supervisor or the head of engineering assigns repairs.")):
        engine.fire(order, "assign", worker)
    assert fresh(order.id).state == "open"
    engine.fire(fresh(order.id), "assign", head)
    assert fresh(order.id).state == "assigned"
    other = make_repair_order(assignee_id=staff_of("cs_clerk").id)
    db.session.commit()
    with pytest.raises(engine.NotAllowed, match=zh("A repair is assigned to active engineering staff.")):
        engine.fire(other, "assign", staff_of("cs_supervisor"))


def test_hlp_7_paid_repair_needs_its_charge_before_completion(db_session, login_as, staff_ids) -> None:
    order = make_repair_order(assignee_id=staff_ids["engineering"], paid=True)
    db.session.commit()
    supervisor = staff_of("cs_supervisor")
    engine.fire(order, "assign", supervisor)
    engine.fire(fresh(order.id), "respond", staff_of("engineering"))
    with pytest.raises(engine.NotAllowed, match=zh("A paid repair needs its charge first (edit the work order).")
                       .replace("(", r"\(").replace(")", r"\)")):
        engine.fire(fresh(order.id), "complete", staff_of("engineering"), values={"work_done": "换锁芯"})
    engineer = login_as("engineering")
    assert edit(engineer, fresh(order.id), charge="-1").status_code == 200
    response = edit(engineer, fresh(order.id), charge="80.00")
    assert response.status_code == 302, response.get_data(as_text=True)
    engine.fire(fresh(order.id), "complete", staff_of("engineering"), values={"work_done": "换锁芯"})
    order = fresh(order.id)
    assert order.state == "completed" and order.charge == Decimal("80.00")


def test_hlp_7_engineer_cannot_reassign_once_assigned(db_session, login_as, staff_ids) -> None:
    second = add_staff("engineer2", {"engineering"})
    order = make_repair_order(assignee_id=staff_ids["engineering"])
    db.session.commit()
    engine.fire(order, "assign", staff_of("cs_supervisor"))
    engineer = login_as("engineering")
    assert edit(engineer, fresh(order.id), assignee=second.id).status_code == 200
    assert fresh(order.id).assignee_id == staff_ids["engineering"]
    response = edit(login_as("cs_supervisor"), fresh(order.id), assignee=second.id)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert fresh(order.id).assignee_id == second.id


def test_hlp_7_order_without_help_request_needs_a_fault_and_nothing_is_written(db_session, login_as) -> None:
    clerk = login_as("cs_clerk")
    response = clerk.post("/admin/repair_order/new/", data={"csrf_token": csrf_token(clerk), "fault": " ",
                                                            "reported_at": "2026-11-20 09:00:00"})
    assert response.status_code == 200
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RepairOrder)) == 0
    response = clerk.post("/admin/repair_order/new/", data={"csrf_token": csrf_token(clerk), "fault": "楼道灯不亮",
                                                            "reported_at": "2026-11-20 09:00:00", "state": "closed"})
    assert response.status_code == 302
    order = db.session.scalar(sa.select(RepairOrder))
    assert order.state == "open" and order.fault_text == "楼道灯不亮"
    engineer = login_as("engineering")
    assert engineer.get("/admin/repair_order/new/").status_code == 403


def test_hlp_7_satisfaction_from_a_recorded_repair_visit_closes_the_order(db_session, staff_ids) -> None:
    from models.visits import Visit

    order = make_repair_order(assignee_id=staff_ids["engineering"])
    db.session.commit()
    for name, who in (("assign", "cs_supervisor"), ("respond", "engineering")):
        engine.fire(fresh(order.id), name, staff_of(who))
    engine.fire(fresh(order.id), "complete", staff_of("engineering"), values={"work_done": "更换阀芯"})
    visit = Visit(kind="repair", repair_order_id=order.id, method="phone", person_visited="张三",
                  visited_at=datetime.now(UTC), opinion="修得很好", satisfied=False)
    db.session.add(visit)
    db.session.commit()
    with pytest.raises(engine.NotAllowed):  # a draft visit is not the resident's verdict yet
        engine.fire(fresh(order.id), "close", staff_of("cs_clerk"))
    db.session.execute(sa.update(Visit).where(Visit.id == visit.id).values(state="recorded"))
    db.session.commit()
    engine.fire(fresh(order.id), "close", staff_of("cs_clerk"))
    order = fresh(order.id)
    assert order.state == "closed" and order.satisfaction == "dissatisfied"


def test_hlp_7_satisfaction_only_after_the_work(db_session) -> None:
    order = make_repair_order(satisfaction="satisfied")
    with pytest.raises(DomainError):
        order.check_details()
    db.session.rollback()


def closed_order(completed: datetime, satisfaction: str | None) -> RepairOrder:
    order = make_repair_order()
    db.session.commit()
    db.session.execute(sa.update(RepairOrder).where(RepairOrder.id == order.id).values(
        state="closed", completed_at=completed, satisfaction=satisfaction))
    db.session.commit()
    return order


def test_hlp_7_vis_5_repair_satisfaction_rate_counts_satisfied_over_rated(db_session) -> None:
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    assert repair_satisfaction_rate(start, end) is None  # nothing rated: no rate
    for value in ["very_satisfied"] * 30 + ["satisfied"] * 18 + ["dissatisfied"] * 2 + [None] * 5:
        closed_order(datetime(2026, 11, 10, tzinfo=UTC), value)
    closed_order(datetime(2026, 10, 31, 23, 59, tzinfo=UTC), "dissatisfied")  # outside the period
    assert repair_satisfaction(start, end) == (48, 50)
    rate = repair_satisfaction_rate(start, end)
    assert rate == Decimal("0.96") and rate < SATISFACTION_TARGET == Decimal("0.98")


# --- HLP-6 retention ------------------------------------------------------------------------------------
def test_hlp_6_request_of_2024_is_due_from_1_january_2027_and_takes_its_repair_order(db_session,
                                                                                     staff_ids) -> None:
    from workflow.retention import due, seed_policies
    from workflow.retention_batch import approve, list_batch, run_batch

    seed_policies()
    db.session.commit()
    policy = db.session.scalar(sa.select(RetentionPolicy).where(RetentionPolicy.code == "hlp6_help_request"))
    old = make_help_request(category="repair", created_at=local(2024, 12, 31, 23, 0),
                            received_at=local(2024, 12, 31, 23, 0))
    new = make_help_request(category="repair", created_at=local(2025, 1, 1, 0, 30))
    db.session.commit()
    for request in (old, new):
        engine.fire(fresh_request(request.id), "to_repair", staff_of("cs_clerk"))
    old_order = fresh_request(old.id).repair_order.id
    assert due(policy, local(2026, 12, 31, 23, 59, 59)).ids() == []
    assert due(policy, local(2027, 1, 1)).ids() == [old.id]
    manager = staff(staff_ids, "manager")
    batch = list_batch(policy, manager, local(2027, 1, 1))
    approve(batch, manager, PASSWORD)
    run_batch(batch.id, now=local(2027, 1, 1))
    db.session.expire_all()
    assert db.session.scalars(sa.select(HelpRequest.id)).all() == [new.id]
    assert db.session.get(RepairOrder, old_order) is None
    assert db.session.scalars(sa.select(RepairOrder.help_request_id)).all() == [new.id]


def test_hlp_6_open_request_is_never_purged(db_session) -> None:
    from workflow.retention import due, seed_policies

    seed_policies()
    make_help_request(created_at=local(2020, 3, 1))
    db.session.commit()
    policy = db.session.scalar(sa.select(RetentionPolicy).where(RetentionPolicy.code == "hlp6_help_request"))
    assert due(policy, local(2027, 1, 1)).ids() == []


# --- list page query count (LIST_TESTS) ---------------------------------------------------------------------
def grow_help(app: Any, start: int, stop: int) -> None:
    """Requests of every category, each with its own unit; every 3rd converted into a repair order."""
    from tests.helpers import make_building, make_estate

    with app.app_context():
        building = make_building(make_estate(code=f"h{start}"), code="H")
        clerk = staff_of("cs_clerk")
        made = []
        for i in range(start, stop):
            unit = make_unit(building, code=f"H-1-{1000 + i}", floor=1)
            category = "repair" if i % 3 == 0 else ("crime" if i % 3 == 1 else "daily")
            made.append(make_help_request(category=category, unit=unit, caller=f"住户{i}",
                                          sub_kind="theft" if category == "crime" else None))
        db.session.commit()
        for request in made:
            if request.category == "repair":
                engine.fire(request, "to_repair", clerk)
                order = request.repair_order
                order.assignee_id = staff_of("engineering").id
                db.session.commit()


def assert_help_list_constant(app: Any, login_as: Any, endpoint: str) -> None:
    """Statements per list page do not grow with the rows (shared with test_query_counts)."""
    from tests.test_query_counts import statements_for

    clients = [login_as(role) for role in ("cs_clerk", "engineering")]
    first = {"help_request": "received_at", "repair_order": "reported_at"}[endpoint]
    counts, rows, done = [], [], 0
    for size in (6, 45):
        grow_help(app, done, size)
        done = size
        pages = [statements_for(app, client, f"/admin/{endpoint}/?page_size=100") for client in clients]
        counts.append([len(statements) for statements, _page in pages])
        rows.append(pages[0][1].count(f'<td class="col-{first}">'))
    assert rows == ({"help_request": [6, 45], "repair_order": [2, 15]}[endpoint])
    assert counts[0] == counts[1], f"{endpoint}: statements per list page grow with the rows (N+1): {counts}"

