"""Deadline clocks (REGULATIONS §11): computed when a record is created, moved when its start
changes, met by the declared state or transition, and the record's ``due_at`` = its soonest
open clock; the duration is a setting; the "Overdue" screen and the on-time rate.

A throwaway workflow is bound to KeyCustody (tests/workflow_fixtures.py): its time limits stand
for the regulation rules named in each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from models import Department, KeyCustody, Staff, db
from models.calendar import CalendarOverride
from models.deadline import DeadlineClock
from tests.conftest import csrf_token, login
from tests.helpers import make_occupancy, make_resident, make_unit, valid_id
from tests.workflow_fixtures import add_staff, new_keys, signed_in, workflow_binder
from workflow import engine, settings
from workflow.deadlines import Deadline
from workflow.engine import T, Workflow

FRONT = {"manager", "cs_supervisor", "cs_clerk"}
SHANGHAI = timezone(timedelta(hours=8))
STATES = {"held": "Held", "out": "Out", "major": "Major", "returned": "Returned", "lost": "Lost"}


def timed(*deadlines: Deadline) -> Workflow:
    """Keys: out and back, returned (met), escalated to "major" by the sweep only, or lost (closed unmet)."""
    return Workflow("Timed keys", STATES, "held", [
        T("check_out", "held", "out", FRONT | {"engineering"}),
        T("check_in", "out", "held", FRONT | {"engineering"}),
        T("return_keys", ["held", "out", "major"], "returned", FRONT | {"engineering"}),
        T("report_lost", ["held", "out", "major"], "lost", FRONT),
        T("escalate", ["held", "out"], "major", system=True),
    ], deadlines=list(deadlines))


def handle(**kw: Any) -> Deadline:
    """CMP-SLA-2 shape: handled within 2 hours of registration, else escalated."""
    values = {"amount": 2, "unit": "hours", "met_by": {"returned"}, "escalate": "escalate"} | kw
    return Deadline("handle", "Handle in time", **values)


@pytest.fixture()
def bind(db_session: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with workflow_binder(monkeypatch) as binder:
        yield binder


@pytest.fixture()
def people(db_session: Any, staff_ids: dict[str, int]) -> dict[str, Staff]:
    return {role: db.session.get(Staff, sid) for role, sid in staff_ids.items()}


def clock(record: Any, name: str = "handle") -> DeadlineClock:
    db.session.expire_all()
    return db.session.scalar(sa.select(DeadlineClock).where(
        DeadlineClock.record_type == "key_custody", DeadlineClock.record_id == record.id, DeadlineClock.name == name))


def fresh(record: KeyCustody) -> KeyCustody:
    db.session.expire_all()
    return db.session.get(KeyCustody, record.id)


def fire(record: KeyCustody, name: str, who: Staff) -> None:
    engine.fire(fresh(record), name, who)


# --- computed on create -----------------------------------------------------------------------------
@pytest.mark.parametrize(("rule", "amount", "unit", "delta"), [
    ("HLP-2", 5, "minutes", timedelta(minutes=5)),
    ("CMP-SLA-2", 2, "hours", timedelta(hours=2)),
    ("VIS-1", 3, "days", timedelta(days=3)),  # Asia/Shanghai has no DST: 3 local days = 72 hours
])
def test_dl_deadline_computed_on_create(bind: Any, rule: str, amount: int, unit: str, delta: timedelta) -> None:
    bind(timed(handle(amount=amount, unit=unit)))
    keys = new_keys()
    c = clock(keys)
    assert c.start_at == fresh(keys).created_at
    assert c.due_at == c.start_at + delta, rule
    assert (c.is_open, c.amount, c.unit, c.met_at) == (True, amount, unit, None)
    assert fresh(keys).due_at == c.due_at  # what "My work" sorts by


def test_dl_working_days_follow_the_holiday_calendar_ren_2(bind: Any) -> None:
    """REN-2: 3 working days from Friday 26 Sep 2025; Sunday 28 Sep is a make-up working day (调休)."""
    bind(timed(Deadline("review", "Engineering review", start="deposited_at", amount=3, unit="working_days",
                        met_by={"returned"})))
    keys = new_keys(deposited_at=datetime(2025, 9, 26, 10, 0, tzinfo=SHANGHAI))
    c = clock(keys, "review")
    assert c.due_at == datetime(2025, 9, 30, 23, 59, 59, 999999, tzinfo=SHANGHAI).astimezone(UTC)
    assert c.computed_at is not None  # not provisional: 2025 has holiday data


def test_dl_working_days_site_calendar(bind: Any) -> None:
    """REN-7: a site's own day off counts for records of that site only."""
    bind(timed(Deadline("review", "Inspection", start="deposited_at", amount=3, unit="working_days",
                        met_by={"returned"}, site="unit.building.estate_id")))
    keys = new_keys(deposited_at=datetime(2025, 9, 26, 10, 0, tzinfo=SHANGHAI))
    estate_id = fresh(keys).unit.building.estate_id
    db.session.add(CalendarOverride(estate_id=estate_id, day=datetime(2025, 9, 29).date(), kind="off",
                                    reason="停电检修"))
    db.session.commit()
    later = new_keys(deposited_at=datetime(2025, 9, 26, 10, 0, tzinfo=SHANGHAI))
    assert clock(later, "review").site_id == estate_id
    assert clock(later, "review").due_at == datetime(2025, 10, 9, 23, 59, 59, 999999, tzinfo=SHANGHAI).astimezone(UTC)


