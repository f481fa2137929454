"""Moving in and out (REGULATIONS §4, MOV-1..MOV-5) through the engine and the screens."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from models import AuditEntry, Occupancy, ResidentChange, Staff, db
from models.archives import Archive
from models.moving import MoveDamage, MoveIn, MoveOut, ReleaseSlip
from tests.conftest import csrf_token
from tests.helpers import make_move_out, make_occupancy, make_resident, make_unit, valid_id
from workflow import engine
from workflow.engine import NotAllowed

TODAY = date.today()


def staff(staff_ids: dict[str, int], role: str) -> Staff:
    return db.session.get(Staff, staff_ids[role])


def fresh(model: type, record_id: int) -> Any:
    db.session.rollback()
    return db.session.get(model, record_id)


def post(client: FlaskClient, endpoint: str, record: Any, name: str, **fields: Any) -> str:
    data = {"csrf_token": csrf_token(client), "id": record.id, "name": name, "version": record.version,
            "comment": "", **fields}
    response = client.post(f"/admin/{endpoint}/transition/", data=data, follow_redirects=True)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def ready_move_out(staff_ids: dict[str, int]) -> MoveOut:
    """A tenant's move-out with everything MOV-3 asks, still open."""
    move = make_move_out()
    clerk = staff(staff_ids, "cs_clerk")
    engine.fire(move, "settle_fees", clerk,
                values={"fees_settled_on": TODAY.isoformat(), "finance_confirmed_by": "王会计"})
    engine.fire(move, "owner_consent", clerk, values={"owner_consent_name": "房东李"})
    engine.fire(move, "check_goods", clerk)
    return move


# --- MOV-1 ---------------------------------------------------------------------------------------
def test_mov_1_tenant_move_in_needs_id_lease_owner_present_and_records_cards_and_keys(db_session, staff_ids) -> None:
    unit = make_unit()
    make_occupancy(unit, make_resident(name="房东李", id_number=valid_id(31)))
    tenant = make_resident(name="新租客", id_number=valid_id(32))
    move = MoveIn(unit=unit, resident=tenant, kind="tenant", move_in_date=TODAY, id_checked=True)
    db.session.add(move)
    with pytest.raises(Exception, match="lease|租"):
        move.check_registration()
    move.lease_no = "ZL-2026-001"
    move.owner_confirmation = "路人甲"
    move.check_registration()
    db.session.commit()
    clerk = staff(staff_ids, "cs_clerk")
    with pytest.raises(NotAllowed):
        engine.fire(move, "hand_over", clerk, values={"card_numbers": "C001,C002", "key_count": "3"})
    move = fresh(MoveIn, move.id)
    assert move.state == "registered" and move.occupancy_id is None
    move.owner_confirmation = "房东李"
    db.session.commit()
    engine.fire(move, "hand_over", clerk, values={"card_numbers": "C001,C002", "key_count": "3"})
    move = fresh(MoveIn, move.id)
    assert move.state == "moved_in" and (move.card_numbers, move.key_count) == ("C001,C002", 3)
    assert move.occupancy.kind == "tenant" and move.occupancy.resident_id == tenant.id
    assert move.occupancy.end_date is None and move.occupancy.start_date == TODAY


def test_mov_1_move_in_form_refuses_a_resident_without_id(db_session, login_as) -> None:
    unit = make_unit()
    person = make_resident(name="无证人", id_number=None)
    db.session.commit()
    clerk = login_as("cs_clerk")
    body = clerk.post("/admin/move_in/new/", data={
        "csrf_token": csrf_token(clerk), "unit": unit.id, "resident": person.id, "kind": "owner",
        "move_in_date": TODAY.isoformat(), "id_checked": "y"}).get_data(as_text=True)
    assert "MOV-1" in body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(MoveIn)) == 0


def test_mov_1_move_in_through_the_screens(db_session, login_as) -> None:
    unit = make_unit()
    owner = make_resident(name="业主赵", id_number=valid_id(41))
    db.session.commit()
    clerk = login_as("cs_clerk")
    response = clerk.post("/admin/move_in/new/", data={
        "csrf_token": csrf_token(clerk), "unit": unit.id, "resident": owner.id, "kind": "owner",
        "move_in_date": TODAY.isoformat(), "id_checked": "y"})
    assert response.status_code == 302, response.get_data(as_text=True)
    move = db.session.scalar(sa.select(MoveIn))
    assert "请先填写" in post(clerk, "move_in", move, "hand_over")
    assert "您的角色不能" in post(login_as("finance"), "move_in", move, "hand_over", field_card_numbers="C9",
                                field_key_count="2")
    post(clerk, "move_in", fresh(MoveIn, move.id), "hand_over", field_card_numbers="C9", field_key_count="2")
    move = fresh(MoveIn, move.id)
    assert move.state == "moved_in" and move.occupancy.kind == "owner"


