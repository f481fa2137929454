"""REN-11: the daily patrol of each renovation site under works. The rows are made by the sweep (one per
site and day), so the screen lists and acts on them (record the patrol, idle, missed); nobody creates or
edits one by hand."""

from __future__ import annotations

from typing import Any

from flask_admin import Admin
from flask_babel import lazy_gettext as _l

from models import db
from models.renovation import Renovation, RenovationPatrolDay
from views.roles import BUSINESS, SUPERVISORS
from views.workflow import WorkflowModelView, state_filter


class RenovationPatrolDayView(WorkflowModelView):
    permissions = {"view": BUSINESS, "export": SUPERVISORS}
    column_list = ["day", "renovation", "state", "patrolled_at", "patrolled_by", "due_at"]
    column_details_list = [
        "day",
        "renovation",
        "state",
        "findings",
        "idle_reason",
        "patrolled_at",
        "patrolled_by",
        "due_at",
        "created_at",
    ]
    column_export_list = ["day", "renovation", "state", "patrolled_at", "patrolled_by", "findings", "idle_reason"]
    form_columns: list[str] = []  # made by the sweep, never typed
    column_sortable_list = ["day", "due_at"]
    column_default_sort = ("day", True)
    column_labels = {
        "day": _l("Day"),
        "renovation": _l("Renovation"),
        "state": _l("Status"),
        "findings": _l("Patrol findings"),
        "idle_reason": _l("Why the site is idle that day"),
        "patrolled_at": _l("Patrolled"),
        "patrolled_by": _l("Patrolled by"),
        "due_at": _l("Due"),
        "created_at": _l("Created"),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.column_filters = [state_filter(RenovationPatrolDay)]
        super().__init__(*args, **kwargs)

    def get_query(self) -> Any:
        return (
            super()
            .get_query()
            .options(
                db.joinedload(RenovationPatrolDay.renovation).joinedload(Renovation.unit),
                db.joinedload(RenovationPatrolDay.patrolled_by),
            )
        )


def register(admin: Admin, category: Any) -> None:
    admin.add_view(
        RenovationPatrolDayView(
            RenovationPatrolDay, db, name=_l("Daily patrols"), category=category, endpoint="renovation_patrol_day"
        )
    )