def test_dl_year_without_holiday_data_is_provisional_not_refused(bind: Any) -> None:
    """§11: a working-day limit in a year nobody has the calendar for is estimated (weekdays), marked
    provisional, and the desk can still register the record."""
    bind(timed(Deadline("review", "Review", start="deposited_at", amount=2, unit="working_days",
                        met_by={"returned"})))
    keys = new_keys(deposited_at=datetime(2030, 3, 1, 9, 0, tzinfo=SHANGHAI))  # a Friday
    c = clock(keys, "review")
    assert c.computed_at is None
    assert c.due_at == datetime(2030, 3, 5, 23, 59, 59, 999999, tzinfo=SHANGHAI).astimezone(UTC)


def test_dl_created_through_the_form_gets_its_clock(bind: Any, login_as: Any) -> None:
    """The session hook, not the view, starts the clock: the plain create form is enough."""
    bind(timed(handle()))
    unit = make_unit()
    owner = make_resident(id_number=valid_id(serial=7))
    make_occupancy(unit, owner)
    db.session.commit()
    clerk = login_as("cs_clerk")
    response = clerk.post("/admin/key_custody/new/", data={
        "csrf_token": csrf_token(clerk), "unit": unit.id, "resident": owner.id, "tag_no": "K-F1",
        "description": "入户门钥匙", "key_count": "1"})
    assert response.status_code == 302, response.get_data(as_text=True)
    keys = db.session.scalar(sa.select(KeyCustody).where(KeyCustody.tag_no == "K-F1"))
    c = clock(keys)
    assert (c.start_at, c.due_at) == (keys.created_at, keys.created_at + timedelta(hours=2))
    assert keys.due_at == c.due_at
    assert c.responsible_id == keys.created_by_id


# --- recomputed, met, soonest ---------------------------------------------------------------------------
def test_dl_recomputed_when_start_field_changes(bind: Any) -> None:
    bind(timed(handle(start="deposited_at", amount=3, unit="days")))
    keys = new_keys(deposited_at=datetime(2026, 11, 2, 9, 0, tzinfo=SHANGHAI))
    assert clock(keys).due_at == datetime(2026, 11, 5, 9, 0, tzinfo=SHANGHAI)
    keys = fresh(keys)
    keys.deposited_at = datetime(2026, 11, 10, 15, 30, tzinfo=SHANGHAI)  # a corrected date, any path
    db.session.commit()
    c = clock(keys)
    assert (c.start_at, c.due_at) == (datetime(2026, 11, 10, 15, 30, tzinfo=SHANGHAI),
                                      datetime(2026, 11, 13, 15, 30, tzinfo=SHANGHAI))
    assert fresh(keys).due_at == c.due_at


