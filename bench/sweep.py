"""Sweep benchmark: one sweep over a million open deadline clocks, and its longest write transaction.

    .venv/bin/python bench/sweep.py                          # 1M clocks, SQLite
    .venv/bin/python bench/sweep.py --clocks 100000 --escalations 200
    .venv/bin/python bench/sweep.py --database-url postgresql+psycopg://user@host/db --reset
    .venv/bin/python bench/sweep.py --purge 1000000          # then purge 1M expired records

As in bench/registry.py, a fresh SQLite file in a temporary directory is used unless
``--database-url`` names an empty database (``--reset`` drops and re-creates its tables). The
clocks go in with Core executemany. Most are open and not due; a share is due now: reminders,
overdue notices and escalations (the escalating ones belong to real key custody records, which
the sweep loads and moves through ``engine.fire``; the others name records the sweep never
loads). A further share is overdue and already handled, as in a database that has been swept
every minute. The calendar is marked as already seen, so the timed sweep does no recomputation;
``--recompute`` times that separately (an override added, every open working-day clock moved).

A write transaction is timed from its first INSERT/UPDATE/DELETE (or SELECT ... FOR UPDATE) to
the end of its COMMIT or ROLLBACK: on SQLite that is how long the single write lock is held.
The figures are for comparison between runs on one machine; nothing here asserts on them.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from flask import Flask  # noqa: E402

from bench.registry import bulk, fill, make_app, p95, prepare_schema  # noqa: E402
from bench.workflow import table  # noqa: E402
from models import KeyCustody, Notification, db  # noqa: E402
from models.base import utcnow  # noqa: E402
from models.calendar import CalendarOverride  # noqa: E402
from models.deadline import DeadlineCalendarMark, DeadlineClock  # noqa: E402
from models.staff import Department  # noqa: E402
from security import accounts  # noqa: E402
from seed.demo import ensure_departments  # noqa: E402
from workflow import audit, deadlines, sweep  # noqa: E402
from workflow.deadlines import Deadline  # noqa: E402
from workflow.engine import T, Workflow  # noqa: E402

FRONT = {"manager", "cs_supervisor", "cs_clerk"}
RULE: dict[str, Deadline] = {}  # the bound workflow's deadlines by name


def bench_workflow() -> Workflow:
    """Key custody with three time limits (CMP-SLA-2, VIS-1, REN-2 shapes); bound for this run."""
    wf = Workflow("Bench keys", {"held": "Held", "major": "Major", "returned": "Returned"}, "held", [
        T("return_keys", ["held", "major"], "returned", FRONT),
        T("escalate", "held", "major", system=True),
    ], deadlines=[
        Deadline("handle", "Handle", amount=2, unit="hours", met_by={"returned"}, escalate="escalate"),
        Deadline("answer", "Answer", amount=2, unit="days", met_by={"returned"}, remind_before=1),
        Deadline("review", "Review", amount=3, unit="working_days", met_by={"returned"}),
    ])
    wf.__set_name__(KeyCustody, "workflow")
    KeyCustody.workflow = wf  # type: ignore[assignment]
    return wf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clocks", type=int, default=1_000_000, help="open clocks (default 1000000)")
    parser.add_argument("--purge", type=int, default=0,
                        help="then purge this many expired records under retention (bench/purge.py), e.g. 1000000")
    parser.add_argument("--escalations", type=int, default=1_000, help="due now, escalating (default 1000)")
    parser.add_argument("--reminders", type=int, default=2_000, help="reminders due now (default 2000)")
    parser.add_argument("--notices", type=int, default=2_000, help="overdue notices due now (default 2000)")
    parser.add_argument("--handled", type=float, default=0.05,
                        help="share of clocks overdue and already handled (default 0.05)")
    parser.add_argument("--working-share", type=float, default=0.2, help="share of working-day clocks (default 0.2)")
    parser.add_argument("--batch", type=int, default=sweep.BATCH, help=f"sweep batch (default {sweep.BATCH})")
    parser.add_argument("--recompute", action="store_true", help="also time a calendar change's recomputation")
    parser.add_argument("--database-url", help="an empty database instead of a temporary SQLite file")
    parser.add_argument("--reset", action="store_true",
                        help="drop and re-create the tables of --database-url (destroys its data)")
    parser.add_argument("--seed", type=int, default=20261123)
    args = parser.parse_args(argv)
    due = 3 * args.escalations + args.reminders + args.notices
    if args.clocks < 1 or min(args.escalations, args.reminders, args.notices) < 0 or args.batch < 1:
        parser.error("--clocks and --batch must be positive, the due counts >= 0")
    if due + int(args.clocks * args.handled) > args.clocks:
        parser.error("more due and handled clocks than clocks")
    return args


# --- setup ---------------------------------------------------------------------------------
def make_staff() -> tuple[int, int]:
    ensure_departments()
    clerk = accounts.create_staff("benchclerk", "基准测试 客服", "Bench#Clerk-Desk-2026", {"cs_clerk"},
                                  department_key="cs")
    head = accounts.create_staff("benchhead", "基准测试 主任", "Bench#Head-Desk-2026", {"cs_clerk"},
                                 department_key="cs")
    head.department_head = True
    db.session.commit()
    return clerk.id, db.session.scalar(sa.select(Department.id).where(Department.key == "cs"))


def fill_keys(n: int, clerk_id: int, now: datetime) -> None:
    """The records of the escalating clocks: held, registered a little over two hours ago."""
    bulk(KeyCustody, ({
        "id": i, "unit_id": i, "resident_id": i, "tag_no": f"K-{i:06d}", "description": "入户门钥匙",
        "key_count": 2, "state": "held", "created_by_id": clerk_id, "created_at": now - timedelta(hours=3),
        "due_at": now - timedelta(minutes=30),
    } for i in range(1, n + 1)))


def clocks(args: argparse.Namespace, now: datetime, clerk_id: int, dept_id: int) -> Iterator[dict[str, Any]]:
    """Every escalating record has its three clocks (the other two not due), as the hook writes them."""
    rng = random.Random(args.seed)
    handled = int(args.clocks * args.handled)
    plan = [("remind", args.reminders), ("notice", args.notices), ("handled", handled)]
    kinds = [k for k, n in plan for _ in range(n)]
    kinds += ["waiting"] * (args.clocks - 3 * args.escalations - len(kinds))
    ids = iter(range(1, args.clocks + 1))
    base = {"record_type": "key_custody", "is_open": True, "responsible_id": clerk_id, "department_id": dept_id,
            "met_at": None, "cancelled_at": None, "escalated_at": None, "reminded_at": None,
            "overdue_notified_at": None, "breached_at": None, "site_id": None, "computed_at": now - timedelta(days=1)}

    def waiting(record_id: int, start: datetime | None = None) -> dict[str, Any]:
        if start is not None or rng.random() < args.working_share:
            start = start or now - timedelta(hours=rng.randint(0, 48))
            due = deadlines.schedule(RULE["review"], start, 3, None).due_at
            return {**base, "id": next(ids), "record_id": record_id, "name": "review", "unit": "working_days",
                    "amount": 3, "start_at": start, "due_at": due, "remind_at": None, "next_action_at": due}
        due = now + timedelta(minutes=rng.randint(60, 60 * 24 * 30))
        remind = due - timedelta(days=1)
        reminded = remind <= now
        return {**base, "id": next(ids), "record_id": record_id, "name": "answer", "unit": "days", "amount": 2,
                "start_at": due - timedelta(days=2), "due_at": due, "remind_at": remind,
                "reminded_at": remind if reminded else None, "next_action_at": due if reminded else remind}

    for record_id in range(1, args.escalations + 1):
        due = now - timedelta(minutes=rng.randint(1, 50))
        start = due - timedelta(hours=2)
        yield {**base, "id": next(ids), "record_id": record_id, "name": "handle", "unit": "hours", "amount": 2,
               "start_at": start, "due_at": due, "remind_at": None, "next_action_at": due}
        yield {**waiting(record_id), "name": "answer", "unit": "days", "amount": 2, "start_at": start,
               "due_at": start + timedelta(days=2), "remind_at": start + timedelta(days=1), "reminded_at": None,
               "next_action_at": start + timedelta(days=1)}
        yield waiting(record_id, start)
    record_id = args.escalations  # the other clocks name records the sweep never loads
    for kind in kinds:
        record_id += 1
        if kind == "remind":
            due = now + timedelta(hours=rng.randint(1, 23))
            remind = due - timedelta(days=1)
            yield {**base, "id": next(ids), "record_id": record_id, "name": "answer", "unit": "days", "amount": 2,
                   "start_at": due - timedelta(days=2), "due_at": due, "remind_at": remind, "next_action_at": remind}
        elif kind == "notice":
            due = now - timedelta(minutes=rng.randint(1, 50))
            yield {**base, "id": next(ids), "record_id": record_id, "name": "answer", "unit": "days", "amount": 2,
                   "start_at": due - timedelta(days=2), "due_at": due, "remind_at": due - timedelta(days=1),
                   "reminded_at": due - timedelta(days=1), "next_action_at": due}
        elif kind == "handled":
            due = now - timedelta(hours=rng.randint(1, 24 * 30))
            yield {**base, "id": next(ids), "record_id": record_id, "name": "answer", "unit": "days", "amount": 2,
                   "start_at": due - timedelta(days=2), "due_at": due, "remind_at": due - timedelta(days=1),
                   "reminded_at": due - timedelta(days=1), "overdue_notified_at": due, "breached_at": due,
                   "next_action_at": None}
        else:
            yield waiting(record_id)


def fill_clocks(args: argparse.Namespace, now: datetime, clerk_id: int, dept_id: int) -> float:
    started = time.perf_counter()
    bulk(DeadlineClock, clocks(args, now, clerk_id, dept_id))
    db.session.commit()
    with db.engine.begin() as conn:
        audit.ensure_head(conn)
        if conn.dialect.name == "postgresql":
            for name in ("key_custody", "deadline_clock"):
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                     f"(SELECT max(id) FROM {name}))"))
            conn.execute(sa.text("ANALYZE"))
    # The calendar as the previous sweeps saw it: no recomputation inside the timed sweep.
    db.session.add(DeadlineCalendarMark(id=1, version=deadlines.calendar_version(), checked_at=now))
    db.session.commit()
    return time.perf_counter() - started


# --- timing write transactions -----------------------------------------------------------------
class WriteTimer:
    """Per DBAPI connection: first write statement → end of COMMIT/ROLLBACK."""

    WRITES = ("INSERT", "UPDATE", "DELETE")

    def __init__(self, engine: sa.Engine) -> None:
        self.open: dict[int, float] = {}
        self.durations: list[float] = []
        self.engine = engine
        sa.event.listen(engine, "before_cursor_execute", self.before)
        dialect = engine.dialect
        self._commit, self._rollback = dialect.do_commit, dialect.do_rollback
        dialect.do_commit = self._ended(self._commit)  # type: ignore[method-assign]
        dialect.do_rollback = self._ended(self._rollback)  # type: ignore[method-assign]

    def before(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        key = id(conn.connection)  # the pooled connection: what do_commit is given
        head = statement.lstrip()[:6].upper()
        if key not in self.open and (head in self.WRITES or "FOR UPDATE" in statement.upper()):
            self.open[key] = time.perf_counter()

    def _ended(self, original: Any) -> Any:
        def end(dbapi_connection: Any) -> None:
            original(dbapi_connection)
            started = self.open.pop(id(dbapi_connection), None)
            if started is not None:
                self.durations.append(time.perf_counter() - started)
        return end

    def reset(self) -> None:
        self.open.clear()
        self.durations.clear()

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self.before)
        self.engine.dialect.do_commit = self._commit  # type: ignore[method-assign]
        self.engine.dialect.do_rollback = self._rollback  # type: ignore[method-assign]


def timed_sweep(app: Flask, timer: WriteTimer, now: datetime, batch: int) -> tuple[sweep.SweepReport, list[float]]:
    with app.app_context():
        timer.reset()
        report = sweep.sweep(now, batch=batch)
        durations = list(timer.durations)
        db.session.remove()
    return report, durations


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pm-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        app = make_app(url)
        bench_workflow()
        RULE.update({d.name: d for d in KeyCustody.workflow.deadlines})
        now = utcnow()
        setup: list[list[Any]] = []
        with app.app_context():
            print(f"database: {db.engine.url.render_as_string(hide_password=True)} ({db.engine.dialect.name})")
            prepare_schema(args.reset)
            clerk_id, dept_id = make_staff()
            n = max(args.escalations, 1)
            filled = fill(n, n, args.seed)
            fill_keys(args.escalations, clerk_id, now)
            db.session.commit()
            setup += [[name, filled.counts.get(name, ""), filled.times[name]] for name in filled.times]
            print(f"filling {args.clocks:,} deadline clocks ...", flush=True)
            seconds = fill_clocks(args, now, clerk_id, dept_id)
            setup.append(["deadline_clock", args.clocks, seconds])
            db.session.remove()

        with app.app_context():
            timer = WriteTimer(db.engine)
        print("sweeping ...", flush=True)
        started = time.perf_counter()
        report, writes = timed_sweep(app, timer, now, args.batch)
        wall = time.perf_counter() - started
        again, idle_writes = timed_sweep(app, timer, now + timedelta(seconds=1), args.batch)
        rows = [["sweep (work due)", wall, len(writes), max(writes, default=0) * 1000,
                 p95(writes) * 1000 if writes else 0.0, statistics.median(writes) * 1000 if writes else 0.0],
                ["sweep again (nothing due)", again.seconds, len(idle_writes), max(idle_writes, default=0) * 1000,
                 "-", "-"]]
        if args.recompute:
            with app.app_context():
                db.session.add(CalendarOverride(day=date.today() + timedelta(days=1), kind="off", reason="基准测试"))
                db.session.commit()
                db.session.remove()
            recompute, recompute_writes = timed_sweep(app, timer, now + timedelta(seconds=2), args.batch)
            rows.append([f"sweep after a calendar change ({recompute.recomputed:,} moved)", recompute.seconds,
                         len(recompute_writes), max(recompute_writes, default=0) * 1000,
                         p95(recompute_writes) * 1000 if recompute_writes else 0.0,
                         statistics.median(recompute_writes) * 1000 if recompute_writes else 0.0])
        timer.close()
        with app.app_context():
            notes = db.session.scalar(sa.select(sa.func.count()).select_from(Notification))
            moved = db.session.scalar(sa.select(sa.func.count()).select_from(KeyCustody)
                                      .where(KeyCustody.state == "major"))
            db.session.remove()
            db.engine.dispose()

    table("setup", ["table", "rows", "s"], setup)
    table(f"sweep over {args.clocks:,} open clocks (batch {args.batch})",
          ["run", "s", "write txns", "longest write ms", "p95 ms", "median ms"], rows)
    print(f"\n  first run: {report}")
    print(f"  second run: {again}")
    print(f"  records escalated: {moved:,}; notices in the database: {notes:,}")
    if report.errors:
        print(f"  errors: {report.errors[:5]}")
    longest = max(writes, default=0)
    print(f"\n  targets: sweep < 10 s: {'met' if wall < 10 else 'MISSED'} ({wall:.2f} s); "
          f"no write transaction over 1 s: {'met' if longest < 1 else 'MISSED'} ({longest * 1000:.0f} ms)")
    if args.purge:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import purge  # bench/purge.py

        print(f"\npurge of {args.purge:,} expired records (SQLite)")
        purge.run(args.purge)


if __name__ == "__main__":
    main()
