""""My work" (待办): records waiting for a transition or a sign-off this user may give.

Candidates come from indexed queries (state, pending_transition, due_at); the engine then
decides each one, so the list never offers what the buttons would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from models.base import db
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
        far = datetime.max.replace(tzinfo=None)
        due = self.due_at.replace(tzinfo=None) if self.due_at else far
        since = self.since.replace(tzinfo=None) if self.since else far
        return (self.due_at is None, due, since)


def my_work(user: Staff, limit: int = 500) -> list[WorkItem]:
    items: list[WorkItem] = []
    for wf in engine.WORKFLOWS.values():
        model = wf.model
        live = (model.deleted_at.is_(None),)
        waiting = db.session.scalars(
            sa.select(model).where(model.pending_transition.is_not(None), *live)
            .order_by(model.due_at.is_(None), model.due_at, model.pending_since).limit(PER_MODEL)).all()
        with engine.prefetched(waiting):
            for record in waiting:
                if engine.can_decide(record, user):
                    t = wf.transition(record.pending_transition)
                    found = engine.current_step(record)
                    items.append(WorkItem(record, wf, "approve", [t], record.due_at, record.pending_since,
                                          found[1] if found else None))
        todo = [t for t in engine.firable_by_role(model, user) if t.todo]
        states = {s for t in todo for s in t.source}
        if not states:
            continue
        open_records = db.session.scalars(
            sa.select(model).where(model.state.in_(states), model.pending_transition.is_(None), *live)
            .options(*preloads(wf))
            .order_by(model.due_at.is_(None), model.due_at, model.updated_at).limit(PER_MODEL))
        for record in open_records:
            ready = [t for t in todo if engine.may_fire(record, t, user)]
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
    return len(my_work(user))
