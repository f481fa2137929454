"""Backups that restore: one tar file holding a consistent database snapshot, the uploaded files
its rows name, and a manifest (row counts per table, audit chain tip, schema revision, SHA-256 of
every member).

The snapshot is taken while the app runs: SQLite's online backup API copies the database in one
step under a read lock (writers go on in WAL mode); PostgreSQL's ``pg_dump -Fc`` runs on a
snapshot exported by our own REPEATABLE READ transaction, in which the manifest's counts, tip and
file list are read too, so the manifest describes exactly what the dump holds. Files are copied
after the snapshot (they are content-addressed and never rewritten; one purged in between is
listed as ``missing_files``).

A restore reads and checks the whole archive (the manifest's own checksum, every member's) into a
scratch folder before it writes anything, refuses a target database or upload folder that is not
empty, then loads the snapshot and the files and checks the row counts against the manifest.
Being the database itself, a backup keeps the retention state as it was: tombstones, redacted
audit rows and legal holds come back with everything else.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa

from models.base import utcnow
from models.storage import Storage

FORMAT = 1
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"
DATABASE = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}
FILES = "files"  # members files/uploads/yyyy/mm/<sha256>, as the attachment rows name them
CHUNK = 1024 * 1024


class BackupError(Exception):
    """A backup that cannot be made, read or restored; the message says why, for the operator."""


@dataclass
class Restored:
    tables: int
    rows: int
    files: int


# --- helpers ------------------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sqlite_path(url: sa.URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(url.database)


def _libpq(url: sa.URL) -> tuple[str, dict[str, str]]:
    """The URL for pg_dump/pg_restore (no password on the command line) and their environment."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _pg_tool(name: str, bin_dir: str) -> str:
    path = Path(bin_dir) / name if bin_dir else shutil.which(name)
    if not path or not Path(path).exists():
        raise BackupError(f"{name} not found: install the PostgreSQL client of the server's version or set PG_BIN_DIR")
    return str(path)


def _read_state(conn: sa.Connection) -> dict[str, Any]:
    """Counts per table, the audit chain's tip, the schema revision and the files the rows name."""
    tables = sorted(sa.inspect(conn).get_table_names())
    quote = conn.dialect.identifier_preparer.quote
    counts = {t: int(conn.exec_driver_sql(f"SELECT count(*) FROM {quote(t)}").scalar_one()) for t in tables}
    tip = (
        conn.execute(sa.text("SELECT seq, last_hash FROM audit_head WHERE id = 1")).first()
        if "audit_head" in tables
        else None
    )
    revision = (
        sorted(conn.scalars(sa.text("SELECT version_num FROM alembic_version"))) if "alembic_version" in tables else []
    )
    paths = sorted(set(conn.scalars(sa.text("SELECT path FROM attachment")))) if "attachment" in tables else []
    return {
        "tables": counts,
        "audit_tip": {"seq": tip[0], "hash": tip[1]} if tip else None,
        "schema_revision": ",".join(revision) or None,
        "paths": paths,
    }


