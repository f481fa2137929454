"""Retention with legal hold (REGULATIONS §10): expiry boundaries of each anchor (HLP-6 start of the
next year, DTY-3 end of month, VIO-11 periods by condition), legal holds (ARC-9) before and after
approval, the manager's approval with the password (ACC-5), purge with children, tombstones,
redaction of the audit trail that ``verify`` still accepts (and forged redactions it does not),
the dry run, the screens, and a property test over random records, holds and policies."""

from __future__ import annotations

import calendar
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask_babel import force_locale
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from models import AuditEntry, AuditHead, AuditRedactionPermit, KeyCustody, KeyUse, SecurityEvent, SignOff, Staff, db
from models.audit import guard_statements
from models.retention import LegalHold, RetentionBatch, RetentionPolicy, Tombstone
from models.validators import DomainError
from tests.conftest import PASSWORD, csrf_token
from tests.workflow_fixtures import new_keys, staff
from workflow import engine
from workflow.audit import verify
from workflow.retention import add_period, due, place_hold, release_hold, seed_policies
from workflow.retention_batch import approve, list_batch, run_batch

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2027, 6, 1, 4, 0, tzinfo=UTC)


@pytest.fixture()
def en(db_session) -> Iterator[None]:
    """Messages in English (the msgids), whatever the catalogue translates them to."""
    with force_locale("en"):
        yield


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI).astimezone(UTC)


def closed(closed_at: datetime | None, state: str = "returned", **values: Any) -> int:
    """A key custody record closed at ``closed_at`` (the engine's columns written directly)."""
    keys = new_keys()
    db.session.execute(sa.update(KeyCustody).where(KeyCustody.id == keys.id)
                       .values(state=state, closed_at=closed_at, **values))
    db.session.commit()
    return keys.id


def policy(**values: Any) -> RetentionPolicy:
    row = RetentionPolicy(**({"name": "keys", "record_type": "key_custody", "amount": 1, "unit": "years",
                              "anchor": "closed", "anchor_field": "closed_at", "action": "purge"} | values))
    row.check()
    db.session.add(row)
    db.session.commit()
    return row


def due_ids(p: RetentionPolicy, now: datetime = NOW) -> list[int]:
    return due(p, now).ids()


def purge(p: RetentionPolicy, ids: dict[str, int], now: datetime = NOW, **kw: Any) -> RetentionBatch:
    """List, approve (manager, right password) and run to the end."""
    batch = list_batch(p, staff(ids, "manager"), now)
    approve(batch, staff(ids, "manager"), PASSWORD)
    return run_batch(batch.id, now=now, **kw)


def existing() -> set[int]:
    return set(db.session.scalars(sa.select(KeyCustody.id)))


def problems() -> list[tuple[int | None, str]]:
    return [(p.seq, p.kind) for p in verify(db.engine)[1]]


def trail(record_type: str, record_id: int) -> list[AuditEntry]:
    return list(db.session.scalars(sa.select(AuditEntry).where(
        AuditEntry.record_type == record_type, AuditEntry.record_id == record_id).order_by(AuditEntry.seq)))


@contextmanager
def unguarded() -> Iterator[sa.Connection]:
    """The attacker with database access: the UPDATE guard lifted."""
    db.session.rollback()
    postgres = db.engine.dialect.name == "postgresql"
    with db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_entry DISABLE TRIGGER USER" if postgres
                             else "DROP TRIGGER IF EXISTS audit_entry_no_update"))
        try:
            yield conn
        finally:
            if postgres:
                conn.execute(sa.text("ALTER TABLE audit_entry ENABLE TRIGGER USER"))
            else:
                for statement in guard_statements("sqlite"):
                    conn.exec_driver_sql(statement)


# --- expiry boundaries -------------------------------------------------------------------------------
def test_ret_adding_months_or_years_never_shortens_the_period() -> None:
    assert add_period(datetime(2028, 2, 29, 9), 1, "years") == datetime(2029, 3, 1)
    assert add_period(datetime(2028, 2, 29, 9), 4, "years") == datetime(2032, 2, 29, 9)
    assert add_period(datetime(2027, 1, 31, 9), 1, "months") == datetime(2027, 3, 1)
    assert add_period(datetime(2027, 12, 15), 1, "months") == datetime(2028, 1, 15)
    assert add_period(datetime(2027, 12, 31, 23), 1, "days") == datetime(2028, 1, 1, 23)


def test_hlp_6_start_of_next_year_anchor_across_31_december_to_1_january(db_session) -> None:
    p = policy(name="HLP-6", amount=2, anchor="start_of_next_year")
    late_2025 = closed(local(2025, 12, 31, 23, 59, 59))           # anchor 1 Jan 2026 → due 1 Jan 2028
    new_year_2026 = closed(local(2026, 1, 1, 0, 0, 0))             # anchor 1 Jan 2027 → due 1 Jan 2029
    utc_still_2025 = closed(datetime(2025, 12, 31, 17, 0, tzinfo=UTC))  # 1 Jan 2026 01:00 in Shanghai
    assert due_ids(p, local(2027, 12, 31, 23, 59, 59)) == []
    assert due_ids(p, local(2028, 1, 1)) == [late_2025]
    assert due_ids(p, local(2028, 12, 31, 23, 59, 59)) == [late_2025]
    assert due_ids(p, local(2029, 1, 1)) == [late_2025, new_year_2026, utc_still_2025]


