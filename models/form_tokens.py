"""One-time create-form tokens: the nonce of each create form saved, so the same form posted twice
(a double click, the back button then 保存 again) creates one record. Written in the creating
transaction; the unique key refuses the second post even when both arrive at once."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import UTCDateTime, db, utcnow


class UsedFormToken(db.Model):
    __tablename__ = "used_form_token"
    __audit__ = False  # bookkeeping of the form, not of the record (which is audited itself)
    id: Mapped[int] = mapped_column(primary_key=True)
    nonce: Mapped[str] = mapped_column(sa.String(64), unique=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
