"""Template helpers: the current locale, local time display and the signed-in user's role names."""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from flask_babel import format_datetime, get_locale
from flask_login import current_user

from models.staff import ROLES


def localtime(value: datetime | None) -> str:
    """Stored UTC, shown in the site's zone (Asia/Shanghai by default)."""
    return format_datetime(value, "yyyy-MM-dd HH:mm") if value else ""


def current_user_roles() -> str:
    if not current_user.is_authenticated:
        return ""
    return "、".join(str(ROLES[r]) for r in sorted(current_user.roles) if r in ROLES)


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(get_locale=get_locale, current_user_roles=current_user_roles)
    app.jinja_env.filters["localtime"] = localtime
