"""Quick setup from Excel (seed.importer, views.imports): units, residents and occupancies."""

from __future__ import annotations

import io
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from babel.support import Translations
from flask import Flask
from flask_babel import force_locale
from openpyxl import Workbook, load_workbook

from models import Building, Occupancy, Resident, ResidentChange, Unit, db
from security.crypto import keyring
from seed import importer
from seed.importer import ImportReport, run_import
from tests.conftest import csrf_token
from tests.helpers import make_building, make_estate, make_occupancy, make_resident, make_unit, valid_id

UNIT_HEADER = ["小区编码", "楼栋", "房号", "楼层", "建筑面积", "用途"]
RESIDENT_HEADER = ["小区编码", "房号", "姓名", "性别", "电话", "身份证号", "籍贯", "户籍地", "紧急联系人",
                   "紧急联系电话", "关系", "开始日期", "结束日期"]
BAD_CODE = "Unit code must read building-floor-room, e.g. A-12-1203."


def xlsx(rows: list[list[Any]]) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def resident_row(**overrides: Any) -> list[Any]:
    values = {"estate": "demo", "unit": "A-12-1203", "name": "李四", "gender": "女", "phone": "13900139000",
              "id": valid_id(2), "native": "四川省成都市", "household": "四川省成都市", "contact": "李五",
              "contact_phone": "13700137000", "relation": "业主", "start": "2024-03-01", "end": None} | overrides
    return list(values.values())


def count(model: type) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def english(session: sa.orm.Session, data: bytes, name: str, kind: str, mode: str, **kw: Any) -> ImportReport:
    """Run the import with English messages, whatever catalog is installed."""
    with force_locale("en"):
        return run_import(session, data, name, kind, mode, **kw)


def units(session: sa.orm.Session, rows: list[list[Any]], mode: str = "all_or_nothing") -> ImportReport:
    return english(session, xlsx([UNIT_HEADER, *rows]), "units.xlsx", "units", mode)


def residents(session: sa.orm.Session, rows: list[list[Any]], mode: str = "all_or_nothing") -> ImportReport:
    return english(session, xlsx([RESIDENT_HEADER, *rows]), "residents.xlsx", "residents", mode)


def messages(report: ImportReport) -> list[tuple[int | None, str, str]]:
    return [(e.row, e.column, e.message) for e in report.errors]


@pytest.fixture()
def estate(db_session: sa.orm.Session):  # type: ignore[no-untyped-def]
    """The estate ``demo`` with building A, committed so a rolled-back import keeps it."""
    estate = make_estate()
    make_building(estate)
    db_session.commit()
    return estate


@pytest.fixture()
def unit(db_session: sa.orm.Session, estate: Any) -> Unit:
    building = db_session.scalar(sa.select(Building).where(Building.code == "A"))
    unit = make_unit(building)
    db_session.commit()
    return unit


GOOD_UNITS = [["demo", "A", "A-12-1203", 12, 89.5, "住宅"], ["demo", "B", "B-1-101", 1, "120.00", "商业"]]


# --- units (REG-1) ------------------------------------------------------------------------------

def test_reg_1_import_dry_run_writes_nothing(db_session: sa.orm.Session, estate: Any) -> None:
    report = units(db_session, GOOD_UNITS, mode="dry_run")
    assert (report.total, report.valid, report.errors, report.written) == (2, 2, [], False)
    assert report.created == {"units": 2, "buildings": 1}
    assert count(Unit) == 0
    assert count(Building) == 1  # building B was only checked, not kept


def test_reg_1_import_all_or_nothing_one_bad_row_writes_nothing(db_session: sa.orm.Session, estate: Any) -> None:
    report = units(db_session, [*GOOD_UNITS, ["demo", "A", "A12-1205", 12, 80, "住宅"]])
    assert messages(report) == [(4, "房号", BAD_CODE)]  # header is row 1, so the third unit is row 4
    assert (report.total, report.valid, report.written) == (3, 2, False)
    assert count(Unit) == 0 and count(Building) == 1