def test_dl_met_by_declared_state(bind: Any, people: dict[str, Staff]) -> None:
    bind(timed(handle()))
    keys = new_keys()
    fire(keys, "check_out", people["cs_clerk"])
    assert clock(keys).is_open  # "out" does not meet it
    fire(keys, "return_keys", people["cs_clerk"])
    c, keys = clock(keys), fresh(keys)
    assert (c.is_open, c.met_at, c.cancelled_at) == (False, keys.updated_at, None)
    assert c.on_time and c.breached_at is None
    assert keys.due_at is None  # no open clock left


def test_dl_met_by_declared_transition(bind: Any, people: dict[str, Staff]) -> None:
    """A limit met by a step rather than a state (e.g. CMP-4: dispatched within 15 minutes)."""
    bind(timed(Deadline("dispatch", "Dispatch", amount=15, unit="minutes", met_by={"check_out"})))
    keys = new_keys()
    fire(keys, "check_out", people["cs_clerk"])
    assert clock(keys, "dispatch").met_at is not None


def test_dl_state_start_clock_restarts_each_time(bind: Any, people: dict[str, Staff]) -> None:
    """A limit counted from entering a state (VIS-1: visit within 3 days after "handled")."""
    bind(timed(Deadline("back", "Back in the cabinet", start="state:out", amount=4, unit="hours",
                        met_by={"check_in"})))
    keys = new_keys()
    assert clock(keys, "back") is None  # not out yet
    fire(keys, "check_out", people["cs_clerk"])
    first = clock(keys, "back")
    first_id, first_start = first.id, first.start_at
    assert first_start == fresh(keys).updated_at and first.due_at == first_start + timedelta(hours=4)
    fire(keys, "check_in", people["cs_clerk"])
    assert clock(keys, "back").met_at is not None
    fire(keys, "check_out", people["cs_clerk"])
    again = clock(keys, "back")
    assert again.id == first_id and again.is_open and again.met_at is None
    assert again.start_at > first_start  # a new round from the new check-out


def test_dl_record_due_at_is_the_soonest_open_clock(bind: Any, people: dict[str, Staff]) -> None:
    bind(timed(handle(), Deadline("answer", "Answer the resident", amount=2, unit="days", met_by={"out"})))
    keys = new_keys()
    assert fresh(keys).due_at == clock(keys, "handle").due_at  # 2 hours before 2 days
    keys = fresh(keys)
    keys.deposited_at = keys.created_at - timedelta(days=1)  # an unrelated edit changes nothing
    db.session.commit()
    assert fresh(keys).due_at == clock(keys, "handle").due_at
    fire(keys, "check_out", people["cs_clerk"])  # meets "answer"
    assert fresh(keys).due_at == clock(keys, "handle").due_at
    fire(keys, "return_keys", people["cs_clerk"])
    assert fresh(keys).due_at is None


def test_dl_closed_unmet_is_cancelled_not_counted(bind: Any, people: dict[str, Staff]) -> None:
    bind(timed(handle()))
    keys = new_keys()
    engine.fire(fresh(keys), "report_lost", people["cs_clerk"])
    c = clock(keys)
    assert (c.is_open, c.met_at, c.cancelled_at is not None) == (False, None, True)
    assert fresh(keys).due_at is None


# --- declaration and setting ------------------------------------------------------------------------------
def test_dl_duration_is_a_declared_setting(bind: Any, people: dict[str, Staff], login_as: Any) -> None:
    bind(timed(handle()))
    spec = settings.SPECS["key_custody.deadline.handle"]
    assert (spec.kind, spec.default) == ("hours", 2)
    body = login_as("admin").get("/admin/settings/").get_data(as_text=True)
    assert "key_custody.deadline.handle" in body  # editable on the settings screen
    settings.change("key_custody.deadline.handle", "5", people["admin"])
    db.session.commit()
    c = clock(new_keys())
    assert (c.amount, c.due_at - c.start_at) == (5, timedelta(hours=5))


