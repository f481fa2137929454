"""The workflow engine (workflow/engine.py) on real records: who may fire what from which state,
guards, required fields and comments, re-entered passwords, version checks, the protected
state column, approval chains of every shape, withdrawal, ACC-5 deletion, declaration checks,
system transitions and the audit rows each of these leaves (or, when refused, does not leave).

The shipped key custody workflow covers the common paths; chain shapes it does not declare are
tested by binding a throwaway workflow to KeyCustody for one test (``bind``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask_babel import lazy_gettext as _l

from models import Delegation, Department, KeyCustody, Staff, db
from models.base import utcnow
from tests.conftest import PASSWORD
from tests.workflow_fixtures import (
    add_staff,
    audit_rows,
    new_keys,
    notices,
    security_events,
    signed_in,
    workflow_binder,
    written,
)
from workflow import audit, engine, settings
from workflow.engine import Step, T, Workflow

Bind = Callable[[Workflow], Workflow]
HOLDER = {"current_holder": "王师傅", "current_purpose": "维修水管"}


@pytest.fixture()
def people(db_session: Any, staff_ids: dict[str, int]) -> dict[str, Staff]:
    """role → the account conftest created for it, in the test's session."""
    return {role: db.session.get(Staff, sid) for role, sid in staff_ids.items()}


@pytest.fixture()
def keys(db_session: Any, staff_ids: dict[str, int]) -> KeyCustody:
    return new_keys()


@pytest.fixture()
def bind(db_session: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bind]:
    """Binds a throwaway workflow to KeyCustody for this test only."""
    with workflow_binder(monkeypatch) as binder:
        yield binder


def fresh(record: KeyCustody) -> KeyCustody:
    """The record as committed (what another request would load)."""
    db.session.expire_all()
    return db.session.get(KeyCustody, record.id)


def chain(*steps: Step, reject_to: str = "returned") -> Workflow:
    """A small workflow whose "submit" (by a clerk, supervisor or manager) runs the chain ``steps``."""
    states = {"draft": "Draft", "approved": "Approved", reject_to: "Sent back"}
    return Workflow("Approval test", states, "draft", [
        T("submit", "draft", "approved", {"cs_clerk", "manager", "cs_supervisor"},
          approvals=list(steps), reject_to=reject_to),
        T("reopen", ["approved", reject_to], "draft", {"cs_clerk"}),
    ])


# --- roles ------------------------------------------------------------------------------------
def test_wf_engine_role_not_in_transition_refused(keys: KeyCustody, people: dict[str, Staff]) -> None:
    before = written()
    with pytest.raises(engine.NotAllowed):
        engine.fire(keys, "check_out", people["finance"], values=HOLDER)
    assert written() == before
    assert not engine.may_fire(keys, keys.workflow.transition("check_out"), people["finance"])
    assert engine.available(keys, people["finance"]) == []
    assert "check_out" in [t.name for t in engine.available(keys, people["cs_clerk"])]


def test_wf_engine_inactive_user_refused(keys: KeyCustody, people: dict[str, Staff]) -> None:
    clerk = people["cs_clerk"]
    clerk.active = False
    db.session.commit()
    before = written()
    with pytest.raises(engine.NotAllowed):
        engine.fire(keys, "check_out", clerk, values=HOLDER)
    assert written() == before
    assert engine.available(keys, clerk) == []


def test_wf_engine_roles_follow_the_admins_setting(keys: KeyCustody, people: dict[str, Staff]) -> None:
    """The roles of a transition are a low-code setting; the engine reads the override."""
    settings.change("key_custody.check_out.roles", ["manager"], people["admin"])
    db.session.commit()
    with pytest.raises(engine.NotAllowed):
        engine.fire(keys, "check_out", people["cs_clerk"], values=HOLDER)
    assert engine.fire(keys, "check_out", people["manager"], values=HOLDER) == "done"


# --- state, guard, required fields, comment ---------------------------------------------------
def test_wf_engine_wrong_source_state_refused(keys: KeyCustody, people: dict[str, Staff]) -> None:
    before = written()
    with pytest.raises(engine.NotAllowed):
        engine.fire(keys, "check_in", people["cs_clerk"])  # keys are in the cabinet, not out
    assert written() == before
    assert fresh(keys).state == "held"


def test_wf_engine_unknown_transition_refused(keys: KeyCustody, people: dict[str, Staff]) -> None:
    with pytest.raises(engine.NotAllowed):
        engine.fire(keys, "teleport", people["manager"])


