"""Tables of the shared workflow layer: the ``Tracked`` mixin every regulation record uses,
sign-offs, delegations and the settings an admin may change without code."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from models.base import Timestamped, UTCDateTime, db, utcnow
from models.staff import Staff


def sparse_index(table: str, column: str) -> sa.Index:
    """An index of the rows where ``column`` is set (``WHERE column IS NOT NULL``).

    Every list filters ``deleted_at IS NULL``: with a full index on it, SQLite (without
    statistics) walked that index over every live row and sorted them all in a temp B-tree for
    the page's ORDER BY, seconds at a million rows (issue 16). A partial index cannot answer
    ``IS NULL``, so the planner takes the sort key's index instead, while finding the few deleted
    (or duplicate) rows stays an index lookup.
    """
    where = sa.text(f"{column} IS NOT NULL")
    return sa.Index(f"ix_{table}_{column}", column, sqlite_where=where, postgresql_where=where)


class Tracked(Timestamped):
    """A record with a declared workflow (``workflow`` class attribute).

    ``state`` is protected: only the engine writes it, never a form. ``pending_*`` describe an
    approval chain in progress; ``deleted_at`` is the soft delete after an approved request.
    Ids are never reused (AUTOINCREMENT on SQLite too): after a purge, a new record must not
    inherit the purged one's audit trail, tombstone or legal hold, which name it by id.
    """

    # Nullable columns mostly NULL whose index serves only "IS NOT NULL" lookups; a model adds
    # its own (Complaint: duplicate_of_id). See sparse_index.
    sparse_indexes: tuple[str, ...] = ()

    @declared_attr.directive
    def __table_args__(cls) -> tuple[object, ...]:
        names = ("deleted_at", *cls.sparse_indexes)
        return (*(sparse_index(cls.__tablename__, name) for name in names), {"sqlite_autoincrement": True})

    state: Mapped[str] = mapped_column(sa.String(32), index=True)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    pending_transition: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    pending_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pending_round: Mapped[int] = mapped_column(sa.Integer, default=0)
    pending_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pending_comment: Mapped[str | None] = mapped_column(sa.Text)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # indexed by sparse_index
    # Set by the engine on entering a final state (a state with no way out); retention counts
    # keeping periods from it ("kept N years from the closing").
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)

    @declared_attr
    def created_by_id(cls) -> Mapped[int | None]:  # noqa: N805
        return mapped_column(sa.ForeignKey("staff.id"))

    @declared_attr
    def pending_by_id(cls) -> Mapped[int | None]:  # noqa: N805
        return mapped_column(sa.ForeignKey("staff.id"))

    @declared_attr
    def deleted_by_id(cls) -> Mapped[int | None]:  # noqa: N805
        return mapped_column(sa.ForeignKey("staff.id"))

    @declared_attr
    def created_by(cls) -> Mapped[Staff | None]:  # noqa: N805
        return relationship(Staff, foreign_keys=lambda: [cls.created_by_id])

    @declared_attr
    def pending_by(cls) -> Mapped[Staff | None]:  # noqa: N805
        return relationship(Staff, foreign_keys=lambda: [cls.pending_by_id])


class SignOff(db.Model):
    """One approver's decision on one step of one approval round: a row, never a boolean."""

    __tablename__ = "sign_off"
    __audit__ = False  # the engine writes the record's "signoff" row instead
    __table_args__ = (
        sa.UniqueConstraint("record_type", "record_id", "transition", "round", "step", "staff_id"),
        sa.Index("ix_sign_off_record", "record_type", "record_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    record_type: Mapped[str] = mapped_column(sa.String(64))
    record_id: Mapped[int] = mapped_column(sa.BigInteger)
    transition: Mapped[str] = mapped_column(sa.String(64))
    round: Mapped[int] = mapped_column(sa.Integer)
    step: Mapped[int] = mapped_column(sa.Integer)
    role: Mapped[str | None] = mapped_column(sa.String(32))  # the capacity signed in
    decision: Mapped[str] = mapped_column(sa.String(16))  # approve | reject
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    staff: Mapped[Staff] = relationship(foreign_keys=[staff_id])
    on_behalf_of_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    on_behalf_of: Mapped[Staff | None] = relationship(foreign_keys=[on_behalf_of_id])
    comment: Mapped[str | None] = mapped_column(sa.Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Delegation(Timestamped, db.Model):
    """A manager lets someone approve in their place for a period; recorded, revocable."""

    __tablename__ = "delegation"
    __table_args__ = (sa.CheckConstraint("ends_at > starts_at", name="period"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    delegator_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"), index=True)
    delegator: Mapped[Staff] = relationship(foreign_keys=[delegator_id])
    delegate_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"), index=True)
    delegate: Mapped[Staff] = relationship(foreign_keys=[delegate_id])
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(sa.String(200), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __str__(self) -> str:
        return f"{self.delegator} → {self.delegate}"


class WorkflowSetting(Timestamped, db.Model):
    """An admin's override of a declared default (roles of a transition or step, a duration).

    The value is JSON; the declaration in code validates it before it is stored.
    """

    __tablename__ = "workflow_setting"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(128), unique=True)
    value: Mapped[str] = mapped_column(sa.Text)
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
