"""The append-only audit trail: one row per create, update, delete, transition, sign-off, login,
export and confidential view, hash-chained with a key kept outside the database.

The database itself refuses UPDATE, DELETE (and on PostgreSQL TRUNCATE) of ``audit_entry``
through triggers (created with the table, and by migration e12a00000001 on a migrated
database), so neither the app nor a stray SQL console can rewrite history; ``flask audit
verify`` catches whatever gets past that (a superuser dropping the triggers, a file edit), and
the signed head and the checkpoints outside the database catch a trail cut short or wiped.

One UPDATE is let through: retention's redaction of a purged record's rows (REGULATIONS §10),
which empties ``changes`` and ``comment`` and sets the three ``redact*`` columns together,
leaving every chained column as it was, and only while a running retention batch holds a permit
for the row's record (``AuditRedactionPermit``). The seal (an HMAC with the audit key) is what
tells retention's redaction from someone else's; ``verify`` checks it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import UTCDateTime, db, utcnow

GENESIS = "0" * 64  # the hash before the first row


class AuditEntry(db.Model):
    """One audited event. ``seq`` is the chain order; ``hash`` = HMAC(key, prev_hash, row).

    ``actor_id`` has no foreign key on purpose: a foreign key's ON DELETE would have to
    update this table, and the trail must outlive the accounts it names.
    """

    __tablename__ = "audit_entry"
    __table_args__ = (
        sa.Index("ix_audit_entry_record", "record_type", "record_id", "seq"),
        sa.Index("ix_audit_entry_action_at", "action", "at"),
        sa.Index("ix_audit_entry_actor_at", "actor_id", "at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger, unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(sa.Integer)
    actor_name: Mapped[str | None] = mapped_column(sa.String(64))
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(32))
    record_type: Mapped[str | None] = mapped_column(sa.String(64))
    record_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    transition: Mapped[str | None] = mapped_column(sa.String(64))
    # JSON {"field": [old, new]} with sensitive values masked. Retention may redact it and the
    # comment, which is why the chain covers ``digest`` (SHA-256 of both), not the text itself.
    changes: Mapped[str | None] = mapped_column(sa.Text)
    comment: Mapped[str | None] = mapped_column(sa.Text)
    digest: Mapped[str] = mapped_column(sa.String(64))
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))
    # Set together, once, by retention when the record this row describes is purged; the seal is
    # HMAC(key, seq, hash, batch, time), so a redaction made any other way fails ``verify``.
    redacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    redacted_by_batch: Mapped[int | None] = mapped_column(sa.Integer)
    redaction_seal: Mapped[str | None] = mapped_column(sa.String(64))


class AuditHead(db.Model):
    """The chain's tip: one row, locked by every append so two writers never fork the chain.

    ``signature`` is HMAC(AUDIT_KEY, seq, last_hash) (``head_signature``), rewritten by every
    append: someone with only database access can neither cut the trail's tail and move the head
    back to match, nor reset the head to an empty trail, without the key. Rolling the head back to
    an older tip with that tip's old signature is what ``flask audit checkpoint`` catches.
    """

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(sa.String(64), default=GENESIS)
    signature: Mapped[str | None] = mapped_column(sa.String(64))


class AuditRedactionPermit(db.Model):
    """The records whose audit rows retention is redacting right now.

    Written and removed inside the purge's own transaction (``workflow.audit.redact``), so when
    committed the table is always empty. The UPDATE guard accepts a redaction only for a row whose
    record holds a permit of a *running* retention batch: never from an ordinary connection.
    """

    __tablename__ = "audit_redaction_permit"
    __audit__ = False
    batch_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    record_type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    record_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)


def head_signature(key: bytes, seq: int, last_hash: str) -> str:
    """What proves the head was written by the app: binds the tip's seq and hash to the key."""
    canonical = json.dumps(["head", seq, last_hash], separators=(",", ":"))
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


# Columns a redaction must leave exactly as they were (everything but changes, comment, redact*).
KEPT_BY_REDACTION = ("id", "seq", "at", "actor_id", "actor_name", "ip", "action", "record_type", "record_id",
                     "transition", "digest", "prev_hash", "hash")
_SAME = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in KEPT_BY_REDACTION)
_REDACTION = ("OLD.redacted_at IS NULL AND OLD.redacted_by_batch IS NULL AND OLD.redaction_seal IS NULL"
              " AND NEW.redacted_at IS NOT NULL AND NEW.redacted_by_batch IS NOT NULL"
              " AND NEW.redaction_seal IS NOT NULL AND NEW.changes IS NULL AND NEW.comment IS NULL")