def test_reg_1_import_valid_only_writes_good_rows(db_session: sa.orm.Session, estate: Any) -> None:
    report = units(db_session, [GOOD_UNITS[0], ["demo", "A", "A12-1205", 12, 80, "住宅"], GOOD_UNITS[1]],
                   mode="valid_only")
    assert report.written and (report.valid, report.failed) == (2, 1)
    assert [e.row for e in report.errors] == [3]
    saved = {u.code: u for u in db_session.scalars(sa.select(Unit))}
    assert set(saved) == {"A-12-1203", "B-1-101"}
    assert saved["B-1-101"].use == "commercial" and saved["B-1-101"].building.estate.code == "demo"
    assert saved["A-12-1203"].area == pytest.approx(89.5) and saved["A-12-1203"].use == "residential"


def test_reg_1_import_refuses_bad_unit_code(db_session: sa.orm.Session, estate: Any) -> None:
    report = units(db_session, [["demo", "A", "A-12", 12, 80, "住宅"]])
    assert messages(report) == [(2, "房号", BAD_CODE)]
    assert count(Unit) == 0


def test_reg_1_import_refuses_duplicate_unit_in_file_and_on_file(db_session: sa.orm.Session, unit: Unit) -> None:
    report = units(db_session, [["demo", "A", "A-12-1203", 12, 80, "住宅"],
                                ["demo", "A", "A-3-301", 3, 80, "住宅"],
                                ["demo", "A", "a-3-301", 3, 80, "住宅"]], mode="valid_only")
    assert messages(report) == [
        (2, "房号", "Unit A-12-1203 already exists."),
        (4, "房号", "Unit A-3-301 appears twice in the file (first on row 3)."),
    ]
    assert sorted(db_session.scalars(sa.select(Unit.code))) == ["A-12-1203", "A-3-301"]


def test_reg_1_import_refuses_inconsistent_unit(db_session: sa.orm.Session, estate: Any) -> None:
    report = units(db_session, [["demo", "B", "A-12-1203", 12, 80, "住宅"], ["demo", "A", "A-12-1204", 11, 80, ""]])
    assert messages(report) == [
        (2, "房号", "Unit code must start with its building code."),
        (3, "楼层", "Unit code's floor part differs from the floor."),
    ]


