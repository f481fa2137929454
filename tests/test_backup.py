"""``flask backup create | restore | verify`` on the test database (SQLite or PostgreSQL): a backup
taken while 8 writers write restores every write acknowledged before its snapshot, matches its
manifest and keeps an intact audit chain; purges and legal holds come back as they were; a damaged
file or a non-empty target is refused with a clear message and nothing written."""

from __future__ import annotations

import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from models import Department, KeyCustody, Staff, db
from models.attachment import Attachment, store
from models.retention import LegalHold, Tombstone
from ops import backup
from tests import databases
from tests.test_retention import closed, local, policy, purge
from workflow.audit import verify
from workflow.retention import place_hold

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
WRITERS = 8


@pytest.fixture()
def pg_bin(app: Flask) -> Iterator[None]:
    """pg_dump/pg_restore of the server's major version (15 here), as PG_BIN_DIR says in production."""
    before = app.config.get("PG_BIN_DIR", "")
    app.config["PG_BIN_DIR"] = str(PG_BIN) if PG_BIN.is_dir() else ""
    yield
    app.config["PG_BIN_DIR"] = before


@pytest.fixture()
def target(empty_database: Callable[[str], str], tmp_path: Path, app: Flask) -> Iterator[Flask]:
    """An app on an empty database and an empty instance folder: where a restore goes."""
    restored = databases.new_app(empty_database("restore"), tmp_path / "restored-instance")
    restored.config["PG_BIN_DIR"] = app.config.get("PG_BIN_DIR", "")
    yield restored
    with restored.app_context():
        db.session.remove()
        db.engine.dispose()


def create(app: Flask, folder: Path) -> Path:
    result = app.test_cli_runner().invoke(args=["backup", "create", str(folder)])
    assert result.exit_code == 0, result.output
    [made] = folder.glob("wuye-backup-*.tar")
    return made


def table_names(app: Flask) -> list[str]:
    with app.app_context():
        with db.engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
        db.engine.dispose()
    return names


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


class Writers:
    """8 threads inserting audited rows (departments) as fast as they can; each write counts as
    acknowledged, with its time, only once its commit returned."""

    def __init__(self, app: Flask) -> None:
        self.app, self.stop = app, threading.Event()
        self.acknowledged: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.write, args=(n,)) for n in range(WRITERS)]

    def write(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            key = f"w{n}-{i}"
            with self.app.app_context():
                try:
                    db.session.add(Department(key=key, name=f"写入 {key}"))
                    db.session.commit()
                except sa.exc.OperationalError:  # SQLite busy under 8 writers: not acknowledged
                    db.session.rollback()
                    continue
                finally:
                    db.session.remove()
            with self.lock:
                self.acknowledged.append((key, time.time()))
            i += 1

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)


def test_backup_while_8_writers_write_restores_every_acknowledged_write_and_an_intact_chain(
    app: Flask, staff_ids: dict[str, int], target: Flask, tmp_path: Path, pg_bin: None
) -> None:
    with app.test_request_context():
        owner = db.session.get(Staff, staff_ids["engineering"])
        kept = store(owner, "drawing", PDF, "图纸.pdf", owner)
        db.session.commit()
        drawing = (kept.path, kept.sha256)
    with Writers(app) as writers:
        deadline = time.monotonic() + 120
        while writers.count() < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        archive = create(app, tmp_path / "backups")
        done = writers.count()
        while writers.count() < done + 20 and time.monotonic() < deadline:  # writes go on after it
            time.sleep(0.05)
    with tarfile.open(archive) as tar:
        manifest = backup._manifest(tar)
    snapshot_at = datetime.fromisoformat(manifest["snapshot_at"]).timestamp()
    before = {key for key, at in writers.acknowledged if at < snapshot_at}
    assert len(before) >= 40 and len(writers.acknowledged) > len(before)

    result = target.test_cli_runner().invoke(args=["backup", "restore", str(archive)])
    assert result.exit_code == 0, result.output
    assert "counts match the manifest" in result.output and "chain intact" in result.output
    with target.app_context():
        restored_keys = set(db.session.scalars(sa.select(Department.key)))
        assert before <= restored_keys  # every write acknowledged before the snapshot
        assert backup.compare(db.engine, manifest) == []  # every table's count is the manifest's
        count, problems = verify(db.engine)
        assert problems == [] and count == manifest["audit_tip"]["seq"]
        row = db.session.scalar(sa.select(Attachment).where(Attachment.path == drawing[0]))
        assert row is not None and backup.sha256_of(Path(target.instance_path) / row.path) == drawing[1]
        db.session.remove()
        db.engine.dispose()
    assert manifest["tables"]["department"] == len(restored_keys)


