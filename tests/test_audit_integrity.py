"""ACC-7: the audit trail stays trustworthy on a database built the way a deployment builds it.

A database of its own is migrated (``flask db upgrade``) on SQLite or on the PostgreSQL server
of TEST_DATABASE_URL, then restored from that template before each test: the database itself
refuses rewriting the trail, the duty log (DTY-3) and the chain's head; ``flask audit verify``
fails on a trail cut short or wiped, on a missing or forged head; a head rolled back with its old
signature is caught by ``flask audit checkpoint`` + ``verify --checkpoints``. At least one test
runs the CLI as a deployment does: a separate process, settings from the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, current_app
from flask_migrate import downgrade, upgrade

from app import ROOT, create_app
from models import AuditEntry, AuditHead, Estate, db
from models.audit import GENESIS, head_signature
from models.base import utcnow
from models.duty import DutyLog
from workflow.audit import HeadMissing, digest_of, row_hash, verify

KEY = "test-audit-key-long-enough-for-production"  # the CLI runs with PM_ENV=production (checked at start)
SECRETS = {"SECRET_KEY": "test-secret-key-long-enough-for-production", "FIELD_ENCRYPTION_KEYS": "t1:" + "A" * 43,
           "BLIND_INDEX_KEY": "test-blind-index-key-long-enough-for-production", "AUDIT_KEY": KEY}
MIGRATIONS = str(ROOT / "migrations")
BEFORE = "60df8af067b4"  # the revision before e12a00000001
_codes = count(1)


# --- a migrated database of the test's own ---------------------------------------------------------
def database_url(root: Path, name: str) -> str:
    """SQLite file under ``root``, or ``<TEST_DATABASE_URL's db>_<name>[_<xdist worker>]``."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{root / name}.db"
    parsed = sa.engine.make_url(url)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return parsed.set(database=f"{parsed.database}_{name}" + (f"_{worker}" if worker else "")).render_as_string(
        hide_password=False)