def test_wf_engine_guard_refusal_message_surfaces(keys: KeyCustody, people: dict[str, Staff]) -> None:
    """The key custody guard: keys go back only against the resident's confirmed name."""
    before = written()
    with pytest.raises(engine.NotAllowed) as refused:
        engine.fire(keys, "return_keys", people["cs_clerk"],
                    values={"returned_to": "陌生人", "resident_confirmation": "陌生人"})
    guard = keys.workflow.transition("return_keys").guard
    assert str(refused.value) == str(guard(fresh(keys)))
    assert written() == before  # the values the refused call brought were not kept
    assert fresh(keys).returned_to is None
    keys = fresh(keys)
    assert engine.fire(keys, "return_keys", people["cs_clerk"],
                       values={"returned_to": "张三", "resident_confirmation": "张三"}) == "done"
    assert fresh(keys).state == "returned"


@pytest.mark.parametrize("verdict", [False, "柜门已锁"])
def test_wf_engine_guard_false_or_message(bind: Bind, people: dict[str, Staff], verdict: Any) -> None:
    """A guard returning False refuses with a generic message; a returned message is shown as is."""
    bind(Workflow("Guarded", {"a": "A", "b": "B"}, "a", [
        T("go", "a", "b", {"cs_clerk"}, guard=lambda record: verdict)]))
    record = new_keys()
    before = written()
    with pytest.raises(engine.NotAllowed) as refused:
        engine.fire(record, "go", people["cs_clerk"])
    assert str(refused.value) == (verdict or str(_l("Not possible now.")))
    assert written() == before
    assert not engine.may_fire(record, record.workflow.transition("go"), people["cs_clerk"])
    assert engine.may_fire(record, record.workflow.transition("go"), people["cs_clerk"], guards=False)


def test_wf_engine_guard_may_ask_who_acts(bind: Bind, people: dict[str, Staff]) -> None:
    """A guard taking (record, user) sees the person firing, on the button list and on fire: e.g. only
    someone of the department the record was dispatched to signs its receipt (CMP-4)."""
    seen: list[Any] = []

    def same_department(record: Any, user: Staff | None) -> Any:
        seen.append(user)
        return None if user is not None and user.username == people["cs_supervisor"].username \
            else "Only the supervisor's department."

    bind(Workflow("Guarded", {"a": "A", "b": "B"}, "a", [
        T("go", "a", "b", {"cs_clerk", "cs_supervisor"}, guard=same_department)]))
    record = new_keys()
    go = record.workflow.transition("go")
    assert not engine.may_fire(record, go, people["cs_clerk"]) and engine.may_fire(record, go, people["cs_supervisor"])
    with pytest.raises(engine.NotAllowed, match="supervisor's department"):
        engine.fire(record, "go", people["cs_clerk"])
    assert engine.fire(fresh(record), "go", people["cs_supervisor"]) == "done"
    assert people["cs_clerk"] in seen and people["cs_supervisor"] in seen


def test_wf_engine_missing_required_fields_listed(keys: KeyCustody, people: dict[str, Staff]) -> None:
    before = written()
    with pytest.raises(engine.MissingFields) as missing:
        engine.fire(keys, "check_out", people["cs_clerk"])
    assert missing.value.fields == ["current_holder", "current_purpose"]
    with pytest.raises(engine.MissingFields) as missing:
        engine.fire(keys, "check_out", people["cs_clerk"],
                    values={"current_holder": "王师傅", "current_purpose": "   "})
    assert missing.value.fields == ["current_purpose"]  # blank counts as missing
    assert written() == before
    assert fresh(keys).current_holder is None  # the half-filled value was rolled back


def test_wf_engine_values_fill_only_declared_required_fields(keys: KeyCustody, people: dict[str, Staff]) -> None:
    keys = fresh(keys)
    engine.fire(keys, "check_out", people["cs_clerk"], values={
        "current_holder": "  王师傅 ", "current_purpose": "维修水管", "description": "改过的描述",
        "returned_to": "某人", "state": "lost", "deleted_at": "2020-01-01"})
    keys = fresh(keys)
    assert (keys.state, keys.current_holder, keys.current_purpose) == ("out", "王师傅", "维修水管")
    assert keys.description == "入户门钥匙" and keys.returned_to is None and keys.deleted_at is None


def test_wf_engine_required_comment(keys: KeyCustody, people: dict[str, Staff]) -> None:
    before = written()
    with pytest.raises(engine.MissingFields) as missing:
        engine.fire(keys, "report_lost", people["cs_clerk"], "   ")
    assert missing.value.fields == ["comment"]
    assert written() == before
    assert engine.fire(fresh(keys), "report_lost", people["cs_clerk"], "柜中找不到") == "requested"


