"""Writing and verifying the audit trail (models/audit.py).

Every flush is audited by one session hook, so forms, actions, imports, the CLI and the engine
all leave the same rows without calling anything. The engine labels its own writes
(``annotate``) so a firing is one "transition" row, not an anonymous update. Explicit events
(login, export, confidential view) use ``record_event``.

The chain: rows are appended in ``seq`` order while the single ``audit_head`` row is locked
(an UPDATE), so two transactions can never both extend the same tip. Each row's hash is
HMAC-SHA256(AUDIT_KEY, canonical row + previous hash), and the head carries a signature over
its seq and hash; the key lives in the environment, so someone with only database access can
neither recompute a valid chain after editing a row nor cut the trail short (or wipe it) and
move the head to match. ``verify`` checks both; workflow/audit_checkpoints.py anchors the
signed tip outside the database against a head rolled back to an older tip.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_request_context, request
from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlalchemy.orm.base import NO_VALUE

from models.audit import GENESIS, AuditEntry, AuditHead, AuditRedactionPermit, head_signature
from models.base import current_actor_id, db, utcnow

NOTES = "pm_audit_notes"
OLD = "pm_audit_old"  # old values of columns overwritten while expired, read before the flush
NOW_ACTING = "pm_audit_acting"  # (id, name) of the user an engine call acts for, until commit
ACTOR = "pm_audit_actor"  # (id, name) for work done outside a request, e.g. the CLI
SKIP_COLUMNS = {"id", "version", "created_at", "updated_at"}


def record_type_of(obj: Any) -> str:
    return type(obj).__tablename__


def _audited(obj: Any) -> bool:
    return getattr(type(obj), "__audit__", True) and not isinstance(obj, AuditEntry | AuditHead | AuditRedactionPermit)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def _shown(column: sa.Column, value: Any) -> Any:
    """Masked for sensitive columns (ACC-6): the trail must not become a copy of the secrets."""
    from security.crypto import EncryptedString, mask

    if value is None:
        return None
    if column.info.get("sensitive"):
        return "***"
    if isinstance(column.type, EncryptedString):
        return mask(str(value))
    return _plain(value)


def _changes(obj: Any, kind: str, blind: dict[str, Any] | None = None) -> dict[str, list[Any]]:
    state = sa.inspect(obj)
    out: dict[str, list[Any]] = {}
    for attr in state.mapper.column_attrs:
        if attr.key in SKIP_COLUMNS:
            continue
        column = attr.columns[0]
        if kind == "create":
            value = getattr(obj, attr.key)
            if value is not None:
                out[attr.key] = [None, _shown(column, value)]
        elif kind == "delete":
            value = state.attrs[attr.key].loaded_value
            if value is not None and value is not sa.orm.base.NO_VALUE:
                out[attr.key] = [_shown(column, value), None]
        else:
            hist = state.attrs[attr.key].history
            if hist.has_changes():
                old = hist.deleted[0] if hist.deleted else (blind or {}).get(attr.key)
                new = hist.added[0] if hist.added else None
                if old != new:
                    out[attr.key] = [_shown(column, old), _shown(column, new)]
    return out


def annotate(obj: Any, action: str, *, transition: str | None = None,
             comment: str | None = None, session: Session | None = None) -> None:
    """Label the next flush's row for ``obj`` (e.g. "transition" instead of "update")."""
    session = session or db.session()
    notes = session.info.setdefault(NOTES, {})
    notes.setdefault(id(obj), (obj, []))[1].append(
        {"action": action, "transition": transition, "comment": comment})


def set_actor(session: Session, actor_id: int | None, name: str) -> None:
    """Who the CLI or a background job acts as, for rows written outside a request."""
    session.info[ACTOR] = (actor_id, name)


def acting_as(session: Session, staff: Any) -> None:
    """The engine names the user it acts for, so CLI and background calls are attributed too."""
    if staff is not None:
        session.info[NOW_ACTING] = (staff.id, staff.username)


@event.listens_for(Session, "after_commit")
def stop_acting(session: Session) -> None:
    session.info.pop(NOW_ACTING, None)


def _actor(session: Session) -> tuple[int | None, str | None, str | None]:
    ip = request.remote_addr if has_request_context() else None
    if NOW_ACTING in session.info:
        return (*session.info[NOW_ACTING], ip)
    if has_request_context():
        from flask_login import current_user

        if getattr(current_user, "is_authenticated", False):
            return int(current_user.id), current_user.username, request.remote_addr
        return None, None, request.remote_addr
    actor_id, name = session.info.get(ACTOR, (current_actor_id(), "system"))
    return actor_id, name, None


