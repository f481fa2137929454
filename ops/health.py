"""``GET /healthz`` for the proxy, systemd or a monitor: no login, no records, only whether this
process can serve. 200 when the database answers, the schema is at the migrations' head and the
sweep ran recently enough; else 503, with which check failed."""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cache

import sqlalchemy as sa
from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue

from models import job_run
from models.base import db, utcnow

bp = Blueprint("ops_health", __name__)
STARTED = time.monotonic()


@cache
def migration_heads() -> frozenset[str]:
    """The revisions ``flask db upgrade`` ends at, read once from migrations/."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from app import ROOT

    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def check() -> tuple[bool, dict[str, object]]:
    """(healthy, the report). Nothing in the report is a record or a person."""
    report: dict[str, object] = {}
    try:
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            revisions = set(conn.scalars(sa.text("SELECT version_num FROM alembic_version")))
            last, ok = job_run.last_run(conn, job_run.SWEEP)
    except sa.exc.SQLAlchemyError:
        return False, {"status": "unhealthy", "database": "unreachable"}
    report["database"] = "ok"
    at_head = revisions == set(migration_heads())
    report["migrations"] = "head" if at_head else "not at head"
    report["schema_revision"] = ",".join(sorted(revisions)) or None
    report["last_sweep"] = last.isoformat() if last else None
    report["sweep"] = _sweep_state(last, ok)
    healthy = at_head and report["sweep"] in ("ok", "not checked", "not yet")
    report = {"status": "ok" if healthy else "unhealthy", **report}
    return healthy, report


def _sweep_state(last: object, ok: bool | None) -> str:
    """Stale when the last sweep is older than HEALTH_SWEEP_MAX_AGE_MINUTES (0: not checked), or
    when none ran although the process has been up that long."""
    minutes = float(current_app.config.get("HEALTH_SWEEP_MAX_AGE_MINUTES") or 0)
    if minutes <= 0:
        return "not checked"
    limit = timedelta(minutes=minutes)
    if last is None:
        return "not yet" if time.monotonic() - STARTED < limit.total_seconds() else "never ran"
    if utcnow() - last > limit:  # type: ignore[operator]
        return "stale"
    return "ok" if ok is not False else "failed"


@bp.route("/healthz")
def healthz() -> ResponseReturnValue:
    healthy, report = check()
    response = jsonify(report)
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
