"""Scheduled jobs' state shared by every process and host: who holds the in-process sweep's
lease, and when each job (sweep, reminders, checkpoint, backup) last ran, for ``/healthz``.

The lease is claimed by one conditional UPDATE (``… WHERE holder = me OR lease expired``), the
same claim-by-UPDATE the sweep uses for its clocks: of every worker and host that runs the timer,
exactly one sweeps at a time; when it dies its lease runs out and another takes over.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from models.base import UTCDateTime, db, utcnow

SWEEP = "sweep"


class JobRun(db.Model):
    """One row per job name: the lease of the process timing it, and its last run."""

    __tablename__ = "job_run"
    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(sa.String(128))  # host:pid holding the lease
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_ok: Mapped[bool | None] = mapped_column(sa.Boolean)


def me() -> str:
    """This process, as a lease holder: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


def _ensure(conn: sa.Connection, name: str) -> None:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(JobRun.__table__).values(name=name).on_conflict_do_nothing(index_elements=["name"]))


def claim_lease(engine: sa.Engine, name: str, seconds: float, holder: str | None = None) -> bool:
    """Take or renew ``name``'s lease for ``seconds``; False while another live holder has it."""
    holder, now, t = holder or me(), utcnow(), JobRun.__table__
    with engine.begin() as conn:
        _ensure(conn, name)
        taken = conn.execute(
            sa.update(t)
            .where(
                t.c.name == name,
                sa.or_(t.c.holder == holder, t.c.holder.is_(None), t.c.lease_until.is_(None), t.c.lease_until < now),
            )
            .values(holder=holder, lease_until=now + timedelta(seconds=seconds))
        )
        return taken.rowcount == 1


def release_lease(engine: sa.Engine, name: str, holder: str | None = None) -> None:
    t = JobRun.__table__
    with engine.begin() as conn:
        conn.execute(
            sa.update(t).where(t.c.name == name, t.c.holder == (holder or me())).values(holder=None, lease_until=None)
        )


def record_run(engine: sa.Engine, name: str, started: datetime, ok: bool, finished: datetime | None = None) -> None:
    """A run of ``name`` ended (from the timer or the CLI): what /healthz reports."""
    t = JobRun.__table__
    with engine.begin() as conn:
        _ensure(conn, name)
        conn.execute(
            sa.update(t)
            .where(t.c.name == name)
            .values(last_started_at=started, last_finished_at=finished or utcnow(), last_ok=ok)
        )


def last_run(conn: sa.Connection, name: str) -> tuple[datetime | None, bool | None]:
    t = JobRun.__table__
    row = conn.execute(sa.select(t.c.last_finished_at, t.c.last_ok).where(t.c.name == name)).first()
    return (row.last_finished_at, row.last_ok) if row else (None, None)
