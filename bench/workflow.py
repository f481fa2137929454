"""Workflow benchmark: engine firings (one thread and several), audit-chain verification, "My work".

    .venv/bin/python bench/workflow.py                      # 10k key custody records, 2000 firings, SQLite
    .venv/bin/python bench/workflow.py --records 2000 --firings 400 --pending 50
    .venv/bin/python bench/workflow.py --database-url postgresql+psycopg://user@host/db --reset

As in bench/registry.py, a fresh SQLite file in a temporary directory is used unless ``--database-url``
names an empty database (``--reset`` drops and re-creates its tables). Units, residents and
occupancies are filled by ``bench.registry.fill``; the key custody records (state "held") go in
with Core executemany, so only what the engine does afterwards leaves audit rows.

A firing is what one button press costs on the server: load the record, ``engine.fire`` (checks,
effect, one flush with its hash-chained audit row, notices, commit). Every firing goes through the
single ``audit_head`` row, so the several-thread figure shows how much that lock serialises. Each
thread has its own app context, hence its own session and connection, and fires on its own
records: a Conflict or error there is a finding, not expected noise. ``--pending`` records carry a
report_lost request from a clerk, waiting for a cs_supervisor's sign-off. The figures are for
comparison between runs on one machine; nothing here asserts on them.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

from bench.registry import CSRF, Filled, bulk, cell, fill, make_app, measure, p95, prepare_schema  # noqa: E402
from models import KeyCustody, Staff, db  # noqa: E402
from security import accounts  # noqa: E402
from seed.demo import ensure_departments  # noqa: E402
from workflow import audit, engine, inbox  # noqa: E402

SUPERVISOR = ("benchsupervisor", "基准测试 主管", "Bench#Supervisor-2026", "cs_supervisor")
CLERK = ("benchclerk", "基准测试 客服", "Bench#Clerk-Desk-2026", "cs_clerk")
HOLDER = {"current_holder": "工程部 刘强", "current_purpose": "抄水表"}
MYWORK = re.compile(r'id="mywork-(?:list|empty)"')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000, help="key custody records (default 10000)")
    parser.add_argument("--firings", type=int, default=2_000,
                        help="firings per phase, half check_out and half check_in (default 2000)")
    parser.add_argument("--threads", type=int, default=4, help="threads of the concurrent phase (default 4)")
    parser.add_argument("--pending", type=int, default=200,
                        help="records with a report_lost request waiting for sign-off (default 200)")
    parser.add_argument("--runs", type=int, default=30, help="timed calls/requests per figure (default 30)")
    parser.add_argument("--database-url", help="an empty database instead of a temporary SQLite file")
    parser.add_argument("--reset", action="store_true",
                        help="drop and re-create the tables of --database-url (destroys its data)")
    parser.add_argument("--seed", type=int, default=20261123)
    args = parser.parse_args(argv)
    if min(args.records, args.runs, args.threads) < 1 or args.firings < 2 or args.pending < 0:
        parser.error("--records, --runs and --threads must be positive, --firings at least 2, --pending >= 0")
    if args.firings // 2 > args.records - args.pending:
        parser.error("--firings / 2 must not exceed --records minus --pending (each thread needs its own records)")
    return args


# --- setup ---------------------------------------------------------------------------------
def make_staff() -> dict[str, int]:
    """The supervisor who signs losses and the clerk who fires and requests (never the same person)."""
    ensure_departments()
    ids = {}
    for username, name, password, role in (SUPERVISOR, CLERK):
        ids[role] = accounts.create_staff(username, name, password, {role}, department_key="cs").id
    db.session.commit()
    return ids


def fill_keys(n: int, clerk_id: int, filled: Filled) -> None:
    """Keys of unit i deposited by its owner (resident i, as ``fill`` pairs them), all in the cabinet."""
    started = time.perf_counter()
    filled.counts["key_custody"] = bulk(KeyCustody, ({
        "id": i, "unit_id": i, "resident_id": i, "tag_no": f"K-{i:06d}", "description": "入户门钥匙",
        "key_count": 2, "permitted_use": "紧急维修、抄表", "state": "held", "created_by_id": clerk_id,
    } for i in range(1, n + 1)))
    db.session.commit()
    with db.engine.begin() as conn:
        audit.ensure_head(conn)  # created with the table; a bulk load must not leave the chain headless
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('key_custody', 'id'), "
                                 "(SELECT max(id) FROM key_custody))"))
            conn.execute(sa.text("ANALYZE"))
    filled.times["key_custody"] = time.perf_counter() - started


def request_losses(record_ids: list[int], clerk_id: int) -> None:
    """Through the engine, so each request has its audit row and the supervisor's notice."""
    clerk = db.session.get(Staff, clerk_id)
    for rid in record_ids:
        engine.fire(db.session.get(KeyCustody, rid), "report_lost", clerk, "钥匙柜中未找到")


