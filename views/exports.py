"""List exports every screen shares: CSV with a UTF-8 BOM (Excel and WPS in Chinese open it without
garbling) and XLSX, named after the screen in local time (``投诉_20261202-1530.csv``). Every cell
has passed ``SecureModelView.get_export_value`` (SEC-1) before it gets here."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from flask import Response, current_app, stream_with_context

from security.cells import workbook_bytes, write_row

BOM = "\ufeff"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def file_name(screen: str, ext: str) -> str:
    now = datetime.now(ZoneInfo(current_app.config.get("TIMEZONE", "Asia/Shanghai")))
    safe = "".join(ch for ch in screen if ch not in '\\/:*?"<>|\r\n\t').strip() or "export"
    return f"{safe}_{now:%Y%m%d-%H%M}.{ext}"


def disposition(name: str) -> str:
    """RFC 6266: an ASCII fallback and the UTF-8 name (the Chinese screen name) for every browser."""
    ascii_name = name.encode("ascii", "ignore").decode().lstrip("_") or "export"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def csv_response(name: str, titles: list[str], rows: Iterable[list[Any]]) -> Response:
    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        yield BOM
        for row in _chain(titles, rows):
            writer.writerow(["" if v is None else v for v in row])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()

    return Response(
        stream_with_context(lines()),
        mimetype="text/csv; charset=utf-8",
        headers={"Content-Disposition": disposition(name)},
    )


def _chain(titles: list[str], rows: Iterable[list[Any]]) -> Iterator[list[Any]]:
    yield titles
    yield from rows


def xlsx_response(name: str, sheet_title: str, titles: list[str], rows: Iterable[list[Any]]) -> Response:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "".join(ch for ch in sheet_title if ch not in "[]:*?/\\")[:31] or "Sheet1"
    write_row(sheet, titles)
    for row in rows:
        write_row(sheet, [_cell(v) for v in row])
    return Response(workbook_bytes(workbook), mimetype=XLSX, headers={"Content-Disposition": disposition(name)})


def _cell(value: Any) -> Any:
    """openpyxl refuses aware datetimes and unknown objects; exported values are text already
    except numbers and dates."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None)
    if value is None or isinstance(value, int | float | Decimal | str | date):
        return value
    return str(value)
