"""Violations: the measure ladder and its preconditions (VIO-5, VIO-6), the arrears ladder for refused
fees (VIO-9) and the printed notices, through the engine and the screens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from models import AuditEntry, db
from models.base import utcnow
from models.violations import Violation
from tests.test_violations import english, fresh, http_decide, http_fire, person, refusal, registered, sign
from workflow import engine

__all__ = ["english"]  # the fixture, used by name


def rectified(staff_ids: dict[str, int], **overrides: Any) -> Violation:
    v = registered(staff_ids, **overrides)
    engine.fire(v, "rectify", person(staff_ids, "manager"), values={"rectify_by": "2026-12-31"})
    return sign(fresh(v.id), staff_ids)


def compensated(staff_ids: dict[str, int]) -> Violation:
    v = rectified(staff_ids, economic_loss=True, severity="major")
    engine.fire(v, "compensate", person(staff_ids, "manager"), values={"compensation_amount": "500"})
    return sign(fresh(v.id), staff_ids)


def local(at: Any) -> str:
    """As typed into a step's field: Beijing time."""
    from workflow.calendar import app_zone

    return at.astimezone(app_zone()).strftime("%Y-%m-%d %H:%M")


def cut_values(**overrides: Any) -> dict[str, Any]:
    now = utcnow()
    return {"cut_reason": "refused_compensation", "utility": "water", "covenant_clause": "《业主公约》第十二条",
            "cut_notice_at": local(now - timedelta(hours=1)),
            "cut_planned_at": local(now + timedelta(days=3, minutes=1))} | overrides


def backdate(v: Violation, **columns: Any) -> Violation:
    """Time passing: written straight to the table, as the clock would have it."""
    db.session.execute(sa.update(Violation.__table__).where(Violation.__table__.c.id == v.id).values(**columns))
    db.session.commit()
    return fresh(v.id)


# --- VIO-5: measures in order -----------------------------------------------------------------------
def test_vio_5_measures_escalate_in_order(db_session, staff_ids, english) -> None:
    v = registered(staff_ids, economic_loss=True, severity="major")
    manager = person(staff_ids, "manager")
    assert "Order rectification by a deadline first" in refusal(
        lambda: engine.fire(v, "compensate", manager, values={"compensation_amount": "300"}))
    v = fresh(v.id)
    engine.fire(v, "rectify", manager, values={"rectify_by": "2026-12-31 18:00"})
    v = sign(fresh(v.id), staff_ids)
    assert v.rectify_by is not None and v.measure_level == 1
    engine.fire(v, "compensate", manager, values={"compensation_amount": "300.00"})
    v = sign(fresh(v.id), staff_ids)
    assert v.measure_level == 2 and [a.code for a in v.actions][-2:] == ["rectification", "compensation"]


def test_vio_5_compensation_only_for_an_economic_loss_and_a_valid_amount(db_session, staff_ids, english) -> None:
    v = rectified(staff_ids)
    manager = person(staff_ids, "manager")
    assert "only for an economic loss" in refusal(
        lambda: engine.fire(v, "compensate", manager, values={"compensation_amount": "300"}))
    w = rectified(staff_ids, economic_loss=True, severity="major")
    assert "1200.00" in refusal(lambda: engine.fire(w, "compensate", manager,
                                                    values={"compensation_amount": "-5"}))
    db.session.rollback()
    assert fresh(w.id).compensation_amount is None and fresh(w.id).pending_transition is None


# --- VIO-6: preconditions ------------------------------------------------------------------------------
def test_vio_6_public_criticism_needs_the_owners_committee_support(db_session, staff_ids, login_as,
                                                                    english) -> None:
    v = rectified(staff_ids)
    manager = login_as("manager")
    body = http_fire(manager, v, "criticise")
    assert "Owners' committee support" in body and fresh(v.id).pending_transition is None
    http_fire(manager, fresh(v.id), "criticise", field_committee_support="业委会2026-11-20会议决议支持")
    assert "Approved" in http_decide(manager, fresh(v.id), "approve")
    assert fresh(v.id).measure_level == 4


def test_vio_6_lawsuit_only_after_mediation_failed(db_session, staff_ids, english) -> None:
    v = rectified(staff_ids)
    manager = person(staff_ids, "manager")
    assert "mediation failed (VIO-6)" in refusal(lambda: engine.fire(v, "sue", manager, comment="起诉"))
    engine.fire(fresh(v.id), "mediation_failed", person(staff_ids, "cs_supervisor"),
                values={"mediation_result": "业委会调解未果"})
    assert engine.fire(fresh(v.id), "sue", manager, comment="向法院起诉") == "requested"
    assert sign(fresh(v.id), staff_ids).measure_level == 5


