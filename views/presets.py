"""Named list filters ("presets") that the home page's counts link to.

A preset is a WHERE clause on one screen's model, chosen by ``?preset=<key>`` in the list's URL.
The list applies it after the screen's own scope (``SecureModelView.get_query``), and the home
page counts with the same screen's ``get_count_query`` plus the same clause, so a count and the
list it links to can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

import sqlalchemy as sa
from flask import has_request_context, request
from flask_babel import lazy_gettext as _l

from models.base import utcnow
from workflow.calendar import app_zone, local_today

ARG = "preset"


@dataclass(frozen=True)
class Preset:
    endpoint: str
    key: str
    label: Any  # lazy string, shown above the filtered list
    where: Callable[[datetime], list[Any]]  # now (UTC) -> clauses on the screen's model


PRESETS: dict[tuple[str, str], Preset] = {}


def declare(preset: Preset) -> Preset:
    PRESETS[(preset.endpoint, preset.key)] = preset
    return preset


def today_start(now: datetime) -> datetime:
    """The site's local midnight of ``now``'s day, in UTC."""
    return datetime.combine(local_today(now), time.min, tzinfo=app_zone()).astimezone(UTC)


def current(endpoint: str) -> Preset | None:
    """The preset the current request's list asks for, if this screen declares it."""
    if not has_request_context():
        return None
    key = request.args.get(ARG)
    return PRESETS.get((endpoint, key)) if key else None


def narrow(view: Any, query: Any) -> Any:
    """The list's query, narrowed by the requested preset (the view's scope already applied)."""
    preset = current(view.endpoint)
    return query.filter(*preset.where(utcnow())) if preset is not None else query


def count(view: Any, preset: Preset, now: datetime) -> int:
    """What the list at ``?preset=<key>`` would count, with the view's own scope."""
    return int(view.get_count_query().filter(*preset.where(now)).scalar() or 0)


def _declare_all() -> None:
    from models.complaints import Complaint
    from models.help_requests import HelpRequest
    from models.moving import ReleaseSlip
    from models.renovation import Renovation
    from models.renovation_parts import RenovationInspection
    from models.renovation_rules import WORKS
    from models.staff import SecurityEvent

    declare(
        Preset(
            "complaint", "today", _l("New complaints today"), lambda now: [Complaint.received_at >= today_start(now)]
        )
    )
    declare(
        Preset(
            "help_request",
            "today",
            _l("New help requests today"),
            lambda now: [HelpRequest.received_at >= today_start(now)],
        )
    )
    declare(
        Preset(
            "release_slip",
            "today",
            _l("Release slips issued today"),
            lambda now: [ReleaseSlip.issued_at >= today_start(now)],
        )
    )
    declare(
        Preset("renovation", "fees_due", _l("Renovation fees to confirm"), lambda now: [Renovation.state == "approved"])
    )

    def unpatrolled(now: datetime) -> list[Any]:
        i = RenovationInspection
        patrolled = sa.exists().where(i.renovation_id == Renovation.id, i.kind == "patrol", i.at >= today_start(now))
        return [Renovation.state.in_(WORKS), ~patrolled]

    declare(Preset("renovation", "unpatrolled", _l("Renovations under works not patrolled today"), unpatrolled))
    declare(
        Preset(
            "security_event",
            "failed_today",
            _l("Failed logins today"),
            lambda now: [SecurityEvent.kind == "login_failed", SecurityEvent.at >= today_start(now)],
        )
    )


def list_preset() -> Preset | None:
    """For the list template's notice: the preset the current list page is narrowed by."""
    endpoint = (request.endpoint or "") if has_request_context() else ""
    if not endpoint.endswith(".index_view"):
        return None
    return current(endpoint.rsplit(".", 1)[0])


_declare_all()
