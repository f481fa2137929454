"""Purge benchmark: list, approve and purge N expired key-custody records (one KeyUse child and
two audit rows each) on SQLite, then verify the audit chain.

    .venv/bin/python bench/purge.py                    # 1M records
    .venv/bin/python bench/purge.py --records 100000
    .venv/bin/python bench/purge.py --chunk 1000       # 1000 records a purge transaction
    .venv/bin/python bench/sweep.py --purge 1000000    # the same, after the sweep benchmark

Prints the time of each phase (listing, approval, purge) and, over all three, every write
transaction from its first INSERT/UPDATE/DELETE to the end of its COMMIT (how long SQLite's
single write lock is held): median, p95 and the longest, with the phase it ran in; for the purge
also the first and the last tenth of the run, to show whether a transaction's cost grows as the
run goes on. Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app  # noqa: E402
from models import AuditEntry, KeyCustody, KeyUse, db  # noqa: E402
from models.retention import RetentionPolicy, Tombstone  # noqa: E402
from security import accounts  # noqa: E402
from seed.demo import ensure_departments  # noqa: E402
from tests.helpers import make_occupancy, make_resident, make_unit, valid_id  # noqa: E402
from workflow import audit, retention_batch  # noqa: E402

PASSWORD = "Correct-Horse-42"
STEP = 10_000


def fill(records: int, unit_id: int, resident_id: int) -> float:
    closed_at = datetime(2020, 3, 1, tzinfo=UTC)
    started = time.perf_counter()
    with db.engine.begin() as conn:
        for start in range(0, records, STEP):
            ids = range(start + 1, min(records, start + STEP) + 1)
            conn.execute(sa.insert(KeyCustody), [{
                "id": i, "unit_id": unit_id, "resident_id": resident_id, "tag_no": f"K{i}", "description": "入户门钥匙",
                "key_count": 1, "state": "returned", "closed_at": closed_at, "returned_to": "张三",
                "resident_confirmation": "张三"} for i in ids])
            conn.execute(sa.insert(KeyUse), [{"id": i, "custody_id": i, "holder": "王师傅", "purpose": "维修",
                                              "out_at": closed_at, "in_at": closed_at} for i in ids])
            parent = json.dumps({"returned_to": [None, "张三"]}, ensure_ascii=False)
            child = json.dumps({"holder": [None, "王师傅"]}, ensure_ascii=False)
            rows = []
            for i in ids:
                rows.append({"action": "create", "record_type": "key_custody", "record_id": i, "transition": None,
                             "comment": None, "changes": parent})
                rows.append({"action": "create", "record_type": "key_use", "record_id": i, "transition": None,
                             "comment": "维修", "changes": child})
            audit.append(conn, rows, None, "bench", None)
    return time.perf_counter() - started


class WriteTimer:
    """Every write transaction on the engine, from its first INSERT/UPDATE/DELETE to the end of
    its COMMIT or ROLLBACK (the DBAPI call returning, so an automatic WAL checkpoint run by the
    commit counts too): on SQLite that is at least how long the single write lock is held.
    Each is tagged with the phase it ran in and the statement that opened it."""

    WRITES = ("INSERT", "UPDATE", "DELETE")

    def __init__(self, engine: sa.Engine) -> None:
        self.engine, self.phase = engine, "setup"
        self.open: dict[int, tuple[float, str]] = {}
        self.spans: list[tuple[float, str, str]] = []  # (seconds, phase, opening statement)
        self.commits: list[float] = []  # of which in the COMMIT itself (WAL write, any checkpoint)
        sa.event.listen(engine, "before_cursor_execute", self._before)
        dialect = engine.dialect
        self._commit, self._rollback = dialect.do_commit, dialect.do_rollback
        dialect.do_commit = self._ended(self._commit)  # type: ignore[method-assign]
        dialect.do_rollback = self._ended(self._rollback)  # type: ignore[method-assign]

    def _before(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        key = id(conn.connection)  # the pooled connection: what do_commit is given
        if key not in self.open and statement.lstrip()[:6].upper() in self.WRITES:
            self.open[key] = (time.perf_counter(), " ".join(statement.split())[:90])

    def _ended(self, original: Any) -> Any:
        def end(connection: Any) -> None:
            called = time.perf_counter()
            try:
                original(connection)
            finally:
                ended = time.perf_counter()
                opened = self.open.pop(id(connection), None)
                if opened is not None:
                    self.spans.append((ended - opened[0], self.phase, opened[1]))
                    self.commits.append(ended - called)
        return end

    def of(self, phase: str) -> list[float]:
        return [s for s, p, _ in self.spans if p == phase]

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._before)
        self.engine.dialect.do_commit = self._commit  # type: ignore[method-assign]
        self.engine.dialect.do_rollback = self._rollback  # type: ignore[method-assign]


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] if ordered else 0.0


def summary(samples: list[float]) -> str:
    if not samples:
        return "no write transactions"
    return (f"{len(samples):,} write transactions: median {statistics.median(samples) * 1000:.0f} ms, "
            f"p95 {quantile(samples, 0.95) * 1000:.0f} ms, longest {max(samples) * 1000:.0f} ms")


def run(records: int, chunk: int = retention_batch.CHUNK) -> None:
    with tempfile.TemporaryDirectory(prefix="pm-purge-") as tmp:  # 1.4 GB at 1M records: not left behind
        _run(Path(tmp), records, chunk)


def _run(folder: Path, records: int, chunk: int) -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'bench.db'}", "SECRET_KEY": "bench",
                      "FIELD_ENCRYPTION_KEYS": "b1:" + "A" * 43, "BLIND_INDEX_KEY": "bench", "AUDIT_KEY": "bench",
                      "ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 1024})
    with app.app_context():
        db.create_all()
        ensure_departments()
        manager = accounts.create_staff("manager", "经理", PASSWORD, {"manager"})
        unit = make_unit()
        resident = make_resident(id_number=valid_id(1))
        make_occupancy(unit, resident)
        db.session.commit()
        print(f"setup: {records:,} records + {records:,} children + {2 * records:,} audit rows "
              f"in {fill(records, unit.id, resident.id):.1f} s", flush=True)
        policy = RetentionPolicy(name="keys", record_type="key_custody", amount=1, unit="years", anchor="closed",
                                 anchor_field="closed_at", action="purge", condition='{"state": ["returned", "lost"]}')
        db.session.add(policy)
        db.session.commit()
        with db.engine.connect() as conn:  # start from a checkpointed WAL, as a quiet database would
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

        timer = WriteTimer(db.engine)
        seconds: dict[str, float] = {}
        timer.phase = "listing"
        started = time.perf_counter()
        batch = retention_batch.list_batch(policy, manager)
        seconds["listing"] = time.perf_counter() - started
        print(f"listing {batch.listed_count:,}: {seconds['listing']:.1f} s; {summary(timer.of('listing'))}",
              flush=True)
        timer.phase = "approval"
        started = time.perf_counter()
        retention_batch.approve(batch, manager, PASSWORD)
        seconds["approval"] = time.perf_counter() - started
        print(f"approval: {seconds['approval']:.1f} s; {summary(timer.of('approval'))}", flush=True)
        audit.set_actor(db.session(), None, "retention")
        timer.phase = "running"
        started = time.perf_counter()
        batch = retention_batch.run_batch(batch.id, chunk=chunk)
        seconds["running"] = time.perf_counter() - started
        timer.phase = "after"
        running = timer.of("running")
        tenth = max(1, len(running) // 10)
        print(f"purge ({chunk} records a transaction): {batch.state}, done {batch.done_count:,}, "
              f"skipped {batch.skipped_count:,} in {seconds['running']:.1f} s; {summary(running)}")
        print(f"  first tenth of the run: {summary(running[:tenth])}")
        print(f"  last tenth of the run:  {summary(running[-tenth:])}")
        longest = max(timer.spans, default=(0.0, "-", "-"))
        commits = [c for c, (_, phase, _) in zip(timer.commits, timer.spans, strict=True) if phase == "running"]
        print(f"  of which in COMMIT: median {statistics.median(commits or [0]) * 1000:.0f} ms, "
              f"p95 {quantile(commits, 0.95) * 1000:.0f} ms, longest {max(commits, default=0) * 1000:.0f} ms")
        timer.close()
        left = db.session.scalar(sa.select(sa.func.count()).select_from(KeyCustody))
        redacted = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                                     .where(AuditEntry.redacted_at.is_not(None)))
        tombstones = db.session.scalar(sa.select(sa.func.count()).select_from(Tombstone))
        print(f"left {left:,} records; {redacted:,} audit rows redacted; {tombstones:,} tombstones")
        started = time.perf_counter()
        count, problems = audit.verify(db.engine)
        print(f"audit verify: {count:,} rows, {len(problems)} problems, {time.perf_counter() - started:.1f} s")
        print(f"total (listing + approval + purge): {sum(seconds.values()):.1f} s")
        print(f"longest write transaction: {longest[0] * 1000:.0f} ms, in {longest[1]} ({longest[2]} ...)")
        print(f"target: no write transaction over 1 s: {'met' if longest[0] < 1 else 'MISSED'}")
        db.session.remove()
        db.engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="expired records (default 1000000)")
    parser.add_argument("--chunk", type=int, default=retention_batch.CHUNK,
                        help=f"records per purge transaction (default {retention_batch.CHUNK})")
    args = parser.parse_args(argv)
    run(args.records, args.chunk)


if __name__ == "__main__":
    main()
