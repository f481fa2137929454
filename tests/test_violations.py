"""Violations (REGULATIONS §8): kinds, severity, registration and routing, penalties, deduction list,
follow-up and retention (VIO-1..4, 7, 8, 10, 11), through the engine and the screens.
The measure ladder and the arrears ladder are in tests/test_violation_measures.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from io import BytesIO
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from flask_babel import force_locale

from models import Staff, db
from models.base import utcnow
from models.validators import DomainError
from models.violations import Violation, ViolationCharge, deduction_list, new_from_renovation
from tests.conftest import PASSWORD, csrf_token
from tests.helpers import make_resident, make_unit, make_violation
from workflow import engine
from workflow.calendar import app_zone
from workflow.engine import MissingFields, NotAllowed

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
       b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")


# --- helpers ------------------------------------------------------------------------------------
@pytest.fixture()
def english(db_session: Any) -> Iterator[None]:
    db.session.execute(sa.update(Staff).values(locale="en"))
    db.session.commit()
    with force_locale("en"):
        yield


def person(staff_ids: dict[str, int], role: str) -> Staff:
    return db.session.get(Staff, staff_ids[role])


def fresh(violation_id: int) -> Violation:
    db.session.rollback()
    return db.session.get(Violation, violation_id)


def registered(staff_ids: dict[str, int], **overrides: Any) -> Violation:
    """Persuaded in vain, registered by the clerk: a coordination sheet is issued."""
    v = make_violation(**overrides)
    db.session.commit()
    clerk = person(staff_ids, "cs_clerk")
    engine.fire(v, "persuade", person(staff_ids, "security"), values={"persuasion_notes": "当场劝阻，住户不听"})
    engine.fire(v, "register", clerk)
    return fresh(v.id)


def sign(v: Violation, staff_ids: dict[str, int]) -> Violation:
    assert engine.decide(v, person(staff_ids, "manager"), True) == "approved"
    return fresh(v.id)


def refusal(call: Any) -> str:
    with pytest.raises((NotAllowed, MissingFields, DomainError)) as caught:
        call()
    with force_locale("en"):
        return str(getattr(caught.value, "message", caught.value))


def http_fire(client: FlaskClient, v: Violation, name: str, **fields: Any) -> str:
    data = {"csrf_token": csrf_token(client), "id": v.id, "name": name, "version": v.version, "comment": "",
            **fields}
    response = client.post("/admin/violation/transition/", data=data, follow_redirects=True)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def http_decide(client: FlaskClient, v: Violation, decision: str) -> str:
    data = {"csrf_token": csrf_token(client), "id": v.id, "version": v.version, "decision": decision,
            "comment": ""}
    return client.post("/admin/violation/decide/", data=data, follow_redirects=True).get_data(as_text=True)


def form(unit_id: int, **overrides: Any) -> dict[str, Any]:
    return {"occurred_at": "2026-11-23 09:00:00", "unit": unit_id, "location": "A栋12层消防通道",
            "kind": "fire", "sub_kind": "exits", "description": "消防通道堆放纸箱", "witness": "保安 李四",
            "severity": "general"} | overrides


def count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Violation)) or 0


# --- VIO-1 / VIO-2 ------------------------------------------------------------------------------
def test_vio_1_kinds_and_sub_kinds_through_the_form(db_session, login_as, english) -> None:
    unit = make_unit()
    db.session.commit()
    clerk = login_as("cs_clerk")
    response = clerk.post("/admin/violation/new/", data={"csrf_token": csrf_token(clerk), **form(unit.id)})
    assert response.status_code == 302
    v = db.session.scalar(sa.select(Violation))
    assert (v.kind, v.sub_kind, v.state, v.severity) == ("fire", "exits", "reported", "general")
    body = clerk.post("/admin/violation/new/", data={"csrf_token": csrf_token(clerk),
                                                    **form(unit.id, sub_kind="parking")}).get_data(as_text=True)
    assert "belongs to another kind of violation (VIO-1)" in body and count() == 1


def test_vio_1_every_kind_of_the_regulation_is_offered() -> None:
    from models.violation_rules import KINDS, SUB_KINDS

    assert set(KINDS) == {"renovation", "fire", "hygiene", "order", "fees", "other"}
    assert {"structure", "load_bearing", "utilities", "grilles", "floor_drains"} == set(SUB_KINDS["renovation"])
    assert {"exits", "equipment", "wiring", "burning", "extinguishers"} == set(SUB_KINDS["fire"])
    assert {"litter", "damage", "clutter", "throwing", "noise", "plants", "pets"} == set(SUB_KINDS["hygiene"])
    assert {"parking", "hazardous", "gambling", "fighting"} == set(SUB_KINDS["order"])


def test_vio_1_ren_5_written_notice_becomes_a_renovation_violation(db_session, staff_ids) -> None:
    from models.renovation import Renovation

    unit, owner = make_unit(), make_resident()
    renovation = Renovation(unit=unit, applicant=owner)  # not flushed: only the link is under test
    v = new_from_renovation(renovation, person(staff_ids, "management_dept"), "擅自拆改承重墙")
    assert v in db.session and v.kind == "renovation" and v.renovation is renovation and v.unit is unit
    assert v.resident is owner and v.persuaded_at is not None  # the inspector's verbal warning
    db.session.rollback()


def test_vio_2_economic_loss_or_public_safety_makes_it_major(db_session, login_as, english) -> None:
    v = make_violation(public_safety=True)
    with force_locale("en"):
        assert "makes it major (VIO-2)" in refusal(v.check_intake)
    v.severity = "major"
    v.check_intake()
    assert v.responsible_role == "manager"
    db.session.rollback()
    unit = make_unit()
    db.session.commit()
    clerk = login_as("cs_clerk")
    body = clerk.post("/admin/violation/new/", data={"csrf_token": csrf_token(clerk),
                                                    **form(unit.id, economic_loss="y")}).get_data(as_text=True)
    assert "makes it major (VIO-2)" in body and count() == 0
    assert clerk.post("/admin/violation/new/", data={"csrf_token": csrf_token(clerk), **form(
        unit.id, economic_loss="y", severity="major")}).status_code == 302
    assert db.session.scalar(sa.select(Violation.responsible_role)) == "manager"


def test_vio_4_only_the_manager_regrades_a_major_violation_as_general(db_session, login_as, english) -> None:
    """Unticking the facts must not move a major violation from the manager to the supervisor."""
    unit = make_unit()
    db.session.commit()
    clerk = login_as("cs_clerk")
    clerk.post("/admin/violation/new/", data={"csrf_token": csrf_token(clerk), **form(
        unit.id, economic_loss="y", severity="major")})
    v = db.session.scalar(sa.select(Violation))
    edit = {**form(unit.id), "version": str(v.version)}  # loss unticked, severity general
    body = clerk.post(f"/admin/violation/edit/?id={v.id}", data={"csrf_token": csrf_token(clerk), **edit},
                      follow_redirects=True).get_data(as_text=True)
    assert "Only the manager may regrade a major violation" in body
    v = fresh(v.id)
    assert (v.severity, v.responsible_role, v.economic_loss) == ("major", "manager", True)
    manager = login_as("manager")
    response = manager.post(f"/admin/violation/edit/?id={v.id}", data={"csrf_token": csrf_token(manager), **edit})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert (fresh(v.id).severity, fresh(v.id).responsible_role) == ("general", "cs_supervisor")


# --- VIO-3: persuade first, register, numbered coordination sheet ------------------------------
def test_vio_3_persuasion_first_then_a_numbered_coordination_sheet(db_session, staff_ids, english) -> None:
    clerk = person(staff_ids, "cs_clerk")
    v = make_violation()
    db.session.commit()
    assert "persuasion first (VIO-3)" in refusal(lambda: engine.fire(v, "register", clerk))
    v = fresh(v.id)
    engine.fire(v, "persuade", person(staff_ids, "engineering"), values={"persuasion_notes": "劝其清理"})
    engine.fire(v, "register", clerk)
    v = fresh(v.id)
    year = utcnow().astimezone(app_zone()).year  # the Beijing year of registration
    assert v.state == "registered" and v.sheet_no == f"XTD-{year}-0001" and v.sheet_issued_at is not None
    second = registered(staff_ids)
    assert second.sheet_no == f"XTD-{year}-0002"
    assert [a.code for a in fresh(v.id).actions] == ["persuasion", "register"]


def test_vio_3_sheet_numbers_are_unique_so_a_racing_writer_fails(db_session, staff_ids) -> None:
    first = registered(staff_ids)
    clash = make_violation()
    clash.sheet_no = first.sheet_no
    with pytest.raises(sa.exc.IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_vio_3_desk_registers_over_http_with_evidence(db_session, staff_ids, login_as, english) -> None:
    v = make_violation()
    db.session.commit()
    clerk = login_as("cs_clerk")
    body = http_fire(clerk, v, "register")
    assert "persuasion first (VIO-3)" in body and fresh(v.id).state == "reported"
    http_fire(clerk, fresh(v.id), "persuade", field_persuasion_notes="当面劝阻无效")
    http_fire(clerk, fresh(v.id), "register")
    assert fresh(v.id).sheet_no.startswith("XTD-")
    response = clerk.post("/admin/violation/evidence/", data={
        "csrf_token": csrf_token(clerk), "id": v.id, "file": (BytesIO(PNG), "photo.png")},
        content_type="multipart/form-data", follow_redirects=True)
    assert response.status_code == 200
    from models.attachment import attachments_of

    assert [a.kind for a in attachments_of("violation", v.id)] == ["scan"]
    finance = login_as("finance")
    assert finance.post("/admin/violation/evidence/", data={
        "csrf_token": csrf_token(finance), "id": v.id}).status_code == 403


# --- VIO-4: routing -----------------------------------------------------------------------------
def test_vio_4_general_to_the_supervisor_major_to_the_manager(db_session, staff_ids, english) -> None:
    from workflow.inbox import my_work

    general = registered(staff_ids)
    major = registered(staff_ids, severity="major", economic_loss=True)
    assert (general.responsible_role, major.responsible_role) == ("cs_supervisor", "manager")
    supervisor, manager = person(staff_ids, "cs_supervisor"), person(staff_ids, "manager")
    mine = {i.record.id for i in my_work(supervisor) if isinstance(i.record, Violation)}
    theirs = {i.record.id for i in my_work(manager) if isinstance(i.record, Violation)}
    assert general.id in mine and major.id not in mine and major.id in theirs
    assert "handled by the manager (VIO-4)" in refusal(
        lambda: engine.fire(major, "close", supervisor, comment="已整改"))
    engine.fire(fresh(major.id), "close", manager, comment="已整改")
    assert fresh(major.id).state == "closed"


# --- VIO-7: penalties -----------------------------------------------------------------------------
def test_vio_7_only_manager_or_supervisor_penalise_and_only_signed_takes_effect(
        db_session, staff_ids, login_as, english) -> None:
    v = registered(staff_ids, economic_loss=True, severity="major")
    clerk_client = login_as("cs_clerk")
    body = http_fire(clerk_client, v, "rectify", field_rectify_by="2026-12-31 18:00")
    assert "may not do" in body and fresh(v.id).pending_transition is None
    supervisor = person(staff_ids, "cs_supervisor")
    assert "major violation (VIO-7)" in refusal(
        lambda: engine.fire(fresh(v.id), "rectify", supervisor, values={"rectify_by": "2026-12-31"}))
    offered = {t.name for t in engine.available(fresh(v.id), supervisor)}  # fields empty: still not offered
    assert not offered & {"rectify", "compensate", "criticise", "sue", "arrears_late_fee", "arrears_penalty"}
    assert "rectify" in {t.name for t in engine.available(fresh(v.id), person(staff_ids, "manager"))}
    general = registered(staff_ids)
    sup = login_as("cs_supervisor")
    assert "Sent for approval" in http_fire(sup, general, "rectify", field_rectify_by="2026-12-31 18:00")
    general = fresh(general.id)
    assert general.pending_transition == "rectify" and general.penalised_at is None  # not effective yet
    manager = login_as("manager")
    assert "Approved" in http_decide(manager, general, "approve")
    general = fresh(general.id)
    assert general.measure_level == 1 and general.penalised_at is not None
    assert general.actions[-1].signed_by_id == person(staff_ids, "manager").id


def test_vio_7_unsigned_compensation_is_not_on_the_deduction_list(db_session, staff_ids) -> None:
    v = registered(staff_ids, economic_loss=True, severity="major")
    manager = person(staff_ids, "manager")
    engine.fire(v, "rectify", manager, values={"rectify_by": "2026-12-31"})
    v = sign(fresh(v.id), staff_ids)
    assert engine.fire(v, "compensate", manager, values={"compensation_amount": "1200.50"}) == "requested"
    assert deduction_list("9999-12") == [] and fresh(v.id).charges == []
    v = sign(fresh(v.id), staff_ids)
    [charge] = deduction_list("9999-12")
    assert charge.amount == Decimal("1200.50") and isinstance(charge.amount, Decimal)
    assert charge.month == utcnow().astimezone(app_zone()).strftime("%Y-%m")  # listed in the month it was signed


def test_vio_7_setting_can_take_general_penalties_from_the_supervisor(db_session, staff_ids, english) -> None:
    from workflow import settings

    v = registered(staff_ids)
    settings.change("violation.supervisor_may_penalise_general", "0", person(staff_ids, "admin"))
    db.session.commit()
    assert "the setting allows" in refusal(
        lambda: engine.fire(fresh(v.id), "rectify", person(staff_ids, "cs_supervisor"),
                            values={"rectify_by": "2026-12-31"}))
    assert engine.fire(fresh(v.id), "rectify", person(staff_ids, "manager"),
                       values={"rectify_by": "2026-12-31"}) == "requested"


# --- VIO-8: the month-end deduction list ----------------------------------------------------------
def _effective_charge(staff_ids: dict[str, int]) -> ViolationCharge:
    v = registered(staff_ids, economic_loss=True, severity="major", resident=make_resident())
    manager = person(staff_ids, "manager")
    engine.fire(v, "rectify", manager, values={"rectify_by": "2026-12-31"})
    v = sign(fresh(v.id), staff_ids)
    engine.fire(v, "compensate", manager, values={"compensation_amount": "800"})
    v = sign(fresh(v.id), staff_ids)
    return v.charges[0]


def test_vio_8_month_end_list_for_finance_collected_leaves_it(db_session, staff_ids, login_as, english) -> None:
    charge = _effective_charge(staff_ids)
    finance = login_as("finance")
    page = finance.get(f"/admin/violation-deductions/?month={charge.month}").get_data(as_text=True)
    assert "800.00" in page and "Mark collected" in page
    earlier = finance.get("/admin/violation-deductions/?month=2000-01").get_data(as_text=True)
    assert "800.00" not in earlier
    # ACC-5: the list names residents, so the password is asked first
    assert "/reauth" in finance.get(f"/admin/violation-deductions/export.xlsx?month={charge.month}").location
    finance.post("/reauth", data={"csrf_token": csrf_token(finance), "password": PASSWORD})
    xlsx = finance.get(f"/admin/violation-deductions/export.xlsx?month={charge.month}")
    assert xlsx.status_code == 200 and xlsx.data[:2] == b"PK"
    from openpyxl import load_workbook

    sheet = load_workbook(BytesIO(xlsx.data)).active
    assert Decimal(str(sheet.cell(2, 5).value)) == Decimal("800.00")
    assert login_as("cs_clerk").get("/admin/violation-deductions/").status_code == 403
    response = finance.post("/admin/violation-deductions/collect/", data={
        "csrf_token": csrf_token(finance), "id": charge.id, "month": charge.month}, follow_redirects=True)
    assert response.status_code == 200
    db.session.rollback()
    assert db.session.get(ViolationCharge, charge.id).collected_at is not None
    assert deduction_list(charge.month) == []


# --- VIO-10: follow-up after a penalty ------------------------------------------------------------
def test_vio_10_follow_up_after_a_penalty_before_closing(db_session, staff_ids, login_as, english) -> None:
    v = registered(staff_ids)
    supervisor = person(staff_ids, "cs_supervisor")
    engine.fire(v, "rectify", supervisor, values={"rectify_by": "2026-12-31"})
    v = sign(fresh(v.id), staff_ids)
    assert v.due_at is not None  # the follow-up clock runs
    assert "follow-up after the penalty first (VIO-10)" in refusal(
        lambda: engine.fire(v, "close", supervisor, comment="已整改"))
    clerk = login_as("cs_clerk")
    http_fire(clerk, fresh(v.id), "follow_up", comment="上门回访，关系缓和")
    v = fresh(v.id)
    assert v.followed_up_at is not None and v.due_at is None
    engine.fire(v, "close", supervisor, comment="已整改")
    assert fresh(v.id).state == "closed"


# --- VIO-11: retention ----------------------------------------------------------------------------
def test_vio_11_general_due_after_a_year_major_kept_five(db_session, staff_ids) -> None:
    from models.retention import RetentionPolicy
    from workflow import retention

    retention.seed_policies()
    db.session.commit()
    general, major = make_violation(), make_violation(severity="major", public_safety=True)
    db.session.commit()
    closed = utcnow() - timedelta(days=396)  # about 13 months ago
    db.session.execute(sa.update(Violation.__table__).where(Violation.__table__.c.id.in_([general.id, major.id]))
                       .values(state="closed", closed_at=closed))
    db.session.commit()
    policies = {p.code: p for p in db.session.scalars(sa.select(RetentionPolicy).where(
        RetentionPolicy.code.in_(["vio11_general", "vio11_major"])))}
    assert retention.due(policies["vio11_general"]).ids() == [general.id]
    assert retention.due(policies["vio11_major"]).ids() == []
    assert retention.due(policies["vio11_major"], utcnow() + timedelta(days=5 * 366)).ids() == [major.id]


def test_vio_3_details_show_steps_prints_and_buttons_the_role_may_use(db_session, staff_ids, login_as,
                                                                     english) -> None:
    v = registered(staff_ids)
    page = login_as("cs_supervisor").get(f"/admin/violation/details/?id={v.id}").get_data(as_text=True)
    assert "Steps taken" in page and f"/admin/violation/print/notice/{v.id}.pdf" in page
    assert "Order rectification by a deadline" in page and "cut_notice" not in page
    finance = login_as("finance").get(f"/admin/violation/details/?id={v.id}").get_data(as_text=True)
    assert "Order rectification by a deadline" not in finance and "evidence-form" not in finance