def test_vio_6_cut_only_for_arrears_or_refused_compensation_by_the_manager(db_session, staff_ids,
                                                                            english) -> None:
    v = rectified(staff_ids)
    manager, supervisor = person(staff_ids, "manager"), person(staff_ids, "cs_supervisor")
    assert "may not do" in refusal(lambda: engine.fire(v, "decide_cut", supervisor, values=cut_values()))
    assert "effective compensation decision first" in refusal(
        lambda: engine.fire(fresh(v.id), "decide_cut", manager, values=cut_values()))
    assert "refused-fees" in refusal(
        lambda: engine.fire(fresh(v.id), "decide_cut", manager, values=cut_values(cut_reason="arrears")))
    assert "Choose one of" in refusal(
        lambda: engine.fire(fresh(v.id), "decide_cut", manager, values=cut_values(cut_reason="noise")))


def test_vio_6_cut_needs_covenant_clause_and_three_days_written_notice(db_session, staff_ids, english) -> None:
    v = compensated(staff_ids)
    manager = person(staff_ids, "manager")
    assert "Clause of the owners' covenant" in refusal(
        lambda: engine.fire(v, "decide_cut", manager, values=cut_values(covenant_clause="")))
    short = cut_values(cut_planned_at=local(utcnow() + timedelta(days=2, hours=22)))
    assert "at least 3 days before the cut (VIO-6)" in refusal(
        lambda: engine.fire(fresh(v.id), "decide_cut", manager, values=short))
    engine.fire(fresh(v.id), "decide_cut", manager, values=cut_values())
    v = fresh(v.id)
    assert v.cut_decided_at is not None and v.due_at is not None  # the second-notice clock


def test_vio_6_second_notice_five_minutes_before_and_restoration_before_closing(
        db_session, staff_ids, login_as, english) -> None:
    v = compensated(staff_ids)
    manager = person(staff_ids, "manager")
    engine.fire(v, "decide_cut", manager, values=cut_values())
    engineer = person(staff_ids, "engineering")
    assert "Not before the time given" in refusal(lambda: engine.fire(fresh(v.id), "cut", engineer))
    v = backdate(fresh(v.id), cut_planned_at=utcnow() - timedelta(minutes=1))
    assert "second notice 5 minutes before" in refusal(lambda: engine.fire(v, "cut", engineer))
    clerk = login_as("cs_clerk")
    http_fire(clerk, fresh(v.id), "second_notice")
    v = fresh(v.id)
    assert v.second_notice_at is not None
    assert "second notice 5 minutes before" in refusal(lambda: engine.fire(v, "cut", engineer))
    v = backdate(fresh(v.id), second_notice_at=utcnow() - timedelta(minutes=5, seconds=1))
    engine.fire(v, "cut", engineer)
    v = fresh(v.id)
    assert v.cut_at is not None and v.penalised_at is not None
    engine.fire(v, "follow_up", person(staff_ids, "cs_clerk"), comment="上门沟通")
    assert "Restore water/power before closing (VIO-6)" in refusal(
        lambda: engine.fire(fresh(v.id), "close", manager, comment="结案"))
    http_fire(clerk, fresh(v.id), "restore", comment="住户已赔偿，恢复供水")
    v = fresh(v.id)
    assert v.restored_at is not None and v.restore_notes == "住户已赔偿，恢复供水"
    engine.fire(v, "close", manager, comment="结案")
    assert fresh(v.id).state == "closed"


