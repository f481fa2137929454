"""The audit trail's screens: an admin-only, read-only log and each record's timeline.

Rows are written by workflow/audit.py and refused UPDATE/DELETE by the database, so this view
only reads; exporting the trail needs the admin's password again (ACC-5) and is itself logged.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask_admin import Admin
from flask_admin.contrib.sqla import filters
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape

from models import db
from models.audit import AuditEntry, AuditHead
from views.base import SecureModelView
from views.roles import ADMIN
from views.templating import localtime
from workflow.engine import WORKFLOWS

# Every ``action`` the trail holds: data writes (the session hook and the engine's labels) and
# the events ``security.accounts.log_event`` records (ACC-7).
ACTION_LABELS: dict[str, Any] = {
    "create": _l("Created"),
    "update": _l("Changed"),
    "delete": _l("Deleted"),
    "transition": _l("Workflow step"),
    "purge": _l("Purged under retention"),
    "anonymise": _l("Anonymised under retention"),
    "retention_approve": _l("Purge approved"),
    "request": _l("Approval requested"),
    "signoff": _l("Signed off"),
    "withdraw": _l("Request withdrawn"),
    "setting": _l("Setting changed"),
    "setting_changed": _l("Setting change (security log)"),
    "login": _l("Signed in"),
    "login_failed": _l("Failed sign-in"),
    "login_throttled": _l("Sign-in blocked (too many failures)"),
    "logout": _l("Signed out"),
    "export": _l("Export"),
    "print": _l("Printed"),
    "download": _l("File downloaded"),
    "confidential_view": _l("Confidential record viewed"),
    "reauth": _l("Password re-entered"),
    "reauth_failed": _l("Wrong password re-entered"),
    "important_change": _l("Important information changed (ACC-8)"),
    "account_created": _l("Account created"),
    "account_activated": _l("Account activated"),
    "account_deactivated": _l("Account deactivated"),
    "roles_changed": _l("Roles changed"),
    "password_set": _l("Password set"),
    "reset_token_issued": _l("Password reset link issued"),
    "data_import": _l("Data import"),
    "retention_stopped": _l("Purge stopped (rolled back)"),
    "reencrypt": _l("Re-encrypted with the current key"),
    "blind_index_rebuilt": _l("Search index rebuilt"),
}
EMPTY = "—"
SHORT = 80  # characters of one value in the list; the timeline shows LONG, details and export all
LONG = 400


def action_label(action: str | None) -> str:
    """The translated name of an action; an unknown kind shows as stored rather than vanish."""
    return str(ACTION_LABELS.get(action or "", action or ""))


def transition_label(entry: AuditEntry) -> str:
    """The declared label of the transition named in ``entry`` (its name if no longer declared)."""
    if not entry.transition:
        return ""
    wf = WORKFLOWS.get(entry.record_type or "")
    t = wf.transition(entry.transition) if wf is not None else None
    return str(t.label or t.name) if t is not None else entry.transition


UTC_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?\+00:00$")
BOOKKEEPING = {"pending_round", "version"}  # the engine's counters: nothing a reader needs


def _text(value: Any, limit: int | None) -> str:
    if value is None or value == "":
        return EMPTY
    if isinstance(value, str) and UTC_TEXT.match(value):  # a time the hook stored as UTC ISO text
        return localtime(datetime.fromisoformat(value))
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _field_label(name: str, view: Any, record_type: str | None) -> str:
    """The screen's label; a foreign key (``unit_id``) takes its relation's label (``unit``)."""
    wf = WORKFLOWS.get(record_type or "")
    labels = {**(getattr(wf.model, "field_labels", {}) if wf is not None else {}),
              **dict(getattr(view, "column_labels", None) or {})}
    for key in (name, name.removesuffix("_id")):
        if key in labels:
            return str(labels[key])
    return name


def change_rows(entry: AuditEntry, view: Any = None, limit: int | None = LONG) -> list[tuple[str, str, str]]:
    """``changes`` as (field, old, new) texts; already masked when written (ACC-6).

    Text that is not the JSON the hook writes (e.g. redacted by retention) is shown as one row.
    """
    if not entry.changes:
        return []
    try:
        data = json.loads(entry.changes)
    except ValueError:
        return [("", "", _text(entry.changes, limit))]
    if not isinstance(data, dict):
        return [("", "", _text(entry.changes, limit))]
    wf = WORKFLOWS.get(entry.record_type or "")
    rows = []
    for field, pair in sorted(data.items()):
        if field in BOOKKEEPING:
            continue
        old, new = pair if isinstance(pair, list) and len(pair) == 2 else (None, pair)
        if field == "state" and wf is not None:  # the state's label, as the record's screen shows it
            old, new = (wf.state_label(v) if v else v for v in (old, new))
        rows.append((_field_label(field, view, entry.record_type), _text(old, limit), _text(new, limit)))
    return rows


def changes_text(entry: AuditEntry, limit: int | None = None) -> str:
    """One export cell, nothing cut off: ``field: old → new; ...``."""
    return "; ".join(f"{f}: {old} → {new}" if f else new for f, old, new in change_rows(entry, limit=limit))


def _changes_html(model: AuditEntry, view: Any, limit: int | None) -> Markup:
    lines = [Markup("<b>{}</b>: {} → {}").format(f, old, new) if f else escape(new)
             for f, old, new in change_rows(model, view.screen_for(model.record_type), limit)]
    return Markup('<span class="audit-changes">{}</span>').format(Markup("<br>").join(lines))


def _changes_list(view: Any, context: Any, model: AuditEntry, name: str) -> Markup:
    return _changes_html(model, view, SHORT)


def _changes_detail(view: Any, context: Any, model: AuditEntry, name: str) -> Markup:
    return _changes_html(model, view, None)


def _comment(view: Any, context: Any, model: AuditEntry, name: str) -> str:
    return _text(model.comment, 2 * SHORT) if model.comment else ""


def _action(view: Any, context: Any, model: AuditEntry, name: str) -> str:
    return action_label(model.action)


def _transition(view: Any, context: Any, model: AuditEntry, name: str) -> str:
    return transition_label(model)


def _record_type(view: Any, context: Any, model: AuditEntry, name: str) -> Markup:
    """The screen's name for people, the table name for the record-type filter."""
    screen = view.screen_for(model.record_type)
    if screen is None:
        return escape(model.record_type or "")
    return Markup('{} <small class="text-muted">{}</small>').format(screen.name, model.record_type)


