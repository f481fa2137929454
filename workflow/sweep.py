"""The sweep: reminders, overdue notices and escalations of deadline clocks (REGULATIONS §11).

``flask --app app sweep`` (cron/systemd timer) or the in-process thread (SWEEP_INTERVAL_SECONDS)
runs ``sweep()``. It reads only clocks whose ``next_action_at`` has come (one index range), in
batches. Every action is claimed by a conditional UPDATE on the clock in the transaction of its
effect (``... WHERE reminded_at IS NULL``: rowcount 1 = ours), so runs may overlap or repeat and
nothing is sent or fired twice. Escalations go through ``engine.fire(record, name, None)``: a
system transition, checked and audited like any other, with "sweep" as the actor. Transactions
stay small: a batch of reminders or notices, or a group of escalations (tens of milliseconds).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import with_appcontext
from flask_babel import force_locale
from flask_babel import gettext as _

from models import job_run
from models.base import db, utcnow
from models.deadline import OPEN, DeadlineClock
from models.staff import Staff
from workflow import deadlines, engine
from workflow.audit import set_actor
from workflow.deadlines import CLOCK, Deadline
from workflow.notify import notify

BATCH = 200
ESCALATION_GROUP = 20  # escalations per transaction: a few dozen milliseconds of writing
# Daily passes a regulation registers (e.g. REN-11's patrol day of each site under works): each makes
# the day's records (and so their clocks) before the clocks are read; each must be idempotent.
DAILY: dict[str, Callable[[datetime], int]] = {}


def register_daily(name: str, make: Callable[[datetime], int]) -> None:
    DAILY[name] = make


@dataclass
class SweepReport:
    now: datetime
    reminders: int = 0  # clocks reminded
    notices: int = 0  # clocks whose overdue notice went out
    escalations: int = 0  # escalation transitions fired (or requested, when they need sign-off)
    waiting: int = 0  # escalation not possible yet (approval running, record busy): tried next run
    skipped: int = 0  # escalation not possible in the record's state: nothing until it changes
    recomputed: int = 0  # working-day clocks moved after a calendar change
    opened: int = 0  # records made by the daily passes (e.g. today's patrol of each renovation site)
    messages: int = 0  # notices sent to people
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"reminders {self.reminders}, overdue notices {self.notices}, escalations {self.escalations}, "
                f"waiting {self.waiting}, not applicable {self.skipped}, recomputed {self.recomputed}, "
                f"opened {self.opened}, "
                f"messages {self.messages}, {self.seconds:.2f} s")


class _People:
    """Staff looked up once per run: responsible persons and department heads."""

    def __init__(self) -> None:
        self.staff: dict[int, Staff | None] = {}
        self.heads: dict[int, list[Staff]] = {}

    def person(self, staff_id: int | None) -> list[Staff]:
        if staff_id is None:
            return []
        if staff_id not in self.staff:
            self.staff[staff_id] = db.session.get(Staff, staff_id)
        found = self.staff[staff_id]
        return [found] if found is not None and found.is_active else []

    def department_heads(self, department_id: int | None) -> list[Staff]:
        if department_id is None:
            return []
        if department_id not in self.heads:
            self.heads[department_id] = list(db.session.scalars(sa.select(Staff).where(
                Staff.department_id == department_id, Staff.department_head.is_(True),
                Staff.active.is_(True)).order_by(Staff.id)))
        return self.heads[department_id]

    def refresh(self) -> None:
        """Looked up again for each page: a deactivated account or a new head counts from the next."""
        self.staff.clear()
        self.heads.clear()


def sweep(now: datetime | None = None, *, batch: int = BATCH) -> SweepReport:
    """One run over every clock whose next action has come. Safe to run concurrently and again."""
    started = time.perf_counter()
    now = now or utcnow()
    report = SweepReport(now)
    session = db.session()
    set_actor(session, None, "sweep")
    # Recipients stay loaded across the run's many small commits (records are re-read with a lock).
    expire, session.expire_on_commit = session.expire_on_commit, False
    try:
        report.recomputed = deadlines.recompute_if_calendar_changed(now)
        for make in DAILY.values():
            report.opened += make(now)
        people = _People()
        for rows in _due(now, batch):
            _remind([r for r in rows if r.due_at > now], now, report, people)
            _overdue([r for r in rows if r.due_at <= now], now, report, people)
            people.refresh()
    finally:
        db.session.rollback()  # no read transaction is left open
        session.expire_on_commit = expire
    report.seconds = time.perf_counter() - started
    return report


def _due(now: datetime, batch: int) -> Iterator[list[Any]]:
    """Pages of due clocks by (next_action_at, id): rows a run leaves due (waiting) are not re-read."""
    c, cursor = DeadlineClock, None
    columns = (c.id, c.record_type, c.record_id, c.name, c.due_at, c.remind_at, c.reminded_at,
               c.escalated_at, c.overdue_notified_at, c.next_action_at, c.department_id, c.responsible_id)
    while True:
        query = sa.select(*columns).where(c.next_action_at <= now)  # NULL once closed: the index alone
        if cursor is not None:
            query = query.where(c.next_action_at >= cursor[0], sa.or_(
                c.next_action_at > cursor[0], sa.and_(c.next_action_at == cursor[0], c.id > cursor[1])))
        rows = db.session.execute(query.order_by(c.next_action_at, c.id).limit(batch)).all()
        db.session.rollback()  # SQLite: no read snapshot held into the next write
        if not rows:
            return
        cursor = (rows[-1].next_action_at, rows[-1].id)
        yield rows


def _what(row: Any) -> tuple[engine.Workflow, Deadline] | None:
    return deadlines.deadline_of(row.record_type, row.name)


def _lock(ids: list[int]) -> list[int]:
    """PostgreSQL: lock a batch's clocks in id order, skipping rows another run is handling (two
    runs never wait on each other in opposite orders). SQLite has one writer at a time anyway."""
    if db.session.get_bind().dialect.name != "postgresql" or len(ids) < 2:
        return ids
    return list(db.session.scalars(sa.select(CLOCK.c.id).where(CLOCK.c.id.in_(ids)).order_by(CLOCK.c.id)
                                   .with_for_update(skip_locked=True)))


def _forget(row: Any) -> None:
    """A clock whose declaration is gone, or with nothing left to do: out of the queue."""
    db.session.execute(sa.update(CLOCK).where(CLOCK.c.id == row.id, CLOCK.c.next_action_at == row.next_action_at)
                       .values(next_action_at=None))


def _remind(rows: list[Any], now: datetime, report: SweepReport, people: _People) -> None:
    """Reminders of a batch, one transaction: claim, notice, commit."""
    if not rows:
        return
    claimed = set(db.session.execute(
        sa.update(CLOCK).where(CLOCK.c.id.in_(_lock([r.id for r in rows])), CLOCK.c.reminded_at.is_(None),
                               CLOCK.c.overdue_notified_at.is_(None), CLOCK.c.is_open == OPEN,
                               CLOCK.c.remind_at <= now)
        .values(reminded_at=now, next_action_at=CLOCK.c.due_at).returning(CLOCK.c.id)).scalars())
    outbox = []
    for row in rows:
        what = _what(row)
        if row.id not in claimed or what is None:
            continue
        outbox += [(person, "reminder", row, what)
                   for person in people.person(row.responsible_id) or people.department_heads(row.department_id)]
        report.reminders += 1
    report.messages += _tell(outbox)
    db.session.commit()


def _overdue(rows: list[Any], now: datetime, report: SweepReport, people: _People) -> None:
    plain, escalating = [], []
    for row in rows:
        what = _what(row)
        if what is None:
            _forget(row)
        elif what[1].escalate and row.escalated_at is None:
            escalating.append(row)
        else:
            plain.append(row)
    if plain:
        _notices(plain, now, report, people, keep_due=set())
    db.session.commit()
    for start in range(0, len(escalating), ESCALATION_GROUP):
        for row in _escalate_group(escalating[start:start + ESCALATION_GROUP], now, report, people):
            _escalate(row, _what(row), now, report, people)  # type: ignore[arg-type]


def _notices(rows: list[Any], now: datetime, report: SweepReport, people: _People, keep_due: set[int]) -> None:
    """Claim and send overdue notices (once per clock), in the caller's transaction. Clocks in
    ``keep_due`` stay in the queue: their escalation is tried again next run."""
    outbox = []
    for keep in (True, False):
        ids = {r.id for r in rows if (r.id in keep_due) == keep}
        if not ids:
            continue
        values: dict[str, Any] = {"overdue_notified_at": now,
                                  "breached_at": sa.func.coalesce(CLOCK.c.breached_at, now)}
        if not keep:
            values["next_action_at"] = None
        claimed = set(db.session.execute(
            sa.update(CLOCK).where(CLOCK.c.id.in_(_lock(sorted(ids))), CLOCK.c.overdue_notified_at.is_(None),
                                   CLOCK.c.is_open == OPEN, CLOCK.c.due_at <= now)
            .values(**values).returning(CLOCK.c.id)).scalars())
        for row in rows:
            if row.id not in ids:
                continue
            if row.id not in claimed:
                if not keep and row.overdue_notified_at is not None:
                    _forget(row)  # told before; nothing else to do
                continue
            what = _what(row)
            outbox += [(person, "overdue", row, what)
                       for person in people.department_heads(row.department_id) or people.person(row.responsible_id)]
            report.notices += 1
    report.messages += _tell(outbox)


def _escalate_group(rows: list[Any], now: datetime, report: SweepReport, people: _People) -> list[Any]:
    """Plain escalations of several records in one transaction (one flush: the audit rows are appended
    together). Returns what must go one by one: anything unusual (record gone or busy, an escalation
    needing sign-off), or the whole group when its commit failed (a person changed a record meanwhile)."""
    if len(rows) < 2:
        return rows
    rows = sorted(rows, key=lambda r: (r.record_type, r.record_id))  # two runs lock records in one order
    records = {}
    for row in rows:  # the records' rows first, then the clocks' (see _escalate)
        wf = _what(row)[0]  # type: ignore[index]
        records[row.id] = db.session.get(wf.model, row.record_id, with_for_update=True, populate_existing=True)
    done = set(db.session.scalars(sa.select(CLOCK.c.id).where(CLOCK.c.id.in_([r.id for r in rows]),
                                                              CLOCK.c.escalated_at.is_not(None))))
    fired, single, scratch = [], [], SweepReport(now)
    try:
        with db.session.no_autoflush:
            for row in rows:
                wf, d = _what(row)  # type: ignore[misc]
                t, record = wf.transition(d.escalate or ""), records[row.id]
                if row.id in done:
                    continue  # another run escalated it
                if t is None or t.approvals or record is None or not engine.may_fire(record, t, None):
                    single.append(row)
                    continue
                if _claim_escalation(row, now):
                    engine.fire(record, t.name, None, _comment(d, row), commit=False)
                    fired.append(row)
            _notices(fired, now, scratch, people, keep_due=set())
            db.session.flush()
        db.session.commit()
    except (engine.WorkflowError, sa.exc.SQLAlchemyError):
        db.session.rollback()
        return rows
    report.escalations += len(fired)
    report.notices += scratch.notices
    report.messages += scratch.messages
    return single


def _claim_escalation(row: Any, now: datetime) -> bool:
    return db.session.execute(
        sa.update(CLOCK).where(CLOCK.c.id == row.id, CLOCK.c.escalated_at.is_(None), CLOCK.c.is_open == OPEN)
        .values(escalated_at=now, breached_at=sa.func.coalesce(CLOCK.c.breached_at, now))).rowcount == 1


def _comment(d: Deadline, row: Any) -> str:
    with force_locale(_default_locale()):
        return _("Deadline passed: %(d)s (due %(t)s)", d=d.label, t=_local(row.due_at))


def _escalate(row: Any, what: tuple[engine.Workflow, Deadline], now: datetime, report: SweepReport,
              people: _People) -> None:
    """One escalation, one transaction: claim it, send the overdue notice, fire the system transition
    (committing; a chain it opens tells its approvers)."""
    wf, d = what
    t = wf.transition(d.escalate or "")
    # The record's row first, then the clock's: the order a person's change takes (record UPDATE,
    # then the hook's clock UPDATE), so the two never deadlock on PostgreSQL.
    record = db.session.get(wf.model, row.record_id, with_for_update=True, populate_existing=True)
    if db.session.scalar(sa.select(CLOCK.c.escalated_at).where(CLOCK.c.id == row.id)) is not None:
        db.session.rollback()  # another run escalated it meanwhile
        return
    if t is None or record is None or record.deleted_at is not None:
        _notices([row], now, report, people, keep_due=set())
        db.session.commit()
        return
    if not engine.may_fire(record, t, None):
        busy = bool(record.pending_transition) and record.state in t.source
        if busy:
            report.waiting += 1
        else:
            report.skipped += 1
        _notices([row], now, report, people, keep_due={row.id} if busy else set())
        db.session.commit()
        return
    if not _claim_escalation(row, now):
        db.session.rollback()  # another run escalated it
        return
    _notices([row], now, report, people, keep_due=set())
    try:
        engine.fire(record, t.name, None, _comment(d, row))  # flushes and commits the claim and notices with it
    except (engine.WorkflowError, sa.exc.SQLAlchemyError) as exc:
        db.session.rollback()
        report.waiting += 1
        report.errors.append(f"{wf.key} #{row.record_id} {d.name}: {exc}")
        return
    report.escalations += 1


def _tell(outbox: list[tuple[Staff, str, Any, Any]]) -> int:
    """The notices, each in its recipient's language (one locale switch per language, not per notice):
    the record, the rule and the due time."""
    by_locale: dict[str, list[tuple[Staff, str, Any, Any]]] = {}
    for item in outbox:
        by_locale.setdefault(item[0].locale or _default_locale(), []).append(item)
    for locale, items in by_locale.items():
        with force_locale(locale):
            for person, kind, row, (wf, d) in items:
                name, due = f"{wf.label} #{row.record_id}", _local(row.due_at)
                if kind == "reminder":
                    notify(person, _("Due soon: %(r)s — %(d)s", r=name, d=d.label), _("Due at %(t)s.", t=due))
                else:
                    notify(person, _("Overdue: %(r)s — %(d)s", r=name, d=d.label), _("It was due at %(t)s.", t=due))
    return len(outbox)


def _local(moment: datetime) -> str:
    from views.templating import localtime

    return str(localtime(moment))


def _default_locale() -> str:
    from flask import current_app

    return current_app.config.get("BABEL_DEFAULT_LOCALE", "zh_Hans_CN")


# --- CLI and the in-process timer ---------------------------------------------------------------------
@click.command("sweep")
@with_appcontext
@click.option("--now", "now_text", help="ISO time to sweep as of (default: now), e.g. 2026-11-23T09:00+08:00")
def sweep_command(now_text: str | None) -> None:
    """Send due reminders and overdue notices and fire escalations (safe to run repeatedly)."""
    now = None
    if now_text:
        try:
            now = datetime.fromisoformat(now_text)
        except ValueError:
            raise click.BadParameter("use an ISO time, e.g. 2026-11-23T09:00+08:00", param_hint="--now") from None
        now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    started = utcnow()
    report = sweep(now)
    job_run.record_run(db.engine, job_run.SWEEP, started, True)
    click.echo(f"sweep: {report}")
    for error in report.errors:
        click.echo(f"  not escalated now: {error}", err=True)


def run_forever(app: Flask, interval: float, stop: threading.Event) -> None:
    """The timer thread: one sweep per interval, each in its own app context (own session), but
    only while this process holds the sweep's lease (models/job_run.py): of all the workers and
    hosts running this thread, exactly one sweeps; if it dies another takes over when the lease
    runs out (three intervals, at least 30 s)."""
    log = logging.getLogger("pm.jobs")
    lease = max(interval * 3, 30.0)
    holder = job_run.me()
    try:
        while not stop.wait(interval):
            with app.app_context():
                started = None
                try:
                    if not job_run.claim_lease(db.engine, job_run.SWEEP, lease, holder):
                        continue
                    started = utcnow()
                    report = sweep()
                    job_run.record_run(db.engine, job_run.SWEEP, started, True)
                    log.info("sweep by %s: %s", holder, report)
                except Exception:  # a failed run must not end the timer; the next run retries
                    log.exception("sweep failed")
                    _record_failure(started)
                finally:
                    db.session.remove()
    finally:
        with app.app_context():
            try:
                job_run.release_lease(db.engine, job_run.SWEEP, holder)
            except Exception:  # the database may be gone at shutdown; the lease then runs out
                pass


def _record_failure(started: datetime | None) -> None:
    """A run that raised: /healthz reports it failed (the database may be what failed)."""
    if started is None:
        return
    try:
        db.session.rollback()
        job_run.record_run(db.engine, job_run.SWEEP, started, False)
    except Exception:  # noqa: S110  the database itself may be down; /healthz says so
        pass


def init_app(app: Flask) -> None:
    """Registers ``flask sweep``. With SWEEP_INTERVAL_SECONDS > 0 a daemon thread sweeps in the
    serving process; never under TESTING and never in other CLI commands (``flask db upgrade``
    must not sweep a half-migrated database), so only the server (``flask run``, a WSGI server
    worker) runs it. Every worker of a WSGI server starts the thread, but only the lease holder
    sweeps; several sweeping at once (cron plus the timer) would still be safe: every action is
    claimed."""
    app.cli.add_command(sweep_command)
    interval = float(app.config.get("SWEEP_INTERVAL_SECONDS", os.environ.get("SWEEP_INTERVAL_SECONDS")) or 0)
    if interval <= 0 or app.config.get("TESTING") or "pm_sweep" in app.extensions:
        return
    context = click.get_current_context(silent=True)
    if context is not None and context.command.name != "run":
        return
    stop = threading.Event()
    thread = threading.Thread(target=run_forever, args=(app, interval, stop), name="pm-sweep", daemon=True)
    app.extensions["pm_sweep"] = (thread, stop)
    thread.start()
    atexit.register(_stop, thread, stop)


def _stop(thread: threading.Thread, stop: threading.Event) -> None:
    """At exit: end the timer so that it hands its lease back (a restart need not wait it out)."""
    stop.set()
    thread.join(timeout=5)
