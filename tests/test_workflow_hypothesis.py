"""Random walks through the key custody workflow (hypothesis stateful testing).

Staff of every role fire random transitions, sign, reject and withdraw with random comments,
field values, passwords and (sometimes stale) versions on a few records. Whatever happens:
every state is a declared one, the trail holds exactly one "transition"/"delete" row per
completed firing, a refused call writes nothing, the engine refuses whatever ``may_fire`` /
``can_decide`` would not offer, and the audit hash chain stays intact.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from models import AuditEntry, KeyCustody, Staff, db
from tests.conftest import PASSWORD
from tests.workflow_fixtures import add_staff, new_keys, written
from workflow import audit, engine

RECORDS = 3
REFUSALS = (engine.NotAllowed, engine.MissingFields, engine.Conflict)
NAMES = ["check_out", "check_in", "return_keys", "report_lost", "delete", "no_such_step"]
comments = st.sampled_from(["柜中找不到", "给维修工", " 重复登记 ", "", "   "])
passwords = st.sampled_from([PASSWORD, PASSWORD, None, "", "wrong-password-123"])
texts = st.sampled_from(["", "  ", "王师傅", "张三", "张三 ", "陌生人"])
complete = {"current_holder": "王师傅", "current_purpose": "维修水管", "returned_to": "张三",
            "resident_confirmation": "张三"}
values = st.one_of(st.just(complete), st.fixed_dictionaries({}, optional={
    "current_holder": texts, "current_purpose": texts, "returned_to": texts,
    "resident_confirmation": texts, "description": texts, "state": st.sampled_from(["lost", "returned"])}))
records = st.integers(0, RECORDS - 1)
people = st.integers(0, 50)
stale = st.sampled_from([False, False, False, True])  # a form opened before the last change


class KeyCustodyWalk(RuleBasedStateMachine):
    """One example: fresh records, random calls; ``staff`` is set by the test."""

    staff: list[int] = []

    def __init__(self) -> None:
        super().__init__()
        self.ids = [new_keys().id for _ in range(RECORDS)]
        self.completions = 0  # fire() -> "done" plus decide() -> "approved"

    # --- helpers ------------------------------------------------------------------------------
    def load(self, index: int) -> KeyCustody:
        db.session.rollback()
        db.session.expire_all()
        return db.session.get(KeyCustody, self.ids[index])

    def who(self, person: int) -> Staff:
        return db.session.get(Staff, self.staff[person % len(self.staff)])

    def everyone(self) -> list[Staff]:
        return [db.session.get(Staff, sid) for sid in self.staff]

    def refused(self, before: dict[str, Any]) -> None:
        db.session.rollback()
        assert written() == before, "a refused call wrote something"

    def try_fire(self, index: int, user: Staff, name: str, comment: str, fields: dict[str, str],
                 password: str | None, stale: bool) -> None:
        """Fire and check the outcome against what the engine offered beforehand."""
        record = self.load(index)
        t = record.workflow.transition(name)
        offered = t is not None and engine.may_fire(record, t, user, guards=False)
        loaded = record.version
        version = loaded - 1 if stale and loaded > 1 else loaded
        before = written()
        try:
            outcome = engine.fire(record, name, user, comment, version=version, password=password, values=fields)
        except REFUSALS as exc:
            self.refused(before)
            if t is None:
                assert isinstance(exc, engine.NotAllowed)
            elif version != loaded:
                assert isinstance(exc, engine.Conflict)
            elif not offered:
                assert isinstance(exc, engine.NotAllowed), repr(exc)
            return
        assert t is not None and offered
        assert self.load(index).version == version + 1
        assert outcome == ("requested" if t.approvals else "done")
        self.completions += outcome == "done"

    def try_decide(self, index: int, user: Staff, approve: bool, comment: str, password: str | None,
                   stale: bool) -> None:
        record = self.load(index)
        allowed = engine.can_decide(record, user)
        loaded = record.version
        version = loaded - 1 if stale and loaded > 1 else loaded
        before = written()
        try:
            outcome = engine.decide(record, user, approve, comment, version=version, password=password)
        except REFUSALS as exc:
            self.refused(before)
            if version != loaded:
                assert isinstance(exc, engine.Conflict)
            elif not allowed:
                assert isinstance(exc, engine.NotAllowed), repr(exc)
            return
        assert allowed
        assert outcome in (("approved", "signed") if approve else ("rejected",))
        self.completions += outcome == "approved"

    # --- rules -------------------------------------------------------------------------------
    @rule(index=records, person=people, name=st.sampled_from(NAMES), comment=comments, fields=values,
          password=passwords, stale=stale)
    def fire_anything(self, index: int, person: int, name: str, comment: str, fields: dict[str, str],
                      password: str | None, stale: bool) -> None:
        """Anyone tries anything: mostly refusals."""
        self.try_fire(index, self.who(person), name, comment, fields, password, stale)

    @rule(index=records, data=st.data(), comment=comments, fields=values, password=passwords)
    def fire_offered(self, index: int, data: st.DataObject, comment: str, fields: dict[str, str],
                     password: str | None) -> None:
        """Someone presses a button the screen shows them: mostly progress."""
        record = self.load(index)
        offers = [(u, t.name) for u in self.everyone() for t in engine.available(record, u, guards=False)]
        if offers:
            user, name = data.draw(st.sampled_from(offers))
            self.try_fire(index, user, name, comment, fields, password, stale=False)

    @rule(index=records, data=st.data(), comment=st.sampled_from(["柜中找不到", " 重复登记 "]))
    def ask_for_approval(self, index: int, data: st.DataObject, comment: str) -> None:
        """Someone starts an approval chain (report lost, request deletion) properly."""
        record = self.load(index)
        offers = [(u, t.name) for u in self.everyone() for t in engine.available(record, u, guards=False)
                  if t.approvals]
        if offers:
            user, name = data.draw(st.sampled_from(offers))
            self.try_fire(index, user, name, comment, {}, PASSWORD, stale=False)

    @rule(index=records, person=people, approve=st.booleans(), comment=comments, password=passwords,
          stale=stale)
    def decide_anything(self, index: int, person: int, approve: bool, comment: str, password: str | None,
                        stale: bool) -> None:
        self.try_decide(index, self.who(person), approve, comment, password, stale)

    @rule(index=records, data=st.data(), approve=st.sampled_from([True, True, True, False]), comment=comments,
          password=passwords)
    def decide_as_approver(self, index: int, data: st.DataObject, approve: bool, comment: str,
                           password: str | None) -> None:
        candidates = engine.approvers(self.load(index))
        if candidates:
            self.try_decide(index, data.draw(st.sampled_from(candidates)), approve, comment, password, False)

    @rule(index=records, person=people, own=st.booleans(), comment=comments)
    def withdraw(self, index: int, person: int, own: bool, comment: str) -> None:
        record = self.load(index)
        user = record.pending_by if own and record.pending_by is not None else self.who(person)
        asked = record.pending_transition is not None and record.pending_by_id == user.id
        before = written()
        try:
            engine.withdraw(record, user, comment)
        except REFUSALS:
            self.refused(before)
            assert not asked
            return
        assert asked and self.load(index).pending_transition is None

    @rule(index=records, state=st.sampled_from(["held", "out", "lost", "returned"]))
    def write_state_directly(self, index: int, state: str) -> None:
        record = self.load(index)
        if record.state == state:
            return
        before = written()
        record.state = state
        try:
            db.session.commit()
        except engine.NotAllowed:
            self.refused(before)
        else:
            raise AssertionError("the state column was written outside the engine")

    # --- invariants ----------------------------------------------------------------------------
    @invariant()
    def states_are_declared(self) -> None:
        states = db.session.scalars(sa.select(KeyCustody.state).where(KeyCustody.id.in_(self.ids))).all()
        assert set(states) <= set(KeyCustody.workflow.states)

    @invariant()
    def one_trail_row_per_completion(self) -> None:
        rows = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
            AuditEntry.record_type == KeyCustody.__tablename__, AuditEntry.record_id.in_(self.ids),
            AuditEntry.action.in_(("transition", "delete"))))
        assert rows == self.completions

    def teardown(self) -> None:
        db.session.rollback()
        assert audit.verify(db.engine)[1] == []


def test_wf_engine_random_walk_keeps_invariants(app: Flask, staff_ids: dict[str, int]) -> None:
    with app.test_request_context():
        # A second manager and supervisor, so requests made by the first ones can be decided too.
        extra = [add_staff("manager2", {"manager"}).id, add_staff("supervisor2", {"cs_supervisor"}).id]
        KeyCustodyWalk.staff = [*staff_ids.values(), *extra]
        run_state_machine_as_test(KeyCustodyWalk, settings=settings(
            max_examples=30, stateful_step_count=25, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]))
        db.session.remove()
