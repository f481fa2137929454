"""Bad input through the real HTTP forms: a form error, nothing written, never a 500 (REG-1..3, ACC-6).

Bad unit code, duplicate unit, end before start, bad ID number, oversized text, unique-constraint
races and stale edits. Every test fills the form the server rendered (field names as Flask-Admin
scaffolds them), changes what the test is about, submits it and checks the page and the tables.
"""

from __future__ import annotations

import html
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from models import (
    Building,
    Occupancy,
    Resident,
    ResidentChange,
    SecurityEvent,
    Staff,
    Unit,
    VipCommunication,
    VipProfile,
    db,
)
from models.validators import id_number_checksum
from security import accounts
from tests.conftest import PASSWORD
from tests.helpers import (
    NOT_SNAPSHOTTED,
    data_rows,
    make_building,
    make_estate,
    make_occupancy,
    make_resident,
    make_unit,
    valid_id,
)

DUPLICATE = "A record with the same key already exists"
STALE = "Someone else changed this record after you opened it"


# --- reading the rendered form ----------------------------------------------------------------
class _AdminForm(HTMLParser):
    """The values a browser would submit from Flask-Admin's model form (class "admin-form")."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.data: dict[str, Any] = {}
        self.select: str | None = None
        self.options: list[str] = []
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "form" and "admin-form" in (attr.get("class") or ""):
            self.inside = True
        if not self.inside:
            return
        name = attr.get("name")
        if tag == "input" and name and attr.get("type") not in ("submit", "button"):
            if attr.get("type") in ("checkbox", "radio"):
                if "checked" in attr:
                    self.data.setdefault(name, []).append(attr.get("value") or "y")
            else:
                self.data[name] = attr.get("value") or ""
        elif tag == "select" and name:
            self.select, self.options = name, []
        elif tag == "option" and self.select:
            self.options.append(attr.get("value") or "")
            if "selected" in attr:
                self.data[self.select] = attr.get("value") or ""
        elif tag == "textarea" and name:
            self.textarea = name
            self.data[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select" and self.select:
            if self.select not in self.data and self.options:
                self.data[self.select] = self.options[0]
            self.select = None
        elif tag == "textarea":
            self.textarea = None

    def handle_data(self, data: str) -> None:
        if self.textarea:
            self.data[self.textarea] += data


def open_form(client: FlaskClient, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200, response.status
    parser = _AdminForm()
    parser.feed(response.get_data(as_text=True))
    assert "csrf_token" in parser.data, "the form carries no CSRF token"
    return parser.data


def submit(client: FlaskClient, url: str, form: dict[str, Any], **changes: Any) -> TestResponse:
    return client.post(url, data={**form, **{k: str(v) for k, v in changes.items()}})


def text(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


# --- reading the tables ---------------------------------------------------------------------
def count(model: type, *where: Any) -> int:
    with db.engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def snapshot() -> dict[str, list[tuple]]:
    """Every row of every table except the audit log, through a fresh connection."""
    with db.engine.connect() as conn:
        return {t.name: [tuple(r) for r in conn.execute(data_rows(t))]
                for t in db.metadata.sorted_tables if t.name not in NOT_SNAPSHOTTED}


def fetch(model: type, pk: int) -> Any:
    db.session.rollback()  # forget the test's own view; read what the requests committed
    return db.session.get(model, pk)


def refused(response: TestResponse, message: str, before: dict[str, list[tuple]]) -> None:
    """A form error: the form comes back (200) with the message, and no table changed."""
    body = text(response)
    assert response.status_code == 200, response.status
    assert message in body, f"{message!r} not on the page"
    assert snapshot() == before, "a refused form wrote to the database"


def other_session() -> sa.orm.Session:
    """A second connection: another clerk's transaction, committed behind the form's back."""
    return sa.orm.Session(db.engine)


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture()
def estate(staff_ids, db_session) -> dict[str, int]:
    """Estate with buildings A and B, unit A-12-1203 owned by 张三; every account reads English."""
    db.session.execute(sa.update(Staff).values(locale="en"))
    building_a = make_building(make_estate())
    building_b = make_building(building_a.estate, code="B", floors=18)
    unit = make_unit(building_a)
    resident = make_resident()
    other = make_resident(name="李四", phone="13900139000", id_number=valid_id(2))
    occupancy = make_occupancy(unit, resident)
    vip = VipProfile(resident=resident)
    db.session.add(vip)
    db.session.commit()
    return {"A": building_a.id, "B": building_b.id, "unit": unit.id, "resident": resident.id,
            "other": other.id, "occupancy": occupancy.id, "vip": vip.id}


@pytest.fixture()
def clerk(login_as, estate) -> FlaskClient:
    return login_as("cs_clerk")


# --- REG-1 unit codes ------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "message"), [
    ("12-A", "Unit code must read building-floor-room"),
    ("A-12", "Unit code must read building-floor-room"),
    ("A_12_1203", "Unit code must read building-floor-room"),
    ("A-12-1203-9", "Unit code must read building-floor-room"),
    ("A-1234-101", "Unit code must read building-floor-room"),
    ("A-12-1", "Unit code must read building-floor-room"),
    ("   ", "Unit code must read building-floor-room"),
    ("", "This field is required"),
    ("A-1'; DROP TABLE unit;--", "Unit code must read building-floor-room"),
    ("A-12-1203'; DROP TABLE unit;--", "Field cannot be longer than 24 characters"),
])
def test_reg_1_bad_unit_code_is_a_form_error(clerk, estate, code, message):
    form = open_form(clerk, "/admin/unit/new/")
    before = snapshot()
    response = submit(clerk, "/admin/unit/new/", form, building=estate["A"], code=code, floor=12, area="80")
    refused(response, message, before)


def test_reg_1_unit_code_of_another_building_is_refused(clerk, estate):
    """A-12-1203 cannot be a unit of building B."""
    form = open_form(clerk, "/admin/unit/new/")
    before = snapshot()
    response = submit(clerk, "/admin/unit/new/", form, building=estate["B"], code="A-12-1203", floor=12,
                      area="80")
    refused(response, "Unit code must start with its building code", before)


def test_reg_1_unit_code_floor_mismatch_is_refused(clerk, estate):
    """A-12-1208 lies on floor 12, not 5."""
    form = open_form(clerk, "/admin/unit/new/")
    before = snapshot()
    response = submit(clerk, "/admin/unit/new/", form, building=estate["A"], code="A-12-1208", floor=5,
                      area="80")
    refused(response, "Unit code's floor part differs from the floor", before)


def test_reg_1_floor_mismatch_on_edit_keeps_the_unit(clerk, estate):
    form = open_form(clerk, f"/admin/unit/edit/?id={estate['unit']}")
    before = snapshot()
    response = submit(clerk, f"/admin/unit/edit/?id={estate['unit']}", form, code="A-5-501")
    refused(response, "Unit code's floor part differs from the floor", before)
    assert fetch(Unit, estate["unit"]).code == "A-12-1203"


@pytest.mark.parametrize("code", ["A-12-1203", "a-12-1203", " A-12-1203 "])
def test_reg_1_duplicate_unit_in_same_building_is_refused(clerk, estate, code):
    """The same unit twice in one building: refused, however it is typed."""
    form = open_form(clerk, "/admin/unit/new/")
    before = snapshot()
    response = submit(clerk, "/admin/unit/new/", form, building=estate["A"], code=code, floor=12, area="80")
    refused(response, DUPLICATE, before)
    assert count(Unit, Unit.code == "A-12-1203") == 1


@pytest.mark.parametrize(("area", "message"), [
    ("-5", "Building area must be between 0 and 100000"),
    ("0", "Building area must be between 0 and 100000"),
    ("100000", "Building area must be between 0 and 100000"),
    ("1e30", "Building area must be between 0 and 100000"),
    ("NaN", "Building area must be between 0 and 100000"),
    ("Infinity", "Building area must be between 0 and 100000"),
    ("abc", "Not a valid decimal value"),
])
def test_reg_1_area_must_be_positive_and_sane(clerk, estate, area, message):
    form = open_form(clerk, "/admin/unit/new/")
    before = snapshot()
    response = submit(clerk, "/admin/unit/new/", form, building=estate["A"], code="A-3-301", floor=3, area=area)
    refused(response, message, before)


def test_reg_1_number_too_large_for_its_column_is_never_a_500(login_as, estate):
    """Floors = 999999999999 does not fit PostgreSQL's integer: a message, nothing written.

    SQLite's integers are 64-bit, so there the number fits and is stored as typed.
    """
    supervisor = login_as("cs_supervisor")
    form = open_form(supervisor, "/admin/building/new/")
    before = snapshot()
    response = submit(supervisor, "/admin/building/new/", form, code="C", name="C栋", floors="9" * 12)
    if db.engine.dialect.name == "sqlite":
        assert response.status_code == 302
        assert db.session.scalar(sa.select(Building.floors).where(Building.code == "C")) == int("9" * 12)
    else:
        refused(response, "out of range", before)


# --- REG-2 occupancy periods -------------------------------------------------------------------
def test_reg_2_occupancy_end_before_start_is_refused(clerk, estate):
    form = open_form(clerk, "/admin/occupancy/new/")
    before = snapshot()
    response = submit(clerk, "/admin/occupancy/new/", form, unit=estate["unit"], resident=estate["other"],
                      kind="tenant", start_date="2024-03-01", end_date="2024-02-29")
    refused(response, "End date cannot be before start date", before)
    assert count(ResidentChange, ResidentChange.resident_id == estate["other"]) == 0


def test_reg_2_ending_occupancy_before_its_start_is_refused(clerk, estate):
    url = f"/admin/occupancy/edit/?id={estate['occupancy']}"
    form = open_form(clerk, url)
    before = snapshot()
    refused(submit(clerk, url, form, end_date="2023-12-31"), "End date cannot be before start date", before)
    assert fetch(Occupancy, estate["occupancy"]).end_date is None


@pytest.mark.parametrize(("field", "value"), [("start_date", "2024-13-01"), ("start_date", ""),
                                              ("end_date", "yesterday"), ("unit", "999999"),
                                              ("resident", "not-an-id")])
def test_reg_2_malformed_occupancy_fields_are_a_form_error(clerk, estate, field, value):
    form = open_form(clerk, "/admin/occupancy/new/")
    values = {"unit": estate["unit"], "resident": estate["other"], "kind": "tenant", "start_date": "2024-03-01"}
    before = snapshot()
    response = submit(clerk, "/admin/occupancy/new/", form, **{**values, field: value})
    assert response.status_code == 200, response.status
    assert snapshot() == before


@pytest.mark.parametrize("query", ["name=unit&query=A&limit=-1", "name=unit&query=A&offset=-5",
                                   "name=resident&query=%25&limit=abc", "name=resident&query=&limit=1000000",
                                   "name=unit&query=%27%3B--", "name=nosuch&query=A", "query=A"])
def test_reg_2_ajax_lookup_with_junk_paging_is_never_a_500(clerk, estate, query):
    """The unit/resident pickers: odd paging or names give an empty or short list, or 404."""
    response = clerk.get(f"/admin/occupancy/ajax/lookup/?{query}")
    assert response.status_code in (200, 404), response.status
    if response.status_code == 200:
        assert len(response.get_json()) <= 100


# --- REG-3 / ACC-6 national ID numbers ----------------------------------------------------------
def _id(born: str, serial: str = "123", region: str = "110105") -> str:
    first17 = f"{region}{born}{serial}"
    return first17 + id_number_checksum(first17)


def _wrong_check_digit(number: str) -> str:
    return number[:17] + next(c for c in "0123456789X" if c != number[17])


RESIDENT = {"name": "王五", "gender": "female", "phone": "13700137000"}


@pytest.mark.parametrize(("number", "message"), [
    (_wrong_check_digit(valid_id(7)), "ID number check digit is wrong"),
    (_id("19800230"), "ID number holds an impossible birth date"),
    (_id("19801301"), "ID number holds an impossible birth date"),
    (_id("18500101"), "ID number holds an impossible birth date"),
    (_id(f"{date.today().year + 1}0101"), "ID number holds an impossible birth date"),
    ("11010519800101001", "ID number must be 17 digits followed by a digit or X"),
    ("11010519800101001Y", "ID number must be 17 digits followed by a digit or X"),
    ("1101051980010100123", "Field cannot be longer than 18 characters"),
])
def test_reg_3_bad_id_number_is_a_form_error(clerk, estate, number, message):
    form = open_form(clerk, "/admin/resident/new/")
    before = snapshot()
    refused(submit(clerk, "/admin/resident/new/", form, **RESIDENT, id_number=number), message, before)


def test_acc_6_second_resident_with_same_id_number_is_refused(clerk, estate):
    """The blind index is unique: the same ID number cannot be registered twice, in either case."""
    form = open_form(clerk, "/admin/resident/new/")
    before = snapshot()
    refused(submit(clerk, "/admin/resident/new/", form, **RESIDENT, id_number=valid_id(1)), DUPLICATE, before)
    x_id = next(valid_id(n) for n in range(100) if valid_id(n).endswith("X"))
    with other_session() as other:
        other.add(Resident(name="赵六", id_number=x_id))
        other.commit()
    before = snapshot()
    form = open_form(clerk, "/admin/resident/new/")
    refused(submit(clerk, "/admin/resident/new/", form, **RESIDENT, id_number=x_id.lower()), DUPLICATE, before)


def test_acc_6_changing_id_number_to_another_residents_is_refused(clerk, estate):
    url = f"/admin/resident/edit/?id={estate['other']}"
    form = open_form(clerk, url)
    before = snapshot()
    refused(submit(clerk, url, form, id_number=valid_id(1), confirm_password=PASSWORD), DUPLICATE, before)  # ACC-8
    assert fetch(Resident, estate["other"]).id_number == valid_id(2)


@pytest.mark.parametrize(("field", "size"), [("name", 500), ("native_place", 1000), ("household_place", 201),
                                             ("emergency_contact", 65), ("phone", 200)])
def test_reg_3_oversized_text_is_a_form_error(clerk, estate, field, size):
    form = open_form(clerk, "/admin/resident/new/")
    before = snapshot()
    response = submit(clerk, "/admin/resident/new/", form, **{**RESIDENT, field: "长" * size})
    refused(response, "longer than", before)


def test_reg_3_oversized_text_on_edit_keeps_the_record(clerk, estate):
    url = f"/admin/resident/edit/?id={estate['resident']}"
    form = open_form(clerk, url)
    before = snapshot()
    refused(submit(clerk, url, form, name="张" * 500, native_place="籍" * 1000), "longer than", before)
    assert fetch(Resident, estate["resident"]).name == "张三"


def test_reg_3_blank_name_is_a_form_error(clerk, estate):
    form = open_form(clerk, "/admin/resident/new/")
    before = snapshot()
    refused(submit(clerk, "/admin/resident/new/", form, **{**RESIDENT, "name": "   "}), "Name is required", before)


def test_reg_4_oversized_vip_text_is_a_form_error(clerk, estate):
    url = f"/admin/vip/edit/?id={estate['vip']}"
    form = open_form(clerk, url)
    before = snapshot()
    refused(submit(clerk, url, form, preferences="喜" * 2001), "at most 2000 characters", before)
    form = open_form(clerk, "/admin/vip_contact/new/")
    response = submit(clerk, "/admin/vip_contact/new/", form, profile=estate["vip"], summary="话" * 1001)
    refused(response, "longer than", before)
    assert count(VipCommunication) == 0


# --- races: the database's unique constraint decides, the loser gets a message ------------------
def test_reg_1_unique_race_on_unit_code(clerk, estate):
    """Another clerk saves A-7-701 between this clerk opening the form and submitting it."""
    form = open_form(clerk, "/admin/unit/new/")
    with other_session() as other:
        other.add(Unit(building_id=estate["A"], code="A-7-701", floor=7, area=Decimal("60.00")))
        other.commit()
    before = snapshot()
    response = submit(clerk, "/admin/unit/new/", form, building=estate["A"], code="A-7-701", floor=7, area="99")
    refused(response, DUPLICATE, before)
    assert count(Unit, Unit.code == "A-7-701") == 1
    winner = db.session.scalar(sa.select(Unit).where(Unit.code == "A-7-701"))
    assert winner.area == Decimal("60.00")


def test_reg_1_two_clerks_submit_the_same_unit(login_as, estate):
    """Both opened the empty form; the first save wins, the second is told, nothing half-written."""
    first, second = login_as("cs_clerk"), login_as("cs_supervisor")
    form_1, form_2 = open_form(first, "/admin/unit/new/"), open_form(second, "/admin/unit/new/")
    values = {"building": estate["A"], "code": "A-8-801", "floor": 8}
    assert submit(first, "/admin/unit/new/", form_1, **values, area="70").status_code == 302
    before = snapshot()
    refused(submit(second, "/admin/unit/new/", form_2, **values, area="71"), DUPLICATE, before)
    assert count(Unit, Unit.code == "A-8-801") == 1


def test_acc_6_unique_race_on_id_number(clerk, estate):
    """The same person registered at two desks at once: one resident, the other desk is told."""
    number = valid_id(9)
    form = open_form(clerk, "/admin/resident/new/")
    with other_session() as other:
        other.add(Resident(name="钱七", id_number=number))
        other.commit()
    before = snapshot()
    refused(submit(clerk, "/admin/resident/new/", form, **RESIDENT, id_number=number), DUPLICATE, before)
    assert count(Resident) == 3


def test_acc_1_unique_race_on_username(login_as, estate, monkeypatch):
    """Two admins create the same username: the loser gets a message; no roles, no log, no half account."""
    admin = login_as("admin")
    real_check = accounts.check_policy

    def race_then_check(password: str, username: str) -> None:
        # The other admin's account lands after the "username taken?" check, before our insert.
        with other_session() as other:
            other.add(Staff(username=username, full_name="抢先", password_hash="x"))
            other.commit()
        real_check(password, username)

    monkeypatch.setattr(accounts, "check_policy", race_then_check)
    form = open_form(admin, "/admin/staff/new/")
    created_events = count(SecurityEvent, SecurityEvent.kind == "account_created")
    response = submit(admin, "/admin/staff/new/", form, username="newhire", full_name="新同事",
                      password="Another-Strong-Pass-7", roles="cs_clerk")
    assert response.status_code == 200, response.status
    assert DUPLICATE in text(response) or "This username is taken" in text(response)
    assert count(Staff, Staff.username == "newhire") == 1
    loser = db.session.scalar(sa.select(Staff).where(Staff.username == "newhire"))
    assert loser.full_name == "抢先" and loser.roles == set()
    assert count(SecurityEvent, SecurityEvent.kind == "account_created") == created_events


# --- stale edits: optimistic lock on version --------------------------------------------------
def test_reg_1_stale_edit_is_refused(clerk, estate):
    """The unit changed in another session after the form was opened: refused, the other change stays."""
    url = f"/admin/unit/edit/?id={estate['unit']}"
    form = open_form(clerk, url)
    assert form["version"] == "1"
    with other_session() as other:
        other.get(Unit, estate["unit"]).use = "office"  # not important information (ACC-8): no password
        other.commit()
    before = snapshot()
    refused(submit(clerk, url, form, area="95.5", confirm_password=PASSWORD), STALE, before)
    unit = fetch(Unit, estate["unit"])
    assert (unit.use, unit.version) == ("office", 2)


def test_reg_1_second_of_two_open_edit_forms_is_refused(login_as, estate):
    """Two clerks open the same unit; the first save bumps the version, the second is refused."""
    url = f"/admin/unit/edit/?id={estate['unit']}"
    first, second = login_as("cs_clerk"), login_as("cs_supervisor")
    form_1, form_2 = open_form(first, url), open_form(second, url)
    assert submit(first, url, form_1, area="91", confirm_password=PASSWORD).status_code == 302  # ACC-8
    assert fetch(Unit, estate["unit"]).version == 2
    before = snapshot()
    refused(submit(second, url, form_2, area="92", confirm_password=PASSWORD), STALE, before)
    assert fetch(Unit, estate["unit"]).area == Decimal("91.00")
    # Reloading gives the current version, and then the save goes through.
    assert submit(second, url, open_form(second, url), area="92", confirm_password=PASSWORD).status_code == 302
    assert fetch(Unit, estate["unit"]).area == Decimal("92.00")


def test_reg_3_stale_resident_edit_is_refused(clerk, estate):
    url = f"/admin/resident/edit/?id={estate['resident']}"
    form = open_form(clerk, url)
    with other_session() as other:
        other.get(Resident, estate["resident"]).phone = "13500135000"
        other.commit()
    before = snapshot()
    refused(submit(clerk, url, form, phone="13600136000"), STALE, before)
    assert fetch(Resident, estate["resident"]).phone == "13500135000"


def test_reg_1_forged_version_is_refused(clerk, estate):
    """A version field that is not a number, or missing, never saves and never crashes."""
    url = f"/admin/unit/edit/?id={estate['unit']}"
    for version in ("abc", "", "999999999999999999999999"):
        form = open_form(clerk, url)
        before = snapshot()
        refused(submit(clerk, url, form, version=version, area="77"), STALE, before)
    assert fetch(Building, estate["A"]).code == "A"