class RecordIdFilter(filters.IntEqualFilter):
    """Junk or out-of-range ids are "invalid filter value", never a database error."""

    def validate(self, value: Any) -> bool:
        try:
            return 0 <= int(value) < 2**63
        except (TypeError, ValueError):
            return False


# Explicit filter objects, so each one's position (its URL argument ``flt0_<index>``) is stable.
ACTION_FILTER = filters.FilterEqual(AuditEntry.action, _l("Action"), options=list(ACTION_LABELS.items()))
ACTOR_FILTER = filters.FilterLike(AuditEntry.actor_name, _l("By"))
RECORD_TYPE_FILTER = filters.FilterEqual(AuditEntry.record_type, _l("Record type"))
RECORD_ID_FILTER = RecordIdFilter(AuditEntry.record_id, _l("Record ID"))
AFTER_FILTER = filters.DateTimeGreaterFilter(AuditEntry.at, _l("Time"))
BEFORE_FILTER = filters.DateTimeSmallerFilter(AuditEntry.at, _l("Time"))


class AuditEntryView(SecureModelView):
    """ACC-7: the admin reviews who changed what; nobody may write here, not even the admin."""

    reauth_endpoints = frozenset({"export"})  # ACC-5: the trail names people and their data
    permissions = {"view": ADMIN, "export": ADMIN}
    details_template = "admin/model/details.html"  # an entry has no timeline of its own
    column_list = ["seq", "at", "actor_name", "ip", "action", "record_type", "record_id", "transition",
                   "comment", "changes"]
    column_details_list = ["seq", "at", "actor_id", "actor_name", "ip", "action", "record_type",
                           "record_id", "transition", "comment", "changes", "digest", "prev_hash", "hash",
                           "redacted_at", "redacted_by_batch", "redaction_seal"]
    column_export_list = ["seq", "at", "actor_id", "actor_name", "ip", "action", "record_type",
                          "record_id", "transition", "comment", "changes", "hash", "redacted_at", "redacted_by_batch"]
    form_columns: list[str] = []
    column_filters = [ACTION_FILTER, ACTOR_FILTER, RECORD_TYPE_FILTER, RECORD_ID_FILTER, AFTER_FILTER,
                      BEFORE_FILTER]
    column_searchable_list = ["actor_name", "ip", "comment"]
    column_sortable_list = ["seq", "at", "actor_name", "action", "record_type", "record_id"]
    column_default_sort = ("seq", True)
    column_labels = {
        "seq": _l("No."), "at": _l("Time"), "actor_id": _l("Staff ID"), "actor_name": _l("By"),
        "ip": _l("IP address"), "action": _l("Action"), "record_type": _l("Record type"),
        "record_id": _l("Record ID"), "transition": _l("Step"), "comment": _l("Comment"),
        "changes": _l("Changes"), "digest": _l("Digest of changes"), "prev_hash": _l("Previous hash"),
        "hash": _l("Hash"), "redacted_at": _l("Redacted at"), "redacted_by_batch": _l("Redacted by batch"),
        "redaction_seal": _l("Redaction seal"),
    }
    column_formatters = {"action": _action, "transition": _transition, "changes": _changes_list,
                         "comment": _comment, "record_type": _record_type}
    column_formatters_detail = {"action": _action, "transition": _transition, "changes": _changes_detail,
                                "record_type": _record_type}
    column_formatters_export = {"action": _action, "transition": _transition,
                                "changes": lambda v, c, m, n: changes_text(m)}

    _screens: dict[str, Any] | None = None

    def screen_for(self, record_type: str | None) -> Any:
        """The model screen of ``record_type``, whose column labels name the changed fields."""
        if self._screens is None:  # built on first use: every screen is registered by then
            screens: dict[str, Any] = {}
            for view in self.admin._views:
                table = getattr(getattr(view, "model", None), "__tablename__", None)
                if table:
                    screens.setdefault(table, view)
            self._screens = screens
        return self._screens.get(record_type or "")


def timeline_for(record: Any) -> list[AuditEntry]:
    """Every audit row about ``record`` (by table name and id), oldest first."""
    if isinstance(record, AuditEntry | AuditHead) or getattr(record, "id", None) is None:
        return []
    return list(db.session.scalars(
        sa.select(AuditEntry)
        .where(AuditEntry.record_type == type(record).__tablename__, AuditEntry.record_id == record.id)
        .order_by(AuditEntry.seq)))


def register(admin: Admin) -> None:
    admin.add_view(AuditEntryView(AuditEntry, db, name=_l("Audit trail"), category=_l("Staff and security"),
                                  endpoint="audit"))
    admin.app.jinja_env.globals.update(audit_action_label=action_label, audit_changes=change_rows,
                                       audit_transition_label=transition_label)
