"""Home page per role (首页 / 工作台): counts that link to the lists they count, a small trend, and
the admin's accounts, security log and audit-checkpoint state.

Each count is the linked screen's own count query plus the preset's clause (views/presets.py), so
the number and the list agree; a card shows only when the user's roles are the card's and the
screen's permission table lets them open the list. Every count is one statement, whatever the
number of records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import g, request, url_for
from flask_admin import AdminIndexView, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from models import db
from models.audit import AuditHead
from models.base import utcnow
from models.deadline import overdue_counts
from models.staff import Department, Notification, Staff
from views import presets
from views.base import has_any_role
from views.roles import ADMIN, BUSINESS, FRONT_DESK, SUPERVISORS

PATROL = frozenset({"engineering", "management_dept", "security"})
# (endpoint, preset key, roles whose work it is); each card also needs the list's "view" permission.
PRESET_CARDS: list[tuple[str, str, frozenset[str]]] = [
    ("complaint", "today", FRONT_DESK | {"management_dept"}),
    ("help_request", "today", FRONT_DESK | {"security", "engineering"}),
    ("release_slip", "today", SUPERVISORS | {"security"}),
    ("renovation", "unpatrolled", SUPERVISORS | PATROL),
    ("renovation", "fees_due", frozenset({"manager", "finance"})),
]
ADMIN_CARDS: list[tuple[str, str, frozenset[str]]] = [("security_event", "failed_today", ADMIN)]
TREND_ROLES = FRONT_DESK
CHECKPOINT_STALE = timedelta(hours=2)


@dataclass
class Card:
    key: str
    label: str
    n: int
    url: str | None
    alert: bool = False  # red when non-zero (something is late)


@dataclass
class Panel:
    key: str
    title: str
    cards: list[Card] = field(default_factory=list)
    note: str = ""


def screen(endpoint: str) -> Any:
    from views.printing import admin_view

    return admin_view(endpoint)


def preset_cards(now: datetime, declared: list[tuple[str, str, frozenset[str]]]) -> list[Card]:
    out = []
    for endpoint, key, roles in declared:
        view = screen(endpoint)
        if view is None or not has_any_role(roles) or not view.allowed("view"):
            continue
        preset = presets.PRESETS[(endpoint, key)]
        out.append(
            Card(
                f"{endpoint}-{key}",
                str(preset.label),
                presets.count(view, preset, now),
                url_for(f"{endpoint}.index_view", preset=key),
                alert=key == "unpatrolled",
            )
        )
    return out


def overdue_cards(now: datetime) -> list[Card]:
    """Overdue clocks per department, as the overdue screen's sections count them (one query)."""
    if not has_any_role(BUSINESS):
        return []
    see_all = has_any_role(SUPERVISORS)
    if see_all:
        departments = list(db.session.scalars(sa.select(Department).order_by(Department.id)))
    else:
        departments = [current_user.department] if current_user.department is not None else []
    counts = overdue_counts(now, None if see_all else [d.id for d in departments])
    base = url_for("overdue.index")
    return [
        Card(
            f"overdue-{d.key}",
            _("Overdue: %(department)s", department=str(d)),
            counts.get(d.id, 0),
            f"{base}#overdue-department-{d.key}-count",
            alert=True,
        )
        for d in departments
    ]


def work_cards(now: datetime) -> list[Card]:
    """Approvals waiting for me and my steps due today, from the 待办 list (also the menu badge)."""
    from views.mywork import COUNT_CACHE
    from workflow import inbox

    items = inbox.my_work(current_user)
    g.setdefault(COUNT_CACHE, len(items))  # the badge reuses it
    end_of_today = presets.today_start(now) + timedelta(days=1)
    approvals = sum(1 for i in items if i.kind == "approve")
    due_today = sum(1 for i in items if i.due_at is not None and i.due_at < end_of_today)
    url = url_for("mywork.index")
    return [
        Card("approvals", _("Approvals waiting for me"), approvals, url),
        Card("due-today", _("My steps due today"), due_today, url, alert=True),
    ]


def checkpoint_state(now: datetime) -> tuple[str, bool]:
    """The audit chain's head and the last signed checkpoint line (file tail): text, healthy."""
    from workflow.audit_checkpoints import checkpoint_file

    head = db.session.scalar(sa.select(AuditHead.seq).where(AuditHead.id == 1)) or 0
    path = checkpoint_file()
    last: dict[str, Any] | None = None
    if path is not None and path.is_file():
        with path.open("rb") as f:
            f.seek(max(f.seek(0, 2) - 4096, 0))
            lines = [ln for ln in f.read().splitlines() if ln.strip()]
        try:
            last = json.loads(lines[-1]) if lines else None
        except ValueError:
            last = None
    if last is None:
        return _("No audit checkpoint yet; the trail holds %(n)s rows. Run flask audit checkpoint.", n=head), False
    from views.templating import localtime

    at = datetime.fromisoformat(str(last.get("at")))
    behind = head - int(last.get("seq") or 0)
    text = _(
        "Last audit checkpoint %(at)s at row %(seq)s; %(behind)s rows since.",
        at=localtime(at),
        seq=last.get("seq"),
        behind=behind,
    )
    return text, now - at <= CHECKPOINT_STALE or behind == 0


def admin_panel(now: datetime) -> Panel | None:
    if not has_any_role(ADMIN):
        return None
    active = db.session.scalar(sa.select(sa.func.count()).select_from(Staff).where(Staff.active.is_(True))) or 0
    panel = Panel(
        "admin",
        _("Administration"),
        [
            Card("accounts", _("Active staff accounts"), active, url_for("staff.index_view")),
            *preset_cards(now, ADMIN_CARDS),
        ],
    )
    panel.note, healthy = checkpoint_state(now)
    panel.cards.append(
        Card("checkpoint", _("Audit checkpoint"), 0 if healthy else 1, url_for("audit.index_view"), alert=not healthy)
    )
    return panel


class HomeView(AdminIndexView):
    """Home page: any signed-in staff member; anonymous visitors go to the login page."""

    def is_accessible(self) -> bool:
        return bool(current_user.is_authenticated and current_user.is_active)

    def inaccessible_callback(self, name: str, **kwargs: Any):  # type: ignore[no-untyped-def]
        from flask import redirect

        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))

    @expose("/")
    def index(self):  # type: ignore[no-untyped-def]
        now = utcnow()
        panels = [
            Panel("today", _("Today"), preset_cards(now, PRESET_CARDS)),
            Panel("work", _("My work"), work_cards(now)),
            Panel("overdue", _("Overdue by department"), overdue_cards(now)),
        ]
        admin = admin_panel(now)
        if admin is not None:
            panels.insert(0, admin)
        trend = None
        if has_any_role(TREND_ROLES):
            from views.home_trend import trend as make_trend

            trend = make_trend(now)
        notes = db.session.scalars(
            sa.select(Notification)
            .where(Notification.staff_id == current_user.id)
            .order_by(Notification.created_at.desc())
            .limit(10)
        ).all()
        return self.render("admin/home.html", panels=[p for p in panels if p.cards], trend=trend, notes=notes)


def home_view() -> HomeView:
    return HomeView(name=_l("Home"), url="/admin")
