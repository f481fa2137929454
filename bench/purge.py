"""Purge benchmark: list, approve and purge N expired key-custody records (one KeyUse child and
two audit rows each) on SQLite, then verify the audit chain.

    .venv/bin/python bench/purge.py                    # 1M records
    .venv/bin/python bench/purge.py --records 100000
    .venv/bin/python bench/sweep.py --purge 1000000    # the same, after the sweep benchmark

Prints the listing and purge times and the longest write transaction (first INSERT/UPDATE/DELETE
to COMMIT: how long SQLite's single write lock is held). Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

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


def run(records: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="pm-purge-"))
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
              f"in {fill(records, unit.id, resident.id):.1f} s")
        policy = RetentionPolicy(name="keys", record_type="key_custody", amount=1, unit="years", anchor="closed",
                                 anchor_field="closed_at", action="purge", condition='{"state": ["returned", "lost"]}')
        db.session.add(policy)
        db.session.commit()

        spans: list[float] = []
        opened: dict[int, float] = {}

        @sa.event.listens_for(db.engine, "before_cursor_execute")
        def _first_write(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            if statement.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
                opened.setdefault(id(conn), time.perf_counter())

        @sa.event.listens_for(db.engine, "commit")
        def _commit(conn):  # type: ignore[no-untyped-def]
            if id(conn) in opened:
                spans.append(time.perf_counter() - opened.pop(id(conn)))

        started = time.perf_counter()
        batch = retention_batch.list_batch(policy, manager)
        print(f"listing {batch.listed_count:,}: {time.perf_counter() - started:.1f} s, {len(spans)} write "
              f"transactions, longest {max(spans, default=0) * 1000:.0f} ms")
        spans.clear()
        retention_batch.approve(batch, manager, PASSWORD)
        audit.set_actor(db.session(), None, "retention")
        started = time.perf_counter()
        batch = retention_batch.run_batch(batch.id)
        total = time.perf_counter() - started
        spans.sort()
        print(f"purge: {batch.state}, done {batch.done_count:,}, skipped {batch.skipped_count:,} in {total:.1f} s; "
              f"{len(spans)} write transactions, longest {spans[-1] * 1000:.0f} ms, "
              f"median {spans[len(spans) // 2] * 1000:.0f} ms")
        left = db.session.scalar(sa.select(sa.func.count()).select_from(KeyCustody))
        redacted = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                                     .where(AuditEntry.redacted_at.is_not(None)))
        tombstones = db.session.scalar(sa.select(sa.func.count()).select_from(Tombstone))
        print(f"left {left:,} records; {redacted:,} audit rows redacted; {tombstones:,} tombstones")
        started = time.perf_counter()
        count, problems = audit.verify(db.engine)
        print(f"audit verify: {count:,} rows, {len(problems)} problems, {time.perf_counter() - started:.1f} s")
        print(f"target: no write transaction over 1 s: {'met' if spans[-1] < 1 else 'MISSED'}")
        db.session.remove()
        db.engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="expired records (default 1000000)")
    run(parser.parse_args(argv).records)


if __name__ == "__main__":
    main()