def _safe_member(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise BackupError(f"the archive holds an unsafe path {name!r}: refused")
    return path


# --- create -------------------------------------------------------------------------------------
def create(engine: sa.Engine, store: Storage, target_dir: Path, pg_bin: str = "") -> tuple[Path, dict[str, Any]]:
    """Write ``wuye-backup-<UTC time>.tar`` into ``target_dir``, the files read from ``store``;
    its path and manifest."""
    target_dir.mkdir(parents=True, exist_ok=True)
    dialect = engine.dialect.name
    if dialect not in DATABASE:
        raise BackupError(f"no backup method for {dialect}")
    with tempfile.TemporaryDirectory(dir=target_dir, prefix=".backup-") as work_name:
        work = Path(work_name)
        snapshot = work / DATABASE[dialect]
        if dialect == "sqlite":
            snapshot_at, state = _sqlite_snapshot(engine, snapshot)
        else:
            snapshot_at, state = _pg_snapshot(engine, snapshot, pg_bin)
        members = {DATABASE[dialect]: snapshot}
        missing = []
        for relative in state.pop("paths"):
            member = f"{FILES}/{_safe_member(relative)}"
            try:
                data = store.get(relative)
            except FileNotFoundError:
                missing.append(relative)  # purged after the snapshot, or never written
                continue
            copy = work / member
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(data)
            members[member] = copy
        manifest = {
            "format": FORMAT,
            "created_at": utcnow().isoformat(),
            "snapshot_at": snapshot_at,
            "dialect": dialect,
            **state,
            "missing_files": missing,
            "files": {name: {"sha256": sha256_of(path), "size": path.stat().st_size} for name, path in members.items()},
        }
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
        final = target_dir / f"wuye-backup-{stamp}.tar"
        part = target_dir / f".{final.name}.part"
        body = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True).encode()
        # 0600 from the first byte: the database's personal data (encrypted columns aside) is in it.
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                with tarfile.open(fileobj=out, mode="w") as tar:
                    _add_bytes(tar, MANIFEST, body)
                    _add_bytes(tar, MANIFEST_SUM, hashlib.sha256(body).hexdigest().encode())
                    for name, path in members.items():
                        tar.add(path, arcname=name, recursive=False)
                out.flush()
                os.fsync(out.fileno())
            os.replace(part, final)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    return final, manifest


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(utcnow().timestamp()), 0o600
    tar.addfile(info, io.BytesIO(data))


def _sqlite_snapshot(engine: sa.Engine, target: Path) -> tuple[str, dict[str, Any]]:
    source = sqlite3.connect(sqlite_path(engine.url), timeout=30)
    copy = sqlite3.connect(target)
    try:
        snapshot_at = utcnow().isoformat()
        source.backup(copy)  # all pages in one step: one consistent state, writers go on (WAL)
    finally:
        source.close()
        copy.close()
    snap = sa.create_engine(f"sqlite:///{target}")
    try:
        with snap.connect() as conn:
            return snapshot_at, _read_state(conn)
    finally:
        snap.dispose()


