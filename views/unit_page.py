"""The unit's page (一户一档 at a glance): the unit's facts, its owners and occupants over time, its
archive, and the open and recent records of every regulation that names the unit.

Every section is read through the screen that lists those records (``get_query``: its permission
table and scope), so the page shows only what the user could open anyway, and each row links to
that screen's details page. One statement per section, whatever the unit's history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import abort, redirect, url_for
from flask_admin import Admin, expose
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup, escape

from models import db
from models.registry import OCCUPANCY_KINDS, UNIT_USES, Occupancy, Unit
from security.accounts import log_event
from views.base import SecureView, has_any_role
from views.roles import BUSINESS

RECENT = 10  # rows per section; the section's title links to the full list


@dataclass
class Item:
    label: str
    state: str
    open: bool
    when: Any
    url: str | None


@dataclass
class Section:
    key: str
    title: str
    items: list[Item]
    list_url: str | None


def _sections() -> list[tuple[str, str, Any, Any]]:
    """(endpoint, model attribute path to the unit id, model, when-column) per section."""
    from models.archive_records import ArrearsCase, RentalRegistration
    from models.complaints import Complaint
    from models.help_requests import HelpRequest
    from models.moving import MoveIn, MoveOut, ReleaseSlip
    from models.renovation import Renovation
    from models.repairs import RepairOrder
    from models.violations import Violation

    return [
        ("complaint", "unit_id", Complaint, Complaint.received_at),
        ("help_request", "unit_id", HelpRequest, HelpRequest.received_at),
        ("repair_order", "unit_id", RepairOrder, RepairOrder.created_at),
        ("renovation", "unit_id", Renovation, Renovation.created_at),
        ("violation", "unit_id", Violation, Violation.created_at),
        ("move_in", "unit_id", MoveIn, MoveIn.created_at),
        ("move_out", "unit_id", MoveOut, MoveOut.created_at),
        ("release_slip", "unit_id", ReleaseSlip, ReleaseSlip.issued_at),
        ("archive_rental", "archive", RentalRegistration, RentalRegistration.created_at),
        ("archive_arrears", "archive", ArrearsCase, ArrearsCase.created_at),
    ]


def screen(endpoint: str) -> Any:
    from views.printing import admin_view

    return admin_view(endpoint)


def may_open(endpoint: str) -> Any:
    view = screen(endpoint)
    return view if view is not None and view.is_accessible() else None


def _details(endpoint: str, record_id: int) -> str:
    return url_for(f"{endpoint}.details_view", id=record_id)


def record_sections(unit: Unit) -> list[Section]:
    from models.archives import Archive

    out = []
    for endpoint, path, model, when in _sections():
        view = may_open(endpoint)
        if view is None:
            continue
        query = view.get_query()
        if path == "archive":
            query = query.join(Archive, Archive.id == model.archive_id).filter(Archive.unit_id == unit.id)
        else:
            query = query.filter(model.unit_id == unit.id)
        rows = query.order_by(when.desc(), model.id.desc()).limit(RECENT).all()
        items = []
        for r in rows:
            wf = getattr(model, "workflow", None)
            state = str(wf.state_label(r.state)) if wf is not None else ""
            is_open = wf is not None and r.state not in wf.final_states
            items.append(Item(str(r), state, is_open, getattr(r, when.key), _details(endpoint, r.id)))
        out.append(Section(endpoint, str(view.name), items, url_for(f"{endpoint}.index_view")))
    return out


def occupants(unit: Unit) -> list[Occupancy] | None:
    """Owners and occupants over time, current first; None when the user may not see residents."""
    if may_open("occupancy") is None:
        return None
    rows = db.session.scalars(
        sa.select(Occupancy)
        .where(Occupancy.unit_id == unit.id)
        .options(sa.orm.joinedload(Occupancy.resident))
        .order_by(Occupancy.end_date.is_not(None), Occupancy.start_date.desc())
    ).all()
    return list(rows)


def archive_of(unit: Unit) -> Any:
    from models.archives import Archive

    view = may_open("archive")
    if view is None:
        return None
    return view.get_query().filter(Archive.unit_id == unit.id).one_or_none()


class UnitPageView(SecureView):
    """Any business role; what each section shows is its own screen's decision."""

    permissions = {"view": BUSINESS}

    def is_visible(self) -> bool:
        return False  # reached from a unit's code, the unit list and the search box

    @expose("/")
    def index(self):  # type: ignore[no-untyped-def]
        return redirect(url_for("unit.index_view"))

    @expose("/<int:id>")
    def page(self, id: int):  # type: ignore[no-untyped-def]
        units = screen("unit")
        unit = units.get_one(str(id)) if units is not None and units.is_accessible() else None
        if unit is None:
            abort(404)
        people = occupants(unit)
        html = self.render(
            "admin/unit_page.html",
            unit=unit,
            use=UNIT_USES.get(unit.use, unit.use),
            occupants=people,
            kinds=OCCUPANCY_KINDS,
            archive=archive_of(unit),
            sections=record_sections(unit),
        )
        if people:  # after rendering: the commit would expire every loaded row (ACC-7 log)
            log_event("confidential_view", staff=current_user, detail=f"unit page {unit.id}: occupants")
            db.session.commit()
        return html


def unit_link(view: Any, context: Any, model: Any, name: str) -> Any:
    """List/details formatter of a record's ``unit``: its code, linking to the unit's page."""
    unit = getattr(model, name, None)
    if unit is None:
        return ""
    if not has_any_role(BUSINESS):
        return escape(str(unit))
    return Markup('<a class="unit-link" href="{}">{}</a>').format(url_for("unit_page.page", id=unit.id), unit)


def register(admin: Admin) -> None:
    admin.add_view(UnitPageView(name=_l("Unit page"), endpoint="unit_page", url="unit-page"))


__all__ = ["UnitPageView", "register", "unit_link"]
