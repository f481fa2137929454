"""key_custody ids never reused on SQLite: rebuild the table with AUTOINCREMENT as the models declare

Revision ID: e12f00000006
Revises: e12e00000005
Create Date: 2026-12-02 08:20:00

The table predates AUTOINCREMENT on workflow tables, so on a migrated SQLite database a record
created after a purge could take a purged record's id and inherit its redacted audit trail,
tombstone or legal hold. SQLite cannot add AUTOINCREMENT in place; the rebuild keeps every row and
id. Dropping the old table cascades to ``key_use`` while foreign keys are on (a PRAGMA cannot
switch them off inside the migration's transaction), so its rows are kept aside and put back.
PostgreSQL's sequences never reuse ids: nothing to do there.
"""
from alembic import op


revision = 'e12f00000006'
down_revision = 'e12e00000005'
branch_labels = None
depends_on = None

COLUMNS = ('id', 'unit_id', 'resident_id', 'tag_no', 'description', 'key_count', 'permitted_use', 'deposited_at',
           'current_holder', 'current_purpose', 'returned_to', 'resident_confirmation', 'state', 'due_at',
           'pending_transition', 'pending_since', 'pending_round', 'pending_reminded_at', 'pending_comment',
           'deleted_at', 'closed_at', 'created_by_id', 'pending_by_id', 'deleted_by_id', 'created_at', 'updated_at',
           'version')

CREATE = """CREATE TABLE key_custody_rebuilt (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	unit_id INTEGER NOT NULL,
	resident_id INTEGER NOT NULL,
	tag_no VARCHAR(32) NOT NULL,
	description VARCHAR(200) NOT NULL,
	key_count INTEGER NOT NULL,
	permitted_use VARCHAR(200),
	deposited_at DATETIME NOT NULL,
	current_holder VARCHAR(64),
	current_purpose VARCHAR(200),
	returned_to VARCHAR(64),
	resident_confirmation VARCHAR(64),
	state VARCHAR(32) NOT NULL,
	due_at DATETIME,
	pending_transition VARCHAR(64),
	pending_since DATETIME,
	pending_round INTEGER NOT NULL,
	pending_reminded_at DATETIME,
	pending_comment TEXT,
	deleted_at DATETIME,
	closed_at DATETIME,
	created_by_id INTEGER,
	pending_by_id INTEGER,
	deleted_by_id INTEGER,
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	version INTEGER NOT NULL,
	CONSTRAINT fk_key_custody_unit_id_unit FOREIGN KEY(unit_id) REFERENCES unit (id),
	CONSTRAINT fk_key_custody_resident_id_resident FOREIGN KEY(resident_id) REFERENCES resident (id),
	CONSTRAINT uq_key_custody_tag_no UNIQUE (tag_no),
	CONSTRAINT fk_key_custody_created_by_id_staff FOREIGN KEY(created_by_id) REFERENCES staff (id),
	CONSTRAINT fk_key_custody_pending_by_id_staff FOREIGN KEY(pending_by_id) REFERENCES staff (id),
	CONSTRAINT fk_key_custody_deleted_by_id_staff FOREIGN KEY(deleted_by_id) REFERENCES staff (id)
)"""

INDEXED = ('deleted_at', 'due_at', 'pending_transition', 'resident_id', 'state', 'unit_id', 'closed_at')


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        return
    sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type='table' AND name='key_custody'").scalar()
    if 'AUTOINCREMENT' in (sql or '').upper():
        return  # built by create_all and stamped: already right
    columns = ', '.join(COLUMNS)
    op.execute('CREATE TEMP TABLE key_use_kept AS SELECT * FROM key_use')
    op.execute(CREATE)
    op.execute(f'INSERT INTO key_custody_rebuilt ({columns}) SELECT {columns} FROM key_custody')
    op.execute('DROP TABLE key_custody')  # cascades to key_use, restored below
    op.execute('ALTER TABLE key_custody_rebuilt RENAME TO key_custody')
    for column in INDEXED:
        op.execute(f'CREATE INDEX ix_key_custody_{column} ON key_custody ({column})')
    op.execute('INSERT INTO key_use SELECT * FROM key_use_kept')
    op.execute('DROP TABLE key_use_kept')


def downgrade():
    """AUTOINCREMENT stays: the earlier schema works the same on it, and a rebuild back would only
    bring id reuse back."""
