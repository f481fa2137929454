"""Resident archives (业户档案, REGULATIONS §3): one archive per unit (ARC-1), its document checklist
backed by scans (ARC-2), confidential access (ARC-3), closing on move-out (ARC-4) and the census
confirmation (ARC-6). Events, rentals, arrears and spot checks are in models/archive_records.py."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import UTCDateTime, db, utcnow
from models.registry import Building, Unit
from models.staff import Staff
from models.workflow import Tracked
from workflow.engine import STAY, Firing, Step, T, Workflow
from workflow.settings import SettingSpec, declare

CUSTOMER_SERVICE = frozenset({"manager", "cs_supervisor", "cs_clerk"})  # ARC-3: they open archives
EVERYONE = frozenset({"manager", "cs_supervisor", "cs_clerk", "engineering", "security", "finance",
                      "management_dept"})

# ARC-2 document types, grouped as the regulation lists them.
DOCUMENT_GROUPS: dict[str, tuple[Any, dict[str, Any]]] = {
    "move_in": (_l("Move-in"), {
        "prelim_agreement": _l("Preliminary management agreement"), "move_in_notice": _l("Move-in notice"),
        "owner_id_copy": _l("Owner ID copy"), "covenant": _l("Owners' covenant"),
        "fire_letter": _l("Fire-safety responsibility letter"),
        "handover_confirmation": _l("Handover confirmation"), "key_receipt": _l("Key receipt"),
        "defects_record": _l("Outstanding-defects record"),
        "bank_agreement": _l("Bank collection agreement"),
        "registration_form": _l("Owner/occupant registration form")}),
    "renovation": (_l("Renovation"), {
        "ren_application": _l("Renovation application"),
        "ren_contractor_licence": _l("Contractor licence/qualification"), "ren_drawings": _l("Drawings"),
        "ren_permit": _l("Renovation permit"), "ren_agreement": _l("Renovation agreement"),
        "ren_pledge": _l("Renovation pledge"), "ren_workers": _l("Worker register"),
        "ren_completion": _l("Completion application"), "ren_extension": _l("Extension application"),
        "ren_hot_work": _l("Hot-work application"), "ren_passes": _l("Returned worker passes"),
        "ren_violations": _l("Violation records")}),
    "transfer": (_l("Transfer"), {
        "tr_confirmation": _l("Transfer confirmation"),
        "tr_title": _l("Title deed or sale contract copy"), "tr_fire_letter": _l("Fire-safety letter"),
        "tr_bank_agreement": _l("Bank collection agreement"), "tr_registration": _l("Registration form")}),
    "tenancy": (_l("Tenancy"), {
        "tn_authorisation": _l("Owner authorisation"), "tn_pledge": _l("Tenant pledge"),
        "tn_lease": _l("Lease copy"), "tn_licence": _l("Business licence copy"),
        "tn_head_id": _l("ID of company head"), "tn_fire": _l("Fire-safety appointment")}),
    "other": (_l("Other"), {
        "correspondence": _l("Correspondence"), "complaints": _l("Complaints and replies"),
        "paid_services": _l("Paid-service requests"), "other": _l("Other documents")}),
}
DOCUMENT_TYPES: dict[str, Any] = {k: v for _, (_, docs) in DOCUMENT_GROUPS.items() for k, v in docs.items()}

APPROVAL_DAYS = declare(SettingSpec(
    "archive.access.valid_days", _l("Archive access approvals run until the end of the day, plus days"),
    "integer", 0, 0, 30, _l("Resident archives")))
STALE_DAYS = declare(SettingSpec(
    "archive.stale_days", _l("Archive data not confirmed for this many days is stale"), "days", 183, 30, 730,
    _l("Resident archives")))


class Archive(Tracked, db.Model):
    """一户一档 (ARC-1): exactly one archive per unit; closed (kept, never deleted) on move-out (ARC-4)."""

    __tablename__ = "archive"
    personal_label = True  # a household's confidential file (ARC-3): naming it names the household
    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(sa.ForeignKey("unit.id"), unique=True)
    unit: Mapped[Unit] = relationship()
    note: Mapped[str | None] = mapped_column(sa.Text, info={"personal": True})
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    documents: Mapped[list[ArchiveDocument]] = relationship(back_populates="archive",
                                                            cascade="all, delete-orphan")

    workflow = Workflow(_l("Resident archive"), {"open": _l("Open"), "closed": _l("Closed (moved out)")},
                        "open", [
        T("confirm_data", "open", STAY, CUSTOMER_SERVICE, label=_l("Confirm data (census)"),
          effect=lambda a, f: setattr(a, "confirmed_at", f.at), todo=False),
        T("close", "open", "closed", CUSTOMER_SERVICE, label=_l("Close (resident moved out)"),
          comment_required=True, todo=False),
        T("reopen", "closed", "open", frozenset({"manager", "cs_supervisor"}), label=_l("Reopen"),
          comment_required=True, todo=False),
        # fired by the moving workflow: the unit's last occupant left / a new occupant moved in
        T("close_on_move_out", "open", "closed", system=True, label=_l("Closed: the last occupant moved out")),
        T("reopen_on_move_in", "closed", "open", system=True, label=_l("Reopened: a new occupant moved in")),
    ])  # no delete_roles: archives are kept permanently (ARC-4)

    def __str__(self) -> str:
        return str(self.unit.code) if self.unit else f"#{self.id}"

    def documents_newest_first(self) -> list[ArchiveDocument]:
        """ARC-12: the documents by date, newest first (the document's own date, else the filing day)."""
        return sorted(self.documents, key=lambda d: (d.dated(), d.filed_at, d.id), reverse=True)

    def held_types(self) -> set[str]:
        return {d.doc_type for d in self.documents}

    def missing_documents(self) -> list[str]:
        """ARC-2: the checklist's unticked document types (labels), in checklist order."""
        held = self.held_types()
        return [str(label) for key, label in DOCUMENT_TYPES.items() if key not in held]

    def is_stale(self, now: datetime | None = None) -> bool:
        limit = (now or utcnow()) - timedelta(days=_stale_days())
        return self.confirmed_at is None or self.confirmed_at < limit


class ArchiveDocument(db.Model):
    """A tick on the checklist; it exists only with its scan (ARC-2: ticks and scans agree)."""

    __tablename__ = "archive_document"
    __table_args__ = (sa.UniqueConstraint("archive_id", "doc_type"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    archive_id: Mapped[int] = mapped_column(sa.ForeignKey("archive.id", ondelete="CASCADE"), index=True)
    archive: Mapped[Archive] = relationship(back_populates="documents")
    doc_type: Mapped[str] = mapped_column(sa.String(32))
    attachment_id: Mapped[int] = mapped_column(sa.ForeignKey("attachment.id"))
    filed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    filed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    document_date: Mapped[date | None] = mapped_column(sa.Date)  # ARC-12: the document's own date

    def dated(self) -> date:
        """ARC-12: the date shown and sorted by — the document's own, else the local filing day."""
        from workflow.calendar import app_zone

        return self.document_date or self.filed_at.astimezone(app_zone()).date()


def _stale_days() -> int:
    from workflow import settings

    return int(settings.value(STALE_DAYS.key))


def archive_for_unit(unit_id: int) -> Archive:
    """The unit's archive, created when missing (added to the session, not committed)."""
    found = db.session.scalar(sa.select(Archive).where(Archive.unit_id == unit_id))
    if found is None:
        found = Archive(unit_id=unit_id)
        db.session.add(found)
        db.session.flush()
    return found


def ordered(query: Any) -> Any:
    """ARC-1: archives in building, floor, room order."""
    return query.join(Archive.unit).join(Unit.building).order_by(Building.code, Unit.floor, Unit.code)


def file_document(archive: Archive, doc_type: str, data: bytes | None, filename: str,
                  user: Staff | None, document_date: date | None = None) -> ArchiveDocument:
    """Tick one checklist entry by uploading its scan; without a scan the tick is refused (ARC-2)."""
    from models.attachment import store
    from models.validators import DomainError

    if doc_type not in DOCUMENT_TYPES:
        raise DomainError(_l("Unknown document type."), "doc_type")
    if not data:
        raise DomainError(_l("A ticked document needs its uploaded scan."), "scan")
    if doc_type in archive.held_types():
        raise DomainError(_l("This document is already on file."), "doc_type")
    if document_date is not None and document_date > utcnow().date() + timedelta(days=1):
        raise DomainError(_l("A document's date cannot be in the future."), "document_date")
    scan = store(archive, "scan", data, filename, user)
    db.session.flush()
    row = ArchiveDocument(archive=archive, doc_type=doc_type, attachment_id=scan.id,
                          filed_by_id=user.id if user else None, document_date=document_date)
    db.session.add(row)
    db.session.flush()
    return row


def checklist_problems(archive: Archive) -> list[str]:
    """ARC-2: where ticks and scans disagree — a tick whose scan is gone, a scan with no tick."""
    from models.attachment import attachments_of

    scans = {a.id: a for a in attachments_of("archive", archive.id, "scan")}
    problems = [str(_l("Ticked without a scan: %(d)s", d=DOCUMENT_TYPES.get(d.doc_type, d.doc_type)))
                for d in archive.documents if d.attachment_id not in scans]
    ticked = {d.attachment_id for d in archive.documents}
    problems += [str(_l("Scan without a tick: %(f)s", f=a.original_filename))
                 for a in scans.values() if a.id not in ticked]
    return problems


# --- ARC-3 confidential access -------------------------------------------------------------
ACCESS_KINDS = {"view": _l("View"), "lend": _l("Lend"), "print": _l("Print"), "copy": _l("Copy"),
                "export": _l("Export")}


def end_of_day(at: datetime) -> datetime:
    """End of ``at``'s local day (Beijing), plus the setting's extra days, as UTC."""
    from datetime import UTC

    from workflow import settings
    from workflow.calendar import app_zone

    local = at.astimezone(app_zone()).date() + timedelta(days=int(settings.value(APPROVAL_DAYS.key)))
    return datetime.combine(local, time(23, 59, 59), tzinfo=app_zone()).astimezone(UTC)


def _grant(access: ArchiveAccess, firing: Firing) -> None:
    access.approved_at = firing.at
    access.approved_by_id = firing.approved_by.id if firing.approved_by else None
    access.expires_at = end_of_day(firing.at)


def companion_needed(access: ArchiveAccess, requester: Staff | None = None) -> bool:
    """ARC-11: someone outside customer service (or a person from outside the firm) reads only
    accompanied by a customer-service staff member."""
    requester = requester or access.created_by
    return bool(access.outsider or requester is None or not set(requester.roles) & CUSTOMER_SERVICE)


def companion_problem(access: ArchiveAccess, requester: Staff | None = None) -> object:
    """Why the named companion does not do (None: fine, or none needed)."""
    if not companion_needed(access, requester):
        return None
    companion = access.companion or (db.session.get(Staff, access.companion_id) if access.companion_id else None)
    if companion is None:
        return _l("Someone outside customer service reads an archive only accompanied: name the "
                  "customer-service staff member who accompanies.")
    if not companion.active or not set(companion.roles) & CUSTOMER_SERVICE:
        return _l("The companion must be an active customer-service staff member.")
    return None


def _needs_supervisor_only(access: ArchiveAccess) -> object:
    problem = companion_problem(access)
    if problem:
        return problem
    if access.outsider or access.kind != "view":
        return _l("Outsiders and lending, printing, copying or exporting need a manager's approval.")
    return None


def _needs_manager(access: ArchiveAccess) -> object:
    problem = companion_problem(access)
    if problem:
        return problem
    if not (access.outsider or access.kind != "view"):
        return _l("An in-house viewing request goes to the customer-service supervisor.")
    from models.attachment import attachments_of

    if access.outsider and not attachments_of("archive_access", access.id, "scan"):
        return _l("An outsider must show a proof document: upload its scan first.")
    return None


def _is_companion(access: ArchiveAccess, user: Staff | None) -> object:
    """ARC-11: the companion confirms the reading on their own account, nobody for them."""
    if user is None or access.companion_id != user.id:
        return _l("Only the named companion confirms the accompanied reading.")
    return None


def _reading_to_confirm(access: ArchiveAccess) -> object:
    if access.companion_id is None:
        return _l("This request names no companion.")
    if access.reading_confirmed_at is not None:
        return _l("The reading is already confirmed.")
    return None


def _confirm_reading(access: ArchiveAccess, firing: Firing) -> None:
    access.reading_confirmed_at = firing.at


class ArchiveAccess(Tracked, db.Model):
    """《业户档案查阅登记表》: who wants which archive, why, what, accompanied by whom (ARC-3)."""

    __tablename__ = "archive_access"
    personal_label = True  # str() names the household's archive (ACC-5)
    id: Mapped[int] = mapped_column(primary_key=True)
    archive_id: Mapped[int] = mapped_column(sa.ForeignKey("archive.id"), index=True)
    archive: Mapped[Archive] = relationship()
    kind: Mapped[str] = mapped_column(sa.String(16), default="view")
    purpose: Mapped[str] = mapped_column(sa.String(200))
    documents_wanted: Mapped[str] = mapped_column(sa.String(200))
    accompanied_by: Mapped[str | None] = mapped_column(sa.String(64), info={"personal": True})  # free-text note
    companion_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"), index=True)  # ARC-11
    companion: Mapped[Staff | None] = relationship(foreign_keys=[companion_id])
    reading_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # by the companion
    outsider: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    outsider_name: Mapped[str | None] = mapped_column(sa.String(64), info={"personal": True})
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    approved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)

    workflow = Workflow(_l("Archive access request"), {
        "requested": _l("Requested"), "granted": _l("Approved"), "refused": _l("Refused"),
    }, "requested", [
        T("approve", "requested", "granted", EVERYONE, label=_l("Submit for approval"),
          guard=_needs_supervisor_only, effect=_grant, reject_to="refused",
          approvals=[Step(_l("Customer-service supervisor approves"), frozenset({"cs_supervisor"}))]),
        T("approve_manager", "requested", "granted", EVERYONE, label=_l("Submit for the manager's approval"),
          guard=_needs_manager, effect=_grant, reject_to="refused",
          approvals=[Step(_l("Manager approves in writing"), frozenset({"manager"}))]),
        T("confirm_reading", "granted", STAY, CUSTOMER_SERVICE, label=_l("Confirm the accompanied reading"),
          who=_is_companion, guard=_reading_to_confirm, effect=_confirm_reading),
    ])

    def __str__(self) -> str:
        return f"{self.archive} {ACCESS_KINDS.get(self.kind, self.kind)}"

    def check_request(self, requester: Staff | None = None) -> None:
        from models.validators import DomainError

        if self.kind not in ACCESS_KINDS:
            raise DomainError(_l("Choose what the access is for."), "kind")
        if not (self.purpose or "").strip():
            raise DomainError(_l("State the purpose."), "purpose")
        if self.outsider and not (self.outsider_name or "").strip():
            raise DomainError(_l("Name the outside person."), "outsider_name")
        problem = companion_problem(self, requester)
        if problem:
            raise DomainError(problem, "companion")


def granted_archive_ids(user: Staff, kinds: tuple[str, ...] = ("view",), now: datetime | None = None) -> Any:
    """A subquery of archive ids ``user`` holds an unexpired approval for (ARC-3)."""
    return sa.select(ArchiveAccess.archive_id).where(
        ArchiveAccess.created_by_id == user.id, ArchiveAccess.state == "granted",
        ArchiveAccess.kind.in_(kinds), ArchiveAccess.expires_at > (now or utcnow()),
        ArchiveAccess.deleted_at.is_(None))


def may_open(user: Staff | None, archive_id: int, kind: str = "view") -> bool:
    """ARC-3, denied by default: customer service opens (viewing); everyone else needs an approval;
    lending/printing/copying/exporting always needs a manager-approved request (managers excepted)."""
    if user is None or not getattr(user, "is_active", False):
        return False
    roles = set(user.roles)
    if kind == "view" and roles & CUSTOMER_SERVICE:
        return True
    if kind != "view" and "manager" in roles:
        return True
    return archive_id in set(db.session.scalars(granted_archive_ids(user, (kind,))))


def scope_archives(query: Any, user: Staff | None, kind: str = "view") -> Any:
    """Narrow an Archive query to what ``user`` may open (list, details, search, export)."""
    if user is None:
        return query.filter(sa.false())
    roles = set(user.roles)
    if (kind == "view" and roles & CUSTOMER_SERVICE) or (kind != "view" and "manager" in roles):
        return query
    return query.filter(Archive.id.in_(granted_archive_ids(user, (kind,))))


def log_view(archive: Archive, user: Staff | None) -> None:
    """ARC-3: every opening is logged, with the approval and who accompanied."""
    from workflow.audit import record_event

    access = None
    if user is not None:
        access = db.session.scalar(sa.select(ArchiveAccess).where(
            ArchiveAccess.archive_id == archive.id, ArchiveAccess.created_by_id == user.id,
            ArchiveAccess.state == "granted", ArchiveAccess.expires_at > utcnow()).order_by(
            ArchiveAccess.id.desc()).limit(1))
    companion = access.companion.full_name if access is not None and access.companion else None
    comment = "" if access is None else \
        f"access #{access.id}; purpose: {access.purpose}; accompanied by: {companion or access.accompanied_by or '-'}"
    record_event("confidential_view", record=archive, comment=comment or "customer service")
