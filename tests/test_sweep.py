"""The sweep (REGULATIONS §11): overdue records escalated through a system transition (audited,
actor "sweep"), reminders and overdue notices sent once (in-app and by real SMTP), idempotent,
and safe when two runs overlap (real concurrent connections, SQLite and PostgreSQL).

Each sweep runs in its own app context, hence its own session and connection, as the CLI and the
timer thread do; the test's own session holds no transaction meanwhile.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from app import create_app
from models import AuditEntry, KeyCustody, Notification, Staff, db
from models.calendar import CalendarOverride, CalendarYear
from models.deadline import DeadlineClock
from tests.conftest import csrf_token
from tests.test_deadlines import FRONT, SHANGHAI, STATES, clock, fresh, handle, timed
from tests.test_mail import inbox  # noqa: F401  (the real SMTP fixture)
from tests.workflow_fixtures import add_staff, audit_rows, new_keys, notices, signed_in, workflow_binder
from workflow import audit, engine
from workflow.deadlines import Deadline
from workflow.engine import Step, T, Workflow
from workflow.sweep import SweepReport, sweep

RECORDS = 6  # records swept at once by the two concurrent runs


@pytest.fixture()
def bind(db_session: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with workflow_binder(monkeypatch) as binder:
        yield binder


@pytest.fixture()
def desk(db_session: Any) -> dict[str, Staff]:
    """A customer-service department with a head, and a clerk who registers the records."""
    return {"head": add_staff("cshead", {"cs_clerk"}, department="cs", head=True),
            "clerk": add_staff("csclerk", {"cs_clerk"}, department="cs")}


def run_sweep(app: Flask, now: datetime) -> SweepReport:
    """As ``flask sweep`` runs it: an app context of its own and no request (a fresh contextvars
    context: the test's request context is not visible)."""
    db.session.commit()
    return contextvars.Context().run(_sweep_alone, app, now)


def _sweep_alone(app: Flask, now: datetime, batch: int = 200) -> SweepReport:
    with app.app_context():
        try:
            return sweep(now, batch=batch)
        finally:
            db.session.remove()


def registered(desk: dict[str, Staff], **kw: Any) -> KeyCustody:
    with signed_in(desk["clerk"]):
        return new_keys(**kw)


def escalations(record: KeyCustody) -> list[AuditEntry]:
    return [r for r in audit_rows(record, "transition") if r.transition == "escalate"]


# --- escalation -------------------------------------------------------------------------------------
def test_sweep_escalates_overdue_record_cmp_sla_4(bind: Any, app: Flask, desk: dict[str, Staff]) -> None:
    """CMP-SLA-4: not resolved in time → escalated by the system, audited, head told once."""
    bind(timed(handle()))
    keys = registered(desk)
    due = clock(keys).due_at
    early = run_sweep(app, due - timedelta(minutes=1))
    assert (early.escalations, early.notices, fresh(keys).state) == (0, 0, "held")

    now = due + timedelta(minutes=1)
    report = run_sweep(app, now)
    assert (report.escalations, report.notices, report.messages) == (1, 1, 1)
    keys = fresh(keys)
    assert keys.state == "major"
    [row] = escalations(keys)
    assert (row.action, row.actor_id, row.actor_name) == ("transition", None, "sweep")
    assert '"state": ["held", "major"]' in row.changes
    c = clock(keys)
    assert (c.escalated_at, c.overdue_notified_at, c.breached_at, c.next_action_at) == (now, now, now, None)
    assert c.is_open  # escalated is not resolved: it stays on the overdue list
    [note] = notices(desk["head"])
    assert str(keys.id) in note.subject
    assert notices(desk["clerk"]) == []
    assert audit.verify(db.engine)[1] == []


def test_sweep_second_run_does_nothing(bind: Any, app: Flask, desk: dict[str, Staff]) -> None:
    bind(timed(handle()))
    keys = registered(desk)
    now = clock(keys).due_at + timedelta(minutes=1)
    assert run_sweep(app, now).escalations == 1
    version = fresh(keys).version
    again = run_sweep(app, now + timedelta(hours=1))
    assert (again.reminders, again.notices, again.escalations, again.messages) == (0, 0, 0, 0)
    assert fresh(keys).version == version
    assert len(escalations(keys)) == 1 and len(notices(desk["head"])) == 1


def test_sweep_two_runs_at_once_never_double_apply(bind: Any, app: Flask, desk: dict[str, Staff]) -> None:
    """Two sweeps start together, each with its own connection: every reminder, notice and
    escalation happens exactly once (the conditional UPDATE claims)."""
    bind(timed(handle(), Deadline("answer", "Answer", amount=3, unit="hours", met_by={"returned"},
                                  remind_before=1)))
    records = [registered(desk) for _ in range(RECORDS)]
    start = max(clock(r).start_at for r in records)
    for moment in (start + timedelta(hours=2, minutes=30), start + timedelta(hours=3, minutes=10)):
        reports = race(app, moment)
        assert not [e for r in reports for e in r.errors]
    for keys in records:
        assert fresh(keys).state == "major"
        assert len(escalations(keys)) == 1
        assert clock(keys, "answer").reminded_at is not None
    head, clerk = notices(desk["head"]), notices(desk["clerk"])
    assert len(head) == 2 * RECORDS  # "handle" and "answer" overdue, once each
    assert len(clerk) == RECORDS  # the reminder of "answer", once
    assert len({n.subject for n in head}) == len(head)
    assert audit.verify(db.engine)[1] == []


def race(app: Flask, now: datetime) -> list[SweepReport]:
    db.session.commit()
    barrier = threading.Barrier(2)
    reports: list[SweepReport] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            reports.append(_sweep_alone(app, now, batch=2))  # small batches: the runs interleave
        except BaseException as exc:  # reported to the test thread
            barrier.abort()
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a sweep hung"
    assert not failures, failures
    return reports


def test_sweep_waits_while_an_approval_runs(bind: Any, app: Flask, desk: dict[str, Staff],
                                            staff_ids: dict[str, int]) -> None:
    """A record waiting for sign-off cannot move: the notice goes out once, the escalation is
    tried again on later runs and happens once the chain is decided."""
    bind(Workflow("Timed keys", {s: STATES[s] for s in ("held", "major", "returned", "lost")}, "held", [
        T("report_lost", "held", "lost", FRONT, approvals=[Step("Supervisor", frozenset({"cs_supervisor"}))]),
        T("return_keys", ["held", "major"], "returned", FRONT),
        T("escalate", "held", "major", system=True),
    ], deadlines=[handle()]))
    keys = registered(desk)
    engine.fire(fresh(keys), "report_lost", desk["clerk"], "找不到")
    now = clock(keys).due_at + timedelta(minutes=1)
    first = run_sweep(app, now)
    assert (first.escalations, first.waiting, first.notices) == (0, 1, 1)
    assert clock(keys).next_action_at == clock(keys).due_at  # still queued
    assert run_sweep(app, now).notices == 0
    engine.decide(fresh(keys), db.session.get(Staff, staff_ids["cs_supervisor"]), False, "找到了")
    later = run_sweep(app, now + timedelta(minutes=1))
    assert (later.escalations, later.notices) == (1, 0)
    assert fresh(keys).state == "major" and len(notices(desk["head"])) == 1


def test_sweep_escalation_not_applicable_then_again(bind: Any, app: Flask, desk: dict[str, Staff]) -> None:
    """Out of the escalation's source state: told once, not escalated, out of the queue until the
    record moves back, then escalated."""
    bind(timed(Deadline("handle", "Handle", amount=2, unit="hours", met_by={"returned"}, escalate="escalate")))
    keys = registered(desk)
    engine.fire(fresh(keys), "check_out", desk["clerk"])
    bind(Workflow("Timed keys", {s: STATES[s] for s in ("held", "out", "major", "returned")}, "held", [
        T("check_out", "held", "out", FRONT), T("check_in", "out", "held", FRONT),
        T("return_keys", ["held", "out", "major"], "returned", FRONT),
        T("escalate", "held", "major", system=True),  # not from "out"
    ], deadlines=[Deadline("handle", "Handle", amount=2, unit="hours", met_by={"returned"}, escalate="escalate")]))
    now = clock(keys).due_at + timedelta(minutes=1)
    report = run_sweep(app, now)
    assert (report.escalations, report.skipped, report.notices) == (0, 1, 1)
    assert clock(keys).next_action_at is None and fresh(keys).state == "out"
    engine.fire(fresh(keys), "check_in", desk["clerk"])
    assert clock(keys).next_action_at is not None
    assert run_sweep(app, now + timedelta(minutes=1)).escalations == 1
    assert len(notices(desk["head"])) == 1


def test_sweep_non_system_user_can_never_fire_escalation(bind: Any, login_as: Any, staff_ids: dict[str, int],
                                                         desk: dict[str, Staff]) -> None:
    bind(timed(handle()))
    keys = registered(desk)
    for role in staff_ids:
        person = db.session.get(Staff, staff_ids[role])
        with pytest.raises(engine.NotAllowed):
            engine.fire(fresh(keys), "escalate", person)
        assert "escalate" not in [t.name for t in engine.available(fresh(keys), person)]
    manager = login_as("manager")
    manager.post("/admin/key_custody/transition/", data={
        "csrf_token": csrf_token(manager), "id": keys.id, "name": "escalate", "version": fresh(keys).version})
    assert fresh(keys).state == "held" and escalations(keys) == []


# --- reminders and notices ----------------------------------------------------------------------------
def test_sweep_reminder_once_in_app_and_by_mail(bind: Any, app: Flask, desk: dict[str, Staff],
                                                inbox: Any) -> None:  # noqa: F811
    bind(timed(Deadline("answer", "Answer the resident", amount=2, unit="days", met_by={"returned"},
                        remind_before=1)))
    clerk = desk["clerk"]
    clerk.email = "clerk@example.com"
    db.session.commit()
    keys = registered(desk)
    c = clock(keys, "answer")
    assert c.remind_at == c.start_at + timedelta(days=1)
    report = run_sweep(app, c.remind_at + timedelta(minutes=1))
    assert (report.reminders, report.notices) == (1, 0)
    assert run_sweep(app, c.remind_at + timedelta(minutes=2)).reminders == 0
    [note] = notices(desk["clerk"])
    [mail] = inbox.to("clerk@example.com")
    assert mail["Subject"] == note.subject and str(keys.id) in note.subject
    assert clock(keys, "answer").next_action_at == c.due_at  # the overdue notice is next
    assert len(inbox.messages) == 1


def test_sweep_overdue_notice_once_to_department_head_by_mail(bind: Any, app: Flask, desk: dict[str, Staff],
                                                              inbox: Any) -> None:  # noqa: F811
    bind(timed(Deadline("answer", "Answer the resident", amount=2, unit="days", met_by={"returned"})))
    head = desk["head"]
    head.email = "head@example.com"
    db.session.commit()
    keys = registered(desk)
    version = fresh(keys).version
    due = clock(keys, "answer").due_at
    assert run_sweep(app, due + timedelta(minutes=1)).notices == 1
    assert run_sweep(app, due + timedelta(days=1)).notices == 0
    [note] = notices(head)
    [mail] = inbox.to("head@example.com")
    assert mail["Subject"] == note.subject
    assert notices(desk["clerk"]) == [] and len(inbox.messages) == 1
    assert fresh(keys).version == version  # a notice does not touch the record
    assert clock(keys, "answer").next_action_at is None


def test_sweep_overdue_notice_to_creator_without_department_head(bind: Any, app: Flask,
                                                                 db_session: Any) -> None:
    bind(timed(Deadline("answer", "Answer", amount=1, unit="hours", met_by={"returned"})))
    engineer = add_staff("eng1", {"engineering"}, department="engineering")
    with signed_in(engineer):
        keys = new_keys()
    run_sweep(app, clock(keys, "answer").due_at + timedelta(minutes=1))
    assert len(notices(engineer)) == 1


def test_sweep_met_in_time_nothing_sent(bind: Any, app: Flask, desk: dict[str, Staff]) -> None:
    bind(timed(handle(remind_before=1)))
    keys = registered(desk)
    engine.fire(fresh(keys), "return_keys", desk["clerk"])
    report = run_sweep(app, clock(keys).due_at + timedelta(days=1))
    assert (report.reminders, report.notices, report.escalations) == (0, 0, 0)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 0


# --- calendar changes ----------------------------------------------------------------------------------
def test_sweep_recomputes_working_day_clocks_after_calendar_change_ren_2(bind: Any, app: Flask,
                                                                          desk: dict[str, Staff]) -> None:
    bind(timed(Deadline("review", "Engineering review", start="deposited_at", amount=3, unit="working_days",
                        met_by={"returned"})))
    keys = registered(desk, deposited_at=datetime(2025, 9, 26, 10, 0, tzinfo=SHANGHAI))
    before = datetime(2025, 9, 30, 23, 59, 59, 999999, tzinfo=SHANGHAI)
    assert clock(keys, "review").due_at == before
    run_sweep(app, datetime(2025, 9, 27, tzinfo=UTC))  # marks the calendar as seen
    override = CalendarOverride(day=datetime(2025, 9, 30).date(), kind="off", reason="台风停工")
    db.session.add(override)
    db.session.commit()
    report = run_sweep(app, datetime(2025, 9, 27, 1, tzinfo=UTC))
    after = datetime(2025, 10, 9, 23, 59, 59, 999999, tzinfo=SHANGHAI)
    assert report.recomputed == 1
    assert clock(keys, "review").due_at == after and fresh(keys).due_at == after
    assert run_sweep(app, datetime(2025, 9, 27, 2, tzinfo=UTC)).recomputed == 0  # nothing changed since
    db.session.delete(db.session.get(CalendarOverride, override.id))
    db.session.commit()
    assert run_sweep(app, datetime(2025, 9, 27, 3, tzinfo=UTC)).recomputed == 1  # a removal counts too
    assert clock(keys, "review").due_at == before


def test_sweep_confirmed_year_ends_provisional_clocks(bind: Any, app: Flask, desk: dict[str, Staff]) -> None:
    bind(timed(Deadline("review", "Review", start="deposited_at", amount=2, unit="working_days",
                        met_by={"returned"})))
    keys = registered(desk, deposited_at=datetime(2030, 3, 1, 9, 0, tzinfo=SHANGHAI))
    assert clock(keys, "review").computed_at is None
    db.session.add(CalendarOverride(day=datetime(2030, 3, 4).date(), kind="off", reason="测试"))
    db.session.add(CalendarYear(year=2030, note="国务院办公厅通知"))
    db.session.commit()
    run_sweep(app, datetime(2030, 3, 1, 2, tzinfo=UTC))
    c = clock(keys, "review")
    assert c.computed_at is not None
    assert c.due_at == datetime(2030, 3, 6, 23, 59, 59, 999999, tzinfo=SHANGHAI)


# --- entry points ----------------------------------------------------------------------------------------
def test_sweep_cli_with_now(bind: Any, runner: Any, desk: dict[str, Staff]) -> None:
    bind(timed(handle()))
    keys = registered(desk)
    due = clock(keys).due_at.astimezone(SHANGHAI)
    db.session.commit()
    result = runner.invoke(args=["sweep", "--now", (due + timedelta(minutes=5)).isoformat()])
    assert result.exit_code == 0, result.output
    assert "escalations 1" in result.output
    assert fresh(keys).state == "major"
    assert runner.invoke(args=["sweep", "--now", "yesterday"]).exit_code != 0


def test_sweep_timer_thread_runs_when_enabled(bind: Any, app: Flask, desk: dict[str, Staff]) -> None:
    """SWEEP_INTERVAL_SECONDS > 0 outside tests: a daemon thread sweeps on its own."""
    bind(timed(handle(start="deposited_at")))
    keys = registered(desk, deposited_at=datetime.now(UTC) - timedelta(hours=3))
    db.session.commit()
    config = {k: app.config[k] for k in ("SQLALCHEMY_DATABASE_URI", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS",
                                         "BLIND_INDEX_KEY", "AUDIT_KEY", "SERVER_NAME")}
    served = create_app({**config, "TESTING": False, "SWEEP_INTERVAL_SECONDS": 0.1})
    thread, stop = served.extensions["pm_sweep"]
    try:
        deadline = time.monotonic() + 60
        while fresh(keys).state != "major" and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)
        with served.app_context():
            db.engine.dispose()
    assert fresh(keys).state == "major"
    assert [r.actor_name for r in escalations(keys)] == ["sweep"]
    assert "pm_sweep" not in app.extensions  # never under TESTING


