"""``flask keys ...``: moving stored values to the current keys, so an old key can be retired.

``reencrypt`` rewrites every encrypted column value not under the first key of
FIELD_ENCRYPTION_KEYS, in short batches (compare-and-set per row, one commit and one audit event
per batch): an interrupted run just continues where it stopped, and the app stays usable while it
runs. ``status`` counts the stored values per key id (0 left under ``k1``: ``k1`` may go).
``rebuild-blind-index`` recomputes the residents' ID-number index after BLIND_INDEX_KEY changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from models.base import db
from security.crypto import EncryptedString, MissingKeyError, keyring

BATCH = 500
keys_cli = AppGroup("keys", help="Field-encryption keys and the blind index (key rotation).")


def encrypted_columns() -> Iterator[tuple[sa.Table, sa.Column]]:
    """Every (table, column) stored with EncryptedString, from the models: later ones included."""
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, EncryptedString):
                yield table, column


def raw(column: sa.Column) -> sa.ColumnElement:
    """The stored text (``keyid:…``), not the decrypted value."""
    return sa.type_coerce(column, sa.Text)


def key_counts() -> dict[str, Counter[str]]:
    """``{"table.column": {key id: rows}}``."""
    found: dict[str, Counter[str]] = {}
    for table, column in encrypted_columns():
        find = sa.func.strpos if db.engine.dialect.name == "postgresql" else sa.func.instr
        key_id = sa.func.substr(raw(column), 1, find(raw(column), ":") - 1)
        rows = db.session.execute(sa.select(key_id, sa.func.count()).where(column.is_not(None)).group_by(key_id))
        found[f"{table.name}.{column.name}"] = Counter({k: n for k, n in rows})
    db.session.rollback()
    return found


def reencrypt_column(table: sa.Table, column: sa.Column, batch: int) -> int:
    """Re-encrypt one column's values not under the primary key; returns how many were rewritten."""
    from workflow.audit import record_event

    ring, pk = keyring(), table.c.id
    prefix = f"{ring.primary}:"
    done, after = 0, 0
    while True:
        rows = db.session.execute(
            sa.select(pk, raw(column))
            .where(pk > after, column.is_not(None), sa.not_(raw(column).startswith(prefix, autoescape=True)))
            .order_by(pk)
            .limit(batch)
        ).all()
        if not rows:
            break
        changed = []
        for row_id, stored in rows:
            fresh = ring.encrypt(ring.decrypt(stored))  # MissingKeyError names a retired key id
            result = db.session.execute(
                sa.update(table)
                .where(pk == row_id, raw(column) == stored)
                .values({column.name: sa.type_coerce(fresh, sa.Text)})
            )
            if result.rowcount == 1:  # else a user rewrote it meanwhile, under the primary key
                changed.append(row_id)
        record_event(
            "reencrypt",
            record_type=table.name,
            comment=f"{column.name} → {ring.primary}",
            changes={"column": column.name, "key": ring.primary, "ids": changed},
        )
        db.session.commit()
        done += len(changed)
        after = rows[-1][0]
    return done


@keys_cli.command("status")
def status_command() -> None:
    """Stored encrypted values per key id; a key id absent everywhere may leave FIELD_ENCRYPTION_KEYS."""
    ring = keyring()
    for name, counts in key_counts().items():
        shown = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "empty"
        click.echo(f"{name}: {shown}")
    click.echo(f"encrypting key: {ring.primary}; held: {', '.join(ring.keys)}")


@keys_cli.command("reencrypt")
@click.option(
    "--batch", default=BATCH, show_default=True, type=click.IntRange(1, 100_000), help="Rows per transaction."
)
def reencrypt_command(batch: int) -> None:
    """Move every encrypted value to the first key of FIELD_ENCRYPTION_KEYS (batched, resumable, audited)."""
    from workflow.audit import set_actor

    set_actor(db.session(), None, "keys reencrypt")
    total = 0
    try:
        for table, column in encrypted_columns():
            count = reencrypt_column(table, column, batch)
            total += count
            if count:
                click.echo(f"{table.name}.{column.name}: {count} re-encrypted")
    except MissingKeyError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    left = {k for counts in key_counts().values() for k in counts if k != keyring().primary}
    click.echo(
        f"re-encrypted {total} value(s) with {keyring().primary}"
        + (f"; still under {', '.join(sorted(left))}" if left else "; no value uses another key")
    )


@keys_cli.command("rebuild-blind-index")
@click.option("--batch", default=BATCH, show_default=True, type=click.IntRange(1, 100_000))
def rebuild_blind_index_command(batch: int) -> None:
    """Recompute the ID-number blind index with the current BLIND_INDEX_KEY (after rotating it)."""
    from models.registry import Resident
    from workflow.audit import record_event, set_actor

    set_actor(db.session(), None, "keys rebuild-blind-index")
    ring, table = keyring(), Resident.__table__
    after, total = 0, 0
    try:
        while True:
            rows = db.session.execute(
                sa.select(table.c.id, table.c.id_number, table.c.id_number_bidx)
                .where(table.c.id > after, table.c.id_number.is_not(None))
                .order_by(table.c.id)
                .limit(batch)
            ).all()
            if not rows:
                break
            changed = [
                (row_id, ring.blind_index(number)) for row_id, number, old in rows if ring.blind_index(number) != old
            ]
            for row_id, digest in changed:
                db.session.execute(sa.update(table).where(table.c.id == row_id).values(id_number_bidx=digest))
            if changed:
                record_event(
                    "blind_index_rebuilt", record_type="resident", changes={"ids": [row_id for row_id, _ in changed]}
                )
            db.session.commit()
            total += len(changed)
            after = rows[-1][0]
    except MissingKeyError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    click.echo(f"blind index: {total} resident(s) updated")


def init_app(app: Flask) -> None:
    app.cli.add_command(keys_cli)
