"""Registry benchmark: bulk-fill units, residents and occupancies, then time list pages and searches.

    .venv/bin/python bench/registry.py                      # 100k units, 200k residents, SQLite
    .venv/bin/python bench/registry.py --small              # 2k units, 4k residents
    .venv/bin/python bench/registry.py --database-url postgresql+psycopg://user@host/db --reset

By default a fresh SQLite file in a temporary directory is used and removed afterwards. A
``--database-url`` must point to an empty database; with ``--reset`` its tables are dropped and
re-created first (everything in them is lost).

Rows go in with bulk INSERTs (executemany) in chunks, bypassing the ORM unit of work (so no change-history
rows are written), but the ID numbers are still checked, encrypted (EncryptedString through
``security.crypto.keyring()``) and blind-indexed exactly as the application does. Requests go
through the Flask test client, signed in as a customer-service supervisor, with CSRF on. The
figures are for comparison between runs on one machine; nothing here asserts on them.
"""

from __future__ import annotations

import argparse
import base64
import math
import os
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

from app import create_app  # noqa: E402
from models import Building, Estate, Occupancy, Resident, Unit, db  # noqa: E402
from models.validators import check_id_number  # noqa: E402
from security import accounts  # noqa: E402
from security.crypto import keyring, mask  # noqa: E402
from seed.demo import ensure_departments  # noqa: E402
from seed.people import make_person  # noqa: E402

