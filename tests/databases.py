"""The test databases: built by the Alembic migrations, as a deployment builds its own.

The controller process migrates one template (a SQLite file, or ``<db>_tpl`` on the PostgreSQL
server of ``TEST_DATABASE_URL``) before any worker starts; each pytest-xdist worker then gets a
clone of it (a file copy, or ``CREATE DATABASE <db>_<worker> TEMPLATE <db>_tpl``). Every name is
derived from the configured database's name and the worker id, so parallel runs against one
server with different database names never collide.

Between tests, ``Wiper`` empties the tables that hold rows and puts back the rows the migrations
seeded, with every trigger the migrations installed out of the way for that moment only.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

from app import ROOT, create_app

TEMPLATE_DIR_ENV = "PM_TEST_TEMPLATE_DIR"  # set by the controller, inherited by the workers
TEST_CONFIG: dict[str, Any] = {
    "TESTING": True,
    "SECRET_KEY": "test-secret-key-not-for-production",
    "FIELD_ENCRYPTION_KEYS": "t1:" + "A" * 43,
    "BLIND_INDEX_KEY": "test-blind-index-key",
    "AUDIT_KEY": "test-audit-key",
    "ARGON2_TIME_COST": 1,
    "ARGON2_MEMORY_COST": 1024,
    "SERVER_NAME": "localhost",
}
SKIPPED_TABLES = {"alembic_version"}


def server_url() -> str | None:
    """``TEST_DATABASE_URL`` (a PostgreSQL database on the test server), or None for SQLite."""
    return os.environ.get("TEST_DATABASE_URL") or None


def worker_id() -> str:
    """``gw0``, ``gw1``… under pytest-xdist; ``main`` when tests run in one process."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def with_database(url: str, name: str) -> str:
    return sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)


def database_name(suffix: str) -> str:
    """A PostgreSQL database name of this run: ``<configured db>_<suffix>``."""
    url = server_url()
    assert url, "only for PostgreSQL"
    return f"{sa.engine.make_url(url).database}_{suffix}"


@contextmanager
def _server() -> Iterator[sa.Connection]:
    engine = sa.create_engine(server_url(), isolation_level="AUTOCOMMIT")  # type: ignore[arg-type]
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def create_database(name: str, template: str | None = None) -> str:
    """A fresh PostgreSQL database ``name`` (dropped first if a crashed run left it); its URL."""
    with _server() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return with_database(server_url(), name)  # type: ignore[arg-type]


def drop_database(name: str) -> None:
    with _server() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(url: str) -> None:
    """``flask db upgrade`` on ``url``: the schema exactly as a deployment gets it."""
    from flask_migrate import upgrade

    from models import db

    app = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()


# --- the template, built once by the controller -----------------------------------------------
def template_dir() -> Path:
    return Path(os.environ[TEMPLATE_DIR_ENV])


def build_template() -> None:
    if server_url():
        migrate(create_database(database_name("tpl")))
    else:
        migrate(f"sqlite:///{template_dir() / 'template.db'}")


def drop_template() -> None:
    if server_url():
        drop_database(database_name("tpl"))
    shutil.rmtree(template_dir(), ignore_errors=True)


def clone_template(folder: Path) -> str:
    """This worker's own copy of the migrated template; its URL."""
    if server_url():
        return create_database(database_name(worker_id()), template=database_name("tpl"))
    target = folder / "test.db"
    source, copy = sqlite3.connect(template_dir() / "template.db"), sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()
    return f"sqlite:///{target}"


def drop_clone() -> None:
    if server_url():
        drop_database(database_name(worker_id()))


def new_empty_database(folder: Path, label: str) -> tuple[str, str | None]:
    """An empty database of this worker for a test that builds its own schema: (URL, PostgreSQL name)."""
    if server_url():
        name = database_name(f"{label}_{worker_id()}")
        return create_database(name), name
    return f"sqlite:///{folder / f'{label}.db'}", None


