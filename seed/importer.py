"""Quick setup from Excel: units, residents and occupancies from XLSX or CSV (REG-1..3).

A firm moving onto the back office brings its registry as spreadsheets. Every row goes through
the same model validators as the screens before it is added; rows are flushed in SAVEPOINTs of
a few hundred, and a batch the database refuses is retried one row per SAVEPOINT, so a bad value
or a database constraint costs that row only and is reported with the row number the user sees.

Modes:
- ``dry_run``: validate every row against the database, then roll everything back.
- ``all_or_nothing``: commit only when no row failed.
- ``valid_only``: commit the rows that passed, skip (and report) the others.

Decisions:
- A resident row whose ID number is already on file attaches the new occupancy to that person
  instead of creating a second one; the stored details (phone, places, …) are left unchanged,
  since changes to a person are recorded through the screens (ARC-5), not overwritten by a file.
  If the name differs, the row is refused: the ID may belong to someone else.
- The same ID number twice in one file is refused (from the second row on): one person per
  file. A person holding several units gets the further occupancies from a second file, which
  then attaches them by the rule above.
- The same unit twice in a file is refused from the second row on; a unit already on file too.
- Rows are numbered as the spreadsheet shows them (the header is usually row 1); blank rows are
  skipped but keep their number. Only the first worksheet of a workbook is read.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils.datetime import from_excel
from openpyxl.utils.exceptions import InvalidFileException
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from models import Building, Estate, Occupancy, Resident, Unit
from models.registry import GENDERS, OCCUPANCY_KINDS, UNIT_USES
from models.validators import DomainError, check_id_number, check_unit_code
from security.cells import workbook_bytes
from security.crypto import keyring
from seed.xlsx_limits import Limits, Refused, check_workbook

KINDS = ("units", "residents")
MODES = ("dry_run", "all_or_nothing", "valid_only")
MAX_ROWS = 20_000
MAX_BYTES = 5 * 1024 * 1024
MAX_COLUMNS = 40
MAX_LINE = 64 * 1024  # characters in one CSV line; a full row of 40 columns needs a few hundred
BATCH_ROWS = 200  # rows flushed per SAVEPOINT; a refused batch is retried row by row
# Stop scanning a sheet padded with formatted blank rows long before it exhausts the server.
SCANNED_PER_ROW = 5  # rows read (blank ones included) per row the file may import


class ImportFileError(DomainError):
    """The file as a whole cannot be imported (unreadable, too large, columns missing)."""


@dataclass(frozen=True)
class Column:
    """One importable column: its key, the Chinese header of the template, accepted aliases."""

    key: str
    zh: str
    label: Any  # lazy label in the user's language, for messages about a missing column
    aliases: tuple[str, ...] = ()
    required: bool = False
    note: str = ""  # the template's instructions sheet (Chinese, like the header)


ESTATE = Column("estate_code", "小区编码", _l("Estate code"), ("小区代码", "小区", "estate", "estate_code"),
                True, "必填；系统中已建立的小区/大厦编码，如 avic")
UNIT_CODE = Column("unit_code", "房号", _l("Unit code"), ("房屋编码", "房屋编号", "unit", "unit_code", "code"),
                   True, "必填；楼栋-楼层-房间，如 A-12-1203（地下层写 B1）")
UNIT_COLUMNS = (
    ESTATE,
    Column("building", "楼栋", _l("Building"), ("楼栋编码", "栋", "楼号", "building", "building_code"),
           note="楼栋编码，如 A；留空则取房号第一段；不存在的楼栋会自动建立"),
    UNIT_CODE,
    Column("floor", "楼层", _l("Floor"), ("层", "floor"), note="整数，地下层写 -1 或 B1；留空则取房号第二段"),
    Column("area", "建筑面积", _l("Building area (m²)"), ("面积", "area", "building_area"),
           note="平方米，可带两位小数"),
    Column("use", "用途", _l("Use"), ("房屋用途", "use"), note="住宅 / 办公 / 商业 / 车位；留空按小区类型"),
)
RESIDENT_COLUMNS = (
    ESTATE,
    UNIT_CODE,
    Column("name", "姓名", _l("Name"), ("name", "full_name"), True, "必填"),
    Column("gender", "性别", _l("Gender"), ("gender", "sex"), note="男 / 女"),
    Column("phone", "电话", _l("Phone"), ("手机", "手机号", "联系电话", "phone", "mobile"), note="手机或固话"),
    Column("id_number", "身份证号", _l("National ID number"),
           ("身份证号码", "身份证", "id_number", "id_no", "national_id", "national_id_number"),
           note="18 位居民身份证号，请把本列设为文本格式；与系统中已有住户相同则只新增入住记录"),
    Column("native_place", "籍贯", _l("Native place"), ("native_place",)),
    Column("household_place", "户籍地", _l("Household registration place"),
           ("户籍所在地", "户籍", "household_place", "household_registration", "household_registration_place")),
    Column("emergency_contact", "紧急联系人", _l("Emergency contact"), ("emergency_contact",)),
    Column("emergency_phone", "紧急联系电话", _l("Emergency phone"), ("紧急电话", "emergency_phone")),
    Column("relation", "关系", _l("Relation"), ("身份", "与房屋关系", "relation", "kind", "relationship"), True,
           "必填；业主 / 家属 / 租户"),
    Column("start_date", "开始日期", _l("Start date"), ("入住日期", "起始日期", "start", "start_date"), True,
           "必填；YYYY-MM-DD 或 YYYY/MM/DD"),
    Column("end_date", "结束日期", _l("End date"), ("迁出日期", "end", "end_date"), note="可空；不得早于开始日期"),
)
COLUMNS = {"units": UNIT_COLUMNS, "residents": RESIDENT_COLUMNS}
SHEET_TITLES = {"units": "房屋", "residents": "住户"}

# Values accepted in Chinese or English; the model validators stay the final gate.
GENDER_VALUES = {"男": "male", "女": "female", "male": "male", "female": "female", "m": "male", "f": "female"}
USE_VALUES = {"住宅": "residential", "办公": "office", "商业": "commercial", "商铺": "commercial",
              "车位": "parking", **{k: k for k in UNIT_USES}}
RELATION_VALUES = {"业主": "owner", "家属": "family", "租户": "tenant", "family member": "family",
                   **{k: k for k in OCCUPANCY_KINDS}}

DATE_TEXT = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$")
FLOOR_TEXT = re.compile(r"^(-?\d{1,3}|B\d{1,3})$")


@dataclass
class RowError:
    """One problem: ``row`` as the spreadsheet numbers it (None: the whole file), the column's
    header as written in the file, and the message already in the user's language."""

    row: int | None
    column: str
    message: str


