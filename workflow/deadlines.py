"""Deadlines: the declared time limits of a workflow record, kept as clocks (REGULATIONS §11).

A workflow declares ``deadlines=[Deadline(...)]``; each becomes a ``DeadlineClock`` per record.
The clock is written by a session hook, in the transaction of the change that starts, moves,
meets or stops it, whatever path made that change (engine, form, import, CLI); views do nothing.
The record's ``due_at`` is its soonest open clock, so "My work" and lists sort by it. The sweep
(``workflow.sweep``) reminds, tells and escalates; here only arithmetic and bookkeeping.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from flask import g, has_app_context
from flask_babel import lazy_gettext as _l
from sqlalchemy import event
from sqlalchemy.orm import Session

from models.base import current_actor_id, db, utcnow
from models.deadline import OPEN, DeadlineCalendarMark, DeadlineClock
from models.staff import DEPARTMENTS, Department, Staff
from workflow import calendar, settings
from workflow.audit import NOTES
from workflow.engine import WORKFLOWS, Workflow

# The setting kind that holds each unit's amount ("months" has none of its own: a whole number).
UNIT_KINDS = {"minutes": "minutes", "hours": "hours", "days": "days", "working_days": "working_days",
              "months": "integer"}
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
PLANS = "pm_deadline_plans"
CLOCK = DeadlineClock.__table__
BATCH = 500


@dataclass(frozen=True)
class Deadline:
    """One time limit. ``start``: "created_at", a datetime attribute of the record, or
    "state:<state>" (when the record entered that state). ``met_by``: states reached or transitions
    fired that meet it. ``escalate``: a system transition the sweep fires once it is overdue.
    ``remind_before``: an amount in the deadline's unit, or a timedelta. ``site``: attribute path
    to the estate id whose working calendar counts. The responsible person is the record's
    ``assignee_field`` or its creator; the department is ``department`` (a key), the record's
    ``department_field``, or the responsible person's. ``when``: a predicate on the record; the
    clock runs only while it holds (e.g. CMP-SLA-1 only for major complaints), re-checked whenever
    the state or a ``watch`` field changes: a clock that stops applying is cancelled, one that starts
    applying starts from ``start``. ``until``: a datetime attribute that, when filled, is the due time
    itself (e.g. the resident's reasonable deadline, CMP-SLA-3); not for working-day clocks."""

    name: str
    label: Any
    start: str = "created_at"
    amount: int = 1
    unit: str = "days"
    met_by: frozenset[str] | Any = frozenset()
    escalate: str | None = None
    remind_before: int | timedelta | None = None
    site: str | None = None
    department: str | None = None
    department_field: str = "department_id"
    assignee_field: str = "assignee_id"
    when: Callable[[Any], bool] | None = None
    watch: tuple[str, ...] = ()
    until: str | None = None

    def __post_init__(self) -> None:
        met = [self.met_by] if isinstance(self.met_by, str) else self.met_by
        object.__setattr__(self, "met_by", frozenset(met))
        object.__setattr__(self, "watch", (self.watch,) if isinstance(self.watch, str) else tuple(self.watch))

    @property
    def watched(self) -> tuple[str, ...]:
        return (*self.watch, self.until) if self.until else self.watch

    def applies(self, record: Any) -> bool:
        return self.when is None or bool(self.when(record))

    @property
    def start_state(self) -> str | None:
        return self.start[6:] if self.start.startswith("state:") else None

    def setting_key(self, wf: Workflow) -> str:
        return f"{wf.key}.deadline.{self.name}"

    def problems(self, wf: Workflow) -> list[str]:
        """What is wrong with this declaration on ``wf`` (checked with the workflow itself)."""
        out, names = [], [d.name for d in wf.deadlines]
        where = f"deadline {self.name!r}"
        if not NAME.match(self.name) or names.count(self.name) > 1:
            out.append(f"{where}: the name must be unique, lower case, letters/digits/_")
        if self.unit not in UNIT_KINDS:
            out.append(f"{where}: unit must be one of {', '.join(UNIT_KINDS)}")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount < self._minimum():
            out.append(f"{where}: amount must be a whole number >= {self._minimum()}")
        if self.start_state is not None and self.start_state not in wf.states:
            out.append(f"{where}: start state {self.start_state!r} is not declared")
        elif self.start_state is None and wf.model is not None and not hasattr(wf.model, self.start):
            out.append(f"{where}: the record has no attribute {self.start!r}")
        transitions = {t.name for t in wf.transitions}
        if not self.met_by:
            out.append(f"{where}: met_by names no state or transition")
        out += [f"{where}: met_by {m!r} is neither a state nor a transition" for m in sorted(self.met_by)
                if m not in wf.states and m not in transitions]
        if self.escalate is not None:
            t = wf.transition(self.escalate)
            if t is None or not t.system:
                out.append(f"{where}: escalate must name a system transition")
        if isinstance(self.remind_before, int) and not 0 < self.remind_before < self.amount:
            out.append(f"{where}: remind_before must be between 0 and the amount")
        if self.until is not None and self.unit == "working_days":
            out.append(f"{where}: until cannot be used with working days (a calendar change recomputes them)")
        out += [f"{where}: the record has no attribute {f!r}" for f in self.watched
                if wf.model is not None and not hasattr(wf.model, f)]
        if self.department is not None and self.department not in DEPARTMENTS:
            out.append(f"{where}: unknown department {self.department!r}")
        return out

    def _minimum(self) -> int:
        return 0 if self.unit == "working_days" else 1  # 0 working days: by the end of the same day

    def declare(self, wf: Workflow) -> None:
        label = _l("%(d)s (months)", d=self.label) if self.unit == "months" else self.label
        settings.declare(settings.SettingSpec(self.setting_key(wf), label, UNIT_KINDS[self.unit], self.amount,
                                              minimum=self._minimum(), group=wf.label))


def deadline_of(record_type: str, name: str) -> tuple[Workflow, Deadline] | None:
    wf = WORKFLOWS.get(record_type)
    found = next((d for d in wf.deadlines if d.name == name), None) if wf is not None else None
    return (wf, found) if found is not None else None


# --- arithmetic --------------------------------------------------------------------------------
@dataclass
class Schedule:
    amount: int
    due_at: datetime
    remind_at: datetime | None
    provisional: bool  # the year's working calendar is unknown: weekdays only, recomputed later


def schedule(d: Deadline, start: datetime, amount: int, site_id: int | None) -> Schedule:
    """When a clock started at ``start`` is due, and when to remind."""
    try:
        due, provisional = calendar.add(start, amount, d.unit, site_id), False
    except calendar.NoHolidayData:
        # Refusing would stop the desk from registering the record; the estimate counts Monday to
        # Friday and stays provisional until an administrator confirms that year's calendar.
        due, provisional = _weekdays(start, amount), True
    remind = None
    if isinstance(d.remind_before, timedelta):
        remind = due - d.remind_before if due - d.remind_before > start else None
    elif d.remind_before and amount > d.remind_before:
        try:
            remind = calendar.add(start, amount - d.remind_before, d.unit, site_id)
        except calendar.NoHolidayData:
            remind = _weekdays(start, amount - d.remind_before)
    return Schedule(amount, due, remind, provisional)


def _weekdays(start: datetime, n: int) -> datetime:
    zone = calendar.app_zone()
    day = start.astimezone(zone).date()
    while n > 0:
        day += timedelta(days=1)
        n -= day.weekday() < 5
    return datetime.combine(day, time.max, tzinfo=zone).astimezone(UTC)


def next_action(v: dict[str, Any], d: Deadline | None) -> datetime | None:
    """The sweep's next moment of work for a clock: remind, then notify/escalate at due."""
    if not v["is_open"] or d is None:
        return None
    if v.get("remind_at") and v.get("reminded_at") is None and v.get("overdue_notified_at") is None:
        return v["remind_at"]
    if v.get("overdue_notified_at") is None or (d.escalate and v.get("escalated_at") is None):
        return v["due_at"]
    return None


def shifted(new: Schedule, now: datetime) -> dict[str, Any]:
    """Columns to write when a clock's due time moves; notices about a due time no longer
    passed are forgotten so they come again. An escalation that happened stays."""
    out: dict[str, Any] = {"due_at": new.due_at, "remind_at": new.remind_at, "amount": new.amount,
                           "computed_at": None if new.provisional else now}
    if new.due_at > now:
        out.update(breached_at=None, overdue_notified_at=None)
    if new.remind_at is None or new.remind_at > now:
        out["reminded_at"] = None
    return out


# --- the session hook ----------------------------------------------------------------------------
@event.listens_for(Session, "before_flush")
def _plan_clocks(session: Session, flush_context: Any, instances: Any) -> None:
    """Work out, before the record is written, which clocks start, move, are met or stop, and
    the record's ``due_at``; the rows are written after the flush, when new records have ids."""
    now, cache = utcnow(), {}
    plans = [_plan(session, obj, obj.workflow, now, cache) for obj in (*session.new, *session.dirty)
             if isinstance(getattr(type(obj), "workflow", None), Workflow) and obj.workflow.deadlines]
    session.info[PLANS] = [p for p in plans if p is not None]


@event.listens_for(Session, "after_flush")
def _write_clocks(session: Session, flush_context: Any) -> None:
    for wf, obj, changes in session.info.pop(PLANS, []):
        connection = session.connection()
        inserts = [{**values, "record_type": wf.key, "record_id": obj.id}
                   for row_id, values in changes if row_id is None]
        if inserts:
            connection.execute(sa.insert(CLOCK), inserts)
        for row_id, values in changes:
            if row_id is not None:
                connection.execute(sa.update(CLOCK).where(CLOCK.c.id == row_id).values(**values))


@event.listens_for(Session, "after_rollback")
def _drop_plans(session: Session) -> None:
    session.info.pop(PLANS, None)


def _changed(obj: Any, attr: str) -> bool:
    state = sa.inspect(obj)
    return attr in state.attrs.keys() and state.attrs[attr].history.has_changes()


def _plan(session: Session, obj: Any, wf: Workflow, now: datetime, cache: dict) -> tuple | None:
    new = obj in session.new
    if new and obj.created_at is None:
        obj.created_at = now  # the column default would come only at INSERT, after this hook
    state = obj.state or wf.initial
    entered = new or _changed(obj, "state")
    fired = set() if new else {n["transition"] for n in session.info.get(NOTES, {}).get(id(obj), (0, []))[1]
                               if n["action"] == "transition"}
    moved_start = {d.name for d in wf.deadlines if d.start_state is None and (new or _changed(obj, d.start))}
    people = any(_changed(obj, f) for d in wf.deadlines for f in (d.department_field, d.assignee_field))
    watched = {d.name for d in wf.deadlines if not new and any(_changed(obj, f) for f in d.watched)}
    if not (new or entered or fired or moved_start or people or watched or _changed(obj, "deleted_at")):
        return None
    at = obj.updated_at if not new and _changed(obj, "updated_at") and obj.updated_at else now
    existing = {} if new else {r.name: dict(r._mapping) for r in session.execute(
        sa.select(CLOCK).where(CLOCK.c.record_type == wf.key, CLOCK.c.record_id == obj.id))}
    closing = obj.deleted_at is not None or (entered and state in wf.final_states)
    changes, merged = [], []
    for d in wf.deadlines:
        row = existing.get(d.name)
        values = _clock_change(session, obj, wf, d, row, state=state, entered=entered, fired=fired,
                               moved=d.name in moved_start, closing=closing, at=at, now=now, cache=cache,
                               rechecked=entered or d.name in watched)
        if values is None and people and row is not None and row["is_open"]:
            values = _people(session, obj, d, row, cache)  # the record names someone else now
        if values is None and row is not None and row["is_open"] and entered \
                and next_action(row, d) != row["next_action_at"]:
            values = {}  # e.g. back in a state the escalation applies to: into the sweep's queue again
        full = {**(row or {}), **(values or {})}
        if values is not None:
            values["next_action_at"] = next_action(full, d)
            changes.append((row["id"] if row else None, values))
        if full:
            merged.append(full)
    due = min((m["due_at"] for m in merged if m["is_open"]), default=None)
    if obj.due_at != due:
        obj.due_at = due
    return (wf, obj, changes) if changes else None


def _clock_change(session: Session, obj: Any, wf: Workflow, d: Deadline, row: dict | None, *, state: str,
                  entered: bool, fired: set[str], moved: bool, closing: bool, at: datetime, now: datetime,
                  cache: dict, rechecked: bool = False) -> dict[str, Any] | None:
    """The columns to write for one clock (all of them for a new clock), or None."""
    is_open = bool(row and row["is_open"])
    if is_open and ((entered and state in d.met_by) or fired & d.met_by):
        late = at > row["due_at"]
        return {"is_open": False, "met_at": at, "breached_at": row["breached_at"] or (at if late else None)}
    if is_open and closing:
        return {"is_open": False, "cancelled_at": at}
    if closing or (entered and state in d.met_by):
        return None
    if not d.applies(obj):
        return {"is_open": False, "cancelled_at": at} if is_open else None
    if rechecked and row is not None and not is_open and d.start_state is None and row["met_at"] is None \
            and obj.deleted_at is None and state not in wf.final_states and state not in d.met_by:
        start = _start_value(obj, d.start)  # stopped applying earlier, applies again: a new round
        return _fresh(session, obj, wf, d, start, now, cache) if start is not None else None
    if is_open and d.until and _changed(obj, d.until):
        return _until_values(obj, d, row, now)
    if d.start_state is not None:
        if not (entered and state == d.start_state):
            return None
        start = obj.created_at if sa.inspect(obj).pending else at
        return _fresh(session, obj, wf, d, start, now, cache)  # (re-)entered: a new round
    start = _start_value(obj, d.start)
    if row is None:
        return _fresh(session, obj, wf, d, start, now, cache) if start is not None else None
    if not is_open:
        return None
    if moved:
        if start is None:
            return {"is_open": False, "cancelled_at": at}
        return {"start_at": start, **moved_values(row, d, start, now, obj)}
    return None


def moved_values(row: dict[str, Any], d: Deadline, start: datetime, now: datetime,
                 obj: Any = None) -> dict[str, Any]:
    plan = schedule(d, start, row["amount"], row["site_id"])
    explicit = getattr(obj, d.until, None) if obj is not None and d.until else None
    if explicit is not None:
        plan = Schedule(plan.amount, explicit, None, False)
    return shifted(plan, now)


def _until_values(obj: Any, d: Deadline, row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The record's own due time (``until``) was filled, changed or cleared."""
    return moved_values(row, d, row["start_at"], now, obj)


def _fresh(session: Session, obj: Any, wf: Workflow, d: Deadline, start: datetime, now: datetime,
           cache: dict) -> dict[str, Any]:
    site = _path(obj, d.site) if d.site else None
    plan = schedule(d, start, settings.value(d.setting_key(wf)), site)
    explicit = getattr(obj, d.until, None) if d.until else None
    if explicit is not None:
        plan = Schedule(plan.amount, explicit, None, False)
    department, responsible = _responsibility(session, obj, d, cache)
    return {"name": d.name, "unit": d.unit, "amount": plan.amount, "start_at": start, "due_at": plan.due_at,
            "remind_at": plan.remind_at, "is_open": True, "met_at": None, "cancelled_at": None,
            "breached_at": None, "escalated_at": None, "reminded_at": None, "overdue_notified_at": None,
            "computed_at": None if plan.provisional else now, "site_id": site, "department_id": department,
            "responsible_id": responsible}


def _people(session: Session, obj: Any, d: Deadline, row: dict[str, Any], cache: dict) -> dict[str, Any] | None:
    department, responsible = _responsibility(session, obj, d, cache)
    if (department, responsible) == (row["department_id"], row["responsible_id"]):
        return None
    return {"department_id": department, "responsible_id": responsible}


def _responsibility(session: Session, obj: Any, d: Deadline, cache: dict) -> tuple[int | None, int | None]:
    responsible = getattr(obj, d.assignee_field, None) or obj.created_by_id or current_actor_id()
    if d.department is not None:
        key = ("department", d.department)
        if key not in cache:
            cache[key] = session.execute(sa.select(Department.id).where(Department.key == d.department)).scalar()
        return cache[key], responsible
    department = getattr(obj, d.department_field, None)
    if department is None and responsible is not None:
        key = ("staff", responsible)
        if key not in cache:
            cache[key] = session.execute(sa.select(Staff.department_id).where(Staff.id == responsible)).scalar()
        department = cache[key]
    return department, responsible


def _start_value(obj: Any, attr: str) -> datetime | None:
    value = getattr(obj, attr, None)
    column = sa.inspect(type(obj)).columns.get(attr)
    default = getattr(column, "default", None)
    if value is None and default is not None and sa.inspect(obj).pending:  # a default comes only at INSERT
        value = default.arg(None) if default.is_callable else default.arg
        setattr(obj, attr, value)
    return value


def _path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


# --- recomputing after a calendar change -------------------------------------------------------------
def calendar_version() -> str:
    """Every site's calendar at once: row counts catch a removal, the newest change an edit."""
    from models.calendar import CalendarOverride, CalendarYear

    parts = []
    for model in (CalendarOverride, CalendarYear):
        count, newest = db.session.execute(sa.select(sa.func.count(), sa.func.max(model.updated_at))).one()
        parts += [str(count), newest.isoformat() if newest else "-"]
    return "|".join(parts)


def recompute_if_calendar_changed(now: datetime | None = None) -> int:
    """The sweep's check: recompute open working-day clocks when the calendar changed since."""
    version = calendar_version()
    mark = db.session.get(DeadlineCalendarMark, 1)
    if mark is not None and mark.version == version:
        db.session.rollback()  # end the read; nothing to write
        return 0
    count = recompute_open(now=now)
    now = now or utcnow()
    done = db.session.execute(sa.update(DeadlineCalendarMark).where(DeadlineCalendarMark.id == 1)
                              .values(version=version, checked_at=now))
    if done.rowcount == 0:
        try:
            db.session.execute(sa.insert(DeadlineCalendarMark).values(id=1, version=version, checked_at=now))
        except sa.exc.IntegrityError:  # another sweep wrote the mark first: same calendar, same result
            db.session.rollback()
            return count
    db.session.commit()
    return count


def recompute_open(site_id: int | None = None, *, now: datetime | None = None, batch: int = BATCH) -> int:
    """Recompute the due times of open working-day clocks (one site's, or all) from their start;
    one short transaction per batch. Returns how many clocks moved."""
    c, now, last, count = DeadlineClock, now or utcnow(), 0, 0
    if has_app_context():
        g.pop(calendar.CACHE_KEY, None)  # calendars built before the change this is about
    while True:
        query = sa.select(CLOCK).where(c.unit == "working_days", c.is_open == OPEN, c.id > last)
        if site_id is not None:
            query = query.where(c.site_id == site_id)
        rows = [dict(r._mapping) for r in db.session.execute(query.order_by(c.id).limit(batch))]
        if not rows:
            return count
        last = rows[-1]["id"]
        moves, touched = [], {}
        for row in rows:
            found = deadline_of(row["record_type"], row["name"])
            if found is None:
                continue
            values = moved_values(row, found[1], row["start_at"], now)
            if values["due_at"] == row["due_at"] and values["remind_at"] == row["remind_at"] \
                    and (values["computed_at"] is None) == (row["computed_at"] is None):
                continue
            values["next_action_at"] = next_action({**row, **values}, found[1])
            moves.append((row["id"], values))
            touched.setdefault(row["record_type"], set()).add(row["record_id"])
        for record_type, ids in touched.items():  # records before clocks: a person's change locks that way
            model = WORKFLOWS[record_type].model
            db.session.execute(sa.select(model.id).where(model.id.in_(ids)).order_by(model.id).with_for_update())
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row_id, values in moves:  # one executemany per set of columns, not a statement per clock
            groups.setdefault(tuple(sorted(values)), []).append({"clock_id": row_id, **values})
        for columns, params in groups.items():
            db.session.execute(sa.update(CLOCK).where(CLOCK.c.id == sa.bindparam("clock_id"))
                               .values({name: sa.bindparam(name) for name in columns}), params)
        for record_type, ids in touched.items():
            refresh_due(record_type, ids)
        count += len(moves)
        db.session.commit()


def refresh_due(record_type: str, ids: set[int]) -> None:
    """The records' ``due_at`` = their soonest open clock; derived, so no version bump or audit row.
    (Grouped by record on the (record_type, record_id) key: a correlated MIN() lets SQLite walk the
    (is_open, due_at) index of every open clock instead.)"""
    table = WORKFLOWS[record_type].model.__table__
    soonest = dict(db.session.execute(
        sa.select(CLOCK.c.record_id, sa.func.min(CLOCK.c.due_at))
        .where(CLOCK.c.record_type == record_type, CLOCK.c.record_id.in_(ids), CLOCK.c.is_open == OPEN)
        .group_by(CLOCK.c.record_id)).all())
    update = sa.update(table).where(table.c.id == sa.bindparam("record_id")).values(due_at=sa.bindparam("due"))
    db.session.execute(update, [{"record_id": i, "due": soonest.get(i)} for i in sorted(ids)])
