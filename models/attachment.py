"""The shared attachment store: signatures, scans and drawings kept as files outside the web root.

A file is kept under the key ``uploads/<yyyy>/<mm>/<sha256>`` in the app's store (models/storage.py:
the instance folder by default); the row says whose it is (owner
``record_type`` + ``record_id``), what it is (``kind``) and what it was called. The type is read
from the first bytes, never from the name or the browser's claim, and the kept name carries that
type's extension (SEC-2). A purged owner takes its
attachments with it (``_purge_with_owner``), whatever path deletes it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.base import UTCDateTime, db, utcnow
from models.staff import Staff
from models.storage import UPLOADS, LocalStorage, storage
from models.validators import DomainError

MB = 1024 * 1024
PNG, JPEG, PDF = "image/png", "image/jpeg", "application/pdf"
MAGIC = ((b"\x89PNG\r\n\x1a\n", PNG), (b"\xff\xd8\xff", JPEG), (b"%PDF-", PDF))
EXTENSIONS = {PNG: "png", JPEG: "jpg", PDF: "pdf"}
SAME_TYPE = {PNG: ("png",), JPEG: ("jpg", "jpeg"), PDF: ("pdf",)}  # a user's own spelling is kept
OCTET = "application/octet-stream"
RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)$", re.IGNORECASE)  # Windows device names
DOOMED = "pm_attachment_files_to_remove"


@dataclass(frozen=True)
class Kind:
    label: Any
    types: frozenset[str]
    max_bytes: int
    personal: bool  # downloads are written to the audit trail (ACC-7)


KINDS: dict[str, Kind] = {
    "signature": Kind(_l("Resident's signature"), frozenset({PNG, JPEG, PDF}), 5 * MB, True),
    "scan": Kind(_l("Scanned document"), frozenset({PNG, JPEG, PDF}), 8 * MB, True),
    "drawing": Kind(_l("Drawing"), frozenset({PDF, PNG, JPEG}), 8 * MB, False),
    # REN-10: what the completion-acceptance application brings
    "asbuilt": Kind(_l("As-built drawings (three sets)"), frozenset({PDF, PNG, JPEG}), 8 * MB, False),
    "invoice": Kind(_l("Invoice copies for materials and equipment"), frozenset({PDF, PNG, JPEG}), 8 * MB, False),
    "deposit_receipt": Kind(_l("Deposit receipt copy"), frozenset({PDF, PNG, JPEG}), 8 * MB, True),
}
# Record types whose rows own attachments; their deletion removes the attachments too.
OWNER_TYPES: set[str] = {"visit", "violation", "renovation", "archive", "archive_access", "move_out"}


class Attachment(db.Model):
    __tablename__ = "attachment"
    personal_label = True  # str() is the original file name, often a person's (ACC-5)
    __table_args__ = (sa.Index("ix_attachment_owner", "record_type", "record_id"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(primary_key=True)
    record_type: Mapped[str] = mapped_column(sa.String(64))
    record_id: Mapped[int] = mapped_column(sa.BigInteger)
    kind: Mapped[str] = mapped_column(sa.String(32))
    original_filename: Mapped[str] = mapped_column(sa.String(255), info={"personal": True})
    content_type: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.Integer)
    sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    path: Mapped[str] = mapped_column(sa.String(255))  # relative to the instance folder
    uploaded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    uploaded_by: Mapped[Staff | None] = relationship(foreign_keys=[uploaded_by_id])
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def __str__(self) -> str:
        return self.original_filename

    @property
    def kind_label(self) -> str:
        kind = KINDS.get(self.kind)
        return str(kind.label) if kind else self.kind

    def file(self) -> Path:
        """The stored file of the local store (a shared folder included); refuses a path that would
        leave the uploads folder."""
        return LocalStorage(Path(current_app.instance_path)).path(self.path)

    def data(self) -> bytes:
        """The stored bytes, from whichever store keeps them; FileNotFoundError when gone."""
        return storage().get(self.path)


def sniff(data: bytes) -> str | None:
    """The content type the bytes themselves declare, if it is one we keep."""
    for magic, content_type in MAGIC:
        if data.startswith(magic):
            if content_type == PNG and data[12:16] != b"IHDR":
                return None
            return content_type
    return None


def decode_data_url(value: str) -> bytes:
    """A canvas signature posted as ``data:image/png;base64,…``: only PNG, only base64."""
    head, _, body = (value or "").strip().partition(",")
    if head.lower() != "data:image/png;base64" or not body:
        raise DomainError(_l("The signature must be drawn on the pad (a PNG image)."), "signature")
    try:
        data = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise DomainError(_l("The signature could not be read; draw it again."), "signature") from None
    if sniff(data) != PNG:
        raise DomainError(_l("The signature could not be read; draw it again."), "signature")
    return data


def store(record: Any, kind: str, data: bytes, filename: str, user: Staff | None) -> Attachment:
    """Check and keep one file for ``record`` (added to the session, not committed).

    Size and type are checked against the kind's limits; the type comes from the magic bytes.
    Files are content-addressed, so storing the same bytes twice writes one file."""
    spec = KINDS.get(kind)
    if spec is None:
        raise ValueError(f"unknown attachment kind {kind!r}")
    if not data:
        raise DomainError(_l("The file is empty."), "file")
    if len(data) > spec.max_bytes:
        raise DomainError(_l("The file is too large (at most %(n)s MB).", n=spec.max_bytes // MB), "file")
    content_type = sniff(data)
    if content_type is None or content_type not in spec.types:
        raise DomainError(_l("Only PDF, PNG or JPEG files are accepted (checked by content, not by name)."),
                          "file")
    digest = hashlib.sha256(data).hexdigest()
    now = utcnow()
    relative = f"{UPLOADS}/{now:%Y}/{now:%m}/{digest}"
    storage().put(relative, data)
    name = typed_name(filename, content_type) or f"{kind}.{EXTENSIONS[content_type]}"
    row = Attachment(record_type=record.__tablename__, record_id=record.id, kind=kind, original_filename=name,
                     content_type=content_type, size=len(data), sha256=digest, path=relative,
                     uploaded_by_id=user.id if user is not None else None, uploaded_at=now)
    db.session.add(row)
    return row


def _clean_name(filename: str | None) -> str:
    """Only the last path part, no control or bidi characters, no characters Windows refuses."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable())  # drops NUL, U+202E (right-to-left) …
    return re.sub(r'[<>:"|?*]', "_", name).strip(" .")