def test_backup_verify_restores_into_scratch_and_checks_manifest_and_audit_chain(
    app: Flask, staff_ids: dict[str, int], tmp_path: Path, pg_bin: None
) -> None:
    archive = create(app, tmp_path / "backups")
    assert archive.stat().st_mode & 0o777 == 0o600  # personal data: readable by its owner only
    assert [p.name for p in archive.parent.iterdir()] == [archive.name]  # no work files left behind
    result = app.test_cli_runner().invoke(args=["backup", "verify", str(archive)])
    assert result.exit_code == 0, result.output
    assert "matches its manifest" in result.output and "chain intact" in result.output
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        with app.app_context():
            with db.engine.connect() as conn:
                left = conn.scalars(sa.text("SELECT datname FROM pg_database WHERE datname LIKE '%\\_verify\\_%'"))
                assert list(left) == []  # the scratch database is dropped


def test_ret_arc_9_purges_and_legal_holds_survive_a_restore(
    staff_ids: dict[str, int], app: Flask, target: Flask, tmp_path: Path, pg_bin: None
) -> None:
    with app.test_request_context():  # left before the CLI runs: a command uses the app it finds
        p = policy()
        held, gone = closed(local(2020, 1, 1)), closed(local(2020, 1, 1))
        place_hold("key_custody", held, "诉讼中", db.session.get(Staff, staff_ids["manager"]))
        db.session.commit()
        purge(p, staff_ids, now=datetime(2027, 6, 1, 4, 0, tzinfo=UTC))
        db.session.remove()
    archive = create(app, tmp_path / "backups")
    result = target.test_cli_runner().invoke(args=["backup", "restore", str(archive)])
    assert result.exit_code == 0, result.output
    with target.app_context():
        assert set(db.session.scalars(sa.select(KeyCustody.id))) == {held}  # the purged record stays gone
        stones = db.session.execute(sa.select(Tombstone.record_id, Tombstone.outcome)).all()
        assert [tuple(s) for s in stones] == [(gone, "purged")]
        holds = db.session.execute(sa.select(LegalHold.record_id, LegalHold.released_at)).all()
        assert [tuple(h) for h in holds] == [(held, None)]
        assert verify(db.engine)[1] == []  # the purged record's redacted audit rows still verify
        db.session.remove()
        db.engine.dispose()


def _damage(archive: Path, member: str) -> None:
    with tarfile.open(archive) as tar:
        info = tar.getmember(member)
    with archive.open("r+b") as stream:
        stream.seek(info.offset_data + info.size // 2)
        byte = stream.read(1)
        stream.seek(-1, 1)
        stream.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("damage", ["database", "manifest", "truncated"])
def test_a_damaged_backup_is_refused_with_a_clear_error_and_nothing_is_written(
    app: Flask, staff_ids: dict[str, int], target: Flask, tmp_path: Path, pg_bin: None, damage: str
) -> None:
    archive = create(app, tmp_path / "backups")
    with tarfile.open(archive) as tar:
        manifest = backup._manifest(tar)
    if damage == "database":
        _damage(archive, backup.DATABASE[manifest["dialect"]])
        expected = "is damaged (checksum differs from the manifest)"
    elif damage == "manifest":
        _damage(archive, backup.MANIFEST)
        expected = "manifest is damaged"
    else:
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
        expected = "damaged or truncated"
    result = target.test_cli_runner().invoke(args=["backup", "restore", str(archive)])
    assert result.exit_code == 1
    assert expected in result.output
    assert table_names(target) == []  # nothing written: the database is still empty
    assert files_under(Path(target.instance_path) / "uploads") == []
    verified = app.test_cli_runner().invoke(args=["backup", "verify", str(archive)])
    assert verified.exit_code == 1 and expected in verified.output


def test_restore_refuses_a_database_or_upload_folder_that_is_not_empty(
    app: Flask, staff_ids: dict[str, int], target: Flask, tmp_path: Path, pg_bin: None
) -> None:
    archive = create(app, tmp_path / "backups")
    result = app.test_cli_runner().invoke(args=["backup", "restore", str(archive)])
    assert result.exit_code == 1 and "the database is not empty" in result.output
    uploads = Path(target.instance_path) / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "left-over").write_bytes(b"x")
    result = target.test_cli_runner().invoke(args=["backup", "restore", str(archive)])
    assert result.exit_code == 1 and "is not empty" in result.output
    assert table_names(target) == []
