"""Low-code settings: the defaults declared in code, overridden by an admin on a screen.

Each setting is declared once (key, kind, default, bounds); a stored value is validated by
that declaration before it is written, and every change is an audited "setting" row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import g, has_app_context
from flask_babel import lazy_gettext as _l

from models.base import db
from models.staff import ROLES, Staff
from models.validators import DomainError
from models.workflow import WorkflowSetting
from workflow.audit import annotate

KINDS = ("roles", "minutes", "hours", "days", "working_days", "integer")


@dataclass(frozen=True)
class SettingSpec:
    key: str
    label: Any
    kind: str
    default: Any
    minimum: int = 0
    maximum: int = 100_000
    group: Any = field(default="")

    def parse(self, raw: Any) -> Any:
        """The stored form of ``raw`` (a form string, a list or a number), or DomainError."""
        if self.kind == "roles":
            items = raw if isinstance(raw, list | tuple | set | frozenset) else \
                [r.strip() for r in str(raw or "").replace("，", ",").split(",")]
            roles = sorted({r for r in items if r})
            unknown = [r for r in roles if r not in ROLES]
            if unknown:
                raise DomainError(_l("Unknown role: %(r)s", r=", ".join(unknown)), "value")
            if not roles:
                raise DomainError(_l("At least one role is required."), "value")
            if "admin" in roles:  # REGULATIONS §0: administrators make no business decisions
                raise DomainError(_l("System administrators make no business decisions."), "value")
            return roles
        try:
            number = int(str(raw).strip())
        except (TypeError, ValueError):
            raise DomainError(_l("Enter a whole number."), "value") from None
        if not self.minimum <= number <= self.maximum:
            raise DomainError(_l("Enter a number from %(a)s to %(b)s.", a=self.minimum, b=self.maximum),
                              "value")
        return number

    def shown(self, value: Any) -> str:
        if self.kind == "roles":
            return "、".join(str(ROLES.get(r, r)) for r in value)
        return str(value)


SPECS: dict[str, SettingSpec] = {}


def declare(spec: SettingSpec) -> SettingSpec:
    if spec.kind not in KINDS:
        raise ValueError(f"unknown setting kind {spec.kind}")
    spec.parse(spec.default)  # a bad default is a programming error: fail at import
    SPECS[spec.key] = spec
    return spec


def _overrides() -> dict[str, Any]:
    cache = g.get("pm_settings") if has_app_context() else None
    if cache is None:
        rows = db.session.execute(sa.select(WorkflowSetting.key, WorkflowSetting.value)).all()
        cache = {k: json.loads(v) for k, v in rows}
        if has_app_context():
            g.pm_settings = cache
    return cache


def value(key: str) -> Any:
    """The effective value: the admin's override if any, else the declared default."""
    spec = SPECS[key]
    stored = _overrides().get(key)
    if stored is None:
        return spec.default
    try:
        return spec.parse(stored)
    except DomainError:
        return spec.default  # a row that no longer validates (e.g. a removed role) is ignored


def change(key: str, raw: Any, actor: Staff | None) -> Any:
    """Validate and store an override; the caller commits. The session hook audits it."""
    spec = SPECS.get(key)
    if spec is None:
        raise DomainError(_l("Unknown setting."), "key")
    parsed = spec.parse(raw)
    row = db.session.scalar(sa.select(WorkflowSetting).where(WorkflowSetting.key == key))
    if row is None:
        row = WorkflowSetting(key=key, value=json.dumps(parsed))
        db.session.add(row)
    else:
        row.value = json.dumps(parsed)
    row.updated_by_id = actor.id if actor else None
    annotate(row, "setting", comment=key)
    if has_app_context():
        g.pop("pm_settings", None)
    return parsed


def reset(key: str) -> None:
    """Back to the declared default (the row is removed; the hook audits the delete)."""
    row = db.session.scalar(sa.select(WorkflowSetting).where(WorkflowSetting.key == key))
    if row is not None:
        annotate(row, "setting", comment=key)
        db.session.delete(row)
    if has_app_context():
        g.pop("pm_settings", None)


APPROVAL_REMINDER_HOURS = declare(SettingSpec(
    "workflow.approval_reminder_hours", _l("Remind approvers after (hours)"), "hours", 24,
    minimum=1, maximum=24 * 30, group=_l("Approvals")))
