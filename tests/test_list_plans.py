"""The default list query of every model screen is served by an index on SQLite (issue 16).

For each list screen, the statement that reads the page's rows (``… ORDER BY <default sort> LIMIT
… OFFSET …``, as one role that may open the screen runs it) goes through ``EXPLAIN QUERY PLAN``.
The assertion: the main table is never read by a full ``SCAN <table>`` or through its
``deleted_at`` index while SQLite sorts the result in a temp B-tree for the ORDER BY
(``USE TEMP B-TREE FOR ORDER BY``). That combination reads and sorts every live row to show 50,
seconds at a million rows; walking the sort key's index (``SCAN t USING INDEX ix_t_sortkey``)
stops after one page. The plan is read on the migrated schema (partial indexes, ANALYZE), the
way a deployment's planner sees it.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_login import login_user

from models import Staff, db
from tests.conftest import ROLE_USERS
from views.base import SecureModelView

ORDER_SORT = "USE TEMP B-TREE FOR ORDER BY"
# Screens whose order comes through a join or whose table stays tiny; each with its reason.
SORTED_IN_MEMORY = {
    "archive": "one row per unit, ordered by the unit's code through the join",
    "calendar_year": "a row per site and confirmed year",
}


def list_views(app: Flask) -> list[SecureModelView]:
    admin = app.extensions["admin"][0]
    return [
        v
        for v in admin._views
        if isinstance(v, SecureModelView) and v.can_view_details is not None and getattr(v, "column_list", None)
    ]


def page_plan(app: Flask, view: SecureModelView) -> list[str] | None:
    """The EXPLAIN QUERY PLAN of page 1 with the default sort, as a role that may open the list."""
    role = next((r for r in ROLE_USERS if r in view.permissions.get("view", frozenset())), None)
    if role is None:
        return None
    with app.test_request_context():
        staff = db.session.scalar(sa.select(Staff).where(Staff.username == ROLE_USERS[role]))
        login_user(staff)
        _count, query = view.get_list(0, None, None, None, [], execute=False)
        statement = getattr(query, "statement", query)
        connection = db.session.connection()
        compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
        params = compiled.construct_params()
        processors = compiled._bind_processors
        values = tuple(processors[k](params[k]) if k in processors else params[k] for k in compiled.positiontup)
        plan = [row[3] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), values)]
        db.session.remove()
    return plan


def test_reg_1_default_list_query_reads_no_table_into_a_sort(app, staff_ids):
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    problems, checked = [], 0
    for view in list_views(app):
        plan = page_plan(app, view)
        if plan is None:
            continue
        table = view.model.__table__.name
        checked += 1
        reads = [p for p in plan if re.match(rf"(SCAN|SEARCH) {table}\b", p)]
        bad_read = any(p == f"SCAN {table}" or f"ix_{table}_deleted_at" in p for p in reads)
        if bad_read and ORDER_SORT in plan and view.endpoint not in SORTED_IN_MEMORY:
            problems.append(f"{view.endpoint}: {plan}")
    assert checked >= 20
    assert problems == []


def test_cmp_1_complaint_list_joins_no_second_complaint_for_duplicate_of(app, staff_ids):
    """The list shows no "duplicate of" column, so its page query does not join complaint twice
    (the details page and the export still load it)."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    plan = page_plan(app, next(v for v in list_views(app) if v.endpoint == "complaint"))
    assert plan is not None
    assert not any(p.startswith("SEARCH complaint_") for p in plan), plan
