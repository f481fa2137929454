"""The demo seed: big enough to look real, idempotent, one account per role."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from models import Estate, Occupancy, Resident, Staff, Unit, db
from models.staff import ROLES


def test_reg_1_demo_seed_builds_compound_and_tower_idempotently(runner, db_session) -> None:
    first = runner.invoke(args=["seed", "--demo"])
    assert first.exit_code == 0, first.output
    assert "Wuye#Demo2026" in first.output and "clerk" in first.output
    counts = (db.session.scalar(sa.select(sa.func.count()).select_from(Unit)),
              db.session.scalar(sa.select(sa.func.count()).select_from(Resident)))
    second = runner.invoke(args=["seed", "--demo"])
    assert second.exit_code == 0
    assert counts == (db.session.scalar(sa.select(sa.func.count()).select_from(Unit)),
                      db.session.scalar(sa.select(sa.func.count()).select_from(Resident)))
    kinds = {e.code: e.kind for e in db.session.scalars(sa.select(Estate))}
    assert kinds == {"avic": "residential", "twr": "office"}
    compound_units = db.session.scalar(
        sa.select(sa.func.count()).select_from(Unit).join(Unit.building).join(Estate)
        .where(Estate.code == "avic"))
    assert compound_units >= 200 and counts[1] >= 300
    tenants = db.session.scalar(sa.select(sa.func.count()).select_from(Occupancy).where(Occupancy.kind == "tenant"))
    assert tenants > 0


def test_acc_1_demo_has_one_account_per_role(runner, db_session) -> None:
    runner.invoke(args=["seed", "--demo"])
    roles = set()
    for staff in db.session.scalars(sa.select(Staff).where(Staff.username.in_(
            ["admin", "manager", "supervisor", "clerk", "engineer", "guard", "cashier", "patrol"]))):
        roles |= staff.roles
    assert roles == set(ROLES)


def _leans_on(table: sa.Table, name: str, seen: frozenset[str] = frozenset()) -> bool:
    """Whether ``table`` refers to ``name`` through its foreign keys, directly or further down."""
    targets = {fk.column.table for fk in table.foreign_keys} - {table}
    return any(t.name == name or (t.name not in seen and _leans_on(t, name, seen | {table.name}))
               for t in targets)


def test_seed_first_run_only_leaves_deleted_demo_data_alone(runner, app, db_session) -> None:
    Path(app.instance_path, ".demo-seeded").unlink(missing_ok=True)
    assert runner.invoke(args=["seed", "--demo", "--first-run-only"]).exit_code == 0
    count = db.session.scalar(sa.select(sa.func.count()).select_from(Unit))
    assert count > 0
    for table in reversed(db.metadata.sorted_tables):  # units and every row that leans on them
        if table.name == "unit" or _leans_on(table, "unit"):
            db.session.execute(sa.delete(table))
    db.session.commit()  # the firm deleted the demo units; a restart must not bring them back
    count = 0
    again = runner.invoke(args=["seed", "--demo", "--first-run-only"])
    assert again.exit_code == 0 and "demo estate ready" not in again.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Unit)) == count


def test_acc_1_seed_demo_refused_in_production(runner, app, db_session, monkeypatch) -> None:
    """Issue 18 §3: the demo accounts' password is in the README; they never reach a real firm."""
    monkeypatch.setitem(app.config, "PM_ENV", "production")
    result = runner.invoke(args=["seed", "--demo", "--first-run-only"])
    assert result.exit_code == 1 and "PM_ENV is production" in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Unit)) == 0


def test_acc_1_seed_demo_refused_on_a_database_with_real_data(runner, app, db_session) -> None:
    from security import accounts

    Path(app.instance_path, ".demo-seeded").unlink(missing_ok=True)
    accounts.create_staff("wang.li", "王丽", "Real-Person-2026!", {"cs_clerk"})
    db.session.commit()
    result = runner.invoke(args=["seed", "--demo", "--first-run-only"])
    assert result.exit_code == 1 and "account 'wang.li'" in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Estate)) == 0