@event.listens_for(Session, "before_flush")
def _read_blind_overwrites(session: Session, flush_context: Any, instances: Any) -> None:
    """A column assigned while expired (e.g. right after a commit) has no old value in its
    history; read it before the UPDATE so the trail never claims the field was empty."""
    for obj in session.dirty:
        if not _audited(obj):
            continue
        state = sa.inspect(obj)
        blind = [a for a in state.mapper.column_attrs
                 if a.key not in SKIP_COLUMNS and state.committed_state.get(a.key) is NO_VALUE]
        if blind and state.key is not None:
            where = [c == v for c, v in zip(state.mapper.primary_key, state.key[1], strict=True)]
            row = session.connection().execute(sa.select(*(a.columns[0] for a in blind)).where(*where)).one()
            session.info.setdefault(OLD, {})[id(obj)] = dict(zip((a.key for a in blind), row, strict=True))


@event.listens_for(Session, "after_flush")
def _audit_flush(session: Session, flush_context: Any) -> None:
    notes: dict[int, tuple[Any, list[dict]]] = session.info.pop(NOTES, {})
    blind: dict[int, dict[str, Any]] = session.info.pop(OLD, {})
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for kind, objs in (("create", session.new), ("update", session.dirty), ("delete", session.deleted)):
        for obj in objs:
            if not _audited(obj):
                continue
            seen.add(id(obj))
            changes = _changes(obj, kind, blind.get(id(obj)))
            labels = notes.get(id(obj), (obj, []))[1]
            if kind == "update" and not changes and not labels:
                continue
            for i, label in enumerate(labels or [{"action": kind}]):
                rows.append(_row(obj, label, changes if i == len(labels or [0]) - 1 else {}))
    for key, (obj, labels) in notes.items():
        if key not in seen:
            rows.extend(_row(obj, label, {}) for label in labels)
    if rows:
        append(session.connection(), rows, *_actor(session))


def _row(obj: Any, label: dict[str, Any], changes: dict[str, list[Any]]) -> dict[str, Any]:
    return {
        "action": label["action"], "record_type": record_type_of(obj),
        "record_id": sa.inspect(obj).mapper.primary_key_from_instance(obj)[0],
        "transition": label.get("transition"), "comment": label.get("comment"),
        "changes": json.dumps(changes, ensure_ascii=False, sort_keys=True) if changes else None,
    }


@event.listens_for(Session, "after_rollback")
def _drop_notes(session: Session) -> None:
    for key in (NOTES, OLD, NOW_ACTING):
        session.info.pop(key, None)


def record_event(action: str, *, record: Any = None, record_type: str | None = None,
                 record_id: int | None = None, changes: dict[str, Any] | None = None,
                 comment: str | None = None, session: Session | None = None,
                 actor: Any = None) -> None:
    """Write one explicit event row (login, export, confidential view, setting change) now,
    inside the caller's transaction: it commits or rolls back with what it describes.
    ``actor`` names the staff member when no one is signed in yet (a login)."""
    session = session or db.session()
    if record is not None:
        record_type, record_id = record_type_of(record), record.id
    actor_id, name, ip = _actor(session)
    if actor is not None:
        actor_id, name = actor.id, actor.username
    append(session.connection(), [{
        "action": action, "record_type": record_type, "record_id": record_id,
        "transition": None, "comment": comment,
        "changes": json.dumps(changes, ensure_ascii=False, sort_keys=True) if changes else None,
    }], actor_id, name, ip)


# --- the chain ----------------------------------------------------------------------------
def audit_key() -> bytes:
    return current_app.config["AUDIT_KEY"].encode()


def audit_keys() -> list[bytes]:
    """Every key the chain was written with, oldest first: ``AUDIT_KEYS_RETIRED`` then ``AUDIT_KEY``
    (a rotation starts a new segment; see README, key rotation)."""
    retired = [k.strip() for k in (current_app.config.get("AUDIT_KEYS_RETIRED") or "").split(",") if k.strip()]
    return [k.encode() for k in retired] + [audit_key()]


def digest_of(changes: str | None, comment: str | None) -> str:
    """The free-text part of a row (changed values, comment): the chain covers this digest,
    so retention can later redact personal data from a row without breaking the chain."""
    return hashlib.sha256(json.dumps([changes, comment], ensure_ascii=False).encode()).hexdigest()


