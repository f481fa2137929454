"""The workflow engine: declared states, transitions and approval chains, enforced on the server.

A regulation declares ``workflow = Workflow(...)`` on a ``Tracked`` model. Every path (form,
list action, bulk action, CLI, sweep) moves a record only through ``fire``, ``decide`` and
``withdraw``, which check role, guard, required fields, re-entered password and the record's
version, then write state + sign-off + audit row in one transaction. Views only ask
``available`` / ``can_decide`` which buttons to show.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from models.audit import AuditEntry
from models.base import db, utcnow
from models.staff import Staff
from models.workflow import Delegation, SignOff
from workflow import settings
from workflow.audit import acting_as, annotate, stop_acting
from workflow.notify import notify

STAY = "*"  # a transition's target meaning "the state does not change" (e.g. delete)
DELETE = "delete"


# --- typed errors, shown translated -------------------------------------------------------
class WorkflowError(Exception):
    def __init__(self, message: Any) -> None:
        super().__init__(str(message))
        self.message = message

    def __str__(self) -> str:
        return str(self.message)


class NotAllowed(WorkflowError):
    """The user's roles, the record's state, a guard or a password says no."""


class MissingFields(WorkflowError):
    def __init__(self, fields: list[str], labels: list[str]) -> None:
        super().__init__(_l("Fill in first: %(f)s", f="、".join(labels)))
        self.fields = fields


class Conflict(WorkflowError):
    """Someone else changed the record first; tells who and when."""

    def __init__(self, who: str | None, when: datetime | None) -> None:
        from views.templating import localtime

        if who and when:
            msg = _l("%(who)s changed this record at %(when)s, after you opened it. Reload and try "
                     "again; nothing of yours was saved.", who=who, when=localtime(when))
        else:
            msg = _l("Someone else changed this record after you opened it. Reload and try again; "
                     "nothing of yours was saved.")
        super().__init__(msg)
        self.who, self.when = who, when


# --- declarations --------------------------------------------------------------------------
Guard = Callable[..., Any]  # guard(record) or guard(record, user): None/True allows, False or a message refuses
Effect = Callable[[Any, "Firing"], None]


@dataclass(frozen=True)
class Step:
    """One step of an approval chain. Approvers: a role, a department head, or a user named by
    a field of the record. ``joint``: every listed role signs, in any order. ``need``: N of M."""

    label: Any
    roles: frozenset[str] = frozenset()
    head_of: str | None = None
    head_of_field: str | None = None
    user_field: str | None = None
    joint: bool = False
    need: int = 1
    allow_self: bool = False


@dataclass(frozen=True)
class Transition:
    name: str
    source: tuple[str, ...]
    target: str
    roles: frozenset[str] = frozenset()
    label: Any = None
    guard: Guard | None = None  # about the record's data: checked once the required fields are typed
    requires: tuple[str, ...] = ()
    password: bool = False
    comment_required: bool = False
    approvals: tuple[Step, ...] = ()
    reject_to: str | None = None
    effect: Effect | None = None
    todo: bool = True  # shown in "My work" for those who may fire it
    system: bool = False  # fired by the sweep/CLI, never by a person
    danger: bool = False
    who: Guard | None = None  # about the person, (record, user): checked always, so My work lists the
    # step only to those who may give it, even while its fields are still to be typed


@dataclass
class Firing:
    """What an effect gets: who fired what, with which comment, at what time."""

    user: Staff | None
    transition: Transition
    comment: str
    at: datetime
    approved_by: Staff | None = None  # the last approver, when a chain completed


def T(name: str, source: str | Iterable[str], target: str, roles: Iterable[str] = (),  # noqa: N802
      **kw: Any) -> Transition:
    """Shorthand for declarations: ``T("return", "held", "returned", {"cs_clerk"})``."""
    src = (source,) if isinstance(source, str) else tuple(source)
    requires = tuple(kw.pop("requires", ()))
    approvals = tuple(kw.pop("approvals", ()))
    return Transition(name, src, target, frozenset(roles), requires=requires, approvals=approvals, **kw)


WORKFLOWS: dict[str, Workflow] = {}


class Workflow:
    """States and transitions of one regulation record; validated when the model is defined."""

    def __init__(self, label: Any, states: dict[str, Any], initial: str,
                 transitions: list[Transition], *, delete_roles: Iterable[str] = (),
                 deadlines: Iterable[Any] = (), preload: Iterable[str] = ()) -> None:
        self.label, self.states, self.initial = label, dict(states), initial
        # Relationships the guards read ("visitor.role_rows"): "My work" loads them for all its
        # candidates at once instead of one lazy load per record and guard.
        self.preload = tuple(preload)
        self.transitions = list(transitions)
        self.deadlines = list(deadlines)  # workflow.deadlines.Deadline: the time limits (REGULATIONS §11)
        if delete_roles:  # ACC-5: deleting is a request a manager approves, then a soft delete
            self.transitions.append(Transition(
                DELETE, tuple(self.states), STAY, frozenset(delete_roles), label=_l("Request deletion"),
                password=True, comment_required=True, todo=False, danger=True,
                approvals=(Step(_l("Manager approves deletion"), frozenset({"manager"})),),
                effect=_soft_delete))
        self.model: Any = None
        self.key = ""
        # Final states: no human transition leads out of them (the delete request aside).
        self.final_states = {s for s in self.states
                             if not any(s in t.source for t in self.transitions if t.name != DELETE)}

    def __set_name__(self, owner: type, name: str) -> None:
        self.model, self.key = owner, owner.__tablename__
        self.validate()
        WORKFLOWS[self.key] = self
        for t in self.transitions:
            if not t.system:
                settings.declare(settings.SettingSpec(
                    f"{self.key}.{t.name}.roles", t.label or t.name, "roles", sorted(t.roles),
                    group=self.label))
            for i, step in enumerate(t.approvals):
                if step.roles and t.name != DELETE:  # ACC-5 fixes the approver: a manager
                    settings.declare(settings.SettingSpec(
                        f"{self.key}.{t.name}.step{i + 1}.roles", step.label, "roles",
                        sorted(step.roles), group=self.label))
        for deadline in self.deadlines:
            deadline.declare(self)  # its duration becomes a setting: <key>.deadline.<name>

    def validate(self) -> None:
        """One initial state, declared endpoints, unique names, every state reachable."""
        names = [t.name for t in self.transitions]
        problems = []
        if self.initial not in self.states:
            problems.append(f"initial state {self.initial!r} is not declared")
        if len(set(names)) != len(names):
            problems.append("transition names must be unique")
        for t in self.transitions:
            for s in (*t.source, t.target, *([t.reject_to] if t.reject_to else [])):
                if s != STAY and s not in self.states:
                    problems.append(f"{t.name}: state {s!r} is not declared")
            if not t.system and not t.roles:
                problems.append(f"{t.name}: no role may fire it")
            for step in t.approvals:
                if not (step.roles or step.head_of or step.head_of_field or step.user_field):
                    problems.append(f"{t.name}: an approval step names no approver")
                if step.joint and len(step.roles) < 2:
                    problems.append(f"{t.name}: a joint step needs two or more roles")
        reached, frontier = {self.initial}, [self.initial]
        while frontier:
            state = frontier.pop()
            for t in self.transitions:
                for nxt in (t.target, t.reject_to):
                    if state in t.source and nxt and nxt != STAY and nxt not in reached:
                        reached.add(nxt)
                        frontier.append(nxt)
        problems += [f"state {s!r} cannot be reached" for s in self.states if s not in reached]
        for deadline in self.deadlines:
            problems += deadline.problems(self)
        if problems:
            raise TypeError(f"workflow of {self.key}: " + "; ".join(problems))

    def transition(self, name: str) -> Transition | None:
        return next((t for t in self.transitions if t.name == name), None)

    def state_label(self, state: str | None) -> str:
        return str(self.states.get(state or "", state or ""))


def workflow_of(record_or_model: Any) -> Workflow:
    model = record_or_model if isinstance(record_or_model, type) else type(record_or_model)
    wf = getattr(model, "workflow", None)
    if not isinstance(wf, Workflow):
        raise TypeError(f"{model.__name__} declares no workflow")
    return wf


def _soft_delete(record: Any, firing: Firing) -> None:
    record.deleted_at = firing.at
    decided = firing.approved_by or firing.user  # the manager who approved, not the requester
    record.deleted_by_id = decided.id if decided else None


# --- questions the views ask ----------------------------------------------------------------
def roles_for(wf: Workflow, t: Transition) -> set[str]:
    return set(settings.value(f"{wf.key}.{t.name}.roles")) if not t.system else set()


def step_roles(wf: Workflow, t: Transition, index: int) -> set[str]:
    step = t.approvals[index]
    if not step.roles or t.name == DELETE:
        return set(step.roles)
    return set(settings.value(f"{wf.key}.{t.name}.step{index + 1}.roles"))


@functools.cache
def _wants_user(guard: Guard) -> bool:
    """Guards about who acts (e.g. "someone of the record's department") take the user too."""
    return len(inspect.signature(guard).parameters) >= 2


def _guard_message(t: Transition, record: Any, user: Staff | None, guard: Guard | None = None) -> Any | None:
    guard = guard or t.guard
    if guard is None:
        return None
    verdict = guard(record, user) if _wants_user(guard) else guard(record)
    if verdict is None or verdict is True:
        return None
    return _l("Not possible now.") if verdict is False else verdict


def _who_message(t: Transition, record: Any, user: Staff | None) -> Any | None:
    return _guard_message(t, record, user, t.who) if t.who is not None else None


def may_fire(record: Any, t: Transition, user: Staff | None, *, guards: bool = True) -> bool:
    wf = workflow_of(record)
    if record.deleted_at is not None or record.pending_transition or record.state not in t.source:
        return False
    if t.system:
        return user is None
    if user is None or not user.is_active or not (user.roles & roles_for(wf, t)):
        return False
    if not guards:
        return True
    if _who_message(t, record, user) is not None:
        return False
    if any(getattr(record, f, None) in (None, "", []) for f in t.requires):
        return True  # a guard about fields still to be typed is checked when the step is fired
    return _guard_message(t, record, user) is None


def available(record: Any, user: Staff | None, *, guards: bool = True) -> list[Transition]:
    """The transitions this user may fire on this record right now (the view shows these).
    ``guards=False`` skips guards that may load related rows (list pages); ``fire`` checks them."""
    return [t for t in workflow_of(record).transitions
            if not t.system and may_fire(record, t, user, guards=guards)]


def refusal(record: Any, t: Transition, user: Staff | None) -> Any | None:
    """Why this user may not take step ``t`` on this record now (None: they may). The list's
    row menu shows a refused step disabled with this reason; ``fire`` decides all the same."""
    if not may_fire(record, t, user, guards=False):
        return _l("Not possible now.")
    who = _who_message(t, record, user)
    if who is not None:
        return who
    if any(getattr(record, f, None) in (None, "", []) for f in t.requires):
        return None  # a guard about fields still to be typed is checked when the step is fired
    return _guard_message(t, record, user)


def firable_by_role(model: type, user: Staff) -> list[Transition]:
    """Transitions of a model the user's roles allow anywhere (bulk actions in lists)."""
    wf = workflow_of(model)
    return [t for t in wf.transitions if not t.system and user.roles & roles_for(wf, t)]