def test_dty_3_end_of_month_anchor_on_29_february_2028(db_session) -> None:
    p = policy(name="DTY-3", amount=3, anchor="end_of_month", anchor_field="created_at", require_closed=False)
    leap_day = closed(None, state="held", created_at=local(2028, 2, 29, 12))
    first_of_march = closed(None, state="held", created_at=local(2028, 3, 1))
    assert due_ids(p, local(2031, 2, 28, 23, 59, 59)) == []
    assert due_ids(p, local(2031, 3, 1)) == [leap_day]
    assert due_ids(p, local(2031, 3, 31, 23, 59, 59)) == [leap_day]
    assert due_ids(p, local(2031, 4, 1)) == [leap_day, first_of_march]


def test_ret_exactly_at_expiry_is_due_one_second_before_is_not(db_session) -> None:
    p = policy(amount=1, unit="years")
    record = closed(datetime(2025, 3, 10, 8, 0, 0, tzinfo=UTC))
    expiry = datetime(2026, 3, 10, 8, 0, 0, tzinfo=UTC)
    assert due_ids(p, expiry - timedelta(seconds=1)) == []
    assert due_ids(p, expiry - timedelta(microseconds=1)) == []
    assert due_ids(p, expiry) == [record]


def test_vio_11_condition_gives_general_1_year_and_major_5_years(db_session) -> None:
    """Violations have no table yet; the same conditional periods on key custody's state."""
    general = policy(name="general", condition='{"state": "returned"}', amount=1)
    major = policy(name="major", condition='{"state": ["lost"]}', amount=5)
    returned = closed(local(2020, 5, 1), "returned")
    lost = closed(local(2020, 5, 1), "lost")
    still_open = closed(None, "held")
    assert due_ids(general, local(2021, 5, 1)) == [returned] and due_ids(major, local(2021, 5, 1)) == []
    assert due_ids(major, local(2025, 4, 30, 23, 59, 59)) == []
    assert due_ids(major, local(2025, 5, 1)) == [lost]
    assert still_open not in due_ids(general, local(2099, 1, 1))


def test_ret_keep_forever_policy_shields_its_records_from_other_policies(en) -> None:
    p = policy(amount=1)
    returned, lost = closed(local(2020, 1, 1), "returned"), closed(local(2020, 1, 1), "lost")
    policy(name="lost keys forever", condition='{"state": "lost"}', amount=None, keep_forever=True)
    assert due_ids(p) == [returned] and lost in existing()
    everything = policy(name="all forever", amount=None, keep_forever=True)
    assert due_ids(p) == [] and due(everything, NOW).note == "kept permanently"


def test_ret_shipped_policies_seed_once_and_tables_still_to_come_are_noted(en, runner) -> None:
    assert seed_policies() == 10
    db.session.commit()
    assert seed_policies() == 0
    by_code = {p.code: p for p in db.session.scalars(sa.select(RetentionPolicy))}
    help_requests = by_code["hlp6_help_request"]
    assert (help_requests.amount, help_requests.anchor, help_requests.anchor_field) == (2, "start_of_next_year",
                                                                                       "created_at")
    assert (by_code["dty3_duty_log"].amount, by_code["dty3_duty_log"].anchor) == (3, "end_of_month")
    assert (by_code["vio11_general"].amount, by_code["vio11_major"].amount) == (1, 5)
    assert by_code["cmp8_complaint"].keep_forever and by_code["reg2_resident"].keep_forever
    renamed = by_code["dty3_duty_log"]
    renamed.record_type = "duty_book"  # e.g. a table an admin names before its regulation exists
    db.session.commit()
    found = due(renamed, NOW)
    assert found.query is None and found.ids() == [] and "duty_book does not exist yet" in found.note
    output = runner.invoke(args=["retention", "--dry-run"]).output
    assert "duty_book does not exist yet" in output and "kept permanently" in output


@pytest.mark.parametrize("junk", ['{"state": {"$ne": 1}}', "[1]", "state == 'x'", '{"1bad": 1}', '{"a": []}'])
def test_ret_condition_is_declarative_only(db_session, junk) -> None:
    with pytest.raises(DomainError):
        RetentionPolicy(name="x", record_type="key_custody", condition=junk)


# --- legal hold ----------------------------------------------------------------------------------------
def test_arc_9_record_under_legal_hold_is_never_due_nor_purged(db_session, staff_ids) -> None:
    p = policy()
    kept, gone = closed(local(2020, 1, 1)), closed(local(2020, 1, 1))
    hold = place_hold("key_custody", kept, "诉讼中 (lawsuit)", staff(staff_ids, "manager"))
    db.session.commit()
    assert due_ids(p) == [gone]
    batch = purge(p, staff_ids)
    assert kept in existing() and gone not in existing() and batch.state == "done"
    release_hold(hold, staff(staff_ids, "manager"))
    db.session.commit()
    assert due_ids(p) == [kept]


def test_arc_9_hold_placed_after_approval_still_wins(db_session, staff_ids) -> None:
    p = policy()
    first, second, third = (closed(local(2020, 1, 1)) for _ in range(3))
    batch = list_batch(p, staff(staff_ids, "manager"), NOW)
    approve(batch, staff(staff_ids, "manager"), PASSWORD)
    place_hold("key_custody", second, "律师函 received", staff(staff_ids, "manager"))
    db.session.commit()
    batch = run_batch(batch.id, now=NOW, chunk=2)
    assert existing() >= {second} and not existing() & {first, third}
    outcomes = dict(db.session.execute(sa.select(Tombstone.record_id, Tombstone.outcome)).all())
    assert outcomes == {first: "purged", second: "held", third: "purged"}
    assert (batch.state, batch.done_count, batch.skipped_count) == ("done", 2, 1)


def test_arc_9_hold_on_a_child_row_protects_its_parent(db_session, staff_ids) -> None:
    p = policy()
    record = closed(local(2020, 1, 1))
    use = KeyUse(custody_id=record, holder="王师傅", purpose="维修", out_at=local(2020, 1, 1))
    db.session.add(use)
    db.session.commit()
    place_hold("key_use", use.id, "evidence", staff(staff_ids, "manager"))
    db.session.commit()
    assert due_ids(p) == []


