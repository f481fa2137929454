"""``flask backup create [DIR] | restore FILE | verify FILE`` (ops/backup.py does the work)."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup

from models import job_run
from models.base import db, utcnow
from models.storage import LocalStorage, storage
from ops import backup
from workflow.audit import verify

backup_cli = AppGroup("backup", help="Backups of the database and the uploaded files.")


def _fail(exc: backup.BackupError) -> None:
    click.echo(f"backup: {exc}", err=True)
    raise SystemExit(1)


@backup_cli.command("create")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def create_command(directory: Path | None) -> None:
    """Write a consistent backup (database snapshot, uploaded files, manifest) into DIRECTORY
    (default BACKUP_DIR, else instance/backups) while the app keeps running."""
    target = directory or Path(current_app.config.get("BACKUP_DIR") or Path(current_app.instance_path) / "backups")
    started = utcnow()
    try:
        path, manifest = backup.create(db.engine, storage(), target, current_app.config.get("PG_BIN_DIR", ""))
    except backup.BackupError as exc:
        job_run.record_run(db.engine, "backup", started, False)
        _fail(exc)
        return
    job_run.record_run(db.engine, "backup", started, True)
    rows = sum(manifest["tables"].values())
    click.echo(
        f"backup: {path} ({len(manifest['tables'])} tables, {rows} rows, "
        f"{len(manifest['files']) - 1} files, audit tip {(manifest['audit_tip'] or {}).get('seq')})"
    )
    for missing in manifest["missing_files"]:
        click.echo(f"  not in the backup (removed after the snapshot): {missing}", err=True)


@backup_cli.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def restore_command(file: Path) -> None:
    """Restore FILE into this app's database and upload folder, which must both be empty
    (a new database after `createdb`, or no SQLite file). The whole file is checked first."""
    try:
        done = backup.restore(
            file,
            db.engine,
            storage(),
            current_app.config.get("PG_BIN_DIR", ""),
            scratch=Path(current_app.instance_path).parent,
        )
    except backup.BackupError as exc:
        _fail(exc)
        return
    click.echo(f"restored: {done.tables} tables, {done.rows} rows, {done.files} files; counts match the manifest")
    count, problems = verify(db.engine)
    if problems:
        click.echo(f"audit trail: {len(problems)} problem(s); run `flask audit verify`", err=True)
        raise SystemExit(1)
    click.echo(f"audit trail: {count} rows, chain intact")


@backup_cli.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def verify_command(file: Path) -> None:
    """Restore FILE into a scratch database and folder, check it against its manifest and the audit
    chain, and drop the scratch copy. Exit status 1 when anything is wrong."""
    try:
        count, problems = verify_backup(file)
    except backup.BackupError as exc:
        _fail(exc)
        return
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        click.echo(f"backup: restores, but its audit trail has {len(problems)} problem(s)", err=True)
        raise SystemExit(1)
    click.echo(f"backup: {file} restores, matches its manifest; audit trail {count} rows, chain intact")


def verify_backup(file: Path) -> tuple[int, list]:
    """Restore into scratch (a temporary SQLite file, or a new database on the same PostgreSQL
    server), compare, verify the audit chain; the scratch is removed whatever happens."""
    url = db.engine.url
    with tempfile.TemporaryDirectory(prefix="wuye-verify-") as folder:
        if url.get_backend_name() == "sqlite":
            scratch_url, scratch_name = sa.engine.URL.create("sqlite", database=str(Path(folder) / "verify.db")), None
        else:
            scratch_name = f"{url.database}_verify_{secrets.token_hex(4)}"[:63]
            _admin(url, f'CREATE DATABASE "{scratch_name}"')
            scratch_url = url.set(database=scratch_name)
        engine = sa.create_engine(scratch_url)
        try:
            backup.restore(
                file,
                engine,
                LocalStorage(Path(folder) / "instance"),
                current_app.config.get("PG_BIN_DIR", ""),
                scratch=Path(folder),
            )
            return verify(engine)
        finally:
            engine.dispose()
            if scratch_name:
                _admin(url, f'DROP DATABASE IF EXISTS "{scratch_name}" WITH (FORCE)')


def _admin(url: sa.URL, statement: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def init_app(app: Flask) -> None:
    app.cli.add_command(backup_cli)
