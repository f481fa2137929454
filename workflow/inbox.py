"""待办 (My work): records waiting for a transition or a sign-off this user may give.

Candidates come from indexed columns only: one statement asks, for every workflow at once,
whether any live record is in a state the user's roles act on (``state``) or waits for a
sign-off the user could give (``pending_transition``); only workflows that answer yes are read,
each through two index-ordered subqueries (dated by ``due_at``, undated by age) instead of one
``ORDER BY due_at IS NULL, …`` that no index serves. The engine then decides each candidate, so
the list never offers what the buttons would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from models.base import db, utcnow
from models.staff import Staff
from workflow import engine

PER_MODEL = 200  # candidates looked at per model and kind; a desk's real backlog is far smaller


@dataclass
class WorkItem:
    record: Any
    workflow: engine.Workflow
    kind: str  # "approve" | "transition"
    transitions: list[engine.Transition]
    due_at: datetime | None
    since: datetime | None
    step: Any = None  # the approval step waiting for this user

    @property
    def sort_key(self) -> tuple:
        return _sort_key(self.due_at, self.since)


def _sort_key(due_at: datetime | None, since: datetime | None) -> tuple:
    far = datetime.max.replace(tzinfo=None)
    due = due_at.replace(tzinfo=None) if due_at else far
    return (due_at is None, due, since.replace(tzinfo=None) if since else far)


@dataclass
class _Ask:
    """One (workflow, kind) query: which rows may wait for this user."""

    wf: engine.Workflow
    kind: str
    where: list[Any]
    since: Any  # the column that orders undated rows (and breaks ties)
    todo: list[engine.Transition]


def _signable(wf: engine.Workflow, people: list[Staff]) -> set[str] | None:
    """Names of the transitions whose approval chain has a step one of ``people`` (the user or a
    delegator) could sign; None when any running chain may be theirs (department heads, a step
    naming a person by a field). A superset: the engine decides the current step."""
    names: set[str] = set()
    for t in wf.transitions:
        for index, step in enumerate(t.approvals):
            if step.user_field or (any(p.department_head for p in people) and (step.head_of or step.head_of_field)):
                return None
            roles = engine.step_roles(wf, t, index)
            if any(p.roles & roles for p in people):
                names.add(t.name)
    return names


def _asks(user: Staff) -> list[_Ask]:
    if not user.is_active:
        return []
    delegators = (
        []
        if user.has_role("admin")
        else [d.delegator for d in engine._delegations_to(user, utcnow()) if d.delegator.is_active]
    )
    asks = []
    for wf in engine.WORKFLOWS.values():
        model = wf.model
        live = model.deleted_at.is_(None)
        if not user.has_role("admin"):  # REGULATIONS §0: administrators make no business decisions
            names = _signable(wf, [user, *delegators])
            if names is None:
                asks.append(_Ask(wf, "approve", [model.pending_transition.is_not(None), live], model.pending_since, []))
            elif names:
                asks.append(
                    _Ask(wf, "approve", [model.pending_transition.in_(sorted(names)), live], model.pending_since, [])
                )
        todo = [t for t in engine.firable_by_role(model, user) if t.todo]
        states = sorted({s for t in todo for s in t.source})
        if states:
            asks.append(
                _Ask(
                    wf,
                    "transition",
                    [model.state.in_(states), model.pending_transition.is_(None), live],
                    model.updated_at,
                    todo,
                )
            )
    return asks


def _any_rows(asks: list[_Ask]) -> list[bool]:
    """One statement: does each ask find at least one row (an EXISTS on its indexed columns)?"""
    if not asks:
        return []
    columns = [sa.exists().where(*a.where).label(f"a{i}") for i, a in enumerate(asks)]
    return [bool(v) for v in db.session.execute(sa.select(*columns)).one()]


def _candidates(ask: _Ask) -> list[Any]:
    """The PER_MODEL soonest-due rows of an ask: dated rows in ``due_at`` order and undated rows
    in age order, each subquery served by an index, merged in Python."""
    model = ask.wf.model
    dated = (
        sa.select(model.id)
        .where(*ask.where, model.due_at.is_not(None))
        .order_by(model.due_at, ask.since)
        .limit(PER_MODEL)
        .subquery()
    )
    undated = (
        sa.select(model.id).where(*ask.where, model.due_at.is_(None)).order_by(ask.since).limit(PER_MODEL).subquery()
    )
    ids = sa.union_all(sa.select(dated.c.id), sa.select(undated.c.id))
    query = sa.select(model).where(model.id.in_(ids))
    if ask.kind == "transition":
        query = query.options(*preloads(ask.wf))
    rows = db.session.scalars(query).all()
    since = ask.since.key
    rows = sorted(rows, key=lambda r: _sort_key(r.due_at, getattr(r, since)))
    return rows[:PER_MODEL]


def my_work(user: Staff, limit: int = 500) -> list[WorkItem]:
    items: list[WorkItem] = []
    asks = _asks(user)
    for ask, found in zip(asks, _any_rows(asks), strict=True):
        if not found:
            continue
        wf = ask.wf
        records = _candidates(ask)
        if ask.kind == "approve":
            with engine.prefetched(records):
                for record in records:
                    if engine.can_decide(record, user):
                        t = wf.transition(record.pending_transition)
                        step = engine.current_step(record)
                        items.append(
                            WorkItem(
                                record,
                                wf,
                                "approve",
                                [t],
                                record.due_at,
                                record.pending_since,
                                step[1] if step else None,
                            )
                        )
            continue
        for record in records:
            ready = [t for t in ask.todo if engine.may_fire(record, t, user)]
            if ready:
                items.append(WorkItem(record, wf, "transition", ready, record.due_at, record.updated_at))
    items.sort(key=lambda item: item.sort_key)
    return items[:limit]


def preloads(wf: engine.Workflow) -> list[Any]:
    """selectinload options for the workflow's declared ``preload`` paths ("visitor.role_rows")."""
    options = []
    for path in wf.preload:
        owner, option = wf.model, None
        for name in path.split("."):
            attr = getattr(owner, name)
            option = sa.orm.selectinload(attr) if option is None else option.selectinload(attr)
            owner = attr.property.mapper.class_
        options.append(option)
    return options


def count(user: Staff) -> int:
    """Exactly the number of items ``my_work`` lists (the engine decides each one)."""
    return len(my_work(user))