_PREFETCH: ContextVar[dict[str, Any] | None] = ContextVar("wf_prefetch", default=None)


@contextmanager
def prefetched(records: list[Any]) -> Iterator[None]:
    """Read-only pages asking about many records at once ("My work", the badge): sign-offs of
    every running chain in one query per model and each user's delegations once, not per row."""
    cache: dict[str, Any] = {"ids": set(), "signoffs": {}, "delegations": {}}
    by_key: dict[str, list[int]] = {}
    for record in records:
        by_key.setdefault(workflow_of(record).key, []).append(record.id)
    for key, ids in by_key.items():
        cache["ids"].update((key, i) for i in ids)
        for row in db.session.scalars(sa.select(SignOff).where(SignOff.record_type == key,
                                                                SignOff.record_id.in_(ids))
                                      .order_by(SignOff.at, SignOff.id)):
            cache["signoffs"].setdefault((key, row.record_id, row.transition, row.round), []).append(row)
    token = _PREFETCH.set(cache)
    try:
        yield
    finally:
        _PREFETCH.reset(token)


def _delegations_to(user: Staff, now: datetime) -> list[Delegation]:
    cache = _PREFETCH.get()
    if cache is not None and user.id in cache["delegations"]:
        return cache["delegations"][user.id]
    rows = list(db.session.scalars(sa.select(Delegation).where(
        Delegation.delegate_id == user.id, Delegation.revoked_at.is_(None),
        Delegation.starts_at <= now, Delegation.ends_at > now)))
    if cache is not None:
        cache["delegations"][user.id] = rows
    return rows


