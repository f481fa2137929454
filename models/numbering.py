"""Record numbers (TS complaints, XTD coordination sheets, FX release slips) from a counter row
per prefix, so that concurrent creates all get a number instead of racing for the same one.

The prefix carries the period (``TS202612-``, ``XTD-2026-``), so each month or year has its own
row. The row is incremented by one atomic ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` in the
caller's transaction: PostgreSQL holds the row lock until that transaction ends, SQLite
serialises writers on its database lock (WAL, busy timeout: models/base.py). A rolled-back
create rolls its increment back too, so numbers stay gapless in practice; they are unique and
ordered by the time each writer reached the counter.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from models.base import db


class NumberCounter(db.Model):
    """The last serial handed out under one prefix (kind + period)."""

    __tablename__ = "number_counter"
    prefix: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    last: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)


def _highest_serial(executor: Any, column: sa.Column, prefix: str) -> int:
    """The highest serial stored under ``prefix``, compared as a number: as text "…-9999" sorts
    above "…-10000", so a text MAX hands out a number already taken once a period passes 9,999.
    Longer serials are larger (they are zero-padded), so the order is length, then text. The
    prefix is a range on the column's unique index, not a LIKE, which SQLite answers by scanning
    the table. A stored number with a non-numeric tail (typed by hand) is skipped."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    top = executor.execute(
        sa.select(column)
        .where(column >= prefix, column < upper)
        .order_by(sa.func.length(column).desc(), column.desc())
        .limit(20)
    ).scalars()
    for number in top:
        tail = number[len(prefix) :]
        if tail.isdigit():
            return int(tail)
    return 0


def next_number(executor: Any, column: sa.Column, prefix: str, width: int) -> str:
    """The next record number ``<prefix><serial>``, unique under concurrent writers.

    The counter never goes below the highest number already stored under the prefix, so rows
    numbered before the counter existed, or imported with their numbers, are never repeated.
    ``executor`` is the caller's session or connection (its transaction holds the increment)."""
    floor = _highest_serial(executor, column, prefix)
    dialect = (executor.get_bind() if hasattr(executor, "get_bind") else executor).dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = NumberCounter.__table__
    statement = insert(table).values(prefix=prefix, last=floor + 1)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.prefix],
        set_={"last": sa.case((table.c.last >= floor, table.c.last), else_=sa.literal(floor)) + 1},
    ).returning(table.c.last)
    serial = executor.execute(statement).scalar_one()
    return f"{prefix}{serial:0{width}d}"