# --- MOV-2 / MOV-3 -------------------------------------------------------------------------------
def test_mov_2_a_slip_is_issued_only_after_the_service_centre_checked_the_goods(db_session, login_as) -> None:
    unit = make_unit()
    db.session.commit()
    clerk = login_as("cs_clerk")
    data = {"unit": unit.id, "carrier": "搬家公司", "goods": "旧书柜一个"}
    body = clerk.post("/admin/release_slip/new/", data={"csrf_token": csrf_token(clerk), **data}).get_data(as_text=True)
    assert "MOV-2" in body and db.session.scalar(sa.select(sa.func.count()).select_from(ReleaseSlip)) == 0
    response = clerk.post("/admin/release_slip/new/", data={"csrf_token": csrf_token(clerk), **data,
                                                            "goods_checked": "y"})
    assert response.status_code == 302
    slip = db.session.scalar(sa.select(ReleaseSlip))
    assert slip.state == "issued" and slip.number.startswith(f"FX-{datetime.now(UTC).year}-")
    guard = login_as("security")
    assert guard.post("/admin/release_slip/new/", data={"csrf_token": csrf_token(guard), **data,
                                                        "goods_checked": "y"}).status_code == 403


@pytest.mark.parametrize("settled_days_before, ok", [(2, False), (3, True), (7, True), (8, False)])
def test_mov_3_fees_settled_three_to_seven_days_before(db_session, staff_ids, settled_days_before, ok) -> None:
    move = make_move_out(planned_date=TODAY + timedelta(days=10))
    db.session.commit()
    values = {"fees_settled_on": (move.planned_date - timedelta(days=settled_days_before)).isoformat(),
              "finance_confirmed_by": "王会计"}
    if ok:
        engine.fire(move, "settle_fees", staff(staff_ids, "finance"), values=values)
        assert fresh(MoveOut, move.id).fees_settled_on.isoformat() == values["fees_settled_on"]
    else:
        with pytest.raises(NotAllowed, match="MOV-3"):
            engine.fire(move, "settle_fees", staff(staff_ids, "finance"), values=values)
        assert fresh(MoveOut, move.id).fees_settled_on is None


def test_mov_3_tenant_slip_refused_until_fees_settled_and_owner_consents(db_session, staff_ids) -> None:
    move = make_move_out()
    db.session.commit()
    clerk = staff(staff_ids, "cs_clerk")
    with pytest.raises(NotAllowed, match="MOV-3"):
        engine.fire(move, "issue_slip", clerk)
    engine.fire(fresh(MoveOut, move.id), "settle_fees", clerk,
                values={"fees_settled_on": TODAY.isoformat(), "finance_confirmed_by": "王会计"})
    with pytest.raises(NotAllowed, match="consent|同意"):
        engine.fire(fresh(MoveOut, move.id), "issue_slip", clerk)
    with pytest.raises(NotAllowed):  # the consent of someone who is not an owner
        engine.fire(fresh(MoveOut, move.id), "owner_consent", clerk, values={"owner_consent_name": "租客王"})
    engine.fire(fresh(MoveOut, move.id), "owner_consent", clerk, values={"owner_consent_name": "房东李"})
    with pytest.raises(NotAllowed, match="goods|物品"):
        engine.fire(fresh(MoveOut, move.id), "issue_slip", clerk)
    engine.fire(fresh(MoveOut, move.id), "check_goods", clerk)
    engine.fire(fresh(MoveOut, move.id), "issue_slip", clerk)
    move = fresh(MoveOut, move.id)
    assert move.state == "released" and len(move.slips) == 1 and move.slips[0].goods == "沙发一张\n冰箱一台"