def signoffs(record: Any, *, all_rounds: bool = False) -> list[SignOff]:
    cache = _PREFETCH.get()
    key = workflow_of(record).key
    if cache is not None and not all_rounds and (key, record.id) in cache["ids"]:
        return list(cache["signoffs"].get((key, record.id, record.pending_transition, record.pending_round), []))
    q = sa.select(SignOff).where(SignOff.record_type == workflow_of(record).key,
                                 SignOff.record_id == record.id)
    if not all_rounds:
        q = q.where(SignOff.transition == record.pending_transition,
                    SignOff.round == record.pending_round)
    return list(db.session.scalars(q.order_by(SignOff.at, SignOff.id)))


def _step_done(wf: Workflow, t: Transition, index: int, rows: list[SignOff]) -> bool:
    step = t.approvals[index]
    approved = [s for s in rows if s.step == index and s.decision == "approve"]
    if step.joint:
        return step_roles(wf, t, index) <= {s.role for s in approved}
    return len({s.staff_id for s in approved}) >= step.need


def current_step(record: Any) -> tuple[int, Step] | None:
    """The step waiting for sign-offs, or None when no chain is running."""
    wf = workflow_of(record)
    t = wf.transition(record.pending_transition or "")
    if t is None:
        return None
    rows = signoffs(record)
    for index, step in enumerate(t.approvals):
        if not _step_done(wf, t, index, rows):
            return index, step
    return None


