"""ARC-13: every unit has its archive from the moment it is registered (form, import, seed, CLI).

A session hook adds the archive of each new unit to the same flush, so the unit and its archive
commit or roll back together; ``coverage`` compares unit and archive counts per estate for
``flask archives check`` and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models.archives import Archive
from models.base import db
from models.registry import Building, Estate, Unit


@sa.event.listens_for(Session, "before_flush", insert=True)  # first: the engine's hook then sets its state
def _archive_new_units(session: Session, flush_context: Any, instances: Any) -> None:
    new = list(session.new)
    filed = {id(a.unit) for a in new if isinstance(a, Archive) and a.unit is not None}
    for obj in new:
        if isinstance(obj, Unit) and id(obj) not in filed:
            session.add(Archive(unit=obj))


@dataclass(frozen=True)
class Coverage:
    estate: str
    units: int
    archives: int

    @property
    def ok(self) -> bool:
        return self.units == self.archives


def coverage() -> list[Coverage]:
    """Units and archives per estate (soft-deleted archives count: archives are kept, ARC-4)."""
    archives = sa.func.count(Archive.id)
    rows = db.session.execute(
        sa.select(Estate.code, sa.func.count(Unit.id), archives)
        .select_from(Estate)
        .join(Building, Building.estate_id == Estate.id)
        .join(Unit, Unit.building_id == Building.id)
        .outerjoin(Archive, Archive.unit_id == Unit.id)
        .group_by(Estate.code)
        .order_by(Estate.code)
    )
    return [Coverage(code, units, count) for code, units, count in rows]


def units_without_archive() -> list[int]:
    return list(
        db.session.scalars(sa.select(Unit.id).where(~sa.exists().where(Archive.unit_id == Unit.id)).order_by(Unit.id))
    )


def repair() -> int:
    """Create the missing archives (the caller commits); returns how many."""
    missing = units_without_archive()
    db.session.add_all(Archive(unit_id=unit_id) for unit_id in missing)
    return len(missing)
