"""Purge batches (REGULATIONS §10): list what is due, a manager approves with the password
re-entered (ACC-5), then the run purges or anonymises in short transactions.

Each transaction handles at most ``CHUNK`` records: it takes the write lock first, re-checks
legal holds and due-ness (a hold placed after the approval still wins), deletes the records with
their children (or blanks their personal columns), redacts the audit rows about them, completes
their tombstones and writes one audit event naming the ids. Nothing is silent and no transaction
is long, so the application stays usable during a large purge.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from models.base import db, utcnow
from models.retention import OPEN_BATCH_STATES, RetentionBatch, RetentionPolicy, Tombstone
from models.staff import Staff
from models.validators import DomainError
from models.workflow import SignOff
from workflow import audit
from workflow.retention import MANAGERS, anchor_of, children_of, due, expiry_of, held, serialise, table_of

log = logging.getLogger(__name__)
CHUNK = 500
LIST_CHUNK = 5000


def _manager(user: Staff | None) -> Staff:
    from flask_babel import lazy_gettext as _l

    if user is None or not user.is_active or not user.roles & MANAGERS:
        raise DomainError(_l("Only a manager may do this."))
    return user


def list_batch(policy: RetentionPolicy, user: Staff | None, now: datetime | None = None) -> RetentionBatch:
    """Freeze what is due now under ``policy`` into a batch awaiting approval (one tombstone per
    record, outcome pending). The approval covers exactly this list."""
    from flask_babel import lazy_gettext as _l

    _manager(user)
    now = now or utcnow()
    if open_batches(policy.id):
        raise DomainError(_l("A batch of this policy is still open; finish or cancel it first."))
    found = due(policy, now)
    if found.query is None:
        raise DomainError(found.note or _l("Nothing is due under this policy."))
    # Read everything before the first write: on SQLite the write lock is then held only for the inserts.
    rows = [{"policy_id": policy.id, "record_type": policy.record_type, "record_id": record_id,
             "action": policy.action, "anchor_at": anchor_of(policy, moment), "due_at": expiry_of(policy, moment)}
            for record_id, moment in db.session.execute(found.query.add_columns(found.anchor_column))]
    if not rows:
        db.session.rollback()
        raise DomainError(_l("Nothing is due under this policy."))
    batch = RetentionBatch(policy_id=policy.id, state="listing", listed_at=now, listed_by_id=user.id,
                           listed_count=len(rows))
    db.session.add(batch)
    db.session.flush()  # the write lock (SQLite) / the advisory lock (PostgreSQL) from here on
    serialise(db.session())
    if len(open_batches(policy.id)) > 1:  # another manager listed the same policy meanwhile
        db.session.rollback()
        raise DomainError(_l("A batch of this policy is still open; finish or cancel it first."))
    batch_id = batch.id
    db.session.commit()
    # Short transactions again; "listing" keeps the batch from being approved half-written.
    for start in range(0, len(rows), LIST_CHUNK):  # Core executemany: no ORM bookkeeping per row
        db.session.execute(sa.insert(Tombstone.__table__),
                           [{"batch_id": batch_id, **r} for r in rows[start:start + LIST_CHUNK]])
        db.session.commit()
    batch = db.session.get(RetentionBatch, batch_id)
    batch.state = "listed"
    db.session.commit()
    return batch


def approve(batch: RetentionBatch, user: Staff | None, password: str | None) -> None:
    """ACC-5: a manager approves the listed purge by typing the password again."""
    from flask_babel import lazy_gettext as _l

    from security.accounts import log_event
    from security.passwords import verify_password

    _manager(user)
    if batch.state != "listed":
        raise DomainError(_l("Only a listed batch can be approved."))
    if not password or not verify_password(user.password_hash, password):
        db.session.rollback()
        log_event("reauth_failed", staff=user, detail=f"retention batch {batch.id}")
        db.session.commit()
        raise DomainError(_l("The password is not correct."), "password")
    now = utcnow()
    # The tombstones get the approver as the run (or a cancellation) completes them, chunk by chunk:
    # stamping a million of them here would hold the write lock for seconds.
    batch.state, batch.approved_by_id, batch.approved_at = "approved", user.id, now
    log_event("retention_approve", staff=user, detail=f"retention batch {batch.id}")
    db.session.commit()


def cancel(batch: RetentionBatch, user: Staff | None) -> None:
    """Drop a batch not yet running; its records may be listed again."""
    from flask_babel import lazy_gettext as _l

    _manager(user)
    if batch.state not in ("listing", "listed", "approved"):
        raise DomainError(_l("Only a batch that has not started can be cancelled."))
    batch.state, batch.finished_at = "cancelled", utcnow()
    batch_id, approver = batch.id, batch.approved_by_id
    db.session.commit()
    # Then its pending tombstones, in short transactions. Once the batch is cancelled they no
    # longer keep their records from being listed (``due`` counts only open batches), so an
    # interruption here leaves nothing stuck.
    t = Tombstone.__table__
    while True:
        pending = (sa.select(t.c.id).where(t.c.batch_id == batch_id, t.c.outcome.is_(None))
                   .order_by(t.c.record_id).limit(LIST_CHUNK))
        marked = db.session.execute(sa.update(t).where(t.c.id.in_(pending.scalar_subquery()))
                                    .values(outcome="cancelled", approved_by_id=approver))
        db.session.commit()
        if marked.rowcount < LIST_CHUNK:
            break


def run_batch(batch_id: int, *, max_chunks: int | None = None, chunk: int = CHUNK,
              now: datetime | None = None) -> RetentionBatch:
    """Run an approved batch: up to ``max_chunks`` transactions (all, when None)."""
    from flask_babel import lazy_gettext as _l

    batch = db.session.get(RetentionBatch, batch_id)
    if batch is None:
        raise DomainError(_l("No such batch."))
    if batch.state not in ("approved", "running"):
        raise DomainError(_l("Only an approved batch can run."))
    listed_action = db.session.scalar(sa.select(Tombstone.action).where(Tombstone.batch_id == batch_id).limit(1))
    if listed_action not in (None, batch.policy.action):
        raise DomainError(_l("The policy's action changed after the approval; cancel the batch and list it again."))
    if batch.state == "approved":
        batch.state, batch.started_at = "running", utcnow()
        db.session.commit()
    runs = 0
    while max_chunks is None or runs < max_chunks:
        runs += 1
        try:
            finished = _run_chunk(batch_id, chunk, now)
        except sa.exc.SQLAlchemyError as exc:
            _stopped(batch_id, exc)
            raise DomainError(_l("The purge stopped: the database refused a step (see the server log). That"
                                 " step was rolled back and the batch can run again once it is fixed.")) from exc
        if finished:
            break
    db.session.expire_all()
    return db.session.get(RetentionBatch, batch_id)


def _stopped(batch_id: int, exc: Exception) -> None:
    """A chunk failed (e.g. the app's database role lacks a right): its transaction is rolled back,
    and the batch goes back to ``approved`` so it can run again, never left ``running`` for good."""
    log.error("retention batch %s stopped: %s", batch_id, exc)
    db.session.rollback()
    b = RetentionBatch.__table__
    db.session.execute(sa.update(b).where(b.c.id == batch_id, b.c.state == "running").values(state="approved"))
    audit.record_event("retention_stopped", record_type="retention_batch", record_id=batch_id,
                       comment=str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
    db.session.commit()


def _run_chunk(batch_id: int, size: int, now: datetime | None) -> bool:
    """One short transaction. Returns True once nothing is left (the batch is then done)."""
    session = db.session()
    moment = now or utcnow()
    b = RetentionBatch.__table__
    # Write first: on SQLite this takes the write lock before anything is read, so no hold can be
    # committed between the re-check below and the delete; on PostgreSQL the advisory lock does.
    claimed = session.execute(sa.update(b).where(b.c.id == batch_id, b.c.state == "running")
                              .values(updated_at=moment))
    serialise(session)
    if claimed.rowcount != 1:
        session.rollback()
        return True
    batch = session.get(RetentionBatch, batch_id)
    policy = batch.policy
    t = Tombstone.__table__
    # ix_tombstone_pending: the next ``size`` pending tombstones without passing the done ones.
    stones = dict(session.execute(sa.select(t.c.record_id, t.c.id).where(t.c.batch_id == batch_id,
                                                                          t.c.outcome.is_(None))
                                  .order_by(t.c.record_id).limit(size)).all())
    ids = list(stones)
    if not ids:
        batch.state, batch.finished_at = "done", moment
        session.commit()
        return True
    table = table_of(policy.record_type)
    found = due(policy, moment, ignore_batch=batch_id)
    go = set(session.scalars(found.query.where(table.c.id.in_(ids)))) if found.query is not None else set()
    rest = [i for i in ids if i not in go]
    outcomes = {i: "missing" for i in rest}
    if rest and table is not None:
        outcomes.update({i: "not_due" for i in session.scalars(sa.select(table.c.id).where(table.c.id.in_(rest)))})
        outcomes.update({i: "held" for i in session.scalars(
            sa.select(table.c.id).where(table.c.id.in_(rest), held(table, table.c.id)))})
    done = sorted(go)
    if done:
        tree = _tree(table, done)
        if policy.action == "anonymise":
            _anonymise(tree, policy, moment)
        else:
            files = _attachments(tree)  # go with their owners (models.attachment); named here first
            _delete(tree)
            tree.append(("attachment", files))
        for record_type, record_ids in tree:
            if record_ids:
                audit.redact(session.connection(), record_type, record_ids, batch_id, moment)
    outcome = "anonymised" if policy.action == "anonymise" else "purged"
    groups: dict[str, list[int]] = {outcome: done}
    for i in rest:
        groups.setdefault(outcomes[i], []).append(i)
    for name, which in groups.items():
        for part in _parts([stones[i] for i in which]):  # by primary key: no scan of the batch
            session.execute(sa.update(t).where(t.c.id.in_(part)).values(
                outcome=name, purged_at=moment if name == outcome else None, approved_by_id=batch.approved_by_id))
    session.execute(sa.update(b).where(b.c.id == batch_id).values(
        done_count=b.c.done_count + len(done), skipped_count=b.c.skipped_count + len(rest)))
    audit.record_event(policy.action, record_type="retention_batch", record_id=batch_id, session=session,
                       changes={"record_type": policy.record_type, "policy": policy.id, outcome: done,
                                "skipped": {str(i): outcomes[i] for i in rest}})
    session.commit()
    return False


def _attachments(tree: list[tuple[str, list[int]]]) -> list[int]:
    """Ids of the files attached to the purged rows: their audit rows hold file names, redacted too."""
    from models.attachment import OWNER_TYPES, Attachment

    ids: list[int] = []
    for record_type, record_ids in tree:
        if record_type in OWNER_TYPES:
            for part in _parts(record_ids):
                ids += db.session.scalars(sa.select(Attachment.id).where(
                    Attachment.record_type == record_type, Attachment.record_id.in_(part)))
    return ids


def _tree(table: sa.Table, ids: list[int], depth: int = 0) -> list[tuple[str, list[int]]]:
    """The records and every row that belongs to them (foreign keys to them), deepest last."""
    found = [(table.name, ids)]
    if depth >= 4:
        return found
    for child, fk_column, parent_column, ondelete in children_of(table):
        if ondelete == "SET NULL":
            continue  # a reference, not ownership: the database clears it
        keys = ids if parent_column.name == "id" else list(db.session.scalars(
            sa.select(parent_column).where(table.c.id.in_(ids))))
        child_ids = [i for part in _parts(keys) for i in db.session.scalars(
            sa.select(child.c.id).where(fk_column.in_(part)))]
        if child_ids:
            found += _tree(child, child_ids, depth + 1)
    return found


def _parts(ids: list[int], size: int = 2000) -> list[list[int]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def _delete(tree: list[tuple[str, list[int]]]) -> None:
    """Children before parents, with each record's sign-offs (rows keyed by type and id)."""
    for record_type, record_ids in reversed(tree):
        table = db.metadata.tables[record_type]
        for part in _parts(record_ids):
            db.session.execute(sa.delete(SignOff).where(SignOff.record_type == record_type,
                                                        SignOff.record_id.in_(part)))
            db.session.execute(sa.delete(table).where(table.c.id.in_(part)))


def personal_columns(table: sa.Table, named: list[str] = ()) -> list[sa.Column]:
    """Columns marked ``info={"personal": True}`` (or sensitive, or encrypted), plus String columns
    a policy names for that table."""
    from security.crypto import EncryptedString

    out = []
    for column in table.c:
        if column.primary_key or column.foreign_keys:
            continue
        marked = column.info.get("personal") or column.info.get("sensitive") or isinstance(column.type,
                                                                                            EncryptedString)
        if marked or (column.name in named and isinstance(column.type, sa.String)):
            out.append(column)
    return out


def _anonymise(tree: list[tuple[str, list[int]]], policy: RetentionPolicy, moment: datetime) -> None:
    """Keep the rows, blank what identifies a person: NULL where allowed, "***" otherwise."""
    for depth, (record_type, record_ids) in enumerate(tree):
        table = db.metadata.tables[record_type]
        columns = personal_columns(table, policy.column_names if depth == 0 else [])
        values: dict[str, Any] = {c.name: None if c.nullable else "***" for c in columns}
        if not values:
            continue
        if "version" in table.c:
            values["version"] = table.c.version + 1  # an open form on the record becomes stale
        if "updated_at" in table.c:
            values["updated_at"] = moment
        for part in _parts(record_ids):
            db.session.execute(sa.update(table).where(table.c.id.in_(part)).values(values))


def open_batches(policy_id: int | None = None) -> list[RetentionBatch]:
    query = sa.select(RetentionBatch).where(RetentionBatch.state.in_(OPEN_BATCH_STATES))
    if policy_id is not None:
        query = query.where(RetentionBatch.policy_id == policy_id)
    return list(db.session.scalars(query.order_by(RetentionBatch.id)))