def test_mov_3_completing_the_move_out_ends_the_occupancy_with_history(db_session, staff_ids) -> None:
    move = ready_move_out(staff_ids)
    clerk = staff(staff_ids, "cs_clerk")
    engine.fire(fresh(MoveOut, move.id), "issue_slip", clerk)
    with pytest.raises(NotAllowed, match="MOV-4"):
        engine.fire(fresh(MoveOut, move.id), "complete", clerk)
    slip = fresh(MoveOut, move.id).slips[0]
    engine.fire(slip, "use", staff(staff_ids, "security"))
    engine.fire(fresh(MoveOut, move.id), "complete", clerk)
    move = fresh(MoveOut, move.id)
    assert move.state == "completed" and move.occupancy.end_date == move.moved_out_on
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ResidentChange).where(
        ResidentChange.new_value.like("tenant%"))) >= 1
    archive = db.session.scalar(sa.select(Archive).where(Archive.unit_id == move.unit_id))
    assert archive is not None and archive.state == "open"  # the owner still holds the unit


def test_arc_4_last_occupant_moving_out_closes_the_archive_and_a_new_move_in_reopens_it(
        db_session, staff_ids) -> None:
    unit = make_unit()
    owner = make_occupancy(unit, make_resident(name="业主孙", id_number=valid_id(51)))
    move = make_move_out(occupancy=owner)
    clerk = staff(staff_ids, "cs_clerk")
    engine.fire(move, "settle_fees", clerk,
                values={"fees_settled_on": TODAY.isoformat(), "finance_confirmed_by": "王会计"})
    engine.fire(fresh(MoveOut, move.id), "check_goods", clerk)
    engine.fire(fresh(MoveOut, move.id), "issue_slip", clerk)
    engine.fire(fresh(MoveOut, move.id).slips[0], "use", staff(staff_ids, "security"))
    engine.fire(fresh(MoveOut, move.id), "complete", clerk)
    archive = db.session.scalar(sa.select(Archive).where(Archive.unit_id == unit.id))
    assert archive.state == "closed"  # kept apart, not deleted (ARC-4)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
        AuditEntry.record_type == "archive", AuditEntry.record_id == archive.id)) >= 1
    buyer = make_resident(name="新业主", id_number=valid_id(52))
    move_in = MoveIn(unit=unit, resident=buyer, kind="owner", move_in_date=TODAY, id_checked=True)
    db.session.add(move_in)
    db.session.commit()
    engine.fire(move_in, "hand_over", clerk, values={"card_numbers": "C1", "key_count": "2"})
    assert db.session.get(Archive, archive.id).state == "open"


def test_mov_3_tenant_move_out_through_the_screens(db_session, login_as) -> None:
    move = make_move_out()
    db.session.commit()
    clerk = login_as("cs_clerk")
    assert "MOV-3" in post(clerk, "move_out", move, "issue_slip")
    post(clerk, "move_out", fresh(MoveOut, move.id), "settle_fees", field_fees_settled_on=TODAY.isoformat(),
         field_finance_confirmed_by="王会计")
    post(clerk, "move_out", fresh(MoveOut, move.id), "owner_consent", field_owner_consent_name="房东李")
    post(clerk, "move_out", fresh(MoveOut, move.id), "check_goods")
    post(clerk, "move_out", fresh(MoveOut, move.id), "issue_slip")
    assert fresh(MoveOut, move.id).state == "released"


# --- MOV-4 ---------------------------------------------------------------------------------------
def test_mov_4_slip_numbered_printed_and_checked_at_the_gate_once(db_session, staff_ids, login_as) -> None:
    move = ready_move_out(staff_ids)
    engine.fire(fresh(MoveOut, move.id), "issue_slip", staff(staff_ids, "cs_clerk"))
    slip = fresh(MoveOut, move.id).slips[0]
    assert slip.number == f"FX-{datetime.now(UTC).year}-00001"
    clerk = login_as("cs_clerk")
    response = clerk.get(f"/admin/release_slip/print/{slip.id}.pdf")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
        AuditEntry.record_type == "release_slip", AuditEntry.action == "print")) == 1
    guard, second_guard = login_as("security"), login_as("security")
    stale = fresh(ReleaseSlip, slip.id)
    assert "您的角色不能" in post(clerk, "release_slip", stale, "use")
    post(guard, "release_slip", stale, "use")
    body = post(second_guard, "release_slip", stale, "use")  # same version: the second check loses
    slip = fresh(ReleaseSlip, slip.id)
    assert slip.state == "used" and slip.gate_checked_by.username == "guard"
    assert "已" in body and db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
        AuditEntry.record_type == "release_slip", AuditEntry.transition == "use")) == 1
    with pytest.raises(NotAllowed):
        engine.fire(slip, "void", staff(staff_ids, "security"), comment="重复")


