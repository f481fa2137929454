"""REG-3 bad input: every integer a request carries is range-checked once (views/params.py), so a
number no database column can hold is a clear error in the user's language, never an HTTP 500.

Issue 12 §5: ``?page=99999999999999999999`` crashed all 43 list screens (SQLite OverflowError,
PostgreSQL "bigint out of range"; ``page=-1`` a negative OFFSET on PostgreSQL), so did the unit
screen's floor filter, the lookup ``offset`` and four POST routes with an id above 2**63. The
screens are read from the registered views, so a new screen is covered without editing this file.
Exceptions propagate in tests (TESTING), so a crash fails the test rather than hiding as a 500.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_admin.model import BaseModelView
from flask_admin.model.filters import BaseFloatFilter, BaseFloatListFilter, BaseIntFilter, BaseIntListFilter

from app import create_app
from models import Unit
from models.retention import LegalHold, RetentionBatch
from models.workflow import Delegation
from tests.conftest import csrf_token
from views.params import INT64_MAX, FilterConverter, column_bounds, parse_int

HUGE = ["99999999999999999999", str(2**63), str(2**64)]
OUT_OF_RANGE = "超出范围"  # the 400 page, in Chinese by default
FILTER_REFUSED = "不是筛选条件"
VIEW_ORDER = ["admin", "manager", "cs_supervisor", "finance", "engineering", "cs_clerk", "security",
              "management_dept"]
NUMERIC = (BaseIntFilter, BaseFloatFilter, BaseIntListFilter, BaseFloatListFilter)


def _screens() -> list[dict[str, Any]]:
    """Every list screen, the role that may see it, and its numeric filters' URL arguments."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", "SERVER_NAME": "localhost",
                      "SECRET_KEY": "collection-only", "FIELD_ENCRYPTION_KEYS": "t1:" + "A" * 43,
                      "BLIND_INDEX_KEY": "collection-only", "AUDIT_KEY": "collection-only"})
    out = []
    for view in (v for admin in app.extensions["admin"] for v in admin._views):
        if not isinstance(view, BaseModelView):
            continue
        role = next(r for r in VIEW_ORDER if r in view.permissions.get("view", ()))
        numeric = [(view.get_filter_arg(i, f), f.column) for i, f in enumerate(view._filters or [])
                   if isinstance(f, NUMERIC)]
        out.append({"endpoint": view.endpoint, "url": view.url, "role": role, "numeric": numeric})
    return out


SCREENS = _screens()


def test_reg_3_every_list_screen_is_covered():
    """The issue counted 43 list screens; fewer here would mean the catalogue missed some."""
    assert len(SCREENS) >= 43
    assert any(s["numeric"] for s in SCREENS if s["endpoint"] == "unit")  # floor


@pytest.mark.parametrize("screen", SCREENS, ids=[s["endpoint"] for s in SCREENS])
def test_reg_3_list_page_out_of_range_is_a_400_never_a_500(login_as, screen):
    client = login_as(screen["role"])
    assert client.get(f"{screen['url']}/?page=1").status_code == 200
    for page in [*HUGE, str(INT64_MAX), "-1"]:
        response = client.get(f"{screen['url']}/?page={page}")
        assert response.status_code == 400, (page, response.status)
        body = response.get_data(as_text=True)
        assert OUT_OF_RANGE in body and "page" in body
    # Flask-Admin's other integers (sort column, page size) go through the same door.
    for arg in ("sort", "page_size", "desc"):
        assert client.get(f"{screen['url']}/?{arg}={HUGE[0]}").status_code == 400


NUMERIC_SCREENS = [s for s in SCREENS if s["numeric"]]


@pytest.mark.parametrize("screen", NUMERIC_SCREENS, ids=[s["endpoint"] for s in NUMERIC_SCREENS])
def test_reg_3_numeric_filter_out_of_the_columns_range_is_refused(login_as, screen):
    """Beyond the column's range (PostgreSQL integer: 2**31) the filter is dropped with a message
    and the list is shown; a value in range still filters."""
    client = login_as(screen["role"])
    for arg, column in screen["numeric"]:
        low, high = column_bounds(column)
        for value in [*HUGE, str(int(high) + 1), str(int(low) - 1), "nan", "inf", "1e400"]:
            response = client.get(f"{screen['url']}/?flt0_{arg}={value}")
            assert response.status_code == 200, (arg, value, response.status)
            assert FILTER_REFUSED in response.get_data(as_text=True), (arg, value)
        response = client.get(f"{screen['url']}/?flt0_{arg}=3")
        assert response.status_code == 200 and FILTER_REFUSED not in response.get_data(as_text=True)


