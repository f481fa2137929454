"""Audit trail append-only on migrated databases; redaction only while purging; signed head

Revision ID: e12a00000001
Revises: 60df8af067b4
Create Date: 2026-12-02 07:00:00

Until now only ``create_all`` installed the audit guards: a database built by ``flask db
upgrade`` had no DELETE trigger on ``audit_entry`` (SQLite) or no audit trigger at all
(PostgreSQL). This revision installs exactly the DDL the models declare, on existing and new
databases alike (dropped first where present, so a database built by ``create_all`` and stamped
ends the same):

- ``audit_entry``: UPDATE, DELETE (and TRUNCATE on PostgreSQL) refused; the one UPDATE let
  through is retention's sealed redaction, and now only while a running retention batch holds a
  permit for the row's record (new table ``audit_redaction_permit``), never from an ordinary
  connection;
- ``audit_head``: the forward-only guards again, and a ``signature`` column, HMAC(AUDIT_KEY,
  seq, last_hash); the existing head is signed here with the app's key;
- ``duty_log``: the DTY-3 guards again (TRUNCATE included on PostgreSQL).

The SQL is frozen in this file on purpose: later edits of the models must not change what an
old revision did. tests/test_audit_integrity.py compares a migrated database with ``create_all``.
The downgrade restores revision 60df8af067b4 exactly (its weaker guards included).
"""
import hashlib
import hmac
import json
import logging

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e12a00000001'
down_revision = '60df8af067b4'
branch_labels = None
depends_on = None

KEPT = ("id", "seq", "at", "actor_id", "actor_name", "ip", "action", "record_type", "record_id",
        "transition", "digest", "prev_hash", "hash")
REDACTION = ("OLD.redacted_at IS NULL AND OLD.redacted_by_batch IS NULL AND OLD.redaction_seal IS NULL"
             " AND NEW.redacted_at IS NOT NULL AND NEW.redacted_by_batch IS NOT NULL"
             " AND NEW.redaction_seal IS NOT NULL AND NEW.changes IS NULL AND NEW.comment IS NULL")
PURGING = ("EXISTS (SELECT 1 FROM audit_redaction_permit p JOIN retention_batch b ON b.id = p.batch_id"
           " WHERE p.batch_id = NEW.redacted_by_batch AND p.record_type = OLD.record_type"
           " AND p.record_id = OLD.record_id AND b.state = 'running')")
SQLITE_SAME = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in KEPT)
PG_SAME = "({}) IS NOT DISTINCT FROM ({})".format(", ".join(f"NEW.{c}" for c in KEPT),
                                                   ", ".join(f"OLD.{c}" for c in KEPT))
DUTY_PURGING = ("EXISTS (SELECT 1 FROM tombstone t JOIN retention_batch b ON b.id = t.batch_id"
                " WHERE t.record_type = 'duty_log' AND t.record_id = OLD.id AND t.outcome IS NULL"
                " AND b.state = 'running')")

