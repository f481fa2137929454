"""Page benchmark (issue 16): N complaints in a SQLite file, then median/p95 ms of the pages staff use.

    .venv/bin/python bench/pages.py                 # 100,000 complaints
    .venv/bin/python bench/pages.py --rows 20000 --repeat 10 --keep /tmp/pages.db

The database is built the way a deployment builds it (the migrations, then the demo seed for the
estate, residents and one account per role); the complaints go in with bulk INSERTs (executemany,
5,000 a chunk) bypassing the ORM unit of work, so no audit rows are written for them, but the
encrypted phone goes through its column type as the application writes it. Numbers are
TS<yyyymm>-<serial> per month over the last two years, about a third of them still open. Then
ANALYZE, as the migrations and the weekly sweep do. Requests go through the Flask test client
signed in as the customer-service supervisor (the 待办 badge is drawn on every page). Nothing here
asserts on time; the figures are for comparison between runs on one machine.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

CHUNK = 5000
PASSWORD = "Wuye#Demo2026"  # the demo seed's accounts
CSRF = re.compile(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"')
OPEN = ("received", "dispatched", "accepted", "handled", "told", "visited")
NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周杰", "吴霞", "徐明", "孙丽"]
CATEGORIES = ("cleaning", "parking", "security", "repair", "noise", "greening")
SEARCHED = "欧阳晓晓"  # a name given to 24 complaints only


def build(path: Path, rows: int) -> Flask:
    os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    from app import create_app

    app = create_app()
    with app.app_context():
        from flask_migrate import upgrade

        from models import db
        from seed.demo import seed_demo

        upgrade(directory=str(ROOT / "migrations"))
        seed_demo()
        t0 = time.perf_counter()
        fill_complaints(db, rows)
        db.session.execute(sa.text("ANALYZE"))
        db.session.commit()
        print(f"filled {rows:,} complaints in {time.perf_counter() - t0:.1f} s")
    return app


def fill_complaints(db, rows: int) -> None:  # type: ignore[no-untyped-def]
    from models import Unit
    from models.complaints import Complaint

    rng = random.Random(16)
    units = db.session.scalars(sa.select(Unit.id)).all()
    table = Complaint.__table__
    start = datetime.now(UTC) - timedelta(days=730)
    step = timedelta(days=730) / rows
    serials: dict[str, int] = {}  # continue after the demo seed's own numbers
    for number in db.session.scalars(sa.select(table.c.number).where(table.c.number.is_not(None))):
        prefix, serial = number.rsplit("-", 1)
        serials[prefix + "-"] = max(serials.get(prefix + "-", 0), int(serial))
    searched = set(rng.sample(range(rows), min(24, rows)))
    batch = []
    for i in range(rows):
        at = start + step * i
        prefix = f"TS{at + timedelta(hours=8):%Y%m}-"
        serials[prefix] = serials.get(prefix, 0) + 1
        state = rng.choice(OPEN) if rng.random() < 0.33 else "closed"
        batch.append(
            {
                "number": f"{prefix}{serials[prefix]:04d}",
                "received_at": at,
                "channel": "phone",
                "unit_id": rng.choice(units),
                "complainant_name": SEARCHED if i in searched else rng.choice(NAMES),
                "contact_phone": f"138{rng.randrange(10**8):08d}",
                "occurred_at": at - timedelta(hours=2),
                "location": "大堂",
                "subject": "保洁班组",
                "description": "地面未清洁",
                "demand": "尽快处理",
                "category": rng.choice(CATEGORIES),
                "severity": "minor",
                "read_back_confirmed": True,
                "state": state,
                "due_at": at + timedelta(days=2) if state != "closed" else None,
                "closed_at": at + timedelta(days=1) if state == "closed" else None,
                "created_at": at,
                "updated_at": at,
                "version": 1,
                "pending_round": 0,
            }
        )
        if len(batch) == CHUNK:
            db.session.execute(table.insert(), batch)
            batch = []
    if batch:
        db.session.execute(table.insert(), batch)
    db.session.commit()


def signed_in(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    token = CSRF.search(client.get("/login", follow_redirects=True).get_data(as_text=True)).group(1)
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
    assert response.status_code == 302, response.status_code
    return client


def timed(client: FlaskClient, url: str, repeat: int) -> tuple[float, float]:
    client.get(url)  # warm-up (templates, the badge's first count)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="build (or reuse) this SQLite file instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "pages.db"
        if path.exists():
            os.environ["DATABASE_URL"] = f"sqlite:///{path}"
            from app import create_app

            app = create_app()
        else:
            app = build(path, args.rows)
        client = signed_in(app, "supervisor")
        deep = max(1, args.rows // 50 // 2)
        pages = {
            "complaint list, page 1": "/admin/complaint/",
            f"complaint list, page {deep}": f"/admin/complaint/?page={deep}",
            "list filtered by state": "/admin/complaint/?flt0_0=received",
            "list searched by a name": f"/admin/complaint/?search={quote(SEARCHED)}",
            "待办 (supervisor)": "/admin/mywork/",
            "home page (menu + 待办 badge)": "/admin/",
        }
        print(f"{'page':34} {'median ms':>10} {'p95 ms':>8}   ({args.rows:,} complaints, {args.repeat} requests)")
        for label, url in pages.items():
            median, p95 = timed(client, url, args.repeat)
            print(f"{label:34} {median:10.1f} {p95:8.1f}")


if __name__ == "__main__":
    main()