def _capacity(record: Any, t: Transition, index: int, user: Staff,
              rows: list[SignOff]) -> str | None:
    """In which capacity ``user`` (not a delegate) may sign step ``index``, if any."""
    wf, step = workflow_of(record), t.approvals[index]
    roles = step_roles(wf, t, index)
    if step.joint:
        roles -= {s.role for s in rows if s.step == index and s.decision == "approve"}
    held = sorted(user.roles & roles)
    if held:
        return held[0]
    department = user.department
    if user.department_head and department is not None:
        if step.head_of and department.key == step.head_of:
            return "head"
        if step.head_of_field and getattr(record, step.head_of_field, None) == department.id:
            return "head"
    if step.user_field and getattr(record, step.user_field, None) == user.id:
        return "user"
    return None


def _signer(record: Any, user: Staff, now: datetime | None = None,
            found: tuple[int, Step] | None = None) -> tuple[str, Staff | None] | None:
    """(capacity, on behalf of) for the current step: directly, or through a delegation."""
    found = found or current_step(record)
    if found is None or not user.is_active or user.has_role("admin"):
        return None  # REGULATIONS §0: administrators make no business decisions
    index, step = found
    t = workflow_of(record).transition(record.pending_transition)
    rows = signoffs(record)
    if any(s.step == index and user.id in (s.staff_id, s.on_behalf_of_id) for s in rows):
        return None  # one person signs a step once, in any capacity
    capacity = _capacity(record, t, index, user, rows)
    if capacity:
        return capacity, None
    for d in _delegations_to(user, now or utcnow()):
        if d.delegator.is_active and (step.allow_self or d.delegator_id != record.pending_by_id) and not any(
                d.delegator_id in (s.staff_id, s.on_behalf_of_id) for s in rows if s.step == index):
            capacity = _capacity(record, t, index, d.delegator, rows)
            if capacity:
                return capacity, d.delegator
    return None


