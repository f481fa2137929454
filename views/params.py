"""Every integer a request carries is range-checked here, once (bad input is an error, never a 500).

Three doors bring numbers in: URL parts (``<int:id>``), query and form values read with
``request.args.get(name, type=int)`` (Flask-Admin's page, sort, lookup offset and limit, and our
own routes) and the list screens' filter values. A number no database column can hold
(SQLite and PostgreSQL refuse integers beyond 64 bits with OverflowError / DataError) is
refused here with a message in the user's language:

* a URL part beyond 2**63 - 1 matches no route (404, as for any id that names no record);
* a query or form integer beyond 64 bits is a 400 page naming the parameter;
* a list page below 0 or beyond what an OFFSET can hold is the same 400 page;
* a numeric filter value outside its column's range is refused like any invalid filter value
  (a flashed message, the list shown without that filter).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from flask import Flask, Request, render_template
from flask_admin.contrib.sqla import filters
from flask_babel import gettext as _
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# PostgreSQL's ranges: SQLite stores any 64-bit integer, so both databases accept what fits here.
INT_RANGES = ((sa.SmallInteger, 2**15), (sa.BigInteger, 2**63), (sa.Integer, 2**31))


class NumberOutOfRange(BadRequest):
    """A request integer outside what its parameter accepts: a 400 page that says which one."""

    def __init__(self, name: str, value: Any, low: int, high: int) -> None:
        self.parameter, self.value, self.low, self.high = name, str(value)[:40], low, high
        super().__init__()

    @property
    def reason(self) -> str:
        return _("The number %(value)s given for “%(name)s” is out of range (%(low)s to %(high)s). "
                 "Nothing was changed.", value=self.value, name=self.parameter, low=self.low, high=self.high)


def parse_int(raw: Any, name: str = "", low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """``int(raw)``; ValueError/TypeError when it is no integer, NumberOutOfRange outside low..high."""
    value = int(raw)
    if not low <= value <= high:
        raise NumberOutOfRange(name, raw, low, high)
    return value


def record_id(raw: Any) -> int | None:
    """A record id typed or posted by a user: None (no such record) unless 1..2**63 - 1."""
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        return None
    return value if 0 < value <= INT64_MAX else None


def check_list_page(page: int, page_size: int) -> None:
    """A list page's OFFSET (page × size) must fit a 64-bit integer and not be negative."""
    parse_int(page, "page", 0, INT64_MAX // max(page_size, 1))


# --- the request: URL parts and query/form integers -------------------------------------------
class BoundedIntConverter(IntegerConverter):
    """``<int:...>`` matches 0..2**63 - 1 only; a larger id names no record, so no route (404)."""

    def __init__(self, map: Any, fixed_digits: int = 0, min: int | None = None,  # noqa: A002
                 max: int | None = None, signed: bool = False) -> None:  # noqa: A002
        high = INT64_MAX if max is None or max > INT64_MAX else max
        low = INT64_MIN if signed and (min is None or min < INT64_MIN) else min
        super().__init__(map, fixed_digits, low, high, signed)


class CheckedParams(ImmutableMultiDict):
    """Query and form values: ``get(name, type=int)`` refuses a number beyond 64 bits (400)
    instead of handing it to a query that would crash the driver; junk is still ``default``."""

    def get(self, key: Any, default: Any = None, type: Any = None) -> Any:  # noqa: A002
        if type is not int:
            return super().get(key, default, type)
        try:
            raw = self[key]
        except KeyError:
            return default
        try:
            return parse_int(raw, str(key))
        except (TypeError, ValueError):
            return default


class CheckedRequest(Request):
    parameter_storage_class = CheckedParams


# --- list filters -------------------------------------------------------------------------------
def column_bounds(column: Any) -> tuple[Decimal, Decimal] | None:
    """The values a numeric column can hold on both databases, or None when it is not numeric."""
    kind = getattr(column, "type", None)
    for type_, limit in INT_RANGES:
        if isinstance(kind, type_):
            return Decimal(-limit), Decimal(limit - 1)
    if isinstance(kind, sa.Numeric):  # Float included; an unbounded one as a double
        exponent = kind.precision - (kind.scale or 0) if kind.precision and not isinstance(kind, sa.Float) else 308
        limit = Decimal(10) ** exponent
        return -limit, limit
    return None


class RangeChecked:
    """A numeric filter whose value must fit its column; out of range is an invalid value."""

    def clean(self, value: Any) -> Any:
        cleaned = super().clean(value)  # type: ignore[misc]
        bounds = column_bounds(self.column)  # type: ignore[attr-defined]
        for number in cleaned if isinstance(cleaned, list) else [cleaned]:
            try:
                ok = bounds is None or bounds[0] < Decimal(str(number)) < bounds[1]
            except InvalidOperation:
                ok = False
            if not ok:  # NaN and infinities too
                raise ValueError("out of range")
        return cleaned


def _checked(base: type) -> type:
    return type(f"Checked{base.__name__}", (RangeChecked, base), {})


class FilterConverter(filters.FilterConverter):
    """Flask-Admin's filters for columns named in ``column_filters``, numbers range-checked."""

    int_filters = tuple(_checked(f) if f is not filters.FilterEmpty else f
                        for f in filters.FilterConverter.int_filters)
    float_filters = tuple(_checked(f) if f is not filters.FilterEmpty else f
                          for f in filters.FilterConverter.float_filters)


class ListParams:
    """Mixed into the model views: list arguments and filter values checked before any query."""

    filter_converter = FilterConverter()

    def _get_list_extra_args(self) -> Any:
        args = super()._get_list_extra_args()  # type: ignore[misc]
        check_list_page(args.page or 0, self.get_safe_page_size(args.page_size))  # type: ignore[attr-defined]
        return args

    def get_invalid_value_msg(self, value: Any, filter: Any) -> str:  # noqa: A002
        return _("“%(value)s” is not a value the filter “%(name)s” accepts; the list is shown without it.",
                 value=str(value)[:40], name=filter.name)


def init_app(app: Flask) -> None:
    """Before any route is added: the bounded ``int`` converter, the checked request, and the pages
    that say so in the user's language (400 for a number out of range, 404 for an id of no record)."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.request_class = CheckedRequest

    @app.errorhandler(NumberOutOfRange)
    def out_of_range(exc: NumberOutOfRange):  # type: ignore[no-untyped-def]
        return render_template("errors/400.html", reason=exc.reason), 400

    @app.errorhandler(404)
    def not_found(exc: Exception):  # type: ignore[no-untyped-def]
        return render_template("errors/404.html"), 404