def test_reg_1_import_database_refusal_costs_one_row(db_session: sa.orm.Session, unit: Unit,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A constraint the checks miss (here: as if another user added A-12-1203 meanwhile) fails
    the batch's flush; the batch is retried row by row and only the offending row is refused."""
    monkeypatch.setattr(importer._Importer, "estate_units", lambda self, estate: {})
    report = units(db_session, [["demo", "A", "A-1-101", 1, 80, "住宅"], ["demo", "A", "A-12-1203", 12, 80, "住宅"],
                                ["demo", "B", "B-1-101", 1, 80, "住宅"]], mode="valid_only")
    assert messages(report) == [
        (3, "", "The database refused this row: a key is duplicated or a value is out of range.")]
    assert sorted(db_session.scalars(sa.select(Unit.code))) == ["A-1-101", "A-12-1203", "B-1-101"]
    assert count(Building) == 2


def test_reg_1_import_reports_every_bad_cell_and_unknown_estate(db_session: sa.orm.Session, estate: Any) -> None:
    report = units(db_session, [["nowhere", "A", "A-1-101", "一", -5, "仓库"]])
    assert messages(report) == [
        (2, "小区编码", "No estate has the code “nowhere”; create the estate first."),
        (2, "楼层", "Floor must be a whole number, e.g. 12, or B1 for a basement."),
        (2, "建筑面积", "Building area must be between 0 and 100000 m²."),
        (2, "用途", "“仓库” is not one of: 住宅, 办公, 商业, 车位 (residential, office, commercial, parking)."),
    ]


def test_reg_1_import_english_headers_csv_with_bom_and_basement(db_session: sa.orm.Session, estate: Any) -> None:
    text = ("estate_code,building,unit_code,floor,area,use\n"
            "demo,A,A-B1-001,B1,15,parking\n"
            "DEMO,,Ａ－３－３０１,,72.25 ㎡,Residential\n")
    report = english(db_session, text.encode("utf-8-sig"), "units.csv", "units", "all_or_nothing")
    assert report.errors == [] and report.written
    floors = dict(db_session.execute(sa.select(Unit.code, Unit.floor)).all())
    assert floors == {"A-B1-001": -1, "A-3-301": 3}


def test_reg_1_import_csv_in_gb18030(db_session: sa.orm.Session, estate: Any) -> None:
    text = "小区编码,房号,建筑面积,用途\ndemo,A-5-501,88,办公\n"
    report = english(db_session, text.encode("gb18030"), "单元.csv", "units", "all_or_nothing")
    assert report.errors == [] and report.written
    assert db_session.scalar(sa.select(Unit.use)) == "office"


def test_reg_1_import_refuses_unreadable_or_oversized_files(db_session: sa.orm.Session, estate: Any) -> None:
    cases = [
        (b"not a zip", "units.xlsx", "The file could not be read as an Excel workbook (.xlsx)."),
        (b"a,b\n1,2\n", "units.xls", "Only .xlsx or .csv files can be imported (save an .xls file as .xlsx)."),
        (xlsx([["小区编码", "楼层"], ["demo", 1]]), "u.xlsx", "Missing required columns: Unit code."),
        (xlsx([UNIT_HEADER]), "u.xlsx", "The file has a header row but no data rows."),
        (xlsx([UNIT_HEADER] + [GOOD_UNITS[0]] * 4), "u.xlsx",
         "The file has more than 3 rows; split it into several files."),
    ]
    for data, name, message in cases:
        report = english(db_session, data, name, "units", "all_or_nothing", max_rows=3)
        assert messages(report) == [(None, "", message)] and report.file_error and not report.written
    assert count(Unit) == 0


# --- residents and occupancies (REG-2, REG-3) -----------------------------------------------------

def test_reg_2_import_creates_occupancy_history(db_session: sa.orm.Session, unit: Unit) -> None:
    report = residents(db_session, [resident_row(), resident_row(name="王五", gender="男", id=valid_id(3),
                                                                  relation="租户", end="2025/02/28")])
    assert report.errors == [] and report.written
    assert report.created == {"residents": 2, "occupancies": 2}
    kinds = {o.resident.name: (o.kind, o.start_date, o.end_date) for o in db_session.scalars(sa.select(Occupancy))}
    assert kinds == {"李四": ("owner", date(2024, 3, 1), None),
                     "王五": ("tenant", date(2024, 3, 1), date(2025, 2, 28))}
    history = db_session.scalars(sa.select(ResidentChange.field)).all()
    assert history == ["occupancy", "occupancy"]  # ARC-5: the tenure is dated history


def test_reg_2_import_refuses_end_before_start(db_session: sa.orm.Session, unit: Unit) -> None:
    report = residents(db_session, [resident_row(start="2024-03-01", end="2024-02-01")])
    assert messages(report) == [(2, "结束日期", "End date cannot be before start date.")]
    assert count(Resident) == 0 and count(Occupancy) == 0


def test_reg_2_import_attaches_occupancy_to_existing_resident(db_session: sa.orm.Session, unit: Unit) -> None:
    """Same ID number on file: a new occupancy for that person, not a second person."""
    person = make_resident(name="李四", id_number=valid_id(2), phone="13800000000")
    db_session.commit()
    report = residents(db_session, [resident_row(relation="tenant", phone="13911112222")])
    assert report.errors == [] and report.created == {"existing_residents": 1, "occupancies": 1}
    assert count(Resident) == 1
    db_session.refresh(person)
    assert [o.kind for o in person.occupancies] == ["tenant"]
    assert person.phone == "13800000000"  # stored details are not overwritten by a file


def test_reg_2_import_refuses_existing_id_with_other_name_or_same_occupancy(db_session: sa.orm.Session,
                                                                            unit: Unit) -> None:
    make_occupancy(unit, make_resident(name="李四", id_number=valid_id(2)), start_date=date(2024, 3, 1))
    make_resident(name="赵六", id_number=valid_id(4))
    db_session.commit()
    report = residents(db_session, [resident_row(), resident_row(name="钱七", id=valid_id(4))])
    assert messages(report) == [
        (2, "", "This person already has this occupancy of the unit on file."),
        (3, "身份证号", "This ID number is on file for a person with a different name."),
    ]
    assert count(Occupancy) == 1


def test_reg_3_import_refuses_bad_id_checksum(db_session: sa.orm.Session, unit: Unit) -> None:
    good = valid_id(2)
    bad = good[:17] + ("0" if good[17] != "0" else "1")
    report = residents(db_session, [resident_row(id=bad)])
    assert messages(report) == [(2, "身份证号", "ID number check digit is wrong.")]


def test_reg_3_import_refuses_unknown_unit(db_session: sa.orm.Session, unit: Unit) -> None:
    report = residents(db_session, [resident_row(unit="A-9-901")])
    assert messages(report) == [
        (2, "房号", "Unit A-9-901 does not exist in this estate; import the units first.")]


def test_reg_3_import_refuses_duplicate_id_in_file(db_session: sa.orm.Session, unit: Unit) -> None:
    report = residents(db_session, [resident_row(), resident_row(relation="家属")], mode="valid_only")
    assert messages(report) == [(3, "身份证号", "This ID number is already on row 2 of the file.")]
    assert report.written and count(Resident) == 1


def test_reg_3_import_reads_excel_dates_and_numbers(db_session: sa.orm.Session, unit: Unit) -> None:
    rows = [resident_row(start=datetime(2023, 5, 6), phone=13900139001),
            resident_row(id=valid_id(5), start=45292, phone=13900139002.0),  # Excel serial 45292 = 2024-01-01
            resident_row(id=valid_id(6), start="2022/7/8")]
    report = residents(db_session, rows)
    assert report.errors == []
    starts = sorted(db_session.scalars(sa.select(Occupancy.start_date)))
    assert starts == [date(2022, 7, 8), date(2023, 5, 6), date(2024, 1, 1)]
    assert sorted(db_session.scalars(sa.select(Resident.phone))) == ["13900139000", "13900139001", "13900139002"]


def test_reg_3_import_refuses_bad_values_in_resident_row(db_session: sa.orm.Session, unit: Unit) -> None:
    report = residents(db_session, [resident_row(id=110105198001010011.0, gender="x", relation="朋友",
                                                 start="2024-13-01", phone="abc", name="")])
    assert messages(report) == [
        (2, "姓名", "Name is required."),
        (2, "性别", "“x” is not one of: 男, 女 (male, female)."),
        (2, "身份证号", "The ID number was saved as a number and lost digits; format the column as text and "
                       "type the number again."),
        (2, "电话", "Phone number is not valid."),
        (2, "关系", "“朋友” is not one of: 业主, 家属, 租户 (owner, family, tenant)."),
        (2, "开始日期", "Not a date; write it as YYYY-MM-DD, e.g. 2024-03-01."),
    ]


def test_acc_6_imported_id_number_is_encrypted_and_blind_indexed(db_session: sa.orm.Session, unit: Unit) -> None:
    number = valid_id(2)
    assert residents(db_session, [resident_row(id=number)]).written
    stored, digest = db_session.execute(sa.text("SELECT id_number, id_number_bidx FROM resident")).one()
    assert number not in stored
    assert digest == keyring().blind_index(number)
    assert db_session.scalar(sa.select(Resident.id_number)) == number


def _zh_catalog_has(msgid: str) -> bool:
    root = Path(__file__).resolve().parent.parent / "translations"
    for locale in ("zh_Hans_CN", "zh_CN", "zh"):
        if (root / locale / "LC_MESSAGES" / "messages.mo").exists():
            return Translations.load(str(root), [locale]).gettext(msgid) != msgid
    return False


def test_reg_3_import_report_speaks_the_users_language(db_session: sa.orm.Session, unit: Unit) -> None:
    with force_locale("zh_Hans_CN"):
        report = run_import(db_session, xlsx([RESIDENT_HEADER, resident_row(unit="A-9-901"),
                                              resident_row(unit="A-9", id=valid_id(3))]),
                            "r.xlsx", "residents", "dry_run")
    english = ["Unit A-9-901 does not exist in this estate; import the units first.", BAD_CODE]
    msgids = ["Unit %(code)s does not exist in this estate; import the units first.", BAD_CODE]
    for error, text, msgid in zip(report.errors, english, msgids, strict=True):
        if _zh_catalog_has(msgid):
            assert any("\u4e00" <= ch <= "\u9fff" for ch in error.message), error.message
        else:
            # TODO: assert Chinese once translations/zh_Hans_CN holds the importer's own messages.
            assert error.message == text


# --- the screen ---------------------------------------------------------------------------------

def post(client: Any, data: bytes, name: str, kind: str, mode: str, token: str | None) -> Any:
    form: dict[str, Any] = {"kind": kind, "mode": mode, "file": (io.BytesIO(data), name)}
    if token is not None:
        form["csrf_token"] = token
    return client.post("/admin/import/", data=form, content_type="multipart/form-data")


def english_client(login_as: Any, role: str) -> Any:
    client = login_as(role)
    client.post("/lang/en", data={"csrf_token": csrf_token(client), "next": "/admin/"})
    return client


def test_reg_1_import_screen_checks_then_imports(app: Flask, login_as: Any, estate: Any) -> None:
    client = english_client(login_as, "cs_supervisor")
    page = client.get("/admin/import/")
    assert page.status_code == 200 and 'id="import-form"' in page.get_data(as_text=True)
    data = xlsx([UNIT_HEADER, GOOD_UNITS[0], ["demo", "A", "A12-1205", 12, 80, "住宅"]])

    checked = post(client, data, "units.xlsx", "units", "all_or_nothing", csrf_token(client))
    html = checked.get_data(as_text=True)
    assert checked.status_code == 200 and "Nothing was written." in html and BAD_CODE in html
    assert "<td>3</td><td>房号</td>" in html
    assert count(Unit) == 0

    done = post(client, data, "units.xlsx", "units", "valid_only", csrf_token(client))
    assert "Import finished: 1 of 2 rows were written." in done.get_data(as_text=True)
    db.session.rollback()
    assert count(Unit) == 1


def test_reg_1_import_template_has_chinese_header(login_as: Any) -> None:
    client = login_as("manager")
    response = client.get("/admin/import/template/residents.xlsx")
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.data)).worksheets[0]
    assert [c.value for c in sheet[1]] == RESIDENT_HEADER
    assert client.get("/admin/import/template/other.xlsx").status_code == 404


