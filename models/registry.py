"""Estate registry (REGULATIONS §2: REG): estates, buildings, units, residents and their tenure."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from models.base import Timestamped, UTCDateTime, db, utcnow
from models.validators import (
    DomainError,
    check_id_number,
    check_length,
    check_period,
    check_phone,
    check_unit_code,
)
from security.crypto import EncryptedString, keyring

ESTATE_KINDS = {"residential": _l("Residential compound"), "office": _l("Office tower")}
UNIT_USES = {
    "residential": _l("Residential"),
    "office": _l("Office"),
    "commercial": _l("Commercial"),
    "parking": _l("Parking"),
}
GENDERS = {"male": _l("Male"), "female": _l("Female")}
OCCUPANCY_KINDS = {"owner": _l("Owner"), "family": _l("Family member"), "tenant": _l("Tenant")}


class Estate(Timestamped, db.Model):
    __tablename__ = "estate"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(16), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(sa.String(16), default="residential")
    address: Mapped[str | None] = mapped_column(sa.String(200))
    handover_date: Mapped[date | None] = mapped_column(sa.Date)  # 交付日期: starts ARC-8's full check
    buildings: Mapped[list[Building]] = relationship(back_populates="estate")

    @validates("code")
    def _code(self, key: str, value: str) -> str:
        value = (value or "").strip().lower()
        if not value or not value.replace("-", "").isalnum() or len(value) > 16:
            raise DomainError(_l("Estate code: letters and digits, at most 16."), "code")
        return value

    def archive_label(self, serial: int, firm: str) -> str:
        """REG-1 archive label ``<firm>-<estate>-<serial>``, e.g. cpm-avic-001."""
        return f"{firm}-{self.code}-{serial:03d}"

    def __str__(self) -> str:
        return self.name


class Building(Timestamped, db.Model):
    __tablename__ = "building"
    __table_args__ = (sa.UniqueConstraint("estate_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    estate_id: Mapped[int] = mapped_column(sa.ForeignKey("estate.id"), index=True)
    estate: Mapped[Estate] = relationship(back_populates="buildings")
    code: Mapped[str] = mapped_column(sa.String(4))
    name: Mapped[str | None] = mapped_column(sa.String(64))
    floors: Mapped[int | None] = mapped_column(sa.Integer)

    @validates("code")
    def _code(self, key: str, value: str) -> str:
        value = (value or "").strip().upper()
        if not value.isalnum() or not 1 <= len(value) <= 4:
            raise DomainError(_l("Building code: 1 to 4 letters or digits, e.g. A."), "code")
        return value

    def __str__(self) -> str:
        return f"{self.estate.name if self.estate else ''} {self.code}".strip()


class Unit(Timestamped, db.Model):
    """REG-1: code reads building-floor-room, e.g. A-12-1203; ordered by building, floor, room."""

    __tablename__ = "unit"
    __table_args__ = (
        sa.UniqueConstraint("building_id", "code"),
        sa.CheckConstraint("area > 0", name="area_positive"),
        sa.Index("ix_unit_building_floor_code", "building_id", "floor", "code"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    building_id: Mapped[int] = mapped_column(sa.ForeignKey("building.id"), info={"important": True})  # ACC-8
    building: Mapped[Building] = relationship()
    code: Mapped[str] = mapped_column(sa.String(24), index=True, info={"important": True})
    floor: Mapped[int] = mapped_column(sa.Integer)
    area: Mapped[Decimal | None] = mapped_column(sa.Numeric(10, 2), info={"important": True})
    use: Mapped[str] = mapped_column(sa.String(16), default="residential")
    occupancies: Mapped[list[Occupancy]] = relationship(back_populates="unit")

    @validates("code")
    def _code(self, key: str, value: str) -> str:
        value = check_unit_code(value)
        if self.floor is None:
            self.floor = floor_of(value)
        return value

    @validates("floor")
    def _floor(self, key: str, value: int | None) -> int | None:
        """A blank floor is read from the code (A-12-1203 → 12)."""
        if value is None and self.code:
            return floor_of(self.code)
        if value is not None and not -10 <= int(value) <= 200:
            raise DomainError(_l("Floor must be between -10 and 200."), "floor")
        return value

    @validates("area")
    def _area(self, key: str, value: Decimal | None) -> Decimal | None:
        if value is not None and not (Decimal(value).is_finite() and Decimal("0") < Decimal(value) < Decimal("100000")):
            raise DomainError(_l("Building area must be between 0 and 100000 m²."), "area")
        return value

    @validates("use")
    def _use(self, key: str, value: str) -> str:
        if value not in UNIT_USES:
            raise DomainError(_l("Unknown use."), "use")
        return value

    def check_consistent(self) -> None:
        """The code's building and floor parts must agree with the unit's building and floor."""
        if self.building is not None and self.code.split("-")[0] != self.building.code:
            raise DomainError(_l("Unit code must start with its building code."), "code")
        if self.floor is not None and floor_of(self.code) != self.floor:
            raise DomainError(_l("Unit code's floor part differs from the floor."), "floor")

    def __str__(self) -> str:
        return self.code


def floor_of(code: str) -> int:
    part = code.split("-")[1]
    return -int(part[1:]) if part.startswith("B") else int(part)


class Resident(Timestamped, db.Model):
    """REG-3 fields; the national ID is encrypted, searchable only through its blind index."""

    __tablename__ = "resident"
    personal_label = True  # str() names a person (ACC-5: a related column shows personal data)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), index=True, info={"personal": True, "important": True})
    gender: Mapped[str | None] = mapped_column(sa.String(8), info={"personal": True})
    phone: Mapped[str | None] = mapped_column(sa.String(32), index=True, info={"personal": True})
    id_number: Mapped[str | None] = mapped_column(EncryptedString(), info={"personal": True, "important": True})
    id_number_bidx: Mapped[str | None] = mapped_column(sa.String(64), unique=True, info={"sensitive": True})
    native_place: Mapped[str | None] = mapped_column(sa.String(100), info={"personal": True})
    household_place: Mapped[str | None] = mapped_column(sa.String(200), info={"personal": True})
    emergency_contact: Mapped[str | None] = mapped_column(sa.String(64), info={"personal": True})
    emergency_phone: Mapped[str | None] = mapped_column(sa.String(32), info={"personal": True})
    occupancies: Mapped[list[Occupancy]] = relationship(back_populates="resident")
    vip: Mapped[VipProfile | None] = relationship(back_populates="resident", uselist=False)

    @validates("id_number")
    def _id_number(self, key: str, value: str | None) -> str | None:
        if not value:
            self.id_number_bidx = None
            return None
        value = check_id_number(value)
        self.id_number_bidx = keyring().blind_index(value)
        return value

    @validates("phone", "emergency_phone")
    def _phone(self, key: str, value: str | None) -> str | None:
        return check_phone(value, key)

    @validates("name", "native_place", "household_place", "emergency_contact")
    def _text(self, key: str, value: str | None) -> str | None:
        if key == "name" and not (value or "").strip():
            raise DomainError(_l("Name is required."), "name")
        limits = {"name": 64, "native_place": 100, "household_place": 200, "emergency_contact": 64}
        return check_length(value.strip() if value else value, limits[key], key)

    @validates("gender")
    def _gender(self, key: str, value: str | None) -> str | None:
        if value and value not in GENDERS:
            raise DomainError(_l("Unknown gender."), "gender")
        return value or None

    @property
    def current_units(self) -> list[Unit]:
        today = date.today()
        return [o.unit for o in self.occupancies if o.end_date is None or o.end_date >= today]

    def __str__(self) -> str:
        return self.name


class Occupancy(Timestamped, db.Model):
    """REG-2 / ARC-5: who owns or lives in a unit, over time; ended, never overwritten."""

    __tablename__ = "occupancy"
    personal_label = True  # str() names a person (ACC-5: a related column shows personal data)
    __table_args__ = (
        sa.CheckConstraint("end_date IS NULL OR end_date >= start_date", name="period"),
        sa.Index("ix_occupancy_unit_start", "unit_id", "start_date"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    # ACC-8: who owns or lives in which unit is important information
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), info={"important": True})
    unit: Mapped[Unit] = relationship(back_populates="occupancies")
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("resident.id"), index=True, info={"important": True})
    resident: Mapped[Resident] = relationship(back_populates="occupancies")
    kind: Mapped[str] = mapped_column(sa.String(16), info={"important": True})
    start_date: Mapped[date] = mapped_column(sa.Date)
    end_date: Mapped[date | None] = mapped_column(sa.Date)
    note: Mapped[str | None] = mapped_column(sa.String(200))

    @validates("kind")
    def _kind(self, key: str, value: str) -> str:
        if value not in OCCUPANCY_KINDS:
            raise DomainError(_l("Unknown occupancy kind."), "kind")
        return value

    @validates("start_date", "end_date")
    def _dates(self, key: str, value: date | None) -> date | None:
        if key == "start_date" and value is None:
            raise DomainError(_l("Start date is required."), "start_date")
        start = value if key == "start_date" else self.start_date
        end = value if key == "end_date" else self.end_date
        check_period(start, end)
        return value

    @property
    def is_current(self) -> bool:
        return self.end_date is None or self.end_date >= date.today()

    def __str__(self) -> str:
        return f"{self.unit} {OCCUPANCY_KINDS.get(self.kind, self.kind)} {self.resident}"


class ResidentChange(db.Model):
    """ARC-5: a dated history of phone and tenure changes, written by the registry service."""

    __tablename__ = "resident_change"
    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("resident.id"), index=True)
    resident: Mapped[Resident] = relationship()
    field: Mapped[str] = mapped_column(sa.String(32))
    old_value: Mapped[str | None] = mapped_column(sa.String(200), info={"personal": True})  # old phone
    new_value: Mapped[str | None] = mapped_column(sa.String(200), info={"personal": True})
    changed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class VipProfile(Timestamped, db.Model):
    """REG-4: key residents (重点业户) with birthday, preferences and special requirements."""

    __tablename__ = "vip_profile"
    personal_label = True  # str() names a person (ACC-5: a related column shows personal data)
    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(sa.ForeignKey("resident.id"), unique=True)
    resident: Mapped[Resident] = relationship(back_populates="vip")
    birthday: Mapped[date | None] = mapped_column(sa.Date, info={"personal": True})
    preferences: Mapped[str | None] = mapped_column(sa.Text, info={"personal": True})
    special_requirements: Mapped[str | None] = mapped_column(sa.Text, info={"personal": True})
    communications: Mapped[list[VipCommunication]] = relationship(back_populates="profile")

    @validates("preferences", "special_requirements")
    def _text(self, key: str, value: str | None) -> str | None:
        return check_length(value, 2000, key)

    def __str__(self) -> str:
        return str(self.resident)


class VipCommunication(db.Model):
    __tablename__ = "vip_communication"
    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(sa.ForeignKey("vip_profile.id"), index=True)
    profile: Mapped[VipProfile] = relationship(back_populates="communications")
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    summary: Mapped[str] = mapped_column(sa.String(1000), info={"personal": True})

    @validates("summary")
    def _summary(self, key: str, value: str) -> str:
        if not (value or "").strip():
            raise DomainError(_l("Summary is required."), "summary")
        return check_length(value, 1000, key) or ""



def record_history(session: sa.orm.Session, actor_id: int | None) -> None:
    """ARC-5: turn pending phone and tenure changes into dated ResidentChange rows."""
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, Resident) and obj.id is not None:
            hist = sa.inspect(obj).attrs.phone.history
            if hist.has_changes() and hist.deleted:
                session.add(ResidentChange(resident=obj, field="phone", old_value=hist.deleted[0],
                                           new_value=obj.phone, changed_by_id=actor_id))
        elif isinstance(obj, Occupancy) and obj.resident is not None:
            if obj in session.new:
                session.add(ResidentChange(resident=obj.resident, field="occupancy", old_value=None,
                                           new_value=f"{obj.kind} {obj.unit} {obj.start_date}",
                                           changed_by_id=actor_id))
            else:
                hist = sa.inspect(obj).attrs.end_date.history
                if hist.has_changes():
                    session.add(ResidentChange(
                        resident=obj.resident, field="occupancy_end",
                        old_value=str(hist.deleted[0]) if hist.deleted else None,
                        new_value=f"{obj.kind} {obj.unit} {obj.end_date}", changed_by_id=actor_id))
