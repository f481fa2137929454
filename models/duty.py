"""Duty desk (值班与交接班, REGULATIONS §9): the monthly roster and its swaps, the append-only duty
log with its follow-ups, the supervisor's daily sign-off and the handover. Visitors and patrols
are in models/duty_security.py.

The duty log (DTY-3) is refused UPDATE and DELETE three times over: the screen offers neither,
the ORM refuses them before a flush, and the database refuses them by trigger. The one DELETE let
through is retention's purge after three years (§10): the trigger lets a row go only while a
*running* retention batch holds a pending tombstone for it — the manager-approved list is the
marker, so nothing else has to be written or remembered.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.base import UTCDateTime, db, utcnow
from models.help_requests import HelpRequest
from models.staff import Staff
from models.validators import DomainError
from models.workflow import Tracked
from workflow import settings
from workflow.engine import Firing, Step, T, Workflow

SHANGHAI = ZoneInfo("Asia/Shanghai")
FRONT_DESK = frozenset({"manager", "cs_supervisor", "cs_clerk"})
DESK = FRONT_DESK | {"security"}
SUPERVISOR = frozenset({"cs_supervisor"})

SHIFT_KINDS = {"night": _l("Night duty"), "day": _l("Day desk"), "holiday": _l("Holiday (24 h)")}
# DTY-1: shift times as settings, minutes after midnight (Beijing time); a holiday shift is 24 hours.


def _minute(key: str, label: object, default: int) -> settings.SettingSpec:
    return settings.declare(settings.SettingSpec(key, label, "integer", default, maximum=24 * 60 - 1,
                                                 group=_l("Duty desk")))


NIGHT_START = _minute("duty.night_start_minute", _l("Night duty starts (minute of day)"), 17 * 60 + 30)
NIGHT_END = _minute("duty.night_end_minute", _l("Night duty ends (minute of day)"), 8 * 60 + 30)
DAY_START = _minute("duty.day_start_minute", _l("Day desk starts (minute of day)"), 8 * 60 + 30)
DAY_END = _minute("duty.day_end_minute", _l("Day desk ends (minute of day)"), 18 * 60 + 30)
# DTY-2: what the desk does; every log entry is one of these.
LOG_KINDS = {"enquiry": _l("Enquiry"), "help_request": _l("Help request"), "desk_safety": _l("Desk safety"),
             "emergency": _l("Emergency coordination"), "other": _l("Other")}
# DTY-4: the desk items counted at every handover.
DESK_ITEMS = {"radio": _l("Radio"), "extinguisher": _l("Fire extinguisher"), "keys": _l("Key cabinet keys"),
              "torch": _l("Torch"), "log_book": _l("Duty log"), "first_aid": _l("First-aid kit")}


def local_at(day: date, minute: int) -> datetime:
    return datetime.combine(day, time(minute // 60, minute % 60), SHANGHAI)


def shift_times(day: date, kind: str) -> tuple[datetime, datetime]:
    """Start and end (aware, Beijing) of a shift on ``day``; the night runs into the next morning."""
    if kind == "holiday":
        start = local_at(day, settings.value(DAY_START.key))
        return start, start + timedelta(hours=24)
    if kind == "night":
        return (local_at(day, settings.value(NIGHT_START.key)),
                local_at(day + timedelta(days=1), settings.value(NIGHT_END.key)))
    return local_at(day, settings.value(DAY_START.key)), local_at(day, settings.value(DAY_END.key))


def month_start(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=SHANGHAI)


# --- DTY-1 roster ----------------------------------------------------------------------------------
def _mark_late(roster: DutyRoster, firing: Firing) -> None:
    """Publishing after the month began is allowed (the desk needs a roster) but flagged late."""
    roster.published_at = firing.at
    roster.published_late = firing.at >= month_start(roster.month)


def _has_shifts(roster: DutyRoster) -> object:
    return None if roster.shifts else _l("A roster without shifts cannot be published.")


class DutyRoster(Tracked, db.Model):
    __tablename__ = "duty_roster"
    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[date] = mapped_column(sa.Date, unique=True)  # the first day of the month
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    published_late: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    note: Mapped[str | None] = mapped_column(sa.String(200))
    shifts: Mapped[list[DutyShift]] = relationship(back_populates="roster", order_by="DutyShift.day",
                                                   cascade="all, delete-orphan")

    workflow = Workflow(_l("Duty roster"), {"draft": _l("Draft"), "published": _l("Published")}, "draft", [
        T("publish", "draft", "published", SUPERVISOR, label=_l("Publish the roster"), guard=_has_shifts,
          effect=_mark_late),
    ], preload=("shifts",))

    def __str__(self) -> str:
        return f"{self.month:%Y-%m}"

    @property
    def publish_by(self) -> datetime:
        """DTY-1: the deadline, the month's first instant (i.e. before the previous month ends)."""
        return month_start(self.month)

    def check_month(self) -> None:
        if self.month is None:
            raise DomainError(_l("Choose the month."), "month")
        self.month = self.month.replace(day=1)