# --- firings -------------------------------------------------------------------------------
@dataclass
class Firings:
    """What one or more workers measured; samples in ms per transition name."""

    samples: dict[str, list[float]] = field(default_factory=lambda: {"check_out": [], "check_in": []})
    conflicts: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def merge(self, other: Firings) -> None:
        for name, values in other.samples.items():
            self.samples[name].extend(values)
        self.conflicts += other.conflicts
        self.errors.update(other.errors)

    @property
    def all(self) -> list[float]:
        return [ms for values in self.samples.values() for ms in values]


def describe(exc: BaseException) -> str:
    """A short, countable label; 'database is locked' stays visible as such."""
    lines = str(getattr(exc, "orig", None) or exc).splitlines()
    return f"{type(exc).__name__}: {lines[0][:80] if lines else ''}"


def fire_pairs(app: Flask, clerk_id: int, record_ids: list[int], barrier: threading.Barrier | None,
               out: Firings) -> None:
    """check_out then check_in on each record, in this thread's own app context and session."""
    with app.app_context():
        clerk = db.session.get(Staff, clerk_id)
        assert clerk is not None and clerk.roles  # loaded before the clock starts
        if barrier is not None:
            barrier.wait(timeout=60)
        for rid in record_ids:
            for name in ("check_out", "check_in"):
                started = time.perf_counter()
                try:
                    record = db.session.get(KeyCustody, rid)
                    engine.fire(record, name, clerk, version=record.version,
                                values=HOLDER if name == "check_out" else None)
                except engine.Conflict:
                    out.conflicts += 1
                    db.session.rollback()
                except Exception as exc:  # counted and reported: the run goes on
                    out.errors[describe(exc)] += 1
                    db.session.rollback()
                else:
                    out.samples[name].append((time.perf_counter() - started) * 1000)
        db.session.remove()


def run_firings(app: Flask, clerk_id: int, record_ids: list[int], threads: int) -> Firings:
    total = Firings()
    if threads == 1:
        started = time.perf_counter()
        fire_pairs(app, clerk_id, record_ids, None, total)
        total.seconds = time.perf_counter() - started
        return total
    barrier = threading.Barrier(threads + 1)
    parts = [Firings() for _ in range(threads)]
    workers = [threading.Thread(target=fire_pairs, args=(app, clerk_id, record_ids[i::threads], barrier, parts[i]))
               for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=60)
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    total.seconds = time.perf_counter() - started
    for part in parts:
        total.merge(part)
    return total


# --- reading -------------------------------------------------------------------------------
def time_verify(app: Flask) -> tuple[int, int, float]:
    with app.app_context():
        started = time.perf_counter()
        count, problems = audit.verify(db.engine)
        return count, len(problems), time.perf_counter() - started


def time_my_work(app: Flask, staff_id: int, runs: int) -> tuple[list[float], int, int]:
    """Each call in a fresh app context, as each request has: no identity map or settings cache carried over.
    Also counts the SQL statements of one call, which is what grows with the number of waiting records."""
    samples, items, queries = [], 0, 0

    def counted(*_args: Any) -> None:
        nonlocal queries
        queries += 1

    for i in range(runs + 1):
        with app.app_context():
            user = db.session.get(Staff, staff_id)
            assert user is not None and user.roles
            queries = 0
            sa.event.listen(db.engine, "before_cursor_execute", counted)
            started = time.perf_counter()
            items = len(inbox.my_work(user))
            elapsed = (time.perf_counter() - started) * 1000
            sa.event.remove(db.engine, "before_cursor_execute", counted)
            db.session.remove()
        if i:
            samples.append(elapsed)
    return samples, items, queries