@dataclass
class ImportReport:
    kind: str
    mode: str
    total: int = 0
    valid: int = 0
    errors: list[RowError] = field(default_factory=list)
    written: bool = False
    created: Counter[str] = field(default_factory=Counter)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.total - self.valid

    @property
    def file_error(self) -> bool:
        return any(e.row is None for e in self.errors)


# --- reading -----------------------------------------------------------------------------------

def _nfkc(text: str) -> str:
    """Full-width digits, letters and dashes typed with a Chinese IME become ASCII."""
    return unicodedata.normalize("NFKC", text).strip()


def _blank(values: Iterable[Any]) -> bool:
    return all(v is None or (isinstance(v, str) and not v.strip()) for v in values)


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ImportFileError(_l("The CSV file is neither UTF-8 nor GB18030 text; save it as “CSV UTF-8”."))


def _csv_rows(data: bytes) -> Iterable[list[Any]]:
    text = _decode(data)
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first and "," not in first else ","
    # One record is one spreadsheet row, also when a quoted cell holds a line break.
    return csv.reader(_lines(text), delimiter=delimiter)


def _lines(text: str) -> Iterator[str]:
    """The text's lines, refusing one longer than MAX_LINE before the csv module splits it: a
    single line of five million commas would otherwise become a row of five million cells (SEC-3)."""
    stream = io.StringIO(text, newline="")
    while line := stream.readline(MAX_LINE + 1):
        if len(line) > MAX_LINE:
            raise ImportFileError(_l("A line of the CSV file is longer than %(n)d characters; check that it "
                                     "is a table with one record per line.", n=MAX_LINE))
        yield line