# --- ACC-5 re-entered password ------------------------------------------------------------------
@pytest.mark.parametrize("password", [None, "", "wrong-password-123"])
def test_acc_5_transition_password_wrong_or_missing_refused(keys: KeyCustody, people: dict[str, Staff],
                                                             password: str | None) -> None:
    before, failures = written(), security_events("reauth_failed")
    with pytest.raises(engine.NotAllowed):
        engine.fire(keys, "delete", people["cs_clerk"], "重复登记", password=password)
    assert security_events("reauth_failed") == failures + 1  # ACC-7: the failure is logged
    assert written() == before
    assert fresh(keys).pending_transition is None


# --- version check -------------------------------------------------------------------------------
def test_wf_engine_stale_version_conflict_names_who_and_when(keys: KeyCustody, people: dict[str, Staff]) -> None:
    opened_at = keys.version
    with signed_in(people["cs_clerk"]):
        engine.fire(keys, "check_out", people["cs_clerk"], version=opened_at, values=HOLDER)
    winner = audit_rows(keys, "transition")[-1]
    assert winner.actor_name == "clerk"
    keys = fresh(keys)
    before = written()
    with signed_in(people["security"]), pytest.raises(engine.Conflict) as conflict:
        engine.fire(keys, "check_in", people["security"], version=opened_at)
    assert (conflict.value.who, conflict.value.when) == ("clerk", winner.at)
    assert "clerk" in str(conflict.value)
    assert written() == before
    assert engine.fire(fresh(keys), "check_in", people["security"], version=str(keys.version)) == "done"


def test_wf_engine_stale_version_refused_for_decide_and_withdraw(keys: KeyCustody, people: dict[str, Staff]) -> None:
    engine.fire(keys, "report_lost", people["cs_clerk"], "找不到了")
    opened_at = fresh(keys).version
    engine.withdraw(fresh(keys), people["cs_clerk"], version=opened_at)
    engine.fire(fresh(keys), "report_lost", people["cs_clerk"], "还是找不到")
    before = written()
    with pytest.raises(engine.Conflict) as conflict:
        engine.decide(fresh(keys), people["cs_supervisor"], True, version=opened_at)
    assert conflict.value.who == "clerk"
    with pytest.raises(engine.Conflict):
        engine.withdraw(fresh(keys), people["cs_clerk"], version=opened_at)
    assert written() == before
    assert engine.decide(fresh(keys), people["cs_supervisor"], True, version=fresh(keys).version) == "approved"


# --- the protected state column ---------------------------------------------------------------
@pytest.mark.parametrize(("column", "value"), [
    ("state", "out"), ("pending_transition", "report_lost"), ("pending_round", 7), ("deleted_at", "now")])
def test_wf_engine_protected_columns_written_directly_refused(keys: KeyCustody, column: str, value: Any) -> None:
    keys = fresh(keys)
    before = written()
    setattr(keys, column, utcnow() if value == "now" else value)
    with pytest.raises(engine.NotAllowed):
        db.session.commit()
    db.session.rollback()
    assert written() == before
    assert fresh(keys).state == "held"


def test_wf_engine_ordinary_edit_allowed_and_new_record_starts_in_initial_state(
        keys: KeyCustody, people: dict[str, Staff]) -> None:
    keys = fresh(keys)
    keys.description = "车库遥控器"
    db.session.commit()
    assert fresh(keys).description == "车库遥控器"
    other = new_keys()
    assert other.state == "held"
    with pytest.raises(engine.NotAllowed):
        new_keys(state="lost")
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(KeyCustody)) == 2


# --- approval chains -----------------------------------------------------------------------------
def test_wf_engine_sequential_steps_sign_in_order(bind: Bind, people: dict[str, Staff]) -> None:
    bind(chain(Step("Supervisor", frozenset({"cs_supervisor"})), Step("Manager", frozenset({"manager"}))))
    record = new_keys()
    assert engine.fire(record, "submit", people["cs_clerk"], "请审批") == "requested"
    assert engine.current_step(record)[0] == 0
    before = written()
    assert not engine.can_decide(record, people["manager"])
    with pytest.raises(engine.NotAllowed):
        engine.decide(record, people["manager"], True)  # the manager's turn comes second
    assert written() == before
    assert engine.decide(record, people["cs_supervisor"], True, "同意") == "signed"
    assert engine.current_step(record)[0] == 1 and record.state == "draft"
    with pytest.raises(engine.NotAllowed):
        engine.decide(record, people["cs_supervisor"], True)
    assert [s.id for s in engine.approvers(record)] == [people["manager"].id]
    assert engine.decide(record, people["manager"], True) == "approved"
    record = fresh(record)
    assert record.state == "approved" and record.pending_transition is None
    rows = engine.signoffs(record, all_rounds=True)
    assert [(s.step, s.role, s.decision) for s in rows] == [(0, "cs_supervisor", "approve"),
                                                             (1, "manager", "approve")]
    assert len(audit_rows(record, "signoff")) == 2  # one "signoff" row per sign-off
    [moved] = audit_rows(record, "transition")
    assert (moved.transition, moved.comment) == ("submit", "请审批")  # the request's comment