@pytest.mark.parametrize("role", ["cs_clerk", "engineering"])
def test_acc_4_import_screen_is_for_supervisors_only(login_as: Any, estate: Any, role: str) -> None:
    client = login_as(role)
    assert client.get("/admin/import/").status_code == 403
    assert client.get("/admin/import/template/units.xlsx").status_code == 403
    data = xlsx([UNIT_HEADER, GOOD_UNITS[0]])
    assert post(client, data, "units.xlsx", "units", "all_or_nothing", csrf_token(client)).status_code == 403
    assert count(Unit) == 0


def test_import_post_without_csrf_token_is_refused(login_as: Any, estate: Any) -> None:
    client = login_as("cs_supervisor")
    response = post(client, xlsx([UNIT_HEADER, GOOD_UNITS[0]]), "units.xlsx", "units", "all_or_nothing", None)
    assert response.status_code == 400
    assert count(Unit) == 0


def test_import_screen_refuses_other_file_types(login_as: Any, estate: Any) -> None:
    client = english_client(login_as, "cs_supervisor")
    response = post(client, b"x", "units.xls", "units", "all_or_nothing", csrf_token(client))
    assert response.status_code == 200
    assert "Only .xlsx or .csv files can be imported." in response.get_data(as_text=True)
    assert count(Unit) == 0


def test_reg_1_cli_import_for_big_files_same_rules(app, runner, db_session, tmp_path) -> None:
    """``flask import-registry`` applies the web importer's checks; a dry run writes nothing."""
    import sqlalchemy as sa

    from models import Unit, db
    from tests.helpers import make_estate

    make_estate(code="demo")
    db.session.commit()
    path = tmp_path / "units.csv"
    path.write_text("小区编码,楼栋,房号,楼层,建筑面积,用途\ndemo,A,A-1-101,1,88.5,住宅\ndemo,A,A-1,1,88.5,住宅\n",
                    encoding="utf-8")
    dry = runner.invoke(args=["import-registry", str(path), "--kind", "units"])
    assert dry.exit_code == 1 and "row 3" in dry.output and "written: no" in dry.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Unit)) == 0
    ok = runner.invoke(args=["import-registry", str(path), "--kind", "units", "--mode", "valid_only"])
    assert ok.exit_code == 0 and "written: yes" in ok.output
    assert db.session.scalars(sa.select(Unit.code)).all() == ["A-1-101"]
