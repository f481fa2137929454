"""Staff accounts, departments, roles and the security log (REGULATIONS §0, §1: ACC)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Timestamped, UTCDateTime, db, utcnow

ROLES: dict[str, object] = {
    "admin": _l("System administrator"),
    "manager": _l("Manager"),
    "cs_supervisor": _l("Customer-service supervisor"),
    "cs_clerk": _l("Customer-service clerk"),
    "engineering": _l("Engineering"),
    "security": _l("Security"),
    "finance": _l("Finance"),
    "management_dept": _l("Management department"),
}

DEPARTMENTS: dict[str, object] = {
    "cs": _l("Customer service centre"),
    "engineering": _l("Engineering"),
    "security": _l("Security"),
    "finance": _l("Finance"),
    "management": _l("Management department"),
    "environment": _l("Environment department"),
}


class Department(db.Model):
    __tablename__ = "department"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(64))

    def __str__(self) -> str:
        return str(DEPARTMENTS.get(self.key, self.name))


class Staff(Timestamped, db.Model):
    """One staff account per real person (ACC-1); never self-registered."""

    __tablename__ = "staff"
    derived_from = {"roles": ("role_rows",)}  # what properties shown on screens read
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    full_name: Mapped[str] = mapped_column(sa.String(64))
    phone: Mapped[str | None] = mapped_column(sa.String(32), info={"personal": True})
    email: Mapped[str | None] = mapped_column(sa.String(254), info={"personal": True})
    department_id: Mapped[int | None] = mapped_column(sa.ForeignKey("department.id"))
    department: Mapped[Department | None] = relationship()
    # The department head signs approval steps declared as "head of <department>".
    department_head: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    password_hash: Mapped[str] = mapped_column(sa.String(255), info={"sensitive": True})
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Bumped on password reset or deactivation: every older session cookie stops working.
    session_epoch: Mapped[int] = mapped_column(sa.Integer, default=0)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    locale: Mapped[str] = mapped_column(sa.String(16), default="zh_Hans_CN")
    role_rows: Mapped[list[StaffRole]] = relationship(
        back_populates="staff", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def roles(self) -> set[str]:
        return {r.role for r in self.role_rows}

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    # Flask-Login protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return bool(self.active)

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return f"{self.id}:{self.session_epoch}"

    def __str__(self) -> str:
        return f"{self.full_name} ({self.username})"


class StaffRole(db.Model):
    __tablename__ = "staff_role"
    __table_args__ = (sa.UniqueConstraint("staff_id", "role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(sa.String(32))
    staff: Mapped[Staff] = relationship(back_populates="role_rows")


class RoleChange(db.Model):
    """ACC-4: who changed whose roles from what to what, and when."""

    __tablename__ = "role_change"
    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"), index=True)
    staff: Mapped[Staff] = relationship(foreign_keys=[staff_id])
    changed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    changed_by: Mapped[Staff | None] = relationship(foreign_keys=[changed_by_id])
    old_roles: Mapped[str] = mapped_column(sa.String(255))
    new_roles: Mapped[str] = mapped_column(sa.String(255))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class PasswordResetToken(db.Model):
    """ACC-3: only the token's hash is stored; one use, then dead."""

    __tablename__ = "password_reset_token"
    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    staff: Mapped[Staff] = relationship(foreign_keys=[staff_id])
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, info={"sensitive": True})
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))


class UserSession(db.Model):
    """One signed-in browser session, checked on every request so that logout, a password
    change, deactivation or a role change ends it on the server: a copied cookie stops working."""

    __tablename__ = "user_session"
    __audit__ = False  # last_seen_at moves on every request; logins/logouts are in the security log
    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the random id the signed cookie carries; the id itself is never stored.
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, info={"sensitive": True})
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    staff: Mapped[Staff] = relationship()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(255))


class SecurityEvent(db.Model):
    """ACC-7: logins, failures, permission changes and confidential views."""

    __tablename__ = "security_event"
    __audit__ = False  # log_event writes its own audit row
    __table_args__ = (
        sa.Index("ix_security_event_kind_username_at", "kind", "username", "at"),
        sa.Index("ix_security_event_kind_ip_at", "kind", "ip", "at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    username: Mapped[str | None] = mapped_column(sa.String(64))
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    detail: Mapped[str | None] = mapped_column(sa.String(500))


class Notification(db.Model):
    """In-app notice to one staff member (ACC-4 role changes, later workflow decisions)."""

    __tablename__ = "notification"
    __audit__ = False
    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    staff: Mapped[Staff] = relationship()
    subject: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