def _xlsx_rows(data: bytes, limits: Limits) -> Iterator[list[Any]]:
    """The first sheet's rows, streamed (read-only), after the archive passed its limits (SEC-3)."""
    try:
        check_workbook(data, limits)
    except Refused as refused:
        raise ImportFileError(refused.message) from None
    unreadable = ImportFileError(_l("The file could not be read as an Excel workbook (.xlsx)."))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # styles/validation notes mean nothing here
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError):
        raise unreadable from None
    return _sheet_rows(book, unreadable)


def _sheet_rows(book: Any, unreadable: ImportFileError) -> Iterator[list[Any]]:
    try:
        if book.worksheets:
            for values in book.worksheets[0].iter_rows(max_col=MAX_COLUMNS, values_only=True):
                yield list(values)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        raise unreadable from None  # a damaged part shows only when its rows are read
    finally:
        book.close()


Table = tuple[list[Any], list[tuple[int, list[Any]]]]


def read_table(data: bytes, filename: str, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES) -> Table:
    """The header cells (first non-blank row) and the non-blank data rows with their row numbers."""
    if len(data) > max_bytes:
        raise ImportFileError(_l("The file is larger than %(mb)d MB; split it into several files.",
                                 mb=max_bytes // (1024 * 1024)))
    name = (filename or "").lower()
    scanned_rows = max_rows * SCANNED_PER_ROW
    if name.endswith(".xlsx") or (not name.endswith(".csv") and data[:4] == b"PK\x03\x04"):
        source: Iterable[list[Any]] = _xlsx_rows(data, Limits.of_import(max_rows, max_bytes, scanned_rows))
    elif name.endswith(".csv"):
        source = _csv_rows(data)
    else:
        raise ImportFileError(_l("Only .xlsx or .csv files can be imported (save an .xls file as .xlsx)."))
    too_many = ImportFileError(_l("The file has more than %(n)d rows; split it into several files.", n=max_rows))
    header: list[Any] | None = None
    rows: list[tuple[int, list[Any]]] = []
    try:
        for number, values in enumerate(source, start=1):
            if number > scanned_rows:
                raise too_many
            if _blank(values):
                continue
            if header is None:
                header = list(values)[:MAX_COLUMNS]
                continue
            rows.append((number, list(values)[:MAX_COLUMNS]))
            if len(rows) > max_rows:
                raise too_many
    except csv.Error:
        raise ImportFileError(_l("The CSV file is malformed (check the quotes).")) from None
    if header is None:
        raise ImportFileError(_l("The file is empty."))
    if not rows:
        raise ImportFileError(_l("The file has a header row but no data rows."))
    return header, rows


def _header_key(text: Any) -> str:
    """Compare headers loosely: case, spaces, a required-marker star and a unit in brackets."""
    value = _nfkc(str(text or "")).lower().strip("* ")
    value = re.sub(r"\s*\(.*\)$", "", value)
    return re.sub(r"[\s\-]+", "_", value.strip())


def map_headers(cells: list[Any], kind: str) -> tuple[dict[str, tuple[int, str]], list[str]]:
    """Column key → (cell index, header as written); plus the headers that matched nothing."""
    lookup: dict[str, Column] = {}
    for column in COLUMNS[kind]:
        for alias in (column.zh, column.key, str(column.label), *column.aliases):
            lookup[_header_key(alias)] = column
    found: dict[str, tuple[int, str]] = {}
    ignored = []
    for index, cell in enumerate(cells):
        written = _nfkc(str(cell)) if cell is not None else ""
        column = lookup.get(_header_key(cell))
        if column is None:
            if written:
                ignored.append(written)
            continue
        if column.key in found:
            raise ImportFileError(_l("The column “%(name)s” appears twice.", name=written))
        found[column.key] = (index, written)
    missing = [str(c.label) for c in COLUMNS[kind] if c.required and c.key not in found]
    if missing:
        raise ImportFileError(_l("Missing required columns: %(names)s.", names=", ".join(missing)))
    return found, ignored


# --- cell values -------------------------------------------------------------------------------

def parse_date(value: Any) -> date | None:
    """A date cell, an Excel serial number, or text as YYYY-MM-DD, YYYY/MM/DD, YYYY年M月D日."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if 1 <= value < 2958466:
                converted = from_excel(value)
                if isinstance(converted, datetime):
                    return converted.date()
        else:
            text = _nfkc(str(value))
            match = DATE_TEXT.fullmatch(text)
            if match:
                return date(int(match[1]), int(match[2]), int(match[3]))
            if re.fullmatch(r"\d{8}", text):
                return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except (ValueError, OverflowError):
        pass
    raise DomainError(_l("Not a date; write it as YYYY-MM-DD, e.g. 2024-03-01."))


class _Row:
    """One data row: typed access to its cells, and the errors found in it."""

    def __init__(self, number: int, values: list[Any], headers: dict[str, tuple[int, str]],
                 labels: dict[str, Any]) -> None:
        self.number = number
        self.values = values
        self.headers = headers
        self.labels = labels
        self.errors: list[RowError] = []

    def raw(self, key: str) -> Any:
        index = self.headers[key][0] if key in self.headers else None
        if index is None or index >= len(self.values):
            return None
        value = self.values[index]
        return value.strip() if isinstance(value, str) else value

    def text(self, key: str, normalise: bool = False) -> str:
        value = self.raw(key)
        if value is None:
            return ""
        if isinstance(value, datetime | date):
            return value.isoformat()[:10]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text = str(value)
        return _nfkc(text) if normalise else text.strip()

    def fail(self, key: str | None, message: Any) -> None:
        column = self.headers[key][1] if key in self.headers else str(self.labels.get(key, ""))
        self.errors.append(RowError(self.number, column, str(message)))

    def required(self, key: str, normalise: bool = True) -> str:
        text = self.text(key, normalise)
        if not text:
            self.fail(key, _("This value is required."))
        return text

    def assign(self, obj: Any, attr: str, value: Any, key: str) -> None:
        """Set through the model's validator; a DomainError becomes this cell's error."""
        try:
            setattr(obj, attr, value)
        except DomainError as exc:
            self.fail(key, exc.message)

    def integer(self, key: str) -> int | None:
        text = self.text(key, normalise=True).upper()
        if not text:
            return None
        if not FLOOR_TEXT.fullmatch(text):
            self.fail(key, _("Floor must be a whole number, e.g. 12, or B1 for a basement."))
            return None
        return -int(text[1:]) if text.startswith("B") else int(text)

    def decimal(self, key: str) -> Decimal | None:
        text = self.text(key, normalise=True)
        text = re.sub(r"\s*(m2|m²|平方米|平米)$", "", text, flags=re.IGNORECASE)
        if not text:
            return None
        try:
            number = Decimal(text.replace(",", ""))
            if not number.is_finite():
                raise InvalidOperation
            return number.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        except InvalidOperation:
            self.fail(key, _("Building area must be a number, e.g. 89.5."))
            return None

    def choice(self, key: str, values: dict[str, str], labels: dict[str, Any], allowed: str) -> str | None:
        """A Chinese or English word (or the label in the user's language) → the stored key."""
        text = self.text(key, normalise=True)
        if not text:
            return None
        folded = text.lower()
        found = values.get(folded) or {str(v).lower(): k for k, v in labels.items()}.get(folded)
        if found is None:
            self.fail(key, _("“%(value)s” is not one of: %(allowed)s.", value=text, allowed=allowed))
        return found

    def date(self, key: str) -> date | None:
        try:
            return parse_date(self.raw(key))
        except DomainError as exc:
            self.fail(key, exc.message)
            return None


# --- the import --------------------------------------------------------------------------------

class _Importer:
    """Per-file caches (estates, buildings, units, what the file already holds) and row builders."""

    def __init__(self, session: Session, kind: str, headers: dict[str, tuple[int, str]],
                 report: ImportReport) -> None:
        self.session = session
        self.kind = kind
        self.headers = headers
        self.report = report
        self.labels = {c.key: c.label for c in COLUMNS[kind]}
        self.estates: dict[str, Estate | None] = {}
        self.buildings: dict[tuple[int, str], Building] = {}
        self.units: dict[int, dict[str, Unit]] = {}  # estate id → unit code → unit on file
        self.people: dict[str, Resident] = {}  # blind index → resident on file, for the batch
        self.seen_units: dict[tuple[str, str], int] = {}  # (estate, unit code) → first row
        self.seen_ids: dict[str, int] = {}  # blind index → first row
        self.new_buildings: dict[tuple[int, str], Building] = {}  # created in the batch under way

    def import_rows(self, rows: list[tuple[int, list[Any]]]) -> None:
        """Build rows inside one SAVEPOINT and flush them together.

        Every row is checked by the model validators before anything is added, so a bad value
        costs its row only. Should the database still refuse the flush (a constraint the checks
        did not foresee, a concurrent insert), the batch is undone and retried row by row, each
        in its own SAVEPOINT, so the refusal is reported against the one row that caused it.
        """
        savepoint = self.session.begin_nested()
        self.new_buildings = {}
        if self.kind == "residents":
            self.find_people(rows)
        built: list[tuple[_Row, Callable[[], None] | None]] = []
        try:
            with self.session.no_autoflush:
                for number, values in rows:
                    row = _Row(number, values, self.headers, self.labels)
                    try:
                        built.append((row, self.build_unit(row) if self.kind == "units" else self.build_residency(row)))
                    except DomainError as exc:  # a check raised outside Row.assign
                        row.fail(exc.field if exc.field in self.labels else None, exc.message)
                        built.append((row, None))
            self.session.flush()
        except (IntegrityError, DataError):
            savepoint.rollback()
            if len(rows) > 1:
                for one in rows:
                    self.import_rows([one])
                return
            row = _Row(*rows[0], self.headers, self.labels)
            row.fail(None, _("The database refused this row: a key is duplicated or a value is out of range."))
            self.report.errors.extend(row.errors)
            return
        savepoint.commit()
        for row, done in built:
            if row.errors:
                self.report.errors.extend(row.errors)
            else:
                self.report.valid += 1
                if done is not None:
                    done()

    # lookups ---------------------------------------------------------------------------------
    def estate(self, row: _Row) -> Estate | None:
        code = row.required("estate_code").lower()
        if not code:
            return None
        if code not in self.estates:
            self.estates[code] = self.session.scalar(sa.select(Estate).where(Estate.code == code))
        estate = self.estates[code]
        if estate is None:
            row.fail("estate_code", _("No estate has the code “%(code)s”; create the estate first.", code=code))
        return estate

    def estate_units(self, estate: Estate) -> dict[str, Unit]:
        """All units of one estate in one query, instead of one query per row."""
        if estate.id not in self.units:
            self.units[estate.id] = {u.code: u for u in self.session.scalars(
                sa.select(Unit).join(Building).where(Building.estate_id == estate.id))}
        return self.units[estate.id]

    def find_people(self, rows: list[tuple[int, list[Any]]]) -> None:
        """Residents already on file under the batch's ID numbers, in one query per batch."""
        digests = set()
        for number, values in rows:
            try:
                number_text = check_id_number(_Row(number, values, self.headers, self.labels).text("id_number", True))
            except DomainError:
                continue  # reported when the row is built
            digests.add(keyring().blind_index(number_text))
        self.people = {p.id_number_bidx: p for p in self.session.scalars(
            sa.select(Resident).where(Resident.id_number_bidx.in_(digests)))} if digests else {}

    def unit_code(self, row: _Row) -> str | None:
        try:
            return check_unit_code(row.text("unit_code", normalise=True))
        except DomainError as exc:
            row.fail("unit_code", exc.message)
            return None

    # units -----------------------------------------------------------------------------------
    def build_unit(self, row: _Row) -> Callable[[], None] | None:
        estate = self.estate(row)
        code = self.unit_code(row)
        unit = Unit()
        floor = row.integer("floor")
        if floor is not None:
            unit.floor = floor
        row.assign(unit, "area", row.decimal("area"), "area")
        use = row.choice("use", USE_VALUES, UNIT_USES, "住宅, 办公, 商业, 车位 (residential, office, commercial, "
                                                       "parking)")
        if use is None and not row.text("use"):
            use = "office" if estate is not None and estate.kind == "office" else "residential"
        if use is not None:
            row.assign(unit, "use", use, "use")
        if code is not None:
            row.assign(unit, "code", code, "unit_code")
            key = (estate.code if estate else row.text("estate_code").lower(), code)
            first = self.seen_units.setdefault(key, row.number)
            if first != row.number:
                row.fail("unit_code", _("Unit %(code)s appears twice in the file (first on row %(row)d).",
                                        code=code, row=first))
            elif estate is not None and code in self.estate_units(estate):
                row.fail("unit_code", _("Unit %(code)s already exists.", code=code))
        building_code = row.text("building", normalise=True) or (code.split("-")[0] if code else "")
        if estate is None or not building_code or row.errors:
            return None
        key = (estate.id, building_code.upper())
        building = self.buildings.get(key) or self.new_buildings.get(key)
        if building is None:
            building = self.session.scalar(sa.select(Building).where(
                Building.estate_id == estate.id, Building.code == key[1]))
        new_building = building is None
        if building is None:
            building = Building(estate_id=estate.id)
            row.assign(building, "code", building_code, "building")
            if row.errors:
                return None
        unit.building = building  # no backref: nothing persistent is touched before the checks pass
        try:
            unit.check_consistent()
        except DomainError as exc:
            row.fail({"code": "unit_code"}.get(exc.field or "", exc.field), exc.message)
            return None
        if new_building:
            self.new_buildings[key] = building
            self.session.add(building)
        self.session.add(unit)

        def done() -> None:
            self.buildings[key] = building
            self.estate_units(estate)[unit.code] = unit
            self.report.created["units"] += 1
            self.report.created["buildings"] += int(new_building)

        return done

    # residents and occupancies ---------------------------------------------------------------
    def unit_of(self, row: _Row, estate: Estate | None) -> Unit | None:
        code = self.unit_code(row)
        if estate is None or code is None:
            return None
        unit = self.estate_units(estate).get(code)
        if unit is None:
            row.fail("unit_code", _("Unit %(code)s does not exist in this estate; import the units first.",
                                    code=code))
        return unit

    def person(self, row: _Row) -> Resident:
        """A transient resident carrying the row's values, each checked by the model."""
        person = Resident()
        row.assign(person, "name", row.text("name"), "name")
        gender = row.choice("gender", GENDER_VALUES, GENDERS, "男, 女 (male, female)")
        if gender is not None:
            row.assign(person, "gender", gender, "gender")
        raw_id = row.raw("id_number")
        if isinstance(raw_id, float):
            row.fail("id_number", _("The ID number was saved as a number and lost digits; format the column "
                                    "as text and type the number again."))
        else:
            row.assign(person, "id_number", row.text("id_number", normalise=True) or None, "id_number")
        for key in ("phone", "emergency_phone"):
            row.assign(person, key, row.text(key, normalise=True) or None, key)
        for key in ("native_place", "household_place", "emergency_contact"):
            row.assign(person, key, row.text(key) or None, key)
        return person

    def build_residency(self, row: _Row) -> Callable[[], None] | None:
        estate = self.estate(row)
        unit = self.unit_of(row, estate)
        person = self.person(row)
        occupancy = Occupancy()
        kind = row.choice("relation", RELATION_VALUES, OCCUPANCY_KINDS, "业主, 家属, 租户 (owner, family, tenant)")
        if kind is None and not row.text("relation"):
            row.fail("relation", _("This value is required."))
        elif kind is not None:
            row.assign(occupancy, "kind", kind, "relation")
        for key in ("start_date", "end_date"):
            before = len(row.errors)
            value = row.date(key)
            if len(row.errors) == before:  # an unreadable date is reported once, not also as missing
                row.assign(occupancy, key, value, key)

        existing: Resident | None = None
        digest = person.id_number_bidx
        if digest:
            first = self.seen_ids.setdefault(digest, row.number)
            if first != row.number:
                row.fail("id_number", _("This ID number is already on row %(row)d of the file.", row=first))
            else:
                existing = self.people.get(digest)
        if existing is not None and existing.name != person.name:
            row.fail("id_number", _("This ID number is on file for a person with a different name."))
        if existing is not None and unit is not None and occupancy.start_date is not None:
            duplicate = self.session.scalar(sa.select(Occupancy.id).where(
                Occupancy.resident_id == existing.id, Occupancy.unit_id == unit.id,
                Occupancy.kind == occupancy.kind, Occupancy.start_date == occupancy.start_date))
            if duplicate is not None:
                row.fail(None, _("This person already has this occupancy of the unit on file."))
        if row.errors or unit is None:
            return None
        resident = existing or person
        if existing is None:
            self.session.add(person)
        occupancy.unit = unit
        occupancy.resident = resident
        self.session.add(occupancy)

        def done() -> None:
            self.report.created["occupancies"] += 1
            self.report.created["existing_residents" if existing is not None else "residents"] += 1

        return done


def _open_transaction(session: Session) -> None:
    """Make sure a real transaction is open before the first SAVEPOINT.

    pysqlite defers BEGIN until the first INSERT or UPDATE, so a SAVEPOINT issued first becomes
    the outermost transaction and releasing it commits: a dry run would write. (SQLAlchemy's docs,
    "Serializable isolation / Savepoints / Transactional DDL" for pysqlite.)
    """
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        raw = connection.connection.dbapi_connection
        if raw is not None and not raw.in_transaction:
            connection.exec_driver_sql("BEGIN")


def run_import(session: Session, data: bytes, filename: str, kind: str, mode: str,
               max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES) -> ImportReport:
    """Import one file and commit or roll back the session's transaction according to ``mode``.

    The caller hands over a session with nothing pending: its transaction ends here.
    """
    if kind not in KINDS or mode not in MODES:
        raise ValueError(f"unknown kind {kind!r} or mode {mode!r}")
    report = ImportReport(kind=kind, mode=mode)
    try:
        header, rows = read_table(data, filename, max_rows, max_bytes)
        headers, report.ignored_columns = map_headers(header, kind)
    except ImportFileError as exc:
        report.errors.append(RowError(None, "", str(exc.message)))
        return report
    importer = _Importer(session, kind, headers, report)
    try:
        _open_transaction(session)
        report.total = len(rows)
        for start in range(0, len(rows), BATCH_ROWS):
            importer.import_rows(rows[start:start + BATCH_ROWS])
        commit = report.valid > 0 and (
            mode == "valid_only" or (mode == "all_or_nothing" and not report.errors))
        if commit:
            session.commit()
            report.written = True
        else:
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    return report


def template_workbook(kind: str) -> bytes:
    """An empty workbook with the Chinese header row, text-formatted code columns, and notes."""
    book = Workbook()
    sheet = book.active
    sheet.title = SHEET_TITLES[kind]
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDEBF7")
    text_columns = {"estate_code", "building", "unit_code", "phone", "id_number", "emergency_phone"}
    for index, column in enumerate(COLUMNS[kind], start=1):
        cell = sheet.cell(row=1, column=index, value=column.zh)
        cell.font = bold
        cell.fill = fill
        letter = cell.column_letter
        sheet.column_dimensions[letter].width = 22 if column.key in ("id_number", "household_place") else 14
        if column.key in text_columns:  # keep Excel from turning ID numbers into 1.1E+17
            sheet.column_dimensions[letter].number_format = "@"
        elif column.key.endswith("_date"):
            sheet.column_dimensions[letter].number_format = "yyyy-mm-dd"
    sheet.freeze_panes = "A2"
    notes = book.create_sheet("说明")
    notes.append(["列", "说明"])
    for column in COLUMNS[kind]:
        notes.append([column.zh, column.note or "可空"])
    notes.append([])
    notes.append(["", "只读取第一个工作表；第 1 行为表头，从第 2 行起每行一条。"])
    notes.column_dimensions["A"].width = 14
    notes.column_dimensions["B"].width = 70
    return workbook_bytes(book)
