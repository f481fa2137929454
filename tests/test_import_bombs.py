"""SEC-3: a small file cannot cost a big import. XLSX bombs (a million cells, millions of shared
strings) are refused from the archive's own declarations and a capped streaming count, before
openpyxl parses anything; a CSV line of millions of commas is refused before it is split.

Memory is bounded (tracemalloc peak and the process's maximum resident size); time is not
asserted here (bench/import_bomb.py prints it)."""

from __future__ import annotations

import io
import resource
import tracemalloc
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask_babel import force_locale

from models import Unit, db
from seed.importer import ImportReport, run_import
from seed.xlsx_limits import Limits, Refused, check_workbook
from tests import bombs
from tests.conftest import csrf_token
from tests.helpers import make_building, make_estate

MB = 1024 * 1024
BOMB = ("The workbook unpacks to far more data than its size suggests (a compressed “zip bomb”); it is "
        "refused without being read. Save it again from Excel or as CSV.")


@pytest.fixture()
def estate(db_session: sa.orm.Session) -> Any:
    estate = make_estate()
    make_building(estate)
    db_session.commit()
    return estate


def units() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Unit))


def measured(call: Callable[[], ImportReport]) -> tuple[ImportReport, float]:
    """The call's result and its peak memory in MB: traced Python allocations, and the growth of
    the process's maximum resident size (which also sees zlib's and lxml's C buffers)."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    tracemalloc.start()
    try:
        result = call()
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024
    return result, max(traced, rss_growth) / MB


def refused(session: sa.orm.Session, data: bytes, name: str = "units.xlsx", **kw: Any) -> tuple[str, float]:
    """The single file-level message of a dry run (English), and the run's peak memory."""
    with force_locale("en"):
        report, peak = measured(lambda: run_import(session, data, name, "units", "dry_run", **kw))
    assert report.file_error and not report.written and len(report.errors) == 1, report.errors
    return report.errors[0].message, peak


def test_sec_3_a_million_cell_bomb_is_refused_before_parsing(db_session, estate) -> None:
    data = bombs.cell_bomb()
    assert len(data) < 100 * 1024  # about 50 KB on disk
    message, peak = refused(db_session, data)
    assert message == BOMB and peak < 100
    assert units() == 0


def test_sec_3_a_shared_strings_bomb_is_refused_before_parsing(db_session, estate) -> None:
    data = bombs.shared_strings_bomb()
    assert len(data) < 300 * 1024
    message, peak = refused(db_session, data)
    assert message == BOMB and peak < 100
    assert units() == 0


def test_sec_3_bomb_over_http_gets_a_chinese_message_and_writes_nothing(db_session, estate, login_as) -> None:
    client = login_as("cs_supervisor")
    for mode in ("dry_run", "valid_only"):
        response = client.post("/admin/import/", data={
            "csrf_token": csrf_token(client), "kind": "units", "mode": mode,
            "file": (io.BytesIO(bombs.cell_bomb()), "房屋.xlsx")}, content_type="multipart/form-data")
        assert response.status_code == 200
        assert "压缩炸弹" in response.get_data(as_text=True)
    assert units() == 0


# The checks one by one, on stored (uncompressed) archives, so the ratio check stays out of the way.
def test_sec_3_cell_count_is_capped_by_a_streaming_count(db_session, estate) -> None:
    sheet = bombs.sheet_xml(rows=120, columns=40, dimension="A1:F2", header=bombs.UNITS_HEADER)  # dimension lies
    data = bombs.build(sheet, compression=zipfile.ZIP_STORED)
    message, _ = refused(db_session, data, max_rows=100)
    assert message == ("The worksheet has more than 3030 cells; keep only the columns to import and split it "
                       "into several files.")


def test_sec_3_declared_dimension_beyond_the_row_limit_is_refused(db_session, estate) -> None:
    sheet = bombs.sheet_xml(rows=2, columns=6, dimension="A1:F1048576", header=bombs.UNITS_HEADER)
    message, _ = refused(db_session, bombs.build(sheet, compression=zipfile.ZIP_STORED), max_rows=100)
    assert message == "The worksheet has more than 500 rows; split it into several files."


def test_sec_3_shared_strings_count_and_size_are_capped(db_session, estate) -> None:
    sheet = bombs.sheet_xml(rows=1, columns=1, cell="<v>0</v>", cell_type="s", header=bombs.UNITS_HEADER)
    many = bombs.build(sheet, bombs.strings_xml(4000), compression=zipfile.ZIP_STORED)  # 4000 > 3030 texts
    long = bombs.build(sheet, bombs.strings_xml(10, "长" * 30_000), compression=zipfile.ZIP_STORED)
    expected = ("The workbook's text table (shared strings) is larger than 1 MB or holds more than 3030 texts; "
                "split the file into several files.")
    for data in (many, long):
        message, _ = refused(db_session, data, max_rows=100)
        assert message == expected


def test_sec_3_total_unpacked_size_and_ratio_are_capped() -> None:
    sheet = bombs.build(bombs.sheet_xml(rows=50, columns=6, header=bombs.UNITS_HEADER))
    roomy = Limits(rows=1000, cells=10_000, unpacked=10 * MB, strings_bytes=MB)
    check_workbook(sheet, roomy)  # an ordinary small workbook passes
    with force_locale("en"), pytest.raises(Refused) as caught:
        check_workbook(sheet, Limits(rows=1000, cells=10_000, unpacked=2_000, strings_bytes=MB))
    assert str(caught.value.message) == BOMB
    check_workbook(b"not a zip", roomy)  # left to openpyxl, which calls it unreadable
    out = io.BytesIO()  # a styles part parsed whole when the workbook opens: capped on its own
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as book:  # stored: the ratio check stays out
        book.writestr("xl/styles.xml", b"<styleSheet>" + b"<xf/>" * 1_000_000 + b"</styleSheet>")
    with force_locale("en"), pytest.raises(Refused):
        check_workbook(out.getvalue(), roomy)


def test_sec_3_an_ordinary_workbook_still_imports(db_session, estate) -> None:
    from tests.test_import import GOOD_UNITS, UNIT_HEADER, english, xlsx

    report = english(db_session, xlsx([UNIT_HEADER, *GOOD_UNITS]), "units.xlsx", "units", "all_or_nothing")
    assert report.errors == [] and report.written and units() == 2


def test_sec_3_csv_line_of_millions_of_cells_is_refused_before_splitting(db_session, estate) -> None:
    data = "小区编码,楼栋,房号,楼层,建筑面积,用途\n".encode() + b"demo" + b"," * (5 * MB - 100) + b"\n"
    message, peak = refused(db_session, data, name="units.csv")
    assert message == ("A line of the CSV file is longer than 65536 characters; check that it is a table with "
                       "one record per line.")
    assert peak < 100 and units() == 0