@pytest.mark.parametrize("order", [("engineering", "security"), ("security", "engineering")])
def test_wf_engine_joint_step_any_order_completes_when_both_signed(bind: Bind, people: dict[str, Staff],
                                                                   order: tuple[str, str]) -> None:
    bind(chain(Step("Engineering and security", frozenset({"engineering", "security"}), joint=True)))
    record = new_keys()
    engine.fire(record, "submit", people["cs_clerk"])
    first, second = order
    assert engine.decide(record, people[first], True) == "signed"
    assert record.state == "draft" and engine.current_step(record)[0] == 0
    assert [s.id for s in engine.approvers(record)] == [people[second].id]
    with pytest.raises(engine.NotAllowed):
        engine.decide(record, people[first], True)
    assert engine.decide(record, people[second], True) == "approved"
    assert fresh(record).state == "approved"
    assert {s.role for s in engine.signoffs(record, all_rounds=True)} == {"engineering", "security"}


def test_wf_engine_joint_step_one_person_cannot_fill_both_roles(bind: Bind, people: dict[str, Staff]) -> None:
    bind(chain(Step("Engineering and security", frozenset({"engineering", "security"}), joint=True)))
    both = add_staff("both", {"engineering", "security"})
    record = new_keys()
    engine.fire(record, "submit", people["cs_clerk"])
    assert engine.decide(record, both, True) == "signed"
    before = written()
    assert not engine.can_decide(record, both)
    with pytest.raises(engine.NotAllowed):
        engine.decide(record, both, True)
    assert written() == before and fresh(record).state == "draft"
    missing_role = ({"engineering", "security"} - {engine.signoffs(record)[0].role}).pop()
    assert engine.decide(record, people[missing_role], True) == "approved"


def test_wf_engine_n_of_m_step(bind: Bind, people: dict[str, Staff]) -> None:
    bind(chain(Step("Two of three", frozenset({"cs_supervisor", "manager", "engineering"}), need=2)))
    record = new_keys()
    engine.fire(record, "submit", people["cs_clerk"])
    assert engine.decide(record, people["engineering"], True) == "signed"
    for refused in ("engineering", "finance"):  # the same signer twice; a role outside the step
        with pytest.raises(engine.NotAllowed):
            engine.decide(record, people[refused], True)
    assert {s.id for s in engine.approvers(record)} == {people["cs_supervisor"].id, people["manager"].id}
    assert engine.decide(record, people["manager"], True) == "approved"
    assert fresh(record).state == "approved"


def test_wf_engine_head_of_department_approves(bind: Bind, people: dict[str, Staff]) -> None:
    bind(chain(Step("Head of engineering", head_of="engineering")))
    member = add_staff("engmember", {"engineering"}, department="engineering")
    other_head = add_staff("sechead", {"security"}, department="security", head=True)
    head = add_staff("enghead", {"finance"}, department="engineering", head=True)
    record = new_keys()
    engine.fire(record, "submit", people["cs_clerk"])
    assert [s.id for s in engine.approvers(record)] == [head.id]
    for refused in (member, other_head, people["manager"]):
        with pytest.raises(engine.NotAllowed):
            engine.decide(record, refused, True)
    assert engine.decide(record, head, True) == "approved"
    assert [s.role for s in engine.signoffs(record, all_rounds=True)] == ["head"]