def test_arc_9_only_a_manager_places_a_hold_and_a_reason_is_required(en, staff_ids) -> None:
    record = closed(local(2020, 1, 1))
    for role in ("cs_supervisor", "admin", "cs_clerk"):
        with pytest.raises(DomainError, match="Only a manager"):
            place_hold("key_custody", record, "reason", staff(staff_ids, role))
    for reason in ("", "   "):
        with pytest.raises(DomainError, match="needs a reason"):
            place_hold("key_custody", record, reason, staff(staff_ids, "manager"))
    with pytest.raises(DomainError, match="No key_custody record"):
        place_hold("key_custody", 10**9, "reason", staff(staff_ids, "manager"))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(LegalHold)) == 0


# --- the purge -------------------------------------------------------------------------------------------
def used_and_closed(ids: dict[str, int], when: datetime) -> KeyCustody:
    """Keys taken out and put back through the engine (key-use child, audit rows), then closed."""
    clerk = staff(ids, "cs_clerk")
    keys = new_keys()
    engine.fire(keys, "check_out", clerk, "维修借用", values={"current_holder": "王师傅", "current_purpose": "修水管"})
    engine.fire(keys, "check_in", clerk)
    db.session.execute(sa.update(KeyCustody).where(KeyCustody.id == keys.id).values(state="returned",
                                                                                     closed_at=when))
    db.session.add(SignOff(record_type="key_custody", record_id=keys.id, transition="report_lost", round=1,
                           step=0, decision="approve", staff_id=ids["cs_supervisor"]))
    db.session.commit()
    return keys


def test_ret_children_go_with_the_parent_and_a_tombstone_is_written_per_record(db_session, staff_ids) -> None:
    p = policy()
    gone, kept = used_and_closed(staff_ids, local(2020, 1, 1)), used_and_closed(staff_ids, local(2027, 1, 1))
    gone_id, use_ids = gone.id, [u.id for u in gone.uses]
    assert use_ids
    batch = purge(p, staff_ids)
    assert existing() == {kept.id}
    assert db.session.scalars(sa.select(KeyUse.custody_id)).all() == [kept.id]
    assert db.session.scalars(sa.select(SignOff.record_id)).all() == [kept.id]
    [stone] = db.session.scalars(sa.select(Tombstone)).all()
    assert (stone.record_type, stone.record_id, stone.outcome, stone.policy_id, stone.batch_id) == (
        "key_custody", gone_id, "purged", p.id, batch.id)
    assert stone.approved_by_id == staff_ids["manager"] and stone.purged_at == NOW
    assert stone.anchor_at == local(2020, 1, 1) and stone.due_at == local(2021, 1, 1)
    assert {c.name for c in Tombstone.__table__.c} == {"id", "batch_id", "policy_id", "record_type", "record_id",
                                                       "action", "anchor_at", "due_at", "outcome", "purged_at",
                                                       "approved_by_id"}  # ids and dates: no personal data
    [event] = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "purge")).all()
    assert (event.record_type, event.record_id) == ("retention_batch", batch.id)
    assert json.loads(event.changes)["purged"] == [gone_id]
    assert due_ids(p) == []  # purged once, never listed again


def test_ret_audit_rows_of_purged_records_are_redacted_and_verify_stays_intact(db_session, staff_ids,
                                                                                 runner) -> None:
    p = policy()
    gone, kept = used_and_closed(staff_ids, local(2020, 1, 1)), used_and_closed(staff_ids, local(2027, 1, 1))
    gone_id, use_id = gone.id, gone.uses[0].id
    assert "王师傅" in "".join(e.changes or "" for e in trail("key_custody", gone_id))
    kept_before = [(e.seq, e.changes, e.comment) for e in trail("key_custody", kept.id)]
    batch = purge(p, staff_ids)
    for entry in trail("key_custody", gone_id) + trail("key_use", use_id):
        assert (entry.changes, entry.comment, entry.redacted_by_batch) == (None, None, batch.id)
        assert entry.redacted_at == NOW and entry.redaction_seal
    assert [(e.seq, e.changes, e.comment) for e in trail("key_custody", kept.id)] == kept_before
    assert problems() == []
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and "chain intact" in result.output


def test_acc_7_checkpoints_still_hold_after_a_purge_redacts_the_rows(app, db_session, staff_ids, runner,
                                                                      monkeypatch, tmp_path) -> None:
    """Redaction keeps every row's hash, so the tip checkpointed before a purge still proves itself."""
    gone = used_and_closed(staff_ids, local(2020, 1, 1)).id
    path = tmp_path / "audit.jsonl"
    monkeypatch.setitem(app.config, "AUDIT_CHECKPOINT_FILE", str(path))
    assert runner.invoke(args=["audit", "checkpoint"]).exit_code == 0
    tip = json.loads(path.read_text())["seq"]
    purge(policy(), staff_ids)
    assert db.session.get(AuditEntry, db.session.scalar(sa.select(AuditEntry.id).where(AuditEntry.seq == tip))
                          ).redacted_at == NOW  # the checkpointed row itself was redacted
    assert all(e.redacted_at for e in trail("key_custody", gone))
    assert runner.invoke(args=["audit", "checkpoint"]).exit_code == 0
    result = runner.invoke(args=["audit", "verify", "--checkpoints", str(path)])
    assert result.exit_code == 0 and "checkpoints: 2 checked, every checkpointed row present" in result.output


def running_batch(p: RetentionPolicy, ids: dict[str, int], state: str = "running") -> int:
    """A batch in ``state`` under ``p``, written directly (what an attacker with SQL could do too)."""
    batch = RetentionBatch(policy_id=p.id, state=state, listed_at=NOW, listed_by_id=ids["manager"])
    db.session.add(batch)
    db.session.commit()
    return batch.id