def row_hash(key: bytes, row: dict[str, Any], prev_hash: str) -> str:
    at = row["at"]
    fields = [row["seq"], at.isoformat() if isinstance(at, datetime) else at, row["actor_id"],
              row["actor_name"], row["ip"], row["action"], row["record_type"], row["record_id"],
              row["transition"], row["digest"], prev_hash]
    canonical = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def redaction_seal(key: bytes, seq: int, row_hash_: str, batch_id: int, at: datetime) -> str:
    """What proves a redaction was retention's: binds the row (seq, hash), batch and time."""
    canonical = json.dumps(["redacted", seq, row_hash_, batch_id, at.astimezone(UTC).isoformat()],
                           separators=(",", ":"))
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def redact(connection: sa.Connection, record_type: str, record_ids: list[int], batch_id: int,
           at: datetime | None = None) -> int:
    """Empty ``changes`` and ``comment`` of the rows about purged records (REGULATIONS §10).

    The only UPDATE the database guard lets through, and only while ``batch_id`` is running and
    holds a permit for the record (written here and removed before returning, in the caller's
    transaction): the free text goes, the chained columns (and so the digest the chain covers)
    stay, and the sealed marker says who did it. Rows already redacted are left alone. Returns
    how many rows were redacted.
    """
    if not record_ids:
        return 0
    record_ids = list(dict.fromkeys(record_ids))  # one permit per record
    key, at = audit_key(), at or utcnow()
    table, permits, redacted = AuditEntry.__table__, AuditRedactionPermit.__table__, 0
    statement = (sa.update(table).where(table.c.id == sa.bindparam("row_id"))
                 .values(changes=None, comment=None, redacted_at=at, redacted_by_batch=batch_id,
                         redaction_seal=sa.bindparam("seal")))
    for start in range(0, len(record_ids), 2000):
        part = record_ids[start:start + 2000]
        found = connection.execute(sa.select(table.c.id, table.c.seq, table.c.hash).where(
            table.c.record_type == record_type, table.c.record_id.in_(part),
            table.c.redacted_at.is_(None))).all()
        if found:
            connection.execute(sa.insert(permits), [{"batch_id": batch_id, "record_type": record_type,
                                                     "record_id": i} for i in part])
            connection.execute(statement, [{"row_id": i, "seal": redaction_seal(key, seq, h, batch_id, at)}
                                           for i, seq, h in found])
            connection.execute(sa.delete(permits).where(permits.c.batch_id == batch_id,
                                                        permits.c.record_type == record_type,
                                                        permits.c.record_id.in_(part)))
            redacted += len(found)
    return redacted


def ensure_head(connection: sa.Connection) -> None:
    """The signed genesis head of an empty trail, for setups that build tables without
    create_all or the migrations (bulk loads, test wipes). Never called on a live trail: there a
    missing head means tampering, and ``append`` refuses to write."""
    if connection.execute(sa.select(AuditHead.id).where(AuditHead.id == 1)).first() is None:
        connection.execute(sa.insert(AuditHead).values(id=1, seq=0, last_hash=GENESIS,
                                                       signature=head_signature(audit_key(), 0, GENESIS)))


class HeadMissing(RuntimeError):
    """The chain's head row is gone: someone removed it around its trigger; nothing is written."""


def append(connection: sa.Connection, rows: list[dict[str, Any]], actor_id: int | None,
           actor_name: str | None, ip: str | None) -> None:
    """Extend the chain by ``rows`` while holding the head row's lock, and re-sign the tip."""
    head = sa.update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + len(rows))
    tip = connection.execute(head.returning(AuditHead.seq, AuditHead.last_hash)).first()
    if tip is None:  # recreating it would start a fresh chain that hides the old one
        raise HeadMissing("audit_head is missing: the audit trail was tampered with; run `flask audit verify`")
    seq, prev = tip[0] - len(rows), tip[1]
    key, now = audit_key(), utcnow()
    values = []
    for row in rows:
        seq += 1
        full = {**row, "seq": seq, "at": now, "actor_id": actor_id,
                "actor_name": (actor_name or "")[:64] or None, "ip": ip,
                "digest": digest_of(row["changes"], row["comment"])}
        full["prev_hash"] = prev
        full["hash"] = prev = row_hash(key, full, prev)
        values.append(full)
    connection.execute(sa.insert(AuditEntry), values)
    connection.execute(sa.update(AuditHead).where(AuditHead.id == 1).values(
        last_hash=prev, signature=head_signature(key, seq, prev)))


