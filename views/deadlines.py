"""The "Overdue" screen (超时): open deadline clocks past due, per department and for the signed-in
person, and the on-time rate per rule (met on time / met) over a period (CMP-7 statistics).

Managers and supervisors see every department; other staff see their own department's list and
what they are responsible for. Every list is an indexed query (``models.deadline``), capped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import request, url_for
from flask_admin import Admin, expose
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from werkzeug.routing import BuildError

from models.base import db, utcnow
from models.deadline import DeadlineClock, Rate, on_time_rates, overdue, overdue_counts
from models.staff import Department, Staff
from views.base import SecureView, has_any_role
from views.roles import BUSINESS, SUPERVISORS
from workflow.deadlines import deadline_of

SHOWN = 100  # per list; the count says how many there are in all
PERIODS = (7, 30, 90, 365)


@dataclass
class Row:
    clock: DeadlineClock
    record: Any
    url: str | None
    workflow: str
    rule: str
    responsible: Staff | None


@dataclass
class Section:
    key: str
    title: str
    total: int
    rows: list[Row]


@dataclass
class RateRow:
    workflow: str
    rule: str
    met: int
    on_time: int
    rate: float | None


def _url(record_type: str, record_id: int) -> str | None:
    try:
        return url_for(f"{record_type}.details_view", id=record_id)
    except BuildError:
        return None


def rows_for(clocks: list[DeadlineClock]) -> list[Row]:
    """Records and responsible people loaded once per list, not per row."""
    wanted: dict[str, set[int]] = {}
    for c in clocks:
        wanted.setdefault(c.record_type, set()).add(c.record_id)
    records: dict[tuple[str, int], Any] = {}
    for record_type, ids in wanted.items():
        found = deadline_of(record_type, next(c.name for c in clocks if c.record_type == record_type))
        if found is not None:
            model = found[0].model
            records.update(((record_type, r.id), r) for r in db.session.scalars(sa.select(model).where(
                model.id.in_(ids))))
    people_ids = {c.responsible_id for c in clocks if c.responsible_id}
    people = {s.id: s for s in db.session.scalars(sa.select(Staff).where(Staff.id.in_(people_ids)))} \
        if people_ids else {}
    out = []
    for c in clocks:
        found = deadline_of(c.record_type, c.name)
        out.append(Row(c, records.get((c.record_type, c.record_id)), _url(c.record_type, c.record_id),
                       str(found[0].label) if found else c.record_type, str(found[1].label) if found else c.name,
                       people.get(c.responsible_id) if c.responsible_id else None))
    return out


def rate_rows(rates: list[Rate]) -> list[RateRow]:
    out = []
    for r in rates:
        found = deadline_of(r.record_type, r.name)
        out.append(RateRow(str(found[0].label) if found else r.record_type, str(found[1].label) if found else r.name,
                           r.met, r.on_time, r.rate))
    return out


class OverdueView(SecureView):
    permissions = {"view": BUSINESS}

    def sections(self, now: datetime, see_all: bool) -> list[Section]:
        department_id = current_user.department_id
        if see_all:
            departments = list(db.session.scalars(sa.select(Department).order_by(Department.id)))
        else:
            departments = [current_user.department] if current_user.department is not None else []
        counts = overdue_counts(now, None if see_all else [department_id])
        out = [Section("mine", str(_l("Mine")), 0, rows_for(list(db.session.scalars(
            overdue(now, responsible_id=current_user.id, limit=SHOWN)))))]
        out[0].total = len(out[0].rows)
        for dept in departments:
            total = counts.get(dept.id, 0)
            clocks = list(db.session.scalars(overdue(now, department_id=dept.id, limit=SHOWN))) if total else []
            out.append(Section(f"department-{dept.key}", str(dept), total, rows_for(clocks)))
        if see_all and counts.get(None):
            clocks = list(db.session.scalars(overdue(now, no_department=True, limit=SHOWN)))
            out.append(Section("department-none", str(_l("No department")), counts[None], rows_for(clocks)))
        return out

    @expose("/")
    def index(self):  # type: ignore[no-untyped-def]
        now = utcnow()
        see_all = has_any_role(SUPERVISORS)
        days = request.args.get("days", 30, type=int)
        days = days if days in PERIODS else 30
        if see_all or current_user.department_id is not None:
            rates = rate_rows(on_time_rates(now - timedelta(days=days),
                                            department_id=None if see_all else current_user.department_id))
        else:
            rates = []
        return self.render("admin/deadlines/overdue.html", sections=self.sections(now, see_all), rates=rates,
                           days=days, periods=PERIODS, see_all=see_all, now=now)


def register(admin: Admin) -> None:
    admin.add_view(OverdueView(name=_l("Overdue"), endpoint="overdue", url="overdue"))