def test_ret_database_refuses_a_redaction_not_made_the_retention_way(db_session, staff_ids) -> None:
    used_and_closed(staff_ids, local(2020, 1, 1))
    target = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.changes.is_not(None))).first()
    batch = running_batch(policy(), staff_ids)
    marker = {"redacted_at": NOW, "redacted_by_batch": batch, "redaction_seal": "f" * 64}
    refused = [
        {"changes": None, "comment": None},                                  # no marker
        {"changes": None, "redacted_at": NOW, "redacted_by_batch": batch},   # marker incomplete, comment kept
        {"changes": '{"x": [1, 2]}', **marker},                              # text rewritten, not emptied
        {"changes": None, "comment": None, "actor_name": "someone", **marker},  # a chained column changed
        {"changes": None, "comment": None, "seq": 10**6, **marker},
    ]
    db.session.commit()
    permit = {"batch_id": batch, "record_type": target.record_type, "record_id": target.record_id}
    for values in refused:  # even with the permit of a running batch
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(sa.insert(AuditRedactionPermit), permit)
                conn.execute(sa.update(AuditEntry).where(AuditEntry.id == target.id).values(values))
    assert problems() == []
    with db.engine.begin() as conn:  # exactly the permitted shape, while the batch runs, goes through...
        conn.execute(sa.insert(AuditRedactionPermit), permit)
        conn.execute(sa.update(AuditEntry).where(AuditEntry.id == target.id)
                     .values(changes=None, comment=None, **marker))
        conn.execute(sa.delete(AuditRedactionPermit))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):  # ...once
        with db.engine.begin() as conn:
            conn.execute(sa.insert(AuditRedactionPermit), permit)
            conn.execute(sa.update(AuditEntry).where(AuditEntry.id == target.id).values(redacted_by_batch=2))
    assert problems() == [(target.seq, "edited")]  # ...and verify names the forged seal


def test_acc_7_redaction_shaped_update_is_refused_unless_a_running_batch_purges_the_record(
        db_session, staff_ids) -> None:
    """The trail's one UPDATE only while retention purges the row's record, never from an ordinary
    connection: the exact redaction shape is refused without a permit, with a permit for another
    record or of another batch, and while the batch is not running (listed, approved, done)."""
    used_and_closed(staff_ids, local(2020, 1, 1))
    target = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.changes.is_not(None))).first()
    p = policy()
    running, other = running_batch(p, staff_ids), running_batch(p, staff_ids)
    own = {"batch_id": running, "record_type": target.record_type, "record_id": target.record_id}
    attempts = [
        [],                                                       # an ordinary connection
        [{**own, "record_id": target.record_id + 1000}],          # a permit for another record
        [{**own, "record_type": "resident"}],
        [{**own, "batch_id": other}],                             # a permit of another batch
    ]
    redaction = {"changes": None, "comment": None, "redacted_at": NOW, "redacted_by_batch": running,
                 "redaction_seal": "f" * 64}
    for permits in attempts:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                for row in permits:
                    conn.execute(sa.insert(AuditRedactionPermit), row)
                conn.execute(sa.update(AuditEntry).where(AuditEntry.id == target.id).values(redaction))
    for state in ("listed", "approved", "done", "cancelled"):
        db.session.execute(sa.update(RetentionBatch).where(RetentionBatch.id == running).values(state=state))
        db.session.commit()
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(sa.insert(AuditRedactionPermit), own)
                conn.execute(sa.update(AuditEntry).where(AuditEntry.id == target.id).values(redaction))
    db.session.expire_all()
    assert db.session.get(AuditEntry, target.id).changes == target.changes and problems() == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditRedactionPermit)) == 0


def test_acc_7_retention_leaves_no_redaction_permit_behind(db_session, staff_ids) -> None:
    """The permits live only inside the purge's transactions: afterwards nothing stays open."""
    gone = used_and_closed(staff_ids, local(2020, 1, 1)).id
    batch = purge(policy(), staff_ids)
    assert batch.state == "done" and all(e.redacted_by_batch == batch.id for e in trail("key_custody", gone))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditRedactionPermit)) == 0
    event = trail("retention_batch", batch.id)[-1]  # not redacted: only the batch's state stops it now
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):  # the batch is done: no more redaction
        with db.engine.begin() as conn:
            conn.execute(sa.insert(AuditRedactionPermit),
                         {"batch_id": batch.id, "record_type": "retention_batch", "record_id": batch.id})
            conn.execute(sa.update(AuditEntry).where(AuditEntry.id == event.id).values(
                changes=None, comment=None, redacted_at=NOW, redacted_by_batch=batch.id,
                redaction_seal="f" * 64))


def test_ret_verify_catches_forged_redactions_and_still_catches_plain_edits(db_session, staff_ids) -> None:
    gone = used_and_closed(staff_ids, local(2020, 1, 1)).id
    other = used_and_closed(staff_ids, local(2027, 1, 1))
    purge(policy(), staff_ids)
    redacted = trail("key_custody", gone)[0]
    victims = [e for e in trail("key_custody", other.id) if e.changes][:3]
    with unguarded() as conn:
        # a seal copied from a genuine redaction onto another row
        conn.execute(sa.update(AuditEntry).where(AuditEntry.id == victims[0].id).values(
            changes=None, comment=None, redacted_at=redacted.redacted_at,
            redacted_by_batch=redacted.redacted_by_batch, redaction_seal=redacted.redaction_seal))
        # marked redacted while its text was rewritten instead of emptied
        conn.execute(sa.update(AuditEntry).where(AuditEntry.id == victims[1].id).values(
            changes='{"holder": [null, "someone else"]}', redacted_at=NOW, redacted_by_batch=1,
            redaction_seal=redacted.redaction_seal))
        # a plain edit, no marker
        conn.execute(sa.update(AuditEntry).where(AuditEntry.id == victims[2].id).values(comment="nothing"))
    assert sorted(problems()) == sorted((v.seq, "edited") for v in victims)


