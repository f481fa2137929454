"""Guards, effects and form checks of moving in and out (REGULATIONS §4); the declarations that use
them are in models/moving.py. Guards read only the record and what its workflow preloads."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l

from models.base import db, utcnow
from models.numbering import next_number
from models.validators import DomainError
from workflow.engine import Firing
from workflow.settings import SettingSpec, declare, value

if TYPE_CHECKING:
    from models.moving import MoveDamage, MoveIn, MoveOut, ReleaseSlip

FRONT_DESK = frozenset({"manager", "cs_supervisor", "cs_clerk"})
GATE = frozenset({"security"})  # MOV-4: the gate check is security's

SETTLE_MIN = declare(SettingSpec(
    "moving.settle_min_days", _l("Fees settled at least this many days before moving out (MOV-3)"),
    "days", 3, 0, 60, group=_l("Moving")))
SETTLE_MAX = declare(SettingSpec(
    "moving.settle_max_days", _l("Fees settled at most this many days before moving out (MOV-3)"),
    "days", 7, 0, 60, group=_l("Moving")))


def local_today() -> date:
    from workflow.calendar import local_today as today

    return today()


def _current_owner_names(unit: Any) -> set[str]:
    return {o.resident.name for o in unit.occupancies if o.kind == "owner" and o.end_date is None}


def parse_count(value: Any, key: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        raise DomainError(_l("Enter a whole number."), key) from None
    if not 0 <= number <= 50:
        raise DomainError(_l("Number of keys: 0 to 50."), key)
    return number


def parse_day(value: Any, key: str) -> date | None:
    if value in (None, "") or isinstance(value, date):
        return value or None
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise DomainError(_l("Enter a date as YYYY-MM-DD."), key) from None


# --- MOV-1 move-in --------------------------------------------------------------------------------
def check_move_in(m: MoveIn) -> None:
    """The form's checks: a registered person with an ID number, a lease for a tenant."""
    from models.moving import MOVE_IN_KINDS

    if m.unit is None or m.resident is None:
        raise DomainError(_l("Choose the unit and the resident."), "resident")
    if m.kind not in MOVE_IN_KINDS:
        raise DomainError(_l("Unknown occupancy kind."), "kind")
    if not m.resident.id_number:
        raise DomainError(_l("Register the resident's ID number in the registry first (MOV-1)."), "resident")
    if m.kind == "tenant" and not (m.lease_no or "").strip():
        raise DomainError(_l("A tenant moves in with a lease: enter the lease number (MOV-1)."), "lease_no")
    if m.key_count is not None and not 0 <= m.key_count <= 50:
        raise DomainError(_l("Number of keys: 0 to 50."), "key_count")


def move_in_ready(m: MoveIn) -> object:
    if not m.id_checked:
        return _l("Check the occupant's ID before handing over (MOV-1).")
    if m.kind == "tenant":
        if not m.lease_no:
            return _l("A tenant moves in with a lease: enter the lease number (MOV-1).")
        if (m.owner_confirmation or "").strip() not in _current_owner_names(m.unit):
            return _l("A tenant's move-in needs the owner present: the confirmation must name a current "
                      "owner of the unit (MOV-1).")
    return None


def on_moved_in(m: MoveIn, firing: Firing) -> None:
    """Start the occupancy; a closed archive of the unit opens again for its new occupant (ARC-1)."""
    from models.archives import archive_for_unit
    from models.registry import Occupancy

    occupancy = Occupancy(unit=m.unit, resident=m.resident, kind=m.kind, start_date=m.move_in_date,
                          note=str(_l("Move-in registration")))
    db.session.add(occupancy)
    m.occupancy = occupancy
    archive = archive_for_unit(m.unit.id)
    if archive.state == "closed":
        from workflow import engine

        engine.fire(archive, "reopen_on_move_in", None, f"{m.resident}", commit=False)


# --- MOV-3 move-out -------------------------------------------------------------------------------
def check_move_out(m: MoveOut) -> None:
    if m.occupancy is None:
        raise DomainError(_l("Choose the occupancy that ends."), "occupancy")
    if m.occupancy.end_date is not None:
        raise DomainError(_l("This occupancy has already ended."), "occupancy")
    m.unit = m.occupancy.unit
    if m.planned_date is None:
        raise DomainError(_l("Enter the planned move-out date."), "planned_date")
    if not (m.goods or "").strip():
        raise DomainError(_l("List the goods moved out (MOV-4)."), "goods")


def settlement_in_window(m: MoveOut) -> object:
    """MOV-3: settled 3 to 7 days (the settings) before the planned move-out."""
    if m.fees_settled_on is None or m.planned_date is None:
        return _l("Record when the fees were settled and who at finance confirmed it (MOV-3).")
    low, high = value(SETTLE_MIN.key), value(SETTLE_MAX.key)
    earliest, latest = m.planned_date - timedelta(days=high), m.planned_date - timedelta(days=low)
    if not earliest <= m.fees_settled_on <= latest:
        return _l("Water, electricity and management fees are settled %(a)s to %(b)s days before moving "
                  "out: between %(x)s and %(y)s (MOV-3).", a=low, b=high, x=earliest, y=latest)
    return None


