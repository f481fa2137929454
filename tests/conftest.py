"""Fixtures: one app per worker on its own clone of a database built by the migrations (SQLite,
or the PostgreSQL server of ``TEST_DATABASE_URL``); every test starts from the migrated state
plus departments and one account per role. See tests/databases.py."""

from __future__ import annotations

import contextvars
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask, has_app_context
from flask.testing import FlaskClient

from models import db
from security import accounts, throttle
from seed.demo import ensure_departments
from tests import databases
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


# --- the migrated template (controller) and this worker's clone ---------------------------------
def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller; xdist's workers inherit the variable
        os.environ[databases.TEMPLATE_DIR_ENV] = tempfile.mkdtemp(prefix="pm-tests-")


@pytest.hookimpl(tryfirst=True)  # before xdist starts the workers
def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):
        databases.build_template()


# Under ``--dist loadgroup`` tests spread over the workers one by one, except these modules, each
# kept on one worker: the browser tests share one Chromium and live server per worker, and the
# concurrency tests run their threads best without a neighbour test competing for the cores.
GROUPED_MODULES = {"test_workflow_concurrency": "concurrency"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        group = "browser" if module.startswith("test_browser") else GROUPED_MODULES.get(module)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput") and databases.TEMPLATE_DIR_ENV in os.environ:
        databases.drop_template()


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """The app on this worker's own clone of the migrated template database."""
    root = tmp_path_factory.mktemp("app")
    app = databases.new_app(databases.clone_template(root), root / "instance")
    app.test_client_class = IsolatedClient
    databases.init_app(app)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    databases.drop_clone()


@pytest.fixture()
def empty_database(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``empty_database("label")``: the URL of a new empty database of this worker (SQLite file, or
    ``<TEST_DATABASE_URL's db>_<label>_<worker>`` on the server), dropped after the test."""
    made: list[str] = []

    def _make(label: str) -> str:
        url, name = databases.new_empty_database(tmp_path, label)
        if name:
            made.append(name)
        return url

    yield _make
    for name in made:
        databases.drop_database(name)


def wipe(app: Flask) -> None:
    """Back to the migrated state: no rows but those the migrations seed (the audit chain's head)."""
    throttle.reset_all(app)  # login attempt counts live in the limiter's storage, not in tables
    with app.app_context():
        db.session.remove()
        app.extensions["pm_test_wiper"](db.engine)
        with db.engine.begin() as conn:
            ensure_head(conn)


def checkpoint(app: Flask) -> databases.Checkpoint:
    """The database's rows now, for ``restore``: data built once and given back to many tests."""
    with app.app_context():
        db.session.remove()
        return app.extensions["pm_test_wiper"].capture(db.engine)


def restore(app: Flask, point: databases.Checkpoint) -> None:
    throttle.reset_all(app)
    with app.app_context():
        db.session.remove()
        app.extensions["pm_test_wiper"](db.engine, point)


def make_staff(app: Flask) -> dict[str, int]:
    """Wipe, then departments and one account per role (password ``PASSWORD``); ids by role."""
    wipe(app)
    ids = {}
    with app.app_context():
        ensure_departments()
        for role, username in ROLE_USERS.items():
            ids[role] = accounts.create_staff(username, f"{username} 测试", PASSWORD, {role}).id
        db.session.commit()
    return ids


@pytest.fixture()
def staff_ids(app: Flask) -> dict[str, int]:
    """Fresh tables, departments, and one account per role (password ``PASSWORD``)."""
    return make_staff(app)


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


def signed_in(app: Flask, role: str) -> FlaskClient:
    """A new client signed in as the account holding ``role``."""
    client = app.test_client()
    response = login(client, ROLE_USERS[role])
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture()
def login_as(app: Flask, staff_ids: dict[str, int]) -> Callable[[str], FlaskClient]:
    """``login_as("cs_clerk")`` gives a client signed in as the account holding that role."""
    return lambda role: signed_in(app, role)


@pytest.fixture()
def runner(app: Flask):  # type: ignore[no-untyped-def]
    return app.test_cli_runner()