def typed_name(filename: str | None, content_type: str) -> str:
    """SEC-2: the user's name for display, but its extension is the one of the type the bytes
    declare: ``poly.html`` holding a PDF becomes ``poly.pdf``, ``a.pdf\\x00.html`` becomes ``a.pdf``.
    Empty when nothing of the name is left."""
    name = _clean_name(filename)
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    known = SAME_TYPE.get(content_type, ())
    if extension.lower() in known:
        return f"{stem.strip(' .')[:200]}.{extension}" if stem.strip(" .") else ""
    for ext in known:  # "a.pdf.html": drop the masquerade, keep one real extension
        if stem.lower().endswith("." + ext):
            stem = stem[: -len(ext) - 1]
    stem = stem.strip(" .")[:200]
    if not stem:
        return ""
    if RESERVED.match(stem.split(".", 1)[0]):
        stem = "_" + stem
    return f"{stem}.{EXTENSIONS.get(content_type, 'bin')}"


def attachments_of(record_type: str, record_id: int | None, kind: str | None = None) -> list[Attachment]:
    if record_id is None:
        return []
    q = sa.select(Attachment).where(Attachment.record_type == record_type, Attachment.record_id == record_id)
    if kind is not None:
        q = q.where(Attachment.kind == kind)
    return list(db.session.scalars(q.order_by(Attachment.uploaded_at, Attachment.id)))


def has_attachment(record_type: str, record_id: int | None, kind: str) -> bool:
    if record_id is None:
        return False
    return db.session.scalar(sa.select(sa.exists().where(
        Attachment.record_type == record_type, Attachment.record_id == record_id, Attachment.kind == kind))) is True


# --- owners that go take their files with them ------------------------------------------------
def _remove_rows(session: Session, record_type: str, ids: list[int]) -> None:
    """Delete the attachment rows of these owners now; their files go after the commit."""
    a = Attachment.__table__
    for start in range(0, len(ids), 2000):
        part = ids[start:start + 2000]
        rows = session.execute(sa.select(a.c.id, a.c.path).where(a.c.record_type == record_type,
                                                                 a.c.record_id.in_(part))).all()
        if rows:
            session.info.setdefault(DOOMED, set()).update(path for _, path in rows)
            session.execute(sa.delete(a).where(a.c.id.in_([i for i, _ in rows])))


@event.listens_for(Session, "do_orm_execute")
def _purge_with_owner(state: Any) -> None:
    """A bulk DELETE of an owner table (the retention purge) removes the owners' attachments."""
    if not state.is_delete:
        return
    table = getattr(state.statement, "table", None)
    if table is None or getattr(table, "name", None) not in OWNER_TYPES or state.statement.whereclause is None:
        return
    ids = list(state.session.scalars(sa.select(table.c.id).where(state.statement.whereclause),
                                     state.parameters or {}))
    if ids:
        _remove_rows(state.session, table.name, ids)


@event.listens_for(Session, "before_flush")
def _deleted_owners(session: Session, flush_context: Any, instances: Any) -> None:
    """The same for owners deleted one by one through the ORM."""
    found: dict[str, list[int]] = {}
    for obj in session.deleted:
        name = getattr(type(obj), "__tablename__", None)
        if name in OWNER_TYPES and getattr(obj, "id", None) is not None:
            found.setdefault(name, []).append(obj.id)
    for name, ids in found.items():
        _remove_rows(session, name, ids)


@event.listens_for(Session, "after_commit")
def _remove_files(session: Session) -> None:
    """Files no longer named by any row are removed once the deletion is committed."""
    paths = session.info.pop(DOOMED, None)
    if not paths:
        return
    a = Attachment.__table__
    with db.engine.connect() as conn:
        kept = set(conn.scalars(sa.select(a.c.path).where(a.c.path.in_(list(paths)))))
    store = storage()
    for path in paths - kept:
        store.delete(path)


@event.listens_for(Session, "after_rollback")
def _keep_files(session: Session) -> None:
    session.info.pop(DOOMED, None)
