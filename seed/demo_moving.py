"""Demo moving in and out (搬迁 / 入住): move-ins registered, handed over and cancelled; tenants' move-outs
waiting for the settlement, released with a slip at the gate, and completed; a voided slip; damage
charged and restored. Moved through the engine as staff would."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from models import Occupancy, Resident, Staff, Unit, db
from models.base import utcnow
from models.moving import MoveDamage, MoveIn, MoveOut, ReleaseSlip
from models.moving_rules import local_today
from seed.people import make_person
from workflow import engine


def _staff(username: str) -> Staff | None:
    return db.session.scalar(sa.select(Staff).where(Staff.username == username))


def _tenant_moves_in(owner: Occupancy, person: Resident, clerk: Staff, serial: int) -> MoveIn:
    move = MoveIn(unit=owner.unit, resident=person, kind="tenant", move_in_date=local_today() - timedelta(days=400),
                  id_checked=True, lease_no=f"ZL-{serial:04d}", owner_confirmation=owner.resident.name,
                  created_by=clerk)
    db.session.add(move)
    db.session.flush()
    engine.fire(move, "hand_over", clerk, values={"card_numbers": f"MJ{serial:05d}", "key_count": "2"})
    return move


def seed_moving() -> None:
    """Idempotent: nothing happens once any move-in exists."""
    if db.session.scalar(sa.select(MoveIn.id).limit(1)) is not None:
        return
    clerk, guard, cashier = _staff("clerk"), _staff("guard"), _staff("cashier")
    if clerk is None or guard is None:
        return
    owners = db.session.execute(
        sa.select(Occupancy).join(Occupancy.unit).where(Occupancy.kind == "owner", Occupancy.end_date.is_(None))
        .order_by(Unit.id).offset(20).limit(6)).scalars().all()
    if len(owners) < 6:
        return
    rng = random.Random(4)
    people = [Resident(**make_person(rng, 97001 + i)) for i in range(5)]
    db.session.add_all(people)
    db.session.flush()
    today = local_today()
    # MOV-1: one waiting at the desk, one cancelled, three tenants moved in
    waiting = MoveIn(unit=owners[0].unit, resident=people[0], kind="family", move_in_date=today,
                     id_checked=True, created_by=clerk)
    cancelled = MoveIn(unit=owners[1].unit, resident=people[1], kind="tenant", move_in_date=today,
                       lease_no="ZL-0099", created_by=clerk)
    db.session.add_all([waiting, cancelled])
    db.session.flush()
    engine.fire(cancelled, "cancel", clerk, "业主未到场，改期")
    moved = [_tenant_moves_in(owners[2 + i], people[2 + i], clerk, 10 + i) for i in range(3)]
    # MOV-3: waiting for the settlement; released at the gate; completed
    outs = []
    for i, m in enumerate(moved):
        out = MoveOut(occupancy=m.occupancy, unit=m.unit, planned_date=today + timedelta(days=4 - i),
                      goods="双人床一张\n衣柜一个\n纸箱十个", created_by=clerk)
        db.session.add(out)
        db.session.flush()
        outs.append(out)
    for out in outs[1:]:
        engine.fire(out, "settle_fees", cashier or clerk,
                    values={"fees_settled_on": (out.planned_date - timedelta(days=4)).isoformat(),
                            "finance_confirmed_by": "财务 陈会计"})
        engine.fire(out, "owner_consent", clerk, values={"owner_consent_name": _owner_name(out)})
        engine.fire(out, "check_goods", clerk)
        engine.fire(out, "issue_slip", clerk)
    done = outs[2]
    engine.fire(done.slips[0], "use", guard)
    engine.fire(done, "complete", clerk)
    # MOV-2: goods out without moving out; one used, one voided
    for goods in ("旧沙发一张", "健身器材一套"):
        slip = ReleaseSlip(unit=owners[5].unit, carrier="搬家公司", goods=goods, goods_checked=True, created_by=clerk)
        db.session.add(slip)
        db.session.flush()
        voided = goods.startswith("健身")
        engine.fire(slip, "void" if voided else "use", guard, "物品与清单不符" if voided else "")
    # MOV-5: damage charged, one restored
    for i, out in enumerate(outs[1:]):
        damage = MoveDamage(unit=out.unit, move_out=out, mover="顺达搬家公司", description="搬运时划伤电梯轿厢壁",
                            amount=Decimal("280.00") + i * 100, restore_by=utcnow() + timedelta(days=3 - 5 * i),
                            created_by=clerk)
        db.session.add(damage)
        db.session.flush()
        if i:
            engine.fire(damage, "restored", clerk)
    db.session.commit()


def _owner_name(out: MoveOut) -> str:
    return next(o.resident.name for o in out.unit.occupancies if o.kind == "owner" and o.end_date is None)