def _self_approval(record: Any, t: Transition, user: Staff, on_behalf: Staff | None,
                   index: int | None = None) -> bool:
    step = t.approvals[current_step(record)[0] if index is None else index]
    if step.allow_self:
        return False
    requester = record.pending_by_id
    return requester is not None and requester in {user.id, on_behalf.id if on_behalf else None}


def can_decide(record: Any, user: Staff | None) -> bool:
    if user is None or record.deleted_at is not None or not record.pending_transition:
        return False
    signer = _signer(record, user)
    if signer is None:
        return False
    t = workflow_of(record).transition(record.pending_transition)
    return not _self_approval(record, t, user, signer[1])


def approvers(record: Any) -> list[Staff]:
    """Everyone who may sign the current step now (for notices and reminders): the holders of
    the step's roles, department heads, the person a field names and active delegates, each
    then asked ``can_decide``."""
    from models.staff import StaffRole

    found = current_step(record)
    if found is None:
        return []
    wf = workflow_of(record)
    t, (index, step) = wf.transition(record.pending_transition), found
    now = utcnow()
    named = getattr(record, step.user_field, None) if step.user_field else None
    delegates = sa.select(Delegation.delegate_id).where(
        Delegation.revoked_at.is_(None), Delegation.starts_at <= now, Delegation.ends_at > now)
    holders = sa.select(StaffRole.staff_id).where(StaffRole.role.in_(step_roles(wf, t, index) or {""}))
    candidates = db.session.scalars(sa.select(Staff).where(Staff.active.is_(True), sa.or_(
        Staff.id.in_(holders), Staff.department_head.is_(True), Staff.id == (named or -1),
        Staff.id.in_(delegates))).order_by(Staff.id)).all()
    with prefetched([record]):
        return [s for s in candidates if can_decide(record, s)]


# --- the writes ------------------------------------------------------------------------------
def _last_change(record: Any) -> tuple[str | None, datetime | None]:
    row = db.session.execute(
        sa.select(AuditEntry.actor_name, AuditEntry.at)
        .where(AuditEntry.record_type == workflow_of(record).key, AuditEntry.record_id == record.id)
        .order_by(AuditEntry.seq.desc()).limit(1)).first()
    return (row[0], row[1]) if row else (None, None)


def _conflict(record: Any) -> Conflict:
    db.session.rollback()
    try:
        db.session.refresh(record)
    except sa.exc.InvalidRequestError:
        pass
    return Conflict(*_last_change(record))


def _moved_on(record: Any) -> bool:
    """Whether the committed row is newer than the one this request loaded."""
    model = type(record)
    return db.session.scalar(sa.select(model.version).where(model.id == record.id)) != record.version


def _check_version(record: Any, version: int | str | None) -> None:
    if version is not None and str(version) != str(record.version):
        raise _conflict(record)


def _check_password(t: Transition, user: Staff | None, password: str | None) -> None:
    from security.accounts import log_event
    from security.passwords import verify_password

    if t.password and user is not None:
        if not password or not verify_password(user.password_hash, password):
            log_event("reauth_failed", staff=user, detail=f"transition {t.name}")
            db.session.commit()
            raise NotAllowed(_l("The password is not correct."))


def _flush(record: Any) -> None:
    try:
        db.session.flush()
    except (StaleDataError, IntegrityError):
        raise _conflict(record) from None
    except sa.exc.DataError:
        db.session.rollback()
        raise NotAllowed(_l("A value is out of range for the database. Nothing was saved.")) from None


def _commit(record: Any) -> None:
    _flush(record)
    try:
        db.session.commit()
    except (StaleDataError, IntegrityError):
        raise _conflict(record) from None


def fire(record: Any, name: str, user: Staff | None, comment: str = "", *,
         version: int | str | None = None, password: str | None = None,
         values: dict[str, Any] | None = None, commit: bool = True) -> str:
    """Fire transition ``name``. Returns "done", or "requested" when it needs sign-offs."""
    acting_as(db.session(), user)
    try:
        with db.session.no_autoflush:  # one flush at the end: one audit row per firing
            return _fire(record, name, user, comment, version, password, values, commit)
    finally:
        if commit:
            stop_acting(db.session())


