"""All models, one module per regulation; importing this registers every table."""

from models import calendar, deadline, retention  # noqa: E402,F401,I001  (time rules: register tables)
from models import archive_coverage, archive_records, archives, complaints, duty, help_requests  # noqa: E402,F401,I001  (regulations)
from models import moving, renovation, repairs, violations, visits  # noqa: E402,F401,I001  (register their tables)
from models import numbering  # noqa: E402,F401,I001  (record-number counters)
from models import attachment  # noqa: E402,F401,I001  (shared attachment store: signatures, scans, drawings)
from models import job_run  # noqa: E402,F401,I001  (scheduled jobs: sweep lease, last runs)
from models import form_tokens  # noqa: E402,F401,I001  (one-time create-form tokens)
from models.audit import AuditEntry, AuditHead, AuditRedactionPermit
from models.base import db
from models.key_custody import KeyCustody, KeyUse
from models.registry import (
    Building,
    Estate,
    Occupancy,
    Resident,
    ResidentChange,
    Unit,
    VipCommunication,
    VipProfile,
)
from models.staff import (
    Department,
    Notification,
    PasswordResetToken,
    RoleChange,
    SecurityEvent,
    Staff,
    StaffRole,
    UserSession,
)
from models.workflow import Delegation, SignOff, WorkflowSetting

__all__ = [
    "AuditEntry", "AuditHead", "AuditRedactionPermit", "Delegation", "KeyCustody", "KeyUse", "SignOff",
    "WorkflowSetting",
    "Building", "Department", "Estate", "Notification", "Occupancy", "PasswordResetToken",
    "Resident", "ResidentChange", "RoleChange", "SecurityEvent", "Staff", "StaffRole", "Unit", "UserSession",
    "VipCommunication", "VipProfile", "db",
]

from sqlalchemy import event as _event  # noqa: E402
from sqlalchemy.orm import Session as _Session  # noqa: E402

from models.base import current_actor_id as _actor  # noqa: E402
from models.registry import record_history as _record_history  # noqa: E402


@_event.listens_for(_Session, "before_flush")
def _history(session: _Session, flush_context: object, instances: object) -> None:
    _record_history(session, _actor())

from workflow import important as _important  # noqa: E402,F401  (ACC-8: the important-information guard)
