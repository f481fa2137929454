"""Fixtures: one app per session on SQLite or the PostgreSQL server the test command started;
every test starts from empty tables plus departments and one account per role."""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask, has_app_context
from flask.testing import FlaskClient

from app import create_app
from models import db
from models.audit import guard_statements, head_guard_statements
from security import accounts
from seed.demo import ensure_departments
from workflow.audit import ensure_head

pytest_plugins = ["tests.browser_support"]

PASSWORD = "Correct-Horse-42"
ROLE_USERS = {
    "admin": "admin", "manager": "manager", "cs_supervisor": "supervisor", "cs_clerk": "clerk",
    "engineering": "engineer", "security": "guard", "finance": "cashier",
    "management_dept": "patrol",
}
CSRF = re.compile(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"')


class IsolatedClient(FlaskClient):
    """Each request runs in its own app context, as in production.

    Without this, a request made while a test holds an app context (``db_session``) would
    reuse that context: ``g`` (CSRF token, Flask-Login's cached user) and the database
    session would leak between requests and clients.
    """

    def open(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("buffered", True)  # streamed bodies finish inside that context
        response = contextvars.Context().run(super().open, *args, **kwargs)
        if has_app_context() and not (db.session.new or db.session.dirty or db.session.deleted):
            db.session.expire_all()  # the test's view of rows the request just changed
        return response


def database_url(tmp_root: Path) -> str:
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_root / 'test.db'}"


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    root = tmp_path_factory.mktemp("app")
    app = create_app({
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url(root),
        "SECRET_KEY": "test-secret-key-not-for-production",
        "FIELD_ENCRYPTION_KEYS": "t1:" + "A" * 43,
        "BLIND_INDEX_KEY": "test-blind-index-key",
        "AUDIT_KEY": "test-audit-key",
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_COST": 1024,
        "SERVER_NAME": "localhost",
    })
    app.instance_path = str(root / "instance")
    app.test_client_class = IsolatedClient
    with app.app_context():
        db.drop_all()
        db.create_all()
    yield app
    with app.app_context():
        db.drop_all()
        db.engine.dispose()


def wipe(app: Flask) -> None:
    from models.duty import duty_log_guard_statements, duty_log_unguard_statements
    from security import throttle

    throttle.reset_all(app)  # login attempt counts live in the limiter's storage, not in tables
    with app.app_context():
        db.session.remove()
        tables = list(reversed(db.metadata.sorted_tables))
        with db.engine.begin() as conn:
            # The audit table refuses DELETE/TRUNCATE by trigger; tests lift that for the wipe only.
            if conn.dialect.name == "postgresql":
                for name in ("audit_entry", "audit_head", "duty_log"):
                    conn.execute(sa.text(f"ALTER TABLE {name} DISABLE TRIGGER USER"))
                names = ", ".join(f'"{t.name}"' for t in tables)
                conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
                for name in ("audit_entry", "audit_head", "duty_log"):
                    conn.execute(sa.text(f"ALTER TABLE {name} ENABLE TRIGGER USER"))
            else:  # the duty log's DTY-3 triggers too
                for name in ("audit_entry_no_delete", "audit_head_no_delete"):
                    conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {name}"))
                for statement in duty_log_unguard_statements("sqlite"):
                    conn.exec_driver_sql(statement)
                for table in tables:
                    conn.execute(table.delete())
                for statement in (guard_statements("sqlite") + head_guard_statements("sqlite")
                                  + duty_log_guard_statements("sqlite")):
                    conn.exec_driver_sql(statement)
            ensure_head(conn)


@pytest.fixture()
def staff_ids(app: Flask) -> dict[str, int]:
    """Fresh tables, departments, and one account per role (password ``PASSWORD``)."""
    wipe(app)
    ids = {}
    with app.app_context():
        ensure_departments()
        for role, username in ROLE_USERS.items():
            ids[role] = accounts.create_staff(username, f"{username} 测试", PASSWORD, {role}).id
        db.session.commit()
    return ids


@pytest.fixture()
def db_session(app: Flask, staff_ids: dict[str, int]) -> Iterator[sa.orm.Session]:
    """An app context with the session, for arranging data and checking what was written."""
    with app.test_request_context():
        yield db.session
        db.session.remove()


def csrf_token(client: FlaskClient) -> str:
    page = client.get("/login", follow_redirects=True).get_data(as_text=True)
    match = CSRF.search(page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def login(client: FlaskClient, username: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    return client.post("/login", data={"csrf_token": csrf_token(client), "username": username,
                                       "password": password})


@pytest.fixture()
def login_as(app: Flask, staff_ids: dict[str, int]) -> Callable[[str], FlaskClient]:
    """``login_as("cs_clerk")`` gives a client signed in as the account holding that role."""

    def _login(role: str) -> FlaskClient:
        client = app.test_client()
        response = login(client, ROLE_USERS[role])
        assert response.status_code == 302, response.get_data(as_text=True)
        return client

    return _login


@pytest.fixture()
def runner(app: Flask):  # type: ignore[no-untyped-def]
    return app.test_cli_runner()
