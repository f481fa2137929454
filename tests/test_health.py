"""/healthz (no login, no records; 503 when not healthy) and the per-request log line."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from models import job_run
from models.base import db, utcnow
from ops import health
from ops.request_log import JsonFormatter


@pytest.fixture()
def swept(app: Flask, staff_ids: dict[str, int]) -> Callable[[Any], None]:
    def _at(moment: Any) -> None:
        with app.app_context():
            job_run.record_run(db.engine, job_run.SWEEP, moment, True, finished=moment)

    return _at


def test_healthz_answers_without_login_and_shows_no_records(app: Flask, swept: Callable[[Any], None]) -> None:
    swept(utcnow() - timedelta(minutes=1))
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"status", "database", "migrations", "schema_revision", "last_sweep", "sweep"}
    assert (body["status"], body["database"], body["migrations"], body["sweep"]) == ("ok", "ok", "head", "ok")
    assert body["schema_revision"] in health.migration_heads()
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers


def test_healthz_503_when_the_sweep_is_stale(app: Flask, swept: Callable[[Any], None]) -> None:
    swept(utcnow() - timedelta(hours=2))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["sweep"] == "stale"


def test_healthz_503_when_the_schema_is_not_at_head(app: Flask, swept: Callable[[Any], None]) -> None:
    swept(utcnow())
    with app.app_context():
        with db.engine.begin() as conn:
            revision = conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'e12f00000006'"))
        try:
            response = app.test_client().get("/healthz")
        finally:
            with db.engine.begin() as conn:
                conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    assert response.status_code == 503
    assert response.get_json()["migrations"] == "not at head"


def test_healthz_503_when_the_database_is_unreachable(app: Flask, tmp_path: Any) -> None:
    from tests import databases

    broken = databases.new_app(f"sqlite:///{tmp_path}/missing/dir/x.db", tmp_path / "instance")
    response = broken.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unhealthy", "database": "unreachable"}


def test_each_request_logs_one_line_with_id_user_id_status_duration(
    app: Flask, login_as: Callable[[str], Any], staff_ids: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    client = login_as("cs_clerk")
    with caplog.at_level(logging.INFO, logger="pm.request"):
        caplog.clear()
        response = client.get("/admin/?q=张三", headers={"X-Request-ID": "nginx-req-0001"})
    lines = [r for r in caplog.records if r.name == "pm.request"]
    assert len(lines) == 1
    line = lines[0]
    assert (line.request_id, line.user_id, line.status, line.path) == (
        "nginx-req-0001",
        staff_ids["cs_clerk"],
        response.status_code,
        "/admin/",
    )
    assert response.headers["X-Request-ID"] == "nginx-req-0001"
    assert isinstance(line.duration_ms, float)
    text = line.getMessage()
    assert "clerk" not in text and "张三" not in text  # the user's id, never the name; no query string
    as_json = json.loads(JsonFormatter().format(line))
    assert {k: as_json[k] for k in ("request_id", "user_id", "status", "path")} == {
        "request_id": "nginx-req-0001",
        "user_id": staff_ids["cs_clerk"],
        "status": response.status_code,
        "path": "/admin/",
    }


def test_request_id_from_a_client_is_used_only_when_it_is_a_plain_token(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pm.request"):
        response = app.test_client().get("/login", headers={"X-Request-ID": "bad id; forged=1"})
    assert response.headers["X-Request-ID"] != "bad id; forged=1"
    assert len(response.headers["X-Request-ID"]) == 32
