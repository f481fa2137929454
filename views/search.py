"""One search box (top bar): a unit code (A-6-601, or 6-601 in any building), a resident's name or
phone, a record number (TS…, XTD…, ZX…, FX…) or a licence plate; results grouped by kind.

What the term looks like decides which indexed lookups run (exact code, name prefix, exact phone,
number prefix), never a scan of free text. Each group is read through the screen that lists those
records (``get_query``: permission table and scope), so nobody finds what they could not open.
A match on personal data (a resident, a visitor) is written to the security log (ACC-7) with the
ids matched, never the term itself (it may be a phone number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flask import request, url_for
from flask_admin import Admin, expose
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from models import db
from security.accounts import log_event
from views.base import SecureView
from views.roles import BUSINESS
from views.unit_page import may_open

LIMIT = 20  # per group
MAX_TERM = 64
UNIT_CODE = re.compile(r"^[A-Z0-9]{1,8}-B?\d{1,3}-[A-Z0-9]{1,8}$")
SHORT_UNIT = re.compile(r"^B?\d{1,3}-[A-Z0-9]{1,8}$")
PHONE = re.compile(r"^\+?\d[\d-]{5,19}$")
PLATE = re.compile(r"^[\u4e00-\u9fff][A-Z][A-Z0-9]{4,6}$")
NUMBER = re.compile(r"^(TS|XTD|ZX|FX)[A-Z0-9-]*$")


@dataclass
class Hit:
    label: str
    detail: str
    url: str


@dataclass
class Group:
    key: str
    title: str
    hits: list[Hit] = field(default_factory=list)


def _like_prefix(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _group(endpoint: str, rows: list[Any], detail: Any = None, url: Any = None) -> Group | None:
    if not rows:
        return None
    view = may_open(endpoint)
    return Group(
        endpoint,
        str(view.name),
        [
            Hit(str(r), detail(r) if detail else "", url(r) if url else url_for(f"{endpoint}.details_view", id=r.id))
            for r in rows
        ],
    )


def _scoped(endpoint: str) -> Any:
    view = may_open(endpoint)
    return view.get_query() if view is not None else None


def find_units(term: str) -> Group | None:
    from models.registry import Unit

    query = _scoped("unit")
    if query is None or not (UNIT_CODE.match(term) or SHORT_UNIT.match(term)):
        return None
    where = Unit.code == term if UNIT_CODE.match(term) else Unit.code.like("%-" + term)
    rows = query.filter(where).order_by(Unit.code).limit(LIMIT).all()
    return _group("unit", rows, detail=lambda u: str(u.building), url=lambda u: url_for("unit_page.page", id=u.id))


def find_residents(term: str) -> Group | None:
    from models.registry import Resident

    query = _scoped("resident")
    if query is None:
        return None
    if PHONE.match(term):
        where = Resident.phone == term
    elif not any(ch.isdigit() for ch in term):
        where = Resident.name.like(_like_prefix(term), escape="\\")
    else:
        return None
    rows = query.filter(where).order_by(Resident.name, Resident.id).limit(LIMIT).all()
    group = _group("resident", rows, detail=lambda r: "、".join(o.unit.code for o in r.occupancies))
    if group is not None:
        log_event(
            "personal_search",
            staff=current_user,
            detail=f"search matched residents {','.join(str(r.id) for r in rows)}"[:500],
        )
    return group


def find_visitors(term: str) -> Group | None:
    from models.duty_security import VisitorLog

    query = _scoped("visitor_log")
    if query is None or not PLATE.match(term):
        return None
    rows = query.filter(VisitorLog.plate == term).order_by(VisitorLog.time_in.desc()).limit(LIMIT).all()
    group = _group("visitor_log", rows, detail=lambda v: str(v.host_unit or ""))
    if group is not None:
        log_event(
            "personal_search",
            staff=current_user,
            detail=f"search matched visitors {','.join(str(v.id) for v in rows)}"[:500],
        )
    return group


def find_records(term: str) -> list[Group]:
    """TS… complaints, XTD… violation sheets, ZX… permits (ZXSQ-n applications), FX… release slips."""
    from models.complaints import Complaint
    from models.moving import ReleaseSlip
    from models.renovation import Renovation
    from models.violations import Violation

    if not NUMBER.match(term):
        return []
    wanted: list[tuple[str, Any, Any]] = []
    if term.startswith("TS"):
        wanted.append(("complaint", Complaint, Complaint.number.like(_like_prefix(term), escape="\\")))
    elif term.startswith("XTD"):
        wanted.append(("violation", Violation, Violation.sheet_no.like(_like_prefix(term), escape="\\")))
    elif term.startswith("FX"):
        wanted.append(("release_slip", ReleaseSlip, ReleaseSlip.number.like(_like_prefix(term), escape="\\")))
    elif (m := re.fullmatch(r"ZXSQ-?0*(\d{1,9})", term)) is not None:
        wanted.append(("renovation", Renovation, Renovation.id == int(m.group(1))))
    elif term.startswith("ZX"):
        wanted.append(("renovation", Renovation, Renovation.permit_no.like(_like_prefix(term), escape="\\")))
    out = []
    for endpoint, model, where in wanted:
        query = _scoped(endpoint)
        if query is None:
            continue
        rows = query.filter(where).order_by(model.id.desc()).limit(LIMIT).all()
        group = _group(endpoint, rows, detail=lambda r: str(r.workflow.state_label(r.state)))
        if group is not None:
            out.append(group)
    return out


def search(raw: str) -> list[Group]:
    term = re.sub(r"\s+", "", (raw or ""))[:MAX_TERM]
    if not term:
        return []
    upper = term.upper()
    groups = [find_units(upper), *find_records(upper), find_residents(term), find_visitors(upper)]
    found = [g for g in groups if g is not None]
    db.session.commit()  # the security-log rows of personal matches
    return found


class SearchView(SecureView):
    permissions = {"view": BUSINESS}

    def is_visible(self) -> bool:
        return False  # the box in the top bar (templates/admin/search_box.html)

    @expose("/")
    def index(self):  # type: ignore[no-untyped-def]
        term = request.args.get("q", "")
        return self.render("admin/search.html", term=term[:MAX_TERM], groups=search(term))


def search_url() -> str | None:
    view = may_open("search")
    return url_for("search.index") if view is not None else None


def register(admin: Admin) -> None:
    from views import unit_page

    unit_page.register(admin)
    admin.add_view(SearchView(name=_l("Search"), endpoint="search", url="search"))

    def _context() -> dict[str, Any]:
        from views.presets import list_preset

        return {"search_url": search_url, "list_preset": list_preset}

    admin.app.context_processor(_context)