def sign_in(app: Flask, username: str, password: str) -> FlaskClient:
    client = app.test_client()
    match = CSRF.search(client.get("/login").get_data(as_text=True))
    if not match:
        sys.exit("no CSRF token on the login page")
    response = client.post("/login", data={"csrf_token": match.group(1), "username": username,
                                           "password": password})
    if response.status_code != 302:
        sys.exit(f"login of {username} failed: HTTP {response.status_code}")
    return client


# --- output --------------------------------------------------------------------------------
def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [[f"{v:,.1f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v) for v in row]
             for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  " + "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths,
                                                                                               strict=True))))
    for row in cells:
        print("  " + "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths,
                                                                                                   strict=True))))


def firing_rows(label: str, result: Firings) -> list[list[Any]]:
    done = len(result.all)
    errors = sum(result.errors.values())
    rows = [[label, done, result.seconds, done / result.seconds if result.seconds else 0.0,
             statistics.median(result.all) if done else "-", p95(result.all) if done else "-",
             result.conflicts, errors]]
    for name, values in result.samples.items():
        if values:
            rows.append([f"  {name}", len(values), "", "", statistics.median(values), p95(values), "", ""])
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    pairs = args.firings // 2
    with tempfile.TemporaryDirectory(prefix="pm-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        app = make_app(url)
        with app.app_context():
            print(f"database: {db.engine.url.render_as_string(hide_password=True)} ({db.engine.dialect.name})")
            prepare_schema(args.reset)
            staff = make_staff()
            print(f"filling {args.records} units, residents and key custody records ...", flush=True)
            filled = fill(args.records, args.records, args.seed)
            fill_keys(args.records, staff["cs_clerk"], filled)
            pending_ids = list(range(args.records - args.pending + 1, args.records + 1))
            started = time.perf_counter()
            request_losses(pending_ids, staff["cs_clerk"])
            pending_seconds = time.perf_counter() - started
            db.session.remove()

        free = list(range(1, args.records - args.pending + 1))  # records no request blocks
        print(f"firing {args.firings} in 1 thread, then {args.firings} in {args.threads} threads ...", flush=True)
        single = run_firings(app, staff["cs_clerk"], free[:pairs], 1)
        start = pairs if 2 * pairs <= len(free) else 0  # fresh records when there are enough
        threaded = run_firings(app, staff["cs_clerk"], free[start:start + pairs], args.threads)

        print("verifying the audit trail ...", flush=True)
        audit_rows, problems, verify_seconds = time_verify(app)

        print(f"timing My work and pages, {args.runs} runs each ...", flush=True)
        reads: list[list[Any]] = []
        for (username, _name, password, role), label in ((SUPERVISOR, "cs_supervisor"), (CLERK, "cs_clerk")):
            samples, items, queries = time_my_work(app, staff[role], args.runs)
            reads.append([f"{label}: inbox.my_work()", items, queries, statistics.median(samples), p95(samples)])
            client = sign_in(app, username, password)
            for page, expect in (("/admin/key_custody/", cell("tag_no")), ("/admin/mywork/", MYWORK)):
                samples = measure(client, page, expect, args.runs)
                reads.append([f"{label}: GET {page}", "", "", statistics.median(samples), p95(samples)])
        with app.app_context():
            db.session.remove()
            db.engine.dispose()

    setup = [[name, filled.counts.get(name, ""), seconds,
              filled.counts[name] / seconds if filled.counts.get(name) and seconds else ""]
             for name, seconds in filled.times.items()]
    setup.append(["report_lost requests (engine)", args.pending, pending_seconds,
                  args.pending / pending_seconds if pending_seconds else ""])
    table("setup", ["step", "rows", "s", "rows/s"], setup)
    table(f"firings: load + engine.fire + commit ({args.records:,} records)",
          ["phase", "firings", "s", "firings/s", "median ms", "p95 ms", "conflicts", "errors"],
          firing_rows("1 thread", single) + firing_rows(f"{args.threads} threads", threaded))
    for result in (single, threaded):
        for text, n in result.errors.most_common(5):
            print(f"  error x{n}: {text}")
    table("audit verify", ["rows", "s", "rows/s", "problems"],
          [[audit_rows, verify_seconds, audit_rows / verify_seconds if verify_seconds else 0.0, problems]])
    table(f"My work ({args.pending} report_lost waiting; {args.runs} runs after one warm-up)",
          ["what", "items", "queries", "median ms", "p95 ms"], reads)


if __name__ == "__main__":
    main()
