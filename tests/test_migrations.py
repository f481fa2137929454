"""The Alembic migrations build exactly the schema the models declare, on both databases.

Two checks: Alembic's own ``compare_metadata`` (tables, columns, types, indexes, constraints as
SQLAlchemy sees them), and a catalog comparison of a migrated database with one built by
``create_all()`` from the models on the same database kind, which also sees what
``compare_metadata`` cannot: triggers and their functions, rules, partial index predicates and
CHECK constraints. The tests' own databases are built by the migrations (tests/databases.py), so
whatever only ``create_all()`` would install is missing there too, as on a deployment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from models import db
from tests import databases


@pytest.fixture()
def migrated(empty_database: Callable[[str], str]) -> str:
    """A database of its own, built from nothing by ``flask db upgrade``."""
    url = empty_database("migrated")
    databases.migrate(url)
    return url


@pytest.fixture()
def created(empty_database: Callable[[str], str]) -> str:
    """A database of its own, built by ``create_all()`` from the models and their DDL listeners."""
    url = empty_database("created")
    engine = sa.create_engine(url)
    try:
        db.metadata.create_all(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture()
def connect() -> Iterator[Callable[[str], sa.Connection]]:
    engines: list[sa.Engine] = []
    connections: list[sa.Connection] = []

    def _connect(url: str) -> sa.Connection:
        engines.append(sa.create_engine(url))
        connections.append(engines[-1].connect())
        return connections[-1]

    yield _connect
    for conn in connections:
        conn.close()
    for engine in engines:
        engine.dispose()


def test_reg_1_migrations_match_models(migrated: str, connect: Callable[[str], sa.Connection]) -> None:
    ctx = MigrationContext.configure(connect(migrated), opts={"compare_type": True})
    diff = compare_metadata(ctx, db.metadata)
    assert diff == [], f"models and migrations differ; run `flask db migrate`: {diff}"


# --- the catalog, read from the database itself ------------------------------------------------------
def _norm(sql: str | None) -> str:
    """Whitespace, quoting and ``IF NOT EXISTS`` do not make two definitions different."""
    text = re.sub(r"\s+", " ", sql or "").strip().rstrip(";")
    text = re.sub(r"(?i)\bIF NOT EXISTS\b ?", "", text)
    text = re.sub(r'["`\[\]]', "", text)
    return re.sub(r"\s*([(),=<>])\s*", r"\1", text)


def _type(column: dict[str, Any]) -> str:
    return re.sub(r"\s+", " ", str(column["type"]).upper())


def schema_of(conn: sa.Connection) -> dict[str, str]:
    """Every schema object as ``kind name -> normalised definition``: tables' columns, primary keys,
    indexes, unique, CHECK and foreign-key constraints, triggers (with their functions) and rules."""
    found: dict[str, str] = {}
    inspector = sa.inspect(conn)
    tables = sorted(set(inspector.get_table_names()) - databases.SKIPPED_TABLES)
    for table in tables:
        found[f"table {table}"] = ""
        for column in inspector.get_columns(table):
            default = _norm(str(column.get("default") or ""))
            found[f"column {table}.{column['name']}"] = (
                f"{_type(column)} {'NULL' if column['nullable'] else 'NOT NULL'}"
                + (f" DEFAULT {default}" if default else ""))
        found[f"primary key {table}"] = ",".join(inspector.get_pk_constraint(table)["constrained_columns"])
        for unique in inspector.get_unique_constraints(table):
            found[f"unique {table}({','.join(unique['column_names'])})"] = unique.get("name") or ""
        for check in inspector.get_check_constraints(table):
            found[f"check {table}: {_norm(check['sqltext'])}"] = check.get("name") or ""
        for fk in inspector.get_foreign_keys(table):
            options = ",".join(f"{k}={v}" for k, v in sorted(fk.get("options", {}).items()))
            key = f"foreign key {table}({','.join(fk['constrained_columns'])})"
            found[key] = f"{fk['referred_table']}({','.join(fk['referred_columns'])}) {options}".strip()
    if conn.dialect.name == "postgresql":
        for name, table, definition in conn.execute(sa.text(
                "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = current_schema()")):
            if table in tables:
                found[f"index {name}"] = _norm(definition)
        for table, name, definition, function in conn.execute(sa.text(
                "SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), pg_get_functiondef(t.tgfoid)"
                " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE NOT t.tgisinternal AND n.nspname = current_schema()")):
            found[f"trigger {table}.{name}"] = _norm(definition)
            found[f"trigger function of {table}.{name}"] = _norm(function)
        for table, name, definition in conn.execute(sa.text(
                "SELECT tablename, rulename, definition FROM pg_rules WHERE schemaname = current_schema()")):
            found[f"rule {table}.{name}"] = _norm(definition)
    else:
        for table, sql in conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'"):
            if table in tables:  # ids never reused after a purge (RET) need AUTOINCREMENT
                found[f"table {table}"] = "AUTOINCREMENT" if "AUTOINCREMENT" in (sql or "").upper() else ""
        for kind, name, table, sql in conn.exec_driver_sql(
                "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')"):
            if table in tables and sql is not None:  # automatic indexes (sql NULL) come with their constraint
                found[f"{kind} {name}"] = _norm(sql)
    return found


def differences(migrated: dict[str, str], created: dict[str, str]) -> list[str]:
    lines = []
    for key in sorted(set(migrated) | set(created)):
        if key not in migrated:
            lines.append(f"missing after `flask db upgrade`: {key} {created[key]}".rstrip())
        elif key not in created:
            lines.append(f"only after `flask db upgrade` (not in the models): {key} {migrated[key]}".rstrip())
        elif migrated[key] != created[key]:
            lines.append(f"differs: {key}\n    migrated: {migrated[key]}\n    models:   {created[key]}")
    return lines


def test_reg_1_migrated_schema_matches_models_tables_indexes_triggers_checks(
        migrated: str, created: str, connect: Callable[[str], sa.Connection]) -> None:
    """REG-1 (one schema source): ``flask db upgrade`` builds, on this database kind, the same tables,
    columns, indexes (with partial predicates), constraints, CHECKs and triggers as the models'
    ``create_all()`` with their DDL listeners; a deployment gets what the tests were written for."""
    diff = differences(schema_of(connect(migrated)), schema_of(connect(created)))
    assert not diff, "the migrated schema differs from the models':\n" + "\n".join(diff)


def test_ret_key_custody_rebuilt_with_autoincrement_keeps_its_rows_and_key_uses(
        empty_database: Callable[[str], str], connect: Callable[[str], sa.Connection]) -> None:
    """A SQLite database migrated before AUTOINCREMENT reached ``key_custody`` gets it from the rebuild
    (so a purged record's id is never reused) with every custody row and its key uses kept."""
    url = empty_database("autoinc")
    if not url.startswith("sqlite"):
        pytest.skip("PostgreSQL sequences never reuse ids; the rebuild is SQLite's")
    from flask_migrate import upgrade

    from app import create_app
    from tests.helpers import make_key_custody

    app = create_app({**databases.TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(directory=str(databases.ROOT / "migrations"), revision="e12e00000005")
        keys = make_key_custody()
        db.session.execute(sa.text("INSERT INTO key_use (custody_id, holder, purpose, out_at)"
                                   " VALUES (:id, '李师傅', '维修', '2026-01-01 00:00:00')"), {"id": keys.id})
        db.session.commit()
        kept = keys.id
        db.session.remove()
        upgrade(directory=str(databases.ROOT / "migrations"))
        db.engine.dispose()
    conn = connect(url)
    assert "AUTOINCREMENT" in conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE name = 'key_custody'").scalar().upper()
    assert conn.exec_driver_sql("SELECT id FROM key_custody").scalars().all() == [kept]
    assert conn.exec_driver_sql("SELECT custody_id, holder FROM key_use").all() == [(kept, "李师傅")]
    assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
