"""The Alembic migrations build exactly the schema the models declare, on both databases."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade

from app import ROOT, create_app
from models import db


def scratch_database(tmp_path: Path) -> str:
    """A database of its own, so the upgrade starts from nothing."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path / 'migrations.db'}"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS pm_migrations"))
        conn.execute(sa.text("CREATE DATABASE pm_migrations"))
    engine.dispose()
    return url.rsplit("/", 1)[0] + "/pm_migrations"


def test_reg_1_migrations_match_models(tmp_path: Path) -> None:
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": scratch_database(tmp_path),
        "SECRET_KEY": "x", "FIELD_ENCRYPTION_KEYS": "t1:" + "A" * 43, "BLIND_INDEX_KEY": "y",
        "AUDIT_KEY": "test-audit-key",
    })
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, db.metadata)
        db.engine.dispose()
    assert diff == [], f"models and migrations differ; run `flask db migrate`: {diff}"