def _pg_snapshot(engine: sa.Engine, target: Path, pg_bin: str) -> tuple[str, dict[str, Any]]:
    url, env = _libpq(engine.url)
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        snapshot_at = utcnow().isoformat()
        snapshot = conn.scalar(sa.text("SELECT pg_export_snapshot()"))
        state = _read_state(conn)  # the same snapshot the dump reads
        done = subprocess.run(
            [_pg_tool("pg_dump", pg_bin), "-Fc", f"--snapshot={snapshot}", "-f", str(target), "-d", url],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BackupError(f"pg_dump failed: {done.stderr.strip()}")
    return snapshot_at, state


# --- read and check an archive -------------------------------------------------------------------
@contextmanager
def unpacked(archive: Path, scratch_parent: Path | None = None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The archive checked member by member and unpacked into a scratch folder: (folder, manifest).
    Raises BackupError, having written nothing but the scratch folder, on any damage."""
    if not archive.is_file():
        raise BackupError(f"no backup file at {archive}")
    with tempfile.TemporaryDirectory(dir=scratch_parent, prefix="wuye-restore-") as name:
        folder = Path(name)
        try:
            with tarfile.open(archive, "r:") as tar:
                manifest = _manifest(tar)
                expected = manifest["files"]
                seen: set[str] = set()
                for member in tar:
                    if member.name in (MANIFEST, MANIFEST_SUM):
                        continue
                    relative = _safe_member(member.name)
                    if not member.isfile() or member.name not in expected:
                        raise BackupError(f"the archive holds {member.name!r}, which its manifest does not list")
                    stream = tar.extractfile(member)
                    assert stream is not None
                    out_path = folder / relative
                    out_path.parent.mkdir(parents=True, exist_ok=True)
                    digest = hashlib.sha256()
                    with out_path.open("wb") as out:
                        while chunk := stream.read(CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                    if digest.hexdigest() != expected[member.name]["sha256"]:
                        raise BackupError(
                            f"{member.name} in the backup is damaged (checksum differs from the manifest)"
                        )
                    seen.add(member.name)
                absent = sorted(set(expected) - seen)
                if absent:
                    raise BackupError(f"the backup is incomplete: {', '.join(absent[:5])} missing")
        except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as exc:
            raise BackupError(f"{archive} is not a readable backup (damaged or truncated): {exc}") from None
        yield folder, manifest


def _manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    def read(name: str) -> bytes:
        try:
            stream = tar.extractfile(name)
        except KeyError:
            raise BackupError(f"the file is not a backup of this app (no {name})") from None
        if stream is None:
            raise BackupError(f"the file is not a backup of this app ({name} is not a file)")
        return stream.read()

    body, recorded = read(MANIFEST), read(MANIFEST_SUM).decode().strip()
    if hashlib.sha256(body).hexdigest() != recorded:
        raise BackupError("the backup's manifest is damaged (its checksum differs)")
    manifest = json.loads(body)
    if manifest.get("format") != FORMAT or manifest.get("dialect") not in DATABASE:
        raise BackupError("the backup was written by another version of this app's backup format")
    return manifest


# --- restore -------------------------------------------------------------------------------------
def refuse_unless_empty(engine: sa.Engine, store: Storage) -> None:
    """The target must hold nothing: a restore never merges into or overwrites live data."""
    tables: list[str] = []
    if engine.dialect.name != "sqlite" or (sqlite_path(engine.url).exists() and sqlite_path(engine.url).stat().st_size):
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
    if tables:
        raise BackupError(f"the database is not empty ({len(tables)} tables): restore only into an empty one")
    if not store.is_empty():
        raise BackupError("the upload folder (file store) is not empty: restore only into an empty one")


def restore(
    archive: Path, engine: sa.Engine, store: Storage, pg_bin: str = "", scratch: Path | None = None
) -> Restored:
    """Check ``archive`` whole (unpacked under ``scratch``), then load it into the empty database
    and file store."""
    refuse_unless_empty(engine, store)
    with unpacked(archive, scratch if scratch is not None and scratch.is_dir() else None) as (folder, manifest):
        if manifest["dialect"] != engine.dialect.name:
            raise BackupError(f"a {manifest['dialect']} backup cannot be restored into {engine.dialect.name}")
        snapshot = folder / DATABASE[manifest["dialect"]]
        if engine.dialect.name == "sqlite":
            _sqlite_load(snapshot, engine)
        else:
            _pg_load(snapshot, engine, pg_bin)
        files = 0
        for name in manifest["files"]:
            if not name.startswith(FILES + "/"):
                continue
            store.put(str(PurePosixPath(name).relative_to(FILES)), (folder / name).read_bytes())
            files += 1
    problems = compare(engine, manifest)
    if problems:
        raise BackupError("restored, but it differs from the manifest: " + "; ".join(problems))
    return Restored(len(manifest["tables"]), sum(manifest["tables"].values()), files)


def _sqlite_load(snapshot: Path, engine: sa.Engine) -> None:
    engine.dispose()
    target = sqlite_path(engine.url)
    target.parent.mkdir(parents=True, exist_ok=True)
    source, copy = sqlite3.connect(snapshot), sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()


def _pg_load(snapshot: Path, engine: sa.Engine, pg_bin: str) -> None:
    url, env = _libpq(engine.url)
    done = subprocess.run(
        [
            _pg_tool("pg_restore", pg_bin),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            "-d",
            url,
            str(snapshot),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:  # one transaction: nothing of it stays
        raise BackupError(f"pg_restore failed, nothing restored: {done.stderr.strip()}")


def compare(engine: sa.Engine, manifest: dict[str, Any]) -> list[str]:
    """Where the database differs from the manifest: counts, tip, revision."""
    with engine.connect() as conn:
        state = _read_state(conn)
    problems = [
        f"{table}: {state['tables'].get(table)} rows, the manifest says {count}"
        for table, count in manifest["tables"].items()
        if state["tables"].get(table) != count
    ]
    problems += [f"table {t} is not in the manifest" for t in state["tables"] if t not in manifest["tables"]]
    if state["audit_tip"] != manifest["audit_tip"]:
        problems.append("the audit chain's tip differs from the manifest")
    if state["schema_revision"] != manifest["schema_revision"]:
        problems.append("the schema revision differs from the manifest")
    return problems