def test_ret_run_is_split_into_short_transactions_one_audit_event_each(db_session, staff_ids) -> None:
    p = policy()
    records = [closed(local(2020, 1, 1)) for _ in range(5)]
    batch = list_batch(p, staff(staff_ids, "manager"), NOW)
    approve(batch, staff(staff_ids, "manager"), PASSWORD)
    batch = run_batch(batch.id, now=NOW, chunk=2, max_chunks=1)
    assert (batch.state, batch.done_count) == ("running", 2) and len(existing() & set(records)) == 3
    batch = run_batch(batch.id, now=NOW, chunk=2)
    assert (batch.state, batch.done_count, batch.skipped_count) == ("done", 5, 0) and not existing() & set(records)
    events = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "purge")
                                .order_by(AuditEntry.seq)).all()
    assert [json.loads(e.changes)["purged"] for e in events] == [records[:2], records[2:4], records[4:]]
    assert problems() == []


def test_ret_run_stamps_the_approver_on_every_tombstone_it_completes(db_session, staff_ids) -> None:
    """The approval itself writes one row, not one per listed record; the run completes each
    tombstone (purged or skipped) with the approver."""
    p = policy()
    gone, kept = closed(local(2020, 1, 1)), closed(local(2020, 1, 1))
    batch = list_batch(p, staff(staff_ids, "manager"), NOW)
    approve(batch, staff(staff_ids, "manager"), PASSWORD)
    place_hold("key_custody", kept, "lawsuit", staff(staff_ids, "manager"))
    db.session.commit()
    assert db.session.scalars(sa.select(Tombstone.approved_by_id)).all() == [None, None]  # not yet written
    run_batch(batch.id, now=NOW)
    stones = {r: (o, a) for r, o, a in db.session.execute(
        sa.select(Tombstone.record_id, Tombstone.outcome, Tombstone.approved_by_id))}
    assert stones == {gone: ("purged", staff_ids["manager"]), kept: ("held", staff_ids["manager"])}


def test_ret_cancel_completes_tombstones_in_short_transactions_and_frees_the_records(
        db_session, staff_ids, monkeypatch) -> None:
    from workflow import retention_batch

    p = policy()
    records = sorted(closed(local(2020, 1, 1)) for _ in range(5))
    batch = list_batch(p, staff(staff_ids, "manager"), NOW)
    approve(batch, staff(staff_ids, "manager"), PASSWORD)
    marked: list[int] = []  # tombstones marked per transaction

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("UPDATE tombstone"):
            marked.append(cursor.rowcount)

    monkeypatch.setattr(retention_batch, "LIST_CHUNK", 2)
    sa.event.listen(db.engine, "after_cursor_execute", count)
    try:
        retention_batch.cancel(batch, staff(staff_ids, "manager"))
    finally:
        sa.event.remove(db.engine, "after_cursor_execute", count)
    assert marked == [2, 2, 1]  # each UPDATE is committed before the next (see cancel)
    assert db.session.get(RetentionBatch, batch.id).state == "cancelled"
    assert set(db.session.execute(sa.select(Tombstone.outcome, Tombstone.approved_by_id)).all()) == {
        ("cancelled", staff_ids["manager"])}
    assert due_ids(p) == records  # listed again at will
    # Interrupted between the batch and its tombstones: a pending tombstone of a closed batch
    # keeps nothing from being listed.
    db.session.execute(sa.update(Tombstone).values(outcome=None))
    db.session.commit()
    assert due_ids(p) == records
    again = list_batch(p, staff(staff_ids, "manager"), NOW)
    assert again.listed_count == 5 and due_ids(p) == []