def test_wf_engine_head_of_field_department_approves(bind: Bind, people: dict[str, Staff],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The approving department is read from the record (here: a department named in a field)."""
    def handling_department_id(record: KeyCustody) -> int | None:
        return db.session.scalar(sa.select(Department.id).where(Department.key == record.permitted_use))

    monkeypatch.setattr(KeyCustody, "handling_department_id", property(handling_department_id), raising=False)
    bind(chain(Step("Head of the handling department", head_of_field="handling_department_id")))
    eng_head = add_staff("enghead", {"engineering"}, department="engineering", head=True)
    sec_head = add_staff("sechead", {"security"}, department="security", head=True)
    record = new_keys(permitted_use="security")
    engine.fire(record, "submit", people["cs_clerk"])
    assert [s.id for s in engine.approvers(record)] == [sec_head.id]
    with pytest.raises(engine.NotAllowed):
        engine.decide(record, eng_head, True)
    assert engine.decide(record, sec_head, True) == "approved"


def test_wf_engine_user_field_approver(bind: Bind, people: dict[str, Staff]) -> None:
    bind(chain(Step("The person named on the record", user_field="created_by_id")))
    record = new_keys(created_by_id=people["engineering"].id)
    engine.fire(record, "submit", people["cs_clerk"])
    assert [s.id for s in engine.approvers(record)] == [people["engineering"].id]
    with pytest.raises(engine.NotAllowed):
        engine.decide(record, people["manager"], True)
    assert engine.decide(record, people["engineering"], True) == "approved"
    assert [s.role for s in engine.signoffs(record, all_rounds=True)] == ["user"]


def test_wf_engine_self_approval_refused(keys: KeyCustody, people: dict[str, Staff]) -> None:
    """A supervisor who reports keys lost cannot confirm the loss themselves."""
    engine.fire(keys, "report_lost", people["cs_supervisor"], "找不到了")
    before = written()
    assert not engine.can_decide(keys, people["cs_supervisor"])
    assert engine.approvers(keys) == []
    with pytest.raises(engine.NotAllowed):
        engine.decide(keys, people["cs_supervisor"], True)
    assert written() == before


@pytest.mark.parametrize("allow_self", [False, True])
def test_wf_engine_self_approval_only_when_allowed(bind: Bind, people: dict[str, Staff], allow_self: bool) -> None:
    bind(chain(Step("Manager", frozenset({"manager"}), allow_self=allow_self)))
    record = new_keys()
    engine.fire(record, "submit", people["manager"])
    assert engine.can_decide(record, people["manager"]) is allow_self
    if allow_self:
        assert engine.decide(record, people["manager"], True) == "approved"
    else:
        with pytest.raises(engine.NotAllowed):
            engine.decide(record, people["manager"], True)
        assert fresh(record).pending_transition == "submit"


def test_wf_engine_reject_needs_comment_and_tells_requester(keys: KeyCustody, people: dict[str, Staff]) -> None:
    clerk, supervisor = people["cs_clerk"], people["cs_supervisor"]
    engine.fire(keys, "report_lost", clerk, "找不到了")
    assert [n.staff_id for n in notices(supervisor)] == [supervisor.id]  # the approver is told
    before = written()
    with pytest.raises(engine.MissingFields) as missing:
        engine.decide(keys, supervisor, False, "  ")
    assert missing.value.fields == ["comment"]
    assert written() == before
    assert engine.decide(keys, supervisor, False, "在抽屉里找到了") == "rejected"
    keys = fresh(keys)
    assert keys.state == "held" and keys.pending_transition is None  # no reject_to: state stays
    [told] = notices(clerk)
    assert f"#{keys.id}" in told.subject and "在抽屉里找到了" in told.body
    [row] = audit_rows(keys, "signoff")
    assert row.comment == "✗ [cs_supervisor] 在抽屉里找到了"
    assert audit_rows(keys, "transition") == []


def test_wf_engine_reject_to_state(bind: Bind, people: dict[str, Staff]) -> None:
    bind(chain(Step("Manager", frozenset({"manager"})), reject_to="returned"))
    record = new_keys()
    engine.fire(record, "submit", people["cs_clerk"])
    assert engine.decide(record, people["manager"], False, "材料不全") == "rejected"
    record = fresh(record)
    assert record.state == "returned" and record.pending_transition is None
    assert len(notices(people["cs_clerk"])) == 1
    assert engine.fire(record, "reopen", people["cs_clerk"]) == "done"


def test_wf_engine_approval_tells_requester(keys: KeyCustody, people: dict[str, Staff]) -> None:
    engine.fire(keys, "report_lost", people["cs_clerk"], "找不到了")
    assert engine.decide(keys, people["cs_supervisor"], True, "确认") == "approved"
    keys = fresh(keys)
    assert keys.state == "lost"
    [told] = notices(people["cs_clerk"])
    assert f"#{keys.id}" in told.subject


def test_wf_engine_withdraw_only_by_requester(keys: KeyCustody, people: dict[str, Staff]) -> None:
    engine.fire(keys, "report_lost", people["cs_clerk"], "找不到了")
    before = written()
    for other in ("cs_supervisor", "manager"):
        with pytest.raises(engine.NotAllowed):
            engine.withdraw(keys, people[other])
    assert written() == before
    engine.withdraw(keys, people["cs_clerk"], "找到了")
    keys = fresh(keys)
    assert keys.pending_transition is None and keys.state == "held"
    [row] = audit_rows(keys, "withdraw")
    assert (row.transition, row.comment) == ("report_lost", "找到了")
    assert engine.fire(keys, "check_out", people["cs_clerk"], values=HOLDER) == "done"


def test_wf_engine_new_round_after_withdrawal_starts_over(bind: Bind, people: dict[str, Staff]) -> None:
    bind(chain(Step("Supervisor", frozenset({"cs_supervisor"})), Step("Manager", frozenset({"manager"}))))
    record = new_keys()
    engine.fire(record, "submit", people["cs_clerk"])
    engine.decide(record, people["cs_supervisor"], True)
    engine.withdraw(record, people["cs_clerk"])
    engine.fire(fresh(record), "submit", people["cs_clerk"])
    record = fresh(record)
    assert record.pending_round == 2 and engine.current_step(record)[0] == 0  # old sign-offs do not count
    assert engine.signoffs(record) == []
    assert not engine.can_decide(record, people["manager"])


def test_wf_engine_nothing_else_fires_while_pending(keys: KeyCustody, people: dict[str, Staff]) -> None:
    engine.fire(keys, "report_lost", people["cs_clerk"], "找不到了")
    before = written()
    for role in ("cs_clerk", "manager", "security"):
        assert engine.available(keys, people[role]) == []
    with pytest.raises(engine.NotAllowed):
        engine.fire(keys, "check_out", people["cs_clerk"], values=HOLDER)
    with pytest.raises(engine.NotAllowed):
        engine.fire(keys, "delete", people["manager"], "删除", password=PASSWORD)
    assert written() == before


# --- ACC-5 deletion -------------------------------------------------------------------------------
def test_acc_5_delete_needs_password_comment_and_manager_approval(keys: KeyCustody, people: dict[str, Staff]) -> None:
    clerk, supervisor, manager = people["cs_clerk"], people["cs_supervisor"], people["manager"]
    before = written()
    with pytest.raises(engine.NotAllowed):
        engine.fire(keys, "delete", clerk, "重复登记")  # no password
    with pytest.raises(engine.MissingFields) as missing:
        engine.fire(keys, "delete", clerk, "", password=PASSWORD)
    assert missing.value.fields == ["comment"]
    assert written() == before
    assert engine.fire(keys, "delete", clerk, "重复登记", password=PASSWORD) == "requested"
    assert not engine.can_decide(keys, supervisor)
    with pytest.raises(engine.NotAllowed):
        engine.decide(keys, supervisor, True, password=PASSWORD)  # a supervisor is not a manager
    with pytest.raises(engine.NotAllowed):
        engine.decide(keys, manager, True)  # the approver re-enters the password too
    assert fresh(keys).deleted_at is None
    assert engine.decide(fresh(keys), manager, True, "同意删除", password=PASSWORD) == "approved"
    keys = fresh(keys)
    assert keys is not None and keys.deleted_at is not None  # soft-deleted: the row stays
    assert keys.state == "held"
    [row] = audit_rows(keys, "delete")
    assert (row.transition, row.comment) == ("delete", "重复登记")
    assert audit_rows(keys, "transition") == []
    with pytest.raises(engine.NotAllowed):
        engine.fire(keys, "check_out", clerk, values=HOLDER)
    assert engine.available(keys, manager) == []
    assert audit.verify(db.engine)[1] == []


def test_acc_5_delete_approved_by_manager_delegate(keys: KeyCustody, people: dict[str, Staff]) -> None:
    """A manager away delegates approvals; the delegate signs on the manager's behalf."""
    manager, supervisor = people["manager"], people["cs_supervisor"]
    engine.delegate(manager, supervisor, utcnow() - timedelta(hours=1), utcnow() + timedelta(days=1), "休假")
    db.session.commit()
    engine.fire(keys, "delete", people["cs_clerk"], "重复登记", password=PASSWORD)
    assert engine.can_decide(keys, supervisor)
    assert engine.decide(keys, supervisor, True, password=PASSWORD) == "approved"
    [sign] = engine.signoffs(keys, all_rounds=True)
    assert (sign.staff_id, sign.on_behalf_of_id, sign.role) == (supervisor.id, manager.id, "manager")
    assert fresh(keys).deleted_at is not None


def test_wf_engine_expired_delegation_gives_nothing(keys: KeyCustody, people: dict[str, Staff]) -> None:
    manager, supervisor = people["manager"], people["cs_supervisor"]
    db.session.add(Delegation(delegator=manager, delegate=supervisor, starts_at=utcnow() - timedelta(days=3),
                              ends_at=utcnow() - timedelta(days=1), reason="过期"))
    db.session.commit()
    engine.fire(keys, "delete", people["cs_clerk"], "重复登记", password=PASSWORD)
    assert not engine.can_decide(keys, supervisor)


# --- declarations ----------------------------------------------------------------------------------
VALID = [T("go", "a", "b", {"cs_clerk"})]


@pytest.mark.parametrize(("states", "initial", "transitions", "problem"), [
    ({"a": "A", "b": "B"}, "a", [T("go", "a", "nowhere", {"cs_clerk"})], "state 'nowhere' is not declared"),
    ({"a": "A", "b": "B"}, "z", VALID, "initial state 'z' is not declared"),
    ({"a": "A", "b": "B", "c": "C"}, "a", VALID, "state 'c' cannot be reached"),
    ({"a": "A", "b": "B"}, "a", VALID + [T("go", "b", "a", {"cs_clerk"})], "transition names must be unique"),
    ({"a": "A", "b": "B"}, "a", [T("go", "a", "b")], "go: no role may fire it"),
    ({"a": "A", "b": "B"}, "a", [T("go", "a", "b", {"cs_clerk"}, approvals=[
        Step("Alone", frozenset({"security"}), joint=True)])], "a joint step needs two or more roles"),
    ({"a": "A", "b": "B"}, "a", [T("go", "a", "b", {"cs_clerk"}, approvals=[Step("Nobody")])],
     "an approval step names no approver"),
    ({"a": "A", "b": "B"}, "a", [T("go", "a", "b", {"cs_clerk"}, reject_to="void",
                                   approvals=[Step("M", frozenset({"manager"}))])], "state 'void' is not declared"),
])
def test_wf_engine_validate_refuses_bad_declarations(bind: Bind, states: dict[str, str], initial: str,
                                                    transitions: list[engine.Transition], problem: str) -> None:
    shipped = engine.WORKFLOWS["key_custody"]
    wf = Workflow("Bad", states, initial, transitions)
    with pytest.raises(TypeError, match=problem):
        wf.validate()
    with pytest.raises(TypeError, match=problem):
        wf.__set_name__(KeyCustody, "workflow")
    assert engine.WORKFLOWS["key_custody"] is shipped  # a bad declaration is never registered


def test_wf_engine_validate_accepts_shipped_and_reject_to_reachability() -> None:
    KeyCustody.workflow.validate()
    Workflow("Reached by rejection", {"a": "A", "b": "B", "back": "Back"}, "a", [
        T("go", "a", "b", {"cs_clerk"}, approvals=[Step("M", frozenset({"manager"}))], reject_to="back"),
        T("retry", "back", "a", {"cs_clerk"}), T("tick", "b", "b", system=True)]).validate()


# --- system transitions -----------------------------------------------------------------------------
def test_wf_engine_system_transition_only_without_user(bind: Bind, people: dict[str, Staff]) -> None:
    wf = bind(Workflow("Timed", {"open": "Open", "expired": "Expired"}, "open", [
        T("expire", "open", "expired", system=True), T("reopen", "expired", "open", {"cs_clerk"})]))
    assert "key_custody.expire.roles" not in settings.SPECS  # nobody can be given this step
    record = new_keys()
    before = written()
    for role in ("admin", "manager"):
        with pytest.raises(engine.NotAllowed):
            engine.fire(record, "expire", people[role])
        assert engine.available(record, people[role]) == []
    assert written() == before
    assert engine.may_fire(record, wf.transition("expire"), None)
    assert engine.fire(record, "expire", None, "到期") == "done"
    record = fresh(record)
    assert record.state == "expired"
    with pytest.raises(engine.NotAllowed):
        engine.fire(record, "reopen", None)  # a person's step needs a person
    [row] = audit_rows(record, "transition")
    assert (row.transition, row.comment) == ("expire", "到期")


def test_wf_engine_system_request_can_be_approved(bind: Bind, people: dict[str, Staff]) -> None:
    """A chain the sweep starts has no requester, so nobody is refused as approving their own."""
    bind(Workflow("Escalation", {"open": "Open", "major": "Major"}, "open", [
        T("escalate", "open", "major", system=True, approvals=[Step("Manager", frozenset({"manager"}))]),
        T("reopen", "major", "open", {"cs_clerk"})]))
    record = new_keys()
    assert engine.fire(record, "escalate", None, "超过一个月未解决") == "requested"
    assert engine.can_decide(record, people["manager"])
    assert engine.decide(record, people["manager"], True) == "approved"


# --- audit rows ------------------------------------------------------------------------------------------
def test_wf_engine_audit_one_transition_row_per_firing(keys: KeyCustody, people: dict[str, Staff]) -> None:
    with signed_in(people["cs_clerk"]):
        engine.fire(keys, "check_out", people["cs_clerk"], " 给维修工 ", values=HOLDER)
        engine.fire(fresh(keys), "check_in", people["cs_clerk"])
    keys = fresh(keys)
    assert [r.action for r in audit_rows(keys)] == ["create", "transition", "transition"]
    out, back = audit_rows(keys, "transition")
    assert (out.transition, out.comment, out.actor_name) == ("check_out", "给维修工", "clerk")
    assert (back.transition, back.comment) == ("check_in", None)
    assert '"state": ["held", "out"]' in out.changes
    assert [(u.holder, u.in_at is not None) for u in keys.uses] == [("王师傅", True)]
    assert audit.verify(db.engine)[1] == []


def test_wf_engine_request_signoff_rows(keys: KeyCustody, people: dict[str, Staff]) -> None:
    engine.fire(keys, "report_lost", people["cs_clerk"], "找不到了")
    engine.decide(keys, people["cs_supervisor"], True, "确认")
    keys = fresh(keys)
    assert [(r.action, r.transition, r.comment) for r in audit_rows(keys)][1:] == [
        ("request", "report_lost", "找不到了"), ("signoff", "report_lost", "✓ [cs_supervisor] 确认"),
        ("transition", "report_lost", "找不到了")]


def test_wf_engine_remind_once_per_period(keys: KeyCustody, people: dict[str, Staff]) -> None:
    engine.fire(keys, "report_lost", people["cs_clerk"], "找不到了")
    supervisor = people["cs_supervisor"]
    assert len(notices(supervisor)) == 1  # told when asked
    assert engine.remind() == 0  # not waiting long enough yet
    later = utcnow() + timedelta(hours=25)
    assert engine.remind(later) == 1
    assert engine.remind(later) == 0  # once per period
    assert len(notices(supervisor)) == 2
    assert [n.staff_id for n in notices(people["cs_clerk"])] == []  # the requester is not reminded


def test_wf_engine_rejection_is_one_signoff_row(bind: Bind, people: dict[str, Staff]) -> None:
    """The rejection's state change (reject_to) is in the sign-off's row, not an anonymous update."""
    bind(chain(Step("Manager", frozenset({"manager"})), reject_to="returned"))
    record = new_keys()
    engine.fire(record, "submit", people["cs_clerk"], "请审批")
    engine.decide(record, people["manager"], False, "材料不全")
    rows = audit_rows(fresh(record))
    assert [r.action for r in rows] == ["create", "request", "signoff"]
    assert '"state": ["draft", "returned"]' in rows[-1].changes


def test_wf_engine_transition_with_typed_fields_offered_before_typing(keys: KeyCustody,
                                                                      people: dict[str, Staff]) -> None:
    """The return_keys guard reads a field the user types into the step's own form: the button is
    offered while the field is blank, and the guard decides when the step is fired."""
    assert "return_keys" in [t.name for t in engine.available(keys, people["cs_clerk"])]
    with pytest.raises(engine.NotAllowed):
        engine.fire(keys, "return_keys", people["cs_clerk"],
                    values={"returned_to": "陌生人", "resident_confirmation": "陌生人"})


@pytest.mark.parametrize(("column", "value"), [("pending_comment", "改过的理由"), ("pending_since", "now")])
def test_wf_engine_request_columns_protected(keys: KeyCustody, people: dict[str, Staff], column: str,
                                            value: Any) -> None:
    """The request comment the approvers read (and the 'transition' row later records) and the time
    the reminders count from change only through the engine."""
    engine.fire(keys, "report_lost", people["cs_clerk"], "找不到了")
    keys = fresh(keys)
    before = written()
    setattr(keys, column, utcnow() if value == "now" else value)
    with pytest.raises(engine.NotAllowed):
        db.session.commit()
    db.session.rollback()
    assert written() == before and fresh(keys).pending_comment == "找不到了"
    assert engine.decide(fresh(keys), people["cs_supervisor"], True) == "approved"
    assert audit_rows(keys, "transition")[0].comment == "找不到了"