def test_sweep_ignores_clocks_of_undeclared_rules(bind: Any, app: Flask, desk: dict[str, Staff]) -> None:
    """A rule removed from the code: its clocks leave the queue instead of failing every run."""
    bind(timed(handle()))
    keys = registered(desk)
    due = clock(keys).due_at
    bind(timed(Deadline("other", "Other", amount=9, unit="days", met_by={"returned"})))
    report = run_sweep(app, due + timedelta(minutes=1))
    assert (report.escalations, report.notices) == (0, 0)
    assert clock(keys).next_action_at is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(DeadlineClock)) == 1


def test_sweep_escalation_needing_sign_off_asks_the_approver_cmp_sla_2(bind: Any, app: Flask,
                                                                        desk: dict[str, Staff],
                                                                        staff_ids: dict[str, int]) -> None:
    """CMP-SLA-2: going over needs the manager's approval: the sweep opens the request (once) and
    the manager is asked; the manager's decision moves the record."""
    bind(Workflow("Timed keys", {s: STATES[s] for s in ("held", "major", "returned")}, "held", [
        T("return_keys", ["held", "major"], "returned", FRONT),
        T("escalate", "held", "major", system=True, approvals=[Step("Manager", frozenset({"manager"}))]),
    ], deadlines=[handle()]))
    records = [registered(desk) for _ in range(2)]
    now = max(clock(r).due_at for r in records) + timedelta(minutes=1)
    assert run_sweep(app, now).escalations == 2
    assert run_sweep(app, now + timedelta(minutes=1)).escalations == 0
    manager = db.session.get(Staff, staff_ids["manager"])
    assert len(notices(manager)) == 2  # "waiting for your approval", once per record
    for keys in records:
        keys = fresh(keys)
        assert (keys.state, keys.pending_transition) == ("held", "escalate")
        assert [r.action for r in audit_rows(keys, "request")] == ["request"]
    assert engine.decide(fresh(records[0]), manager, True) == "approved"
    assert fresh(records[0]).state == "major"