@pytest.mark.parametrize("action", ["purge", "anonymise"])
def test_ret_chunk_statements_search_by_index_never_scan_a_growing_table(db_session, staff_ids, action) -> None:
    """A purge transaction must cost the same at the millionth record as at the first: every
    statement it runs finds its rows through an index (SQLite's plan says SEARCH, not SCAN)."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    p = policy(action=action, columns="returned_to")
    for when in (local(2020, 1, 1), local(2020, 2, 1)):
        used_and_closed(staff_ids, when)
    batch = list_batch(p, staff(staff_ids, "manager"), NOW)
    approve(batch, staff(staff_ids, "manager"), PASSWORD)
    seen: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip()[:6].upper() in ("SELECT", "UPDATE", "DELETE"):
            seen.append((statement, parameters[0] if executemany else parameters))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        run_batch(batch.id, now=NOW, chunk=1, max_chunks=1)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    growing = ("tombstone", "audit_entry", "key_custody", "key_use", "sign_off", "legal_hold")
    raw = db.engine.raw_connection()
    try:
        for statement, parameters in seen:
            plan = [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)]
            for step in plan:
                assert not any(step.startswith(f"SCAN {t}") for t in growing), (statement, plan)
                if "tombstone" in statement.split("WHERE")[0]:
                    # A whole batch's tombstones may only be walked in order up to a LIMIT.
                    assert "TEMP B-TREE" not in step, (statement, plan)
                    assert not step.endswith("(batch_id=?)") or "LIMIT" in statement, (statement, plan)
    finally:
        raw.close()
    assert any(s.lstrip().startswith("DELETE FROM key_custody") or s.lstrip().startswith("UPDATE key_custody")
               for s, _ in seen)  # the chunk did its work


def test_ret_anonymise_keeps_the_row_and_blanks_personal_columns(db_session, staff_ids) -> None:
    p = policy(action="anonymise", columns="current_holder, returned_to, resident_confirmation")
    keys = used_and_closed(staff_ids, local(2020, 1, 1))
    db.session.execute(sa.update(KeyCustody).where(KeyCustody.id == keys.id).values(
        returned_to="张三", resident_confirmation="张三"))
    db.session.commit()
    version, record_id = keys.version, keys.id
    purge(p, staff_ids)
    db.session.expire_all()
    row = db.session.get(KeyCustody, record_id)
    assert (row.returned_to, row.resident_confirmation, row.current_holder) == (None, None, None)
    assert row.description == "入户门钥匙" and row.version == version + 1
    assert db.session.scalar(sa.select(Tombstone.outcome)) == "anonymised"
    assert all(e.changes is None and e.redacted_at for e in trail("key_custody", record_id))
    assert due_ids(p) == [] and problems() == []


# --- approval (ACC-5), dry run, CLI ------------------------------------------------------------------------
def test_acc_5_purge_approval_needs_a_manager_and_the_right_password(en, staff_ids) -> None:
    p = policy()
    record = closed(local(2020, 1, 1))
    batch = list_batch(p, staff(staff_ids, "manager"), NOW)
    for role in ("cs_supervisor", "admin"):
        with pytest.raises(DomainError, match="Only a manager"):
            approve(batch, staff(staff_ids, role), PASSWORD)
    for wrong in ("wrong-password-123", "", None):
        with pytest.raises(DomainError, match="password is not correct"):
            approve(batch, staff(staff_ids, "manager"), wrong)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SecurityEvent).where(
        SecurityEvent.kind == "reauth_failed")) == 3
    with pytest.raises(DomainError, match="Only an approved batch"):
        run_batch(batch.id, now=NOW)
    assert db.session.get(RetentionBatch, batch.id).state == "listed" and record in existing()
    approve(batch, staff(staff_ids, "manager"), PASSWORD)
    assert (batch.state, batch.approved_by_id) == ("approved", staff_ids["manager"])
    with pytest.raises(DomainError, match="Only a manager"):
        list_batch(p, staff(staff_ids, "cs_supervisor"), NOW)
    with pytest.raises(DomainError, match="still open"):  # one open batch per policy
        list_batch(p, staff(staff_ids, "manager"), NOW)
    p.action = "anonymise"  # the approval covered a purge, not whatever the policy says now
    db.session.commit()
    with pytest.raises(DomainError, match="action changed after the approval"):
        run_batch(batch.id, now=NOW)
    assert record in existing()


def snapshot() -> dict[str, Any]:
    return {t.name: db.session.execute(sa.select(t).order_by(*t.primary_key.columns)).all()
            for t in db.metadata.sorted_tables}


def test_ret_dry_run_lists_what_is_due_and_writes_nothing(db_session, runner) -> None:
    p = policy()
    due_now = sorted(closed(local(2020, 1, 1)) for _ in range(3))
    closed(local(2027, 1, 1))
    before = snapshot()
    result = runner.invoke(args=["retention", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"[{p.id}] keys (key_custody): 3 due; first: {', '.join(map(str, due_now))}" in result.output
    db.session.rollback()
    assert snapshot() == before and db.session.get(AuditHead, 1).seq == before["audit_head"][0].seq


def test_ret_cli_runs_an_approved_batch_only(db_session, staff_ids, runner) -> None:
    p = policy()
    record = closed(local(2020, 1, 1))
    batch = list_batch(p, staff(staff_ids, "manager"), NOW)
    refused = runner.invoke(args=["retention", "--run", str(batch.id)])
    assert refused.exit_code != 0 and record in existing()
    approve(batch, staff(staff_ids, "manager"), PASSWORD)
    result = runner.invoke(args=["retention", "--run", str(batch.id)])
    assert result.exit_code == 0 and f"batch {batch.id}: done; done 1, skipped 0" in result.output
    assert record not in existing()
    assert runner.invoke(args=["retention"]).exit_code != 0  # nothing asked: usage error, nothing done


# --- screens -------------------------------------------------------------------------------------------------
@pytest.fixture()
def english(en) -> None:
    db.session.execute(sa.update(Staff).values(locale="en"))
    db.session.commit()


def test_ret_policies_screen_admin_edits_with_validation_and_audit(login_as, english) -> None:
    admin = login_as("admin")
    form = {"name": "keys", "record_type": "key_custody", "condition": '{"state": "lost"}', "amount": "2",
            "unit": "years", "anchor": "closed", "anchor_field": "closed_at", "require_closed": "y",
            "action": "purge", "columns": "", "active": "y", "note": ""}
    for bad, message in [({"amount": "-1"}, "Number must be between 1 and 36600"),
                         ({"amount": "101"}, "The period must be between 1 and 100 years."),
                         ({"unit": "weeks"}, "Not a valid choice"),
                         ({"condition": "__import__('os')"}, "The condition must be JSON"),
                         ({"condition": '{"no_such_column": 1}'}, "names a column key_custody does not have")]:
        response = admin.post("/admin/retention-policy/new/", data={"csrf_token": csrf_token(admin), **form, **bad})
        assert response.status_code == 200 and message in response.get_data(as_text=True), bad
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RetentionPolicy)) == 0
    response = admin.post("/admin/retention-policy/new/", data={"csrf_token": csrf_token(admin), **form})
    assert response.status_code == 302
    created = db.session.scalar(sa.select(RetentionPolicy))
    assert (created.amount, created.condition) == (2, '{"state": "lost"}')
    [row] = trail("retention_policy", created.id)
    assert row.action == "create" and row.actor_name == "admin"
    assert login_as("cs_clerk").get("/admin/retention-policy/").status_code == 403
    manager = login_as("manager")  # managers read the policies they purge under; admins change them
    assert manager.get("/admin/retention-policy/").status_code == 200
    assert manager.post("/admin/retention-policy/new/", data={"csrf_token": csrf_token(manager), **form}
                        ).status_code == 403


def test_acc_5_queue_screen_list_approve_with_password_and_run(login_as, english, staff_ids) -> None:
    p = policy()
    records = [closed(local(2020, 1, 1)) for _ in range(2)]
    for role in ("cs_supervisor", "admin", "cs_clerk"):
        assert login_as(role).get("/admin/retention-queue/").status_code == 403
    manager = login_as("manager")
    page = manager.get("/admin/retention-queue/").get_data(as_text=True)
    assert "keys" in page and ", ".join(map(str, records)) in page
    listed = manager.post("/admin/retention-queue/list", data={"csrf_token": csrf_token(manager), "policy_id": p.id})
    batch = db.session.scalar(sa.select(RetentionBatch))
    assert listed.status_code == 302 and batch.listed_count == 2
    wrong = manager.post("/admin/retention-queue/approve", data={
        "csrf_token": csrf_token(manager), "batch_id": batch.id, "password": "wrong-password-123"},
        follow_redirects=True)
    assert "The password is not correct." in wrong.get_data(as_text=True)
    early = manager.post("/admin/retention-queue/run", data={"csrf_token": csrf_token(manager), "batch_id": batch.id},
                         follow_redirects=True)
    assert "Only an approved batch can run." in early.get_data(as_text=True) and set(records) <= existing()
    manager.post("/admin/retention-queue/approve", data={"csrf_token": csrf_token(manager), "batch_id": batch.id,
                                                        "password": PASSWORD})
    done = manager.post("/admin/retention-queue/run", data={"csrf_token": csrf_token(manager), "batch_id": batch.id},
                        follow_redirects=True)
    body = done.get_data(as_text=True)
    assert f"Batch {batch.id} done." in body and body.count('class="tombstone"') == 2 and "purged" in body
    assert not set(records) & existing()


def test_arc_9_holds_screen_managers_place_and_release_supervisors_look(login_as, english, staff_ids) -> None:
    record = closed(local(2020, 1, 1))
    assert login_as("cs_clerk").get("/admin/legal-hold/").status_code == 403
    supervisor = login_as("cs_supervisor")
    assert supervisor.get("/admin/legal-hold/").status_code == 200
    assert supervisor.post("/admin/legal-hold/place", data={
        "csrf_token": csrf_token(supervisor), "record_type": "key_custody", "record_id": record,
        "reason": "x"}).status_code == 403
    manager = login_as("manager")
    missing = manager.post("/admin/legal-hold/place", data={
        "csrf_token": csrf_token(manager), "record_type": "key_custody", "record_id": record, "reason": " "})
    assert missing.status_code == 400 and "A legal hold needs a reason." in missing.get_data(as_text=True)
    placed = manager.post("/admin/legal-hold/place", data={
        "csrf_token": csrf_token(manager), "record_type": "key_custody", "record_id": record, "reason": "诉讼"})
    assert placed.status_code == 302
    hold = db.session.scalar(sa.select(LegalHold))
    assert (hold.record_id, hold.reason, hold.placed_by_id) == (record, "诉讼", staff_ids["manager"])
    assert "诉讼" in supervisor.get("/admin/legal-hold/").get_data(as_text=True)
    assert due_ids(policy()) == []
    assert supervisor.post(f"/admin/legal-hold/{hold.id}/release",
                           data={"csrf_token": csrf_token(supervisor)}).status_code == 403
    manager.post(f"/admin/legal-hold/{hold.id}/release", data={"csrf_token": csrf_token(manager)})
    db.session.expire_all()
    assert db.session.get(LegalHold, hold.id).released_by_id == staff_ids["manager"]
    assert due_ids(db.session.scalar(sa.select(RetentionPolicy))) == [record]


# --- property: over random records, holds and policies ----------------------------------------------------
def oracle_expiry(spec: dict[str, Any], moment: datetime) -> datetime:
    """An independent statement of §10 expiry: wall time in Shanghai, a missing day rolls forward."""
    at = moment.astimezone(SHANGHAI).replace(tzinfo=None)
    first_of_next_month = (at.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0,
                                                                           microsecond=0)
    at = {"start_of_next_year": datetime(at.year + 1, 1, 1), "end_of_month": first_of_next_month}.get(
        spec["anchor"], at)
    if spec["unit"] == "days":
        end = at + timedelta(days=spec["amount"])
    else:
        months = at.month - 1 + spec["amount"] * (12 if spec["unit"] == "years" else 1)
        year, month = at.year + months // 12, months % 12 + 1
        if at.day <= calendar.monthrange(year, month)[1]:
            end = at.replace(year=year, month=month)
        else:
            end = datetime(year + month // 12, month % 12 + 1, 1)
    return end.replace(tzinfo=SHANGHAI).astimezone(UTC)


STATES = ("held", "returned", "lost")
sometimes = st.sampled_from([False, False, False, True])
records_st = st.lists(st.tuples(
    st.sampled_from(STATES),
    st.sampled_from(range(0, 7 * 366, 3)).map(lambda days: NOW - timedelta(days=days)),  # spread, not near 0
    st.integers(0, 86400 * 10**6 - 1).map(lambda us: timedelta(microseconds=us)),
    sometimes, sometimes), min_size=1, max_size=6)
SPANS = {"days": 2500, "months": 84, "years": 7}  # up to about the age of the oldest record
policy_st = st.sampled_from(sorted(SPANS)).flatmap(lambda unit: st.fixed_dictionaries({
    "amount": st.integers(1, SPANS[unit]), "unit": st.just(unit),
    "anchor": st.sampled_from(["closed", "start_of_next_year", "end_of_month"]),
    "condition": st.sampled_from([None, '{"state": "returned"}', '{"state": ["returned", "lost"]}',
                                  '{"state": "lost"}'])}))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(records=records_st, spec=policy_st)
def test_ret_property_nothing_held_or_unexpired_is_purged_and_all_due_and_free_is(
        db_session, staff_ids, records, spec) -> None:
    manager = staff(staff_ids, "manager")
    p = policy(**spec)
    chosen = json.loads(spec["condition"])["state"] if spec["condition"] else list(STATES)
    wanted = {chosen} if isinstance(chosen, str) else set(chosen)
    made, before, after = {}, set(), set()
    for state, when, micro, hold_before, hold_after in records:
        closed_at = None if state == "held" else when + micro
        record = closed(closed_at, state)
        made[record] = (state, closed_at)
        if hold_before:
            place_hold("key_custody", record, "before", manager)
            before.add(record)
        elif hold_after:
            after.add(record)
    db.session.commit()
    expected = {r for r, (state, at) in made.items()
                if at is not None and state in wanted and oracle_expiry(spec, at) <= NOW and r not in before}
    try:
        batch = list_batch(p, manager, NOW)
    except DomainError:
        batch = None
    listed = set(db.session.scalars(sa.select(Tombstone.record_id).where(Tombstone.batch_id == batch.id))
                 ) if batch else set()
    assert listed == expected
    if batch:
        approve(batch, manager, PASSWORD)
        for record in after:
            place_hold("key_custody", record, "after approval", manager)
        db.session.commit()
        run_batch(batch.id, now=NOW, chunk=3)
    purged = set(made) - existing()
    assert purged == expected - after
    assert not purged & (before | after)
    assert all(oracle_expiry(spec, made[r][1]) <= NOW for r in purged)
    event("purged some" if purged else "purged none")
    event("a hold placed after approval kept a due record" if expected & after else "no late hold on a due record")
    # leave the table as found: no survivors, no holds in force
    db.session.execute(sa.update(LegalHold).where(LegalHold.released_at.is_(None)).values(released_at=NOW))
    db.session.execute(sa.delete(KeyUse))
    db.session.execute(sa.delete(KeyCustody))
    db.session.commit()


# --- list pages do not grow their queries with their rows -----------------------------------------------
def assert_policy_list_constant(app, login_as) -> None:  # type: ignore[no-untyped-def]
    """Shared with tests/test_query_counts.py: statements per policies list page stay constant."""
    from tests.test_query_counts import statements_for

    client, counts, done = login_as("admin"), [], 0
    for size in (5, 40):
        with app.app_context():
            db.session.add_all(RetentionPolicy(name=f"policy {i}", record_type=f"table_{i}", amount=i + 1,
                                               unit="years", anchor="closed", anchor_field="closed_at",
                                               action="purge") for i in range(done, size))
            db.session.commit()
        done = size
        statements, body = statements_for(app, client, "/admin/retention-policy/?page_size=100")
        assert body.count('<td class="col-name">') == size
        counts.append(len(statements))
    assert counts[0] == counts[1], f"retention_policy: statements per list page grow with the rows: {counts}"


def test_ret_policy_list_query_count_constant(app, login_as) -> None:  # type: ignore[no-untyped-def]
    assert_policy_list_constant(app, login_as)


def test_ret_purged_ids_are_never_reused(db_session, staff_ids) -> None:
    """After a purge, a new record gets a new id (SQLite AUTOINCREMENT, PostgreSQL sequences): it must
    not inherit the purged record's redacted audit trail, tombstone or legal hold, which name it by id."""
    p = policy()
    newest = max(closed(local(2020, 1, 1)) for _ in range(2))
    batch = list_batch(p, staff(staff_ids, "manager"), NOW)
    approve(batch, staff(staff_ids, "manager"), PASSWORD)
    assert run_batch(batch.id, now=NOW).state == "done" and not existing()
    assert new_keys().id > newest


