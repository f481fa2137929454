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
from dataclasses import dataclass, field
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


@dataclass
class Checkpoint:
    """The rows of every filled table at one moment, to return to (see ``Wiper.capture``)."""

    tables: list[str]  # the filled tables, children before parents
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)  # SQLite: the raw rows
    schema: str | None = None  # PostgreSQL: the schema holding copies of the tables
    sequences: list[tuple[str, int]] = field(default_factory=list)


class Wiper:
    """Return the database to a checkpoint cheaply: by default the state the migrations left it in.

    Built once on the fresh clone (the tables, in foreign-key order, and the migrated state with
    whatever rows the migrations seed, e.g. the audit chain's head). A restore finds the tables
    holding rows in one query and empties only those, with their triggers (the append-only guards)
    out of the way for that transaction only, then puts the checkpoint's rows back.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.captured = 0
        with engine.connect() as conn:
            self.dialect = conn.dialect.name
            meta = sa.MetaData()
            meta.reflect(conn)
            # children before parents, so deletes pass the foreign keys SQLite enforces
            self.tables = [t.name for t in reversed(meta.sorted_tables) if t.name not in SKIPPED_TABLES]
            self.probe = sa.text(" UNION ALL ".join(
                f"SELECT '{name}' AS name WHERE EXISTS (SELECT 1 FROM {_quote(conn, name)})" for name in self.tables))
        self.migrated = self.capture(engine)

    def filled(self, conn: sa.Connection) -> set[str]:
        """The tables holding at least one row, in one query."""
        return set(conn.execute(self.probe).scalars())

    def capture(self, engine: sa.Engine) -> Checkpoint:
        self.captured += 1
        with engine.begin() as conn:
            found = self.filled(conn)
            point = Checkpoint([name for name in self.tables if name in found])
            if self.dialect == "postgresql":
                point.schema = f"pm_checkpoint_{self.captured}"
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {point.schema} CASCADE")
                conn.exec_driver_sql(f"CREATE SCHEMA {point.schema}")
                for name in point.tables:
                    conn.exec_driver_sql(f"CREATE TABLE {point.schema}.{_quote(conn, name)}"
                                         f" AS TABLE {_quote(conn, name)}")
                point.sequences = [tuple(r) for r in conn.execute(sa.text(
                    "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value"
                    " FROM pg_sequences WHERE last_value IS NOT NULL AND schemaname = current_schema()"))]
            else:
                for name in point.tables:
                    point.rows[name] = [tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {_quote(conn, name)}")]
                point.sequences = [tuple(r) for r in conn.exec_driver_sql("SELECT name, seq FROM sqlite_sequence")]
        return point

    def __call__(self, engine: sa.Engine, point: Checkpoint | None = None) -> None:
        """Restore ``point`` (default: the migrated state)."""
        point = point or self.migrated
        with engine.begin() as conn:
            found = self.filled(conn) | set(point.tables)
            emptied = [name for name in self.tables if name in found]
            if self.dialect == "postgresql":
                self._restore_postgresql(conn, emptied, point)
            else:
                self._restore_sqlite(conn, emptied, point)

    def _restore_postgresql(self, conn: sa.Connection, emptied: list[str], point: Checkpoint) -> None:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")  # no trigger fires
        if emptied:
            conn.exec_driver_sql(f"TRUNCATE {', '.join(_quote(conn, t) for t in emptied)} RESTART IDENTITY CASCADE")
        # every sequence a test used, even on a table left empty (a rolled-back insert), starts over
        conn.exec_driver_sql("SELECT setval(quote_ident(schemaname) || '.' || quote_ident(sequencename), 1, false)"
                             " FROM pg_sequences WHERE last_value IS NOT NULL AND schemaname = current_schema()")
        for name in reversed(point.tables):
            conn.exec_driver_sql(f"INSERT INTO {_quote(conn, name)} SELECT * FROM {point.schema}.{_quote(conn, name)}")
        for sequence, value in point.sequences:
            conn.execute(sa.text("SELECT setval(:s, :v)"), {"s": sequence, "v": value})

    def _restore_sqlite(self, conn: sa.Connection, emptied: list[str], point: Checkpoint) -> None:
        marks = ", ".join("?" for _ in emptied)
        triggers = conn.exec_driver_sql(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ({marks})",
            tuple(emptied)).all()
        for name, _sql in triggers:
            conn.exec_driver_sql(f"DROP TRIGGER {_quote(conn, name)}")
        for name in emptied:
            conn.exec_driver_sql(f"DELETE FROM {_quote(conn, name)}")
        for name in reversed(point.tables):  # parents first
            rows = point.rows[name]
            if rows:
                values = ", ".join("?" for _ in rows[0])
                conn.exec_driver_sql(f"INSERT INTO {_quote(conn, name)} VALUES ({values})", rows)
        for _name, sql in triggers:
            conn.exec_driver_sql(sql)
        conn.exec_driver_sql("DELETE FROM sqlite_sequence")  # AUTOINCREMENT counters as they were
        if point.sequences:
            conn.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", point.sequences)


def init_app(app: Flask) -> None:
    """Remember the fresh clone's seeded rows on the app, for ``wipe``."""
    from models import db

    with app.app_context():
        app.extensions["pm_test_wiper"] = Wiper(db.engine)


def new_app(url: str, instance: Path) -> Flask:
    app = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": url})
    app.instance_path = str(instance)
    return app