def unpublished_rosters(now: datetime | None = None) -> list[date]:
    """DTY-1 check: next month (and this one) without a published roster, for the supervisor's list."""
    today = (now or utcnow()).astimezone(SHANGHAI).date()
    this = today.replace(day=1)
    nxt = (this + timedelta(days=32)).replace(day=1)
    published = set(db.session.scalars(sa.select(DutyRoster.month).where(
        DutyRoster.month.in_([this, nxt]), DutyRoster.state == "published")))
    return [m for m in (this, nxt) if m not in published]


class DutyShift(db.Model):
    __tablename__ = "duty_shift"
    __table_args__ = (sa.UniqueConstraint("roster_id", "day", "kind", "staff_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    roster_id: Mapped[int] = mapped_column(sa.ForeignKey("duty_roster.id", ondelete="CASCADE"), index=True)
    roster: Mapped[DutyRoster] = relationship(back_populates="shifts")
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"), index=True)
    staff: Mapped[Staff] = relationship()
    day: Mapped[date] = mapped_column(sa.Date, index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))

    def __str__(self) -> str:
        return f"{self.day} {SHIFT_KINDS.get(self.kind, self.kind)} {self.staff.full_name if self.staff else ''}"

    @property
    def starts_at(self) -> datetime:
        return shift_times(self.day, self.kind)[0]

    @property
    def ends_at(self) -> datetime:
        return shift_times(self.day, self.kind)[1]

    def check_shift(self) -> None:
        if self.kind not in SHIFT_KINDS:
            raise DomainError(_l("Choose the kind of duty."), "kind")
        if self.roster is None or self.day is None or self.staff is None:
            raise DomainError(_l("Choose the roster, the day and the person."), "day")
        if (self.day.year, self.day.month) != (self.roster.month.year, self.roster.month.month):
            raise DomainError(_l("The day must fall in the roster's month."), "day")
        if self.roster.state != "draft":
            raise DomainError(_l("A published roster changes only by an approved swap."), "roster")


# --- DTY-7 swaps -----------------------------------------------------------------------------------
def _not_started(swap: DutySwap) -> object:
    if swap.shift is None or swap.to_staff_id is None:  # ids only: "My work" runs this for every open swap
        return _l("Choose the shift and the colleague.")
    if swap.to_staff_id == swap.shift.staff_id:
        return _l("The colleague already has this shift.")
    if utcnow() >= swap.shift.starts_at:
        return _l("The shift has started: a swap must be approved beforehand.")
    return None


def _swap(swap: DutySwap, firing: Firing) -> None:
    swap.from_staff_id = swap.shift.staff_id
    swap.shift.staff_id = swap.to_staff_id


class DutySwap(Tracked, db.Model):
    __tablename__ = "duty_swap"
    id: Mapped[int] = mapped_column(primary_key=True)
    shift_id: Mapped[int] = mapped_column(sa.ForeignKey("duty_shift.id", ondelete="CASCADE"), index=True)
    shift: Mapped[DutyShift] = relationship()
    to_staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id"))
    to_staff: Mapped[Staff] = relationship(foreign_keys=[to_staff_id])
    from_staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    from_staff: Mapped[Staff | None] = relationship(foreign_keys=[from_staff_id])
    reason: Mapped[str] = mapped_column(sa.String(200))

    workflow = Workflow(_l("Duty swap"), {"requested": _l("Requested"), "swapped": _l("Swapped")}, "requested", [
        T("swap", "requested", "swapped", DESK, label=_l("Swap the duty"), guard=_not_started, effect=_swap,
          approvals=[Step(_l("Supervisor approves the swap"), SUPERVISOR)]),
    ], preload=("shift",))

    def __str__(self) -> str:
        return f"{self.shift} → {self.to_staff.full_name if self.to_staff else ''}"


# --- DTY-3 duty log (append-only) ------------------------------------------------------------------
class DutyLog(db.Model):
    """One entry of 《值班记录》. Never updated, never deleted (but by retention's purge).

    ``corrects_id`` has no foreign key on purpose: an ON DELETE action would UPDATE this table
    when retention purges an older month, and a correction may outlive what it corrects.
    """

    __tablename__ = "duty_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    desk: Mapped[str] = mapped_column(sa.String(32), default="main", index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    body: Mapped[str] = mapped_column(sa.Text)
    important: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    needs_follow_up: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    corrects_id: Mapped[int | None] = mapped_column(sa.Integer, index=True)
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id"))
    author: Mapped[Staff | None] = relationship()

    def __str__(self) -> str:
        return f"#{self.id} {self.body[:40]}"

    def check_entry(self) -> None:
        if self.kind not in LOG_KINDS:
            raise DomainError(_l("Choose the kind of duty work."), "kind")
        if not (self.body or "").strip():
            raise DomainError(_l("Write what happened."), "body")
        if self.corrects_id is not None and db.session.get(DutyLog, self.corrects_id) is None:
            raise DomainError(_l("The entry to correct does not exist."), "corrects_id")


def add_entry(author: Staff, kind: str, body: str, *, desk: str = "main", important: bool = False,
              needs_follow_up: bool = False, corrects_id: int | None = None) -> DutyLog:
    """Append an entry (a correction is an entry naming the old one); open work gets a follow-up on flush."""
    entry = DutyLog(author=author, kind=kind, body=body, desk=desk, important=important,
                    needs_follow_up=needs_follow_up, corrects_id=corrects_id, created_at=utcnow())
    entry.check_entry()
    db.session.add(entry)
    return entry


@sa.event.listens_for(Session, "before_flush")
def _append_only(session: Session, flush_context: object, instances: object) -> None:
    for obj in list(session.dirty):
        if isinstance(obj, DutyLog) and session.is_modified(obj, include_collections=False):
            raise DomainError(_l("The duty log is append-only: write a correcting entry instead."))
    for obj in session.deleted:
        if isinstance(obj, DutyLog):
            raise DomainError(_l("The duty log is append-only: write a correcting entry instead."))
    for obj in list(session.new):  # open work an entry leaves is tracked beside it (DTY-4, DTY-5)
        if isinstance(obj, DutyLog) and (obj.important or obj.needs_follow_up):
            session.add(DutyFollowUp(log=obj, state="open"))


_PURGING = ("EXISTS (SELECT 1 FROM tombstone t JOIN retention_batch b ON b.id = t.batch_id"
            " WHERE t.record_type = 'duty_log' AND t.record_id = OLD.id AND t.outcome IS NULL"
            " AND b.state = 'running')")


def duty_log_guard_statements(dialect_name: str, *, truncate: bool = True) -> list[str]:
    """DDL making ``duty_log`` append-only (for create_all; migrations keep a frozen copy).

    DELETE passes only for a row a running retention batch is purging (its pending tombstone);
    ``truncate=False`` leaves out PostgreSQL's TRUNCATE guard.
    """
    if dialect_name == "postgresql":
        statements = [
            f"""CREATE OR REPLACE FUNCTION duty_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 IF TG_OP = 'DELETE' THEN
                   IF {_PURGING} THEN
                     RETURN OLD;
                   END IF;
                 END IF;
                 RAISE EXCEPTION 'duty_log is append-only';
               END $$""",
            """CREATE TRIGGER duty_log_no_change BEFORE UPDATE OR DELETE ON duty_log
               FOR EACH ROW EXECUTE FUNCTION duty_log_refuse()""",
        ]
        if truncate:
            statements.append("""CREATE TRIGGER duty_log_no_truncate BEFORE TRUNCATE ON duty_log
               FOR EACH STATEMENT EXECUTE FUNCTION duty_log_refuse()""")
        return statements
    return [
        """CREATE TRIGGER IF NOT EXISTS duty_log_no_update BEFORE UPDATE ON duty_log
           BEGIN SELECT RAISE(ABORT, 'duty_log is append-only'); END""",
        f"""CREATE TRIGGER IF NOT EXISTS duty_log_no_delete BEFORE DELETE ON duty_log
           WHEN NOT {_PURGING}
           BEGIN SELECT RAISE(ABORT, 'duty_log is append-only'); END""",
    ]


def duty_log_unguard_statements(dialect_name: str) -> list[str]:
    """The migration's downgrade (and a test wipe's way round the guard)."""
    if dialect_name == "postgresql":
        return ["DROP TRIGGER IF EXISTS duty_log_no_truncate ON duty_log",
                "DROP TRIGGER IF EXISTS duty_log_no_change ON duty_log",
                "DROP FUNCTION IF EXISTS duty_log_refuse()"]
    return ["DROP TRIGGER IF EXISTS duty_log_no_update", "DROP TRIGGER IF EXISTS duty_log_no_delete"]


@sa.event.listens_for(DutyLog.__table__, "after_create")
def _install_guards(table: sa.Table, connection: sa.Connection, **kw: object) -> None:
    for statement in duty_log_guard_statements(connection.dialect.name):
        connection.exec_driver_sql(statement)


# --- DTY-4/DTY-5 follow-ups: the open work an entry leaves ------------------------------------------
def _new_request(follow: DutyFollowUp, firing: Firing, category: str) -> None:
    entry = follow.log
    request = HelpRequest(category=category, caller=(firing.user.full_name if firing.user else "值班"),
                          description=f"[值班记录 #{entry.id}] {entry.body}", received_at=firing.at,
                          state="received")
    db.session.add(request)
    follow.help_request = request


def _to_repair(follow: DutyFollowUp, firing: Firing) -> None:
    _new_request(follow, firing, "repair")


def _to_complaint(follow: DutyFollowUp, firing: Firing) -> None:
    _new_request(follow, firing, "complaint")


class DutyFollowUp(Tracked, db.Model):
    """What an important or unhandled entry still asks for; the entry itself never changes."""

    __tablename__ = "duty_followup"
    id: Mapped[int] = mapped_column(primary_key=True)
    log_id: Mapped[int] = mapped_column(sa.ForeignKey("duty_log.id", ondelete="CASCADE"), unique=True)
    log: Mapped[DutyLog] = relationship()
    help_request_id: Mapped[int | None] = mapped_column(sa.ForeignKey("help_request.id", ondelete="SET NULL"))
    help_request: Mapped[HelpRequest | None] = relationship()
    resolution: Mapped[str | None] = mapped_column(sa.String(500))

    workflow = Workflow(_l("Duty follow-up"), {
        "open": _l("Open"), "converted": _l("Turned into a work order"), "resolved": _l("Resolved"),
    }, "open", [
        T("to_repair", "open", "converted", FRONT_DESK, label=_l("Open a repair work order"), effect=_to_repair),
        T("to_complaint", "open", "converted", FRONT_DESK, label=_l("Register as a complaint"),
          effect=_to_complaint),
        T("resolve", "open", "resolved", DESK, label=_l("Mark resolved"), requires=["resolution"]),
    ], preload=("log",))

    field_labels = {"resolution": _l("Resolution")}

    def __str__(self) -> str:
        return str(self.log)


def unconverted_night_items(day: date) -> list[DutyFollowUp]:
    """DTY-5: last night's (``day`` evening to next morning) follow-ups still open."""
    start, end = shift_times(day, "night")
    return list(db.session.scalars(sa.select(DutyFollowUp).join(DutyFollowUp.log).where(
        DutyFollowUp.state == "open", DutyLog.needs_follow_up.is_(True),
        DutyLog.created_at >= start, DutyLog.created_at < end).order_by(DutyLog.created_at)))


from models.duty_desk import DutyDaySignoff, DutyHandover, DutyHandoverItem, sign_days  # noqa: E402,F401,I001
from models.duty_security import PatrolRecord, VisitorLog, short_patrol_days  # noqa: E402,F401,I001
