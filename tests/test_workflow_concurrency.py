"""Races on one record through real concurrent database connections (SQLite and PostgreSQL).

Each racer is a thread with its own request context, hence its own session and connection; all
load the record at the same version, meet at a barrier, then fire. The record's version column
is the arbiter: exactly one racer wins, the trail shows exactly one firing, and the loser is
told who changed the record and when (engine.Conflict) with nothing of theirs written. Where
a random interleaving cannot pin the loser's error down, a deterministic one does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import flask_login
import pytest
import sqlalchemy as sa
from flask import Flask

from models import AuditEntry, KeyCustody, KeyUse, SignOff, Staff, db
from tests.workflow_fixtures import add_staff, new_keys, workflow_binder
from workflow import audit, engine
from workflow.engine import Step, T, Workflow

ROUNDS = 5  # each race is run this many times on fresh records
HOLDER = {"current_holder": "王师傅", "current_purpose": "维修水管"}
Move = Callable[[KeyCustody, Staff], str]


@dataclass
class Racer:
    staff_id: int
    move: Move
    username: str = ""
    result: str | None = None
    error: BaseException | None = None
    loaded_version: int | None = None


def race(app: Flask, record_id: int, racers: list[Racer]) -> list[Racer]:
    """Run the racers' moves at once, each in its own request context and session."""
    barrier = threading.Barrier(len(racers))

    def run(racer: Racer) -> None:
        with app.test_request_context():
            try:
                me = db.session.get(Staff, racer.staff_id)
                racer.username = me.username
                flask_login.login_user(me)  # so the audit row names the winner
                record = db.session.get(KeyCustody, record_id)
                racer.loaded_version = record.version
                barrier.wait(timeout=30)
                racer.result = racer.move(record, me)
            except BaseException as exc:  # reported to the test thread
                barrier.abort()
                racer.error = exc
            finally:
                db.session.remove()

    db.session.commit()  # the test thread holds no transaction while the racers run
    threads = [threading.Thread(target=run, args=(r,)) for r in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a racer hung"
    db.session.expire_all()
    return racers


def split(racers: list[Racer]) -> tuple[Racer, Racer]:
    """(winner, loser) of a two-way race; exactly one must have succeeded."""
    assert [r.error for r in racers].count(None) == 1, [repr(r.error) for r in racers]
    winner = next(r for r in racers if r.error is None)
    loser = next(r for r in racers if r.error is not None)
    assert len({r.loaded_version for r in racers}) == 1  # both opened the same version
    return winner, loser


def lost_to(loser: Racer, winner: Racer, record_id: int) -> None:
    """The loser got engine.Conflict naming the winner and the time of the winner's change."""
    assert isinstance(loser.error, engine.Conflict), repr(loser.error)
    last = db.session.execute(sa.select(AuditEntry.actor_name, AuditEntry.at).where(
        AuditEntry.record_type == "key_custody", AuditEntry.record_id == record_id)
        .order_by(AuditEntry.seq.desc()).limit(1)).one()
    assert (loser.error.who, loser.error.when) == (winner.username, last.at)


def refused(loser: Racer) -> None:
    """A losing signer is told someone else changed the record, wherever the winner's commit
    lands within the loser's checks."""
    assert isinstance(loser.error, engine.Conflict), repr(loser.error)


def firings(record_id: int, *actions: str) -> list[AuditEntry]:
    return list(db.session.scalars(sa.select(AuditEntry).where(
        AuditEntry.record_type == "key_custody", AuditEntry.record_id == record_id,
        AuditEntry.action.in_(actions)).order_by(AuditEntry.seq)))


def count(model: type, *where: Any) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0


def check_out(record: KeyCustody, me: Staff) -> str:
    return engine.fire(record, "check_out", me, values={"current_holder": me.username, "current_purpose": "维修"})


def report_lost(record: KeyCustody, me: Staff) -> str:
    return engine.fire(record, "report_lost", me, "找不到了")


def approve(record: KeyCustody, me: Staff) -> str:
    return engine.decide(record, me, True, f"{me.username} 同意")


@pytest.fixture()
def people(db_session: Any, staff_ids: dict[str, int]) -> dict[str, Staff]:
    return {role: db.session.get(Staff, sid) for role, sid in staff_ids.items()}


@pytest.fixture()
def joint_chain(db_session: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workflow]:
    """KeyCustody temporarily runs a chain whose one step engineering and security sign jointly."""
    with workflow_binder(monkeypatch) as bind:
        yield bind(Workflow("Joint test", {"draft": "Draft", "approved": "Approved"}, "draft", [
            T("submit", "draft", "approved", {"cs_clerk"},
              approvals=[Step("Engineering and security", frozenset({"engineering", "security"}), joint=True)]),
            T("reopen", "approved", "draft", {"cs_clerk"})]))


# --- two people fire at once --------------------------------------------------------------------
def test_wf_engine_race_two_check_outs_exactly_one_wins(app: Flask, people: dict[str, Staff]) -> None:
    for _ in range(ROUNDS):
        keys = new_keys()
        winner, loser = split(race(app, keys.id, [Racer(people["cs_clerk"].id, check_out),
                                                   Racer(people["security"].id, check_out)]))
        lost_to(loser, winner, keys.id)
        assert winner.result == "done"
        keys = db.session.get(KeyCustody, keys.id)
        assert keys.state == "out" and keys.current_holder == winner.username  # nothing of the loser's
        assert keys.version == winner.loaded_version + 1
        [row] = firings(keys.id, "transition", "request")
        assert (row.transition, row.actor_name) == ("check_out", winner.username)
        assert count(KeyUse, KeyUse.custody_id == keys.id) == 1
    assert audit.verify(db.engine)[1] == []


def test_wf_engine_race_check_out_against_report_lost(app: Flask, people: dict[str, Staff]) -> None:
    for _ in range(ROUNDS):
        keys = new_keys()
        winner, loser = split(race(app, keys.id, [Racer(people["security"].id, check_out),
                                                   Racer(people["cs_clerk"].id, report_lost)]))
        lost_to(loser, winner, keys.id)
        keys = db.session.get(KeyCustody, keys.id)
        [row] = firings(keys.id, "transition", "request")
        assert row.actor_name == winner.username
        if winner.move is check_out:
            assert (winner.result, keys.state, keys.pending_transition) == ("done", "out", None)
            assert row.action == "transition"
        else:
            assert (winner.result, keys.state, keys.pending_transition) == ("requested", "held", "report_lost")
            assert row.action == "request" and count(KeyUse, KeyUse.custody_id == keys.id) == 0
    assert audit.verify(db.engine)[1] == []


def test_wf_engine_stale_form_version_refused(app: Flask, people: dict[str, Staff]) -> None:
    """A form opened before someone else's change posts its version; the engine refuses it and
    names who changed the record (the form page and the colleague use separate connections)."""
    for _ in range(ROUNDS):
        keys = new_keys()
        form_version = keys.version  # the edit form was rendered with this version
        [colleague] = race(app, keys.id, [Racer(people["cs_clerk"].id, check_out)])
        assert colleague.error is None and colleague.result == "done"
        [stale] = race(app, keys.id, [Racer(people["manager"].id, lambda record, me, v=form_version: engine.fire(
            record, "report_lost", me, "找不到了", version=v))])
        assert isinstance(stale.error, engine.Conflict), repr(stale.error)
        [row] = firings(keys.id, "transition", "request")
        assert (stale.error.who, stale.error.when) == ("clerk", row.at)
        keys = db.session.get(KeyCustody, keys.id)
        assert (keys.state, keys.pending_transition) == ("out", None)


# --- two approvers sign at once -------------------------------------------------------------------
def test_wf_engine_race_two_last_signers_of_joint_step(app: Flask, people: dict[str, Staff],
                                                       joint_chain: Workflow) -> None:
    """Engineering has signed; two security guards give the last signature at the same moment."""
    second_guard = add_staff("guard2", {"security"})
    for _ in range(ROUNDS):
        record = new_keys()
        engine.fire(record, "submit", people["cs_clerk"])
        assert engine.decide(record, people["engineering"], True) == "signed"
        winner, loser = split(race(app, record.id, [Racer(people["security"].id, approve),
                                                     Racer(second_guard.id, approve)]))
        refused(loser)
        assert winner.result == "approved"
        record = db.session.get(KeyCustody, record.id)
        assert (record.state, record.pending_transition) == ("approved", None)
        [row] = firings(record.id, "transition")
        assert row.transition == "submit"
        signers = db.session.scalars(sa.select(SignOff.staff_id).where(SignOff.record_id == record.id)).all()
        assert sorted(signers) == sorted([people["engineering"].id,
                                          people["security"].id if winner.username == "guard" else second_guard.id])
        assert len(firings(record.id, "signoff")) == 2
    assert audit.verify(db.engine)[1] == []


def test_wf_engine_race_both_joint_signers_at_once(app: Flask, people: dict[str, Staff],
                                                   joint_chain: Workflow) -> None:
    """Engineering and security sign at the same moment: each saw the other's signature missing,
    so one is refused and signs again; the chain completes exactly once."""
    for _ in range(ROUNDS):
        record = new_keys()
        engine.fire(record, "submit", people["cs_clerk"])
        winner, loser = split(race(app, record.id, [Racer(people["engineering"].id, approve),
                                                     Racer(people["security"].id, approve)]))
        refused(loser)
        assert winner.result == "signed"
        assert db.session.get(KeyCustody, record.id).state == "draft"
        [again] = race(app, record.id, [Racer(loser.staff_id, approve)])
        assert again.error is None and again.result == "approved"
        assert db.session.get(KeyCustody, record.id).state == "approved"
        assert len(firings(record.id, "transition")) == 1
        assert len(firings(record.id, "signoff")) == 2


def test_wf_engine_race_same_signer_twice(app: Flask, people: dict[str, Staff]) -> None:
    """One supervisor presses "approve" in two tabs: one sign-off, one firing."""
    for _ in range(ROUNDS):
        keys = new_keys()
        engine.fire(keys, "report_lost", people["cs_clerk"], "找不到了")
        supervisor = people["cs_supervisor"].id
        winner, loser = split(race(app, keys.id, [Racer(supervisor, approve), Racer(supervisor, approve)]))
        refused(loser)
        assert winner.result == "approved"
        assert db.session.get(KeyCustody, keys.id).state == "lost"
        assert count(SignOff, SignOff.record_id == keys.id) == 1
        assert len(firings(keys.id, "transition")) == 1


# --- deterministic interleavings of two signers ------------------------------------------------------
def signers_in_turn(app: Flask, record_id: int, winner_id: int, loser_id: int, *, mid_call: bool) -> Racer:
    """The loser loads the record, then the winner signs and commits, then the loser signs.
    ``mid_call``: the winner's commit lands inside the loser's ``decide``, after its checks have
    read the sign-offs (paused there by a session event), instead of before the call."""
    loaded, paused, committed = threading.Event(), threading.Event(), threading.Event()
    loser = Racer(loser_id, approve)

    reads = [0]

    def pause_inside(state: sa.orm.ORMExecuteState) -> None:
        """Before the loser's third read of the sign-offs (its permission checks are done)."""
        if state.is_select and "sign_off" in str(state.statement):
            reads[0] += 1
            if reads[0] == 3:
                paused.set()
                committed.wait(timeout=30)

    def run_loser() -> None:
        with app.test_request_context():
            try:
                me = db.session.get(Staff, loser_id)
                record = db.session.get(KeyCustody, record_id)
                loser.loaded_version = record.version
                loaded.set()
                if mid_call:
                    sa.event.listen(db.session(), "do_orm_execute", pause_inside)
                else:
                    committed.wait(timeout=30)
                loser.result = approve(record, me)
            except BaseException as exc:  # reported to the test thread
                loser.error = exc
            finally:
                paused.set()
                db.session.remove()

    def run_winner() -> None:
        loaded.wait(timeout=30)
        if mid_call:
            paused.wait(timeout=30)
        with app.test_request_context():
            try:
                me = db.session.get(Staff, winner_id)
                assert approve(db.session.get(KeyCustody, record_id), me) == "approved"
            finally:
                committed.set()
                db.session.remove()

    db.session.commit()
    threads = [threading.Thread(target=run_loser), threading.Thread(target=run_winner)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a signer hung"
    db.session.expire_all()
    return loser


def test_wf_engine_signer_interrupted_by_the_winners_commit_gets_conflict(
        app: Flask, people: dict[str, Staff], joint_chain: Workflow) -> None:
    second_guard = add_staff("guard2", {"security"})
    record = new_keys()
    engine.fire(record, "submit", people["cs_clerk"])
    engine.decide(record, people["engineering"], True)
    loser = signers_in_turn(app, record.id, people["security"].id, second_guard.id, mid_call=True)
    assert isinstance(loser.error, engine.Conflict), repr(loser.error)
    assert loser.error.who == "guard"
    assert len(firings(record.id, "transition")) == 1 and len(firings(record.id, "signoff")) == 2


def test_wf_engine_signer_with_stale_record_gets_conflict(app: Flask, people: dict[str, Staff],
                                                          joint_chain: Workflow) -> None:
    second_guard = add_staff("guard2", {"security"})
    record = new_keys()
    engine.fire(record, "submit", people["cs_clerk"])
    engine.decide(record, people["engineering"], True)
    loser = signers_in_turn(app, record.id, people["security"].id, second_guard.id, mid_call=False)
    assert isinstance(loser.error, engine.Conflict), repr(loser.error)
    assert loser.error.who == "guard"
    assert db.session.get(KeyCustody, record.id).state == "approved"