# --- verification -------------------------------------------------------------------------
@dataclass
class Problem:
    seq: int | None
    kind: str  # edited | removed | reordered | head | checkpoint
    detail: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.kind}: {self.detail}"


def verify(bind: sa.Engine | sa.Connection, batch: int = 5000) -> tuple[int, list[Problem]]:
    """Walk the chain in ``seq`` order; report edited, removed or reordered rows, and a head
    that is missing, unsigned, or does not name the last row (a trail cut short or wiped)."""
    with Session(bind) as session:
        return _verify(session, batch)


def _verify(session: Session, batch: int) -> tuple[int, list[Problem]]:
    keys, problems = audit_keys(), []
    segment = 0  # index in ``keys`` of the last row's key: a segment never returns to an older key
    expected_seq, prev, count, last_id = 1, GENESIS, 0, 0
    while True:
        entries = session.execute(
            sa.select(AuditEntry).where(AuditEntry.seq >= expected_seq)
            .order_by(AuditEntry.seq).limit(batch)).scalars().all()
        if not entries:
            break
        for e in entries:
            count += 1
            if e.seq != expected_seq:
                problems.append(Problem(expected_seq, "removed",
                                        f"rows {expected_seq}..{e.seq - 1} are missing"))
                prev = e.prev_hash  # resynchronise so one gap is reported once
            if e.id < last_id:
                problems.append(Problem(e.seq, "reordered", "row id runs backwards"))
            last_id = e.id
            if e.prev_hash != prev:
                problems.append(Problem(e.seq, "reordered", "previous hash does not match"))
            if e.redacted_at is not None or e.redacted_by_batch is not None or e.redaction_seal is not None:
                if not any(_sealed(k, e) for k in keys):
                    problems.append(Problem(e.seq, "edited", "redacted, but not by retention"))
            elif digest_of(e.changes, e.comment) != e.digest:
                problems.append(Problem(e.seq, "edited", "changes or comment do not match the digest"))
            fields = {c.key: getattr(e, c.key) for c in sa.inspect(AuditEntry).column_attrs}
            used = next((i for i in range(segment, len(keys))
                         if hmac.compare_digest(row_hash(keys[i], fields, e.prev_hash), e.hash)), None)
            if used is None:
                problems.append(Problem(e.seq, "edited", "row hash does not match its content"))
            else:
                segment = used
            prev, expected_seq = e.hash, e.seq + 1
        session.expunge_all()
    head_keys = {keys[segment], keys[-1]}  # the tip's writer, or the current key (ensure_head)
    return count, problems + _head_problems(head_keys, session.get(AuditHead, 1), count, expected_seq - 1, prev)


def _head_problems(keys: set[bytes], head: AuditHead | None, count: int, last_seq: int,
                   last_hash: str) -> list[Problem]:
    """The signed head must name the last row: otherwise rows were cut off, wiped, or the head
    was moved. An unsigned head never passes, not even at seq 0 (a reset head of a wiped trail)."""
    if head is None:
        return [Problem(None, "head", "the chain's head row is missing")]
    found = []
    if not any(hmac.compare_digest(head_signature(k, head.seq, head.last_hash), head.signature or "") for k in keys):
        found.append(Problem(head.seq, "head", "the head's signature is missing or invalid"))
    if count == 0 and head.seq > 0:
        found.append(Problem(head.seq, "removed", f"the trail is empty but the recorded tip is row {head.seq}:"
                                                  " the trail was wiped"))
    elif head.seq > last_seq:
        found.append(Problem(last_seq + 1, "removed", f"rows {last_seq + 1}..{head.seq} are missing:"
                                                      " the chain ends before the recorded tip"))
    elif head.seq < last_seq:
        found.append(Problem(head.seq + 1, "head", f"rows {head.seq + 1}..{last_seq} lie past the recorded tip:"
                                                   " the head was moved back"))
    elif head.last_hash != last_hash:
        found.append(Problem(head.seq, "head", "the last row's hash is not the recorded tip's"))
    return found


def _sealed(key: bytes, e: AuditEntry) -> bool:
    """A redacted row passes when its text is gone and its seal is retention's: the digest can no
    longer be recomputed, but the chained hash still covers it."""
    if e.changes is not None or e.comment is not None or None in (e.redacted_at, e.redacted_by_batch):
        return False
    expected = redaction_seal(key, e.seq, e.hash, e.redacted_by_batch, e.redacted_at)
    return hmac.compare_digest(expected, e.redaction_seal or "")
