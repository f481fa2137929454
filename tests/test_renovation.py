"""Renovation (装修管理, REGULATIONS §7): REN-1..REN-8 through the engine. The screens are proven in
tests/test_renovation_views.py."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from flask_babel import gettext

from models import db
from models.attachment import attachments_of
from models.renovation import HotWork, Renovation, TemporaryPower, add_drawing, documents_of_unit
from models.validators import DomainError
from tests.helpers import (
    bring_acceptance_documents,
    make_occupancy,
    make_renovation,
    make_resident,
    make_unit,
    valid_id,
)
from tests.workflow_fixtures import staff
from workflow import engine
from workflow.engine import MissingFields, NotAllowed

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 40
PDF = b"%PDF-1.4\n%drawing\n"


def tr(msgid: str, **kw: object) -> str:
    """The message as the UI shows it (zh_CN once translated), escaped for ``match``."""
    return re.escape(str(gettext(msgid, **kw)))


def fresh(ren_id: int) -> Renovation:
    db.session.rollback()
    return db.session.get(Renovation, ren_id)


def to_state(ren: Renovation, ids: dict[str, int], target: str) -> Renovation:
    """Walk a renovation along the happy path up to ``target``."""
    steps = [("submit", "cs_clerk", {}),
             ("approve", "engineering", {"deposit_amount": "2000", "debris_fee": "300", "pass_count": "2"}),
             ("pay_deposit", "finance", {"receipt_no": "R1"}), ("pay_debris", "finance", {"receipt_no": "R2"}),
             ("pay_pass_deposits", "finance", {"receipt_no": "R3"}),
             ("issue_permit", "cs_clerk", {"neighbours_notified": "1103, 1303 书面通知"}),
             ("finish", "cs_clerk", {"finished_at": date.today().isoformat()}),
             ("apply_acceptance", "cs_clerk", {"asbuilt_sets": "3"}),
             ("pass_inspection", "engineering", {"vents_unsealed_note": "厨卫排风口已启封"}),
             ("return_passes", "cs_clerk", {}), ("refund", "finance", {"receipt_no": "T1"})]
    if ren.pass_deposit_each is None:
        ren.pass_deposit_each = Decimal("50")
        db.session.commit()
    for name, role, values in steps:
        if ren.state == target:
            break
        if name == "apply_acceptance" and not ren.receipt_scans:
            bring_acceptance_documents(ren, staff(ids, role))  # REN-10
        engine.fire(ren, name, staff(ids, role), values=values)
    assert ren.state == target
    return ren


# --- REN-1 ------------------------------------------------------------------------------------
def test_ren_1_submission_refused_until_every_check_holds(db_session, staff_ids) -> None:
    ren = make_renovation(pledge_signed=False, drawing_count=0, drawing_lighting=False, drawing_ceiling=False,
                          fees_paid_until=date.today() - timedelta(days=90))
    db.session.commit()
    clerk = staff(staff_ids, "cs_clerk")
    with pytest.raises(NotAllowed) as refused:
        engine.fire(ren, "submit", clerk)
    text = str(refused.value)
    for msgid in ("The pledge (move in only after acceptance) must be signed.",
                  "Tick which drawings the applicant handed in.", "Upload the drawings (PDF, PNG or JPEG)."):
        assert str(gettext(msgid)) in text
    assert re.search(tr("Management fees are only paid up to %(d)s: the arrears must be settled first.",
                        d=(date.today() - timedelta(days=90)).isoformat()), text)
    ren = fresh(ren.id)
    assert ren.state == "draft"
    ren.pledge_signed, ren.drawing_lighting, ren.fees_paid_until = True, True, date.today() + timedelta(days=30)
    add_drawing(ren, PDF, "照明.pdf", clerk)
    db.session.commit()
    engine.fire(ren, "submit", clerk)
    assert ren.state == "submitted" and ren.submitted_at is not None
    assert [a.kind for a in attachments_of("renovation", ren.id)] == ["drawing"]


def test_ren_1_tenant_needs_complete_tenancy_papers(db_session, staff_ids) -> None:
    from tests.helpers import make_unit

    unit = make_unit()
    tenant = make_resident(name="租户李四", id_number=valid_id(serial=7))
    make_occupancy(unit, tenant, kind="tenant")
    ren = make_renovation(unit=unit, applicant=tenant)
    db.session.commit()
    with pytest.raises(NotAllowed, match=tr("The applicant is a tenant: the tenancy papers must be complete.")):
        engine.fire(ren, "submit", staff(staff_ids, "cs_clerk"))
    ren = fresh(ren.id)
    ren.tenancy_papers_complete = True
    db.session.commit()
    engine.fire(ren, "submit", staff(staff_ids, "cs_clerk"))
    assert ren.state == "submitted"


def test_ren_1_applicant_must_live_in_the_unit(db_session, staff_ids) -> None:
    ren = make_renovation()
    stranger = make_resident(name="路人", id_number=valid_id(serial=9))
    ren.applicant = stranger
    with pytest.raises(DomainError, match=tr("The applicant is not a current owner or occupant of the unit.")):
        ren.check_application()
    db.session.commit()
    with pytest.raises(NotAllowed, match=tr("The applicant is not a current owner or occupant of the unit.")):
        engine.fire(ren, "submit", staff(staff_ids, "cs_clerk"))


def test_ren_1_drawings_only_pdf_png_jpeg_within_the_limit(db_session, staff_ids) -> None:
    ren = make_renovation(drawing_count=0)
    with pytest.raises(DomainError, match="PDF"):
        add_drawing(ren, b"GIF89a....", "plan.gif", None)
    with pytest.raises(DomainError, match="8"):
        add_drawing(ren, PDF + b"0" * (8 * 1024 * 1024), "big.pdf", None)
    assert ren.drawing_count == 0
    add_drawing(ren, PNG, "插座.png", None)
    assert ren.drawing_count == 1


# --- REN-2 ------------------------------------------------------------------------------------
def test_ren_2_defects_go_to_owner_and_tenant_and_back_to_the_applicant(db_session, staff_ids) -> None:
    ren = make_renovation()
    tenant = make_resident(name="租户王五", id_number=valid_id(serial=5))
    make_occupancy(ren.unit, tenant, kind="tenant")
    db.session.commit()
    engine.fire(ren, "submit", staff(staff_ids, "cs_clerk"))
    assert ren.due_at is not None  # the 3-working-day review clock runs
    with pytest.raises(NotAllowed):
        engine.fire(ren, "return_defects", staff(staff_ids, "cs_clerk"), values={"defects_found": "x"})
    with pytest.raises(MissingFields):
        engine.fire(ren, "return_defects", staff(staff_ids, "engineering"))
    engine.fire(ren, "return_defects", staff(staff_ids, "engineering"), values={"defects_found": "卫生间防水未做"})
    ren = fresh(ren.id)
    assert ren.state == "returned"
    defects = [n for n in ren.notices if n.kind == "defects"]
    assert sorted(n.addressed_to.split(" ")[0] for n in defects) == sorted([ren.applicant.name, "租户王五"])
    assert all(n.text == "卫生间防水未做" for n in defects)
    engine.fire(ren, "submit", staff(staff_ids, "cs_clerk"))  # resubmitted after fixing
    assert ren.state == "submitted"


def test_ren_2_engineering_sets_the_fees_in_decimal(db_session, staff_ids) -> None:
    ren = make_renovation()
    db.session.commit()
    engine.fire(ren, "submit", staff(staff_ids, "cs_clerk"))
    with pytest.raises(DomainError):
        engine.fire(ren, "approve", staff(staff_ids, "engineering"),
                    values={"deposit_amount": "abc", "debris_fee": "1", "pass_count": "1"})
    ren = fresh(ren.id)
    ren.pass_deposit_each = Decimal("50.00")
    db.session.commit()
    engine.fire(ren, "approve", staff(staff_ids, "engineering"),
                values={"deposit_amount": "2,000", "debris_fee": "300.5", "pass_count": "3"})
    ren = fresh(ren.id)
    amounts = {c.kind: c.amount for c in ren.charges}
    assert amounts == {"deposit": Decimal("2000.00"), "debris": Decimal("300.50"), "pass_deposit": Decimal("150.00")}
    assert ren.state == "approved"


# --- REN-3 ------------------------------------------------------------------------------------
def test_ren_3_permit_only_after_every_fee_is_paid(db_session, staff_ids) -> None:
    ren = to_state(make_renovation(pass_deposit_each=Decimal("50")), staff_ids, "approved")
    engine.fire(ren, "pay_deposit", staff(staff_ids, "finance"), values={"receipt_no": "R1"})
    with pytest.raises(NotAllowed, match=tr("Finance has not recorded every fee and deposit yet.")):
        engine.fire(ren, "issue_permit", staff(staff_ids, "cs_clerk"), values={"neighbours_notified": "1103"})
    with pytest.raises(NotAllowed):  # only finance records payments
        engine.fire(fresh(ren.id), "pay_debris", staff(staff_ids, "cs_clerk"), values={"receipt_no": "R2"})
    ren = fresh(ren.id)
    engine.fire(ren, "pay_debris", staff(staff_ids, "finance"), values={"receipt_no": "R2"})
    engine.fire(ren, "pay_pass_deposits", staff(staff_ids, "finance"), values={"receipt_no": "R3"})
    engine.fire(ren, "issue_permit", staff(staff_ids, "cs_clerk"), values={"neighbours_notified": "1103、1303"})
    ren = fresh(ren.id)
    assert ren.state == "permitted" and ren.permit_no.startswith("ZX")
    assert [p.number for p in ren.passes] == [f"{ren.permit_no}-01", f"{ren.permit_no}-02"]
    assert all(p.deposit == Decimal("50.00") for p in ren.passes)
    assert {n.kind for n in ren.notices} >= {"neighbours", "permit"}


# --- REN-4 ------------------------------------------------------------------------------------
def test_ren_4_hot_work_needs_engineering_and_security_jointly(db_session, staff_ids) -> None:
    from models.base import utcnow

    ren = to_state(make_renovation(), staff_ids, "permitted")
    hot = HotWork(renovation=ren, work="焊接", location="阳台", starts_at=utcnow() + timedelta(days=1),
                  ends_at=utcnow() + timedelta(days=1, hours=3), operator="焊工赵", fire_watch="保安钱",
                  lead_name="施工队长 孙", lead_phone="13800138000", lead_id_no="T4412021990",
                  extinguishers_ready=True)
    hot.check_times()
    db.session.add(hot)
    db.session.commit()
    assert engine.fire(hot, "approve", staff(staff_ids, "cs_clerk")) == "requested"
    engine.decide(hot, staff(staff_ids, "security"), True)
    assert hot.state == "applied"  # security alone is not enough
    with pytest.raises(NotAllowed):
        engine.decide(hot, staff(staff_ids, "security"), True)
    engine.decide(hot, staff(staff_ids, "engineering"), True)
    assert hot.state == "approved"


def test_ren_4_temporary_power_priced_paid_then_granted(db_session, staff_ids) -> None:
    ren = to_state(make_renovation(), staff_ids, "permitted")
    power = TemporaryPower(renovation=ren, purpose="切割机临时用电", load_kw="5")
    db.session.add(power)
    db.session.commit()
    with pytest.raises(NotAllowed):
        engine.fire(power, "pay", staff(staff_ids, "finance"), values={"receipt_no": "P1"})
    engine.fire(power, "price_it", staff(staff_ids, "engineering"), values={"price": "120.00"})
    with pytest.raises(NotAllowed):
        engine.fire(power, "pay", staff(staff_ids, "engineering"), values={"receipt_no": "P1"})
    engine.fire(power, "pay", staff(staff_ids, "finance"), values={"receipt_no": "P1"})
    assert power.state == "granted" and power.price == Decimal("120.00")
    assert any(c.kind == "power" and c.amount == Decimal("120.00") for c in fresh(ren.id).charges)


# --- REN-5 ------------------------------------------------------------------------------------
def test_ren_5_patrols_and_the_warning_ladder_in_order(db_session, staff_ids) -> None:
    ren = to_state(make_renovation(), staff_ids, "permitted")
    for role in ("engineering", "management_dept", "security"):
        engine.fire(ren, "patrol", staff(staff_ids, role), values={"inspection_findings": "正常施工"})
    sign = {"breach_description": "敲打承重墙", "contractor_signature": "李工"}
    ladder = tr("The warning ladder goes in order: verbal warning, written violation notice, final "
                "warning, then power cut or clearing the site.")
    with pytest.raises(NotAllowed, match=ladder):
        engine.fire(ren, "warn_final", staff(staff_ids, "security"), values=sign)
    ren = fresh(ren.id)
    with pytest.raises(NotAllowed):  # the desk does not patrol
        engine.fire(ren, "warn_verbal", staff(staff_ids, "cs_clerk"), values=sign)
    ren = fresh(ren.id)
    with pytest.raises(MissingFields):  # the contractor's signature is required
        engine.fire(ren, "warn_verbal", staff(staff_ids, "security"), values={"breach_description": "x"})
    ren = fresh(ren.id)
    for name in ("warn_verbal", "warn_written", "warn_final", "cut_power"):
        engine.fire(ren, name, staff(staff_ids, "management_dept"), values=sign)
    ren = fresh(ren.id)
    assert ren.state == "suspended"
    assert [w.level for w in ren.warnings] == ["verbal", "written", "final", "cut"]
    assert all(w.inspector.username == "patrol" and w.contractor_signature == "李工" for w in ren.warnings)
    assert [i.department for i in ren.inspections if i.result == "ok"] == ["engineering", "management", "security"] \
        or len([i for i in ren.inspections if i.result == "ok"]) == 3
    with pytest.raises(MissingFields):
        engine.fire(ren, "restore", staff(staff_ids, "engineering"))
    ren = fresh(ren.id)
    engine.fire(ren, "restore", staff(staff_ids, "engineering"),
                values={"contractor_commitment": "保证不再拆改承重墙", "contractor_signature": "李工"})
    ren = fresh(ren.id)
    assert ren.state == "permitted" and ren.ladder() == []
    assert ren.warnings[-1].level == "restored"


def test_ren_5_written_notice_creates_a_violation_when_installed(db_session, staff_ids) -> None:
    violations = pytest.importorskip("models.violations")
    if not hasattr(violations, "new_from_renovation"):
        pytest.skip("models.violations.new_from_renovation not installed yet")
    ren = to_state(make_renovation(), staff_ids, "permitted")
    sign = {"breach_description": "擅自改动外立面", "contractor_signature": "李工"}
    engine.fire(ren, "warn_verbal", staff(staff_ids, "security"), values=sign)
    engine.fire(ren, "warn_written", staff(staff_ids, "security"), values=sign)
    ren = fresh(ren.id)
    written = ren.warnings[-1]
    assert written.violation_id is not None
    violation = db.session.get(violations.Violation, written.violation_id)
    assert violation.renovation_id == ren.id


# --- REN-6 ------------------------------------------------------------------------------------
def test_ren_6_extension_approved_by_engineering(db_session, staff_ids) -> None:
    ren = to_state(make_renovation(), staff_ids, "permitted")
    old_end = ren.works_until
    with pytest.raises(NotAllowed, match=tr("The new end date must be after the current end of the works.")):
        engine.fire(ren, "extend", staff(staff_ids, "cs_clerk"),
                    values={"extension_until": old_end.isoformat(), "extension_reason": "材料延误"})
    ren = fresh(ren.id)
    new_end = old_end + timedelta(days=14)
    assert engine.fire(ren, "extend", staff(staff_ids, "cs_clerk"),
                       values={"extension_until": new_end.isoformat(), "extension_reason": "材料延误"}) == "requested"
    with pytest.raises(NotAllowed):
        engine.decide(ren, staff(staff_ids, "finance"), True)
    engine.decide(ren, staff(staff_ids, "engineering"), True)
    ren = fresh(ren.id)
    assert ren.works_until == new_end
    assert [(e.old_end, e.new_end, e.approved_by.username) for e in ren.extensions] == [(old_end, new_end, "engineer")]


# --- REN-7 ------------------------------------------------------------------------------------
def test_ren_7_rectification_reinspection_acceptance_and_refund(db_session, staff_ids) -> None:
    ren = to_state(make_renovation(), staff_ids, "inspecting")
    assert ren.due_at is not None  # 3-working-day inspection clock
    past = (date.today() - timedelta(days=1)).isoformat()
    with pytest.raises(NotAllowed, match=tr("The rectification deadline must be in the future.")):
        engine.fire(ren, "fail_inspection", staff(staff_ids, "engineering"),
                    values={"rectification_items": "烟感被遮挡", "rectify_by": past})
    ren = fresh(ren.id)
    due = (date.today() + timedelta(days=5)).isoformat()
    for _ in range(2):  # repeatable
        engine.fire(ren, "fail_inspection", staff(staff_ids, "engineering"),
                    values={"rectification_items": "烟感被遮挡", "rectify_by": due})
        assert ren.state == "rectifying" and ren.due_at is not None
        engine.fire(ren, "reinspect", staff(staff_ids, "cs_clerk"))
    engine.fire(ren, "pass_inspection", staff(staff_ids, "engineering"),
                values={"vents_unsealed_note": "厨卫排风口已启封"})
    ren = fresh(ren.id)
    assert ren.state == "accepted" and ren.vents_unsealed_at is not None and ren.due_at is not None
    assert [n.kind for n in ren.notices].count("rectification") == 2
    assert "acceptance" in [n.kind for n in ren.notices]
    with pytest.raises(NotAllowed, match=tr("Every worker pass must be returned before the deposits are refunded.")):
        engine.fire(ren, "refund", staff(staff_ids, "finance"), values={"receipt_no": "T1"})
    ren = fresh(ren.id)
    engine.fire(ren, "return_passes", staff(staff_ids, "cs_clerk"))
    engine.fire(ren, "refund", staff(staff_ids, "finance"), values={"receipt_no": "T1"})
    ren = fresh(ren.id)
    assert ren.state == "closed" and ren.due_at is None
    assert all(c.refunded_amount == c.amount for c in ren.charges if c.refundable)
    assert all(p.returned_at and p.refunded_at for p in ren.passes)


def test_ren_7_finished_starts_the_seven_working_day_clock(db_session, staff_ids) -> None:
    from models.deadline import DeadlineClock

    early = to_state(make_renovation(), staff_ids, "permitted")
    with pytest.raises(NotAllowed, match=tr("The works cannot have finished in the future.")):
        engine.fire(early, "finish", staff(staff_ids, "cs_clerk"),
                    values={"finished_at": (date.today() + timedelta(days=3)).isoformat()})
    db.session.rollback()
    ren = to_state(make_renovation(unit=make_unit(early.unit.building, code="A-12-1209")), staff_ids, "finished")
    clocks = db.session.scalars(sa.select(DeadlineClock).where(DeadlineClock.record_type == "renovation",
                                                               DeadlineClock.record_id == ren.id)).all()
    assert any(c.name == "apply_acceptance" and c.met_at is None for c in clocks)


# --- REN-8 ------------------------------------------------------------------------------------
def test_ren_8_documents_filed_under_the_unit(db_session, staff_ids) -> None:
    ren = make_renovation(drawing_count=0)
    add_drawing(ren, PDF, "吊顶.pdf", staff(staff_ids, "cs_clerk"))
    db.session.commit()
    to_state(ren, staff_ids, "closed")
    docs = documents_of_unit(ren.unit_id)
    kinds = [d.kind for d in docs]
    assert kinds[0] == "drawing" and {"permit", "neighbours", "acceptance"} <= set(kinds)
    assert all(d.renovation_id == ren.id for d in docs)
    assert documents_of_unit(ren.unit_id + 999) == []


def test_ren_demo_seed_has_a_renovation_in_every_state(runner, db_session) -> None:
    from models.base import utcnow
    from seed.demo_renovation import PLAN

    result = runner.invoke(args=["seed", "--demo"])
    assert result.exit_code == 0, result.output
    states = set(db.session.scalars(sa.select(Renovation.state)))
    assert states == set(PLAN)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(HotWork)) == 1
    # REN-11: a site whose patrol was missed yesterday: an overdue item in the management department's 待办
    from models.renovation import RenovationPatrolDay
    from models.staff import Staff
    from workflow.inbox import my_work

    patrol = db.session.scalar(sa.select(Staff).where(Staff.username == "patrol"))
    items = [i for i in my_work(patrol) if isinstance(i.record, RenovationPatrolDay)]
    overdue = [i for i in items if i.due_at < utcnow()]
    assert overdue and [t.name for t in overdue[0].transitions] == ["explain_missed"]
    assert any(t.name == "record_patrol" for i in items for t in i.transitions)  # today's, still due
