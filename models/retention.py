"""Retention (REGULATIONS §10): how long each record type is kept, legal holds that stop a purge,
reviewed purge batches and the tombstones they leave.

Policies name record types by table name, so a policy may be declared before its regulation's
table exists (help requests, duty logs, violations and complaints come in later issues); the
evaluator in ``workflow/retention.py`` reports such a policy as waiting for its table.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from models.base import Timestamped, UTCDateTime, db, utcnow
from models.staff import Staff
from models.validators import DomainError

UNITS = {"days": _l("days"), "months": _l("months"), "years": _l("years")}
MAX_AMOUNT = {"days": 36600, "months": 1200, "years": 100}  # a century at most, in any unit
ANCHORS = {
    "closed": _l("closing of the record"),
    "start_of_next_year": _l("start of the following year"),
    "end_of_month": _l("end of the month"),
    "created": _l("creation of the record"),
}
ANCHOR_FIELDS = {"closed_at": _l("closing time"), "created_at": _l("creation time")}
ACTIONS = {"purge": _l("purge (delete with its children)"), "anonymise": _l("anonymise (keep, blank personal data)")}
BATCH_STATES = {"listing": _l("being listed"), "listed": _l("listed"), "approved": _l("approved"),
                "running": _l("running"), "done": _l("done"),
                "cancelled": _l("cancelled")}
OPEN_BATCH_STATES = ("listing", "listed", "approved", "running")
# What became of a listed record: pending (None) until the run reaches it.
OUTCOMES = {"purged": _l("purged"), "anonymised": _l("anonymised"), "held": _l("skipped: legal hold"),
            "not_due": _l("skipped: no longer due"), "missing": _l("skipped: already gone"),
            "cancelled": _l("batch cancelled")}


def parse_condition(text: str | None) -> dict[str, Any]:
    """A policy's filter: ``{"column": value}`` or ``{"column": [values]}``, nothing else.

    Deliberately tiny (equality and membership of plain values) so it can be checked and turned
    into SQL without evaluating anything an admin typed.
    """
    if not (text or "").strip():
        return {}
    try:
        value = json.loads(text or "")
    except ValueError:
        raise DomainError(_l('The condition must be JSON, e.g. {"severity": "major"}.'), "condition") from None
    if not isinstance(value, dict):
        raise DomainError(_l('The condition must be JSON, e.g. {"severity": "major"}.'), "condition")
    plain = (str, int, float, bool)
    for column, wanted in value.items():
        ok = isinstance(wanted, plain) or (isinstance(wanted, list) and wanted
                                           and all(isinstance(v, plain) for v in wanted))
        if not isinstance(column, str) or not column.isidentifier() or not ok:
            raise DomainError(_l("Condition: each column must name one value or a non-empty list of values."),
                              "condition")
    return value


class RetentionPolicy(Timestamped, db.Model):
    """How long records of one type (optionally narrowed by a condition) are kept, and what then.

    Expiry = anchor + period, computed in the site's time zone; a record is due once expiry <= now.
    ``keep_forever`` policies are never due and also shield their records from every other policy
    of the same table.
    """

    __tablename__ = "retention_policy"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str | None] = mapped_column(sa.String(64), unique=True)  # set by seed_policies()
    name: Mapped[str] = mapped_column(sa.String(120))
    record_type: Mapped[str] = mapped_column(sa.String(64), index=True)
    condition: Mapped[str | None] = mapped_column(sa.Text)
    amount: Mapped[int | None] = mapped_column(sa.Integer)
    unit: Mapped[str] = mapped_column(sa.String(8), default="years")
    anchor: Mapped[str] = mapped_column(sa.String(24), default="closed")
    anchor_field: Mapped[str] = mapped_column(sa.String(32), default="closed_at")
    require_closed: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    action: Mapped[str] = mapped_column(sa.String(16), default="purge")
    columns: Mapped[str | None] = mapped_column(sa.String(500))  # anonymise: further String columns
    keep_forever: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    note: Mapped[str | None] = mapped_column(sa.Text)

    def __str__(self) -> str:
        return self.name

    @validates("unit")
    def _check_unit(self, key: str, value: str) -> str:
        if value not in UNITS:
            raise DomainError(_l("Unit: days, months or years."), "unit")
        return value

    @validates("anchor")
    def _check_anchor(self, key: str, value: str) -> str:
        if value not in ANCHORS:
            raise DomainError(_l("Unknown anchor."), "anchor")
        return value

    @validates("anchor_field")
    def _check_anchor_field(self, key: str, value: str) -> str:
        if value not in ANCHOR_FIELDS:
            raise DomainError(_l("Counted from: closing time or creation time."), "anchor_field")
        return value

    @validates("action")
    def _check_action(self, key: str, value: str) -> str:
        if value not in ACTIONS:
            raise DomainError(_l("Action: purge or anonymise."), "action")
        return value

    @validates("condition")
    def _check_condition(self, key: str, value: str | None) -> str | None:
        parse_condition(value)
        return (value or "").strip() or None

    @validates("record_type")
    def _check_record_type(self, key: str, value: str) -> str:
        value = (value or "").strip()
        if not value.isidentifier() or len(value) > 64:
            raise DomainError(_l("Record type: the table name, e.g. key_custody."), "record_type")
        return value

    @property
    def filters(self) -> dict[str, Any]:
        return parse_condition(self.condition)

    @property
    def column_names(self) -> list[str]:
        return [c.strip() for c in (self.columns or "").split(",") if c.strip()]

    def check(self) -> None:
        """Cross-field rules every path shares: a period unless kept forever, positive amounts."""
        if not self.keep_forever and (self.amount is None or self.amount <= 0):
            raise DomainError(_l("The period must be a positive number (or tick “keep forever”)."), "amount")
        limit = MAX_AMOUNT.get(self.unit, 100)
        if self.amount is not None and not 0 < self.amount <= limit:
            raise DomainError(_l("The period must be between 1 and %(n)s %(unit)s.", n=limit,
                                 unit=UNITS.get(self.unit, self.unit)), "amount")
        if not (self.name or "").strip():
            raise DomainError(_l("Give the policy a name."), "name")
        if self.anchor == "closed" and self.anchor_field != "closed_at":
            raise DomainError(_l("“Closing of the record” counts from the closing time."), "anchor_field")
        if self.anchor == "created" and self.anchor_field != "created_at":
            raise DomainError(_l("“Creation of the record” counts from the creation time."), "anchor_field")


class LegalHold(Timestamped, db.Model):
    """A record that must not be purged (litigation, ARC-9 legal exposure), until released."""

    __tablename__ = "legal_hold"
    __table_args__ = (sa.Index("ix_legal_hold_record", "record_type", "record_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    record_type: Mapped[str] = mapped_column(sa.String(64))
    record_id: Mapped[int] = mapped_column(sa.BigInteger)
    reason: Mapped[str] = mapped_column(sa.Text)
    placed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    placed_by: Mapped[Staff | None] = relationship(foreign_keys=[placed_by_id])
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    released_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    released_by: Mapped[Staff | None] = relationship(foreign_keys=[released_by_id])
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @validates("reason")
    def _check_reason(self, key: str, value: str) -> str:
        value = (value or "").strip()
        if not value:
            raise DomainError(_l("A legal hold needs a reason."), "reason")
        return value


class RetentionBatch(Timestamped, db.Model):
    """One reviewed purge: the records listed as due under one policy, a manager's approval
    (password re-entered, ACC-5), then the run in short transactions."""

    __tablename__ = "retention_batch"
    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(sa.ForeignKey("retention_policy.id"), index=True)
    policy: Mapped[RetentionPolicy] = relationship()
    state: Mapped[str] = mapped_column(sa.String(16), default="listed", index=True)
    listed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    listed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    listed_by: Mapped[Staff | None] = relationship(foreign_keys=[listed_by_id])
    approved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    approved_by: Mapped[Staff | None] = relationship(foreign_keys=[approved_by_id])
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    listed_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    done_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    skipped_count: Mapped[int] = mapped_column(sa.Integer, default=0)

    def __str__(self) -> str:
        return f"#{self.id}"


class Tombstone(db.Model):
    """What was purged (or anonymised), when, under which policy and whose approval — ids and
    dates only, never personal data. Written at listing (outcome pending), completed by the run.
    """

    __tablename__ = "tombstone"
    __audit__ = False  # the run writes one audit event per transaction instead of one per row
    __table_args__ = (sa.UniqueConstraint("batch_id", "record_type", "record_id"),
                      sa.Index("ix_tombstone_record", "record_type", "record_id"),
                      # The run's next chunk (a batch's pending tombstones in record order) in
                      # O(chunk), however many of the batch are done; partial, so it empties as
                      # the run goes on.
                      sa.Index("ix_tombstone_pending", "batch_id", "record_id",
                               sqlite_where=sa.text("outcome IS NULL"), postgresql_where=sa.text("outcome IS NULL")))
    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.ForeignKey("retention_batch.id"), index=True)
    policy_id: Mapped[int] = mapped_column(sa.ForeignKey("retention_policy.id"))
    record_type: Mapped[str] = mapped_column(sa.String(64))
    record_id: Mapped[int] = mapped_column(sa.BigInteger)
    action: Mapped[str] = mapped_column(sa.String(16))
    anchor_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(sa.String(16))
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The batch's approver, written as the run (or a cancellation) completes the tombstone: one
    # UPDATE of a million rows at approval would hold SQLite's write lock for seconds.
    approved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