def _fire(record: Any, name: str, user: Staff | None, comment: str, version: int | str | None,
          password: str | None, values: dict[str, Any] | None, commit: bool) -> str:
    wf = workflow_of(record)
    t = wf.transition(name)
    if t is None:
        raise NotAllowed(_l("No such step in this workflow."))
    _check_version(record, version)
    comment = (comment or "").strip()
    if record.deleted_at is not None:
        raise NotAllowed(_l("This record was deleted."))
    if record.pending_transition:
        raise NotAllowed(_l("This record is waiting for approval; nothing else can happen to it "
                            "until the approvers decide."))
    if record.state not in t.source:
        raise NotAllowed(_l("“%(t)s” is not possible while the record is “%(s)s”.",
                            t=t.label or t.name, s=wf.state_label(record.state)))
    if t.system and user is not None:
        raise NotAllowed(_l("Only the system does this step."))
    if not t.system and (user is None or not user.is_active or not user.roles & roles_for(wf, t)):
        raise NotAllowed(_l("Your role may not do “%(t)s”.", t=t.label or t.name))
    refusal = _who_message(t, record, user)
    if refusal is not None:
        raise NotAllowed(refusal)
    _check_password(t, user, password)
    for key, value in (values or {}).items():
        if key in t.requires and isinstance(value, str):
            value = value.strip()
            limit = getattr(sa.inspect(type(record)).columns[key].type, "length", None)
            if limit and len(value) > limit:
                db.session.rollback()
                raise NotAllowed(_l("%(f)s: at most %(n)s characters.", f=field_label(record, key), n=limit))
            setattr(record, key, value or None)
    missing = [f for f in t.requires if getattr(record, f, None) in (None, "", [])]
    if t.comment_required and not comment:
        missing.append("comment")
    if missing:
        db.session.rollback()
        raise MissingFields(missing, [field_label(record, f) for f in missing])
    refusal = _guard_message(t, record, user)
    if refusal is not None:
        db.session.rollback()
        raise NotAllowed(refusal)
    now = utcnow()
    _engine_writes(record)
    if t.approvals:
        record.pending_transition, record.pending_since = t.name, now
        record.pending_by_id = user.id if user else None
        record.pending_round = (record.pending_round or 0) + 1
        record.pending_comment, record.pending_reminded_at = comment or None, None
        annotate(record, "request", transition=t.name, comment=comment or None)
        outcome = "requested"
    else:
        _apply(record, t, Firing(user, t, comment, now))
        outcome = "done"
    if commit:
        _engine_writes(record)
        _flush(record)
        if outcome == "requested":
            _tell_approvers(record)
        _commit(record)
    return outcome


def _apply(record: Any, t: Transition, firing: Firing) -> None:
    annotate(record, DELETE if t.name == DELETE else "transition", transition=t.name,
             comment=firing.comment or None)
    if t.target != STAY:
        record.state = t.target
        wf = workflow_of(record)
        record.closed_at = firing.at if t.target in wf.final_states else None
    record.updated_at = firing.at  # always an UPDATE, so the version check always runs
    if t.effect is not None:
        t.effect(record, firing)


def decide(record: Any, user: Staff, approve: bool, comment: str = "", *,
           version: int | str | None = None, password: str | None = None) -> str:
    """Sign the current step. Returns "approved" (chain done, transition applied), "signed"
    (more sign-offs needed) or "rejected"."""
    acting_as(db.session(), user)
    try:
        with db.session.no_autoflush:
            return _decide(record, user, approve, comment, version, password)
    except (NotAllowed, MissingFields):
        if _moved_on(record):  # refused because another signer got there first: say who
            raise _conflict(record) from None
        raise
    finally:
        stop_acting(db.session())


