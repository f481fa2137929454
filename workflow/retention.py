"""Retention policies evaluated (REGULATIONS §10): when a record expires, which records are due,
legal holds, the shipped policies, and ``flask retention``.

Expiry = anchor + period, in the site's time zone (``TIMEZONE``). Anchors: the record's closing,
its creation, the start of the year after it (HLP-6), the end of its month (DTY-3). Adding
months or years never shortens a period: a day the target month lacks (29 Feb + 1 year) rolls to
the start of the following month. Because expiry never decreases as the anchor column grows,
"due" is one comparison, ``column <= cutoff``, with the cutoff found once per run by bisection —
so the same exact rule is a SQL query for the dry run, the listing and the re-check in each
purge transaction. (Exact for zones without daylight saving, such as Asia/Shanghai; elsewhere a
boundary may move by the clock change's hour.)

Never due: records of a table that does not exist yet, records still open (``closed_at`` empty)
when the policy says so, records matched by a "keep forever" policy of the same table, records
under an active legal hold (or with a child under one), records already anonymised, and records
already listed in another open batch.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask_babel import lazy_gettext as _l

from models.base import db, utcnow
from models.retention import OPEN_BATCH_STATES, LegalHold, RetentionBatch, RetentionPolicy, Tombstone
from models.staff import Staff
from models.validators import DomainError

MANAGERS = frozenset({"manager"})
LOCK_KEY = 0x5245_5445  # PostgreSQL advisory lock shared by hold placement and purge transactions
UNIT_DAYS_UPPER = {"days": 1, "months": 32, "years": 367}

# REGULATIONS §10, plus key custody (the shipped example): returned or lost keys are kept one year
# from the closing — long enough to answer any question about a hand-back, short enough not to
# keep residents' names and key holders for no reason. Tables that do not exist yet are named as
# their regulation's issue will call them; an admin can correct a name on the policies screen.
SHIPPED: list[dict[str, Any]] = [
    {"code": "hlp6_help_request", "name": "HLP-6 help request / repair register", "record_type": "help_request",
     "amount": 2, "unit": "years", "anchor": "start_of_next_year", "anchor_field": "created_at"},
    {"code": "dty3_duty_log", "name": "DTY-3 duty log", "record_type": "duty_log",
     "amount": 3, "unit": "years", "anchor": "end_of_month", "anchor_field": "created_at", "require_closed": False},
    {"code": "vio11_general", "name": "VIO-11 violation, general", "record_type": "violation",
     "condition": '{"severity": "general"}', "amount": 1, "unit": "years", "anchor": "closed"},
    {"code": "vio11_major", "name": "VIO-11 violation, major", "record_type": "violation",
     "condition": '{"severity": "major"}', "amount": 5, "unit": "years", "anchor": "closed"},
    {"code": "cmp8_complaint", "name": "CMP-8 complaint forms", "record_type": "complaint", "keep_forever": True},
    {"code": "arc4_archive", "name": "ARC-4 resident archive", "record_type": "archive", "keep_forever": True},
    {"code": "reg2_resident", "name": "REG-2 owner data (residents)", "record_type": "resident",
     "keep_forever": True},
    {"code": "reg2_occupancy", "name": "REG-2 owner data (occupancies)", "record_type": "occupancy",
     "keep_forever": True},
    {"code": "mov_move_out", "name": "ARC-4 move-out archive", "record_type": "move_out", "keep_forever": True},
    {"code": "key_custody_closed", "name": "Key custody, returned or lost", "record_type": "key_custody",
     "condition": '{"state": ["returned", "lost"]}', "amount": 1, "unit": "years", "anchor": "closed",
     "note": "Not in §10: a default. Keys handed back or confirmed lost are kept one year from the closing."},
]


# --- time ------------------------------------------------------------------------------------------
def zone() -> ZoneInfo:
    return ZoneInfo(current_app.config.get("TIMEZONE") or "Asia/Shanghai")


def add_period(local: datetime, amount: int, unit: str) -> datetime:
    """Wall-clock ``local`` plus the period; a missing day rolls to the next month's first instant."""
    if unit == "days":
        return local + timedelta(days=amount)
    years, month0 = divmod(local.month - 1 + amount * (12 if unit == "years" else 1), 12)
    year, month = local.year + years, month0 + 1
    last = calendar.monthrange(year, month)[1]
    if local.day > last:
        return datetime(year, month, last) + timedelta(days=1)
    return local.replace(year=year, month=month)