# --- VIO-9: the arrears ladder -------------------------------------------------------------------------
def test_vio_9_arrears_ladder_in_order_none_skipped(db_session, staff_ids, english) -> None:
    v = registered(staff_ids, kind="fees", sub_kind="fees")
    clerk, manager = person(staff_ids, "cs_clerk"), person(staff_ids, "manager")
    supervisor = person(staff_ids, "cs_supervisor")
    assert "“Late fee”" not in refusal(lambda: engine.fire(v, "arrears_late_fee", manager,
                                                           values={"late_fee_amount": "50"}))
    engine.fire(fresh(v.id), "arrears_step", clerk, values={"arrears_notes": "电话提醒"})
    engine.fire(fresh(v.id), "arrears_step", clerk, values={"arrears_notes": "发催款函"})
    assert "“Late fee”" in refusal(lambda: engine.fire(fresh(v.id), "arrears_step", clerk,
                                                       values={"arrears_notes": "再次提醒"}))
    engine.fire(fresh(v.id), "arrears_late_fee", supervisor, values={"late_fee_amount": "50.00"})
    v = sign(fresh(v.id), staff_ids)
    assert v.arrears_level == 3 and [c.kind for c in v.charges] == ["late_fee"]
    engine.fire(v, "arrears_penalty", manager, values={"arrears_notes": "律师函"})
    v = sign(fresh(v.id), staff_ids)
    assert "owners' committee's support" in refusal(
        lambda: engine.fire(v, "arrears_step", clerk, values={"arrears_notes": "公告"}))
    v = backdate(fresh(v.id), committee_support="业委会同意公告")
    engine.fire(v, "arrears_step", clerk, values={"arrears_notes": "业委会公告"})
    v = fresh(v.id)
    assert v.arrears_level == 5  # next: the cut; without a covenant clause it is skipped, recorded
    engine.fire(v, "arrears_step", clerk, values={"arrears_notes": "公约无停水停电条款"})
    engine.fire(fresh(v.id), "arrears_penalty", manager, values={"arrears_notes": "停止服务"})
    v = sign(fresh(v.id), staff_ids)
    assert v.arrears_level == 7
    engine.fire(v, "mediation_failed", supervisor, values={"mediation_result": "调解未果"})
    engine.fire(fresh(v.id), "sue", manager, comment="申请仲裁")
    v = sign(fresh(v.id), staff_ids)
    codes = [a.code for a in v.actions if a.code.startswith("arrears_") or a.code in ("cut_skipped", "lawsuit")]
    assert codes == ["arrears_reminder", "arrears_dunning_letter", "arrears_late_fee", "arrears_lawyers_letter",
                     "arrears_announcement", "cut_skipped", "arrears_stop_service", "lawsuit"]
    assert v.arrears_level == 8


def test_vio_9_a_cut_for_arrears_needs_the_earlier_steps(db_session, staff_ids, english) -> None:
    v = registered(staff_ids, kind="fees", sub_kind="fees")
    assert "earlier steps of the arrears ladder" in refusal(lambda: engine.fire(
        v, "decide_cut", person(staff_ids, "manager"), values=cut_values(cut_reason="arrears")))
    assert "refused fees only" in refusal(lambda: engine.fire(
        registered(staff_ids), "arrears_step", person(staff_ids, "cs_clerk"), values={"arrears_notes": "提醒"}))


# --- the printed notices ------------------------------------------------------------------------------
def test_vio_6_notices_print_as_pdf_permission_checked_and_audited(db_session, staff_ids, login_as,
                                                                    english) -> None:
    v = compensated(staff_ids)
    clerk = login_as("cs_clerk")
    for kind in ("notice", "final_warning"):
        response = clerk.get(f"/admin/violation/print/{kind}/{v.id}.pdf")
        assert response.status_code == 200 and response.data[:4] == b"%PDF"
    assert clerk.get(f"/admin/violation/print/cut_notice/{v.id}.pdf").status_code == 302  # no cut decided
    engine.fire(fresh(v.id), "decide_cut", person(staff_ids, "manager"), values=cut_values())
    response = clerk.get(f"/admin/violation/print/cut_notice/{v.id}.pdf")
    assert response.status_code == 200 and response.data[:4] == b"%PDF"
    assert clerk.get(f"/admin/violation/print/other/{v.id}.pdf").status_code == 404
    assert login_as("admin").get(f"/admin/violation/print/notice/{v.id}.pdf").status_code in (302, 403)
    printed = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
        AuditEntry.action == "print", AuditEntry.record_type == "violation", AuditEntry.record_id == v.id))
    assert printed == 3


def test_vio_6_cut_notice_shows_the_planned_date(app, db_session, staff_ids, english) -> None:
    from views.printing import print_helpers
    from views.violations import print_context

    v = compensated(staff_ids)
    engine.fire(v, "decide_cut", person(staff_ids, "manager"), values=cut_values())
    v = fresh(v.id)
    html = app.jinja_env.get_template("print/violation_cut_notice.html").render(
        v=v, title="停水停电通知书", printed_at=utcnow(), printed_by=lambda: "", get_locale=lambda: type(
            "L", (), {"language": "en"})(), **print_helpers(), **print_context())
    from views.templating import localtime

    assert str(localtime(v.cut_planned_at)) in html and "《业主公约》第十二条" in html


def test_vio_3_demo_seed_has_violations_in_every_state(runner, db_session) -> None:
    result = runner.invoke(args=["seed", "--demo"])
    assert result.exit_code == 0, result.output
    states = set(db.session.scalars(sa.select(Violation.state)))
    pending = db.session.scalar(sa.select(sa.func.count()).select_from(Violation).where(
        Violation.pending_transition.is_not(None)))
    assert states == {"reported", "registered", "closed"} and pending >= 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Violation).where(
        Violation.cut_decided_at.is_not(None))) == 1