CHUNK = 5000
FLOORS, ROOMS = 30, 4  # 120 units per building
BUILDINGS_PER_ESTATE = 20
BUILDING_CODES = [chr(ord("A") + i) for i in range(BUILDINGS_PER_ESTATE)]
AREAS = [Decimal(a) for a in ("68.50", "89.20", "105.00", "128.75", "143.60")]
USER, PASSWORD = "benchsupervisor", "Bench#Supervisor-2026"
CSRF = re.compile(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--residents", type=int, default=200_000)
    parser.add_argument("--small", action="store_true", help="2k units and 4k residents")
    parser.add_argument("--runs", type=int, default=30, help="timed requests per page (default 30)")
    parser.add_argument("--database-url", help="an empty database instead of a temporary SQLite file")
    parser.add_argument("--reset", action="store_true",
                        help="drop and re-create the tables of --database-url (destroys its data)")
    parser.add_argument("--seed", type=int, default=20261123)
    args = parser.parse_args(argv)
    if args.small:
        args.units, args.residents = 2_000, 4_000
    if args.units < 1 or args.residents < 1 or args.runs < 1:
        parser.error("--units, --residents and --runs must be positive")
    return args


def make_app(url: str) -> Flask:
    """The real application with throwaway keys; secrets are never read from or written to instance/."""
    return create_app({
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "FIELD_ENCRYPTION_KEYS": "b1:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
        "BLIND_INDEX_KEY": secrets.token_urlsafe(32),
        "AUDIT_KEY": "test-audit-key",
        "SERVER_NAME": "localhost",
    })


def prepare_schema(reset: bool) -> None:
    existing = sa.inspect(db.engine).get_table_names()
    if existing and not reset:
        sys.exit(f"the database already has tables ({', '.join(sorted(existing)[:5])}...); "
                 "use an empty one, or pass --reset to drop them")
    db.drop_all()
    db.create_all()


def chunks(rows: Iterator[dict[str, Any]], size: int = CHUNK) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def bulk(model: type, rows: Iterator[dict[str, Any]]) -> int:
    """Core executemany on the model's table: column types (EncryptedString, UTCDateTime) and
    Python-side defaults (timestamps, version) still apply. The ORM's bulk insert would split a
    chunk into many small statements wherever a column's value switches between None and a value."""
    statement = model.__table__.insert()  # type: ignore[attr-defined]
    count = 0
    for batch in chunks(rows):
        db.session.execute(statement, batch)
        count += len(batch)
    return count


class Filled:
    """What the fill wrote, and a few values to search for."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.unit_code = ""
        self.resident_name = ""
        self.id_number = ""


def fill(n_units: int, n_residents: int, seed: int) -> Filled:
    rng = random.Random(seed)
    out = Filled()
    today = date.today()
    n_buildings = math.ceil(n_units / (FLOORS * ROOMS))
    n_estates = math.ceil(n_buildings / BUILDINGS_PER_ESTATE)

    def timed(name: str, model: type, rows: Callable[[], Iterator[dict[str, Any]]]) -> None:
        started = time.perf_counter()
        out.counts[name] = bulk(model, rows())
        out.times[name] = time.perf_counter() - started

    def estates() -> Iterator[dict[str, Any]]:
        for e in range(1, n_estates + 1):
            yield {"id": e, "code": f"est{e}", "name": f"华庭{e}期", "kind": "residential",
                   "address": f"深圳市福田区华庭路 {e} 号"}

    def buildings() -> Iterator[dict[str, Any]]:
        for b in range(1, n_buildings + 1):
            code = BUILDING_CODES[(b - 1) % BUILDINGS_PER_ESTATE]
            yield {"id": b, "estate_id": (b - 1) // BUILDINGS_PER_ESTATE + 1, "code": code,
                   "name": f"{code}栋", "floors": FLOORS}

    unit_codes: list[str] = []

    def units() -> Iterator[dict[str, Any]]:
        for u in range(1, n_units + 1):
            b, k = divmod(u - 1, FLOORS * ROOMS)
            floor, room = divmod(k, ROOMS)
            floor += 1
            code = f"{BUILDING_CODES[b % BUILDINGS_PER_ESTATE]}-{floor}-{floor * 100 + room + 1}"
            unit_codes.append(code)
            yield {"id": u, "building_id": b + 1, "code": code, "floor": floor,
                   "area": rng.choice(AREAS), "use": "residential"}

    ring = keyring()
    people: list[tuple[str, str]] = []

    def residents() -> Iterator[dict[str, Any]]:
        for r in range(1, n_residents + 1):
            person = make_person(rng, r)
            number = check_id_number(person["id_number"])  # what Resident's @validates does
            people.append((person["name"], number))
            # id_number stays plaintext here: the EncryptedString column type encrypts it on bind.
            yield {**person, "id": r, "id_number": number, "id_number_bidx": ring.blind_index(number)}

    def occupancies() -> Iterator[dict[str, Any]]:
        # Every unit gets an owner; the other residents are family members or tenants.
        for r in range(1, n_residents + 1):
            unit_id = (r - 1) % n_units + 1
            kind = "owner" if r <= n_units else rng.choice(("family", "tenant"))
            start = today - timedelta(days=rng.randrange(60, 3000))
            end = start + timedelta(days=365) if kind == "tenant" and rng.random() < 0.2 else None
            yield {"id": r, "unit_id": unit_id, "resident_id": r, "kind": kind, "start_date": start,
                   "end_date": end}

    started = time.perf_counter()
    timed("estate", Estate, estates)
    timed("building", Building, buildings)
    timed("unit", Unit, units)
    timed("resident", Resident, residents)
    timed("occupancy", Occupancy, occupancies)
    commit_started = time.perf_counter()
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as conn:
            for table in ("estate", "building", "unit", "resident", "occupancy"):
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT max(id) FROM {table}))"))
            conn.execute(sa.text("ANALYZE"))  # what autovacuum does soon after a bulk load
    out.times["commit"] = time.perf_counter() - commit_started
    out.times["total"] = time.perf_counter() - started

    middle = len(people) // 2
    out.unit_code = unit_codes[len(unit_codes) // 2]
    out.resident_name = people[middle][0]
    out.id_number = people[middle][1]
    return out


def make_supervisor() -> None:
    ensure_departments()
    accounts.create_staff(USER, "基准测试 主管", PASSWORD, {"cs_supervisor"}, department_key="cs")
    db.session.commit()


def sign_in(app: Flask) -> FlaskClient:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    match = CSRF.search(page)
    if not match:
        sys.exit("no CSRF token on the login page")
    response = client.post("/login", data={"csrf_token": match.group(1), "username": USER,
                                           "password": PASSWORD})
    if response.status_code != 302:
        sys.exit(f"login failed: HTTP {response.status_code}")
    return client


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def cell(column: str, text: str = "") -> re.Pattern[str]:
    """A list-table cell of ``column``; with ``text``, one showing exactly that (not the search box)."""
    inner = rf"\s*{re.escape(text)}\s*</td>" if text else ""
    return re.compile(rf'<td class="col-{column}">{inner}')


def measure(client: FlaskClient, url: str, expect: re.Pattern[str], runs: int) -> list[float]:
    """One warm-up request, then ``runs`` timed ones; each must succeed and show ``expect``."""
    samples = []
    for i in range(runs + 1):
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200 or not expect.search(response.get_data(as_text=True)):
            sys.exit(f"{url}: HTTP {response.status_code}, {expect.pattern!r} not on the page")
        if i:
            samples.append(elapsed)
    return samples


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pm-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        app = make_app(url)
        with app.app_context():
            print(f"database: {db.engine.url.render_as_string(hide_password=True)} "
                  f"({db.engine.dialect.name})")
            prepare_schema(args.reset)
            make_supervisor()
            print(f"filling {args.units} units, {args.residents} residents ...", flush=True)
            filled = fill(args.units, args.residents, args.seed)
            db.session.remove()

        print(f"\nfill (bulk INSERT, chunks of {CHUNK} rows)")
        for name, seconds in filled.times.items():
            rows = filled.counts.get(name)
            rate = f"  {rows / seconds:>9,.0f} rows/s" if rows and seconds else ""
            label = f"{name:<10} {rows:>8,} rows" if rows is not None else f"{name:<10} {'':>13}"
            print(f"  {label}  {seconds:8.2f} s{rate}")

        client = sign_in(app)
        pages = [
            ("unit list", "/admin/unit/", cell("code")),
            ("resident list", "/admin/resident/", cell("name")),
            ("occupancy list", "/admin/occupancy/", cell("unit")),
            ("unit code search", f"/admin/unit/?search={quote(filled.unit_code)}", cell("code", filled.unit_code)),
            ("resident name search", f"/admin/resident/?search={quote(filled.resident_name)}",
             cell("name", filled.resident_name)),
            ("ID number search", f"/admin/resident/?search={filled.id_number}",
             cell("id_number", mask(filled.id_number))),
        ]
        print(f"\nlatency over {args.runs} requests each (after one warm-up), signed in as cs_supervisor")
        print(f"  {'page':<22} {'median ms':>10} {'p95 ms':>10}  url")
        for name, page_url, expect in pages:
            samples = measure(client, page_url, expect, args.runs)
            print(f"  {name:<22} {statistics.median(samples):>10.1f} {p95(samples):>10.1f}  {page_url}",
                  flush=True)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


if __name__ == "__main__":
    main()