def _anchor_local(policy: RetentionPolicy, moment: datetime) -> datetime:
    local = moment.astimezone(zone()).replace(tzinfo=None)
    if policy.anchor == "start_of_next_year":
        return datetime(local.year + 1, 1, 1)
    if policy.anchor == "end_of_month":  # the month ends where the next one begins
        return datetime(local.year + local.month // 12, local.month % 12 + 1, 1)
    return local


def anchor_of(policy: RetentionPolicy, moment: datetime) -> datetime:
    return _anchor_local(policy, moment).replace(tzinfo=zone()).astimezone(UTC)


def expiry_of(policy: RetentionPolicy, moment: datetime) -> datetime:
    """When a record whose anchor column holds ``moment`` stops being kept."""
    local = add_period(_anchor_local(policy, moment), policy.amount or 0, policy.unit)
    return local.replace(tzinfo=zone()).astimezone(UTC)


def cutoff(policy: RetentionPolicy, now: datetime) -> datetime:
    """The latest anchor-column value already expired at ``now``, to the microsecond.

    Expiry is non-decreasing in the column's value, so the due records are exactly those at or
    below this point; bisection finds it without trusting any closed form of month arithmetic.
    """
    span = timedelta(days=(policy.amount or 0) * UNIT_DAYS_UPPER[policy.unit] + 800)
    low, high = now - span, now  # expiry(low) <= now < expiry(now) for any positive period
    if expiry_of(policy, low) > now or expiry_of(policy, high) <= now:
        raise ValueError(f"policy {policy.id}: period out of range")
    lo, hi = 0, (high - low) // timedelta(microseconds=1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if expiry_of(policy, low + timedelta(microseconds=mid)) <= now:
            lo = mid
        else:
            hi = mid
    return low + timedelta(microseconds=lo)


# --- tables and conditions -------------------------------------------------------------------------
def table_of(record_type: str) -> sa.Table | None:
    """The table a record type names, if both the model and the database table exist."""
    table = db.metadata.tables.get(record_type)
    if table is None or "id" not in table.c or not sa.inspect(db.session.connection()).has_table(record_type):
        return None
    return table


def children_of(table: sa.Table) -> list[tuple[sa.Table, sa.Column, sa.Column, str | None]]:
    """Tables whose rows belong to a row of ``table`` (a foreign key to it): they go with it.
    Self-references (e.g. a duplicate-of link) are not ownership and are left out."""
    found = []
    for other in db.metadata.sorted_tables:
        if other is table or "id" not in other.c:
            continue
        for fk in other.foreign_keys:
            if fk.column.table is table:
                found.append((other, fk.parent, fk.column, (fk.ondelete or "").upper() or None))
    return found


def condition_clauses(table: sa.Table, policy: RetentionPolicy) -> list[Any] | None:
    """The policy's filter as SQL (equality / IN only); None if it names a column the table lacks."""
    clauses = []
    for name, wanted in policy.filters.items():
        if name not in table.c:
            return None
        column = table.c[name]
        clauses.append(column.in_(wanted) if isinstance(wanted, list) else column == wanted)
    return clauses


def hold_exists(record_type: str, id_column: Any) -> Any:
    h = LegalHold.__table__
    return sa.exists().where(h.c.record_type == record_type, h.c.record_id == id_column, h.c.released_at.is_(None))


def held(table: sa.Table, id_column: Any, depth: int = 0) -> Any:
    """A hold on the record or on any row that would be purged with it."""
    clause = hold_exists(table.name, id_column)
    if depth < 4:
        for child, fk_column, parent_column, _ondelete in children_of(table):
            link = fk_column == (id_column if parent_column.name == "id" else table.c[parent_column.name])
            clause = sa.or_(clause, sa.exists().where(link, held(child, child.c.id, depth + 1)))
    return clause


# --- what is due -----------------------------------------------------------------------------------
@dataclass
class Due:
    """The records of one policy due at ``now``: a query of ids, or none and the reason why."""

    policy: RetentionPolicy
    table: sa.Table | None = None
    query: sa.Select | None = None
    note: str | None = None
    cutoff: datetime | None = None
    anchor_column: sa.Column | None = field(default=None, repr=False)

    def count(self) -> int:
        if self.query is None:
            return 0
        return db.session.scalar(sa.select(sa.func.count()).select_from(self.query.subquery())) or 0

    def ids(self, limit: int | None = None) -> list[int]:
        if self.query is None:
            return []
        return list(db.session.scalars(self.query.limit(limit) if limit else self.query))


def due(policy: RetentionPolicy, now: datetime | None = None, *, ignore_batch: int | None = None) -> Due:
    """Ids of ``policy``'s records whose keeping period has run out at ``now`` and that may go.

    ``ignore_batch``: the batch being run, whose own pending listing must not exclude its records.
    """
    now = now or utcnow()
    result = Due(policy)
    if policy.keep_forever:
        result.note = str(_l("kept permanently"))
        return result
    if not policy.active:
        result.note = str(_l("policy inactive"))
        return result
    table = table_of(policy.record_type)
    if table is None:
        result.note = str(_l("table %(t)s does not exist yet", t=policy.record_type))
        return result
    if policy.anchor_field not in table.c:
        result.note = str(_l("table %(t)s has no column %(c)s", t=table.name, c=policy.anchor_field))
        return result
    conditions = condition_clauses(table, policy)
    if conditions is None:
        result.note = str(_l("the condition names a column table %(t)s does not have", t=table.name))
        return result
    column = table.c[policy.anchor_field]
    result.table, result.anchor_column, result.cutoff = table, column, cutoff(policy, now)
    query = sa.select(table.c.id).where(column.is_not(None), column <= result.cutoff, *conditions)
    if policy.require_closed and "closed_at" in table.c:
        query = query.where(table.c.closed_at.is_not(None))
    for keeper in db.session.scalars(sa.select(RetentionPolicy).where(
            RetentionPolicy.record_type == policy.record_type, RetentionPolicy.keep_forever.is_(True),
            RetentionPolicy.active.is_(True))):
        kept = condition_clauses(table, keeper)
        query = query.where(sa.false() if not kept else sa.not_(sa.and_(*kept)))  # unknown column: keep all
    # Already anonymised, or listed in an open batch. (A purged record is gone; should its id be
    # reused by a new record, that record is a different one and must not be excluded.)
    # A pending tombstone counts only while its batch is open: a cancelled batch's tombstones are
    # completed in short transactions after the batch itself, and must not hold records meanwhile.
    t, b = Tombstone.__table__, RetentionBatch.__table__
    open_batches = sa.select(b.c.id).where(b.c.state.in_(OPEN_BATCH_STATES))
    if ignore_batch is not None:
        open_batches = open_batches.where(b.c.id != ignore_batch)
    pending = sa.and_(t.c.outcome.is_(None), t.c.batch_id.in_(open_batches))
    query = query.where(~held(table, table.c.id), ~sa.exists().where(
        t.c.record_type == table.name, t.c.record_id == table.c.id, sa.or_(t.c.outcome == "anonymised", pending)))
    result.query = query.order_by(table.c.id)
    return result


# --- legal holds -----------------------------------------------------------------------------------
def serialise(session: sa.orm.Session) -> None:
    """Hold placement and each purge transaction exclude each other, so a hold committed before a
    purge transaction starts is always seen by its re-check. PostgreSQL: an advisory lock; SQLite
    serialises writers already (the purge transaction writes before it reads)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})


def _require_manager(user: Staff | None) -> Staff:
    if user is None or not user.is_active or not user.roles & MANAGERS:
        raise DomainError(_l("Only a manager places or releases legal holds."))
    return user


def place_hold(record_type: str, record_id: int, reason: str, user: Staff | None) -> LegalHold:
    """Put one record under legal hold (ARC-9): never listed as due, never purged, until released."""
    _require_manager(user)
    if not (reason or "").strip():
        raise DomainError(_l("A legal hold needs a reason."), "reason")
    table = table_of((record_type or "").strip())
    if table is None:
        raise DomainError(_l("Unknown record type."), "record_type")
    serialise(db.session())
    hold = LegalHold(record_type=table.name, record_id=record_id, reason=reason, placed_by_id=user.id,
                     placed_at=utcnow())
    db.session.add(hold)
    db.session.flush()  # holding the write lock, the record cannot be purged between check and commit
    if db.session.scalar(sa.select(table.c.id).where(table.c.id == record_id)) is None:
        db.session.rollback()
        raise DomainError(_l("No %(t)s record has id %(id)s.", t=table.name, id=record_id), "record_id")
    return hold


def release_hold(hold: LegalHold, user: Staff | None) -> None:
    _require_manager(user)
    if hold.released_at is not None:
        raise DomainError(_l("This hold was already released."))
    hold.released_at, hold.released_by_id = utcnow(), user.id


# --- shipped policies and the CLI ------------------------------------------------------------------
def seed_policies() -> int:
    """Create the §10 policies that are missing (by code); never overwrites an admin's edits."""
    have = set(db.session.scalars(sa.select(RetentionPolicy.code).where(RetentionPolicy.code.is_not(None))))
    added = 0
    for spec in SHIPPED:
        if spec["code"] in have:
            continue
        values = {"anchor": "closed", "anchor_field": "closed_at", "unit": "years", "action": "purge",
                  "require_closed": True, "keep_forever": False, "active": True} | spec
        if values["anchor"] == "created":
            values["anchor_field"] = "created_at"
        policy = RetentionPolicy(**values)
        policy.check()
        db.session.add(policy)
        added += 1
    db.session.flush()
    return added


@click.command("retention")
@click.option("--dry-run", is_flag=True, help="List per policy what is due; write nothing.")
@click.option("--run", "batch_id", type=int, help="Run an approved batch to the end.")
@click.option("--seed", is_flag=True, help="Add the shipped §10 policies that are missing.")
@click.option("--show", type=int, default=10, help="How many ids to show per policy.")
def retention_command(dry_run: bool, batch_id: int | None, seed: bool, show: int) -> None:
    """Retention (REGULATIONS §10): what is due, and running batches a manager approved."""
    from workflow import audit
    from workflow.retention_batch import run_batch

    if seed:
        audit.set_actor(db.session(), None, "retention")
        click.echo(f"policies added: {seed_policies()}")
        db.session.commit()
    if dry_run:
        now = utcnow()
        for policy in db.session.scalars(sa.select(RetentionPolicy).order_by(RetentionPolicy.id)):
            found = due(policy, now)
            label = f"[{policy.id}] {policy.name} ({policy.record_type})"
            if found.query is None:
                click.echo(f"{label}: {found.note}")
                continue
            ids = found.ids(show)
            more = ", …" if found.count() > len(ids) else ""
            click.echo(f"{label}: {found.count()} due" + (f"; first: {', '.join(map(str, ids))}{more}" if ids else ""))
        db.session.rollback()
    if batch_id is not None:
        audit.set_actor(db.session(), None, "retention")
        try:
            batch = run_batch(batch_id)
        except DomainError as exc:
            db.session.rollback()
            raise click.ClickException(str(exc.message)) from None
        click.echo(f"batch {batch.id}: {batch.state}; done {batch.done_count}, skipped {batch.skipped_count}")
    if not (seed or dry_run or batch_id is not None):
        raise click.UsageError("give --dry-run, --run BATCH_ID or --seed")


def init_app(app: Flask) -> None:
    app.cli.add_command(retention_command)
