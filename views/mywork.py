"""待办 (My work): what waits for the signed-in staff member, soonest due first, plus the menu badge.

The list is ``workflow.inbox.my_work``; this screen only shows it. The engine decides each item,
so the page never offers what the record's buttons would refuse.

The badge is drawn on every page, so its number is kept per user and reused while the audit
chain's head (seq, hash) has not moved: every write of any record, sign-off, delegation, setting
or role moves it in the same transaction, so a cached number is exactly what 待办 would list now,
read in one statement. What only time changes (a guard about the clock, a delegation starting)
is caught by recounting at least every ``BADGE_SECONDS``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import g, has_request_context, url_for
from flask_admin import Admin, expose
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from werkzeug.routing import BuildError

from models.audit import AuditHead
from models.base import db, utcnow
from models.staff import ROLES
from views.base import SecureView
from workflow import inbox

COUNT_CACHE = "pm_mywork_count"
BADGE_SECONDS = 60.0  # longest a number is reused when no write happened (time-driven guards)
BADGE_USERS = 2000  # users kept per process; beyond, the store starts afresh
_badges: dict[int, tuple[tuple[int, str] | None, float, int]] = {}  # user id -> (head, when, count)


@dataclass
class Row:
    """One line of the page, with everything the template shows already worked out."""

    record: Any
    url: str | None
    workflow: str
    kind: str
    waiting: list[str]
    due_at: datetime | None
    overdue: bool
    since: datetime | None


def record_url(item: inbox.WorkItem) -> str | None:
    """The record's details page; None while the workflow has no admin screen registered."""
    try:
        return url_for(f"{item.workflow.key}.details_view", id=item.record.id)
    except BuildError:
        return None


def waiting_for(item: inbox.WorkItem) -> list[str]:
    """What is asked of the user: the step to sign, or the transitions they may fire."""
    if item.kind == "approve":
        t = item.transitions[0]
        step = str(item.step.label) if item.step is not None else ""
        return [f"{t.label or t.name}: {step}" if step else str(t.label or t.name)]
    return [str(t.label or t.name) for t in item.transitions]


def rows_for(items: list[inbox.WorkItem], now: datetime) -> list[Row]:
    return [
        Row(
            item.record,
            record_url(item),
            str(item.workflow.label),
            item.kind,
            waiting_for(item),
            item.due_at,
            bool(item.due_at and item.due_at < now),
            item.since,
        )
        for item in items
    ]


class MyWorkView(SecureView):
    """Any signed-in, active staff member; the menu entry is drawn by master.html with its badge."""

    permissions = {"view": frozenset(ROLES)}

    def is_accessible(self) -> bool:
        return bool(current_user.is_authenticated and current_user.is_active)

    def is_visible(self) -> bool:
        return False  # templates/admin/master.html draws the entry first, with the count badge

    @expose("/")
    def index(self):  # type: ignore[no-untyped-def]
        head = chain_head()
        items = inbox.my_work(current_user)
        g.setdefault(COUNT_CACHE, len(items))  # the badge reuses this list's length: one query set
        _remember(current_user.id, head, len(items))
        return self.render("admin/mywork.html", rows=rows_for(items, utcnow()))


def chain_head() -> tuple[int, str] | None:
    """The audit chain's tip: moves with every audited write, so it stamps the data's version."""
    row = db.session.execute(sa.select(AuditHead.seq, AuditHead.last_hash).where(AuditHead.id == 1)).first()
    return (row[0], row[1]) if row else None


def _remember(user_id: int, head: tuple[int, str] | None, count: int) -> None:
    if len(_badges) >= BADGE_USERS:
        _badges.clear()
    _badges[user_id] = (head, time.monotonic(), count)


def badge_count(user: Any) -> int:
    """The user's 待办 count: reused while nothing was written and it is fresh, else recounted.
    The head is read before counting, so a write committed meanwhile forces the next recount."""
    head = chain_head()
    kept = _badges.get(user.id)
    if kept is not None and head is not None and kept[0] == head and time.monotonic() - kept[1] < BADGE_SECONDS:
        return kept[2]
    count = inbox.count(user)
    _remember(user.id, head, count)
    return count


def mywork_count() -> int | None:
    """The badge number, computed at most once per request and only when a page draws the menu."""
    if not has_request_context() or not current_user.is_authenticated or not current_user.is_active:
        return None
    if COUNT_CACHE not in g:
        setattr(g, COUNT_CACHE, badge_count(current_user))
    return g.get(COUNT_CACHE)


def _badge_context() -> dict[str, Any]:
    return {"mywork_count": mywork_count}


def register(admin: Admin) -> None:
    admin.add_view(MyWorkView(name=_l("My work"), endpoint="mywork", url="mywork"))
    admin.app.context_processor(_badge_context)