def test_dl_months_unit_is_a_whole_number_setting_cmp_sla_4(bind: Any) -> None:
    bind(timed(Deadline("major", "Unresolved one month", amount=1, unit="months", met_by={"returned"},
                        escalate="escalate")))
    assert settings.SPECS["key_custody.deadline.major"].kind == "integer"
    keys = new_keys(deposited_at=datetime(2026, 1, 31, 10, 0, tzinfo=SHANGHAI))
    c = clock(keys, "major")
    assert c.due_at.astimezone(SHANGHAI).month == c.start_at.astimezone(SHANGHAI).month % 12 + 1


@pytest.mark.parametrize("bad", [
    {"unit": "weeks"}, {"met_by": {"nowhere"}}, {"met_by": set()}, {"escalate": "return_keys"},
    {"start": "state:nowhere"}, {"start": "no_such_column"}, {"remind_before": 9}, {"amount": 0},
    {"department": "kitchen"}, {"watch": ("no_such_column",)}, {"until": "no_such_column"},
    {"until": "deposited_at", "unit": "working_days"},
])
def test_dl_bad_declaration_refused_at_definition(bind: Any, bad: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        bind(timed(handle(**bad)))


# --- conditional clocks and the record's own due time ------------------------------------------------------
def _major(**kw: Any) -> Deadline:
    """CMP-SLA-1 shape: runs only while the record is "major" (here: three keys or more)."""
    return handle(when=lambda k: (k.key_count or 0) >= 3, watch=("key_count",), **kw)


def _set(record: KeyCustody, **values: Any) -> KeyCustody:
    record = fresh(record)
    for name, value in values.items():
        setattr(record, name, value)
    db.session.commit()
    return record


def test_dl_when_clock_runs_only_while_it_applies_cmp_sla_1(bind: Any) -> None:
    """A clock declared ``when=`` starts when its condition starts to hold (an escalation to major),
    is cancelled when it stops holding, and starts a new round when it holds again."""
    bind(timed(_major()))
    keys = new_keys(key_count=1)
    assert clock(keys) is None and fresh(keys).due_at is None
    _set(keys, key_count=3)
    first = clock(keys)
    assert first.is_open and first.start_at == fresh(keys).created_at and fresh(keys).due_at == first.due_at
    _set(keys, key_count=2)
    assert (clock(keys).is_open, clock(keys).cancelled_at is not None) == (False, True)
    assert fresh(keys).due_at is None
    _set(keys, key_count=5)
    again = clock(keys)
    assert again.is_open and again.cancelled_at is None and fresh(keys).due_at == again.due_at


def test_dl_when_clock_met_or_closed_is_not_revived_cmp_sla_1(bind: Any, people: dict[str, Staff]) -> None:
    bind(timed(_major()))
    keys = new_keys(key_count=3)
    fire(keys, "return_keys", people["cs_clerk"])
    met = clock(keys).met_at
    _set(keys, key_count=1)
    _set(keys, key_count=4)
    assert (clock(keys).is_open, clock(keys).met_at) == (False, met)
    assert fresh(keys).due_at is None


def test_dl_until_field_is_the_due_time_cmp_sla_3(bind: Any) -> None:
    """CMP-SLA-3: handled within 2 days, or by the resident's reasonable deadline when one is given."""
    bind(timed(handle(amount=2, unit="days", until="deposited_at")))
    asked = datetime(2031, 5, 6, 18, 0, tzinfo=SHANGHAI)
    keys = new_keys(deposited_at=asked)
    assert clock(keys).due_at == asked.astimezone(UTC) and fresh(keys).due_at == asked.astimezone(UTC)
    later = datetime(2031, 5, 9, 12, 0, tzinfo=SHANGHAI)
    _set(keys, deposited_at=later)
    assert clock(keys).due_at == later.astimezone(UTC)
    assert clock(keys).is_open and clock(keys).start_at == fresh(keys).created_at


# --- the Overdue screen -------------------------------------------------------------------------------------
def test_dl_overdue_screen_per_department_and_on_time_rate_cmp_7(bind: Any, app: Any, login_as: Any) -> None:
    bind(timed(handle(start="deposited_at")))
    cs_head = add_staff("cshead", {"cs_clerk"}, department="cs", head=True)
    clerk = add_staff("csclerk", {"cs_clerk"}, department="cs")
    engineer = add_staff("eng1", {"engineering"}, department="engineering")
    past = datetime.now(UTC) - timedelta(days=1)
    with signed_in(clerk):
        late_cs = new_keys(deposited_at=past)
        met_late = new_keys(deposited_at=past)
        met_in_time = new_keys()
    with signed_in(engineer):
        late_eng = new_keys(deposited_at=past)
    fire(met_late, "return_keys", clerk)
    fire(met_in_time, "return_keys", clerk)
    assert clock(late_cs).department_id == clerk.department_id

    manager = login_as("manager").get("/admin/overdue/").get_data(as_text=True)
    assert 'id="overdue-department-cs-count">1<' in manager
    assert 'id="overdue-department-engineering-count">1<' in manager
    assert f'data-record-id="{late_cs.id}"' in manager and f'data-record-id="{late_eng.id}"' in manager
    assert f'data-record-id="{met_late.id}"' not in manager  # met, even if late
    rates = manager[manager.index('id="on-time-rates"'):]
    assert "Handle in time" in rates and ">50%<" in rates  # one of two met on time

    client = app.test_client()
    login(client, engineer.username)
    mine = client.get("/admin/overdue/").get_data(as_text=True)
    assert 'id="overdue-department-engineering-count">1<' in mine
    assert "overdue-department-cs" not in mine and f'data-record-id="{late_cs.id}"' not in mine
    assert 'id="on-time-rates-empty"' in mine  # engineering met nothing yet

    head = app.test_client()
    login(head, cs_head.username)
    assert f'data-record-id="{late_cs.id}"' in head.get("/admin/overdue/").get_data(as_text=True)
    assert login_as("admin").get("/admin/overdue/").status_code == 403  # admins decide nothing


def test_dl_fixed_department_is_responsible_ren_2(bind: Any) -> None:
    """A rule that names its department (REN-2: engineering reviews) lists it there, whoever registered."""
    bind(timed(handle(department="engineering")))
    clerk = add_staff("csclerk", {"cs_clerk"}, department="cs")
    with signed_in(clerk):
        keys = new_keys()
    c = clock(keys)
    engineering = db.session.scalar(sa.select(Department.id).where(Department.key == "engineering"))
    assert (c.department_id, c.responsible_id) == (engineering, clerk.id)


def test_dl_overdue_screen_query_count_constant(bind: Any, login_as: Any) -> None:
    """Indexed queries per list, records and people loaded per list: no N+1 as rows grow."""
    bind(timed(handle(start="deposited_at")))
    clerk = add_staff("csclerk", {"cs_clerk"}, department="cs")
    past = datetime.now(UTC) - timedelta(days=1)
    manager = login_as("manager")

    def statements() -> int:
        seen: list[str] = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        sa.event.listen(db.engine, "before_cursor_execute", listener)
        try:
            assert manager.get("/admin/overdue/").status_code == 200
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", listener)
        return len(seen)

    counts = []
    for more in (2, 10):  # overdue records, and as many met ones for the on-time rate
        with signed_in(clerk):
            for _ in range(more):
                new_keys(deposited_at=past)
                fire(new_keys(deposited_at=past), "return_keys", clerk)
        statements()  # warm-up
        counts.append(statements())
    assert counts[0] == counts[1]
