"""The rules a follow-up visit must meet (REGULATIONS §5: VIS-1..4), as checks raising
``DomainError(message, field)``: the form shows them at the field, the "record" guard as a refusal."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask_babel import lazy_gettext as _l

from models.base import utcnow
from models.validators import DomainError

SUPERVISING = frozenset({"manager", "cs_supervisor"})


def _filled(value: str | None) -> bool:
    return bool((value or "").strip())


def is_major_repair(order: Any) -> bool:
    """VIS-2 "major repair" (大修): the order's own ``major`` flag when the repair order has one,
    otherwise an emergency repair counts as major. Major repairs are visited on site."""
    if order is None:
        return False
    flag = getattr(order, "major", None)
    return bool(flag) if flag is not None else bool(getattr(order, "emergency", False))


def needs_on_site_visit(complaint: Any) -> bool:
    """VIS-7: important and major complaints are followed up on site (上门回访) with the resident's signature."""
    return getattr(complaint, "severity", None) in ("important", "major")


def check_subject(v: Any) -> None:
    """A complaint follow-up names its complaint, a repair visit its work order; a further visit
    continues a recorded visit about the same thing (VIS-4)."""
    from models.visits import DONE_STATES, KINDS

    if v.kind not in KINDS:
        raise DomainError(_l("Choose the kind of visit."), "kind")
    if v.kind == "complaint" and v.complaint_id is None and v.complaint is None:
        raise DomainError(_l("A complaint follow-up must name the complaint."), "complaint")
    if v.kind == "repair" and v.repair_order_id is None and v.repair_order is None:
        raise DomainError(_l("A repair visit must name the repair work order."), "repair_order")
    if v.kind != "complaint" and (v.complaint_id is not None or v.complaint is not None):
        raise DomainError(_l("Only a complaint follow-up names a complaint."), "complaint")
    if v.kind != "repair" and (v.repair_order_id is not None or v.repair_order is not None):
        raise DomainError(_l("Only a repair visit names a repair work order."), "repair_order")
    prev = v.previous_visit
    if prev is None:
        return
    if prev is v or (v.id is not None and prev.id == v.id):
        raise DomainError(_l("A visit cannot follow itself."), "previous_visit")
    same = prev.kind == v.kind and prev.complaint_id == _id(v, "complaint") \
        and prev.repair_order_id == _id(v, "repair_order")
    if not same:
        raise DomainError(_l("A further visit must be about the same complaint, repair or subject as "
                             "the visit it follows."), "previous_visit")
    if prev.state not in DONE_STATES or prev.deleted_at is not None:
        raise DomainError(_l("A further visit follows a recorded visit."), "previous_visit")


def _id(v: Any, name: str) -> int | None:
    related = getattr(v, name)
    return related.id if related is not None else getattr(v, f"{name}_id")


def check_visitor(v: Any) -> None:
    """VIS-1: the follow-up of a complaint is made by the head of the responsible department,
    or by a customer-service supervisor or the manager."""
    visitor = v.visitor
    if visitor is None:
        raise DomainError(_l("Choose who visits or phones."), "visitor")
    if not visitor.is_active:
        raise DomainError(_l("The visitor's account is inactive."), "visitor")
    if v.kind != "complaint" or v.complaint is None:
        return
    if visitor.roles & SUPERVISING:
        return
    department = getattr(v.complaint, "department_id", None)
    if not (visitor.department_head and department is not None and visitor.department_id == department):
        raise DomainError(_l("A complaint follow-up is made by the head of the responsible department, a "
                             "customer-service supervisor or the manager."), "visitor")


def check_method(v: Any) -> None:
    """VIS-2: major repairs are visited on site; VIS-3: every visit is on site or marked as by phone;
    VIS-7: important and major complaints are followed up on site."""
    from models.visits import METHODS

    if v.method not in METHODS:
        raise DomainError(_l("Choose on site or by phone."), "method")
    if v.kind == "repair" and v.method != "on_site" and is_major_repair(v.repair_order):
        raise DomainError(_l("A major repair is visited on site."), "method")
    if v.kind == "complaint" and v.method != "on_site" and needs_on_site_visit(v.complaint):
        raise DomainError(_l("An important or major complaint is followed up on site, with the resident's "
                             "signature; a phone follow-up does not count (VIS-7)."), "method")


def check_times(v: Any) -> None:
    now = utcnow()
    if v.visited_at is not None and v.visited_at > now + timedelta(minutes=1):
        raise DomainError(_l("The visit time cannot be in the future."), "visited_at")
    handled = getattr(v.complaint, "handled_at", None) if v.kind == "complaint" and v.complaint else None
    # Forms give minutes: a visit in the same minute as the handling counts as after it.
    if v.visited_at is not None and handled is not None and v.visited_at < handled.replace(second=0, microsecond=0):
        raise DomainError(_l("A follow-up comes after the complaint was handled."), "visited_at")
    if v.agreed_reply_at is not None and v.visited_at is not None and v.agreed_reply_at <= v.visited_at:
        raise DomainError(_l("The agreed reply time comes after the visit."), "agreed_reply_at")


def check_outcome(v: Any) -> None:
    """VIS-1: time, method, person visited and opinion; or, if a visit was impossible, the reason."""
    if v.kind == "complaint" and v.complaint is not None and getattr(v.complaint, "handled_at", None) is None:
        raise DomainError(_l("The complaint has not been handled yet; the follow-up comes after."), "complaint")
    if v.visited_at is None:
        raise DomainError(_l("Enter when the visit or call took place."), "visited_at")
    opinion, reason = _filled(v.opinion), _filled(v.impossible_reason)
    if not opinion and not reason:
        raise DomainError(_l("Record the resident's opinion or, if no visit was possible, the reason."), "opinion")
    if opinion and reason:
        raise DomainError(_l("Record either the opinion or the reason why no visit was possible, not both."),
                          "impossible_reason")
    if opinion and not _filled(v.person_visited):
        raise DomainError(_l("Enter the person visited."), "person_visited")


def check_issue(v: Any) -> None:
    """VIS-4: an issue left open needs an agreed reply time; a first visit resolves nothing."""
    if v.resolved and v.previous_visit is None:
        raise DomainError(_l("“Resolved” closes the issue of an earlier visit; choose that visit."), "resolved")
    if v.resolved and _filled(v.new_issue):
        raise DomainError(_l("A visit that raises a new issue cannot also resolve it."), "resolved")
    if v.leaves_issue_open and v.agreed_reply_at is None:
        raise DomainError(_l("An issue that cannot be answered at once needs an agreed reply time."),
                          "agreed_reply_at")


def check_signature(v: Any) -> None:
    """VIS-3: an on-site visit that met the resident carries the resident's signature."""
    if v.method == "on_site" and v.met_resident and not v.has_signature:
        raise DomainError(_l("An on-site visit needs the resident's signature: let the resident sign on "
                             "screen or upload the signed scan first."), "signature")