# Only while retention purges the row's record: its permit, of the batch the row names, running.
_PURGING = ("EXISTS (SELECT 1 FROM audit_redaction_permit p JOIN retention_batch b ON b.id = p.batch_id"
            " WHERE p.batch_id = NEW.redacted_by_batch AND p.record_type = OLD.record_type"
            " AND p.record_id = OLD.record_id AND b.state = 'running')")

SQLITE_GUARDS = [
    f"""CREATE TRIGGER IF NOT EXISTS audit_entry_no_update BEFORE UPDATE ON audit_entry
       WHEN NOT ({_REDACTION} AND {_SAME} AND {_PURGING})
       BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_entry_no_delete BEFORE DELETE ON audit_entry
       BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only'); END""",
]
_PG_SAME = "({}) IS NOT DISTINCT FROM ({})".format(", ".join(f"NEW.{c}" for c in KEPT_BY_REDACTION),
                                                    ", ".join(f"OLD.{c}" for c in KEPT_BY_REDACTION))
POSTGRES_GUARDS = [
    # TG_OP is tested first, alone: a statement-level (TRUNCATE) call has no OLD/NEW to read.
    f"""CREATE OR REPLACE FUNCTION audit_entry_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP = 'UPDATE' THEN
           IF {_REDACTION} AND {_PG_SAME} AND {_PURGING} THEN
             RETURN NEW;
           END IF;
         END IF;
         RAISE EXCEPTION 'audit_entry is append-only';
       END $$""",
    """CREATE TRIGGER audit_entry_no_change BEFORE UPDATE OR DELETE ON audit_entry
       FOR EACH ROW EXECUTE FUNCTION audit_entry_refuse()""",
    """CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_entry
       FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_refuse()""",
]


# The head only moves forward and never disappears: truncating the chain's tail and rolling
# the head back to match would otherwise go unnoticed.
SQLITE_HEAD_GUARDS = [
    """CREATE TRIGGER IF NOT EXISTS audit_head_no_delete BEFORE DELETE ON audit_head
       BEGIN SELECT RAISE(ABORT, 'audit_head cannot be removed'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_head_forward_only BEFORE UPDATE ON audit_head
       WHEN NEW.seq < OLD.seq OR NEW.id != OLD.id
       BEGIN SELECT RAISE(ABORT, 'audit_head only moves forward'); END""",
]
POSTGRES_HEAD_GUARDS = [
    """CREATE OR REPLACE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP <> 'UPDATE' OR NEW.seq < OLD.seq OR NEW.id <> OLD.id THEN
           RAISE EXCEPTION 'audit_head only moves forward';
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER audit_head_forward_only BEFORE UPDATE OR DELETE ON audit_head
       FOR EACH ROW EXECUTE FUNCTION audit_head_guard()""",
    """CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
       FOR EACH STATEMENT EXECUTE FUNCTION audit_head_guard()""",
]


def guard_statements(dialect: str) -> list[str]:
    """The DDL that makes ``audit_entry`` append-only on this database (create_all and tests).

    Migrations keep their own frozen copy of the text they ran (e12a00000001): an edit here
    needs a new migration, which tests/test_audit_integrity.py checks by comparing the two.
    """
    return POSTGRES_GUARDS if dialect == "postgresql" else SQLITE_GUARDS


def head_guard_statements(dialect: str) -> list[str]:
    return POSTGRES_HEAD_GUARDS if dialect == "postgresql" else SQLITE_HEAD_GUARDS


@sa.event.listens_for(AuditEntry.__table__, "after_create")
def _install_guards(table: sa.Table, connection: sa.Connection, **kw: object) -> None:
    for statement in guard_statements(connection.dialect.name):
        connection.exec_driver_sql(statement)


@sa.event.listens_for(AuditHead.__table__, "after_create")
def _install_head(table: sa.Table, connection: sa.Connection, **kw: object) -> None:
    """The genesis head, signed when the app's key is at hand (create_all runs in an app context)."""
    from flask import current_app, has_app_context

    key = current_app.config.get("AUDIT_KEY") if has_app_context() else None
    signature = head_signature(key.encode(), 0, GENESIS) if key else None
    connection.execute(table.insert().values(id=1, seq=0, last_hash=GENESIS, signature=signature))
    for statement in head_guard_statements(connection.dialect.name):
        connection.exec_driver_sql(statement)