def _decide(record: Any, user: Staff, approve: bool, comment: str, version: int | str | None,
            password: str | None) -> str:
    wf = workflow_of(record)
    _check_version(record, version)
    t = wf.transition(record.pending_transition or "")
    if t is None or record.deleted_at is not None:
        raise NotAllowed(_l("Nothing is waiting for approval on this record."))
    found = current_step(record)  # read once: another signer may commit meanwhile
    signer = _signer(record, user, found=found) if found else None
    if signer is None:
        raise NotAllowed(_l("You may not sign this step."))
    capacity, on_behalf = signer
    index = found[0]
    if _self_approval(record, t, user, on_behalf, index):
        raise NotAllowed(_l("You cannot approve your own request."))
    comment = (comment or "").strip()
    if not approve and not comment:
        raise MissingFields(["comment"], [_("Comment")])
    _check_password(t, user, password)
    now = utcnow()
    _engine_writes(record)
    sign = SignOff(
        record_type=wf.key, record_id=record.id, transition=t.name, round=record.pending_round,
        step=index, role=capacity, decision="approve" if approve else "reject", staff_id=user.id,
        on_behalf_of_id=on_behalf.id if on_behalf else None, comment=comment or None, at=now)
    db.session.add(sign)
    record.updated_at = now  # bumps the version: two last signers cannot both finish the chain
    behalf = f"[{capacity} for {on_behalf.username}] " if on_behalf else f"[{capacity}] "
    annotate(record, "signoff", transition=t.name,
             comment=("✓ " if approve else "✗ ") + behalf + (comment or ""))
    requester = record.pending_by
    if not approve:
        outcome = "rejected"
        _clear_pending(record)
        if t.reject_to:
            record.state = t.reject_to
    elif index == len(t.approvals) - 1 and _step_done(wf, t, index, [*signoffs(record), sign]):
        outcome = "approved"
        request_comment = record.pending_comment or ""
        _clear_pending(record)
        _apply(record, t, Firing(requester, t, request_comment, now, approved_by=user))
    else:
        outcome = "signed"
    _flush(record)  # one flush: the sign-off, the record and its audit rows together
    if outcome == "signed":
        _tell_approvers(record)
    elif requester is not None:
        _tell_requester(record, t, requester, outcome, user, comment)
    _commit(record)
    return outcome


def withdraw(record: Any, user: Staff, comment: str = "", *, version: int | str | None = None) -> None:
    """The requester takes back a request still waiting for sign-offs."""
    acting_as(db.session(), user)
    try:
        _check_version(record, version)
        if not record.pending_transition or record.pending_by_id != user.id or not user.is_active:
            raise NotAllowed(_l("Only the person who asked can withdraw the request."))
        name = record.pending_transition
        _engine_writes(record)
        _clear_pending(record)
        record.updated_at = utcnow()
        annotate(record, "withdraw", transition=name, comment=(comment or "").strip() or None)
        _commit(record)
    finally:
        stop_acting(db.session())


def _clear_pending(record: Any) -> None:
    record.pending_transition = record.pending_since = record.pending_by_id = None
    record.pending_comment = record.pending_reminded_at = None


def field_label(record: Any, name: str) -> str:
    if name == "comment":
        return _("Comment")
    labels = getattr(type(record), "field_labels", {})
    return str(labels.get(name, name))


def describe(record: Any) -> str:
    return f"{workflow_of(record).label} #{record.id}"


def _tell_approvers(record: Any) -> None:
    t = workflow_of(record).transition(record.pending_transition)
    for staff in approvers(record):
        with force_locale(staff.locale or "zh_Hans_CN"):
            notify(staff, _("Waiting for your approval: %(r)s", r=describe(record)),
                   _("%(t)s — please decide in “My work”.", t=t.label or t.name))


def _tell_requester(record: Any, t: Transition, requester: Staff, outcome: str, by: Staff,
                    comment: str) -> None:
    with force_locale(requester.locale or "zh_Hans_CN"):
        verdict = _("approved") if outcome == "approved" else _("rejected")
        notify(requester, _("Your request was %(v)s: %(r)s", v=verdict, r=describe(record)),
               _("%(t)s — %(v)s by %(who)s. %(c)s", t=t.label or t.name, v=verdict,
                 who=by.full_name, c=comment))