def test_ret_failed_purge_step_rolls_back_and_the_batch_can_run_again(en, staff_ids, monkeypatch) -> None:
    """Issue 18 §5: the database refusing the redaction (an app role without the column UPDATE)
    rolled nothing back to a state the batch could leave: it stayed ``running`` for good."""
    from workflow import audit as audit_module

    p = policy()
    records = [closed(local(2020, 1, 1)) for _ in range(2)]
    batch = list_batch(p, staff(staff_ids, "manager"), NOW)
    approve(batch, staff(staff_ids, "manager"), PASSWORD)
    batch_id, real_redact = batch.id, audit_module.redact

    def refused(*args: Any, **kwargs: Any) -> None:
        raise sa.exc.ProgrammingError("UPDATE audit_entry", {}, Exception("permission denied for table audit_entry"))

    monkeypatch.setattr(audit_module, "redact", refused)
    with pytest.raises(DomainError, match="can run again"):
        run_batch(batch_id, now=NOW)
    db.session.expire_all()
    batch = db.session.get(RetentionBatch, batch_id)
    assert (batch.state, batch.done_count) == ("approved", 0) and set(records) <= existing()
    assert db.session.scalars(sa.select(Tombstone.outcome).where(Tombstone.batch_id == batch_id)).all() == [None, None]
    stopped = db.session.scalars(sa.select(AuditEntry.comment).where(AuditEntry.action == "retention_stopped")).all()
    assert len(stopped) == 1 and "permission denied" in stopped[0]
    monkeypatch.setattr(audit_module, "redact", real_redact)  # the right granted: the same batch runs
    batch = run_batch(batch_id, now=NOW)
    assert (batch.state, batch.done_count) == ("done", 2) and not existing() & set(records)
    assert problems() == []