def test_reg_3_unit_floor_filter_in_english_too(login_as, db_session):
    client = login_as("cs_clerk")
    client.post("/lang/en", data={"csrf_token": csrf_token(client), "next": "/admin/unit/"})
    arg = next(a for a, c in next(s for s in SCREENS if s["endpoint"] == "unit")["numeric"] if c.name == "floor")
    page = client.get(f"/admin/unit/?flt0_{arg}={HUGE[0]}").get_data(as_text=True)
    assert "is not a value the filter" in page
    page = client.get(f"/admin/unit/?page={HUGE[0]}").get_data(as_text=True)
    assert "is out of range" in page


def test_reg_3_decimal_and_float_filters_are_range_checked_too():
    """No screen filters on money or area today; the converter covers them for the first that does."""
    [*flts] = FilterConverter().convert("numeric", Unit.__table__.c.area, "area")
    equal = flts[0]
    assert equal.validate("99999999.99") and not equal.validate("1e8") and not equal.validate("NaN")
    assert not equal.validate("-inf") and not equal.validate("1e400")


@pytest.mark.parametrize("query", [f"offset={HUGE[0]}", f"offset={2**64}", f"limit={HUGE[0]}"])
def test_reg_3_ajax_lookup_paging_out_of_range_is_a_400(login_as, query):
    response = login_as("cs_clerk").get(f"/admin/occupancy/ajax/lookup/?name=unit&query=A&{query}")
    assert response.status_code == 400
    assert OUT_OF_RANGE in response.get_data(as_text=True)


@pytest.mark.parametrize("number", [2**63, 2**64])
def test_reg_3_post_routes_with_an_id_beyond_64_bits_are_not_found(login_as, db_session, number):
    """Legal-hold release, delegation revoke, deduction collect, retention approve/list: an id no
    row can have is "not found" (404 in Chinese), nothing written."""
    before = {m: db_session.scalar(sa.select(sa.func.count()).select_from(m)) for m in
              (LegalHold, Delegation, RetentionBatch)}
    manager, finance = login_as("manager"), login_as("finance")
    posts = [
        (manager, f"/admin/legal-hold/{number}/release", {}),
        (manager, f"/admin/delegation/{number}/revoke", {}),
        (finance, "/admin/violation-deductions/collect/", {"id": str(number), "month": "2026-11"}),
        (manager, "/admin/retention-queue/approve", {"batch_id": str(number), "password": "x"}),
        (manager, "/admin/retention-queue/list", {"policy_id": str(number)}),
    ]
    for client, url, data in posts:
        response = client.post(url, data={"csrf_token": csrf_token(client), **data})
        assert response.status_code == 404, (url, response.status)
        assert "未找到" in response.get_data(as_text=True)
    assert before == {m: db_session.scalar(sa.select(sa.func.count()).select_from(m)) for m in before}


def test_reg_3_url_ids_beyond_64_bits_match_no_route(app: Flask, login_as):
    client = login_as("cs_clerk")
    for url in (f"/attachments/{2**63}", f"/admin/print/complaint/{2**64}.pdf"):
        assert client.get(url).status_code == 404
    converter = app.url_map.converters["int"](app.url_map)
    assert converter.max == INT64_MAX


def test_reg_3_parse_int_bounds():
    assert parse_int("9223372036854775807") == INT64_MAX
    with pytest.raises(ValueError):
        parse_int("abc")
    with pytest.raises(Exception) as caught:
        parse_int(str(2**63), "page")
    assert caught.value.code == 400


@pytest.mark.parametrize("floors", [str(2**63), "99999999999999999999"])
def test_reg_3_form_integer_beyond_64_bits_is_a_form_error(login_as, db_session, floors):
    """A scaffolded integer field: a field error in Chinese, nothing written (SQLite raised
    OverflowError, a 500, before)."""
    from tests.helpers import make_estate
    from tests.test_bad_input import open_form, refused, snapshot, submit

    make_estate()
    db_session.commit()
    supervisor = login_as("cs_supervisor")
    form = open_form(supervisor, "/admin/building/new/")
    before = snapshot()
    response = submit(supervisor, "/admin/building/new/", form, code="C", name="C栋", floors=floors)
    refused(response, "超出数据库允许的范围", before)