# --- delegation and reminders -----------------------------------------------------------------
def delegate(delegator: Staff, delegate_to: Staff, starts_at: datetime, ends_at: datetime,
             reason: str) -> Delegation:
    """A manager lets someone approve in their place for a period (recorded; audited)."""
    from models.validators import DomainError

    if not delegator.has_role("manager"):
        raise NotAllowed(_l("Only a manager may delegate approvals."))
    if delegate_to.id == delegator.id or not delegate_to.active or delegate_to.has_role("admin"):
        raise DomainError(_l("Choose another active staff member."), "delegate")
    if ends_at <= starts_at:
        raise DomainError(_l("The end must be after the start."), "ends_at")
    if ends_at - starts_at > timedelta(days=366):
        raise DomainError(_l("A delegation lasts at most one year."), "ends_at")
    row = Delegation(delegator=delegator, delegate=delegate_to, starts_at=starts_at,
                     ends_at=ends_at, reason=(reason or "").strip()[:200])
    db.session.add(row)
    return row


def remind(now: datetime | None = None) -> int:
    """Notify the approvers of chains waiting longer than the setting; once per period each.

    The conditional UPDATE is the claim: two concurrent runs never remind twice.
    """
    from views.templating import localtime

    now = now or utcnow()
    cutoff = now - timedelta(hours=settings.value("workflow.approval_reminder_hours"))
    sent = 0
    for wf in WORKFLOWS.values():
        model = wf.model
        ids = db.session.scalars(sa.select(model.id).where(
            model.pending_transition.is_not(None), model.deleted_at.is_(None),
            model.pending_since <= cutoff,
            sa.or_(model.pending_reminded_at.is_(None), model.pending_reminded_at <= cutoff))).all()
        for record_id in ids:
            claimed = db.session.execute(sa.update(model).where(
                model.id == record_id,
                sa.or_(model.pending_reminded_at.is_(None), model.pending_reminded_at <= cutoff))
                .values(pending_reminded_at=now).execution_options(synchronize_session=False))
            if claimed.rowcount != 1:
                db.session.rollback()
                continue
            record = db.session.get(model, record_id)
            for staff in approvers(record):
                with force_locale(staff.locale or "zh_Hans_CN"):
                    notify(staff, _("Reminder: waiting for your approval: %(r)s", r=describe(record)),
                           _("Waiting since %(t)s.", t=localtime(record.pending_since)))
                sent += 1
            db.session.commit()
    return sent


# --- the state column is the engine's alone ------------------------------------------------------
ENGINE_WRITES = "pm_engine_writes"


@sa.event.listens_for(sa.orm.Session, "before_flush")
def _guard_state(session: sa.orm.Session, flush_context: Any, instances: Any) -> None:
    """New records start in the initial state; any other path that changes ``state`` or the
    approval columns (a form, an import, a raw attribute write) is refused at flush time."""
    from models.base import current_actor_id

    allowed = session.info.get(ENGINE_WRITES, set())
    for obj in session.new:
        wf = getattr(type(obj), "workflow", None)
        if isinstance(wf, Workflow):
            if obj.state is None:
                obj.state = wf.initial
            elif obj.state != wf.initial and id(obj) not in allowed:
                raise NotAllowed(_l("A new record starts in its first state."))
            if obj.created_by_id is None:
                obj.created_by_id = current_actor_id()
    for obj in session.dirty:
        if isinstance(getattr(type(obj), "workflow", None), Workflow) and id(obj) not in allowed:
            state = sa.inspect(obj)
            for column in PROTECTED:
                if state.attrs[column].history.has_changes():
                    raise NotAllowed(_l("The status changes only through the workflow's steps."))


@sa.event.listens_for(sa.orm.Session, "after_commit")
@sa.event.listens_for(sa.orm.Session, "after_rollback")
def _end_engine_writes(session: sa.orm.Session) -> None:
    session.info.pop(ENGINE_WRITES, None)


PROTECTED = ("state", "pending_transition", "pending_by_id", "pending_round", "pending_since",
             "pending_comment", "deleted_at", "deleted_by_id", "closed_at")


def _engine_writes(record: Any) -> None:
    db.session.info.setdefault(ENGINE_WRITES, set()).add(id(record))