def consent_by_owner(m: MoveOut) -> object:
    if not m.is_tenant:
        return _l("Only a tenant's move-out needs the owner's consent.")
    if (m.owner_consent_name or "").strip() not in _current_owner_names(m.unit):
        return _l("The consent must be signed by a current owner of the unit (MOV-3).")
    return None


def on_consent(m: MoveOut, firing: Firing) -> None:
    m.owner_consented_at = firing.at


def on_goods_checked(m: MoveOut, firing: Firing) -> None:
    m.goods_checked, m.goods_checked_by_id = True, firing.user.id if firing.user else None


def slip_issuable(m: MoveOut) -> object:
    """MOV-3: no release slip before the settlement in the window and, for a tenant, the owner's
    consent and the goods check."""
    refusal = settlement_in_window(m)
    if refusal is not None:
        return refusal
    if m.is_tenant and m.owner_consented_at is None:
        return _l("A tenant's move-out needs the owner's signed consent first (MOV-3).")
    if m.is_tenant and not m.goods_checked:
        return _l("Check that the goods match the list first (MOV-3).")
    return None


def on_issue_slip(m: MoveOut, firing: Firing) -> None:
    from models.moving import ReleaseSlip

    slip = ReleaseSlip(move_out=m, unit=m.unit, carrier=m.occupancy.resident.name, goods=m.goods,
                       goods_checked=True, issued_at=firing.at, state="issued",
                       created_by_id=firing.user.id if firing.user else None)
    db.session.add(slip)


def goods_left(m: MoveOut) -> object:
    if not any(s.state == "used" for s in m.slips):
        return _l("The goods have not passed the gate yet: the release slip is not used (MOV-4).")
    return None


def on_moved_out(m: MoveOut, firing: Firing) -> None:
    """End the occupancy through the registry (ARC-5 history); when nobody is left in the unit, its
    archive is closed and kept apart (ARC-4)."""
    from models.archives import archive_for_unit
    from models.registry import Occupancy
    from workflow.calendar import app_zone

    m.moved_out_on = firing.at.astimezone(app_zone()).date()
    m.occupancy.end_date = max(m.moved_out_on, m.occupancy.start_date)
    archive = archive_for_unit(m.unit_id)
    others = db.session.scalar(sa.select(sa.func.count()).select_from(Occupancy).where(
        Occupancy.unit_id == m.unit_id, Occupancy.id != m.occupancy.id,
        sa.or_(Occupancy.end_date.is_(None), Occupancy.end_date > m.moved_out_on)))
    if not others and archive.state == "open":
        from workflow import engine

        engine.fire(archive, "close_on_move_out", None, f"{m.occupancy.resident}", commit=False)


# --- MOV-2 / MOV-4 release slip -------------------------------------------------------------------
def check_slip(s: ReleaseSlip) -> None:
    if s.unit is None:
        raise DomainError(_l("Choose the unit."), "unit")
    if not (s.goods or "").strip():
        raise DomainError(_l("List the goods moved out (MOV-4)."), "goods")
    if not s.goods_checked:
        raise DomainError(_l("The service centre issues a release slip only after checking the goods "
                             "(MOV-2)."), "goods_checked")
    if s.move_out is None:
        from models.moving import MoveOut

        pending = db.session.scalar(sa.select(MoveOut.id).where(
            MoveOut.unit_id == s.unit.id, MoveOut.state == "open", MoveOut.deleted_at.is_(None)).limit(1))
        if pending is not None:
            raise DomainError(_l("This unit is moving out for good: its release slip is issued from the move-out "
                                 "registration once the fees are settled (MOV-3)."), "unit")


def on_gate_check(s: ReleaseSlip, firing: Firing) -> None:
    s.gate_checked_at, s.gate_checked_by_id = firing.at, firing.user.id if firing.user else None


@sa.event.listens_for(sa.orm.Session, "before_flush")
def _number_slips(session: sa.orm.Session, flush_context: Any, instances: Any) -> None:
    """FX-yyyy-nnnnn by the Beijing year, from the year's counter row."""
    from models.moving import ReleaseSlip
    from workflow.calendar import app_zone

    new = [o for o in session.new if isinstance(o, ReleaseSlip) and not o.number]
    if not new:
        return
    for slip in new:
        prefix = f"FX-{(slip.issued_at or utcnow()).astimezone(app_zone()):%Y}-"
        with session.no_autoflush:
            slip.number = next_number(session, ReleaseSlip.__table__.c.number, prefix, 5)


# --- MOV-5 damage ---------------------------------------------------------------------------------
def check_damage(d: MoveDamage) -> None:
    if d.unit is None:
        raise DomainError(_l("Choose the unit."), "unit")
    if not (d.mover or "").strip() or not (d.description or "").strip():
        raise DomainError(_l("Record who moved and what was damaged (MOV-5)."), "description")
    try:
        amount = Decimal(d.amount)
    except (TypeError, InvalidOperation):
        raise DomainError(_l("Enter the amount charged."), "amount") from None
    if amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise DomainError(_l("The amount is at least 0, in yuan and fen."), "amount")
    if d.restore_by is None:
        raise DomainError(_l("Set the deadline to restore the damage (MOV-5)."), "restore_by")


def on_restored(d: MoveDamage, firing: Firing) -> None:
    d.restored_at = firing.at