SQLITE_UP = [
    "DROP TRIGGER IF EXISTS audit_entry_no_update",
    "DROP TRIGGER IF EXISTS audit_entry_no_delete",
    f"""CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry
       WHEN NOT ({REDACTION} AND {SQLITE_SAME} AND {PURGING})
       BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only'); END""",
    """CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry
       BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only'); END""",
    "DROP TRIGGER IF EXISTS audit_head_no_delete",
    "DROP TRIGGER IF EXISTS audit_head_forward_only",
    """CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
       BEGIN SELECT RAISE(ABORT, 'audit_head cannot be removed'); END""",
    """CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head
       WHEN NEW.seq < OLD.seq OR NEW.id != OLD.id
       BEGIN SELECT RAISE(ABORT, 'audit_head only moves forward'); END""",
    "DROP TRIGGER IF EXISTS duty_log_no_update",
    "DROP TRIGGER IF EXISTS duty_log_no_delete",
    """CREATE TRIGGER duty_log_no_update BEFORE UPDATE ON duty_log
           BEGIN SELECT RAISE(ABORT, 'duty_log is append-only'); END""",
    f"""CREATE TRIGGER duty_log_no_delete BEFORE DELETE ON duty_log
           WHEN NOT {DUTY_PURGING}
           BEGIN SELECT RAISE(ABORT, 'duty_log is append-only'); END""",
]
POSTGRES_UP = [
    f"""CREATE OR REPLACE FUNCTION audit_entry_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP = 'UPDATE' THEN
           IF {REDACTION} AND {PG_SAME} AND {PURGING} THEN
             RETURN NEW;
           END IF;
         END IF;
         RAISE EXCEPTION 'audit_entry is append-only';
       END $$""",
    "DROP TRIGGER IF EXISTS audit_entry_no_change ON audit_entry",
    "DROP TRIGGER IF EXISTS audit_entry_no_truncate ON audit_entry",
    """CREATE TRIGGER audit_entry_no_change BEFORE UPDATE OR DELETE ON audit_entry
       FOR EACH ROW EXECUTE FUNCTION audit_entry_refuse()""",
    """CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_entry
       FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_refuse()""",
    """CREATE OR REPLACE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP <> 'UPDATE' OR NEW.seq < OLD.seq OR NEW.id <> OLD.id THEN
           RAISE EXCEPTION 'audit_head only moves forward';
         END IF;
         RETURN NEW;
       END $$""",
    "DROP TRIGGER IF EXISTS audit_head_forward_only ON audit_head",
    "DROP TRIGGER IF EXISTS audit_head_no_truncate ON audit_head",
    """CREATE TRIGGER audit_head_forward_only BEFORE UPDATE OR DELETE ON audit_head
       FOR EACH ROW EXECUTE FUNCTION audit_head_guard()""",
    """CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
       FOR EACH STATEMENT EXECUTE FUNCTION audit_head_guard()""",
    f"""CREATE OR REPLACE FUNCTION duty_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 IF TG_OP = 'DELETE' THEN
                   IF {DUTY_PURGING} THEN
                     RETURN OLD;
                   END IF;
                 END IF;
                 RAISE EXCEPTION 'duty_log is append-only';
               END $$""",
    "DROP TRIGGER IF EXISTS duty_log_no_change ON duty_log",
    "DROP TRIGGER IF EXISTS duty_log_no_truncate ON duty_log",
    """CREATE TRIGGER duty_log_no_change BEFORE UPDATE OR DELETE ON duty_log
               FOR EACH ROW EXECUTE FUNCTION duty_log_refuse()""",
    """CREATE TRIGGER duty_log_no_truncate BEFORE TRUNCATE ON duty_log
               FOR EACH STATEMENT EXECUTE FUNCTION duty_log_refuse()""",
]

# What revision 60df8af067b4 left: the redaction-shaped UPDATE accepted from any connection, no
# DELETE guard on SQLite, and on PostgreSQL the function without any trigger calling it.
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS audit_entry_no_delete",
    "DROP TRIGGER IF EXISTS audit_entry_no_update",
    f"""CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry
       WHEN NOT ({REDACTION} AND {SQLITE_SAME})
       BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only'); END""",
]
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS audit_entry_no_truncate ON audit_entry",
    "DROP TRIGGER IF EXISTS audit_entry_no_change ON audit_entry",
    f"""CREATE OR REPLACE FUNCTION audit_entry_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP = 'UPDATE' THEN
           IF {REDACTION} AND {PG_SAME} THEN
             RETURN NEW;
           END IF;
         END IF;
         RAISE EXCEPTION 'audit_entry is append-only';
       END $$""",
]


def _audit_key() -> bytes | None:
    """The app's AUDIT_KEY (``flask db upgrade`` runs in the app); None when run without the app."""
    try:
        from flask import current_app

        key = current_app.config.get("AUDIT_KEY")
    except RuntimeError:
        return None
    return key.encode() if key else None


def _head_signature(key: bytes, seq: int, last_hash: str) -> str:
    """As models.audit.head_signature computes it (frozen here with the rest)."""
    canonical = json.dumps(["head", seq, last_hash], separators=(",", ":"))
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def upgrade():
    op.create_table('audit_redaction_permit',
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('record_type', sa.String(length=64), nullable=False),
    sa.Column('record_id', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('batch_id', 'record_type', 'record_id', name=op.f('pk_audit_redaction_permit'))
    )
    op.add_column('audit_head', sa.Column('signature', sa.String(length=64), nullable=True))
    bind = op.get_bind()
    for statement in POSTGRES_UP if bind.dialect.name == "postgresql" else SQLITE_UP:
        op.execute(statement)
    # Sign the tip as it stands: run `flask audit verify` before upgrading to know it is sound.
    # A missing head (removed around its trigger) is left missing for `audit verify` to report.
    head = bind.execute(sa.text("SELECT seq, last_hash FROM audit_head WHERE id = 1")).first()
    key = _audit_key()
    if head is None:
        return
    if key is None:
        logging.getLogger("alembic.runtime.migration").warning(
            "e12a00000001: no AUDIT_KEY at hand; the audit head stays unsigned until the next audited write")
        return
    bind.execute(sa.text("UPDATE audit_head SET signature = :signature WHERE id = 1"),
                 {"signature": _head_signature(key, head[0], head[1])})


def downgrade():
    for statement in POSTGRES_DOWN if op.get_bind().dialect.name == "postgresql" else SQLITE_DOWN:
        op.execute(statement)
    op.drop_column('audit_head', 'signature')
    op.drop_table('audit_redaction_permit')