def recreate(url: str, template: str | None = None) -> None:
    """An empty database at ``url`` (or a copy of ``template``), whatever was there before."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(parsed.database + suffix).unlink(missing_ok=True)
        if template:
            with sqlite3.connect(sa.engine.make_url(template).database) as src, sqlite3.connect(parsed.database) as dst:
                src.backup(dst)
        return
    admin = sa.create_engine(os.environ["TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
        source = f' TEMPLATE "{sa.engine.make_url(template).database}"' if template else ""
        conn.execute(sa.text(f'CREATE DATABASE "{parsed.database}"{source}'))
    admin.dispose()


def drop(url: str) -> None:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return
    admin = sa.create_engine(os.environ["TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    admin.dispose()


@dataclass
class Deployed:
    app: Flask
    url: str
    template: str
    checkpoints: Path

    def reset(self, *, empty: bool = False) -> None:
        """Back to the freshly migrated database (or to no schema at all)."""
        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()
        recreate(self.url, None if empty else self.template)
        self.checkpoints.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def deployed_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    root = tmp_path_factory.mktemp("deployed")
    url, template = database_url(root, "audit_mig"), database_url(root, "audit_tpl")
    recreate(url)
    app = create_app({**SECRETS, "SQLALCHEMY_DATABASE_URI": url,
                      "AUDIT_CHECKPOINT_FILE": str(root / "outside" / "checkpoints.jsonl")})
    app.instance_path = str(root / "instance")
    with app.app_context():
        upgrade(directory=MIGRATIONS)  # what `flask db upgrade` runs
        db.engine.dispose()
    recreate(template, url)
    deployed = Deployed(app, url, template, root / "outside" / "checkpoints.jsonl")
    yield deployed
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    drop(url)
    drop(template)


@pytest.fixture()
def deployed(deployed_db: Deployed) -> Iterator[Deployed]:
    deployed_db.reset()
    with deployed_db.app.app_context():
        yield deployed_db
        db.session.remove()


def postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


def write(n: int) -> None:
    """``n`` audited writes, each its own transaction (one chain row each)."""
    for _ in range(n):
        code = next(_codes)
        db.session.add(Estate(code=f"m{code}", name=f"小区{code}", kind="residential"))
        db.session.commit()


def head() -> tuple[int, str, str | None]:
    with db.engine.connect() as conn:
        return tuple(conn.execute(sa.select(AuditHead.seq, AuditHead.last_hash, AuditHead.signature)).one())


@contextmanager
def superuser() -> Iterator[sa.Connection]:
    """The attacker who may lift the guards: triggers off for the audit tables, then restored."""
    db.session.remove()
    with db.engine.begin() as conn:
        if postgres():
            for table in ("audit_entry", "audit_head"):
                conn.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            saved = conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                                         " AND tbl_name IN ('audit_entry', 'audit_head')")).all()
            for name, _ in saved:
                conn.execute(sa.text(f"DROP TRIGGER {name}"))
        yield conn
        if postgres():
            for table in ("audit_entry", "audit_head"):
                conn.execute(sa.text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
        else:
            for _, sql in saved:
                conn.exec_driver_sql(sql)


def cli(*args: str) -> tuple[int, str]:
    result = current_app.test_cli_runner().invoke(args=["audit", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash is not the clean "exit 1" the tests expect
    return result.exit_code, result.output


# --- the database refuses --------------------------------------------------------------------------
def test_acc_7_migrated_database_refuses_rewriting_the_trail_the_head_and_the_duty_log(deployed) -> None:
    write(4)
    db.session.add(DutyLog(kind="other", body="夜班巡查正常", created_at=utcnow()))
    db.session.commit()
    rows = verify(db.engine)[0]
    last = rows
    refused: list[tuple[str, str]] = [
        ("UPDATE audit_entry SET comment = 'forged'", "append-only"),
        ("UPDATE audit_entry SET actor_name = 'someone' WHERE seq = 2", "append-only"),
        (f"DELETE FROM audit_entry WHERE seq = {last}", "append-only"),
        ("DELETE FROM audit_entry", "append-only"),
        # the redaction's exact shape, from an ordinary connection (no running batch purging the record)
        ("UPDATE audit_entry SET changes = NULL, comment = NULL, redacted_at = '2030-01-01 00:00:00',"
         " redacted_by_batch = 1, redaction_seal = 'ffff' WHERE seq = 1", "append-only"),
        ("UPDATE duty_log SET body = 'forged'", "duty_log is append-only"),
        ("DELETE FROM duty_log", "duty_log is append-only"),
        ("DELETE FROM audit_head", "audit_head"),
        ("UPDATE audit_head SET seq = 0, last_hash = '" + GENESIS + "'", "audit_head only moves forward"),
    ]
    if postgres():
        refused += [("TRUNCATE audit_entry", "append-only"), ("TRUNCATE duty_log CASCADE", "duty_log is append-only"),
                    ("TRUNCATE audit_head", "audit_head only moves forward")]
    before = head()
    for statement, message in refused:
        with pytest.raises(sa.exc.DBAPIError, match=message):
            with db.engine.begin() as conn:
                conn.execute(sa.text(statement))
    assert head() == before and verify(db.engine) == (rows, [])
    with db.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT body FROM duty_log")) == "夜班巡查正常"


def normalised(sql: str | None) -> str:
    return " ".join((sql or "").replace("IF NOT EXISTS ", "").split())


def guards(conn: sa.Connection) -> dict[str, str]:
    """Triggers with their functions, named indexes and CHECK constraints: the DDL beside the tables."""
    if conn.dialect.name == "postgresql":
        found = {f"trigger {name}": f"{definition} / {normalised(source)}" for name, definition, source in conn.execute(
            sa.text("SELECT t.tgname, pg_get_triggerdef(t.oid), p.prosrc FROM pg_trigger t"
                    " JOIN pg_proc p ON p.oid = t.tgfoid WHERE NOT t.tgisinternal"))}
        found |= {f"index {name}": sql for name, sql in conn.execute(sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename <> 'alembic_version'"))}
        found |= {f"check {name}": sql for name, sql in conn.execute(sa.text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'c'"))}
        return found
    found = {f"{kind} {name}": normalised(sql) for kind, name, sql in conn.execute(sa.text(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('trigger', 'index') AND sql IS NOT NULL"))}
    for table, sql in conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")):
        for name, check in re.findall(r"CONSTRAINT (\w+) CHECK \((.+?)\)(?:,|\s*\)\s*$)", normalised(sql)):
            found[f"check {table}.{name}"] = check
    return found


def test_acc_7_migrations_install_exactly_the_guards_the_models_declare(deployed_db: Deployed, tmp_path) -> None:
    """One schema source: what `flask db upgrade` builds has every trigger, function, index and CHECK
    that create_all builds from the models, with the same text (the drift that left the trail open)."""
    deployed_db.reset()
    other = database_url(tmp_path, "audit_create_all")
    recreate(other)
    try:
        with deployed_db.app.app_context():
            models_engine = sa.create_engine(other)
            db.metadata.create_all(models_engine)
            with models_engine.connect() as conn:
                declared = guards(conn)
            models_engine.dispose()
            with db.engine.connect() as conn:
                migrated = guards(conn)
            db.engine.dispose()
    finally:
        drop(other)
    assert any(name.startswith("trigger audit_entry") for name in declared)
    missing = {k: v for k, v in declared.items() if migrated.get(k) != v}
    extra = {k: v for k, v in migrated.items() if k not in declared}
    assert (missing, extra) == ({}, {})


# --- verify fails on a trail cut short, wiped, or a head not the app's -----------------------------
def test_acc_7_cli_as_deployed_verifies_checkpoints_and_fails_on_a_truncated_trail(deployed) -> None:
    """`flask audit ...` in a process of its own, settings from the environment as in production."""
    write(6)
    db.session.remove()
    env = {**os.environ, **SECRETS, "PM_ENV": "production", "DATABASE_URL": deployed.url,
           "AUDIT_CHECKPOINT_FILE": str(deployed.checkpoints), "FLASK_APP": "app",
           "PM_INSTANCE_PATH": str(deployed.checkpoints.parent.parent / "instance-cli")}  # not the checkout's
    env.pop("TEST_DATABASE_URL", None)
    flask = [str(Path(sys.executable).parent / "flask"), "--app", "app", "audit"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*flask, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    intact = run("verify")
    assert (intact.returncode, intact.stdout) == (0, "audit trail: 6 rows, chain intact\n"), intact.stderr
    saved = run("checkpoint")
    assert saved.returncode == 0 and "row 6" in saved.stdout, saved.stderr
    [line] = [json.loads(text) for text in deployed.checkpoints.read_text().splitlines()]
    assert (line["seq"], line["hash"]) == head()[:2]
    with superuser() as conn:  # the last two rows cut off; the head left as it was
        conn.execute(sa.delete(AuditEntry).where(AuditEntry.seq > 4))
    cut = run("verify", "--checkpoints", str(deployed.checkpoints))
    assert cut.returncode == 1
    assert "seq 5: removed: rows 5..6 are missing: the chain ends before the recorded tip" in cut.stderr
    assert "line 1: checkpointed row 6 is missing" in cut.stderr


def test_acc_7_trail_cut_short_with_the_head_moved_to_match_fails_verify(deployed) -> None:
    write(5)
    with db.engine.connect() as conn:
        row_3 = conn.scalar(sa.select(AuditEntry.hash).where(AuditEntry.seq == 3))
    with superuser() as conn:  # rows 4 and 5 cut off, the head moved back to row 3 without the key
        conn.execute(sa.delete(AuditEntry).where(AuditEntry.seq > 3))
        conn.execute(sa.update(AuditHead).values(seq=3, last_hash=row_3))
    code, output = cli("verify")
    assert code == 1 and "seq 3: head: the head's signature is missing or invalid" in output
    assert "audit trail: 3 rows, 1 problem(s)" in output


def test_acc_7_wiped_trail_fails_verify_however_the_head_is_reset(deployed) -> None:
    write(3)
    assert cli("verify") == (0, "audit trail: 3 rows, chain intact\n")
    assert cli("checkpoint")[0] == 0
    with superuser() as conn:
        conn.execute(sa.delete(AuditEntry))
    code, output = cli("verify")
    assert code == 1 and "seq 3: removed: the trail is empty but the recorded tip is row 3" in output
    for signature in (None, "0" * 64, head()[2]):  # unsigned, forged, or the signature of the old tip
        with superuser() as conn:
            conn.execute(sa.update(AuditHead).values(seq=0, last_hash=GENESIS, signature=signature))
        code, output = cli("verify")
        assert code == 1 and "seq 0: head: the head's signature is missing or invalid" in output
    # Only a copy of the genesis head's own signature (from the empty database) makes the reset look
    # like a fresh install: that is a rollback, and the checkpoints outside the database name it.
    with superuser() as conn:
        conn.execute(sa.update(AuditHead).values(signature=head_signature(KEY.encode(), 0, GENESIS)))
    assert cli("verify")[0] == 0
    code, output = cli("verify", "--checkpoints", str(deployed.checkpoints))
    assert code == 1 and "line 1: checkpointed row 3 is missing" in output


def test_acc_7_missing_or_forged_head_fails_verify_and_stops_writes(deployed) -> None:
    write(2)
    with superuser() as conn:
        conn.execute(sa.update(AuditHead).values(signature="0" * 64))
    code, output = cli("verify")
    assert code == 1 and "seq 2: head: the head's signature is missing or invalid" in output
    with superuser() as conn:
        conn.execute(sa.delete(AuditHead))
    code, output = cli("verify")
    assert code == 1 and "the chain's head row is missing" in output
    db.session.add(Estate(code="after", name="无头之后", kind="residential"))
    with pytest.raises(HeadMissing):  # a new chain from seq 1 would hide the old one
        db.session.commit()
    db.session.rollback()
    assert cli("checkpoint")[0] == 1


def test_acc_7_head_rolled_back_with_its_old_signature_is_caught_by_the_checkpoints(deployed) -> None:
    write(3)
    old_tip = head()
    assert cli("checkpoint")[0] == 0
    write(3)
    assert cli("checkpoint")[0] == 0
    assert cli("verify", "--checkpoints", str(deployed.checkpoints)) == (
        0, "audit trail: 6 rows, chain intact\ncheckpoints: 2 checked, every checkpointed row present\n")
    with superuser() as conn:  # rows 4..6 cut off, the head put back to row 3 with row 3's own signature
        conn.execute(sa.delete(AuditEntry).where(AuditEntry.seq > 3))
        conn.execute(sa.update(AuditHead).values(seq=old_tip[0], last_hash=old_tip[1], signature=old_tip[2]))
    assert cli("verify")[0] == 0  # consistent in itself: only something outside the database can tell
    code, output = cli("verify", "--checkpoints", str(deployed.checkpoints))
    assert code == 1
    assert "seq 6: checkpoint: line 2: row 6 was checkpointed but the head is at 3: the trail was rolled back" in output
    assert "seq 6: checkpoint: line 2: checkpointed row 6 is missing" in output


def test_acc_7_fresh_migrated_database_has_a_signed_empty_trail(deployed) -> None:
    assert head() == (0, GENESIS, head_signature(KEY.encode(), 0, GENESIS))
    assert cli("verify") == (0, "audit trail: 0 rows, chain intact\n")
    assert cli("checkpoint")[0] == 0
    assert cli("verify", "--checkpoints", str(deployed.checkpoints))[0] == 0


# --- the migration on an existing database, and back ------------------------------------------------
def chain_rows(n: int) -> tuple[list[dict[str, Any]], str]:
    """Rows as the app wrote them before this revision (the chain itself did not change)."""
    rows, prev, key = [], GENESIS, KEY.encode()
    for seq in range(1, n + 1):
        row = {"seq": seq, "at": utcnow(), "actor_id": None, "actor_name": "system", "ip": None,
               "action": "create", "record_type": "estate", "record_id": seq, "transition": None,
               "changes": json.dumps({"name": [None, f"旧{seq}"]}, ensure_ascii=False), "comment": None}
        row["digest"] = digest_of(row["changes"], row["comment"])
        row["prev_hash"], row["hash"] = prev, row_hash(key, row, prev)
        prev = row["hash"]
        rows.append(row)
    return rows, prev


def triggers() -> set[str]:
    query = ("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal" if postgres()
             else "SELECT name FROM sqlite_master WHERE type = 'trigger'")
    with db.engine.connect() as conn:
        return set(conn.scalars(sa.text(query)))


def test_acc_7_migration_guards_and_signs_an_existing_trail_and_downgrades(deployed_db: Deployed) -> None:
    deployed_db.reset(empty=True)
    with deployed_db.app.app_context():
        upgrade(directory=MIGRATIONS, revision=BEFORE)
        rows, tip = chain_rows(5)
        with db.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO audit_entry (seq, at, actor_id, actor_name, ip, action, record_type,"
                                 " record_id, transition, changes, comment, digest, prev_hash, hash) VALUES"
                                 " (:seq, :at, :actor_id, :actor_name, :ip, :action, :record_type, :record_id,"
                                 " :transition, :changes, :comment, :digest, :prev_hash, :hash)"), rows)
            conn.execute(sa.text("UPDATE audit_head SET seq = 5, last_hash = :tip"), {"tip": tip})
        before = triggers()
        upgrade(directory=MIGRATIONS)
        assert head() == (5, tip, head_signature(KEY.encode(), 5, tip))
        assert verify(db.engine) == (5, [])
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM audit_entry WHERE seq = 5"))
        write(1)  # the app goes on appending to the old chain
        assert verify(db.engine) == (6, [])
        db.session.remove()
        downgrade(directory=MIGRATIONS, revision=BEFORE)
        assert triggers() == before
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("audit_head")}
        assert "signature" not in columns and not sa.inspect(db.engine).has_table("audit_redaction_permit")
        upgrade(directory=MIGRATIONS)
        assert verify(db.engine) == (6, [])
        db.session.remove()
        db.engine.dispose()


# --- checkpoints: where they go, and that they are the key's --------------------------------------
def test_acc_7_checkpoint_file_comes_from_the_settings(app, runner, db_session, monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(app.config, "AUDIT_CHECKPOINT_FILE", "")
    default = Path(app.instance_path) / "audit-checkpoints.jsonl"
    default.unlink(missing_ok=True)
    try:  # development: under instance/
        assert runner.invoke(args=["audit", "checkpoint"]).exit_code == 0 and default.is_file()
    finally:
        default.unlink(missing_ok=True)
    monkeypatch.setitem(app.config, "PM_ENV", "production")  # production: named, or nothing is written
    result = runner.invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 1 and "AUDIT_CHECKPOINT_FILE is not set" in result.output
    monkeypatch.setitem(app.config, "AUDIT_CHECKPOINT_FILE", str(tmp_path / "offsite" / "audit.jsonl"))
    result = runner.invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 0 and len((tmp_path / "offsite" / "audit.jsonl").read_text().splitlines()) == 1


def test_acc_7_checkpoint_lines_are_signed_and_every_line_is_checked(app, runner, db_session, monkeypatch,
                                                                      tmp_path) -> None:
    path = tmp_path / "audit.jsonl"
    monkeypatch.setitem(app.config, "AUDIT_CHECKPOINT_FILE", str(path))

    def checked() -> tuple[int, str]:
        result = runner.invoke(args=["audit", "verify", "--checkpoints", str(path)])
        return result.exit_code, result.output

    assert runner.invoke(args=["audit", "checkpoint"]).exit_code == 0
    good = path.read_text()
    assert checked()[0] == 0
    line = json.loads(good)
    with db.engine.connect() as conn:
        other = conn.execute(sa.select(AuditEntry.seq, AuditEntry.hash).where(AuditEntry.seq == 1)).one()
    forged = [
        {**line, "seq": other.seq, "hash": other.hash},                # moved to another row
        {**line, "at": "2020-01-01T00:00:00+00:00"},                  # re-dated
        {**line, "hmac": hmac.new(b"another key", b"x", hashlib.sha256).hexdigest()},
    ]
    for bad in forged:
        path.write_text(good + json.dumps(bad) + "\n")
        code, output = checked()
        assert code == 1 and "line 2: the signature is invalid" in output
    path.write_text(good + "not a checkpoint\n")
    code, output = checked()
    assert code == 1 and f"line 2 of {path} is not a checkpoint" in output
    path.write_text("\n")
    code, output = checked()
    assert code == 1 and "holds no checkpoint" in output
    path.unlink()
    code, output = checked()
    assert code == 1 and f"no checkpoint file at {path}" in output