def at_once(app: Any, staff_id: int, jobs: list[tuple[type, int, str, str]]) -> list[Any]:
    """Fire (model, id, transition, comment) jobs from separate sessions: each loads its record,
    all meet at a barrier, then fire at the version they loaded. Returns outcomes or exceptions."""
    import threading

    import flask_login

    barrier, results = threading.Barrier(len(jobs)), [None] * len(jobs)

    def run(i: int, model: type, record_id: int, name: str, comment: str) -> None:
        with app.test_request_context():
            try:
                me = db.session.get(Staff, staff_id)
                flask_login.login_user(me)
                record = db.session.get(model, record_id)
                version = record.version
                barrier.wait(timeout=30)
                results[i] = engine.fire(record, name, me, comment, version=version)
            except Exception as exc:  # noqa: BLE001  (the loser's refusal is the point)
                results[i] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_mov_4_concurrent_gate_checks_one_wins(app, staff_ids) -> None:
    """Two gate sessions load the slip at one version; exactly one check is written."""
    with app.test_request_context():
        move = ready_move_out(staff_ids)
        engine.fire(fresh(MoveOut, move.id), "issue_slip", staff(staff_ids, "cs_clerk"))
        slip_id = fresh(MoveOut, move.id).slips[0].id
        db.session.remove()
    results = at_once(app, staff_ids["security"], [(ReleaseSlip, slip_id, "use", ""),
                                                   (ReleaseSlip, slip_id, "void", "作废")])
    assert sorted(isinstance(r, str) for r in results) == [False, True], results
    with app.app_context():
        slip = db.session.get(ReleaseSlip, slip_id)
        assert slip.state in {"used", "void"}
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
            AuditEntry.record_type == "release_slip", AuditEntry.action == "transition")) == 1


def test_mov_4_two_desks_issuing_slips_at_once_never_share_a_number(app, staff_ids) -> None:
    """Two clerks issue slips for two move-outs at the same moment: a number is never given twice;
    a clerk who loses the race is told, nothing of the move-out is lost, and issuing again works."""
    from tests.helpers import make_building
    from workflow.engine import Conflict

    with app.test_request_context():
        building = make_building()
        moves = []
        for code in ("A-3-301", "A-4-401"):
            moves.append(make_move_out(unit=make_unit(building, code=code, floor=int(code[2]))))
        db.session.commit()
        move_ids = []
        for move in moves:
            clerk = staff(staff_ids, "cs_clerk")
            engine.fire(move, "settle_fees", clerk,
                        values={"fees_settled_on": TODAY.isoformat(), "finance_confirmed_by": "王会计"})
            engine.fire(move, "owner_consent", clerk, values={"owner_consent_name": "房东李"})
            engine.fire(move, "check_goods", clerk)
            move_ids.append(move.id)
        db.session.remove()
    outcomes = at_once(app, staff_ids["cs_clerk"], [(MoveOut, m, "issue_slip", "") for m in move_ids])
    results = dict(zip(move_ids, outcomes, strict=True))
    assert all(r == "done" or isinstance(r, Conflict) for r in results.values()), results
    with app.test_request_context():
        for move_id, outcome in results.items():
            if outcome != "done":  # told, nothing written: the clerk issues again
                assert not fresh(MoveOut, move_id).slips
                engine.fire(fresh(MoveOut, move_id), "issue_slip", staff(staff_ids, "cs_clerk"))
        numbers = sorted(s.number for s in db.session.scalars(sa.select(ReleaseSlip)))
        year = datetime.now(UTC).year
        assert numbers == [f"FX-{year}-00001", f"FX-{year}-00002"]
        db.session.remove()


# --- MOV-5 ---------------------------------------------------------------------------------------
def test_mov_5_damage_charged_and_restored_by_the_deadline(db_session, staff_ids, login_as) -> None:
    unit = make_unit()
    db.session.commit()
    clerk = login_as("cs_clerk")
    form = {"unit": unit.id, "mover": "搬家公司", "description": "电梯轿厢壁划伤", "restore_by": "2026-12-01 18:00"}
    body = clerk.post("/admin/move_damage/new/", data={"csrf_token": csrf_token(clerk), **form,
                                                       "amount": "-5"}).get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(MoveDamage)) == 0, body
    response = clerk.post("/admin/move_damage/new/", data={"csrf_token": csrf_token(clerk), **form,
                                                           "amount": "350.50"})
    assert response.status_code == 302, response.get_data(as_text=True)
    damage = db.session.scalar(sa.select(MoveDamage))
    assert damage.amount == Decimal("350.50") and damage.state == "charged"
    assert damage.due_at == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # the restore-by deadline, Beijing time
    post(clerk, "move_damage", damage, "restored")
    damage = fresh(MoveDamage, damage.id)
    assert damage.state == "restored" and damage.restored_at is not None


