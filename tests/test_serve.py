"""The production server: gunicorn with 4 workers on a loopback port against a temporary SQLite
database. Every worker starts the sweep timer, exactly one sweeps (the lease); /healthz answers
without a login; each request is one JSON log line. Kept on one xdist worker (group "servers")."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import ROOT
from tests import databases

pytestmark = pytest.mark.xdist_group("servers")
GUNICORN = Path(sys.executable).parent / "gunicorn"
WORKERS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def migrated_sqlite(folder: Path) -> str:
    """A migrated SQLite database of its own: the run's template copied, or migrated anew."""
    target = folder / "served.db"
    template = databases.template_dir() / "template.db"
    if template.exists():
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    url = f"sqlite:///{target}"
    databases.migrate(url)
    return url


def server_env(url: str, port: int, **extra: str) -> dict[str, str]:
    config = databases.TEST_CONFIG
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PM_ENV": "development",
        "SECRET_KEY": config["SECRET_KEY"],
        "FIELD_ENCRYPTION_KEYS": config["FIELD_ENCRYPTION_KEYS"],
        "BLIND_INDEX_KEY": config["BLIND_INDEX_KEY"],
        "AUDIT_KEY": config["AUDIT_KEY"],
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_WORKERS": str(WORKERS),
        "WEB_THREADS": "2",
        "LOG_FORMAT": "json",
        **extra,
    }
    env.pop("SERVER_NAME", None)
    return env


def wait_for(predicate, seconds: float = 240.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def json_lines(text: str) -> list[dict]:
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def sweeps_in(text: str) -> list[dict]:
    """The timer's "sweep by <host>:<pid>: …" lines."""
    return [
        line for line in json_lines(text) if line.get("logger") == "pm.jobs" and line["message"].startswith("sweep by")
    ]


def test_gunicorn_4_workers_sweep_in_one_place_healthz_and_request_log(tmp_path: Path) -> None:
    url, port = migrated_sqlite(tmp_path), free_port()
    log = tmp_path / "server.log"
    env = server_env(url, port, SWEEP_INTERVAL_SECONDS="0.3")
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(GUNICORN), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "--timeout", "300", "app:create_app()"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        assert wait_for(lambda: len(re.findall(r"Booting worker with pid", log.read_text())) >= WORKERS), (
            log.read_text()
        )
        assert wait_for(lambda: len(sweeps_in(log.read_text())) >= 5), log.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
            health = json.loads(response.read())
            request_id = response.headers["X-Request-ID"]
    finally:
        running = log.read_text()  # while all four serve; at shutdown the holder hands the lease on
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=120)
    text = log.read_text()
    workers = set(re.findall(r"Booting worker with pid: (\d+)", text))
    sweepers = {re.match(r"sweep by \S+:(\d+): ", line["message"]).group(1) for line in sweeps_in(running)}  # type: ignore[union-attr]
    assert len(workers) == WORKERS
    assert len(sweepers) == 1 and sweepers <= workers, (sweepers, workers)  # one place, not four
    assert health["status"] == "ok" and health["database"] == "ok" and health["migrations"] == "head"
    assert health["last_sweep"] is not None
    requests = [line for line in json_lines(text) if line.get("logger") == "pm.request"]
    assert [(r["path"], r["status"], r["request_id"], r["user_id"]) for r in requests] == [
        ("/healthz", 200, request_id, None)
    ]
    assert isinstance(requests[0]["duration_ms"], float)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            holder = conn.execute(sa.text("SELECT holder FROM job_run WHERE name = 'sweep'")).scalar()
    finally:
        engine.dispose()
    assert holder is None  # handed back at shutdown: a restart need not wait for the lease to run out