# --- the wipe between tests --------------------------------------------------------------------
def _quote(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


class Wiper:
    """Return the database to the state the migrations left it in, cheaply.

    Read once from the fresh clone: the tables, and the rows the migrations seeded (e.g. the
    audit chain's head). A wipe finds the tables holding rows in one query and empties only
    those, then puts the seeded rows back.
    """

    def __init__(self, engine: sa.Engine) -> None:
        with engine.connect() as conn:
            self.dialect = conn.dialect.name
            meta = sa.MetaData()
            meta.reflect(conn)
            # children before parents, so deletes pass the foreign keys SQLite enforces
            self.tables = [t.name for t in reversed(meta.sorted_tables) if t.name not in SKIPPED_TABLES]
            quoted = [_quote(conn, t) for t in self.tables]
            self.probe = sa.text(" UNION ALL ".join(
                f"SELECT '{name}' AS name WHERE EXISTS (SELECT 1 FROM {q})" for name, q in zip(self.tables, quoted,
                                                                                                   strict=True)))
            self.seeded: dict[str, tuple[sa.Table, list[dict[str, Any]]]] = {}
            for name in conn.execute(self.probe).scalars():
                table = meta.tables[name]
                self.seeded[name] = (table, [dict(r._mapping) for r in conn.execute(sa.select(table))])
            self.sequences: list[tuple[str, int]] = []
            self.has_sqlite_sequence = False
            if self.dialect == "postgresql":  # sequences the migrations advanced
                self.sequences = [tuple(r) for r in conn.execute(sa.text(
                    "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value"
                    " FROM pg_sequences WHERE last_value IS NOT NULL"))]
            elif conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").first():
                self.has_sqlite_sequence = True
                self.sequences = [tuple(r) for r in conn.exec_driver_sql("SELECT name, seq FROM sqlite_sequence")]

    def __call__(self, engine: sa.Engine) -> None:
        with engine.begin() as conn:
            found = set(conn.execute(self.probe).scalars()) | set(self.seeded)
            filled = [name for name in self.tables if name in found]
            if self.dialect == "postgresql":
                self._wipe_postgresql(conn, filled)
            else:
                self._wipe_sqlite(conn, filled)

    def _restore(self, conn: sa.Connection, filled: list[str]) -> None:
        for name in reversed(filled):
            if name in self.seeded:
                table, rows = self.seeded[name]
                conn.execute(table.insert(), rows)

    def _wipe_postgresql(self, conn: sa.Connection, filled: list[str]) -> None:
        # Triggers (the append-only guards) do not fire for this transaction only.
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        if filled:
            names = ", ".join(_quote(conn, t) for t in filled)
            conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        self._restore(conn, filled)
        for sequence, value in self.sequences:
            conn.execute(sa.text("SELECT setval(:s, :v)"), {"s": sequence, "v": value})

    def _wipe_sqlite(self, conn: sa.Connection, filled: list[str]) -> None:
        if not filled:
            return
        marks = ", ".join("?" for _ in filled)
        triggers = conn.exec_driver_sql(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ({marks})",
            tuple(filled)).all()
        for name, _sql in triggers:
            conn.exec_driver_sql(f"DROP TRIGGER {_quote(conn, name)}")
        for name in filled:
            conn.exec_driver_sql(f"DELETE FROM {_quote(conn, name)}")
        self._restore(conn, filled)
        for _name, sql in triggers:
            conn.exec_driver_sql(sql)
        if self.has_sqlite_sequence:  # AUTOINCREMENT counters as the migrations left them
            conn.exec_driver_sql("DELETE FROM sqlite_sequence")
            for name, seq in self.sequences:
                conn.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, seq))


def init_app(app: Flask) -> None:
    """Remember the fresh clone's seeded rows on the app, for ``wipe``."""
    from models import db

    with app.app_context():
        app.extensions["pm_test_wiper"] = Wiper(db.engine)


def new_app(url: str, instance: Path) -> Flask:
    app = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": url})
    app.instance_path = str(instance)
    return app