def test_mov_settle_window_is_a_setting(db_session, staff_ids) -> None:
    from workflow import settings

    assert settings.value("moving.settle_min_days") == 3 and settings.value("moving.settle_max_days") == 7
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Occupancy)) == 0


def permission_rows(unit: Any, resident: Any, other: Any, occupancy: Any) -> dict[str, int]:
    """One row per moving screen for the permission matrix (tests/test_permissions.py seed)."""
    move_in = MoveIn(unit=unit, resident=other, kind="owner", move_in_date=TODAY, id_checked=True)
    move_out = make_move_out(unit=make_unit(unit.building, code="A-12-1205"))  # a tenant's, next door
    slip = ReleaseSlip(unit=unit, carrier="搬家公司", goods="旧沙发", goods_checked=True)
    damage = MoveDamage(unit=unit, mover="搬家公司", description="墙面划伤", amount=Decimal("80.00"),
                        restore_by=datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    db.session.add_all([move_in, slip, damage])
    db.session.flush()
    return {"move_in": move_in.id, "move_out": move_out.id, "release_slip": slip.id, "move_damage": damage.id,
            "move_out_occupancy": move_out.occupancy_id}


def grow_moving(unit: Any, owner: Any, since: date, i: int) -> list[tuple[object, str]]:
    """tests/test_query_counts.py grow(): a move-in, a move-out, a slip and a damage per cell, with
    relations distinct per cell; the states returned are set by the caller."""
    tenant_occupancy = next(o for o in unit.occupancies if o.kind == "tenant")
    move_in = MoveIn(unit=unit, resident=owner, kind="owner", move_in_date=since, id_checked=True,
                     card_numbers=f"C{i}", key_count=2)
    move_out = MoveOut(occupancy=tenant_occupancy, unit=unit, planned_date=since, goods=f"家具 {i}")
    slip = ReleaseSlip(unit=unit, move_out=move_out, carrier=f"搬家 {i}", goods=f"家具 {i}", goods_checked=True)
    damage = MoveDamage(unit=unit, move_out=move_out, mover=f"搬家 {i}", description="划伤",
                        amount=Decimal("10.00"), restore_by=datetime(2026, 12, 1, tzinfo=UTC) + timedelta(days=i))
    db.session.add_all([move_in, move_out, slip, damage])
    return [(move_in, ("registered", "moved_in")[i % 2]), (move_out, ("open", "released")[i % 2]),
            (slip, ("issued", "used")[i % 2]), (damage, ("charged", "restored")[i % 2])]


def test_mov_3_owner_consent_scan_is_kept_with_the_move_out(db_session, login_as) -> None:
    import io

    from models.attachment import attachments_of

    move = make_move_out()
    db.session.commit()
    clerk = login_as("cs_clerk")
    pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    response = clerk.post("/admin/move_out/consent-scan/", data={
        "csrf_token": csrf_token(clerk), "id": move.id, "file": (io.BytesIO(pdf), "consent.pdf")},
        content_type="multipart/form-data")
    assert response.status_code == 302
    assert [a.original_filename for a in attachments_of("move_out", move.id, "scan")] == ["consent.pdf"]
    finance = login_as("finance")
    assert finance.post("/admin/move_out/consent-scan/", data={
        "csrf_token": csrf_token(finance), "id": move.id, "file": (io.BytesIO(pdf), "x.pdf")},
        content_type="multipart/form-data").status_code == 403


def test_mov_3_no_loose_slip_bypasses_an_open_move_out(db_session, login_as) -> None:
    move = make_move_out()
    db.session.commit()
    clerk = login_as("cs_clerk")
    body = clerk.post("/admin/release_slip/new/", data={
        "csrf_token": csrf_token(clerk), "unit": move.unit_id, "carrier": "搬家公司", "goods": "沙发一张",
        "goods_checked": "y"}).get_data(as_text=True)
    assert "MOV-3" in body
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ReleaseSlip)) == 0
